"""Brevitas models exported to QONNX with Brevitas' default float biases (``examples/qonnx``):
hwgen's integer reference and the RTL against qonnx's executor (FINN's golden model), whose
outputs ``examples/qonnx/make_models.py`` stored beside the models."""

import re
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


# -- hwgen check's golden model for QONNX -----------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MODELS))
def test_float_emulation_equals_qonnx(name):
    import onnx
    from hwgen.qonnx_float import qonnx_to_onnx, run_qonnx
    data = np.load(QONNX / "data.npz")
    model = onnx.load(QONNX / f"{name}.onnx")
    assert all(node.op_type != "Quant" for node in qonnx_to_onnx(model).graph.node)
    out, which = run_qonnx(model, data["test_x"].reshape(-1, *MODELS[name]))
    assert "emulation" in which  # qonnx is not a dependency
    np.testing.assert_array_equal(out, data[f"{name}_qonnx"])


@pytest.mark.parametrize("mode", ["ROUND", "HALF_EVEN", "FLOOR", "CEIL", "UP", "DOWN", "HALF_UP",
                                  "HALF_DOWN"])
@pytest.mark.parametrize("signed,narrow,bits", [(1, 0, 4), (1, 1, 3), (0, 0, 2), (0, 1, 5)])
def test_quant_emulation(mode, signed, narrow, bits):
    """One Quant node against qonnx's documented formula, written here in numpy."""
    from onnx import TensorProto, helper, numpy_helper
    from hwgen.qonnx_float import run_qonnx
    node = helper.make_node("Quant", ["x", "s", "z", "b"], ["y"], domain="qonnx.custom_op.general",
                            signed=signed, narrow=narrow, rounding_mode=mode)
    inits = [numpy_helper.from_array(np.float32(v), n) for n, v in
             (("s", 0.25), ("z", 1.0), ("b", float(bits)))]
    graph = helper.make_graph([node], "q", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", 16])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid(
                                                        "qonnx.custom_op.general", 1)])
    x = np.concatenate([np.arange(-40, 40) / 8, np.random.default_rng(0).normal(0, 2, 48)])
    x = x.astype(np.float32).reshape(-1, 16)
    got, _ = run_qonnx(model, x)
    value = x / np.float32(0.25) + np.float32(1.0)
    rounded = {"ROUND": np.round, "HALF_EVEN": np.round, "FLOOR": np.floor, "CEIL": np.ceil,
               "UP": lambda v: np.where(v < 0, np.floor(v), np.ceil(v)), "DOWN": np.trunc,
               "HALF_UP": lambda v: np.where(v < 0, -np.floor(0.5 - v), np.floor(v + 0.5)),
               "HALF_DOWN": lambda v: np.where(v < 0, -np.ceil(-v - 0.5), np.ceil(v - 0.5))
               }[mode](value)
    lo = -(1 << (bits - 1)) + narrow if signed else 0
    hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1 - narrow
    want = (np.clip(rounded, lo, hi) - np.float32(1.0)) * np.float32(0.25)
    np.testing.assert_array_equal(got, want.astype(np.float32))


def test_hwgen_check_of_a_qonnx_model(tmp_path, capsys):
    from hwgen.cli import main
    data = np.load(QONNX / "data.npz")
    np.save(tmp_path / "x.npy", data["test_x"][:50].reshape(-1, 64))
    assert main(["check", str(QONNX / "mlp_w2a2.onnx"), "--inputs", str(tmp_path / "x.npy")]) == 0
    printed = capsys.readouterr().out
    assert "against onnxruntime on hwgen's float emulation of Quant" in printed
    assert "100.00% of codes exact" in printed


def test_build_warns_only_where_hwgen_approximates(tmp_path, capsys):
    """``hwgen build`` of a quantized model measures its agreement with the model's own
    arithmetic on the calibration inputs: silent for the QONNX MLP (every code equal), a
    warning with the figure for an onnxruntime int8 average pool, whose float32 arithmetic
    hwgen approximates (docs/arithmetic.md)."""
    import onnx
    from hwgen.cli import main
    from test_frontend_onnx_quant import _qdq_average_pool
    data = np.load(QONNX / "data.npz")
    np.save(tmp_path / "x.npy", data["test_x"][:64].reshape(-1, 64))
    assert main(["build", str(QONNX / "mlp_w2a2.onnx"), "--calib", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "a"), "--frames", "4"]) == 0
    assert "warning" not in capsys.readouterr().err
    onnx.save(_qdq_average_pool(0.0218801, 6, np.int8), tmp_path / "pool.onnx")
    rng = np.random.default_rng(8)
    np.save(tmp_path / "px.npy", rng.uniform(-2.5, 2.5, (300, 4, 6, 6)))
    assert main(["build", str(tmp_path / "pool.onnx"), "--calib", str(tmp_path / "px.npy"),
                 "-o", str(tmp_path / "b"), "--frames", "4"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"warning: hwgen approximates this model's arithmetic: \d+\.\d\d% of "
                     r"output codes equal onnxruntime's on 256 inputs \(largest difference 1\)",
                     err)
