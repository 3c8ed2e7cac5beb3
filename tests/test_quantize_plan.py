"""Bit-width specs, quantization invariants, graph building and the planner's folding rules."""

import json

import numpy as np
import pytest

from hwgen.errors import HwgenError
from hwgen.graph import Graph
from hwgen.plan import Folding, make_plan
from hwgen.quantize import LayerBits, load_calibration, quantize, resolve_bits


def _mlp(sizes=(16, 12, 6), seed=0):
    rng = np.random.default_rng(seed)
    graph = Graph("mlp")
    x = graph.input((sizes[0],))
    for index, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        x = graph.dense(x, rng.normal(size=(fan_out, fan_in)), rng.normal(size=fan_out),
                        name=f"fc{index}")
        if index < len(sizes) - 2:
            x = graph.relu(x)
    return graph, rng.normal(size=(64, sizes[0]))


def test_uniform_and_per_layer_bits(tmp_path):
    names = ["fc0", "fc1"]
    assert resolve_bits("w4a8", names) == {"fc0": LayerBits(4, 8), "fc1": LayerBits(4, 8)}
    path = tmp_path / "bits.json"
    path.write_text(json.dumps({"fc1": {"w": 3, "a": 6}}))
    assert resolve_bits(str(path), names) == {"fc0": LayerBits(8, 8), "fc1": LayerBits(3, 6)}
    assert resolve_bits({"fc0": "w2a16"}, names)["fc0"] == LayerBits(2, 16)


