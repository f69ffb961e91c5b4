# Generated from ch04_gpt_model/beyond_1_drift.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export activation_drift`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_1_drift.ipynb cell 4, 4.2.1 How activations drift without normalisation

"""Chapter 4, beyond the book: how activations drift through a deep stack without normalisation
(beyond_1_drift.ipynb)."""

import torch
from torch import nn


def activation_scales(gain, normalise, depth=30, width=256):
    """Standard deviation of the activations after each of `depth` ReLU layers."""
    torch.manual_seed(123)  # every run draws the same matrices; `gain` only scales them
    x = torch.randn(64, width)
    scales = []
    for _ in range(depth):
        if normalise:
            x = nn.functional.layer_norm(x, (width,))
        weight = torch.randn(width, width) * gain * (2 / width) ** 0.5  # 1.0: He's scale
        x = torch.relu(x @ weight)
        scales.append(x.std().item())
    return scales


__all__ = [
    'activation_scales',
]
