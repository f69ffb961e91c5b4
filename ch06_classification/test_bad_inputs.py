"""Bad inputs to chapter 6: spam CSVs, loaders, the head, LoRA, classify_review; clear errors."""

import re

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ch04_gpt_model.gpt_model import GPTModel
from ch06_classification.classification import (
    LinearWithLoRA,
    LoRALayer,
    SpamDataset,
    add_classification_head,
    calc_accuracy_loader,
    calc_loss_batch,
    calc_loss_loader,
    classify_review,
    replace_linear_with_lora,
    train_classifier_simple,
)
from conftest import TINY_GPT, tiny_gpt


TINY = {**TINY_GPT, "vocab_size": 300}  # room for ByteTokenizer's 256 ids


class ByteTokenizer:
    """One id per UTF-8 byte: enough to build datasets without tiktoken."""

    def encode(self, text, allowed_special=None):
        return list(text.encode("utf-8"))


def classifier():
    return add_classification_head(tiny_gpt(**TINY)).eval()


def loader(num_examples=4, batch_size=2, **options):
    inputs = torch.randint(0, 256, (num_examples, 6))
    labels = torch.arange(num_examples) % 2
    return DataLoader(TensorDataset(inputs, labels), batch_size=batch_size, **options)


def parameters(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


# SpamDataset: the CSV and max_length -------------------------------------------------------

GOOD = "Label,Text\n0,see you at noon\n1,WIN a prize now\n"


@pytest.mark.parametrize("csv, message", [
    ('Label,Text\n0,see you\n1,""\n', r"the Text of row 1 \(line 3\) is empty or missing"),
    ("Label,Text\n0,see you\n1,\n", r"the Text of row 1 \(line 3\) is empty or missing"),
    ("Label,Text\n0,\n", r"the Text of row 0 \(line 2\) is empty or missing"),
    ("Label\n0\n", r"needs the columns Label and Text, but has \['Label'\]"),
    ("label,text\n0,hi\n", r"needs the columns Label and Text, but has \['label', 'text'\]"),
    ("Label,Text\n", "has no messages"),
    ("Label,Text\nham,see you\n", r"the Label of row 0 \(line 2\) must be a class index .*'ham'"),
    ("Label,Text\n0,hi\n,see you\n", r"the Label of row 1 \(line 3\) must be a class index"),
    ("Label,Text\n0,hi\n-1,see you\n", r"the Label of row 1 \(line 3\) .* got -1"),
    ("Label,Text\n0,hi\n0.5,see you\n", r"the Label of row 1 \(line 3\) .* got 0.5"),
])
def test_a_bad_spam_csv_names_the_file_and_row(tmp_path, csv, message):
    path = tmp_path / "spam.csv"
    path.write_text(csv)
    with pytest.raises(ValueError, match=message) as caught:
        SpamDataset(path, ByteTokenizer())
    assert "spam.csv" in str(caught.value)


def test_texts_that_pandas_would_read_as_missing_are_messages(tmp_path):
    path = tmp_path / "spam.csv"
    path.write_text("Label,Text\n0,NA\n1.0,null\n")  # an SMS may well say "NA"
    dataset = SpamDataset(path, ByteTokenizer())
    assert dataset.encoded_texts == [list(b"NA") + [50256, 50256], list(b"null")]
    assert dataset.labels == [0, 1] and all(type(label) is int for label in dataset.labels)


@pytest.mark.parametrize("max_length, error", [
    (0, ValueError), (-5, ValueError), (2.5, TypeError), ("10", TypeError), (True, TypeError),
])
def test_max_length_must_be_a_positive_integer(tmp_path, max_length, error):
    path = tmp_path / "spam.csv"
    path.write_text(GOOD)
    with pytest.raises(error, match=re.escape(f"max_length must be an integer >= 1, "
                                              f"got {max_length!r}")):
        SpamDataset(path, ByteTokenizer(), max_length=max_length)


# Loaders, batches and num_batches ----------------------------------------------------------

EMPTY_LOADERS = [
    pytest.param(lambda: loader(num_examples=0), id="no examples"),
    pytest.param(lambda: loader(num_examples=3, batch_size=4, drop_last=True), id="drop_last"),
]


@pytest.mark.parametrize("function", [calc_accuracy_loader, calc_loss_loader])
@pytest.mark.parametrize("make_loader", EMPTY_LOADERS)
def test_an_empty_loader_is_an_error_not_nan(function, make_loader):
    with pytest.raises(ValueError, match="data_loader has no batches"):
        function(make_loader(), classifier(), "cpu")


@pytest.mark.parametrize("function", [calc_accuracy_loader, calc_loss_loader])
@pytest.mark.parametrize("num_batches, error", [
    (0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError),
])
def test_num_batches_must_be_a_positive_integer(function, num_batches, error):
    with pytest.raises(error, match=f"num_batches must be an integer >= 1, got {num_batches}"):
        function(loader(), classifier(), "cpu", num_batches)


@pytest.mark.parametrize("function", [calc_accuracy_loader, calc_loss_loader])
def test_num_batches_above_the_loader_length_uses_every_batch(function):
    model, data = classifier(), loader()
    assert function(data, model, "cpu", 100) == function(data, model, "cpu")


def test_an_empty_batch_is_named():
    empty = (torch.zeros(0, 6, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"got \(0, 6\)"):
        calc_loss_batch(*empty, classifier(), "cpu")
    with pytest.raises(ValueError, match=r"got \(0, 6\)"):
        calc_accuracy_loader([empty], classifier(), "cpu")


@pytest.mark.parametrize("train, val, eval_iter, message", [
    (loader(0), loader(), 1, "train_loader has no batches"),
    (loader(), loader(0), 1, "val_loader has no batches"),
    (loader(), loader(), 0, "num_batches must be an integer >= 1, got 0"),
])
def test_training_refuses_empty_loaders_before_any_step(train, val, eval_iter, message):
    model = classifier()
    before = parameters(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=message):
        train_classifier_simple(model, train, val, optimizer, "cpu", num_epochs=1, eval_freq=1,
                                eval_iter=eval_iter)
    after = parameters(model)
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert optimizer.state_dict()["state"] == {}


# The classification head -------------------------------------------------------------------

@pytest.mark.parametrize("num_classes, error", [
    (1, ValueError), (0, ValueError), (-2, ValueError), (2.0, TypeError), (True, TypeError),
    (None, TypeError),
])
def test_num_classes_must_be_at_least_two(num_classes, error):
    model = GPTModel(TINY)
    head = model.out_head
    with pytest.raises(error, match=f"num_classes must be an integer of at least 2, got "
                                    f"{num_classes}"):
        add_classification_head(model, num_classes)
    assert model.out_head is head


# LoRA ---------------------------------------------------------------------------------------

LORA_BAD = [
    (0, 16, ValueError, "rank must be an integer >= 1, got 0"),
    (-4, 16, ValueError, "rank must be an integer >= 1, got -4"),
    (2.0, 16, TypeError, "rank must be an integer >= 1, got 2.0"),
    (True, 16, TypeError, "rank must be an integer >= 1, got True"),
    (4, 0, ValueError, "alpha must be a positive number, got 0"),
    (4, -8, ValueError, "alpha must be a positive number, got -8"),
    (4, float("nan"), ValueError, "alpha must be a positive number, got nan"),
    (4, float("inf"), ValueError, "alpha must be a positive number, got inf"),
    (4, "16", TypeError, "alpha must be a positive number, got '16'"),
]


@pytest.mark.parametrize("rank, alpha, error, message", LORA_BAD)
def test_lora_layer_refuses_bad_rank_and_alpha(rank, alpha, error, message):
    with pytest.raises(error, match=message):
        LoRALayer(8, 8, rank, alpha)
    with pytest.raises(error, match=message):
        LinearWithLoRA(nn.Linear(8, 8), rank, alpha)


@pytest.mark.parametrize("rank, alpha, error, message", LORA_BAD)
def test_replace_linear_with_lora_changes_nothing_on_bad_arguments(rank, alpha, error, message):
    model = classifier()
    modules = dict(model.named_modules())
    with pytest.raises(error, match=message):
        replace_linear_with_lora(model, rank, alpha)
    assert dict(model.named_modules()) == modules
    assert not any(isinstance(m, LinearWithLoRA) for m in model.modules())


# classify_review -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, max_length, error, message", [
    ("", None, ValueError, "text is empty: there is nothing to classify"),
    ("", 5, ValueError, "text is empty"),
    (None, None, TypeError, "text must be a string, got NoneType"),
    (["hi"], None, TypeError, "text must be a string, got list"),
    ("hi", 0, ValueError, "max_length must be an integer >= 1, got 0"),
    ("hi", -3, ValueError, "max_length must be an integer >= 1, got -3"),
    ("hi", 4.0, TypeError, "max_length must be an integer >= 1, got 4.0"),
])
def test_classify_review_bad_inputs(text, max_length, error, message):
    with pytest.raises(error, match=message):
        classify_review(text, classifier(), ByteTokenizer(), "cpu", max_length=max_length)


def test_classify_review_still_truncates_long_texts():
    label = classify_review("x" * 50, classifier(), ByteTokenizer(), "cpu", max_length=20)
    assert label in ("spam", "not spam")
