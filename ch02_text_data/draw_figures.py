"""Chapter 2's diagrams, drawn as SVG into figures/: `python ch02_text_data/draw_figures.py`."""

import json
import re
from pathlib import Path

from shared.tooling.command_line import run_main
from shared.tooling.diagrams import COLORS, Diagram, main, registry


FIGURES, figure = registry()

# The tiny corpus of section 2.5.1: word -> how often it occurs (the notebook uses the same).
TINY_CORPUS = {"tea": 4, "team": 3, "steam": 2, "eat": 3}


@figure
def pipeline_overview():
    d = Diagram(46, 15, "From text to the vectors a GPT model reads")
    d.box(0.5, 5.2, 7.5, 1.6, '"the cat sat"', fill=COLORS["text"], family="monospace")
    d.text(4.25, 3.6, "text", size=8, color=COLORS["muted"])
    # "␣" marks the leading space each GPT-2 token carries (2.5); the ids are those of
    # "the", " cat" and " sat".
    d.row(10.5, 5.2, ["the", "␣cat", "␣sat"], w=2.4, h=1.6, fill=COLORS["token"],
          family="monospace", gap=0.3)
    d.arrow((8.1, 6.0), (10.4, 6.0))
    d.text(9.25, 4.6, "tokenize", size=8, color=COLORS["muted"])
    d.text(14.25, 3.6, "tokens (2.2, 2.5)", size=8, color=COLORS["muted"])
    d.text(14.25, 7.6, "␣ = the leading space, part of the token", size=7,
           color=COLORS["muted"])
    d.row(19.5, 5.2, ["1169", "3797", "3332"], w=2.4, h=1.6, fill=COLORS["id"],
          family="monospace", gap=0.3)
    d.arrow((18.4, 6.0), (19.4, 6.0))
    d.text(23.4, 3.6, "token ids (2.3-2.5)", size=8, color=COLORS["muted"])
    # Batches of ids go into the model; its first layers turn each id into a vector.
    d.arrow((27.4, 6.0), (32.1, 6.0))
    d.text(29.75, 4.6, "batches", size=8, color=COLORS["muted"])
    d.text(29.75, 7.4, "of ids (2.6)", size=8, color=COLORS["muted"])
    d.box(31.5, 2.2, 14.0, 10.7, "", fill=COLORS["block"])
    d.text(38.5, 3.2, "GPT model", weight="bold")
    d.box(32.2, 4.0, 12.6, 4.6, "", fill=COLORS["embedding"])
    d.text(38.5, 4.8, "token + position embeddings", size=8)
    d.text(38.5, 5.8, "(2.7, 2.8): one vector per id", size=8)
    for k, x in enumerate((36.4, 38.2, 40.0)):  # one column vector per id
        d.grid(x, 6.4, [[0.3 - 0.2 * k], [-0.1 * k], ["⋮"]], cell=0.7, cell_h=0.6, fmt="",
               fill=COLORS["embedding"])
    d.arrow((38.5, 8.7), (38.5, 9.6))
    d.box(32.2, 9.7, 12.6, 2.5, "attention and the rest\n(chapters 3-4)", size=8)
    d.text(23, 14.2, "Each step is one section of this chapter; the embeddings are the "
           "model's first layers, trained with it.", size=8, style="italic",
           color=COLORS["muted"])
    return d


# The made-up word vectors of section 2.1, in chart coordinates (x to the right, y upwards).
# The notebook measures distances in the same file, so the picture and its numbers agree.
EMBEDDING_SPACE = Path(__file__).parent / "figures" / "embedding_space.json"


