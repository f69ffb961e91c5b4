"""Device mistakes, caught without a GPU: the course's code with its models on `fakegpu`.

A learner with a GPU moves the model there, and then every tensor the code makes on the CPU
and mixes with the model's is a crash that a CPU-only run never shows. `fakegpu`
(shared/tooling/fake_gpu.py) is a stand-in GPU that fails the same way while computing on the
CPU. Here:

- the stand-in itself: it fails where CUDA fails and runs what CUDA runs;
- every exported function of chapters 3-7 that takes a model runs with the model and its
  inputs there (tiny models: the whole file takes seconds);
- every exercise check whose given objects or answers hold a model or a tensor (those of
  chapters 3, 5, 6 and 7; chapter 2's and 4's hold none) gets them there: a right answer is
  still right, a wrong one gets the hint it gets on the CPU;
- a static reading of each chapter's notebook finds a model used with `device` before any
  `.to(device)` of it (what that reading cannot see is said at its test).

Running the notebooks themselves on `fakegpu` is shared/test_book_profile.py's job.
"""

import ast
import collections
import copy
import functools
import inspect
import json
import math
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import shared
from conftest import TINY_GPT, TINY_QWEN3, tiny_gpt, tiny_qwen3
from shared import exercises
from shared.data import PROJECT_ROOT
from shared.exercises import check_answer, exercise_spec
from shared.test_exercises import EXERCISES, changed, example
from shared.tooling.fake_gpu import FAKE_GPU, FakeGPUTensor


MIXED = "Expected all tensors to be on the same device"
GPU = FAKE_GPU


def on_gpu(value):
    """`value` with every module and tensor in it (lists, tuples and dicts searched) on the
    stand-in GPU; a module is copied first, so cached examples stay on the CPU."""
    if isinstance(value, nn.Module):
        return copy.deepcopy(value).to(GPU)
    if isinstance(value, torch.Tensor):
        return value.to(GPU)
    if isinstance(value, (list, tuple)):
        return type(value)(on_gpu(v) for v in value)
    if isinstance(value, dict):
        return {key: on_gpu(v) for key, v in value.items()}
    return value


def on_the_gpu(*tensors):
    return all(isinstance(t, FakeGPUTensor) and t.device == GPU for t in tensors)


# The stand-in ---------------------------------------------------------------------------------

def test_the_stand_in_computes_what_the_cpu_computes_and_says_it_is_elsewhere():
    x = torch.arange(6.0).reshape(2, 3)
    y = x.to(GPU)
    assert y.device == GPU and y.device.type == "fakegpu" and str(y.device) == "fakegpu:0"
    assert torch.equal((y * 2 + 1).softmax(-1).cpu(), (x * 2 + 1).softmax(-1))
    assert (y.sum().item(), y.argmax(-1).tolist(), f"{y.mean():.2f}") == (15.0, [2, 2], "2.50")
    assert repr(y) == "tensor([[0., 1., 2.],\n        [3., 4., 5.]], device='fakegpu:0')"
    for made in (torch.zeros(2, device=GPU), torch.ones(2, 2, device="fakegpu"),
                 torch.tensor([1, 2], device=GPU), torch.arange(3, device=GPU),
                 torch.randn(2, device=GPU), torch.full((2,), 7, device=GPU),
                 torch.empty(3, device=GPU), torch.zeros_like(x, device=GPU),
                 torch.ones(3, 3, device=GPU).tril(), x.to("fakegpu:0")):
        assert on_the_gpu(made)
    assert torch.arange(3, device=GPU).tolist() == [0, 1, 2]
    copied = copy.deepcopy(y)
    assert on_the_gpu(copied) and copied.shape == y.shape and torch.equal(copied.cpu(), x)
    back = y.cpu()
    assert type(back) is torch.Tensor and back.device.type == "cpu"
    assert type(y.to("cpu")) is torch.Tensor


@pytest.mark.parametrize("mix", [
    lambda g, c: g + c, lambda g, c: torch.cat([g, c]), lambda g, c: g @ c.T,
    lambda g, c: torch.where(c > 0, g, 0.0), lambda g, c: g.masked_fill(c > 0, 0.0),
    lambda g, c: torch.equal(g, c), lambda g, c: c[g.long()],
    lambda g, c: nn.functional.embedding(c.long(), g),
    lambda g, c: nn.functional.cross_entropy(g, c[0].long()),
], ids=["add", "cat", "matmul", "where", "masked_fill", "equal", "cpu_indexed_by_gpu",
        "embedding_of_cpu_ids", "cross_entropy_with_cpu_targets"])
def test_mixing_the_stand_in_with_a_cpu_tensor_fails_as_on_cuda(mix):
    with pytest.raises(RuntimeError, match=MIXED):
        mix(torch.ones(2, 2, device=GPU), torch.ones(2, 2))


def test_what_cuda_allows_across_devices_the_stand_in_allows():
    g = torch.arange(4.0, device=GPU)
    assert on_the_gpu(g + torch.tensor(1.0), g * torch.tensor(2))  # 0-dim CPU tensors: scalars
    assert g[torch.tensor([0, 2])].tolist() == [0.0, 2.0]  # CPU indices into a device tensor
    g[torch.tensor([1])] = 9.0
    assert g.tolist() == [0.0, 9.0, 2.0, 3.0]
    g.copy_(torch.zeros(4))  # copies cross devices, both ways
    cpu = torch.ones(4)
    cpu.copy_(g)
    assert cpu.tolist() == [0.0] * 4 and type(cpu) is torch.Tensor
    with pytest.raises(TypeError, match="can't convert fakegpu:0 device type tensor to numpy"):
        g.numpy()
    with pytest.raises(TypeError, match="numpy"):
        np.asarray(g)
    counts = torch.histc(torch.tensor([0, 1, 1, 3], dtype=torch.int32, device=GPU), bins=4,
                         min=0, max=3)  # CUDA counts integers (the CPU refuses them)
    assert on_the_gpu(counts) and counts.dtype == torch.int32 and counts.tolist() == [1, 2, 0, 1]


