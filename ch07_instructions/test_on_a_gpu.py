"""What running chapter 7 on a GPU needs, checked on the CPU: tensors made on the device they
are given (the `meta` device stands in, where nothing reads values), and the GPU memory that
the README measures for chapter 7, counted from the models and the data, and counted again
by PyTorch's MemTracker as the notebook's steps run on fake tensors.

shared/test_devices.py runs the chapter's functions and exercise checks on a stand-in GPU."""

import ast
import json
import os
import sys

import nbformat
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.mem_tracker import MemTracker

from ch06_classification import lora
from ch07_instructions import instructions
from ch07_instructions.dpo import (
    PreferenceDataset,
    dpo_loss,
    preference_collate_fn,
)
from ch07_instructions.evaluation import (
    sequence_logprobs,
)
from ch07_instructions.instructions import (
    custom_collate_draft_1,
    custom_collate_draft_2,
    custom_collate_fn,
    generate_responses,
    load_instruction_data,
    split_instruction_data,
)
from conftest import tiny_gpt
from shared import (
    GPTModel,
    fetch,
    gpt2_config,
    replace_linear_with_lora,
    train_model,
)
from shared import (
    train_model_simple_hooked as train_model_simple,
)
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
    # On the stand-in GPU (generate refuses a model on `meta`: it has no values). The ids are
    # kept as generation returns them, for their device and length.
    from shared.tooling.fake_gpu import FAKE_GPU

    generated = []
    monkeypatch.setattr(instructions, "token_ids_to_text",
                        lambda ids, tokenizer: generated.append(ids) or "")
    model = tiny_gpt(vocab_size=300, context_length=512).to(FAKE_GPU)
    entry = {"instruction": "Say hi.", "input": "", "output": "Hi."}
    prompt_length = len(LetterTokenizer().encode(instructions.format_input(entry)
                                                 + instructions.RESPONSE_HEADER))
    # eos_id=None: all 3 new tokens, whatever they are
    generate_responses(model, [entry], LetterTokenizer(), FAKE_GPU, max_new_tokens=3,
                       eos_id=None, progress=False)
    assert generated[0].device == FAKE_GPU and generated[0].shape == (1, prompt_length + 3)
    with pytest.raises(RuntimeError, match="device"):  # a prompt left on the CPU cannot join
        generate_responses(model, [entry], LetterTokenizer(), "cpu", max_new_tokens=3,
                           eos_id=None, progress=False)


# Chapter 7's GPU memory (README.md, "Which profile fits a free T4") ------------------------

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


def test_what_a_training_step_keeps_per_token_is_the_count_this_file_uses():
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
    """The count behind the README's measured peaks for chapter 7, in GB: what a DPO step in
    7.10 holds at its peak, by kind of tensor, and the peak of each stage of each notebook.
    Each notebook runs in a fresh kernel: it holds only what it made itself."""
    model = gpt2_as_load_gpt2_builds_it(size)
    cfg = model.cfg
    weights = sum(p.numel() for p in model.parameters()) * FLOAT
    masks = sum(b.numel() for b in model.buffers()) * FLOAT
    copy = weights + masks  # a model: its weights and causal masks
    # beyond_3_dpo: run.base_model, the reference (run.model) and the policy; the policy's AdamW
    # (two averages) and gradients, which the DPO loop clears only after the forward pass; the
    # activations; the reference's logits and their log-probabilities while it scores the
    # rejected responses
    table = {"weights and masks": 3 * copy, "optimizer states": 2 * weights,
             "gradients": weights,
             "activations": (activations(cfg, 8, lengths["chosen"])
                             + activations(cfg, 8, lengths["rejected"])),
             "reference logits": 2 * 8 * lengths["rejected"] * cfg["vocab_size"] * FLOAT}
    # Chapter 5's loop frees the gradients before the forward pass, so its step peaks in the
    # update: weights, masks, gradients, two averages and the multi-tensor update's temporary
    # copy of the weights; the activations, gone by then, are smaller than what replaces them.
    assert activations(cfg, 8, lengths["text"]) < 2 * weights
    step = copy + weights + 2 * weights + weights
    trained = copy + weights + 2 * weights  # after training, gradients kept
    logits = 8 * lengths["text"] * cfg["vocab_size"] * FLOAT
    stages = {
        ("instructions", "7.6"): step + copy,  # and base_model
        # model; base_model, reloaded, and the loaded weights (masks included)
        ("instructions", "7.7"): trained + 3 * copy,
        # model, base_model, reloaded, lora_model; LoRA's step peaks as its backward pass
        # begins: the activations and two gradients the size of the logits (LoRA's own
        # parameters, averages and gradients are 0.2% of the model's: left out)
        ("instructions", "solution 7.4"): (trained + 3 * copy + activations(cfg, 8, lengths["text"])
                                           + 2 * logits),
        # finetuned_instruction_run: base_model, the finetuned copy, the loaded weights
        ("beyond_1_measuring", "loading"): 3 * copy,
        ("beyond_1_measuring", "7.6.1"): step + 2 * copy,  # base_model and model beside it
        ("beyond_3_dpo", "loading"): 3 * copy,
        ("beyond_3_dpo", "7.10"): sum(table.values()),
    }
    return {name: value / GB for name, value in table.items()}, {
        name: value / GB for name, value in stages.items()}


