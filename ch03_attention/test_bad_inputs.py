"""Bad inputs to chapter 3's attention modules and KV cache: clear errors, nothing changed."""

import re

import pytest
import torch

from ch03_attention.attention import (
    CausalAttention,
    KVCache,
    MultiHeadAttention,
    MultiHeadAttentionWrapper,
    SelfAttention_v1,
)


GOOD = {"d_in": 8, "d_out": 8, "context_length": 6, "dropout": 0.0, "num_heads": 2}


def build(name, **change):
    args = {**GOOD, **change}
    if name == "CausalAttention":
        args.pop("num_heads")
        return CausalAttention(**args)
    return {"MultiHeadAttentionWrapper": MultiHeadAttentionWrapper,
            "MultiHeadAttention": MultiHeadAttention}[name](**args)


ALL = ["CausalAttention", "MultiHeadAttentionWrapper", "MultiHeadAttention"]
MULTI = ["MultiHeadAttentionWrapper", "MultiHeadAttention"]


# Constructors -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("change, error, message", [
    ({"context_length": 0}, ValueError, "context_length must be an integer >= 1, got 0"),
    ({"context_length": -1}, ValueError, "context_length must be an integer >= 1, got -1"),
    ({"context_length": 6.0}, TypeError, "context_length must be an integer >= 1, got 6.0"),
    ({"d_in": 0}, ValueError, "d_in must be an integer >= 1, got 0"),
    ({"d_out": -8}, ValueError, "d_out must be an integer >= 1, got -8"),
    ({"dropout": 1.0}, ValueError, r"dropout must be in \[0, 1\), got 1.0"),
    ({"dropout": -0.1}, ValueError, r"dropout must be in \[0, 1\), got -0.1"),
    ({"dropout": 1.5}, ValueError, r"dropout must be in \[0, 1\), got 1.5"),
    ({"dropout": "0.1"}, TypeError, r"dropout must be a number in \[0, 1\), got '0.1'"),
    ({"dropout": None}, TypeError, r"dropout must be a number in \[0, 1\), got None"),
])
def test_constructor_names_a_bad_argument(name, change, error, message):
    with pytest.raises(error, match=message):
        build(name, **change)


@pytest.mark.parametrize("name", ALL)
def test_a_causal_mask_too_big_for_memory_is_refused_before_allocating(name):
    # 10 million positions: a 364 TiB mask, past any machine's memory
    with pytest.raises(ValueError, match=r"context_length 10,000,000 needs [0-9,.]+ GiB for its "
                                         r"causal mask, more than this machine's [0-9,.]+ GiB"):
        build(name, context_length=10_000_000)
    with torch.device("meta"):  # tensors without memory: nothing to refuse
        assert all(buffer.is_meta for buffer in build(name, context_length=10_000_000).buffers())


@pytest.mark.parametrize("name", MULTI)
@pytest.mark.parametrize("num_heads, error, message", [
    (0, ValueError, "num_heads must be an integer >= 1, got 0"),
    (-2, ValueError, "num_heads must be an integer >= 1, got -2"),
    (2.0, TypeError, "num_heads must be an integer >= 1, got 2.0"),
    (True, TypeError, "num_heads must be an integer >= 1, got True"),
])
def test_number_of_heads_must_be_a_positive_integer(name, num_heads, error, message):
    with pytest.raises(error, match=message):
        build(name, num_heads=num_heads)


def test_heads_must_divide_d_out():
    with pytest.raises(ValueError, match=r"d_out \(8\) must be divisible by num_heads \(3\)"):
        build("MultiHeadAttention", num_heads=3)


# Inputs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shape", [(5, 8), (1, 2, 5, 8), (2, 5, 7), (8,)])
def test_input_of_the_wrong_shape_is_named(name, shape):
    with pytest.raises(ValueError, match=re.escape(
            f"the input must have shape (batch, tokens, d_in=8), got {tuple(shape)}")):
        build(name)(torch.rand(shape))


@pytest.mark.parametrize("name", ALL)
def test_more_tokens_than_the_context_is_named(name):
    with pytest.raises(ValueError, match="the input has 7 tokens but the attention layer was "
                                         "built for context_length=6"):
        build(name)(torch.rand(2, 7, 8))


