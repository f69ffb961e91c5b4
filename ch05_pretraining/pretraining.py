# Generated from ch05_pretraining/pretraining.ipynb by `python -m shared.notebooks export`.
# Do not edit: change the notebook's cells marked `#| export`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% pretraining.ipynb cell 2, Chapter 5 — Pretraining on unlabelled data

"""Chapter 5: pretraining a GPT on unlabelled text, decoding strategies, checkpoints."""

import json
import math
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
    check,
    check_count,
    check_number,
    check_token_ids,
    fetch,
    generate_text_simple,
    gpt2_config,
    progress_bar,
)
from shared.data import check_safetensors


Batch = tuple[torch.Tensor, torch.Tensor]  # (input ids, target ids), each (batch, tokens)
Loader = Collection[Batch]  # a DataLoader, or any sized iterable of batches
Device = str | torch.device
LossFn = Callable[[torch.Tensor, torch.Tensor, nn.Module, Device], torch.Tensor]


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
    """Print the model's greedy continuation of `start_context` on one line."""
    model.eval()
    context_size = model.pos_emb.weight.shape[0]  # the model's own context length
    encoded = text_to_token_ids(start_context, tokenizer).to(device)
    token_ids = generate_text_simple(model, encoded, max_new_tokens, context_size)
    log(token_ids_to_text(token_ids, tokenizer).replace("\n", " "))
    model.train()


# %% pretraining.ipynb cell 27, 5.2 Training an LLM

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
                loss.backward()
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


# %% pretraining.ipynb cell 30, 5.2 Training an LLM

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


def plot_losses(epochs_seen: Sequence[float], tokens_seen: Sequence[float],
                train_losses: Sequence[float], val_losses: Sequence[float]) -> None:
    """The book's name: plot_values of the losses against epochs and tokens seen, shown."""
    plot_values(epochs_seen, tokens_seen, train_losses, val_losses)
    plt.show()


# %% pretraining.ipynb cell 39, 5.3.2 Top-k sampling

