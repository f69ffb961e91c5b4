"""Tests of bpe.py (beyond_1_bpe.ipynb): parity with tiktoken, the heap-based merge,
training, GPT-2's files, and the tokenizer in the lesson's data loader."""

import random

import pytest
import tiktoken
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from ch02_text_data.bpe import (
    BPETokenizer,
    apply_merges,
    apply_merges_fast,
    gpt2_byte_to_char,
    learn_merges,
    write_gpt2_files,
)
from ch02_text_data.text_data import GPTDatasetV1, create_dataloader_v1
from shared import fetch


# BPE: GPT-2 parity --------------------------------------------------------------------------

def random_text(rng: random.Random, length: int) -> str:
    """Text mixing scripts, digits, punctuation, contractions and whitespace runs."""
    pieces = ["the", " The", "'s", "'ll", "don't", " 42", "3.14", "!!", "?", " ", "  ", "   ",
              "\n", "\n\n", "\t", " \t ", "naïve", "Ünïcödé", "日本語", "привет", "😀", "🚀",
              "e\u0301", "\u00a0", "--", "...", "(x)", "{}", "#", "@user", "http://a.b/c?d=e"]
    return "".join(rng.choice(pieces) for _ in range(length))


def test_bpe_matches_tiktoken_on_random_text(gpt2_bpe, tiktoken_gpt2):
    rng = random.Random(0)
    for _ in range(300):
        text = random_text(rng, rng.randint(1, 40))
        assert gpt2_bpe.encode(text) == tiktoken_gpt2.encode(text), repr(text)


def test_bpe_matches_tiktoken_on_random_code_points(gpt2_bpe, tiktoken_gpt2):
    rng = random.Random(1)
    # Printable code points from several blocks: Latin, Greek, CJK, symbols, emoji.
    blocks = [(0x20, 0x7E), (0xA0, 0x17F), (0x370, 0x3FF), (0x4E00, 0x4E80), (0x2000, 0x206F),
              (0x1F600, 0x1F64F)]
    for _ in range(200):
        chars = []
        for _ in range(rng.randint(1, 30)):
            low, high = rng.choice(blocks)
            chars.append(chr(rng.randint(low, high)))
        text = "".join(chars)
        assert gpt2_bpe.encode(text) == tiktoken_gpt2.encode(text), repr(text)


def test_bpe_special_tokens_like_tiktoken(gpt2_bpe, tiktoken_gpt2):
    text = "first<|endoftext|>second <|endoftext|> third"
    allowed = {"<|endoftext|>"}
    assert gpt2_bpe.encode(text, allowed_special=allowed) == tiktoken_gpt2.encode(
        text, allowed_special=allowed)
    assert gpt2_bpe.encode(text, allowed_special="all").count(50256) == 2
    with pytest.raises(ValueError, match="allowed_special"):
        gpt2_bpe.encode(text)


def test_bpe_decode_round_trip_and_bad_id(gpt2_bpe, verdict):
    assert gpt2_bpe.decode(gpt2_bpe.encode(verdict)) == verdict
    with pytest.raises(KeyError, match="50257"):
        gpt2_bpe.decode([50257])


def test_mismatched_gpt2_files_are_rejected(tmp_path):
    vocab_lines = fetch("gpt2-vocab").read_text(encoding="utf-8").splitlines()
    vocab_lines[1], vocab_lines[2] = vocab_lines[2], vocab_lines[1]  # swap two merges
    (tmp_path / "vocab.bpe").write_text("\n".join(vocab_lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="disagree at merge 1: they are not from the same"):
        BPETokenizer.from_gpt2_files(fetch("gpt2-encoder"), tmp_path / "vocab.bpe")


# BPE: the heap-based merge gives the lesson's ids -------------------------------------------

# Bytes of any kind, text of any script, and runs from a few letters that merge a lot.
PIECES = st.one_of(st.binary(max_size=200), st.text(max_size=100).map(str.encode),
                   st.text(alphabet="etaoin shrdl", max_size=200).map(str.encode))


@settings(max_examples=300, deadline=None)
@given(PIECES)
def test_fast_merge_equals_apply_merges_with_gpt2_ranks(gpt2_bpe, piece):
    assert apply_merges_fast(piece, gpt2_bpe.ranks) == apply_merges(piece, gpt2_bpe.ranks)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab c", max_size=60), st.integers(0, 40),
       st.text(alphabet="ab cd", max_size=80).map(str.encode))
def test_fast_merge_equals_apply_merges_with_small_trained_vocabularies(text, n_merges, piece):
    ranks, _ = learn_merges(text, n_merges)  # few letters: long tokens, many ties and repeats
    assert apply_merges_fast(piece, ranks) == apply_merges(piece, ranks)


def test_fast_merge_ranks_the_merged_bytes_whichever_pair_made_them():
    # "bc" is merged first, so "abc" arises as "a" + "bc", not as the learned "ab" + "c".
    ranks = {**{bytes([b]): b for b in range(256)}, b"bc": 256, b"ab": 257, b"abc": 258}
    assert apply_merges_fast(b"abc", ranks) == apply_merges(b"abc", ranks) == [258]
    assert apply_merges_fast(b"", ranks) == apply_merges(b"", ranks) == []


