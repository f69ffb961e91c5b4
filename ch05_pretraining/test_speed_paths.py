"""Tests of chapter 5's switches for speed and memory: FastDecoder (5.7), the chunked loss and
the bf16 switch (5.8), FastModernDecoder (5.9.2)."""


import copy

import pytest
import torch
from torch import nn

from ch04_gpt_model.gpt_model import GPTModel
from ch05_pretraining import fast_path
from ch05_pretraining.decoding import generate
from ch05_pretraining.fast_path import (
    FastDecoder,
    calc_loss_batch_chunked,
    chunked_cross_entropy,
    supports_fast_bf16,
)
from ch05_pretraining.open_weights import FastModernDecoder
from ch05_pretraining.pretraining import calc_loss_batch
from conftest import tiny_qwen3


SMALL = {"vocab_size": 97, "context_length": 24, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
         "drop_rate": 0.1, "qkv_bias": True}


def small_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return GPTModel({**SMALL, **overrides}).eval()


# FastDecoder (5.7) ---------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [{}, {"qkv_bias": False}, {"tie_weights": True},
                                       {"sdpa": True}])
def test_fast_decoder_gives_the_models_logits(overrides):
    model = small_model(**overrides)
    ids = torch.randint(0, SMALL["vocab_size"], (2, 10))
    with torch.no_grad():
        expected = model(ids)
        torch.testing.assert_close(FastDecoder(model)(ids), expected)
        torch.testing.assert_close(FastDecoder(model)(ids, last_only=True), expected[:, -1:])


@pytest.mark.parametrize("split", [[10], [1] * 10, [4, 1, 5], [3, 7]])
def test_fast_decoder_continues_a_cache_in_pieces_of_any_size(split):
    model, ids = small_model(), torch.randint(0, SMALL["vocab_size"], (2, 10))
    decoder = FastDecoder(model)
    caches, pieces, start = decoder.make_kv_caches(), [], 0
    with torch.no_grad():
        for size in split:  # several tokens after a cached prefix need the causal mask
            pieces.append(decoder(ids[:, start:start + size], caches))
            start += size
        torch.testing.assert_close(torch.cat(pieces, dim=1), model(ids))
    assert caches[0].length == 10


def test_fast_decoder_generates_the_uncached_tokens_even_past_the_context():
    model = small_model(context_length=16)
    prompt = torch.tensor([[4, 8, 15, 16, 23]])
    uncached = generate(model, prompt, 60, context_size=16, use_cache=False)
    assert torch.equal(generate(FastDecoder(model), prompt, 60, context_size=16), uncached)


def test_fast_decoder_samples_the_models_tokens_from_the_same_seed():
    model = small_model()
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    drawn = []
    for decoder in (model, FastDecoder(model)):
        torch.manual_seed(7)
        drawn.append(generate(decoder, prompt, 15, context_size=24, temperature=1.0, top_k=20))
    assert torch.equal(*drawn)


def test_fast_decoder_is_a_copy_in_evaluation_mode():
    model, ids = small_model(), torch.randint(0, SMALL["vocab_size"], (1, 8))
    decoder = FastDecoder(model.train())  # dropout on in the model: not in the decoder
    with torch.no_grad():
        before = decoder(ids)
        torch.testing.assert_close(before, model.eval()(ids))
        for parameter in model.parameters():
            parameter.add_(1.0)  # training the model afterwards leaves the copy alone
        assert torch.equal(decoder(ids), before)


def test_fast_decoder_refuses_a_classifiers_head():
    model = small_model()
    model.out_head = nn.Linear(SMALL["emb_dim"], 2)  # chapter 6's replacement head
    with pytest.raises(ValueError, match=r"FastDecoder does not support a classification head "
                                         r"\(2 outputs, the vocabulary has 97\)"):
        FastDecoder(model)


def test_fast_decoder_computes_in_float32_whatever_the_models_dtype():
    model, ids = small_model(), torch.randint(0, SMALL["vocab_size"], (1, 6))
    with torch.no_grad():
        expected = FastDecoder(model)(ids)
        logits = FastDecoder(model.to(torch.bfloat16))(ids)
    assert logits.dtype == torch.float32
    assert (logits - expected).abs().max() < 0.05 * expected.abs().max()  # weights rounded once


