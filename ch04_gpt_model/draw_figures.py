"""Chapter 4's diagrams, drawn as SVG into figures/: `python ch04_gpt_model/draw_figures.py`."""

from pathlib import Path

from matplotlib.patches import Circle

from shared.tooling.command_line import run_main
from shared.tooling.diagrams import COLORS, Diagram, main, registry


FIGURES, figure = registry()
MUTED = COLORS["muted"]


def _stack(d, x, y, w, h, gap, boxes):
    """Boxes one below the other, joined by arrows; returns each box's (top, bottom) centre."""
    ends = []
    for i, (label, fill, style) in enumerate(boxes):
        top = y + i * (h + gap)
        d.box(x, top, w, h, label, fill=fill, dashed=style == "dashed",
              color=MUTED if style == "dashed" else COLORS["edge"])
        ends.append(((x + w / 2, top), (x + w / 2, top + h)))
        if i:
            d.arrow(ends[i - 1][1], ends[i][0])
    return ends


@figure
def gpt_architecture():
    d = Diagram(33, 28.5, "GPT-2 small, with the shape of the data at every step")
    boxes = [
        ("token ids", COLORS["id"], ""),
        ("token embedding + position embedding", COLORS["embedding"], ""),
        ("dropout", COLORS["block"], ""),
        ("", COLORS["block"], ""),  # the stack of blocks, drawn below
        ("final LayerNorm", COLORS["block"], ""),
        ("linear output head  (768 → 50,257)", COLORS["weight"], ""),
        ("logits: a score for every vocabulary token", COLORS["output"], ""),
    ]
    ends = _stack(d, 2, 2.2, 19, 2.0, 1.6, boxes)
    # the repeated block: two inner boxes inside a container
    (cx, top), (_, bottom) = ends[3]
    d.box(2, top, 19, 2.0, fill=COLORS["block"], linewidth=1.6)
    d.text(cx, top + 0.6, "Transformer block  × 12", weight="bold")
    d.text(cx, top + 1.4, "norm → attention → dropout → add;  norm → FFN → dropout → add",
           size=7, color=MUTED)
    shapes = ["(batch, tokens)", "(batch, tokens, 768)", "(batch, tokens, 768)",
              "(batch, tokens, 768)", "(batch, tokens, 768)", "(batch, tokens, 50257)",
              "(batch, tokens, 50257)"]
    for ((_, t), (_, b)), shape in zip(ends, shapes):
        d.text(22, (t + b) / 2, shape, size=8, family="monospace", ha="left",
               color=COLORS["accent"])
    d.text(22, 1.6, "shape of the output", size=8, ha="left", color=MUTED)
    d.text(16.5, 27.6, "the blocks keep the shape; only the head changes the last dimension",
           size=8, color=MUTED, style="italic")
    return d


@figure
def gpt_skeleton():
    d = Diagram(40, 11.5, "The skeleton: real embeddings and head, placeholders in between")
    labels = [("token\nids", COLORS["id"], ""), ("embeddings\n+ dropout", COLORS["embedding"], ""),
              ("12 dummy\nblocks", COLORS["masked"], "dashed"),
              ("dummy\nnorm", COLORS["masked"], "dashed"),
              ("output\nhead", COLORS["weight"], ""), ("logits", COLORS["output"], "")]
    w, gap = 5.2, 1.4
    for i, (label, fill, style) in enumerate(labels):
        x = 1 + i * (w + gap)
        d.box(x, 3, w, 3, label, fill=fill, dashed=style == "dashed",
              color=MUTED if style == "dashed" else COLORS["edge"])
        if i:
            d.arrow((x - gap, 4.5), (x, 4.5))
    d.brace(1 + 2 * (w + gap), 1 + 3 * (w + gap) + w, 6.3,
            "placeholders: each returns its input unchanged")
    d.text(20, 10.3, "It already runs end to end: (2, 4) ids in, (2, 4, 50257) logits out",
           size=8, color=COLORS["accent"])
    return d


def _relu_output_row():
    """The first row of the ReLU output that the notebook's section 4.2 normalises."""
    import torch
    from torch import nn

    torch.manual_seed(123)
    batch_example = torch.randn(2, 5)
    layer = nn.Sequential(nn.Linear(5, 6), nn.ReLU())
    with torch.no_grad():
        return layer(batch_example)[0].tolist()


