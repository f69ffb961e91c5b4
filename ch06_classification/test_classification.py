"""Tests of chapter 6: data preparation, the classifier, its training and LoRA."""

import math

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ch06_classification.classification import (
    SpamDataset,
    add_classification_head,
    calc_accuracy_loader,
    calc_loss_batch,
    calc_loss_loader,
    classify_review,
    count_trainable_parameters,
    create_balanced_dataset,
    download_and_unzip_spam_data,
    evaluate_model,
    load_sms_spam,
    random_split,
    train_classifier_simple,
    train_only_last_block,
)
from conftest import TINY_GPT, tiny_gpt
from shared import GPTModel


TINY = {**TINY_GPT, "vocab_size": 60, "context_length": 16, "n_layers": 2}


class LetterTokenizer:
    def encode(self, text, allowed_special=None):
        return [ord(c) % 50 for c in text]


def unbalanced_frame():
    return pd.DataFrame({"Label": ["ham"] * 30 + ["spam"] * 7,
                         "Text": [f"message {i}" for i in range(37)]})


# Data --------------------------------------------------------------------------------------

def test_sms_spam_collection_has_the_books_counts():
    counts = load_sms_spam()["Label"].value_counts()
    assert (counts["ham"], counts["spam"]) == (4825, 747)


def test_balancing_keeps_every_minority_example_and_is_seeded():
    df = unbalanced_frame()
    balanced = create_balanced_dataset(df, seed=1)
    assert balanced["Label"].value_counts().to_dict() == {"ham": 7, "spam": 7}
    spam = balanced[balanced["Label"] == "spam"]["Text"]
    assert set(spam) == set(df[df["Label"] == "spam"]["Text"])
    assert balanced.equals(create_balanced_dataset(df, seed=1))
    assert not balanced.equals(create_balanced_dataset(df, seed=2))


def test_split_sizes_disjointness_and_seed():
    df = pd.DataFrame({"Label": [0, 1] * 747, "Text": [str(i) for i in range(1494)]})
    train, validation, test = random_split(df, 0.7, 0.1, seed=123)
    assert (len(train), len(validation), len(test)) == (1045, 149, 300)  # the book's sizes
    texts = [set(part["Text"]) for part in (train, validation, test)]
    assert set.union(*texts) == set(df["Text"]) and sum(map(len, texts)) == 1494
    again = random_split(df, 0.7, 0.1, seed=123)
    assert all(a.equals(b) for a, b in zip((train, validation, test), again))


def test_dataset_pads_with_endoftext_and_truncates(tmp_path):
    path = tmp_path / "split.csv"
    pd.DataFrame({"Label": [0, 1, 1], "Text": ["ab", "abcd", "a" * 50]}).to_csv(path, index=None)
    longest = SpamDataset(path, LetterTokenizer())
    assert longest.max_length == 50
    capped = SpamDataset(path, LetterTokenizer(), max_length=3, pad_token_id=99)
    ids, label = capped[0]
    assert ids.tolist() == [97 % 50, 98 % 50, 99] and label.item() == 0
    assert capped[2][0].tolist() == [97 % 50] * 3  # truncated to its first tokens
    assert len(capped) == 3 and all(len(capped[i][0]) == 3 for i in range(3))


# The classifier ----------------------------------------------------------------------------

def tiny_classifier(seed=0):
    return add_classification_head(tiny_gpt(seed, **TINY).train())


def test_head_gives_two_logits_at_every_position():
    model = tiny_classifier()
    assert model(torch.randint(0, 60, (3, 10))).shape == (3, 10, 2)


def test_only_last_block_final_norm_and_head_train():
    model = train_only_last_block(tiny_classifier())
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    expected = {name for name, _ in model.named_parameters()
                if name.startswith(("trf_blocks.1.", "final_norm.", "out_head."))}
    assert trainable == expected
    assert count_trainable_parameters(model) == sum(
        p.numel() for name, p in model.named_parameters() if name in expected)


class ParityClassifier(nn.Module):
    """Class = last token id mod 2, with certainty: a model whose accuracy we know."""

    def __init__(self):
        super().__init__()
        self.pos_emb = nn.Embedding(8, 1)  # its rows: all the classifier functions read of a GPT

    def forward(self, ids):
        return nn.functional.one_hot(ids % 2, 2).float() * 10


