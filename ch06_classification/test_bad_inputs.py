"""Bad inputs to chapter 6: what the book's download does with a broken copy, another URL or a
file at zip_path it would replace, and a run too short to plot. (The refusals inside the book's
functions are tested in test_classification.py.) The helpers below serve test_lora.py too."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ch06_classification.classification import (
    add_classification_head,
    download_and_unzip_spam_data,
    train_classifier_simple,
)
from ch06_classification.lora import replace_linear_with_lora
from conftest import TINY_GPT, tiny_gpt


TINY = {**TINY_GPT, "vocab_size": 300}  # room for a byte tokenizer's 256 ids


def classifier():
    return add_classification_head(tiny_gpt(**TINY)).eval()


def lora_classifier():
    return replace_linear_with_lora(classifier(), rank=2, alpha=4)


def loader(num_examples=4, batch_size=2, **options):
    inputs = torch.randint(0, 256, (num_examples, 6))
    labels = torch.arange(num_examples) % 2
    return DataLoader(TensorDataset(inputs, labels), batch_size=batch_size, **options)


def parameters(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def flags(model):
    return {name: p.requires_grad for name, p in model.named_parameters()}


def module_types(model):
    return {name: type(module) for name, module in model.named_modules()}


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
    with pytest.raises(ValueError, match="eval_freq"):
        plot_values([], [], [], [])


# The spam download writes nothing half, and overwrites nothing -----------------------------

SPAM_URL = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"


def test_an_interrupted_copy_of_the_collection_leaves_no_file_to_be_taken_for_it(
        tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from ch06_classification import classification

    def half_a_copy(source, destination):
        with open(source, "rb") as file, open(destination, "wb") as out:
            out.write(file.read(1000))
        raise KeyboardInterrupt  # Ctrl-C during the copy

    data_file = tmp_path / "SMSSpamCollection.tsv"
    with monkeypatch.context() as patch:
        patch.setattr(classification, "shutil", SimpleNamespace(copyfile=half_a_copy))
        with pytest.raises(KeyboardInterrupt):
            download_and_unzip_spam_data(SPAM_URL, tmp_path / "spam.zip", tmp_path, data_file)
    assert list(tmp_path.iterdir()) == []
    download_and_unzip_spam_data(SPAM_URL, tmp_path / "spam.zip", tmp_path, data_file)
    assert "already exists" not in capsys.readouterr().out
    assert len(data_file.read_text(encoding="utf-8").splitlines()) == 5574


def fake_download(files):
    """download_file's stand-in: writes a zip holding `files` (name -> text)."""
    import zipfile

    def download_file(url, destination):
        with zipfile.ZipFile(destination, "w") as archive:
            for name, text in files.items():
                archive.writestr(name, text)
    return download_file


def test_another_urls_zip_is_unpacked_without_overwriting_the_folders_files(tmp_path,
                                                                            monkeypatch):
    from ch06_classification import classification

    monkeypatch.setattr(classification, "download_file", fake_download(
        {"SMSSpamCollection": "ham\thello\n", "readme": "the archive's readme"}))
    (tmp_path / "readme").write_text("my own notes")
    download_and_unzip_spam_data("https://example.org/spam.zip", tmp_path / "spam.zip",
                                 tmp_path, tmp_path / "data.tsv")
    assert (tmp_path / "data.tsv").read_text() == "ham\thello\n"
    assert (tmp_path / "readme").read_text() == "my own notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.tsv", "readme", "spam.zip"]


def test_a_file_at_zip_path_is_not_replaced_by_another_urls_download(tmp_path, monkeypatch):
    from ch06_classification import classification

    monkeypatch.setattr(classification, "download_file", fake_download(
        {"SMSSpamCollection": "ham\thello\n"}))  # it would overwrite the file unasked
    zip_path, extracted = tmp_path / "spam.zip", tmp_path / "out"
    zip_path.write_text("my own file")
    with pytest.raises(FileExistsError, match="zip_path"):
        download_and_unzip_spam_data("https://example.org/spam.zip", zip_path, extracted,
                                     extracted / "data.tsv")
    assert zip_path.read_text() == "my own file"
    assert not (extracted / "data.tsv").exists()
    # the book's URL gives the course's verified copy, and writes nothing at zip_path
    download_and_unzip_spam_data(SPAM_URL, zip_path, extracted, extracted / "data.tsv")
    assert zip_path.read_text() == "my own file"
    assert len((extracted / "data.tsv").read_text(encoding="utf-8").splitlines()) == 5574


def test_a_zip_without_the_collection_is_named_by_zipfile(tmp_path, monkeypatch):
    from ch06_classification import classification

    monkeypatch.setattr(classification, "download_file", fake_download({"readme": "no data"}))
    with pytest.raises(KeyError, match="SMSSpamCollection"):
        download_and_unzip_spam_data("https://example.org/x.zip", tmp_path / "spam.zip",
                                     tmp_path, tmp_path / "data.tsv")
    assert not (tmp_path / "data.tsv").exists()  # nothing to be taken for the collection
