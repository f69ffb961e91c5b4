"""Tests of chapter 5's switches for speed and memory: FastDecoder (5.7) on both families and
on a learner's variants of them, the chunked loss and the bf16 switch (5.8)."""


import copy
import types

import pytest
import torch
from torch import nn

from ch04_gpt_model.final_model import GPTModel
from ch04_gpt_model.gpt_model import TransformerBlock
from ch04_gpt_model.modern import ModernBlock, SwiGLU
from ch05_pretraining import fast_path
from ch05_pretraining.decoding import generate_text
from ch05_pretraining.fast_path import (
    BFloat16Linear,
    FastDecoder,
    Int8Linear,
    calc_loss_batch_chunked,
    chunked_cross_entropy,
    supports_fast_bf16,
)
from ch05_pretraining.pretraining import calc_loss_batch
from ch06_classification.lora import replace_linear_with_lora
from conftest import tiny_qwen3


SMALL = {"vocab_size": 97, "context_length": 24, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
         "drop_rate": 0.1, "qkv_bias": True}


def small_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return GPTModel({**SMALL, **overrides}).eval()


# FastDecoder: the model's own forward on a float32 copy with packed linear layers ------------

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
    uncached = generate_text(model, prompt, 60, context_size=16, use_cache=False)
    assert torch.equal(generate_text(FastDecoder(model), prompt, 60, context_size=16), uncached)


def test_fast_decoder_samples_the_models_tokens_from_the_same_seed():
    model = small_model()
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    drawn = []
    for decoder in (model, FastDecoder(model)):
        torch.manual_seed(7)
        drawn.append(generate_text(decoder, prompt, 15, context_size=24, temperature=1.0, top_k=20))
    assert torch.equal(*drawn)


def test_a_compiled_fast_decoder_decodes_as_the_model_and_still_refuses_bad_ids():
    """compile=True: the copy runs through torch.compile's own kernels (a real compilation,
    tens of seconds on two cores), to the model's greedy tokens; the ids are still checked,
    though the compiled code does not read them."""
    from torch._dynamo.utils import counters

    # one block: the compilation's time grows with the graph, and one block is every kind of code
    model, prompt = small_model(n_layers=1), torch.tensor([[4, 8, 15, 16, 23]])
    counters.clear()
    decoder = FastDecoder(model, compile=True)
    assert torch.equal(generate_text(decoder, prompt, 3, context_size=24),
                       generate_text(model, prompt, 3, context_size=24))
    assert counters["stats"]["unique_graphs"] > 0  # it did compile
    with pytest.raises(ValueError, match="outside the vocabulary"):
        decoder(torch.tensor([[97]]))


def test_fast_decoder_is_a_copy_in_evaluation_mode():
    model, ids = small_model(), torch.randint(0, SMALL["vocab_size"], (1, 8))
    decoder = FastDecoder(model.train())  # dropout on in the model: not in the decoder
    with torch.no_grad():
        before = decoder(ids)
        torch.testing.assert_close(before, model.eval()(ids))
        for parameter in model.parameters():
            parameter.add_(1.0)  # training the model afterwards leaves the copy alone
        assert torch.equal(decoder(ids), before)


def test_fast_decoder_copies_the_config():
    model = small_model()
    decoder = FastDecoder(model)
    assert decoder.cfg == model.cfg and decoder.cfg is not model.cfg
    model.cfg["context_length"] = 99  # changing the model's afterwards leaves the copy's alone
    assert decoder.cfg["context_length"] == SMALL["context_length"]


def test_fast_decoder_computes_in_float32_whatever_the_models_dtype():
    model, ids = small_model(), torch.randint(0, SMALL["vocab_size"], (1, 6))
    with torch.no_grad():
        expected = FastDecoder(model)(ids)
        logits = FastDecoder(model.to(torch.bfloat16))(ids)
    assert logits.dtype == torch.float32
    assert (logits - expected).abs().max() < 0.05 * expected.abs().max()  # weights rounded once


