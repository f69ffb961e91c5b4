# Generated from ch05_pretraining/pretraining.ipynb by `python -m shared.notebooks export`.
# Do not edit: change the notebook's cells tagged `export`, then export again.

"""Chapter 5: pretraining a GPT on unlabelled text, decoding strategies, checkpoints."""

import math
import os
import pickle
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from tqdm.auto import tqdm


def text_to_token_ids(text: str, tokenizer) -> torch.Tensor:
    """Encode `text` to a (1, tokens) tensor: a batch of one."""
    return torch.tensor(tokenizer.encode(text, allowed_special={"<|endoftext|>"})).unsqueeze(0)


def token_ids_to_text(token_ids: torch.Tensor, tokenizer) -> str:
    return tokenizer.decode(token_ids.squeeze(0).tolist())


def calc_loss_batch(input_batch, target_batch, model, device) -> torch.Tensor:
    """Mean cross-entropy of the next-token predictions for one batch."""
    logits = model(input_batch.to(device))
    targets = target_batch.to(device)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def calc_loss_loader(data_loader, model, device, num_batches=None) -> float:
    """Average batch loss over the first `num_batches` batches (all by default)."""
    if len(data_loader) == 0:
        return float("nan")
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    total = 0.0
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i >= num_batches:
            break
        total += calc_loss_batch(input_batch, target_batch, model, device).item()
    return total / num_batches


def evaluate_model(model, train_loader, val_loader, device, eval_iter):
    """Training and validation loss on `eval_iter` batches each, without dropout.

    Iterating a shuffling loader draws random numbers (from the global generator, or the
    loader's own). Both are restored afterwards, so evaluating never changes the training run:
    eval_freq does not alter the trained weights.
    """
    generators = [g for g in (train_loader.generator, val_loader.generator) if g is not None]
    states = [g.get_state() for g in generators]
    model.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter)
        val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter)
    for generator, state in zip(generators, states):
        generator.set_state(state)
    model.train()
    return train_loss, val_loss


def generate_and_print_sample(model, tokenizer, device, start_context, max_new_tokens=50):
    model.eval()
    context_size = model.pos_emb.weight.shape[0]
    encoded = text_to_token_ids(start_context, tokenizer).to(device)
    token_ids = generate(model, encoded, max_new_tokens=max_new_tokens, context_size=context_size)
    tqdm.write(token_ids_to_text(token_ids, tokenizer).replace("\n", " "))
    model.train()


def train_model_simple(model, train_loader, val_loader, optimizer, device, num_epochs,
                       eval_freq, eval_iter, start_context, tokenizer, *, lr_schedule=None,
                       max_grad_norm=None, progress=True):
    """Train for `num_epochs`; returns (train_losses, val_losses, tokens_seen) per evaluation.

    lr_schedule: optional function step -> learning rate, applied before every step.
    max_grad_norm: clip the gradient norm to this value before every step.
    eval_freq=None never evaluates; start_context=None prints no samples.
    """
    train_losses, val_losses, track_tokens_seen = [], [], []
    tokens_seen, global_step = 0, -1
    with tqdm(total=num_epochs * len(train_loader), desc="training", unit="step",
              disable=not progress) as bar:
        for epoch in range(num_epochs):
            model.train()
            for input_batch, target_batch in train_loader:
                global_step += 1
                if lr_schedule is not None:
                    for group in optimizer.param_groups:
                        group["lr"] = lr_schedule(global_step)
                optimizer.zero_grad()
                loss = calc_loss_batch(input_batch, target_batch, model, device)
                loss.backward()
                if max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
                optimizer.step()
                tokens_seen += input_batch.numel()
                bar.update(1)

                if eval_freq and global_step % eval_freq == 0:
                    train_loss, val_loss = evaluate_model(model, train_loader, val_loader,
                                                          device, eval_iter)
                    train_losses.append(train_loss)
                    val_losses.append(val_loss)
                    track_tokens_seen.append(tokens_seen)
                    tqdm.write(f"Ep {epoch + 1} (Step {global_step:06d}): "
                               f"Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")
            if start_context:
                generate_and_print_sample(model, tokenizer, device, start_context)
    return train_losses, val_losses, track_tokens_seen


def generate(model, idx, max_new_tokens, context_size, temperature=0.0, top_k=None,
             top_p=None, eos_id=None):
    """Extend the token ids `idx` (batch, tokens) by up to `max_new_tokens` tokens.

    temperature 0 decodes greedily; above 0 it samples from softmax(logits / temperature),
    optionally restricted to the `top_k` most likely tokens and/or to the smallest set whose
    probability reaches `top_p`. Generation stops early when every sequence produces `eos_id`
    (which is not appended). Prompts longer than `context_size` are cropped to their end.
    """
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = model(idx[:, -context_size:])[:, -1, :]
        if top_k is not None:
            kth_largest = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
            logits = logits.masked_fill(logits < kth_largest, -torch.inf)
        if temperature > 0:
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


def _nucleus(probs, top_p):
    """Zero all but the most likely tokens whose cumulative probability first reaches top_p."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of strictly more likely tokens
    sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)


def plot_losses(epochs_seen, tokens_seen, train_losses, val_losses):
    """Losses against epochs (bottom axis) and tokens seen (top axis)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs_seen, train_losses, label="training loss")
    ax.plot(epochs_seen, val_losses, linestyle="-.", label="validation loss")
    ax.set(xlabel="epochs", ylabel="loss")
    ax.legend(loc="upper right")
    top = ax.twiny()  # same curves, measured in tokens
    top.plot(tokens_seen, train_losses, alpha=0)
    top.set_xlabel("tokens seen")
    fig.tight_layout()
    return fig


def save_checkpoint(path, model, optimizer=None, **extra) -> None:
    """Save model, optimizer and RNG state (plus any `extra` values) to `path`, atomically."""
    path = Path(path)
    state = {"model": model.state_dict(), "torch_rng": torch.get_rng_state(), **extra}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, model, optimizer=None, restore_rng=True) -> dict:
    """Load a checkpoint written by save_checkpoint into `model` (and `optimizer`)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as error:
        raise ValueError(f"{path} is not a readable checkpoint (truncated or damaged?): "
                         f"{error}") from None
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        detail = str(error).splitlines()[1:3]
        raise ValueError(f"{path} does not fit this model ({first_line} "
                         f"{' '.join(line.strip() for line in detail)})") from None
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if restore_rng:
        torch.set_rng_state(state["torch_rng"])
    return state


def cosine_schedule(peak_lr, total_steps, warmup_steps=0, initial_lr=0.0, min_lr=0.0):
    """Learning rate per step: linear warmup to `peak_lr`, then cosine decay to `min_lr`."""
    def lr_at(step):
        if step < warmup_steps:
            return initial_lr + (peak_lr - initial_lr) * step / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_lr + 0.5 * (peak_lr - min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))
    return lr_at


__all__ = [
    'text_to_token_ids',
    'token_ids_to_text',
    'calc_loss_batch',
    'calc_loss_loader',
    'evaluate_model',
    'generate_and_print_sample',
    'train_model_simple',
    'generate',
    'plot_losses',
    'save_checkpoint',
    'load_checkpoint',
    'cosine_schedule',
]
