"""Chapter 6's diagrams as SVG in figures/: `python ch06_classification/draw_figures.py`."""

from pathlib import Path

import tiktoken

from shared.tooling.command_line import run_main
from shared.tooling.diagrams import COLORS, Diagram, main, registry


FIGURES, figure = registry()
MUTED = COLORS["muted"]
PAD = "50256"


@figure
def kinds_of_finetuning():
    d = Diagram(40, 17, "Two ways to finetune a pretrained GPT")
    for x, title, prompt, answer, note in [
        (1, "instruction finetuning",
         "Is this message spam? Answer\nyes or no: 'You won $1000...'", "'Yes, it is spam.'",
         "any task written as text;\nneeds many varied examples\nand a larger model"),
        (21, "classification finetuning",
         "'You won $1000 cash, call now'", "spam   (one of 2 labels)",
         "one fixed task, fixed labels;\nfew examples, a small model,\ncheap and easy to evaluate"),
    ]:
        d.text(x + 9, 2.4, title, weight="bold", color=COLORS["accent"])
        d.box(x, 3.4, 18, 2.8, prompt, fill=COLORS["text"], size=8)
        d.arrow((x + 9, 6.3), (x + 9, 7.5))
        d.box(x + 3, 7.6, 12, 1.8, "pretrained GPT", fill=COLORS["block"])
        d.arrow((x + 9, 9.5), (x + 9, 10.7))
        d.box(x + 2, 10.8, 14, 1.8, answer, fill=COLORS["output"], size=8)
        d.text(x + 9, 14.6, note, size=8, color=MUTED)
    d.line([(20, 2), (20, 16.5)], color=COLORS["masked"])
    return d


@figure
def finetuning_pipeline():
    d = Diagram(40, 10.5, "This chapter in four stages")
    stages = [
        ("1  prepare the data", "6.2 balance, split\n6.3 pad into batches", COLORS["token"]),
        ("2  set up the model", "6.4 load a GPT\n6.5 add a 2-way head", COLORS["weight"]),
        ("3  finetune, evaluate", "6.6 loss, accuracy\n6.7 train on labels", COLORS["embedding"]),
        ("4  use it", "6.8 classify new\nmessages; save, load", COLORS["output"]),
    ]
    w, gap = 8.6, 1.2
    for i, (title, detail, fill) in enumerate(stages):
        x = 0.8 + i * (w + gap)
        d.box(x, 2, w, 2, title, fill=fill, weight="bold", size=8)
        d.text(x + w / 2, 6, detail, size=8, color=MUTED)
        if i:
            d.arrow((x - gap, 3), (x, 3))
    d.text(20, 9.2,
           "beyond the book, in a companion: LoRA trains 1.1% to 2.1% of the parameters",
           size=8, color=COLORS["accent"], style="italic")
    return d


@figure
def dataset_pipeline():
    d = Diagram(40, 12, "From 5,572 messages to three balanced splits")
    d.box(0.5, 2.5, 8.5, 3.2, "SMS Spam Collection\n5,572 messages", fill=COLORS["text"], size=8)
    d.grid(1.25, 6.5, [["4,825 ham"], ["747 spam"]], cell=7, cell_h=1.1, fill=COLORS["text"],
           fmt="")
    d.arrow((9.1, 4.1), (13.4, 4.1))
    d.text(11.25, 3.3, "undersample", size=7, color=MUTED)
    d.box(13.5, 2.5, 8, 3.2, "balanced\n1,494 messages", fill=COLORS["token"], size=8)
    d.grid(14, 6.5, [["747 ham"], ["747 spam"]], cell=7, cell_h=1.1, fill=COLORS["token"],
           fmt="")
    d.arrow((21.6, 4.1), (24.4, 4.1))
    d.text(23, 3.3, "shuffle", size=7, color=MUTED)
    x = 24.5
    for label, width, fill in [("train\n1,045", 8, COLORS["embedding"]),
                               ("val\n149", 3, COLORS["attention"]),
                               ("test\n300", 4.5, COLORS["output"])]:
        d.box(x, 2.5, width, 3.2, label, fill=fill, rounded=False, size=8)
        x += width
    d.text(32.25, 6.5, "70% / 10% / the rest (20%)", size=7, color=MUTED)
    notes = ["train: fits the weights", "validation: watch overfitting, choose settings",
             "test: measured only, never used to choose"]
    for i, note in enumerate(notes):
        d.text(24.5, 7.8 + 1.0 * i, note, size=7, ha="left", color=MUTED)
    d.text(20, 11.2, "each split is saved as CSV, so every later step reads the same messages",
           size=8, color=MUTED, style="italic")
    return d