def test_accuracy_counts_correct_predictions():
    inputs = torch.tensor([[1, 2], [1, 3], [0, 4], [0, 5]])
    labels = torch.tensor([0, 1, 1, 1])  # parity of the last token: right, right, wrong, right
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=2)
    assert calc_accuracy_loader(loader, ParityClassifier(), "cpu") == 0.75
    assert calc_accuracy_loader(loader, ParityClassifier(), "cpu", num_batches=1) == 1.0


class LastIdsClassifier(nn.Module):
    """Records the ids it is given; class = last token id mod 2."""

    def __init__(self, context_length=16):
        super().__init__()
        self.pos_emb = nn.Embedding(context_length, 1)  # the book's GPTModel: no cfg
        self.seen = []

    def forward(self, ids):
        self.seen.append(ids.tolist())
        return nn.functional.one_hot(ids % 2, 2).float()


def test_classify_review_cuts_a_long_text_to_the_context_and_pads_a_short_one():
    model = LastIdsClassifier()
    text = "".join(chr(97 + i % 26) for i in range(100))  # LetterTokenizer: one id per letter
    ids = LetterTokenizer().encode(text)
    for max_length in (None, 500):
        assert classify_review(text, model, LetterTokenizer(), "cpu", max_length) == (
            "spam" if ids[15] % 2 else "not spam")
        assert model.seen[-1] == [ids[:16]]  # its first 16 tokens, the context
    classify_review("ab", model, LetterTokenizer(), "cpu", max_length=5, pad_token_id=9)
    assert model.seen[-1] == [ids[:2] + [9, 9, 9]]


def separable_loaders():
    """Class 1 sequences contain token 7, class 0 sequences never do."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randint(10, 60, (64, 12), generator=generator)
    labels = torch.arange(64) % 2
    inputs[labels == 1, 3] = 7
    data = TensorDataset(inputs, labels)
    return DataLoader(data, batch_size=8, shuffle=True), DataLoader(data, batch_size=8)


def test_training_learns_a_separable_task():
    model = tiny_classifier()
    train_loader, val_loader = separable_loaders()
    before = calc_accuracy_loader(val_loader, model, "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = train_classifier_simple(model, train_loader, val_loader, optimizer, "cpu", 15,
                                     eval_freq=10, eval_iter=2)
    train_losses, val_losses, train_accs, val_accs, examples_seen = losses
    assert train_losses[-1] < train_losses[0]
    assert examples_seen == 15 * 64  # the book's examples_seen: every example trained on
    assert len(train_accs) == len(val_accs) == 15
    assert calc_accuracy_loader(val_loader, model, "cpu") >= max(0.95, before)


# LoRA --------------------------------------------------------------------------------------


# Devices: what chapter 6 adds to a model goes where the model is -------------------------------
# The meta device (shapes without values) stands in for a GPU on this CPU-only machine.


def test_6_2s_check_evaluates_the_model_on_its_own_device(monkeypatch):
    from ch06_classification import exercise_checks

    devices = []

    def calc_accuracy_loader(data_loader, model, device, num_batches=None):
        devices.append(torch.device(device))
        return 1.0

    monkeypatch.setattr(exercise_checks, "calc_accuracy_loader", calc_accuracy_loader)
    # meta tensors cannot be compared: the weights' check is tested in test_exercise_checks.py
    monkeypatch.setattr(exercise_checks, "_weights_problem", lambda *args: None)
    model = add_classification_head(GPTModel(TINY)).to("meta")
    model.tok_emb.weight.requires_grad = False
    assert exercise_checks.frozen_embedding_classifier(
        model, val_loader=None, model=None, build_classifier=None) is None
    assert devices == [torch.device("meta")]


# The book's names, on a model of the book's shape ---------------------------------------------

def books_classifier():
    """The book's own GPTModel (no cfg attribute) with its head replaced, as the book does."""
    from llms_from_scratch.ch04 import GPTModel as BooksGPTModel

    torch.manual_seed(0)
    model = BooksGPTModel(TINY)
    model.out_head = nn.Linear(TINY["emb_dim"], 2)
    return model