def packed_layers(decoder):
    return [m for m in decoder.model.modules() if isinstance(m, BFloat16Linear)]


def test_fast_decoder_with_bf16_weights_is_close_and_reads_half_the_bytes():
    model, ids = small_model(), torch.randint(0, SMALL["vocab_size"], (1, 12))
    decoder = FastDecoder(model, torch.bfloat16)
    linears = [m for m in model.modules() if type(m) is nn.Linear]
    assert len(packed_layers(decoder)) == len(linears)  # every one, the head too
    assert all(layer.weight.dtype == torch.bfloat16 for layer in packed_layers(decoder))
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


def test_an_int8_layer_computes_the_product_of_its_rounded_input_and_weight():
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    layer, x = Int8Linear(linear), torch.randn(2, 3, 64)
    assert layer.weight.dtype == torch.int8 and layer.weight.shape == (48, 64)
    assert layer.weight.abs().amax(dim=1).eq(63).all()  # each row's largest weight is 63
    # by hand: each input row rounded to -127..127 and each weight row to -63..63 by its own
    # scale, in float64
    rows = x.reshape(-1, 64).double()
    row_scale = rows.abs().amax(dim=1, keepdim=True) / 127
    weight_scale = linear.weight.detach().double().abs().amax(dim=1) / 63
    rounded = (torch.round(rows / row_scale) * row_scale) @ (
        torch.round(linear.weight.detach().double() / weight_scale[:, None])
        * weight_scale[:, None]).T + linear.bias.detach().double()
    with torch.no_grad():
        out = layer(x)
        assert out.shape == (2, 3, 48)
        torch.testing.assert_close(out.double(), rounded.reshape(2, 3, 48), rtol=1e-5, atol=1e-5)
        assert (out - linear(x)).abs().max() > 1e-4  # it really is rounded


def test_the_int8_product_is_exact_at_its_extremes():
    # the largest input and weight magnitudes, where 16-bit pair sums (processors without VNNI)
    # would overflow if the weights went to 127
    linear = nn.Linear(768, 64, bias=False)
    with torch.no_grad():
        linear.weight.fill_(1.0)
    layer, x = Int8Linear(linear), torch.ones(1, 768)
    exact = (torch.ones(1, 768, dtype=torch.long) * 127) @ layer.weight.long().T
    assert torch.equal(torch._int_mm(torch.full((1, 768), 127, dtype=torch.int8),
                                     layer.weight.T).long(), exact)
    torch.testing.assert_close(layer(x), linear(x), rtol=0, atol=1e-4)


def test_fast_decoder_with_int8_weights_is_close_and_reads_a_quarter_of_the_bytes():
    model, ids = small_model(), torch.randint(0, SMALL["vocab_size"], (1, 12))
    decoder = FastDecoder(model, torch.int8)
    layers = [m for m in decoder.model.modules() if isinstance(m, Int8Linear)]
    assert len(layers) == sum(type(m) is nn.Linear for m in model.modules())  # the head too
    caches = decoder.make_kv_caches()
    with torch.no_grad():
        expected = model(ids)
        stepped = torch.cat([decoder(ids[:, :5], caches)]
                            + [decoder(ids[:, i:i + 1], caches) for i in range(5, 12)], dim=1)
    scale = expected.abs().max()
    assert (stepped - expected).abs().max() < 0.05 * scale  # 8 bits: about 1% of the spread
    assert sum(m.weight.numel() * m.weight.element_size() for m in layers) == sum(
        m.weight.numel() for m in model.modules() if type(m) is nn.Linear)  # 1 byte a weight


def test_fast_decoder_with_int8_weights_decodes_a_modern_model_closely():
    model, ids = tiny_qwen3(), torch.randint(0, 50, (2, 8))
    with torch.no_grad():
        expected, logits = model(ids), FastDecoder(model, torch.int8)(ids)
    assert (logits - expected).abs().max() < 0.05 * expected.abs().max()