def gpt2_tokens(text):
    """The text as GPT-2's tokenizer cuts it, one string per token."""
    tokenizer = tiktoken.get_encoding("gpt2")
    return [tokenizer.decode([i]) for i in tokenizer.encode(text)]


@figure
def padding_to_longest():
    d = Diagram(40, 14.5, "Padding every message to the longest training message")
    rows = [(f"message {i}", gpt2_tokens(text)) for i, text in
            enumerate(["Ok lar... Joking", "Free entry in 2 a wkly comp", "U dun say"], 1)]
    width = max(len(tokens) for _, tokens in rows)
    w, gap = 2.4, 0.15
    for r, (name, tokens) in enumerate(rows):
        y = 2.2 + r * 1.6
        d.text(5.2, y + 0.6, name, size=8, ha="right", color=MUTED)
        labels = tokens + [PAD] * (width - len(tokens))
        fills = [COLORS["token"]] * len(tokens) + [COLORS["masked"]] * (width - len(tokens))
        d.row(5.6, y, labels, w=w, h=1.2, gap=gap, fills=fills, size=7, family="monospace")
    end = 5.6 + width * (w + gap) - gap
    d.brace(5.6, end, 7.1, f"max_length = longest training message (here {width}; "
                           "in the data 120)")
    d.text(end + 0.4, 4.2, f"one rectangular\nbatch tensor\n({len(rows)}, {width})", size=8,
           ha="left", color=COLORS["accent"])
    # A longer message from another split is cut to the same length.
    y = 9.4
    d.text(5.2, y + 0.6, "longer", size=8, ha="right", color=MUTED)
    longer = gpt2_tokens("URGENT! Your mobile number has won a 2,000 prize")
    d.row(5.6, y, longer[:width], w=w, h=1.2, gap=gap, fill=COLORS["token"], size=7,
          family="monospace")
    d.row(end + 0.3, y, longer[width:width + 4], w=1.7, h=1.2, gap=0.1,
          fill=COLORS["masked"], size=7, family="monospace")
    d.line([(end + 0.15, y - 0.3), (end + 0.15, y + 1.5)], color=COLORS["accent"], linewidth=2)
    d.text(end + 3.9, y + 2.1, "truncated: cut off", size=7, color=COLORS["accent"])
    d.text(20, 13.5, f"padding token: <|endoftext|>, id {PAD}; the model reads it like any "
           "other token", size=8, color=MUTED, style="italic")
    return d


@figure
def classification_head():
    d = Diagram(40, 17.5, "Swapping the output head: 50,257 token scores become 2 class scores")
    stack = [("token ids  (batch, tokens)", COLORS["id"]),
             ("embeddings", COLORS["embedding"]),
             ("Transformer blocks", COLORS["block"]),
             ("final LayerNorm", COLORS["block"])]
    for i, (label, fill) in enumerate(stack):
        d.box(6, 2 + i * 2.6, 12, 1.8, label, fill=fill, size=8)
        if i:
            d.arrow((12, 2 + i * 2.6 - 0.75), (12, 2 + i * 2.6))
    y = 2 + 4 * 2.6
    d.arrow((12, y - 0.75), (12, y + 0.1))
    d.box(8, y + 0.2, 8, 1.8, "new head d → 2", fill=COLORS["weight"], size=8,
          weight="bold")
    d.text(12, y + 2.9, "new: random at first, then trained", size=7, color=MUTED)
    d.box(0.5, y + 0.2, 6.5, 1.8, "old head\nd → 50,257", fill=COLORS["masked"], size=7,
          color=MUTED, dashed=True)
    d.text(3.75, y + 2.9, "replaced", size=7, color=MUTED)
    d.text(9, y + 4.0, "d = 768 in GPT-2 small, 128 in the default profile", size=7,
           color=MUTED)
    # The output: one row of two logits per position; only the last row is used.
    tokens = ["You", " won", " $", "1000", " call", " now"]
    values = [[0.2, -0.1], [0.4, 0.3], [-0.2, 0.6], [0.1, 0.9], [0.3, 1.2], [-0.8, 2.1]]
    gx, gy = 27, 4.3
    d.text(gx + 2, 2.4, "output (tokens, 2)", size=8, weight="bold")
    d.grid(gx, gy, values, cell=2, cell_h=1.3, fmt="{:.1f}", fill=COLORS["output"],
           row_labels=tokens, col_labels=["ham", "spam"], highlight={(5, 0), (5, 1)})
    d.arrow((16.1, y + 1.1), (gx - 3.3, gy + 5.5))
    d.arrow((gx + 4.2, gy + 7.15), (gx + 6.4, gy + 7.15))
    d.text(gx + 6.6, gy + 7.15, "spam", size=9, ha="left", weight="bold",
           color=COLORS["accent"])
    d.text(gx + 2, gy + 9.4, "only the last row is used:\nargmax picks the label", size=8,
           color=COLORS["accent"])
    return d


