# Generated from ch06_classification/classification.ipynb
# by `python -m shared.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% classification.ipynb cell 3, Chapter 6 — Finetuning for classification: a spam filter

"""Chapter 6: finetuning a GPT for text classification (spam detection)."""

import pandas as pd
import torch
from torch import nn

from shared import fetch


# %% classification.ipynb cell 6, 6.2 Preparing the dataset

def load_sms_spam() -> pd.DataFrame:
    """The SMS Spam Collection as a DataFrame with columns Label ('ham'/'spam') and Text."""
    return pd.read_csv(fetch("sms-spam-collection"), sep="\t", header=None,
                       names=["Label", "Text"])


# %% classification.ipynb cell 10, Balancing the classes

def create_balanced_dataset(df: pd.DataFrame, *, seed: int = 123) -> pd.DataFrame:
    """Undersample every label to the size of the rarest one (a seeded random choice)."""
    smallest = df["Label"].value_counts().min()
    parts = [group.sample(smallest, random_state=seed) if len(group) > smallest else group
             for _, group in df.groupby("Label", sort=False)]
    return pd.concat(parts)


# %% classification.ipynb cell 69, The exported loss and accuracy (beyond the book)

import contextlib
import itertools

from shared import check, check_count, context_length_of


def _last_token_logits(model, input_batch):
    logits = model(input_batch[:, :context_length_of(model)])[:, -1, :]
    vocab_size = getattr(getattr(model, "tok_emb", None), "num_embeddings", None)
    check(logits.shape[-1] != vocab_size, lambda: f"model has no classification head: "
          f"{vocab_size:,} outputs, one per token; call add_classification_head(model) first")
    return logits


@contextlib.contextmanager
def _evaluating(model):
    """Evaluation mode, without gradients; afterwards each module is back in its own mode."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        with torch.no_grad():
            yield model.eval()
    finally:
        for module, training in modes:
            module.training = training


def _check_loader(data_loader, num_batches=None, name="data_loader"):
    """An accuracy or a loss over no examples means nothing: refuse it instead of a nan."""
    if num_batches is not None:
        check_count("num_batches", num_batches, 1)
    check(len(data_loader) > 0, f"{name} has no batches (an empty dataset, or fewer examples "
          f"than one batch with drop_last=True)")


def calc_accuracy_loader(data_loader, model, device, num_batches=None) -> float:
    """Share of correctly classified examples in the first `num_batches` batches (all)."""
    _check_loader(data_loader, num_batches)
    correct, total = 0, 0
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    with _evaluating(model):
        for input_batch, target_batch in itertools.islice(data_loader, num_batches):
            predicted = _last_token_logits(model, input_batch.to(device)).argmax(dim=-1)
            correct += (predicted == target_batch.to(device)).sum().item()
            total += len(target_batch)
    return correct / total


def calc_loss_batch(input_batch, target_batch, model, device) -> torch.Tensor:
    """The classification loss: cross-entropy of the last position's class logits."""
    logits = _last_token_logits(model, input_batch.to(device))
    return nn.functional.cross_entropy(logits, target_batch.to(device))


def calc_loss_loader(data_loader, model, device, num_batches=None) -> float:
    """Mean classification loss over the first `num_batches` batches (all by default)."""
    _check_loader(data_loader, num_batches)
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    batches = itertools.islice(data_loader, num_batches)
    return sum(calc_loss_batch(x, y, model, device).item() for x, y in batches) / num_batches


def evaluate_model(model, train_loader, val_loader, device, eval_iter):
    """Training and validation classification loss on `eval_iter` batches each, no dropout."""
    with _evaluating(model):
        return (calc_loss_loader(train_loader, model, device, num_batches=eval_iter),
                calc_loss_loader(val_loader, model, device, num_batches=eval_iter))


__all__ = [
    'load_sms_spam',
    'create_balanced_dataset',
    'calc_accuracy_loader',
    'calc_loss_batch',
    'calc_loss_loader',
    'evaluate_model',
]
