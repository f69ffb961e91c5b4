"""Bad inputs to chapter 2's lesson module: each is refused with an error that names the
argument. One table per public function: the call, the bad argument, the error, and the name the
message must hold; two tests at the end pin a whole message."""

from pathlib import Path

import pytest

from ch02_text_data.text_data import (
    GPTDatasetV1,
    SimpleTokenizerV1,
    SimpleTokenizerV2,
    build_vocabulary,
    create_dataloader_v1,
    look_up_ids,
    simple_tokenize,
)


VOCAB = build_vocabulary(["a", "b", "."], special_tokens=["<|endoftext|>", "<|unk|>"])  # 5 ids
TEXT = "the cat sat on the mat. " * 20


class RefusingTokenizer:
    """A tokenizer that fails the test if anything tokenizes before the arguments are checked."""

    def encode(self, text, allowed_special=None):
        raise AssertionError("the text was tokenized before the arguments were checked")


def assert_refused(call, error, name):
    """`call()` raises `error`, and its message names `name`."""
    with pytest.raises(error) as refusal:
        call()
    assert name in str(refusal.value), f"{name!r} not named in: {refusal.value}"


# simple_tokenize and the tokenizers' encode -------------------------------------------------

ENCODERS = {"simple_tokenize": simple_tokenize, "V1.encode": SimpleTokenizerV1(VOCAB).encode,
            "V2.encode": SimpleTokenizerV2(VOCAB).encode}


@pytest.mark.parametrize("call", ENCODERS.values(), ids=ENCODERS.keys())
@pytest.mark.parametrize("text, error, name", [
    (5, TypeError, "text"),
    (None, TypeError, "text"),
    (b"a", TypeError, "text"),
    (Path("the-verdict.txt"), TypeError, "text"),
])
def test_simple_tokenize_and_encode_refuse(call, text, error, name):
    assert_refused(lambda: call(text), error, name)


@pytest.mark.parametrize("text, error, name", [
    ("a zebra.", KeyError, "'zebra'"),  # the first unknown word, and where it is
    ("a zebra.", KeyError, "text"),
])
def test_simple_tokenizer_v1_encode_refuses(text, error, name):
    assert_refused(lambda: SimpleTokenizerV1(VOCAB).encode(text), error, name)


# build_vocabulary ---------------------------------------------------------------------------

@pytest.mark.parametrize("special_tokens, error, name", [
    ("<|unk|>", TypeError, "special_tokens"),  # a str would be read letter by letter
    ({"<|a|>"}, TypeError, "special_tokens"),  # a set has no order to number by
    ([1], TypeError, "special_tokens"),
    ([""], ValueError, "special_tokens"),
    (["<|unk|>", "<|x|>", "<|unk|>"], ValueError, "special_tokens"),
])
def test_build_vocabulary_refuses(special_tokens, error, name):
    assert_refused(lambda: build_vocabulary(["a", "b"], special_tokens=special_tokens), error,
                   name)


def test_build_vocabulary_gives_a_special_token_among_the_tokens_one_id_at_the_end():
    """Text that already holds "<|endoftext|>" numbers it once, as a special token after the
    words: every id is below len(vocab), the size of the embedding that holds them. (The book's
    comprehension gave it a second id, one past the end, and left its first id unused.)"""
    vocab = build_vocabulary(["b", "<|endoftext|>", "a"], special_tokens=["<|endoftext|>",
                                                                          "<|unk|>"])
    assert vocab == {"a": 0, "b": 1, "<|endoftext|>": 2, "<|unk|>": 3}
    assert sorted(vocab.values()) == list(range(len(vocab)))


# look_up_ids and the tokenizers' decode -----------------------------------------------------

DECODERS = {"look_up_ids": lambda ids: look_up_ids({i: t for t, i in VOCAB.items()}, ids),
            "V1.decode": SimpleTokenizerV1(VOCAB).decode,
            "V2.decode": SimpleTokenizerV2(VOCAB).decode}


@pytest.mark.parametrize("call", DECODERS.values(), ids=DECODERS.keys())
@pytest.mark.parametrize("bad_id, error, name", [
    (5, ValueError, "token id 5"),
    (-1, ValueError, "token id -1"),
    (10**9, ValueError, "token id 1000000000"),
    (1.5, TypeError, "token ids"),  # int() would silently give 1
    ("1", TypeError, "token ids"),
    (None, TypeError, "token ids"),
])
def test_look_up_ids_and_decode_refuse(call, bad_id, error, name):
    assert_refused(lambda: call([0, bad_id]), error, name)


