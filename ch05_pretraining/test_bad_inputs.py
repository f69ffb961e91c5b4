"""Bad inputs to chapter 5 and to pretrain.py: clear errors, and nothing half-changed."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import tiktoken
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ch05_pretraining import pretrain
from ch05_pretraining.decoding import generate_text
from ch05_pretraining.training import (
    cosine_schedule,
    evaluate_losses,
    sample_text,
    train_model,
    train_model_simple_hooked,
)
from conftest import TINY_GPT as TINY
from conftest import tiny_gpt as tiny_model
from shared import sha256_of


def batches(n=2):
    ids = torch.arange(2 * 5).reshape(2, 5) % TINY["vocab_size"]
    return [(ids, (ids + 1) % TINY["vocab_size"])] * n


# generate ----------------------------------------------------------------------------------

PROMPT = torch.tensor([[1, 2, 3]])


@pytest.mark.parametrize("change", [
    {"max_new_tokens": -1}, {"max_new_tokens": 2.5},  # errors far away, naming neither
    {"context_size": 0}, {"context_size": -4}, {"context_size": 0, "use_cache": False},
    {"temperature": -1.0}, {"temperature": float("nan")}, {"repetition_penalty": 0},
    {"repetition_penalty": -1.0}, {"repetition_penalty": float("nan")},
    {"top_p": 0}, {"top_p": 9}, {"top_p": float("nan")}, {"min_p": 1.5}, {"min_p": -0.1},
])
def test_generate_names_a_bad_sampling_argument(change):
    args = {"max_new_tokens": 3, "context_size": 8, "temperature": 1.0, **change}
    with pytest.raises(ValueError, match=f"^{next(iter(change))} must be"):
        generate_text(tiny_model(), PROMPT, **args)


def test_a_negative_temperature_is_refused_in_words():
    with pytest.raises(ValueError, match=r"^temperature must be >= 0 \(0 is greedy\), got -1.0$"):
        generate_text(tiny_model(), PROMPT, 3, 8, temperature=-1.0)


@pytest.mark.parametrize("use_cache", [True, False])
def test_a_prompt_without_its_batch_axis_is_named(use_cache):
    """generate_text reads idx.shape[1] before the model's own check could say it: an
    IndexError naming neither the prompt nor the axis, without this."""
    with pytest.raises(ValueError, match=r"idx must have shape \(batch, tokens\).*got \(3,\): "
                                         r"add a batch axis with idx\.unsqueeze\(0\)"):
        generate_text(tiny_model(), PROMPT[0], 2, 8, use_cache=use_cache)


def test_an_id_outside_the_vocabulary_is_named():
    with pytest.raises(ValueError, match="token id 50 is outside the vocabulary"):
        generate_text(tiny_model(), torch.tensor([[1, 50]]), max_new_tokens=1, context_size=8)


# Batched decoding ----------------------------------------------------------------------------

def test_a_row_that_ends_is_padded_while_the_others_go_on():
    model, prompts = tiny_model(3), torch.tensor([[1, 2, 3], [4, 5, 6]])
    free = generate_text(model, prompts, 6, 8)
    eos_id = free[0, 4].item()  # the second token row 0 writes: it ends there
    assert eos_id not in free[1, 3:].tolist() and eos_id not in free[0, 3:4].tolist()
    batch = generate_text(model, prompts, 6, 8, eos_id=eos_id)
    alone = [generate_text(model, row[None], 6, 8, eos_id=eos_id)[0] for row in prompts]
    assert len(alone[0]) == 4 and len(alone[1]) == 9  # as a batch of one: eos not appended
    assert batch[0].tolist() == alone[0].tolist() + [eos_id] * 5  # padded with eos_id
    assert torch.equal(batch[1], alone[1])  # the other row went on, unchanged


@pytest.mark.parametrize("eos_id", ["<|endoftext|>", torch.tensor(7), -1, 50256])
def test_an_eos_id_that_is_not_a_token_id_is_refused(eos_id):  # most would never match
    with pytest.raises(ValueError, match="eos_id must be a token id in 0..49"):
        generate_text(tiny_model(), PROMPT, 3, 8, eos_id=eos_id)


def test_a_context_size_past_the_models_is_refused_before_generating():
    model = tiny_model()
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    with pytest.raises(ValueError, match=r"context_size must be in 1..8 \(a model's context "
                                         r"length; .*\), got 9"):
        generate_text(model, PROMPT, 3, context_size=9)
    assert calls == []


def test_a_function_from_ids_to_logits_without_a_context_size_is_refused_by_name():
    with pytest.raises(ValueError, match=r"context_size must be in 1..any .* got None"):
        generate_text(fixed_logits([0.0, 1.0]), PROMPT, 3)


def test_kv_caches_of_another_model_are_refused():
    model = tiny_model()
    for other in (tiny_model(n_layers=2), tiny_model(emb_dim=32)):
        caches = other.make_kv_caches()
        other(PROMPT, caches)  # filled with another model's keys
        with pytest.raises(ValueError, match="kv_caches must be the list this model's "
                                             "make_kv_caches returned"):
            model(PROMPT, caches)


def fixed_logits(values):
    """A 'model' that predicts the same logits after any prompt (generate accepts one)."""
    logits = torch.tensor(values, dtype=torch.float32)
    return lambda ids: logits.expand(ids.shape[0], ids.shape[1], len(values))


finite = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(finite, min_size=1, max_size=40),
       temperature=st.floats(1e-30, 100.0),
       top_k=st.none() | st.integers(1, 45),
       top_p=st.none() | st.floats(0.0, 1.0, exclude_min=True),
       seed=st.integers(0, 2**16))
@example(values=[-3.6219681476268306e-08, 0.0], temperature=2.0, top_k=None, top_p=0.25, seed=0)
def test_sampling_draws_only_from_the_kept_tokens(values, temperature, top_k, top_p, seed):
    torch.manual_seed(seed)
    out = generate_text(fixed_logits(values), torch.zeros(2, 1, dtype=torch.long), 1, 4,
                   temperature=temperature, top_k=top_k, top_p=top_p)
    # In float32, as generate computes: logits 4e-8 apart are a tie there, and both stay in.
    logits = torch.tensor(values, dtype=torch.float32)
    if top_k is not None:  # ties with the k-th largest stay in
        kth = torch.topk(logits, min(top_k, len(values))).values[-1]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    probs = torch.softmax(logits / temperature, dim=-1)
    for chosen in out[:, -1].tolist():
        assert 0 <= chosen < len(values) and logits[chosen] > -torch.inf
        assert probs[chosen] > 0 or probs.isnan().any()
        if top_p is not None:  # the mass of strictly more likely tokens is below top_p
            before = probs[probs > probs[chosen]].sum().item()
            assert before < top_p + 1e-4


@settings(max_examples=100, deadline=None)
@given(values=st.lists(finite, min_size=1, max_size=40, unique=True),
       temperature=st.floats(1e-30, 100.0), top_p=st.none() | st.floats(0.01, 1.0))
def test_top_k_1_is_greedy_on_any_logits(values, temperature, top_p):
    model = fixed_logits(values)
    prompt = torch.zeros(1, 1, dtype=torch.long)
    greedy = generate_text(model, prompt, 3, 4)
    assert torch.equal(generate_text(model, prompt, 3, 4, temperature=temperature, top_k=1,
                                top_p=top_p), greedy)
    assert greedy[0, -1].item() == int(np.argmax(values))


def test_a_top_p_too_small_for_float32_keeps_the_most_likely_token():
    # 5e-324 rounds to 0 in float32: the nucleus used to drop every token (nan probabilities)
    out = generate_text(fixed_logits([0.0, 2.0, 1.0]), PROMPT, 3, 8, temperature=1.0, top_p=5e-324)
    assert out[0, 3:].tolist() == [1] * 3


@pytest.mark.parametrize("temperature, dtype", [(1e-40, torch.float32), (1e-46, torch.float32),
                                                (1e-9, torch.float16), (5e-324, torch.bfloat16)])
def test_a_tiny_temperature_samples_the_most_likely_token_instead_of_failing(temperature, dtype):
    # logits / 1e-40 overflow to inf in float32; 1e-46 (or 1e-9 for float16 logits) rounds to 0
    # in the logits' dtype, and 0 / 0 is nan: softmax of either fails multinomial
    model = fixed_logits([1.0, 3.0, 2.0])
    out = generate_text(lambda ids: model(ids).to(dtype), PROMPT, 5, 8, temperature=temperature)
    assert out[0, 3:].tolist() == [1] * 5


# Counts ------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, error, message", [
    ({"warmup_steps": 3}, ValueError, r"warmup_steps must be in 0..total_steps \(2\), got 3"),
    ({"warmup_steps": -1}, ValueError, "warmup_steps"),
    ({"start_context": "Every effort"}, ValueError, "start_context needs a tokenizer"),
    ({"grad_accum_steps": 0}, ValueError, "grad_accum_steps"),
    ({"grad_accum_steps": -2}, ValueError, "grad_accum_steps"),  # one step an epoch, silently
    ({"start_step": -1}, ValueError, "start_step"),
    ({"max_grad_norm": 0.0}, ValueError, "max_grad_norm"),  # would zero every update
    ({"max_grad_norm": -1.0}, ValueError, "max_grad_norm"),  # would reverse it
    ({"max_grad_norm": float("nan")}, ValueError, "max_grad_norm"),
])
def test_train_model_refuses_bad_arguments_before_training(change, error, message):
    model = tiny_model()
    before = {name: t.clone() for name, t in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    good = {"n_epochs": 1, "eval_freq": 1, "eval_iter": 1, "start_context": None,
            "tokenizer": None, "warmup_steps": 0}
    with pytest.raises(error, match=message):
        train_model(model, batches(), batches(), optimizer, "cpu", **{**good, **change})
    assert all(torch.equal(t, before[name]) for name, t in model.state_dict().items())
    assert not optimizer.state  # no step was taken


def test_no_evaluation_needs_no_eval_iter():
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters())
    assert train_model_simple_hooked(model, batches(), [], optimizer, "cpu", 1, None, 0,
                                     progress=False) == ([], [], [])
    assert train_model(model, batches(), [], optimizer, "cpu", 1, None, 0, None, None, 0,
                       progress=False)[:3] == ([], [], [])


@pytest.mark.parametrize("args, error, message", [
    ({"total_steps": -10}, ValueError, "warmup_steps must be in 0..total_steps"),
    ({"warmup_steps": -1}, ValueError, "warmup_steps"),
    ({"warmup_steps": 11}, ValueError, r"warmup_steps must be in 0..total_steps \(10\), got 11"),
    ({"peak_lr": -1e-3}, ValueError, "peak_lr"),
    ({"peak_lr": float("nan")}, ValueError, "peak_lr"),
    ({"initial_lr": -1e-5}, ValueError, "initial_lr"),
    ({"min_lr": -1e-5}, ValueError, "min_lr"),
    ({"min_lr": 0.1}, ValueError, r"peak_lr \(0.001\) must be >= 0, min_lr at most peak_lr"),
])
def test_cosine_schedule_refuses_bad_arguments(args, error, message):
    with pytest.raises(error, match=message):
        cosine_schedule(**{"peak_lr": 1e-3, "total_steps": 10, **args})


def test_cosine_schedule_allows_warmup_over_every_step():
    schedule = cosine_schedule(1.0, total_steps=4, warmup_steps=4)
    assert [schedule(step) for step in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]


# pretrain.py -------------------------------------------------------------------------------

SCRIPT = ["--emb-dim", "32", "--n-layers", "1", "--n-heads", "2", "--context", "32",
          "--batch", "2", "--lr", "3e-3", "--min-lr", "3e-4", "--warmup-steps", "2",
          "--eval-every", "5", "--eval-batches", "2", "--quiet"]


@pytest.mark.parametrize("flags", [  # number_arg's wording is pinned in test_pretrain.py
    ["--emb-dim", "0"], ["--n-layers", "2.5"], ["--n-heads", "-2"], ["--context", "0"],
    ["--drop-rate", "nan"], ["--lr", "inf"], ["--lr", "1e39"], ["--min-lr=-1e-5"],
    ["--warmup-steps", "-1"], ["--weight-decay", "nan"], ["--max-grad-norm=-inf"],
    ["--val-fraction", "1"], ["--eval-batches", "0"], ["--checkpoint-every", "0"],
    ["--seed", str(2**32)], ["--stop-after", "-1"],
])
def test_every_numeric_flag_is_checked_before_reading_data(flags, texts, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(pretrain.UsageError, match=f"argument {flags[0].split('=')[0]}: "):
        pretrain.main(["--data", str(texts), "--out", str(out), *flags])
    assert not out.exists()


def test_out_must_not_be_a_file(texts, tmp_path):
    (tmp_path / "run").write_text("")
    with pytest.raises(pretrain.UsageError, match="--out .*run cannot be made"):
        pretrain.main(["--data", str(texts), "--out", str(tmp_path / "run")])


def test_a_non_utf8_file_is_named(tmp_path):
    (tmp_path / "good.txt").write_text("Hello there.", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("Caf\u00e9 cr\u00e8me".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt is not UTF-8 text \(byte 3: "
                                         r"invalid continuation byte\); convert it"):
        pretrain.tokenize_folder(tmp_path, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()
    result = subprocess.run([sys.executable, str(pretrain.__file__), "--data", str(tmp_path),
                             "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert re.match(r"pretrain.py: .*latin1.txt is not UTF-8 text", result.stderr)


@pytest.mark.parametrize("name, data", [
    ("program.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00"),  # bytes valid as UTF-8, yet binary
    ("utf16.txt", "Hello".encode("utf-16-le")),
])
def test_a_binary_or_utf16_file_is_named_not_tokenised(tmp_path, name, data):
    (tmp_path / "good.txt").write_text("Hello there.", encoding="utf-8")
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ValueError, match=rf"{name} holds a NUL character \(at character \d+\): "
                                         r"a binary or UTF-16 file\?"):
        pretrain.tokenize_folder(tmp_path, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()


def test_an_end_of_text_written_in_a_file_is_the_separator_token(tmp_path):
    (tmp_path / "joined.txt").write_text("One.<|endoftext|>Two.", encoding="utf-8")
    tokens = pretrain.tokenize_folder(tmp_path, tmp_path / "out.bin")
    assert list(tokens).count(50256) == 2  # the one written, and the one after the file


def test_too_small_a_split_is_named(texts, tmp_path):
    with pytest.raises(ValueError, match="the validation split has [0-9,]+ tokens, too few for "
                                         "one window of --context 2000"):
        pretrain.main(["--data", str(texts), "--out", str(tmp_path), "--context", "2000",
                       "--val-fraction", "0.05", "--emb-dim", "8", "--n-heads", "2"])


def damage_truncate(token_file, manifest):
    token_file.write_bytes(token_file.read_bytes()[:1000])


def damage_in_place(token_file, manifest):
    data = bytearray(token_file.read_bytes())
    data[100:104] = b"\xff\xff\xff\xff"
    token_file.write_bytes(bytes(data))


def damage_manifest(token_file, manifest):
    manifest.write_text('{"fingerprint": ')


def old_manifest(token_file, manifest):  # no checksum: cannot be trusted
    recorded = json.loads(manifest.read_text())
    del recorded["sha256"]
    manifest.write_text(json.dumps(recorded))


def damage_remove_tokens(token_file, manifest):
    token_file.unlink()


@pytest.mark.parametrize("damage", [damage_truncate, damage_in_place, damage_manifest,
                                    old_manifest, damage_remove_tokens])
def test_a_damaged_token_cache_is_rebuilt(damage, texts, tmp_path):
    token_file, manifest = tmp_path / "tokens.bin", tmp_path / "tokens.json"
    good = np.array(pretrain.tokenize_folder(texts, token_file))
    damage(token_file, manifest)
    assert np.array_equal(pretrain.tokenize_folder(texts, token_file), good)
    recorded = json.loads(manifest.read_text())
    assert recorded["tokens"] == len(good)
    assert recorded["sha256"] == sha256_of(token_file)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.bin", "tokens.json"]


def test_the_manifest_is_written_atomically(texts, tmp_path, monkeypatch):
    token_file, manifest = tmp_path / "tokens.bin", tmp_path / "tokens.json"
    pretrain.tokenize_folder(texts, token_file)
    before = manifest.read_text()
    damage_truncate(token_file, manifest)
    real_replace = pretrain.os.replace

    def fail_for_the_manifest(src, dst):
        if str(dst).endswith(".json"):
            raise OSError("disk full")
        real_replace(src, dst)
    monkeypatch.setattr(pretrain.os, "replace", fail_for_the_manifest)
    with pytest.raises(OSError, match="disk full"):
        pretrain.tokenize_folder(texts, token_file)
    assert manifest.read_text() == before  # the old one, whole; no half-written file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.bin", "tokens.json"]


def logged_steps(out):
    return [json.loads(line)["step"] for line in (out / "log.jsonl").open()]


@pytest.mark.parametrize("change, message", [
    (["--seed", "7"], "--seed 7 differs from the run's 123"),
    (["--val-fraction", "0.2"], "--val-fraction 0.2 differs from the run's 0.1"),
])
def test_resume_checks_the_seed_and_the_split(change, message, texts, tmp_path):
    common = ["--data", str(texts), *SCRIPT, "--steps", "2", "--out", str(tmp_path)]
    pretrain.main(common)
    saved = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(pretrain.UsageError, match=f"with its own settings: {re.escape(message)}"):
        pretrain.main([*common, *change, "--resume"])
    assert (tmp_path / "checkpoint.pt").read_bytes() == saved


def test_resume_checks_the_data(texts, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text((texts / "a.txt").read_text(), encoding="utf-8")
    common = ["--data", str(data), *SCRIPT, "--steps", "2", "--out", str(tmp_path / "run")]
    pretrain.main(common)
    (data / "a.txt").write_text((texts / "b.txt").read_text(), encoding="utf-8")
    with pytest.raises(ValueError, match="was trained with data_sha256='"):
        pretrain.main([*common, "--resume"])


def test_resuming_a_finished_run_says_nothing_is_left(texts, tmp_path):
    common = ["--data", str(texts), *SCRIPT, "--steps", "2", "--out", str(tmp_path)]
    pretrain.main(common)
    with pytest.raises(ValueError, match="checkpoint at step 1: nothing left to train"):
        pretrain.main([*common, "--resume"])


def test_the_log_has_each_step_once_after_resuming_from_an_older_checkpoint(texts, tmp_path):
    common = ["--data", str(texts), *SCRIPT, "--steps", "12", "--checkpoint-every", "4",
              "--out", str(tmp_path)]
    pretrain.main([*common, "--stop-after", "6"])
    at_step_6 = (tmp_path / "checkpoint.pt").read_bytes()
    pretrain.main([*common, "--resume", "--stop-after", "10"])
    assert logged_steps(tmp_path) == [0, 5, 10]
    # As if the run had died after logging step 10 but before checkpointing it, mid-line:
    (tmp_path / "checkpoint.pt").write_bytes(at_step_6)
    with (tmp_path / "log.jsonl").open("a") as log:
        log.write('{"step": 11, "train_lo')
    pretrain.main([*common, "--resume"])
    assert logged_steps(tmp_path) == [0, 5, 10]


# train_model's evaluation and samples: the model's mode ------------------------------------

@pytest.mark.parametrize("training", [True, False])
def test_evaluation_and_samples_leave_the_model_in_the_mode_it_was_in(training):
    model = tiny_model().train(training)
    evaluate_losses(model, batches(), batches(), "cpu", eval_iter=1)
    assert model.training is training and all(m.training is training for m in model.modules())
    assert sample_text(model, FakeTokenizer(), "cpu", "ab", max_new_tokens=1).startswith("ab")
    assert model.training is training


class FakeTokenizer:
    """Ids are letters' positions: enough for a 50-token model."""

    def encode(self, text, allowed_special=()):
        return [ord(c) - ord("a") for c in text]

    def decode(self, ids):
        return "".join(chr(i % 26 + ord("a")) for i in ids)