@figure
def layernorm_steps():
    values = _relu_output_row()  # shown to 2 decimals
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / len(values)
    centred = [v - mean for v in values]
    scaled = [c / var ** 0.5 for c in centred]
    d = Diagram(44, 16, "Layer normalisation of one token's vector, step by step")
    rows = [("x (a ReLU output)", values, COLORS["embedding"],
             f"mean {mean:.2f}, variance {var:.3f}"),
            ("x − mean", centred, COLORS["embedding"], f"mean 0, variance {var:.3f}"),
            ("(x − mean) / √variance", scaled, COLORS["output"], "mean 0, variance 1"),
            ("γ ⊙ … + β", [2 * s + 0.5 for s in scaled], COLORS["weight"],
             "learned scale γ and shift β: here γ = 2, β = 0.5")]
    for i, (label, row, fill, note) in enumerate(rows):
        y = 2.2 + i * 3.6
        d.text(10.5, y + 0.8, label, ha="right", size=8)
        d.grid(11, y, [row], cell=2.4, cell_h=1.6, fmt="{:+.2f}", fill=fill)
        d.text(26, y + 0.8, note, ha="left", size=8, color=MUTED)
        if i:
            d.arrow((18.2, y - 1.9), (18.2, y - 0.1))
    return d


@figure
def norm_axes():
    d = Diagram(34, 14, "What each normalisation averages over")
    values = [["", "", "", "", ""] for _ in range(4)]
    for k, (x0, title, note) in enumerate([
            (3, "LayerNorm", "over the features of one row:\nthe same for any batch size"),
            (21, "BatchNorm", "over the rows of one feature:\ndepends on the rest of the batch")]):
        d.text(x0 + 6, 2.3, title, weight="bold")
        chosen = ({(1, j) for j in range(5)} if k == 0 else {(i, 1) for i in range(4)})
        d.grid(x0, 3.4, values, cell=2.4, cell_h=1.4, fill=COLORS["embedding"],
               highlight=chosen)
        d.text(x0 - 0.4, 6.2, "batch", rotation=90, size=8, color=MUTED)
        d.text(x0 + 6, 9.4, "features", size=8, color=MUTED)
        for j, line in enumerate(note.split("\n")):
            d.text(x0 + 6, 11.2 + j * 1.1, line, size=8, color=COLORS["accent"])
    return d


@figure
def ffn_expansion():
    d = Diagram(38, 18, "The feed-forward network: widen four times, then come back")
    scale = 12 / 3072  # units per dimension, so bar heights compare
    bars = [(1, "768", COLORS["embedding"]), (13.5, "3,072", COLORS["embedding"]),
            (20.5, "3,072", COLORS["embedding"]), (33, "768", COLORS["embedding"])]
    mid = 9.5
    for x, label, fill in bars:
        dims = int(label.replace(",", ""))
        h = dims * scale
        d.box(x, mid - h / 2, 1.6, h, fill=fill, rounded=False)
        d.text(x + 0.8, mid + h / 2 + 0.7, label, size=8)
    d.box(4.5, 7.7, 6.6, 3.6, "Linear\n768 → 3,072", fill=COLORS["weight"], size=8)
    d.box(16.3, 8.3, 3.0, 2.4, "GELU", fill=COLORS["block"], size=8)
    d.box(24.4, 7.7, 6.6, 3.6, "Linear\n3,072 → 768", fill=COLORS["weight"], size=8)
    for a, b in [(2.6, 4.5), (11.1, 13.5), (15.1, 16.3), (19.3, 20.5), (22.1, 24.4),
                 (31.0, 33)]:
        d.arrow((a, mid), (b, mid))
    d.text(7.8, 12.3, "2,362,368 parameters", size=7, color=MUTED)
    d.text(27.7, 12.3, "2,360,064 parameters", size=7, color=MUTED)
    d.text(19, 17.0, "applied to every token separately: (batch, tokens, 768) in and out",
           size=8, color=COLORS["accent"])
    return d


@figure
def residual_path():
    d = Diagram(32, 13, "A shortcut connection: y = x + f(x)")
    d.box(1, 6, 3.5, 2, "x", fill=COLORS["embedding"])
    d.box(11, 6, 8, 2, "layer f", fill=COLORS["weight"])
    d.text(26.5, 7, "+", size=16, weight="bold")
    d.ax.add_patch(Circle((26.5, 7), 1.0, fill=False, edgecolor=COLORS["edge"]))
    d.box(29, 6, 2.6, 2, "y", fill=COLORS["embedding"])
    d.arrow((4.5, 7), (11, 7))
    d.arrow((19, 7), (25.5, 7), "f(x)", label_offset=(0.2, -0.6))
    d.arrow((27.5, 7), (29, 7))
    d.line([(7, 7), (7, 3), (26.5, 3)], color=COLORS["accent"], linewidth=1.6)
    d.arrow((26.5, 3), (26.5, 6), color=COLORS["accent"])
    d.text(16.5, 2.2, "identity path: the input is added back unchanged", size=8,
           color=COLORS["accent"])
    d.text(16, 10.3, "backward: ∂y/∂x = 1 + ∂f/∂x", size=9)
    d.text(16, 11.6, "the 1 carries the gradient past the layer even when ∂f/∂x is tiny",
           size=8, color=MUTED)
    return d


