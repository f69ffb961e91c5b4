# Generated from ch05_pretraining/pretraining.ipynb by `python -m shared.notebooks export`.
# Do not edit: change the notebook's cells marked `#| export`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% pretraining.ipynb cell 35, 5.2.1 The exported helpers and loop: checks and hooks (beyond th...

"""Chapter 5: pretraining a GPT on unlabelled text: the loss, the training loops, decoding."""

import math
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence

import matplotlib.pyplot as plt
import tiktoken
import torch
from torch import nn

from shared import (
    check,
    check_count,
    check_finite,
    check_number,
    check_token_ids,
    generate_text_simple,
    progress_bar,
)


Batch = tuple[torch.Tensor, torch.Tensor]  # (input ids, target ids), each (batch, tokens)
Loader = Collection[Batch]  # a DataLoader, or any sized iterable of batches
Device = str | torch.device
LossFn = Callable[[torch.Tensor, torch.Tensor, nn.Module, Device], torch.Tensor]


# %% pretraining.ipynb cell 36, 5.2.1 The exported helpers and loop: checks and hooks (beyond th...

def calc_loss_batch(input_batch: torch.Tensor, target_batch: torch.Tensor, model: nn.Module,
                    device: Device) -> torch.Tensor:
    """Mean cross-entropy of the next-token predictions for one batch."""
    check(target_batch.shape == input_batch.shape, lambda: "target_batch must have "
          "input_batch's shape (one target per input token): target_batch has shape "
          f"{tuple(target_batch.shape)}, input_batch {tuple(input_batch.shape)}")
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


# %% pretraining.ipynb cell 37, 5.2.1 The exported helpers and loop: checks and hooks (beyond th...

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


# %% pretraining.ipynb cell 38, 5.2.1 The exported helpers and loop: checks and hooks (beyond th...

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


# %% pretraining.ipynb cell 39, 5.2.1 The exported helpers and loop: checks and hooks (beyond th...

def plot_values(epochs_seen: Sequence[float], seen: Sequence[float], train_values: Sequence[float],
                val_values: Sequence[float], label: str = "loss",
                seen_label: str = "tokens seen") -> plt.Figure:
    """Training and validation curves against epochs (bottom axis) and what the model has seen
    by then (top axis: tokens here, examples in chapter 6)."""
    check(len(epochs_seen) == len(seen) == len(train_values) == len(val_values) > 0, lambda:
          "plot_values needs as many epochs, seen counts, training and validation values as "
          f"there were evaluations, at least one; got {len(epochs_seen)}, {len(seen)}, "
          f"{len(train_values)} and {len(val_values)} (no evaluations? give eval_freq)")
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


# %% pretraining.ipynb cell 50, 5.3.4 Top-p, min-p, a repetition penalty: the decoding step on i...

# A logits processor takes one position's logits (..., vocab) and the token ids so far
# (..., length) and returns new logits; a token whose logit is -inf can no longer be picked.
# The decoding step applies a list of them in order, then picks from what is left.

class RepetitionPenalty:
    """CTRL's penalty (Keskar et al., 2019), as transformers implements it: the logit of every
    token already in the sequence, prompt included, is divided by `penalty` where positive and
    multiplied where negative, so a penalty above 1 makes a repeat less likely."""

    def __init__(self, penalty: float):
        self.penalty = penalty

    def __call__(self, logits, tokens):
        seen = logits.gather(-1, tokens)
        return logits.scatter(-1, tokens, torch.where(seen > 0, seen / self.penalty,
                                                      seen * self.penalty))


class TopK:
    """Keep the k largest logits (5.3.2)."""

    def __init__(self, k: int):
        self.k = k

    def __call__(self, logits, tokens):
        kth_largest = torch.topk(logits, min(self.k, logits.shape[-1])).values[..., -1:]
        return logits.masked_fill(logits < kth_largest, -torch.inf)


class Temperature:
    """Divide the logits by the temperature (5.3.1), which must be above 0 (0 is greedy: no
    division). Shifted first so that the largest logit is 0: a tiny temperature or huge logits
    then give -inf for the others, not inf - inf = nan."""

    def __init__(self, temperature: float):
        self.temperature = temperature

    def __call__(self, logits, tokens):
        return (logits - logits.amax(dim=-1, keepdim=True)) / self.temperature


class TopP:
    """Keep the nucleus: the most likely tokens whose probabilities first add up to top_p."""

    def __init__(self, top_p: float):
        self.top_p = top_p

    def __call__(self, logits, tokens):
        if self.top_p >= 1:  # everything: float32 sums of the tail can reach 1 before its end
            return logits
        sorted_probs, order = torch.softmax(logits, dim=-1).sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of strictly more likely ones
        drop = before >= self.top_p
        drop[..., 0] = False  # the most likely token stays even if top_p rounds to 0 in float32
        return logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), -torch.inf)