def test_fast_decoder_with_bf16_weights_is_close_and_reads_half_the_bytes():
    model, ids = small_model(), torch.randint(0, SMALL["vocab_size"], (1, 12))
    decoder = FastDecoder(model, torch.bfloat16)
    assert decoder.head[0].dtype == torch.bfloat16
    assert all(block["fc1"][0].dtype == torch.bfloat16 for block in decoder.blocks)
    caches = decoder.make_kv_caches()
    with torch.no_grad():
        expected = model(ids)
        whole = decoder(ids)
        stepped = torch.cat([decoder(ids[:, :5], caches)]
                            + [decoder(ids[:, i:i + 1], caches) for i in range(5, 12)], dim=1)
    assert whole.dtype == torch.float32
    # bf16 keeps 8 significant bits: about 1% of the logits' spread, not float32's 1e-6
    scale = expected.abs().max()
    assert (whole - expected).abs().max() < 0.05 * scale
    assert (stepped - expected).abs().max() < 0.05 * scale
    assert (whole - expected).abs().max() > 1e-6 * scale  # it really is not float32


def test_fast_decoder_rejects_what_it_cannot_copy_or_compute():
    model = small_model()
    with pytest.raises(ValueError, match="weight_dtype"):
        FastDecoder(model, torch.float16)
    adapted = small_model()
    adapted.trf_blocks[0].att.W_query = nn.Sequential(nn.Linear(32, 32))  # not a plain Linear
    with pytest.raises(TypeError, match="merge them into the weights first: merge_lora"):
        FastDecoder(adapted)
    decoder = FastDecoder(model)
    with pytest.raises(ValueError, match="context_length is 24"):
        decoder(torch.zeros(1, 25, dtype=torch.long))
    caches = decoder.make_kv_caches()
    decoder(torch.zeros(1, 20, dtype=torch.long), caches)
    with pytest.raises(ValueError, match="after 20 cached tokens"):
        decoder(torch.zeros(1, 5, dtype=torch.long), caches)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        decoder(torch.tensor([[97]]))
    with pytest.raises(ValueError, match="max_tokens"):
        decoder.make_kv_caches(0)


# FastModernDecoder (5.9.2) -------------------------------------------------------------------

MODERN_SHAPES = {  # each a configuration the decoder's fused products must reproduce
    "qwen3": {},  # QK-norm, 2 key/value heads for 4 query heads, a tied head
    "llama3": {"qk_norm": False, "tie_weights": False, "head_dim": None, "rope_base": 500_000.0,
               "rope_freq": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_context_length": 4}},
    "multi-head, biases": {"n_kv_groups": 4, "qkv_bias": True, "n_layers": 2},
    "one key/value head": {"n_kv_groups": 1, "context_length": 24},
    "gemma3": {  # sliding windows shorter than the inputs, Gemma 3's norms, GeGLU, scalings
        "n_layers": 6, "sliding_window": 5, "layer_types": ["local"] * 5 + ["global"],
        "rope_local_base": 100.0, "query_pre_attn_scalar": 12, "norm_unit_offset": True,
        "post_norms": True, "ffn_activation": "gelu_tanh", "scale_embeddings": True},
}


def modern_model(shape, **change):
    model = tiny_qwen3(**{"context_length": 16, **MODERN_SHAPES[shape], **change})
    with torch.no_grad():  # norms away from their initial ones, so that a lost scale shows
        for name, parameter in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                parameter.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("shape", MODERN_SHAPES)
def test_fast_modern_decoder_gives_the_models_logits(shape):
    model = modern_model(shape)
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(1))
    decoder = FastModernDecoder(model)
    with torch.no_grad():
        expected = model(ids)
        torch.testing.assert_close(decoder(ids), expected)
        torch.testing.assert_close(decoder(ids, last_only=True), expected[:, -1:])


@pytest.mark.parametrize("shape", ["qwen3", "gemma3"])  # gemma3: windowed caches
@pytest.mark.parametrize("split", [[12], [1] * 12, [5, 1, 6], [3, 9]])
def test_fast_modern_decoder_continues_a_cache_in_pieces_of_any_size(split, shape):
    model = modern_model(shape)
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(2))
    decoder = FastModernDecoder(model)
    caches, pieces, start = decoder.make_kv_caches(), [], 0
    with torch.no_grad():
        for size in split:  # rotary angles must start at the cached length
            pieces.append(decoder(ids[:, start:start + size], caches))
            start += size
        torch.testing.assert_close(torch.cat(pieces, dim=1), model(ids))
    assert caches[0].length == 12


