"""Tests of chapter 5's inference and memory switches: FastDecoder (5.7)."""

import pytest
import torch
from torch import nn

from ch04_gpt_model.gpt_model import GPTModel
from ch05_pretraining.pretraining import FastDecoder, generate


SMALL = {"vocab_size": 97, "context_length": 24, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
         "drop_rate": 0.1, "qkv_bias": True}


def small_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return GPTModel({**SMALL, **overrides}).eval()


# FastDecoder (5.7) ---------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [{}, {"qkv_bias": False}, {"tie_weights": True},
                                       {"sdpa": True}])
def test_fast_decoder_gives_the_models_logits(overrides):
    model = small_model(**overrides)
    ids = torch.randint(0, SMALL["vocab_size"], (2, 10))
    with torch.no_grad():
        expected = model(ids)
        torch.testing.assert_close(FastDecoder(model)(ids), expected)
        torch.testing.assert_close(FastDecoder(model)(ids, last_only=True), expected[:, -1:])


@pytest.mark.parametrize("split", [[10], [1] * 10, [4, 1, 5], [3, 7]])
def test_fast_decoder_continues_a_cache_in_pieces_of_any_size(split):
    model, ids = small_model(), torch.randint(0, SMALL["vocab_size"], (2, 10))
    decoder = FastDecoder(model)
    caches, pieces, start = decoder.make_kv_caches(), [], 0
    with torch.no_grad():
        for size in split:  # several tokens after a cached prefix need the causal mask
            pieces.append(decoder(ids[:, start:start + size], caches))
            start += size
        torch.testing.assert_close(torch.cat(pieces, dim=1), model(ids))
    assert caches[0].length == 10


def test_fast_decoder_generates_the_uncached_tokens_even_past_the_context():
    model = small_model(context_length=16)
    prompt = torch.tensor([[4, 8, 15, 16, 23]])
    uncached = generate(model, prompt, 60, context_size=16, use_cache=False)
    assert torch.equal(generate(FastDecoder(model), prompt, 60, context_size=16), uncached)


def test_fast_decoder_samples_the_models_tokens_from_the_same_seed():
    model = small_model()
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    drawn = []
    for decoder in (model, FastDecoder(model)):
        torch.manual_seed(7)
        drawn.append(generate(decoder, prompt, 15, context_size=24, temperature=1.0, top_k=20))
    assert torch.equal(*drawn)


def test_fast_decoder_is_a_copy_in_evaluation_mode():
    model, ids = small_model(), torch.randint(0, SMALL["vocab_size"], (1, 8))
    decoder = FastDecoder(model.train())  # dropout on in the model: not in the decoder
    with torch.no_grad():
        before = decoder(ids)
        torch.testing.assert_close(before, model.eval()(ids))
        for parameter in model.parameters():
            parameter.add_(1.0)  # training the model afterwards leaves the copy alone
        assert torch.equal(decoder(ids), before)


def test_fast_decoder_takes_a_classifiers_head_with_a_bias():
    model, ids = small_model(), torch.randint(0, SMALL["vocab_size"], (2, 6))
    model.out_head = nn.Linear(SMALL["emb_dim"], 2)  # chapter 6's replacement head
    with torch.no_grad():
        torch.testing.assert_close(FastDecoder(model)(ids), model(ids))


def test_fast_decoder_with_bf16_weights_is_close_and_reads_half_the_bytes():
    model, ids = small_model(), torch.randint(0, SMALL["vocab_size"], (1, 12))
    decoder = FastDecoder(model, torch.bfloat16)
    assert decoder.head[0].dtype == torch.bfloat16
    assert all(block["fc1"][0].dtype == torch.bfloat16 for block in decoder.blocks)
    caches = decoder.make_kv_caches()
    with torch.no_grad():
        expected = model(ids)
        whole = decoder(ids)
        stepped = torch.cat([decoder(ids[:, :5], caches)]
                            + [decoder(ids[:, i:i + 1], caches) for i in range(5, 12)], dim=1)
    assert whole.dtype == torch.float32
    # bf16 keeps 8 significant bits: about 1% of the logits' spread, not float32's 1e-6
    scale = expected.abs().max()
    assert (whole - expected).abs().max() < 0.05 * scale
    assert (stepped - expected).abs().max() < 0.05 * scale
    assert (whole - expected).abs().max() > 1e-6 * scale  # it really is not float32


def test_fast_decoder_rejects_what_it_cannot_copy_or_compute():
    model = small_model()
    with pytest.raises(ValueError, match="weight_dtype"):
        FastDecoder(model, torch.float16)
    adapted = small_model()
    adapted.trf_blocks[0].att.W_query = nn.Sequential(nn.Linear(32, 32))  # not a plain Linear
    with pytest.raises(TypeError, match="merge adapters"):
        FastDecoder(adapted)
    decoder = FastDecoder(model)
    with pytest.raises(ValueError, match="context_length is 24"):
        decoder(torch.zeros(1, 25, dtype=torch.long))
    caches = decoder.make_kv_caches()
    decoder(torch.zeros(1, 20, dtype=torch.long), caches)
    with pytest.raises(ValueError, match="after 20 cached tokens"):
        decoder(torch.zeros(1, 5, dtype=torch.long), caches)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        decoder(torch.tensor([[97]]))
    with pytest.raises(ValueError, match="max_tokens"):
        decoder.make_kv_caches(0)
