"""One architecture source: FastDecoder and GPT-2's file layout (ch05 gpt2_weights, fast_path)
describe chapter 4's GPTModel exactly, and refuse anything else rather than compute it wrongly."""

import pytest
import torch
from torch import nn

from ch04_gpt_model.gpt_model import GELU, FeedForward, GPTModel, LayerNorm, TransformerBlock
from ch05_pretraining.fast_path import FastDecoder
from ch05_pretraining.gpt2_weights import (
    gpt2_tensors,
    load_weights_into_gpt,
    save_gpt2_safetensors,
)


SMALL = {"vocab_size": 61, "context_length": 12, "emb_dim": 16, "n_heads": 2, "n_layers": 2,
         "drop_rate": 0.0, "qkv_bias": True}


class PostNormBlock(TransformerBlock):
    """A learner's change: LayerNorm after each sub-layer, not before (a different forward)."""

    def forward(self, x, kv_cache=None):
        x = self.norm1(x + self.att(x, kv_cache))
        return self.norm2(x + self.ff(x))


class PostNormGPT(GPTModel):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.trf_blocks = nn.Sequential(*[PostNormBlock(self.cfg) for _ in range(cfg["n_layers"])])


class ReLUGPT(GPTModel):
    """Another: every block's GELU swapped for a ReLU (same parameters, other function)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        for block in self.trf_blocks:
            block.ff.layers[1] = nn.ReLU()


class ScaledLogitsGPT(GPTModel):
    def forward(self, in_idx, kv_caches=None, last_only=False):
        return 2 * super().forward(in_idx, kv_caches, last_only)


class RMSNormGPT(GPTModel):
    """The final norm replaced by PyTorch's RMSNorm (a learner trying Llama's norm)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.final_norm = nn.RMSNorm(cfg["emb_dim"])


def model_of(cls=GPTModel, **overrides):
    torch.manual_seed(0)
    return cls({**SMALL, **overrides}).eval()


def save(model, tmp_path):
    return save_gpt2_safetensors(model, tmp_path)


def load(model, tmp_path):
    return load_weights_into_gpt(model, gpt2_tensors(model_of()))


USERS = {"FastDecoder": lambda model, tmp_path: FastDecoder(model),
         "the GPT-2 layout (saving)": save, "the GPT-2 layout (loading)": load}


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("cls, error, message", [
    (PostNormGPT, TypeError,
     r"trf_blocks.0: a PostNormBlock where GPTModel has a TransformerBlock"),
    (ReLUGPT, TypeError, r"trf_blocks.0.ff.layers.1: a ReLU where GPTModel has a GELU"),
    (ScaledLogitsGPT, TypeError, r"ScaledLogitsGPT: it overrides GPTModel's forward"),
    (RMSNormGPT, TypeError, r"final_norm: a RMSNorm where GPTModel has a LayerNorm"),
])
def test_a_changed_architecture_is_refused(user, cls, error, message, tmp_path):
    model = model_of(cls)
    with torch.no_grad():  # the changed model does compute something else
        assert not torch.allclose(model(torch.tensor([[1, 2, 3]])),
                                  model_of()(torch.tensor([[1, 2, 3]])))
    with pytest.raises(error, match=message):
        USERS[user](model, tmp_path)
    assert not (tmp_path / "model.safetensors").exists()  # nothing half-written


@pytest.mark.parametrize("user", USERS)
def test_an_unknown_config_key_is_refused(user, tmp_path):
    class RopeGPT(GPTModel):  # a subclass that reads one more key ...
        OPTIONAL_CONFIG_KEYS = {**GPTModel.OPTIONAL_CONFIG_KEYS, "rope": False}

    model = model_of(RopeGPT, rope=True)  # ... that the fast path and the layout do not know
    with pytest.raises(ValueError,
                       match=r"does not support the configuration key\(s\) \['rope'\]"):
        USERS[user](model, tmp_path)


@pytest.mark.parametrize("user", USERS)
def test_an_unmerged_adapter_and_a_classification_head_are_refused(user, tmp_path):
    from ch06_classification.classification import replace_linear_with_lora

    adapted = model_of()
    replace_linear_with_lora(adapted.trf_blocks, rank=2, alpha=4)
    with pytest.raises(TypeError, match=r"a LinearWithLoRA where GPTModel has a Linear \(an "
                                        r"adapter\? merge adapters into the weights first\)"):
        USERS[user](adapted, tmp_path)
    classifier = model_of()
    classifier.out_head = nn.Linear(SMALL["emb_dim"], 2)
    with pytest.raises(ValueError, match=r"out_head.weight of shape \(2, 16\), GPTModel\(model"
                                         r".cfg\) has \(61, 16\); out_head.bias, a parameter"):
        USERS[user](classifier, tmp_path)


def test_a_subclass_that_changes_nothing_the_layout_describes_is_accepted(tmp_path):
    class Named(GPTModel):
        def describe(self):  # a new method: forward and every module unchanged
            return "mine"

    model, ids = model_of(Named, tie_weights=True), torch.tensor([[5, 9, 2, 7]])
    with torch.no_grad():
        torch.testing.assert_close(FastDecoder(model)(ids), model(ids))
    save_gpt2_safetensors(model, tmp_path)


@pytest.mark.parametrize("overrides", [{}, {"qkv_bias": False}, {"tie_weights": True},
                                       {"sdpa": True}])
def test_the_supported_model_still_gives_gptmodels_logits(overrides):
    model, ids = model_of(**overrides), torch.randint(0, SMALL["vocab_size"], (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(FastDecoder(model)(ids), model(ids))
        torch.testing.assert_close(FastDecoder(model, torch.bfloat16)(ids), model(ids),
                                   rtol=0.05, atol=0.05)


def test_the_decoder_copies_the_config():
    model = model_of()
    decoder = FastDecoder(model)
    assert decoder.cfg == model.cfg and decoder.cfg is not model.cfg
    model.cfg["context_length"] = 99
    assert decoder.cfg["context_length"] == SMALL["context_length"]


def test_the_check_reads_only_shapes_no_random_numbers():
    model = model_of()
    state = torch.get_rng_state()
    FastDecoder(model)
    gpt2_tensors(model)
    assert torch.equal(torch.get_rng_state(), state)


def test_the_modules_the_check_knows_are_chapter_4s():
    model = model_of()
    assert type(model.trf_blocks[0].ff) is FeedForward
    assert type(model.trf_blocks[0].ff.layers[1]) is GELU
    assert type(model.final_norm) is LayerNorm


@pytest.mark.parametrize("user", USERS)
def test_a_missing_parameter_is_refused(user, tmp_path):
    model = model_of()
    model.trf_blocks[1].att.out_proj = nn.Linear(16, 16, bias=False)  # same type, no bias
    with pytest.raises(ValueError, match=r"a model without trf_blocks.1.att.out_proj.bias"):
        USERS[user](model, tmp_path)