@pytest.mark.parametrize("shape", MODERN_SHAPES)
def test_fast_modern_decoder_generates_the_models_tokens_even_past_the_context(shape):
    model = modern_model(shape)
    prompt = torch.tensor([[4, 8, 15, 16, 23], [42, 4, 8, 15, 16]])
    expected = generate(model, prompt, 40, use_cache=False)  # the window slides after 16
    assert torch.equal(generate(FastModernDecoder(model), prompt, 40), expected)


def test_fast_modern_decoder_is_a_float32_copy_in_evaluation_mode():
    model = modern_model("qwen3", drop_rate=0.5)
    ids = torch.randint(0, 50, (1, 8), generator=torch.Generator().manual_seed(3))
    decoder = FastModernDecoder(model.train())  # dropout on in the model: not in the decoder
    with torch.no_grad():
        before = decoder(ids)
        torch.testing.assert_close(before, model.eval()(ids))
        torch.testing.assert_close(FastModernDecoder(model.to(torch.bfloat16))(ids),
                                   model.float()(ids))  # the bf16 weights, computed in float32
        for parameter in model.parameters():
            parameter.add_(1.0)  # changing the model afterwards leaves the copy alone
        assert torch.equal(decoder(ids), before)
    assert before.dtype == torch.float32


@pytest.mark.parametrize("shape", ["qwen3", "llama3"])
def test_fast_modern_decoder_copies_a_tied_matrix_once(shape):
    model = modern_model(shape)
    decoder = FastModernDecoder(model)
    copied = {tensor.untyped_storage().data_ptr(): tensor.numel()
              for block in decoder.blocks for tensor in block.values() if tensor is not None}
    for tensor in (decoder.tok_emb, decoder.head, decoder.final_norm):
        copied[tensor.untyped_storage().data_ptr()] = tensor.numel()
    assert sum(copied.values()) == sum(p.numel() for p in model.parameters())  # 4 bytes each
    assert (decoder.tok_emb.untyped_storage().data_ptr()
            == decoder.head.untyped_storage().data_ptr()) == model.cfg["tie_weights"]


def test_fast_modern_decoder_refuses_what_it_does_not_compute():
    with pytest.raises(TypeError, match="model must be a ModernGPTModel .FastDecoder takes "
                                        "GPTModel., got GPTModel"):
        FastModernDecoder(small_model())
    # one rule (check_architecture): every option but the dense blocks' at its default (the
    # attack set of test_architecture.py covers the rest)
    refused = "FastModernDecoder does not support the configuration "
    moe = tiny_qwen3(hidden_dim=None, num_experts=4, num_experts_per_tok=2, moe_hidden_dim=8)
    with pytest.raises(ValueError, match=refused + "num_experts=4, num_experts_per_tok=2, "
                                         "moe_hidden_dim=8; .*: generate with the model itself"):
        FastModernDecoder(moe)
    decoder = FastModernDecoder(modern_model("qwen3"))
    with pytest.raises(ValueError, match="context_length is 16"):
        decoder(torch.zeros(1, 17, dtype=torch.long))
    caches = decoder.make_kv_caches(10)
    decoder(torch.zeros(1, 8, dtype=torch.long), caches)
    with pytest.raises(ValueError, match="after 8 cached ones but the cache was built for "
                                         "max_tokens=10"):
        decoder(torch.zeros(1, 3, dtype=torch.long), caches)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        decoder(torch.tensor([[50]]))


# The chunked loss (5.8) ----------------------------------------------------------------------

ROWS, WIDTH, CLASSES = 23, 16, 97  # 23 rows: a prime, so no chunk size from 2 to 22 divides it


def loss_inputs(rows=ROWS, width=WIDTH, classes=CLASSES, dtype=torch.float32, ignore_every=0,
                ignore_index=-100):
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(rows, width, generator=generator, dtype=dtype).requires_grad_()
    weight = (torch.randn(classes, width, generator=generator, dtype=dtype) / 2).requires_grad_()
    targets = torch.randint(0, classes, (rows,), generator=generator)
    if ignore_every:
        targets[::ignore_every] = ignore_index
    return hidden, weight, targets