@figure
def transformer_block():
    d = Diagram(34, 30, "One Transformer block (pre-LayerNorm, as in GPT-2)")
    x, w, h = 9, 12, 1.8
    ys = {"in": 2.0, "ln1": 5.0, "att": 7.8, "drop1": 10.6, "add1": 13.6, "ln2": 16.0,
          "ff": 18.8, "drop2": 21.6, "add2": 24.6, "out": 27.0}
    cx = x + w / 2
    d.box(x, ys["in"], w, h, "input  (batch, tokens, 768)", fill=COLORS["embedding"], size=8)
    d.box(x, ys["ln1"], w, h, "LayerNorm 1", fill=COLORS["block"])
    d.box(x, ys["att"], w, h, "masked multi-head attention", fill=COLORS["attention"], size=8)
    d.box(x, ys["drop1"], w, h, "dropout", fill=COLORS["block"])
    d.box(x, ys["ln2"], w, h, "LayerNorm 2", fill=COLORS["block"])
    d.box(x, ys["ff"], w, h, "feed-forward (GELU)", fill=COLORS["weight"])
    d.box(x, ys["drop2"], w, h, "dropout", fill=COLORS["block"])
    d.box(x, ys["out"], w, h, "output  (batch, tokens, 768)", fill=COLORS["embedding"], size=8)
    for key in ("add1", "add2"):
        d.ax.add_patch(Circle((cx, ys[key] + 0.3), 0.8, fill=False, edgecolor=COLORS["edge"]))
        d.text(cx, ys[key] + 0.3, "+", size=13, weight="bold")
    chain = [("in", "ln1"), ("ln1", "att"), ("att", "drop1"), ("ln2", "ff"), ("ff", "drop2")]
    for a, b in chain:
        d.arrow((cx, ys[a] + h), (cx, ys[b]))
    d.arrow((cx, ys["drop1"] + h), (cx, ys["add1"] - 0.5))
    d.arrow((cx, ys["add1"] + 1.1), (cx, ys["ln2"]))
    d.arrow((cx, ys["drop2"] + h), (cx, ys["add2"] - 0.5))
    d.arrow((cx, ys["add2"] + 1.1), (cx, ys["out"]))
    # shortcuts on the right
    for start, add, label in [(ys["in"] + h + 0.6, ys["add1"] + 0.3, "shortcut 1"),
                              (ys["add1"] + 1.6, ys["add2"] + 0.3, "shortcut 2")]:
        d.line([(cx, start), (x + w + 3, start), (x + w + 3, add)], color=COLORS["accent"],
               linewidth=1.4)
        d.arrow((x + w + 3, add), (cx + 0.8, add), color=COLORS["accent"])
        d.text(x + w + 3.4, (start + add) / 2, label, size=8, color=COLORS["accent"], ha="left")
    for top, bottom in [(ys["ln1"], ys["add1"] + 1.1), (ys["ln2"], ys["add2"] + 1.1)]:
        d.line([(x - 0.4, top), (x - 0.9, top), (x - 0.9, bottom), (x - 0.4, bottom)],
               color=MUTED)
    d.text(x - 1.3, (ys["ln1"] + ys["add1"]) / 2 + 1, "x + Drop(MHA(LN₁(x)))", size=8,
           ha="right", color=MUTED)
    d.text(x - 1.3, (ys["ln2"] + ys["add2"]) / 2 + 1, "x + Drop(FFN(LN₂(x)))", size=8,
           ha="right", color=MUTED)
    return d


