"""Bad inputs to chapter 7: entries, collate functions, DPO, and a misbehaving Ollama server."""

import http.client
import http.server
import json
import math
import re
import threading
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ch07_instructions.dpo import (
    PreferenceDataset,
    dpo_loss,
    dpo_loss_batch,
    evaluate_preferences,
    preference_collate_fn,
)
from ch07_instructions.instructions import (
    InstructionDataset,
    custom_collate_fn,
    format_input,
    generate_responses,
)
from ch07_instructions.judge import (
    OllamaError,
    ollama_is_running,
    query_ollama,
    score_responses,
)


class LetterTokenizer:
    def encode(self, text, allowed_special=None):
        return [ord(c) for c in text]


ENTRY = {"instruction": "Add.", "input": "1 and 2", "output": "3", "chosen": "3",
         "rejected": "4"}


# Entries: a key missing or not a string further on is named before any work ------------------

def test_scoring_names_an_entry_without_a_response_before_any_request():
    # no server listens at port 9: without the check, the first request would fail instead
    data = [{**ENTRY, "model_response": "3"}, {**ENTRY, "model_response": None}]
    with pytest.raises(ValueError, match="json_data: entry 1 has no 'model_response' string"):
        score_responses(data, url="http://127.0.0.1:9/api/chat", progress=False)


def test_format_input_refuses_an_instruction_that_is_no_string():
    with pytest.raises(TypeError, match="instruction"):  # else the prompt would read "None"
        format_input({"instruction": None})


@pytest.mark.parametrize("bad", [{"output": "no instruction"}, {"instruction": None}])
def test_generate_responses_refuses_and_changes_no_entry(bad):
    data = [dict(ENTRY), bad]
    before = json.dumps(data)
    with pytest.raises(ValueError, match="data: entry 1 has no 'instruction'"):
        generate_responses(None, data, LetterTokenizer(), "cpu", progress=False)
    assert json.dumps(data) == before  # the first entry got no response


# custom_collate_fn -----------------------------------------------------------------------------

@pytest.mark.parametrize("batch, allowed_max_length, error, named", [
    ([[1, 2]], 0, ValueError, "allowed_max_length"),
    ([[1, 2]], -4, ValueError, "allowed_max_length"),
    ([[1, 2], []], None, ValueError, "item 1 of the batch"),
    ([torch.tensor([1, 2, 3]), torch.tensor([4, 5])], None, TypeError, "item 0 of the batch"),
    ([np.array([1, 2, 3]), np.array([4, 5, 6])], None, TypeError, "item 0 of the batch"),
    (torch.tensor([[1, 2, 3], [4, 5, 6]]), None, TypeError, "item 0 of the batch"),
    ([[1, 2, 3], (torch.tensor([1, 2, 3]), 1)], None, TypeError, "item 1 of the batch"),
    ([([1, 2], 3)], None, ValueError, "item 0 of the batch: prompt_length"),
    ([([1, 2], -1)], None, ValueError, "item 0 of the batch: prompt_length"),
    ([([1, 2, 3, 4, 5], 6)], 3, ValueError, "item 0 of the batch: prompt_length"),
    ([[1, 2, 3], ([1, 2, 3, 4, 5], 4)], 3, ValueError, "allowed_max_length=3"),
])
def test_custom_collate_fn_refuses(batch, allowed_max_length, error, named):
    with pytest.raises(error, match=re.escape(named)):
        custom_collate_fn(batch, allowed_max_length=allowed_max_length)


def test_custom_collate_fn_says_what_to_pass_for_a_tensor():
    with pytest.raises(TypeError, match=r"^item 1 of the batch must be a non-empty list of token "
                                        r"ids, got tensor\(\[1, 2, 3\]\) \(a tensor's \.tolist\(\) "
                                        r"gives one\)$"):
        custom_collate_fn([[1, 2, 3], (torch.tensor([1, 2, 3]), 1)])


def test_custom_collate_fn_names_the_item_a_short_limit_leaves_without_a_target():
    with pytest.raises(ValueError, match=r"^item 1 of the batch has no target left: its prompt "
                                         r"has 4 tokens, more than allowed_max_length=3$"):
        custom_collate_fn([[1, 2, 3], ([1, 2, 3, 4, 5], 4)], allowed_max_length=3)


