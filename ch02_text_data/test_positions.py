"""Tests of positions.py (beyond_2_positions.ipynb): the Transformer's sinusoidal position code."""

import math

import pytest
import torch

from ch02_text_data.positions import sinusoidal_positions


def test_sinusoidal_positions_follow_the_formula():
    code = sinusoidal_positions(5, 8)
    assert code.shape == (5, 8)
    assert torch.equal(code[0], torch.tensor([0.0, 1.0] * 4))  # sin 0 and cos 0
    for p in range(5):
        for i in range(4):
            angle = p / 10000 ** (2 * i / 8)
            assert code[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert code[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_every_position_vector_has_length_sqrt_of_half_the_dimension():
    # each sine-cosine pair contributes sin^2 + cos^2 = 1
    norms = sinusoidal_positions(32, 64).norm(dim=1)
    assert torch.allclose(norms, torch.full((32,), math.sqrt(32)), atol=1e-5)
