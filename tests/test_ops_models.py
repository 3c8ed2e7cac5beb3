"""The trained example models of ``examples/ops`` (activation tables, LeakyReLU folded into two
slopes, a concat, a Conv1d model, each ending in Softmax, each exported by both PyTorch
exporters): agreement with onnxruntime's float model, names across exporters, and, in the slow
tests, the emitted Verilog under cocotb with random stalls."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import hwgen
from hwgen.cli import main
from hwgen.reference import run_integer

OPS = Path(__file__).resolve().parent.parent / "examples" / "ops"
MODELS = {"smooth": "vector", "gelu": "vector", "concat": "image", "conv1d": "signal"}
EXPORTERS = ("classic", "dynamo")


def _data(kind):
    data = np.load(OPS / "data.npz")
    shape = {"vector": (64,), "signal": (8, 8), "image": (1, 8, 8)}[kind]
    return (data["calib_x"].reshape(-1, *shape), data["test_x"].reshape(-1, *shape),
            data["test_y"])


def _onnxruntime_classes(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x.astype(np.float32)})[0].argmax(1)


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_w8a8_agrees_with_onnxruntime(model, exporter):
    calib, test, labels = _data(MODELS[model])
    path = OPS / f"{model}_{exporter}.onnx"
    graph = hwgen.load(path)
    assert graph.removed_outputs == ("Softmax",)
    qgraph = hwgen.quantize(graph, calib, "w8a8")
    got = run_integer(qgraph, qgraph.input_codes(test)).argmax(1)
    want = _onnxruntime_classes(path, test)
    assert np.mean(got == want) >= 0.95
    assert np.mean(got == labels) >= 0.94


@pytest.mark.parametrize("model", sorted(MODELS))
def test_both_exporters_give_the_same_layers(model):
    classic, dynamo = (hwgen.load(OPS / f"{model}_{e}.onnx") for e in EXPORTERS)
    assert [(layer.name, layer.op) for layer in classic.layers()] == [
        (layer.name, layer.op) for layer in dynamo.layers()]
    functions = [(str(layer.spec)) for layer in classic.layers() if layer.op == "activation"]
    assert functions == [str(layer.spec) for layer in dynamo.layers()
                         if layer.op == "activation"]


def test_the_example_activations():
    names = {model: [str(layer.spec) for layer in hwgen.load(OPS / f"{model}_classic.onnx")
                     .layers() if layer.op == "activation"] for model in MODELS}
    assert names == {"smooth": ["sigmoid", "tanh", "leaky_relu(alpha=0.1)"],
                     "gelu": ["gelu", "hardswish", "silu"], "concat": [],
                     "conv1d": ["gelu_tanh"]}


# -- RTL ------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_rtl_is_bit_exact_under_stalls(model, exporter, tmp_path):
    """Both exporters' files; named alike, their identical RTL shares one Verilator build."""
    calib, test, _ = _data(MODELS[model])
    graph = hwgen.load(OPS / f"{model}_{exporter}.onnx", name=model)
    qgraph = hwgen.quantize(graph, calib, "w8a8")
    plan = hwgen.make_plan(qgraph, multipliers=16)
    design = hwgen.generate(plan, test[:12], graph=graph)
    result = hwgen.simulate(design.write(tmp_path), stall=0.3, seed=3)
    assert result.passed, result.summary()
    assert np.array_equal(result.outputs, design.expected)
    assert result.initiation_interval == plan.initiation_interval


@pytest.mark.slow
def test_cli_argmax_build_and_sim(tmp_path, capsys):
    calib, _, labels = _data("vector")
    np.savez(tmp_path / "calib.npz", x=calib)
    out = tmp_path / "out"
    assert main(["build", str(OPS / "gelu_classic.onnx"), "--calib", str(tmp_path / "calib.npz"),
                 "-o", str(out), "--argmax", "--frames", "10"]) == 0
    printed = capsys.readouterr()
    assert "removed the output Softmax (node '/7/Softmax')" in printed.err
    manifest = (out / "manifest.json").read_text()
    assert '"argmax": true' in manifest and "removed the output Softmax" in manifest
    assert main(["sim", str(out)]) == 0
    assert "PASSED" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("target", ["generic", "ecp5"])
