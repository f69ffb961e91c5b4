"""The validation vocabulary: each check passes what is valid and names the bad value."""

import math
import warnings

import numpy as np
import pytest
import torch

from shared.checks import (
    check,
    check_choice,
    check_count,
    check_divisible,
    check_entries,
    check_entry,
    check_finite,
    check_fits_context,
    check_flag,
    check_has_values,
    check_ids_in_vocab,
    check_in_vocab,
    check_keys,
    check_kv_caches,
    check_nonblank,
    check_number,
    check_one_sequence,
    check_same_lengths,
    check_same_shape,
    check_shape,
    check_token_ids,
    check_token_lists,
    check_type,
)


def test_check_raises_the_given_error_only_when_the_condition_fails():
    check(True, "never shown")
    with pytest.raises(TypeError, match="^the reason$"):
        check(False, "the reason", TypeError)
    check(True, lambda: 1 / 0)  # a lazy message is built only on failure
    with pytest.raises(ValueError, match="^built late$"):
        check(False, lambda: "built late")


@pytest.mark.parametrize("value, error", [(True, TypeError), (2.0, TypeError), ("3", TypeError),
                                          (0, ValueError), (-1, ValueError)])
def test_check_count_refuses_non_counts(value, error):
    check_count("n", 1, 1)
    with pytest.raises(error, match=rf"^n must be an integer >= 1, got {value!r}$"):
        check_count("n", value, 1)
    with pytest.raises(error, match=rf"^n must be a positive integer, got {value!r}$"):
        check_count("n", value, 1, "a positive integer")


@pytest.mark.parametrize("value", [-0.1, 1.0, math.nan, math.inf])
def test_check_number_honours_open_and_closed_ends(value):
    check_number("rate", 0.0, "a number in [0, 1)", high=1.0, high_open=True)
    with pytest.raises(ValueError, match=r"rate must be a number in \[0, 1\), got"):
        check_number("rate", value, "a number in [0, 1)", high=1.0, high_open=True)
    with pytest.raises(TypeError, match="got True"):
        check_number("rate", True, "a number in [0, 1)")
    with pytest.raises(ValueError):
        check_number("top_p", 0.0, "a number in (0, 1]", high=1.0, low_open=True)


def test_check_flag_choice_and_type_name_the_value_and_what_is_valid():
    check_flag("sdpa", False)
    with pytest.raises(TypeError, match="sdpa must be True or False, got 1"):
        check_flag("sdpa", 1)
    check_choice("size", "small", ["small", "medium"])
    with pytest.raises(ValueError, match=r"unknown size 'smal' \(did you mean 'small'\?\); "
                                         r"choose one of \['small', 'medium'\]"):
        check_choice("size", "smal", ["small", "medium"])
    with pytest.raises(TypeError, match="cfg must be a dict, got list"):
        check_type("cfg", [], dict, "a dict")


def test_check_keys_names_unknown_and_missing_keys():
    check_keys("configuration", {"a": 1, "b": 2}, ["a"], ["b"])
    with pytest.raises(TypeError, match="the configuration must be a dict, got tuple"):
        check_keys("configuration", (), ["a"])
    with pytest.raises(ValueError, match=r"unknown configuration key 'bb' \(did you mean 'b'\?\); "
                                         "the keys are a, b"):
        check_keys("configuration", {"a": 1, "bb": 2}, ["a"], ["b"])
    with pytest.raises(ValueError, match="the configuration lacks a"):
        check_keys("configuration", {"b": 1}, ["a"], ["b"])


@pytest.mark.parametrize("entry, error, message", [
    (["x"], TypeError, "entry 1 must be a dict, got list"),
    ({"a": "x"}, ValueError, r"entry 1 has no 'b' key \(its keys: \['a'\]\)"),
    ({"a": "x", "b": 2}, TypeError, "entry 1: 'b' must be a string, got 2"),
])
def test_check_entries_names_the_entry_and_the_key(entry, error, message):
    check_entries([{"a": "x", "b": "y"}], ("a", "b"))
    with pytest.raises(error, match=message):
        check_entries(({"a": "x", "b": "y"}, entry), ("a", "b"))
    with pytest.raises(error, match=message.replace("entry 1", "the pair")):
        check_entry(entry, ["a", "b"], "the pair")


