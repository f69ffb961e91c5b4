"""Bad inputs to bpe.py (beyond_1_bpe.ipynb): each is refused with an error that names it."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ch02_text_data.bpe import (
    BPETokenizer,
    gpt2_byte_to_char,
    learn_merges,
    read_gpt2_files,
    split_special_tokens,
    write_gpt2_files,
)


@pytest.fixture(scope="module")
def trained(verdict):
    return BPETokenizer.train(verdict, vocab_size=300)


# BPE: ids, special tokens, surrogates -----------------------------------------------------

@pytest.mark.parametrize("bad_id", [300, -1, 10**9])
def test_bpe_decode_names_an_unknown_id(trained, bad_id):
    with pytest.raises(KeyError, match=rf"^{bad_id}$"):
        trained.decode([72, bad_id])


@pytest.mark.parametrize("bad_id", [1.5, "7", None])
def test_bpe_decode_refuses_ids_that_are_not_integers(trained, bad_id):
    with pytest.raises(TypeError):  # a dict lookup alone would decode 1.0 as token 1
        trained.decode([72, bad_id])


def test_bpe_decode_takes_an_integer_tensor(trained):
    import torch

    assert trained.decode(torch.tensor([72, 101])) == trained.decode([72, 101]) == "He"


def test_bpe_names_a_disallowed_special_token(trained):
    with pytest.raises(ValueError, match=r"special token '<\|endoftext\|>'; pass allowed_special"):
        trained.encode("one<|endoftext|>two")


@pytest.mark.parametrize("allowed", [{"<|foo|>"}, {"<|endoftext|>", "<|foo|>"}])
def test_an_allowed_special_token_the_tokenizer_lacks_is_ignored_as_in_tiktoken(
        gpt2_bpe, tiktoken_gpt2, allowed):
    text = "hi <|foo|>, <|endo"
    assert (gpt2_bpe.encode(text, allowed_special=allowed)
            == tiktoken_gpt2.encode(text, allowed_special=allowed))


def test_allowed_special_as_a_bare_string_allows_no_special_token():
    # set("<|endoftext|>") is a set of characters, none of them a special token
    assert split_special_tokens("abc", {"<|endoftext|>": 5}, "<|endoftext|>") == [("abc", False)]
    with pytest.raises(ValueError, match="allowed_special"):
        split_special_tokens("a<|endoftext|>", {"<|endoftext|>": 5}, "<|endoftext|>")


@pytest.mark.parametrize("text", ["a\ud800b", "\udfff", "x\ud83d\ude00y", "\ud800\ud800 !",
                                  "caf\udce9"])
def test_lone_surrogates_encode_as_tiktoken_does(gpt2_bpe, tiktoken_gpt2, text):
    assert gpt2_bpe.encode(text) == tiktoken_gpt2.encode(text)


def test_bpe_train_and_learn_merges_refuse_counts_that_would_be_read_silently():
    # -1 would learn no merge, 1.5 two merges, vocab_size=100 a vocabulary of 257 tokens
    with pytest.raises(ValueError, match="n_merges must be an integer >= 0"):
        learn_merges("aaaa", -1)
    with pytest.raises(ValueError, match="n_merges"):
        learn_merges("aaaa", 1.5)
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer.train("aaaa", 300.5)
    with pytest.raises(ValueError, match=r"^vocab_size must be an integer >= 257, got 100$"):
        BPETokenizer.train("aaaa", 100)


# Hypothesis: round trips and parity with tiktoken on arbitrary Unicode ----------------------

@settings(max_examples=200, deadline=None)
@given(st.text())
def test_trained_tokenizer_round_trips_any_text(trained, text):
    # "all": Hypothesis also tries the module's string constants, "<|endoftext|>" among them
    assert trained.decode(trained.encode(text, allowed_special="all")) == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_gpt2_tokenizer_round_trips_any_text(gpt2_bpe, text):
    assert gpt2_bpe.decode(gpt2_bpe.encode(text, allowed_special="all")) == text


with_surrogates = st.text(st.one_of(
    st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])))


@settings(max_examples=200, deadline=None)
@given(with_surrogates)
def test_gpt2_tokenizer_equals_tiktoken_on_any_text_even_with_surrogates(gpt2_bpe, tiktoken_gpt2,
                                                                         text):
    assert (gpt2_bpe.encode(text, allowed_special="all")
            == tiktoken_gpt2.encode(text, allowed_special="all"))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=-5, max_value=310), max_size=20))
def test_decode_accepts_every_known_id_and_names_the_first_unknown(trained, ids):
    unknown = [i for i in ids if not 0 <= i < 300]
    if unknown:
        with pytest.raises(KeyError, match=rf"^{unknown[0]}$"):
            trained.decode(ids)
    else:
        assert trained.decode_bytes(ids) == b"".join(trained._id_to_bytes[i] for i in ids)


# GPT-2's files ------------------------------------------------------------------------------

def byte_encoder() -> dict:
    """A valid encoder.json's content: the 256 byte tokens, then one merge, "a" + "b"."""
    encoder = {char: byte for byte, char in gpt2_byte_to_char().items()}
    encoder["ab"] = 256
    encoder["<|endoftext|>"] = 257
    return encoder