def test_crafted_ops_on_both_targets(target, tmp_path):
    """A PReLU folded into two slopes, a 12-bit sigmoid table (a block RAM per lane on ECP5),
    a concat with the input requantized, a LeakyReLU that cannot fold (a table), an argmax; the
    ECP5 design with its MULT18X18D and DP16KD primitives."""
    rng = np.random.default_rng(7)
    graph = hwgen.Graph("crafted")
    x = graph.input((4, 4, 3))
    conv = graph.conv2d(x, rng.standard_normal((4, 3, 3, 3)) / 3, rng.standard_normal(4),
                        padding=1, name="conv")
    p = graph.prelu(conv, [0.05, 0.3, 0.0, 1.2], name="prelu")
    s = graph.activation(p, "sigmoid", name="sig")
    c = graph.concat([s, x], name="cat")
    g = graph.global_avgpool(c, name="gap")
    f = graph.flatten(g)
    h = graph.dense(f, rng.standard_normal((6, 7)), rng.standard_normal(6), name="fc")
    skip = graph.activation(h, "leaky_relu", (0.2,), name="leaky")
    j = graph.add(skip, h, name="join")
    graph.argmax(j, name="cls")
    calib = rng.standard_normal((60, 4, 4, 3))
    qgraph = hwgen.quantize(graph, calib, {"sig": "w8a12"})
    assert qgraph["conv"].negative_multiplier is not None and qgraph["sig"].table.size == 4096
    assert qgraph["leaky"].op == "activation"
    plan = hwgen.make_plan(qgraph, {"sig": "2", "cat": "1"}, multipliers=8)
    design = hwgen.generate(plan, calib[:10], target=target)
    result = hwgen.simulate(design.write(tmp_path), stall=0.3, seed=1)
    assert result.passed, result.summary()
    assert np.array_equal(result.outputs, design.expected)
    if target == "ecp5":
        assert "DP16KD" in design.verilog and "MULT18X18D" in design.verilog


def _autoencoder():
    """conv → relu → max pool → ConvTranspose (k2 s2) → relu → Resize ×2 (nearest) → conv,
    written with onnx.helper as the TorchScript exporter names nodes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value, np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="/enc/Conv"),
        helper.make_node("Relu", ["c1"], ["r1"], name="/enc_act/Relu"),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2],
                         name="/pool/MaxPool"),
        helper.make_node("ConvTranspose", ["p1", "w2", "b2"], ["u1"], strides=[2, 2],
                         kernel_shape=[2, 2], name="/dec/up/ConvTranspose"),
        helper.make_node("Relu", ["u1"], ["r2"], name="/dec/act/Relu"),
        helper.make_node("Resize", ["r2", "", "scales"], ["u2"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor",
                         name="/dec/resize/Resize"),
        helper.make_node("Conv", ["u2", "w3"], ["y"], name="/head/Conv")]
    inits = [const("w1", rng.standard_normal((4, 2, 3, 3)) / 3),
             const("b1", rng.standard_normal(4) / 4),
             const("w2", rng.standard_normal((4, 3, 2, 2)) / 2),
             const("b2", rng.standard_normal(3) / 4), const("scales", [1, 1, 2, 2]),
             const("w3", rng.standard_normal((2, 3, 1, 1)))]
    graph = helper.make_graph(
        nodes, "ae", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    return onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                  ir_version=10), rng.standard_normal((40, 2, 6, 6))


@pytest.mark.slow
def test_conv_transpose_and_resize_rtl(tmp_path):
    model, x = _autoencoder()
    graph = hwgen.load(model, name="ae")
    assert [layer.op for layer in graph.layers()].count("upsample") == 2
    qgraph = hwgen.quantize(graph, x)
    plan = hwgen.make_plan(qgraph, multipliers=16)
    design = hwgen.generate(plan, x[:6], graph=graph)
    result = hwgen.simulate(design.write(tmp_path), stall=0.3, seed=2)
    assert result.passed, result.summary()
    assert np.array_equal(result.outputs, design.expected)
    # The integer reference follows onnxruntime's float model.
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, {"x": x.astype(np.float32)})[0].transpose(0, 2, 3, 1)
    got = qgraph.output.dequantize(run_integer(qgraph, qgraph.input_codes(x)))
    assert np.abs(got.reshape(want.shape) - want).mean() < 2 * qgraph.output.scale
