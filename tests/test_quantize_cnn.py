"""Quantization and the integer reference for convolutional graphs: conv (incl. depthwise),
pooling, residual adds, folded activations, and persistence of every layer type."""

import numpy as np
import pytest

from hwgen.errors import HwgenError
from hwgen.graph import Graph
from hwgen.qgraph import qgraph_from_arrays, qgraph_to_arrays
from hwgen.quantize import quantize
from hwgen.reference import conv_accumulate, pool_integer, run_float, run_integer


def lenet(rng, layout="HWC"):
    g = Graph("lenet")
    x = g.input((8, 8, 1), layout=layout)
    x = g.maxpool(g.relu(g.conv2d(x, rng.normal(size=(4, 3, 3, 1)), rng.normal(size=4) * .1,
                                  padding=1, name="conv1")), 2)
    x = g.relu(g.maxpool(g.conv2d(x, rng.normal(size=(8, 3, 3, 4)) / 3, padding=1,
                                  name="conv2"), 2))   # ReLU after the pool: folds through it
    x = g.relu(g.dense(g.flatten(x), rng.normal(size=(16, 32)) / 5, name="fc1"))
    g.dense(x, rng.normal(size=(10, 16)) / 4, rng.normal(size=10), name="fc2")
    return g


def resnet(rng):
    g = Graph("resnet")
    x = g.relu(g.conv2d(g.input((6, 6, 2)), rng.normal(size=(4, 3, 3, 2)), padding=1,
                        name="stem"))
    y = g.relu(g.conv2d(x, rng.normal(size=(4, 3, 3, 4)) / 4, padding=1, name="conv_a"))
    y = g.conv2d(y, rng.normal(size=(4, 3, 3, 4)) / 4, rng.normal(size=4), padding=1,
                 name="conv_b")
    x = g.global_avgpool(g.relu(g.add(y, x, name="skip")), name="gap")
    g.dense(g.flatten(x), rng.normal(size=(5, 4)), name="fc")
    return g


def dwsep(rng):
    g = Graph("dwsep")
    x = g.clip(g.conv2d(g.input((7, 7, 3)), rng.normal(size=(3, 3, 3, 1)), stride=2,
                        padding=(1, 1, 0, 0), groups=3, name="dw"), 0, 6)
    x = g.relu(g.conv2d(x, rng.normal(size=(6, 1, 1, 3)), name="pw"))
    x = g.avgpool(x, 2, stride=1, padding=(0, 0, 1, 1), name="pool")
    g.dense(g.flatten(x), rng.normal(size=(4, 54)) / 6, name="fc")
    return g


MODELS = {"lenet": lenet, "resnet": resnet, "dwsep": dwsep}


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("bits, limit", [("w8a8", 0.06), ("w6a6", 0.15), ("w16a16", 0.002)])
def test_integer_cnn_tracks_float(model, bits, limit):
    rng = np.random.default_rng(11)
    graph = MODELS[model](rng)
    x = rng.normal(size=(200,) + graph.input_layer.shape)
    qgraph = quantize(graph, x, bits, output_bits=int(bits.partition("a")[2]))
    got = qgraph.output.dequantize(run_integer(qgraph, qgraph.input_codes(x)))
    want = run_float(graph, x).reshape(len(x), -1)
    assert np.abs(got - want).mean() / np.abs(want).mean() < limit


def test_relus_fold_into_clamps_and_maxpool_shares_quantization():
    qgraph = quantize(lenet(np.random.default_rng(0)), np.random.default_rng(1).normal(
        size=(50, 8, 8, 1)), "w8a8")
    ops = [(layer.name, layer.op) for layer in qgraph.layers]
    assert ops == [("conv1", "conv"), ("maxpool0", "maxpool"), ("conv2", "conv"),
                   ("maxpool1", "maxpool"), ("fc1", "dense"), ("fc2", "dense")]
    assert qgraph["conv2"].relu and qgraph["conv2"].clamp_lo == qgraph["conv2"].output.zero_point
    assert qgraph["maxpool1"].output == qgraph["conv2"].output
    assert qgraph["fc1"].inputs == ("maxpool1",) and qgraph["fc1"].in_features == 32


