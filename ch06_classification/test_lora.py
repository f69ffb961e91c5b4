"""Tests of chapter 6's LoRA (beyond_3_lora.ipynb, lora.py): the low-rank layers, what trains,
merging, devices, and bad arguments refused with the model left as it was."""

import pytest
import torch
from torch import nn

from ch06_classification.classification import (
    add_classification_head,
    calc_loss_batch,
    train_classifier_simple,
)
from ch06_classification.lora import LinearWithLoRA, LoRALayer, merge_lora, replace_linear_with_lora
from ch06_classification.test_bad_inputs import (
    classifier,
    flags,
    lora_classifier,
    module_types,
    parameters,
)
from ch06_classification.test_classification import TINY, separable_loaders, tiny_classifier
from conftest import tiny_qwen3
from shared import GPTModel


def test_lora_layer_shapes_and_scaling():
    lora = LoRALayer(8, 4, rank=2, alpha=6)
    assert lora.A.shape == (8, 2) and lora.B.shape == (2, 4)
    nn.init.normal_(lora.B)
    x = torch.randn(3, 8)
    assert torch.allclose(lora(x), 3.0 * (x @ lora.A @ lora.B))


def test_lora_with_b_zero_leaves_the_model_unchanged():
    model = tiny_classifier()
    ids = torch.randint(0, 60, (2, 10))
    before = model(ids)
    replace_linear_with_lora(model, rank=4, alpha=8)
    assert torch.equal(model(ids), before)
    wrapped = [m for m in model.modules() if isinstance(m, LinearWithLoRA)]
    assert len(wrapped) == 2 * 6 + 1  # q, k, v, out_proj and two feed-forward layers; head


def test_only_lora_parameters_train():
    model = tiny_classifier()
    for param in model.parameters():
        param.requires_grad = False
    replace_linear_with_lora(model, rank=2, alpha=2)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.endswith((".lora.A", ".lora.B")) for name in trainable)

    frozen = {name: p.clone() for name, p in model.named_parameters() if not p.requires_grad}
    train_loader, val_loader = separable_loaders()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    train_classifier_simple(model, train_loader, val_loader, optimizer, "cpu", 2,
                            eval_freq=100, eval_iter=1)
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name
    assert any(p.abs().sum() > 0 for name, p in model.named_parameters()
               if name.endswith(".lora.B"))


def test_merge_lora_leaves_plain_linear_layers_with_the_same_outputs():
    model = replace_linear_with_lora(tiny_classifier().eval(), rank=2, alpha=6)
    for name, param in model.named_parameters():
        if name.endswith(".lora.B"):
            nn.init.normal_(param, std=0.1)  # B = 0 would merge nothing
    ids = torch.randint(0, 60, (2, 10))
    before = model(ids)
    rng = torch.get_rng_state()
    assert merge_lora(model) is model
    assert torch.equal(torch.get_rng_state(), rng)  # no draws
    assert torch.allclose(model(ids), before, atol=1e-5, rtol=0)
    assert not any(isinstance(m, (LinearWithLoRA, LoRALayer)) for m in model.modules())
    assert set(model.state_dict()) == set(tiny_classifier().state_dict())  # a plain classifier's
    assert merge_lora(model) is model  # nothing left to merge: unchanged
    assert torch.allclose(model(ids), before, atol=1e-5, rtol=0)


def test_merge_lora_keeps_the_dtype_and_device():
    model = replace_linear_with_lora(tiny_classifier().eval(), rank=2, alpha=4).double()
    nn.init.normal_(model.out_head.lora.B)
    ids = torch.randint(0, 60, (1, 6))
    before = model(ids)
    merge_lora(model)
    assert type(model.out_head) is nn.Linear and model.out_head.weight.dtype == torch.float64
    assert torch.allclose(model(ids), before, atol=1e-12, rtol=0)
    meta = replace_linear_with_lora(add_classification_head(GPTModel(TINY).to("meta")), 2, 4)
    merge_lora(meta)
    assert {p.device.type for p in meta.parameters()} == {"meta"}


def test_a_new_head_and_lora_layers_go_on_the_models_device_with_the_same_draws():
    rng_states = {}
    for device in ("cpu", "meta"):
        model = GPTModel(TINY).to(device)
        torch.manual_seed(0)
        replace_linear_with_lora(add_classification_head(model), rank=2, alpha=4)
        assert {param.device.type for param in model.parameters()} == {device}
        rng_states[device] = torch.get_rng_state()
    # drawn on the CPU wherever the model is: the same values, and the same draws after them
    assert torch.equal(rng_states["cpu"], rng_states["meta"])


