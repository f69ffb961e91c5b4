"""Drawing the course's diagrams: boxes, arrows, rows of tokens and grids of numbers, as SVG.

Each chapter keeps its diagrams as code in `draw_figures.py` beside its notebook and the
drawings in `figures/*.svg`; the notebook's markdown shows them with a relative link
(`![...](figures/name.svg)`), which JupyterLab, GitHub and VS Code all render. Change a
drawing, then run `python chXX_.../draw_figures.py`; `shared/tooling/test_diagrams.py` fails when a
stored SVG is not what its code draws.

Coordinates are in abstract units with y growing downwards, as a page is read: (0, 0) is
the top-left corner, a box at (x, y) has its top-left corner there. One unit is about half
a centimetre on screen. Text stays text in the SVG (small files, selectable, searchable).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib


matplotlib.use("Agg")  # drawing only; never opens a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402


# One palette for the whole course, so a colour means the same thing in every chapter.
COLORS = {
    "text": "#f3f4f6",       # raw text, neutral
    "token": "#dbeafe",      # tokens (blue)
    "id": "#fef3c7",         # token ids (amber)
    "embedding": "#dcfce7",  # vectors: embeddings, hidden states (green)
    "position": "#ede9fe",   # positional information (violet)
    "attention": "#fce7f3",  # attention scores and weights (pink)
    "weight": "#ffedd5",     # trainable weight matrices (orange)
    "output": "#e0f2fe",     # outputs: logits, context vectors (sky)
    "masked": "#e5e7eb",     # masked or dropped entries (grey)
    "block": "#f8fafc",      # a container: a layer, a block
    "edge": "#374151",       # outlines and arrows
    "accent": "#2563eb",     # what the figure wants you to look at
    "muted": "#6b7280",      # captions, annotations
}

UNIT_INCHES = 0.2   # on-screen size of one unit
FONT_SIZE = 9


class Diagram:
    """A drawing canvas `width` x `height` units; call its methods, then `save`."""

    def __init__(self, width: float, height: float, title: str | None = None):
        self.width, self.height = width, height
        self.figure = plt.figure(figsize=(width * UNIT_INCHES, height * UNIT_INCHES))
        self.ax = self.figure.add_axes((0, 0, 1, 1))
        self.ax.set_xlim(0, width)
        self.ax.set_ylim(height, 0)  # y grows downwards
        self.ax.set_axis_off()
        if title:
            self.text(width / 2, 0.7, title, size=FONT_SIZE + 2, weight="bold")

    def text(self, x: float, y: float, label: str, *, size: float = FONT_SIZE,
             color: str = COLORS["edge"], ha: str = "center", va: str = "center",
             weight: str = "normal", style: str = "normal", family: str = "sans-serif",
             rotation: float = 0):
        self.ax.text(x, y, label, fontsize=size, color=color, ha=ha, va=va,
                     fontweight=weight, fontstyle=style, family=family, rotation=rotation)

    def note(self, x: float, y: float, label: str, *, size: float = FONT_SIZE - 1, **kwargs):
        """A small muted annotation (a caption inside the drawing)."""
        self.text(x, y, label, size=size, color=COLORS["muted"], **kwargs)

    def box(self, x: float, y: float, w: float, h: float, label: str = "", *,
            fill: str = COLORS["block"], edge: str = COLORS["edge"], size: float = FONT_SIZE,
            color: str = COLORS["edge"], weight: str = "normal", family: str = "sans-serif",
            rounded: bool = True, dashed: bool = False, linewidth: float = 1.0):
        """A box with its label centred; returns its centre."""
        style = "round,pad=0,rounding_size=0.25" if rounded else "square,pad=0"
        self.ax.add_patch(FancyBboxPatch(
            (x, y), w, h, boxstyle=style, facecolor=fill, edgecolor=edge,
            linewidth=linewidth, linestyle="--" if dashed else "-"))
        if label:
            self.text(x + w / 2, y + h / 2, label, size=size, color=color, weight=weight,
                      family=family)
        return (x + w / 2, y + h / 2)

    def arrow(self, start: tuple[float, float], end: tuple[float, float], label: str = "", *,
              color: str = COLORS["edge"], size: float = FONT_SIZE - 1, curve: float = 0.0,
              dashed: bool = False, label_offset: tuple[float, float] = (0.3, 0.0),
              both: bool = False):
        """An arrow from `start` to `end`, optionally bent (`curve`) and labelled at its middle."""
        self.ax.add_patch(FancyArrowPatch(
            start, end, arrowstyle="<|-|>" if both else "-|>", mutation_scale=9, color=color,
            linewidth=1.0, linestyle="--" if dashed else "-",
            connectionstyle=f"arc3,rad={curve}", shrinkA=1, shrinkB=1))
        if label:
            mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
            self.text(mx + label_offset[0], my + label_offset[1], label, size=size,
                      color=COLORS["muted"], ha="left" if label_offset[0] > 0 else "center")

    def line(self, points: Sequence[tuple[float, float]], *, color: str = COLORS["edge"],
             dashed: bool = False, linewidth: float = 1.0):
        xs, ys = zip(*points)
        self.ax.plot(xs, ys, color=color, linewidth=linewidth, linestyle="--" if dashed else "-")

    def row(self, x: float, y: float, labels: Sequence[str], *, w: float = 2.0, h: float = 1.0,
            gap: float = 0.2, fill: str = COLORS["token"], size: float = FONT_SIZE,
            family: str = "sans-serif", fills: Sequence[str] | None = None):
        """Boxes side by side (tokens, ids, ...); returns their centres."""
        centres = []
        for i, label in enumerate(labels):
            box_fill = fills[i] if fills is not None else fill
            centres.append(self.box(x + i * (w + gap), y, w, h, label, fill=box_fill,
                                    size=size, family=family))
        return centres

    def grid(self, x: float, y: float, values: Sequence[Sequence[float | str | None]], *,
             cell: float = 1.0, cell_h: float | None = None, fmt: str = "{:.2f}",
             fill: str = COLORS["embedding"], shade: bool = False,
             masked_fill: str = COLORS["masked"], size: float = FONT_SIZE - 1,
             row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
             highlight: set[tuple[int, int]] | None = None):
        """A matrix of cells; `None` entries are drawn as masked. `shade` darkens larger values.

        Returns the top-left and bottom-right corners of the grid.
        """
        ch = cell if cell_h is None else cell_h
        numbers = [v for row in values for v in row if isinstance(v, (int, float))]
        top = max(numbers, default=1.0) or 1.0
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                cx, cy = x + j * cell, y + i * ch
                if value is None:
                    box_fill, label = masked_fill, ""
                elif isinstance(value, str):
                    box_fill, label = fill, value
                else:
                    box_fill = _shade(fill, value / top) if shade else fill
                    label = fmt.format(value) if fmt else ""
                edge = COLORS["accent"] if highlight and (i, j) in highlight else COLORS["edge"]
                self.ax.add_patch(FancyBboxPatch(
                    (cx, cy), cell, ch, boxstyle="square,pad=0", facecolor=box_fill,
                    edgecolor=edge, linewidth=2.0 if edge == COLORS["accent"] else 0.6,
                    zorder=3 if edge == COLORS["accent"] else 2))
                if label:
                    self.ax.text(cx + cell / 2, cy + ch / 2, label, fontsize=size, ha="center",
                                 va="center", color=COLORS["edge"], zorder=4)
        if row_labels:
            for i, label in enumerate(row_labels):
                self.text(x - 0.2, y + i * ch + ch / 2, label, size=size, ha="right")
        if col_labels:
            for j, label in enumerate(col_labels):
                self.text(x + j * cell + cell / 2, y - 0.25, label, size=size, va="bottom",
                          rotation=45 if max(len(c) for c in col_labels) > 3 else 0)
        rows, cols = len(values), max(len(r) for r in values)
        return (x, y), (x + cols * cell, y + rows * ch)

    def brace(self, x0: float, x1: float, y: float, label: str = "", *, below: bool = True,
              size: float = FONT_SIZE - 1):
        """A square bracket spanning x0..x1 at height y, with a label on its outer side."""
        tick = 0.3 if below else -0.3
        self.line([(x0, y), (x0, y + tick), (x1, y + tick), (x1, y)], color=COLORS["muted"])
        if label:
            self.text((x0 + x1) / 2, y + tick * 2.2, label, size=size, color=COLORS["muted"])

    def save(self, path: Path) -> Path:
        """Write the drawing as a reproducible SVG (no date, fixed ids, text kept as text)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": path.stem}):
            self.figure.savefig(path, format="svg", metadata={"Date": None})
        plt.close(self.figure)
        return path


