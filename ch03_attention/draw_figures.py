"""Chapter 3's diagrams, drawn as SVG into figures/: `python ch03_attention/draw_figures.py`.

The numbers in the attention diagrams are computed here with the notebook's inputs and seeds,
so a figure shows what the notebook prints.
"""

from pathlib import Path

import torch
from torch import nn

from shared.tooling.command_line import run_main
from shared.tooling.diagrams import COLORS, Diagram, blend, main, registry


FIGURES, figure = registry()

WORDS = ["Your", "journey", "starts", "with", "one", "step"]
INPUTS = torch.tensor([[0.43, 0.15, 0.89], [0.55, 0.87, 0.66], [0.57, 0.85, 0.64],
                       [0.22, 0.58, 0.33], [0.77, 0.25, 0.10], [0.05, 0.80, 0.55]])
HEAD_COLORS = ["#fbcfe8", "#ddd6fe"]  # head 1 pink, head 2 violet


def causal_weights() -> torch.Tensor:
    """The causal attention weights of the notebook's section 3.5 (nn.Linear, seed 789)."""
    torch.manual_seed(789)
    w_query, w_key = nn.Linear(3, 2, bias=False), nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        scores = w_query(INPUTS) @ w_key(INPUTS).T
        future = torch.triu(torch.ones(6, 6, dtype=torch.bool), diagonal=1)
        return torch.softmax(scores.masked_fill(future, -torch.inf) / 2**0.5, dim=-1)


@figure
def chapter_roadmap():
    d = Diagram(46, 9.5, "The chapter's four steps, each built on the one before")
    steps = [("3.3", "simplified\nself-attention", "weights from the\ninputs themselves"),
             ("3.4", "self-attention", "trainable query, key\nand value projections"),
             ("3.5", "causal attention", "no token sees the\ntokens after it"),
             ("3.6", "multi-head\nattention", "several heads\nside by side")]
    for i, (section, name, what) in enumerate(steps):
        x = 1 + i * 11.4
        d.box(x, 2.6, 9, 2.6, name, fill=COLORS["block"] if i < 3 else COLORS["output"])
        d.note(x + 4.5, 1.9, f"section {section}")
        d.note(x + 4.5, 6.6, what)
        if i < 3:
            d.arrow((x + 9.1, 3.9), (x + 11.3, 3.9))
    return d


@figure
def word_by_word_translation():
    d = Diagram(46, 14.5, "Translating word by word gets the order wrong")
    german = ["Gestern", "habe", "ich", "ein", "Buch", "gelesen"]
    literal = ["Yesterday", "have", "I", "a", "book", "read"]
    english = ["Yesterday", "I", "read", "a", "book"]
    top = d.row(8, 2.2, literal, w=4.4, h=1.4, fill=COLORS["masked"])
    mid = d.row(8, 6.2, german, w=4.4, h=1.4, fill=COLORS["token"])
    bottom = d.row(8, 11.6, english, w=4.4, h=1.4, fill=COLORS["output"])
    d.note(0.5, 2.9, "word by word:", ha="left")
    d.note(0.5, 6.9, "German:", ha="left")
    d.note(0.5, 12.3, "English:", ha="left")
    for (gx, gy), (lx, ly) in zip(mid, top):
        d.arrow((gx, gy - 0.75), (lx, ly + 0.75), color=COLORS["muted"])
    # German source word -> English word; "habe" has no word of its own (it makes "read" past)
    links = {0: 0, 2: 1, 5: 2, 3: 3, 4: 4, 1: 2}
    for g, e in links.items():
        (gx, gy), (ex, ey) = mid[g], bottom[e]
        d.arrow((gx, gy + 0.75), (ex, ey - 0.75), color=COLORS["accent"], dashed=g == 1)
    d.note(31.6, 11.9, "the verb moves from last to third;", ha="left")
    d.note(31.6, 12.7, '"habe" only marks the past tense', ha="left")
    return d