@pytest.mark.parametrize("encoder_text, bpe_text, error, message", [
    # what would be read silently: the check names the file
    ('{"a": "0"}', "#version: 0.2\n", ValueError,
     r"encoder\.json: ids must be integers"),
    (None, "#version: 0.2\n\nb a\n", ValueError,
     r"vocab\.bpe and .*encoder\.json disagree at merge 1: they are not from the same"),
    # the rest fails in the reading, with Python's own error
    ("[1, 2]", "#version: 0.2\n", AttributeError, "values"),
    ('{"a\u4e00": 0}', "#version: 0.2\n", KeyError, "\u4e00"),
    (None, "#version: 0.2\nab\n", ValueError, "unpack"),
    (None, "#version: 0.2\n\na b c\n", ValueError, "unpack"),
    (None, "#version: 0.2\na \u4e00\n", KeyError, "\u4e00"),
])
def test_malformed_gpt2_files_are_an_error(tmp_path, encoder_text, bpe_text, error, message):
    encoder_json, vocab_bpe = tmp_path / "encoder.json", tmp_path / "vocab.bpe"
    encoder_json.write_text(encoder_text or json.dumps(byte_encoder()), encoding="utf-8")
    vocab_bpe.write_text(bpe_text, encoding="utf-8")
    with pytest.raises(error, match=message):
        read_gpt2_files(encoder_json, vocab_bpe)


def test_the_valid_files_of_these_tests_load(tmp_path):
    """The malformed cases above differ from these files in one place each."""
    (tmp_path / "encoder.json").write_text(json.dumps(byte_encoder()), encoding="utf-8")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\na b\n", encoding="utf-8")
    ranks, specials, merges = read_gpt2_files(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    assert merges == [(b"a", b"b")] and ranks[b"ab"] == 256 and specials == {"<|endoftext|>": 257}


@pytest.mark.parametrize("special_tokens", ["<|endoftext|>", {"<|endoftext|>"}, ["<|a|>", ""]])
def test_bpe_training_refuses_special_tokens_in_the_wrong_container(special_tokens):
    with pytest.raises(ValueError, match="special_tokens must be a list or a tuple"):
        BPETokenizer.train("aaaa bbbb", vocab_size=300, special_tokens=special_tokens)


def test_bpe_training_gives_a_special_token_listed_twice_one_id():
    tokenizer = BPETokenizer.train("aaaa bbbb", 260, special_tokens=["<|a|>", "<|b|>", "<|a|>"])
    assert tokenizer.special_tokens == {"<|a|>": 258, "<|b|>": 259} and tokenizer.n_vocab == 260


def test_bpe_n_vocab_holds_every_id_and_an_id_is_one_token():
    ranks = {bytes([b]): b for b in range(256)}
    sparse = BPETokenizer(ranks, {"<|endoftext|>": 300}, [])  # as tiktoken: max id + 1
    assert sparse.n_vocab == 301
    with pytest.raises(ValueError, match="token ids must be distinct, but two tokens have the "
                                         "id 65"):
        BPETokenizer(ranks, {"<|endoftext|>": 65}, [])


def test_encoder_json_with_a_token_twice_is_named(tmp_path):
    encoder = json.dumps(byte_encoder())[:-1] + ', "<|endoftext|>": 258}'
    (tmp_path / "encoder.json").write_text(encoder, encoding="utf-8")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\na b\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"encoder\.json has the token '<\|endoftext\|>' more "
                                         r"than once"):
        read_gpt2_files(tmp_path / "encoder.json", tmp_path / "vocab.bpe")


