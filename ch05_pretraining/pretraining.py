# Generated from ch05_pretraining/pretraining.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% pretraining.ipynb cell 3, Chapter 5 — Pretraining on unlabelled data

"""Chapter 5: pretraining on unlabelled text: the loss, the training loop, decoding and
OpenAI's GPT-2 weights, as the book writes them. The companion notebooks' modules are beside
it (checkpoints.py, gpt2_weights.py, decoding.py, training.py, ...)."""

import matplotlib.pyplot as plt
import torch

from ch04_gpt_model.gpt_model import generate_text_simple


# %% pretraining.ipynb cell 8, 5.1.1 What the untrained model writes

def text_to_token_ids(text, tokenizer):
    ids = tokenizer.encode(text, allowed_special={"<|endoftext|>"})
    return torch.tensor(ids).unsqueeze(0)  # a batch of one: (1, tokens)


def token_ids_to_text(token_ids, tokenizer):
    return tokenizer.decode(token_ids.squeeze(0).tolist())  # (1, tokens) -> (tokens)


# %% pretraining.ipynb cell 25, 5.1.3 Training and validation losses on The Verdict

def calc_loss_batch(input_batch, target_batch, model, device):
    logits = model(input_batch.to(device))
    targets = target_batch.to(device)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def calc_loss_loader(data_loader, model, device, num_batches=None):
    if len(data_loader) == 0:
        return float("nan")
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    total = 0.0
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i >= num_batches:
            break
        total += calc_loss_batch(input_batch, target_batch, model, device).item()
    return total / num_batches


# %% pretraining.ipynb cell 29, 5.2 Training an LLM

def evaluate_model(model, train_loader, val_loader, device, eval_iter):
    model.eval()  # no dropout while we measure
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, device, eval_iter)
        val_loss = calc_loss_loader(val_loader, model, device, eval_iter)
    model.train()
    return train_loss, val_loss


def generate_and_print_sample(model, tokenizer, device, start_context):
    model.eval()
    context_size = model.pos_emb.weight.shape[0]
    encoded = text_to_token_ids(start_context, tokenizer).to(device)
    token_ids = generate_text_simple(model, encoded, 50, context_size)
    print(token_ids_to_text(token_ids, tokenizer).replace("\n", " "))
    model.train()


# %% pretraining.ipynb cell 31, 5.2 Training an LLM

def train_model_simple(model, train_loader, val_loader, optimizer, device, num_epochs,
                       eval_freq, eval_iter, start_context, tokenizer):
    train_losses, val_losses, track_tokens_seen = [], [], []
    tokens_seen, step = 0, -1
    for epoch in range(num_epochs):
        model.train()
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            loss.backward()
            optimizer.step()
            tokens_seen += input_batch.numel()
            step += 1
            if step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(model, train_loader, val_loader,
                                                      device, eval_iter)
                train_losses.append(train_loss)
                val_losses.append(val_loss)
                track_tokens_seen.append(tokens_seen)
                print(f"Ep {epoch + 1} (Step {step:06d}): "
                      f"Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")
        generate_and_print_sample(model, tokenizer, device, start_context)
    return train_losses, val_losses, track_tokens_seen


# %% pretraining.ipynb cell 34, 5.2 Training an LLM

def plot_losses(epochs_seen, tokens_seen, train_losses, val_losses):
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(epochs_seen, train_losses, label="training loss")
    ax.plot(epochs_seen, val_losses, linestyle="-.", label="validation loss")
    ax.set(xlabel="epochs", ylabel="loss")
    ax.legend()
    top = ax.twiny()  # a second x axis, on top, for the tokens seen
    top.plot(tokens_seen, train_losses, alpha=0)  # invisible: it only sets that axis's range
    top.set_xlabel("tokens seen")
    fig.tight_layout()
    plt.show()


# %% pretraining.ipynb cell 43, 5.3.3 Modifying the text generation function