def test_the_classification_helpers_work_on_the_books_model():
    model = books_classifier()
    assert not hasattr(model, "cfg")
    train_loader, val_loader = separable_loaders()
    assert 0 <= calc_accuracy_loader(val_loader, model, "cpu") <= 1
    assert calc_loss_loader(val_loader, model, "cpu") > 0
    assert math.isnan(calc_loss_loader([], model, "cpu"))  # the book's: no batch, nan
    x, y = next(iter(val_loader))
    assert calc_loss_batch(x, y, model, "cpu").item() > 0
    train_loss, val_loss = evaluate_model(model, train_loader, val_loader, "cpu", eval_iter=2)
    assert train_loss > 0 and val_loss > 0
    assert classify_review("x" * 100, model, LetterTokenizer(), "cpu") in ("spam", "not spam")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    train_losses, val_losses, train_accs, val_accs, examples_seen = train_classifier_simple(
        model, train_loader, val_loader, optimizer, "cpu", num_epochs=2, eval_freq=4,
        eval_iter=1)
    assert examples_seen == 2 * 64 and len(train_accs) == 2
    # the book's plotting lines accept what it returns
    examples_seen_tensor = torch.linspace(0, examples_seen, len(train_losses))
    assert examples_seen_tensor[-1].item() == examples_seen


def test_the_books_spam_download_works_from_the_mirror(tmp_path, capsys):
    extracted = tmp_path / "sms_spam_collection"
    data_file = extracted / "SMSSpamCollection.tsv"
    url = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"
    download_and_unzip_spam_data(url, tmp_path / "sms_spam_collection.zip", extracted, data_file)
    df = pd.read_csv(data_file, sep="\t", header=None, names=["Label", "Text"])
    assert df["Label"].value_counts().to_dict() == {"ham": 4825, "spam": 747}
    download_and_unzip_spam_data(url, tmp_path / "sms_spam_collection.zip", extracted, data_file)
    assert "already exists" in capsys.readouterr().out


def test_the_configuration_describes_the_classifier():
    model = tiny_classifier()
    assert model.cfg["num_classes"] == model.out_head.out_features == 2
    assert "num_classes" not in TINY  # the caller's dict is not changed
    assert add_classification_head(GPTModel(TINY), 3).cfg["num_classes"] == 3


def test_a_classifier_is_not_silently_rebuilt_as_a_language_model():
    # Chapter 4's GPTModel builds no classification head from a configuration (yet): rebuilding
    # from the classifier's cfg is refused, naming the key, instead of giving a 50,257-way head.
    with pytest.raises(ValueError, match="unknown configuration key 'num_classes'"):
        GPTModel(tiny_classifier().cfg)


def test_appendix_e_and_chapter_6_names_have_the_books_parameters():
    import inspect

    from llms_from_scratch import appendix_e, ch06

    from ch06_classification import classification, lora

    modules = (classification, lora)
    for book, names in [(appendix_e, ("LoRALayer", "LinearWithLoRA", "replace_linear_with_lora")),
                        (ch06, ("download_and_unzip_spam_data", "create_balanced_dataset",
                                "random_split", "SpamDataset", "calc_accuracy_loader",
                                "calc_loss_batch", "calc_loss_loader", "evaluate_model",
                                "train_classifier_simple", "classify_review"))]:
        for name in names:
            ours = next(getattr(m, name) for m in modules if hasattr(m, name))
            ours = inspect.signature(ours).parameters
            theirs = inspect.signature(getattr(book, name)).parameters
            assert list(ours)[:len(theirs)] == list(theirs), name
            assert all(p.kind is p.KEYWORD_ONLY for p in list(ours.values())[len(theirs):]), name


def test_the_books_spam_download_fetches_another_url_as_the_book_does(tmp_path, monkeypatch):
    import zipfile

    from ch06_classification import classification

    def download_file(url, destination):  # stands in for the network
        assert url == "https://example.org/spam.zip"
        with zipfile.ZipFile(destination, "w") as archive:
            archive.writestr("SMSSpamCollection", "ham\thello\n")

    monkeypatch.setattr(classification, "download_file", download_file)
    extracted = tmp_path / "other"
    download_and_unzip_spam_data("https://example.org/spam.zip", tmp_path / "spam.zip",
                                 extracted, extracted / "data.tsv")
    assert (extracted / "data.tsv").read_text() == "ham\thello\n"  # not the course's file


# More than two classes ---------------------------------------------------------------------

ANIMALS = ["cat", "dog", "owl"]  # the classes, by index


