# Generated from ch05_pretraining/beyond_4_training.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export training`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_4_training.ipynb cell 10, Chapter 5, beyond the book: warmup, cosine decay and gradi...

"""Chapter 5, beyond the book: the book's appendix D (warmup, cosine decay and gradient
clipping) in a second training loop, train_model, with the hooks longer runs need, and the
lesson's loop with those hooks, train_model_simple_hooked."""

import itertools
import math
from collections.abc import Callable, Collection, Iterable, Iterator

import tiktoken
import torch
from torch import nn

from ch04_gpt_model.gpt_model import generate_text_simple
from ch05_pretraining.pretraining import (
    calc_loss_batch,
    context_length_of,
    text_to_token_ids,
    token_ids_to_text,
)
from shared.checks import (
    check,
    check_finite,
)
from shared.utils import progress_bar


Batch = tuple[torch.Tensor, torch.Tensor]  # (input ids, target ids), each (batch, tokens)
Loader = Collection[Batch]  # a DataLoader, or any sized iterable of batches
Device = str | torch.device
LossFn = Callable[[torch.Tensor, torch.Tensor, nn.Module, Device], torch.Tensor]


_NEEDS_TOKENIZER = "start_context needs a tokenizer to encode it and decode the samples"


# %% beyond_4_training.ipynb cell 12, 5.6 Warmup, cosine decay and gradient clipping

def cosine_schedule(peak_lr: float, total_steps: int, warmup_steps: int = 0,
                    initial_lr: float = 0.0, min_lr: float = 0.0, *,
                    peak_name: str = "peak_lr") -> Callable[[int], float]:
    """Learning rate per step: linear warmup to `peak_lr`, then cosine decay to `min_lr`
    (peak_name: what the messages call the peak)."""
    # Each would give another curve without a word: a warmup longer than the run stops short of
    # the peak (one exactly as long, which is allowed, ends one increment below it), a negative
    # rate trains uphill, a warmup or decay past the peak runs backwards.
    check(0 <= warmup_steps <= total_steps, lambda: f"warmup_steps must be in 0..total_steps "
          f"({total_steps}), got {warmup_steps!r}")
    check(initial_lr >= 0 and 0 <= min_lr <= peak_lr, lambda: f"initial_lr ({initial_lr}), min_lr "
          f"({min_lr}) and {peak_name} ({peak_lr}) must be >= 0, min_lr at most {peak_name}")
    check(not warmup_steps or initial_lr <= peak_lr, lambda: f"initial_lr ({initial_lr}) must "
          f"not exceed {peak_name} ({peak_lr}): a warmup rises from initial_lr to the peak. Pass "
          f"an initial_lr of at most {peak_lr} (0, or a tenth of the peak), or warmup_steps=0")

    def lr_at(step):
        if step < warmup_steps:  # the increment per step, as appendix D computes it
            return initial_lr + step * ((peak_lr - initial_lr) / warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_lr + 0.5 * (peak_lr - min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))
    return lr_at


# %% beyond_4_training.ipynb cell 15, 5.6 Warmup, cosine decay and gradient clipping

def batches_per_step(loader: Iterable[Batch], grad_accum_steps: int = 1) -> Iterator[list[Batch]]:
    """Lists of `grad_accum_steps` batches (the last may be shorter): one per optimizer step."""
    group = []
    for batch in loader:
        group.append(batch)
        if len(group) == grad_accum_steps:
            yield group
            group = []
    if group:
        yield group