def test_fast_decoder_refuses_what_the_model_refuses():
    model = small_model()
    with pytest.raises(ValueError, match="weight_dtype"):
        FastDecoder(model, torch.float16)
    decoder = FastDecoder(model)
    with pytest.raises(ValueError, match="context_length=24"):
        decoder(torch.zeros(1, 25, dtype=torch.long))
    caches = decoder.make_kv_caches()
    decoder(torch.zeros(1, 20, dtype=torch.long), caches)
    with pytest.raises(ValueError, match="5 tokens after 20 cached ones"):
        decoder(torch.zeros(1, 5, dtype=torch.long), caches)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        decoder(torch.tensor([[97]]))
    with pytest.raises(ValueError, match="max_tokens=0"):
        decoder(torch.zeros(1, 2, dtype=torch.long), decoder.make_kv_caches(0))
    with pytest.raises(ValueError, match="this model's make_kv_caches"):
        decoder(torch.zeros(1, 2, dtype=torch.long), model.make_kv_caches())


def test_fast_decoder_runs_a_hook_registered_for_every_module():
    model, ids = small_model(), torch.randint(0, SMALL["vocab_size"], (1, 6))
    decoder = FastDecoder(model)
    handle = nn.modules.module.register_module_forward_hook(
        lambda module, inputs, output: 2 * output if torch.is_tensor(output) else output)
    try:
        with torch.no_grad():
            doubled = model(ids)
            torch.testing.assert_close(decoder(ids), doubled)  # its packed layers doubled too
    finally:
        handle.remove()
    with torch.no_grad():
        assert not torch.allclose(decoder(ids), doubled)


# FastDecoder on a learner's variants of both families ----------------------------------------

def learners_subclass(model, method, change):
    """`model` (the same weights) as an instance of a learner's subclass of its class whose
    `method` is `change` applied to what its class's computes; the arguments, kv_caches among
    them, passed on as they came."""
    family = type(model)

    def changed(self, *args, **kwargs):
        return change(getattr(family, method)(self, *args, **kwargs))
    model.__class__ = type(f"Learners{family.__name__}", (family,), {method: changed})
    return model


def random_norm(kind, width):
    norm = kind(width)
    with torch.no_grad():  # away from the initial ones: a lost scale or shift shows
        for parameter in norm.parameters():
            parameter.uniform_(0.5, 1.5)
    return norm


class ReLUGLU(SwiGLU):
    """The gated feed-forward with a ReLU gate."""

    def forward(self, x):
        return self.down(torch.relu(self.gate(x)) * self.up(x))


class Scaled(nn.Module):
    """A block whose output is halved."""

    def __init__(self, block):
        super().__init__()
        self.block = block

    @property
    def att(self):  # ModernGPTModel reads each block's att.window
        return self.block.att

    def forward(self, *args, **kwargs):
        return 0.5 * self.block(*args, **kwargs)


class ParallelBlock(TransformerBlock):
    """GPT-J's block: attention and feed-forward side by side, x + att(norm1(x)) + ff(norm2(x))."""

    def forward(self, x, kv_cache=None):
        return x + self.att(self.norm1(x), kv_cache) + self.ff(self.norm2(x))


class ParallelModernBlock(ModernBlock):
    def forward(self, x, rope, kv_cache=None):
        return x + self.att(self.norm1(x), rope, kv_cache) + self.ff(self.norm2(x))


def relu_feed_forward(model):
    for block in model.trf_blocks:
        if isinstance(block.ff, SwiGLU):
            block.ff.__class__ = ReLUGLU
        else:
            block.ff.layers[1] = nn.ReLU()
    return model


def parallel_blocks(model):
    for block in model.trf_blocks:
        block.__class__ = ParallelModernBlock if isinstance(block, ModernBlock) else ParallelBlock
    return model


def swapped_norms(model):
    model.trf_blocks[0].norm1 = random_norm(nn.LayerNorm, model.cfg["emb_dim"])
    model.final_norm = random_norm(nn.RMSNorm, model.cfg["emb_dim"])
    return model


