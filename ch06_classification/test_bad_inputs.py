"""Bad inputs to chapter 6: spam CSVs, loaders, the head, LoRA, classify_review; clear errors."""

import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ch04_gpt_model.gpt_model import GPTModel
from ch06_classification.final_versions import (
    SpamDataset,
    add_classification_head,
    calc_accuracy_loader,
    calc_loss_batch,
    calc_loss_loader,
    classify_review,
    download_and_unzip_spam_data,
    evaluate_model,
    train_classifier_simple,
    train_only_last_block,
)
from ch06_classification.lora import replace_linear_with_lora
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


# Helpers that change a model check everything first; evaluation keeps the mode ----------------

def flags(model):
    return {name: p.requires_grad for name, p in model.named_parameters()}


def module_types(model):
    return {name: type(module) for name, module in model.named_modules()}


def modes(model):
    return {name: module.training for name, module in model.named_modules()}


@pytest.mark.parametrize("missing", ["trf_blocks", "final_norm", "out_head"])
def test_train_only_last_block_refuses_a_model_without_a_gpt_part_and_freezes_nothing(missing):
    model = classifier()
    delattr(model, missing)
    before = flags(model)
    with pytest.raises(TypeError, match=r"model must be a GPT \(trf_blocks, final_norm, "
                                        r"out_head\), not GPTModel"):
        train_only_last_block(model)
    assert flags(model) == before and all(before.values())  # nothing half-frozen


def test_train_only_last_block_still_freezes_all_but_the_last_block():
    model = train_only_last_block(classifier())
    trainable = {name for name, flag in flags(model).items() if flag}
    assert trainable and all(name.startswith(("trf_blocks.0.", "final_norm.", "out_head."))
                             for name in trainable)


def lora_classifier():
    return replace_linear_with_lora(classifier(), rank=2, alpha=4)


@pytest.mark.parametrize("make_model, error, message", [
    pytest.param(classifier, ValueError, r"model already has a classification head \(2 outputs\)"
                 r": to start again, build or load the model again", id="a classifier"),
    pytest.param(lora_classifier, TypeError, r"model.out_head must be the language model's "
                 r"nn.Linear head, got LinearWithLoRA \(add the head before LoRA\)", id="LoRA"),
    pytest.param(lambda: nn.Sequential(nn.Linear(4, 4)), TypeError,
                 "model.out_head must be .* got NoneType", id="no out_head"),
])
def test_add_classification_head_never_replaces_a_trained_head(make_model, error, message):
    model = make_model()
    head, types, before = getattr(model, "out_head", None), module_types(model), flags(model)
    cfg = dict(getattr(model, "cfg", {}))
    with pytest.raises(error, match=message):
        add_classification_head(model, num_classes=3)
    assert getattr(model, "out_head", None) is head and module_types(model) == types
    assert flags(model) == before and dict(getattr(model, "cfg", {})) == cfg


def lm_model():
    return tiny_gpt(**TINY)  # out_head: 300 outputs, one per token


NO_HEAD = r"model has no classification head: 300 outputs, one per token; " \
          r"call add_classification_head\(model\) first"


@pytest.mark.parametrize("use", [
    pytest.param(lambda model: calc_accuracy_loader(loader(), model, "cpu"), id="accuracy"),
    pytest.param(lambda model: calc_loss_loader(loader(), model, "cpu"), id="loss loader"),
    pytest.param(lambda model: calc_loss_batch(*next(iter(loader())), model, "cpu"),
                 id="loss batch"),
    pytest.param(lambda model: evaluate_model(model, loader(), loader(), "cpu", 1),
                 id="evaluate_model"),
    pytest.param(lambda model: classify_review("hi", model, ByteTokenizer(), "cpu"),
                 id="classify_review"),
])
@pytest.mark.parametrize("make_model", [
    pytest.param(lm_model, id="language model"),
    pytest.param(lambda: replace_linear_with_lora(lm_model(), 2, 4), id="LoRA language model"),
])
def test_classification_helpers_refuse_a_language_model_head(use, make_model):
    model = make_model().train()
    before = modes(model)
    with pytest.raises(ValueError, match=NO_HEAD):
        use(model)
    assert modes(model) == before  # the mode is restored on the way out