class MinP:
    """Min-p (Nguyen et al., 2024): drop every token less likely than min_p times the most
    likely one, a cut that follows the model's confidence."""

    def __init__(self, min_p: float):
        self.min_p = min_p

    def __call__(self, logits, tokens):
        probs = torch.softmax(logits, dim=-1)
        return logits.masked_fill(probs < self.min_p * probs.amax(dim=-1, keepdim=True),
                                  -torch.inf)


# %% pretraining.ipynb cell 52, 5.3.4 Top-p, min-p, a repetition penalty: the decoding step on i...

def sampling_processors(temperature: float = 0.0, top_k: int | None = None,
                        top_p: float | None = None, min_p: float | None = None,
                        repetition_penalty: float | None = None) -> list:
    """generate's sampling options as the processors of one decoding step: transformers'
    order, except that top-k comes before the temperature (the two commute). Greedy decoding
    (temperature 0) needs only the penalty: the cuts all keep the largest logit."""
    processors = [] if repetition_penalty is None else [RepetitionPenalty(repetition_penalty)]
    if temperature == 0:
        return processors
    options = [(top_k, TopK), (temperature, Temperature), (top_p, TopP), (min_p, MinP)]
    return processors + [make(value) for value, make in options if value is not None]


def next_token_probs(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None,
                     top_p: float | None = None, *, min_p: float | None = None,
                     repetition_penalty: float | None = None,
                     tokens: torch.Tensor | None = None) -> torch.Tensor:
    """The probability of each token being picked next, from one position's logits (..., vocab)
    and, for the repetition penalty, the token ids so far: all on the largest processed logit
    when greedy (temperature 0), else their softmax."""
    check(repetition_penalty is None or tokens is not None, "repetition_penalty needs the "
          "token ids so far: pass tokens=", TypeError)
    for process in sampling_processors(temperature, top_k, top_p, min_p, repetition_penalty):
        logits = process(logits, tokens)
    if temperature == 0:
        return nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    return torch.softmax(logits, dim=-1)


def next_token(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None,
               top_p: float | None = None, *, processors: list | None = None,
               tokens: torch.Tensor | None = None) -> torch.Tensor:
    """The next token id (..., 1) for logits (..., vocab): `processors` (default: those of
    temperature, top_k and top_p) applied in order, then the largest logit when greedy (no
    random number is drawn), else a draw from their softmax."""
    if processors is None:
        processors = sampling_processors(temperature, top_k, top_p)
    for process in processors:
        logits = process(logits, tokens)
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    return torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1)


# %% pretraining.ipynb cell 119, 5.6 Warmup, cosine decay and gradient clipping (beyond the book)

def cosine_schedule(peak_lr: float, total_steps: int, warmup_steps: int = 0,
                    initial_lr: float = 0.0, min_lr: float = 0.0) -> Callable[[int], float]:
    """Learning rate per step: linear warmup to `peak_lr`, then cosine decay to `min_lr`."""
    check_count("total_steps", total_steps, 1)
    check_count("warmup_steps", warmup_steps, 0)
    check(warmup_steps <= total_steps,
          f"warmup_steps ({warmup_steps}) must not exceed total_steps ({total_steps})")
    for name, rate in (("peak_lr", peak_lr), ("initial_lr", initial_lr), ("min_lr", min_lr)):
        check_number(name, rate, "a number >= 0")
    check(min_lr <= peak_lr, f"min_lr ({min_lr}) must not exceed peak_lr ({peak_lr})")

    def lr_at(step):
        if step < warmup_steps:  # the increment per step, as appendix D computes it
            return initial_lr + step * ((peak_lr - initial_lr) / warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_lr + 0.5 * (peak_lr - min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))
    return lr_at


# %% pretraining.ipynb cell 122, 5.6 Warmup, cosine decay and gradient clipping (beyond the book)

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
                   autocast_dtype: torch.dtype | None = None, step: int | None = None) -> None:
    """One update from the mean gradient of `batches`: usually one batch, several in 5.8.
    A loss that is nan or infinite stops it before the update (FloatingPointError naming
    `step`): the weights stay as they were."""
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    optimizer.zero_grad()
    mean_loss = 0.0
    for input_batch, target_batch in batches:
        with torch.autocast(torch.device(device).type, dtype=autocast_dtype,
                            enabled=autocast_dtype is not None):
            loss = loss_batch(input_batch, target_batch, model, device)
        loss = loss / len(batches)  # so the step's gradient is the mean over its batches
        loss.backward()
        mean_loss += loss.detach()
    check_finite("the loss", mean_loss, step=step)
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()