def blend(color: str, towards: str, strength: float) -> str:
    """Mix two hex colours: strength 0 gives `color`, 1 gives `towards`."""
    a = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    b = [int(towards[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * strength):02x}" for x, y in zip(a, b))


def _shade(hex_color: str, strength: float) -> str:
    """Blend `hex_color` towards the accent colour by `strength` in [0, 1] (at most 75%)."""
    return blend(hex_color, COLORS["accent"], min(max(strength, 0.0), 1.0) * 0.75)


FigureRegistry = dict[str, Callable[[], Diagram]]


def registry() -> tuple[FigureRegistry, Callable]:
    """A registry of a chapter's figures and the decorator that adds a function to it."""
    figures: FigureRegistry = {}

    def figure(function: Callable[[], Diagram]) -> Callable[[], Diagram]:
        figures[function.__name__] = function
        return function

    return figures, figure


def draw_all(figures: FigureRegistry, folder: Path) -> list[Path]:
    """Draw every registered figure into `folder` as `<function name>.svg`."""
    return [figures[name]().save(folder / f"{name}.svg") for name in sorted(figures)]


def main(figures: FigureRegistry, folder: Path, argv: Sequence[str] | None = None) -> None:
    """Command line of a chapter's draw_figures.py: draw all figures, or those named."""
    names = list(argv if argv is not None else sys.argv[1:]) or sorted(figures)
    unknown = sorted(set(names) - set(figures))
    if unknown:
        raise SystemExit(f"unknown figure(s): {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(figures))}")
    for name in names:
        path = figures[name]().save(folder / f"{name}.svg")
        print(f"{path.relative_to(folder.parent)}  {path.stat().st_size / 1024:.1f} KiB")