def test_collate_keeps_an_item_whose_last_prompt_position_is_inside_the_limit():
    # prompt of 4: the first target that counts is at position 3, the 4th and last kept
    _, targets = custom_collate_fn([([1, 2, 3, 4, 5], 4)], allowed_max_length=4)
    assert targets.tolist() == [[-100, -100, -100, 5]]


def test_the_old_nan_case_is_now_an_error_and_the_loss_stays_finite():
    batch = [([1, 2, 3, 4, 5, 6], 5), ([1, 2, 3, 4, 5, 6, 7], 6)]
    with pytest.raises(ValueError, match="item 0 of the batch has no target left"):
        custom_collate_fn(batch, pad_token_id=0, allowed_max_length=4)
    inputs, targets = custom_collate_fn(batch, pad_token_id=0, allowed_max_length=6)
    logits = torch.zeros(*inputs.shape, 60)
    assert torch.isfinite(nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten()))


@st.composite
def collate_cases(draw):
    pad = draw(st.integers(0, 60))
    token = st.integers(0, 60).filter(lambda t: t != pad)
    lengths = draw(st.lists(st.integers(1, 12), min_size=1, max_size=5))
    masked = draw(st.booleans())
    items = []
    for length in lengths:
        ids = draw(st.lists(token, min_size=length, max_size=length))
        items.append((ids, draw(st.integers(0, length))) if masked else ids)
    limit = draw(st.none() | st.integers(1, 14))
    return items, pad, limit


@settings(max_examples=200, deadline=None)
@given(collate_cases())
def test_collate_properties(case):
    items, pad, limit = case
    pairs = [item if isinstance(item, tuple) else (item, 0) for item in items]
    no_target = [i for i, (_, prompt_length) in enumerate(pairs)
                 if limit is not None and max(prompt_length - 1, 0) >= limit]
    if no_target:
        with pytest.raises(ValueError, match=f"item {no_target[0]} of the batch has no target"):
            custom_collate_fn(items, pad_token_id=pad, allowed_max_length=limit)
        return
    inputs, targets = custom_collate_fn(items, pad_token_id=pad, allowed_max_length=limit)
    longest = max(len(ids) for ids, _ in pairs)
    width = longest if limit is None else min(longest, limit)
    assert inputs.shape == targets.shape == (len(items), width)  # never longer than the limit
    for row, (ids, prompt_length) in enumerate(pairs):
        full = ids + [pad]
        expected_inputs = (ids + [pad] * longest)[:width]
        expected_targets = [full[j + 1] if max(prompt_length - 1, 0) <= j < len(ids) else -100
                            for j in range(width)]
        assert inputs[row].tolist() == expected_inputs
        assert targets[row].tolist() == expected_targets
        kept = targets[row].tolist()
        assert any(t != -100 for t in kept)  # every sequence teaches something
        if pad in kept:  # every target after the first end-of-text is ignored
            assert all(t == -100 for t in kept[kept.index(pad) + 1:])
    logits = torch.randn(*inputs.shape, 61)
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
    assert torch.isfinite(loss)


# Preference batches and DPO -----------------------------------------------------------------

PAIR = {"chosen": ([1, 2, 3, 4], 2), "rejected": ([1, 2, 5], 2)}


@pytest.mark.parametrize("batch, limit, error, message", [
    ([PAIR], 0, ValueError, "allowed_max_length"),
    ([PAIR, {"chosen": ([1, 2, 3], 1), "rejected": ([1, 2, 3, 4], 4)}], 2, ValueError,
     "item 1 of the batch has no target left"),
])
def test_preference_collate_bad_inputs(batch, limit, error, message):
    with pytest.raises(error, match=message):
        preference_collate_fn(batch, pad_token_id=0, allowed_max_length=limit)


class BigramModel(nn.Module):
    def __init__(self, vocab=8):
        super().__init__()
        self.table = nn.Embedding(vocab, vocab)

    def forward(self, ids):
        return self.table(ids)


