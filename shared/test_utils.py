"""Tests of the small shared helpers: seeding, device choice, plotting."""

import random
import subprocess
import sys

import matplotlib
import numpy as np
import torch

from shared import get_device, heatmap, set_seed


matplotlib.use("Agg")


def draw_all():
    return random.random(), np.random.rand(), torch.rand(1).item()


def test_set_seed_reproduces_python_numpy_and_torch():
    set_seed(7)
    first = draw_all()
    set_seed(7)
    assert draw_all() == first
    set_seed(8)
    assert draw_all() != first


def test_get_device_prefers_what_is_asked_and_falls_back_to_an_available_device():
    assert get_device("cpu") == torch.device("cpu")
    device = get_device()
    assert torch.zeros(1, device=device).device.type == device.type


def test_heatmap_labels_and_values():
    ax = heatmap(torch.tensor([[0.0, 1.0], [2.0, 3.0]]), ["a", "b"], ["x", "y"], title="t",
                 annotate=True)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y"]
    assert ax.get_title() == "t"
    np.testing.assert_array_equal(ax.images[0].get_array(), [[0, 1], [2, 3]])
    assert [t.get_text() for t in ax.texts] == ["0.00", "1.00", "2.00", "3.00"]


PAGE_FAULTS_OF_REALLOCATION = """
import resource, sys, torch
from shared import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = []
for _ in range(6):  # allocate, touch and free 64 MiB, as a training step does with activations
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(16 * 2**20)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults[1:]))
"""


def test_keep_freed_memory_stops_page_faults_on_reallocation():
    def fewest_faults(mode):  # a fresh process each: the setting is process-wide
        command = [sys.executable, "-c", PAGE_FAULTS_OF_REALLOCATION, mode]
        return int(subprocess.run(command, capture_output=True, text=True,
                                  check=True).stdout)

    assert fewest_faults("default") > 10_000  # 64 MiB of fresh 4 KiB pages every time
    assert fewest_faults("keep") < 100  # the same pages, reused
