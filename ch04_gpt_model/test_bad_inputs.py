"""Bad inputs to chapter 4's GPT: configurations, token ids, generation; clear errors only."""

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ch04_gpt_model.gpt_model import GPTModel, generate_text_simple, validate_config
from conftest import TINY_GPT as TINY
from conftest import tiny_gpt


@pytest.fixture(scope="module")
def model():
    return tiny_gpt()


# Configurations: wrong types and values (chapter 4's own tests cover more) -------------------

@pytest.mark.parametrize("change, error, message", [
    ({"drop_rate": "0.1"}, TypeError, r"drop_rate must be a number in \[0, 1\), got '0.1'"),
    ({"drop_rate": None}, TypeError, r"drop_rate must be a number in \[0, 1\), got None"),
    ({"drop_rate": True}, TypeError, r"drop_rate must be a number in \[0, 1\), got True"),
    ({"drop_rate": -0.1}, ValueError, r"drop_rate must be in \[0, 1\), got -0.1"),
    ({"n_layers": True}, TypeError, "n_layers must be a positive integer, got True"),
    ({"n_layers": None}, TypeError, "n_layers must be a positive integer, got None"),
    ({"n_heads": 2.0}, TypeError, "n_heads must be a positive integer, got 2.0"),
    ({"n_heads": 0}, ValueError, "n_heads must be a positive integer, got 0"),
    ({"emb_dim": "16"}, TypeError, "emb_dim must be a positive integer, got '16'"),
    ({"vocab_size": None}, TypeError, "vocab_size must be a positive integer, got None"),
    ({"context_length": -8}, ValueError, "context_length must be a positive integer, got -8"),
    ({"qkv_bias": None}, TypeError, "qkv_bias must be True or False, got None"),
    ({"qkv_bias": 1}, TypeError, "qkv_bias must be True or False, got 1"),
    ({"qkv_bias": "False"}, TypeError, "qkv_bias must be True or False, got 'False'"),
    ({"sdpa": "yes"}, TypeError, "sdpa must be True or False, got 'yes'"),
    ({"tie_weights": None}, TypeError, "tie_weights must be True or False, got None"),
])
def test_wrong_config_types_and_values_are_named(change, error, message):
    cfg = {**TINY, **change}
    kept = dict(cfg)
    with pytest.raises(error, match=message):
        GPTModel(cfg)
    assert cfg == kept  # the caller's dict is not touched


@pytest.mark.parametrize("cfg, message", [
    (None, "the configuration must be a dict, got NoneType"),
    ([("vocab_size", 50)], "the configuration must be a dict, got list"),
])
def test_a_configuration_that_is_not_a_dict_is_named(cfg, message):
    with pytest.raises(TypeError, match=message):
        validate_config(cfg)


# Token ids into forward --------------------------------------------------------------------

@pytest.mark.parametrize("ids, message", [
    (torch.tensor([[1, 50]]), r"token id 50 is outside the vocabulary: ids must be in 0\.\.49"),
    (torch.tensor([[1, -1]]), r"token id -1 is outside the vocabulary: ids must be in 0\.\.49"),
    (torch.tensor([[10**6, 3]]), r"token id 1000000 is outside the vocabulary"),
    (torch.tensor([[-7, 60]]), r"token id -7 is outside the vocabulary"),
])
def test_ids_outside_the_vocabulary_are_named(model, ids, message):
    with pytest.raises(ValueError, match=message):
        model(ids)


@pytest.mark.parametrize("ids, got", [
    (torch.tensor([[1.0, 2.0]]), "torch.float32"),
    (torch.tensor([[1, 2]], dtype=torch.uint8), "torch.uint8"),
    (torch.tensor([[True, False]]), "torch.bool"),
    ([[1, 2]], "list"),
])
def test_ids_that_are_not_an_integer_tensor_are_named(model, ids, got):
    with pytest.raises(TypeError, match=r"in_idx must be a tensor of integer token ids "
                                        rf"\(torch.long\), got {got}"):
        model(ids)


@pytest.mark.parametrize("shape, hint", [
    ((3,), "; add a batch axis with in_idx.unsqueeze(0)"),
    ((1, 0), ""),
    ((0, 3), ""),
    ((1, 2, 3), ""),
])
def test_ids_of_the_wrong_shape_are_named(model, shape, hint):
    with pytest.raises(ValueError, match=re.escape(
            "in_idx must have shape (batch, tokens), with at least one token (a prompt cannot "
            "be empty), "
            f"got {shape}{hint}")):
        model(torch.zeros(shape, dtype=torch.long))