def test_a_model_trains_saves_and_loads_on_the_stand_in_as_on_the_cpu(tmp_path):
    batch = ids(2, 8)

    def train(device):
        model = tiny_gpt(drop_rate=0.1).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)  # before the move: allowed
        model.to(device)
        torch.manual_seed(1)
        for _ in range(3):
            loss = nn.functional.cross_entropy(model(batch.to(device)).flatten(0, 1),
                                               batch.to(device).flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model, optimizer, loss.item()

    cpu_model, _, cpu_loss = train("cpu")
    model, optimizer, loss = train(GPU)
    assert loss == cpu_loss
    assert all(on_the_gpu(p, p.grad) for p in model.parameters())
    assert all(on_the_gpu(t) for s in optimizer.state.values() for k, t in s.items() if k != "step")
    twin = copy.deepcopy(model)
    assert all(on_the_gpu(p) and p.shape == q.shape and isinstance(p, nn.Parameter)
               for p, q in zip(twin.parameters(), model.parameters()))
    assert torch.equal(twin.eval()(batch.to(GPU)).cpu(), model.eval()(batch.to(GPU)).cpu())
    with pytest.raises(RuntimeError, match=MIXED):
        model(batch)
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    mapped = torch.load(tmp_path / "weights.pth", map_location=GPU, weights_only=True)
    assert all(on_the_gpu(t) for t in mapped.values())
    fresh = tiny_gpt().to(GPU)
    fresh.load_state_dict(torch.load(tmp_path / "weights.pth", map_location="cpu"))
    assert all(on_the_gpu(p) for p in fresh.parameters())
    assert all(torch.equal(a.cpu(), b) for a, b in zip(fresh.parameters(), cpu_model.parameters()))


# Every exported function that takes a model ----------------------------------------------------

def ids(*shape, vocab=TINY_GPT["vocab_size"], seed=0):
    """Random token ids on the CPU, where a tokenizer or a DataLoader makes them."""
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def cpu_loader(n=4, length=8, vocab=TINY_GPT["vocab_size"]):
    """(input, target) batches on the CPU, as the chapters' DataLoaders give them."""
    rows = ids(n * 2, length + 1, vocab=vocab)
    return DataLoader(TensorDataset(rows[:, :-1], rows[:, 1:]), batch_size=2)


class CharTokenizer:
    """A tokenizer for the tiny models: one id per character, below `vocab_size`."""

    def __init__(self, vocab_size=TINY_GPT["vocab_size"]):
        self.vocab_size = vocab_size

    def encode(self, text, allowed_special=frozenset()):
        return [ord(c) % self.vocab_size for c in text]

    def decode(self, token_ids):
        return "".join(chr(97 + i % 26) for i in token_ids)


CASES = {}


def case(function):
    CASES[function.__name__] = function
    return function


@case
def chapter_3_attention_modules():
    x = torch.rand(2, 6, 4, device=GPU)
    modules = [shared.SelfAttention_v1(4, 2), shared.SelfAttention_v2(4, 2),
               shared.CausalAttention(4, 2, 6, 0.1),
               shared.MultiHeadAttentionWrapper(4, 2, 6, 0.1, 2),
               shared.MultiHeadAttention(4, 4, 6, 0.1, 2),
               shared.MultiHeadAttention(4, 4, 6, 0.1, 2, use_sdpa=True)]
    for module in modules:
        module.to(GPU)
        assert on_the_gpu(module(x[0] if isinstance(module, (shared.SelfAttention_v1,
                                                              shared.SelfAttention_v2)) else x))
    mha = modules[-2].eval()
    cache = shared.KVCache(6)
    assert on_the_gpu(mha(x[:, :4], cache), mha(x[:, 4:], cache))


@case
def chapter_4_gpt_model_and_generate_text_simple():
    model = tiny_gpt().to(GPU)
    assert on_the_gpu(model(ids(2, 5).to(GPU)))
    caches = model.make_kv_caches(8)
    assert on_the_gpu(model(ids(1, 3).to(GPU), caches), model(ids(1, 1).to(GPU), caches))
    out = shared.generate_text_simple(model, ids(1, 3).to(GPU), 6, context_size=8)
    assert on_the_gpu(out) and out.shape == (1, 9)
    assert shared.count_parameters(model) > 0


@case
def chapter_4_parameter_groups():
    assert sum(shared.parameter_groups(tiny_gpt().to(GPU)).values()) == shared.count_parameters(
        tiny_gpt())


QWEN3_NEXT = {"n_layers": 2, "layer_types": ["linear", "global"], "attention_gate": True,
              "rope_dim": 4, "norm_unit_offset": True, "hidden_dim": None, "num_experts": 4,
              "num_experts_per_tok": 2, "moe_hidden_dim": 8, "shared_expert_dim": 8,
              "deltanet": {"key_heads": 2, "value_heads": 4, "key_dim": 8, "value_dim": 4,
                           "conv_kernel": 4, "chunk_size": 2}}


DEEPSEEK_V3 = {"n_layers": 2, "head_dim": 6, "rope_dim": 2, "qk_norm": False,
               "mla": {"q_rank": 12, "kv_rank": 8, "v_dim": 4, "interleaved": True},
               "hidden_dim": 16, "num_experts": 4, "num_experts_per_tok": 2, "moe_hidden_dim": 8,
               "shared_expert_dim": 8, "shared_expert_gate": False, "dense_layers": 1,
               "moe_router": {"groups": 2, "topk_groups": 1, "scale": 2.5}}


@case
def chapter_4_modern_model():
    for model in (tiny_qwen3(), tiny_qwen3(num_experts=4, num_experts_per_tok=2,
                                           moe_hidden_dim=8, hidden_dim=None),
                  tiny_qwen3(rope_freq={"factor": 8.0, "low_freq_factor": 1.0,
                                        "high_freq_factor": 4.0, "original_context_length": 4}),
                  tiny_qwen3(**QWEN3_NEXT),  # DeltaNet's state and convolution on the device
                  tiny_qwen3(**DEEPSEEK_V3)):  # the latent cache, routing by groups
        model.to(GPU)
        assert on_the_gpu(model(ids(2, 5).to(GPU)))
        caches = model.make_kv_caches(8)
        assert on_the_gpu(model(ids(1, 3).to(GPU), caches, last_only=True))


@case
def chapter_5_losses_and_evaluation():
    model = tiny_gpt().to(GPU)
    x, y = next(iter(cpu_loader()))
    assert on_the_gpu(shared.calc_loss_batch(x, y, model, GPU))
    assert shared.calc_loss_loader(cpu_loader(), model, GPU) > 0
    assert len(shared.evaluate_model(model, cpu_loader(), cpu_loader(), GPU, eval_iter=1)) == 2
    shared.generate_and_print_sample(model, CharTokenizer(), GPU, "every")
    assert len(shared.evaluate_losses(model, cpu_loader(), cpu_loader(), GPU, eval_iter=1)) == 2
    assert shared.sample_text(model, CharTokenizer(), GPU, "every", max_new_tokens=3)
    assert on_the_gpu(shared.generate(model, ids(1, 3).to(GPU), 4,
                                      shared.context_length_of(model), temperature=1.0, top_k=5))


@case
def chapter_5_training_loops():
    model = tiny_gpt(drop_rate=0.1).to(GPU)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = shared.train_model_simple(model, cpu_loader(), cpu_loader(), optimizer, GPU, 1,
                                       eval_freq=1, eval_iter=1, start_context="every",
                                       tokenizer=CharTokenizer())[0]
    assert all(isinstance(loss, float) for loss in losses)
    shared.train_model_simple_hooked(model, cpu_loader(), cpu_loader(), optimizer, GPU, 1,
                                     eval_freq=1, eval_iter=1, progress=False)
    shared.train_model(model, cpu_loader(), cpu_loader(), optimizer, GPU, 1, eval_freq=1,
                       eval_iter=1, start_context="every", tokenizer=CharTokenizer(),
                       warmup_steps=1, grad_accum_steps=2, max_grad_norm=1.0, progress=False)
    shared.optimizer_step(model, list(cpu_loader()), optimizer, GPU, lr=1e-3, max_grad_norm=0.5)
    assert on_the_gpu(shared.find_highest_gradient(model))
    assert shared.context_length_of(model) == TINY_GPT["context_length"]


@case
def chapter_5_generate():
    model = tiny_gpt().to(GPU)
    prompt = ids(2, 3).to(GPU)
    settings = [{}, {"temperature": 1.0, "top_k": 5}, {"temperature": 0.8, "top_p": 0.9},
                {"eos_id": 3}, {"use_cache": False}, {"context_size": 4}]
    for options in settings:
        out = shared.generate_text(model, prompt, 10, **options)  # past the context: it slides
        assert on_the_gpu(out)
    assert on_the_gpu(shared.next_token(torch.randn(2, 50, device=GPU), 1.0, 5, 0.9))


@case
def chapter_5_checkpoints(tmp_path):
    model = tiny_gpt().to(GPU)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    shared.optimizer_step(model, list(cpu_loader(2)), optimizer, GPU)
    shared.save_checkpoint(tmp_path / "run.pth", model, optimizer, step=1)
    saved = [p.detach().cpu().clone() for p in model.parameters()]
    for restored in (tiny_gpt(seed=1).to(GPU), tiny_gpt(seed=1)):  # onto the device, or the CPU
        restored_optimizer = torch.optim.AdamW(restored.parameters(), lr=1e-3)
        shared.load_checkpoint(tmp_path / "run.pth", restored, restored_optimizer)
        assert all(torch.equal(p.detach().cpu(), s) for p, s in zip(restored.parameters(), saved))
        device = next(restored.parameters()).device
        shared.optimizer_step(restored, list(cpu_loader(2)), restored_optimizer, device)
    shared.save_weights(tmp_path / "weights.pth", model)
    shared.save_weights(tmp_path / "weights.pth", model)  # the same model's: overwritten
    cpu_copy = tiny_gpt(seed=1)
    cpu_copy.load_state_dict(torch.load(tmp_path / "weights.pth", map_location="cpu"))
    assert all(torch.equal(p.detach(), s) for p, s in zip(cpu_copy.parameters(), saved))


@case
def chapter_5_gpt2_weights(tmp_path):
    cpu_model = tiny_gpt(qkv_bias=True)
    model = copy.deepcopy(cpu_model).to(GPU)
    tensors = shared.gpt2_tensors(model)
    assert all(on_the_gpu(t) for t in tensors.values())
    shared.load_weights_into_gpt(model, shared.gpt2_tensors(cpu_model))  # CPU weights into it
    shared.load_gpt2_weights(model, shared.gpt2_tensors(cpu_model))
    assert all(on_the_gpu(p) for p in model.parameters())
    shared.load_weights_into_gpt(model, {name: t.cpu() for name, t in tensors.items()})
    folder = shared.save_gpt2_safetensors(model, tmp_path / "gpt2")
    loaded = shared.load_gpt2(folder).eval().to(GPU)
    assert torch.equal(loaded(ids(1, 4).to(GPU)).cpu(), cpu_model(ids(1, 4)))
    shared.check_gpt2_architecture(model)


@case
def chapter_5_shakespeare(tmp_path):
    tokenizer = shared.BPETokenizer.train("To be, or not to be: that is the question.", 270)
    cpu_model = tiny_gpt(qkv_bias=True, vocab_size=tokenizer.n_vocab)
    folder = shared.save_text_model(copy.deepcopy(cpu_model).to(GPU), tokenizer, tmp_path / "m")
    loaded, _ = shared.load_text_model(folder, GPU)
    assert all(on_the_gpu(p) for p in loaded.parameters())
    assert torch.equal(loaded(ids(1, 4).to(GPU)).cpu(), cpu_model.eval()(ids(1, 4)))
    text = "To be, or not to be"
    assert shared.nats_per_character(loaded, tokenizer, text) == pytest.approx(
        shared.nats_per_character(cpu_model, tokenizer, text))


@case
def chapter_5_benchmarks():
    tokenizer, cpu_model = CharTokenizer(), tiny_gpt().eval()
    model = copy.deepcopy(cpu_model).to(GPU)
    question = shared.Question("the cat sat", [" on", " a", " by it"], 0)  # windows of 8
    on_gpu_scores = shared.choice_log_likelihoods(model, tokenizer, question)
    for (total, tokens), (cpu_total, cpu_tokens) in zip(
            on_gpu_scores, shared.choice_log_likelihoods(cpu_model, tokenizer, question)):
        assert total == pytest.approx(cpu_total) and tokens == cpu_tokens
    counts = shared.CountingModel(ids(1, 40)[0], TINY_GPT["vocab_size"], 2, 0.1, 8).to(GPU)
    for scorer in (model, counts.eval()):
        result = shared.accuracy(scorer, tokenizer, [question] * 2)
        assert set(result) == set(shared.NORMALISATIONS)
    assert shared.bits_per_byte(model, tokenizer, "the cat sat on the mat") == pytest.approx(
        shared.bits_per_byte(cpu_model, tokenizer, "the cat sat on the mat"))


@case
def chapter_5_scaling():
    train = shared.GPTDatasetV1("the quick brown fox jumps over it. " * 20, CharTokenizer(), 8, 8)
    val = DataLoader(shared.GPTDatasetV1("the lazy dog sleeps here. " * 4, CharTokenizer(), 8, 8),
                     batch_size=2)
    cfg = shared.ladder_config(1, 16, TINY_GPT["vocab_size"], 8)
    with torch.device("meta"):
        params = shared.count_parameters(shared.ModernGPTModel(cfg))
    run = shared.train_on_budget(cfg, train, val, 6 * params * 4 * 8 * 3, batch_size=4,
                                 device=GPU)
    assert run["tokens"] == 3 * 4 * 8 and math.isfinite(run["val_loss"])


@case
def chapter_5_fast_paths():
    model = tiny_gpt(qkv_bias=True).to(GPU)
    decoder = shared.FastDecoder(model)
    assert on_the_gpu(decoder(ids(1, 4).to(GPU)))
    assert on_the_gpu(shared.generate_text(decoder, ids(1, 3).to(GPU), 6, context_size=8))
    x, y = next(iter(cpu_loader()))
    loss = shared.calc_loss_batch_chunked(x, y, model, GPU)
    loss.backward()
    assert on_the_gpu(loss, model.tok_emb.weight.grad)
    cached = shared.KVCachedModel(decoder, max_tokens=8)
    assert on_the_gpu(cached(ids(1, 3).to(GPU)), cached(ids(1, 4).to(GPU)))
    modern = tiny_qwen3().to(GPU)
    fast_modern = shared.FastDecoder(modern)
    assert on_the_gpu(shared.generate_text(fast_modern, ids(1, 3).to(GPU), 6, context_size=8,
                                      temperature=1.0, min_p=0.1, repetition_penalty=1.2))
    assert all(on_the_gpu(p) for p in fast_modern.model.parameters())
    shared.check_architecture(modern, shared.ModernGPTModel, "a test",  # reads only shapes
                              (*shared.MODERN_REQUIRED_KEYS, *shared.MODERN_OPTIONAL_KEYS))
    assert shared.supports_fast_bf16(GPU) is False


@case
def chapter_5_open_model_loader(tmp_path):
    """load_open_model reads a published folder onto the CPU; moved, it runs on the device."""
    model = tiny_qwen3()
    state = model.state_dict()
    tensors = {hf: state[ours].contiguous() for hf, ours in shared.hf_layout(model).items()}
    safetensors.torch.save_file(tensors, tmp_path / "model.safetensors")
    cfg = TINY_QWEN3
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "qwen3", "vocab_size": cfg["vocab_size"], "hidden_size": cfg["emb_dim"],
        "num_hidden_layers": cfg["n_layers"], "num_attention_heads": cfg["n_heads"],
        "num_key_value_heads": cfg["n_kv_groups"], "head_dim": cfg["head_dim"],
        "intermediate_size": cfg["hidden_dim"], "max_position_embeddings": cfg["context_length"],
        "rope_theta": cfg["rope_base"], "rms_norm_eps": 1e-6, "tie_word_embeddings": True}))
    loaded = shared.load_open_model(tmp_path).to(GPU)
    out = shared.generate_text(loaded, ids(1, 3).to(GPU), 4)
    assert torch.equal(out.cpu(), shared.generate_text(model, ids(1, 3), 4))


