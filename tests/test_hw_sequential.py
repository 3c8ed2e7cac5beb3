# amaranth: UnusedElaboratable=no
"""The layer-sequential engine in Amaranth's simulator: every output code of a chain of dense
layers against ``hwgen.reference.run_integer``, under random stalls, over widths, PE counts and
multiplier kinds; measured cycles per frame and latency against its cycle model."""

import dataclasses

import numpy as np
import pytest

from hwgen.errors import HwgenError
from hwgen.hw.sequential import SequentialEngine, shared_code_shape
from hwgen.reference import Rounding, dense_accumulate, requantize, run_integer
from hw_helpers import StreamDriver, StreamMonitor, beats_to_frames, frames_to_beats, run
from hw_layers import crafted_layer, quantized_mlp, random_codes


def _expected(layers, codes):
    """The chain's reference codes, layer after layer."""
    for layer in layers:
        acc = dense_accumulate(layer, codes)
        codes = requantize(acc, layer.multiplier, layer.shift, layer.output.zero_point,
                           layer.clamp_lo, layer.clamp_hi, layer.rounding)
    return codes


def _simulate(layers, pe, codes, *, seed=0, gap=0.0, stall=0.0, multiplier="dsp"):
    rng = np.random.default_rng(seed)
    dut = SequentialEngine(layers, pe, multiplier=multiplier)
    driver = StreamDriver(dut.i, frames_to_beats(codes, 1), rng=rng, gap=gap)
    monitor = StreamMonitor(dut.o, codes.shape[0] * layers[-1].out_features, rng=rng,
                            stall=stall)
    run(dut, driver, monitor)
    got = beats_to_frames(monitor.beats, layers[-1].out_features)
    np.testing.assert_array_equal(got, _expected(layers, codes))
    return dut, driver, monitor


def _chain(rng, sizes, widths, *, rounding=Rounding.HALF_UP):
    """Crafted dense layers ``sizes[0] → sizes[1] → …``, layer ``l`` of ``widths[l]`` =
    ``(weight_bits, in_bits, in_signed, out_bits, out_signed)``; each reads the one before."""
    layers = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        weight_bits, in_bits, in_signed, out_bits, out_signed = widths[index]
        layer = crafted_layer(rng, fan_in, fan_out, weight_bits=weight_bits, act_bits=in_bits,
                              act_signed=in_signed, out_bits=out_bits, out_signed=out_signed,
                              relu=index % 2 == 0, rounding=rounding, name=f"fc{index}")
        if layers:
            layer = _reads(layer, layers[-1])
        layers.append(layer)
    return layers


def _reads(layer, previous):
    """``layer`` reading ``previous``'s output."""
    return dataclasses.replace(layer, inputs=(previous.name,), input=previous.output)


WIDTHS = [  # per layer: weight bits, input bits/signed, output bits/signed
    [(8, 8, False, 8, True), (8, 8, True, 8, False), (8, 8, False, 8, True)],
    [(2, 2, False, 3, True), (16, 3, True, 16, False), (4, 16, False, 2, True)],
    [(16, 16, True, 16, True), (3, 16, True, 5, False), (7, 5, False, 9, True)],
]


@pytest.mark.parametrize("widths", WIDTHS, ids=["w8", "narrow-wide", "w16"])
@pytest.mark.parametrize("pe", [1, 3, 4])
def test_chain_is_bit_exact_under_stalls(widths, pe):
    """Three layers of mixed widths and signedness (ReLU on the first and third), PE counts
    dividing and not dividing the layers' outputs: every code equals the reference."""
    rng = np.random.default_rng(pe * 10 + widths[0][0])
    layers = _chain(rng, [6, 5, 8, 3], widths)
    codes = random_codes(rng, layers[0].input, 5, 6)
    _simulate(layers, pe, codes, seed=pe, gap=0.3, stall=0.3)