# The README's rows: the peaks that benchmark_gpu_memory.py measures, notebook by notebook
README_ROWS = {
    ("instructions", "7.6"): "instructions.ipynb: 7.6, finetuning",
    ("instructions", "7.7"): "instructions.ipynb: 7.7, saving and reloading the weights",
    ("instructions", "solution 7.4"): "instructions.ipynb: Solution 7.4, LoRA",
    ("beyond_1_measuring", "7.6.1"): "beyond_1_measuring.ipynb: 7.6.1, the masked run",
    ("beyond_3_dpo", "7.10"): "beyond_3_dpo.ipynb: 7.10, a DPO step",
}


def test_chapter_7s_measured_peaks_agree_with_this_count(book_lengths):
    """The README states the peaks that benchmark_gpu_memory.py measured on a GPU, and that
    they agree with this count to within 4%; GPT-2 medium's count is the one the rest of this
    file checks, tensor by tensor."""
    assert book_lengths == {"text": 91, "chosen": 114, "rejected": 99}
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    text = readme[readme.index("Chapter 7's memory, notebook by notebook"):]
    assert "agree with the measurement to within 4%" in " ".join(text.split())
    counted = {size: memory(size, book_lengths)[1] for size in SIZES}
    assert [f"{counted['medium'][stage]:.1f}" for stage in README_ROWS] == [
        "10.0", "11.8", "14.6", "11.7", "16.4"]
    for stage, row in README_ROWS.items():
        line = next(line for line in text.splitlines() if line.startswith(f"| {row} |"))
        stated = [float(cell.strip().removesuffix(" GB"))
                  for cell in line.strip("|").split("|")[1:]]
        for size, measured in zip(SIZES, stated):
            assert counted[size][stage] == pytest.approx(measured, rel=0.04), (size, stage)


def test_chapter_5s_loops_free_the_gradients_before_each_forward_pass_and_keep_the_last():
    """Where this count puts the gradients of sections 7.6 and 7.6.1 (chapter 5's
    train_model_simple and train_model, as the notebook calls them), and that the DPO loop of
    7.10 clears them after its forward."""
    for loop in ("train_model_simple", "train_model"):
        model = tiny_gpt(vocab_size=300, context_length=16).train()
        grads_at_forward = []
        model.register_forward_pre_hook(lambda module, args, seen=grads_at_forward: seen.append(
            [p.grad is None for p in module.parameters()]))
        batches = [custom_collate_fn([[1, 2, 3, 4], [5, 6, 7]], pad_token_id=0) for _ in range(3)]
        optimizer = torch.optim.AdamW(model.parameters())
        if loop == "train_model_simple":  # section 7.6
            train_model_simple(model, batches, [], optimizer, "cpu", num_epochs=1, eval_freq=None,
                               eval_iter=1)
        else:  # section 7.6.1
            train_model(model, batches, [], optimizer, "cpu", n_epochs=1, eval_freq=None,
                        eval_iter=1, start_context=None, tokenizer=None, warmup_steps=0,
                        lr_schedule=lambda step: 1e-3, max_grad_norm=None, progress=False)
        assert len(grads_at_forward) == 3 and all(all(step) for step in grads_at_forward), loop
        assert all(p.grad is not None for p in model.parameters()), loop
    nb = nbformat.read(PROJECT_ROOT / "ch07_instructions" / "beyond_3_dpo.ipynb", as_version=4)
    dpo = next(cell.source for cell in nb.cells if cell.get("id") == "ch07-137")
    assert (dpo.index("dpo_loss_batch(") < dpo.index("dpo_optimizer.zero_grad()")
            < dpo.index("loss.backward()") < dpo.index("dpo_optimizer.step()"))