def test_a_training_step_of_a_lora_classifier_stays_on_the_models_device():
    model = replace_linear_with_lora(add_classification_head(GPTModel(TINY).to("meta")), 2, 4)
    inputs, targets = torch.randint(0, 60, (2, 10)), torch.tensor([0, 1])  # on the CPU
    loss = calc_loss_batch(inputs, targets, model, "meta")
    loss.backward()
    assert loss.device.type == "meta"
    assert all(p.grad.device.type == "meta" for name, p in model.named_parameters()
               if name.endswith((".lora.A", ".lora.B")))


def test_merge_lora_unties_a_head_tied_to_the_embedding():
    model = tiny_qwen3()  # its head is its token embedding, as Qwen3-0.6B's
    assert model.out_head.weight is model.tok_emb.weight
    replace_linear_with_lora(model, rank=2, alpha=4)
    torch.manual_seed(1)
    for module in model.modules():  # B starts at zero: any merge would pass without this
        if isinstance(module, LoRALayer):
            module.B.data.normal_(std=0.1)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        expected = model(ids)
    embedding = model.tok_emb.weight.detach().clone()
    merge_lora(model)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), expected, atol=1e-5, rtol=0)
    assert torch.equal(model.tok_emb.weight, embedding)  # the head's update is the head's alone
    assert model.out_head.weight is not model.tok_emb.weight
    assert model.cfg["tie_weights"] is False  # so a saver writes the head of its own


# Bad arguments ----------------------------------------------------------------------------------

# alpha = 0 scales every update to 0, so nothing would train; a bad rank is left to PyTorch's
# errors (a negative size) and Python's (a division by zero)
LORA_BAD = [
    (4, 0, ValueError, "alpha must be positive and finite, got 0"),
    (4, -8, ValueError, "alpha"),
    (4, float("nan"), ValueError, "alpha"),
    (4, float("inf"), ValueError, "alpha"),
]


@pytest.mark.parametrize("rank, alpha, error, message", LORA_BAD)
def test_lora_layer_refuses_bad_rank_and_alpha(rank, alpha, error, message):
    with pytest.raises(error, match=message):
        LoRALayer(8, 8, rank, alpha)
    with pytest.raises(error, match=message):
        LinearWithLoRA(nn.Linear(8, 8), rank, alpha)


@pytest.mark.parametrize("rank, alpha, error, message", LORA_BAD)
def test_replace_linear_with_lora_changes_nothing_on_bad_arguments(rank, alpha, error, message):
    model = classifier()
    modules = dict(model.named_modules())
    with pytest.raises(error, match=message):
        replace_linear_with_lora(model, rank, alpha)
    assert dict(model.named_modules()) == modules
    assert not any(isinstance(m, LinearWithLoRA) for m in model.modules())


def test_replace_linear_with_lora_refuses_a_model_that_has_lora_layers():
    model = lora_classifier()
    types, before = module_types(model), flags(model)
    with pytest.raises(ValueError, match="model already has LoRA layers: "
                                         "replace_linear_with_lora wraps each linear layer once"):
        replace_linear_with_lora(model, rank=2, alpha=4)
    assert module_types(model) == types and flags(model) == before
    assert not any(isinstance(m.linear, LinearWithLoRA) for m in model.modules()
                   if isinstance(m, LinearWithLoRA))  # no LoRA layer inside another


def test_a_failure_midway_through_lora_leaves_the_model_as_it_was(monkeypatch):
    from ch06_classification import lora

    model = classifier()
    types, before = module_types(model), parameters(model)
    built = []

    class OutOfMemoryOnTheFifth(LoRALayer):
        def __init__(self, *args):
            built.append(1)
            if len(built) == 5:
                raise torch.OutOfMemoryError("out of memory (as a large layer may be)")
            super().__init__(*args)

    monkeypatch.setattr(lora, "LoRALayer", OutOfMemoryOnTheFifth)
    with pytest.raises(torch.OutOfMemoryError):
        replace_linear_with_lora(model, rank=2, alpha=4)
    assert module_types(model) == types
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())


def test_lora_wraps_the_layers_in_the_books_order_with_the_books_draws():
    from llms_from_scratch.appendix_e import replace_linear_with_lora as books

    ours, theirs = classifier(), classifier()
    torch.manual_seed(1)
    replace_linear_with_lora(ours, rank=2, alpha=4)
    torch.manual_seed(1)
    books(theirs, rank=2, alpha=4)
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state)
    assert all(torch.equal(ours_state[name], theirs_state[name]) for name in ours_state)
