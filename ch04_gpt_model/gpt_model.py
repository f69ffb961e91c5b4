# Generated from ch04_gpt_model/gpt_model.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% gpt_model.ipynb cell 2, Chapter 4 — Implementing a GPT model from scratch

"""Chapter 4: the GPT-2 architecture, built from chapter 3's multi-head attention."""

import torch
from torch import nn

from ch03_attention.attention import MultiHeadAttention


# %% gpt_model.ipynb cell 5, The configuration

GPT_CONFIG_124M = {
    "vocab_size": 50257,     # GPT-2's BPE vocabulary (chapter 2)
    "context_length": 1024,  # the longest input the positional embedding covers
    "emb_dim": 768,          # width of every token vector
    "n_heads": 12,           # attention heads per layer
    "n_layers": 12,          # Transformer blocks
    "drop_rate": 0.1,        # dropout probability
    "qkv_bias": False,       # bias in the query/key/value projections (True for OpenAI's weights)
}


# %% gpt_model.ipynb cell 18, Before and after, on a small layer

class LayerNorm(nn.Module):
    """Normalise each vector over its last dimension, then scale and shift (learned)."""

    def __init__(self, emb_dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return self.scale * (x - mean) / torch.sqrt(var + self.eps) + self.shift


# %% gpt_model.ipynb cell 25, 4.3 A feed-forward network with GELU activations

class GELU(nn.Module):
    """GELU, tanh approximation (as in GPT-2)."""

    def forward(self, x):
        return 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x**3)))


# %% gpt_model.ipynb cell 31, 4.3 A feed-forward network with GELU activations

class FeedForward(nn.Module):
    """Position-wise MLP: widen 4x, GELU, project back."""

    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(cfg["emb_dim"], 4 * cfg["emb_dim"]),
            GELU(),
            nn.Linear(4 * cfg["emb_dim"], cfg["emb_dim"]),
        )

    def forward(self, x):
        return self.layers(x)


# %% gpt_model.ipynb cell 38, 4.5 Connecting attention and feed-forward in a Transformer block

class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: x + attention(norm(x)), then x + feed-forward(norm(x))."""

    def __init__(self, cfg):
        super().__init__()
        self.att = MultiHeadAttention(
            d_in=cfg["emb_dim"], d_out=cfg["emb_dim"], context_length=cfg["context_length"],
            num_heads=cfg["n_heads"], dropout=cfg["drop_rate"], qkv_bias=cfg["qkv_bias"],
            use_sdpa=cfg.get("sdpa", False),  # beyond the book: fused attention, if asked
        )
        self.ff = FeedForward(cfg)
        self.norm1 = LayerNorm(cfg["emb_dim"])
        self.norm2 = LayerNorm(cfg["emb_dim"])
        self.drop_shortcut = nn.Dropout(cfg["drop_rate"])

    def forward(self, x, kv_cache=None):  # beyond the book: kv_cache, passed to the attention
        x = x + self.drop_shortcut(self.att(self.norm1(x), kv_cache))
        x = x + self.drop_shortcut(self.ff(self.norm2(x)))
        return x


# %% gpt_model.ipynb cell 41, 4.6 Coding the GPT model

class GPTModel_book(nn.Module):
    """The book's GPTModel: 4.1's skeleton with real blocks and norm; GPTModel subclasses it."""

    def __init__(self, cfg):
        super().__init__()
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])
        self.trf_blocks = nn.Sequential(*[TransformerBlock(cfg) for _ in range(cfg["n_layers"])])
        self.final_norm = LayerNorm(cfg["emb_dim"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)

    def forward(self, in_idx):
        positions = torch.arange(in_idx.shape[1], device=in_idx.device)
        x = self.drop_emb(self.tok_emb(in_idx) + self.pos_emb(positions))
        x = self.trf_blocks(x)
        x = self.final_norm(x)
        return self.out_head(x)


# %% gpt_model.ipynb cell 44, How many parameters, how much memory?

def count_parameters(model: nn.Module) -> int:
    """The numbers in the model's parameters. parameters() yields each Parameter object once,
    so a matrix that two modules share (weight tying, 4.6) counts once."""
    return sum(p.numel() for p in model.parameters())


# %% gpt_model.ipynb cell 54, 4.7 Generating text

def generate_text_simple(model: nn.Module, idx: torch.Tensor, max_new_tokens: int,
                         context_size: int) -> torch.Tensor:
    """Greedy decoding: append the most likely next token `max_new_tokens` times."""
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = model(idx[:, -context_size:])[:, -1, :]  # last position only
        next_id = logits.argmax(dim=-1, keepdim=True)  # softmax would not change the argmax
        idx = torch.cat([idx, next_id], dim=1)
    return idx


# %% gpt_model.ipynb cell 60, 4.7.1 The final `GPTModel` (beyond the book)

import weakref  # noqa: E402 - which model a KV cache belongs to

import psutil  # noqa: E402 - the machine's memory, for the causal masks' check

from ch03_attention.kv_cache import KVCache  # noqa: E402
from shared.architecture import validate_config
from shared.checks import check, check_fits_context, check_token_ids  # noqa: E402


# %% gpt_model.ipynb cell 61, 4.7.1 The final `GPTModel` (beyond the book)

REQUIRED_CONFIG_KEYS = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers",
                        "drop_rate", "qkv_bias")
OPTIONAL_CONFIG_KEYS = {"tie_weights": False, "sdpa": False}  # with their defaults


# %% gpt_model.ipynb cell 62, 4.7.1 The final `GPTModel` (beyond the book)

class GPTModel(GPTModel_book):
    """4.6's model, checked configuration, tie_weights, sdpa, KV caches, last_only logits."""

    # a subclass that reads more keys: {**GPTModel.OPTIONAL_CONFIG_KEYS, "key": default}
    OPTIONAL_CONFIG_KEYS = OPTIONAL_CONFIG_KEYS

    def __init__(self, cfg: dict):
        cfg = validate_config(cfg, self.OPTIONAL_CONFIG_KEYS, REQUIRED_CONFIG_KEYS)
        masks = 4 * cfg["context_length"] ** 2 * (cfg["n_layers"] + 1)  # bytes (3.5.3's masks)
        check(masks < psutil.virtual_memory().total or torch.get_default_device().type == "meta",
              lambda: f"context_length {cfg['context_length']:,}: the causal masks exceed memory")
        super().__init__(cfg)  # 4.6's layers, in its order: a seed gives GPTModel_book's weights
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
        check(not kv_caches or len(kv_caches) == len(self.trf_blocks) and all(
            getattr(c, "model", lambda: None)() is self for c in kv_caches),
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


# %% gpt_model.ipynb cell 66, 4.7.1 The final `GPTModel` (beyond the book)

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


__all__ = [
    'GPT_CONFIG_124M',
    'LayerNorm',
    'GELU',
    'FeedForward',
    'TransformerBlock',
    'GPTModel_book',
    'count_parameters',
    'generate_text_simple',
    'REQUIRED_CONFIG_KEYS',
    'OPTIONAL_CONFIG_KEYS',
    'GPTModel',
    'GPT2_SIZES',
    'gpt2_config',
]