@pytest.mark.parametrize("data", [iter([{"a": "x"}]), {"a": "x"}, "a"])
def test_check_entries_wants_a_list_not_a_generator_or_one_entry(data):
    with pytest.raises(TypeError, match="data must be a list of entries"):
        check_entries(data, ("a",))


def test_check_shape_reads_labels_and_fixed_sizes():
    x = torch.zeros(2, 3, 4)
    check_shape("x", x, ("batch", "tokens", ("d_in", 4)))
    with pytest.raises(ValueError, match=r"^x must have shape \(batch, tokens, d_in=5\), "
                                         r"got \(2, 3, 4\)$"):
        check_shape("x", x, ("batch", "tokens", ("d_in", 5)))
    with pytest.raises(ValueError, match=r"got \(2, 3, 4\); try x\[0\]$"):
        check_shape("x", x, ("tokens", "d_in"), hint="; try x[0]")


def test_check_token_ids_checks_type_shape_and_vocabulary():
    check_token_ids(torch.tensor([[0, 9]]), "idx", vocab_size=10)
    with pytest.raises(TypeError, match="idx must be a tensor of integer token ids"):
        check_token_ids([[1, 2]], "idx")
    with pytest.raises(ValueError, match=r"add a batch axis with idx.unsqueeze\(0\)"):
        check_token_ids(torch.tensor([1, 2]), "idx")
    with pytest.raises(ValueError, match=r"token id 10 is outside the vocabulary: ids must be "
                                         r"in 0..9"):
        check_token_ids(torch.tensor([[1, 10]]), "idx", vocab_size=10)
    check_token_ids(torch.tensor([[10**6]], device="meta"), "idx", vocab_size=10)  # no values


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -math.inf, torch.tensor(math.nan),
                                   torch.tensor([math.inf])])
def test_check_finite_stops_a_diverged_loss_naming_where(value):
    assert check_finite("the loss", 2.5) == 2.5
    assert check_finite("the loss", torch.tensor(0.25)) == 0.25
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a loss with its graph is read without a warning
        assert check_finite("the loss", torch.tensor(0.5, requires_grad=True) * 1) == 0.5
    with pytest.raises(FloatingPointError, match=r"^the loss became (nan|-?inf) at step 7: "
                                                 r"training stopped there.*targets are all "
                                                 r"-100 \(chapter 7's ignore_index.*masked "
                                                 r"prompt \(chapter 7\).*learning rate"):
        check_finite("the loss", value, step=7)
    with pytest.raises(FloatingPointError, match=r"^the loss became (nan|-?inf): training"):
        check_finite("the loss", value)


def test_check_has_values_names_a_tensor_on_the_meta_device_and_what_to_do():
    check_has_values("model", torch.nn.Linear(2, 3), "never shown")
    with pytest.raises(ValueError) as refusal:
        check_has_values("net", torch.nn.Linear(2, 3, device="meta"), "build it on the CPU")
    assert str(refusal.value) == ("net is on the meta device (weight has a shape but no values): "
                                  "build it on the CPU")
    norm = torch.nn.BatchNorm1d(3)
    norm.register_buffer("running_mean", torch.zeros(3, device="meta"))  # a buffer counts too
    with pytest.raises(ValueError, match=r"^norm is on the meta device \(running_mean "):
        check_has_values("norm", norm, "give it values")


def test_check_divisible_names_both_arguments_and_values():
    check_divisible("d_out", 9, "num_heads", 3)
    with pytest.raises(ValueError) as refusal:
        check_divisible("d_out", 8, "num_heads", 3)
    assert str(refusal.value) == "d_out (8) must be divisible by num_heads (3)"


