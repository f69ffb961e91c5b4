"""Tests of text_data.py, chapter 2's lesson module: tokenizers and data loaders (the BPE
from scratch of beyond_1_bpe.ipynb: test_bpe.py)."""

import pytest
import tiktoken
import torch

from ch02_text_data.text_data import (
    GPTDatasetV1,
    SimpleTokenizerV1,
    SimpleTokenizerV2,
    build_vocabulary,
    create_dataloader_v1,
    create_dataloader_v1_book,
    simple_tokenize,
)


# Simple tokenizers ------------------------------------------------------------------------

def test_simple_tokenize_splits_punctuation_and_drops_whitespace():
    assert simple_tokenize('Hello, world--"yes"?  ok') == [
        "Hello", ",", "world", "--", '"', "yes", '"', "?", "ok"]


def test_v1_round_trip_on_known_words(verdict):
    tokenizer = SimpleTokenizerV1(build_vocabulary(simple_tokenize(verdict)))
    text = "It was the last he painted, you know."
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_v1_unknown_word_is_a_key_error_that_names_it(verdict):
    tokenizer = SimpleTokenizerV1(build_vocabulary(simple_tokenize(verdict)))
    with pytest.raises(KeyError, match="'Hello'"):
        tokenizer.encode("Hello, do you like tea?")


def test_v2_maps_unknown_words_and_keeps_endoftext(verdict):
    vocab = build_vocabulary(simple_tokenize(verdict), special_tokens=["<|endoftext|>", "<|unk|>"])
    tokenizer = SimpleTokenizerV2(vocab)
    ids = tokenizer.encode("Hello the <|endoftext|> palace")
    assert ids == [vocab["<|unk|>"], vocab["the"], vocab["<|endoftext|>"], vocab["<|unk|>"]]
    assert tokenizer.decode(ids) == "<|unk|> the <|endoftext|> <|unk|>"


def test_v2_decode_drops_the_space_before_colon_and_semicolon_as_the_books_does(verdict):
    vocab = build_vocabulary(simple_tokenize(verdict), special_tokens=["<|endoftext|>", "<|unk|>"])
    text = "I had; he said: yes -- no"
    ids = SimpleTokenizerV2(vocab).encode(text)
    assert SimpleTokenizerV2(vocab).decode(ids) == "I had; he said: <|unk|> -- no"
    assert SimpleTokenizerV1(vocab).decode(ids) == "I had ; he said : <|unk|> -- no"  # V1's


def test_vocabulary_is_sorted_with_specials_last():
    vocab = build_vocabulary(["b", "a", "b"], special_tokens=["<|x|>"])
    assert vocab == {"a": 0, "b": 1, "<|x|>": 2}


# Data loading -----------------------------------------------------------------------------

def test_dataloader_shapes_and_target_shift(verdict):
    loader = create_dataloader_v1(verdict, batch_size=8, max_length=4, stride=4, shuffle=False)
    inputs, targets = next(iter(loader))
    assert inputs.shape == targets.shape == (8, 4)
    assert torch.equal(inputs[:, 1:], targets[:, :-1])  # targets are inputs shifted by one
    ids = tiktoken.get_encoding("gpt2").encode(verdict)
    assert inputs[0].tolist() == ids[:4] and targets[0].tolist() == ids[1:5]


def test_the_shuffled_loader_gives_the_books_batches_from_the_same_seed(verdict):
    """create_dataloader_v1 counts the windows unshuffled, then shuffles them itself: the same
    batches, in the same order, as the book's loader draws from the same random state."""
    batches = []
    for make in (create_dataloader_v1, create_dataloader_v1_book):
        torch.manual_seed(123)
        loader = make(verdict, batch_size=4, max_length=16, stride=16)
        batches.append([torch.cat(pair) for pair in list(loader) + list(loader)])  # two epochs
    assert len(batches[0]) > 1 and all(map(torch.equal, *batches))


@pytest.mark.parametrize("stride", [1, 3, 4, 7])
def test_stride_is_the_distance_between_windows(stride):
    tokenizer = tiktoken.get_encoding("gpt2")
    text = " ".join(str(n) for n in range(100))
    ids = tokenizer.encode(text)
    dataset = GPTDatasetV1(text, tokenizer, max_length=4, stride=stride)
    assert len(dataset) == len(range(0, len(ids) - 4, stride))
    for k in range(len(dataset)):
        inputs, targets = dataset[k]
        assert inputs.tolist() == ids[k * stride:k * stride + 4]
        assert targets.tolist() == ids[k * stride + 1:k * stride + 5]


def test_text_shorter_than_context_is_a_clear_error():
    with pytest.raises(ValueError, match="no batch: 0 windows of 257 tokens"):
        create_dataloader_v1("Too short.", max_length=256, shuffle=False)
