"""Tests of the small shared helpers: seeding, device choice, plotting."""

import random

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
