"""One layout check (shared/architecture.py, check_architecture) for everything that writes a
model's weights in a fixed layout: GPT-2's file layout describes chapter 4's GPTModel exactly,
save_open_model 4.8's ModernGPTModel, and each refuses a model of another layout (another
class, module, parameter shape or configuration key) rather than save it wrongly. One attack set
runs against all of them; what a layout cannot hold (a hook, a method set on one module) is the
learner's own and is not saved.
And what keeps a saved state from loading (model_state_problems, optimizer_state_problems,
generator_problems; load_checkpoint's refusals are tested in test_checkpoints.py)."""

import pytest
import torch
from torch import nn

from ch04_gpt_model.final_model import GPTModel
from ch04_gpt_model.gpt_model import GELU, FeedForward, LayerNorm, TransformerBlock
from ch04_gpt_model.modern import ModernGPTModel
from ch05_pretraining.gpt2_weights import (
    gpt2_tensors,
    load_gpt2_weights,
    save_gpt2_safetensors,
)
from ch05_pretraining.open_weights import save_open_model
from ch06_classification.classification import add_classification_head
from ch06_classification.lora import replace_linear_with_lora
from conftest import tiny_gpt, tiny_qwen3
from shared.architecture import (
    generator_problems,
    model_state_problems,
    optimizer_state_problems,
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
    return load_gpt2_weights(model, gpt2_tensors(model_of()))


USERS = {"the GPT-2 layout (saving)": save, "the GPT-2 layout (loading)": load}


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("cls, error, message", [
    (PostNormGPT, TypeError,
     r"trf_blocks.0: a PostNormBlock where GPTModel has a TransformerBlock"),
    (ReLUGPT, TypeError, r"trf_blocks.0.ff.layers.1: a ReLU where GPTModel has a GELU"),
    (ScaledLogitsGPT, TypeError, r"ScaledLogitsGPT, a subclass of GPTModel"),
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

    model = model_of(RopeGPT, rope=True)  # ... that the layout does not know
    with pytest.raises(ValueError, match=r"does not support the configuration rope=True; it "
                                         r"knows vocab_size, context_length"):
        USERS[user](model, tmp_path)


def test_the_check_reads_only_shapes_no_random_numbers():
    model = model_of()
    state = torch.get_rng_state()
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


# The attack set, against both families and everything that writes them ---------------------

def modern_of(cls=ModernGPTModel, **change):
    model = tiny_qwen3(n_layers=2, context_length=12)
    if cls is not ModernGPTModel:
        model.__class__ = cls  # the same weights, the subclass's methods
    with torch.no_grad():  # norms away from 1, so that a swapped norm computes something else
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.uniform_(0.5, 1.5)
    model.cfg = {**model.cfg, **change}
    return model


def gpt_of(cls=GPTModel, **change):
    model = model_of(cls)
    model.cfg = {**model.cfg, **change}
    return model


FAMILIES = {  # family: (a small model of it, a norm of the other family, its users)
    GPTModel: (gpt_of, lambda width: nn.RMSNorm(width), {"the GPT-2 layout (saving)": save}),
    ModernGPTModel: (modern_of, lambda width: nn.LayerNorm(width), {
        "save_open_model": lambda model, tmp_path: save_open_model(model, tmp_path / "out")}),
}
CASES = [(family, user) for family, (_, _, users) in FAMILIES.items() for user in users]


def subclass(family, method):
    """A learner's subclass whose `method` doubles what the family's computes."""
    def doubled(self, *args, **kwargs):
        return 2 * getattr(family, method)(self, *args, **kwargs)
    return type(f"Doubled{method.title().replace('_', '')}", (family,), {method: doubled})


def lora(model):
    replace_linear_with_lora(model.trf_blocks, rank=2, alpha=4)
    with torch.no_grad():  # B starts at zero; a trained adapter has moved it
        for name, parameter in model.named_parameters():
            if name.endswith(".B"):
                parameter.normal_()
    return model


def swapped_norm(model, other_norm):
    model.trf_blocks[0].norm1 = other_norm(model.cfg["emb_dim"])
    return model


ATTACKS = {  # attack: (make the model, error, what the message must say)
    "forward overridden": (lambda family, build, norm: build(subclass(family, "forward")),
                           TypeError, r"DoubledForward, a subclass of \w+"),
    "hidden_states overridden": (
        lambda family, build, norm: build(subclass(family, "hidden_states")),
        TypeError, r"DoubledHiddenStates, a subclass of \w+"),
    "classification head": (lambda family, build, norm: add_classification_head(build(), 2),
                            ValueError, r"configuration num_classes=2|classification head "
                                       r"\(2 outputs, the vocabulary has \d+\)"),
    "unmerged adapters": (lambda family, build, norm: lora(build()), TypeError,
                          r"a LinearWithLoRA where \w+ has a Linear.* \(adapters\? merge them "
                          r"into the weights first: merge_lora, chapter 6\)"),
    "swapped norm": (lambda family, build, norm: swapped_norm(build(), norm), TypeError,
                     r"trf_blocks.0.norm1: a (RMSNorm|LayerNorm) where \w+ has a \w+"),
    "unknown config key": (lambda family, build, norm: build(logit_softcap=30.0), ValueError,
                           r"does not support the configuration logit_softcap=30.0; it knows"),
}


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("family, user", CASES, ids=[user for _, user in CASES])
def test_every_user_refuses_the_attack_set(family, user, attack, tmp_path):
    build, other_norm, users = FAMILIES[family]
    make, error, message = ATTACKS[attack]
    model, ids = make(family, build, other_norm), torch.tensor([[1, 2, 3, 4]])
    if attack != "unknown config key":  # a key nothing reads changes nothing; the rest compute
        with torch.no_grad():  # something else than the family's model with the same weights
            plain = build()
            changed = model(ids)
            assert changed.shape != plain(ids).shape or not torch.allclose(changed, plain(ids))
    with pytest.raises(error, match=message):
        users[user](model, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written, not even half


@pytest.mark.parametrize("family, user", CASES, ids=[user for _, user in CASES])
def test_a_subclass_is_refused_even_one_that_changes_nothing(family, user, tmp_path):
    build, _, users = FAMILIES[family]
    named = type("Named", (family,), {"describe": lambda self: "mine"})  # a new method only
    with pytest.raises(TypeError, match=r"Named, a subclass of \w+"):
        users[user](build(named), tmp_path)
    assert not any(tmp_path.iterdir())


def hook_on_a_block(model):
    return model.trf_blocks[0].register_forward_hook(lambda module, inputs, output: 2 * output)


def forward_on_a_block(model):
    model.trf_blocks[0].forward = lambda x, *args, **kwargs: 2 * x  # the block skipped


def hook_for_every_module(model):
    return nn.modules.module.register_module_forward_hook(
        lambda module, inputs, output: 2 * output if torch.is_tensor(output) else output)


@pytest.mark.parametrize("change", [hook_on_a_block, forward_on_a_block, hook_for_every_module])
@pytest.mark.parametrize("family, user", CASES, ids=[user for _, user in CASES])
def test_what_the_layout_cannot_hold_is_not_saved(family, user, change, tmp_path):
    """A hook or a method set on one module changes what the model computes, not its layout:
    the weights are written, and the learner's change stays with the learner's model."""
    build, _, users = FAMILIES[family]
    model, ids = build(), torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        plain = model(ids)
    handle = change(model)
    try:
        with torch.no_grad():
            assert not torch.allclose(model(ids), plain)  # the model computes something else
        users[user](model, tmp_path)
    finally:
        if handle is not None:
            handle.remove()
    assert any(tmp_path.rglob("*.safetensors"))


@pytest.mark.parametrize("family, user", CASES, ids=[user for _, user in CASES])
def test_a_head_untied_by_hand_from_a_tied_configuration_is_refused(family, user, tmp_path):
    model = model_of(tie_weights=True) if family is GPTModel else modern_of()
    assert model.cfg["tie_weights"] and model.out_head.weight is model.tok_emb.weight
    with torch.no_grad():  # the learner's own head, while cfg still says tied
        model.out_head.weight = nn.Parameter(model.out_head.weight + 1.0)
    with pytest.raises(ValueError, match=r"weights tied otherwise than in \w+\(model.cfg\): "
                                         r"none in the model, \[\('tok_emb.weight', "
                                         r"'out_head.weight'\)\] there"):
        FAMILIES[family][2][user](model, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("user", USERS)
def test_a_module_the_family_does_not_have_is_refused(user, tmp_path):
    model = model_of()
    model.trf_blocks[0].ff.layers.append(nn.ReLU())  # no parameters, another function
    with torch.no_grad():
        assert not torch.allclose(model(torch.tensor([[1, 2, 3]])),
                                  model_of()(torch.tensor([[1, 2, 3]])))
    with pytest.raises(TypeError, match=r"modules GPTModel\(model.cfg\) does not have: "
                                        r"trf_blocks.0.ff.layers.3"):
        USERS[user](model, tmp_path)


# A saved state against what it loads into ---------------------------------------------------

def test_model_state_problems_names_each_weight_that_does_not_fit_and_counts_the_rest():
    model = tiny_gpt()
    assert model_state_problems(tiny_gpt(1).state_dict(), model) == []
    assert model_state_problems([1, 2], model) == [
        "holds a list as its model state, not a state_dict"]
    wider = tiny_gpt(emb_dim=8).state_dict()
    [problem] = model_state_problems({**wider, "extra": torch.zeros(1)}, model)
    assert problem.startswith("does not fit this model (tok_emb.weight: (50, 8) in the "
                              "checkpoint, (50, 16) in this model; ")
    assert problem.endswith(" more)")  # four named, then how many more
    del wider["tok_emb.weight"]
    assert "tok_emb.weight: missing in the checkpoint" in model_state_problems(wider, model)[0]


def test_model_state_problems_refuses_weights_tied_otherwise():
    tied, untied = tiny_gpt(tie_weights=True), tiny_gpt(tie_weights=False)
    assert "tie_weights=True" in model_state_problems(tied.state_dict(), untied)[0]
    assert "tie_weights=False" in model_state_problems(untied.state_dict(), tied)[0]


def test_optimizer_state_problems_names_the_groups_options_and_shapes_that_differ():
    model = tiny_gpt()
    adam = torch.optim.AdamW(model.parameters())
    model(torch.tensor([[1, 2]])).sum().backward()
    adam.step()
    saved = adam.state_dict()
    assert optimizer_state_problems(saved, torch.optim.AdamW(model.parameters())) == []
    assert "pass optimizer=None" in optimizer_state_problems(None, adam)[0]
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    assert "that SGD lacks" in optimizer_state_problems(saved, sgd)[0]
    two_groups = torch.optim.AdamW([{"params": [model.tok_emb.weight]},
                                    {"params": list(model.parameters())[1:]}])
    assert "parameter groups of" in optimizer_state_problems(saved, two_groups)[0]
    saved["state"][0]["exp_avg"] = torch.zeros(3)
    assert optimizer_state_problems(saved, adam) == [
        "optimizer exp_avg of parameter 0 has shape (3,), the parameter (50, 16)"]


def test_generator_problems_refuses_a_state_this_machine_cannot_take(pretend_gpus):
    pretend_gpus(1)
    good = {"torch_rng": torch.get_rng_state()}
    assert generator_problems(good) == []
    assert generator_problems({**good, "cuda_rng": {5: torch.zeros(3)}}) == []  # a GPU it lacks
    for bad, problem in [({}, "no valid random-number state"),
                         ({**good, "cuda_rng": {0: torch.zeros(7, dtype=torch.uint8)}}, "CUDA"),
                         ({**good, "mps_rng": torch.zeros(2)}, "MPS")]:
        assert problem in generator_problems(bad)[0]
