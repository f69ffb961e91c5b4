"""Tests of chapter 3's attention modules: shapes, causality, equality with PyTorch's SDPA."""

import pytest
import torch
from torch import nn

from ch03_attention.attention import (
    CausalAttention,
    KVCache,
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
def test_inputs_shorter_than_context_work_and_longer_ones_are_a_clear_error(name):
    module = CAUSAL_MODULES[name]()
    assert module(torch.randn(1, 5, 16)).shape[1] == 5
    with pytest.raises(ValueError, match="context_length=12"):
        module(torch.randn(1, 13, 16))


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


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiHeadAttention(16, 10, 12, 0.0, num_heads=3)


def test_mask_is_a_saved_buffer_not_a_parameter():
    mha = MultiHeadAttention(16, 8, 12, 0.0, num_heads=2)
    assert "mask" in mha.state_dict()
    assert all(name != "mask" for name, _ in mha.named_parameters())
    assert list(mha.state_dict()) == [
        "mask", "W_query.weight", "W_key.weight", "W_value.weight",
        "out_proj.weight", "out_proj.bias"]


# The KV cache and the fused kernel -----------------------------------------------------------

def gpt2_like_attention(use_sdpa=False):
    torch.manual_seed(0)
    return MultiHeadAttention(32, 32, context_length=20, dropout=0.0, num_heads=4,
                              qkv_bias=True, use_sdpa=use_sdpa).eval()


@pytest.mark.parametrize("use_sdpa", [False, True])
@pytest.mark.parametrize("chunks", [[1] * 12, [5, 1, 1, 3, 2], [12]])
def test_cached_attention_in_chunks_equals_attention_over_the_whole_sequence(use_sdpa, chunks):
    mha = gpt2_like_attention(use_sdpa)
    x = torch.randn(3, 12, 32)
    cache, pieces, start = KVCache(max_tokens=20), [], 0
    with torch.no_grad():
        whole = mha(x)
        for size in chunks:
            pieces.append(mha(x[:, start:start + size], kv_cache=cache))
            start += size
    assert cache.length == 12
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, atol=1e-6, rtol=1e-5)


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


def test_kv_cache_is_allocated_once_and_reused_after_reset():
    mha, cache = gpt2_like_attention(), KVCache(max_tokens=20)
    with torch.no_grad():
        mha(torch.randn(1, 4, 32), kv_cache=cache)
        memory = cache.keys.data_ptr()
        assert cache.keys.shape == (1, 4, 20, 8)  # (batch, heads, max_tokens, head_dim)
        mha(torch.randn(1, 1, 32), kv_cache=cache)
        assert cache.keys.data_ptr() == memory
        cache.reset()
        fresh = torch.randn(1, 3, 32)
        torch.testing.assert_close(mha(fresh, kv_cache=cache), mha(fresh))  # old tokens gone
        assert cache.keys.data_ptr() == memory and cache.length == 3


def test_kv_cache_overflow_is_a_clear_error():
    mha, cache = gpt2_like_attention(), KVCache(max_tokens=6)
    with torch.no_grad():
        mha(torch.randn(1, 5, 32), kv_cache=cache)
        with pytest.raises(ValueError, match="room for 6 positions; 5 are filled"):
            mha(torch.randn(1, 2, 32), kv_cache=cache)


def test_exercise_3_4_memory_is_checked_and_a_wrong_value_gets_a_hint_not_the_value(capsys):
    """Issue 37: the memory question of Exercise 3.4 is checked, and no wrong answer is told
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


def test_causal_mask_refuses_keys_it_cannot_place():
    with pytest.raises(ValueError, match="num_keys=6"):
        causal_mask(2, 3, num_keys=6)  # only 5 positions up to the last query
    with pytest.raises(ValueError, match="window=0"):
        causal_mask(2, 3, window=0)


def attention_by_definition(q, k, v, window, scale):
    """Softmax attention computed from `visible`, independently of causal_mask and attend."""
    heads, tokens = q.shape[1], q.shape[2]
    k, v = (t.repeat_interleave(heads // t.shape[1], dim=1) for t in (k, v))
    scores = (q @ k.transpose(2, 3)) * (q.shape[-1] ** -0.5 if scale is None else scale)
    hidden = torch.tensor([[not visible(i, j, window) for j in range(tokens)]
                           for i in range(tokens)])
    return torch.softmax(scores.masked_fill(hidden, -torch.inf), dim=-1) @ v


def random_splits(total, count, generator):
    """`count` random ways to cut `total` tokens into consecutive pieces (one: all at once)."""
    splits = [[total]]
    for _ in range(count - 1):
        count_cuts = torch.randint(1, total, (1,), generator=generator).item()
        cuts = (torch.randperm(total - 1, generator=generator)[:count_cuts] + 1).sort().values
        edges = [0, *cuts.tolist(), total]
        splits.append([b - a for a, b in zip(edges, edges[1:])])
    return splits


@pytest.mark.parametrize("window", [None, 1, 2, 5, 16, 40])
@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_fused_and_explicit_attention_agree_for_any_mask_with_and_without_a_cache(window,
                                                                                  kv_heads):
    """Issue 38: the fused path honours the mask as the explicit path does, for causal and
    sliding-window masks, whole or continued through a cache in pieces of any size."""
    generator = torch.Generator().manual_seed(window or 0)
    tokens, dropout = 16, nn.Dropout(0.0)
    q = torch.randn(2, 4, tokens, 8, generator=generator)
    k, v = torch.randn(2, 2, kv_heads, tokens, 8, generator=generator).unbind(0)
    for scale in (None, 0.3):
        expected = attention_by_definition(q, k, v, window, scale)
        for use_sdpa in (False, True):
            whole = attend(q, k, v, 0, dropout, use_sdpa, False, window=window, scale=scale)
            torch.testing.assert_close(whole, expected, atol=1e-5, rtol=1e-5)
            for sizes in random_splits(tokens, 5, generator):
                for cache in (KVCache(tokens), KVCache(tokens, window=window)):
                    pieces, start = [], 0
                    for size in sizes:
                        new = slice(start, start + size)
                        keys, values = cache.update(k[:, :, new], v[:, :, new])
                        pieces.append(attend(q[:, :, new], keys, values, start, dropout,
                                             use_sdpa, False, window=window, scale=scale))
                        start += size
                    assert cache.length == tokens
                    if cache.window is not None:  # all that the next query could still see
                        assert cache.keys.shape[2] == min(tokens, window - 1)
                    torch.testing.assert_close(torch.cat(pieces, dim=2), expected,
                                               atol=1e-5, rtol=1e-5, msg=f"{sizes}, {use_sdpa}")


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


def test_a_windowed_cache_keeps_the_window_less_one_and_counts_every_position():
    cache = KVCache(100, window=4)
    keys = torch.arange(10.0).view(1, 1, 10, 1)
    returned, _ = cache.update(keys[:, :, :6], keys[:, :, :6])
    assert returned.shape[2] == 6 and cache.keys.flatten().tolist() == [3.0, 4.0, 5.0]
    returned, _ = cache.update(keys[:, :, 6:7], keys[:, :, 6:7])
    assert returned.flatten().tolist() == [3.0, 4.0, 5.0, 6.0] and cache.length == 7
    cache.reset()
    returned, _ = cache.update(keys[:, :, :2], keys[:, :, :2])
    assert returned.flatten().tolist() == [0.0, 1.0] and cache.length == 2
    with pytest.raises(ValueError, match="window must be an integer >= 1, got 0"):
        KVCache(10, window=0)
