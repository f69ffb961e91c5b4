# Generated from ch05_pretraining/pretraining.ipynb by `python -m shared.notebooks export`.
# Do not edit: change the notebook's cells marked `#| export`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% pretraining.ipynb cell 2, Chapter 5 — Pretraining on unlabelled data

"""Chapter 5: pretraining a GPT on unlabelled text, decoding strategies, checkpoints."""

import json
import math
import numbers
import os
import pickle
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import safetensors.torch
import tiktoken
import torch
from torch import nn

from shared import (
    GPT2_SIZES,
    GPTModel,
    KVCache,
    check_count,
    check_token_ids,
    fetch,
    gpt2_config,
    progress_bar,
)
from shared.data import check_safetensors


Batch = tuple[torch.Tensor, torch.Tensor]  # (input ids, target ids), each (batch, tokens)
Loader = Collection[Batch]  # a DataLoader, or any sized iterable of batches
Device = str | torch.device
LossFn = Callable[[torch.Tensor, torch.Tensor, nn.Module, Device], torch.Tensor]


def _check_number(name: str, value, valid: str, low: float = 0.0, high: float = math.inf,
                  low_open: bool = False) -> None:
    """Raise unless `value` is a finite real number in [low, high] ((low, high] if low_open)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {valid}, got {value!r}")
    above_low = value > low if low_open else value >= low
    if not (above_low and value <= high and math.isfinite(value)):  # nan fails every test
        raise ValueError(f"{name} must be {valid}, got {value!r}")


# %% pretraining.ipynb cell 5, 5.1.1 What the untrained model writes

def text_to_token_ids(text: str, tokenizer: tiktoken.Encoding) -> torch.Tensor:
    """Encode `text` to a (1, tokens) tensor: a batch of one."""
    return torch.tensor(tokenizer.encode(text, allowed_special={"<|endoftext|>"})).unsqueeze(0)


def token_ids_to_text(token_ids: torch.Tensor, tokenizer: tiktoken.Encoding) -> str:
    return tokenizer.decode(token_ids.squeeze(0).tolist())


# %% pretraining.ipynb cell 21, 5.1.3 Training and validation losses on The Verdict

def calc_loss_batch(input_batch: torch.Tensor, target_batch: torch.Tensor, model: nn.Module,
                    device: Device) -> torch.Tensor:
    """Mean cross-entropy of the next-token predictions for one batch."""
    logits = model(input_batch.to(device))
    targets = target_batch.to(device)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def calc_loss_loader(data_loader: Loader, model: nn.Module, device: Device,
                     num_batches: int | None = None, loss_batch: LossFn = calc_loss_batch) -> float:
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


# %% pretraining.ipynb cell 25, 5.2 Training an LLM

def evaluate_model(model: nn.Module, train_loader: Loader, val_loader: Loader, device: Device,
                   eval_iter: int, loss_batch: LossFn = calc_loss_batch) -> tuple[float, float]:
    """Training and validation loss on `eval_iter` batches each, without dropout."""
    check_count("eval_iter", eval_iter, 1)
    model.eval()
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, device, eval_iter, loss_batch)
        val_loss = calc_loss_loader(val_loader, model, device, eval_iter, loss_batch)
    model.train()
    return train_loss, val_loss


def generate_and_print_sample(model: nn.Module, tokenizer: tiktoken.Encoding, device: Device,
                              start_context: str, max_new_tokens: int = 50,
                              log: Callable[[str], object] = print) -> None:
    model.eval()
    encoded = text_to_token_ids(start_context, tokenizer).to(device)
    token_ids = generate(model, encoded, max_new_tokens=max_new_tokens,
                         context_size=model.cfg["context_length"])
    log(token_ids_to_text(token_ids, tokenizer).replace("\n", " "))
    model.train()


# %% pretraining.ipynb cell 27, 5.2 Training an LLM

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
                   autocast_dtype: torch.dtype | None = None) -> None:
    """One update from the mean gradient of `batches`: usually one batch, several in 5.8."""
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    optimizer.zero_grad()
    for input_batch, target_batch in batches:
        with torch.autocast(torch.device(device).type, dtype=autocast_dtype,
                            enabled=autocast_dtype is not None):
            loss = loss_batch(input_batch, target_batch, model, device)
        (loss / len(batches)).backward()  # so the step's gradient is the mean over its batches
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()


# %% pretraining.ipynb cell 29, 5.2 Training an LLM

def train_model_simple(
        model: nn.Module, train_loader: Loader, val_loader: Loader,
        optimizer: torch.optim.Optimizer, device: Device, num_epochs: int, eval_freq: int | None,
        eval_iter: int, start_context: str | None = None,
        tokenizer: tiktoken.Encoding | None = None, *, loss_batch: LossFn = calc_loss_batch,
        count_seen: Callable[[torch.Tensor], int] = torch.Tensor.numel,
        after_epoch: Callable[[int], str | None] | None = None,
        after_step: Callable[[int, list[float], list[float]], object] | None = None,
        lr_schedule: Callable[[int], float] | None = None, max_grad_norm: float | None = None,
        start_step: int = 0, grad_accum_steps: int = 1, autocast_dtype: torch.dtype | None = None,
        progress: bool = True) -> tuple[list[float], list[float], list[int]]:
    """Train for `num_epochs`; returns (train_losses, val_losses, seen) at each evaluation.

    eval_freq=None never evaluates, start_context=None prints no samples, progress=False is
    silent. Chapter 6 passes loss_batch, count_seen (len: examples, not tokens) and after_epoch
    (which may return a line to print); the other options are explained where they are used.
    """
    # Checked here, once, not in the helpers called at every step.
    check_count("num_epochs", num_epochs, 0)
    check_count("grad_accum_steps", grad_accum_steps, 1)
    check_count("start_step", start_step, 0)
    if eval_freq is not None:  # None never evaluates; 0 is refused rather than meaning None
        check_count("eval_freq", eval_freq, 1)
        check_count("eval_iter", eval_iter, 1)
    if max_grad_norm is not None:  # 0 would zero every update, a negative one reverse it
        _check_number("max_grad_norm", max_grad_norm, "a positive number or None", low_open=True)
    if start_context and progress and tokenizer is None:
        raise ValueError("start_context needs a tokenizer to encode it and decode the samples")
    train_losses, val_losses, track_seen = [], [], []
    seen, step = 0, start_step - 1
    with progress_bar(total=num_epochs * math.ceil(len(train_loader) / grad_accum_steps),
                      desc="training", unit="step", disable=not progress) as bar:
        log = bar.write if progress else (lambda message: None)
        for epoch in range(num_epochs):
            model.train()
            for batches in batches_per_step(train_loader, grad_accum_steps):
                step += 1
                optimizer_step(model, batches, optimizer, device, loss_batch,
                               lr=lr_schedule(step) if lr_schedule else None,
                               max_grad_norm=max_grad_norm, autocast_dtype=autocast_dtype)
                seen += sum(count_seen(input_batch) for input_batch, _ in batches)
                bar.update(1)
                if eval_freq and step % eval_freq == 0:
                    train_loss, val_loss = evaluate_model(model, train_loader, val_loader,
                                                          device, eval_iter, loss_batch)
                    train_losses.append(train_loss)
                    val_losses.append(val_loss)
                    track_seen.append(seen)
                    log(f"Ep {epoch + 1} (Step {step:06d}): "
                        f"Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")
                if after_step is not None:
                    after_step(step, train_losses, val_losses)
            if start_context and progress:
                generate_and_print_sample(model, tokenizer, device, start_context, log=log)
            if after_epoch is not None and (message := after_epoch(epoch)):
                log(message)
    return train_losses, val_losses, track_seen


# %% pretraining.ipynb cell 31, 5.2 Training an LLM

def generate(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, context_size: int,
             temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
             eos_id: int | None = None, use_cache: bool = True) -> torch.Tensor:
    """Extend the token ids `idx` (batch, tokens) by up to `max_new_tokens` tokens.

    temperature 0 decodes greedily; above 0 it samples from softmax(logits / temperature),
    optionally restricted to the `top_k` most likely tokens and/or to the smallest set whose
    probability reaches `top_p`. Generation stops early when every sequence produces `eos_id`
    (which is not appended). Prompts longer than `context_size` are cropped to their end.

    use_cache (section 5.7) keeps every layer's keys and values, so each step computes only the
    new token. Once the text outgrows `context_size` the window slides, every position shifts
    and nothing cached stays valid: from then on each step recomputes the whole window. The
    tokens are the same either way. A model without `make_kv_caches` (any function from ids to
    logits) runs uncached.
    """
    check_token_ids(idx, "idx")  # the model checks each id against its vocabulary
    check_count("max_new_tokens", max_new_tokens, 0)
    check_count("context_size", context_size, 1)  # idx[:, -0:] would be the whole prompt
    # A negative temperature would decode greedily without a word: refuse it instead.
    _check_number("temperature", temperature, "a number >= 0 (0 decodes greedily)")
    if top_k is not None:
        check_count("top_k", top_k, 1)
    if top_p is not None:
        _check_number("top_p", top_p, "a number in (0, 1]", high=1.0, low_open=True)
    kv_caches = None
    if use_cache and hasattr(model, "make_kv_caches"):
        kv_caches = model.make_kv_caches(context_size)  # fresh for every prompt
    for _ in range(max_new_tokens):
        with torch.no_grad():
            if kv_caches is None:
                logits = model(idx[:, -context_size:])[:, -1]
            elif idx.shape[1] <= context_size:  # only the tokens not cached yet
                logits = model(idx[:, kv_caches[0].length:], kv_caches, last_only=True)[:, -1]
            else:  # the window slid: positions shifted, the cache is stale
                logits = model(idx[:, -context_size:], last_only=True)[:, -1]
        if top_k is not None:
            kth_largest = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
            logits = logits.masked_fill(logits < kth_largest, -torch.inf)
        if temperature > 0:
            # The same softmax, shifted so the largest logit is 0: a tiny temperature or
            # huge logits then give -inf for the others, not inf - inf = nan.
            logits = logits - logits.amax(dim=-1, keepdim=True)
            probs = torch.softmax(logits / temperature, dim=-1)
            if top_p is not None:
                probs = _nucleus(probs, top_p)
            next_id = torch.multinomial(probs, num_samples=1)
        else:
            next_id = logits.argmax(dim=-1, keepdim=True)
        if eos_id is not None and bool((next_id == eos_id).all()):
            break
        idx = torch.cat([idx, next_id], dim=1)
    return idx


# %% pretraining.ipynb cell 33, 5.2 Training an LLM

def plot_values(epochs_seen: Sequence[float], seen: Sequence[float], train_values: Sequence[float],
                val_values: Sequence[float], label: str = "loss",
                seen_label: str = "tokens seen") -> plt.Figure:
    """Training and validation curves against epochs (bottom axis) and what the model has seen
    by then (top axis: tokens here, examples in chapter 6)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs_seen, train_values, label=f"training {label}")
    ax.plot(epochs_seen, val_values, linestyle="-.", label=f"validation {label}")
    ax.set(xlabel="epochs", ylabel=label)
    ax.legend()
    # The top axis is the bottom one rescaled, so each epoch sits above what was seen by then.
    top = ax.twiny()
    seen_per_epoch = float(seen[-1]) / float(epochs_seen[-1])
    top.set_xlim(*(limit * seen_per_epoch for limit in ax.get_xlim()))
    top.set_xlabel(seen_label)
    fig.tight_layout()
    return fig


