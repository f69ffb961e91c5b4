# Generated from ch03_attention/attention.ipynb by `python -m shared.notebooks export`.
# Do not edit: change the notebook's cells marked `#| export`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% attention.ipynb cell 2, Chapter 3 — Coding attention mechanisms

"""Chapter 3: attention, from trainable self-attention to multi-head causal attention."""

import torch
from torch import nn


# %% attention.ipynb cell 37, 3.4.2 A compact self-attention class

class SelfAttention_v2(nn.Module):
    """Self-attention with nn.Linear projections."""

    def __init__(self, d_in: int, d_out: int, qkv_bias: bool = False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)

    def forward(self, x):
        queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)
        attn_scores = queries @ keys.transpose(-2, -1)
        attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        return attn_weights @ values


# %% attention.ipynb cell 80, 3.7.2 A key-value cache for generation

from shared import check, check_count  # noqa: E402 - imported where first used


class KVCache:
    """The keys and values one attention layer has computed so far, kept for reuse.

    Memory for `max_tokens` positions is allocated once, on first use, and each update writes
    into it: concatenating instead would copy the whole cache at every generated token."""

    def __init__(self, max_tokens: int):
        check_count("max_tokens", max_tokens, 1)
        self.max_tokens = max_tokens
        self.length = 0  # positions filled
        self.keys = self.values = None

    def reset(self):
        """Forget the cached tokens (before a new prompt); the memory is kept."""
        self.length = 0

    def update(self, keys, values):
        """Append (batch, heads, new_tokens, head_dim) keys and values; return all of them."""
        self._check_update(keys, values)
        start, end = self.length, self.length + keys.shape[2]
        shape = (*keys.shape[:2], self.max_tokens, keys.shape[3])
        if start == 0 and (self.keys is None or self.keys.shape != shape
                           or self.keys.dtype != keys.dtype or self.keys.device != keys.device):
            self.keys, self.values = keys.new_empty(shape), values.new_empty(shape)  # (1)
        self.keys[:, :, start:end] = keys  # (2) write into the next free positions
        self.values[:, :, start:end] = values
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]  # (3) views: nothing is copied

    def _check_update(self, keys, values) -> None:
        """Raise unless the new keys fit and match the cached ones (a new dtype would convert)."""
        check(keys.dim() == 4 and values.shape == keys.shape, lambda: "keys and values must both "
              f"have shape (batch, heads, new_tokens, head_dim), got {tuple(keys.shape)} and "
              f"{tuple(values.shape)}")
        start, kept, new = self.length, self.keys, keys
        check(start + new.shape[2] <= self.max_tokens, lambda: f"the KV cache has room for "
              f"{self.max_tokens} positions; {start} are filled and {new.shape[2]} more do not fit")
        check(start == 0 or ((new.shape[:2], new.shape[3], new.dtype, new.device) ==
                             (kept.shape[:2], kept.shape[3], kept.dtype, kept.device)), lambda:
              f"the cache holds {start} positions of (batch, heads, head_dim) = "
              f"{(*kept.shape[:2], kept.shape[3])}, {kept.dtype} on {kept.device}; the new keys "
              f"are {(*new.shape[:2], new.shape[3])}, {new.dtype} on {new.device}: call reset() "
              "before a new sequence")


# %% attention.ipynb cell 85, 3.7.3 The exported classes: input checks

from shared import check_memory  # noqa: E402 - imported where first used


def _check_sizes(d_in, d_out, context_length, dropout, num_heads=1) -> None:
    """Raise unless sizes are counts, dropout is in [0, 1), heads split d_out, the mask fits."""
    for name, size in [("d_in", d_in), ("d_out", d_out), ("context_length", context_length),
                       ("num_heads", num_heads)]:
        check_count(name, size, 1)
    check(isinstance(dropout, (int, float)) and not isinstance(dropout, bool),
          f"dropout must be a number in [0, 1), got {dropout!r}", TypeError)
    check(0 <= dropout < 1, f"dropout must be in [0, 1), got {dropout!r}")
    check(d_out % num_heads == 0, f"d_out ({d_out}) must be divisible by num_heads ({num_heads})")
    # the mask is context_length**2 float32s (4 bytes), and its triu a second copy while built
    check_memory("context_length", context_length, 8 * context_length**2, "its causal mask")


def _check_input(x, d_in: int, context_length: int, start: int = 0) -> None:
    """Raise unless x is (batch, tokens, d_in) and its tokens, after `start` ones, fit."""
    check(x.dim() == 3 and x.shape[2] == d_in, lambda: "the input must have shape "
          f"(batch, tokens, d_in={d_in}), got {tuple(x.shape)}")
    check(start + x.shape[1] <= context_length, lambda: f"the input has {x.shape[1]} tokens"
          + (f" after {start} cached ones" if start else "") + " but the attention layer was "
          f"built for context_length={context_length}; crop the text to its last "
          f"{context_length} tokens" + (" (reset() the cache, then feed them)" if start else ""))


