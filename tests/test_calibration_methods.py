"""Calibration range methods (min/max, percentile, MSE) and per-tensor weight scales."""

import numpy as np
import pytest

import hwgen
from hwgen.errors import HwgenError
from hwgen.quantize import tensor_range


def _graph():
    rng = np.random.default_rng(0)
    g = hwgen.Graph("mlp")
    x = g.input((8,))
    g.dense(x, rng.standard_normal((4, 8)) * np.array([[1], [1], [1], [0.01]]), np.zeros(4),
            name="fc")
    return g


def test_percentile_ignores_outliers_and_mse_clips_long_tails():
    values = np.random.default_rng(1).standard_normal(10000)
    values[0] = 100.0
    assert tensor_range(values, "minmax")[1] == 100.0
    lo, hi = tensor_range(values, "percentile", percentile=99.9)
    assert lo < 0 < hi < 5
    tails = np.random.default_rng(2).laplace(size=100000)
    lo, hi = tensor_range(tails, "mse", bits=4)
    assert hi < 0.9 * tails.max() and lo > 0.9 * tails.min()


@pytest.mark.parametrize("method", ["minmax", "percentile", "mse"])
def test_quantize_with_each_method(method):
    calib = np.random.default_rng(2).standard_normal((64, 8))
    qgraph = hwgen.quantize(_graph(), calib, calibration_method=method)
    assert qgraph.input.bits == 8


def test_weight_granularity_tensor():
    calib = np.random.default_rng(3).standard_normal((16, 8))
    per_channel = hwgen.quantize(_graph(), calib)["fc"].weight_scale
    per_tensor = hwgen.quantize(_graph(), calib, weight_granularity="tensor")["fc"].weight_scale
    assert len(set(per_tensor)) == 1 and len(set(per_channel)) == 4
    with pytest.raises(HwgenError, match="granularity"):
        hwgen.quantize(_graph(), calib, weight_granularity="row")
    with pytest.raises(HwgenError, match="calibration method"):
        hwgen.quantize(_graph(), calib, calibration_method="kl")
