"""Tests of chapter 3's key-value cache (kv_cache.py) and of attention continued through it."""

import pytest
import torch
from torch import nn

from ch03_attention.attention import MultiHeadAttention, attend
from ch03_attention.kv_cache import KVCache
from ch03_attention.test_attention import gpt2_like_attention, visible


# The cache in the final MultiHeadAttention ------------------------------------------------

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
        with pytest.raises(ValueError, match=r"5 cached and 2 new positions pass the "
                                             r"cache's max_tokens=6"):
            mha(torch.randn(1, 2, 32), kv_cache=cache)


# Sliding windows and grouped heads through a cache -----------------------------------------

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
    """The fused path honours the mask as the explicit path does, for causal and
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
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        KVCache(10, window=0)
    for window in (1.5, 2.0):  # else a TypeError at the first update
        with pytest.raises(ValueError, match="window"):
            KVCache(10, window=window)


def test_a_cache_refuses_values_unlike_their_keys_that_it_would_broadcast():
    """A batch of 1 in values beside a batch of 2 in keys would be copied into both rows."""
    keys = torch.zeros(2, 2, 3, 4)
    for values in (keys[:1], keys.double(), keys[:, :, :1]):  # a batch, a dtype, a token of 1
        with pytest.raises(ValueError, match=r"^values must match their keys in all but width"):
            KVCache(10).update(keys, values)


@pytest.mark.parametrize("window", [None, 4])
def test_a_cache_refuses_values_of_another_width_than_it_holds(window):
    """Values of width 1 would be copied into every feature of the held ones, silently."""
    cache = KVCache(10, window=window)
    cache.update(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4))
    kept = cache.values.clone()
    with pytest.raises(ValueError, match=r"layout \(\(1, 2, 4, .*\), 1\) differs from the cache's "
                                         r"\(\(1, 2, 4, .*\), 4\): reset\(\) it first"):
        cache.update(torch.randn(1, 2, 1, 4), torch.randn(1, 2, 1, 1))
    assert cache.length == 3 and torch.equal(cache.values, kept)


@pytest.mark.parametrize("window", [None, 4])
def test_after_reset_values_may_take_another_width(window):
    """A new sequence's values of another width (with keys of the same layout) remake the
    storage, rather than fail to fit the old one."""
    cache = KVCache(10, window=window)
    cache.update(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4))
    cache.reset()
    keys, values = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 6)
    all_keys, all_values = cache.update(keys, values)
    assert torch.equal(all_keys, keys) and torch.equal(all_values, values)


def test_values_of_another_width_than_their_keys_are_kept_as_they_are():
    """DeepSeek's latent attention (4.8.12) keeps a latent and a rotated key of other widths."""
    keys, values = torch.randn(2, 1, 5, 6), torch.randn(2, 1, 5, 3)
    for window in (None, 4):
        cache = KVCache(10, window=window)
        cache.update(keys[:, :, :2], values[:, :, :2])
        all_keys, all_values = cache.update(keys[:, :, 2:], values[:, :, 2:])
        assert torch.equal(all_keys, keys) and torch.equal(all_values, values)


# Bad inputs: clear errors, nothing changed ----------------------------------------------

def filled_cache():
    cache = KVCache(max_tokens=6)
    cache.update(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4))
    # only the filled positions: the rest of the storage is uninitialised (it may hold nan)
    return cache, cache.keys[:, :, :3].clone(), cache.values[:, :, :3].clone()


@pytest.mark.parametrize("keys, values, error", [
    (torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4), ValueError),  # 3 + 4 > max_tokens=6
    (torch.randn(1, 2, 1), torch.randn(1, 2, 1), IndexError),  # no heads axis: in reading it
    (torch.randn(1, 2, 1, 4), torch.randn(1, 2, 2, 4), ValueError),  # values unlike their keys
    (torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 4), ValueError),  # another batch
    (torch.randn(1, 2, 1, 8), torch.randn(1, 2, 1, 8), ValueError),  # another head_dim
])
def test_cache_misuse_is_an_error_and_leaves_the_cached_positions_as_they_were(keys, values,
                                                                              error):
    cache, kept_keys, kept_values = filled_cache()
    with pytest.raises(error):
        cache.update(keys, values)
    assert cache.length == 3
    assert torch.equal(cache.keys[:, :, :3], kept_keys)
    assert torch.equal(cache.values[:, :, :3], kept_values)


@pytest.mark.parametrize("window", [None, 4])
def test_a_cache_refuses_keys_of_another_dtype_that_it_would_cast(window):
    cache = KVCache(max_tokens=6, window=window)
    cache.update(torch.randn(2, 2, 3, 4), torch.randn(2, 2, 3, 4))
    kept = cache.keys.clone()
    wider = torch.randn(2, 2, 1, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"layout \(\(2, 2, 4, torch\.float64, .*\) differs from "
                                         r"the cache's \(\(2, 2, 4, torch\.float32.*reset\(\) it "
                                         r"first"):
        cache.update(wider, wider.clone())
    assert cache.length == 3 and torch.equal(cache.keys, kept)


@pytest.mark.parametrize("window", [None, 4])
def test_a_cache_refuses_a_batch_of_1_that_it_would_copy_into_every_row(window):
    cache = KVCache(max_tokens=6, window=window)
    cache.update(torch.randn(2, 2, 3, 4), torch.randn(2, 2, 3, 4))
    kept = cache.keys.clone()
    one_row = torch.randn(1, 2, 1, 4)
    with pytest.raises(ValueError, match=r"layout \(\(1, 2, 4, .*\) differs from the cache's "
                                         r"\(\(2, .*\)"):
        cache.update(one_row, one_row.clone())
    assert cache.length == 3 and torch.equal(cache.keys, kept)


@pytest.mark.parametrize("max_tokens", [0, -1])
def test_a_cache_without_room_names_max_tokens_at_its_first_update(max_tokens):
    with pytest.raises(ValueError, match=f"max_tokens={max_tokens}"):
        KVCache(max_tokens).update(torch.randn(1, 2, 1, 4), torch.randn(1, 2, 1, 4))


def test_after_reset_the_cache_takes_a_new_shape():
    cache, _, _ = filled_cache()
    cache.reset()
    keys, _ = cache.update(torch.randn(2, 2, 1, 4, dtype=torch.float64),
                           torch.randn(2, 2, 1, 4, dtype=torch.float64))
    assert keys.shape == (2, 2, 1, 4) and cache.length == 1


def test_attention_past_the_context_leaves_the_cache_unchanged():
    mha = MultiHeadAttention(8, 8, context_length=6, dropout=0.0, num_heads=2).eval()
    cache = KVCache(max_tokens=20)
    mha(torch.rand(1, 4, 8), cache)
    kept = cache.keys[:, :, :4].clone()
    with pytest.raises(ValueError, match=r"the input has 3 tokens after 4 cached ones but the "
                                         r"attention layer was built for context_length=6; crop "
                                         r"the text to its last 6 tokens \(reset\(\) the cache, "
                                         r"then feed them\)"):
        mha(torch.rand(1, 3, 8), cache)
    assert cache.length == 4 and torch.equal(cache.keys[:, :, :4], kept)