def tracked_peaks(size, lengths, monkeypatch):
    """GB at the peak of each stage of chapter 7's notebooks, their steps run on fake tensors
    (shapes, no values) while PyTorch's MemTracker counts the tensors alive; each notebook
    starts with nothing, as in its own kernel. A copy of a model is a new model of the same size
    (deepcopy under FakeTensorMode gives tensors of another fake mode), as a copy holds weights
    and masks and no gradients."""
    # The training loop reads each loss's value to stop at a nan (check_finite): fake tensors
    # have none, and reading a number allocates nothing the count would miss
    # (in the modules of both loops: chapter 5 may define them in different modules)
    for loop in (train_model, train_model_simple):
        monkeypatch.setattr(sys.modules[loop.__module__], "check_finite",
                            lambda name, value, **where: value)
    # LoRA's layers are made where the model is already: nothing to move
    monkeypatch.setattr(lora.LoRALayer, "to", lambda self, device: self)
    cfg = gpt2_as_load_gpt2_builds_it(size).cfg
    peaks = {}

    def batch(length):  # 8 sequences padded to `length`; the targets' -100s do not matter here
        ids = torch.randint(0, cfg["vocab_size"], (8, length))
        return ids, ids.clone()

    def adamw(model, **settings):  # foreach: CUDA's default, not that of these CPU tensors
        return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                 foreach=True, **settings)

    def train(model):
        """A training step of sections 7.6 and 7.6.1 (train_model_simple's and train_model's
        steps hold the same tensors), on one of its longest batches: AdamW's first step makes
        its averages before its update, so it peaks as every later step does."""
        optimizer = adamw(model, lr=5e-5, weight_decay=0.1)
        train_model(model, [batch(lengths["text"])], [], optimizer, "cpu", n_epochs=1,
                    eval_freq=None, eval_iter=1, start_context=None, tokenizer=None,
                    warmup_steps=0, lr_schedule=lambda step: 5e-5, max_grad_norm=None,
                    progress=False)
        return optimizer

    def reloaded(saved):  # a copy of base_model, and torch.load(path, map_location=device)
        model = GPTModel(cfg)
        model.load_state_dict({name: t.clone() for name, t in saved.state_dict().items()})
        return model

    def notebook(name):
        """A fresh kernel: a new fake mode and tracker; stage(key) records the peak of the
        tracker's last `with` block."""
        tracker = MemTracker()
        # Totals only: the per-module statistics refuse a module called twice in a step, as
        # the policy is (chosen and rejected responses).
        for hook in ("_pre_fw_hook", "_post_fw_hook", "_pre_bw_hook", "_post_bw_hook"):
            setattr(tracker, hook, lambda *args: None)

        def stage(key):
            peaks[name, key] = sum(dev["Total"] for dev in
                                   tracker.get_tracker_snapshot("peak").values()) / GB
        return tracker, stage

    with FakeTensorMode():  # instructions.ipynb
        tracker, stage = notebook("instructions")
        with tracker:
            model = GPTModel(cfg)
            base_model = GPTModel(cfg).eval()
            optimizer = train(model)  # noqa: F841 (kept, as there)
        stage("7.6")
        with tracker:
            saved_copy = reloaded(model)  # noqa: F841 (kept, as there)
        stage("7.7")
        with tracker:  # Solution 7.4: LoRA on a frozen copy of base_model, 41 steps
            lora_model = GPTModel(cfg).requires_grad_(False)
            replace_linear_with_lora(lora_model, rank=8, alpha=16)
            lora_optimizer = adamw(lora_model, lr=5e-5, weight_decay=0.1)
            lora_model.train()
            for inputs, targets in [batch(lengths["text"])] * 2:
                loss = torch.nn.functional.cross_entropy(lora_model(inputs).flatten(0, 1),
                                                         targets.flatten())
                lora_optimizer.zero_grad()
                loss.backward()
                lora_optimizer.step()
        stage("solution 7.4")
        assert not base_model.training  # kept, as the lesson keeps it, to the end
    with FakeTensorMode():  # beyond_1_measuring.ipynb
        tracker, stage = notebook("beyond_1_measuring")
        with tracker:  # finetuned_instruction_run: base_model, the lesson's model loaded
            base_model = GPTModel(cfg).eval()
            model = reloaded(base_model)
        stage("loading")
        with tracker:  # 7.6.1: the masked run, which stays
            masked_model = GPTModel(cfg)  # a copy of base_model: a new model of its size
            masked_optimizer = train(masked_model)  # noqa: F841 (kept, as there)
        stage("7.6.1")
    with FakeTensorMode():  # beyond_3_dpo.ipynb
        tracker, stage = notebook("beyond_3_dpo")
        with tracker:
            base_model = GPTModel(cfg).eval()  # kept by `run`
            model = reloaded(base_model)
        stage("loading")
        with tracker:  # the notebook's DPO loop; dpo_loss_batch without its checks (they read
            policy = GPTModel(cfg)  # a copy of run.model; values)
            reference = model.eval().requires_grad_(False)
            dpo_optimizer = adamw(policy, lr=5e-6, weight_decay=0.0)
            pairs = {"chosen": batch(lengths["chosen"]), "rejected": batch(lengths["rejected"])}
            for _ in range(2):  # the second step begins with the first one's gradients
                policy.train()
                logps = {}
                for kind, (inputs, targets) in pairs.items():
                    logps[kind] = sequence_logprobs(policy(inputs), targets)
                    with torch.no_grad():
                        logps[f"ref_{kind}"] = sequence_logprobs(reference(inputs), targets)
                loss, _, _ = dpo_loss(logps["chosen"], logps["rejected"], logps["ref_chosen"],
                                      logps["ref_rejected"])
                del logps  # dpo_loss_batch's own, gone when it returns
                dpo_optimizer.zero_grad()
                loss.backward()
                dpo_optimizer.step()
        stage("7.10")
    return peaks