def loss_and_gradients(loss_fn, hidden, weight, targets, grad_scale=1.0):
    loss = loss_fn(hidden, weight, targets)
    return (loss.detach(), *torch.autograd.grad(loss * grad_scale, (hidden, weight)))


def full_logits_loss(ignore_index=-100):
    return lambda h, w, t: nn.functional.cross_entropy(h @ w.T, t, ignore_index=ignore_index)


def chunked_loss(chunk_size, ignore_index=-100):
    return lambda h, w, t: chunked_cross_entropy(h, w, t, chunk_size, ignore_index)


@pytest.mark.parametrize("chunk_size", [1, 2, 7, ROWS - 1, ROWS, ROWS + 1, 1000])
@pytest.mark.parametrize("ignore_every", [0, 3])
def test_chunked_loss_and_gradients_equal_the_full_logits_ones(chunk_size, ignore_every):
    inputs = loss_inputs(ignore_every=ignore_every)
    for got, want in zip(loss_and_gradients(chunked_loss(chunk_size), *inputs),
                         loss_and_gradients(full_logits_loss(), *inputs), strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("ignore_index", [-1, 0, 5])  # 0 and 5 are also classes
def test_chunked_loss_ignores_any_ignore_index(ignore_index):
    inputs = loss_inputs(ignore_every=4, ignore_index=ignore_index)
    for got, want in zip(loss_and_gradients(chunked_loss(5, ignore_index), *inputs),
                         loss_and_gradients(full_logits_loss(ignore_index), *inputs)):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("grad_scale", [0.3, -2.0, 0.0])
def test_chunked_loss_scales_its_gradients_by_the_incoming_one(grad_scale):
    # gradient accumulation backpropagates loss / steps, not the loss itself
    inputs = loss_inputs(ignore_every=5)
    for got, want in zip(loss_and_gradients(chunked_loss(4), *inputs, grad_scale),
                         loss_and_gradients(full_logits_loss(), *inputs, grad_scale)):
        torch.testing.assert_close(got, want)


def test_chunked_loss_with_large_logits():
    hidden, weight, targets = loss_inputs(rows=30, classes=400, ignore_every=7)
    with torch.no_grad():
        weight.mul_(15)  # logits with a spread of ~30: most probabilities underflow float32
    probs = torch.softmax(hidden @ weight.T, dim=1)
    assert (probs < torch.finfo(torch.float32).tiny).float().mean() > 0.3
    for got, want in zip(loss_and_gradients(chunked_loss(8), hidden, weight, targets),
                         loss_and_gradients(full_logits_loss(), hidden, weight, targets)):
        torch.testing.assert_close(got, want)


def test_chunked_loss_takes_batched_shapes():
    hidden, weight, targets = loss_inputs(rows=24, ignore_every=7)
    batched = hidden.detach().reshape(2, 12, WIDTH).requires_grad_()
    got = loss_and_gradients(chunked_loss(5), batched, weight, targets.reshape(2, 12).int())
    want = loss_and_gradients(full_logits_loss(), batched.flatten(0, 1), weight, targets)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1].reshape(2, 12, WIDTH))
    torch.testing.assert_close(got[2], want[2])


def test_chunked_loss_of_only_ignored_targets_is_nan_with_zero_gradients():
    hidden, weight, targets = loss_inputs()
    targets[:] = -100
    got = loss_and_gradients(chunked_loss(4), hidden, weight, targets)
    want = loss_and_gradients(full_logits_loss(), hidden, weight, targets)
    assert torch.isnan(got[0]) and torch.isnan(want[0])
    for g, w in zip(got[1:], want[1:]):
        torch.testing.assert_close(g, w)
        assert not g.any()


def test_chunked_loss_in_float64_passes_gradcheck():
    hidden, weight, targets = loss_inputs(rows=6, width=3, classes=5, dtype=torch.float64,
                                          ignore_every=4)
    got = loss_and_gradients(chunked_loss(4), hidden, weight, targets)
    assert got[0].dtype == torch.float64
    for g, w in zip(got, loss_and_gradients(full_logits_loss(), hidden, weight, targets)):
        torch.testing.assert_close(g, w)
    assert torch.autograd.gradcheck(lambda h, w: chunked_cross_entropy(h, w, targets, 4),
                                    (hidden, weight))


