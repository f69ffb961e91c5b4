"""Checks of chapter 2's exercises: the right answers are worked out here, out of the
learner's sight (reading this file gives them away: try the exercise first)."""

import functools
import math

import tiktoken
import torch

from shared import BPETokenizer, GPTDatasetV1, create_dataloader_v1, read_text, sinusoidal_positions
from shared.exercises import NOT_TRIED, property_exercise, value_exercise


MADE_UP = "Vlorptik quenzal"


@functools.cache
def _gpt2():
    return tiktoken.get_encoding("gpt2")


def _pieces():
    return [_gpt2().decode([i]) for i in _gpt2().encode(MADE_UP)]


@property_exercise("2.1", hints=[
    "encode gives the ids; decode([i]) turns a single id back into the text it stands for.",
    "Keep the pieces in order, as strings; a space belongs to the piece that follows it.",
], examples=lambda: {
    "right": [_pieces()],
    "wrong": [_gpt2().encode(MADE_UP), MADE_UP.split(), list(MADE_UP), _pieces()[:-1],
              ["Vlorptik", " quenzal"], "".join(_pieces())],
})
def pieces_of_made_up_words(answer):
    """Right when the answer is the tokenizer's pieces; what is wrong never says how many."""
    recognised = [
        (_gpt2().encode(MADE_UP),
         "These are the ids; the answer is the text each id stands for on its own."),
        (MADE_UP.split(), "These are the words; the tokenizer cuts them into smaller pieces."),
        (list(MADE_UP),
         "These are the characters; most tokens here are longer than one character."),
    ]
    if not isinstance(answer, (list, tuple)):
        return f"The answer should be a list of strings, not a {type(answer).__name__}."
    for mistaken, message in recognised:
        if list(answer) == mistaken:
            return message
    if not all(isinstance(piece, str) for piece in answer):
        return "The answer should be a list of strings, one per token."
    if "".join(answer) != MADE_UP:
        return "Joined together, your pieces do not give the string back."
    if list(answer) != _pieces():
        return "Your pieces give the string back, but the tokenizer cuts it elsewhere."
    return None


def _batches(max_length, drop_last=True):
    return len(create_dataloader_v1(read_text("the-verdict"), batch_size=4,
                                    max_length=max_length, stride=2, shuffle=False,
                                    drop_last=drop_last))


@value_exercise("2.2", hints=[
    "len(loader) counts batches of batch_size windows, not windows.",
    "With drop_last=True an incomplete last batch is not counted.",
], mistakes=[
    (lambda expected: tuple(len(GPTDatasetV1(read_text("the-verdict"), _gpt2(), length, 2))
                            for length in (2, 8)),
     "These are the numbers of windows (len(loader.dataset)); the answer counts batches."),
    (lambda expected: (_batches(2, drop_last=False), _batches(8, drop_last=False)),
     "This counts the incomplete last batch too, which drop_last=True drops."),
])
def batches_per_loader():
    return (_batches(2), _batches(8))


class _RangeTokenizer:
    """Stands in for a tokenizer: a text of n characters 'encodes' to n distinct ids."""

    def encode(self, text, allowed_special=frozenset()):
        return list(range(len(text)))


_WINDOW_SETTINGS = [(n, length, stride) for n in (5, 9, 10, 11, 50, 257, 1000)
                    for length in (1, 3, 4, 8, 256) for stride in (1, 2, 3, 4, 128, 300)
                    if n > length]


def _window_problem(n_windows):
    for n, length, stride in _WINDOW_SETTINGS:
        count = len(GPTDatasetV1("x" * n, _RangeTokenizer(), length, stride))
        try:
            theirs = n_windows(n, length, stride)
        except Exception as error:  # noqa: BLE001 - the learner's code may fail in any way
            return (f"n_windows({n}, {length}, {stride}) raises "
                    f"{type(error).__name__}: {error}.")
        if theirs is None:
            return NOT_TRIED
        if theirs != count:
            return (f"For n_tokens={n}, max_length={length}, stride={stride} your formula gives "
                    f"{theirs!r}, and GPTDatasetV1 makes a different number of windows.")
    return None


@property_exercise("2.3", hints=[
    "A window takes max_length + 1 ids: its input and, one further, its target.",
    "Write down where window k starts and where its last id is; it exists while that id is "
    "still in the text. Then count the k that qualify.",
], examples=lambda: {
    "right": [lambda n, length, stride: (n - 1 - length) // stride + 1,
              lambda n, length, stride: math.ceil((n - length) / stride)],
    "wrong": [lambda n, length, stride: (n - length) // stride + 1,
              lambda n, length, stride: n // stride,
              lambda n, length, stride: n - length],
})
def window_count_formula(n_windows):
    if not callable(n_windows):
        return f"The answer is your function n_windows itself, not a {type(n_windows).__name__}."
    return _window_problem(n_windows)


@functools.cache
def _compression(vocab_size):
    text = read_text("the-verdict")
    return round(len(text) / len(BPETokenizer.train(text, vocab_size).encode(text)), 2)


@value_exercise("2.4", rel_tol=0, abs_tol=0.011, hints=[
    "Characters per token is len(raw_text) divided by the number of ids the trained "
    "tokenizer's encode returns for raw_text.",
    "Train one tokenizer per vocab_size with BPETokenizer.train(raw_text, vocab_size), on the "
    "whole story.",
], mistakes=[
    (lambda expected: [round(1 / ratio, 2) for ratio in expected],
     "These are tokens per character; the exercise asks for characters per token."),
])
def compression_ratios():
    return [_compression(size) for size in (300, 500, 1000)]


@value_exercise("2.5", hints=[
    "encode with disallowed_special=() reads the special token's spelling as ordinary text.",
    "Count the ids that encode returns, not the characters.",
], mistakes=[
    (lambda expected: 1,
     "A single id is what the string becomes as the special token; here it is to be read as "
     "ordinary text."),
    (lambda expected: len("<|endoftext|>"),
     "That is the number of characters; count the tokens instead."),
])
def endoftext_as_text():
    return len(_gpt2().encode("<|endoftext|>", disallowed_special=()))


def _sinusoidal_similarity_to_position_0(n_positions=200, dim=64):
    code = torch.nn.functional.normalize(sinusoidal_positions(n_positions, dim).double(), dim=1)
    return code @ code[0]


@value_exercise("2.6", rel_tol=0, abs_tol=0, hints=[
    "The similarity of two positions depends only on how far apart they are: compare position 0 "
    "with positions 1, 2, 3, ... (cosine_similarity_matrix of sinusoidal_positions(200, 64)).",
    "The similarity does not fall steadily: go through the distances in order and stop at the "
    "first one below 0.5, rather than searching by halves.",
], mistakes=[
    (lambda expected: 29,
     "29 is the distance of the least similar pair among the 32 positions plotted; the question "
     "asks for the first distance whose similarity is below 0.5."),
])
def first_distance_below_half():
    similarity = _sinusoidal_similarity_to_position_0()
    return next(distance for distance in range(1, len(similarity)) if similarity[distance] < 0.5)