def test_training_a_language_model_as_a_classifier_is_refused_before_any_step():
    model = lm_model()
    before = parameters(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=NO_HEAD):
        train_classifier_simple(model, loader(), loader(), optimizer, "cpu", num_epochs=1,
                                eval_freq=1, eval_iter=1)
    after = parameters(model)
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert optimizer.state_dict()["state"] == {}


def test_a_lora_classifier_is_a_classifier():
    assert 0 <= calc_accuracy_loader(loader(), lora_classifier(), "cpu") <= 1


def mixed_modes():
    """A model in training mode whose first block is in evaluation mode (a frozen part)."""
    model = classifier().train()
    model.trf_blocks[0].eval()
    return model


@pytest.mark.parametrize("use", [
    pytest.param(lambda model: calc_accuracy_loader(loader(), model, "cpu"), id="accuracy"),
    pytest.param(lambda model: calc_loss_loader(loader(), model, "cpu"), id="loss loader"),
    pytest.param(lambda model: evaluate_model(model, loader(), loader(), "cpu", 1),
                 id="evaluate_model"),
    pytest.param(lambda model: classify_review("hi", model, ByteTokenizer(), "cpu"),
                 id="classify_review"),
])
@pytest.mark.parametrize("make_model", [
    pytest.param(lambda: classifier().train(), id="training"),
    pytest.param(lambda: classifier().eval(), id="evaluation"),
    pytest.param(mixed_modes, id="mixed"),
])
def test_evaluation_helpers_restore_each_modules_mode(use, make_model):
    model = make_model()
    before = modes(model)
    use(model)
    assert modes(model) == before


def test_evaluation_runs_without_dropout_and_without_gradients():
    model = add_classification_head(tiny_gpt(**{**TINY, "drop_rate": 0.5})).train()
    data = loader(num_examples=8)
    assert evaluate_model(model, data, data, "cpu", 4) == evaluate_model(model, data, data,
                                                                         "cpu", 4)
    seen = []
    model.out_head.register_forward_hook(
        lambda module, inputs, output: seen.append((module.training, output.requires_grad)))
    calc_accuracy_loader(data, model, "cpu")
    classify_review("hi", model, ByteTokenizer(), "cpu")
    assert seen and all(state == (False, False) for state in seen)
    assert model.training


# Labels outside the head's classes, files that are not CSV text -------------------------------

@pytest.mark.parametrize("csv, num_classes, message", [
    ("Label,Text\n0,hi\n2,see you\n", 2, r"the Label of row 1 \(line 3\) must be a class index "
     r"in 0\.\.1 \(num_classes=2\), got 2"),
    ("Label,Text\n0,hi\n1,yo\n3,see you\n", 3, r"row 2 \(line 4\) .* in 0\.\.2 \(num_classes=3\), "
     r"got 3"),
    ("Label,Text\n0,hi\n1,yo\n2.0,ok\nham,see you\n", 3, r"row 3 \(line 5\) .* got 'ham'"),
    ("Label,Text\n0,hi\n1.5,yo\n", 2, r"row 1 \(line 3\) .* got 1\.5"),
    ("Label,Text\n0,hi\n1,yo\nnan,see you\n", 2, r"row 2 \(line 4\) .* got 'nan'"),
    ("Label,Text\n0,hi\n1,yo\ninf,see you\n", 2, r"row 2 \(line 4\) .* got inf"),
])
def test_a_label_outside_the_heads_classes_is_named_by_file_and_row(tmp_path, csv, num_classes,
                                                                      message):
    path = tmp_path / "spam.csv"
    path.write_text(csv)
    with pytest.raises(ValueError, match=message) as caught:
        SpamDataset(path, ByteTokenizer(), num_classes=num_classes)
    assert str(path) in str(caught.value)


def test_one_text_label_does_not_blame_the_rows_before_it(tmp_path):
    # pandas reads every label as text when one is not a number: row 2 is the bad one
    path = tmp_path / "spam.csv"
    path.write_text("Label,Text\n0,hi\n1,yo\nspam,see you\n")
    with pytest.raises(ValueError, match=r"the Label of row 2 \(line 4\) .* got 'spam'"):
        SpamDataset(path, ByteTokenizer())