def generate(model, idx, max_new_tokens, context_size, temperature=0.0, top_k=None,
             eos_id=None):
    """Extend the ids idx (batch, tokens): greedy at temperature 0, else sampled from the top_k.
    With eos_id, idx must hold one sequence (batch 1)."""
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = model(idx[:, -context_size:])[:, -1, :]  # the last position's logits
        if top_k is not None:  # every logit below the k-th largest becomes -inf
            kth_largest = torch.topk(logits, top_k).values[:, -1:]
            logits = logits.masked_fill(logits < kth_largest, -torch.inf)
        if temperature > 0.0:
            probs = torch.softmax(logits / temperature, dim=-1)
            next_id = torch.multinomial(probs, num_samples=1)
        else:
            next_id = logits.argmax(dim=-1, keepdim=True)
        if next_id == eos_id:  # one sequence at a time: stop at its end-of-text token
            break
        idx = torch.cat([idx, next_id], dim=1)
    return idx


# %% pretraining.ipynb cell 57, 5.5 Loading pretrained weights from OpenAI

import re

from safetensors.torch import load_file


def read_gpt2_weights(path):
    """The tensors of a GPT-2 safetensors file, under OpenAI's names."""
    params = {}
    for name, tensor in load_file(path).items():
        name = name.removeprefix("transformer.")  # as transformers saves them
        if not re.fullmatch(r"h\.\d+\.attn\.(masked_)?bias", name):  # masks, not weights
            params[name] = tensor
    return params


# %% pretraining.ipynb cell 59, 5.5 Loading pretrained weights from OpenAI

def load_weights_into_gpt(gpt, params):
    """Copy GPT-2's tensors, named as in its file, into `gpt`: one assignment per tensor."""
    with torch.no_grad():
        gpt.tok_emb.weight.copy_(params["wte.weight"])
        gpt.pos_emb.weight.copy_(params["wpe.weight"])
        for i, block in enumerate(gpt.trf_blocks):
            h, att, ff = f"h.{i}.", block.att, block.ff
            block.norm1.scale.copy_(params[h + "ln_1.weight"])
            block.norm1.shift.copy_(params[h + "ln_1.bias"])
            q, k, v = params[h + "attn.c_attn.weight"].chunk(3, dim=1)  # (d, 3d): [Wq | Wk | Wv]
            att.W_query.weight.copy_(q.T)  # Conv1D stores (in, out), nn.Linear (out, in)
            att.W_key.weight.copy_(k.T)
            att.W_value.weight.copy_(v.T)
            q_bias, k_bias, v_bias = params[h + "attn.c_attn.bias"].chunk(3)
            att.W_query.bias.copy_(q_bias)
            att.W_key.bias.copy_(k_bias)
            att.W_value.bias.copy_(v_bias)
            att.out_proj.weight.copy_(params[h + "attn.c_proj.weight"].T)
            att.out_proj.bias.copy_(params[h + "attn.c_proj.bias"])
            block.norm2.scale.copy_(params[h + "ln_2.weight"])
            block.norm2.shift.copy_(params[h + "ln_2.bias"])
            ff.layers[0].weight.copy_(params[h + "mlp.c_fc.weight"].T)
            ff.layers[0].bias.copy_(params[h + "mlp.c_fc.bias"])
            ff.layers[2].weight.copy_(params[h + "mlp.c_proj.weight"].T)
            ff.layers[2].bias.copy_(params[h + "mlp.c_proj.bias"])
        gpt.final_norm.scale.copy_(params["ln_f.weight"])
        gpt.final_norm.shift.copy_(params["ln_f.bias"])
        # OpenAI's files have no head of their own: GPT-2 ties it to the token embedding
        gpt.out_head.weight.copy_(params.get("lm_head.weight", params["wte.weight"]))


# %% pretraining.ipynb cell 61, 5.5 Loading pretrained weights from OpenAI

import json
import shutil
import urllib.request
from pathlib import Path

from ch04_gpt_model.final_model import gpt2_config


BOOK_GPT2_SIZES = {"124M": "gpt2-small (124M)", "355M": "gpt2-medium (355M)",
                   "774M": "gpt2-large (774M)", "1558M": "gpt2-xl (1558M)"}