@case
def chapter_5_open_model_saver(tmp_path):
    """save_open_model writes a model that is on the device; loaded back on the CPU: the same
    weights."""
    model = tiny_qwen3().to(GPU)
    shared.check_open_model(model)
    shared.save_open_model(model, tmp_path / "saved", max_shard_size="10KB")  # shards as well
    loaded = shared.load_open_model(tmp_path / "saved")
    expected = tiny_qwen3().state_dict()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in loaded.state_dict().items())


GPT_OSS = {"qk_norm": False, "qkv_bias": True, "attention_out_bias": True,
           "attention_sinks": True, "hidden_dim": None, "num_experts": 4,
           "num_experts_per_tok": 2, "moe_hidden_dim": 8, "ffn_bias": True,
           "ffn_activation": "clamped_silu", "swiglu_alpha": 1.702, "swiglu_limit": 7.0}


@case
def chapter_5_gpt_oss_experts(tmp_path):
    """gpt-oss's experts are packed from a model on the device (pack_experts, as save_open_model
    does) and unpacked on loading: the same weights on the CPU."""
    model = tiny_qwen3(**GPT_OSS).to(GPU)
    assert on_the_gpu(shared.pack_experts(model, "trf_blocks.0.ff.experts.gate_up_proj"))
    shared.save_open_model(model, tmp_path / "saved")
    loaded = shared.load_open_model(tmp_path / "saved")
    expected = tiny_qwen3(**GPT_OSS).state_dict()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in loaded.state_dict().items())


