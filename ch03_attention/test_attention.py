"""Tests of chapter 3's attention modules: shapes, causality, equality with PyTorch's SDPA."""

import pytest
import torch
from torch import nn

from ch03_attention.attention import (
    CausalAttention,
    MultiHeadAttention,
    MultiHeadAttentionWrapper,
    SelfAttention_v1,
    SelfAttention_v2,
    attend,
    causal_mask,
)


CAUSAL_MODULES = {
    "CausalAttention": lambda: CausalAttention(16, 8, context_length=12, dropout=0.0),
    "MultiHeadAttentionWrapper": lambda: MultiHeadAttentionWrapper(16, 8, 12, 0.0, num_heads=3),
    "MultiHeadAttention": lambda: MultiHeadAttention(16, 8, 12, 0.0, num_heads=4, qkv_bias=True),
}


def test_self_attention_shapes_and_v2_equals_v1_with_the_same_weights():
    torch.manual_seed(0)
    x = torch.rand(6, 3)
    v2 = SelfAttention_v2(3, 2)
    v1 = SelfAttention_v1(3, 2)
    with torch.no_grad():  # nn.Linear stores W transposed: y = x @ W.T
        v1.W_query.copy_(v2.W_query.weight.T)
        v1.W_key.copy_(v2.W_key.weight.T)
        v1.W_value.copy_(v2.W_value.weight.T)
    assert v1(x).shape == (6, 2)
    torch.testing.assert_close(v1(x), v2(x))


@pytest.mark.parametrize("name", CAUSAL_MODULES)
def test_output_shape(name):
    torch.manual_seed(0)
    module = CAUSAL_MODULES[name]()
    out = module(torch.randn(2, 12, 16))
    expected_width = 8 * 3 if name == "MultiHeadAttentionWrapper" else 8
    assert out.shape == (2, 12, expected_width)


@pytest.mark.parametrize("name", CAUSAL_MODULES)
def test_changing_a_future_token_never_changes_an_earlier_output(name):
    torch.manual_seed(0)
    module = CAUSAL_MODULES[name]().eval()
    x = torch.randn(1, 10, 16)
    reference = module(x)
    for position in range(10):
        changed = x.clone()
        changed[0, position] += torch.randn(16)
        out = module(changed)
        torch.testing.assert_close(out[0, :position], reference[0, :position])
        assert not torch.allclose(out[0, position], reference[0, position])


@pytest.mark.parametrize("name", CAUSAL_MODULES)
def test_inputs_shorter_than_the_context_work(name):
    assert CAUSAL_MODULES[name]()(torch.randn(1, 5, 16)).shape[1] == 5


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_multi_head_attention_equals_scaled_dot_product_attention(qkv_bias):
    torch.manual_seed(0)
    mha = MultiHeadAttention(64, 48, context_length=32, dropout=0.0, num_heads=6,
                             qkv_bias=qkv_bias).eval()
    x = torch.randn(3, 20, 64)
    with torch.no_grad():
        q, k, v = (mha.split_heads(p(x)) for p in (mha.W_query, mha.W_key, mha.W_value))
        fused = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        expected = mha.out_proj(fused.transpose(1, 2).reshape(3, 20, 48))
        torch.testing.assert_close(mha(x), expected, atol=1e-5, rtol=1e-5)


def test_wrapper_heads_equal_split_heads_with_the_same_weights():
    """A wrapper of h heads of width d equals one d*h-wide split-head layer (before out_proj)."""
    torch.manual_seed(0)
    wrapper = MultiHeadAttentionWrapper(16, 4, 12, 0.0, num_heads=3)
    mha = MultiHeadAttention(16, 12, 12, 0.0, num_heads=3)
    with torch.no_grad():
        for name in ("W_query", "W_key", "W_value"):
            stacked = torch.cat([getattr(h, name).weight for h in wrapper.heads])
            getattr(mha, name).weight.copy_(stacked)
        mha.out_proj.weight.copy_(torch.eye(12))
        mha.out_proj.bias.zero_()
    x = torch.randn(2, 12, 16)
    torch.testing.assert_close(mha(x), wrapper(x))


def test_dropout_acts_in_training_only():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 8, 12, dropout=0.5, num_heads=2)
    x = torch.randn(2, 12, 16)
    assert not torch.equal(mha(x), mha(x))  # two different dropout masks
    mha.eval()
    assert torch.equal(mha(x), mha(x))


def test_mask_is_a_saved_buffer_not_a_parameter():
    mha = MultiHeadAttention(16, 8, 12, 0.0, num_heads=2)
    assert "mask" in mha.state_dict()
    assert all(name != "mask" for name, _ in mha.named_parameters())
    assert list(mha.state_dict()) == [
        "mask", "W_query.weight", "W_key.weight", "W_value.weight",
        "out_proj.weight", "out_proj.bias"]


