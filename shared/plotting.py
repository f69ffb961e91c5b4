"""Plotting helpers shared by the notebooks, so each figure cell shows only what it plots.

matplotlib.pyplot is imported by the helper that draws, not here: `import shared` loads no
plotting library until a figure is drawn.
"""

import numpy as np


def heatmap(matrix, row_labels=None, col_labels=None, title=None, ax=None, cmap="viridis",
            annotate=False, colorbar=True, **imshow_kwargs):
    """Draw a 2-D array (a tensor is fine) as a heatmap; returns the Axes."""
    import matplotlib.pyplot as plt

    values = np.asarray(matrix.detach().cpu() if hasattr(matrix, "detach") else matrix)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    image = ax.imshow(values, cmap=cmap, aspect="auto", **imshow_kwargs)
    if row_labels is not None:
        ax.set_yticks(range(len(row_labels)), labels=row_labels)
    if col_labels is not None:
        ax.set_xticks(range(len(col_labels)), labels=col_labels, rotation=45, ha="right")
    if annotate:
        for (i, j), value in np.ndenumerate(values):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white", fontsize=8)
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax)
    return ax
