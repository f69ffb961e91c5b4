"""What running chapter 7 on a GPU needs, checked on the CPU: tensors made on the device they
are given (the `meta` device stands in, where nothing reads values), and the GPU memory that
section 7.9 works out, recounted from the models and the data.

shared/test_devices.py runs the chapter's functions and exercise checks on a stand-in GPU."""

import json
import math

import nbformat
import pytest
import torch

from ch07_instructions import instructions
from ch07_instructions.instructions import (
    PreferenceDataset,
    custom_collate_draft_1,
    custom_collate_draft_2,
    custom_collate_fn,
    dpo_loss,
    generate_responses,
    load_instruction_data,
    preference_collate_fn,
    sequence_logprobs,
    split_instruction_data,
)
from conftest import tiny_gpt
from shared import GPTModel, fetch, gpt2_config
from shared.data import PROJECT_ROOT


META = torch.device("meta")


# Devices -----------------------------------------------------------------------------------

def test_the_collate_functions_put_their_tensors_on_the_device_they_are_given():
    batch = [[1, 2, 3], [4]]
    assert custom_collate_draft_1(batch, device=META).device == META
    for collate in (custom_collate_draft_2, custom_collate_fn):
        inputs, targets = collate(batch, device=META)
        assert inputs.device == targets.device == META and inputs.shape == (2, 3)
    pairs = [{"chosen": ([1, 2, 3], 2), "rejected": ([1, 2, 4, 5], 2)}]
    for inputs, targets in preference_collate_fn(pairs, device=META).values():
        assert inputs.device == targets.device == META


def test_sequence_log_probabilities_and_the_dpo_loss_stay_on_their_inputs_device():
    model = tiny_gpt(vocab_size=300, context_length=16).to(META)
    inputs, targets = custom_collate_fn([([1, 2, 3, 4], 2), ([5, 6], 1)], device=META)
    logps = sequence_logprobs(model(inputs), targets)
    assert logps.device == META and logps.shape == (2,)
    loss, chosen, rejected = dpo_loss(logps, logps, logps, logps)
    assert loss.device == chosen.device == rejected.device == META


class LetterTokenizer:
    def encode(self, text, allowed_special=None):
        return [ord(c) % 300 for c in text]


def test_generate_responses_builds_its_prompts_on_the_device_it_is_given(monkeypatch):
    # A model on `meta` cannot be decoded (it has no values): keep what generation returns.
    generated = []
    monkeypatch.setattr(instructions, "token_ids_to_text",
                        lambda ids, tokenizer: generated.append(ids) or "")
    model = tiny_gpt(vocab_size=300, context_length=512).to(META)
    entry = {"instruction": "Say hi.", "input": "", "output": "Hi."}
    prompt_length = len(LetterTokenizer().encode(instructions.format_input(entry)
                                                 + instructions.RESPONSE_HEADER))
    # eos_id=None: testing for the end of text would read values
    generate_responses(model, [entry], LetterTokenizer(), META, max_new_tokens=3, eos_id=None,
                       progress=False)
    assert generated[0].device == META and generated[0].shape == (1, prompt_length + 3)
    with pytest.raises(RuntimeError, match="device"):  # a prompt left on the CPU cannot join
        generate_responses(model, [entry], LetterTokenizer(), "cpu", max_new_tokens=3,
                           eos_id=None, progress=False)


# Section 7.9's GPU memory ------------------------------------------------------------------

GB = 1e9
FLOAT = 4  # bytes: everything is float32
SIZES = {"medium": "gpt2-medium (355M)", "small": "gpt2-small (124M)"}


def gpt2_as_load_gpt2_builds_it(size):
    """The model load_gpt2 makes (qkv_bias=True, untied), on `meta`: shapes, no values."""
    with torch.device("meta"):
        return GPTModel({**gpt2_config(SIZES[size]), "qkv_bias": True, "drop_rate": 0.0})


