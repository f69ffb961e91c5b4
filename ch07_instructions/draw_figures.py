"""Chapter 7's diagrams, drawn as SVG into figures/: `python ch07_instructions/draw_figures.py`."""

from pathlib import Path

from shared.tooling.command_line import run_main
from shared.tooling.diagrams import COLORS, Diagram, main, registry


FIGURES, figure = registry()

MUTED = COLORS["muted"]


@figure
def finetuning_pipeline():
    d = Diagram(44, 18.2, "Instruction finetuning in three stages")
    stages = [
        ("1  Prepare the data", COLORS["token"],
         ["7.2  load, template, split", "7.3  collate: pad, shift, mask", "7.4  data loaders"]),
        ("2  Finetune", COLORS["weight"],
         ["7.5  the model before finetuning", "7.6  train: next-token loss",
          "7.7  generate responses, save"]),
        ("3  Evaluate", COLORS["output"],
         ["7.6  loss vs a unigram guess", "companion: pairing test, ROUGE-L",
          "7.8  an LLM as judge"]),
    ]
    for k, (title, fill, steps) in enumerate(stages):
        x = 0.5 + k * 14.6
        d.box(x, 2.0, 13.4, 1.5, title, fill=fill, weight="bold")
        for j, step in enumerate(steps):
            beyond = k == 2 and j < 2  # the unigram guess (folded in 7.6) and the companion
            d.box(x + 0.6, 4.3 + j * 2.1, 12.2, 1.6, step, fill=COLORS["block"], size=8,
                  dashed=beyond)
        if k < 2:
            d.arrow((x + 13.5, 2.75), (x + 14.5, 2.75))
    d.box(0.5, 11.3, 13.4, 1.5, "1,100 instruction → response pairs", fill=COLORS["text"],
          size=8)
    d.box(15.1, 11.3, 13.4, 1.5, "GPT-2 medium (book) or random weights", fill=COLORS["embedding"],
          size=8)
    d.box(29.7, 11.3, 13.4, 1.5, "responses (JSON), scores", fill=COLORS["text"], size=8)
    d.box(15.7, 13.4, 26.8, 1.5, "beyond the book, 7.10: preference tuning (DPO) from the "
          "finetuned model", fill=COLORS["block"], size=8, dashed=True)
    d.note(22, 16.3, "Stage 2 reuses chapter 5's loss and training loop unchanged; "
          "what is new lives in the data (stage 1) and in judging free text (stage 3).",
          style="italic")
    d.note(22, 17.3, "Dashed boxes: beyond the book.", style="italic")
    return d


@figure
def prompt_template():
    d = Diagram(44, 17, "One entry, written in the Alpaca template")
    entry = [("instruction", "Identify the correct spelling of the following word."),
             ("input", "Ocassion"),
             ("output", "The correct spelling is 'Occasion.'")]  # data[50], printed in 7.2
    d.text(0.5, 2.2, "the entry (JSON)", size=8, ha="left", weight="bold")
    for k, (key, value) in enumerate(entry):
        y = 3.0 + k * 2.0
        d.box(0.5, y, 4.2, 1.5, key, fill=COLORS["id"], family="monospace", size=8)
        d.box(4.9, y, 12.6, 1.5, value, fill=COLORS["text"], size=6.5 if len(value) > 40 else 7.5)
    d.text(20.5, 2.2, "the text the model reads", size=8, ha="left", weight="bold")
    lines = [("Below is an instruction that describes a task. Write a", COLORS["masked"]),
             ("response that appropriately completes the request.", COLORS["masked"]),
             ("", None),
             ("### Instruction:", COLORS["token"]),
             ("Identify the correct spelling of the following word.", COLORS["token"]),
             ("", None),
             ("### Input:", COLORS["position"]),
             ("Ocassion", COLORS["position"]),
             ("", None),
             ("### Response:", COLORS["embedding"]),
             ("The correct spelling is 'Occasion.'<|endoftext|>", COLORS["embedding"])]
    for k, (line, fill) in enumerate(lines):
        if line:
            d.box(20.5, 3.0 + k * 1.05, 23.0, 1.0, line, fill=fill, family="monospace",
                  size=7, rounded=False, linewidth=0.4)
    for k, target in [(0, 7.2), (1, 10.35), (2, 13.5)]:
        d.arrow((17.6, 3.75 + k * 2.0), (20.4, target), color=COLORS["accent"])
    d.brace(0.5, 17.5, 9.3, "instruction and input fill the prompt; the output follows it")
    d.line([(20.5, 13.475), (43.5, 13.475)], color=COLORS["accent"], dashed=True)
    d.text(17.2, 12.7, "the prompt: the text above the dashed line,", size=7.5,
           color=COLORS["accent"], ha="right")
    d.text(17.2, 13.5, "'### Response:' included", size=7.5, color=COLORS["accent"], ha="right")
    d.text(17.2, 14.5, "below it, the response and its end", size=7.5,
           color=COLORS["accent"], ha="right")
    d.note(22, 15.6, "Grey: a fixed preamble. Entries without an input leave out the "
          "'### Input:' section.", style="italic")
    return d


