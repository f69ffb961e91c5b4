# Generated from ch06_classification/classification.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% classification.ipynb cell 3, Chapter 6 — Finetuning for classification: a spam filter

"""Chapter 6: finetuning a GPT for text classification (spam detection)."""

import os
import shutil
import zipfile
from pathlib import Path

import pandas as pd

from shared.data import DATASETS, download_file, fetch
from shared.utils import write_atomically


# %% classification.ipynb cell 6, 6.2 Preparing the dataset

def download_and_unzip_spam_data(url, zip_path, extracted_path, data_file_path):
    if Path(data_file_path).exists():
        print(f"{Path(data_file_path).name} already exists: nothing to download")
        return
    Path(extracted_path).mkdir(parents=True, exist_ok=True)
    if url in DATASETS["sms-spam-collection"].urls:  # the book's URL: the verified copy
        source = fetch("sms-spam-collection")
        write_atomically(data_file_path, lambda tmp: shutil.copyfile(source, tmp))
    else:  # another URL: download and unzip
        if Path(zip_path).exists():  # beyond the book: a download would replace this file
            raise FileExistsError(f"zip_path {zip_path} exists: remove it, or choose another")
        download_file(url, zip_path)
        with zipfile.ZipFile(zip_path) as archive:
            archive.extract("SMSSpamCollection", extracted_path)
        os.rename(Path(extracted_path) / "SMSSpamCollection", data_file_path)  # add .tsv
    print(f"saved the collection as {Path(data_file_path).name}")


# %% classification.ipynb cell 9, 6.2 Preparing the dataset

def load_sms_spam() -> pd.DataFrame:
    """The SMS Spam Collection as a DataFrame with columns Label ('ham'/'spam') and Text."""
    return pd.read_csv(fetch("sms-spam-collection"), sep="\t", header=None,
                       names=["Label", "Text"])


# %% classification.ipynb cell 13, Balancing the classes

def create_balanced_dataset(df: pd.DataFrame, *, seed: int = 123) -> pd.DataFrame:
    """Undersample every label to the size of the rarest one (a seeded random choice)."""
    smallest = df["Label"].value_counts().min()
    parts = [group.sample(smallest, random_state=seed) if len(group) > smallest else group
             for _, group in df.groupby("Label", sort=False)]
    return pd.concat(parts)


# %% classification.ipynb cell 14, Balancing the classes

def random_split(df, train_frac, validation_frac, *, seed=123):
    df = df.sample(frac=1, random_state=seed).reset_index(drop=True)  # shuffle
    train_end = int(len(df) * train_frac)
    validation_end = train_end + int(len(df) * validation_frac)
    if not 0 < train_end < validation_end < len(df):  # beyond the book: no empty split
        raise ValueError(f"{train_frac=}, {validation_frac=}: a split would be empty")
    return df[:train_end], df[train_end:validation_end], df[validation_end:]


# %% classification.ipynb cell 24, 6.3 Data loaders: padding and truncation

import torch
from torch import nn
from torch.utils.data import Dataset


class SpamDataset(Dataset):
    def __init__(self, csv_file, tokenizer, max_length=None, pad_token_id=50256, *,
                 num_classes=2):
        self.data = pd.read_csv(csv_file)
        _check_spam_rows(self.data, csv_file, num_classes)  # beyond the book: below
        self.encoded_texts = [tokenizer.encode(text) for text in self.data["Text"]]  # encode
        if max_length is None:
            self.max_length = self._longest_encoded_length()
        else:
            self.max_length = max_length
        self.encoded_texts = [ids[:self.max_length]                          # truncate
                              + [pad_token_id] * (self.max_length - len(ids))  # pad
                              for ids in self.encoded_texts]

    def __getitem__(self, index):
        label = self.data["Label"][index]
        return torch.tensor(self.encoded_texts[index]), torch.tensor(label)

    def __len__(self):
        return len(self.data)

    def _longest_encoded_length(self):
        return max(len(ids) for ids in self.encoded_texts)


# beyond the book: a bad row is refused here, by its number, not later in tiktoken or the loss
def _check_spam_rows(data, csv_file, classes):  # pandas reads an empty or "NA" text as nan
    for row, (text, label) in enumerate(zip(data["Text"], data["Label"])):
        if not (isinstance(text, str) and pd.api.types.is_integer(label) and 0 <= label < classes):
            raise ValueError(f"{csv_file}, row {row}: needs a Text and a Label in "
                             f"0..{classes - 1}, got {text!r} and {label!r}")


# %% classification.ipynb cell 38, 6.5 Adding a classification head

