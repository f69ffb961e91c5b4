# Generated from ch04_gpt_model/beyond_3_modern_blocks.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export modern`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_3_modern_blocks.ipynb cell 4, 4.8 Beyond GPT-2: the block of today's open models

"""Chapter 4, section 4.8 (beyond the book): the parts of today's open models (Llama 3, Qwen3,
Gemma 3, Olmo 3, gpt-oss, Qwen3-Next, DeepSeek V3, Gemma 4): RMSNorm, rotary position
embeddings, SwiGLU, grouped-query attention with QK-norm, a mixture of experts, sliding windows,
Gemma 3's, Olmo 3's, gpt-oss's and Qwen3-Next's options, DeepSeek V3's latent attention and
routing, Gemma 4's per-layer inputs and shared keys and values, and ModernGPTModel, the
chapter's GPTModel built from them, with 4.9's Gated DeltaNet layers where a
configuration asks for them."""

import math

import torch
from torch import nn

from ch03_attention.attention import attend, causal_mask
from ch04_gpt_model.final_model import GPTModel
from ch04_gpt_model.linear_attention import DeltaNetCache, GatedDeltaNet
from shared.checks import check, check_divisible, check_keys
from shared.utils import inputs_trusted


# %% beyond_3_modern_blocks.ipynb cell 6, 4.8.1 RMSNorm

class RMSNorm(nn.Module):
    """Divide each vector by its root mean square, then scale by a learned weight: LayerNorm
    without the mean and the shift. unit_offset (Gemma's, 4.8.8): scale by 1 + weight, the
    weight starting at 0. learned=False: no weight at all (Gemma 4's norms of the values and of
    the router's input, 4.8.13); float32_scale: scale in float32 and cast once, as Olmo 3,
    gpt-oss and Gemma 4 do (the same numbers in float32, a rounding apart in bfloat16)."""

    def __init__(self, emb_dim: int, eps: float = 1e-6, unit_offset: bool = False,
                 learned: bool = True, float32_scale: bool = False):
        super().__init__()
        self.eps, self.unit_offset, self.float32_scale = eps, unit_offset, float32_scale
        self.weight = nn.Parameter(torch.zeros(emb_dim) if unit_offset else torch.ones(emb_dim)
                                   ) if learned else None

    def forward(self, x):
        x32 = x.float()  # the statistic in float32, as Llama and Qwen3 compute it
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        if self.weight is None:
            return x32.to(x.dtype)
        if self.unit_offset:  # Gemma scales in float32 too, and casts last
            return (x32 * (1.0 + self.weight.float())).to(x.dtype)
        if self.float32_scale:
            return (x32 * self.weight.float()).to(x.dtype)
        return self.weight * x32.to(x.dtype)


# %% beyond_3_modern_blocks.ipynb cell 10, 4.8.2 Rotary position embeddings (RoPE)