@figure
def embedding_space():
    groups = json.loads(EMBEDDING_SPACE.read_text(encoding="utf-8"))["groups"]
    origin_x, origin_y = 3, 16  # where the chart's (0, 0) sits in the drawing (y grows down)

    def at(xy):
        return origin_x + xy[0], origin_y - xy[1]

    d = Diagram(30, 18, "Words as points: similar meanings sit close together")
    d.line([(origin_x, origin_y), (28, origin_y)], color=COLORS["muted"])
    d.line([(origin_x, origin_y), (origin_x, 2.2)], color=COLORS["muted"])
    d.text(27.6, 16.6, "dimension 1", size=8, color=COLORS["muted"], ha="right")
    d.text(2.2, 2.8, "dimension 2", size=8, color=COLORS["muted"], rotation=90, va="top")
    fills = {"animals": COLORS["token"], "fruit": COLORS["embedding"],
             "verbs of motion": COLORS["id"]}
    for name, words in groups.items():
        points = [at(xy) for xy in words.values()]
        for word, (x, y) in zip(words, points):
            d.box(x - 1.4, y - 0.45, 2.8, 0.9, word, fill=fills[name], size=8)
        xs, ys = [x for x, _ in points], [y for _, y in points]
        d.text(sum(xs) / len(xs), max(ys) + 1.2, name, size=8, style="italic",
               color=COLORS["muted"])
    (_, cat_y), (dog_x, _) = at(groups["animals"]["cat"]), at(groups["animals"]["dog"])
    apple_x, apple_y = at(groups["fruit"]["apple"])
    d.arrow((dog_x + 1.5, cat_y + 0.6), (apple_x - 1.5, apple_y + 0.4), curve=-0.15,
            dashed=True, both=True, color=COLORS["muted"])
    d.text(14, 7.6, "far apart: unrelated", size=8, color=COLORS["muted"])
    d.text(15.5, 17.3, "Illustrative, made-up coordinates in 2 dimensions; GPT-2 small uses 768.",
           size=8, style="italic", color=COLORS["muted"])
    return d


@figure
def regex_split():
    d = Diagram(40, 10.5, "Splitting on whitespace and punctuation, then dropping the spaces")
    d.box(0.5, 1.8, 16, 1.4, '"Hello, world. Is this-- a test?"', fill=COLORS["text"],
          family="monospace")
    # The pieces re.split keeps (empty strings dropped), with the pattern of 2.2's
    # simple_tokenize.
    pattern = r'([,.:;?_!"()\']|--|\s)'
    pieces = [p for p in re.split(pattern, "Hello, world. Is this-- a test?") if p]
    widths = [3.0 if len(p) > 2 else 1.4 for p in pieces]
    x = 0.5
    for piece, w in zip(pieces, widths):
        space = piece == " "
        d.box(x, 4.4, w, 1.3, "␣" if space else piece, family="monospace", size=8,
              fill=COLORS["masked"] if space else COLORS["token"], dashed=space)
        x += w + 0.25
    d.arrow((8.5, 3.3), (8.5, 4.3))
    d.text(9.0, 3.8, "re.split with a capturing group: separators are kept "
           "(the empty strings it also returns are not drawn)", size=8, ha="left",
           color=COLORS["muted"])
    kept = [p for p in pieces if p != " "]
    d.row(0.5, 7.6, kept, w=2.5, h=1.3, fill=COLORS["token"], family="monospace", size=8,
          gap=0.25)
    d.arrow((8.5, 5.8), (8.5, 7.5))
    d.text(9.0, 6.65, f"drop the whitespace pieces (grey) and the empty strings: {len(kept)} "
           "tokens", size=8, ha="left", color=COLORS["muted"])
    d.text(20, 9.9, "Punctuation becomes tokens of its own, so \"world.\" and \"world\" "
           "share the token \"world\".", size=8, style="italic", color=COLORS["muted"])
    return d


@figure
def vocabulary_lookup():
    d = Diagram(40, 14, "A vocabulary maps each token to an id, and back")
    tokens = ["It", "'", "s", "the", "last", "he", "painted"]
    ids = ["56", "2", "850", "988", "602", "533", "746"]
    d.text(0.5, 2.6, "encode: str_to_int[token]", size=9, weight="bold", ha="left")
    tok_centres = d.row(0.5, 3.3, tokens, w=2.7, h=1.2, fill=COLORS["token"],
                        family="monospace", size=8)
    id_centres = d.row(0.5, 9.3, ids, w=2.7, h=1.2, fill=COLORS["id"], family="monospace",
                       size=8)
    for (tx, ty), (ix, iy) in zip(tok_centres, id_centres):
        d.arrow((tx, ty + 0.7), (ix, iy - 0.7), color=COLORS["muted"])
    d.text(0.5, 11.6, "decode: int_to_str[id], the inverted table", size=8, ha="left",
           color=COLORS["muted"])
    table = [["!", "0"], ['"', "1"], ["'", "2"], ["…", "…"], ["he", "533"], ["…", "…"],
             ["the", "988"], ["…", "…"], ["yourself", "1129"]]
    d.text(27.5, 2.3, "vocabulary (sorted, 1,130 entries)", size=8, weight="bold")
    for k, (tok, i) in enumerate(table):
        y = 3.0 + k * 1.05
        hot = tok in ("he", "the")
        d.box(23.5, y, 4.6, 1.0, tok, fill=COLORS["token"], family="monospace", size=8,
              rounded=False, edge=COLORS["accent"] if hot else COLORS["edge"])
        d.box(28.3, y, 3.2, 1.0, i, fill=COLORS["id"], family="monospace", size=8,
              rounded=False, edge=COLORS["accent"] if hot else COLORS["edge"])
    d.text(33.2, 3.5, "← sorting makes the", size=8, ha="left", color=COLORS["muted"])
    d.text(33.2, 4.4, "ids reproducible", size=8, ha="left", color=COLORS["muted"])
    d.text(20, 13.3, "V1 fails on a word missing from the table; V2 maps it to <|unk|>.",
           size=8, style="italic", color=COLORS["muted"])
    return d