# %% pretraining.ipynb cell 42, 5.3.2 Top-k sampling

def _nucleus(probs, top_p):
    """Zero all but the most likely tokens whose cumulative probability first reaches top_p."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of strictly more likely tokens
    drop = before >= top_p
    drop[..., 0] = False  # the most likely token stays even if top_p rounds to 0 in float32
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)


# %% pretraining.ipynb cell 83, 5.6 Warmup, cosine decay and gradient clipping (beyond the book)

def cosine_schedule(peak_lr: float, total_steps: int, warmup_steps: int = 0,
                    initial_lr: float = 0.0, min_lr: float = 0.0) -> Callable[[int], float]:
    """Learning rate per step: linear warmup to `peak_lr`, then cosine decay to `min_lr`."""
    check_count("total_steps", total_steps, 1)
    check_count("warmup_steps", warmup_steps, 0)
    if warmup_steps > total_steps:
        raise ValueError(f"warmup_steps ({warmup_steps}) must not exceed total_steps "
                         f"({total_steps})")
    for name, rate in (("peak_lr", peak_lr), ("initial_lr", initial_lr), ("min_lr", min_lr)):
        _check_number(name, rate, "a number >= 0")
    if min_lr > peak_lr:
        raise ValueError(f"min_lr ({min_lr}) must not exceed peak_lr ({peak_lr})")
    def lr_at(step):
        if step < warmup_steps:
            return initial_lr + (peak_lr - initial_lr) * step / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_lr + 0.5 * (peak_lr - min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))
    return lr_at


__all__ = [
    'Batch',
    'Loader',
    'Device',
    'LossFn',
    'text_to_token_ids',
    'token_ids_to_text',
    'calc_loss_batch',
    'calc_loss_loader',
    'evaluate_model',
    'generate_and_print_sample',
    'batches_per_step',
    'optimizer_step',
    'train_model_simple',
    'generate',
    'plot_values',
    'cosine_schedule',
]