def with_lora(model):
    replace_linear_with_lora(model, rank=2, alpha=4)
    with torch.no_grad():  # B starts at zero; a trained adapter has moved it
        for name, parameter in model.named_parameters():
            if name.endswith(".B"):
                parameter.normal_(0, 0.05)
    return model


def set_attribute(model, name, make):
    """model with the submodule at `name` replaced by make(that submodule)."""
    model.set_submodule(name, make(model.get_submodule(name)))
    return model


def hooked(model, name, hook, **options):
    model.get_submodule(name).register_forward_hook(hook, **options)
    return model


def learners_subclass_reading_the_head(model):
    """A forward that multiplies by out_head.weight itself (a learner's tied-head experiment):
    it must see nn.Linear's (out, in) matrix with its values, however the decoder stores it."""
    class ReadsTheHead(type(model)):
        def forward(self, in_idx, kv_caches=None, last_only=False):
            hidden = self.hidden_states(in_idx, kv_caches)
            hidden = hidden[:, -1:] if last_only else hidden
            return hidden @ self.out_head.weight.T * 0.5
    model.__class__ = ReadsTheHead
    return model


def forward_on_the_instance(model, name, forward):
    """A method set on one module (bound to it, so that a copy binds it to the copy)."""
    module = model.get_submodule(name)
    module.forward = types.MethodType(forward, module)
    return model


def linear_with_bias_flipped(linear):
    return nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is None)


VARIANTS = {  # a learner's change to a small model of either family
    "forward overridden": lambda m: learners_subclass(
        m, "forward", lambda logits: 0.1 * torch.tanh(logits / 0.1)),  # Gemma 2's soft cap
    "hidden_states overridden": lambda m: learners_subclass(
        m, "hidden_states", lambda hidden: nn.functional.silu(hidden)),
    "swapped norms": swapped_norms,
    "ReLU feed-forward": relu_feed_forward,
    "a scaled block": lambda m: set_attribute(m, "trf_blocks.1", Scaled),
    "parallel blocks": parallel_blocks,
    "classification head": lambda m: set_attribute(
        m, "out_head", lambda head: nn.Linear(head.in_features, 3)),
    "LoRA adapters": with_lora,
    "a hook on a block": lambda m: hooked(m, "trf_blocks.0", lambda _, inputs, out: 2 * out),
    "a hook on a linear": lambda m: hooked(m, "trf_blocks.0.att.W_query",
                                           lambda _, inputs, out: out + 0.5),
    "a keyword hook on a linear": lambda m: hooked(
        m, "trf_blocks.0.att.W_key", lambda _, inputs, kwargs, out: out - 0.5, with_kwargs=True),
    "a head that reads its weight": lambda m: learners_subclass_reading_the_head(m),
    "forward set on a block": lambda m: forward_on_the_instance(
        m, "trf_blocks.1", lambda self, x, *args: x + 0.5 * type(self).forward(self, x, *args)),
    "forward set on a linear": lambda m: forward_on_the_instance(
        m, "trf_blocks.0.att.out_proj", lambda self, x: nn.functional.linear(
            x, self.weight.tanh(), self.bias)),
    "a linear in a Sequential": lambda m: set_attribute(
        m, "trf_blocks.0.att.W_value", lambda linear: nn.Sequential(linear, nn.Tanh())),
    "a bias added or removed": lambda m: set_attribute(m, "trf_blocks.1.att.out_proj",
                                                       linear_with_bias_flipped),
}
FAMILIES = {  # 16 tokens of context, a vocabulary of 50 tokens or more
    "GPTModel": lambda: small_model(context_length=16, n_layers=2),
    "ModernGPTModel": lambda: modern_model("qwen3", n_layers=2),
}


def learners_variant(family, variant):
    model = VARIANTS[variant](FAMILIES[family]()).eval()
    ids = torch.randint(0, 50, (2, 14), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():  # the change matters: the variant computes something else
        changed, plain = model(ids), FAMILIES[family]()(ids)
        assert changed.shape != plain.shape or not torch.allclose(changed, plain)
    return model, ids


def what_can_change(model):
    return ([type(m) for m in model.modules()],
            {name: tensor.clone() for name, tensor in model.state_dict().items()},
            sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()),
            model.training, next(model.parameters()).dtype)