@figure
def targets_shifted():
    d = Diagram(40, 9.5, "Targets are the inputs shifted by one token")
    tokens = ["### Response:", "The", " meal", " is", " cooked", ".", "<|endoftext|>"]
    cell = 4.6
    d.text(0.5, 3.1, "inputs", size=8, ha="left", weight="bold")
    d.text(0.5, 6.1, "targets", size=8, ha="left", weight="bold")
    for k, token in enumerate(tokens[:-1]):
        d.box(4.5 + k * cell, 2.5, cell - 0.3, 1.2, token, fill=COLORS["token"],
              family="monospace", size=7.5)
    for k, token in enumerate(tokens[1:]):
        d.box(4.5 + k * cell, 5.5, cell - 0.3, 1.2, token, fill=COLORS["output"],
              family="monospace", size=6.5 if len(token) > 12 else 7.5)
        d.arrow((4.5 + k * cell + 2.15, 3.8), (4.5 + (k + 1) * cell + 2.15 - cell, 5.4),
                color=MUTED)
    d.note(20, 8.3, "At every position the model predicts the next token; the last "
          "target is the end-of-text token, so it learns to stop (tokens simplified).",
          style="italic")
    return d


@figure
def padding_and_masking():
    d = Diagram(44, 16.5, "A batch: pad to the longest, keep one end-of-text, ignore the rest")
    eot = "eot"
    seqs = [[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]]
    width = 6
    inputs, targets = [], []
    for seq in seqs:
        padded = seq + [eot] * (width - len(seq))
        inputs.append([str(v) for v in padded[:-1]])
        targets.append([str(v) for v in padded[1:len(seq) + 1]] +
                       [None] * (width - 1 - len(seq)))
    d.text(7.0, 2.3, "inputs (padded with <|endoftext|>)", size=8, weight="bold")
    d.grid(1.5, 3.0, inputs, cell=2.2, cell_h=1.3, fill=COLORS["id"], fmt="",
           row_labels=["1", "2", "3"])
    d.text(28.0, 2.3, "targets (shifted; -100 after the first eot)", size=8, weight="bold")
    d.grid(17.5, 3.0, targets, cell=2.2, cell_h=1.3, fill=COLORS["output"], fmt="",
           highlight={(1, 1), (2, 2), (0, 4)})
    d.text(29.5, 3.65, "← the end-of-text each sequence learns to emit", size=7.5,
           ha="left", color=COLORS["accent"])
    for i, row in enumerate(targets):
        for j, value in enumerate(row):
            if value is None:
                d.text(17.5 + 2.2 * j + 1.1, 3.0 + 1.3 * i + 0.65, "-100", size=7.5,
                       family="monospace", color=MUTED)
    d.arrow((12.8, 4.95), (17.3, 4.95), "shift by one", label_offset=(0.0, -0.7))
    d.box(1.5, 8.6, 41.5, 5.6, "", fill=COLORS["block"])
    d.text(2.2, 9.5, "cross_entropy(logits, targets, ignore_index=-100) averages only over "
           "the targets that are not -100:", size=8, ha="left", family="monospace")
    d.text(2.2, 11.0, "  • padding is not trained (it would teach 'eot after eot' and "
           "dominate short sequences)", size=8, ha="left")
    d.text(2.2, 12.4, "  • the first eot is trained: without it the model would never "
           "learn to stop answering", size=8, ha="left")
    d.note(22, 15.4, "Grey cells carry the target -100. Each batch is padded only to its "
          "own longest sequence.", style="italic")
    return d


