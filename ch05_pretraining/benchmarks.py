# Generated from ch05_pretraining/beyond_9_benchmarks.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export benchmarks`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_9_benchmarks.ipynb cell 4, 5.12 How models are compared

"""Chapter 5, section 5.12 (beyond the book): how language models are compared in the field:
bits per byte, multiple-choice questions scored by log-likelihood, readers for HellaSwag's, ARC's
and MMLU's published files, and two benchmarks made from Tiny Shakespeare's held-out text."""

import csv
import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ch05_pretraining.shakespeare import nats_per_character
from shared.checks import check


# %% beyond_9_benchmarks.ipynb cell 6, 5.12.1 Bits per byte

def bits_per_byte(model: torch.nn.Module, tokenizer, text: str) -> float:
    """`model`'s cross-entropy on `text` in bits per byte of its UTF-8: 5.10.6's nats per
    character (every token after the first predicted once, in windows of the model's context)
    summed back to nats, then divided by ln 2 and by the bytes those tokens spell. Models with
    different tokenizers share it, and so do compressors, whose sizes are bits per byte too."""
    first = tokenizer.decode(tokenizer.encode(text)[:1])  # the one token not predicted
    nats = nats_per_character(model, tokenizer, text) * (len(text) - len(first))
    return nats / math.log(2) / (len(text.encode("utf-8")) - len(first.encode("utf-8")))


# %% beyond_9_benchmarks.ipynb cell 9, 5.12.1 Bits per byte

class CountingModel(torch.nn.Module):
    """Unigram or bigram counts (5.10.3's, with add_k) as a model: for each position, the
    log-probability of every next token, so that this module's functions score the counts exactly
    as they score a GPT."""

    def __init__(self, train_ids, vocab_size: int, order: int, add_k: float,
                 context_length: int):
        super().__init__()
        check(order in (1, 2), lambda: f"order must be 1 (unigram) or 2 (bigram), got {order!r}")
        train = torch.as_tensor(train_ids)
        seen = train[:-1] * vocab_size + train[1:] if order == 2 else train
        rows = vocab_size if order == 2 else 1
        counts = torch.bincount(seen, minlength=rows * vocab_size).view(rows, vocab_size).double()
        probs = (counts + add_k) / (counts.sum(dim=1, keepdim=True) + add_k * vocab_size)
        # a parameter that is never trained: the counts are the model's weights, and this
        # module's functions find the model's device from its parameters
        self.log_probs = torch.nn.Parameter(probs.log().float(), requires_grad=False)
        self.order = order
        self.cfg = {"context_length": context_length, "vocab_size": vocab_size}

    def forward(self, in_idx: torch.Tensor) -> torch.Tensor:
        if self.order == 2:
            return self.log_probs[in_idx]
        return self.log_probs[0].expand(*in_idx.shape, -1)


# %% beyond_9_benchmarks.ipynb cell 18, 5.12.2 Multiple choice by log-likelihood

@dataclass
class Question:
    """A multiple-choice question as a language model reads it: a context, the continuations it
    chooses between, and the index of the right one."""
    context: str
    choices: list[str]
    answer: int


def choice_log_likelihoods(model: torch.nn.Module, tokenizer, question: Question
                           ) -> list[tuple[float, int]]:
    """For each choice, (the summed log-probability of its tokens after the context, how many
    tokens it has), from one forward pass over all choices. The context and each choice are
    tokenized apart (as build-nanogpt's HellaSwag script does), so every choice follows the same
    context tokens; a context longer than the model's window loses its start."""
    context_ids = tokenizer.encode(question.context)
    choice_ids = [tokenizer.encode(choice) for choice in question.choices]
    check(all(choice_ids), "every choice must have at least one token")
    window = model.cfg["context_length"]
    longest = max(map(len, choice_ids))
    check(longest < window, lambda: f"a choice of {longest} tokens leaves no room for context "
          f"in a window of {window}")
    context_ids = context_ids[-(window - longest):] if context_ids else []
    check(context_ids, "the question's context has no tokens: nothing to predict the choices from")
    rows = [context_ids + ids for ids in choice_ids]
    width = max(map(len, rows))
    device = next(model.parameters()).device
    batch = torch.tensor([row + [0] * (width - len(row)) for row in rows], device=device)
    with torch.no_grad():
        log_probs = torch.log_softmax(model(batch).float(), dim=-1)
    scores = []
    for row, (tokens, ids) in enumerate(zip(rows, choice_ids)):
        # the logits at position p predict the token at p + 1
        positions = torch.arange(len(context_ids) - 1, len(tokens) - 1, device=device)
        picked = log_probs[row, positions, torch.tensor(ids, device=device)]
        scores.append((picked.sum().item(), len(ids)))
    return scores