# %% pretraining.ipynb cell 123, 5.6 Warmup, cosine decay and gradient clipping (beyond the book)

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
    check_count("n_epochs", n_epochs, 0)
    check_count("warmup_steps", warmup_steps, 0)
    check_count("grad_accum_steps", grad_accum_steps, 1)
    check_count("start_step", start_step, 0)
    if eval_freq is not None:  # None never evaluates; 0 is refused rather than meaning None
        check_count("eval_freq", eval_freq, 1)
        check_count("eval_iter", eval_iter, 1)
    if max_grad_norm is not None:  # 0 would zero every update, a negative one reverse it
        check_number("max_grad_norm", max_grad_norm, "a positive number or None", low_open=True)
    check(not start_context or tokenizer is not None, _NEEDS_TOKENIZER)
    steps_per_epoch = math.ceil(len(train_loader) / grad_accum_steps)
    if lr_schedule is None:  # from initial_lr up to the optimizer's rate, then down to min_lr
        lr_schedule = cosine_schedule(optimizer.param_groups[0]["lr"],
                                      max(1, n_epochs * steps_per_epoch), warmup_steps,
                                      initial_lr, min_lr)
    train_losses, val_losses, track_seen, track_lrs = [], [], [], []
    seen, step = 0, start_step - 1
    with progress_bar(total=n_epochs * steps_per_epoch, desc="training", unit="step",
                      disable=not progress) as bar:
        log = bar.write if progress else (lambda message: None)
        for epoch in range(n_epochs):
            model.train()
            for batches in batches_per_step(train_loader, grad_accum_steps):
                step += 1
                track_lrs.append(lr_schedule(step))
                optimizer_step(model, batches, optimizer, device, loss_batch, lr=track_lrs[-1],
                               max_grad_norm=max_grad_norm if step >= warmup_steps else None,
                               autocast_dtype=autocast_dtype, step=step)
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
    return train_losses, val_losses, track_seen, track_lrs


# %% pretraining.ipynb cell 127, 5.6 Warmup, cosine decay and gradient clipping (beyond the book)

def find_highest_gradient(model: nn.Module) -> torch.Tensor | None:
    """The largest entry of any parameter's gradient (None before the first backward pass)."""
    highest = [param.grad.max() for param in model.parameters() if param.grad is not None]
    return max(highest) if highest else None


# %% pretraining.ipynb cell 132, 5.7 Faster generation: the KV cache (beyond the book)

