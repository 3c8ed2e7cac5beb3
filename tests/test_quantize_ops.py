"""Quantization of lookup-table activations, folded LeakyReLU/PReLU, concat and argmax: the
integer reference against the float graph and against numpy computed here."""

import numpy as np
import pytest
from scipy import special

import hwgen
from hwgen.activations import FUNCTIONS, evaluate
from hwgen.errors import HwgenError
from hwgen.graph import Graph
from hwgen.qgraph import qgraph_from_arrays, qgraph_to_arrays
from hwgen.quantize import quantize
from hwgen.reference import run_float, run_integer


def _mlp(activation, params=None, seed=0, relu_after=False):
    rng = np.random.default_rng(seed)
    graph = Graph("m")
    x = graph.input((12,))
    h = graph.dense(x, rng.standard_normal((16, 12)) / 2, rng.standard_normal(16) / 2, name="fc1")
    h = graph.activation(h, activation, params, name="act")
    if relu_after:
        h = graph.relu(h)
    graph.dense(h, rng.standard_normal((6, 16)) / 2, rng.standard_normal(6) / 4, name="fc2")
    return graph, rng.standard_normal((400, 12)) * 2


# Independent float definitions (the reference's come from hwgen.activations).
EXPECTED = {
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "gelu": lambda x: x * 0.5 * (1 + special.erf(x / np.sqrt(2))),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "hardswish": lambda x: x * np.minimum(np.maximum(x + 3, 0), 6) / 6,
    "softplus": lambda x: np.log1p(np.exp(x)),
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
}


@pytest.mark.parametrize("function", sorted(EXPECTED))
def test_activation_functions_match_their_definitions(function):
    x = np.linspace(-8, 8, 1001)
    np.testing.assert_allclose(evaluate(function, (), x), EXPECTED[function](x), rtol=1e-9,
                               atol=1e-12)


@pytest.mark.parametrize("function", sorted(set(FUNCTIONS) - {"leaky_relu"}))  # folds instead
def test_table_is_the_quantized_function(function):
    graph, x = _mlp(function)
    qgraph = quantize(graph, x)
    table = qgraph["act"]
    source, out = table.input, table.output
    codes = np.arange(source.lo, source.hi + 1)
    params = graph["act"].spec.params
    want = np.clip(np.round(evaluate(function, params, source.scale * (codes - source.zero_point))
                            / out.scale) + out.zero_point, out.lo, out.hi)
    np.testing.assert_array_equal(table.table, want)
    assert table.table.shape == (256,)
    # The integer run looks the table up: a model of fc1 then the table matches it.
    codes = qgraph.input_codes(x)
    values = run_integer(qgraph, codes, keep=True)
    np.testing.assert_array_equal(values["act"], table.table[values["fc1"] - source.lo])


@pytest.mark.parametrize("function", ["sigmoid", "tanh", "gelu", "silu", "hardswish", "elu"])
def test_tables_track_the_float_model(function):
    graph, x = _mlp(function, seed=3)
    qgraph = quantize(graph, x)
    want = run_float(graph, x)
    got = qgraph.output.dequantize(run_integer(qgraph, qgraph.input_codes(x)))
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.95
    assert np.abs(got - want).mean() < 3 * qgraph.output.scale
    assert [layer.op for layer in qgraph.layers] == ["dense", "activation", "dense"]


def test_relu_after_a_table_folds_into_its_clamp():
    graph, x = _mlp("gelu", relu_after=True)
    table = quantize(graph, x)["act"]
    assert table.relu and table.table.min() >= table.output.zero_point


def test_table_input_wider_than_12_bits_is_an_error():
    graph, x = _mlp("sigmoid")
    with pytest.raises(HwgenError, match=r"layer 'act' \(sigmoid\): its input has 13-bit codes, "
                                         r"but a lookup table takes at most 12 bits"):
        quantize(graph, x, {"act": {"a": 13}})


def test_leaky_relu_after_a_dense_layer_folds_into_two_slopes():
    graph, x = _mlp("leaky_relu", (0.1,))
    qgraph = quantize(graph, x)
    assert [layer.name for layer in qgraph.layers] == ["fc1", "fc2"]
    fc1 = qgraph["fc1"]
    np.testing.assert_allclose(fc1.negative_multiplier, 0.1 * fc1.multiplier, atol=1)
    # fc1's output codes are the leaky ReLU of its float output, requantized with two slopes.
    codes = qgraph.input_codes(x)
    values = run_integer(qgraph, codes, keep=True)
    want = run_float(graph, x, keep=True)["act"]
    got = fc1.output.dequantize(values["fc1"])
    inside = (want > fc1.output.dequantize(fc1.output.lo)) & (
        want < fc1.output.dequantize(fc1.output.hi))
    assert np.abs(got - want)[inside].max() < 8 * fc1.output.scale
    assert (values["fc1"] < fc1.output.zero_point).any()  # negatives survive, scaled down


def test_prelu_per_channel_folds():
    rng = np.random.default_rng(5)
    graph = Graph("p")
    x = graph.input((4, 4, 2))
    c = graph.conv2d(x, rng.standard_normal((3, 3, 3, 2)), rng.standard_normal(3), padding=1,
                     name="conv")
    p = graph.prelu(c, [0.0, 0.25, 1.5], name="prelu")
    graph.global_avgpool(p, name="gap")
    data = rng.standard_normal((50, 4, 4, 2))
    qgraph = quantize(graph, data)
    conv = qgraph["conv"]
    ratio = conv.input.scale * conv.weight_scale / conv.output.scale
    np.testing.assert_array_equal(
        conv.negative_multiplier,
        np.round(np.ldexp(np.array([0.0, 0.25, 1.5]) * ratio, conv.shift)).astype(np.int64))
    assert conv.negative_multiplier[0] == 0