@figure
def special_tokens():
    d = Diagram(46, 8.0, "Two special tokens: a separator and a stand-in for unknown words")
    doc1 = ["Hello", ",", "do", "you", "like", "tea", "?"]
    doc2 = ["In", "the", "sunlit", "terraces", "of", "the", "palace", "."]
    fills = [COLORS["attention"] if w in ("Hello", "palace") else COLORS["token"]
             for w in doc1 + ["<|endoftext|>"] + doc2]
    fills[len(doc1)] = COLORS["position"]
    labels = doc1 + ["<|endoftext|>"] + doc2
    x, starts, ends = 0.5, [], []
    for label, fill in zip(labels, fills):
        w = 6.2 if label == "<|endoftext|>" else 0.45 * len(label) + 0.8
        d.box(x, 3.0, w, 1.3, label, fill=fill, family="monospace", size=8)
        if label in ("Hello", "palace"):
            d.text(x + w / 2, 5.2, "→ <|unk|>", size=8, family="monospace",
                   color=COLORS["edge"])
        starts.append(x)
        ends.append(x + w)
        x += w + 0.2
    d.brace(starts[0], ends[len(doc1) - 1], 2.7, "document 1", below=False)
    d.brace(starts[len(doc1) + 1], ends[-1], 2.7, "document 2", below=False)
    d.text(starts[len(doc1)] + 3.1, 5.2,
           "↑ separator: what follows does not continue what came before", size=8,
           color=COLORS["muted"])
    d.text(23, 7.0, "Pink: words not among the story's 1,130 tokens, both encoded as the "
           "same <|unk|> id.", size=8, style="italic", color=COLORS["muted"])
    return d


def _tiny_bpe_steps(n_steps: int):
    """The first merges of byte-level BPE on TINY_CORPUS, computed with the chapter's code."""
    from ch02_text_data.bpe import count_pairs, merge_pair, most_frequent_pair

    sequences = {tuple(word.encode("utf-8")): n for word, n in TINY_CORPUS.items()}
    names = {b: chr(b) for b in range(256)}
    steps = [(dict(sequences), None, None)]
    for k in range(n_steps):
        counts = count_pairs(sequences)
        a, b = most_frequent_pair(counts)
        new_id = 256 + k
        names[new_id] = names[a] + names[b]
        sequences = {merge_pair(s, (a, b), new_id): n for s, n in sequences.items()}
        steps.append((dict(sequences), names[new_id], counts[(a, b)]))
    return steps, names


