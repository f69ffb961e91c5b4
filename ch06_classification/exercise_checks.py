"""Checks of chapter 6's exercises: the right answers are worked out here, out of the
learner's sight (reading this file gives them away: try the exercise first)."""

import copy
import functools
import numbers
import random
from types import SimpleNamespace

import numpy as np
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

def _padded_ids(texts, length):
    rows = [_gpt2().encode(text, disallowed_special=())[:length] for text in texts]
    return [row + [50256] * (length - len(row)) for row in rows]


def _item(dataset, index):
    ids, label = dataset[index]
    return torch.as_tensor(ids).tolist(), int(label)


@property_exercise("6.1", hints=[
    "Build it as 6.3 built train_dataset, from the training split's CSV file, but with "
    "SpamDataset(..., max_length=context_length): hand in that dataset, the one your loader "
    "reads.",
    "Every input of the dataset should have exactly model.cfg['context_length'] token ids: the "
    "message's tokens (cut to that length), then the padding id 50256 up to it.",
], examples=lambda: {
    "given": {"model": SimpleNamespace(cfg={"context_length": 16}), "train_df": _TRAIN},
    "right": [_tiny_dataset(_TRAIN, 16)],
    "wrong": [_tiny_dataset(_TRAIN, max(len(_gpt2().encode(t)) for t in _TRAIN["Text"])),
              _tiny_dataset(_VALIDATION, 16),
              _tiny_dataset(_TRAIN, 16, flip_labels=True),
              _tiny_dataset(_TRAIN, 16, pad_token_id=0),
              0.7628],
})
def padded_training_set(candidate, model, train_df):
    if isinstance(candidate, (numbers.Number, str)) or not (
            hasattr(candidate, "__len__") and hasattr(candidate, "__getitem__")):
        return (f"The answer is your training dataset itself (the SpamDataset your loader "
                f"reads), not a {type(candidate).__name__}.")
    if len(candidate) != len(train_df):
        return (f"Your dataset holds {len(candidate)} messages, the training split "
                f"{len(train_df)}: build it from the training split's file.")
    length = model.cfg["context_length"]
    expected = _padded_ids(train_df["Text"], length)
    for row, (ids, label) in enumerate(zip(expected, train_df["Label"])):
        try:
            theirs, their_label = _item(candidate, row)
        except Exception as error:  # noqa: BLE001 - the learner's dataset may fail in any way
            return f"Reading item {row} of your dataset raises {type(error).__name__}: {error}."
        if len(theirs) != length:
            return (f"Your dataset's inputs have {len(theirs)} token ids; pad them to the model's "
                    f"context length, model.cfg['context_length'], instead.")
        if theirs != ids:
            return (f"Row {row} of your dataset holds other token ids than the training split's "
                    f"message {row}, encoded and padded with 50256.")
        if their_label != int(label):
            return f"Row {row} of your dataset has another label than the training split's."
    return None


def _tiny_dataset(frame, length, flip_labels=False, pad_token_id=50256):
    """A list of (ids, label) pairs: what a Dataset gives, for the tests of 6.1's check."""
    rows = [ids[:length] + [pad_token_id] * (length - len(ids)) for ids in
            (_gpt2().encode(text) for text in frame["Text"])]
    return [(torch.tensor(ids), torch.tensor(1 - label if flip_labels else label))
            for ids, label in zip(rows, frame["Label"])]


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
    "Start from a fresh classifier (build_classifier() in section 6.8), set "
    "requires_grad = False on its token embedding's weight only, give AdamW the parameters "
    "that still require gradients, and train.",
    "A model that learned anything classifies the validation messages far above chance after "
    "one epoch; check that your loop calls backward() and optimizer.step() on an optimizer "
    "given the parameters that require gradients, and that you hand in the model it trained.",
], examples=lambda: {
    "given": {"val_loader": _tiny_setup()[1], "model": _tiny_main(),
              "build_classifier": lambda: copy.deepcopy(_tiny_setup()[0])},
    "right": [_tiny_variant(freeze_embedding=True)],
    "wrong": [_tiny_variant(freeze_embedding=False),
              _tiny_variant(freeze_embedding=True, freeze_last_block=True),
              _tiny_variant(freeze_embedding=True, untrained=True),
              _tiny_variant(freeze_embedding=True, trained=False),
              _frozen_afterwards(_tiny_main()),
              _frozen_afterwards(_tiny_main(), embedding_of=_tiny_setup()[0]),
              0.9],
})
def frozen_embedding_classifier(candidate, val_loader, model, build_classifier):
    """`model`: the chapter's finetuned classifier; `build_classifier`: 6.8's function, whose
    fresh classifier holds the weights that finetuning starts from."""
    problem = _model_problem(candidate) or _weights_problem(candidate, model, build_classifier)
    if problem:
        return problem
    device = next(candidate.parameters()).device
    if calc_accuracy_loader(val_loader, candidate, device) < 0.7:
        return ("Your model classifies the validation messages little better than chance: "
                "it has not learned yet.")
    return None