def test_check_fits_context_counts_the_cached_tokens_and_says_to_crop():
    check_fits_context(6, 6)
    check_fits_context(2, 6, cached=4)
    with pytest.raises(ValueError, match=r"^the input has 7 tokens but the model was built for "
                                         r"context_length=6; crop the text to its last 6 "
                                         r"tokens$"):
        check_fits_context(7, 6)
    with pytest.raises(ValueError, match=r"^the input has 3 tokens after 4 cached ones but the "
                                         r"layer was built .* \(reset\(\) the cache, then "):
        check_fits_context(3, 6, cached=4, what="the layer")
    with pytest.raises(ValueError, match=r"the cache was built for max_tokens=6; crop"):
        check_fits_context(3, 6, cached=4, what="the cache", limit="max_tokens")


def test_check_kv_caches_refuses_caches_another_model_filled():
    class Cache:  # as KVCache: `length` positions held
        length = 0

    model, other = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    assert check_kv_caches(None, model, 2) == check_kv_caches([], model, 2) == 0
    caches = [Cache(), Cache()]
    assert check_kv_caches(caches, model, 2) == 0  # empty: any model may fill them
    for cache in caches:
        cache.length = 3
    assert check_kv_caches(caches, model, 2) == 3  # the model that filled them goes on
    with pytest.raises(ValueError) as refusal:
        check_kv_caches(caches, other, 2)
    assert str(refusal.value) == (
        "kv_caches hold 3 positions that another model cached; this model would read its keys "
        "and values as its own: reset() each cache first, or make new ones with this model's "
        "make_kv_caches")
    with pytest.raises(ValueError, match=r"^kv_caches: 1 given, 2 needed \(one per block\)"):
        check_kv_caches(caches[:1], model, 2)
    filled_elsewhere = Cache()
    filled_elsewhere.length = 1  # filled without this check (by hand, or by a fast decoder)
    with pytest.raises(ValueError, match="another model cached"):
        check_kv_caches([filled_elsewhere], model, 1)
    for cache in caches:
        cache.length = 0  # reset(): empty again, so the other model may use them
    assert check_kv_caches(caches, other, 2) == 0
    with pytest.raises(ValueError, match="another model cached"):
        caches[0].length = 2
        check_kv_caches(caches, model, 2)


def test_check_in_vocab_names_the_first_unknown_token_and_how_many():
    vocab = {"a": 0, "b": 1}
    check_in_vocab("text", ["a", "b", "a"], vocab)
    with pytest.raises(KeyError) as refusal:
        check_in_vocab("text", ["a", "zebra", "b", "yak"], vocab, "map them to <|unk|>")
    assert refusal.value.args[0] == ("'zebra' is not in the vocabulary (2 unknown token(s) in "
                                     "text); map them to <|unk|>")
    with pytest.raises(KeyError) as refusal:
        check_in_vocab("prompt", ["c"], vocab)  # no what_to_do: nothing after the count
    assert refusal.value.args[0].endswith("(1 unknown token(s) in prompt)")


@pytest.mark.parametrize("bad_id, error, message", [
    (5, ValueError, r"^token id 5 is not in the vocabulary \(ids 0\.\.2\)$"),
    (-1, ValueError, r"^token id -1 is not in the vocabulary"),
    (torch.tensor(7), ValueError, r"^token id 7 is not in the vocabulary"),
    (1.0, TypeError, r"^token ids must be integers, got 1\.0$"),  # int() would give 1
    ("1", TypeError, r"^token ids must be integers, got '1'$"),
    (torch.tensor([1, 2]), TypeError, r"^token ids must be integers, got tensor\(\[1, 2\]\)$"),
])
def test_check_ids_in_vocab_names_the_first_bad_id(bad_id, error, message):
    id_to_token = {0: "a", 1: "b", 2: "c"}
    check_ids_in_vocab([0, 2, torch.tensor(1), torch.tensor([2])], id_to_token)  # tensors too
    with pytest.raises(error, match=message):
        check_ids_in_vocab([1, bad_id, 99], id_to_token)  # 99 comes later: not the one named


