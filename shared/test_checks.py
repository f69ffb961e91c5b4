"""The shared checks: each passes what is valid and names the argument and the bad value."""

import math
import warnings

import numpy as np
import pytest
import torch

from shared.checks import (
    check,
    check_divisible,
    check_finite,
    check_fits_context,
    check_has_values,
    check_keys,
    check_token_ids,
    check_token_lists,
)


def test_check_raises_the_given_error_only_when_the_condition_fails():
    check(True, "never shown")
    with pytest.raises(TypeError, match="^the reason$"):
        check(False, "the reason", TypeError)
    check(True, lambda: 1 / 0)  # a lazy message is built only on failure
    with pytest.raises(ValueError, match="^built late$"):
        check(False, lambda: "built late")


def test_check_keys_names_unknown_and_missing_keys():
    check_keys("configuration", {"a": 1, "b": 2}, ["a"], ["b"])
    with pytest.raises(ValueError, match=r"unknown configuration key 'bb' \(did you mean 'b'\?\); "
                                         "the keys are a, b"):
        check_keys("configuration", {"a": 1, "bb": 2}, ["a"], ["b"])
    with pytest.raises(ValueError, match="the configuration lacks a"):
        check_keys("configuration", {"b": 1}, ["a"], ["b"])


def test_check_token_ids_names_an_id_outside_the_vocabulary():
    check_token_ids(torch.tensor([[0, 9]]), "idx", vocab_size=10)
    check_token_ids(torch.tensor([[10**6]]), "idx")  # no vocab_size: nothing to compare with
    check_token_ids(torch.zeros(0, 3, dtype=torch.long), "idx", vocab_size=10)  # no sequences
    with pytest.raises(ValueError, match=r"idx must have shape \(batch, tokens\), with at least "
                                         r"one token \(a prompt cannot be empty\), got \(1, 0\)$"):
        check_token_ids(torch.zeros(1, 0), "idx", vocab_size=10)
    with pytest.raises(ValueError, match=r"got \(2,\): add a batch axis with idx.unsqueeze\(0\)$"):
        check_token_ids(torch.tensor([1, 2]), "idx", vocab_size=10)
    with pytest.raises(ValueError, match=r"-1 is outside"):
        check_token_ids(torch.tensor([[-1, 3]]), "idx", vocab_size=10)
    with pytest.raises(ValueError, match=r"^idx: token id 10 is outside the vocabulary: ids must "
                                         r"be in 0..9"):
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
    assert str(refusal.value) == "num_heads must be a positive count dividing d_out (8), got 3"
    for by in (0, -2):  # unchecked, 0 is a ZeroDivisionError; -2 divides 8 but counts nothing
        with pytest.raises(ValueError, match=f"^num_kv_groups must be a positive count dividing "
                                             f"num_heads \\(8\\), got {by}$"):
            check_divisible("num_heads", 8, "num_kv_groups", by)


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


@pytest.mark.parametrize("batch, error, message", [
    ([[1], []], ValueError, r"^item 1 of the batch must be a non-empty list of token ids, got "
                            r"\[\] \("),
    ([[1], (1, 2)], TypeError, r"^item 1 of the batch must be a non-empty list .* got \(1, 2\)"),
    ([torch.tensor([1, 2])], TypeError, r"got tensor\(\[1, 2\]\) \(a tensor's .tolist\(\) "
                                        r"gives one\)$"),
])
def test_check_token_lists_names_the_item_at_fault(batch, error, message):
    check_token_lists("batch", [[1, 2], [3]])
    check_token_lists("batch", [[np.int64(1), 2]])  # numpy's integers are token ids too
    with pytest.raises(error, match=message):
        check_token_lists("batch", batch)