def test_chunked_loss_keeps_no_logits_for_backward():
    hidden, weight, targets = loss_inputs(rows=64, classes=500)

    def saved_sizes(loss_fn):
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(
                lambda tensor: sizes.append(tensor.numel()) or tensor, lambda tensor: tensor):
            loss_fn(hidden, weight, targets)
        return sizes

    assert max(saved_sizes(chunked_loss(8))) == 500 * WIDTH  # the weight is the largest
    assert max(saved_sizes(full_logits_loss())) == 64 * 500  # the full logits: it can fail


def test_chunked_loss_under_autocast_follows_the_full_logits_precision():
    hidden, weight, targets = loss_inputs(rows=40, classes=300, ignore_every=6)

    def run(loss_fn, autocast):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = loss_fn(hidden, weight, targets)
        return (loss.detach(), *torch.autograd.grad(loss, (hidden, weight)))  # outside, as in 5.8

    got, want = run(chunked_loss(7), True), run(full_logits_loss(), True)
    in_float32 = run(full_logits_loss(), False)
    assert got[0].dtype == got[1].dtype == got[2].dtype == torch.float32
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1.6e-2, atol=1e-5)  # bfloat16's tolerances
    # the same bf16 products, the softmax in float32 in both: the loss and the hidden states'
    # gradient agree to float32 precision, and a float32 computation would not
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])
    with pytest.raises(AssertionError):
        torch.testing.assert_close(got[0], in_float32[0])


def tiny_gpt(tie_weights):
    return small_model(123, vocab_size=1000, context_length=16, n_heads=2, drop_rate=0.0,
                       qkv_bias=False, tie_weights=tie_weights, sdpa=True)


@pytest.mark.parametrize("tie_weights", [True, False])
def test_a_training_step_with_the_chunked_loss_moves_the_weights_alike(tie_weights):
    tokens = torch.randint(0, 1000, (3, 13), generator=torch.Generator().manual_seed(0))
    batch = [(tokens[:, :-1], tokens[:, 1:])]
    trained = []
    for loss_batch in (calc_loss_batch, calc_loss_batch_chunked):
        model = tiny_gpt(tie_weights)
        loss_batch(*batch[0], model, "cpu").backward()
        torch.optim.SGD(model.parameters(), lr=0.5).step()
        trained.append(dict(model.named_parameters()))
    untrained = dict(tiny_gpt(tie_weights).named_parameters())
    for name, parameter in trained[0].items():
        torch.testing.assert_close(trained[1][name], parameter, msg=name)
        assert not torch.equal(parameter, untrained[name]), name  # the step moved it


