"""Bad inputs to chapter 4's final GPT (final_model.py) and the lesson's generate_text_simple, a
table per public function: each mistake gets an error of its type that names the argument (or
the key, or the token id), before anything changes. Exact wording is asserted for a few
exemplary messages only."""

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ch04_gpt_model.final_model import GPTModel
from ch04_gpt_model.gpt_model import generate_text_simple
from conftest import TINY_GPT as TINY
from conftest import tiny_gpt, tiny_qwen3
from shared import KVCache, validate_config


@pytest.fixture(scope="module")
def model():
    return tiny_gpt()


# GPTModel(cfg) and validate_config(cfg) ------------------------------------------------------

@pytest.mark.parametrize("check_config", [GPTModel, validate_config])
@pytest.mark.parametrize("change, error, named", [
    ({"tie_weight": True}, ValueError, "tie_weight"),  # misspelt: would be ignored
    ({"learning_rate": 1e-3}, ValueError, "learning_rate"),  # not a model's key
    ({"qkv_bias": "False"}, TypeError, "qkv_bias"),  # a str would switch the option on
    ({"sdpa": "yes"}, TypeError, "sdpa"),
    ({"tie_weights": 1}, TypeError, "tie_weights"),
])
def test_an_unknown_key_or_a_flag_that_is_not_a_bool_is_refused_by_name(check_config, change,
                                                                        error, named):
    cfg = {**TINY, **change}
    kept = dict(cfg)
    with pytest.raises(error, match=re.escape(named)):
        check_config(cfg)
    assert cfg == kept  # the caller's dict is not touched


def test_an_unknown_key_is_named_with_the_keys_known():  # exemplary wording
    with pytest.raises(ValueError) as refusal:
        GPTModel({**TINY, "tie_weight": True})
    assert str(refusal.value) == (
        "unknown configuration key 'tie_weight'; the keys are "
        "vocab_size, context_length, emb_dim, n_heads, n_layers, drop_rate, qkv_bias, "
        "tie_weights, sdpa")


@pytest.mark.parametrize("key", ["qkv_bias", "vocab_size", "n_heads"])
def test_a_missing_key_is_pythons_key_error_naming_it(key):
    cfg = dict(TINY)
    del cfg[key]
    with pytest.raises(KeyError, match=key):
        GPTModel(cfg)


def test_causal_masks_that_together_exceed_memory_are_refused_before_any_is_made():
    # 1,000 layers of 16,384 positions: 1,000 masks of 1 GiB each, and one more being built;
    # allocated one by one, they would swap, or end the process, without an error
    with pytest.raises(ValueError, match=r"^context_length 16,384: the causal masks exceed"):
        GPTModel({**TINY, "context_length": 16_384, "n_layers": 1000})


def test_causal_masks_of_any_size_are_built_on_the_meta_device():
    with torch.device("meta"):  # shapes only: no memory
        model = GPTModel({**TINY, "context_length": 131_072, "n_layers": 8})  # 576 GiB
    assert model.trf_blocks[0].att.mask.shape == (131_072, 131_072)


# GPTModel.forward: in_idx ----------------------------------------------------------------------

# ids outside the vocabulary: on a GPU the embedding's error is a device assert, reported later
@pytest.mark.parametrize("in_idx, named", [
    (torch.tensor([[1, 50]]), "token id 50"),
    (torch.tensor([[1, -1]]), "token id -1"),
    (torch.tensor([[10**6, 3]]), "token id 1000000"),
    (torch.tensor([[-7, 60]]), "token id -7"),
    (torch.zeros(1, 9, dtype=torch.long), "context_length"),  # 9 > 8 positions
])
def test_ids_past_the_vocabulary_or_the_context_are_refused_by_name(model, in_idx, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        model(in_idx)


def test_too_many_tokens_get_the_context_length(model):  # exemplary wording
    with pytest.raises(ValueError) as refusal:
        model(torch.zeros(1, 9, dtype=torch.long))
    assert str(refusal.value) == ("the input has 9 tokens but the model was built for "
                                  "context_length=8; crop the text to its last 8 tokens")


def test_int32_ids_still_work(model):
    ids = torch.tensor([[1, 2, 49]])
    torch.testing.assert_close(model(ids.int()), model(ids))


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


# GPTModel.forward: kv_caches -------------------------------------------------------------------

def test_a_bad_id_leaves_the_kv_caches_unchanged(model):
    caches = model.make_kv_caches()
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]), kv_caches=caches)
        kept = [cache.keys[:, :, :3].clone() for cache in caches]
        with pytest.raises(ValueError, match="token id 50 is outside the vocabulary"):
            model(torch.tensor([[4, 50]]), kv_caches=caches)
    assert [cache.length for cache in caches] == [3] * len(caches)
    assert all(torch.equal(c.keys[:, :, :3], k) for c, k in zip(caches, kept))


