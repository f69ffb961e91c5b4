"""decoding.py's generate: what it does with a prompt longer than the context; KVCachedModel, the
cache generate calls the model through."""

import warnings

import pytest
import torch

from conftest import TINY_GPT, tiny_gpt, tiny_qwen3
from shared import FastDecoder, KVCachedModel, generate_text


LONG_PROMPT = torch.arange(TINY_GPT["context_length"] + 3).unsqueeze(0)  # 3 tokens too many


# generate: a prompt longer than the context ----------------------------------------------------

def test_a_cropped_prompt_is_said_and_the_tokens_are_those_of_its_end():
    model = tiny_gpt()
    with pytest.warns(UserWarning, match=r"the prompt has 11 tokens, more than context_size=8: "
                                         r"generate_text reads only its last 8 \(its first 3 are"):
        tokens = generate_text(model, LONG_PROMPT, 4)
    end = LONG_PROMPT[:, -TINY_GPT["context_length"]:]
    assert torch.equal(tokens[:, -4:], generate_text(model, end, 4)[:, -4:])


@pytest.mark.parametrize("use_cache", [True, False])
def test_a_prompt_that_fits_is_not_warned_about_even_when_the_text_outgrows_the_context(
        use_cache):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        generate_text(tiny_gpt(), LONG_PROMPT[:, :8], 5, use_cache=use_cache)


@pytest.mark.parametrize("make", [tiny_qwen3, lambda: FastDecoder(tiny_qwen3())],
                         ids=["ModernGPTModel", "FastDecoder"])
def test_an_open_models_prompt_is_not_cropped(make):
    with pytest.raises(ValueError, match=r"the prompt has 11 tokens, more than context_size=8.*"
                                         r"<bos>.*shorten the prompt"):
        generate_text(make(), LONG_PROMPT, 4)


def test_the_fast_decoder_of_gpt2_crops_with_the_same_warning():
    with pytest.warns(UserWarning, match="generate_text reads only its last 8"):
        generate_text(FastDecoder(tiny_gpt()), LONG_PROMPT, 2)


# KVCachedModel: the cache as the model's wrapper, not part of generate's loop ------------------

def uncached_last_logits(model, ids):
    with torch.no_grad():
        return model(ids)[:, -1:]


@pytest.mark.parametrize("make", [tiny_gpt, tiny_qwen3, lambda: FastDecoder(tiny_gpt())],
                         ids=["GPTModel", "ModernGPTModel", "FastDecoder"])
def test_a_cached_model_gives_the_uncached_last_logits_for_each_text_it_is_shown(make):
    model = make()
    cached = KVCachedModel(model, max_tokens=TINY_GPT["context_length"])
    text = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))
    other = torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(1))
    shown = [text[:, :3], text[:, :4], text[:, :7], text[:, :8],  # a text growing
             text[:, 1:9], text[:, 2:10],  # the window sliding past the context of 8
             other, other[:, :3], other]  # a new prompt; a shorter one; the same one again
    for ids in shown:
        with torch.no_grad():
            torch.testing.assert_close(cached(ids), uncached_last_logits(model, ids))
        assert cached.kv_caches[0].length <= TINY_GPT["context_length"]


def test_a_cached_model_feeds_the_model_only_the_tokens_it_has_not_seen():
    model, fed = tiny_gpt(), []
    model.tok_emb.register_forward_hook(lambda module, args, out: fed.append(args[0].shape[1]))
    cached = KVCachedModel(model, max_tokens=8)
    text = torch.arange(10).unsqueeze(0)
    with torch.no_grad():
        for ids in (text[:, :4], text[:, :5], text[:, :6], text[:, 1:9], text[:, 2:10]):
            cached(ids)
    assert fed == [4, 1, 1, 8, 8]  # the prompt, one token each, then whole windows