@pytest.mark.parametrize("spec, message", [
    ("w1a8", "weight bits must be in 2..16, not 1"),
    ("w8a17", "activation bits must be in 2..16, not 17"),
    ("8bit", "bits must look like 'w8a8'"),
    ({"fc9": {"w": 4}}, "'fc9', which match no layer; the layers are: fc0, fc1"),
    ({"fc0": {"w": 4, "b": 2}}, "layer 'fc0': bits must be like"),
    ({"fc0": {"w": 20}}, "layer 'fc0': weight bits must be in 2..16, not 20"),
])
def test_bad_bits_are_explained(spec, message):
    with pytest.raises(HwgenError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_bits(spec, ["fc0", "fc1"])


def test_bits_file_errors(tmp_path):
    with pytest.raises(HwgenError, match="cannot read bits file"):
        resolve_bits(str(tmp_path / "missing.json"), ["fc0"])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(HwgenError, match="not valid JSON"):
        resolve_bits(str(bad), ["fc0"])


@pytest.mark.parametrize("bits", [{"fc0": "w2a8", "fc1": "w16a3"}, "w5a7"])
def test_quantized_layers_respect_the_contract(bits):
    graph, calib = _mlp()
    qgraph = quantize(graph, calib, bits, output_bits=5)
    per_layer = resolve_bits(bits, ["fc0", "fc1"])
    for layer in qgraph.layers:
        limit = 2 ** (per_layer[layer.name].weight - 1) - 1
        assert np.abs(layer.weight).max() == limit  # symmetric, narrow, per channel: peak hits it
        assert layer.act_bits == per_layer[layer.name].act
        assert np.all((layer.multiplier < 2 ** 16 + 1) & (layer.shift >= 0))
    assert qgraph.layers[0].output.bits == qgraph.layers[1].act_bits
    assert qgraph.output.bits == 5
    assert qgraph.layers[0].relu and not qgraph.layers[1].relu
    assert not qgraph.layers[0].output.signed  # a ReLU output is unsigned with zero point 0


def test_bias_folds_the_input_zero_point():
    graph, calib = _mlp((4, 3))
    calib = calib + 1.5  # mostly positive but with negatives: a signed input, non-zero zp
    qgraph = quantize(graph, calib, "w8a8")
    layer = qgraph.layers[0]
    assert qgraph.input.zero_point != 0
    real_bias = graph["fc0"].spec.bias / (qgraph.input.scale * layer.weight_scale)
    folded = np.round(real_bias) - qgraph.input.zero_point * layer.weight.sum(axis=1)
    assert layer.bias.tolist() == folded.astype(np.int64).tolist()


def test_calibration_files(tmp_path):
    x = np.arange(8.0).reshape(2, 4)
    np.save(tmp_path / "c.npy", x)
    np.savez(tmp_path / "c.npz", x=x, y=np.array([0, 1]))
    np.savez(tmp_path / "wrong.npz", inputs=x)
    assert np.array_equal(load_calibration(tmp_path / "c.npy"), x)
    assert np.array_equal(load_calibration(tmp_path / "c.npz"), x)
    with pytest.raises(HwgenError, match="under 'x'; it holds inputs"):
        load_calibration(tmp_path / "wrong.npz")
    with pytest.raises(HwgenError, match="does not exist"):
        load_calibration(tmp_path / "nope.npy")
    graph, _ = _mlp()
    with pytest.raises(HwgenError, match=r"shape \(N, 16\)"):
        quantize(graph, x)


def test_graph_checks_shapes_and_names():
    graph = Graph("g")
    x = graph.input((8,))
    with pytest.raises(HwgenError, match=r"input 'input' has shape \(8,\).*expects \(7,\)"):
        graph.dense(x, np.zeros((3, 7)))
    with pytest.raises(HwgenError, match="bias must have shape"):
        graph.dense(x, np.zeros((3, 8)), np.zeros(4))
    graph.dense(x, np.zeros((3, 8)), name="fc")
    with pytest.raises(HwgenError, match="used twice"):
        graph.dense("fc", np.zeros((3, 3)), name="fc")
    with pytest.raises(HwgenError, match="'nope' is not a layer"):
        graph.relu("nope")
    assert graph.output_layer.name == "fc" and graph["fc"].shape == (3,)
    assert "fc" in repr(graph)


def test_relu_must_follow_dense():
    graph = Graph("g")
    graph.dense(graph.relu(graph.input((4,))), np.ones((2, 4)))
    with pytest.raises(HwgenError, match="relu 'relu0' must follow a dense, conv, pool or add layer, not a layer of op 'input'"):
        quantize(graph, np.ones((3, 4)))


def test_folding_rules():
    graph, calib = _mlp((64, 48, 10))
    qgraph = quantize(graph, calib)
    plan = make_plan(qgraph, {"fc0": "4x8", "fc1": (5, 16)})
    assert plan["fc0"].folding == Folding(4, 8) and plan["fc0"].cycles == 8 * 12
    assert plan["fc1"].cycles == 3 * 2
    assert plan.initiation_interval == 96 and plan.bottleneck == "fc0"
    with pytest.raises(HwgenError, match=r"pe=5 must divide out_features=48 \(legal pe: 1, 2, 3, "
                                         r"4, 6, 8, 12, 16, 24, 48\)"):
        make_plan(qgraph, {"fc0": "5x8"})
    with pytest.raises(HwgenError, match="simd=7 must divide in_features=64"):
        make_plan(qgraph, "fc0=4x7")
    with pytest.raises(HwgenError, match="'fc7', which match no layer"):
        make_plan(qgraph, {"fc7": "1x1"})
    with pytest.raises(HwgenError, match="must look like 'PExSIMD'"):
        make_plan(qgraph, {"fc0": "four"})


def test_default_folding_balances_the_pipeline():
    graph, calib = _mlp((64, 48, 24, 10))
    plan = make_plan(quantize(graph, calib), multipliers=32)
    assert plan.initiation_interval == 64 * 48 // 32
    for layer in plan.layers:
        assert layer.cycles <= plan.initiation_interval
        # no smaller engine would keep up
        assert layer.layer.macs / (layer.multipliers - 1 or 1) > plan.initiation_interval or \
            layer.multipliers == 1


def test_dead_channel_does_not_break_requantization():
    """A unit that weight decay shrank to ~1e-21 must still quantize (its codes round to 0)."""
    graph = Graph("g")
    weight = np.random.default_rng(0).normal(size=(3, 4))
    weight[1] = 1e-21
    graph.dense(graph.input((4,)), weight, name="fc")
    qgraph = quantize(graph, np.random.default_rng(1).normal(size=(20, 4)))
    assert qgraph.layers[0].weight[1].tolist() == [0, 0, 0, 0]
    assert np.all(qgraph.layers[0].shift <= 62)
