# Generated from ch04_gpt_model/beyond_2_final_model.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export model_sizes`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_2_final_model.ipynb cell 21, 4.7.2 All four GPT-2 sizes, without allocating them

"""Chapter 4, beyond the book: where the parameters of GPT-2's sizes sit
(beyond_2_final_model.ipynb)."""

from torch import nn

from ch04_gpt_model.gpt_model import count_parameters


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
    'parameter_groups',
]