def assert_same_state(got, expected):
    (types_, state, *rest), (expected_types, expected_state, *expected_rest) = got, expected
    assert types_ == expected_types and rest == expected_rest
    assert state.keys() == expected_state.keys()
    assert all(torch.equal(state[name], tensor) for name, tensor in expected_state.items())


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("family", FAMILIES)
def test_fast_decoder_gives_a_variants_own_logits_at_every_step(family, variant):
    model, ids = learners_variant(family, variant)
    before = what_can_change(model)
    decoder = FastDecoder(model)
    assert_same_state(what_can_change(model), before)  # the model passed in is never changed
    caches = decoder.make_kv_caches()
    with torch.no_grad():
        for end in range(5, ids.shape[1] + 1):  # the prompt once, then one token at a time
            logits = decoder(ids[:, :5] if end == 5 else ids[:, end - 1:end], caches)
            torch.testing.assert_close(logits[:, -1], model(ids[:, :end])[:, -1])
    assert_same_state(what_can_change(model), before)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("family", FAMILIES)
def test_fast_decoder_generates_a_variants_own_tokens(family, variant):
    model, ids = learners_variant(family, variant)
    prompt = ids[:, :5]
    expected = generate_text(model, prompt, 20, use_cache=False)  # past the context of 16
    assert torch.equal(generate_text(FastDecoder(model), prompt, 20), expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_fast_decoder_with_bf16_weights_stays_close_on_a_variant(family):
    model, ids = learners_variant(family, "LoRA adapters")
    decoder = FastDecoder(model, torch.bfloat16)
    assert all(layer.weight.dtype == torch.bfloat16 for layer in packed_layers(decoder))
    assert len(packed_layers(decoder)) == sum(type(m) is nn.Linear for m in model.modules())
    caches = decoder.make_kv_caches()
    with torch.no_grad():
        expected = model(ids)
        stepped = torch.cat([decoder(ids[:, :5], caches)]  # then one row: torch.mv's bf16 path
                            + [decoder(ids[:, i:i + 1], caches) for i in range(5, 14)], dim=1)
    scale = expected.abs().max()
    assert (stepped - expected).abs().max() < 0.05 * scale
    assert (stepped - expected).abs().max() > 1e-6 * scale  # it really is not float32


# FastDecoder on 4.8's modern family ----------------------------------------------------------

MODERN_SHAPES = {  # each a configuration the decoder must reproduce
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
    "mixture of experts": {"hidden_dim": None, "num_experts": 4, "num_experts_per_tok": 2,
                           "moe_hidden_dim": 8},
    "olmo3": {  # norms after the sublayers only, QK-norm across heads, windows, YaRN
        "n_layers": 4, "sliding_window": 5, "layer_types": ["local"] * 3 + ["global"],
        "pre_norms": False, "post_norms": True, "qk_norm_across_heads": True,
        "rope_local_base": 10_000.0, "rope_freq": {"type": "yarn", "factor": 4.0, "beta_fast": 32,
                                                   "beta_slow": 1, "original_context_length": 8}},
    "gpt_oss": {  # sinks, biases, experts with biases and the clamped SwiGLU, windows, YaRN
        "n_layers": 4, "sliding_window": 5, "layer_types": ["local", "global"] * 2,
        "qk_norm": False, "qkv_bias": True, "attention_out_bias": True, "attention_sinks": True,
        "hidden_dim": None, "num_experts": 4, "num_experts_per_tok": 2, "moe_hidden_dim": 8,
        "ffn_bias": True, "ffn_activation": "clamped_silu", "swiglu_alpha": 1.702,
        "swiglu_limit": 7.0, "rope_freq": {"type": "yarn", "factor": 4.0, "beta_fast": 32,
                                           "beta_slow": 1, "original_context_length": 8,
                                           "truncate": False}},
    "qwen3_next": {  # Gated DeltaNet (4.9) in 3 layers of 4, gated attention, a quarter of
        # each head turned by RoPE, experts with a gated shared expert; 3-token chunks, so that
        # the pieces below cross chunks
        "n_layers": 4, "layer_types": ["linear"] * 3 + ["global"], "attention_gate": True,
        "rope_dim": 4, "norm_unit_offset": True, "hidden_dim": None, "num_experts": 4,
        "num_experts_per_tok": 2, "moe_hidden_dim": 8, "shared_expert_dim": 12,
        "deltanet": {"key_heads": 2, "value_heads": 4, "key_dim": 8, "value_dim": 6,
                     "conv_kernel": 4, "chunk_size": 3}},
    "deepseek_v3": {  # latent attention with its compressed cache, interleaved RoPE pairs, the
        # first layer dense, then experts routed by groups beside an ungated shared expert
        "n_layers": 2, "head_dim": 6, "rope_dim": 2, "qk_norm": False,
        "mla": {"q_rank": 12, "kv_rank": 8, "v_dim": 4, "interleaved": True},
        "num_experts": 4, "num_experts_per_tok": 2, "moe_hidden_dim": 8, "shared_expert_dim": 8,
        "shared_expert_gate": False, "dense_layers": 1,
        "moe_router": {"groups": 2, "topk_groups": 1, "scale": 2.5}},
    "gemma4": {  # per-layer inputs; the last 2 of 4 layers reuse keys and values (twice as wide
        # a feed-forward); wider global layers with values from keys and RoPE on a quarter of
        # their pairs; experts beside each dense feed-forward; capped logits (4.8.13)
        "n_layers": 4, "sliding_window": 5, "layer_types": ["local", "global"] * 2,
        "rope_local_base": 100.0, "query_pre_attn_scalar": 1, "post_norms": True,
        "ffn_activation": "gelu_tanh", "scale_embeddings": True, "value_norm": True,
        "layer_scalar": True, "per_layer_dim": 4, "kv_shared_layers": 2, "double_wide_mlp": True,
        "global_head_dim": 16, "global_kv_groups": 1, "values_from_keys": True,
        "global_rope_fraction": 0.25, "final_logit_softcap": 2.0, "experts_beside_mlp": True,
        "num_experts": 4, "num_experts_per_tok": 2, "moe_hidden_dim": 8},
}


def modern_model(shape, **change):
    model = tiny_qwen3(**{"context_length": 16, **MODERN_SHAPES[shape], **change})
    with torch.no_grad():  # norms away from their initial ones, so that a lost scale shows
        for name, parameter in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                parameter.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("shape", MODERN_SHAPES)
def test_fast_decoder_gives_a_modern_models_logits(shape):
    model = modern_model(shape)
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(1))
    decoder = FastDecoder(model)
    with torch.no_grad():
        expected = model(ids)
        torch.testing.assert_close(decoder(ids), expected)
        torch.testing.assert_close(decoder(ids, last_only=True), expected[:, -1:])


