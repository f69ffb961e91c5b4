# Generated from ch04_gpt_model/beyond_2_final_model.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export final_model`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_2_final_model.ipynb cell 4, 4.7.1 The final `GPTModel`

"""Chapter 4, beyond the book: the final GPTModel, the class chapters 5 to 7 build, GPT-2's four
sizes, and where their parameters sit (beyond_2_final_model.ipynb)."""

import weakref  # which model a KV cache belongs to

import torch
from torch import nn

from ch03_attention.kv_cache import KVCache
from ch04_gpt_model.gpt_model import (
    GPT_CONFIG_124M,
    count_parameters,
)
from ch04_gpt_model.gpt_model import GPTModel as GPTModel_book  # the lesson's: the book's model
from shared.architecture import validate_config
from shared.checks import (
    check,
    check_fits_context,
    check_token_ids,
)
from shared.utils import inputs_trusted


# %% beyond_2_final_model.ipynb cell 5, 4.7.1 The final `GPTModel`

REQUIRED_CONFIG_KEYS = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers",
                        "drop_rate", "qkv_bias")
OPTIONAL_CONFIG_KEYS = {"tie_weights": False, "sdpa": False}  # with their defaults


# %% beyond_2_final_model.ipynb cell 6, 4.7.1 The final `GPTModel`

class GPTModel(GPTModel_book):
    """The lesson's model (4.6) with a checked configuration, tie_weights, sdpa, KV caches
    and last_only logits."""

    # a subclass that reads more keys: {**GPTModel.OPTIONAL_CONFIG_KEYS, "key": default}
    OPTIONAL_CONFIG_KEYS = OPTIONAL_CONFIG_KEYS

    def __init__(self, cfg: dict):
        cfg = validate_config(cfg, self.OPTIONAL_CONFIG_KEYS, REQUIRED_CONFIG_KEYS)
        super().__init__(cfg)  # 4.6's layers, in its order: a seed gives the book's weights
        self.cfg = cfg
        if cfg["tie_weights"]:
            # N(0, 1) rows would give logits of std ~sqrt(emb_dim): start at GPT-2's scales
            with torch.no_grad():
                self.tok_emb.weight.mul_(0.02)
                self.pos_emb.weight.mul_(0.01)
            self.out_head.weight = self.tok_emb.weight

    def hidden_states(self, in_idx, kv_caches=None):
        """The final-normed vectors (batch, tokens, emb_dim) that out_head turns into logits;
        with kv_caches (from make_kv_caches), in_idx continues the tokens already cached."""
        start = kv_caches[0].length if kv_caches else 0  # how many tokens are cached
        if not inputs_trusted():  # generate_text checks its first step only (shared.utils)
            self._check_input(in_idx, kv_caches, start)
        positions = torch.arange(start, start + in_idx.shape[1], device=in_idx.device)
        x = self.drop_emb(self.tok_emb(in_idx) + self.pos_emb(positions))
        for i, block in enumerate(self.trf_blocks):
            x = block(x, kv_caches[i] if kv_caches else None)
        return self.final_norm(x)

    def forward(self, in_idx, kv_caches=None, last_only=False):
        """Logits (batch, tokens, vocab) for the token ids in_idx (batch, tokens); last_only: the
        last position's alone, (batch, 1, vocab), all that generation needs."""
        x = self.hidden_states(in_idx, kv_caches)
        if last_only:  # the head is ~1/4 of untied GPT-2 small: skip it where nobody looks
            x = x[:, -1:]
        return self.out_head(x)

    def _check_input(self, in_idx, kv_caches, start: int) -> None:
        """Check in_idx, and that kv_caches are the list this model's make_kv_caches made."""
        check_token_ids(in_idx, "in_idx", self.cfg["vocab_size"])
        # another model's keys and values, even a same-shaped one's, or a part of the list (its
        # caches would fall out of step), would be read without a word
        check(not kv_caches or [c.model() for c in kv_caches] == [self] * len(self.trf_blocks),
              "kv_caches must be the list this model's make_kv_caches returned")
        check_fits_context(in_idx.shape[1], self.cfg["context_length"], start)

    def make_kv_caches(self, max_tokens=None):
        """One empty KVCache per block, with room for max_tokens (default: the context), marked
        as this model's (weakly: a cache does not keep its model alive)."""
        context_length = self.cfg["context_length"]
        max_tokens = context_length if max_tokens is None else int(max_tokens)  # 6.0 makes 6
        caches = [KVCache(min(max_tokens, context_length)) for _ in self.trf_blocks]
        for cache in caches:
            cache.model = weakref.ref(self)  # called, it gives this model while it lives
        return caches


# %% beyond_2_final_model.ipynb cell 29, 4.7.2 All four GPT-2 sizes, without allocating them

GPT2_SIZES = {
    "gpt2-small (124M)": {"emb_dim": 768, "n_layers": 12, "n_heads": 12},
    "gpt2-medium (355M)": {"emb_dim": 1024, "n_layers": 24, "n_heads": 16},
    "gpt2-large (774M)": {"emb_dim": 1280, "n_layers": 36, "n_heads": 20},
    "gpt2-xl (1558M)": {"emb_dim": 1600, "n_layers": 48, "n_heads": 25},
}


def gpt2_config(size: str = "gpt2-small (124M)", **overrides) -> dict:
    """GPT_CONFIG_124M with the dimensions of one of GPT2_SIZES (another is GPT2_SIZES'
    KeyError), then `overrides`."""
    return {**GPT_CONFIG_124M, **GPT2_SIZES[size], **overrides}


# %% beyond_2_final_model.ipynb cell 31, 4.7.2 All four GPT-2 sizes, without allocating them

def parameter_groups(model: nn.Module) -> dict[str, int]:
    """Parameters per kind of part, in the order the data meets them (the blocks' attention and
    feed-forward networks in one group, every LayerNorm, in the blocks or not, in another)."""
    blocks = list(model.trf_blocks)
    norms = [model.final_norm] + [n for b in blocks for n in (b.norm1, b.norm2)]
    parts = {"token embedding": [model.tok_emb], "position embedding": [model.pos_emb],
             "attention + feed-forward": [m for b in blocks for m in (b.att, b.ff)],
             "layer norms": norms, "output head": [model.out_head]}
    return {name: sum(count_parameters(m) for m in ms) for name, ms in parts.items()}


__all__ = [
    'REQUIRED_CONFIG_KEYS',
    'OPTIONAL_CONFIG_KEYS',
    'GPTModel',
    'GPT2_SIZES',
    'gpt2_config',
    'parameter_groups',
]