def test_check_nonblank_refuses_empty_or_whitespace_text_saying_what_to_do():
    check_nonblank("output", " 3 ", "fill it in")
    with pytest.raises(ValueError) as refusal:
        check_nonblank("entry 1: 'output'", " \n", "fill it in or drop the entry")
    assert str(refusal.value) == "entry 1: 'output' is empty (' \\n'): fill it in or drop the entry"
    with pytest.raises(TypeError, match="^output must be a string, got None$"):
        check_nonblank("output", None, "fill it in")


@pytest.mark.parametrize("batch, error, message", [
    ([], ValueError, "^the batch is empty: there is nothing to collate$"),
    ([[1], []], ValueError, "^item 1 of the batch has no tokens$"),
    ([[1], (1, 2)], TypeError, r"^item 1 of the batch must be a list of token ids, got tuple \("),
    ([torch.tensor([1, 2])], TypeError, r"got Tensor \(a tensor's .tolist\(\) gives one\)$"),
    ([[1, 2.0]], TypeError, r"^item 0 of the batch must hold token ids \(integers\), got float"),
    ([[1], [[2], [3]]], TypeError, r"^item 1 of the batch must hold token ids \(int.*got list"),
    ([[1, True]], TypeError, r"^item 0 of the batch must hold token ids \(int.*got bool True$"),
])
def test_check_token_lists_names_the_item_at_fault(batch, error, message):
    check_token_lists("batch", [[1, 2], [3]])
    check_token_lists("batch", [[np.int64(1), 2]])  # numpy's integers are token ids too
    with pytest.raises(error, match=message):
        check_token_lists("batch", batch)


def test_check_same_shape_names_both_shapes_and_why():
    check_same_shape("target_batch", torch.zeros(2, 3), "input_batch", torch.ones(2, 3))
    with pytest.raises(ValueError) as refusal:
        check_same_shape("target_batch", torch.zeros(3), "input_batch", torch.zeros(1, 3),
                         "one target per input token")
    assert str(refusal.value) == ("target_batch must have input_batch's shape (one target per "
                                  "input token): target_batch has shape (3,), input_batch (1, 3)")
    with pytest.raises(ValueError, match=r"^values must have keys's shape: values has shape "):
        check_same_shape("values", torch.zeros(2), "keys", torch.zeros(3))


def test_check_same_lengths_names_every_sequence_and_its_length():
    check_same_lengths({"a": [1], "b": (2,), "c": torch.zeros(1)}, minimum=1)
    check_same_lengths({"a": [], "b": ""})  # no minimum: empty is fine
    with pytest.raises(ValueError) as refusal:
        check_same_lengths({"x": [1, 2], "y": [1, 2], "z": [1]}, 1, " (one per step)")
    assert str(refusal.value) == ("x, y and z must have the same length, at least 1, got 2, 2 "
                                  "and 1 (one per step)")
    with pytest.raises(ValueError, match=r"^a and b must have the same length, at least 1, got 0 "
                                         r"and 0$"):
        check_same_lengths({"a": [], "b": []}, 1)


def test_check_one_sequence_says_what_to_pass_for_a_single_id_or_a_batch():
    for ids in (torch.tensor([1, 2]), torch.tensor([[1, 2]]), torch.tensor([7])):
        check_one_sequence("ids", ids)
    with pytest.raises(ValueError, match=r"^ids must be one sequence, of shape \(tokens\) or "
                                         r"\(1, tokens\), got \(\) \(a single id\): pass "
                                         r"ids.reshape\(1\)$"):
        check_one_sequence("ids", torch.tensor(5))
    with pytest.raises(ValueError, match=r"got \(2, 2\) \(a batch\): pass one row at a time, "
                                         r"for row in ids$"):
        check_one_sequence("ids", torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"got \(1, 1, 2\)$"):
        check_one_sequence("ids", torch.zeros(1, 1, 2))