@pytest.mark.parametrize("beta, error", [
    (0, ValueError), (-0.1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
])
def test_beta_must_be_a_positive_number(beta, error):
    zeros = torch.zeros(2)
    with pytest.raises(error, match="beta"):
        dpo_loss(zeros, zeros, zeros, zeros, beta=beta)
    batch = preference_collate_fn([PAIR], pad_token_id=0)
    with pytest.raises(error, match="beta"):
        dpo_loss_batch(batch, BigramModel(), BigramModel(), beta=beta)


def test_dpo_loss_batch_refuses_a_sequence_without_targets_before_any_forward_pass():
    inputs = torch.tensor([[1, 2, 3], [1, 2, 3]])
    good = torch.tensor([[-100, 3, 0], [2, 3, 0]])
    empty = torch.tensor([[2, 3, 0], [-100, -100, -100]])
    policy = BigramModel()
    calls = []
    policy.register_forward_hook(lambda *args: calls.append(1))
    batch = {"chosen": (inputs, good), "rejected": (inputs, empty)}
    with pytest.raises(ValueError, match=r"rejected sequence 1 of the batch has no target"):
        dpo_loss_batch(batch, policy, BigramModel())
    assert calls == []
    unpaired = {"chosen": (inputs, good), "rejected": (inputs[:1], good[:1])}
    with pytest.raises(ValueError, match="2 chosen and 1 rejected"):
        dpo_loss_batch(unpaired, policy, BigramModel())


# The Ollama client against a misbehaving local server ----------------------------------------

def chat_answer(content):
    return json.dumps({"message": {"role": "assistant", "content": content},
                       "done": True}).encode()


@pytest.fixture
def server():
    """A local HTTP server; `server.behave(handler)` decides how it answers each POST."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.do_GET()

        def do_GET(self):
            httpd.paths.append(self.path)
            try:
                httpd.behave(self)
            except OSError:  # the client gave up and closed the connection
                pass

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/api/chat"
    httpd.paths = []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def answer(body, pieces=1, pause=0.0, before=0.0, length=None):
    """A behaviour: wait `before` s, then send `body` in `pieces`, `pause` s apart."""

    def behave(handler):
        time.sleep(before)
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body) if length is None else length))
        handler.end_headers()
        size = max(1, math.ceil(len(body) / pieces))  # an empty body: headers alone
        for start in range(0, len(body), size):
            handler.wfile.write(body[start:start + size])
            handler.wfile.flush()
            time.sleep(pause)

    return behave


def timed_query(url, timeout):
    start = time.monotonic()
    try:
        return query_ollama("?", url=url, timeout=timeout), time.monotonic() - start
    except OllamaError as error:
        return error, time.monotonic() - start


@pytest.mark.parametrize("behave", [
    pytest.param(answer(chat_answer("late"), before=3.0), id="slow to start"),
    pytest.param(answer(chat_answer("a trickle of bytes"), pieces=40, pause=0.1), id="trickle"),
])
def test_the_timeout_is_a_deadline_for_the_whole_request(server, behave):
    # each read waits far less than the timeout: a per-read timeout would never fire
    server.behave = behave
    error, seconds = timed_query(server.url, timeout=0.8)
    assert isinstance(error, OllamaError)
    assert "gave no complete answer within 0.8 s" in str(error)
    assert seconds < 2.0


def test_an_answer_in_pieces_within_the_deadline_is_read_whole(server):
    server.behave = answer(chat_answer("Paris, in pieces"), pieces=4, pause=0.05)
    reply, seconds = timed_query(server.url, timeout=5)
    assert reply == "Paris, in pieces"


@pytest.mark.parametrize("behave, message", [
    (answer(b"\xff\xfe{}"), r"not UTF-8 text \(byte 0xff at position 0\)"),
    (answer(chat_answer("caf") + b"\xe9"), r"not UTF-8 text \(byte 0xe9 at position \d+\)"),
    (answer(b"<html>busy</html>"), r"unexpected answer, not JSON \(Expecting value"),
    (answer(b'{"done": true}'), r"unexpected answer, without message.content"),
    (answer(b"[1, 2]"), r"unexpected answer, without message.content"),
    (answer(chat_answer("cut"), length=500), r"broke off its answer"),
])
def test_bad_replies_are_ollama_errors_that_name_the_problem(server, behave, message):
    server.behave = behave
    with pytest.raises(OllamaError, match=message):
        query_ollama("?", url=server.url, timeout=5)


@pytest.mark.parametrize("timeout", [0, -1.5, float("nan"), float("inf")])
def test_query_ollama_refuses_a_timeout_that_is_not_a_positive_number(timeout):
    # 0 would make the socket non-blocking: its failure would read as "no Ollama server"; inf
    # would fail deep in the socket module
    with pytest.raises(ValueError, match="timeout"):
        query_ollama("?", url="http://127.0.0.1:9/api/chat", timeout=timeout)


@pytest.mark.parametrize("url, error, message", [
    ("localhost:11434/api/chat", OllamaError,
     r"'localhost:11434/api/chat' is not an http:// or https:// url \(unknown url type"),
    ("http://localhost:11434x/api/chat", http.client.InvalidURL, "nonnumeric port: '11434x'"),
    ("http://127.0.0.1:9/api chat", http.client.InvalidURL, "can't contain control characters"),
])
def test_a_mistyped_url_is_named_before_any_request(url, error, message):
    """No check of ours: urllib and http.client refuse these urls, naming what is wrong."""
    with pytest.raises(error, match=message) as caught:
        query_ollama("?", url=url, timeout=5)
    assert "no Ollama server" not in str(caught.value)


# Entries and batches: empty answers, special-token spellings, equal pairs, tensors for lists -----

class CountingTokenizer(LetterTokenizer):
    def __init__(self):
        self.calls = 0

    def encode(self, text, allowed_special=None):
        self.calls += 1
        return super().encode(text)


@pytest.mark.parametrize("output", ["", "   ", "\n\t "])
@pytest.mark.parametrize("mask_instruction", [False, True])
def test_an_empty_output_is_refused_by_its_entry_before_any_work(output, mask_instruction):
    tokenizer = CountingTokenizer()
    data = [dict(ENTRY), {**ENTRY, "output": output}]
    with pytest.raises(ValueError, match=re.escape("entry 1: 'output'")):
        InstructionDataset(data, tokenizer, mask_instruction=mask_instruction)
    assert tokenizer.calls == 0 and data[1]["output"] == output


SPECIAL = "<|endoftext|>"


@pytest.mark.parametrize("field", ["instruction", "input", "output"])
def test_a_special_tokens_spelling_in_an_entry_is_text(tiktoken_gpt2, field):
    entry = {**ENTRY, field: f"what does {SPECIAL} mean?"}
    dataset = InstructionDataset([entry], tiktoken_gpt2, mask_instruction=True)
    ids, prompt_length = dataset[0]
    text = format_input(entry) + "\n\n### Response:\n" + entry["output"]
    assert ids == tiktoken_gpt2.encode(text, disallowed_special=())
    assert 50256 not in ids and tiktoken_gpt2.decode(ids) == text
    _, targets = custom_collate_fn([dataset[0]])
    assert targets[0].tolist().count(50256) == 1  # the one end of text: the collate function's
    assert prompt_length == len(tiktoken_gpt2.encode(text[:len(text) - len(entry["output"])],
                                                     disallowed_special=()))


def test_a_special_tokens_spelling_in_a_preference_pair_is_text(tiktoken_gpt2):
    pair = {**ENTRY, "chosen": f"ends with {SPECIAL}", "rejected": SPECIAL}
    item = PreferenceDataset([pair], tiktoken_gpt2)[0]
    for kind in ("chosen", "rejected"):
        ids, _ = item[kind]
        assert 50256 not in ids and tiktoken_gpt2.decode(ids).endswith(pair[kind])


def test_generate_responses_reads_a_special_tokens_spelling_as_text(tiktoken_gpt2):
    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos_emb = nn.Embedding(512, 1)
            self.prompts = []

        def forward(self, ids):
            self.prompts.append(ids[0].tolist())
            logits = torch.zeros(*ids.shape, 50257)
            logits[..., 50256] = 1.0  # stop at once
            return logits

    model = Recorder()
    entry = {"instruction": f"Explain {SPECIAL}.", "input": ""}
    generate_responses(model, [entry], tiktoken_gpt2, "cpu", max_new_tokens=3, progress=False)
    prompt = format_input(entry) + "\n\n### Response:\n"
    assert model.prompts[0] == tiktoken_gpt2.encode(prompt, disallowed_special=())
    assert entry["model_response"] == ""


PAIR_ENTRY = {"instruction": "Add.", "input": "1 and 2", "chosen": "3", "rejected": "4"}


@pytest.mark.parametrize("answer", ["3", "", "  "])
def test_a_pair_of_equal_answers_is_refused_by_its_entry_before_any_work(answer):
    tokenizer = CountingTokenizer()
    data = [PAIR_ENTRY, {**PAIR_ENTRY, "chosen": answer, "rejected": answer}]
    with pytest.raises(ValueError, match="entry 1: 'chosen' and 'rejected' are the same answer, "
                                         "from which DPO learns nothing; leave it out, or pass "
                                         "keep_identical=True"):
        PreferenceDataset(data, tokenizer)
    assert tokenizer.calls == 0


@pytest.mark.parametrize("kind", ["chosen", "rejected"])
def test_an_empty_answer_is_refused_by_its_entry_and_key(kind):
    with pytest.raises(ValueError, match=f"entry 1: '{kind}' is empty"):
        PreferenceDataset([PAIR_ENTRY, {**PAIR_ENTRY, kind: " "}], LetterTokenizer())


def test_equal_answers_are_kept_on_request_and_their_loss_is_constant():
    data = [PAIR_ENTRY, {**PAIR_ENTRY, "rejected": "3"}]
    dataset = PreferenceDataset(data, LetterTokenizer(), keep_identical=True)
    assert len(dataset) == 2 and dataset[1]["chosen"] == dataset[1]["rejected"]
    assert PreferenceDataset([{**PAIR_ENTRY, "rejected": "3 "}], LetterTokenizer())  # differ
    batch = preference_collate_fn([dataset[1]], pad_token_id=0)
    policy = nn.Sequential(nn.Embedding(256, 256))  # LetterTokenizer: one id per character
    loss, _, _ = dpo_loss_batch(batch, policy, nn.Sequential(nn.Embedding(256, 256)))
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2))
    assert policy[0].weight.grad.abs().max() == 0  # nothing to learn from it


# ollama_is_running and query_ollama: a deadline, a redirect, an empty body; the model's mode ------

def redirect(handler):
    handler.send_response(302)
    handler.send_header("Location", "http://127.0.0.1:9/api/chat")
    handler.send_header("Content-Length", "0")
    handler.end_headers()


@pytest.mark.parametrize("behave, message", [
    (redirect, r"answered with a redirect \(HTTP 302\) to http://127.0.0.1:9/api/chat: give the "
               r"server's own address as url"),
    (answer(b""), r"sent an empty reply \(HTTP 200, no JSON\)"),
    (answer(b"\n  \n"), r"sent an empty reply"),
])
def test_a_redirect_or_an_empty_body_is_an_error_not_an_empty_answer(server, behave, message):
    server.behave = behave
    with pytest.raises(OllamaError, match=message):
        query_ollama("?", url=server.url, timeout=5)
    assert server.paths == ["/api/chat"]  # the redirect was not followed


def test_an_empty_answer_from_the_model_is_still_an_answer(server):
    server.behave = answer(chat_answer(""))
    assert query_ollama("?", url=server.url, timeout=5) == ""


def timed_check(url, timeout):
    start = time.monotonic()
    return ollama_is_running(url, timeout=timeout), time.monotonic() - start


@pytest.mark.parametrize("behave", [
    pytest.param(answer(b'{"models": []}', before=3.0), id="slow to start"),
    pytest.param(answer(b'{"models": [' + b" " * 40 + b"]}", pieces=40, pause=0.1), id="trickle"),
])
def test_ollama_is_running_has_a_deadline_for_the_whole_request(server, behave):
    server.behave = behave
    running, seconds = timed_check(server.url, timeout=0.8)
    assert running is False and seconds < 2.0
    assert server.paths == ["/api/tags"]


def redirect_to_a_list_of_models(handler):
    """/api/tags redirects to /moved, on the same server, which lists models."""
    if handler.path != "/moved":
        handler.send_response(301)
        handler.send_header("Location", "/moved")
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return
    answer(b'{"models": []}')(handler)


@pytest.mark.parametrize("behave, running", [
    (answer(b'{"models": []}'), True),
    (redirect, False),
    (redirect_to_a_list_of_models, False),
    (answer(b""), False),
    (answer(b"{}"), False),  # HTTP 200 and JSON, but not Ollama's list of models
    (answer(b'{"models": []}', pieces=2, pause=0.05), True),
])
def test_ollama_is_running_says_no_to_a_redirect_or_an_empty_reply(server, behave, running):
    server.behave = behave
    assert ollama_is_running(server.url, timeout=5) is running
    assert server.paths == ["/api/tags"]  # the redirect was not followed


@pytest.mark.parametrize("options, error, named", [
    ({"timeout": 0}, ValueError, "timeout"),
    ({"url": "localhost:11434"}, ValueError, "url"),
    ({"url": "http://localhost:11434x/"}, http.client.InvalidURL, "11434x"),
])
def test_ollama_is_running_refuses_rather_than_answering_no(options, error, named):
    # each would otherwise read as "no server"
    with pytest.raises(error, match=named):
        ollama_is_running(**options)


@pytest.mark.parametrize("training", [True, False])
def test_generating_and_evaluating_preferences_leave_the_mode_as_it_was(training, tiktoken_gpt2):
    from ch07_instructions.dpo import (
        PreferenceDataset,
        evaluate_preferences,
        preference_collate_fn,
    )
    from ch07_instructions.instructions import (
        generate_responses,
    )
    from conftest import tiny_gpt

    model = tiny_gpt(vocab_size=50257, context_length=64).train(training)
    entry = {"instruction": "Say hi.", "input": "", "chosen": "Hi.", "rejected": "No."}
    generate_responses(model, [dict(entry)], tiktoken_gpt2, "cpu", max_new_tokens=2,
                       progress=False)
    assert model.training is training
    pairs = PreferenceDataset([entry], tiktoken_gpt2)
    batch = preference_collate_fn([pairs[0]])
    evaluate_preferences([batch], model, tiny_gpt(vocab_size=50257, context_length=64), beta=0.1)
    assert model.training is training
    with pytest.raises(KeyError, match="chosen"):  # restored all the same
        evaluate_preferences([{}], model, tiny_gpt(vocab_size=50257, context_length=64))
    assert model.training is training


# The DPO loop: nothing a learner has is lost or poisoned ---------------------------------------

def test_the_dpo_loop_stops_at_a_nan_loss_before_updating_the_policy():
    """Runs section 7.10's loop cell (ch07-137, beyond_3_dpo.ipynb) with a nan policy."""
    import nbformat

    from conftest import tiny_gpt
    from shared import check_finite, set_seed
    from shared.data import PROJECT_ROOT

    nb = nbformat.read(PROJECT_ROOT / "ch07_instructions" / "beyond_3_dpo.ipynb", as_version=4)
    loop = next(cell.source for cell in nb.cells if cell.get("id") == "ch07-137")
    policy, reference = tiny_gpt(1), tiny_gpt(2)
    with torch.no_grad():
        policy.final_norm.scale[0] = math.nan  # every logit nan: the loss is nan
    before = {name: t.clone() for name, t in policy.state_dict().items()}
    ids = torch.tensor([[1, 2, 3, 4]])
    targets = torch.tensor([[-100, 3, 4, 5]])
    batch = {"chosen": (ids, targets), "rejected": (ids + 1, targets.clamp(min=0) + 1)}
    namespace = {"torch": torch, "time": time, "set_seed": set_seed, "PROFILE": "default",
                 "dpo_loss_batch": dpo_loss_batch, "evaluate_preferences": evaluate_preferences,
                 "check_finite": check_finite, "pref_train_loader": [batch],
                 "pref_val_loader": [batch], "policy": policy, "reference": reference,
                 "before": {"margin": 0.0, "accuracy": 0.0}}
    with pytest.raises(FloatingPointError, match=r"^the DPO loss became nan at step 1: "
                                                 "training stopped there"):
        exec(loop, namespace)
    assert all(torch.equal(t.nan_to_num(), before[name].nan_to_num())
               for name, t in policy.state_dict().items())
    assert not namespace["dpo_optimizer"].state  # no update was taken