def rope_frequencies(head_dim: int, base: float, rope_freq: dict | None = None) -> torch.Tensor:
    """The head_dim // 2 turning speeds of RoPE (radians per position), fastest first.
    rope_freq (Llama 3.1 and later, or YaRN's with "type": "yarn", 4.8.9): slow the slow pairs
    down for a longer context."""
    freqs = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    if rope_freq is None:
        return freqs
    factor, old_context = rope_freq["factor"], rope_freq["original_context_length"]
    if rope_freq.get("type") == "yarn":  # the blend goes by turns over the old context (4.8.9)
        def pair_turning(turns):  # the pair, as a fraction, that turns `turns` times in it
            return head_dim * math.log(old_context / (turns * 2 * math.pi)) / (2 * math.log(base))

        fast, slow = pair_turning(rope_freq["beta_fast"]), pair_turning(rope_freq["beta_slow"])
        if rope_freq.get("truncate", True):  # whole pairs, as YaRN's code rounds them
            fast, slow = math.floor(fast), math.ceil(slow)
        # the bounds as YaRN's code and transformers' set them (the upper in head_dim's units),
        # and a ramp of one pair's width where they meet
        fast, slow = max(fast, 0), min(slow, head_dim - 1)
        slowed = ((torch.arange(head_dim // 2) - fast) / (slow - fast or 1e-3)).clamp(0, 1)
        return slowed * freqs / factor + (1 - slowed) * freqs
    low, high = rope_freq["low_freq_factor"], rope_freq["high_freq_factor"]
    wavelengths = 2 * torch.pi / freqs  # positions per full turn
    # 0 for pairs turning slower than the old context shows (divide by factor), 1 for fast ones
    # (keep), a blend between
    keep = ((old_context / wavelengths - low) / (high - low)).clamp(0, 1)
    return (1 - keep) * freqs / factor + keep * freqs


def rope_angles(freqs: torch.Tensor, start: int, num_tokens: int,
                attention_factor: float = 1.0):
    """cos and sin of position * speed, (num_tokens, head_dim), for positions start onwards;
    pair i is numbers i and i + head_dim / 2, so the speeds appear twice. attention_factor:
    YaRN's, on both (4.8.9)."""
    positions = torch.arange(start, start + num_tokens, dtype=torch.float32,
                             device=freqs.device)
    angles = positions[:, None] * freqs[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos() * attention_factor, angles.sin() * attention_factor


def rope_attention_factor(rope_freq: dict | None) -> float:
    """YaRN's factor on cos and sin, so on the scores its square (4.8.9): the configuration's
    attention_factor, else 0.1 ln(factor) + 1; 1 for any other RoPE."""
    if not rope_freq or rope_freq.get("type") != "yarn":
        return 1.0
    return rope_freq.get("attention_factor") or 0.1 * math.log(rope_freq["factor"]) + 1.0


def apply_rope(x, cos, sin):
    """Turn each pair of x (batch, heads, tokens, head_dim) by its position's angle; cos and
    sin narrower than head_dim (Qwen3-Next's, 4.8.11) turn the first numbers only."""
    x, kept = x[..., :cos.shape[-1]], x[..., cos.shape[-1]:]
    first, second = x.chunk(2, dim=-1)
    turned_90 = torch.cat([-second, first], dim=-1)  # each pair turned by a right angle
    x = x * cos.to(x.dtype) + turned_90 * sin.to(x.dtype)
    return torch.cat([x, kept], dim=-1) if kept.shape[-1] else x


# %% beyond_3_modern_blocks.ipynb cell 18, 4.8.3 SwiGLU: a gated feed-forward

class SwiGLU(nn.Module):
    """The gated feed-forward of Llama and Qwen: down(silu(gate(x)) * up(x)), without biases.
    activation="gelu_tanh": GELU's tanh approximation gates instead, Gemma's GeGLU (4.8.8);
    "clamped_silu", gpt-oss's (4.8.10): the gate capped at limit from above and passed through
    g * sigmoid(alpha * g), up clamped to [-limit, limit] and taken plus 1; bias: biases on the
    three layers (gpt-oss's)."""

    def __init__(self, emb_dim: int, hidden_dim: int, activation: str = "silu",
                 bias: bool = False, alpha: float | None = None, limit: float | None = None):
        super().__init__()
        self.gate = nn.Linear(emb_dim, hidden_dim, bias=bias)
        self.up = nn.Linear(emb_dim, hidden_dim, bias=bias)
        self.down = nn.Linear(hidden_dim, emb_dim, bias=bias)
        self.activation, self.alpha, self.limit = activation, alpha, limit

    def forward(self, x):
        gate = self.gate(x)
        if self.activation == "gelu_tanh":
            return self.down(nn.functional.gelu(gate, approximate="tanh") * self.up(x))
        if self.activation == "clamped_silu":  # gpt-oss's: |product| < limit * (limit + 1)
            gate, up = gate.clamp(max=self.limit), self.up(x).clamp(-self.limit, self.limit)
            return self.down(gate * torch.sigmoid(self.alpha * gate) * (up + 1))
        return self.down(nn.functional.silu(gate) * self.up(x))


# %% beyond_3_modern_blocks.ipynb cell 21, 4.8.4 Grouped-query attention and QK-norm

def attend_with_sinks(queries, keys, values, start, sinks, dropout, *, window=None, scale=None):
    """attend's explicit path with one more logit per head, sinks (heads,), in every query's
    softmax (gpt-oss's, 4.8.10): a key without a value, so the weights on the real keys may sum
    to less than 1."""
    groups = queries.shape[1] // keys.shape[1]  # each key and value head serves a group
    keys, values = keys.repeat_interleave(groups, 1), values.repeat_interleave(groups, 1)
    scores = (queries @ keys.transpose(2, 3)) * (scale or queries.shape[-1] ** -0.5)
    hidden = causal_mask(queries.shape[2], start, keys.shape[2], window, queries.device)
    scores = scores.masked_fill(hidden, -torch.inf)
    sink = sinks.to(scores.dtype).view(1, -1, 1, 1).expand(*scores.shape[:3], 1)
    weights = torch.softmax(torch.cat([scores, sink], dim=-1), dim=-1)[..., :-1]  # sink out
    return dropout(weights) @ values


class GroupedQueryAttention(nn.Module):
    """Causal attention in which each group of num_heads // num_kv_groups query heads shares a
    key head and a value head; positions enter as RoPE; qk_norm: RMSNorm on every head (with
    qk_norm_across_heads, Olmo's, 4.8.9: one RMSNorm over all heads, before they are split);
    window: a local layer's sliding window (4.8.7), None for a global layer; scale: the
    scores' factor (None: 1 / sqrt(head_dim)) and norm_unit_offset: Gemma 3's (4.8.8),
    norm_float32_scale: RMSNorm's float32_scale for the QK-norm; sinks
    (a learned logit per head in every softmax) and out_bias: gpt-oss's (4.8.10); gate:
    Qwen3-Next's (4.8.11), W_query also makes each head a gate for its output; Gemma 4's
    (4.8.13): values_from_keys, the values are the keys before their norm and RoPE (no
    W_value), value_norm, an RMSNorm without weight on every value head, and reuse_kv, no keys
    or values of its own: those forward finds in shared_kv."""

    def __init__(self, d_in: int, num_heads: int, num_kv_groups: int, head_dim: int,
                 dropout: float = 0.0, qkv_bias: bool = False, qk_norm: bool = False,
                 norm_eps: float = 1e-6, use_sdpa: bool = False, window: int | None = None,
                 scale: float | None = None, norm_unit_offset: bool = False,
                 qk_norm_across_heads: bool = False, sinks: bool = False,
                 out_bias: bool = False, gate: bool = False, values_from_keys: bool = False,
                 value_norm: bool = False, reuse_kv: bool = False,
                 norm_float32_scale: bool = False):
        super().__init__()
        check_divisible("num_heads", num_heads, "num_kv_groups", num_kv_groups)
        self.num_heads, self.num_kv_groups, self.head_dim = num_heads, num_kv_groups, head_dim
        self.use_sdpa, self.window, self.scale, self.gate = use_sdpa, window, scale, gate
        self.values_from_keys, self.reuse_kv = values_from_keys, reuse_kv
        # with a gate, each head's query numbers, then its gate's
        self.W_query = nn.Linear(d_in, num_heads * head_dim * (2 if gate else 1), bias=qkv_bias)
        if not reuse_kv:
            self.W_key = nn.Linear(d_in, num_kv_groups * head_dim, bias=qkv_bias)
        if not (reuse_kv or values_from_keys):
            self.W_value = nn.Linear(d_in, num_kv_groups * head_dim, bias=qkv_bias)
        self.out_proj = nn.Linear(num_heads * head_dim, d_in, bias=out_bias)
        self.sinks = nn.Parameter(torch.zeros(num_heads)) if sinks else None
        self.across_heads = qk_norm_across_heads
        q_width, k_width = ((num_heads * head_dim, num_kv_groups * head_dim) if self.across_heads
                            else (head_dim, head_dim))
        self.q_norm, self.k_norm = (RMSNorm(width, norm_eps, norm_unit_offset,
                                            float32_scale=norm_float32_scale)
                                    if qk_norm else nn.Identity() for width in (q_width, k_width))
        self.v_norm = RMSNorm(head_dim, norm_eps, learned=False) if value_norm else nn.Identity()
        if reuse_kv:
            del self.k_norm, self.v_norm  # the keys and values come made
        self.dropout = nn.Dropout(dropout)

    def split_heads(self, x, heads):
        """(batch, tokens, heads * head_dim) -> (batch, heads, tokens, head_dim)"""
        return x.view(*x.shape[:2], heads, self.head_dim).transpose(1, 2)

    def forward(self, x, rope, kv_cache=None, shared_kv=None):
        """x (batch, tokens, d_in); rope: the (cos, sin) of rope_angles for these tokens;
        shared_kv (Gemma 4's, 4.8.13): a dict, for each kind of layer (its window), of the
        keys, values and start of the latest layer of that kind that made its own."""
        start = kv_cache.length if kv_cache is not None else 0
        batch, num_tokens, _ = x.shape
        queries = self.W_query(x)
        if self.gate:  # Qwen3-Next's: each head's second half is its output's gate
            queries, gate = queries.view(batch, num_tokens, self.num_heads, -1).chunk(2, dim=-1)
            queries = queries.reshape(batch, num_tokens, -1)
        if self.reuse_kv:  # an earlier layer's, with its start: these queries' positions
            keys, values, start = shared_kv[self.window]
            queries = apply_rope(self.q_norm(self.split_heads(queries, self.num_heads)), *rope)
        else:
            queries, keys, values = self.project(x, queries, rope)
            if kv_cache is not None:  # it stores the shared heads only
                keys, values = kv_cache.update(keys, values)
            if shared_kv is not None:  # for the later layers that reuse them
                shared_kv[self.window] = keys, values, start
        # query r sits at position start + r; attend shares each key head among its group
        if self.sinks is not None:  # no fused kernel takes sinks: the explicit path
            context = attend_with_sinks(queries, keys, values, start, self.sinks, self.dropout,
                                        window=self.window, scale=self.scale)
        else:
            context = attend(queries, keys, values, start, self.dropout, self.use_sdpa,
                             self.training, window=self.window, scale=self.scale)
        context = context.transpose(1, 2).reshape(batch, num_tokens, -1)
        if self.gate:  # each number of each head's output let through by its own gate
            context = context * torch.sigmoid(gate.reshape(batch, num_tokens, -1))
        return self.out_proj(context)

    def project(self, x, queries, rope):
        """The queries (made from x, not yet split), keys and values, split into heads,
        normed and turned by RoPE."""
        keys = self.W_key(x)
        # Gemma 4's global layers: the values are the keys as W_key makes them
        values = self.split_heads(keys if self.values_from_keys else self.W_value(x),
                                  self.num_kv_groups)
        if self.across_heads:  # Olmo's QK-norm: each token's queries (keys) as one vector
            queries, keys = self.q_norm(queries), self.k_norm(keys)
        queries = self.split_heads(queries, self.num_heads)
        keys = self.split_heads(keys, self.num_kv_groups)
        if not self.across_heads:
            queries, keys = self.q_norm(queries), self.k_norm(keys)
        return apply_rope(queries, *rope), apply_rope(keys, *rope), self.v_norm(values)


# %% beyond_3_modern_blocks.ipynb cell 23, 4.8.4 Grouped-query attention and QK-norm

class MultiHeadLatentAttention(nn.Module):
    """DeepSeek V3's attention (4.8.12): each token's keys and values are made from one latent
    vector of kv_rank numbers, which the cache keeps, with the rope_dim numbers of one rotated
    key that every head shares; each head's query and key are head_dim - rope_dim numbers
    without a position, then rope_dim turned by RoPE, and its value v_dim numbers. q_rank: the
    queries, too, from a latent of that width (None: directly); interleaved: the turned pairs
    are neighbours (DeepSeek's layout), not 4.8.2's halves."""

    window = None  # a global layer's

    def __init__(self, d_in: int, num_heads: int, head_dim: int, rope_dim: int, kv_rank: int,
                 v_dim: int, q_rank: int | None = None, interleaved: bool = False,
                 dropout: float = 0.0, norm_eps: float = 1e-6, use_sdpa: bool = False,
                 scale: float | None = None):
        super().__init__()
        self.num_heads, self.rope_dim, self.v_dim = num_heads, rope_dim, v_dim
        self.nope_dim, self.kv_rank = head_dim - rope_dim, kv_rank
        self.q_rank, self.interleaved = q_rank, interleaved
        self.use_sdpa, self.scale = use_sdpa, scale
        if q_rank is None:
            self.W_query = nn.Linear(d_in, num_heads * head_dim, bias=False)
        else:  # down to a latent, normed, and up to every head's query
            self.W_query_down = nn.Linear(d_in, q_rank, bias=False)
            self.query_norm = RMSNorm(q_rank, norm_eps)
            self.W_query_up = nn.Linear(q_rank, num_heads * head_dim, bias=False)
        # down to the latent and the shared rotated key; from the latent, up to each head's
        # key (the part without a position) and value
        self.W_kv_down = nn.Linear(d_in, kv_rank + rope_dim, bias=False)
        self.kv_norm = RMSNorm(kv_rank, norm_eps)
        self.W_kv_up = nn.Linear(kv_rank, num_heads * (self.nope_dim + v_dim), bias=False)
        self.out_proj = nn.Linear(num_heads * v_dim, d_in, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, rope, kv_cache=None):
        """x (batch, tokens, d_in); rope: the (cos, sin) of rope_angles, rope_dim wide."""
        start = kv_cache.length if kv_cache is not None else 0
        batch, num_tokens, _ = x.shape
        queries = (self.W_query(x) if self.q_rank is None
                   else self.W_query_up(self.query_norm(self.W_query_down(x))))
        queries = queries.view(batch, num_tokens, self.num_heads, -1).transpose(1, 2)
        q_nope, q_rot = queries.split([self.nope_dim, self.rope_dim], dim=-1)
        latent, k_rot = self.W_kv_down(x).split([self.kv_rank, self.rope_dim], dim=-1)
        latent, k_rot = self.kv_norm(latent)[:, None], k_rot[:, None]  # one "head" each
        if self.interleaved:  # pairs (0, 1), (2, 3), ... reordered as 4.8.2's halves
            q_rot, k_rot = (torch.cat([t[..., 0::2], t[..., 1::2]], dim=-1) for t in (q_rot, k_rot))
        q_rot, k_rot = apply_rope(q_rot, *rope), apply_rope(k_rot, *rope)
        if kv_cache is not None:  # the cache keeps the latent and the shared rotated key only
            latent, k_rot = kv_cache.update(latent, k_rot)
        # every head's key and value, from the latents of all the tokens so far
        keys_values = self.W_kv_up(latent[:, 0]).view(batch, -1, self.num_heads,
                                                      self.nope_dim + self.v_dim).transpose(1, 2)
        k_nope, values = keys_values.split([self.nope_dim, self.v_dim], dim=-1)
        keys = torch.cat([k_nope, k_rot.expand(-1, self.num_heads, -1, -1)], dim=-1)
        context = attend(torch.cat([q_nope, q_rot], dim=-1), keys, values, start, self.dropout,
                         self.use_sdpa, self.training, scale=self.scale)
        return self.out_proj(context.transpose(1, 2).reshape(batch, num_tokens, -1))


# %% beyond_3_modern_blocks.ipynb cell 25, 4.8.4 Grouped-query attention and QK-norm

OPEN_MODEL_CONFIGS = {
    "llama-3.2-1b": {
        "vocab_size": 128_256, "context_length": 131_072, "emb_dim": 2048, "n_heads": 32,
        "n_layers": 16, "hidden_dim": 8192, "n_kv_groups": 8, "rope_base": 500_000.0,
        "rope_freq": {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_context_length": 8192},
        "norm_eps": 1e-5, "tie_weights": True,
    },
    "qwen3-0.6b": {
        "vocab_size": 151_936, "context_length": 40_960, "emb_dim": 1024, "n_heads": 16,
        "n_layers": 28, "hidden_dim": 3072, "head_dim": 128, "n_kv_groups": 8, "qk_norm": True,
        "rope_base": 1_000_000.0, "norm_eps": 1e-6, "tie_weights": True,
    },
    "qwen3-30b-a3b-2507": {
        "vocab_size": 151_936, "context_length": 262_144, "emb_dim": 2048, "n_heads": 32,
        "n_layers": 48, "head_dim": 128, "n_kv_groups": 4, "qk_norm": True,
        "rope_base": 10_000_000.0, "num_experts": 128, "num_experts_per_tok": 8,
        "moe_hidden_dim": 768, "norm_eps": 1e-6,
    },
}


# %% beyond_3_modern_blocks.ipynb cell 29, 4.8.5 A mixture of experts

class MoEFeedForward(nn.Module):
    """num_experts SwiGLU networks and a router: each token goes to its num_experts_per_tok
    best-scoring experts, whose outputs are mixed by the router's probabilities. bias and the
    experts' activation, alpha and limit: gpt-oss's (4.8.10); shared_hidden_dim: a shared
    expert, which every token goes through, behind a learned gate (Qwen3-Next's, 4.8.11) or
    without one (shared_gate False, DeepSeek V3's); router: DeepSeek V3's routing by groups
    (4.8.12), a dict of its groups, topk_groups and scale; scaled_router: Gemma 4's (4.8.13), the
    router reads each token RMS-normed, times a learned scale per number and 1 / sqrt(emb_dim),
    and each chosen weight is times a learned scale of its expert (norm_eps: that norm's)."""

    def __init__(self, emb_dim: int, hidden_dim: int, num_experts: int,
                 num_experts_per_tok: int, norm_topk_prob: bool = True, *, bias: bool = False,
                 activation: str = "silu", alpha: float | None = None,
                 limit: float | None = None, shared_hidden_dim: int | None = None,
                 shared_gate: bool = True, router: dict | None = None,
                 scaled_router: bool = False, norm_eps: float = 1e-6):
        super().__init__()
        self.num_experts_per_tok, self.norm_topk_prob = num_experts_per_tok, norm_topk_prob
        self.router = nn.Linear(emb_dim, num_experts, bias=bias)
        if scaled_router:  # Gemma 4's
            self.router_norm = RMSNorm(emb_dim, norm_eps, learned=False)
            self.router_scale = nn.Parameter(torch.ones(emb_dim))
            self.expert_scales = nn.Parameter(torch.ones(num_experts))
        self.scaled_router = scaled_router
        self.experts = nn.ModuleList(SwiGLU(emb_dim, hidden_dim, activation, bias, alpha, limit)
                                     for _ in range(num_experts))
        shared = bool(shared_hidden_dim)
        self.shared_expert = SwiGLU(emb_dim, shared_hidden_dim, activation, bias, alpha,
                                    limit) if shared else None
        self.shared_gate = nn.Linear(emb_dim, 1, bias=False) if shared and shared_gate else None
        self.grouped = router is not None
        if self.grouped:  # DeepSeek V3's (4.8.12)
            self.groups, self.topk_groups = router["groups"], router["topk_groups"]
            # each group's two best scores rank it, and a token's experts must fit in the
            # groups it may use: else top-k fails in the first forward pass, or picks outside
            size = num_experts // self.groups
            check(size * self.groups == num_experts and size >= 2 and num_experts_per_tok <= size
                  * self.topk_groups and 1 <= self.topk_groups <= self.groups, lambda: f"router "
                  f"{router} needs groups of 2 or more of the {num_experts} experts, topk_groups "
                  f"in 1..groups, and num_experts_per_tok={num_experts_per_tok} in those groups")
            self.routed_scale = router["scale"]
            self.register_buffer("score_bias", torch.zeros(num_experts))  # set in training

    def forward(self, x, router_input=None):
        """router_input: what the router reads, if not x (Gemma 4's, 4.8.13)."""
        tokens = x.reshape(-1, x.shape[-1])  # (all tokens, emb_dim): each is routed alone
        routed = tokens if router_input is None else router_input.reshape(tokens.shape)
        if self.scaled_router:  # Gemma 4's
            routed = self.router_norm(routed) * self.router_scale * tokens.shape[-1] ** -0.5
        if self.grouped:
            weights, chosen = self.route_by_groups(routed)
        else:  # float32, as Qwen3 computes it: in bfloat16, close scores could swap their ranks
            probs = torch.softmax(self.router(routed), dim=-1, dtype=torch.float32)
            weights, chosen = probs.topk(self.num_experts_per_tok, dim=-1)  # (tokens, k) each
            if self.norm_topk_prob:
                weights = weights / weights.sum(dim=-1, keepdim=True)
        if self.scaled_router:
            weights = weights * self.expert_scales[chosen]
        weights = weights.to(x.dtype)
        out = torch.zeros_like(tokens)
        for e in chosen.unique().tolist():  # an expert no token chose does no work
            # the tokens that chose expert e, and which of their k choices it was
            token_ids, slot = (chosen == e).nonzero(as_tuple=True)
            expert_out = self.experts[e](tokens[token_ids]) * weights[token_ids, slot, None]
            out.index_add_(0, token_ids, expert_out)
        if self.shared_expert is not None:  # every token; Qwen3-Next gates it by a sigmoid
            shared = self.shared_expert(tokens)
            out = out + (shared if self.shared_gate is None
                         else torch.sigmoid(self.shared_gate(tokens)) * shared)
        return out.view_as(x)

    def route_by_groups(self, tokens):
        """DeepSeek V3's routing (4.8.12): a sigmoid score per expert; the experts chosen by
        score + score_bias among the topk_groups groups whose two best such scores sum
        highest; weighted by their scores (normalised with norm_topk_prob), times
        routed_scale. Returns the weights and the chosen experts, (tokens, k) each."""
        # in float32, as DeepSeek V3's code computes it, whatever the model's dtype
        scores = torch.sigmoid(nn.functional.linear(tokens.float(), self.router.weight.float()))
        biased = (scores + self.score_bias).view(len(tokens), self.groups, -1)
        best = biased.topk(2, dim=-1).values.sum(dim=-1).topk(self.topk_groups, dim=-1).indices
        outside = torch.ones_like(biased[..., 0], dtype=torch.bool).scatter_(1, best, False)
        chosen = biased.masked_fill(outside[..., None], -torch.inf).flatten(1).topk(
            self.num_experts_per_tok, dim=-1).indices
        weights = scores.gather(1, chosen)
        if self.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        return weights * self.routed_scale, chosen


# %% beyond_3_modern_blocks.ipynb cell 33, 4.8.6 `ModernGPTModel`

class ModernBlock(nn.Module):
    """Llama's and Qwen3's block: GPT-2's pre-norm shortcuts around RMSNorm, grouped-query
    attention with RoPE, and a SwiGLU (or mixture-of-experts) feed-forward; cfg["post_norms"]
    adds Gemma 3's norm on each sublayer's output (4.8.8), and cfg["pre_norms"] False leaves
    only those, as Olmo 3 does (4.8.9); Gemma 4 adds a third shortcut, for the token's own
    input to this layer, and scales the block's output (4.8.13)."""

    def __init__(self, cfg: dict, kind: str = "global", dense: bool = False,
                 reuse_kv: bool = False):
        """kind: "global", "local" (attention within cfg["sliding_window"], 4.8.7) or "linear"
        (Gated DeltaNet in attention's place, 4.9); dense: a SwiGLU of hidden_dim even in a
        model of experts (DeepSeek V3's first layers, 4.8.12); reuse_kv: attention with an
        earlier layer's keys and values (Gemma 4's last layers, 4.8.13)."""
        super().__init__()
        wide = kind == "global"  # Gemma 4's global layers may have sizes of their own (4.8.13)
        head_dim = wide and cfg["global_head_dim"] or cfg["head_dim"]
        kv_groups = wide and cfg["global_kv_groups"] or cfg["n_kv_groups"]
        scalar = cfg["query_pre_attn_scalar"]  # Gemma 3's query scaling (4.8.8)
        scale = None if scalar is None else scalar ** -0.5
        if cfg["mla"]:  # DeepSeek V3's latent attention (4.8.12)
            self.att = MultiHeadLatentAttention(
                cfg["emb_dim"], cfg["n_heads"], cfg["head_dim"], cfg["rope_dim"] or cfg["head_dim"],
                **cfg["mla"], dropout=cfg["drop_rate"], norm_eps=cfg["norm_eps"],
                use_sdpa=cfg["sdpa"], scale=scale)
        elif kind == "linear":  # Gated DeltaNet (4.9)
            self.att = GatedDeltaNet(cfg["emb_dim"], **cfg["deltanet"], norm_eps=cfg["norm_eps"])
        else:
            self.att = GroupedQueryAttention(
                cfg["emb_dim"], cfg["n_heads"], kv_groups, head_dim,
                dropout=cfg["drop_rate"], qkv_bias=cfg["qkv_bias"],
                qk_norm=cfg["qk_norm"] or cfg["qk_norm_across_heads"],  # across: a QK-norm too
                norm_eps=cfg["norm_eps"], use_sdpa=cfg["sdpa"],
                window=cfg["sliding_window"] if kind == "local" else None, scale=scale,
                norm_unit_offset=cfg["norm_unit_offset"],
                qk_norm_across_heads=cfg["qk_norm_across_heads"], sinks=cfg["attention_sinks"],
                out_bias=cfg["attention_out_bias"], gate=cfg["attention_gate"],
                values_from_keys=cfg["values_from_keys"] and kind == "global",
                value_norm=cfg["value_norm"], reuse_kv=reuse_kv,
                norm_float32_scale=cfg["norm_float32_scale"])
        swiglu = {"activation": cfg["ffn_activation"], "alpha": cfg["swiglu_alpha"],
                  "limit": cfg["swiglu_limit"], "bias": cfg["ffn_bias"]}  # gpt-oss's (4.8.10)
        if cfg["num_experts"] and not dense and not cfg["experts_beside_mlp"]:
            self.ff = MoEFeedForward(cfg["emb_dim"], cfg["moe_hidden_dim"], cfg["num_experts"],
                                     cfg["num_experts_per_tok"], cfg["norm_topk_prob"],
                                     shared_hidden_dim=cfg["shared_expert_dim"],
                                     shared_gate=cfg["shared_expert_gate"],
                                     router=cfg["moe_router"], **swiglu)
        else:  # Gemma 4's layers that reuse keys and values may be twice as wide
            wider = 2 if cfg["double_wide_mlp"] and reuse_kv else 1
            self.ff = SwiGLU(cfg["emb_dim"], cfg["hidden_dim"] * wider, **swiglu)

        def norm():
            return RMSNorm(cfg["emb_dim"], cfg["norm_eps"], cfg["norm_unit_offset"],
                           float32_scale=cfg["norm_float32_scale"])

        self.norm1 = norm() if cfg["pre_norms"] else nn.Identity()
        self.norm2 = norm() if cfg["pre_norms"] else nn.Identity()
        # Gemma 3 norms each sublayer's output too, before the shortcut adds it
        self.post_norm1 = norm() if cfg["post_norms"] else nn.Identity()
        self.post_norm2 = norm() if cfg["post_norms"] else nn.Identity()
        self.drop_shortcut = nn.Dropout(cfg["drop_rate"])
        if cfg["experts_beside_mlp"] and not dense:  # Gemma 4's: experts beside the dense
            self.moe = MoEFeedForward(  # feed-forward, each output normed, the input apart
                cfg["emb_dim"], cfg["moe_hidden_dim"], cfg["num_experts"],
                cfg["num_experts_per_tok"], cfg["norm_topk_prob"],
                shared_hidden_dim=cfg["shared_expert_dim"], shared_gate=cfg["shared_expert_gate"],
                router=cfg["moe_router"], **swiglu, scaled_router=True, norm_eps=cfg["norm_eps"])
            self.post_norm_dense, self.moe_norm, self.post_norm_moe = norm(), norm(), norm()
        if cfg["per_layer_dim"]:  # Gemma 4's: the layer's own input, gated by the stream
            self.per_layer_gate = nn.Linear(cfg["emb_dim"], cfg["per_layer_dim"], bias=False)
            self.per_layer_up = nn.Linear(cfg["per_layer_dim"], cfg["emb_dim"], bias=False)
            self.per_layer_norm = norm()
        if cfg["layer_scalar"]:  # Gemma 4's: one number that scales the block's output
            self.register_buffer("layer_scalar", torch.ones(1))

    def forward(self, x, rope, kv_cache=None, *, shared_kv=None, per_layer_input=None):
        """shared_kv, per_layer_input (batch, tokens, per_layer_dim): Gemma 4's (4.8.13)."""
        att = (self.att(self.norm1(x), rope, kv_cache) if shared_kv is None
               else self.att(self.norm1(x), rope, kv_cache, shared_kv))
        x = x + self.drop_shortcut(self.post_norm1(att))
        ff = self.ff(self.norm2(x))
        if hasattr(self, "moe"):  # Gemma 4's: the router reads the stream itself
            ff = self.post_norm_dense(ff) + self.post_norm_moe(self.moe(self.moe_norm(x), x))
        x = x + self.drop_shortcut(self.post_norm2(ff))
        if per_layer_input is not None:
            gated = nn.functional.gelu(self.per_layer_gate(x), approximate="tanh") * per_layer_input
            x = x + self.drop_shortcut(self.per_layer_norm(self.per_layer_up(gated)))
        return x * self.layer_scalar if hasattr(self, "layer_scalar") else x


# %% beyond_3_modern_blocks.ipynb cell 34, 4.8.6 `ModernGPTModel`

MODERN_REQUIRED_KEYS = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers",
                        "n_kv_groups", "rope_base")
MODERN_OPTIONAL_KEYS = {  # with their defaults; hidden_dim, or the three MoE sizes, must be set
    "hidden_dim": None, "head_dim": None, "qk_norm": False, "norm_eps": 1e-6, "rope_freq": None,
    "drop_rate": 0.0, "qkv_bias": False, "tie_weights": False, "sdpa": False,
    "num_experts": 0, "num_experts_per_tok": 0, "moe_hidden_dim": None, "norm_topk_prob": True,
    "sliding_window": None, "layer_types": None,  # layer_types None: every layer global
    # Gemma 3's (4.8.8); the defaults are Llama's and Qwen3's
    "norm_unit_offset": False, "post_norms": False, "ffn_activation": "silu",
    "scale_embeddings": False, "query_pre_attn_scalar": None, "rope_local_base": None,
    "pre_norms": True, "qk_norm_across_heads": False,  # Olmo 3's (4.8.9): False and True
    # gpt-oss's (4.8.10): True, True, True, "clamped_silu" (above), 1.702 and 7.0
    "attention_sinks": False, "attention_out_bias": False, "ffn_bias": False,
    "swiglu_alpha": None, "swiglu_limit": None,
    # Qwen3-Next's (4.8.11): True, head_dim // 4, its shared expert's width, and its DeltaNet
    # layers' sizes (4.9), for the layers layer_types calls "linear"
    "attention_gate": False, "rope_dim": None, "shared_expert_dim": None, "deltanet": None,
    # DeepSeek V3's (4.8.12): its latent attention's sizes, an ungated shared expert, routing by
    # groups, and its first layers dense
    "mla": None, "shared_expert_gate": True, "moe_router": None, "dense_layers": 0,
    # Gemma 4's (4.8.13): per-layer inputs of that width, keys and values reused by the last
    # kv_shared_layers layers (whose feed-forward may be double width), the global layers' head
    # width, key-value heads, values and RoPE (the fraction of pairs that turn), values normed,
    # each block's output scaled, the logits capped, and experts beside the dense feed-forward
    "per_layer_dim": None, "kv_shared_layers": 0, "double_wide_mlp": False,
    "global_head_dim": None, "global_kv_groups": None, "values_from_keys": False,
    "global_rope_fraction": None, "value_norm": False, "layer_scalar": False,
    "final_logit_softcap": None, "experts_beside_mlp": False,
    # Olmo 3's, gpt-oss's and Gemma 4's norms scale in float32 and cast once (a rounding apart
    # from Llama's in bfloat16, the same numbers in float32)
    "norm_float32_scale": False,
}


def validate_modern_config(cfg: dict) -> dict:
    """The configuration with its defaults filled in and head_dim worked out (emb_dim //
    n_heads unless given), before any weight is made. It refuses what a model would otherwise
    get wrong without a word (a key misspelt, a layer type misspelt, a RoPE base of 1) or
    refuse far from the key at fault; a value that a layer refuses as it is built is left to
    that layer, even where PyTorch's message does not name the key (a hidden_dim of None)."""
    check_keys("configuration", cfg, MODERN_REQUIRED_KEYS, MODERN_OPTIONAL_KEYS)
    cfg = {**MODERN_OPTIONAL_KEYS, **cfg}
    if cfg["head_dim"] is None:  # a floor would build a narrower model than asked
        check_divisible("emb_dim", cfg["emb_dim"], "n_heads", cfg["n_heads"])
        cfg["head_dim"] = cfg["emb_dim"] // cfg["n_heads"]
    flags = [f"{key}={cfg[key]!r}" for key, default in MODERN_OPTIONAL_KEYS.items()
             if type(default) is bool and type(cfg[key]) is not bool]  # qk_norm="no" is true
    check(not flags, lambda: f"flags must be True or False, got {', '.join(flags)}", TypeError)
    # RoPE turns pairs (4.8.2): an odd head_dim would fail only at the first forward pass
    # (Qwen3-Next's rope_dim: RoPE turns the first rope_dim numbers of each head, 4.8.11)
    rope_dim = cfg["head_dim"] if cfg["rope_dim"] is None else cfg["rope_dim"]
    check(cfg["head_dim"] % 2 == 0 == rope_dim % 2 and 0 < rope_dim <= cfg["head_dim"], lambda:
          f"head_dim and rope_dim (1..head_dim) must be even: {cfg['head_dim']!r}, {rope_dim!r}")
    # a RoPE base of 1 turns every pair alike, one below 1 gives nan angles (the local base:
    # Gemma 3's, 4.8.8, or None)
    for key, base in [("rope_base", cfg["rope_base"]), ("rope_local_base", cfg["rope_local_base"])]:
        check(base is None or base > 1, f"{key} must be > 1, got {base!r}")
    # RMSNorm divides by sqrt(mean + eps): an eps of 0 or below gives NaN at some input, not here
    check(cfg["norm_eps"] > 0, lambda: f"norm_eps must be > 0, got {cfg['norm_eps']!r}")
    freq, window, layer_types = cfg["rope_freq"], cfg["sliding_window"], cfg["layer_types"]
    # Llama 3's RoPE scaling divides by factor and by high_freq_factor - low_freq_factor; YaRN's
    # (4.8.9) takes factor's log, and its ramp runs from beta_fast turns down to beta_slow
    yarn = bool(freq) and freq.get("type", "llama3") == "yarn"
    check(not freq or freq.get("type", "llama3") in ("llama3", "yarn") and (
          freq["factor"] >= 1 and freq["beta_fast"] > freq["beta_slow"] > 0 if yarn else
          freq["factor"] > 0 and freq["high_freq_factor"] > freq["low_freq_factor"]), lambda:
          "rope_freq needs type 'llama3' (the default) with factor > 0 and high_freq_factor > "
          f"low_freq_factor, or 'yarn' with factor >= 1 and beta_fast > beta_slow > 0: {freq}")
    # a mixture of experts: 0 experts per token gives a feed-forward of zeros, too many fail
    # late; a shared expert or a router (4.8.11, 4.8.12) without experts would be ignored
    check(0 < cfg["num_experts_per_tok"] <= cfg["num_experts"] if cfg["num_experts"] else
          not cfg["shared_expert_dim"] and not cfg["moe_router"] and not cfg[
              "experts_beside_mlp"], lambda: "num_experts_per_tok must be in 1..num_experts, "
          "and shared_expert_dim, moe_router and experts_beside_mlp need experts: "
          f"{cfg['num_experts_per_tok']}, {cfg['shared_expert_dim']}, {cfg['moe_router']}")
    # Sliding windows (4.8.7): one layer type per layer, and a window exactly when one is local;
    # Gated DeltaNet's sizes (4.9) exactly when one is linear
    kinds = layer_types or ["global"] * cfg["n_layers"]
    check(len(kinds) == cfg["n_layers"] and set(kinds) <= {"global", "local", "linear"} and (
          window is None if "local" not in kinds else type(window) is int and window >= 1) and (
          isinstance(cfg["deltanet"], dict) == ("linear" in kinds)), lambda: "layer_types must "
          f"be n_layers={cfg['n_layers']} of 'global', 'local' and 'linear', sliding_window an "
          "int >= 1 exactly when one is local and deltanet a dict exactly when one is linear: "
          f"got {layer_types!r}, sliding_window={window!r}, deltanet={cfg['deltanet']!r}")
    # DeepSeek V3's latent attention (4.8.12) takes every layer (no window, no DeltaNet), and
    # computes none of grouped-query attention's options
    ignored = [key for key in ("qk_norm", "qk_norm_across_heads", "qkv_bias", "attention_gate",
                               "attention_sinks", "attention_out_bias") if cfg[key]]
    check(not cfg["mla"] or set(kinds) == {"global"} and not ignored, lambda: "mla needs every "
          f"layer global and none of {ignored}: got layer_types={layer_types!r}")
    # Gemma 3's GeGLU (4.8.8), not in experts; gpt-oss's clamped SwiGLU (4.8.10), which needs
    # its alpha and limit (None would fail only in the first forward pass)
    known = ("silu", "clamped_silu") + ("gelu_tanh",) * (
        not cfg["num_experts"] or cfg["experts_beside_mlp"])  # Gemma 4's experts (4.8.13)
    clamped = cfg["ffn_activation"] == "clamped_silu"
    settings = (cfg["swiglu_alpha"], cfg["swiglu_limit"])  # ignored, silently, by the others
    check(cfg["ffn_activation"] in known and (min(settings) > 0 if clamped and None not in
          settings else settings == (None, None) and not clamped), lambda: "ffn_activation must "
          f"be one of {known}; swiglu_alpha, swiglu_limit > 0 with clamped_silu only: {settings}")
    # Gemma 4's (4.8.13): a layer that reuses keys and values needs an earlier layer of its
    # kind that makes them (else a KeyError deep in the first forward pass), and latent
    # attention and DeltaNet layers have none to give; a wider feed-forward for reusing layers
    # would be ignored without them; RoPE on a fraction of the global layers' pairs (of an even
    # width, as 4.8.2's pairs need), not also on rope_dim numbers; a cap above 0
    shared, first = cfg["kv_shared_layers"], cfg["n_layers"] - cfg["kv_shared_layers"]
    fraction, cap = cfg["global_rope_fraction"], cfg["final_logit_softcap"]
    check(type(shared) is int and 0 <= shared < cfg["n_layers"] and (shared or not cfg[
          "double_wide_mlp"]) and (not shared or not (cfg["mla"] or cfg["qk_norm_across_heads"])
                                   and "linear" not in kinds and
                                   set(kinds[first:]) <= set(kinds[:first])), lambda:
          f"kv_shared_layers={shared!r} must be in 0..n_layers - 1, leave before them a layer of "
          "each kind they have, and have no latent attention, linear layer or QK-norm across "
          "heads; double_wide_mlp needs it above 0")
    check((fraction is None or 0 < fraction <= 1) and (cap is None or cap > 0) and (cfg[
          "global_head_dim"] or 2) % 2 == 0 and (cfg["rope_dim"] is None or fraction is None
                                                 and cfg["global_head_dim"] is None), lambda:
          f"global_rope_fraction={fraction!r} must be in (0, 1], final_logit_softcap={cap!r} "
          f"above 0, global_head_dim={cfg['global_head_dim']!r} even, none with rope_dim")
    return cfg


# %% beyond_3_modern_blocks.ipynb cell 35, 4.8.6 `ModernGPTModel`

class ModernGPTModel(GPTModel):
    """A Llama 3 / Qwen3-style GPT: ModernBlocks, a final RMSNorm, and positions as RoPE inside
    attention instead of a learned table; sliding windows in the layers cfg["layer_types"]
    calls local, Gated DeltaNet (4.9) in those it calls linear; Gemma 3's options (4.8.8), Olmo
    3's (4.8.9), gpt-oss's (4.8.10), Qwen3-Next's (4.8.11), DeepSeek V3's (4.8.12) and Gemma 4's
    (4.8.13). forward, and so generation, the training loops and finetuning, are GPTModel's,
    with Gemma 4's cap on the logits."""

    def __init__(self, cfg: dict):
        nn.Module.__init__(self)  # not GPTModel.__init__, which would build GPT-2's layers
        self.cfg = cfg = validate_modern_config(cfg)
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])
        # a Sequential for GPTModel's parameter names; hidden_states calls each block itself
        kinds = cfg["layer_types"] or ["global"] * cfg["n_layers"]
        first_reuse = cfg["n_layers"] - cfg["kv_shared_layers"]  # Gemma 4's (4.8.13)
        self.trf_blocks = nn.Sequential(*[ModernBlock(cfg, kind, dense=i < cfg["dense_layers"],
                                                      reuse_kv=i >= first_reuse)
                                          for i, kind in enumerate(kinds)])
        self.final_norm = RMSNorm(cfg["emb_dim"], cfg["norm_eps"], cfg["norm_unit_offset"],
                                  float32_scale=cfg["norm_float32_scale"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)
        if cfg["tie_weights"]:
            with torch.no_grad():  # as in GPTModel: GPT-2's scale, not nn.Embedding's N(0, 1)
                self.tok_emb.weight.mul_(0.02)
            self.out_head.weight = self.tok_emb.weight
        if cfg["per_layer_dim"]:  # Gemma 4's: each token's input to each layer, from a table
            width = cfg["n_layers"] * cfg["per_layer_dim"]  # and from the token's embedding
            self.per_layer_emb = nn.Embedding(cfg["vocab_size"], width)
            self.per_layer_proj = nn.Linear(cfg["emb_dim"], width, bias=False)
            self.per_layer_norm = RMSNorm(cfg["per_layer_dim"], cfg["norm_eps"],
                                          float32_scale=cfg["norm_float32_scale"])

    def forward(self, in_idx, kv_caches=None, last_only=False):
        logits = super().forward(in_idx, kv_caches, last_only)
        cap = self.cfg["final_logit_softcap"]  # Gemma 4's: cap * tanh(logits / cap)
        return logits if cap is None else torch.tanh(logits / cap) * cap

    def hidden_states(self, in_idx, kv_caches=None):
        start = kv_caches[0].length if kv_caches else 0  # how many tokens are cached
        if not inputs_trusted():  # generate_text checks its first step only (shared.utils)
            self._check_input(in_idx, kv_caches, start)
        cfg, num_tokens = self.cfg, in_idx.shape[1]
        rope_dim = cfg["rope_dim"] or cfg["head_dim"]  # Qwen3-Next turns a quarter (4.8.11)
        global_dim = cfg["global_head_dim"] or rope_dim  # Gemma 4's are wider (4.8.13)
        freqs = rope_frequencies(global_dim, cfg["rope_base"], cfg["rope_freq"])
        if cfg["global_rope_fraction"]:  # Gemma 4's: the slowest pairs do not turn at all
            freqs[int(cfg["global_rope_fraction"] * global_dim / 2):] = 0.0
        factor = rope_attention_factor(cfg["rope_freq"])  # 1 but for YaRN (4.8.9)
        rope = local_rope = rope_angles(freqs.to(in_idx.device), start, num_tokens, factor)
        local_base = cfg["rope_local_base"]  # Gemma 3's local layers: a base of their own
        if local_base is not None or global_dim != rope_dim or cfg["global_rope_fraction"]:
            local_freqs = rope_frequencies(rope_dim, local_base or cfg["rope_base"],
                                           None if local_base else cfg["rope_freq"])
            local_rope = rope_angles(local_freqs.to(in_idx.device), start, num_tokens,
                                     1.0 if local_base else factor)
        x = self.tok_emb(in_idx)
        if cfg["scale_embeddings"]:  # Gemma: times sqrt(emb_dim), first cast to x's dtype
            x = x * torch.tensor(cfg["emb_dim"] ** 0.5, dtype=x.dtype, device=x.device)
        extra = [{} for _ in self.trf_blocks]  # Gemma 4's, for each block (4.8.13)
        if cfg["per_layer_dim"]:
            for i, per_layer in enumerate(self.per_layer_inputs(in_idx, x).unbind(dim=2)):
                extra[i]["per_layer_input"] = per_layer
        if cfg["kv_shared_layers"]:
            shared_kv = {}  # one dict for every block: the later blocks read what earlier wrote
            for block_extra in extra:
                block_extra["shared_kv"] = shared_kv
        x = self.drop_emb(x)
        for i, block in enumerate(self.trf_blocks):
            x = block(x, rope if block.att.window is None else local_rope,
                      kv_caches[i] if kv_caches else None, **extra[i])
        return self.final_norm(x)

    def per_layer_inputs(self, in_idx, x):
        """Gemma 4's input for each layer (4.8.13), (batch, tokens, n_layers, per_layer_dim):
        the token's row of per_layer_emb, times sqrt(per_layer_dim), plus the scaled embeddings
        x projected, scaled by 1 / sqrt(emb_dim) and normed; the sum times 1 / sqrt(2)."""
        cfg = self.cfg
        split = (*in_idx.shape, cfg["n_layers"], cfg["per_layer_dim"])
        own = self.per_layer_emb(in_idx) * torch.tensor(cfg["per_layer_dim"] ** 0.5,
                                                        dtype=x.dtype, device=x.device)
        projected = self.per_layer_norm((self.per_layer_proj(x) * cfg["emb_dim"] ** -0.5
                                         ).view(split))
        return (projected + own.view(split)) * 2 ** -0.5

    def make_kv_caches(self, max_tokens=None):
        """GPTModel's caches, windowed for the local layers (they keep window - 1 positions);
        for a linear layer, a DeltaNetCache, of the same model (4.9)."""
        caches = super().make_kv_caches(max_tokens)
        for i, block in enumerate(self.trf_blocks):
            if isinstance(block.att, GatedDeltaNet):  # a state in the KV cache's place
                owner, caches[i] = caches[i].model, DeltaNetCache()
                caches[i].model = owner
            caches[i].window = block.att.window  # None for a global or linear layer
        return caches


# %% beyond_3_modern_blocks.ipynb cell 47, 4.8.8 Gemma 3

OPEN_MODEL_CONFIGS = {
    **OPEN_MODEL_CONFIGS,
    "gemma-3-270m": {
        "vocab_size": 262_144, "context_length": 32_768, "emb_dim": 640, "n_heads": 4,
        "n_layers": 18, "hidden_dim": 2048, "head_dim": 256, "n_kv_groups": 1, "qk_norm": True,
        "rope_base": 1_000_000.0, "rope_local_base": 10_000.0, "sliding_window": 512,
        "layer_types": (["local"] * 5 + ["global"]) * 3, "query_pre_attn_scalar": 256,
        "norm_unit_offset": True, "post_norms": True, "ffn_activation": "gelu_tanh",
        "scale_embeddings": True, "norm_eps": 1e-6, "tie_weights": True,
    },
    "gemma-3-1b": {
        "vocab_size": 262_144, "context_length": 32_768, "emb_dim": 1152, "n_heads": 4,
        "n_layers": 26, "hidden_dim": 6912, "head_dim": 256, "n_kv_groups": 1, "qk_norm": True,
        "rope_base": 1_000_000.0, "rope_local_base": 10_000.0, "sliding_window": 512,
        "layer_types": (["local"] * 5 + ["global"]) * 4 + ["local"] * 2,
        "query_pre_attn_scalar": 256, "norm_unit_offset": True, "post_norms": True,
        "ffn_activation": "gelu_tanh", "scale_embeddings": True, "norm_eps": 1e-6,
        "tie_weights": True,
    },
}


# %% beyond_3_modern_blocks.ipynb cell 73, 4.8.13 Gemma 4: per-layer inputs, shared keys and val...

OPEN_MODEL_CONFIGS = {
    **OPEN_MODEL_CONFIGS,
    "gemma-4-e2b": {
        "vocab_size": 262_144, "context_length": 131_072, "emb_dim": 1536, "n_heads": 8,
        "n_layers": 35, "hidden_dim": 6144, "head_dim": 256, "n_kv_groups": 1, "qk_norm": True,
        "rope_base": 1_000_000.0, "rope_local_base": 10_000.0, "sliding_window": 512,
        "layer_types": (["local"] * 4 + ["global"]) * 7, "query_pre_attn_scalar": 1,
        "post_norms": True, "ffn_activation": "gelu_tanh", "scale_embeddings": True,
        "norm_eps": 1e-6, "tie_weights": True, "value_norm": True, "layer_scalar": True,
        "per_layer_dim": 256, "kv_shared_layers": 20, "double_wide_mlp": True,
        "global_head_dim": 512, "global_rope_fraction": 0.25, "final_logit_softcap": 30.0,
        "norm_float32_scale": True,
    },
}


__all__ = [
    'RMSNorm',
    'rope_frequencies',
    'rope_angles',
    'rope_attention_factor',
    'apply_rope',
    'SwiGLU',
    'attend_with_sinks',
    'GroupedQueryAttention',
    'MultiHeadLatentAttention',
    'OPEN_MODEL_CONFIGS',
    'MoEFeedForward',
    'ModernBlock',
    'MODERN_REQUIRED_KEYS',
    'MODERN_OPTIONAL_KEYS',
    'validate_modern_config',
    'ModernGPTModel',
]