@pytest.mark.parametrize("pe", [3, 4])
def test_wide_result_kept_apart(pe):
    """Narrow hidden codes and a wide result (a classifier's 8-bit logits after 4-bit
    layers): the banks hold 4-bit codes, the result its own registers; every code exact."""
    from hwgen.plan_sequential import result_apart, stored_bits
    rng = np.random.default_rng(40 + pe)
    layers = _chain(rng, [6, 5, 8, 7],
                    [(4, 4, True, 4, False), (3, 4, False, 3, True), (4, 3, True, 8, True)])
    assert result_apart(layers) and stored_bits(layers) == 4
    # Not apart when the result is not the widest, or too long to keep in registers.
    assert not result_apart(layers[:2]) and stored_bits(layers[:2]) == 4
    long = _chain(rng, [6, 65], [(4, 4, True, 8, True)])
    assert not result_apart(long) and stored_bits(long) == 8
    codes = random_codes(rng, layers[0].input, 5, 6)
    _simulate(layers, pe, codes, seed=pe, gap=0.3, stall=0.4)


@pytest.mark.parametrize("rounding", [Rounding.HALF_UP, Rounding.HALF_EVEN, Rounding.FLOOR])
def test_rounding_modes_and_extremes(rounding):
    """Every rounding mode the engine builds, on inputs at the ends of their range."""
    rng = np.random.default_rng(7)
    layers = _chain(rng, [4, 6, 2], [(8, 8, True, 8, True), (8, 8, True, 8, False)],
                    rounding=rounding)
    codes = random_codes(rng, layers[0].input, 6, 4, extreme=True)
    _simulate(layers, 2, codes, gap=0.2, stall=0.2)


def test_quantized_mlp_against_run_integer():
    """A chain the real quantizer made (per-channel scales, ReLU between), against the
    graph's own integer reference."""
    rng = np.random.default_rng(3)
    qgraph = quantized_mlp(rng, [12, 10, 8, 5], "w4a4")
    layers = qgraph.layers
    codes = random_codes(rng, layers[0].input, 8, 12)
    np.testing.assert_array_equal(_expected(layers, codes), run_integer(qgraph, codes))
    _simulate(layers, 4, codes, seed=2, gap=0.2, stall=0.3, multiplier="lut")


