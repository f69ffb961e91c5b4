# Generated from ch04_gpt_model/beyond_4_linear_attention.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export linear_attention`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_4_linear_attention.ipynb cell 7, 4.9 From linear attention to Gated DeltaNet

"""Chapter 4, section 4.9 (beyond the book): from linear attention to Gated DeltaNet, the layer
of Qwen3-Next's three blocks in four. A state of fixed size takes the KV cache's place; the
delta rule writes to it; the plain recurrence and the chunked form compute the same; a short
convolution and an output gate surround it; DeltaNetCache carries the state while decoding."""

import torch
from torch import nn

from shared.checks import check_divisible


# %% beyond_4_linear_attention.ipynb cell 12, 4.9.2 The delta rule, and a gate that forgets

def gated_delta_rule(queries, keys, values, decay, beta, state=None):
    """Gated DeltaNet's recurrence, one token at a time. queries and keys (batch, heads, tokens,
    key_dim), values (batch, heads, tokens, value_dim); decay (batch, heads, tokens), the log of
    each step's forgetting factor (<= 0); beta (batch, heads, tokens), each step's writing
    strength in (0, 1]; state (batch, heads, key_dim, value_dim), None for zeros. Returns the
    outputs (batch, heads, tokens, value_dim) and the last state."""
    if state is None:
        state = values.new_zeros(*keys.shape[:2], keys.shape[-1], values.shape[-1])
    outputs = []
    for t in range(keys.shape[2]):
        q, k, v = queries[:, :, t], keys[:, :, t], values[:, :, t]  # (batch, heads, dim)
        state = state * decay[:, :, t, None, None].exp()  # forget a little of everything
        recalled = torch.einsum("bhk,bhkv->bhv", k, state)  # what the state holds for key k
        written = beta[:, :, t, None] * (v - recalled)  # the delta rule: write the error only
        state = state + torch.einsum("bhk,bhv->bhkv", k, written)
        outputs.append(torch.einsum("bhk,bhkv->bhv", q, state))  # read with the query
    return torch.stack(outputs, dim=2), state


# %% beyond_4_linear_attention.ipynb cell 17, 4.9.3 The chunked form: the same numbers, trained ...

def gated_delta_rule_chunked(queries, keys, values, decay, beta, state=None, chunk_size=64):
    """gated_delta_rule's outputs and last state, chunk_size tokens at a time: inside a chunk,
    matrix products and one triangular solve in place of the loop over its tokens; only the
    state passes from one chunk to the next."""
    if state is None:
        state = values.new_zeros(*keys.shape[:2], keys.shape[-1], values.shape[-1])
    outputs = []
    for start in range(0, keys.shape[2], chunk_size):
        chunk = slice(start, start + chunk_size)
        q, k, v = queries[:, :, chunk], keys[:, :, chunk], values[:, :, chunk]
        b = beta[:, :, chunk, None]
        # G[t] = log of the decay from the chunk's start to step t; D[t, s] = exp(G[t] - G[s]),
        # the decay from step s to step t, for s <= t (0 above the diagonal: the future)
        G = decay[:, :, chunk].cumsum(dim=-1)
        size = G.shape[-1]  # chunk_size, or fewer in the last chunk
        future = torch.ones(size, size, dtype=torch.bool, device=G.device).triu(1)
        D = (G[..., :, None] - G[..., None, :]).masked_fill(future, -torch.inf).exp()
        # Each step writes u[t] = b[t] (v[t] - k[t] S), S being the state just before it: the
        # chunk's first state, decayed, plus the chunk's earlier writes, decayed. All of the
        # chunk's writes at once: (I + A) u = b (v - exp(G) k S0), A[t, s] = b[t] D[t, s] k[t].k[s]
        # for s < t, a lower-triangular system
        A = (b * (k @ k.transpose(-1, -2)) * D).tril(-1)
        identity = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        u = torch.linalg.solve_triangular(identity + A, b * (v - (k * G.exp()[..., None]) @ state),
                                          upper=False)
        # each step reads its state: the first one, decayed, and the writes up to and with its own
        outputs.append((q * G.exp()[..., None]) @ state + (q @ k.transpose(-1, -2) * D) @ u)
        # the chunk's last state: the first one decayed over the chunk, plus every write decayed
        # from its step to the end
        to_end = (G[..., -1:] - G).exp()[..., None]
        state = state * G[..., -1:, None].exp() + (k * to_end).transpose(-1, -2) @ u
    return torch.cat(outputs, dim=2), state


# %% beyond_4_linear_attention.ipynb cell 22, 4.9.4 Qwen3-Next's Gated DeltaNet layer