def generate(model: nn.Module, idx: torch.Tensor, max_new_tokens: int,
             context_size: int | None = None, temperature: float = 0.0, top_k: int | None = None,
             eos_id: int | None = None, *, top_p: float | None = None,
             min_p: float | None = None, repetition_penalty: float | None = None,
             logits_processors: Sequence[Callable] = (), use_cache: bool = True) -> torch.Tensor:
    """Extend the token ids `idx` (batch, tokens) by up to `max_new_tokens` tokens.

    Each step picks the next token with next_token: `logits_processors` (your own, each
    called as process(logits, tokens_so_far) -> logits), then sampling_processors' for
    repetition_penalty, top_k, temperature, top_p and min_p, then greedy or a draw. A sequence
    that produces `eos_id` has ended: it keeps that eos_id and is padded with eos_id while the
    others go on. Generation stops when every sequence has ended, and the step on which the last
    ones end appends nothing (so a single sequence, as in the book, never shows its eos_id):
    cut each row at its first eos_id. Prompts longer than `context_size` (default: the model's
    context length; a context_size above it is refused) are cropped to their end. All rows
    must be prompts of one length: nothing masks padding, so a padded prompt reads its pad
    tokens as text and continues differently than alone; generate other lengths one at a time.

    use_cache (section 5.7) keeps every layer's keys and values, so each step computes only the
    new token. Once the text outgrows `context_size` the window slides, every position shifts
    and nothing cached stays valid: from then on each step recomputes the whole window. The
    tokens are the same either way, to float32 rounding (a near-tie may differ). A model
    without `make_kv_caches` (any function from ids to logits) runs uncached, and needs a
    context_size.
    """
    model_context = (context_length_of(model) if hasattr(model, "cfg") or hasattr(model, "pos_emb")
                     else None)  # a function from ids to logits says nothing of its context
    context_size = model_context if context_size is None else context_size
    check_token_ids(idx, "idx")  # the model checks each id against its vocabulary
    check(context_size is not None, "model has no context length (a function of ids?): pass "
          "context_size", TypeError)
    check_count("max_new_tokens", max_new_tokens, 0)
    check_count("context_size", context_size, 1)  # idx[:, -0:] would be the whole prompt
    check(model_context is None or context_size <= model_context, lambda: f"context_size "
          f"{context_size} is longer than the model's context_length {model_context}")
    if eos_id is not None:  # "<|endoftext|>" or an id past the vocabulary would never match
        check_count("eos_id", eos_id, 0, "a token id (an int >= 0), such as tokenizer.eot_token")
        vocab_size = getattr(model, "cfg", {}).get("vocab_size", math.inf)
        check(eos_id < vocab_size, lambda: f"eos_id {eos_id} is not a token id: this model's "
              f"are 0..{vocab_size - 1} (GPT-2's end of text is 50256)")
    # A negative temperature would favour the least likely tokens without a word: refuse it.
    check_number("temperature", temperature, "a number >= 0 (0 decodes greedily)")
    if top_k is not None:
        check_count("top_k", top_k, 1)
    if top_p is not None:
        check_number("top_p", top_p, "a number in (0, 1]", high=1.0, low_open=True)
    if min_p is not None:
        check_number("min_p", min_p, "a number in [0, 1]", high=1.0)
    if repetition_penalty is not None:
        check_number("repetition_penalty", repetition_penalty, "a number > 0 (1 changes "
                     "nothing)", low_open=True)
    check(all(callable(process) for process in logits_processors), "logits_processors must be "
          "callables process(logits, tokens) -> logits", TypeError)
    processors = [*logits_processors, *sampling_processors(temperature, top_k, top_p, min_p,
                                                           repetition_penalty)]
    ended = torch.zeros(idx.shape[0], 1, dtype=torch.bool, device=idx.device)
    kv_caches = None
    if use_cache and hasattr(model, "make_kv_caches"):  # fresh for every prompt
        room = min(context_size, idx.shape[1] + max_new_tokens)  # Qwen3's 40,960 would be GBs
        kv_caches = model.make_kv_caches(room)
    for _ in range(max_new_tokens):
        with torch.no_grad():
            if kv_caches is None:
                logits = model(idx[:, -context_size:])[:, -1]
            elif idx.shape[1] <= context_size:  # only the tokens not cached yet
                logits = model(idx[:, kv_caches[0].length:], kv_caches, last_only=True)[:, -1]
            else:  # the window slid: positions shifted, the cache is stale
                logits = model(idx[:, -context_size:], last_only=True)[:, -1]
        next_id = next_token(logits, temperature, processors=processors, tokens=idx)
        if eos_id is not None:
            ended |= next_id == eos_id
            if bool(ended.all()):
                break
            next_id = next_id.masked_fill(ended, eos_id)  # an ended row is padded
        idx = torch.cat([idx, next_id], dim=1)
    return idx


# %% pretraining.ipynb cell 134, 5.7 Faster generation: the KV cache (beyond the book)

def text_to_token_ids(text: str, tokenizer: tiktoken.Encoding) -> torch.Tensor:
    """Encode `text` to a (1, tokens) tensor: a batch of one."""
    ids = tokenizer.encode(text, allowed_special={"<|endoftext|>"})
    return torch.tensor(ids, dtype=torch.long).unsqueeze(0)  # long even when empty


def token_ids_to_text(token_ids: torch.Tensor, tokenizer: tiktoken.Encoding) -> str:
    """Decode one sequence of ids, (tokens) or (1, tokens), to text."""
    _check_one_sequence(token_ids)
    return tokenizer.decode(token_ids.reshape(-1).tolist())  # a list even for one token


def _check_one_sequence(token_ids: torch.Tensor) -> None:
    """Refuse anything but one sequence of ids, saying what to pass instead."""
    shape = tuple(token_ids.shape)
    if len(shape) == 0:
        raise ValueError("token_ids is a single id (a 0-d tensor): pass token_ids.reshape(1)")
    if len(shape) == 2 and shape[0] != 1:
        raise ValueError(f"token_ids holds a batch of {shape[0]} sequences, this decodes one: "
                         "[token_ids_to_text(row, tokenizer) for row in token_ids]")
    if len(shape) > 2:
        raise ValueError(f"token_ids has shape {shape}: this decodes one sequence, of shape "
                         "(tokens) or (1, tokens)")


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
    'RepetitionPenalty',
    'TopK',
    'Temperature',
    'TopP',
    'MinP',
    'sampling_processors',
    'next_token_probs',
    'next_token',
    'cosine_schedule',
    'batches_per_step',
    'optimizer_step',
    'train_model',
    'find_highest_gradient',
    'generate',
    'text_to_token_ids',
    'token_ids_to_text',
]