def test_leaky_relu_whose_input_is_shared_is_a_table():
    rng = np.random.default_rng(1)
    graph = Graph("shared")
    x = graph.input((6,))
    h = graph.dense(x, rng.standard_normal((6, 6)), None, name="fc")
    a = graph.activation(h, "leaky_relu", (0.2,), name="leaky")
    graph.add(a, h, name="join")
    qgraph = quantize(graph, rng.standard_normal((50, 6)))
    assert qgraph["leaky"].op == "activation" and qgraph["fc"].negative_multiplier is None


def test_prelu_after_a_pool_is_an_error():
    rng = np.random.default_rng(1)
    graph = Graph("bad")
    x = graph.input((4, 4, 2))
    c = graph.conv2d(x, rng.standard_normal((2, 1, 1, 2)), name="conv")
    m = graph.maxpool(c, 2, name="pool")
    graph.prelu(m, [0.1, 0.2], name="prelu")
    with pytest.raises(HwgenError, match="prelu 'prelu' must follow a dense or conv layer"):
        quantize(graph, rng.standard_normal((10, 4, 4, 2)))


def _concat_graph(seed=2):
    rng = np.random.default_rng(seed)
    graph = Graph("cat")
    x = graph.input((5, 5, 3))
    a = graph.relu(graph.conv2d(x, rng.standard_normal((4, 3, 3, 3)) / 3, padding=1, name="a"))
    b = graph.conv2d(x, rng.standard_normal((2, 1, 1, 3)), rng.standard_normal(2), name="b")
    c = graph.concat([a, b, x], name="cat")
    graph.conv2d(c, rng.standard_normal((3, 1, 1, 9)) / 3, name="head")
    return graph, rng.standard_normal((80, 5, 5, 3))


def test_concat_branches_take_its_quantization():
    graph, x = _concat_graph()
    qgraph = quantize(graph, x)
    cat = qgraph["cat"]
    assert qgraph["a"].output == cat.output == qgraph["b"].output
    assert cat.channels == (4, 2, 3)
    assert cat.multipliers[:2] == (0, 0) and cat.multipliers[2] > 0  # the input is requantized
    values = run_integer(qgraph, qgraph.input_codes(x), keep=True)
    np.testing.assert_array_equal(values["cat"][..., :4],
                                  np.clip(values["a"], cat.clamp_lo, cat.clamp_hi))
    # The requantized input part is the input, in the concat's scale.
    want = run_float(graph, x, keep=True)["cat"][..., 6:]
    got = cat.output.dequantize(values["cat"][..., 6:])
    assert np.abs(got - want).max() <= cat.output.scale + qgraph.input.scale


def test_concat_survives_persistence():
    graph, x = _concat_graph()
    qgraph = quantize(graph, x)
    again = qgraph_from_arrays(qgraph_to_arrays(qgraph))
    codes = qgraph.input_codes(x)
    np.testing.assert_array_equal(run_integer(again, codes), run_integer(qgraph, codes))
    assert again["cat"].input_quants == qgraph["cat"].input_quants


def test_argmax_outputs_the_class_index():
    graph, x = _mlp("tanh")
    graph.argmax("fc2", name="cls")
    qgraph = quantize(graph, x)
    assert qgraph.output.bits == 3 and not qgraph.output.signed
    values = run_integer(qgraph, qgraph.input_codes(x), keep=True)
    np.testing.assert_array_equal(values["cls"][:, 0], values["fc2"].argmax(1))
    assert run_float(graph, x)[:, 0].tolist() == run_float(graph, x, keep=True)["fc2"].argmax(
        1).tolist()


def test_argmax_must_end_the_model():
    graph, x = _mlp("tanh")
    graph.argmax("act", name="cls")
    with pytest.raises(HwgenError, match="must have exactly one output|argmax 'cls' must be"):
        quantize(graph, x)


def test_with_argmax_on_graphs_and_qgraphs():
    graph, x = _mlp("sigmoid")
    qgraph = quantize(graph, x)
    ended = hwgen.api.with_argmax(qgraph)
    assert ended.layers[-1].op == "argmax" and hwgen.api.with_argmax(ended) is ended
    codes = qgraph.input_codes(x)
    np.testing.assert_array_equal(run_integer(ended, codes)[:, 0],
                                  run_integer(qgraph, codes).argmax(1))
    hwgen.api.with_argmax(graph)
    assert graph.output_layer.op == "argmax"


def test_dotted_module_names_select_layers():
    graph = Graph("dotted")
    rng = np.random.default_rng(0)
    h = graph.input((4,))
    graph.dense(h, rng.standard_normal((3, 4)), name="stage2_fc")
    qgraph = quantize(graph, rng.standard_normal((10, 4)), {"stage2.fc": "w4a6"})
    assert qgraph["stage2.fc"].weight_bits == 4
    plan = hwgen.make_plan(qgraph, {"stage2.fc": "3x2"})
    assert plan["stage2_fc"].folding.pe == 3