def _weights_problem(candidate, model, build_classifier):
    """The embedding must be a fresh classifier's, and the rest trained from there: neither the
    fresh weights nor the chapter's finetuned model's."""
    start = _built_quietly(build_classifier)
    if not _same(candidate.tok_emb.weight, start.tok_emb.weight):
        return ("Your model's token embedding is not the one a fresh classifier starts with: "
                "build a fresh classifier, freeze its token embedding, and only then train.")
    if _same_except_embedding(candidate, start):
        return ("Your model's other weights are still those of a fresh classifier: it has not "
                "been trained yet.")
    if _same_except_embedding(candidate, model):
        return ("Your model's other weights are those of the chapter's finetuned model: "
                "finetune a fresh classifier yourself.")
    return None


def _built_quietly(build_classifier):
    """build_classifier() without moving the learner's random state (it seeds Python, NumPy
    and PyTorch)."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng():
            return build_classifier()
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _same(a, b) -> bool:
    return a.shape == b.shape and torch.equal(a.detach().cpu(), b.detach().cpu())


def _same_except_embedding(candidate, other) -> bool:
    theirs = dict(other.named_parameters())
    return all(name in theirs and _same(param, theirs[name])
               for name, param in candidate.named_parameters() if not name.startswith("tok_emb."))


def _nudged(model, names=lambda name: True, by=1e-4):
    """A copy of `model` whose chosen parameters moved a little: a stand-in for training."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if names(name):
                param.add_(by)
    return model


@functools.cache
def _tiny_main_cached():
    return _nudged(_tiny_setup()[0], by=2e-4)  # the chapter's model: every layer trained


def _tiny_main():
    return copy.deepcopy(_tiny_main_cached())


def _frozen_afterwards(main, embedding_of=None):
    """The chapter's finetuned model with its token embedding frozen after training (and,
    given `embedding_of`, that model's embedding put back): what the check must refuse."""
    if embedding_of is not None:
        with torch.no_grad():
            main.tok_emb.weight.copy_(embedding_of.tok_emb.weight)
    main.tok_emb.weight.requires_grad = False
    return main


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


def _tiny_variant(freeze_embedding, freeze_last_block=False, untrained=False, trained=True):
    """The tiny classifier, "trained" (every weight but the embedding nudged) unless not
    `trained`; `untrained`: its predictions flipped, a model that learned nothing useful."""
    model = copy.deepcopy(_tiny_setup()[0])
    if trained:
        model = _nudged(model, lambda name: not name.startswith("tok_emb."))
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
    (lambda expected, **given: round(100 * expected, 1),  # the printed percentage
     "Give the accuracy as a number between 0 and 1, not as a percentage."),
    (lambda expected, **given: round(100 * expected, 2),
     "Give the accuracy as a number between 0 and 1, not as a percentage."),
    (lambda expected, **given: round(expected, 2),
     "This looks rounded: give the accuracy as computed, to at least three decimals."),
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