def test_more_tokens_than_the_context_is_named(model):
    with pytest.raises(ValueError, match="the input has 9 tokens; the model's context_length "
                                         "is 8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_int32_ids_still_work(model):
    ids = torch.tensor([[1, 2, 49]])
    torch.testing.assert_close(model(ids.int()), model(ids))


def test_a_bad_id_leaves_the_kv_caches_unchanged(model):
    caches = model.make_kv_caches()
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]), kv_caches=caches)
        kept = [cache.keys[:, :, :3].clone() for cache in caches]
        with pytest.raises(ValueError, match="token id 50 is outside the vocabulary"):
            model(torch.tensor([[4, 50]]), kv_caches=caches)
    assert [cache.length for cache in caches] == [3] * len(caches)
    assert all(torch.equal(c.keys[:, :, :3], k) for c, k in zip(caches, kept))


@pytest.mark.parametrize("max_tokens, error", [(0, ValueError), (-3, ValueError),
                                               (2.5, TypeError)])
def test_make_kv_caches_refuses_a_bad_size(model, max_tokens, error):
    # 0 used to mean "the whole context", -3 gave a cache that could hold nothing
    with pytest.raises(error, match=f"max_tokens must be an integer >= 1, got {max_tokens}"):
        model.make_kv_caches(max_tokens)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(min_value=-3, max_value=53), min_size=4, max_size=4),
                min_size=1, max_size=3))
def test_forward_accepts_exactly_the_ids_of_the_vocabulary(model, rows):
    ids = torch.tensor(rows)
    outside = [i for row in rows for i in row if not 0 <= i < 50]
    if outside:
        with pytest.raises(ValueError, match=r"token id -?\d+ is outside the vocabulary") as info:
            model(ids)
        bad = int(re.search(r"token id (-?\d+)", str(info.value)).group(1))
        assert bad in outside and bad in (min(outside), max(outside))
    else:
        assert model(ids).shape == (len(rows), 4, 50)


# Greedy generation ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    ({"max_new_tokens": -1}, ValueError, "max_new_tokens must be an integer >= 0, got -1"),
    ({"max_new_tokens": 2.5}, TypeError, "max_new_tokens must be an integer >= 0, got 2.5"),
    ({"max_new_tokens": None}, TypeError, "max_new_tokens must be an integer >= 0, got None"),
    ({"context_size": 0}, ValueError, "context_size must be an integer >= 1, got 0"),
    ({"context_size": -1}, ValueError, "context_size must be an integer >= 1, got -1"),
    ({"context_size": 8.0}, TypeError, "context_size must be an integer >= 1, got 8.0"),
    ({"idx": torch.tensor([1, 2])}, ValueError,
     r"idx must have shape \(batch, tokens\), with at least one token .*, got \(2,\); add a batch"),
    ({"idx": torch.zeros(1, 0, dtype=torch.long)}, ValueError,
     r"idx must have shape \(batch, tokens\), with at least one token \(a prompt cannot be "
     r"empty\), got \(1, 0\)"),
    ({"idx": [[1, 2]]}, TypeError,
     r"idx must be a tensor of integer token ids \(torch.long\), got list"),
    ({"idx": torch.tensor([[1, 99]])}, ValueError, "token id 99 is outside the vocabulary"),
])
def test_generate_text_simple_names_a_bad_argument(model, kwargs, error, message):
    args = {"idx": torch.tensor([[1, 2]]), "max_new_tokens": 3, "context_size": 8, **kwargs}
    with pytest.raises(error, match=message):
        generate_text_simple(model, **args)


def test_zero_new_tokens_returns_the_prompt(model):
    prompt = torch.tensor([[1, 2]])
    assert torch.equal(generate_text_simple(model, prompt, 0, 8), prompt)


def test_causal_masks_that_together_exceed_memory_are_refused_before_any_is_made():
    # 1,000 layers of 16,384 positions: 1,000 masks of 1 GiB each, and one more being built
    with pytest.raises(ValueError, match=r"context_length 16,384 needs 1,001.0 GiB for 1,000 "
                                         r"causal masks and a copy while one is built, more than "):
        GPTModel({**TINY, "context_length": 16_384, "n_layers": 1000})