@figure
def rnn_bottleneck():
    d = Diagram(46, 14, "An encoder-decoder RNN passes the whole input through one vector")
    source = ["Gestern", "habe", "ich", "...", "gelesen"]
    target = ["Yesterday", "I", "read", "..."]
    enc = [d.box(1 + 4 * i, 6, 3, 1.6, "RNN", fill=COLORS["block"]) for i in range(len(source))]
    for i, word in enumerate(source):
        d.box(0.7 + 4 * i, 10.4, 3.6, 1.4, word, fill=COLORS["token"], size=8)
        d.arrow((enc[i][0], 10.3), (enc[i][0], 7.7))
    for i in range(len(enc) - 1):
        d.arrow((enc[i][0] + 1.5, 6.8), (enc[i + 1][0] - 1.5, 6.8), f"h{i + 1}",
                label_offset=(-0.1, -0.6))
    d.box(21.5, 5.7, 4.6, 2.2, "h", fill=COLORS["embedding"], weight="bold",
           linewidth=2.0, edge=COLORS["accent"])
    d.arrow((enc[-1][0] + 1.5, 6.8), (21.4, 6.8))
    d.note(23.8, 9.2, "the only thing the")
    d.note(23.8, 10.0, "decoder ever sees")
    d.note(9.5, 3.4, "encoder: reads the whole sentence")
    d.note(37, 12.8, "decoder: writes the translation")
    dec = [d.box(28 + 4.5 * i, 6, 3, 1.6, "RNN", fill=COLORS["block"]) for i in range(len(target))]
    d.arrow((26.2, 6.8), (dec[0][0] - 1.5, 6.8))
    for i, word in enumerate(target):
        d.box(27.7 + 4.5 * i, 2.0, 3.6, 1.4, word, fill=COLORS["output"], size=8)
        d.arrow((dec[i][0], 5.9), (dec[i][0], 3.5))
        if i + 1 < len(dec):
            d.arrow((dec[i][0] + 1.5, 6.8), (dec[i + 1][0] - 1.5, 6.8))
    return d


@figure
def bahdanau_attention():
    d = Diagram(42, 16, "Attention: each decoder step looks back at every encoder state")
    source = ["Gestern", "habe", "ich", "ein", "Buch", "gelesen"]
    weights = [0.03, 0.12, 0.05, 0.02, 0.03, 0.75]  # illustrative: writing "read"
    states = d.row(1, 12.8, [f"h{i + 1}" for i in range(6)], w=3.2, h=1.4,
                   fill=COLORS["embedding"])
    for (sx, _), word in zip(states, source):
        d.note(sx, 15.0, word)
    alphas = []
    for (sx, sy), w in zip(states, weights):
        alphas.append(d.box(sx - 1.2, 9.6, 2.4, 1.2, f"{w:.2f}", fill=COLORS["attention"],
                            size=8, edge=COLORS["accent"] if w > 0.5 else COLORS["edge"]))
        d.arrow((sx, sy - 0.75), (sx, 10.9))
    d.note(25.2, 10.2, "weights α (softmax, sum to 1)", ha="left")
    ctx = d.box(8.6, 4.6, 5, 1.6, "context c", fill=COLORS["output"])
    for ax_, _ in alphas:
        d.arrow((ax_, 9.5), (ctx[0], 6.3), color=COLORS["muted"])
    d.note(1.0, 7.6, "Σ αⱼ · hⱼ", ha="left")
    d.box(22, 4.4, 5, 2, "decoder\nstep t", fill=COLORS["block"])
    d.arrow((13.7, 5.4), (21.9, 5.4))
    d.box(16, 1.6, 4.5, 1.3, "state s(t-1)", fill=COLORS["embedding"], size=8)
    d.arrow((20.6, 2.3), (22.5, 4.3))
    d.box(31, 4.7, 4.4, 1.4, "read", fill=COLORS["output"])
    d.arrow((27.1, 5.4), (30.9, 5.4))
    # s(t-1) is scored against every h_j: one dashed line from the decoder feeds all weights
    bus_y = 11.9
    d.line([(24.5, 6.5), (24.5, bus_y), (states[0][0] + 0.7, bus_y)], dashed=True,
           color=COLORS["accent"])
    for sx, _ in states:
        d.arrow((sx + 0.7, bus_y), (sx + 0.7, 10.85), dashed=True, color=COLORS["accent"])
    d.note(25.2, 8.0, "a score for every hⱼ,", ha="left")
    d.note(25.2, 8.8, "from s(t-1) and hⱼ", ha="left")
    return d