# %% beyond_9_benchmarks.ipynb cell 20, 5.12.2 Multiple choice by log-likelihood

NORMALISATIONS = ("sum", "per token", "per byte")


def pick(scores: list[tuple[float, int]], question: Question, normalisation: str = "sum") -> int:
    """The index of the choice with the highest score (choice_log_likelihoods's) after the
    context: its summed log-probability ("sum", the harness's acc), per token ("per token",
    GPT-3's) or per byte of its text ("per byte", the harness's acc_norm)."""
    lengths = {"sum": [1] * len(scores), "per token": [n for _, n in scores],
               "per byte": [len(choice.encode("utf-8")) for choice in question.choices]}
    normalised = [total / length for (total, _), length in zip(scores, lengths[normalisation])]
    return max(range(len(normalised)), key=normalised.__getitem__)


def accuracy(model: torch.nn.Module, tokenizer, questions: list[Question]
             ) -> dict[str, tuple[float, tuple[float, float]]]:
    """For each normalisation, the share of questions whose right choice the model picks and
    its 95% interval (Wilson's score interval, which stays within 0 and 1 at small counts),
    from one forward pass per question."""
    right = dict.fromkeys(NORMALISATIONS, 0)
    for question in questions:
        scores = choice_log_likelihoods(model, tokenizer, question)
        for normalisation in NORMALISATIONS:
            right[normalisation] += pick(scores, question, normalisation) == question.answer
    return {normalisation: (count / len(questions), wilson_interval(count, len(questions)))
            for normalisation, count in right.items()}


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's score interval for a proportion seen `successes` times in `trials`."""
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials**2)) / (1 + z * z / trials)
    return centre - half, centre + half


# %% beyond_9_benchmarks.ipynb cell 22, 5.12.3 Two benchmarks made from Tiny Shakespeare

def next_line_questions(text: str, count: int, *, context_chars: int = 300, choices: int = 4,
                        min_line_chars: int = 20, seed: int = 123) -> list[Question]:
    """A benchmark made from a play's text: after a passage, which of `choices` lines truly
    comes next? The other lines are drawn at random from the rest of the text. A line counts if
    it has at least min_line_chars characters and is not a speaker's name ("ROMEO:"); the passage
    is the whole lines before it, at least context_chars characters of them."""
    rng = random.Random(seed)
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)

    def counts(i):
        return len(lines[i]) >= min_line_chars and not lines[i].endswith(":")

    candidates = [i for i in range(len(lines)) if counts(i) and starts[i] >= context_chars]
    check(len(candidates) >= max(count, choices), lambda: f"the text has {len(candidates)} lines "
          f"that count, fewer than the {max(count, choices)} needed")
    questions = []
    for i in rng.sample(candidates, count):
        first = max(j for j in range(i + 1) if starts[i] - starts[j] >= context_chars)
        others = rng.sample([j for j in candidates if lines[j] != lines[i]], choices - 1)
        options = [lines[j] + "\n" for j in [i, *others]]
        rng.shuffle(options)
        questions.append(Question(text[starts[first]:starts[i]], options,
                                  options.index(lines[i] + "\n")))
    return questions


def shuffled_line_questions(text: str, count: int, *, context_chars: int = 300,
                            choices: int = 4, min_words: int = 5, seed: int = 123
                            ) -> list[Question]:
    """A second benchmark from the same text: after a passage, which is the next line as
    written, and which its words shuffled? The wrong choices hold the same words in other
    orders, so only a model of word order tells them apart."""
    rng = random.Random(seed)
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    candidates = [i for i in range(len(lines)) if len(set(lines[i].split(" "))) >= min_words
                  and starts[i] >= context_chars]
    check(len(candidates) >= count, lambda: f"the text has {len(candidates)} lines of "
          f"{min_words} different words or more, fewer than the {count} needed")
    questions = []
    for i in rng.sample(candidates, count):
        first = max(j for j in range(i + 1) if starts[i] - starts[j] >= context_chars)
        words, shuffled = lines[i].split(" "), set()
        while len(shuffled) < choices - 1:
            order = rng.sample(words, len(words))
            if order != words:
                shuffled.add(" ".join(order) + "\n")
        options = [lines[i] + "\n", *sorted(shuffled)]
        rng.shuffle(options)
        questions.append(Question(text[starts[first]:starts[i]], options,
                                  options.index(lines[i] + "\n")))
    return questions


