"""Bad inputs to chapter 3's exported functions: a clear error that names the argument.

SelfAttention_v1, CausalAttention and MultiHeadAttentionWrapper are exported as the book wrote
them, without input checks; the KV cache's bad inputs are tested in test_kv_cache.py. Each table
gives the call, the bad argument, the exception type and the name its message must hold; exact
wording is asserted for a few exemplary messages only."""

import math

import pytest
import torch

from ch03_attention.attention import MultiHeadAttention, causal_mask


GOOD = {"d_in": 8, "d_out": 8, "context_length": 6, "dropout": 0.0, "num_heads": 2}


def build(**change):
    return MultiHeadAttention(**{**GOOD, **change})


# MultiHeadAttention(...) --------------------------------------------------------------------

@pytest.mark.parametrize("change, error, name", [
    ({"d_in": 0}, ValueError, "d_in"),
    ({"d_in": 8.0}, TypeError, "d_in"),
    ({"d_out": -8}, ValueError, "d_out"),
    ({"d_out": "8"}, TypeError, "d_out"),
    ({"context_length": 0}, ValueError, "context_length"),
    ({"context_length": -1}, ValueError, "context_length"),
    ({"context_length": 6.0}, TypeError, "context_length"),
    ({"num_heads": 0}, ValueError, "num_heads"),
    ({"num_heads": -2}, ValueError, "num_heads"),
    ({"num_heads": 2.0}, TypeError, "num_heads"),
    ({"num_heads": True}, TypeError, "num_heads"),
    ({"num_heads": 3}, ValueError, "num_heads"),  # 8 is not divisible by 3
    ({"dropout": 1.0}, ValueError, "dropout"),
    ({"dropout": -0.1}, ValueError, "dropout"),
    ({"dropout": 1.5}, ValueError, "dropout"),
    ({"dropout": math.nan}, ValueError, "dropout"),
    ({"dropout": "0.1"}, TypeError, "dropout"),
    ({"dropout": None}, TypeError, "dropout"),
    ({"dropout": True}, TypeError, "dropout"),
    ({"context_length": 10_000_000}, ValueError, "context_length"),  # a 364 TiB mask
])
def test_multi_head_attention_refuses_a_bad_argument_naming_it(change, error, name):
    with pytest.raises(error) as refusal:
        build(**change)
    assert name in str(refusal.value)


def test_multi_head_attention_messages_say_what_is_valid():
    with pytest.raises(ValueError) as refusal:
        build(dropout=1.0)
    assert str(refusal.value) == "dropout must be a number in [0, 1), got 1.0"
    with pytest.raises(ValueError) as refusal:
        build(num_heads=3)
    assert str(refusal.value) == "d_out (8) must be divisible by num_heads (3)"


def test_a_causal_mask_too_big_for_memory_is_refused_before_allocating():
    with pytest.raises(ValueError, match=r"context_length 10,000,000 needs [0-9,.]+ GiB for its "
                                         r"causal mask, more than this machine's [0-9,.]+ GiB"):
        build(context_length=10_000_000)
    with torch.device("meta"):  # tensors without memory: nothing to refuse
        assert all(buffer.is_meta for buffer in build(context_length=10_000_000).buffers())


# MultiHeadAttention.forward(x) --------------------------------------------------------------

@pytest.mark.parametrize("x, error, name", [
    (torch.rand(5, 8), ValueError, "the input"),  # no batch axis
    (torch.rand(1, 2, 5, 8), ValueError, "the input"),
    (torch.rand(2, 5, 7), ValueError, "d_in=8"),  # 7 features, not 8
    (torch.rand(8), ValueError, "the input"),
    (torch.rand(2, 7, 8), ValueError, "context_length=6"),  # 7 tokens, not at most 6
])
def test_forward_refuses_a_bad_input_naming_what_is_wrong(x, error, name):
    with pytest.raises(error) as refusal:
        build()(x)
    assert name in str(refusal.value)


def test_forward_messages_give_the_shape_and_what_to_crop():
    with pytest.raises(ValueError) as refusal:
        build()(torch.rand(6, 3))
    assert str(refusal.value) == "the input must have shape (batch, tokens, d_in=8), got (6, 3)"
    with pytest.raises(ValueError) as refusal:
        build()(torch.rand(2, 7, 8))
    assert str(refusal.value) == ("the input has 7 tokens but the attention layer was built for "
                                  "context_length=6; crop the text to its last 6 tokens")


def test_the_input_check_does_not_rely_on_the_projections():
    # chapter 6 swaps the projections for LoRA wrappers, which have no in_features
    attention = build()
    attention.W_query = torch.nn.Sequential(attention.W_query)
    assert attention(torch.rand(2, 5, 8)).shape[:2] == (2, 5)


# causal_mask(num_queries, start, num_keys, window) ------------------------------------------

@pytest.mark.parametrize("change, error, name", [
    ({"num_keys": 6}, ValueError, "num_keys=6"),  # only 5 positions up to the last query
    ({"num_keys": 0}, ValueError, "num_keys=0"),
    ({"window": 0}, ValueError, "window=0"),
    ({"window": 0.5}, ValueError, "window=0.5"),
])
def test_causal_mask_refuses_keys_it_cannot_place(change, error, name):
    with pytest.raises(error, match=name):
        causal_mask(2, 3, **change)
