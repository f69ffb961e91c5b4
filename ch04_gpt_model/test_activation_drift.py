"""Tests of activation_drift.py (beyond_1_drift.ipynb): the drift compounds without a norm only."""

import math

import pytest

from ch04_gpt_model.activation_drift import activation_scales


@pytest.mark.parametrize("gain", [0.8, 1.25])
def test_a_gain_compounds_without_normalisation_and_stays_one_factor_with_it(gain):
    depth = 12
    plain, scaled = activation_scales(1.0, False, depth), activation_scales(gain, False, depth)
    # the same matrices times gain, and a ReLU passes a positive factor through: gain ** layer
    for layer, (a, b) in enumerate(zip(plain, scaled), start=1):
        assert math.isclose(b / a, gain**layer, rel_tol=1e-4)
    normalised = activation_scales(1.0, True, depth), activation_scales(gain, True, depth)
    # a norm before every layer removes the earlier gains: only the last layer's remains
    assert math.isclose(normalised[1][-1] / normalised[0][-1], gain, rel_tol=1e-2)