# %% beyond_9_benchmarks.ipynb cell 31, 5.12.4 The field's benchmarks: HellaSwag, ARC and MMLU

def _preprocess_hellaswag(text: str) -> str:
    # WikiHow contexts carry markup such as "[title]" and "[step]"; harnesses strip it
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ").strip()


def _json_lines(path: str | Path):
    """(line number, object) for each non-blank line of a JSON-lines file."""
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                yield number, json.loads(line)


def read_hellaswag(path: str | Path) -> list[Question]:
    """HellaSwag's published JSON-lines file (hellaswag_val.jsonl of github.com/rowanz/hellaswag):
    each line's activity label and context, its four endings and its label. The test split's
    labels are not published, so that file is refused."""
    questions = []
    for number, item in _json_lines(path):
        check("label" in item, f"{path}, line {number}: no label (HellaSwag's test "
              "split has none: read hellaswag_val.jsonl)")
        context = f"{item['activity_label']}: {item['ctx_a']} {item['ctx_b'].capitalize()}"
        questions.append(Question(_preprocess_hellaswag(context),
                                  [" " + _preprocess_hellaswag(ending)
                                   for ending in item["endings"]], int(item["label"])))
    return questions


def read_arc(path: str | Path) -> list[Question]:
    """An ARC file as AI2 publishes it (ARC-V1-Feb2018, e.g. ARC-Challenge-Test.jsonl): each
    line's question stem, its 3 to 5 labelled choices and its answer key, asked as "Question:
    ...\\nAnswer:" with each choice's text as the continuation."""
    questions = []
    for number, item in _json_lines(path):
        labels = [choice["label"] for choice in item["question"]["choices"]]
        check(item["answerKey"] in labels, f"{path}, line {number}: answer key "
              f"{item['answerKey']!r} is none of the choices' labels {labels}")
        questions.append(Question(
            f"Question: {item['question']['stem']}\nAnswer:",
            [" " + choice["text"] for choice in item["question"]["choices"]],
            labels.index(item["answerKey"])))
    return questions


def read_mmlu(path: str | Path) -> list[Question]:
    """One subject's file of MMLU as Hendrycks et al. publish it (data/test/<subject>_test.csv
    in data.tar): rows of a question, four choices and the letter of the right one, no header.
    Asked in the paper's format, zero-shot (the paper's own script puts five solved questions
    first): the subject's heading, the question, the choices lettered A to D and "Answer:", the
    continuations being the letters."""
    path = Path(path)
    subject = re.sub(r"_(test|val|dev)$", "", path.stem).replace("_", " ")
    heading = f"The following are multiple choice questions (with answers) about {subject}.\n\n"
    questions = []
    with open(path, encoding="utf-8", newline="") as file:
        for number, row in enumerate(csv.reader(file), 1):
            check(len(row) == 6 and row[5] in ("A", "B", "C", "D"), f"{path}, row {number}: "
                  f"expected a question, four choices and the letter A, B, C or D, got "
                  f"{len(row)} fields" + (f" ending in {row[5]!r}" if len(row) == 6 else ""))
            lettered = "".join(f"\n{letter}. {text}" for letter, text in zip("ABCD", row[1:5]))
            questions.append(Question(f"{heading}{row[0]}{lettered}\nAnswer:",
                                      [" A", " B", " C", " D"], "ABCD".index(row[5])))
    return questions


__all__ = [
    'bits_per_byte',
    'CountingModel',
    'Question',
    'choice_log_likelihoods',
    'NORMALISATIONS',
    'pick',
    'accuracy',
    'wilson_interval',
    'next_line_questions',
    'shuffled_line_questions',
    'read_hellaswag',
    'read_arc',
    'read_mmlu',
]