@figure
def last_token_sees_all():
    d = Diagram(40, 14.5, "Why the last token: under the causal mask it alone sees every token")
    tokens = ["You", "won", "$", "1000", "call", "now"]
    n = len(tokens)
    weights = [[round(1 / (i + 1), 2) if j <= i else None for j in range(n)] for i in range(n)]
    gx, gy, cell, cell_h = 6, 3.4, 2.1, 1.3
    d.grid(gx, gy, weights, cell=cell, cell_h=cell_h, fmt="{:.2f}", fill=COLORS["attention"],
           row_labels=tokens, col_labels=tokens, highlight={(n - 1, j) for j in range(n)})
    d.text(gx + n * cell / 2, gy + n * cell_h + 0.9,
           "rows: the token that looks;  columns: the tokens it may see", size=7, color=MUTED)
    d.text(gx + n * cell / 2, gy + n * cell_h + 1.9,
           "(equal weights drawn for illustration; grey = masked)", size=7, color=MUTED)
    right = gx + n * cell
    for row, note in [(0, "first token: sees only itself"),
                      (3, "a middle token: sees the tokens up to itself"),
                      (n - 1, "last token: sees the whole message")]:
        yy = gy + row * cell_h + cell_h / 2
        d.arrow((right + 2.2, yy), (right + 0.3, yy))
        d.text(right + 2.5, yy, note, size=8, ha="left",
               color=COLORS["accent"] if row == n - 1 else MUTED)
    return d


@figure
def trainable_layers():
    d = Diagram(40, 17, "Which parameters train: three choices compared in this chapter")
    layers = ["token + position embeddings", "Transformer block 1", "...",
              "last Transformer block", "final LayerNorm", "classification head"]
    columns = [
        ("last block (book)", [False, False, False, True, True, True], False),
        ("all layers", [True] * 6, False),
        ("LoRA (companion)", [False] * 6, True),
    ]
    for c, (title, trainable, lora) in enumerate(columns):
        x = 1 + c * 13
        d.text(x + 5.5, 2.2, title, weight="bold", color=COLORS["accent"])
        for i, layer in enumerate(layers):
            y = 3.2 + i * 1.8
            if layer == "...":
                d.text(x + 5.5, y + 0.7, "⋮", size=10, color=MUTED)
                continue
            fill = COLORS["weight"] if trainable[i] else COLORS["masked"]
            d.box(x, y, 11, 1.4, layer, fill=fill, size=7,
                  color=COLORS["edge"] if trainable[i] else MUTED)
            if lora and i > 0 and "LayerNorm" not in layer:
                d.box(x + 9.3, y + 0.2, 1.5, 1.0, "AB", fill=COLORS["weight"], size=6)
    d.box(1, 14.6, 1.4, 0.9, fill=COLORS["weight"])
    d.text(2.8, 15.05, "trained", size=8, ha="left")
    d.box(8, 14.6, 1.4, 0.9, fill=COLORS["masked"])
    d.text(9.8, 15.05, "frozen (requires_grad = False)", size=8, ha="left")
    d.box(25, 14.6, 1.4, 0.9, "AB", fill=COLORS["weight"], size=6)
    d.text(26.8, 15.05, "LoRA's low-rank update beside", size=8, ha="left")
    d.text(26.8, 16.1, "each linear layer (no LayerNorm)", size=8, ha="left")
    return d


