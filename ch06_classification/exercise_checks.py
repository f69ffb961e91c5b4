"""Checks of chapter 6's exercises: the right answers are worked out here, out of the
learner's sight (reading this file gives them away: try the exercise first)."""

import copy
import functools
from types import SimpleNamespace

import pandas as pd
import tiktoken
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from shared import (
    GPTModel,
    add_classification_head,
    calc_accuracy_loader,
    gpt2_config,
    train_only_last_block,
)
from shared.exercises import NOT_TRIED, property_exercise, value_exercise


@functools.cache
def _gpt2():
    return tiktoken.get_encoding("gpt2")


# Small stand-ins for the notebook's splits, for the tests of these checks.
_TRAIN = pd.DataFrame({
    "Text": ["Free entry now", "Free cash prize", "FREE tones", "URGENT! call now",
             "URGENT! claim", "Ok lar", "Ok see you", "I am late", "I will call",
             "Sorry, busy", "Free tonight?", "Hi there", "You won cash", "Hey you"],
    "Label": [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0],
})
_VALIDATION = pd.DataFrame({
    "Text": ["Free gift", "FREE msg", "URGENT! reply", "Ok fine", "I am home", "Sorry I",
             "Hi", "Hey", "Win cash", "Txt now", "Dear all", "Free lunch?", "URGENTLY call"],
    "Label": [1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1],
})


# Exercise 6.1 -----------------------------------------------------------------------------

def _padding_share(texts, length):
    kept = [min(len(_gpt2().encode(text)), length) for text in texts]
    return 1 - sum(kept) / (len(kept) * length)


@value_exercise("6.1", rel_tol=0, abs_tol=5e-4, hints=[
    "Build the training set with SpamDataset(..., max_length=context_length) and count how "
    "many of its ids are the padding id, 50256, among all its ids.",
    "The share is (padding ids) / (messages x max_length): a number between 0 and 1. Longer "
    "messages are cut to the context first, so they add no padding.",
], mistakes=[
    (lambda expected, model, train_df: _padding_share(
        train_df["Text"], max(len(_gpt2().encode(text)) for text in train_df["Text"])),
     "This is the share at the longest training message's length, the chapter's padding; "
     "pad to the model's context length instead."),
    (lambda expected, **given: 1 - expected,
     "This is the share of message tokens; the question asks for the share of padding."),
    (lambda expected, **given: 100 * expected,
     "Give the share as a number between 0 and 1, not as a percentage."),
], examples=lambda: {"given": {"model": SimpleNamespace(cfg={"context_length": 16}),
                               "train_df": _TRAIN}})
def padding_share_at_full_context(model, train_df):
    return _padding_share(train_df["Text"], model.cfg["context_length"])


# Exercise 6.2 -----------------------------------------------------------------------------

def _model_problem(candidate):
    if not isinstance(candidate, nn.Module) or not hasattr(candidate, "tok_emb"):
        return (f"The answer is your finetuned classifier itself (a GPTModel), not a "
                f"{type(candidate).__name__}.")
    if candidate.tok_emb.weight.requires_grad:
        return ("Your model's token embedding still trains: its weight should have "
                "requires_grad = False.")
    frozen = [name for name, param in candidate.named_parameters()
              if not param.requires_grad and not name.startswith("tok_emb.")]
    if frozen:
        return (f"Besides the token embedding, {len(frozen)} parameter tensors are frozen "
                f"(the first: {frozen[0]}); everything else should train.")
    return None