# windowed caches, YaRN, DeltaNet's states
@pytest.mark.parametrize("shape", ["qwen3", "gemma3", "olmo3", "qwen3_next", "deepseek_v3",
                                   "gemma4"])
@pytest.mark.parametrize("split", [[12], [1] * 12, [5, 1, 6], [3, 9]])
def test_fast_decoder_continues_a_modern_cache_in_pieces_of_any_size(split, shape):
    model = modern_model(shape)
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(2))
    decoder = FastDecoder(model)
    caches, pieces, start = decoder.make_kv_caches(), [], 0
    with torch.no_grad():
        for size in split:  # rotary angles must start at the cached length
            pieces.append(decoder(ids[:, start:start + size], caches))
            start += size
        torch.testing.assert_close(torch.cat(pieces, dim=1), model(ids))
    assert caches[0].length == 12
    assert [cache.window for cache in caches] == [block.att.window for block in model.trf_blocks]


@pytest.mark.parametrize("shape", MODERN_SHAPES)
def test_fast_decoder_generates_a_modern_models_tokens_even_past_the_context(shape):
    model = modern_model(shape)
    prompt = torch.tensor([[4, 8, 15, 16, 23], [42, 4, 8, 15, 16]])
    expected = generate_text(model, prompt, 40, use_cache=False)  # the window slides after 16
    assert torch.equal(generate_text(FastDecoder(model), prompt, 40), expected)