@pytest.mark.parametrize("pe,multiplier", [(1, "dsp"), (3, "dsp"), (4, "lut"), (7, "dsp")])
def test_cycles_per_frame_and_latency(pe, multiplier):
    """Input always valid, output always ready: frames leave every ``cycles_per_frame`` cycles
    and the first one ``latency`` cycles after its last input code; a layer of fewer inputs
    than ``pe`` takes idle steps up to ``pe`` (the requant drains a group's sums one per
    cycle)."""
    rng = np.random.default_rng(pe)
    layers = _chain(rng, [6, 5, 8, 3], WIDTHS[0])
    frames = 3
    codes = random_codes(rng, layers[0].input, frames, 6)
    dut, driver, monitor = _simulate(layers, pe, codes, multiplier=multiplier)
    last_in = driver.times[5::6]
    last_out = monitor.times[2::3]
    assert np.diff(last_out).tolist() == [dut.cycles_per_frame] * (frames - 1)
    assert last_out[0] - last_in[0] == dut.latency
    groups = [-(-5 // pe), -(-8 // pe), -(-3 // pe)]
    assert dut.steps == (groups[0] * max(6, pe) + groups[1] * max(5, pe)
                         + groups[2] * max(8, pe))


def test_errors():
    rng = np.random.default_rng(0)
    layers = _chain(rng, [6, 5, 3], WIDTHS[0][:2])
    with pytest.raises(HwgenError, match="pe must be from 1 to 5"):
        SequentialEngine(layers, 6)
    with pytest.raises(HwgenError, match="'fc0' appears twice"):
        SequentialEngine([layers[0], layers[0]], 2)
    with pytest.raises(HwgenError, match="reads 'elsewhere', which the chain does not compute"):
        SequentialEngine([layers[0], dataclasses.replace(layers[1], inputs=("elsewhere",))], 2)
    square = _chain(rng, [6, 6, 3], WIDTHS[0][:2])
    with pytest.raises(HwgenError, match="no layer of the chain reads 'fc0'"):
        SequentialEngine([square[0], dataclasses.replace(
            square[1], inputs=square[0].inputs, input=square[0].input)], 2)
    with pytest.raises(HwgenError, match="round differently"):
        SequentialEngine([layers[0], dataclasses.replace(
            layers[1], rounding=Rounding.FLOOR)], 2)
    with pytest.raises(HwgenError, match="float32 rounding"):
        SequentialEngine([dataclasses.replace(layers[0], rounding=Rounding.FLOAT32_ORT)], 2)
    with pytest.raises(HwgenError, match="'dsp' or 'lut'"):
        SequentialEngine(layers, 2, multiplier="dsp-packed")
    assert shared_code_shape(layers).width == 9  # unsigned 8-bit codes take a sign bit


def _cnn(rng, bits, *, pool="gap"):
    """A small quantized CNN the shared engine computes whole: a padded strided conv, a
    depthwise 3×3, a pointwise conv, a global or a padded average or max pool or none, a dense
    classifier (reading a 1×1 image, or a whole image as one window)."""
    from hwgen.graph import Graph
    from hwgen.quantize import quantize
    graph = Graph("cnn")
    x = graph.input((7, 6, 3))
    x = graph.relu(graph.conv2d(x, rng.normal(size=(5, 3, 2, 3)), rng.normal(size=5),
                                stride=(2, 1), padding=(1, 0, 1, 1), name="stem"))
    x = graph.relu(graph.conv2d(x, rng.normal(size=(5, 3, 3, 1)), rng.normal(size=5),
                                padding=1, groups=5, name="dw"))
    x = graph.conv2d(x, rng.normal(size=(6, 1, 1, 5)), rng.normal(size=6), name="pw")
    if pool == "gap":
        x = graph.global_avgpool(x, name="gap")
    elif pool == "avg":
        x = graph.avgpool(x, 2, stride=1, padding=(0, 0, 1, 0), name="pool")
    elif pool == "max":   # padded: the pads hold the lowest code
        x = graph.maxpool(x, 2, stride=1, padding=(1, 0, 0, 1), name="pool")
    x = graph.flatten(x, name="flat")
    size = int(np.prod(graph[x].shape))
    graph.dense(x, rng.normal(size=(4, size)), rng.normal(size=4), name="fc")
    calibration = rng.normal(size=(32, 7, 6, 3))
    return quantize(graph, calibration, bits)


@pytest.mark.parametrize("bits,pe,pool", [("w8a8", 3, "gap"), ("w4a4", 2, "avg"),
                                          ("w3a7", 5, "gap"), ("w6a5", 4, "none"),
                                          ("w5a6", 3, "max"), ("w8a3", 4, "max"),
                                          ("w6a6", 6, "max"), ("w4a4", 6, "avg")])
def test_cnn_on_the_shared_engine(bits, pe, pool):
    """Convolutions (padded, strided, depthwise, pointwise), average and max pools and a dense
    classifier all on one engine: every code equals ``run_integer``'s under stalls, and the
    frames leave at the modelled interval without them (``pe`` 6: more than the pointwise
    conv's 5 inputs and the 2×2 pools' 4, windows that take idle steps)."""
    rng = np.random.default_rng(pe)
    qgraph = _cnn(rng, bits, pool=pool)
    layers = [layer for layer in qgraph.layers]
    images = random_codes(rng, qgraph.input, 4, 7 * 6 * 3).reshape(4, 7, 6, 3)
    expected = run_integer(qgraph, images.reshape(4, -1)).reshape(4, -1)
    dut = SequentialEngine(layers, pe)
    monitor = StreamMonitor(dut.o, 4 * expected.shape[1], rng=rng, stall=0.3)
    driver = StreamDriver(dut.i, frames_to_beats(images.reshape(4, -1), 1), rng=rng, gap=0.2)
    run(dut, driver, monitor)
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, expected.shape[1]), expected)
    steady = SequentialEngine(layers, pe)
    monitor = StreamMonitor(steady.o, 3 * expected.shape[1])
    driver = StreamDriver(steady.i, frames_to_beats(images[:3].reshape(3, -1), 1))
    run(steady, driver, monitor)
    last_out = monitor.times[expected.shape[1] - 1::expected.shape[1]]
    assert np.diff(last_out).tolist() == [steady.cycles_per_frame] * 2