# An empty prompt ---------------------------------------------------------------------------

def test_an_empty_prompt_is_refused_as_empty_not_for_its_dtype():
    from shared import generate_text_simple, text_to_token_ids

    ids = text_to_token_ids("", tiktoken.get_encoding("gpt2"))
    assert ids.shape == (1, 0)
    empty = r"idx must have shape \(batch, tokens\), with at least one token \(a prompt cannot " \
            r"be empty\), got \(1, 0\)$"
    for prompt in (ids, torch.tensor([[]])):  # torch.tensor([[]]) is float32
        with pytest.raises(ValueError, match=empty):
            generate_text(tiny_model(), prompt, max_new_tokens=2)
        with pytest.raises(ValueError, match=empty):
            generate_text_simple(tiny_model(), prompt, 2, 8)


# Nothing a learner has is lost or poisoned --------------------------------------------------

def nan_batches():
    model = tiny_model()
    (inputs, targets), = batches(1)
    return model, [(inputs, targets), (inputs, torch.full_like(targets, -100))]  # 0/0 = nan


@pytest.mark.parametrize("loop", ["simple", "appendix D", "appendix D, accumulated"])
def test_a_loss_that_becomes_nan_stops_training_at_that_step(loop):
    model, loader = nan_batches()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    steps = []
    if loop == "simple":
        run = lambda: train_model_simple_hooked(model, loader, [], optimizer, "cpu", 2, None,  # noqa
                                                1, progress=False)
        where = "at step 1"
    else:
        accumulate = 2 if "accumulated" in loop else 1
        run = lambda: train_model(  # noqa: E731
            model, loader, [], optimizer, "cpu", 2, None, 1, None, None, 0,
            grad_accum_steps=accumulate, progress=False,
            after_step=lambda step, *_: steps.append(step))
        where = "at step 0" if accumulate == 2 else "at step 1"
    after_first = {}
    original_step = optimizer.step

    def step_and_remember(*args, **kwargs):  # the weights after each update
        original_step(*args, **kwargs)
        after_first.update({name: t.clone() for name, t in model.state_dict().items()})
    optimizer.step = step_and_remember
    before = {name: t.clone() for name, t in model.state_dict().items()}
    with pytest.raises(FloatingPointError, match=rf"^the loss became nan {where}: training "
                                                 "stopped there"):
        run()
    expected = before if where == "at step 0" else after_first
    assert all(torch.equal(t, expected[name]) for name, t in model.state_dict().items())
    # checked after backward (a GPU has it queued before the loss is read), not before
    assert all(p.grad is not None for p in model.parameters())
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())
    if loop != "simple":  # no after_step (where pretrain.py checkpoints) for the nan step
        assert steps == ([] if where == "at step 0" else [0])


def test_a_failed_download_and_load_gpt2_leaves_no_folder(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    from ch05_pretraining import pretraining

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    with pytest.raises(urllib.error.URLError):
        pretraining.download_and_load_gpt2("124M", tmp_path / "gpt2")
    assert list(tmp_path.iterdir()) == []  # no models_dir/124M with hparams.json alone