@figure
def context_vector_one_query():
    scores = INPUTS @ INPUTS[1]
    weights = torch.softmax(scores, dim=0)
    context = weights @ INPUTS
    d = Diagram(42, 13, 'One query: the context vector of "journey"')
    values = INPUTS.tolist()
    d.grid(5, 3, values, cell=1.6, cell_h=1.2, fill=COLORS["embedding"], row_labels=WORDS,
           highlight={(1, 0), (1, 1), (1, 2)})
    d.note(7.4, 2.1, "inputs x⁽ʲ⁾")
    d.grid(15, 3, [[s] for s in scores.tolist()], cell=1.8, cell_h=1.2,
           fill=COLORS["attention"])
    d.note(15.9, 2.1, "ω = x⁽²⁾ · x⁽ʲ⁾")
    d.arrow((10.1, 6.6), (14.8, 6.6), "dot with x⁽²⁾", label_offset=(0, -0.7))
    d.grid(22.5, 3, [[w] for w in weights.tolist()], cell=1.8, cell_h=1.2,
           fill=COLORS["attention"], shade=True)
    d.note(23.4, 2.1, "α = softmax(ω)")
    d.arrow((17.1, 6.6), (22.3, 6.6), "softmax", label_offset=(0, -0.7))
    d.grid(34, 6, [context.tolist()], cell=1.6, cell_h=1.2, fill=COLORS["output"])
    d.note(36.4, 5.1, "z⁽²⁾ = Σ α x⁽ʲ⁾")
    d.arrow((24.6, 6.6), (33.8, 6.6), "weighted sum of the rows x⁽ʲ⁾", label_offset=(0, -0.7))
    d.note(21, 11.9, "darker = larger weight; the weights are positive and sum to 1")
    return d


@figure
def attention_matrices():
    scores = INPUTS @ INPUTS.T
    weights = torch.softmax(scores, dim=-1)
    context = weights @ INPUTS
    d = Diagram(46, 14.5, "All queries at once: two matrix products and a row-wise softmax")
    d.grid(4.5, 4, scores.tolist(), cell=1.5, cell_h=1.2, fill=COLORS["attention"],
           row_labels=WORDS, size=7)
    d.note(9, 12.3, "scores Ω = X Xᵀ  (6×6)")
    d.arrow((14, 7.6), (16.4, 7.6), "softmax", label_offset=(0, -0.7))
    first_cell = len(d.ax.patches)
    d.grid(17, 4, weights.tolist(), cell=1.5, cell_h=1.2, fill=COLORS["attention"],
           col_labels=WORDS, size=7, highlight={(1, j) for j in range(6)})
    # a light shading of our own, so the dark cell text stays readable on the largest weights
    top = weights.max().item()
    for cell, w in zip(d.ax.patches[first_cell:], weights.flatten().tolist()):
        cell.set_facecolor(blend(COLORS["attention"], COLORS["accent"], 0.45 * w / top))
    d.note(21.5, 12.3, "weights A, each row sums to 1")
    d.arrow((26.5, 7.6), (29.4, 7.6), "A X", label_offset=(0, -0.7))
    d.grid(30, 4, context.tolist(), cell=1.5, cell_h=1.2, fill=COLORS["output"], size=7,
           highlight={(1, j) for j in range(3)})
    d.note(32.2, 12.3, "context Z  (6×3)")
    d.note(36, 6.0, "row i of Z mixes all", ha="left")
    d.note(36, 6.8, "inputs with row i of A;", ha="left")
    d.note(36, 7.6, 'outlined: "journey"', ha="left")
    return d


@figure
def qkv_projections():
    d = Diagram(40, 19.6, "Query, key and value: three projections of the same input")
    blank = [[""] * 3 for _ in range(6)]
    d.grid(1.5, 6.5, blank, cell=0.9, fill=COLORS["embedding"])
    d.note(2.85, 5.8, "X")
    d.note(2.85, 12.6, "6 × 3")
    d.note(2.85, 13.4, "(tokens × d_in)")
    rows = [("W_query", "Q", "queries: what each token looks for"),
            ("W_key", "K", "keys: what each token offers"),
            ("W_value", "V", "values: what each token hands over")]
    for r, (w_name, out, meaning) in enumerate(rows):
        y = 1.8 + r * 5.6
        d.arrow((4.4, 9.2), (7.0, y + 2.4), color=COLORS["muted"])
        d.text(7.8, y + 2.4, "@", size=10)
        d.grid(8.5, y + 1.0, [[""] * 2 for _ in range(3)], cell=0.9, fill=COLORS["weight"])
        d.note(9.4, y + 4.1, f"{w_name}  3 × 2")
        d.text(11.6, y + 2.3, "=", size=12)
        d.grid(12.6, y - 0.1, [[""] * 2 for _ in range(6)], cell=0.9, cell_h=0.8,
               fill=COLORS["output"])
        d.note(15.2, y + 2.3, f"{out}  6 × 2", ha="left")
        d.note(19.5, y + 2.3, meaning, ha="left")
    d.note(20, 19.0, "scores = Q Kᵀ (6 × 6);  context = softmax(scores / √d_k) V (6 × 2)")
    return d


