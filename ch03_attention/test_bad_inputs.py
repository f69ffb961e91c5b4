"""Bad inputs to chapter 3's exported functions: a clear error that names the argument.

SelfAttention_v1, CausalAttention and MultiHeadAttentionWrapper are exported as the book wrote
them, without input checks, and MultiHeadAttention checks only what would otherwise fail far
away or not at all (heads that do not split d_out, an input past the context); every other bad
input fails in PyTorch or Python at the call. The KV cache's bad inputs are tested in
test_kv_cache.py. Each table gives the call, the bad argument, the exception type and the name
its message must hold; exact wording is asserted for a few exemplary messages only."""

import pytest
import torch

from ch03_attention.attention import MultiHeadAttention, causal_mask


GOOD = {"d_in": 8, "d_out": 8, "context_length": 6, "dropout": 0.0, "num_heads": 2}


def build(**change):
    return MultiHeadAttention(**{**GOOD, **change})


# MultiHeadAttention(...) --------------------------------------------------------------------

# heads that do not split d_out would fail only at the first forward pass, in view; a negative
# or fractional count too
@pytest.mark.parametrize("num_heads", [3, 0, -2, 2.0, True])
def test_multi_head_attention_refuses_heads_that_do_not_split_d_out(num_heads):
    with pytest.raises(ValueError, match="num_heads"):
        build(num_heads=num_heads)


def test_multi_head_attention_names_both_numbers():  # exemplary wording
    with pytest.raises(ValueError) as refusal:
        build(num_heads=3)
    assert str(refusal.value) == "num_heads must be a positive int dividing d_out=8, got 3"


# MultiHeadAttention.forward(x) --------------------------------------------------------------

def test_forward_refuses_an_input_past_the_context_and_says_what_to_crop():
    # without the check, attend (whose mask compares positions) would attend past the context
    with pytest.raises(ValueError) as refusal:
        build()(torch.rand(2, 7, 8))
    assert str(refusal.value) == ("the input has 7 tokens but the attention layer was built for "
                                  "context_length=6; crop the text to its last 6 tokens")


def test_forward_does_not_rely_on_the_projections_being_linear_layers():
    # chapter 6 swaps the projections for LoRA wrappers, which have no in_features
    attention = build()
    attention.W_query = torch.nn.Sequential(attention.W_query)
    assert attention(torch.rand(2, 5, 8)).shape[:2] == (2, 5)


# causal_mask(num_queries, start, num_keys, window) ------------------------------------------

@pytest.mark.parametrize("change, error, name", [
    ({"num_keys": 6}, ValueError, "num_keys must be in 1..5, got 6"),  # 5 positions up to the last
    ({"num_keys": 0}, ValueError, "num_keys must be in 1..5, got 0"),
    ({"window": 0}, ValueError, "window=0"),
    ({"window": 0.5}, ValueError, "window=0.5"),
])
def test_causal_mask_refuses_keys_it_cannot_place(change, error, name):
    with pytest.raises(error, match=name):
        causal_mask(2, 3, **change)


@pytest.mark.parametrize("use_sdpa", [False, True])
def test_an_input_of_no_tokens_gives_no_outputs_as_the_books_class_does(use_sdpa):
    out = build(use_sdpa=use_sdpa)(torch.rand(2, 0, 8))
    assert out.shape == (2, 0, 8)