def test_fast_decoder_of_a_modern_model_is_a_float32_copy_in_evaluation_mode():
    model = modern_model("qwen3", drop_rate=0.5)
    ids = torch.randint(0, 50, (1, 8), generator=torch.Generator().manual_seed(3))
    decoder = FastDecoder(model.train())  # dropout on in the model: not in the decoder
    with torch.no_grad():
        before = decoder(ids)
        torch.testing.assert_close(before, model.eval()(ids))
        torch.testing.assert_close(FastDecoder(model.to(torch.bfloat16))(ids),
                                   model.float()(ids))  # the bf16 weights, computed in float32
        for parameter in model.parameters():
            parameter.add_(1.0)  # changing the model afterwards leaves the copy alone
        assert torch.equal(decoder(ids), before)
    assert before.dtype == torch.float32


def test_fast_decoder_of_a_modern_model_refuses_what_the_model_refuses():
    decoder = FastDecoder(modern_model("qwen3"))
    with pytest.raises(ValueError, match="context_length=16"):
        decoder(torch.zeros(1, 17, dtype=torch.long))
    caches = decoder.make_kv_caches(10)
    decoder(torch.zeros(1, 8, dtype=torch.long), caches)
    with pytest.raises(ValueError, match="8 cached and 3 new positions pass the cache's "
                                         "max_tokens=10"):
        decoder(torch.zeros(1, 3, dtype=torch.long), caches)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        decoder(torch.tensor([[50]]))


@pytest.mark.parametrize("shape", ["qwen3", "gemma3"])
def test_fast_decoder_of_a_modern_model_in_bfloat16_stays_close(shape):
    model = modern_model(shape)
    ids = torch.randint(0, 50, (1, 12), generator=torch.Generator().manual_seed(4))
    decoder = FastDecoder(model, torch.bfloat16)
    assert all(layer.weight.dtype == torch.bfloat16 for layer in packed_layers(decoder))
    caches, pieces = decoder.make_kv_caches(), []
    with torch.no_grad():
        expected = model(ids)
        for start in range(12):  # one row, one token at a time: torch.mv's bf16 path
            pieces.append(decoder(ids[:, start:start + 1], caches))
        # bf16 rounding: off by no more than the model itself computing in bfloat16
        model_error = (copy.deepcopy(model).to(torch.bfloat16)(ids).float() - expected).abs().max()
        for logits in (decoder(ids), torch.cat(pieces, dim=1)):
            assert (logits - expected).abs().max() <= 1.5 * model_error


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


def test_the_chunked_batch_loss_refuses_gemma_4s_capped_logits():
    model = modern_model("qwen3", final_logit_softcap=30.0)
    tokens = torch.randint(0, 50, (1, 9))
    with pytest.raises(ValueError, match="or a cap"):  # the chunks would leave the cap out
        calc_loss_batch_chunked(tokens[:, :-1], tokens[:, 1:], model, "cpu")


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((torch.randn(4, WIDTH), torch.randn(CLASSES, WIDTH), torch.tensor([1., 2, 3, 4])), {},
     TypeError, "targets"),
    ((torch.randn(4, WIDTH), torch.randn(CLASSES, WIDTH), torch.tensor([1, 2, 3, 4])),
     {"chunk_size": -1}, ValueError, "chunk_size"),  # would give an empty loop, a loss of 0
    ((torch.randn(4, WIDTH), torch.randn(CLASSES, WIDTH), torch.tensor([1, 2, 3])), {},
     ValueError, "targets"),
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