@figure
def causal_mask():
    weights = causal_weights()
    d = Diagram(44, 13.5, "Causal attention: no token may look ahead")
    n = len(WORDS)
    mask = [[1.0 if j > i else 0.0 for j in range(n)] for i in range(n)]
    d.grid(4.5, 3.8, [["1" if v else "" for v in row] for row in mask], cell=1.2,
           fill=COLORS["block"], row_labels=WORDS, size=7)
    d.note(8.1, 11.8, "mask: 1 above the diagonal")
    d.arrow((12.2, 7.4), (14.6, 7.4))
    scores = [["" if j <= i else "−∞" for j in range(n)] for i in range(n)]
    d.grid(15, 3.8, scores, cell=1.2, fill=COLORS["attention"], size=7)
    d.note(18.6, 11.8, "scores: future set to −∞")
    d.arrow((22.7, 7.4), (25.3, 7.4), "softmax", label_offset=(0, -0.7))
    values = [[weights[i, j].item() if j <= i else None for j in range(n)] for i in range(n)]
    d.grid(26, 3.8, values, cell=1.7, cell_h=1.2, fill=COLORS["attention"], shade=True,
           col_labels=WORDS, size=7)
    d.note(31.1, 11.8, "weights: exp(−∞) = 0 above the diagonal")
    d.note(31.1, 12.7, "each row still sums to 1")
    return d


@figure
def dropout_weights():
    weights = causal_weights()
    torch.manual_seed(123)
    dropped = nn.Dropout(0.5)(weights)
    d = Diagram(44, 13, "Dropout (p = 0.5) on the attention weights")
    n = len(WORDS)
    before = [[weights[i, j].item() if j <= i else None for j in range(n)] for i in range(n)]
    d.grid(4.5, 3.8, before, cell=1.6, cell_h=1.2, fill=COLORS["attention"], size=7,
           row_labels=WORDS)
    d.note(9.3, 11.6, "causal weights")
    d.arrow((14.4, 7.4), (16.4, 7.4))
    keep = [["keep" if dropped[i, j] != 0 else "drop" if j <= i else None for j in range(n)]
            for i in range(n)]
    d.grid(16.8, 3.8, keep, cell=1.3, cell_h=1.2, fill=COLORS["block"], size=6)
    d.note(20.7, 11.6, "a random half is dropped")
    d.arrow((25, 7.4), (27, 7.4))
    after = [[dropped[i, j].item() if dropped[i, j] != 0 else None for j in range(n)]
             for i in range(n)]
    d.grid(27.4, 3.8, after, cell=1.6, cell_h=1.2, fill=COLORS["attention"], size=7,
           highlight={(i, j) for i in range(n) for j in range(n) if dropped[i, j] != 0})
    d.note(32.2, 11.6, "survivors × 1/(1 − p) = × 2")
    d.note(22, 12.5, "seed 123, as in the notebook; row 2 loses both its weights")
    return d


@figure
def multihead_wrapper():
    d = Diagram(38, 12, "Multi-head attention as a stack of single heads")
    d.box(1, 5, 5, 1.8, "X  (b, T, d_in)", fill=COLORS["embedding"], size=8)
    for h in range(2):
        y = 2.2 + h * 5
        d.arrow((6.1, 5.9), (9.4, y + 0.9))
        d.box(9.5, y, 8, 1.8, f"CausalAttention {h + 1}", fill=HEAD_COLORS[h])
        d.arrow((17.6, y + 0.9), (20.4, y + 0.9))
        d.box(20.5, y, 5, 1.8, "(b, T, d_out)", fill=COLORS["output"], size=8)
        d.arrow((25.6, y + 0.9), (28.4, 5.9))
    d.box(28.5, 5, 8.5, 1.8, "cat: (b, T, 2·d_out)", fill=COLORS["output"], size=8)
    d.note(19, 11.2, "each head has its own W_query, W_key, W_value; they run one after another")
    return d