QWEN3_5 = {"n_layers": 2, "layer_types": ["linear", "global"], "attention_gate": True,
           "norm_unit_offset": True, "rope_dim": 4,
           "deltanet": {"key_heads": 2, "value_heads": 4, "key_dim": 4, "value_dim": 4,
                        "conv_kernel": 4}}


@case
def chapter_5_qwen3_5_projections(tmp_path):
    """Qwen3.5's DeltaNet projections are cut apart from a model on the device
    (split_projection, as save_open_model does) and joined again (group_projections, as
    load_open_model does): the layer's own weights, on the device; saved and loaded back on the
    CPU, the same weights."""
    model = tiny_qwen3(**QWEN3_5).to(GPU)
    prefix = "trf_blocks.0.att."
    apart = {prefix + part: shared.split_projection(model, prefix + part)
             for part in shared.SEPARATE_PROJECTIONS}
    assert on_the_gpu(*apart.values())
    joined = shared.group_projections(apart, model)
    assert torch.equal(joined[prefix + "W_qkvz.weight"], model.trf_blocks[0].att.W_qkvz.weight)
    assert torch.equal(joined[prefix + "W_ba.weight"], model.trf_blocks[0].att.W_ba.weight)
    shared.save_open_model(model, tmp_path / "saved", family="qwen3_5_text")
    loaded = shared.load_open_model(tmp_path / "saved")
    expected = tiny_qwen3(**QWEN3_5).state_dict()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in loaded.state_dict().items())