class GatedRMSNorm(nn.Module):
    """RMSNorm (4.8.1) of each head's output, then times silu(gate): Gated DeltaNet's output
    gate."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x, gate):
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (self.weight * x32.to(x.dtype) * nn.functional.silu(gate.float())).to(x.dtype)


# %% beyond_4_linear_attention.ipynb cell 23, 4.9.4 Qwen3-Next's Gated DeltaNet layer

class DeltaNetCache:
    """What a GatedDeltaNet layer carries from one call to the next, in a KVCache's place
    (ModernGPTModel.make_kv_caches makes it): the last conv_kernel - 1 inputs of its
    convolution and its state (batch, heads, key_dim, value_dim), a fixed size however many
    tokens came before."""

    window = None  # as a global layer's KVCache has it: ModernGPTModel reads both alike

    def __init__(self):
        self.length = 0  # the tokens seen
        self.conv_inputs = self.state = None
        self.model = lambda: None  # its model, set by make_kv_caches

    def reset(self):
        """Forget the tokens seen (before a new prompt)."""
        self.length = 0
        self.conv_inputs = self.state = None


# %% beyond_4_linear_attention.ipynb cell 24, 4.9.4 Qwen3-Next's Gated DeltaNet layer

def l2_normalize(x, eps: float = 1e-6):
    """x / |x| over the last dimension, as Qwen3-Next computes it."""
    return x * torch.rsqrt(x.pow(2).sum(dim=-1, keepdim=True) + eps)


# %% beyond_4_linear_attention.ipynb cell 25, 4.9.4 Qwen3-Next's Gated DeltaNet layer

class GatedDeltaNet(nn.Module):
    """Qwen3-Next's linear-attention layer: queries, keys and values through a short causal
    convolution, the gated delta rule (key_heads query and key heads, each shared by
    value_heads // key_heads value heads), and each value head's output normed and gated. It
    is called as GroupedQueryAttention is (positions are not given to it: the order of the
    writes is all it knows of them)."""

    window = None  # what ModernGPTModel asks of a layer: none, as a global layer's

    def __init__(self, d_in: int, key_heads: int, value_heads: int, key_dim: int,
                 value_dim: int, conv_kernel: int, norm_eps: float = 1e-6, chunk_size: int = 64):
        super().__init__()
        check_divisible("value_heads", value_heads, "key_heads", key_heads)
        self.key_heads, self.value_heads = key_heads, value_heads
        self.key_dim, self.value_dim, self.chunk_size = key_dim, value_dim, chunk_size
        group = value_heads // key_heads * value_dim  # the value widths one key head serves
        # one layer for queries, keys, values and the output gate, grouped by key head as
        # Qwen3-Next stores it; one for each value head's writing strength and forgetting rate
        self.W_qkvz = nn.Linear(d_in, key_heads * (2 * key_dim + 2 * group), bias=False)
        self.W_ba = nn.Linear(d_in, 2 * value_heads, bias=False)
        channels = 2 * key_heads * key_dim + value_heads * value_dim
        self.conv = nn.Conv1d(channels, channels, conv_kernel, groups=channels, bias=False)
        # each head's forgetting: decay = -exp(A_log) * softplus(a + dt_bias), Mamba 2's form;
        # exp(A_log) starts in (0.01, 16), as transformers' Qwen3-Next starts it
        self.A_log = nn.Parameter(torch.empty(value_heads).uniform_(0.01, 16).log())
        self.dt_bias = nn.Parameter(torch.ones(value_heads))
        self.norm = GatedRMSNorm(value_dim, norm_eps)
        self.out_proj = nn.Linear(value_heads * value_dim, d_in, bias=False)

    def forward(self, x, rope=None, kv_cache=None):
        """x (batch, tokens, d_in); rope is not read; kv_cache: a DeltaNetCache."""
        batch, num_tokens, _ = x.shape
        kh, vh, kd, vd = self.key_heads, self.value_heads, self.key_dim, self.value_dim
        qkvz = self.W_qkvz(x).view(batch, num_tokens, kh, -1)
        q, k, v, z = qkvz.split([kd, kd, vh // kh * vd, vh // kh * vd], dim=-1)
        b, a = self.W_ba(x).view(batch, num_tokens, kh, -1).chunk(2, dim=-1)
        # the short convolution: each channel mixes its own last conv_kernel inputs, the
        # cached ones first (zeros before the first token)
        mixed = torch.cat([q.flatten(2), k.flatten(2), v.flatten(2)], dim=-1).transpose(1, 2)
        width = self.conv.kernel_size[0] - 1
        cached = kv_cache.conv_inputs if kv_cache is not None else None
        mixed = torch.cat([mixed.new_zeros(*mixed.shape[:2], width) if cached is None
                           else cached, mixed], dim=-1)
        if kv_cache is not None:  # a copy: a slice would keep the whole prompt's inputs
            kv_cache.conv_inputs = mixed[..., mixed.shape[-1] - width:].clone()
        mixed = nn.functional.silu(self.conv(mixed)).transpose(1, 2)
        q, k, v = mixed.split([kh * kd, kh * kd, vh * vd], dim=-1)
        # float32 from here, as Qwen3-Next computes the rule; unit-length queries and keys, and
        # each key head's query and key repeated for the value heads it serves
        q = l2_normalize(q.float().view(batch, num_tokens, kh, kd)) * kd ** -0.5
        k = l2_normalize(k.float().view(batch, num_tokens, kh, kd))
        q, k = q.repeat_interleave(vh // kh, dim=2), k.repeat_interleave(vh // kh, dim=2)
        v = v.float().view(batch, num_tokens, vh, vd)
        beta = b.reshape(batch, num_tokens, vh).sigmoid().float()  # the sigmoid in x's dtype, as in
        # Qwen3-Next's code, then float32
        decay = -self.A_log.float().exp() * nn.functional.softplus(
            a.reshape(batch, num_tokens, vh).float() + self.dt_bias)
        out, state = gated_delta_rule_chunked(
            *(t.transpose(1, 2) for t in (q, k, v, decay, beta)),
            state=kv_cache.state if kv_cache is not None else None, chunk_size=self.chunk_size)
        if kv_cache is not None:
            kv_cache.state, kv_cache.length = state, kv_cache.length + num_tokens
        out = self.norm(out.transpose(1, 2).to(x.dtype), z.reshape(batch, num_tokens, vh, vd))
        return self.out_proj(out.flatten(2))


__all__ = [
    'gated_delta_rule',
    'gated_delta_rule_chunked',
    'GatedRMSNorm',
    'DeltaNetCache',
    'l2_normalize',
    'GatedDeltaNet',
]