def test_more_classes_need_num_classes(tmp_path):
    path = tmp_path / "three.csv"
    path.write_text("Label,Text\n0,hi\n1,yo\n2,see you\n")
    assert SpamDataset(path, ByteTokenizer(), num_classes=3).labels == [0, 1, 2]
    with pytest.raises(ValueError, match="got 2"):
        SpamDataset(path, ByteTokenizer())
    for bad, error in [(1, ValueError), (2.0, TypeError), ("3", TypeError), (None, TypeError)]:
        with pytest.raises(error, match=f"num_classes must be an integer of at least 2, got "
                                        f"{bad!r}"):
            SpamDataset(path, ByteTokenizer(), num_classes=bad)


@pytest.mark.parametrize("content, message", [
    pytest.param(bytes(range(256)) * 8, r"is not a UTF-8 CSV file \(", id="binary"),
    pytest.param("Label,Text\n0,hi\n".encode("utf-16"), r"is not a UTF-8 CSV file \('utf-8' "
                 r"codec can't decode byte 0xff", id="UTF-16"),
    pytest.param("Label,Text\n0,café\n".encode("latin-1"), "is not a UTF-8 CSV file", id="Latin-1"),
    pytest.param(b"", r"is not a UTF-8 CSV file \(No columns to parse from file\)", id="empty"),
    pytest.param(b"\0" * 4096, r"needs the columns Label and Text, but has \['\\x00\\x00",
                 id="NUL-filled"),
    pytest.param(b"Label,Text\n0,hi\n" + b"\0" * 64 + b"\n1,yo\n",
                 r"the Text of row 1 \(line 3\) is empty", id="NUL-filled block"),
])
def test_a_file_that_is_not_a_csv_text_is_named(tmp_path, content, message):
    path = tmp_path / "spam.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as caught:
        SpamDataset(path, ByteTokenizer())
    assert str(caught.value).startswith(str(path))
    assert len(str(caught.value)) < 300  # a NUL-filled "header" is not printed whole


def test_a_dataframe_is_not_a_csv_file():
    import pandas as pd

    frame = pd.DataFrame({"Label": [0, 1], "Text": ["hi", "WIN"]})
    with pytest.raises(TypeError, match=r"csv_file must be a CSV file, got a DataFrame: save it "
                                        r"first, df.to_csv\(path, index=False\)"):
        SpamDataset(frame, ByteTokenizer())


# Plotting a run with one evaluation, or none --------------------------------------------------

def test_a_run_with_one_evaluation_plots_and_one_with_none_says_why():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared import plot_values

    model = classifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    data = loader()
    train_losses, val_losses, train_accs, val_accs, seen = train_classifier_simple(
        model, data, data, optimizer, "cpu", num_epochs=1, eval_freq=100, eval_iter=1)
    assert len(train_losses) == len(train_accs) == 1  # one evaluation, after the first step
    batch_seen = torch.tensor([2.0])  # chapter 6's axes: examples seen at each evaluation
    plt.close(plot_values(batch_seen / seen, batch_seen, train_losses, val_losses))
    plt.close(plot_values(torch.tensor([1.0]), torch.tensor([float(seen)]), train_accs,
                          val_accs, label="accuracy"))
    with pytest.raises(ValueError, match=r"no evaluations\? give eval_freq"):
        plot_values([], [], [], [])


# Classes by name, special-token text, nothing lost or half-changed ------------------------------

def three_class_model():
    return add_classification_head(tiny_gpt(**TINY), num_classes=3).eval()


@pytest.mark.parametrize("make_model, labels, message", [
    pytest.param(three_class_model, ("not spam", "spam"), r"the model's head has 3 classes but "
                 r"labels has 2 \('not spam', 'spam'\): pass labels= with one name per class, "
                 r"or labels=None for the class index", id="3 classes, default labels"),
    pytest.param(classifier, ["a", "b", "c"], r"the model's head has 2 classes but labels has 3 "
                 r"\('a', 'b', 'c'\)", id="2 classes, 3 labels"),
])
def test_classify_review_refuses_labels_of_another_number_than_the_heads(make_model, labels,
                                                                        message):
    model = make_model()
    with pytest.raises(ValueError, match=message):
        classify_review("hello", model, ByteTokenizer(), "cpu", labels=labels)


@pytest.mark.parametrize("labels", ["abc", "spam"])
def test_classify_review_refuses_a_string_for_labels(labels):
    # A string is a sequence of letters: labels="abc" named class 0 'a' instead of failing
    with pytest.raises(TypeError, match=r"labels must be a list of class names, one per class, "
                       rf"or None, got the string '{labels}'"):
        classify_review("hello", three_class_model(), ByteTokenizer(), "cpu", labels=labels)


