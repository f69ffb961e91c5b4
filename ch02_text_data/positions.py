# Generated from ch02_text_data/beyond_2_positions.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export positions`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_2_positions.ipynb cell 5, Learned and sinusoidal positions, before training

"""Chapter 2, beyond the book: the original Transformer's fixed sinusoidal position code
(beyond_2_positions.ipynb)."""

import torch


def sinusoidal_positions(n_positions: int, dim: int) -> torch.Tensor:
    """(n_positions, dim): sin(p / 10000^(2i/dim)) in column 2i, cos in column 2i + 1."""
    p = torch.arange(n_positions).unsqueeze(1)
    frequencies = 10000 ** (-torch.arange(0, dim, 2) / dim)
    code = torch.zeros(n_positions, dim)
    code[:, 0::2], code[:, 1::2] = torch.sin(p * frequencies), torch.cos(p * frequencies)
    return code


__all__ = [
    'sinusoidal_positions',
]