def test_pytorchs_memory_tracker_finds_the_peaks_of_the_count(book_lengths, monkeypatch):
    """GPT-2 small: the count is the same code for both sizes, and small's 12 blocks run in
    half the time of medium's 24 (medium, the book's model, about 30 s). The LoRA step's peak
    comes in its backward pass, which the count follows to within 1%."""
    _, stages = memory("small", book_lengths)
    peaks = tracked_peaks("small", book_lengths, monkeypatch)
    assert peaks.keys() == stages.keys()
    for stage, counted in stages.items():
        assert peaks[stage] == pytest.approx(
            counted, **{"rel": 0.01} if stage[1] == "solution 7.4" else {"abs": 0.01}), stage


def settings_cell(environment, monkeypatch):
    """Run, with `environment`, the lines of section 7.5's book branch that choose its GPT-2
    (all but the loading); their variables."""
    for name in ("LLM_COURSE_GPT2_SMALL", "LLM_COURSE_GPT2_CHECKPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    nb = nbformat.read(PROJECT_ROOT / "ch07_instructions" / "instructions.ipynb", as_version=4)
    cell = ast.parse(next(cell.source for cell in nb.cells if cell.get("id") == "ch07-107"))
    book_branch = next(node for node in cell.body if isinstance(node, ast.If)).body
    choosing = [node for node in book_branch if "load_gpt2" not in ast.unparse(node)]
    assert len(choosing) == len(book_branch) - 1  # only the loading is left out
    namespace = {"os": os}
    exec(compile(ast.Module(body=choosing, type_ignores=[]), "ch07-107", "exec"), namespace)
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