@figure
def generation_loop():
    d = Diagram(48, 19, "Greedy generation: one forward pass per new token")
    prompt = ["Hello", ",", " I", " am"]
    new = [" Feature", "iman", " Bye"]  # what the untrained model of section 4.7 picks
    w, gap = 2.9, 0.2
    for step in range(3):
        y = 2.4 + step * 5.2
        labels = prompt + new[:step]
        fills = [COLORS["token"]] * len(prompt) + [COLORS["output"]] * step
        d.text(0.5, y + 0.65, f"step {step + 1}", size=8, ha="left", color=MUTED)
        centres = d.row(4, y, labels, w=w, h=1.3, gap=gap, fills=fills, size=7.5,
                        family="monospace")
        d.box(27, y - 0.2, 4.2, 1.7, "GPT", fill=COLORS["weight"])
        d.arrow((centres[-1][0] + w / 2 + 0.3, y + 0.65), (27, y + 0.65))
        d.box(33, y - 0.2, 5.8, 1.7, "argmax of the\nlast logits", fill=COLORS["output"],
              size=7)
        d.arrow((31.2, y + 0.65), (33, y + 0.65))
        d.box(40.6, y, 3.4, 1.3, new[step], fill=COLORS["output"], family="monospace",
              size=7.5)
        d.arrow((38.8, y + 0.65), (40.6, y + 0.65))
        if step < 2:
            d.arrow((42.3, y + 1.4), (4 + len(labels) * (w + gap) + w / 2, y + 5.1),
                    curve=-0.08, color=COLORS["accent"], dashed=True)
    d.text(24, 16.8, "the chosen id is appended and the longer sequence goes in again;",
           size=8, color=MUTED)
    d.text(24, 17.9, "past the context length (1,024) only the last 1,024 ids are fed in",
           size=8, color=MUTED)
    return d


@figure
def gated_deltanet():
    d = Diagram(40, 31, "Qwen3-Next's Gated DeltaNet layer (4.9.4), one call")
    c = COLORS
    d.box(14, 1.8, 12, 1.8, "x: (batch, tokens, d_in)", fill=c["embedding"])
    d.box(6, 5.2, 12, 1.8, "W_qkvz", fill=c["weight"])
    d.box(24, 5.2, 9, 1.8, "W_ba", fill=c["weight"])
    d.arrow((18, 3.6), (12, 5.2))
    d.arrow((22, 3.6), (28.5, 5.2))
    d.box(3, 8.8, 15, 2.2, "short causal convolution\n(each channel, its last 4 inputs), SiLU",
          fill=c["block"], size=8)
    d.arrow((12, 7), (10.5, 8.8), "q, k, v", label_offset=(0.4, 0))
    d.box(3, 12.6, 15, 2.2, "q, k to unit length;\nq times 1 / sqrt(key_dim)", fill=c["block"],
          size=8)
    d.arrow((10.5, 11), (10.5, 12.6))
    d.box(22, 8.8, 15, 2.2, "beta = sigmoid(b)\ng = -exp(A_log) softplus(a + dt_bias)",
          fill=c["block"], size=8)
    d.arrow((28.5, 7), (29.5, 8.8), "b, a", label_offset=(0.4, 0))
    d.box(5, 16.6, 26, 3.2, "gated delta rule, per value head (4.9.2, chunked as 4.9.3)\n"
          "S = exp(g) S + beta k (v - exp(g) S^T k)^T ,   o = S^T q", fill=c["attention"],
          size=8)
    d.arrow((10.5, 14.8), (12, 16.6), "q, k", label_offset=(0.5, 0))
    d.arrow((18, 9.9), (19.5, 16.6), "v", label_offset=(0.4, 0))
    d.arrow((29.5, 11), (25, 16.6))
    d.box(33, 16.6, 6.4, 3.2, "state S\nkey x value\nnumbers a head", fill=c["position"],
          size=7.5, dashed=True)
    d.arrow((33, 18.2), (31, 18.2), both=True)
    d.note(36.2, 21, "DeltaNetCache keeps it", size=7)
    d.note(36.2, 21.9, "(and the last 3 inputs", size=7)
    d.note(36.2, 22.8, "of the convolution)", size=7)
    d.box(8, 22, 20, 2, "RMSNorm(o) x SiLU(z), per value head", fill=c["block"], size=8)
    d.arrow((18, 19.8), (18, 22))
    d.line([(6, 7), (1.5, 7), (1.5, 23), (8, 23)], color=MUTED, dashed=True)
    d.note(1.0, 15, "z, the output gate", size=7, rotation=90)
    d.box(12, 25.6, 12, 1.8, "out_proj", fill=c["weight"])
    d.arrow((18, 24), (18, 25.6))
    d.box(12, 28.8, 12, 1.6, "(batch, tokens, d_in)", fill=c["output"], size=8)
    d.arrow((18, 27.4), (18, 28.8))
    return d


if __name__ == "__main__":
    run_main(lambda: main(FIGURES, Path(__file__).parent / "figures"))