def add_classification_head(model, num_classes=2):
    head = model.out_head
    if head.out_features != model.tok_emb.num_embeddings:  # beyond the book
        raise ValueError("model already has a classification head: rebuild the model to replace it")
    model.out_head = nn.Linear(head.in_features, num_classes).to(head.weight.device)
    if hasattr(model, "cfg"):  # a new dict: the caller's configuration stays as it was
        model.cfg = {**model.cfg, "num_classes": num_classes}
    return model


# %% classification.ipynb cell 42, Which layers to train

def train_only_last_block(model):
    model.requires_grad_(False)  # requires_grad = False on every parameter
    for module in (model.trf_blocks[-1], model.final_norm, model.out_head):
        module.requires_grad_(True)
    return model


def count_trainable_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# %% classification.ipynb cell 48, 6.6 Classification loss and accuracy

def calc_accuracy_loader(data_loader, model, device, num_batches=None):
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    model.eval()  # no dropout while we measure
    correct, total = 0, 0
    with torch.no_grad():
        for i, (input_batch, target_batch) in enumerate(data_loader):
            if i == num_batches:
                break
            logits = model(input_batch.to(device))[:, -1, :]  # the last token's logits
            # beyond the book: a language model's head would score near 0%, silently
            if hasattr(model, "tok_emb") and logits.shape[-1] == model.tok_emb.num_embeddings:
                raise ValueError("model has no classification head: add_classification_head(model)")
            predicted = logits.argmax(dim=-1)
            correct += (predicted == target_batch.to(device)).sum().item()
            total += len(target_batch)
    return correct / total


def calc_loss_batch(input_batch, target_batch, model, device):
    logits = model(input_batch.to(device))[:, -1, :]  # the last token's logits
    return nn.functional.cross_entropy(logits, target_batch.to(device))


def calc_loss_loader(data_loader, model, device, num_batches=None):
    if len(data_loader) == 0:
        return float("nan")  # no batch, no loss
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    total = 0.0
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i == num_batches:
            break
        total += calc_loss_batch(input_batch, target_batch, model, device).item()
    return total / num_batches


# %% classification.ipynb cell 52, 6.7 Finetuning on supervised data

def evaluate_model(model, train_loader, val_loader, device, eval_iter):
    model.eval()
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter)
        val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter)
    model.train()
    return train_loss, val_loss


def train_classifier_simple(model, train_loader, val_loader, optimizer, device, num_epochs,
                            eval_freq, eval_iter):
    train_losses, val_losses, train_accs, val_accs = [], [], [], []
    examples_seen, global_step = 0, -1
    for epoch in range(num_epochs):
        model.train()  # dropout on
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()  # forget the previous step's gradients
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            loss.backward()
            optimizer.step()
            examples_seen += input_batch.shape[0]  # examples, not tokens
            global_step += 1
            if global_step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(model, train_loader, val_loader, device,
                                                      eval_iter)
                train_losses.append(train_loss)
                val_losses.append(val_loss)
                print(f"Ep {epoch + 1} (Step {global_step:06d}): "
                      f"Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")
        train_accs.append(calc_accuracy_loader(train_loader, model, device, eval_iter))
        val_accs.append(calc_accuracy_loader(val_loader, model, device, eval_iter))
        print(f"Training accuracy: {train_accs[-1]:.2%} | Validation accuracy: {val_accs[-1]:.2%}")
    return train_losses, val_losses, train_accs, val_accs, examples_seen


# %% classification.ipynb cell 63, 6.8 Using the model as a spam classifier

from ch05_pretraining.pretraining import context_length_of  # its cfg's, or its position table's


def classify_review(text, model, tokenizer, device, max_length=None, pad_token_id=50256):
    ids = tokenizer.encode(text)
    max_length = min(max_length or len(ids), context_length_of(model))  # the context
    ids = ids[:max_length] + [pad_token_id] * (max_length - len(ids))   # truncate, pad
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor(ids, device=device).unsqueeze(0))[:, -1, :]
    if logits.shape[-1] != 2:  # beyond the book: the two names below are for two classes
        raise ValueError(f"model must have a 2-class head, got {logits.shape[-1]} outputs")
    return "spam" if logits.argmax(dim=-1).item() == 1 else "not spam"


__all__ = [
    'download_and_unzip_spam_data',
    'load_sms_spam',
    'create_balanced_dataset',
    'random_split',
    'SpamDataset',
    'add_classification_head',
    'train_only_last_block',
    'count_trainable_parameters',
    'calc_accuracy_loader',
    'calc_loss_batch',
    'calc_loss_loader',
    'evaluate_model',
    'train_classifier_simple',
    'classify_review',
]
