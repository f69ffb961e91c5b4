"""Tests of chapter 7: formatting, splitting, batching, masking, responses and evaluation."""

import http.server
import json
import math
import threading

import pytest
import torch
from torch import nn

from ch07_instructions.instructions import (
    RESPONSE_HEADER,
    InstructionDataset,
    PreferenceDataset,
    custom_collate_fn,
    dpo_loss,
    dpo_loss_batch,
    evaluate_preferences,
    extract_response,
    format_input,
    generate_responses,
    load_instruction_data,
    preference_collate_fn,
    rouge_l_scores,
    sequence_logprobs,
    split_instruction_data,
)
from ch07_instructions.judge import (
    OllamaError,
    generate_model_scores,
    ollama_is_running,
    query_model,
)


class LetterTokenizer:
    """One id per character: easy to count, and decode(encode(t)) == t."""

    def encode(self, text, allowed_special=None):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


# Data --------------------------------------------------------------------------------------

def test_instruction_data_and_the_split_sizes():
    data = load_instruction_data()
    assert len(data) == 1100 and {"instruction", "input", "output"} <= set(data[0])
    train, validation, test = split_instruction_data(data)
    assert (len(train), len(validation), len(test)) == (935, 55, 110)
    ids = [id(entry) for part in (train, validation, test) for entry in part]
    assert len(set(ids)) == 1100
    assert split_instruction_data(data)[2] == test  # seeded
    assert split_instruction_data(data, seed=None)[0] == data[:935]  # the book's order


def test_format_input_with_and_without_input():
    with_input = format_input({"instruction": "Add.", "input": "1 and 2", "output": "3"})
    assert with_input.endswith("### Instruction:\nAdd.\n\n### Input:\n1 and 2")
    without = format_input({"instruction": "Say hi.", "input": "", "output": "Hi"})
    assert without.endswith("### Instruction:\nSay hi.") and "### Input" not in without


# Collate -----------------------------------------------------------------------------------

def test_collate_shifts_pads_and_ignores_all_but_the_first_pad():
    inputs, targets = custom_collate_fn([[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]], pad_token_id=50)
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, 50, 50, 50], [7, 8, 9, 50, 50]]
    assert targets.tolist() == [[1, 2, 3, 4, 50], [6, 50, -100, -100, -100],
                                [8, 9, 50, -100, -100]]


def test_collate_keeps_an_endoftext_that_belongs_to_the_text():
    _, targets = custom_collate_fn([[1, 50, 2], [3]], pad_token_id=50)
    assert targets.tolist() == [[50, 2, 50], [50, -100, -100]]


def test_collate_truncates_to_the_allowed_maximum_length():
    inputs, targets = custom_collate_fn([list(range(10)), [1, 2]], allowed_max_length=4)
    assert inputs.shape == targets.shape == (2, 4)
    assert targets[0].tolist() == [1, 2, 3, 4]


def test_collate_masks_the_prompt_when_given_its_length():
    _, targets = custom_collate_fn([([10, 11, 12, 13, 14], 3), [20, 21]], pad_token_id=50)
    # prompt = 10 11 12: the targets 11 and 12 are prompt tokens; 13 is the first response
    assert targets.tolist() == [[-100, -100, 13, 14, 50], [21, 50, -100, -100, -100]]


def test_dataset_encodes_the_full_text_and_the_prompt_length():
    entry = {"instruction": "Add.", "input": "", "output": "3"}
    plain = InstructionDataset([entry], LetterTokenizer())
    prompt = format_input(entry) + RESPONSE_HEADER
    assert plain[0] == [ord(c) for c in prompt + "3"]
    masked = InstructionDataset([entry], LetterTokenizer(), mask_instruction=True)
    ids, prompt_length = masked[0]
    assert ids == plain[0] and prompt_length == len(prompt)
    _, targets = custom_collate_fn([masked[0]])
    assert [t for t in targets[0].tolist() if t != -100] == [ord("3"), 50256]


