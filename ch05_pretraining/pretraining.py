# Generated from ch05_pretraining/pretraining.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% pretraining.ipynb cell 68, The exported helpers and loop the exercises use (beyond the book)

"""Chapter 5: pretraining a GPT on unlabelled text: the loss, the loop, the text helpers."""

from collections.abc import Callable, Collection, Sequence

import matplotlib.pyplot as plt
import tiktoken
import torch
from torch import nn

from ch04_gpt_model.gpt_model import generate_text_simple
from shared.checks import (
    check,
    check_count,
    check_finite,
    check_one_sequence,
    check_same_lengths,
    check_same_shape,
)
from shared.utils import progress_bar


Batch = tuple[torch.Tensor, torch.Tensor]  # (input ids, target ids), each (batch, tokens)
Loader = Collection[Batch]  # a DataLoader, or any sized iterable of batches
Device = str | torch.device
LossFn = Callable[[torch.Tensor, torch.Tensor, nn.Module, Device], torch.Tensor]


# %% pretraining.ipynb cell 69, The exported helpers and loop the exercises use (beyond the book)

def calc_loss_batch(input_batch: torch.Tensor, target_batch: torch.Tensor, model: nn.Module,
                    device: Device) -> torch.Tensor:
    """Mean cross-entropy of the next-token predictions for one batch."""
    check_same_shape("target_batch", target_batch, "input_batch", input_batch,
                     "one target per input token")
    logits = model(input_batch.to(device))
    targets = target_batch.to(device)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def calc_loss_loader(data_loader: Loader, model: nn.Module, device: Device,
                     num_batches: int | None = None,
                     loss_batch: LossFn = calc_loss_batch) -> float:
    """Average batch loss over the first `num_batches` batches (all by default).

    loss_batch computes one batch's loss; chapter 6 passes its classification loss.
    """
    if num_batches is not None:
        check_count("num_batches", num_batches, 1)  # 0 batches would divide by zero
    if len(data_loader) == 0:
        return float("nan")
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    total = 0.0
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i >= num_batches:
            break
        total += loss_batch(input_batch, target_batch, model, device).item()
    return total / num_batches


# %% pretraining.ipynb cell 70, The exported helpers and loop the exercises use (beyond the book)

def evaluate_model(model: nn.Module, train_loader: Loader, val_loader: Loader, device: Device,
                   eval_iter: int, loss_batch: LossFn = calc_loss_batch) -> tuple[float, float]:
    """Training and validation loss on `eval_iter` batches each, without dropout."""
    check_count("eval_iter", eval_iter, 1)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, device, eval_iter, loss_batch)
        val_loss = calc_loss_loader(val_loader, model, device, eval_iter, loss_batch)
    model.train(was_training)  # the book sets train(); a model evaluated in eval mode stays so
    return train_loss, val_loss


def context_length_of(model: nn.Module) -> int:
    """The longest input `model` takes: its config's, or its position table's (the book's)."""
    return model.cfg["context_length"] if hasattr(model, "cfg") else model.pos_emb.num_embeddings


def generate_and_print_sample(model: nn.Module, tokenizer: tiktoken.Encoding, device: Device,
                              start_context: str, max_new_tokens: int = 50,
                              log: Callable[[str], object] = print) -> None:
    """Print the model's greedy continuation of `start_context` on one line."""
    was_training = model.training
    model.eval()
    context_size = context_length_of(model)
    encoded = text_to_token_ids(start_context, tokenizer).to(device)
    token_ids = generate_text_simple(model, encoded, max_new_tokens, context_size)
    log(token_ids_to_text(token_ids, tokenizer).replace("\n", " "))
    model.train(was_training)


# %% pretraining.ipynb cell 71, The exported helpers and loop the exercises use (beyond the book)

_NEEDS_TOKENIZER = "start_context needs a tokenizer to encode it and decode the samples"