def test_long_run_without_spaces_encodes_to_tiktokens_ids(gpt2_bpe, tiktoken_gpt2):
    # One chunk of 50,000 letters: a size where apply_merges, quadratic, is far too slow.
    text = "".join(random.Random(5).choices("abcdefghijklmnopqrstuvwxyz", k=50_000))
    fresh = BPETokenizer(gpt2_bpe.ranks, gpt2_bpe.special_tokens, gpt2_bpe.merges)
    assert fresh.encode(text) == tiktoken_gpt2.encode(text)


# BPE: training ----------------------------------------------------------------------------

CORPUS = ("low lower lowest newer newest wider widest the the the then there these those " * 20
          + "Ünïcödé 日本 😀 " * 3)


def test_training_reaches_requested_size_and_is_deterministic():
    first = BPETokenizer.train(CORPUS, vocab_size=300)
    second = BPETokenizer.train(CORPUS, vocab_size=300)
    assert first.n_vocab == 300
    assert len(first.merges) == 300 - 256 - 1
    assert first.special_tokens == {"<|endoftext|>": 299}
    assert first.merges == second.merges
    assert b" the" in first.ranks


def test_training_merges_the_most_frequent_pair_first():
    tokenizer = BPETokenizer.train("ab ab ab cd", vocab_size=258, special_tokens=())
    assert tokenizer.merges[0] == (b"a", b"b")
    assert tokenizer.encode("ab") == [256]


def test_training_stops_when_nothing_is_left_to_merge():
    tokenizer = BPETokenizer.train("aaaa", vocab_size=400, special_tokens=())
    assert tokenizer.n_vocab == 256 + 2  # "aa", then "aaaa"
    assert tokenizer.encode("aaaa") == [257]


def test_trained_tokenizer_round_trips_unseen_text():
    tokenizer = BPETokenizer.train(CORPUS, vocab_size=300)
    text = random_text(random.Random(2), 200)
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_trained_tokenizer_saved_in_gpt2_format_reloads_and_agrees_with_tiktoken(tmp_path):
    tokenizer = BPETokenizer.train(CORPUS, vocab_size=320)
    tokenizer.save_gpt2_files(tmp_path)
    reloaded = BPETokenizer.from_gpt2_files(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    reference = tiktoken.Encoding(name="trained", pat_str=tokenizer.pattern,
                                  mergeable_ranks=tokenizer.ranks,
                                  special_tokens=tokenizer.special_tokens)
    text = CORPUS + random_text(random.Random(3), 100)
    assert reloaded.encode(text) == tokenizer.encode(text) == reference.encode(text)


def test_saved_files_are_read_by_tools_that_take_ids_from_encoder_json(tmp_path):
    """2.5.4's claim: Hugging Face's GPT2Tokenizer reads our files (ids from encoder.json)."""
    import transformers
    tokenizer = BPETokenizer.train(CORPUS, vocab_size=320)
    tokenizer.save_gpt2_files(tmp_path)
    hf = transformers.GPT2Tokenizer(str(tmp_path / "encoder.json"), str(tmp_path / "vocab.bpe"))
    text = CORPUS + random_text(random.Random(4), 100)
    assert hf.encode(text) == tokenizer.encode(text)


def test_tiktokens_file_reader_refuses_our_byte_order_unless_asked(tmp_path):
    """2.5.4's claim: by default tiktoken's reader recomputes GPT-2's byte ids (space = 220),
    which ours do not follow; clobber_one_byte_tokens=True takes them from encoder.json."""
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    tokenizer = BPETokenizer.train(CORPUS, vocab_size=320)
    assert tokenizer.ranks[b" "] == 32
    tokenizer.save_gpt2_files(tmp_path)
    with pytest.raises(AssertionError):
        data_gym_to_mergeable_bpe_ranks(str(tmp_path / "vocab.bpe"),
                                        str(tmp_path / "encoder.json"))
    # The byte order is the only difference: renumbered printable-first, the files are read.
    order = sorted(range(256), key=lambda b: gpt2_byte_to_char()[b] != chr(b))
    renumbered = {**tokenizer.ranks, **{bytes([b]): i for i, b in enumerate(order)}}
    assert renumbered[b" "] == 220
    write_gpt2_files(tmp_path / "renumbered", renumbered, tokenizer.special_tokens,
                     tokenizer.merges)
    assert data_gym_to_mergeable_bpe_ranks(str(tmp_path / "renumbered" / "vocab.bpe"),
                                           str(tmp_path / "renumbered" / "encoder.json")
                                           ) == renumbered
    # Asked to take the single-byte ids from encoder.json, it reads our own files exactly.
    assert data_gym_to_mergeable_bpe_ranks(str(tmp_path / "vocab.bpe"),
                                           str(tmp_path / "encoder.json"),
                                           clobber_one_byte_tokens=True) == tokenizer.ranks


def test_vocab_size_too_small_is_an_error():
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 257"):
        BPETokenizer.train("abc", vocab_size=100)


def test_the_lessons_dataset_accepts_our_bpe_tokenizer(verdict, gpt2_bpe):
    ours = DataLoader(GPTDatasetV1(verdict, gpt2_bpe, max_length=8, stride=8), batch_size=2,
                      drop_last=True)
    reference = create_dataloader_v1(verdict, batch_size=2, max_length=8, stride=8,
                                     shuffle=False)
    for (a, b), (c, d) in zip(ours, reference):
        assert torch.equal(a, c) and torch.equal(b, d)