@case
def chapter_5_attention_variants():
    """cache_bytes runs the model where it is, and measures the same bytes there."""
    model = tiny_qwen3(n_layers=2)
    assert shared.cache_bytes(model.to(GPU), 5) == shared.cache_bytes(tiny_qwen3(n_layers=2), 5)


def classifier():
    torch.manual_seed(0)
    return shared.add_classification_head(tiny_gpt())


def labelled_loader():
    return DataLoader(TensorDataset(ids(4, 6), torch.tensor([0, 1, 1, 0])), batch_size=2)


@case
def chapter_6_classification():
    model = shared.add_classification_head(tiny_gpt().to(GPU))  # the head follows the model
    assert on_the_gpu(model.out_head.weight)
    shared.train_only_last_block(model)
    assert shared.count_trainable_parameters(model) > 0
    assert 0 <= shared.calc_accuracy_loader(labelled_loader(), model, GPU) <= 1
    x, y = next(iter(labelled_loader()))
    from ch06_classification.classification import calc_loss_batch, calc_loss_loader, evaluate_model
    assert on_the_gpu(calc_loss_batch(x, y, model, GPU))
    assert calc_loss_loader(labelled_loader(), model, GPU) > 0
    assert len(evaluate_model(model, labelled_loader(), labelled_loader(), GPU, 1)) == 2
    optimizer = torch.optim.AdamW((p for p in model.parameters() if p.requires_grad), lr=1e-3)
    shared.train_classifier_simple(model, labelled_loader(), labelled_loader(), optimizer, GPU,
                                   num_epochs=1, eval_freq=1, eval_iter=1)
    assert shared.classify_review("free money", model, CharTokenizer(), GPU, max_length=6) in (
        "spam", "not spam")
    assert shared.predictions(model, labelled_loader(), GPU).device.type == "cpu"  # as documented
    assert shared.prompted_answer(tiny_gpt().to(GPU), "free money", CharTokenizer(), GPU) in (0, 1)


@case
def chapter_6_lora():
    model = classifier().to(GPU)
    shared.replace_linear_with_lora(model, rank=2, alpha=4)
    assert all(on_the_gpu(p) for p in model.parameters())
    x, y = next(iter(labelled_loader()))
    from ch06_classification.classification import calc_loss_batch
    calc_loss_batch(x, y, model, GPU).backward()
    layer = shared.LinearWithLoRA(nn.Linear(4, 3).to(GPU), rank=2, alpha=2)
    assert on_the_gpu(layer(torch.ones(1, 4, device=GPU)))
    with torch.no_grad():
        for module in model.modules():  # B starts at zero: any merge would pass without this
            if isinstance(module, shared.LoRALayer):
                module.B.normal_(std=0.1)
        expected = model(x.to(GPU)).cpu()
        shared.merge_lora(model)  # the adapters folded in, on the device
        assert not any(isinstance(m, shared.LinearWithLoRA) for m in model.modules())
        assert all(on_the_gpu(p) for p in model.parameters())
        torch.testing.assert_close(model(x.to(GPU)).cpu(), expected)


def instruction_entries():
    return [{"instruction": "Say hi.", "input": "", "output": "Hi."},
            {"instruction": "Add.", "input": "1 and 2", "output": "3"}]


@case
def chapter_7_instructions():
    model = tiny_gpt(vocab_size=300, context_length=64).to(GPU)
    batch = [[1, 2, 3, 4], [5, 6]]
    for collate in (shared.custom_collate_draft_1, shared.custom_collate_draft_2,
                    shared.custom_collate_fn):
        out = collate(batch, pad_token_id=0, device=GPU)
        assert all(on_the_gpu(t) for t in (out if isinstance(out, tuple) else (out,)))
    inputs, targets = shared.custom_collate_fn(batch, pad_token_id=0, device=GPU)
    assert on_the_gpu(shared.sequence_logprobs(model(inputs), targets))
    with pytest.warns(UserWarning, match="generate_text reads only its last 64"):  # long prompts
        data = shared.generate_responses(model, instruction_entries(), CharTokenizer(300), GPU,
                                         max_new_tokens=3, eos_id=0, progress=False)
    assert all(isinstance(entry["model_response"], str) for entry in data)
    gpt2_sized = tiny_gpt(vocab_size=50257, context_length=256).to(GPU)  # pads with id 50256
    assert on_the_gpu(shared.response_logprobs(gpt2_sized, instruction_entries(), CharTokenizer()))


