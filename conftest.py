"""Test fixtures that tests in more than one folder use; each is defined here once.

pytest loads this file for every test under the repository (fixtures nearer a test, in a
chapter's own conftest.py, are defined there). Settings for the whole run (pinned numerics,
text progress bars) are the plugin shared/tooling/pytest_setup.py, loaded by pyproject's addopts.

- `TINY_GPT`, `tiny_gpt(seed=0, **change)`: the tiny test GPT, a chapter-4 `GPTModel` small
  enough to train in milliseconds. A test file that needs another shape states only what
  differs (`{**TINY_GPT, "n_layers": 2}`). Plain names rather than fixtures, because test
  files use them at import time (in parametrize lists and module-level helpers):
  `from conftest import TINY_GPT, tiny_gpt`.
- `TINY_QWEN3`, `tiny_qwen3(seed=0, **change)`: the same for chapter 4's `ModernGPTModel`
  (section 4.8) in Qwen3's shape: grouped-query attention with QK-norm, a head_dim of its own,
  tied embeddings.
- `qwen3_style_tokenizer(folder)`: a tokenizer.json as Qwen3 publishes it, written to `folder`
  and returned (a `tokenizers.Tokenizer`); its merges are learned from The Verdict.
- `tiktoken_gpt2`: GPT-2's tokenizer (tiktoken's "gpt2" encoding), built once per run.
- `data_mirror`: an empty temporary data mirror (`$LLM_COURSE_DATA_MIRROR`, see
  shared/data.py) and an empty temporary data/ folder; put files at a dataset's `path`.
"""

import pytest
import torch

from shared import data


TINY_GPT = {"vocab_size": 50, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 1,
            "drop_rate": 0.0, "qkv_bias": False}


def tiny_gpt(seed=0, **change):
    """A tiny GPT (`TINY_GPT` with `change`), initialised from `seed`, in eval mode."""
    from ch04_gpt_model.final_model import GPTModel  # on first use, after the run's numerics pins

    torch.manual_seed(seed)
    return GPTModel({**TINY_GPT, **change}).eval()


TINY_QWEN3 = {"vocab_size": 50, "context_length": 8, "emb_dim": 16, "n_heads": 4,
              "n_kv_groups": 2, "head_dim": 8, "n_layers": 1, "hidden_dim": 32,
              "qk_norm": True, "rope_base": 10_000.0, "tie_weights": True}


def tiny_qwen3(seed=0, **change):
    """A tiny Qwen3-style ModernGPTModel (`TINY_QWEN3` with `change`), from `seed`, in eval
    mode."""
    from ch04_gpt_model.modern import ModernGPTModel

    torch.manual_seed(seed)
    return ModernGPTModel({**TINY_QWEN3, **change}).eval()


QWEN3_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")


def qwen3_style_tokenizer(folder, special_tokens=QWEN3_SPECIAL_TOKENS):
    """A tokenizer.json as Qwen3 publishes it (NFC, Qwen's split pattern, byte-level BPE,
    ChatML special tokens, or others given), its merges learned from The Verdict, saved in
    `folder`."""
    import tokenizers
    from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers

    split = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
    tokenizer = tokenizers.Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator([data.read_text("the-verdict")], trainers.BpeTrainer(
        vocab_size=600, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=list(special_tokens)))
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    return tokenizer


@pytest.fixture(scope="session")
def tiktoken_gpt2():
    import tiktoken

    return tiktoken.get_encoding("gpt2")


@pytest.fixture
def data_mirror(tmp_path, monkeypatch):
    """An empty mirror folder, set as $LLM_COURSE_DATA_MIRROR, with data/ a fresh temporary
    folder (tmp_path / "data"): a test writes a dataset's file at `data_mirror / dataset.path`
    and `fetch` copies it from there, offline."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror))
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "data"))
    return mirror