# SimpleTokenizerV2 --------------------------------------------------------------------------

@pytest.mark.parametrize("vocab, error, name", [
    (build_vocabulary(["a", "b"]), ValueError, "'<|unk|>'"),
    (build_vocabulary(["a", "b"], special_tokens=["<|endoftext|>"]), ValueError, "'<|unk|>'"),
])
def test_simple_tokenizer_v2_refuses(vocab, error, name):
    assert_refused(lambda: SimpleTokenizerV2(vocab), error, name)


# GPTDatasetV1 -------------------------------------------------------------------------------

@pytest.mark.parametrize("txt, max_length, stride, error, name", [
    (TEXT, 0, 1, ValueError, "max_length"),
    (TEXT, -4, 1, ValueError, "max_length"),
    (TEXT, 2.5, 1, TypeError, "max_length"),
    (TEXT, "4", 1, TypeError, "max_length"),
    (TEXT, True, 1, TypeError, "max_length"),
    (TEXT, 4, 0, ValueError, "stride"),
    (TEXT, 4, -2, ValueError, "stride"),
    (TEXT, 4, None, TypeError, "stride"),
    (Path("the-verdict.txt"), 4, 4, TypeError, "txt"),
    (None, 4, 4, TypeError, "txt"),
    (["a", "b"], 4, 4, TypeError, "txt"),
])
def test_gpt_dataset_v1_refuses_before_tokenizing(txt, max_length, stride, error, name):
    assert_refused(lambda: GPTDatasetV1(txt, RefusingTokenizer(), max_length, stride), error,
                   name)


def test_gpt_dataset_v1_refuses_a_text_shorter_than_one_window(tiktoken_gpt2):
    assert_refused(lambda: GPTDatasetV1(TEXT, tiktoken_gpt2, 1000, 1), ValueError,
                   "max_length + 1 = 1001")


# create_dataloader_v1 -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, name", [
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": -1}, ValueError, "batch_size"),
    ({"batch_size": 2.0}, TypeError, "batch_size"),
    ({"num_workers": -1}, ValueError, "num_workers"),
    ({"max_length": 0}, ValueError, "max_length"),
    ({"stride": 0}, ValueError, "stride"),
    ({"txt": Path("the-verdict.txt")}, TypeError, "txt"),
    ({"txt": None}, TypeError, "txt"),
])
def test_create_dataloader_v1_refuses_before_tokenizing(kwargs, error, name):
    arguments = {"txt": TEXT, "batch_size": 2, "max_length": 4, "stride": 4, **kwargs}
    assert_refused(lambda: create_dataloader_v1(**arguments, tokenizer=RefusingTokenizer()),
                   error, name)


def test_create_dataloader_v1_refuses_a_loader_that_would_yield_no_batch(tiktoken_gpt2):
    n_windows = len(GPTDatasetV1(TEXT, tiktoken_gpt2, 4, 4))
    for name in ("batch_size", "drop_last"):
        assert_refused(lambda: create_dataloader_v1(TEXT, batch_size=n_windows + 1, max_length=4,
                                                    stride=4, drop_last=True), ValueError, name)
    loader = create_dataloader_v1(TEXT, batch_size=n_windows + 1, max_length=4, stride=4,
                                  drop_last=False)
    assert len(loader) == 1  # without drop_last the one short batch is kept


# Two messages in full -----------------------------------------------------------------------

def test_create_dataloader_v1_says_what_to_do_when_no_batch_is_left(tiktoken_gpt2):
    n_windows = len(GPTDatasetV1(TEXT, tiktoken_gpt2, 4, 4))
    with pytest.raises(ValueError) as refusal:
        create_dataloader_v1(TEXT, batch_size=n_windows + 1, max_length=4, stride=4)
    assert str(refusal.value) == (f"drop_last=True drops all {n_windows} windows: fewer than "
                                  f"batch_size={n_windows + 1}; lower it, or pass drop_last=False")


def test_gpt_dataset_v1_says_a_path_is_not_the_text():
    with pytest.raises(TypeError) as refusal:
        GPTDatasetV1(Path("the-verdict.txt"), RefusingTokenizer(), 4, 4)
    assert str(refusal.value) == ("txt must be the text itself (a str), not a path to read, got "
                                  f"{type(Path()).__name__}")
