"""Bad inputs to chapter 2's lesson module: each is refused with an error that names the
argument. The checks are few: the book's tokenizers, dataset and loader raise Python's and
PyTorch's own errors, and only build_vocabulary and create_dataloader_v1 check what would
otherwise go wrong silently. One test at the end pins a whole message."""

import pytest

from ch02_text_data.text_data import (
    GPTDatasetV1,
    build_vocabulary,
    create_dataloader_v1,
    create_dataloader_v1_book,
)


TEXT = "the cat sat on the mat. " * 20


def assert_refused(call, error, name):
    """`call()` raises `error`, and its message names `name`."""
    with pytest.raises(error) as refusal:
        call()
    assert name in str(refusal.value), f"{name!r} not named in: {refusal.value}"


# build_vocabulary ---------------------------------------------------------------------------

@pytest.mark.parametrize("special_tokens", [
    "<|unk|>",  # a str would be numbered letter by letter
    {"<|a|>"},  # a set has no order to number by
])
def test_build_vocabulary_refuses(special_tokens):
    assert_refused(lambda: build_vocabulary(["a", "b"], special_tokens=special_tokens),
                   ValueError, "special_tokens")


def test_build_vocabulary_gives_a_special_token_listed_twice_one_id():
    assert build_vocabulary(["a"], ["<|x|>", "<|unk|>", "<|x|>"]) == {"a": 0, "<|x|>": 1,
                                                                      "<|unk|>": 2}


def test_build_vocabulary_gives_a_special_token_among_the_tokens_one_id_at_the_end():
    """Text that already holds "<|endoftext|>" numbers it once, as a special token after the
    words: every id is below len(vocab), the size of the embedding that holds them. (The book's
    comprehension gave it a second id, one past the end, and left its first id unused.)"""
    vocab = build_vocabulary(["b", "<|endoftext|>", "a"], special_tokens=["<|endoftext|>",
                                                                          "<|unk|>"])
    assert vocab == {"a": 0, "b": 1, "<|endoftext|>": 2, "<|unk|>": 3}
    assert sorted(vocab.values()) == list(range(len(vocab)))


# create_dataloader_v1 -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, name", [
    ({"max_length": 0}, ValueError, "max_length"),  # windows without a token
    ({"max_length": -4}, ValueError, "max_length"),
    ({"stride": 0}, ValueError, "stride"),
    ({"stride": -2}, ValueError, "stride"),  # no window, and no error
])
def test_create_dataloader_v1_refuses_windows_that_would_be_wrong(kwargs, error, name):
    arguments = {"txt": TEXT, "batch_size": 2, "max_length": 4, "stride": 4, **kwargs}
    assert_refused(lambda: create_dataloader_v1(**arguments), error, name)


def test_without_the_check_a_negative_stride_gives_an_empty_loader_silently():
    assert len(create_dataloader_v1_book(TEXT, batch_size=2, max_length=4, stride=-2,
                                         shuffle=False)) == 0


def test_create_dataloader_v1_refuses_a_loader_that_would_yield_no_batch(tiktoken_gpt2):
    n_windows = len(GPTDatasetV1(TEXT, tiktoken_gpt2, 4, 4))
    for name in ("batch_size", "drop_last"):
        assert_refused(lambda: create_dataloader_v1(TEXT, batch_size=n_windows + 1, max_length=4,
                                                    stride=4, drop_last=True), ValueError, name)
    loader = create_dataloader_v1(TEXT, batch_size=n_windows + 1, max_length=4, stride=4,
                                  drop_last=False)
    assert len(loader) == 1  # without drop_last the one short batch is kept
    # a text shorter than one window: no batch, drop_last or not, shuffled or not (shuffled,
    # DataLoader's sampler would refuse the empty dataset first, naming only num_samples=0)
    for drop_last in (True, False):
        for shuffle in (True, False):
            with pytest.raises(ValueError, match="0 windows of 1001 tokens"):
                create_dataloader_v1(TEXT, max_length=1000, shuffle=shuffle, drop_last=drop_last)


def test_create_dataloader_v1_says_why_no_batch_is_left(tiktoken_gpt2):
    n_windows = len(GPTDatasetV1(TEXT, tiktoken_gpt2, 4, 4))
    with pytest.raises(ValueError) as refusal:
        create_dataloader_v1(TEXT, batch_size=n_windows + 1, max_length=4, stride=4)
    assert str(refusal.value) == (
        f"no batch: {n_windows} windows of 5 tokens, batch_size={n_windows + 1}, drop_last=True")
