"""decoding.py's generate: what it does with a prompt longer than the context, and a model that
has no weights to run."""

import warnings

import pytest
import torch

from conftest import TINY_GPT, tiny_gpt, tiny_qwen3
from shared import FastDecoder, GPTModel, generate


LONG_PROMPT = torch.arange(TINY_GPT["context_length"] + 3).unsqueeze(0)  # 3 tokens too many


# generate: a prompt longer than the context ----------------------------------------------------

def test_a_cropped_prompt_is_said_and_the_tokens_are_those_of_its_end():
    model = tiny_gpt()
    with pytest.warns(UserWarning, match=r"the prompt has 11 tokens, more than context_size=8: "
                                         r"generate reads only its last 8 \(its first 3 are"):
        tokens = generate(model, LONG_PROMPT, 4)
    end = LONG_PROMPT[:, -TINY_GPT["context_length"]:]
    assert torch.equal(tokens[:, -4:], generate(model, end, 4)[:, -4:])


@pytest.mark.parametrize("use_cache", [True, False])
def test_a_prompt_that_fits_is_not_warned_about_even_when_the_text_outgrows_the_context(
        use_cache):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        generate(tiny_gpt(), LONG_PROMPT[:, :8], 5, use_cache=use_cache)


@pytest.mark.parametrize("make", [tiny_qwen3, lambda: FastDecoder(tiny_qwen3())],
                         ids=["ModernGPTModel", "FastDecoder"])
def test_an_open_models_prompt_is_not_cropped(make):
    with pytest.raises(ValueError, match=r"the prompt has 11 tokens, more than context_size=8.*"
                                         r"<bos>.*shorten the prompt"):
        generate(make(), LONG_PROMPT, 4)


def test_the_fast_decoder_of_gpt2_crops_with_the_same_warning():
    with pytest.warns(UserWarning, match="generate reads only its last 8"):
        generate(FastDecoder(tiny_gpt()), LONG_PROMPT, 2)


# generate: a model on the meta device ----------------------------------------------------------

def test_a_model_on_the_meta_device_is_refused_by_name():
    with torch.device("meta"):
        model = GPTModel(TINY_GPT)
    with pytest.raises(ValueError, match=r"model is on the meta device .*build it on a real "
                                         r"device"):
        generate(model, LONG_PROMPT[:, :4], 2)
