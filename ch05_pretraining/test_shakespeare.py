"""Tests of beyond_7_shakespeare.ipynb's module: the counting baselines against a count by
hand, and the saved text model against itself reloaded and against transformers' GPT-2."""

import math
from collections import Counter

import pytest
import tiktoken
import torch
import transformers

from ch05_pretraining.shakespeare import (
    load_text_model,
    nats_per_character,
    ngram_loss,
    save_text_model,
)
from shared import BPETokenizer, GPTModel


TEXT = "ROMEO:\nBut, soft! what light through yonder window breaks?\n" * 20
SMALL = {"context_length": 64, "emb_dim": 32, "n_heads": 2, "n_layers": 2, "drop_rate": 0.0,
         "qkv_bias": True}


def loss_by_hand(train, evals, vocab_size, order, k):
    """The same cross-entropy, counted with Counter in plain Python."""
    if order == 1:
        counts = Counter(train)
        return -sum(math.log((counts[t] + k) / (len(train) + k * vocab_size))
                    for t in evals) / len(evals)
    pairs, firsts = Counter(zip(train, train[1:])), Counter(train[:-1])
    return -sum(math.log((pairs[a, b] + k) / (firsts[a] + k * vocab_size))
                for a, b in zip(evals, evals[1:])) / (len(evals) - 1)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("k", [1.0, 0.01])
def test_ngram_loss_is_the_cross_entropy_of_the_counts(order, k):
    generator = torch.Generator().manual_seed(order)
    train = torch.randint(0, 7, (500,), generator=generator).tolist()
    evals = torch.randint(0, 9, (80,), generator=generator).tolist()  # 7, 8: never seen
    assert ngram_loss(train, evals, 9, order, k) == pytest.approx(
        loss_by_hand(train, evals, 9, order, k), rel=1e-12)


def test_a_bigram_model_of_a_repeating_text_is_nearly_certain():
    ids = [0, 1, 2, 3] * 100
    assert ngram_loss(ids, ids, 4, 2, 1e-6) < 1e-4
    assert ngram_loss(ids, ids, 4, 1, 1e-6) == pytest.approx(math.log(4))


@pytest.mark.parametrize("arguments, message", [
    (dict(order=3), "order must be 1 .unigram. or 2 .bigram., got 3"),
    (dict(add_k=0), "add_k must be > 0, got 0"),
])
def test_ngram_loss_refuses_bad_arguments_naming_them(arguments, message):
    given = {"train_ids": [0, 1, 2], "eval_ids": [0, 1], "vocab_size": 3, "order": 2,
             "add_k": 0.1, **arguments}
    with pytest.raises(ValueError, match=message):
        ngram_loss(**given)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tokenizer = BPETokenizer.train(TEXT, 280)
    torch.manual_seed(0)
    model = GPTModel({**SMALL, "vocab_size": tokenizer.n_vocab}).eval()
    folder = save_text_model(model, tokenizer, tmp_path_factory.mktemp("saved") / "model")
    return model, tokenizer, folder


def test_a_saved_text_model_loads_back_with_its_tokenizer(saved):
    model, tokenizer, folder = saved
    loaded, loaded_tokenizer = load_text_model(folder)
    ids = torch.tensor([tokenizer.encode(TEXT[:60])])
    assert not loaded.training
    assert loaded_tokenizer.encode(TEXT) == tokenizer.encode(TEXT)
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))


def test_transformers_reads_the_folder_as_gpt2(saved):
    """The folder is GPT-2's format: transformers' model computes our logits, and its GPT-2
    tokenizer, given the two files, our token ids."""
    model, tokenizer, folder = saved
    hf = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    hf_tokenizer = transformers.GPT2Tokenizer(str(folder / "encoder.json"),
                                               str(folder / "vocab.bpe"))
    ids = tokenizer.encode(TEXT[:60])
    assert hf_tokenizer.encode(TEXT[:60]) == ids
    with torch.no_grad():
        torch.testing.assert_close(hf(torch.tensor([ids])).logits, model(torch.tensor([ids])),
                                   rtol=1e-5, atol=1e-5)


def test_a_folder_holding_other_work_is_refused_and_left_as_it_was(saved, tmp_path):
    model, tokenizer, _ = saved
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        save_text_model(model, tokenizer, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_saving_again_replaces_the_same_models_save(saved):
    model, tokenizer, folder = saved
    save_text_model(model, tokenizer, folder)  # the same architecture: no replace needed
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "encoder.json", "model.safetensors", "vocab.bpe"]


def test_a_tokenizer_larger_than_the_vocabulary_is_refused(saved, tmp_path):
    _, tokenizer, _ = saved
    small = GPTModel({**SMALL, "vocab_size": 260})
    with pytest.raises(ValueError, match="tokenizer's 280 tokens do not fit the model's "
                                         "vocabulary of 260"):
        save_text_model(small, tokenizer, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_loading_a_folder_that_is_not_a_text_model_names_a_missing_file(saved, tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder.json"):  # tokenizers' own error
        load_text_model(tmp_path)


def test_nats_per_character_is_the_summed_token_loss_over_the_characters_predicted(saved):
    model, tokenizer, _ = saved
    text = TEXT[:150]  # 2 windows of the context (64): the second one is shorter
    ids = tokenizer.encode(text)
    assert 64 < len(ids) <= 128
    windows = [torch.tensor(ids[start:start + 65]) for start in (0, 64)]  # 64 inputs + 1
    with torch.no_grad():
        nats = sum(torch.nn.functional.cross_entropy(model(w[None, :-1])[0], w[1:],
                                                     reduction="sum").item() for w in windows)
    predicted = len(text) - len(tokenizer.decode(ids[:1]))
    assert nats_per_character(model, tokenizer, text) == pytest.approx(nats / predicted)


def test_nats_per_character_takes_any_tokenizer_and_refuses_a_training_model(saved):
    model, tokenizer, _ = saved
    gpt2_sized = GPTModel({**SMALL, "vocab_size": 50257}).eval()
    assert nats_per_character(gpt2_sized, tiktoken.get_encoding("gpt2"), TEXT) > 0
    with pytest.raises(ValueError, match=r"model must be in eval mode \(model.eval\(\)\)"):
        nats_per_character(model.train(), tokenizer, TEXT)
    model.eval()