@case
def chapter_7_preferences():
    policy, reference = (tiny_gpt(seed=s, vocab_size=300, context_length=64).to(GPU)
                         for s in (0, 1))
    pairs = [{"prompt": [1, 2, 3], "chosen": [4, 5], "rejected": [6]},
             {"prompt": [7, 8], "chosen": [9], "rejected": [10, 11, 12]}]
    batch = shared.preference_collate_fn(pairs, pad_token_id=0, device=GPU)
    loss, chosen, rejected = shared.dpo_loss_batch(batch, policy, reference)
    loss.backward()
    assert on_the_gpu(loss, chosen, rejected, policy.tok_emb.weight.grad)
    result = shared.evaluate_preferences([batch], policy, reference)
    assert set(result) == {"loss", "margin", "accuracy"}


@case
def chapter_7_grpo():
    tokenizer = shared.CharTokenizer(shared.ADDITION_ALPHABET)
    eos_id = tokenizer.ids[shared.END]
    problems = shared.addition_problems(8, seed=0, largest=9)
    tasks = shared.addition_tasks(tokenizer, problems)
    model = shared.pretrain_adder(tokenizer, problems * 400, epochs=1, device=GPU)  # 25 steps
    shared.finetune_adder(model, tokenizer, problems * 40, epochs=2)  # train_model's 10 steps
    assert all(on_the_gpu(p) for p in model.parameters())
    group = shared.sample_group(model, tasks[0][0], 3, 4, eos_id)
    inputs, targets = shared.response_batch([tasks[0][0]] * 3, group, eos_id, device=GPU)
    assert on_the_gpu(shared.token_logprobs(model(inputs), targets))
    reference = copy.deepcopy(model).requires_grad_(False)
    history = shared.train_grpo(model, reference, tasks, shared.addition_reward, tokenizer,
                                eos_id=eos_id, steps=1, prompts_per_step=2, group_size=2,
                                max_new_tokens=3, micro_batch_size=2, progress=False)
    assert len(history["reward"]) == 1
    assert len(shared.solve(model, tasks, tokenizer, shared.exact_match, eos_id=eos_id)) == 8
    pairs = shared.checker_pairs(model, tasks, tokenizer, lambda p, r, e: float(len(r) % 2),
                                 eos_id=eos_id, group_size=4, max_new_tokens=3)
    losses = shared.train_dpo_on_pairs(model, reference, pairs, eos_id=eos_id, steps=1,
                                       batch_size=1)
    assert math.isfinite(losses[0])


@pytest.mark.parametrize("name", CASES)
def test_exported_functions_run_with_the_model_on_a_gpu(name, tmp_path):
    function = CASES[name]
    function(*[tmp_path] * len(inspect.signature(function).parameters))


MODEL_ARGUMENTS = {"model", "gpt", "policy", "reference"}


def takes_a_model(name) -> bool:
    try:
        parameters = inspect.signature(getattr(shared, name)).parameters
    except (TypeError, ValueError):  # not a function or class
        return False
    # the judge's model is its name: annotated str, or a str by default (the book's "llama3")
    return any(name in MODEL_ARGUMENTS and parameter.annotation is not str
               and not isinstance(parameter.default, str)
               for name, parameter in parameters.items())


# Records that hold a model, computing nothing with it (chapter 7's companions' InstructionRun).
HOLDS_A_MODEL = {"InstructionRun"}


def test_every_exported_function_that_takes_a_model_is_run_here():
    exported = [name for name in shared.chapter_exports()
                if takes_a_model(name) and name not in HOLDS_A_MODEL]
    called = set().union(*({n.attr for n in ast.walk(ast.parse(inspect.getsource(case)))
                            if isinstance(n, ast.Attribute)} for case in CASES.values()))
    assert len(exported) > 25
    assert sorted(set(exported) - called) == []


# Every exercise check --------------------------------------------------------------------------

def holds_tensors(value) -> bool:
    """Whether `value` is, or holds (in lists, tuples, dicts), a module or a tensor."""
    if isinstance(value, (nn.Module, torch.Tensor)):
        return True
    if isinstance(value, (list, tuple)):
        return any(holds_tensors(v) for v in value)
    return isinstance(value, dict) and any(holds_tensors(v) for v in value.values())


def wrong_answers(spec, given):
    if spec.check:
        return example(spec)["wrong"]
    expected = spec.expected(**given)
    return [make(expected, **given) for make, _ in spec.mistakes] + changed(expected)


# An exercise whose given objects and answers hold no module or tensor has nothing to put on a
# device (its check builds what it needs, on the CPU): shared/test_exercises.py runs it.
ON_A_DEVICE = [number for number in EXERCISES
               if holds_tensors(example(exercise_spec(number)).get("given", {}))
               or holds_tensors(example(exercise_spec(number)).get("right", []))]


def test_the_exercises_with_models_or_tensors_are_all_here():
    assert {"3.1", "3.2", "5.3", "5.5", "6.2", "7.4"} <= set(ON_A_DEVICE)


@functools.cache
def given_on_gpu(number):
    """The exercise's given objects on the GPU, made once (5.3's check remembers its answer
    for a model, and works it out in seconds on the stand-in)."""
    return on_gpu(example(exercise_spec(number)).get("given", {}))


@pytest.mark.parametrize("number", ON_A_DEVICE)
def test_a_right_answer_is_right_with_the_notebooks_objects_on_a_gpu(capsys, number):
    """The given objects (models, tensors, batches) on the GPU; a right answer computed on
    the CPU and, where it is a module (the learner's model), moved there too."""
    spec = exercise_spec(number)
    given = example(spec).get("given", {})
    rights = example(spec)["right"] if spec.check else [spec.expected(**given)]
    for right in rights:
        check_answer(number, on_gpu(right) if isinstance(right, nn.Module) else right,
                     **given_on_gpu(number))
        assert capsys.readouterr().out == f"Exercise {number}: right.\n"