def test_classify_review_names_any_number_of_classes():
    model = three_class_model()
    logits = model(torch.tensor([list(b"hello")]))[0, -1]
    index = logits.argmax().item()
    assert classify_review("hello", model, ByteTokenizer(), "cpu", labels=None) == index
    assert classify_review("hello", model, ByteTokenizer(), "cpu",
                           labels=["red", "green", "blue"]) == ["red", "green", "blue"][index]
    two = classifier()  # the book's two classes keep the book's words
    spam = two(torch.tensor([list(b"hello")]))[0, -1].argmax().item() == 1
    assert classify_review("hello", two, ByteTokenizer(), "cpu") == ("spam" if spam
                                                                     else "not spam")


@pytest.mark.parametrize("csv, num_classes, hint", [
    ("Label,Text\nham,hi\nspam,WIN\nham,ok\n", 2,
     """map each label to a class index first: df["Label"] = df["Label"]"""
     """.map({'ham': 0, 'spam': 1}), with num_classes=2, and name the classes in that order: """
     """classify_review(..., labels=['ham', 'spam'])"""),
    # The map is in sorted order, not the file's: a file that starts with spam still gets
    # ham 0 and spam 1, the order the default labels ("not spam", "spam") name
    ("Label,Text\nspam,WIN\nham,hi\nham,ok\n", 2,
     """.map({'ham': 0, 'spam': 1}), with num_classes=2, and name the classes in that order: """
     """classify_review(..., labels=['ham', 'spam'])"""),
    ("Label,Text\npython,def f\nlegal,MIT\nchangelog,v2\n", 2,
     """.map({'changelog': 0, 'legal': 1, 'python': 2}), with num_classes=3, and name the """
     """classes in that order: classify_review(..., labels=['changelog', 'legal', 'python'])"""),
    ("Label,Text\npython,def f\nlegal,MIT\nchangelog,v2\n", 3,
     """.map({'changelog': 0, 'legal': 1, 'python': 2}), with num_classes=3, and name the """
     """classes in that order: classify_review(..., labels=['changelog', 'legal', 'python'])"""),
])
def test_text_labels_are_refused_with_the_mapping_that_makes_them_indices(tmp_path, csv,
                                                                          num_classes, hint):
    path = tmp_path / "topics.csv"
    path.write_text(csv)
    with pytest.raises(ValueError, match=r"the Label of row 0 \(line 2\) must be a class index"
                       ) as caught:
        SpamDataset(path, ByteTokenizer(), num_classes=num_classes)
    assert str(caught.value).endswith(hint)


def test_labels_that_are_partly_numbers_get_no_mapping(tmp_path):
    path = tmp_path / "topics.csv"
    path.write_text("Label,Text\n0,hi\n1,yo\nspam,WIN\n")
    with pytest.raises(ValueError, match=r"row 2 \(line 4\) .* got 'spam'$"):
        SpamDataset(path, ByteTokenizer())


def test_special_token_text_in_the_data_is_encoded_as_text(tmp_path, tiktoken_gpt2):
    # A message may mention "<|endoftext|>": it is text, as in chapter 7's data, never the
    # padding id 50256 (and not tiktoken's refusal of a special token)
    path = tmp_path / "spam.csv"
    path.write_text("Label,Text\n0,see you\n1,WIN <|endoftext|> now\n")
    dataset = SpamDataset(path, tiktoken_gpt2)
    as_text = tiktoken_gpt2.encode("WIN <|endoftext|> now", disallowed_special=())
    assert dataset.encoded_texts[1] == as_text and 50256 not in as_text
    assert dataset.encoded_texts[0][-1] == 50256  # the shorter message is padded, as before
    model = add_classification_head(tiny_gpt(**{**TINY, "vocab_size": 50257}))
    assert classify_review("WIN <|endoftext|> now", model, tiktoken_gpt2, "cpu") in (
        "spam", "not spam")


