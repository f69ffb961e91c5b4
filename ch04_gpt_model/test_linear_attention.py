"""Section 4.9's Gated DeltaNet: the chunked form against the plain recurrence (and both against
transformers' reference code for Qwen3-Next), its gradients, and the layer's refusals. The
layer inside a whole Qwen3-Next, against transformers, is in test_modern.py."""

import pytest
import torch
import transformers
from transformers.models.qwen3_next import modeling_qwen3_next

from shared import DeltaNetCache, GatedDeltaNet, gated_delta_rule, gated_delta_rule_chunked


def rule_inputs(dtype=torch.float32, batch=2, heads=3, tokens=37, key_dim=8, value_dim=6):
    """Queries, unit-length keys, values, decays (logs, <= 0), writing strengths in (0, 1), and
    a starting state, drawn from a fixed seed."""
    g = torch.Generator().manual_seed(0)
    queries = torch.randn(batch, heads, tokens, key_dim, generator=g, dtype=dtype)
    keys = torch.nn.functional.normalize(
        torch.randn(batch, heads, tokens, key_dim, generator=g, dtype=dtype), dim=-1)
    values = torch.randn(batch, heads, tokens, value_dim, generator=g, dtype=dtype)
    decay = -torch.rand(batch, heads, tokens, generator=g, dtype=dtype)
    beta = torch.rand(batch, heads, tokens, generator=g, dtype=dtype)
    state = torch.randn(batch, heads, key_dim, value_dim, generator=g, dtype=dtype)
    return queries, keys, values, decay, beta, state


@pytest.mark.parametrize("chunk_size", [1, 4, 5, 16, 37, 64])  # 5: a last chunk of 2
@pytest.mark.parametrize("with_state", [False, True])
def test_the_chunked_form_equals_the_recurrence_within_float32_rounding(chunk_size, with_state):
    *inputs, state = rule_inputs()
    state = state if with_state else None
    outputs, last = gated_delta_rule(*inputs, state=state)
    chunked, chunked_last = gated_delta_rule_chunked(*inputs, state=state, chunk_size=chunk_size)
    torch.testing.assert_close(chunked, outputs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(chunked_last, last, atol=1e-5, rtol=1e-5)


def test_in_float64_the_two_forms_agree_to_float64_rounding():
    """The chunked form is the same arithmetic rearranged, not an approximation."""
    *inputs, state = rule_inputs(torch.float64)
    outputs, last = gated_delta_rule(*inputs, state=state)
    chunked, chunked_last = gated_delta_rule_chunked(*inputs, state=state, chunk_size=8)
    assert (chunked - outputs).abs().max() < 1e-12
    assert (chunked_last - last).abs().max() < 1e-12


def test_both_forms_are_transformers_reference_code_for_qwen3_next():
    """transformers' own PyTorch versions (used where the fla kernels are not installed): they
    take (batch, tokens, heads, dim) and scale the queries by key_dim ** -0.5 themselves."""
    queries, keys, values, decay, beta, state = rule_inputs()
    ours, ours_last = gated_delta_rule(queries, keys, values, decay, beta, state=state)
    theirs = {}
    for name in ("torch_recurrent_gated_delta_rule", "torch_chunk_gated_delta_rule"):
        function = getattr(modeling_qwen3_next, name)
        theirs[name] = function(
            *(x.transpose(1, 2) for x in (queries * queries.shape[-1] ** 0.5, keys, values)),
            g=decay.transpose(1, 2), beta=beta.transpose(1, 2), initial_state=state,
            output_final_state=True)
    for outputs, last in theirs.values():
        torch.testing.assert_close(outputs.transpose(1, 2), ours, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(last, ours_last, atol=1e-5, rtol=1e-5)


def test_the_chunked_forms_gradients_are_the_recurrences():
    """What trains fast trains the same: gradients of a loss through either form agree."""
    inputs = [x.requires_grad_() for x in rule_inputs(tokens=20)]
    gradients = []
    for rule in (gated_delta_rule, lambda *x, state: gated_delta_rule_chunked(
            *x, state=state, chunk_size=6)):
        outputs, last = rule(*inputs[:-1], state=inputs[-1])
        grads = torch.autograd.grad(outputs.square().sum() + last.square().sum(), inputs)
        gradients.append(grads)
    for ours, theirs in zip(*gradients):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_a_decoding_step_costs_the_same_whatever_came_before():
    """The state a step reads and writes has one size, after 5 tokens or after 500: the cost
    per new token does not grow with the context (counted here in numbers, not seconds)."""
    layer = GatedDeltaNet(32, key_heads=2, value_heads=4, key_dim=8, value_dim=8,
                          conv_kernel=4).eval()
    sizes = []
    for context in (5, 500):
        cache = DeltaNetCache()
        with torch.no_grad():
            layer(torch.randn(1, context, 32), kv_cache=cache)
            layer(torch.randn(1, 1, 32), kv_cache=cache)
        sizes.append((cache.state.numel(), cache.conv_inputs.numel(), cache.length))
    state, conv_inputs = 4 * 8 * 8, (2 * 2 * 8 + 4 * 8) * 3  # heads * key * value; channels * 3
    assert sizes == [(state, conv_inputs, 6), (state, conv_inputs, 501)]


def test_value_heads_that_key_heads_do_not_divide_are_refused_by_name():
    with pytest.raises(ValueError, match="value_heads"):
        GatedDeltaNet(32, key_heads=3, value_heads=4, key_dim=8, value_dim=8, conv_kernel=4)


def test_the_layer_is_transformers_qwen3_next_layer_and_in_bfloat16_bit_for_bit():
    """One Gated DeltaNet layer over 100 tokens (two chunks) with transformers' weights, drawn
    at random: float32 to rounding, and in bfloat16 the same numbers, which holds only if every
    cast happens where Qwen3-Next's code makes it (the sigmoid of beta in the input's dtype)."""
    config = transformers.Qwen3NextConfig(
        hidden_size=64, linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
        linear_value_head_dim=12, num_hidden_layers=1, layer_types=["linear_attention"])
    torch.manual_seed(0)
    theirs = modeling_qwen3_next.Qwen3NextGatedDeltaNet(config, layer_idx=0).eval()
    ours = GatedDeltaNet(64, key_heads=2, value_heads=4, key_dim=8, value_dim=12,
                         conv_kernel=4).eval()
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.normal_(0.0, 0.3)
        for mine, their_name in [(ours.W_qkvz.weight, "in_proj_qkvz.weight"),
                                 (ours.W_ba.weight, "in_proj_ba.weight"),
                                 (ours.conv.weight, "conv1d.weight"), (ours.A_log, "A_log"),
                                 (ours.dt_bias, "dt_bias"), (ours.norm.weight, "norm.weight"),
                                 (ours.out_proj.weight, "out_proj.weight")]:
            mine.copy_(theirs.get_parameter(their_name))
        x = torch.randn(2, 100, 64, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
        x = x.bfloat16()
        assert torch.equal(ours.bfloat16()(x), theirs.bfloat16()(x))