@figure
def bpe_merges():
    steps, names = _tiny_bpe_steps(3)
    d = Diagram(44, 5.0 + 3.0 * len(steps), "Byte-pair encoding: merge the most frequent "
                "neighbouring pair, repeat")
    d.text(0.5, 2.2, "word (count)", size=8, ha="left", color=COLORS["muted"])
    words = list(TINY_CORPUS)
    for k, (sequences, merged, count) in enumerate(steps):
        y = 3.0 + 3.0 * k
        label = ("start: single characters" if merged is None
                 else f"merge {k}, id {255 + k}: '{merged}' ({count}×)")
        d.text(0.5, y + 0.6, label, size=8, ha="left",
               weight="bold" if merged else "normal")
        x = 12.5
        for word, seq in zip(words, sequences):
            for token_id in seq:
                text = names[token_id]
                w = 0.9 + 0.55 * len(text)
                hot = merged is not None and text == merged
                d.box(x, y, w, 1.2, text, family="monospace", size=8,
                      fill=COLORS["id"] if hot else COLORS["token"],
                      edge=COLORS["accent"] if hot else COLORS["edge"])
                x += w + 0.1
            d.text(x + 0.15, y + 0.6, f"({TINY_CORPUS[word]})", size=7, ha="left",
                   color=COLORS["muted"])
            x += 2.0
    d.text(22, 4.2 + 3.0 * len(steps), "Each merge adds one token to the vocabulary; "
           "frequent words end up as one token.", size=8, style="italic",
           color=COLORS["muted"])
    return d


@figure
def byte_to_char():
    from ch02_text_data.bpe import gpt2_byte_to_char

    to_char = gpt2_byte_to_char()
    d = Diagram(40, 13, "GPT-2's files write every byte as one printable character")
    d.text(0.5, 2.4, "printable bytes stand for themselves", size=8, ha="left",
           weight="bold")
    d.row(0.5, 3.0, [f"{b}→{to_char[b]}" for b in (33, 65, 97, 116, 233)], w=2.6, h=1.1,
          fill=COLORS["id"], size=8, family="monospace")
    d.text(21, 2.4, "the others are shifted to code point 256 and up", size=8, ha="left",
           weight="bold")
    d.row(21, 3.0, [f"{b}→{to_char[b]}" for b in (0, 9, 10, 32, 173)], w=2.6, h=1.1,
          fill=COLORS["weight"], size=8, family="monospace")
    examples = [(" the", "a word with its leading space"),
                ("café", "é is two bytes in UTF-8, not the byte 233")]
    for k, (text, note) in enumerate(examples):
        y = 6.2 + 3.2 * k
        raw = text.encode("utf-8")
        d.box(0.5, y, 4.5, 1.2, repr(text), fill=COLORS["text"], family="monospace", size=8)
        d.arrow((5.1, y + 0.6), (6.9, y + 0.6))
        d.row(7.0, y, [str(b) for b in raw], w=1.6, h=1.2, fill=COLORS["id"],
              family="monospace", size=8, gap=0.1)
        x_end = 7.0 + len(raw) * 1.7
        d.arrow((x_end, y + 0.6), (x_end + 1.8, y + 0.6))
        d.box(x_end + 1.9, y, 4.0, 1.2, "".join(to_char[b] for b in raw),
              fill=COLORS["token"], family="monospace", size=9)
        d.text(x_end + 6.3, y + 0.6, note, size=8, ha="left", color=COLORS["muted"])
    d.text(20, 12.3, "text → UTF-8 bytes → the characters written in encoder.json and vocab.bpe",
           size=8, style="italic", color=COLORS["muted"])
    return d


@figure
def sliding_window():
    ids = [40, 367, 2885, 1464, 1807, 3619, 402, 271, 10899, 2138]
    d = Diagram(42, 18.5, "Sliding a window over the token ids: inputs and targets")
    cell = 3.2
    x0 = 6.5
    d.text(0.5, 2.8, "token ids", size=8, ha="left", color=COLORS["muted"])
    d.row(x0, 2.2, [str(i) for i in ids], w=cell - 0.2, h=1.2, fill=COLORS["id"],
          family="monospace", size=8)
    windows = [(0, "window 1"), (4, "window 2 (stride 4)")]
    for k, (start, name) in enumerate(windows):
        y = 5.0 + 4.8 * k
        d.text(0.5, y + 0.6, "input", size=8, ha="left", weight="bold")
        d.text(0.5, y + 2.2, "target", size=8, ha="left", weight="bold")
        d.row(x0 + start * cell, y, [str(i) for i in ids[start:start + 4]], w=cell - 0.2,
              h=1.2, fill=COLORS["token"], family="monospace", size=8)
        d.row(x0 + (start + 1) * cell, y + 1.6, [str(i) for i in ids[start + 1:start + 5]],
              w=cell - 0.2, h=1.2, fill=COLORS["output"], family="monospace", size=8)
        d.text(x0 + (start + 5) * cell + 0.3, y + 1.4, name, size=8, ha="left",
               color=COLORS["muted"])
    d.brace(x0, x0 + 4 * cell - 0.2, 14.8, "max_length = 4")
    d.arrow((x0 + 0.3, 17.0), (x0 + 4 * cell + 0.3, 17.0), color=COLORS["accent"])
    d.text(x0 + 4 * cell + 0.8, 17.0, "stride = 4: the next window starts 4 ids later "
           "(stride 1 would start at 367)", size=8, ha="left", color=COLORS["accent"])
    d.text(x0 + 13.2, 4.4, "the target window starts one token later: "
           "target i is the id after input i",
           size=8, ha="left", style="italic", color=COLORS["muted"])
    return d