# The fused kernel ------------------------------------------------------------------------

def gpt2_like_attention(use_sdpa=False):
    torch.manual_seed(0)
    return MultiHeadAttention(32, 32, context_length=20, dropout=0.0, num_heads=4,
                              qkv_bias=True, use_sdpa=use_sdpa).eval()


def test_fused_kernel_equals_explicit_softmax_with_the_same_weights():
    x = torch.randn(2, 20, 32)
    with torch.no_grad():
        torch.testing.assert_close(gpt2_like_attention(True)(x), gpt2_like_attention(False)(x),
                                   atol=1e-6, rtol=1e-5)


def test_fused_kernel_keeps_gradients_and_dropout_only_in_training():
    mha = gpt2_like_attention(True)
    mha.dropout.p = 0.5
    x = torch.randn(2, 8, 32)
    with torch.no_grad():
        assert torch.equal(mha(x), mha(x))  # eval: no dropout
    mha.train()
    torch.manual_seed(1)
    first = mha(x)
    torch.manual_seed(2)
    assert not torch.equal(first, mha(x))
    first.sum().backward()
    assert mha.W_query.weight.grad is not None


def test_exercise_3_4_memory_is_checked_and_a_wrong_value_gets_a_hint_not_the_value(capsys):
    """The memory question of Exercise 3.4 is checked, and no wrong answer is told
    the right number of bytes (nor in MiB)."""
    import re

    from ch03_attention import exercise_checks
    from shared.exercises import check_answer

    right = exercise_checks._scores_bytes()
    assert right == 8 * 16 * 1024 * 1024 * 4  # GPT-2 medium's scores, 8 x 1,024 tokens, float32
    assert check_answer("3.4", right) and check_answer("3.4", float(right))
    revealing = {str(right), f"{right:,}", f"{right / 2**20:g} MiB", f"{right / 2**20:g}MiB",
                 f"{right / 2**30:g} GiB"}
    capsys.readouterr()
    for wrong in exercise_checks._wrong_scores_bytes() + [right - 1, 3 * right, 10**6]:
        assert not check_answer("3.4", wrong)
        out = capsys.readouterr().out
        assert out.startswith("Exercise 3.4: not yet. ") and "Hint: " in out, out
        for text in revealing:
            if text != str(wrong):  # the learner's own number may be echoed back
                assert not re.search(rf"(?<![\d.]){re.escape(text)}(?!\d)", out), out


# One mask for every path: causal_mask, sliding windows, grouped heads -------------------------

def test_causal_mask_without_a_window_is_the_books_mask_sliced():
    book = torch.ones(12, 12).triu(diagonal=1).bool()
    for start in range(12):
        for new in range(1, 13 - start):
            assert torch.equal(causal_mask(new, start), book[start:start + new, :start + new])
            for num_keys in range(1, start + new + 1):  # the latest keys only (a windowed cache)
                assert torch.equal(causal_mask(new, start, num_keys),
                                   book[start:start + new, start + new - num_keys:start + new])


def visible(query, key, window):
    """The definition, one pair at a time: a query sees itself and its window - 1 predecessors."""
    return key <= query and (window is None or key > query - window)


@pytest.mark.parametrize("window", [None, 1, 2, 3, 7, 30])
def test_causal_mask_hides_exactly_the_future_and_the_keys_past_the_window(window):
    for start, new, num_keys in [(0, 9, 9), (4, 3, 7), (10, 1, 11), (10, 2, 3), (5, 4, 6)]:
        first_key = start + new - num_keys
        expected = torch.tensor([[not visible(start + i, first_key + j, window)
                                  for j in range(num_keys)] for i in range(new)])
        assert torch.equal(causal_mask(new, start, num_keys, window), expected)


def test_the_fused_path_uses_is_causal_only_for_the_plain_causal_mask(monkeypatch):
    calls = []
    sdpa = nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append((kwargs["is_causal"], kwargs["attn_mask"] is None))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(nn.functional, "scaled_dot_product_attention", spy)
    queries = torch.randn(1, 2, 6, 4)
    for start, num_keys, window in [(0, 6, None), (0, 6, 6), (0, 6, 5), (3, 9, None),
                                    (3, 6, None)]:
        keys = torch.randn(1, 2, num_keys, 4)
        attend(queries, keys, keys, start, nn.Dropout(0.0), True, False, window=window)
    assert calls == [(True, True), (True, True), (False, False), (False, False), (False, False)]