@figure
def instruction_masking():
    d = Diagram(44, 12, "Masking the instruction: the loss sees the response and its end-of-text")
    prompt = ["Below", "…", "###", "Instruction", ":", "…", "###", "Response", ":"]
    response = ["The", "meal", "is", "cooked", ".", "eot"]
    cell = 2.55
    for k, tok in enumerate(prompt + response):
        fill = COLORS["token"] if k < len(prompt) else COLORS["embedding"]
        size = 5.5 if len(tok) > 9 else 6.5 if len(tok) > 6 else 7  # "Instruction" fits its cell
        d.box(5.5 + k * cell, 2.5, cell - 0.2, 1.2, tok, fill=fill, size=size, rounded=False)
    d.text(0.5, 3.1, "text", size=8, ha="left", weight="bold")
    d.text(5.5, 4.5, "Under each token: the target predicted at that position (the next token), "
           "✓ trained or -100 ignored", size=7.5, ha="left", color=COLORS["muted"])
    d.text(0.5, 5.3, "unmasked", size=8, ha="left", weight="bold")
    d.text(0.5, 6.2, "(the default)", size=7, ha="left")
    d.text(0.5, 8.3, "masked", size=8, ha="left", weight="bold")
    d.text(0.5, 9.2, "(mask_instruction", size=6, ha="left", family="monospace")
    d.text(0.5, 9.9, "=True)", size=6, ha="left", family="monospace")
    for k in range(len(prompt) + len(response) - 1):
        fill = COLORS["output"]
        d.box(5.5 + k * cell, 5.1, cell - 0.2, 1.2, "✓", fill=fill, size=8, rounded=False)
        masked = k < len(prompt) - 1
        d.box(5.5 + k * cell, 8.1, cell - 0.2, 1.2, "-100" if masked else "✓",
              fill=COLORS["masked"] if masked else fill, size=7, rounded=False)
    d.brace(5.5, 5.5 + (len(prompt) - 1) * cell - 0.2, 9.4,
            "prompt tokens are not predicted")
    d.note(22, 11.3, "Tokens simplified: the real prompts are several times longer. "
           "eot is <|endoftext|>.", style="italic")
    return d


# Rows 2 and 3 quote the book's repository (rasbt/LLMs-from-scratch,
# ch07/01_main-chapter-code/ch07.ipynb, commit ce80a19, read on 2026-11-23): GPT-2 medium's
# response to the validation prompt before finetuning (section 7.5) and after (7.6's sample).
@figure
def before_and_after():
    d = Diagram(44, 17.0, "One prompt, three models: the book's example")
    d.box(0.5, 2.2, 13.0, 4.6, "", fill=COLORS["text"])
    prompt = ["### Instruction:", "Convert the active", "sentence to passive:",
              "'The chef cooks the", "meal every day.'"]
    for k, line in enumerate(prompt):
        d.text(1.0, 3.0 + k * 0.85, line, size=7.5, ha="left", family="monospace")
    rows = [("random weights", COLORS["masked"], "random tokens, up to the token limit",
             "this notebook's default start: random tokens, no stop"),
            ("GPT-2 medium, pretrained", COLORS["embedding"],
             "The chef cooks the meal every day. ### Instruction: …",
             "fluent, but repeats the sentence, then the instruction"),
            ("+ instruction finetuning", COLORS["weight"],
             "The meal is cooked every day by the chef.<|endoftext|>",
             "answers, then emits the end-of-text token")]
    for k, (name, fill, text, note) in enumerate(rows):
        y = 2.2 + k * 3.9
        d.box(15.0, y, 9.7, 1.6, name, fill=fill, size=8, weight="bold")
        quoted = k > 0  # row 1 describes; rows 2 and 3 quote the book's outputs
        d.box(25.3, y, 18.2, 1.6, text, fill=COLORS["block"], size=6.5 if quoted else 8,
              family="monospace" if quoted else "sans-serif")
        d.note(34.4, y + 2.3, note, style="italic")
        d.arrow((13.6, 4.5), (14.9, y + 0.8), color=MUTED)
    d.note(22, 14.3, "Rows 2 and 3: GPT-2 medium's responses as the book's repository reports "
          "them (rasbt/LLMs-from-scratch, ch07.ipynb,", style="italic")
    d.note(22, 15.2, "commit ce80a19, read 2026-11-23). This notebook's default run shows row 1; "
          "its finetuned model learns the format and the stop,", style="italic")
    d.note(22, 16.1, "not the answer. The book profile (section 7.9) runs this example with "
           "OpenAI's weights.", style="italic")
    return d