def download_and_load_gpt2(model_size, models_dir):
    """GPT-2's (settings, params) for model_size ("124M" ... "1558M"). Its weights are downloaded
    once into models_dir/model_size (Hugging Face's safetensors file of OpenAI's weights), and
    params are their tensors under the file's names."""
    cfg = gpt2_config(BOOK_GPT2_SIZES[model_size])
    folder = Path(models_dir) / model_size
    weights = folder / "model.safetensors"
    if not weights.exists():
        repo = BOOK_GPT2_SIZES[model_size].split()[0].replace("gpt2-small", "gpt2")
        url = f"https://huggingface.co/openai-community/{repo}/resolve/main/model.safetensors"
        downloaded, _ = urllib.request.urlretrieve(url)  # to a temporary file first
        folder.mkdir(parents=True, exist_ok=True)  # so a failed download leaves no folder
        shutil.move(downloaded, weights)
    settings = {"n_vocab": cfg["vocab_size"], "n_ctx": cfg["context_length"],
                "n_embd": cfg["emb_dim"], "n_head": cfg["n_heads"], "n_layer": cfg["n_layers"]}
    (folder / "hparams.json").write_text(json.dumps(settings, indent=2) + "\n")
    return settings, read_gpt2_weights(weights)


def load_gpt2_params_from_tf_ckpt(ckpt_path, settings):
    """The tensors of OpenAI's TensorFlow checkpoint under the file's names (needs TensorFlow):
    "model/h0/attn/c_attn/w" becomes "h.0.attn.c_attn.weight". settings is the book's
    argument; the blocks are the file's."""
    try:
        import tensorflow as tf  # the course does not install it
    except ImportError as error:
        raise ImportError("load_gpt2_params_from_tf_ckpt needs TensorFlow") from error

    params = {}
    for tf_name, _ in tf.train.list_variables(str(ckpt_path)):
        scopes = tf_name.split("/")[1:]  # without "model/"
        if re.fullmatch(r"h\d+", scopes[0]):  # "h0" -> "h", "0"
            scopes = ["h", scopes[0][1:], *scopes[1:]]
        leaf = {"w": "weight", "g": "weight", "b": "bias"}.get(scopes[-1])
        name = ".".join([*scopes[:-1], leaf]) if leaf else scopes[0] + ".weight"  # wte, wpe
        params[name] = torch.from_numpy(tf.train.load_variable(str(ckpt_path), tf_name).squeeze())
    return params


def assign(left, right):
    """`right` (a tensor or an array) as a new parameter in place of `left`, of the same shape."""
    right = torch.as_tensor(right)
    if left.shape != right.shape:
        raise ValueError(f"Shape mismatch. Left: {left.shape}, Right: {right.shape}")
    return torch.nn.Parameter(right.detach().clone().to(left.device, left.dtype))


# %% pretraining.ipynb cell 71, The exported helpers other chapters use (beyond the book)

from collections.abc import Sequence

from shared.checks import check


def context_length_of(model):
    """The longest input `model` takes: its config's, or its position table's (the book's)."""
    return model.cfg["context_length"] if hasattr(model, "cfg") else model.pos_emb.num_embeddings


def plot_values(epochs_seen: Sequence[float], seen: Sequence[float], train_values: Sequence[float],
                val_values: Sequence[float], label: str = "loss",
                seen_label: str = "tokens seen") -> plt.Figure:
    """Training and validation curves against epochs (bottom axis) and what the model has seen
    by then (top axis: tokens here, examples in chapter 6)."""
    # matplotlib refuses curves of other lengths; the top axis reads seen's last value alone
    check(len(seen) == len(epochs_seen) > 0, lambda: f"seen and epochs_seen need one value per "
          f"evaluation (none? give eval_freq), got {len(seen)} and {len(epochs_seen)}")
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


__all__ = [
    'text_to_token_ids',
    'token_ids_to_text',
    'calc_loss_batch',
    'calc_loss_loader',
    'evaluate_model',
    'generate_and_print_sample',
    'train_model_simple',
    'plot_losses',
    'generate',
    'read_gpt2_weights',
    'load_weights_into_gpt',
    'BOOK_GPT2_SIZES',
    'download_and_load_gpt2',
    'load_gpt2_params_from_tf_ckpt',
    'assign',
    'context_length_of',
    'plot_values',
]
