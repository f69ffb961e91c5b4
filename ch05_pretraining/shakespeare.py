# Generated from ch05_pretraining/beyond_7_shakespeare.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export shakespeare`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_7_shakespeare.ipynb cell 8, 5.10.3 What counting alone achieves

"""Chapter 5, beyond the book: counting baselines for a language model's loss, and a trained
model saved with its own tokenizer in GPT-2's format (beyond_7_shakespeare.ipynb)."""

from pathlib import Path

import torch

from ch02_text_data.bpe import BPETokenizer
from ch04_gpt_model.final_model import GPTModel
from ch05_pretraining.gpt2_weights import (
    load_gpt2,
    save_gpt2_safetensors,
)
from shared.checks import check
from shared.safe_files import write_model_folder


def ngram_loss(train_ids, eval_ids, vocab_size: int, order: int, add_k: float) -> float:
    """Cross-entropy, in nats per token, of `eval_ids` under a model that counts `train_ids`:
    order 1, each token's frequency (unigram); order 2, each token's frequency after the
    token before it (bigram). add_k is added to every count, so no token has probability 0."""
    # Another order, or a negative add_k, would give a number that is no such loss, silently.
    check(order in (1, 2), lambda: f"order must be 1 (unigram) or 2 (bigram), got {order!r}")
    check(add_k > 0, lambda: f"add_k must be > 0, got {add_k!r}")
    train, evals = torch.as_tensor(train_ids), torch.as_tensor(eval_ids)
    contexts = 1 if order == 1 else vocab_size  # the previous token, or nothing
    seen = (train[:-1] * vocab_size + train[1:]) if order == 2 else train
    counts = torch.bincount(seen, minlength=contexts * vocab_size).view(contexts, vocab_size)
    counts = counts.double()  # float32 would round the smallest probabilities
    probs = (counts + add_k) / (counts.sum(dim=1, keepdim=True) + add_k * vocab_size)
    previous = evals[:-1] if order == 2 else torch.zeros_like(evals)
    return -probs.log()[previous, evals[order - 1:]].mean().item()


# %% beyond_7_shakespeare.ipynb cell 21, 5.10.5 Saving it, with its tokenizer

TEXT_MODEL_FILES = r"config\.json|model\.safetensors|encoder\.json|vocab\.bpe"


def save_text_model(model: GPTModel, tokenizer: BPETokenizer, folder: str | Path, *,
                    replace: bool = False) -> Path:
    """`model` in GPT-2's format and `tokenizer` in GPT-2's files, together in `folder`,
    written whole or not at all. An earlier save of a model of the same architecture there is
    replaced; another model's only with replace=True; a folder holding any other file never."""
    check(tokenizer.n_vocab <= model.cfg["vocab_size"], f"the tokenizer's {tokenizer.n_vocab:,} "
          f"tokens do not fit the model's vocabulary of {model.cfg['vocab_size']:,}")

    def write(tmp: Path) -> None:
        save_gpt2_safetensors(model, tmp, replace=True)  # tmp is new and empty
        tokenizer.save_gpt2_files(tmp)

    same = {"vocab_size": model.cfg["vocab_size"], "n_positions": model.cfg["context_length"],
            "n_embd": model.cfg["emb_dim"], "n_layer": model.cfg["n_layers"],
            "n_head": model.cfg["n_heads"]}
    write_model_folder(folder, write, "save_gpt2_safetensors", TEXT_MODEL_FILES, same, replace)
    return Path(folder)


def load_text_model(folder: str | Path, device: str | torch.device = "cpu", **overrides
                    ) -> tuple[GPTModel, BPETokenizer]:
    """The model and tokenizer that save_text_model wrote to `folder`, the model in eval mode
    on `device`; `overrides` are configuration keys the format does not record (load_gpt2's),
    such as sdpa=True."""
    folder = Path(folder)
    tokenizer = BPETokenizer.from_gpt2_files(folder / "encoder.json", folder / "vocab.bpe")
    model = load_gpt2(folder, **{"drop_rate": 0.0, **overrides})
    return model.to(device).eval(), tokenizer


# %% beyond_7_shakespeare.ipynb cell 24, 5.10.6 A bigger model, another recipe

def nats_per_character(model: GPTModel, tokenizer, text: str) -> float:
    """`model`'s cross-entropy on `text` per character instead of per token, a measure that
    models with different tokenizers share: the text's tokens in windows of the model's context,
    side by side, each token after the first predicted once, the summed losses divided by the
    characters of the predicted tokens."""
    check(not model.training, "model must be in eval mode (model.eval()): dropout changes losses")
    ids = tokenizer.encode(text)
    device, context = next(model.parameters()).device, model.cfg["context_length"]
    nats = 0.0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, context):
            window = torch.tensor(ids[start:start + context + 1], device=device)
            logits = model(window[None, :-1])[0]
            nats += torch.nn.functional.cross_entropy(logits, window[1:], reduction="sum").item()
    return nats / (len(text) - len(tokenizer.decode(ids[:1])))


__all__ = [
    'ngram_loss',
    'TEXT_MODEL_FILES',
    'save_text_model',
    'load_text_model',
    'nats_per_character',
]