def optimizer_step(model: nn.Module, batches: list[Batch], optimizer: torch.optim.Optimizer,
                   device: Device, loss_batch: LossFn = calc_loss_batch, *, lr: float | None = None,
                   max_grad_norm: float | None = None,
                   autocast_dtype: torch.dtype | None = None, step: int | None = None,
                   first_batch: int | None = None) -> None:
    """One update from the mean gradient of `batches`: usually one batch, several in 5.8.
    A loss that is nan or infinite stops it before the update (FloatingPointError naming
    `step`): the weights stay as they were. With first_batch (the index of batches[0] in its
    epoch), an error in a batch's loss names the batch."""
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    optimizer.zero_grad()
    mean_loss = 0.0
    for index, (input_batch, target_batch) in enumerate(batches, first_batch or 0):
        try:
            with torch.autocast(torch.device(device).type, dtype=autocast_dtype,
                                enabled=autocast_dtype is not None):
                loss = loss_batch(input_batch, target_batch, model, device)
        except (ValueError, TypeError, IndexError, RuntimeError) as error:  # a collate bug...
            if first_batch is not None and error.args and isinstance(error.args[0], str):
                error.args = (f"batch {index} of the epoch, counting from 0 (step {step}): "
                              f"{error.args[0]}", *error.args[1:])  # its type and traceback kept
            raise
        loss = loss / len(batches)  # so the step's gradient is the mean over its batches
        loss.backward()
        mean_loss += loss.detach()
    check_finite("the loss", mean_loss, step=step)
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()


# %% beyond_4_training.ipynb cell 16, 5.6 Warmup, cosine decay and gradient clipping

def train_model(
        model: nn.Module, train_loader: Loader, val_loader: Loader,
        optimizer: torch.optim.Optimizer, device: Device, n_epochs: int, eval_freq: int | None,
        eval_iter: int, start_context: str | None, tokenizer: tiktoken.Encoding | None,
        warmup_steps: int, initial_lr: float = 3e-05, min_lr: float = 1e-6, *,
        loss_batch: LossFn = calc_loss_batch,
        count_seen: Callable[[torch.Tensor], int] = torch.Tensor.numel,
        after_epoch: Callable[[int], str | None] | None = None,
        after_step: Callable[[int, list[float], list[float]], object] | None = None,
        lr_schedule: Callable[[int], float] | None = None, max_grad_norm: float | None = 1.0,
        start_step: int = 0, grad_accum_steps: int = 1, autocast_dtype: torch.dtype | None = None,
        progress: bool = True) -> tuple[list[float], list[float], list[int], list[float]]:
    """train_model_simple with warmup, cosine decay and clipping (the book's appendix D).

    Returns (train_losses, val_losses, seen) at each evaluation, and the learning rate of each
    step. lr_schedule(step) replaces the built-in schedule; warmup_steps also says when
    clipping starts. after_step(step, train_losses, val_losses) runs after every step;
    progress=False prints nothing (no bar, losses or samples).
    """
    # Without these, a negative grad_accum_steps would take one step per epoch (0 divides by
    # zero), a negative start_step or max_grad_norm would train uphill, and a missing tokenizer
    # would fail after an epoch.
    check(grad_accum_steps >= 1 and start_step >= 0, lambda: f"grad_accum_steps must be >= 1 "
          f"and start_step >= 0, got {grad_accum_steps!r} and {start_step!r}")
    check(max_grad_norm is None or max_grad_norm > 0,
          lambda: f"max_grad_norm must be > 0 or None, got {max_grad_norm!r}")
    check(not start_context or tokenizer is not None, _NEEDS_TOKENIZER)
    steps_per_epoch = math.ceil(len(train_loader) / grad_accum_steps)
    if lr_schedule is None:  # from initial_lr up to the optimizer's rate, then down to min_lr
        lr_schedule = cosine_schedule(optimizer.param_groups[0]["lr"],
                                      max(1, n_epochs * steps_per_epoch), warmup_steps,
                                      initial_lr, min_lr, peak_name="the optimizer's lr")
    train_losses, val_losses, track_seen, track_lrs = [], [], [], []
    seen, step = 0, start_step - 1
    with progress_bar(total=n_epochs * steps_per_epoch, desc="training", unit="step",
                      disable=not progress) as bar:
        log = bar.write if progress else (lambda message: None)
        for epoch in range(n_epochs):
            model.train()
            for in_epoch, batches in enumerate(batches_per_step(train_loader, grad_accum_steps)):
                step += 1
                track_lrs.append(lr_schedule(step))
                optimizer_step(model, batches, optimizer, device, loss_batch, lr=track_lrs[-1],
                               max_grad_norm=max_grad_norm if step >= warmup_steps else None,
                               autocast_dtype=autocast_dtype, step=step,
                               first_batch=in_epoch * grad_accum_steps)
                seen += sum(count_seen(input_batch) for input_batch, _ in batches)
                bar.update(1)
                if eval_freq and step % eval_freq == 0:
                    train_loss, val_loss = evaluate_losses(model, train_loader, val_loader,
                                                           device, eval_iter, loss_batch)
                    train_losses.append(train_loss)
                    val_losses.append(val_loss)
                    track_seen.append(seen)
                    log(f"Ep {epoch + 1} (Step {step:06d}): "
                        f"Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")
                if after_step is not None:
                    after_step(step, train_losses, val_losses)
            if start_context and progress:
                log(sample_text(model, tokenizer, device, start_context))
            if after_epoch is not None and (message := after_epoch(epoch)):
                log(message)
    return train_losses, val_losses, track_seen, track_lrs