def test_the_parameter_and_mask_counts():
    medium, small = gpt2_as_load_gpt2_builds_it("medium"), gpt2_as_load_gpt2_builds_it("small")
    assert sum(p.numel() for p in medium.parameters()) == 406_286_336
    assert sum(p.numel() for p in small.parameters()) == 163_037_184
    assert sum(b.numel() for b in medium.buffers()) == 24 * 1024**2  # one causal mask a block
    assert sum(b.numel() for b in small.buffers()) == 12 * 1024**2


def saved_for_backward(model, batch, length):
    """How many numbers a forward pass through `model` keeps for its backward pass (each
    storage once; the parameters, which exist anyway, left out)."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def keep(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes() // tensor.element_size()
        return tensor

    ids = torch.randint(0, model.cfg["vocab_size"], (batch, length),
                        generator=torch.Generator().manual_seed(0))
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        sequence_logprobs(model(ids), ids)
    return sum(saved.values())


def test_what_a_training_step_keeps_per_token_is_the_count_the_text_gives():
    """Per token: each block 32 x emb_dim numbers plus n_heads attention weights per position;
    the output the vocabulary's log-probabilities plus 4 x emb_dim. A narrow model, two blocks
    against one, shows it (up to a few numbers per token: the layer norms' means and
    variances, the mask)."""
    emb_dim, n_heads, vocab, batch, length = 64, 4, 1000, 2, 20
    cfg = gpt2_config(vocab_size=vocab, context_length=32, emb_dim=emb_dim, n_heads=n_heads,
                      n_layers=1, drop_rate=0.0, qkv_bias=True)
    one = saved_for_backward(GPTModel(cfg).train(), batch, length)
    two = saved_for_backward(GPTModel({**cfg, "n_layers": 2}).train(), batch, length)
    tokens = batch * length
    block, outside = (two - one) / tokens, (2 * one - two) / tokens
    assert block == pytest.approx(32 * emb_dim + n_heads * length, rel=0.01)
    assert outside == pytest.approx(vocab + 4 * emb_dim, rel=0.01)


@pytest.fixture(scope="module")
def book_lengths(tiktoken_gpt2):
    """The longest training text, chosen and rejected sequence of the book's split."""
    train, _, _ = split_instruction_data(load_instruction_data(), seed=None)
    texts = instructions.InstructionDataset(train, tiktoken_gpt2).encoded_texts
    preferences = json.loads(fetch("instruction-data-with-preference").read_text(encoding="utf-8"))
    pairs, _, _ = split_instruction_data(preferences, seed=None)
    items = PreferenceDataset(pairs, tiktoken_gpt2, keep_identical=True).items
    return {"text": max(len(ids) for ids in texts),
            "chosen": max(len(item["chosen"][0]) for item in items),
            "rejected": max(len(item["rejected"][0]) for item in items)}


def activations(cfg, batch, length):
    """Bytes a training step on `batch` sequences padded to `length` keeps (the count above)."""
    per_token = (cfg["n_layers"] * (32 * cfg["emb_dim"] + cfg["n_heads"] * length)
                 + cfg["vocab_size"] + 4 * cfg["emb_dim"])
    return batch * length * per_token * FLOAT


def memory(size, lengths):
    """Section 7.9's count, in GB: the peak of 7.10's table and the earlier stages."""
    model = gpt2_as_load_gpt2_builds_it(size)
    weights = sum(p.numel() for p in model.parameters()) * FLOAT
    masks = sum(b.numel() for b in model.buffers()) * FLOAT
    dpo_step = (activations(model.cfg, 8, lengths["chosen"])
                + activations(model.cfg, 8, lengths["rejected"]))
    training_step = activations(model.cfg, 8, lengths["text"])
    # model, base_model, masked_model, reference, policy; three AdamW (two averages each);
    # the gradients of model, masked_model and the policy
    table = {"weights and masks": 5 * (weights + masks), "optimizer states": 3 * 2 * weights,
             "gradients": 3 * weights, "activations": dpo_step}
    stages = {
        "7.6": 2 * (weights + masks) + 2 * weights + weights + training_step,
        "7.6.1": 3 * (weights + masks) + 2 * 2 * weights + 2 * weights + training_step,
        # model, base_model, masked_model, reloaded, and the loaded weights (masks included)
        "7.7": 5 * (weights + masks) + 2 * 2 * weights + 2 * weights,
    }
    return ({name: value / GB for name, value in table.items()},
            sum(table.values()) / GB, {name: value / GB for name, value in stages.items()})


