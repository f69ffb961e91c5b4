"""Bad inputs to chapter 2's lesson module: each is refused with an error that names it."""

from pathlib import Path

import pytest

from ch02_text_data.text_data import (
    GPTDatasetV1,
    SimpleTokenizerV1,
    SimpleTokenizerV2,
    build_vocabulary,
    create_dataloader_v1,
)


VOCAB = build_vocabulary(["a", "b", "."], special_tokens=["<|endoftext|>", "<|unk|>"])  # 5 ids


# Simple tokenizers ------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [SimpleTokenizerV1, SimpleTokenizerV2])
@pytest.mark.parametrize("bad_id", [5, -1, 10**9])
def test_simple_decode_names_an_unknown_id(cls, bad_id):
    with pytest.raises(ValueError, match=rf"token id {bad_id} is not in the vocabulary "
                                         r"\(ids 0\.\.4\)"):
        cls(VOCAB).decode([0, bad_id])


@pytest.mark.parametrize("bad_id", [1.5, "1", None])
def test_simple_decode_refuses_ids_that_are_not_integers(bad_id):
    with pytest.raises(TypeError, match=f"token ids must be integers, got {bad_id!r}"):
        SimpleTokenizerV1(VOCAB).decode([0, bad_id])


def test_simple_encode_names_the_unknown_word():
    with pytest.raises(KeyError, match="'zebra' is not in the vocabulary"):
        SimpleTokenizerV1(VOCAB).encode("a zebra.")


@pytest.mark.parametrize("cls", [SimpleTokenizerV1, SimpleTokenizerV2])
@pytest.mark.parametrize("text, kind", [(5, "int"), (None, "NoneType"), (b"a", "bytes")])
def test_simple_encode_refuses_text_that_is_not_a_str(cls, text, kind):
    with pytest.raises(TypeError, match=f"text must be a str, got {kind}"):
        cls(VOCAB).encode(text)


def test_v2_needs_unk_in_its_vocabulary():
    with pytest.raises(ValueError, match=r"SimpleTokenizerV2 needs '<\|unk\|>' in the vocabulary"):
        SimpleTokenizerV2(build_vocabulary(["a", "b"]))


# Datasets and loaders -------------------------------------------------------------------------

TEXT = "the cat sat on the mat. " * 20


@pytest.mark.parametrize("max_length, stride, error, message", [
    (0, 1, ValueError, "max_length must be an integer >= 1, got 0"),
    (-4, 1, ValueError, "max_length must be an integer >= 1, got -4"),
    (2.5, 1, TypeError, "max_length must be an integer >= 1, got 2.5"),
    ("4", 1, TypeError, "max_length must be an integer >= 1, got '4'"),
    (True, 1, TypeError, "max_length must be an integer >= 1, got True"),
    (4, 0, ValueError, "stride must be an integer >= 1, got 0"),
    (4, -2, ValueError, "stride must be an integer >= 1, got -2"),
    (4, None, TypeError, "stride must be an integer >= 1, got None"),
    (1000, 1, ValueError, r"the text has \d+ tokens, but one example needs max_length \+ 1 = "
                          "1001"),
])
def test_dataset_names_a_bad_window(tiktoken_gpt2, max_length, stride, error, message):
    with pytest.raises(error, match=message):
        GPTDatasetV1(TEXT, tiktoken_gpt2, max_length, stride)


class RefusingTokenizer:
    """A tokenizer that fails the test if anything tokenizes before the arguments are checked."""

    def encode(self, text, allowed_special=None):
        raise AssertionError("the text was tokenized before the arguments were checked")


@pytest.mark.parametrize("kwargs, error, message", [
    ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1, got 0"),
    ({"batch_size": -1}, ValueError, "batch_size must be an integer >= 1, got -1"),
    ({"batch_size": 2.0}, TypeError, "batch_size must be an integer >= 1, got 2.0"),
    ({"num_workers": -1}, ValueError, "num_workers must be an integer >= 0, got -1"),
    ({"max_length": 0}, ValueError, "max_length must be an integer >= 1, got 0"),
    ({"stride": 0}, ValueError, "stride must be an integer >= 1, got 0"),
])
def test_loader_refuses_bad_counts_before_tokenizing(kwargs, error, message):
    with pytest.raises(error, match=message):
        create_dataloader_v1(TEXT, tokenizer=RefusingTokenizer(),
                             **{"batch_size": 2, "max_length": 4, "stride": 4, **kwargs})


def test_loader_that_would_yield_no_batch_is_an_error(tiktoken_gpt2):
    n_windows = len(GPTDatasetV1(TEXT, tiktoken_gpt2, 4, 4))
    with pytest.raises(ValueError, match=f"the text gives {n_windows} windows, fewer than "
                                         f"batch_size={n_windows + 1}, and drop_last=True"):
        create_dataloader_v1(TEXT, batch_size=n_windows + 1, max_length=4, stride=4,
                             drop_last=True)
    loader = create_dataloader_v1(TEXT, batch_size=n_windows + 1, max_length=4, stride=4,
                                  drop_last=False)
    assert len(loader) == 1  # without drop_last the one short batch is kept


# Special tokens in the wrong container, duplicated ids, allowed_special=None -------------------

@pytest.mark.parametrize("special_tokens, error, message", [
    ("<|unk|>", TypeError, r"special_tokens must be a list of strings \(their order gives "
                           r"ids\), got '<\|unk\|>'; did you mean \['<\|unk\|>'\]\?"),
    ({"<|a|>"}, TypeError, r"special_tokens must be a list of strings \(their order gives "
                           r"ids\), got \{'<\|a\|>'\}$"),
    ([1], TypeError, r"special_tokens must be a list of strings .*, got \[1\]"),
    ([""], ValueError, r"special_tokens cannot hold the empty string"),
    (["<|unk|>", "<|x|>", "<|unk|>"], ValueError,
     r"special_tokens has '<\|unk\|>' twice; each must appear once"),
])
def test_build_vocabulary_refuses_special_tokens_in_the_wrong_container(special_tokens, error,
                                                                        message):
    with pytest.raises(error, match=message):
        build_vocabulary(["a", "b"], special_tokens=special_tokens)


def test_a_special_token_among_the_tokens_gets_one_id_at_the_end():
    """Text that already holds "<|endoftext|>" numbers it once, as a special token after the
    words: every id is below len(vocab), the size of the embedding that holds them. (The book's
    comprehension gave it a second id, one past the end, and left its first id unused.)"""
    vocab = build_vocabulary(["b", "<|endoftext|>", "a"], special_tokens=["<|endoftext|>",
                                                                          "<|unk|>"])
    assert vocab == {"a": 0, "b": 1, "<|endoftext|>": 2, "<|unk|>": 3}
    assert sorted(vocab.values()) == list(range(len(vocab)))


@pytest.mark.parametrize("txt, kind", [(Path("the-verdict.txt"), "PosixPath"), (None, "NoneType"),
                                        (["a", "b"], "list")])
def test_dataset_refuses_a_path_where_the_text_should_be(tiktoken_gpt2, txt, kind):
    if isinstance(txt, Path):
        kind = type(txt).__name__
    message = rf"txt must be the text itself \(a str\), not a path to read, got {kind}"
    with pytest.raises(TypeError, match=message):
        GPTDatasetV1(txt, RefusingTokenizer(), 4, 4)
    with pytest.raises(TypeError, match=message):
        create_dataloader_v1(txt, batch_size=1, max_length=4, stride=4,
                             tokenizer=RefusingTokenizer())