def qwen_like_tokenizer(folder: Path):
    """A tokenizer.json of a few words with "<|endoftext|>" registered as a special token,
    read by chapter 5's HFTokenizer, which encodes that spelling as its id (here 3)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from ch05_pretraining.open_weights import HFTokenizer

    tokenizer = Tokenizer(models.WordLevel({"WIN": 0, "now": 1, "[UNK]": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(["<|endoftext|>"])
    tokenizer.save(str(folder / "tokenizer.json"))
    return HFTokenizer(folder)


def test_special_token_text_is_refused_where_the_tokenizer_cannot_keep_it_as_text(tmp_path):
    """Only tiktoken encodes "<|endoftext|>" as text: HFTokenizer would make it the padding id
    (silently), and BPETokenizer refuses it without naming the row. Text without it passes."""
    from ch02_text_data.bpe import BPETokenizer

    path = tmp_path / "spam.csv"
    path.write_text("Label,Text\n0,WIN now\n1,WIN <|endoftext|> now\n")
    hf = qwen_like_tokenizer(tmp_path)
    assert hf.encode("WIN <|endoftext|> now") == [0, 3, 1]  # what the dataset would have held
    bpe = BPETokenizer.train("WIN now", vocab_size=260)
    for tokenizer, pad_token_id in [(hf, 3), (bpe, bpe.special_tokens["<|endoftext|>"])]:
        with pytest.raises(ValueError, match=r"spam\.csv: the Text of row 1 \(line 3\) holds "
                                             r"'<\|endoftext\|>', which this tokenizer"):
            SpamDataset(path, tokenizer, pad_token_id=pad_token_id)
        model = add_classification_head(tiny_gpt(**TINY))
        with pytest.raises(ValueError, match=r"^text holds '<\|endoftext\|>'"):
            classify_review("WIN <|endoftext|>", model, tokenizer, "cpu", pad_token_id=pad_token_id)
    path.write_text("Label,Text\n0,WIN now\n1,WIN\n")
    assert SpamDataset(path, hf, pad_token_id=3).encoded_texts == [[0, 1], [0, 3]]


class PoisonedSGD(torch.optim.SGD):
    """SGD whose third update makes the model's head nan, as a diverging run would."""

    def __init__(self, model, **options):
        super().__init__(model.parameters(), **options)
        self.head, self.updates = model.out_head, 0

    def step(self, closure=None):
        super().step(closure)
        self.updates += 1
        if self.updates == 3:
            with torch.no_grad():
                self.head.weight.fill_(float("nan"))


def test_training_stops_at_the_step_whose_loss_is_not_finite():
    model = classifier()
    optimizer = PoisonedSGD(model, lr=0.01)
    with pytest.raises(FloatingPointError, match=r"loss became nan at step 3\b.*training "
                                                 r"stopped there"):
        train_classifier_simple(model, loader(num_examples=16), loader(), optimizer, "cpu",
                                num_epochs=2, eval_freq=100, eval_iter=1)
    assert optimizer.updates == 3  # no update from the nan loss


# Item 7: the spam download writes nothing half, and overwrites nothing -----------------------

SPAM_URL = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"


def test_an_interrupted_copy_of_the_collection_leaves_no_file_to_be_taken_for_it(
        tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from ch06_classification import final_versions

    def half_a_copy(source, destination):
        with open(source, "rb") as file, open(destination, "wb") as out:
            out.write(file.read(1000))
        raise KeyboardInterrupt  # Ctrl-C during the copy

    data_file = tmp_path / "SMSSpamCollection.tsv"
    with monkeypatch.context() as patch:
        patch.setattr(final_versions, "shutil", SimpleNamespace(copyfile=half_a_copy))
        with pytest.raises(KeyboardInterrupt):
            final_versions.download_and_unzip_spam_data(SPAM_URL, tmp_path / "spam.zip",
                                                        tmp_path, data_file)
    assert list(tmp_path.iterdir()) == []
    final_versions.download_and_unzip_spam_data(SPAM_URL, tmp_path / "spam.zip", tmp_path,
                                                data_file)
    assert "already exists" not in capsys.readouterr().out
    assert len(data_file.read_text(encoding="utf-8").splitlines()) == 5574


def fake_download(files):
    """download_file's stand-in: writes a zip holding `files` (name -> text), or junk."""
    import zipfile

    def download_file(url, destination):
        if files is None:
            Path(destination).write_bytes(b"<html>Not found</html>")
            return
        with zipfile.ZipFile(destination, "w") as archive:
            for name, text in files.items():
                archive.writestr(name, text)
    return download_file


def test_another_urls_zip_is_unpacked_without_overwriting_the_folders_files(tmp_path,
                                                                            monkeypatch):
    from ch06_classification import final_versions

    monkeypatch.setattr(final_versions, "download_file", fake_download(
        {"SMSSpamCollection": "ham\thello\n", "readme": "the archive's readme"}))
    (tmp_path / "readme").write_text("my own notes")
    final_versions.download_and_unzip_spam_data("https://example.org/spam.zip",
                                                tmp_path / "spam.zip", tmp_path,
                                                tmp_path / "data.tsv")
    assert (tmp_path / "data.tsv").read_text() == "ham\thello\n"
    assert (tmp_path / "readme").read_text() == "my own notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.tsv", "readme", "spam.zip"]