def test_section_7_9_states_the_memory_that_this_count_gives(book_lengths):
    assert book_lengths == {"text": 91, "chosen": 114, "rejected": 99}
    nb = nbformat.read(PROJECT_ROOT / "ch07_instructions" / "instructions.ipynb", as_version=4)
    text = next(cell.source for cell in nb.cells if cell.get("id") == "ch07-046b")
    rows = {"weights and masks": "five models' weights and masks",
            "optimizer states": "three optimizers' states", "gradients": "three models' gradients",
            "activations": "one DPO step's activations"}
    columns = {}
    for size in SIZES:
        table, total, stages = memory(size, book_lengths)
        columns[size] = [f"{table[name]:.1f} GB" for name in rows] + [f"about {total:.0f} GB"]
        assert math.isclose(sum(table.values()), total)
        if size == "medium":
            assert [f"{stages[stage]:.1f}" for stage in stages] == ["10.9", "17.5", "18.4"]
            assert "about 11 GB while section 7.6 trains, 17.5 GB in 7.6.1" in " ".join(
                text.split())
            assert "18.4 GB while 7.7 reloads" in " ".join(text.split())
            assert total == pytest.approx(29.3, abs=0.05)
        else:
            assert total == pytest.approx(11.9, abs=0.05)
    columns["medium"].insert(0, "406,286,336")
    columns["small"].insert(0, "163,037,184")
    rows = {"parameters": "parameters of one model", **rows}
    for k, row in enumerate([*rows.values(), "**in all**"]):
        line = next(line for line in text.splitlines() if line.startswith(f"| {row} |"))
        cells = [cell.strip().strip("*") for cell in line.strip("|").split("|")[1:]]
        assert cells == [columns["medium"][k], columns["small"][k]], row


def settings_cell(environment, monkeypatch):
    """Run the notebook's first code cell with `environment`; its variables."""
    for name in ("LLM_COURSE_GPT2_SMALL", "LLM_COURSE_GPT2_CHECKPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    nb = nbformat.read(PROJECT_ROOT / "ch07_instructions" / "instructions.ipynb", as_version=4)
    namespace = {}
    exec(next(cell.source for cell in nb.cells if cell.get("id") == "ch07-001"), namespace)
    return namespace


def test_the_switch_to_gpt2_small_is_off_unless_set_and_refuses_other_values(monkeypatch):
    assert settings_cell({}, monkeypatch)["GPT2_SOURCE"] == "gpt2-medium (355M)"
    assert settings_cell({"LLM_COURSE_GPT2_SMALL": ""}, monkeypatch)["GPT2_SOURCE"] == (
        "gpt2-medium (355M)")
    small = {"LLM_COURSE_GPT2_SMALL": "1"}
    assert settings_cell(small, monkeypatch)["GPT2_SOURCE"] == "gpt2-small (124M)"
    own = {**small, "LLM_COURSE_GPT2_CHECKPOINT": "/my/gpt2"}  # a checkpoint is used as given
    assert settings_cell(own, monkeypatch)["GPT2_SOURCE"] == "/my/gpt2"
    with pytest.raises(ValueError, match="LLM_COURSE_GPT2_SMALL must be 0 or 1, got 'yes'"):
        settings_cell({"LLM_COURSE_GPT2_SMALL": "yes"}, monkeypatch)