def animal_texts(count, seed):
    """`count` texts per class, "<3 random letters> <animal>": all of one length, so that the
    last position, which decides, holds the animal's last letter."""
    generator = torch.Generator().manual_seed(seed)
    letters = torch.randint(0, 8, (count * len(ANIMALS), 3), generator=generator)
    rows = [(k % len(ANIMALS), "".join("abcdefgh"[i] for i in row) + " " + ANIMALS[k % 3])
            for k, row in enumerate(letters.tolist())]
    return pd.DataFrame(rows, columns=["Label", "Text"])


def test_a_three_class_classifier_trains_with_chapter_6s_functions_as_they_are(tmp_path):
    for name, seed in [("train", 0), ("validation", 1)]:
        animal_texts(8, seed).to_csv(tmp_path / f"{name}.csv", index=False)
    train_set = SpamDataset(tmp_path / "train.csv", LetterTokenizer(), pad_token_id=0,
                            num_classes=3)
    val_set = SpamDataset(tmp_path / "validation.csv", LetterTokenizer(), pad_token_id=0,
                          max_length=train_set.max_length, num_classes=3)
    assert sorted(set(train_set.data["Label"])) == [0, 1, 2]
    train_loader = DataLoader(train_set, batch_size=8, shuffle=True, drop_last=True,
                              generator=torch.Generator().manual_seed(0))
    val_loader = DataLoader(val_set, batch_size=8)
    torch.manual_seed(0)
    model = add_classification_head(GPTModel(TINY), num_classes=3)
    assert model.cfg["num_classes"] == 3
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train_losses, _, train_accs, val_accs, seen = train_classifier_simple(
        model, train_loader, val_loader, optimizer, "cpu", num_epochs=8, eval_freq=5,
        eval_iter=1)
    assert seen == 8 * 24 and train_losses[-1] < train_losses[0] / 2
    assert calc_accuracy_loader(val_loader, model, "cpu") == 1.0


# What the chapter's functions refuse (beyond the book): a silent wrong result, or an error far
# from its cause ---------------------------------------------------------------------------------

def test_random_split_refuses_fractions_that_leave_a_split_empty():
    df = pd.DataFrame({"Label": [0, 1] * 10, "Text": ["a"] * 20})
    for fractions in [(0.9, 0.2), (0.7, 0.0), (0.0, 0.5), (0.7, -0.1)]:
        with pytest.raises(ValueError, match="train_frac=.*validation_frac="):
            random_split(df, *fractions)


@pytest.mark.parametrize("rows, bad_row", [
    ([("ham", "hi"), ("spam", "win")], 0),  # labels as names: the batch would fail
    ([(0, "hi"), (2, "win")], 1),  # no class 2 of 2: the loss would fail
    ([(0.0, "hi"), (1.0, "win")], 0),  # floats ("0.0" in the file): float targets
    ([(0, "hi"), (1, "")], 1),  # empty: nan, on which tiktoken fails
    ([(0, "NA"), (1, "win")], 0),  # read as nan too
])
def test_the_dataset_refuses_a_row_that_is_no_text_and_class_index_naming_it(
        tmp_path, rows, bad_row):
    path = tmp_path / "split.csv"
    pd.DataFrame(rows, columns=["Label", "Text"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=rf"split\.csv, row {bad_row}: .*Label in 0\.\.1"):
        SpamDataset(path, LetterTokenizer())


def test_the_dataset_takes_a_label_of_2_given_num_classes_3(tmp_path):
    path = tmp_path / "split.csv"
    pd.DataFrame({"Label": [0, 2], "Text": ["hi", "win"]}).to_csv(path, index=False)
    assert SpamDataset(path, LetterTokenizer(), num_classes=3)[1][1].item() == 2


def test_a_second_classification_head_is_refused_and_the_first_kept():
    model = tiny_classifier()
    head = model.out_head
    with pytest.raises(ValueError, match="model already has a classification head"):
        add_classification_head(model, 3)
    assert model.out_head is head and model.cfg["num_classes"] == 2


def test_accuracy_of_a_model_without_a_classification_head_is_refused():
    inputs, labels = torch.randint(0, 60, (4, 5)), torch.tensor([0, 1, 0, 1])
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=2)
    with pytest.raises(ValueError, match="model has no classification head"):
        calc_accuracy_loader(loader, tiny_gpt(0, **TINY), "cpu")


def test_classify_review_refuses_a_head_without_two_classes():
    model = add_classification_head(tiny_gpt(0, **TINY), 3)
    with pytest.raises(ValueError, match="model must have a 2-class head, got 3"):
        classify_review("win", model, LetterTokenizer(), "cpu")
