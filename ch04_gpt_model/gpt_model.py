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

class GPTModel(nn.Module):
    """4.1's skeleton with real blocks and norm: token ids (batch, tokens) to logits."""

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


__all__ = [
    'GPT_CONFIG_124M',
    'LayerNorm',
    'GELU',
    'FeedForward',
    'TransformerBlock',
    'GPTModel',
    'count_parameters',
    'generate_text_simple',
]