def test_self_attention_v1_takes_one_sequence():
    # keys.T of a batch reverses every axis: with batch == d_out it would silently compute junk
    with pytest.raises(ValueError, match=r"SelfAttention_v1 takes one \(tokens, d_in\) "
                                         r"sequence, got torch.Size\(\[4, 5, 8\]\)"):
        SelfAttention_v1(8, 4)(torch.rand(4, 5, 8))


# KV cache -----------------------------------------------------------------------------------

@pytest.mark.parametrize("max_tokens, error", [(0, ValueError), (-1, ValueError),
                                               (2.5, TypeError), (None, TypeError)])
def test_cache_size_must_be_a_positive_integer(max_tokens, error):
    with pytest.raises(error, match=f"max_tokens must be an integer >= 1, got {max_tokens}"):
        KVCache(max_tokens)


def filled_cache():
    cache = KVCache(max_tokens=6)
    cache.update(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4))
    # only the filled positions: the rest of the storage is uninitialised (it may hold nan)
    return cache, cache.keys[:, :, :3].clone(), cache.values[:, :, :3].clone()


@pytest.mark.parametrize("keys, values, message", [
    (torch.randn(1, 2, 4), torch.randn(1, 2, 4), r"got \(1, 2, 4\) and \(1, 2, 4\)"),
    (torch.randn(1, 2, 1, 4), torch.randn(1, 2, 2, 4), r"got \(1, 2, 1, 4\) and \(1, 2, 2, 4\)"),
    (torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 4),
     r"holds 3 positions of \(batch, heads, head_dim\) = \(1, 2, 4\), torch.float32 on cpu; "
     r"the new keys are \(2, 2, 4\), torch.float32 on cpu: call reset\(\)"),
    (torch.randn(1, 2, 1, 8), torch.randn(1, 2, 1, 8), r"the new keys are \(1, 2, 8\)"),
    (torch.randn(1, 2, 1, 4, dtype=torch.float64), torch.randn(1, 2, 1, 4, dtype=torch.float64),
     r"the new keys are \(1, 2, 4\), torch.float64 on cpu: call reset\(\)"),
    (torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4), "room for 6 positions; 3 are filled and "
                                                       "4 more do not fit"),
])
def test_cache_misuse_is_named_and_leaves_the_cache_as_it_was(keys, values, message):
    cache, kept_keys, kept_values = filled_cache()
    with pytest.raises(ValueError, match=message):
        cache.update(keys, values)
    assert cache.length == 3
    assert torch.equal(cache.keys[:, :, :3], kept_keys)
    assert torch.equal(cache.values[:, :, :3], kept_values)


def test_after_reset_the_cache_takes_a_new_shape():
    cache, _, _ = filled_cache()
    cache.reset()
    keys, _ = cache.update(torch.randn(2, 2, 1, 4, dtype=torch.float64),
                           torch.randn(2, 2, 1, 4, dtype=torch.float64))
    assert keys.shape == (2, 2, 1, 4) and cache.length == 1


def test_attention_past_the_context_leaves_the_cache_unchanged():
    mha, cache = build("MultiHeadAttention").eval(), KVCache(max_tokens=20)
    mha(torch.rand(1, 4, 8), cache)
    kept = cache.keys[:, :, :4].clone()
    with pytest.raises(ValueError, match=r"the input has 3 tokens after 4 cached ones but the "
                                         r"attention layer was built for context_length=6; crop "
                                         r"the text to its last 6 tokens \(reset\(\) the cache, "
                                         r"then feed them\)"):
        mha(torch.rand(1, 3, 8), cache)
    assert cache.length == 4 and torch.equal(cache.keys[:, :, :4], kept)


@pytest.mark.parametrize("name", ["CausalAttention", "MultiHeadAttention"])
def test_the_input_check_does_not_rely_on_the_projections(name):
    # chapter 6 swaps the projections for LoRA wrappers, which have no in_features
    attention = build(name)
    attention.W_query = torch.nn.Sequential(attention.W_query)
    assert attention(torch.rand(2, 5, 8)).shape[:2] == (2, 5)