def _nucleus(probs, top_p):
    """Zero all but the most likely tokens whose cumulative probability first reaches top_p."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of strictly more likely tokens
    drop = before >= top_p
    drop[..., 0] = False  # the most likely token stays even if top_p rounds to 0 in float32
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)


# %% pretraining.ipynb cell 41, 5.3.3 One `generate` for all strategies

def next_token_probs(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None,
                     top_p: float | None = None) -> torch.Tensor:
    """The probability of each token being picked next, from one position's logits (..., vocab).

    Only the top_k largest logits stay; temperature 0 puts all probability on the largest
    (greedy); above 0 it is softmax(logits / temperature), cut to the nucleus top_p.
    """
    if top_k is not None:
        kth_largest = torch.topk(logits, min(top_k, logits.shape[-1])).values[..., -1:]
        logits = logits.masked_fill(logits < kth_largest, -torch.inf)
    if temperature == 0:
        return nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    # The same softmax, shifted so the largest logit is 0: a tiny temperature or huge logits
    # then give -inf for the others, not inf - inf = nan.
    logits = logits - logits.amax(dim=-1, keepdim=True)
    probs = torch.softmax(logits / temperature, dim=-1)
    return probs if top_p is None else _nucleus(probs, top_p)


def next_token(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None,
               top_p: float | None = None) -> torch.Tensor:
    """The next token id (..., 1) for logits (..., vocab), picked as next_token_probs says."""
    if temperature == 0:  # greedy, without a random number (top-k cannot change the argmax)
        return logits.argmax(dim=-1, keepdim=True)
    return torch.multinomial(next_token_probs(logits, temperature, top_k, top_p), num_samples=1)


def generate(model: nn.Module, idx: torch.Tensor, max_new_tokens: int,
             context_size: int | None = None, temperature: float = 0.0, top_k: int | None = None,
             eos_id: int | None = None, *, top_p: float | None = None,
             use_cache: bool = True) -> torch.Tensor:
    """Extend the token ids `idx` (batch, tokens) by up to `max_new_tokens` tokens.

    Each step picks the next token with next_token (temperature, top_k, top_p). Generation
    stops early when every sequence produces `eos_id` (which is not appended). Prompts longer
    than `context_size` (by default the model's context length) are cropped to their end.

    use_cache (section 5.7) keeps every layer's keys and values, so each step computes only the
    new token. Once the text outgrows `context_size` the window slides, every position shifts
    and nothing cached stays valid: from then on each step recomputes the whole window. The
    tokens are the same either way. A model without `make_kv_caches` (any function from ids to
    logits) runs uncached.
    """
    if context_size is None:  # read from the model, as GPTModel and the book's model have it
        context_size = model.pos_emb.weight.shape[0]
    check_token_ids(idx, "idx")  # the model checks each id against its vocabulary
    check_count("max_new_tokens", max_new_tokens, 0)
    check_count("context_size", context_size, 1)  # idx[:, -0:] would be the whole prompt
    # A negative temperature would decode greedily without a word: refuse it instead.
    check_number("temperature", temperature, "a number >= 0 (0 decodes greedily)")
    if top_k is not None:
        check_count("top_k", top_k, 1)
    if top_p is not None:
        check_number("top_p", top_p, "a number in (0, 1]", high=1.0, low_open=True)
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
        next_id = next_token(logits, temperature, top_k, top_p)
        if eos_id is not None and bool((next_id == eos_id).all()):
            break
        idx = torch.cat([idx, next_id], dim=1)
    return idx


# %% pretraining.ipynb cell 49, 5.4 Saving and loading model weights

def save_checkpoint(path: str | Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, **extra) -> None:
    """Save model, optimizer and RNG state (plus any `extra` values) to `path`, atomically."""
    path = Path(path)
    if "torch_rng" in extra:  # "model" and "optimizer" are taken by the arguments
        raise ValueError("an extra value may not be named torch_rng: save_checkpoint stores "
                         "the generator's state under that name")
    state = {"model": model.state_dict(), "torch_rng": torch.get_rng_state(), **extra}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:  # a full disk, a value pickle cannot store, Ctrl-C: no debris
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    restore_rng: bool = True, expect: dict | None = None) -> dict:
    """Load a checkpoint written by save_checkpoint into `model` (and `optimizer`).

    All or nothing: the model state, the optimizer state, the RNG state and the `expect`ed
    extra values (say {"seed": 123}) are all checked first; on any mismatch ValueError lists
    the problems and model, optimizer and RNG are untouched.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as error:
        raise ValueError(f"{path} is not a readable checkpoint (truncated or damaged?): "
                         f"{error}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(_not_a_checkpoint(path, state))
    problems = _model_state_problems(state["model"], model.state_dict())
    if optimizer is not None:
        problems += _optimizer_state_problems(state.get("optimizer"), optimizer)
    rng = state.get("torch_rng")
    if restore_rng and not (isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8
                            and rng.shape == torch.get_rng_state().shape):
        problems.append("holds no valid random-number state (pass restore_rng=False)")
    for key, value in (expect or {}).items():
        if key not in state:
            problems.append(f"records no {key} (expected {value!r})")
        elif state[key] != value:
            problems.append(f"was trained with {key}={state[key]!r}, not {value!r}")
    if problems:
        raise ValueError(f"{path} " + "; ".join(problems))
    model.load_state_dict(state["model"])  # nothing below can fail after the checks above
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if restore_rng:
        torch.set_rng_state(rng)
    return state


def _not_a_checkpoint(path, state) -> str:
    if isinstance(state, dict) and state and all(isinstance(v, torch.Tensor)
                                                 for v in state.values()):
        return (f"{path} holds a plain state_dict ({len(state)} tensors, weights only), not a "
                f"checkpoint of save_checkpoint: load it with "
                f"model.load_state_dict(torch.load(path))")
    kind = (f"a dict with keys {sorted(map(str, state))[:6]}" if isinstance(state, dict)
            else f"a {type(state).__name__}")
    return f"{path} is not a checkpoint of save_checkpoint: it holds {kind}, no 'model'"


def _model_state_problems(saved, wanted: dict[str, torch.Tensor]) -> list[str]:
    """What keeps `saved` (a state_dict) from loading into a model whose own is `wanted`."""
    if not isinstance(saved, dict):
        return [f"holds a {type(saved).__name__} as its model state, not a state_dict"]
    found = [f"missing {name}" for name in wanted if name not in saved]
    found += [f"unexpected {name}" for name in saved if name not in wanted]
    for name, tensor in wanted.items():
        value = saved.get(name)
        if value is not None and not isinstance(value, torch.Tensor):
            found.append(f"{name} is a {type(value).__name__}, not a tensor")
        elif value is not None and value.shape != tensor.shape:
            found.append(f"{name} has shape {tuple(value.shape)}, the model needs "
                         f"{tuple(tensor.shape)}")
    more = f"; and {len(found) - 4} more" if len(found) > 4 else ""
    return [f"does not fit this model ({'; '.join(found[:4])}{more})"] if found else []


# Optimizer state that is one number per weight (Adam's averages, SGD's momentum, ...).
_PER_WEIGHT_STATE = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer",
                     "square_avg", "sum", "grad_avg", "acc_delta"}


def _optimizer_state_problems(saved, optimizer: torch.optim.Optimizer) -> list[str]:
    """What keeps `saved` (an optimizer's state_dict) from loading into `optimizer`."""
    if saved is None:
        return ["holds no optimizer state (pass optimizer=None to load the model alone)"]
    if not (isinstance(saved, dict) and isinstance(saved.get("param_groups"), list)
            and isinstance(saved.get("state"), dict)):
        return ["holds an optimizer state that is not an optimizer's state_dict"]
    ours = optimizer.param_groups
    sizes = [len(group.get("params", [])) for group in saved["param_groups"]]
    if sizes != [len(group["params"]) for group in ours]:
        return [f"has optimizer parameter groups of {sizes} tensors, this optimizer "
                f"{[len(group['params']) for group in ours]}"]
    options = {key for group in saved["param_groups"] for key in group}
    if unknown := sorted(options - {key for group in ours for key in group}):
        return [f"has optimizer options {unknown} that {type(optimizer).__name__} lacks "
                "(saved by another kind of optimizer?)"]
    index_to_param = dict(zip([i for group in saved["param_groups"] for i in group["params"]],
                              [p for group in ours for p in group["params"]]))
    found = []
    for index, values in saved["state"].items():
        param = index_to_param.get(index)
        if param is None:
            found.append(f"optimizer state for parameter {index!r}, which no group lists")
            continue
        for name, value in values.items():
            if name in _PER_WEIGHT_STATE and getattr(value, "shape", None) != param.shape:
                found.append(f"optimizer {name} of parameter {index} has shape "
                             f"{tuple(getattr(value, 'shape', ()))}, the parameter "
                             f"{tuple(param.shape)}")
    return found[:4]


# %% pretraining.ipynb cell 57, 5.5 Loading pretrained weights from OpenAI

_MASK_BUFFER = re.compile(r"h\.\d+\.attn\.(masked_)?bias")


def download_gpt2_weights(size: str = "gpt2-small (124M)", progress: bool = True) -> Path:
    """Path of OpenAI's GPT-2 weights of `size`, one of GPT2_SIZES (safetensors), downloaded on
    first use. shared.data registers them as "gpt2-small-weights" and so on."""
    if size not in GPT2_SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {list(GPT2_SIZES)}")
    return fetch(size.split()[0] + "-weights", progress=progress)


def read_gpt2_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a GPT-2 safetensors file (or of a folder's model.safetensors).

    Names are normalised to those of OpenAI's release: a `transformer.` prefix (transformers'
    GPT2LMHeadModel) is removed and the causal-mask buffers `h.N.attn.bias` are dropped.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no GPT-2 weights at {path}")
    try:
        check_safetensors(path)
    except ValueError as error:
        raise ValueError(f"{path} is not a complete safetensors file: {error}") from None
    params = {}
    for name, tensor in safetensors.torch.load_file(path).items():
        name = name.removeprefix("transformer.")
        if not _MASK_BUFFER.fullmatch(name):
            params[name] = tensor
    return params


# %% pretraining.ipynb cell 59, 5.5 Loading pretrained weights from OpenAI

def _gpt2_layout(gpt) -> list[tuple[str, list]]:
    """(name in a GPT-2 file, our parameters that make up that tensor), in file order."""
    layout = [("wte.weight", [gpt.tok_emb.weight]), ("wpe.weight", [gpt.pos_emb.weight])]
    for i, block in enumerate(gpt.trf_blocks):
        att, fc, proj = block.att, block.ff.layers[0], block.ff.layers[2]
        qkv_bias = [att.W_query.bias, att.W_key.bias, att.W_value.bias]
        if att.W_query.bias is None:  # GPT-2 always has these biases: zeros stand in for them
            qkv_bias = [att.W_query.weight.new_zeros(att.d_out)] * 3
        layout += [
            (f"h.{i}.ln_1.weight", [block.norm1.scale]),
            (f"h.{i}.ln_1.bias", [block.norm1.shift]),
            (f"h.{i}.attn.c_attn.weight", [att.W_query.weight, att.W_key.weight,
                                           att.W_value.weight]),
            (f"h.{i}.attn.c_attn.bias", qkv_bias),
            (f"h.{i}.attn.c_proj.weight", [att.out_proj.weight]),
            (f"h.{i}.attn.c_proj.bias", [att.out_proj.bias]),
            (f"h.{i}.ln_2.weight", [block.norm2.scale]),
            (f"h.{i}.ln_2.bias", [block.norm2.shift]),
            (f"h.{i}.mlp.c_fc.weight", [fc.weight]),
            (f"h.{i}.mlp.c_fc.bias", [fc.bias]),
            (f"h.{i}.mlp.c_proj.weight", [proj.weight]),
            (f"h.{i}.mlp.c_proj.bias", [proj.bias]),
        ]
    layout += [("ln_f.weight", [gpt.final_norm.scale]), ("ln_f.bias", [gpt.final_norm.shift])]
    if gpt.out_head.weight is not gpt.tok_emb.weight:
        layout.append(("lm_head.weight", [gpt.out_head.weight]))
    return layout


# %% pretraining.ipynb cell 61, 5.5 Loading pretrained weights from OpenAI

def _is_conv1d(name: str) -> bool:
    """GPT-2's Conv1D weights are stored (in, out); nn.Linear's are (out, in)."""
    return name.endswith("weight") and any(f".{m}." in name for m in ("c_attn", "c_proj", "c_fc"))


def _is_parameters(parts: list) -> bool:
    return all(isinstance(p, nn.Parameter) for p in parts)


def _to_gpt2(name: str, parts: list) -> torch.Tensor:
    """Our parameters -> the tensor GPT-2 stores under `name`."""
    if _is_conv1d(name):
        return torch.cat([p.detach().T for p in parts], dim=1)
    return torch.cat([p.detach() for p in parts], dim=0)


# %% pretraining.ipynb cell 63, 5.5 Loading pretrained weights from OpenAI

def load_weights_into_gpt(gpt: GPTModel, params: dict[str, torch.Tensor]) -> None:
    """Copy GPT-2 weights `params` (names as read_gpt2_weights returns them) into `gpt`.

    Every name and shape is checked first; on any mismatch nothing is copied and ValueError
    lists the problems. Without `lm_head.weight` (OpenAI's files) the output head gets the
    token embedding, as GPT-2 ties the two.
    """
    layout = _gpt2_layout(gpt)
    head_from_wte = layout[-1][0] == "lm_head.weight" and "lm_head.weight" not in params
    if head_from_wte:
        layout = layout[:-1]
    problems = [f"unexpected tensor {name}"
                for name in sorted(set(params) - {name for name, _ in layout})]
    for name, parts in layout:
        if name not in params:
            problems.append(f"missing tensor {name}")
            continue
        expected = tuple(_to_gpt2(name, parts).shape)
        if tuple(params[name].shape) != expected:
            problems.append(f"{name} has shape {tuple(params[name].shape)}, the model "
                            f"needs {expected}")
        elif not _is_parameters(parts) and params[name].any():
            problems.append(f"{name} holds query/key/value biases: build the model with "
                            f"qkv_bias=True")
    if problems:
        raise ValueError("these weights do not fit the model:\n  " + "\n  ".join(problems))

    with torch.no_grad():
        for name, parts in layout:
            if not _is_parameters(parts):
                continue
            conv1d = _is_conv1d(name)
            pieces = params[name].split([p.shape[0] for p in parts], dim=1 if conv1d else 0)
            for param, piece in zip(parts, pieces):
                param.copy_(piece.T if conv1d else piece)
        if head_from_wte:
            gpt.out_head.weight.copy_(gpt.tok_emb.weight)


# %% pretraining.ipynb cell 65, 5.5 Loading pretrained weights from OpenAI

def save_gpt2_safetensors(gpt: GPTModel, folder: str | Path) -> Path:
    """Write `gpt` as a Hugging Face GPT-2 checkpoint: folder/model.safetensors, config.json.

    transformers' GPT2LMHeadModel.from_pretrained(folder) loads it. A model whose output head
    is not tied to the token embedding also writes lm_head.weight.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: _to_gpt2(name, parts).contiguous() for name, parts in _gpt2_layout(gpt)}
    cfg = gpt.cfg
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg["vocab_size"],
        "n_positions": cfg["context_length"],
        "n_embd": cfg["emb_dim"],
        "n_layer": cfg["n_layers"],
        "n_head": cfg["n_heads"],
        "activation_function": "gelu_new",  # the tanh approximation, as our GELU
        "layer_norm_epsilon": gpt.final_norm.eps,
        "embd_pdrop": cfg["drop_rate"],
        "attn_pdrop": cfg["drop_rate"],
        "resid_pdrop": cfg["drop_rate"],
        "tie_word_embeddings": "lm_head.weight" not in tensors,
    }
    if cfg["vocab_size"] > 50256:  # GPT-2's <|endoftext|> exists in this vocabulary
        config["bos_token_id"] = config["eos_token_id"] = 50256
    tmp = folder / "model.safetensors.tmp"
    safetensors.torch.save_file(tensors, tmp, metadata={"format": "pt"})
    os.replace(tmp, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


# %% pretraining.ipynb cell 67, 5.5 Loading pretrained weights from OpenAI

def load_gpt2(source: str | Path = "gpt2-small (124M)", **overrides) -> GPTModel:
    """A GPTModel holding GPT-2 weights, with qkv_bias=True and then `overrides` (for example
    drop_rate=0.0).

    `source` is a size of GPT2_SIZES (OpenAI's weights, downloaded once; the configuration is
    that size's) or a GPT-2 safetensors file or folder, configured by the config.json beside
    it. A bare file without one (as OpenAI's are cached) is configured from its tensors'
    shapes, with the number of heads of the GPT-2 size of that width.
    """
    if source in GPT2_SIZES:
        path, cfg = download_gpt2_weights(source), gpt2_config(source)
    else:
        path = Path(source)
        cfg = _config_beside(path)
    params = read_gpt2_weights(path)
    gpt = GPTModel({**(cfg or _config_from_shapes(params, overrides)), "qkv_bias": True,
                    **overrides})
    load_weights_into_gpt(gpt, params)  # checks every name and shape first
    return gpt


def _config_beside(path: Path) -> dict | None:
    """Our configuration from the transformers config.json beside a checkpoint, if there is one."""
    config_file = (path if path.is_dir() else path.parent) / "config.json"
    if not config_file.is_file():
        return None
    hf = json.loads(config_file.read_text())
    return gpt2_config(vocab_size=hf["vocab_size"], context_length=hf["n_positions"],
                       emb_dim=hf["n_embd"], n_layers=hf["n_layer"], n_heads=hf["n_head"])


def _config_from_shapes(params: dict, overrides: dict) -> dict:
    vocab_size, emb_dim = params["wte.weight"].shape
    widths = {dims["emb_dim"]: dims["n_heads"] for dims in GPT2_SIZES.values()}
    if emb_dim not in widths and "n_heads" not in overrides:
        raise ValueError(f"no config.json gives the number of heads for width {emb_dim}; "
                         "pass n_heads=...")
    return gpt2_config(vocab_size=vocab_size, emb_dim=emb_dim, n_heads=widths.get(emb_dim),
                       context_length=params["wpe.weight"].shape[0],
                       n_layers=len({name.split(".")[1] for name in params if name[:2] == "h."}))


# %% pretraining.ipynb cell 78, 5.6 Warmup, cosine decay and gradient clipping (beyond the book)

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


# %% pretraining.ipynb cell 81, 5.6 Warmup, cosine decay and gradient clipping (beyond the book)

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


# %% pretraining.ipynb cell 82, 5.6 Warmup, cosine decay and gradient clipping (beyond the book)

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
                               autocast_dtype=autocast_dtype)
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


# %% pretraining.ipynb cell 86, 5.6 Warmup, cosine decay and gradient clipping (beyond the book)

def find_highest_gradient(model: nn.Module) -> torch.Tensor | None:
    """The largest entry of any parameter's gradient (None before the first backward pass)."""
    highest = [param.grad.max() for param in model.parameters() if param.grad is not None]
    return max(highest) if highest else None


# %% pretraining.ipynb cell 99, What limits decoding speed

class FastDecoder:
    """An inference-only copy of a GPTModel's weights, laid out for generating token by token.

    Called like the model (`generate(FastDecoder(model), ...)`), it returns the same logits to
    float32 precision, as in evaluation mode (no dropout). It copies the weights: build it after
    training. weight_dtype=torch.bfloat16 stores the matrices in bfloat16, half the bytes read
    per token; activations are rounded to bfloat16 for each product.
    """

    def __init__(self, model: GPTModel, weight_dtype: torch.dtype = torch.float32):
        if weight_dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"weight_dtype must be torch.float32 or torch.bfloat16, "
                             f"got {weight_dtype}")
        linears = [model.out_head, *(m for b in model.trf_blocks for m in _block_linears(b))]
        if not all(type(m) is nn.Linear for m in linears):  # e.g. chapter 7's LoRA layers
            raise TypeError("FastDecoder copies plain nn.Linear layers; merge adapters into "
                            "the weights first")
        self.cfg, self.weight_dtype = model.cfg, weight_dtype
        self.eps = model.final_norm.eps
        with torch.no_grad():  # all in float32, whatever the model's dtype
            self.tok_emb = model.tok_emb.weight.detach().float().clone()
            self.pos_emb = model.pos_emb.weight.detach().float().clone()
            self.blocks = [self._block(block) for block in model.trf_blocks]
            self.final_norm = _norm(model.final_norm)
            self.head = self._matrix(model.out_head.weight), _bias(model.out_head)

    def _block(self, block):
        att, (fc1, _, fc2) = block.att, block.ff.layers
        qkv = (att.W_query, att.W_key, att.W_value)
        qkv_bias = None if att.W_query.bias is None else torch.cat([m.bias for m in qkv]).float()
        return {"norm1": _norm(block.norm1), "norm2": _norm(block.norm2),
                "qkv": (self._matrix(torch.cat([m.weight for m in qkv])), qkv_bias),
                "out": (self._matrix(att.out_proj.weight), _bias(att.out_proj)),
                "fc1": (self._matrix(fc1.weight), _bias(fc1)),
                "fc2": (self._matrix(fc2.weight), _bias(fc2))}

    def _matrix(self, weight):
        if self.weight_dtype == torch.float32:  # (in, out): a row times it streams it in order
            return weight.detach().float().t().contiguous()
        return weight.detach().to(self.weight_dtype).contiguous()  # (out, in), for torch.mv

    def _linear(self, x, weight_and_bias):
        weight, bias = weight_and_bias
        rows = x.reshape(-1, x.shape[-1])
        if self.weight_dtype == torch.float32:
            out = rows @ weight if bias is None else torch.addmm(bias, rows, weight)
        else:  # one row: PyTorch's bf16 matrix-vector kernel, about twice F.linear's speed
            out = (torch.mv(weight, rows[0].to(weight.dtype))[None] if rows.shape[0] == 1
                   else nn.functional.linear(rows.to(weight.dtype), weight)).float()
            out = out if bias is None else out + bias
        return out.view(*x.shape[:-1], out.shape[-1])

    def make_kv_caches(self, max_tokens: int | None = None) -> list[KVCache]:
        """One empty KVCache per block, with room for max_tokens (default: the context)."""
        context_length = self.cfg["context_length"]
        if max_tokens is not None:
            check_count("max_tokens", max_tokens, 1)
        return [KVCache(min(max_tokens or context_length, context_length)) for _ in self.blocks]

    @torch.inference_mode()  # no autograd bookkeeping at all: measured 2% faster than no_grad
    def __call__(self, in_idx: torch.Tensor, kv_caches: list[KVCache] | None = None,
                 last_only: bool = False) -> torch.Tensor:
        """Logits as GPTModel.forward(in_idx, kv_caches, last_only) computes them (as inference
        tensors: autograd cannot record them, and only inference mode may change them in place).
        """
        check_token_ids(in_idx, "in_idx", self.cfg["vocab_size"])
        batch, num_tokens = in_idx.shape
        start = kv_caches[0].length if kv_caches else 0
        if start + num_tokens > self.cfg["context_length"]:
            raise ValueError(f"the input has {num_tokens} tokens after {start} cached tokens; "
                             f"the model's context_length is {self.cfg['context_length']}")
        width, heads = self.cfg["emb_dim"], self.cfg["n_heads"]
        mask = None  # one new token may see every cached key; a prompt alone is plain causal
        if num_tokens > 1 and start > 0:  # query i sits at start + i: keys 0 .. start + i
            mask = torch.ones(num_tokens, start + num_tokens, dtype=torch.bool,
                              device=in_idx.device).tril(start)
        x = self.tok_emb[in_idx] + self.pos_emb[start:start + num_tokens]
        for i, block in enumerate(self.blocks):
            qkv = self._linear(nn.functional.layer_norm(x, (width,), *block["norm1"], self.eps),
                               block["qkv"])
            queries, keys, values = qkv.view(batch, num_tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
            if kv_caches:
                keys, values = kv_caches[i].update(keys, values)
            context = nn.functional.scaled_dot_product_attention(
                queries, keys, values, attn_mask=mask, is_causal=num_tokens > 1 and mask is None)
            x = x + self._linear(context.transpose(1, 2).reshape(batch, num_tokens, width),
                                 block["out"])
            hidden = self._linear(nn.functional.layer_norm(x, (width,), *block["norm2"], self.eps),
                                  block["fc1"])
            x = x + self._linear(nn.functional.gelu(hidden, approximate="tanh"), block["fc2"])
        if last_only:
            x = x[:, -1:]
        return self._linear(nn.functional.layer_norm(x, (width,), *self.final_norm, self.eps),
                            self.head)


def _block_linears(block):
    att, ff = block.att, block.ff.layers
    return [att.W_query, att.W_key, att.W_value, att.out_proj, ff[0], ff[2]]


def _norm(layer_norm):
    return layer_norm.scale.detach().float().clone(), layer_norm.shift.detach().float().clone()


def _bias(linear):
    return None if linear.bias is None else linear.bias.detach().float().clone()


# %% pretraining.ipynb cell 107, 5.8 A fast training path (beyond the book)

def supports_fast_bf16(device: Device) -> bool:
    """Whether `device` multiplies bfloat16 matrices natively (so autocast pays off).

    True for CUDA GPUs from Ampere on and for CPUs with AVX512_BF16 or AMX instructions;
    elsewhere bf16 is emulated and usually slower than float32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# %% pretraining.ipynb cell 115, Less memory: the loss without the logits

class ChunkedCrossEntropy(torch.autograd.Function):
    """F.cross_entropy(hidden @ weight.T, targets, ignore_index=...) computed `chunk_size` rows
    at a time: forward keeps one number per row (its log-sum-exp), backward recomputes each
    chunk's logits. Under autocast the products run in its dtype, the softmax in float32."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size, ignore_index):
        device = hidden.device.type
        autocast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        product_dtype = autocast if autocast and hidden.dtype != torch.float64 else hidden.dtype
        sum_dtype = torch.promote_types(product_dtype, torch.float32)
        valid = targets != ignore_index
        safe_targets = targets.where(valid, 0)  # any class: ignored rows are masked out below
        weight_cast = weight.to(product_dtype)  # once, not once per chunk
        log_sum_exp = torch.empty(len(hidden), dtype=sum_dtype, device=hidden.device)
        total = torch.zeros((), dtype=sum_dtype, device=hidden.device)
        with torch.autocast(device, enabled=False):  # the casts above are autocast's own
            for rows in _chunks(len(hidden), chunk_size):
                logits = (hidden[rows].to(product_dtype) @ weight_cast.T).to(sum_dtype)
                target_logits = logits.gather(1, safe_targets[rows, None]).squeeze(1)
                largest = logits.amax(dim=1, keepdim=True)
                sum_exp = _flushed_exp_(logits.sub_(largest)).sum(dim=1)
                log_sum_exp[rows] = largest.squeeze(1) + sum_exp.log()
                total += ((log_sum_exp[rows] - target_logits) * valid[rows]).sum()
        count = valid.sum()
        ctx.save_for_backward(hidden, weight, safe_targets, valid, count, log_sum_exp)
        ctx.chunk_size, ctx.product_dtype = chunk_size, product_dtype
        loss = total / count  # nan when every target is ignored, as in F.cross_entropy
        return loss.float() if autocast else loss.to(hidden.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        hidden, weight, safe_targets, valid, count, log_sum_exp = ctx.saved_tensors
        # d loss / d logits = (softmax - one_hot(target)) * grad_loss / count, 0 where ignored
        scale = (grad_loss.to(log_sum_exp.dtype) / count.clamp(min=1)) * valid
        weight_cast = weight.to(ctx.product_dtype)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros(weight.shape, dtype=log_sum_exp.dtype, device=weight.device)
        with torch.autocast(hidden.device.type, enabled=False):
            for rows in _chunks(len(hidden), ctx.chunk_size):
                hidden_cast = hidden[rows].to(ctx.product_dtype)
                logits = (hidden_cast @ weight_cast.T).to(log_sum_exp.dtype)
                grad_logits = _flushed_exp_(logits.sub_(log_sum_exp[rows, None]))  # softmax
                grad_logits[torch.arange(len(grad_logits), device=grad_logits.device),
                            safe_targets[rows]] -= 1
                grad_logits = (grad_logits * scale[rows, None]).to(ctx.product_dtype)
                grad_hidden[rows] = grad_logits @ weight_cast
                # bf16 products are summed in float32, a block of the vocabulary at a time,
                # so that the float32 copy `add_` makes of each stays small
                for vocab in _chunks(len(weight), 8192) if ctx.needs_input_grad[1] else ():
                    grad_weight[vocab] += grad_logits[:, vocab].T @ hidden_cast
        return grad_hidden, grad_weight.to(weight.dtype), None, None, None


def _chunks(length: int, size: int) -> Iterator[slice]:
    return (slice(start, start + size) for start in range(0, length, size))


def _flushed_exp_(x: torch.Tensor) -> torch.Tensor:
    """exp(x) in place, exactly 0 where it would be below 2**24 x the dtype's least normal number.

    Such terms (below 2e-31 in float32) change a log-sum-exp, a sum of at least 1, by nothing
    float32 can hold. Kept, many would be denormal numbers, which x86 processors handle 10-100x
    slower: an untrained GPT-2's tied head spreads its logits so widely that nearly all of its
    probabilities are that small, and the chunk's weight-gradient product took 80x longer.
    """
    floor = math.log(torch.finfo(x.dtype).tiny) + 24 * math.log(2)  # -70.7 in float32
    return torch.threshold_(x, floor, -math.inf).exp_()  # exp(-inf) is exactly 0


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          chunk_size: int = 256, ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy of the logits hidden @ weight.T, never all of them at once.

    hidden (..., d); weight (vocab, d), as nn.Linear stores it; targets (...) class ids, or
    ignore_index for positions left out of the mean. Memory for logits: chunk_size x vocab.
    256 rows measured as fast as any larger chunk (fewer rows make slow, thin products).
    """
    check_count("chunk_size", chunk_size, 1)
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise TypeError(f"targets must hold integer class ids, got {targets.dtype}")
    if hidden.shape[:-1] != targets.shape or hidden.shape[-1:] != weight.shape[1:]:
        raise ValueError(f"hidden {tuple(hidden.shape)}, weight {tuple(weight.shape)} and "
                         f"targets {tuple(targets.shape)} do not fit: hidden must be (..., d), "
                         "weight (vocab, d) and targets hidden's shape without d")
    targets = targets.reshape(-1)
    outside = (targets != ignore_index) & ((targets < 0) | (targets >= len(weight)))
    if outside.any():  # F.cross_entropy would fail with an opaque index error
        raise ValueError(f"target {targets[outside][0].item()} is outside the vocabulary: "
                         f"targets must be in 0..{len(weight) - 1}, or {ignore_index} to ignore")
    return ChunkedCrossEntropy.apply(hidden.reshape(-1, hidden.shape[-1]), weight,
                                     targets.long(), chunk_size, ignore_index)


def calc_loss_batch_chunked(input_batch: torch.Tensor, target_batch: torch.Tensor,
                            model: nn.Module, device: Device) -> torch.Tensor:
    """calc_loss_batch without the (batch, tokens, vocab) logits: `loss_batch=` for the loop.

    It calls model.hidden_states, not the model: model.compile(), which compiles forward, does
    not reach it.
    """
    if model.out_head.bias is not None:  # the chunks multiply by the weight alone
        raise ValueError("calc_loss_batch_chunked needs an output head without a bias")
    hidden = model.hidden_states(input_batch.to(device))
    return chunked_cross_entropy(hidden, model.out_head.weight, target_batch.to(device))


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
    'train_model_simple',
    'plot_values',
    'plot_losses',
    'next_token_probs',
    'next_token',
    'generate',
    'save_checkpoint',
    'load_checkpoint',
    'download_gpt2_weights',
    'read_gpt2_weights',
    'load_weights_into_gpt',
    'save_gpt2_safetensors',
    'load_gpt2',
    'cosine_schedule',
    'batches_per_step',
    'optimizer_step',
    'train_model',
    'find_highest_gradient',
    'FastDecoder',
    'supports_fast_bf16',
    'ChunkedCrossEntropy',
    'chunked_cross_entropy',
    'calc_loss_batch_chunked',
]
