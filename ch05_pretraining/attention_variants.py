# Generated from ch05_pretraining/beyond_8_attention_variants.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export attention_variants`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_8_attention_variants.ipynb cell 4, 5.11 Attention variants side by side

"""Chapter 5, section 5.11 (beyond the book): attention variants side by side, by the cache each
keeps for every token read and by the loss each reaches on one training budget."""

import torch
from torch.utils.data import DataLoader

from ch02_text_data.text_data import GPTDatasetV1
from ch04_gpt_model.modern import (
    ModernGPTModel,
    validate_modern_config,
)
from ch05_pretraining.pretraining import calc_loss_loader
from ch05_pretraining.training import train_model
from shared.utils import set_seed


# %% beyond_8_attention_variants.ipynb cell 5, 5.11 Attention variants side by side

def attention_variants(cfg: dict, kv_groups: int, window: int, latent: int,
                       rope_dim: int) -> dict[str, dict]:
    """ModernGPTModel configurations of one size that differ only in their attention: every
    head its own keys and values (multi-head), kv_groups of them shared (grouped-query, 4.8.4;
    multi-query attention is kv_groups=1), keys and values rebuilt from a latent of `latent` numbers
    plus a shared rotated key of rope_dim (multi-head latent, 4.8.12), grouped-query attention
    within a window in three layers of four (4.8.7), and the same with attention sinks (4.8.10)."""
    heads, layers = cfg["n_heads"], cfg["n_layers"]
    local = {"n_kv_groups": kv_groups, "sliding_window": window,
             "layer_types": ["global" if (i + 1) % 4 == 0 else "local" for i in range(layers)]}
    head_dim = cfg.get("head_dim") or cfg["emb_dim"] // heads
    return {name: validate_modern_config({**cfg, **changes}) for name, changes in {
        "multi-head": {"n_kv_groups": heads},
        "grouped-query": {"n_kv_groups": kv_groups},
        # (4.8.12's layer has no QK-norm: validate_modern_config refuses one with it)
        "multi-head latent": {"n_kv_groups": heads, "qk_norm": False, "rope_dim": rope_dim,
                              "mla": {"q_rank": None, "kv_rank": latent, "v_dim": head_dim,
                                      "interleaved": False}},
        "sliding window": local,
        "sliding window + sinks": {**local, "attention_sinks": True},
    }.items()}


# %% beyond_8_attention_variants.ipynb cell 7, 5.11.1 The bytes each keeps per token

def cache_bytes(model: ModernGPTModel, num_tokens: int) -> int:
    """The bytes a model's caches hold after reading num_tokens tokens (keys and values, or a
    DeltaNet layer's state and convolution inputs, 4.9): measured on the caches themselves after
    a forward pass (on the meta device, a model of any size costs no memory)."""
    caches = model.make_kv_caches(num_tokens)
    device = next(model.parameters()).device
    with torch.no_grad():
        model(torch.zeros(1, num_tokens, dtype=torch.long, device=device), caches, last_only=True)
    return sum(held.nbytes for cache in caches for held in vars(cache).values()
               if isinstance(held, torch.Tensor))


# %% beyond_8_attention_variants.ipynb cell 11, 5.11.2 The loss each reaches on one budget

class CharTokenizer:
    """A character's id in `alphabet`: the simplest tokenizer, for chapter 2's GPTDatasetV1."""

    def __init__(self, alphabet: str):
        self.chars = sorted(set(alphabet))
        self.ids = {char: i for i, char in enumerate(self.chars)}
        self.n_vocab = len(self.chars)

    def encode(self, text: str, allowed_special=()) -> list[int]:  # GPTDatasetV1 passes it
        return [self.ids[char] for char in text]  # a character not in it: KeyError, naming it

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)


def char_loaders(train_text: str, val_text: str, tokenizer: CharTokenizer, context_length: int,
                 batch_size: int, seed: int = 123) -> tuple[DataLoader, DataLoader]:
    """Chapter 2's loaders over characters: windows of context_length that do not overlap, the
    training ones shuffled from `seed`. Loaders made with one seed give the same order on their
    first pass (each later pass draws a new one)."""
    def dataset(text):
        return GPTDatasetV1(text, tokenizer, context_length, context_length)

    train = DataLoader(dataset(train_text), batch_size=batch_size, shuffle=True, drop_last=True,
                       generator=torch.Generator().manual_seed(seed))
    return train, DataLoader(dataset(val_text), batch_size=batch_size)


# %% beyond_8_attention_variants.ipynb cell 14, 5.11.2 The loss each reaches on one budget

def train_and_evaluate(cfg: dict, train_loader: DataLoader, val_loader: DataLoader, *,
                       peak_lr: float, warmup_steps: int, seed: int = 123,
                       device: str | torch.device = "cpu") -> tuple[ModernGPTModel, float]:
    """A fresh ModernGPTModel(cfg) trained one epoch of train_loader with appendix D's loop
    (warm-up, cosine decay, clipping; AdamW) and its validation loss after: the same recipe for
    every variant."""
    set_seed(seed)
    model = ModernGPTModel(cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=0.1)
    train_model(model, train_loader, val_loader, optimizer, device, n_epochs=1, eval_freq=None,
                eval_iter=1, start_context=None, tokenizer=None, warmup_steps=warmup_steps,
                initial_lr=peak_lr / 10, min_lr=peak_lr / 10, progress=False)
    model.eval()
    with torch.no_grad():
        return model, calc_loss_loader(val_loader, model, device)


__all__ = [
    'attention_variants',
    'cache_bytes',
    'CharTokenizer',
    'char_loaders',
    'train_and_evaluate',
]