def test_ignored_targets_do_not_change_the_loss():
    logits = torch.randn(6, 9)
    targets = torch.tensor([1, 2, 3, -100, -100, -100])
    full = nn.functional.cross_entropy(logits, targets)
    assert torch.allclose(full, nn.functional.cross_entropy(logits[:3], targets[:3]))


# Responses ---------------------------------------------------------------------------------

def test_extract_response():
    prompt = "### Instruction:\nSay hi." + RESPONSE_HEADER
    assert extract_response(prompt + "Hello there.", prompt) == "Hello there."


class ScriptedModel(nn.Module):
    """Emits the ids of `reply`, one per step, then id 0 (eos) forever."""

    def __init__(self, reply, context=400):
        super().__init__()
        self.reply = [ord(c) for c in reply]
        self.cfg = {"context_length": context}  # what generate_responses reads of a GPTModel
        self.prompt_length = None

    def forward(self, ids):
        if self.prompt_length is None or ids.shape[1] < self.prompt_length:
            self.prompt_length = ids.shape[1]
        step = ids.shape[1] - self.prompt_length
        next_id = self.reply[step] if step < len(self.reply) else 0
        return nn.functional.one_hot(torch.tensor([[next_id] * ids.shape[1]]), 300).float()


def test_generate_responses_stops_at_eos_and_stores_the_response():
    data = [{"instruction": "Say hi.", "input": "", "output": "Hi"}]
    generate_responses(ScriptedModel("Hi!"), data, LetterTokenizer(), "cpu", max_new_tokens=20,
                       eos_id=0, progress=False)
    assert data[0]["model_response"] == "Hi!"


# Evaluation --------------------------------------------------------------------------------

def test_rouge_l_scores():
    data = [{"output": "the cat sat on the mat", "model_response": "the cat sat on the mat"},
            {"output": "the cat sat on the mat", "model_response": "dogs bark"},
            {"output": "the cat sat", "model_response": "the cat sat on the mat"}]
    perfect, unrelated, partial = rouge_l_scores(data)
    assert perfect == pytest.approx(100) and unrelated == 0
    assert partial == pytest.approx(100 * 2 * (3 / 6) * 1 / (3 / 6 + 1))