def test_a_part_of_the_models_caches_is_refused_before_any_is_written():
    # block 0 would fill its cache and block 1 fail: the list, out of step, read wrongly after
    model, ids = tiny_gpt(n_layers=2), torch.tensor([[1, 2, 3]])
    caches = model.make_kv_caches()
    for part in (caches[:1], caches + model.make_kv_caches()):
        with pytest.raises(ValueError, match="the list this model's make_kv_caches returned"):
            model(ids, part)
    assert [cache.length for cache in caches] == [0, 0]


def test_kv_caches_this_model_did_not_make_are_refused(model):
    for caches in (tiny_gpt(n_layers=2).make_kv_caches(), [KVCache(8)]):  # another's, by hand
        with pytest.raises(ValueError, match=r"^kv_caches must be the list this model's "
                                             r"make_kv_caches returned$"):
            model(torch.tensor([[1]]), caches)


def test_tokens_past_the_context_after_the_cached_ones_are_refused(model):
    caches = model.make_kv_caches()
    with torch.no_grad():
        model(torch.zeros(1, 7, dtype=torch.long), caches)
        with pytest.raises(ValueError, match=r"^the input has 2 tokens after 7 cached ones but "
                                             r"the model was built for context_length=8; crop "
                                             r".* \(reset\(\) the cache, then feed them\)$"):
            model(torch.zeros(1, 2, dtype=torch.long), caches)


@pytest.mark.parametrize("build", [tiny_gpt, tiny_qwen3], ids=["GPTModel", "ModernGPTModel"])
def test_kv_caches_another_model_filled_are_refused_before_anything_changes(build):
    # a base model and a finetuned copy of one configuration, compared in one loop
    base, finetuned, prompt = build(seed=0), build(seed=1), torch.tensor([[1, 2, 3]])
    caches = base.make_kv_caches()
    with torch.no_grad():
        base(prompt, caches)
        # the filled positions only: the rest of the storage is uninitialised (it may hold nan)
        kept = [cache.keys[:, :, :3].clone() for cache in caches]
        with pytest.raises(ValueError, match=r"^kv_caches must be the list this model's "):
            finetuned(torch.tensor([[4]]), caches)
        assert [cache.length for cache in caches] == [3] * len(caches)
        assert all(torch.equal(cache.keys[:, :, :3], k) for cache, k in zip(caches, kept))
        base(torch.tensor([[4]]), caches)  # the model that filled them goes on
        for cache in caches:
            cache.reset()
        with pytest.raises(ValueError, match="this model's make_kv_caches"):
            finetuned(prompt, caches)  # emptied, but still the base model's
        own = finetuned.make_kv_caches()
        torch.testing.assert_close(finetuned(prompt, own), finetuned(prompt))


# GPTModel.make_kv_caches -----------------------------------------------------------------------

@pytest.mark.parametrize("max_tokens", [0, -3])  # caches that can hold nothing
def test_caches_that_hold_nothing_name_max_tokens_at_the_first_token(model, max_tokens):
    with pytest.raises(ValueError, match=rf"pass the cache's max_tokens={max_tokens}$"):
        model(torch.tensor([[1]]), model.make_kv_caches(max_tokens))


# generate_text_simple: the book's, without checks of its own; the model checks the prompt ------

def test_generate_text_simple_meets_the_models_check_of_the_prompt(model):
    with pytest.raises(ValueError, match="token id 99"):
        generate_text_simple(model, torch.tensor([[1, 99]]), max_new_tokens=3, context_size=8)


def test_zero_new_tokens_returns_the_prompt(model):
    prompt = torch.tensor([[1, 2]])
    assert torch.equal(generate_text_simple(model, prompt, 0, 8), prompt)


