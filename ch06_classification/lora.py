# Generated from ch06_classification/beyond_3_lora.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export lora`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_3_lora.ipynb cell 4, Why LoRA

"""Chapter 6, beyond the book (the book's appendix E): LoRA, a trainable low-rank update
beside each frozen linear layer, and merging the updates into the weights."""

import math

import torch
from torch import nn

from shared.checks import check


# %% beyond_3_lora.ipynb cell 5, Why LoRA

class LoRALayer(nn.Module):
    """The low-rank update x -> (alpha / rank) * x A B, with B initialised to zero."""

    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float):
        # alpha = 0 would scale every update to 0: nothing would train
        check(0 < alpha < math.inf, lambda: f"alpha must be positive and finite, got {alpha!r}")
        super().__init__()
        self.A = nn.Parameter(torch.empty(in_dim, rank))
        # nn.Linear's initialisation: uniform in (-1/sqrt(fan_in), 1/sqrt(fan_in)), where
        # fan_in is A's second dimension, the rank
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(rank, out_dim))
        self.scaling = alpha / rank

    def forward(self, x):
        return self.scaling * (x @ self.A @ self.B)


class LinearWithLoRA(nn.Module):
    """A (frozen) linear layer plus a trainable LoRA update, on the linear layer's device."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.linear = linear
        # A is drawn on the CPU, as in the book, then moved: the same A on every device
        self.lora = LoRALayer(linear.in_features, linear.out_features, rank, alpha).to(
            linear.weight.device)

    def forward(self, x):
        return self.linear(x) + self.lora(x)


def replace_linear_with_lora(model, rank: int, alpha: float):
    """Wrap every nn.Linear inside `model` in LinearWithLoRA, in the book's order, so A's
    random values are drawn in the same sequence.
    All or nothing: every wrapper is built before the first is put in (a bad rank or alpha, or
    memory running out, leaves the model as it was). A model with LoRA layers is refused."""
    check(not any(isinstance(m, LinearWithLoRA) for m in model.modules()), "model already has "
          "LoRA layers: replace_linear_with_lora wraps each linear layer once")
    linears = [(name, module) for name, module in model.named_modules(remove_duplicate=False)
               if name and isinstance(module, nn.Linear)]  # depth first, as the book recurses
    wrappers = [LinearWithLoRA(linear, rank, alpha) for _, linear in linears]
    for (name, _), wrapper in zip(linears, wrappers):
        model.set_submodule(name, wrapper)
    return model


def merge_lora(model):
    """Fold each LinearWithLoRA's update into its linear layer, W + (alpha / rank) (A B)^T
    (nn.Linear stores W as out x in and computes x W^T), and put that nn.Linear (same device
    and dtype) in the wrapper's place: the same outputs up to float rounding, no adapters left,
    as tools that know nothing of LoRA need. In place, one layer at a time (no second copy of
    the model); returns `model`. A head tied to the embedding gets a weight of its own (the
    update is the head's), and the model's cfg then says tie_weights False. The merged layers
    stay as frozen as they were (requires_grad False after LoRA's freezing): call
    model.requires_grad_(True) to train them further."""
    wrapped = [(name, module) for name, module in model.named_modules(remove_duplicate=False)
               if name and isinstance(module, LinearWithLoRA)]
    weights = [id(p) for _, p in model.named_parameters(remove_duplicate=False)]
    merged = set()  # a wrapper that sits at two places is merged once
    with torch.no_grad():
        for name, wrapper in wrapped:
            if id(wrapper) not in merged:
                linear, lora = wrapper.linear, wrapper.lora
                weight = linear.weight + lora.scaling * (lora.A @ lora.B).T  # x A B = x (A B)
                if weights.count(id(linear.weight)) > 1:  # a head tied to the embedding: untie it,
                    linear.weight = nn.Parameter(  # or the update would change the embedding
                        weight, requires_grad=linear.weight.requires_grad)
                    if getattr(model, "cfg", {}).get("tie_weights"):  # savers then write
                        model.cfg = {**model.cfg, "tie_weights": False}  # the head apart
                else:
                    linear.weight.copy_(weight)
                merged.add(id(wrapper))
            model.set_submodule(name, wrapper.linear)
    return model


__all__ = [
    'LoRALayer',
    'LinearWithLoRA',
    'replace_linear_with_lora',
    'merge_lora',
]