def test_clip_becomes_a_clamp_and_add_rescales_both_inputs():
    rng = np.random.default_rng(2)
    qgraph = quantize(dwsep(rng), rng.normal(size=(100, 7, 7, 3)), "w8a8")
    dw = qgraph["dw"]
    assert dw.relu and dw.clamp_hi <= dw.output.quantize(6.0)
    assert dw.output.dequantize(dw.clamp_hi) <= 6.0 + dw.output.scale
    qgraph = quantize(resnet(rng), rng.normal(size=(100, 6, 6, 2)), {"skip": {"a": 6}})
    add = qgraph["skip"]
    assert add.input_a.bits == 6 and add.inputs == ("conv_b", "stem")
    assert qgraph["stem"].output.bits == 8  # read by conv_a (a8) and the add (a6): the widest
    for quant, multiplier in ((add.input_a, add.multiplier_a), (add.input_b, add.multiplier_b)):
        ratio = quant.scale / add.output.scale
        assert abs(multiplier / 2.0 ** add.shift - ratio) / ratio < 2.0 ** -15


def test_conv_reference_against_loops():
    """The vectorized integer conv equals plain loops with explicit zero-point padding."""
    rng = np.random.default_rng(5)
    qgraph = quantize(dwsep(rng), rng.normal(size=(30, 7, 7, 3)), "w4a5")
    codes = qgraph.input_codes(rng.normal(size=(2, 7, 7, 3)))
    image = codes.reshape(2, 7, 7, 3)
    layer = qgraph["dw"]
    padded = np.full((2, 8, 8, 3), layer.input.zero_point)
    padded[:, 1:, 1:] = image
    for n in range(2):
        for oy in range(3):
            for ox in range(3):
                for c in range(3):
                    window = padded[n, oy * 2:oy * 2 + 3, ox * 2:ox * 2 + 3, c]
                    want = int((window * layer.weight[c, :, :, 0]).sum()) + layer.bias[c]
                    assert conv_accumulate(layer, image)[n, oy, ox, c] == want


def test_avgpool_pads_with_the_zero_point():
    rng = np.random.default_rng(6)
    qgraph = quantize(dwsep(rng), rng.normal(size=(30, 7, 7, 3)), "w8a8")
    pool = qgraph["pool"]
    codes = np.full((1, 3, 3, 6), pool.input.zero_point)
    codes[0, 2, 2, 0] = pool.input.hi
    out = pool_integer(pool, codes)
    # every window touching (2, 2) sums (hi - zp) once; padding adds nothing
    expected = pool.output.zero_point + np.floor(
        (pool.input.hi - pool.input.zero_point) * pool.multiplier / 2 ** pool.shift + 0.5)
    assert out[0, 2, 2, 0] == min(expected, pool.clamp_hi)
    assert out[0, 0, 0, 0] == max(pool.output.zero_point, pool.clamp_lo)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_qgraph_round_trips(model):
    rng = np.random.default_rng(3)
    graph = MODELS[model](rng)
    x = rng.normal(size=(40,) + graph.input_layer.shape)
    qgraph = quantize(graph, x, "w5a7")
    loaded = qgraph_from_arrays(qgraph_to_arrays(qgraph))
    codes = qgraph.input_codes(x)
    assert np.array_equal(run_integer(loaded, codes), run_integer(qgraph, codes))
    assert repr(loaded) == repr(qgraph)


def test_chw_inputs_are_transposed():
    rng = np.random.default_rng(4)
    hwc, chw = lenet(np.random.default_rng(9)), lenet(np.random.default_rng(9), layout="CHW")
    x = rng.normal(size=(20, 8, 8, 1))
    q_hwc = quantize(hwc, x, "w8a8")
    q_chw = quantize(chw, x.transpose(0, 3, 1, 2), "w8a8")
    assert np.array_equal(q_hwc.input_codes(x), q_chw.input_codes(x.transpose(0, 3, 1, 2)))
    with pytest.raises(HwgenError, match=r"takes inputs of shape \(N, 1, 8, 8\)"):
        q_chw.input_codes(x)


def test_bits_errors_for_layers_without_weights():
    rng = np.random.default_rng(0)
    graph = resnet(rng)
    with pytest.raises(HwgenError, match="layer 'skip' \\(add\\) has no weights"):
        quantize(graph, rng.normal(size=(5, 6, 6, 2)), {"skip": {"w": 4, "a": 4}})
    with pytest.raises(HwgenError, match="the layers are: stem, conv_a, conv_b, skip, gap, fc"):
        quantize(graph, rng.normal(size=(5, 6, 6, 2)), {"maxpool0": "w4a4"})
