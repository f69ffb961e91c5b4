"""Bad inputs to chapter 3's exported MultiHeadAttention: clear errors, nothing changed.

SelfAttention_v1, CausalAttention and MultiHeadAttentionWrapper are exported as the book wrote
them, without input checks; the KV cache's bad inputs are tested in test_kv_cache.py."""

import re

import pytest
import torch

from ch03_attention.attention import MultiHeadAttention


GOOD = {"d_in": 8, "d_out": 8, "context_length": 6, "dropout": 0.0, "num_heads": 2}


def build(name, **change):
    return {"MultiHeadAttention": MultiHeadAttention}[name](**{**GOOD, **change})


ALL = ["MultiHeadAttention"]  # the one exported class with input checks
MULTI = ["MultiHeadAttention"]


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


@pytest.mark.parametrize("name", ["MultiHeadAttention"])
def test_the_input_check_does_not_rely_on_the_projections(name):
    # chapter 6 swaps the projections for LoRA wrappers, which have no in_features
    attention = build(name)
    attention.W_query = torch.nn.Sequential(attention.W_query)
    assert attention(torch.rand(2, 5, 8)).shape[:2] == (2, 5)
