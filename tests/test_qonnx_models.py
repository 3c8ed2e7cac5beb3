"""Brevitas models exported to QONNX with Brevitas' default float biases (``examples/qonnx``):
hwgen's integer reference and the RTL against qonnx's executor (FINN's golden model), whose
outputs ``examples/qonnx/make_models.py`` stored beside the models."""

from pathlib import Path

import numpy as np
import pytest

import hwgen
from hwgen.reference import run_integer

QONNX = Path(__file__).resolve().parent.parent / "examples" / "qonnx"
MODELS = {"mlp_w2a2": (64,), "cnn_w4a4": (1, 8, 8)}


def _load(name):
    data = np.load(QONNX / "data.npz")
    qgraph = hwgen.load(QONNX / f"{name}.onnx")
    x = data["test_x"].reshape(-1, *MODELS[name])
    qonnx = data[f"{name}_qonnx"]
    codes = np.round(qonnx / qgraph.output.scale + qgraph.output.zero_point).astype(np.int64)
    return qgraph, x, codes


@pytest.mark.parametrize("name", sorted(MODELS))
def test_reference_reproduces_qonnx_code_for_code(name):
    qgraph, x, want = _load(name)
    got = run_integer(qgraph, qgraph.input_codes(x))
    assert np.mean(got == want) >= 0.99
    assert np.abs(got - want).max() <= 1
    # The float biases are kept: every weighted layer carries a fraction.
    weighted = [layer for layer in qgraph.layers if layer.op in ("dense", "conv")]
    assert all(layer.bias_fraction is not None for layer in weighted)


def test_max_pool_between_quantizers():
    """QuantReLU → MaxPool2d → QuantConv2d: the pool reuses the quantizer before it."""
    qgraph, _, _ = _load("cnn_w4a4")
    ops = [layer.op for layer in qgraph.layers]
    assert ops == ["conv", "maxpool", "conv", "maxpool", "dense"]
    assert qgraph.layers[1].output == qgraph.layers[0].output


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_rtl_reproduces_qonnx(name, tmp_path):
    qgraph, x, want = _load(name)
    plan = hwgen.make_plan(qgraph, multipliers=16)
    design = hwgen.generate(plan, x[:24])
    result = hwgen.simulate(design.write(tmp_path), stall=0.3, seed=4)
    assert result.passed, result.summary()
    assert np.mean(result.outputs == want[:24]) >= 0.99
