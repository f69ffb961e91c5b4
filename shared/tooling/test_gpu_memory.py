"""shared/tooling/gpu_memory.py counts what a training step holds (README.md, "Which profile fits a
free T4"): checked on a small GPT, where the counts can be worked out by hand."""

import torch

from shared import GPTModel, gpt2_config
from shared.tooling.gpu_memory import GB, training_step_peak


SMALL = gpt2_config(context_length=64, emb_dim=128, n_heads=4, n_layers=2)


def gib(count: int) -> float:
    return 4 * count / GB  # float32


def test_a_full_training_step_holds_weights_gradients_and_adamws_state():
    with torch.device("meta"):
        parameters = sum(p.numel() for p in GPTModel(SMALL).parameters())
    peak = training_step_peak(SMALL, batch=2, tokens=64)
    assert abs(peak["param"] - gib(parameters)) < 1e-6
    assert abs(peak["grad"] - gib(parameters)) < 1e-6  # the peak is in AdamW's update
    # two averages, and the multi-tensor update's temporaries: at least one more copy
    assert gib(3 * parameters) - 1e-6 <= peak["opt"] <= gib(4 * parameters)
    assert abs(peak["total"] - sum(v for k, v in peak.items() if k != "total")) < 1e-6


def test_frozen_layers_keep_no_averages():
    full = training_step_peak(SMALL, batch=8, tokens=64, num_classes=2)
    last = training_step_peak(SMALL, batch=8, tokens=64, num_classes=2, last_block_only=True)
    assert abs(last["param"] - full["param"]) < 1e-6  # the same model
    with torch.device("meta"):
        model = GPTModel(SMALL)
        trained = sum(p.numel() for m in (model.trf_blocks[-1], model.final_norm)
                      for p in m.parameters()) + 128 * 2 + 2  # the two-class head
    assert last["opt"] <= gib(4 * trained) + 1e-6 < full["opt"]
    assert last["total"] < full["total"]