@pytest.mark.parametrize("number", ON_A_DEVICE)
def test_a_wrong_answer_gets_the_hint_it_gets_on_the_cpu(capsys, monkeypatch, number):
    """A recognised mistake is recognised on the GPU too (its hint is worked out from the
    given objects, and a failure there would only lose the hint)."""
    spec = exercise_spec(number)
    given = example(spec).get("given", {})
    for wrong in wrong_answers(spec, given):
        said = []
        for device_given, answer in ((given, wrong), (given_on_gpu(number), on_gpu(wrong))):
            monkeypatch.setattr(exercises, "_wrong_tries", collections.Counter())
            check_answer(number, answer if isinstance(wrong, nn.Module) else wrong,
                         **device_given)
            said.append(capsys.readouterr().out)
        assert said[1] == said[0]


def resume_on_the_gpu(path, cfg):
    """Exercise 5.4's answer where the notebook's `device` is a GPU."""
    model = shared.GPTModel(cfg).to(GPU)
    optimizer = torch.optim.AdamW(model.parameters())
    shared.load_checkpoint(path, model, optimizer)
    return model, optimizer


def test_a_resume_onto_the_gpu_is_a_right_answer_to_5_4(capsys):
    check_answer("5.4", resume_on_the_gpu)
    assert capsys.readouterr().out == "Exercise 5.4: right.\n"


# The notebooks, read ----------------------------------------------------------------------------

# Calls that make a model on the CPU, and calls that hand back the model they are given (a model
# they wrap keeps its device: the new head and LoRA layers follow the model).
MODEL_MAKERS = {"GPTModel", "ModernGPTModel", "load_gpt2", "load_open_model"}
PASS_THROUGH = {"add_classification_head", "train_only_last_block", "replace_linear_with_lora",
                "deepcopy", "eval", "train", "requires_grad_"}