def test_the_chunked_batch_loss_refuses_a_head_with_a_bias():
    model = tiny_gpt(tie_weights=False)
    model.out_head = nn.Linear(32, 1000)  # the chunks multiply by the weight alone
    tokens = torch.randint(0, 1000, (1, 9))
    with pytest.raises(ValueError, match="without a bias"):
        calc_loss_batch_chunked(tokens[:, :-1], tokens[:, 1:], model, "cpu")


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((torch.randn(4, WIDTH), torch.randn(CLASSES, WIDTH), torch.tensor([1., 2, 3, 4])), {},
     TypeError, "integer class ids"),
    ((torch.randn(4, WIDTH), torch.randn(CLASSES, WIDTH), torch.tensor([1, 2, 3, 4])),
     {"chunk_size": 0}, ValueError, "chunk_size"),
    ((torch.randn(4, WIDTH), torch.randn(WIDTH, CLASSES), torch.tensor([1, 2, 3, 4])), {},
     ValueError, r"weight \(vocab, d\)"),
    ((torch.randn(4, WIDTH), torch.randn(CLASSES, WIDTH), torch.tensor([1, 2, 3])), {},
     ValueError, "do not fit"),
    ((torch.randn(4, WIDTH), torch.randn(CLASSES, WIDTH), torch.tensor([1, CLASSES, 3, 4])), {},
     ValueError, "target 97 is outside the vocabulary"),
    ((torch.randn(4, WIDTH), torch.randn(CLASSES, WIDTH), torch.tensor([1, -100, 3, 4])),
     {"ignore_index": -1}, ValueError, "target -100 is outside"),
])
def test_chunked_loss_rejects_inputs_that_do_not_fit(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        chunked_cross_entropy(*args, **kwargs)


# supports_fast_bf16, which decides bf16 autocast (5.8, pretrain.py --fast) ---------------------

GPU_CAPABILITIES = {"T4": (7, 5), "V100": (7, 0), "A100": (8, 0), "RTX 3090": (8, 6),
                    "H100": (9, 0)}


def pretend_cuda_gpu(monkeypatch, capability):
    """torch.cuda's answers on a machine with one GPU of this compute capability, as torch
    gives them: bf16 is supported from 8.0 on, and below that too while emulation counts
    (is_bf16_supported's default), as it does on a T4 or a V100."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True:
                        capability >= (8, 0) or including_emulation)


@pytest.mark.parametrize("gpu, native", [("T4", False), ("V100", False), ("A100", True),
                                         ("RTX 3090", True), ("H100", True)])
def test_bf16_counts_as_native_on_a_gpu_of_compute_capability_8_or_above(monkeypatch, gpu,
                                                                          native):
    pretend_cuda_gpu(monkeypatch, GPU_CAPABILITIES[gpu])
    assert torch.cuda.is_bf16_supported()  # torch's default answer: yes, even emulated
    assert supports_fast_bf16("cuda") is native
    assert supports_fast_bf16(torch.device("cuda", 0)) is native


def test_bf16_needs_both_of_torchs_answers_on_a_gpu(monkeypatch):
    pretend_cuda_gpu(monkeypatch, (8, 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert supports_fast_bf16("cuda") is False


AVX2_ONLY_FLAGS = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 "
                   "clflush mmx fxsr sse sse2 ht syscall nx lm constant_tsc pni pclmulqdq ssse3 "
                   "fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand bmi1 avx2 "
                   "bmi2 adx sha_ni")  # an AMD EPYC of the Zen 2 and 3 generations


@pytest.mark.parametrize("flags, native", [
    (AVX2_ONLY_FLAGS, False),
    (AVX2_ONLY_FLAGS + " avx512f avx512bw avx512_vnni", False),  # AVX-512 without its bf16
    (AVX2_ONLY_FLAGS + " avx512f avx512_bf16", True),
    (AVX2_ONLY_FLAGS + " avx512f avx512_bf16 amx_bf16 amx_tile amx_int8", True),
])
def test_bf16_counts_as_native_on_a_cpu_with_avx512_bf16_or_amx(monkeypatch, tmp_path, flags,
                                                                native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: {flags}\n")
    monkeypatch.setattr(fast_path, "_CPUINFO", cpuinfo)
    assert supports_fast_bf16("cpu") is native


def test_bf16_is_not_counted_where_nothing_says_it_is_native(monkeypatch, tmp_path):
    monkeypatch.setattr(fast_path, "_CPUINFO", tmp_path / "absent")  # macOS, Windows: no list
    assert supports_fast_bf16("cpu") is False
    for device in ("mps", "meta", torch.device("mps")):
        assert supports_fast_bf16(device) is False


@pytest.mark.parametrize("shape", ["qwen3", "gemma3"])
def test_fast_modern_decoder_in_bfloat16_stores_half_the_bytes_and_stays_close(shape):
    model = modern_model(shape)
    ids = torch.randint(0, 50, (1, 12), generator=torch.Generator().manual_seed(4))
    decoder = FastModernDecoder(model, torch.bfloat16)
    assert decoder.blocks[0]["qkv"].dtype == torch.bfloat16 and decoder.head.dtype == torch.bfloat16
    caches, pieces = decoder.make_kv_caches(), []
    with torch.no_grad():
        expected = model(ids)
        for start in range(12):  # one row, one token at a time: torch.mv's bf16 path
            pieces.append(decoder(ids[:, start:start + 1], caches))
        # bf16 rounding: off by no more than the model itself computing in bfloat16
        model_error = (copy.deepcopy(model).to(torch.bfloat16)(ids).float() - expected).abs().max()
        for logits in (decoder(ids), torch.cat(pieces, dim=1)):
            assert (logits - expected).abs().max() <= 1.5 * model_error
    with pytest.raises(ValueError, match="weight_dtype must be torch.float32 or torch.bfloat16"):
        FastModernDecoder(model, torch.float16)
