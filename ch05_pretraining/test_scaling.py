"""Section 5.13's scaling law (scaling.py) and its sweep (scaling_sweep.py): the fits recover a
law they are given, the optimum is the law's minimum, and a run spends the budget it is given."""

import json
import math
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader

from ch05_pretraining.scaling import (
    LADDER,
    compute_optimal,
    fit_loss_law,
    fit_power_law,
    isoflop_minimum,
    ladder_config,
    law_loss,
    train_on_budget,
)
from shared import GPTDatasetV1, ModernGPTModel, count_parameters
from shared.data import PROJECT_ROOT


KNOWN = {"E": 1.3, "A": 12.0, "alpha": 0.32, "B": 400.0, "beta": 0.5}


def test_the_law_fit_recovers_a_known_law():
    runs = [(n, d) for n in (5e3, 1e4, 2e4, 4e4, 8e4, 1.6e5) for d in (2e5, 6e5, 2e6, 6e6)]
    losses = [law_loss(KNOWN, n, d) for n, d in runs]
    law = fit_loss_law([n for n, _ in runs], [d for _, d in runs], losses)
    for key, value in KNOWN.items():
        assert law[key] == pytest.approx(value, rel=0.02), key
    assert all(law_loss(law, n, d) == pytest.approx(loss, rel=1e-4)
               for (n, d), loss in zip(runs, losses))


def test_compute_optimal_is_the_laws_lowest_point_along_the_budget():
    flops = 3e12
    params, tokens = compute_optimal(KNOWN, flops)
    assert 6 * params * tokens == pytest.approx(flops)
    grid = [params * math.exp(step / 1000) for step in range(-500, 501)]
    best = min(grid, key=lambda n: law_loss(KNOWN, n, flops / (6 * n)))
    assert best == pytest.approx(params, rel=2e-3)


def test_isoflop_minimum_finds_a_parabolas_vertex_and_refuses_one_it_cannot_see():
    params = [1e3, 3e3, 1e4, 3e4, 1e5]
    losses = [2.0 + 0.1 * (math.log(n) - math.log(8e3)) ** 2 for n in params]
    best, loss = isoflop_minimum(params, losses)
    assert best == pytest.approx(8e3, rel=1e-6) and loss == pytest.approx(2.0)
    with pytest.raises(ValueError, match="do not curve upwards"):
        isoflop_minimum(params, [2.0 - 0.1 * (math.log(n) - math.log(8e3)) ** 2 for n in params])
    with pytest.raises(ValueError, match="outside the sizes measured"):
        isoflop_minimum(params, [2.0 + 0.1 * (math.log(n) - math.log(1e6)) ** 2 for n in params])
    # a line: its fitted curvature is a rounding error of either sign, never a lowest point
    for slope in (0.1, -0.1, 0.037, -0.2):
        with pytest.raises(ValueError, match="lowest point"):
            isoflop_minimum(params, [3.0 + slope * math.log(n) for n in params])


def test_fit_power_law_recovers_its_exponent():
    k, a = fit_power_law([1e10, 1e11, 1e12], [3.0 * c**0.6 for c in (1e10, 1e11, 1e12)])
    assert k == pytest.approx(3.0) and a == pytest.approx(0.6)


def test_the_ladder_grows_and_never_shrinks_a_dimension():
    sizes = []
    for (layers, width), (next_layers, next_width) in zip(LADDER, LADDER[1:]):
        assert next_layers >= layers and next_width >= width
    for rung in LADDER:
        with torch.device("meta"):
            sizes.append(count_parameters(ModernGPTModel(ladder_config(*rung, 65, 64))))
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


class Characters:
    def encode(self, text, allowed_special=()):
        return [ord(c) % 32 for c in text]


def test_a_run_spends_the_steps_its_budget_buys():
    text = "the quick brown fox jumps over the lazy dog. " * 40
    windows = GPTDatasetV1(text, Characters(), 8, 8)
    val = DataLoader(GPTDatasetV1(text[:200], Characters(), 8, 8), batch_size=4)
    cfg = ladder_config(1, 16, 32, 8)
    with torch.device("meta"):
        params = count_parameters(ModernGPTModel(cfg))
    flops = 6 * params * 4 * 8 * 30  # thirty steps of 4 windows of 8 tokens: beyond one pass
    run = train_on_budget(cfg, windows, val, flops, batch_size=4)
    assert run["params"] == params and run["tokens"] == 30 * 4 * 8
    assert run["flops"] == flops and math.isfinite(run["val_loss"])
    with pytest.raises(ValueError, match="buy no step"):
        train_on_budget(cfg, windows, val, flops / 1000, batch_size=4)


def test_the_sweep_script_runs_and_writes_every_run_and_its_prediction(tmp_path):
    out = tmp_path / "sweep.json"
    subprocess.run([sys.executable, "ch05_pretraining/scaling_sweep.py", "--quick",
                    "--workers", "1", "--out", str(out)], cwd=PROJECT_ROOT, check=True,
                   capture_output=True, text=True)
    result = json.loads(out.read_text())
    assert len(result["runs"]) == 6 and set(result["law"]) == set(KNOWN)
    held = result["held_back"]
    assert held["runs"] and all(run["run"]["budget"] == held["budget"] for run in held["runs"])
    for run in held["runs"]:  # each prediction is the law's loss for the run as it was trained
        assert run["predicted_loss"] == pytest.approx(law_loss(
            result["law"], run["run"]["params"], run["run"]["tokens"]))