def _left_out(df, balanced_df):
    """The collection's messages that balancing left out (it keeps each row's index)."""
    return df.drop(balanced_df.index)["Text"].tolist()


def _flagged_share(model, texts, max_length, batch_size=64):
    """Share of `texts` that `model` classifies as spam (class 1), each text encoded as
    classify_review does, cut and padded to max_length (and the context); max_length None:
    each at its own length, unpadded."""
    device = next(model.parameters()).device
    context = model.cfg["context_length"]
    rows = [_gpt2().encode(text, disallowed_special=()) for text in texts]
    if max_length is None:  # no padding: inputs of one length go together
        groups = {}
        for ids in rows:
            groups.setdefault(min(len(ids), context), []).append(ids[:context])
        batches = [group[i:i + batch_size] for group in groups.values()
                   for i in range(0, len(group), batch_size)]
    else:
        length = min(max_length, context)
        rows = [ids[:length] + [50256] * (length - len(ids)) for ids in rows]
        batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    modes = [(module, module.training) for module in model.modules()]
    flagged = 0
    try:
        model.eval()
        with torch.no_grad():
            for batch in batches:
                logits = model(torch.tensor(batch, device=device))[:, -1, :]
                flagged += (logits.argmax(dim=-1) == 1).sum().item()
    finally:
        for module, training in modes:
            module.training = training
    return flagged / len(texts)


@value_exercise("6.5", rel_tol=0, abs_tol=3e-4, hints=[
    "df.drop(balanced_df.index) gives the messages that balancing left out; classify each "
    "with classify_review(text, model, tokenizer, device, max_length=train_dataset.max_length) "
    "and count the answers 'spam'.",
    "The share is (messages classified as spam) / (messages left out): a number between 0 and "
    "1, over every left-out message, each padded to the training length.",
], mistakes=[
    (lambda expected, model, df, balanced_df, train_dataset: _flagged_share(
        model, _left_out(df, balanced_df), None),
     "These are the answers without padding: pass max_length=train_dataset.max_length to "
     "classify_review, so that each message is padded as in training."),
    (lambda expected, **given: 1 - expected,
     "This is the share classified as ham; the question asks for the share flagged as spam."),
    (lambda expected, **given: 100 * expected,
     "Give the share as a number between 0 and 1, not as a percentage."),
    (lambda expected, **given: round(100 * expected, 1),  # the printed percentage
     "Give the share as a number between 0 and 1, not as a percentage."),
    (lambda expected, **given: round(100 * expected, 2),
     "Give the share as a number between 0 and 1, not as a percentage."),
    (lambda expected, **given: round(expected, 2),
     "This looks rounded: give the share as computed, to at least three decimals."),
], examples=lambda: {"given": {"model": _tiny_spam_model(), "df": _COLLECTION,
                               "balanced_df": _COLLECTION.iloc[:4],
                               "train_dataset": SimpleNamespace(max_length=5)}})
def flagged_left_out_share(model, df, balanced_df, train_dataset):
    """`train_dataset`: the training set, whose max_length every message is padded to."""
    return _flagged_share(model, _left_out(df, balanced_df), train_dataset.max_length)


# A small collection and a tiny classifier over GPT-2's tokens, for the tests of 6.5's check
_COLLECTION = pd.DataFrame({
    "Label": ["spam", "spam", "ham", "ham"] + ["ham"] * 12,
    "Text": ["Free entry now", "URGENT! call", "Ok lar", "I am late", "Ok see you soon",
             "Sorry, busy now", "Hi there", "Hey you", "Call me later please", "Yes",
             "See you at the station at six", "Lunch?", "I will be home late tonight",
             "Where are you", "Thanks a lot for the lovely evening", "Ok"],
})


@functools.cache
def _tiny_spam_model_cached():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return add_classification_head(GPTModel(gpt2_config(
            context_length=16, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0)))


def _tiny_spam_model():
    return copy.deepcopy(_tiny_spam_model_cached())