@pytest.fixture
def ollama_server():
    """A local server that speaks Ollama's /api/chat; `server.reply(request) -> (code, body)`."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append((self.path, body))
            code, reply = httpd.reply(body)
            self.send_response(code)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def do_GET(self):
            self.send_response(200 if self.path == "/api/tags" else 404)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.requests = requests
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/api/chat"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def chat_answer(content):
    return json.dumps({"model": "llama3", "message": {"role": "assistant", "content": content},
                       "done": True}).encode()


def test_query_model_sends_a_reproducible_chat_request(ollama_server):
    ollama_server.reply = lambda body: (200, chat_answer("Paris"))
    assert query_model("Capital of France?", url=ollama_server.url) == "Paris"
    path, body = ollama_server.requests[0]
    assert path == "/api/chat" and body["model"] == "llama3" and body["stream"] is False
    assert body["messages"] == [{"role": "user", "content": "Capital of France?"}]
    assert body["options"]["seed"] == 123 and body["options"]["temperature"] == 0


def test_query_model_reads_a_streamed_answer(ollama_server):
    lines = b"\n".join([chat_answer("Par"), chat_answer("is")])
    ollama_server.reply = lambda body: (200, lines)
    assert query_model("?", url=ollama_server.url) == "Paris"


@pytest.mark.parametrize("code, body, message", [
    (200, b"<html>not json</html>", "unexpected answer"),
    (200, b'{"done": true}', "unexpected answer"),
    (404, b'{"error": "model \'llama3\' not found"}', "HTTP 404.*ollama pull llama3"),
])
def test_query_model_garbage_is_a_clear_error(ollama_server, code, body, message):
    ollama_server.reply = lambda request: (code, body)
    with pytest.raises(OllamaError, match=message):
        query_model("?", url=ollama_server.url)


def test_server_down_is_a_clear_error():
    url = "http://127.0.0.1:9/api/chat"  # port 9: nothing listens
    assert not ollama_is_running(url)
    with pytest.raises(OllamaError, match="no Ollama server at .*ollama serve"):
        query_model("?", url=url, timeout=5)


def test_judge_scores_each_response(ollama_server):
    replies = iter(["87", "not a number", "12"])
    ollama_server.reply = lambda body: (200, chat_answer(next(replies)))
    data = [{"instruction": f"Task {i}", "input": "", "output": "x", "model_response": "y"}
            for i in range(3)]
    assert ollama_is_running(ollama_server.url)
    assert generate_model_scores(data, url=ollama_server.url, progress=False) == [87, None, 12]
    prompt = ollama_server.requests[0][1]["messages"][0]["content"]
    assert "Task 0" in prompt and "Reference answer: x" in prompt and prompt.count("y") >= 1


# Preference tuning (DPO) -------------------------------------------------------------------

def test_sequence_logprobs_sums_the_counted_targets_only():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5)
    targets = torch.tensor([[1, 3, -100, -100], [-100, 0, 4, 2]])
    expected = []
    for b in range(2):
        total = 0.0
        for t in range(4):
            if targets[b, t] != -100:  # log of the softmax probability, written out
                row = [math.exp(v) for v in logits[b, t].tolist()]
                total += math.log(row[targets[b, t]] / sum(row))
        expected.append(total)
    assert sequence_logprobs(logits, targets).tolist() == pytest.approx(expected, abs=1e-5)


def test_dpo_loss_on_a_hand_computed_pair():
    loss, chosen, rejected = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]),
                                      torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.5)
    # rewards 0.5 * (-1 + 2) = 0.5 and 0.5 * (-3 + 2) = -0.5; margin 1
    assert chosen.item() == pytest.approx(0.5) and rejected.item() == pytest.approx(-0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)))


def test_dpo_loss_matches_the_formula_elementwise():
    torch.manual_seed(1)
    pc, pr, rc, rr = (torch.randn(6) * 5 for _ in range(4))
    beta = 0.3
    loss, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta=beta)
    per_pair = [math.log(1 + math.exp(-beta * ((a - c) - (b - d))))
                for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())]
    assert loss.item() == pytest.approx(sum(per_pair) / 6, rel=1e-5)
    assert torch.allclose(chosen, beta * (pc - rc)) and torch.allclose(rejected, beta * (pr - rr))
    assert not chosen.requires_grad


def test_dpo_loss_is_log_2_when_the_policy_is_the_reference_and_its_gradient_favours_chosen():
    chosen = torch.tensor([-4.0, -9.0], requires_grad=True)
    rejected = torch.tensor([-5.0, -2.0], requires_grad=True)
    loss, _, _ = dpo_loss(chosen, rejected, chosen.detach(), rejected.detach(), beta=0.1)
    assert loss.item() == pytest.approx(math.log(2))
    loss.backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()  # descent raises chosen


def test_preference_batches_count_only_response_tokens():
    entry = {"instruction": "Add.", "input": "", "output": "3", "chosen": "3", "rejected": "x y"}
    dataset = PreferenceDataset([entry], LetterTokenizer())
    prompt_length = len(format_input(entry) + RESPONSE_HEADER)
    assert dataset[0]["chosen"][1] == dataset[0]["rejected"][1] == prompt_length
    batch = preference_collate_fn([dataset[0]], pad_token_id=0)
    for kind, response in [("chosen", "3"), ("rejected", "x y")]:
        inputs, targets = batch[kind]
        assert [t for t in targets[0].tolist() if t != -100] == [ord(c) for c in response] + [0]
        assert inputs.shape == targets.shape


class BigramModel(nn.Module):
    """Logits that depend only on the current token: a tiny trainable language model."""

    def __init__(self, vocab=8):
        super().__init__()
        self.table = nn.Embedding(vocab, vocab)

    def forward(self, ids):
        return self.table(ids)


def test_dpo_training_raises_the_margin_and_evaluation_reports_it():
    torch.manual_seed(2)
    policy = BigramModel()
    reference = BigramModel()
    reference.load_state_dict(policy.state_dict())
    items = [{"chosen": ([1, 2, 3], 1), "rejected": ([1, 4, 5], 1)}] * 4
    batch = preference_collate_fn(items, pad_token_id=0)
    before = evaluate_preferences([batch], policy, reference)
    assert before["margin"] == 0 and before["loss"] == pytest.approx(math.log(2))
    optimizer = torch.optim.SGD(policy.parameters(), lr=1.0)
    for _ in range(20):
        loss, _, _ = dpo_loss_batch(batch, policy, reference, beta=0.5)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = evaluate_preferences([batch], policy, reference, beta=0.5)
    assert after["margin"] > 0 and after["accuracy"] == 1 and after["loss"] < math.log(2)
    assert all(p.grad is None for p in reference.parameters())


# The book's names and parameters ---------------------------------------------------------------

def test_the_books_names_have_the_books_parameters():
    import inspect

    from llms_from_scratch import ch07 as book

    from ch07_instructions import instructions, judge

    for name in ("download_and_load_file", "format_input", "custom_collate_draft_1",
                 "custom_collate_draft_2", "custom_collate_fn", "check_if_running",
                 "query_model", "generate_model_scores"):
        module = judge if name in judge.__all__ else instructions
        ours = inspect.signature(getattr(module, name)).parameters
        theirs = inspect.signature(getattr(book, name)).parameters
        # the book's parameters first, in its order; anything more is optional
        assert list(ours)[:len(theirs)] == list(theirs), name
        assert all(p.default is not p.empty or p.kind is p.VAR_KEYWORD
                   for p in list(ours.values())[len(theirs):]), name


def test_the_books_download_and_load_file_works_from_the_mirror(tmp_path):
    from ch07_instructions.instructions import download_and_load_file

    url = ("https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/"
           "01_main-chapter-code/instruction-data.json")
    path = tmp_path / "instruction-data.json"
    data = download_and_load_file(path, url)
    assert len(data) == 1100 and path.exists()
    assert download_and_load_file(path, url) == data  # read from file_path the second time


def test_the_collate_drafts_pad_and_shift():
    from ch07_instructions.instructions import custom_collate_draft_1, custom_collate_draft_2

    batch = [[0, 1, 2], [3]]
    assert custom_collate_draft_1(batch, pad_token_id=9).tolist() == [[0, 1, 2], [3, 9, 9]]
    inputs, targets = custom_collate_draft_2(batch, pad_token_id=9)
    assert inputs.tolist() == [[0, 1, 2], [3, 9, 9]]
    assert targets.tolist() == [[1, 2, 9], [9, 9, 9]]


def test_check_if_running_finds_this_process():
    import psutil

    from ch07_instructions.judge import check_if_running

    # this process's own name: "python", or "pytest" when pytest runs as its own script
    assert check_if_running(psutil.Process().name())
    assert not check_if_running("no process has this name 7f3a")


def test_the_book_sized_judge_on_the_books_path_asks_and_reads_as_judge_py_does(monkeypatch):
    """7.8 shows a client of the book's size (cells ch07-043a and ch07-043c); judge.py's
    generate_model_scores must send the same prompt and read the same scores."""
    import nbformat

    from ch07_instructions import judge
    from shared import progress_bar
    from shared.data import PROJECT_ROOT

    nb = nbformat.read(PROJECT_ROOT / "ch07_instructions" / "instructions.ipynb", as_version=4)
    source = next(cell.source for cell in nb.cells if cell.get("id") == "ch07-043c")
    entry = {"instruction": "Name a colour.", "input": "", "output": "Blue.",
             "model_response": "Red."}
    namespace = {"format_input": format_input, "progress_bar": progress_bar, "test_data": [entry]}
    exec(source, namespace)
    for reply in ["87", " 100\n", "101", "about 50", "", "-3", "0"]:
        sent = []
        monkeypatch.setattr(judge, "query_model", lambda prompt, sent=sent, reply=reply, **_:
                            sent.append(prompt) or reply)
        assert judge.generate_model_scores([entry], progress=False) == [
            namespace["read_score"](reply)]
        assert sent == [namespace["judge_prompt"](entry)]
