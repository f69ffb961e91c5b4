"""Fixtures of chapter 2's tests (test_text_data.py, test_bad_inputs.py, test_bpe.py,
test_bpe_bad_inputs.py); GPT-2's tiktoken tokenizer, `tiktoken_gpt2`, is the repository's
(conftest.py at the root)."""

import pytest

from ch02_text_data.bpe import BPETokenizer
from shared import fetch, read_text


@pytest.fixture(scope="session")
def verdict():
    return read_text("the-verdict")


@pytest.fixture(scope="session")
def gpt2_bpe():
    """Chapter 2's BPETokenizer with GPT-2's own merges and vocabulary."""
    return BPETokenizer.from_gpt2_files(fetch("gpt2-encoder"), fetch("gpt2-vocab"))