def _residual(rng, bits, rounding=Rounding.HALF_UP, leaky=False):
    """A small quantized ResNet the shared engine computes whole: a stem, a block with the
    identity on the skip path (its first conv with a LeakyReLU where ``leaky``), a strided
    block with a 1×1 conv on it (read after the block's convs, from the block's input), a
    global average pool and a dense classifier."""
    from hwgen.graph import Graph
    from hwgen.quantize import quantize
    graph = Graph("resnet")

    def conv(x, channels, out, kernel, stride, name):
        return graph.conv2d(x, rng.normal(size=(out, kernel, kernel, channels)),
                            rng.normal(size=out) * 0.3, stride=stride, padding=kernel // 2,
                            name=name)

    x = graph.relu(conv(graph.input((6, 5, 2)), 2, 3, 3, 1, "stem"))
    first = conv(x, 3, 3, 3, 1, "b1_conv1")
    first = graph.activation(first, "leaky_relu", (0.1,)) if leaky else graph.relu(first)
    y = conv(first, 3, 3, 3, 1, "b1_conv2")
    x = graph.relu(graph.add(y, x, name="b1_add"))
    y = conv(graph.relu(conv(x, 3, 4, 3, 2, "b2_conv1")), 4, 4, 3, 1, "b2_conv2")
    x = graph.add(y, conv(x, 3, 4, 1, 2, "b2_skip"), name="b2_add")
    x = graph.flatten(graph.global_avgpool(x, name="gap"), name="flat")
    graph.dense(x, rng.normal(size=(3, 4)), rng.normal(size=3), name="fc")
    return quantize(graph, rng.normal(size=(32, 6, 5, 2)), bits, rounding=rounding)


@pytest.mark.parametrize("bits,pe,multiplier,rounding,leaky", [
    ("w8a8", 2, "dsp", Rounding.HALF_UP, False), ("w4a4", 3, "lut", Rounding.HALF_EVEN, True),
    ("w3a6", 1, "dsp", Rounding.FLOOR, False), ("w5a5", 4, "dsp", Rounding.HALF_UP, False)])
def test_residual_blocks_on_the_shared_engine(bits, pe, multiplier, rounding, leaky):
    """Residual adds on the engine: each add reads its two inputs from their banks (three
    banks: the block's input stays while its convs run), weighs them by its multipliers and
    requantizes (every rounding mode; a LeakyReLU's slope beside them; ``pe`` 4 more than the
    1×1 skip's 3 inputs); every code equals
    ``run_integer``'s under stalls, frames leave at the modelled interval without them, and
    the first ``latency`` cycles after its last input."""
    from hwgen.plan_sequential import buffer_slots
    rng = np.random.default_rng(pe + len(bits))
    qgraph = _residual(rng, bits, rounding, leaky)
    assert leaky == any(getattr(layer, "negative_multiplier", None) is not None
                        for layer in qgraph.layers)
    layers = list(qgraph.layers)
    slots = buffer_slots(layers)
    assert slots.count == 3
    names = [layer.name for layer in layers]
    b1 = names.index("b1_add")
    assert slots.reads[b1] == (slots.writes[b1 - 1], slots.writes[0])  # conv2's and the stem's
    images = random_codes(rng, qgraph.input, 4, 6 * 5 * 2)
    expected = run_integer(qgraph, images).reshape(4, -1)
    dut = SequentialEngine(layers, pe, multiplier=multiplier)
    monitor = StreamMonitor(dut.o, 4 * 3, rng=rng, stall=0.3)
    driver = StreamDriver(dut.i, frames_to_beats(images, 1), rng=rng, gap=0.2)
    run(dut, driver, monitor)
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, 3), expected)
    steady = SequentialEngine(layers, pe, multiplier=multiplier)
    monitor = StreamMonitor(steady.o, 3 * 3)
    driver = StreamDriver(steady.i, frames_to_beats(images[:3], 1))
    run(steady, driver, monitor)
    last_out = monitor.times[2::3]
    assert np.diff(last_out).tolist() == [steady.cycles_per_frame] * 2
    assert last_out[0] - driver.times[6 * 5 * 2 - 1] == steady.latency