def called_name(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else (
        func.attr if isinstance(func, ast.Attribute) else None)


def mentions(node, names) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


class DeviceReader:
    """Follows, in cell order, which names hold a model that is still on the CPU ("unmoved")
    and which hold tensors moved to `device`, and reports each call that brings the two
    together, or hands an unmoved model to code that uses `device`.

    A heuristic, blind to: models kept in containers or attributes, or returned by functions
    it has not read; tensors made on the CPU inside library code; control flow (both branches
    of an `if` are read one after the other, a loop's body once, a function's body where it is
    defined); cells run out of order. Inside `with torch.device(...)` models are left alone.
    """

    def __init__(self):
        self.unmoved: dict[str, str] = {}  # name -> where the model was made
        self.on_device: set[str] = set()  # names of tensors moved to `device`
        self.uses_device: set[str] = set()  # notebook functions whose code uses `device`
        self.makes_unmoved: dict[str, list[bool]] = {}  # function -> which returns are models
        self.problems: list[str] = []

    # What an expression is: an unmoved model (its origin), or None
    def model_of(self, node) -> str | None:
        if isinstance(node, ast.Name):
            return self.unmoved.get(node.id)
        if not isinstance(node, ast.Call):
            return None
        name = called_name(node)
        if name == "to":
            return None  # moved (to `device`, or wherever it was asked to go)
        if name in MODEL_MAKERS:
            return f"{name}(...)"
        if name in self.makes_unmoved and self.makes_unmoved[name] == [True]:
            return f"{name}()"
        if name in PASS_THROUGH:
            inner = node.func.value if name in {"eval", "train", "requires_grad_"} else (
                node.args[0] if node.args else None)
            return self.model_of(inner) if inner is not None else None
        return None

    def tuple_of(self, node) -> list[str | None] | None:
        """The models of a call returning a tuple, element by element."""
        name = called_name(node) if isinstance(node, ast.Call) else None
        shape = self.makes_unmoved.get(name)
        return ([f"{name}()" if made else None for made in shape]
                if shape and len(shape) > 1 else None)

    def device_related(self, node) -> bool:
        return mentions(node, {"device", *self.on_device})

    def check_calls(self, statement, where):
        for call in (n for n in ast.walk(statement) if isinstance(n, ast.Call)):
            if called_name(call) == "to":
                continue
            arguments = [*call.args, *(k.value for k in call.keywords)]
            callee_model = self.model_of(call.func) if isinstance(call.func, ast.Name) else None
            models = [m for m in map(self.model_of, arguments) if m]
            if callee_model and any(map(self.device_related, arguments)):
                self.problems.append(f"{where}: {ast.unparse(call)[:70]} calls a model made "
                                     f"by {callee_model}, never moved to device, on tensors "
                                     f"moved there")
            elif models and (any(map(self.device_related, arguments))
                             or called_name(call) in self.uses_device):
                self.problems.append(f"{where}: {ast.unparse(call)[:70]} passes a model made "
                                     f"by {models[0]}, never moved to device, to code that "
                                     f"uses device")

    def bind(self, target, value, inside_meta):
        if isinstance(target, ast.Tuple):
            models = self.tuple_of(value) or [None] * len(target.elts)
            for element, model in zip(target.elts, models):
                if isinstance(element, ast.Name):
                    self.forget(element.id)
                    if model and not inside_meta:
                        self.unmoved[element.id] = model
            return
        if not isinstance(target, ast.Name):
            return
        model = self.model_of(value)
        self.forget(target.id)
        if model and not inside_meta:
            self.unmoved[target.id] = model
        elif not model and self.device_related(value):
            self.on_device.add(target.id)

    def forget(self, name):
        self.unmoved.pop(name, None)
        self.on_device.discard(name)

    def read(self, statements, where, inside_meta=False):
        for statement in statements:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.read_function(statement, where)
                continue
            if isinstance(statement, (ast.If, ast.For, ast.While, ast.Try)):
                self.check_calls(getattr(statement, "test", getattr(statement, "iter", None))
                                 or ast.Pass(), where)
                for block in ("body", "orelse", "finalbody"):
                    self.read(getattr(statement, block, []), where, inside_meta)
                for handler in getattr(statement, "handlers", []):
                    self.read(handler.body, where, inside_meta)
                continue
            if isinstance(statement, ast.With):
                meta = any("torch.device" in ast.unparse(item.context_expr)
                           for item in statement.items)
                self.read(statement.body, where, inside_meta or meta)
                continue
            self.check_calls(statement, where)
            if isinstance(statement, ast.Assign):
                for target in statement.targets:
                    self.bind(target, statement.value, inside_meta)
            elif isinstance(statement, ast.Delete):
                for target in statement.targets:
                    if isinstance(target, ast.Name):
                        self.forget(target.id)
            for call in (n for n in ast.walk(statement) if isinstance(n, ast.Call)):
                moved = call.func.value if called_name(call) == "to" and isinstance(
                    call.func, ast.Attribute) else None
                if isinstance(moved, ast.Name) and mentions(call, {"device"}):
                    self.unmoved.pop(moved.id, None)  # x.to(device)

    def read_function(self, function, where):
        """Read its body with its parameters unknown; note whether it uses `device` and what
        it returns."""
        outer = (dict(self.unmoved), set(self.on_device))
        parameters = {a.arg for a in [*function.args.args, *function.args.kwonlyargs]}
        for parameter in parameters:
            self.forget(parameter)
        self.read(function.body, f"{where}, in {function.name}()")
        returns = [n.value for n in ast.walk(function) if isinstance(n, ast.Return) and n.value]
        shapes = []
        for value in returns:
            elements = value.elts if isinstance(value, ast.Tuple) else [value]
            shapes.append([self.model_of(e) is not None for e in elements])
        self.unmoved, self.on_device = outer
        if "device" not in parameters and mentions(function, {"device"}):  # the notebook's
            self.uses_device.add(function.name)
        self.makes_unmoved.pop(function.name, None)
        if shapes and all(shape == shapes[0] for shape in shapes) and any(shapes[0]):
            self.makes_unmoved[function.name] = shapes[0]


def device_problems(source_cells: list[tuple[str, str]]) -> list[str]:
    """What DeviceReader finds in (label, code) cells, in order."""
    reader = DeviceReader()
    for where, code in source_cells:
        reader.read(ast.parse(code).body, where)
    return reader.problems


def notebook_cells(path: Path) -> list[tuple[str, str]]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [(f"{path.name} cell {i}", "".join(cell["source"])) for i, cell in enumerate(cells)
            if cell["cell_type"] == "code"]


NOTEBOOKS = sorted(PROJECT_ROOT.glob("ch0*/*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.parent.name)
def test_no_notebook_uses_a_model_on_device_before_moving_it_there(notebook):
    assert device_problems(notebook_cells(notebook)) == []


@pytest.mark.parametrize("code, found", [
    ("model = GPTModel(cfg)\ncalc_loss_loader(loader, model, device)", "passes a model"),
    ("model = load_gpt2(p)\nx = ids.to(device)\nmodel(x)", "calls a model"),
    ("if book:\n    m = load_gpt2(p)\nelse:\n    m = GPTModel(c)\nadd_classification_head(m)\n"
     "load_checkpoint('c.pth', m)\ncalc_accuracy_loader(test_loader, m, device)", "GPTModel"),
    ("def build():\n    return add_classification_head(GPTModel(c))\n\n"
     "def finetune(candidate):\n    train_model(candidate, device)\n\n"
     "other = build()\nfinetune(other)", "passes a model made by build()"),
    ("def answer(model, text):\n    return model(ids(text).to(device))\n\n"
     "model = GPTModel(c)\nprint([answer(model, t) for t in texts])", "passes a model"),
    ("def run(loader, candidate=None):\n    if candidate is None:\n        candidate = build()\n"
     "    return candidate(batch.to(device))\n\ndef build():\n    return GPTModel(c)\n",
     None),  # build is read after run: too late for the heuristic, said in its docstring
    ("def one_epoch():\n    candidate = GPTModel(c)\n    candidate(x.to(device))",
     "in one_epoch(): candidate(x.to(device)) calls a model"),
    ("def fresh():\n    net = GPTModel(c)\n    return net, AdamW(net.parameters())\n\n"
     "net, opt = fresh()\ntrain_model_simple(net, loader, opt, device)", "made by fresh()"),
    ("model = GPTModel(c)\nmodel.eval()\nprompt = tok(t).to(device)\n"
     "torch.equal(model(prompt), prompt)", "calls a model"),
    ("gpt = load_gpt2(p).eval()\ncalc_loss_loader(loader, gpt.eval(), device)", "passes"),
])
def test_the_notebook_reading_finds_a_model_left_on_the_cpu(code, found):
    problems = device_problems([("cell", code)])
    if found is None:
        assert problems == []
    else:
        assert len(problems) == 1 and found in problems[0], problems


@pytest.mark.parametrize("code", [
    "model = GPTModel(cfg)\nmodel.to(device)\ncalc_loss_loader(loader, model, device)",
    "model = GPTModel(cfg).to(device)\nmodel(ids.to(device))",
    "model = load_gpt2(p)\nmodel = model.to(device)\ngenerate(model, x.to(device), 5)",
    "m = GPTModel(c)\nbase = copy.deepcopy(m)\nm.to(device)\nbase.to(device)\n"
    "generate_responses(base, data, tok, device)",
    "def build():\n    return add_classification_head(GPTModel(c)).to(device)\n\n"
    "other = build()\ncalc_accuracy_loader(loader, other, device)",
    "with torch.device('meta'):\n    net = GPTModel(c)\nprint(count_parameters(net), device)",
    "model = GPTModel(c)\ngenerate(model, text_to_token_ids(t, tok), 5)",  # both on the CPU
    "model = GPTModel(c)\nmodel.to(device)\nadd_classification_head(model)\nmodel(x.to(device))",
])
def test_the_notebook_reading_lets_a_model_moved_there_be(code):
    assert device_problems([("cell", code)]) == []