# %% beyond_4_training.ipynb cell 18, 5.6 Warmup, cosine decay and gradient clipping

def evaluate_losses(model: nn.Module, train_loader: Loader, val_loader: Loader, device: Device,
                    eval_iter: int, loss_batch: LossFn = calc_loss_batch) -> tuple[float, float]:
    """The lesson's evaluate_model with any batch loss (5.8's chunked one, say), leaving
    the model in the mode it was in: the mean of loss_batch over the first eval_iter batches
    of each loader (nan for a loader without batches)."""
    was_training = model.training
    model.eval()
    losses = []
    with torch.no_grad():
        for loader in (train_loader, val_loader):
            n = min(eval_iter, len(loader))
            total = 0.0
            for input_batch, target_batch in itertools.islice(loader, n):
                total += loss_batch(input_batch, target_batch, model, device).item()
            losses.append(total / n if n else float("nan"))
    model.train(was_training)
    return losses[0], losses[1]


def sample_text(model: nn.Module, tokenizer: tiktoken.Encoding, device: Device,
                start_context: str, max_new_tokens: int = 50) -> str:
    """The line the lesson's generate_and_print_sample prints (a greedy continuation), returned,
    for any model with a context length; the model's mode is left as it was."""
    was_training = model.training
    model.eval()
    encoded = text_to_token_ids(start_context, tokenizer).to(device)
    token_ids = generate_text_simple(model, encoded, max_new_tokens, context_length_of(model))
    model.train(was_training)
    return token_ids_to_text(token_ids, tokenizer).replace("\n", " ")


def train_model_simple_hooked(
        model: nn.Module, train_loader: Loader, val_loader: Loader,
        optimizer: torch.optim.Optimizer, device: Device, num_epochs: int, eval_freq: int | None,
        eval_iter: int, start_context: str | None = None,
        tokenizer: tiktoken.Encoding | None = None, **hooks) -> tuple[list[float], list[float],
                                                                       list[int]]:
    """The lesson's train_model_simple, update for update, with train_model's hooks
    (loss_batch, count_seen, after_epoch, after_step, progress, ...): train_model at the
    optimizer's constant learning rate, without clipping. eval_freq=None never evaluates;
    start_context=None prints no samples. Returns (train_losses, val_losses, seen)."""
    lr = optimizer.param_groups[0]["lr"]
    train_losses, val_losses, seen, _ = train_model(
        model, train_loader, val_loader, optimizer, device, num_epochs, eval_freq, eval_iter,
        start_context, tokenizer, warmup_steps=0, lr_schedule=lambda step: lr,
        max_grad_norm=None, **hooks)
    return train_losses, val_losses, seen


# %% beyond_4_training.ipynb cell 23, 5.6 Warmup, cosine decay and gradient clipping

def find_highest_gradient(model: nn.Module) -> torch.Tensor | None:
    """The largest entry of any parameter's gradient (None before the first backward pass)."""
    highest = [param.grad.max() for param in model.parameters() if param.grad is not None]
    return max(highest) if highest else None


__all__ = [
    'Batch',
    'Loader',
    'Device',
    'LossFn',
    'cosine_schedule',
    'batches_per_step',
    'optimizer_step',
    'train_model',
    'evaluate_losses',
    'sample_text',
    'train_model_simple_hooked',
    'find_highest_gradient',
]
