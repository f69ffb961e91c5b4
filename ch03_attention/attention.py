# Generated from ch03_attention/attention.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% attention.ipynb cell 2, Chapter 3 — Coding attention mechanisms

"""Chapter 3: attention, from trainable self-attention to multi-head causal attention."""

import torch
from torch import nn


# %% attention.ipynb cell 32, 3.4.2 A compact self-attention class

class SelfAttention_v1(nn.Module):
    """Self-attention with raw weight matrices, to show the arithmetic."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.W_query = nn.Parameter(torch.rand(d_in, d_out))
        self.W_key = nn.Parameter(torch.rand(d_in, d_out))
        self.W_value = nn.Parameter(torch.rand(d_in, d_out))

    def forward(self, x):
        queries, keys, values = x @ self.W_query, x @ self.W_key, x @ self.W_value
        attn_scores = queries @ keys.T
        attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        return attn_weights @ values


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


# %% attention.ipynb cell 53, 3.5.3 A causal attention class

class CausalAttention(nn.Module):
    """Single-head causal self-attention with dropout on the attention weights."""

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float,
                 qkv_bias: bool = False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)
        # 1 above the diagonal marks the future positions each query must not see.
        self.register_buffer("mask", torch.ones(context_length, context_length).triu(diagonal=1))

    def forward(self, x):
        b, num_tokens, d_in = x.shape
        queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)
        attn_scores = queries @ keys.transpose(1, 2)
        attn_scores = attn_scores.masked_fill(self.mask.bool()[:num_tokens, :num_tokens],
                                              -torch.inf)
        attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        return self.dropout(attn_weights) @ values


# %% attention.ipynb cell 59, 3.6.1 Stacking single-head modules

class MultiHeadAttentionWrapper(nn.Module):
    """Several CausalAttention heads run one after another; outputs concatenated."""

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float,
                 num_heads: int, qkv_bias: bool = False):
        super().__init__()
        self.heads = nn.ModuleList(
            CausalAttention(d_in, d_out, context_length, dropout, qkv_bias)
            for _ in range(num_heads)
        )

    def forward(self, x):
        return torch.cat([head(x) for head in self.heads], dim=-1)


# %% attention.ipynb cell 73, 3.7.3 The exported classes: input checks

from shared.checks import check, check_fits_context  # noqa: E402 - imported where first used
from shared.utils import inputs_trusted  # noqa: E402


# %% attention.ipynb cell 75, 3.7.4 The final `MultiHeadAttention`

def causal_mask(num_queries: int, start: int, num_keys: int | None = None,
                window: int | None = None, device=None) -> torch.Tensor:
    """(num_queries, num_keys) bools, True for a key the query may NOT see. Query i sits at
    position start + i; the keys are the num_keys latest positions up to the last query
    (default: all, start + num_queries); window: each query sees at most its `window` latest
    positions, itself included."""
    end = start + num_queries  # one past the last query's position
    num_keys = end if num_keys is None else num_keys
    if not inputs_trusted():  # (not in generate_text's steps after its first: shared.utils)
        check(0 < num_keys <= end or num_keys == end == 0,  # an input of no tokens: no keys
              lambda: f"num_keys must be in 1..{end}, got {num_keys}")
        check(window is None or window >= 1, lambda: f"window must be >= 1, got {window=}")
    queries = torch.arange(start, end, device=device)[:, None]  # a column of positions
    keys = torch.arange(end - num_keys, end, device=device)  # a row of positions
    hidden = keys > queries  # the future
    if window is not None:
        hidden |= keys <= queries - window  # too far back
    return hidden


# %% attention.ipynb cell 76, 3.7.4 The final `MultiHeadAttention`

def attend(queries, keys, values, start, dropout, use_sdpa, training, *, window=None,
           scale=None):
    """Causal softmax attention over (batch, heads, tokens, head_dim) tensors, masked by
    causal_mask: the queries sit at positions start onwards, the keys are the latest positions
    up to the last query. window: a sliding window. Keys and values may have fewer heads, each
    shared by a group of query heads. scale: the scores' factor (default 1 / sqrt(head_dim)).
    training switches dropout on the fused path; the explicit path follows dropout's own mode."""
    num_queries, num_keys = queries.shape[2], keys.shape[2]
    grouped = keys.shape[1] != queries.shape[1]
    if use_sdpa:
        plain = start == 0 and num_queries == num_keys and (window is None or window >= num_keys)
        sees_all = num_queries == 1 and (window is None or window >= num_keys)  # a new token
        # SDPA's boolean mask marks the keys a query MAY see: the opposite of causal_mask's
        allowed = None if plain or sees_all else ~causal_mask(num_queries, start, num_keys,
                                                              window, queries.device)
        return nn.functional.scaled_dot_product_attention(
            queries, keys, values, attn_mask=allowed, is_causal=plain,
            dropout_p=dropout.p if training else 0.0, scale=scale, enable_gqa=grouped)
    if grouped:  # a copy of each key and value head for every query head of its group
        keys = keys.repeat_interleave(queries.shape[1] // keys.shape[1], dim=1)
        values = values.repeat_interleave(queries.shape[1] // values.shape[1], dim=1)
    attn_scores = queries @ keys.transpose(2, 3)  # every query against every key
    hidden = causal_mask(num_queries, start, num_keys, window, queries.device)
    attn_scores = attn_scores.masked_fill(hidden, -torch.inf)
    attn_scores = attn_scores / queries.shape[-1] ** 0.5 if scale is None else attn_scores * scale
    attn_weights = torch.softmax(attn_scores, dim=-1)
    return dropout(attn_weights) @ values  # (batch, heads, tokens, head_dim)


# %% attention.ipynb cell 77, 3.7.4 The final `MultiHeadAttention`

class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention with the heads split from one projection each.

    use_sdpa=True: PyTorch's fused kernel; forward(x, kv_cache): continue a cached sequence."""

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float,
                 num_heads: int, qkv_bias: bool = False, use_sdpa: bool = False):
        super().__init__()
        check(type(num_heads) is int and num_heads >= 1 and d_out % num_heads == 0,
              lambda: f"num_heads must be a positive int dividing d_out={d_out}, got {num_heads!r}")
        self.d_out, self.num_heads, self.head_dim = d_out, num_heads, d_out // num_heads
        self.use_sdpa = use_sdpa
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)  # mixes the concatenated heads
        self.dropout = nn.Dropout(dropout)
        # the book's mask, kept for its state_dict and the length check; attend builds its own
        self.register_buffer("mask", torch.ones(context_length, context_length).triu(diagonal=1))

    def split_heads(self, x):
        """(batch, tokens, d_out) -> (batch, heads, tokens, head_dim)"""
        batch, num_tokens, _ = x.shape
        return x.view(batch, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x, kv_cache=None):
        start = kv_cache.length if kv_cache is not None else 0  # positions already seen
        batch, num_tokens, _ = x.shape
        if not inputs_trusted():  # once per generate_text call, not per token (shared.utils)
            check_fits_context(num_tokens, len(self.mask), start, "the attention layer")
        queries = self.split_heads(self.W_query(x))
        keys = self.split_heads(self.W_key(x))
        values = self.split_heads(self.W_value(x))
        if kv_cache is not None:  # prepend the earlier tokens' keys and values
            keys, values = kv_cache.update(keys, values)
        # query i sits at position start + i and may see keys 0 .. start + i
        context = attend(queries, keys, values, start, self.dropout, self.use_sdpa,
                         self.training)
        context = context.transpose(1, 2).contiguous().view(batch, num_tokens, self.d_out)
        return self.out_proj(context)


__all__ = [
    'SelfAttention_v1',
    'SelfAttention_v2',
    'CausalAttention',
    'MultiHeadAttentionWrapper',
    'causal_mask',
    'attend',
    'MultiHeadAttention',
]