@figure
def finetuning_loop():
    d = Diagram(40, 14, "One finetuning run: what happens every step, every few steps, every epoch")
    steps = [("batch\n(8, 120) ids", COLORS["id"]), ("model\n(8, 120, 2)", COLORS["block"]),
             ("last token\n(8, 2) logits", COLORS["output"]),
             ("cross-entropy\nwith labels", COLORS["attention"]),
             ("backward,\noptimizer step", COLORS["weight"])]
    w, gap = 6.4, 1.3
    for i, (label, fill) in enumerate(steps):
        x = 0.8 + i * (w + gap)
        d.box(x, 2.2, w, 2.6, label, fill=fill, size=8)
        if i:
            d.arrow((x - gap, 3.5), (x, 3.5))
    last = 0.8 + 4 * (w + gap)
    d.arrow((last + w / 2, 4.9), (0.8 + w / 2, 4.9), curve=-0.12)
    d.text(20, 7.8, "every step: the next batch (130 batches = one epoch)", size=8, color=MUTED)
    d.box(2, 9.3, 16, 2.2, "every eval_freq steps: loss on a few\ntraining and validation batches",
          fill=COLORS["block"], size=8)
    d.box(21, 9.3, 17, 2.2, "every epoch: accuracy on a few\ntraining and validation batches",
          fill=COLORS["block"], size=8)
    d.text(20, 12.9, "the loss is what we train on; accuracy is what we report", size=8,
           color=COLORS["accent"], style="italic")
    return d


@figure
def lora_update():
    d = Diagram(40, 17.5, "LoRA: a frozen weight plus a trainable low-rank update")
    d.box(1, 6.4, 3.5, 2, "x", fill=COLORS["embedding"], weight="bold")
    d.text(2.75, 9.1, "(…, d_in)", size=7, color=MUTED)
    d.box(9, 1.8, 8, 5.2, "W   d_in × d_out\nfrozen", fill=COLORS["masked"], color=MUTED)
    d.box(9, 8.4, 1.6, 5.2, "A", fill=COLORS["weight"], weight="bold")
    d.text(9.8, 14.3, "d_in × r", size=7, color=MUTED)
    d.box(11.8, 10.2, 5.2, 1.6, "B", fill=COLORS["weight"], weight="bold")
    d.text(14.4, 12.5, "r × d_out, starts at 0", size=7, color=MUTED)
    d.arrow((4.6, 7.4), (8.9, 4.4))
    d.arrow((4.6, 7.4), (8.9, 11))
    d.arrow((10.7, 11), (11.7, 11))
    d.box(21, 6.4, 2.6, 2, "+", fill=COLORS["block"], weight="bold", size=11)
    d.arrow((17.1, 4.4), (21.5, 6.3))
    d.arrow((17.1, 11), (21.5, 8.5), label="× α / r", label_offset=(0.5, 0.4))
    d.arrow((23.7, 7.4), (26.2, 7.4))
    d.text(26.5, 7.4, "x W + (α / r) x A B", size=8, ha="left", family="monospace")
    notes = [("parameters of one layer:", COLORS["edge"]),
             ("  W: d_in · d_out, frozen", MUTED),
             ("  A, B: r · (d_in + d_out), trained", MUTED),
             ("GPT-2 small's 768 × 768 projection, r = 16:", COLORS["edge"]),
             ("  589,824 frozen vs 24,576 trained (4%)", COLORS["accent"])]
    for i, (note, color) in enumerate(notes):
        d.text(26, 10.2 + 1.2 * i, note, size=8, ha="left", color=color)
    d.text(20, 16.6, "B = 0 at the start, so training starts exactly from the pretrained model",
           size=8, color=MUTED, style="italic")
    return d


if __name__ == "__main__":
    run_main(lambda: main(FIGURES, Path(__file__).parent / "figures"))