@figure
def embedding_lookup():
    weights = [[0.34, -0.18, -0.17], [0.92, 1.58, 1.30], [1.28, -0.20, -0.16],
               [-0.40, 0.97, -1.15], [-1.16, 0.33, -0.63], [-2.84, -0.78, -1.41]]
    ids = [2, 3, 5, 1]
    d = Diagram(40, 14.5, "An embedding layer looks up one row of its weight matrix per id")
    d.text(2.5, 2.6, "ids", size=8, weight="bold")
    centres = []
    for k, i in enumerate(ids):
        centres.append(d.box(1.5, 3.5 + 2.1 * k, 2.0, 1.2, str(i), fill=COLORS["id"],
                             family="monospace"))
    d.text(15.0, 2.6, "weight matrix (6 × 3, trainable)", size=8, weight="bold")
    d.grid(11.0, 3.5, weights, cell=2.6, cell_h=1.2, fmt="{:.2f}", fill=COLORS["weight"],
           row_labels=[f"row {r}" for r in range(6)],
           highlight={(r, c) for r in ids for c in range(3)})
    d.text(33.5, 2.6, "output (4 × 3)", size=8, weight="bold")
    for k, i in enumerate(ids):
        d.grid(29.6, 3.5 + 2.1 * k, [weights[i]], cell=2.6, cell_h=1.2, fmt="{:.2f}",
               fill=COLORS["embedding"])
        d.arrow((3.6, centres[k][1]), (8.6, 4.1 + 1.2 * i), color=COLORS["muted"])
        d.arrow((18.9, 4.1 + 1.2 * i), (29.5, 4.1 + 2.1 * k), color=COLORS["accent"],
                curve=0.0)
    d.text(20, 13.3, "Same result as one_hot(ids) @ W, without building the one-hot vectors.",
           size=8, style="italic", color=COLORS["muted"])
    return d


@figure
def input_embeddings():
    d = Diagram(42, 14, "Input embeddings = token embeddings + position embeddings")

    def slab(x, y, fill, label, shape, depth):
        for k in reversed(range(depth)):
            d.box(x + 0.5 * k, y - 0.5 * k, 9.0, 5.0, "", fill=fill, rounded=False)
        d.text(x + 4.5, y + 2.1, label, size=8, weight="bold")
        d.text(x + 4.5, y + 3.3, shape, size=8, family="monospace")

    slab(0.5, 5.0, COLORS["embedding"], "token embeddings", "(8, 4, 256)", 4)
    d.text(12.6, 7.5, "+", size=16, weight="bold")
    d.box(14.5, 5.0, 9.0, 5.0, "", fill=COLORS["position"], rounded=False)
    d.text(19.0, 7.1, "position embeddings", size=8, weight="bold")
    d.text(19.0, 8.3, "(4, 256)", size=8, family="monospace")
    d.text(25.4, 7.5, "=", size=16, weight="bold")
    slab(27.0, 5.0, COLORS["output"], "input embeddings", "(8, 4, 256)", 4)
    d.text(5.0, 11.2, "one vector per token id,\nfrom inputs (8, 4)", size=8,
           color=COLORS["muted"])
    d.text(19.0, 11.2, "one vector per position 0..3,\nthe same for every row of the batch",
           size=8, color=COLORS["muted"])
    d.text(32.0, 11.2, "what chapter 3's attention\nreceives", size=8, color=COLORS["muted"])
    d.text(21, 13.3, "shapes: (batch, context length, embedding dim); the (4, 256) table is "
           "broadcast over the batch", size=8, style="italic", color=COLORS["muted"])
    return d


if __name__ == "__main__":
    run_main(lambda: main(FIGURES, Path(__file__).parent / "figures"))