def train_model_simple(
        model: nn.Module, train_loader: Loader, val_loader: Loader,
        optimizer: torch.optim.Optimizer, device: Device, num_epochs: int, eval_freq: int | None,
        eval_iter: int, start_context: str | None = None,
        tokenizer: tiktoken.Encoding | None = None, *, loss_batch: LossFn = calc_loss_batch,
        count_seen: Callable[[torch.Tensor], int] = torch.Tensor.numel,
        after_epoch: Callable[[int], str | None] | None = None,
) -> tuple[list[float], list[float], list[int]]:
    """Train for `num_epochs`; returns (train_losses, val_losses, seen) at each evaluation.

    eval_freq=None never evaluates; start_context=None prints no samples.
    """
    check_count("num_epochs", num_epochs, 0)
    if eval_freq is not None:  # None never evaluates; 0 is refused rather than meaning None
        check_count("eval_freq", eval_freq, 1)
        check_count("eval_iter", eval_iter, 1)
    check(not start_context or tokenizer is not None, _NEEDS_TOKENIZER)
    train_losses, val_losses, track_seen = [], [], []
    seen, step = 0, -1
    with progress_bar(total=num_epochs * len(train_loader), desc="training", unit="step") as bar:
        for epoch in range(num_epochs):
            model.train()
            for input_batch, target_batch in train_loader:
                optimizer.zero_grad()
                loss = loss_batch(input_batch, target_batch, model, device)
                loss.backward()  # first, so a GPU is already busy while we read the loss
                check_finite("the loss", loss, step=step + 1)  # before the update
                optimizer.step()
                seen += count_seen(input_batch)
                step += 1
                bar.update(1)
                if eval_freq and step % eval_freq == 0:
                    train_loss, val_loss = evaluate_model(model, train_loader, val_loader,
                                                          device, eval_iter, loss_batch)
                    train_losses.append(train_loss)
                    val_losses.append(val_loss)
                    track_seen.append(seen)
                    bar.write(f"Ep {epoch + 1} (Step {step:06d}): "
                              f"Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")
            if start_context:
                generate_and_print_sample(model, tokenizer, device, start_context, log=bar.write)
            if after_epoch is not None and (message := after_epoch(epoch)):
                bar.write(message)
    return train_losses, val_losses, track_seen


# %% pretraining.ipynb cell 72, The exported helpers and loop the exercises use (beyond the book)

def plot_values(epochs_seen: Sequence[float], seen: Sequence[float], train_values: Sequence[float],
                val_values: Sequence[float], label: str = "loss",
                seen_label: str = "tokens seen") -> plt.Figure:
    """Training and validation curves against epochs (bottom axis) and what the model has seen
    by then (top axis: tokens here, examples in chapter 6)."""
    check_same_lengths({"epochs_seen": epochs_seen, "seen": seen, "train_values": train_values,
                        "val_values": val_values}, 1, " (no evaluations? give eval_freq)")
    marker = "o" if len(train_values) == 1 else None  # one evaluation is a point, not a line
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs_seen, train_values, marker=marker, label=f"training {label}")
    ax.plot(epochs_seen, val_values, linestyle="-.", marker=marker, label=f"validation {label}")
    ax.set(xlabel="epochs", ylabel=label)
    ax.legend()
    # The top axis is the bottom one rescaled, so each epoch sits above what was seen by then.
    if float(epochs_seen[-1]) > 0:  # an evaluation at epoch 0 alone gives no scale for it
        top = ax.twiny()
        seen_per_epoch = float(seen[-1]) / float(epochs_seen[-1])
        top.set_xlim(*(limit * seen_per_epoch for limit in ax.get_xlim()))
        top.set_xlabel(seen_label)
    fig.tight_layout()
    return fig


def plot_losses(epochs_seen: Sequence[float], tokens_seen: Sequence[float],
                train_losses: Sequence[float], val_losses: Sequence[float]) -> None:
    """The book's name: plot_values of the losses against epochs and tokens seen, shown."""
    plot_values(epochs_seen, tokens_seen, train_losses, val_losses)
    plt.show()


# %% pretraining.ipynb cell 73, The exported helpers and loop the exercises use (beyond the book)

def text_to_token_ids(text: str, tokenizer: tiktoken.Encoding) -> torch.Tensor:
    """Encode `text` to a (1, tokens) tensor: a batch of one."""
    ids = tokenizer.encode(text, allowed_special={"<|endoftext|>"})
    return torch.tensor(ids, dtype=torch.long).unsqueeze(0)  # long even when empty


def token_ids_to_text(token_ids: torch.Tensor, tokenizer: tiktoken.Encoding) -> str:
    """Decode one sequence of ids, (tokens) or (1, tokens), to text."""
    check_one_sequence("token_ids", token_ids)
    return tokenizer.decode(token_ids.reshape(-1).tolist())  # a list even for one token


__all__ = [
    'Batch',
    'Loader',
    'Device',
    'LossFn',
    'calc_loss_batch',
    'calc_loss_loader',
    'evaluate_model',
    'context_length_of',
    'generate_and_print_sample',
    'train_model_simple',
    'plot_values',
    'plot_losses',
    'text_to_token_ids',
    'token_ids_to_text',
]