@figure
def multihead_split_merge():
    d = Diagram(56, 20, "Splitting one projection into heads, and merging them back")
    # one token's query vector, cut into two heads
    d.note(1, 2.6, "one token's query (d_out = 4, 2 heads):", ha="left")
    d.row(21, 2.0, ["q1", "q2", "q3", "q4"], w=1.6, h=1.2, gap=0,
          fills=[HEAD_COLORS[0]] * 2 + [HEAD_COLORS[1]] * 2, size=8)
    d.arrow((27.6, 2.6), (30.4, 2.6), "view", label_offset=(0, -0.6))
    d.row(30.6, 1.4, ["q1", "q2"], w=1.6, h=1.0, gap=0, fill=HEAD_COLORS[0], size=8)
    d.row(30.6, 2.6, ["q3", "q4"], w=1.6, h=1.0, gap=0, fill=HEAD_COLORS[1], size=8)
    d.note(34.2, 1.9, "head 1", ha="left")
    d.note(34.2, 3.1, "head 2", ha="left")

    def step(x, y, shape, w=7.6, fill=COLORS["output"]):
        return d.box(x, y, w, 1.6, shape, fill=fill, size=8, family="monospace")

    xs = [0.5, 12.4, 25.5, 40.5]  # left edges of the four columns of boxes
    widths = [7.6, 7.6, 9.6, 9.6]
    labels_down = ["W_query", "view", "transpose(1, 2)"]
    labels_up = ["out_proj", "contiguous().view", "transpose(1, 2)"]
    y1, y2, y3 = 6.2, 11.2, 16.2
    for x, w, shape, fill in zip(xs, widths, ["(b, T, d_in)", "(b, T, d_out)",
                                             "(b, T, h, d_head)", "(b, h, T, d_head)"],
                                 [COLORS["embedding"], COLORS["output"], COLORS["output"],
                                  HEAD_COLORS[0]]):
        step(x, y1, shape, w=w, fill=fill)
    for x, w, shape, fill in zip(xs, widths, ["(b, T, d_out)", "(b, T, d_out)",
                                             "(b, T, h, d_head)", "(b, h, T, d_head)"],
                                 [COLORS["output"], COLORS["output"], COLORS["output"],
                                  HEAD_COLORS[0]]):
        step(x, y3, shape, w=w, fill=fill)
    for i in range(3):
        left, right = xs[i] + widths[i] + 0.1, xs[i + 1] - 0.1
        d.arrow((left, y1 + 0.8), (right, y1 + 0.8), labels_down[i], label_offset=(0, -0.6))
        d.arrow((right, y3 + 0.8), (left, y3 + 0.8), labels_up[i], label_offset=(0, -0.6))
    centre = xs[3] + widths[3] / 2
    d.note(centre, y1 + 2.3, "same for keys and values")
    d.arrow((centre, y1 + 2.9), (centre, y2 - 0.1), "Q Kᵀ", label_offset=(0.3, 0))
    step(xs[3], y2, "scores", w=widths[3], fill=COLORS["attention"])
    d.note(33, y2 + 0.4, "each head's queries against its keys,")
    d.note(33, y2 + 1.2, "all heads in one batched matmul")
    d.arrow((centre, y2 + 1.7), (centre, y3 - 0.1), "/ √d_head, mask, softmax, @ V",
            label_offset=(0.3, 0))
    d.note(17, y3 + 2.6, "heads concatenated back: d_out = h · d_head")
    return d


@figure
def kv_cache_growth():
    d = Diagram(44, 15.5, "A key-value cache grows by one column per generated token")
    words = ["Your", "journey", "starts", "with"]
    d.note(1, 2.4, "step", ha="left")
    d.note(5, 2.4, "new token", ha="left")
    d.note(12, 2.4, "cached keys (and values alike)", ha="left")
    d.note(31, 2.4, "work this step", ha="left")
    for s, word in enumerate(words):
        y = 3.4 + s * 2.8
        d.text(2, y + 0.7, str(s + 1))
        d.box(5, y, 4.8, 1.4, word, fill=COLORS["token"], size=8)
        cells = [["k" + str(j + 1) for j in range(s + 1)]]
        d.grid(12, y, cells, cell=1.9, cell_h=1.4, fill=COLORS["embedding"], size=8,
               highlight={(0, s)})
        d.arrow((9.9, y + 0.7), (11.9, y + 0.7), color=COLORS["accent"])
        d.note(31, y + 0.4, "project 1 token, append k, v;", ha="left")
        keys = "1 key" if s == 0 else f"{s + 1} keys"
        d.note(31, y + 1.1, f"its query attends over {keys}", ha="left")
    d.note(22, 14.9, "outlined: computed this step; the rest is read back, never recomputed")
    return d


if __name__ == "__main__":
    run_main(lambda: main(FIGURES, Path(__file__).parent / "figures"))