@pytest.mark.parametrize("allowed", [["<|endoftext|>"], ("<|endoftext|>",),
                                     frozenset({"<|endoftext|>"})])
def test_allowed_special_as_a_list_tuple_or_frozenset_is_accepted(trained, allowed):
    assert trained.encode("a<|endoftext|>", allowed_special=allowed)[-1] == 299


# The tokenizer's files are written whole, never over something else ----------------------------

def saved(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_saving_into_a_folder_of_other_files_adds_the_two_and_leaves_the_rest(trained,
                                                                             tmp_path):
    """save_gpt2_files(".") in a project folder overwrites nothing, so it is not refused."""
    (tmp_path / "model.safetensors").write_bytes(b"a learner's model")
    (tmp_path / "notes").mkdir()
    trained.save_gpt2_files(tmp_path)
    assert BPETokenizer.from_gpt2_files(tmp_path / "encoder.json", tmp_path / "vocab.bpe"
                                        ).ranks == trained.ranks
    assert (tmp_path / "model.safetensors").read_bytes() == b"a learner's model"
    assert sorted(saved_names(tmp_path)) == ["encoder.json", "model.safetensors", "notes",
                                             "vocab.bpe"]  # no temporary file left


def saved_names(folder: Path) -> list:
    return [p.name for p in folder.iterdir()]


@pytest.mark.parametrize("held", ["encoder.json", "vocab.bpe"])
def test_one_file_of_another_tokenizer_is_refused_unless_replace(trained, tmp_path, held):
    (tmp_path / held).write_text("a learner's own file")
    with pytest.raises(ValueError, match=rf"{tmp_path} holds another tokenizer's {held}; pass "
                                         r"replace=True"):
        trained.save_gpt2_files(tmp_path)
    assert saved_names(tmp_path) == [held]
    assert (tmp_path / held).read_text() == "a learner's own file"
    trained.save_gpt2_files(tmp_path, replace=True)
    assert BPETokenizer.from_gpt2_files(tmp_path / "encoder.json", tmp_path / "vocab.bpe"
                                        ).merges == trained.merges


def test_saving_over_another_tokenizer_is_refused_unless_replace(trained, tmp_path):
    other = BPETokenizer.train("aaaa bbbb", vocab_size=260)
    other.save_gpt2_files(tmp_path)
    other.save_gpt2_files(tmp_path)  # the same files again: nothing is lost
    before = saved(tmp_path)
    with pytest.raises(ValueError, match=r"holds another tokenizer's encoder\.json and "
                                         r"vocab\.bpe; pass replace=True"):
        trained.save_gpt2_files(tmp_path)
    assert saved(tmp_path) == before
    trained.save_gpt2_files(tmp_path, replace=True)
    assert sorted(saved(tmp_path)) == ["encoder.json", "vocab.bpe"]
    assert BPETokenizer.from_gpt2_files(tmp_path / "encoder.json", tmp_path / "vocab.bpe"
                                        ).merges == trained.merges


def test_saving_into_a_file_is_refused(trained, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes\.txt"):  # mkdir's own error
        trained.save_gpt2_files(tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_write_that_fails_leaves_no_half_tokenizer(trained, tmp_path):
    bad_merges = [*trained.merges, ("a", "b")]  # str, not bytes: found only while writing
    with pytest.raises(KeyError):
        write_gpt2_files(tmp_path / "new", trained.ranks, trained.special_tokens, bad_merges)
    assert not (tmp_path / "new").exists() or saved(tmp_path / "new") == {}  # no encoder.json alone
    trained.save_gpt2_files(tmp_path / "old")
    before = saved(tmp_path / "old")
    with pytest.raises(KeyError):
        write_gpt2_files(tmp_path / "old", trained.ranks, trained.special_tokens, bad_merges,
                         replace=True)
    assert saved(tmp_path / "old") == before  # the earlier files whole, no temporary file


def test_replace_that_is_not_a_flag_is_refused_and_nothing_is_replaced(trained, tmp_path):
    (tmp_path / "vocab.bpe").write_text("a learner's own file")
    with pytest.raises(ValueError, match="replace"):
        trained.save_gpt2_files(tmp_path, replace="no")  # a true value: it would replace
    assert saved_names(tmp_path) == ["vocab.bpe"]
    assert (tmp_path / "vocab.bpe").read_text() == "a learner's own file"