@figure
def preference_batch():
    d = Diagram(44, 13.4, "A preference pair: two sequences sharing one prompt")
    cell = 2.3
    prompt = ["P1", "P2", "P3", "P4"]
    chosen = ["C1", "C2", "C3", "eot"]
    rejected = ["R1", "R2", "R3", "R4", "R5", "eot"]
    for k, (name, resp) in enumerate([("chosen", chosen), ("rejected", rejected)]):
        y = 2.6 + k * 4.6
        d.text(0.5, y + 0.6, name, size=8, ha="left", weight="bold")
        labels = prompt + resp
        fills = [COLORS["token"]] * 4 + [COLORS["embedding"] if k == 0 else COLORS["attention"]
                                         ] * len(resp)
        padded = 9 if k == 0 else 10  # each side to the longest of its kind in the batch
        labels += ["pad"] * (padded - len(labels))
        fills += [COLORS["masked"]] * (padded - len(fills))
        d.row(6.0, y, labels, w=cell - 0.2, h=1.1, gap=0.2, fills=fills, size=7.5,
              family="monospace")
        mask = ["0"] * 3 + ["1"] * len(resp) + ["0"] * (padded - 3 - len(resp))
        d.row(6.0, y + 1.4, mask, w=cell - 0.2, h=0.9, gap=0.2, fill=COLORS["block"],
              size=7, family="monospace")
        d.note(30.0, y + 1.85, "← counted target (1) or -100 (0)", ha="left")
    d.brace(6.0, 6.0 + 4 * cell - 0.2, 2.3, "the same prompt", below=False)
    d.note(22, 11.8, "The mask of a target sits one place earlier than its token (targets "
          "are shifted); each sequence's score is the sum of log p over its 1s.",
          style="italic")
    d.note(22, 12.6, "eot is <|endoftext|>. Each side is padded to the longest sequence of its "
           "kind in the batch; padding is ignored.", style="italic")
    return d


@figure
def dpo_objective():
    d = Diagram(44, 16, "DPO: raise the chosen answer, relative to a frozen reference")
    d.box(0.5, 5.6, 6.5, 1.8, "prompt x", fill=COLORS["text"])
    d.box(9.0, 2.5, 8.0, 1.6, "chosen  y_w", fill=COLORS["embedding"])
    d.box(9.0, 8.9, 8.0, 1.6, "rejected  y_l", fill=COLORS["attention"])
    d.arrow((7.1, 6.2), (8.9, 3.3))
    d.arrow((7.1, 6.8), (8.9, 9.7))
    d.box(20.0, 1.8, 9.0, 1.5, "policy π_θ (trained)", fill=COLORS["weight"], size=8)
    d.box(20.0, 3.9, 9.0, 1.5, "reference π_ref (frozen)", fill=COLORS["masked"], size=8)
    d.box(20.0, 8.2, 9.0, 1.5, "policy π_θ (trained)", fill=COLORS["weight"], size=8)
    d.box(20.0, 10.3, 9.0, 1.5, "reference π_ref (frozen)", fill=COLORS["masked"], size=8)
    for y0, ys in [(3.3, (2.55, 4.65)), (9.7, (8.95, 11.05))]:
        for y in ys:
            d.arrow((17.1, y0), (19.9, y), color=MUTED)
    d.box(31.0, 2.6, 12.5, 1.8, "r_w = β·(log π_θ − log π_ref)(y_w)", fill=COLORS["output"],
          size=7.5)
    d.box(31.0, 9.0, 12.5, 1.8, "r_l = β·(log π_θ − log π_ref)(y_l)", fill=COLORS["output"],
          size=7.5)
    d.arrow((29.1, 3.5), (30.9, 3.5), color=MUTED)
    d.arrow((29.1, 9.9), (30.9, 9.9), color=MUTED)
    d.box(31.0, 5.8, 12.5, 1.8, "loss = −log σ(r_w − r_l)", fill=COLORS["block"],
          weight="bold", size=8, edge=COLORS["accent"])
    d.arrow((37.2, 4.5), (37.2, 5.7), color=COLORS["accent"])
    d.arrow((37.2, 8.9), (37.2, 7.7), color=COLORS["accent"])
    d.note(22, 13.4, "The rewards are implicit: how much more likely the policy makes an "
          "answer than the reference does.", style="italic")
    d.note(22, 14.6, "The loss falls as the margin r_w − r_l grows; the reference keeps the "
          "policy from drifting far.", style="italic")
    return d


if __name__ == "__main__":
    run_main(lambda: main(FIGURES, Path(__file__).parent / "figures"))