@pytest.mark.parametrize("make", [tiny_gpt, tiny_qwen3])
def test_generate_with_the_cache_gives_the_uncached_tokens_past_the_context(make):
    model, prompt = make(), torch.tensor([[4, 8, 15, 16, 23], [42, 4, 8, 15, 16]])
    assert torch.equal(generate_text(model, prompt, 20),  # slides past the context of 8
                       generate_text(model, prompt, 20, use_cache=False))


def test_a_cached_model_starts_over_after_the_model_fails_halfway():
    model, fail = tiny_gpt(n_layers=2), []

    def fail_once(module, inputs, output):  # the second block fails, after the first cached
        if fail and fail.pop():
            raise RuntimeError("a failure halfway through the model")
    model.trf_blocks[1].register_forward_hook(fail_once)
    cached, text = KVCachedModel(model, max_tokens=8), torch.arange(6).unsqueeze(0)
    with torch.no_grad():
        cached(text[:, :3])
        fail.append(True)
        with pytest.raises(RuntimeError, match="halfway"):
            cached(text[:, :4])
        torch.testing.assert_close(cached(text[:, :5]), uncached_last_logits(model, text[:, :5]))


# generate: no check per token ------------------------------------------------------------------

def counted_checks(monkeypatch):
    """Counts of the calls to every check a decoding step could run: the model's input check
    (check_token_ids, with its aminmax over the ids), its other checks, the attention layers'
    and their masks', KVCache.update's, and KVCachedModel's comparison of the text with what it
    has seen."""
    from ch03_attention import attention, kv_cache
    from ch04_gpt_model import final_model

    counts = {}

    def counting(name, function):
        def counted(*args, **kwargs):
            counts[name] = counts.get(name, 0) + 1
            return function(*args, **kwargs)
        return counted
    for module, name in [(final_model, "check_token_ids"), (final_model, "check"),
                         (final_model, "check_fits_context"), (kv_cache, "check"),
                         (attention, "check"), (attention, "check_fits_context"),
                         (torch, "equal")]:
        key = f"{module.__name__.rsplit('.', 1)[-1]}.{name}"
        monkeypatch.setattr(module, name, counting(key, getattr(module, name)))
    return counts


@pytest.mark.parametrize("make", [tiny_gpt, tiny_qwen3, lambda: FastDecoder(tiny_gpt()),
                                  lambda: FastDecoder(tiny_qwen3())],
                         ids=["GPTModel", "ModernGPTModel", "FastDecoder", "FastDecoder-Qwen3"])
def test_generate_checks_the_prompt_and_caches_once_not_per_token(make, monkeypatch):
    model, prompt = make(), torch.tensor([[4, 8], [15, 16]])
    counts = counted_checks(monkeypatch)
    per_call = []
    for new_tokens in (2, 6):
        counts.clear()
        tokens = generate_text(model, prompt, new_tokens)
        assert tokens.shape == (2, 2 + new_tokens)
        per_call.append(dict(counts))
    assert per_call[0]["final_model.check_token_ids"] == 1  # the prompt's ids, once
    assert per_call[0] == per_call[1]  # three times as many tokens, not one check more
    # the counter sees every call's checks where no caller vouches for them
    counts.clear()
    with torch.no_grad():
        for _ in range(3):
            model(prompt)
    assert counts["final_model.check_token_ids"] == 3


def test_generate_still_refuses_a_prompt_outside_the_vocabulary():
    with pytest.raises(ValueError, match="token id 50 is outside the vocabulary"):
        generate_text(tiny_gpt(), torch.tensor([[1, 50]]), 3)


def test_generate_writes_its_text_into_one_buffer_and_returns_a_plain_tensor():
    model, prompt = tiny_gpt(), torch.tensor([[4, 8], [15, 16]])
    eos = int(generate_text(model, prompt, 1)[0, -1])  # row 0's first token ends it
    tokens = generate_text(model, prompt, 5, eos_id=eos)
    assert tokens.is_contiguous() and tokens.dtype == torch.long
    assert torch.equal(tokens, generate_text(model, prompt, 5, eos_id=eos, use_cache=False))