class CausalAttention(nn.Module):
    """Single-head causal self-attention with dropout on the attention weights."""

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float,
                 qkv_bias: bool = False):
        super().__init__()
        _check_sizes(d_in, d_out, context_length, dropout)
        self.d_in, self.d_out = d_in, d_out
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)
        # 1 above the diagonal marks the future positions each query must not see.
        self.register_buffer("mask", torch.ones(context_length, context_length).triu(diagonal=1))

    def forward(self, x):
        _check_input(x, self.d_in, len(self.mask))
        b, num_tokens, d_in = x.shape
        queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)
        attn_scores = queries @ keys.transpose(1, 2)
        attn_scores = attn_scores.masked_fill(self.mask.bool()[:num_tokens, :num_tokens],
                                              -torch.inf)
        attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        return self.dropout(attn_weights) @ values


# %% attention.ipynb cell 88, 3.7.3 The exported classes: input checks

class SelfAttention_v1(nn.Module):
    """Self-attention with raw weight matrices, to show the arithmetic."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.W_query = nn.Parameter(torch.rand(d_in, d_out))
        self.W_key = nn.Parameter(torch.rand(d_in, d_out))
        self.W_value = nn.Parameter(torch.rand(d_in, d_out))

    def forward(self, x):
        check(x.dim() == 2, lambda: "SelfAttention_v1 takes one (tokens, d_in) sequence, got "
              f"{x.shape}")
        queries, keys, values = x @ self.W_query, x @ self.W_key, x @ self.W_value
        attn_scores = queries @ keys.T
        attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        return attn_weights @ values


class MultiHeadAttentionWrapper(nn.Module):
    """Several CausalAttention heads run one after another; outputs concatenated."""

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float,
                 num_heads: int, qkv_bias: bool = False):
        super().__init__()
        check_count("num_heads", num_heads, 1)
        self.heads = nn.ModuleList(
            CausalAttention(d_in, d_out, context_length, dropout, qkv_bias)
            for _ in range(num_heads)
        )

    def forward(self, x):
        return torch.cat([head(x) for head in self.heads], dim=-1)


# %% attention.ipynb cell 91, 3.7.4 The final `MultiHeadAttention`

def attend(queries, keys, values, future, start, dropout, use_sdpa, training):
    """Masked softmax attention over (batch, heads, tokens, head_dim) tensors: `future` marks
    the keys each query may not see; `start` counts the cached positions."""
    if use_sdpa:  # with nothing cached, is_causal lets PyTorch pick its fastest kernel
        # SDPA's boolean mask marks the keys a query MAY see: the opposite of `future`
        return nn.functional.scaled_dot_product_attention(
            queries, keys, values, attn_mask=None if start == 0 else ~future,
            is_causal=start == 0, dropout_p=dropout.p if training else 0.0)
    attn_scores = queries @ keys.transpose(2, 3)  # every query against every key
    attn_scores = attn_scores.masked_fill(future, -torch.inf)
    attn_weights = torch.softmax(attn_scores / queries.shape[-1] ** 0.5, dim=-1)
    return dropout(attn_weights) @ values  # (batch, heads, tokens, head_dim)


# %% attention.ipynb cell 92, 3.7.4 The final `MultiHeadAttention`

class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention with the heads split from one projection each.

    use_sdpa=True: PyTorch's fused kernel; forward(x, kv_cache): continue a cached sequence."""

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float,
                 num_heads: int, qkv_bias: bool = False, use_sdpa: bool = False):
        super().__init__()
        _check_sizes(d_in, d_out, context_length, dropout, num_heads)
        # d_in is kept for the input check (the projections may be replaced by other layers)
        self.d_in, self.d_out = d_in, d_out
        self.num_heads, self.head_dim = num_heads, d_out // num_heads
        self.use_sdpa = use_sdpa
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)  # mixes the concatenated heads
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mask", torch.ones(context_length, context_length).triu(diagonal=1))

    def split_heads(self, x):
        """(batch, tokens, d_out) -> (batch, heads, tokens, head_dim)"""
        batch, num_tokens, _ = x.shape
        return x.view(batch, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x, kv_cache=None):
        start = kv_cache.length if kv_cache is not None else 0  # positions already seen
        _check_input(x, self.d_in, len(self.mask), start)
        batch, num_tokens, _ = x.shape
        queries = self.split_heads(self.W_query(x))
        keys = self.split_heads(self.W_key(x))
        values = self.split_heads(self.W_value(x))
        if kv_cache is not None:  # prepend the earlier tokens' keys and values
            keys, values = kv_cache.update(keys, values)
        # query i sits at position start + i and may see keys 0 .. start + i
        future = self.mask[start:start + num_tokens, :start + num_tokens].bool()
        context = attend(queries, keys, values, future, start, self.dropout, self.use_sdpa,
                         self.training)
        context = context.transpose(1, 2).contiguous().view(batch, num_tokens, self.d_out)
        return self.out_proj(context)


__all__ = [
    'SelfAttention_v2',
    'KVCache',
    'CausalAttention',
    'SelfAttention_v1',
    'MultiHeadAttentionWrapper',
    'attend',
    'MultiHeadAttention',
]