@property_exercise("6.2", hints=[
    "Start from a fresh classifier (build_classifier() in section 6.9), set "
    "requires_grad = False on its token embedding's weight only, give AdamW the parameters "
    "that still require gradients, and train.",
    "A model that learned anything classifies the validation messages far above chance after "
    "one epoch; check that your loop calls backward() and optimizer.step() on an optimizer "
    "given the parameters that require gradients, and that you hand in the model it trained.",
], examples=lambda: {
    "given": {"val_loader": _tiny_setup()[1]},
    "right": [_tiny_variant(freeze_embedding=True)],
    "wrong": [_tiny_variant(freeze_embedding=False),
              _tiny_variant(freeze_embedding=True, freeze_last_block=True),
              _tiny_variant(freeze_embedding=True, untrained=True),
              0.9],
})
def frozen_embedding_classifier(candidate, val_loader):
    problem = _model_problem(candidate)
    if problem:
        return problem
    device = next(candidate.parameters()).device
    if calc_accuracy_loader(val_loader, candidate, device) < 0.7:
        return ("Your model classifies the validation messages little better than chance: "
                "it has not learned yet.")
    return None


@functools.cache
def _tiny_setup():
    """A tiny classifier and a loader whose labels are that classifier's own predictions."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = add_classification_head(GPTModel(gpt2_config(
            vocab_size=64, context_length=8, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0)))
        ids = torch.randint(0, 64, (24, 8))
    model.eval()
    with torch.no_grad():
        labels = model(ids)[:, -1].argmax(-1)
    return model, DataLoader(TensorDataset(ids, labels), batch_size=8)


def _tiny_variant(freeze_embedding, freeze_last_block=False, untrained=False):
    model = copy.deepcopy(_tiny_setup()[0])
    if untrained:  # every prediction flipped: what a model that learned the opposite does
        with torch.no_grad():
            model.out_head.weight.neg_()
            model.out_head.bias.neg_()
    model.tok_emb.weight.requires_grad = not freeze_embedding
    if freeze_last_block:
        for param in model.trf_blocks[-1].parameters():
            param.requires_grad = False
    return model


# Exercise 6.3 -----------------------------------------------------------------------------

def _first_tokens(frame):
    return [_gpt2().encode(text)[0] for text in frame["Text"]]


def _lookup_accuracy(train_df, evaluated, unseen=None, first=_first_tokens):
    votes = {}
    for token, label in zip(first(train_df), train_df["Label"]):
        votes.setdefault(token, []).append(int(label))
    majority = int(train_df["Label"].mode()[0]) if unseen is None else unseen
    table = {token: int(2 * sum(labels) > len(labels)) for token, labels in votes.items()}
    guesses = [table.get(token, majority) for token in first(evaluated)]
    return sum(g == int(y) for g, y in zip(guesses, evaluated["Label"])) / len(evaluated)


def _first_words(frame):
    return [text.split()[0] for text in frame["Text"]]


@value_exercise("6.3", rel_tol=0, abs_tol=1e-3, hints=[
    "For each first token (tokenizer.encode(text)[0]) of the training messages, collect their "
    "labels; the table predicts spam for a token when more than half of them are spam.",
    "Apply the table to validation_df's first tokens; a token that opens no training message "
    "gets the training split's majority class. The answer is the share of correct guesses.",
], mistakes=[
    (lambda expected, train_df, validation_df: _lookup_accuracy(train_df, train_df),
     "This is the table's accuracy on the training messages it was built from; measure it on "
     "the validation split."),
    (lambda expected, train_df, validation_df: _lookup_accuracy(
        train_df, validation_df, unseen=1 - int(train_df["Label"].mode()[0])),
     "First tokens that open no training message should get the training split's majority "
     "class, not the other one."),
    (lambda expected, train_df, validation_df: _lookup_accuracy(
        train_df, validation_df, first=_first_words),
     "This uses the first word; the first position sees the first token, which is often "
     "shorter (\"URGENT!\" begins with the token \"UR\")."),
    (lambda expected, **given: 100 * expected,
     "Give the accuracy as a number between 0 and 1, not as a percentage."),
], examples=lambda: {"given": {"train_df": _TRAIN, "validation_df": _VALIDATION}})
def first_token_lookup_accuracy(train_df, validation_df):
    return _lookup_accuracy(train_df, validation_df)


# Exercise 6.4 -----------------------------------------------------------------------------

_COUNT_SETTINGS = [dict(emb_dim=d, n_heads=h, n_layers=n, qkv_bias=b)
                   for d, h in ((8, 2), (12, 4), (32, 4)) for n in (1, 3) for b in (False, True)]


def _trainable_after_last_block(cfg):
    # Small models, drawn on the CPU: its generator alone is forked (no GPU's state is copied),
    # and the learner's random state is untouched
    with torch.random.fork_rng(devices=[]):
        model = train_only_last_block(add_classification_head(GPTModel(cfg)))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@functools.cache
def _count_cases():
    cases = []
    for setting in _COUNT_SETTINGS:
        cfg = gpt2_config(vocab_size=50, context_length=8, drop_rate=0.0, **setting)
        cases.append((cfg, _trainable_after_last_block(cfg)))
    return cases


@property_exercise("6.4", hints=[
    "Go layer by layer: nn.Linear(d_in, d_out) holds d_in * d_out weights and, if it has a "
    "bias, d_out more; a LayerNorm holds a scale and a shift of d numbers each.",
    "The last block: the query, key and value projections (their biases only when "
    "cfg['qkv_bias'] is True), the output projection and the two feed-forward layers (d to "
    "4d to d), all with biases, and two LayerNorms; then the final LayerNorm and the "
    "two-class head with its bias. Nothing depends on n_layers or the vocabulary.",
], examples=lambda: {
    "right": [lambda cfg: (12 * cfg["emb_dim"] ** 2 + 14 * cfg["emb_dim"] + 2
                           + (3 * cfg["emb_dim"] if cfg["qkv_bias"] else 0))],
    "wrong": [lambda cfg: 12 * cfg["emb_dim"] ** 2 + 14 * cfg["emb_dim"] + 2,
              lambda cfg: 12 * cfg["emb_dim"] ** 2 + 14 * cfg["emb_dim"]
              + (3 * cfg["emb_dim"] if cfg["qkv_bias"] else 0),
              lambda cfg: cfg["n_layers"] * 12 * cfg["emb_dim"] ** 2,
              7_090_946],
})
def last_block_count_formula(count):
    if not callable(count):
        return (f"The answer is your function last_block_parameters itself, not a "
                f"{type(count).__name__}.")
    for cfg, actual in _count_cases():
        try:
            theirs = count(dict(cfg))
        except Exception as error:  # noqa: BLE001 - the learner's code may fail in any way
            return f"Your function raises {type(error).__name__}: {error}."
        if theirs is None:
            return NOT_TRIED
        if theirs != actual:
            return (f"For emb_dim={cfg['emb_dim']}, n_layers={cfg['n_layers']}, "
                    f"qkv_bias={cfg['qkv_bias']} your function gives {theirs!r}, and "
                    f"train_only_last_block leaves a different number trainable.")
    return None


# Exercise 6.5 -----------------------------------------------------------------------------

@value_exercise("6.5", rel_tol=0, abs_tol=1e-3, hints=[
    "Find the most frequent label of train_df (value_counts or mode), then the share of "
    "test_df's labels equal to it.",
    "Use the training split's majority, not the test split's: a classifier decides before it "
    "sees any test label. The answer is a share between 0 and 1.",
], mistakes=[
    (lambda expected, train_df, test_df: float(max(test_df["Label"].mean(),
                                                   1 - test_df["Label"].mean())),
     "This is the test split's own majority class; a classifier cannot know it in advance: "
     "use the training split's."),
    (lambda expected, **given: 100 * expected,
     "Give the accuracy as a number between 0 and 1, not as a percentage."),
], examples=lambda: {"given": {
    "train_df": _TRAIN,
    "test_df": pd.DataFrame({"Text": ["a"] * 5, "Label": [1, 1, 1, 0, 0]})}})
def majority_baseline(train_df, test_df):
    majority = int(train_df["Label"].mode()[0])
    return float((test_df["Label"] == majority).mean())