@pytest.mark.parametrize("files", [None, {"readme": "no collection here"}])
def test_a_download_that_is_not_the_collection_is_named_and_not_kept(tmp_path, monkeypatch,
                                                                     files):
    from ch06_classification import final_versions

    monkeypatch.setattr(final_versions, "download_file", fake_download(files))
    with pytest.raises(ValueError, match=r"spam.zip, downloaded from https://example.org/x.zip,"
                                         r" is not a zip archive holding SMSSpamCollection; "
                                         r"removed it"):
        final_versions.download_and_unzip_spam_data("https://example.org/x.zip",
                                                    tmp_path / "spam.zip", tmp_path,
                                                    tmp_path / "data.tsv")
    assert list(tmp_path.iterdir()) == []  # no bad zip for the next call to reuse


def test_a_zip_path_that_holds_a_file_is_neither_overwritten_nor_removed(tmp_path):
    (tmp_path / "spam.zip").write_text("my own file")
    with pytest.raises(ValueError, match=r"zip_path .*spam.zip is there already: remove it, or "
                                         r"choose another zip_path for the download"):
        download_and_unzip_spam_data("https://example.org/x.zip", tmp_path / "spam.zip",
                                     tmp_path, tmp_path / "data.tsv")
    assert (tmp_path / "spam.zip").read_text() == "my own file"


def test_a_folder_as_the_data_file_is_refused_not_taken_for_the_collection(tmp_path):
    folder = tmp_path / "SMSSpamCollection.tsv"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"data_file_path .*SMSSpamCollection.tsv is a folder"):
        download_and_unzip_spam_data(SPAM_URL, tmp_path / "spam.zip", tmp_path, folder)


def test_extracted_path_as_the_data_file_is_refused_before_anything_is_made(tmp_path):
    folder = tmp_path / "sms_spam_collection"  # not there yet: the book's code would make it
    for url in (SPAM_URL, "https://example.org/x.zip"):
        with pytest.raises(ValueError, match=r"data_file_path .*sms_spam_collection is "
                                             r"extracted_path, a folder"):
            download_and_unzip_spam_data(url, tmp_path / "spam.zip", folder, folder)
    assert list(tmp_path.iterdir()) == []


# Item 7: LoRA and the head change the model whole or not at all ----------------------------


def test_a_head_that_cannot_record_its_classes_leaves_the_language_head():
    model = tiny_gpt(**TINY)
    head = model.out_head
    model.cfg = None  # not a configuration dict
    with pytest.raises(TypeError):
        add_classification_head(model, 3)
    assert model.out_head is head


def test_a_failure_after_the_download_removes_it_so_that_a_next_call_starts_afresh(
        tmp_path, monkeypatch):
    from ch06_classification import final_versions

    monkeypatch.setattr(final_versions, "download_file", fake_download(
        {"SMSSpamCollection": "ham\thello\n"}))
    missing_folder = tmp_path / "not made" / "data.tsv"  # its folder is not extracted_path
    with pytest.raises(FileNotFoundError):
        final_versions.download_and_unzip_spam_data("https://example.org/x.zip",
                                                    tmp_path / "spam.zip", tmp_path,
                                                    missing_folder)
    assert list(tmp_path.iterdir()) == []
    final_versions.download_and_unzip_spam_data("https://example.org/x.zip",
                                                tmp_path / "spam.zip", tmp_path,
                                                tmp_path / "data.tsv")
    assert (tmp_path / "data.tsv").read_text() == "ham\thello\n"


def test_a_folder_given_for_the_csv_file_is_named(tmp_path):
    folder = tmp_path / "train.csv"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"train.csv is not a UTF-8 CSV file \(.*Is a directory"):
        SpamDataset(folder, ByteTokenizer())
