# amaranth: UnusedElaboratable=no
"""ConvLayer (pad → sliding window → systolic array or depthwise engine) in Amaranth's
simulator: every output code against ``hwgen.reference`` under random stalls, over kernels,
strides, paddings, lanes, foldings and widths; measured cycles per frame, latency and lead."""

import numpy as np
import pytest

from hwgen.errors import HwgenError
from hwgen.hw.conv import ConvLayer
from hw_conv_layers import crafted_conv, expected_conv, frame_periods, random_images
from hw_helpers import StreamDriver, StreamMonitor, beats_to_frames, frames_to_beats, run


def _simulate(layer, folding, images, *, in_lanes=None, seed=0, gap=0.0, stall=0.0,
              interval=0, levels=None):
    rng = np.random.default_rng(seed)
    dut = ConvLayer(layer, folding, in_lanes=in_lanes, levels=levels)
    expected = expected_conv(layer, images)
    driver = StreamDriver(dut.i, frames_to_beats(images.reshape(len(images), -1), dut.in_lanes),
                          rng=rng, gap=gap, interval=interval)
    monitor = StreamMonitor(dut.o, expected.size // dut.out_lanes, rng=rng, stall=stall)
    run(dut, driver, monitor)
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, expected.shape[1]), expected)
    return dut, driver, monitor


CASES = [  # in_shape, out_channels, kernel, stride, pads, depthwise, folding, in_lanes
    ((6, 6, 1), 3, (1, 1), (1, 1), (0, 0, 0, 0), False, (3, 1), 1),
    ((6, 5, 2), 4, (3, 3), (1, 1), (1, 1, 1, 1), False, (2, 6), 2),
    ((7, 6, 3), 2, (3, 3), (2, 2), (0, 1, 1, 0), False, (1, 27), 1),     # asymmetric pads
    ((8, 8, 1), 6, (5, 5), (1, 1), (2, 2, 2, 2), False, (6, 5), 1),
    ((6, 7, 2), 4, (5, 5), (2, 1), (1, 2, 0, 1), False, (4, 50), 2),     # full array
    ((9, 9, 1), 2, (7, 7), (2, 2), (3, 3, 3, 3), False, (2, 7), 1),
    ((5, 5, 4), 8, (1, 1), (2, 2), (0, 0, 0, 0), False, (4, 2), 4),      # 1×1 stride 2
    ((6, 6, 4), 4, (3, 3), (1, 1), (1, 1, 1, 1), True, (2, 1), 2),
    ((7, 5, 6), 6, (5, 5), (2, 2), (2, 1, 2, 3), True, (3, 1), 3),
    ((5, 5, 2), 2, (3, 3), (2, 2), (0, 0, 1, 1), True, (1, 1), 1),
]


@pytest.mark.parametrize("in_shape,out_channels,kernel,stride,pads,depthwise,folding,in_lanes",
                         CASES)
@pytest.mark.parametrize("gap,stall", [(0.4, 0.4), (0.0, 0.7)])
def test_conv_values_under_stalls(in_shape, out_channels, kernel, stride, pads, depthwise,
                                  folding, in_lanes, gap, stall):
    rng = np.random.default_rng(sum(in_shape) + out_channels)
    layer = crafted_conv(rng, in_shape, out_channels, kernel, stride=stride, pads=pads,
                         depthwise=depthwise, act_bits=5, act_signed=False, weight_bits=6,
                         relu=True)
    images = random_images(rng, layer.input, 2, in_shape)
    _simulate(layer, folding, images, in_lanes=in_lanes, seed=folding[0], gap=gap, stall=stall)


@pytest.mark.parametrize("weight_bits,act_bits,act_signed", [
    (2, 2, False), (2, 2, True), (16, 16, True), (16, 16, False), (3, 8, True)])
@pytest.mark.parametrize("depthwise", [False, True])
def test_conv_widths(weight_bits, act_bits, act_signed, depthwise):
    rng = np.random.default_rng(weight_bits * 10 + act_bits)
    layer = crafted_conv(rng, (5, 4, 2), 2, (3, 3), pads=(1, 1, 1, 1), depthwise=depthwise,
                         weight_bits=weight_bits, act_bits=act_bits, act_signed=act_signed,
                         out_bits=act_bits, out_signed=act_signed)
    images = random_images(rng, layer.input, 2, (5, 4, 2))
    _simulate(layer, (2, 1) if depthwise else (2, 6), images, seed=1, gap=0.3, stall=0.3)


@pytest.mark.parametrize("in_shape,out_channels,kernel,stride,pads,depthwise,folding,in_lanes",
                         CASES)
def test_conv_cycles_latency_and_lead(in_shape, out_channels, kernel, stride, pads, depthwise,
                                      folding, in_lanes):
    _check_cycles_latency_and_lead(in_shape, out_channels, kernel, stride, pads, depthwise,
                                   folding, in_lanes)


# -- unrolled: the whole window per beat into constant-weight logic ------------------------------

@pytest.mark.parametrize("in_shape,out_channels,kernel,stride,pads,depthwise,folding,in_lanes",
                         CASES[:3] + CASES[6:])
@pytest.mark.parametrize("levels", [1, 4])
def test_unrolled_conv_values_under_stalls(in_shape, out_channels, kernel, stride, pads,
                                           depthwise, folding, in_lanes, levels):
    rng = np.random.default_rng(sum(in_shape) + out_channels + levels)
    layer = crafted_conv(rng, in_shape, out_channels, kernel, stride=stride, pads=pads,
                         depthwise=depthwise, act_bits=5, act_signed=False, weight_bits=6,
                         relu=True)
    layer.weight[rng.random(layer.weight.shape) < 0.5] = 0  # zero weights cost nothing
    images = random_images(rng, layer.input, 3, in_shape)
    dut, _, _ = _simulate(layer, "unrolled", images, in_lanes=in_lanes, seed=levels, gap=0.4,
                          stall=0.5, levels=levels)
    assert dut.out_lanes == layer.out_channels  # one output pixel per beat


@pytest.mark.parametrize("weight_bits,act_bits,act_signed", [
    (2, 2, False), (2, 2, True), (16, 16, True), (16, 16, False), (3, 8, True)])
@pytest.mark.parametrize("depthwise", [False, True])
def test_unrolled_conv_widths(weight_bits, act_bits, act_signed, depthwise):
    rng = np.random.default_rng(weight_bits * 10 + act_bits)
    layer = crafted_conv(rng, (5, 4, 2), 2, (3, 3), pads=(1, 1, 1, 1), depthwise=depthwise,
                         weight_bits=weight_bits, act_bits=act_bits, act_signed=act_signed,
                         out_bits=act_bits, out_signed=act_signed)
    images = random_images(rng, layer.input, 2, (5, 4, 2))
    _simulate(layer, "unrolled", images, seed=1, gap=0.3, stall=0.3, levels=3)


@pytest.mark.parametrize("in_shape,out_channels,kernel,stride,pads,depthwise,folding,in_lanes",
                         CASES[:3] + CASES[6:])
def test_unrolled_conv_cycles_latency_and_lead(in_shape, out_channels, kernel, stride, pads,
                                               depthwise, folding, in_lanes):
    _check_cycles_latency_and_lead(in_shape, out_channels, kernel, stride, pads, depthwise,
                                   "unrolled", in_lanes, levels=2)


def test_unrolled_conv_rejects_a_folding():
    layer = crafted_conv(np.random.default_rng(0), (5, 5, 2), 2, (3, 3))
    with pytest.raises(HwgenError, match="an unrolled conv has no folding"):
        ConvLayer(layer, (2, 6), levels=2)


def _check_cycles_latency_and_lead(in_shape, out_channels, kernel, stride, pads, depthwise,
                                   folding, in_lanes, levels=None):
    rng = np.random.default_rng(1)
    layer = crafted_conv(rng, in_shape, out_channels, kernel, stride=stride, pads=pads,
                         depthwise=depthwise)
    frames = 3
    images = random_images(rng, layer.input, frames, in_shape)
    dut, driver, monitor = _simulate(layer, folding, images, in_lanes=in_lanes, levels=levels)
    out_beats = int(np.prod(layer.out_shape)) // dut.out_lanes
    assert frame_periods(monitor.times, out_beats) == [dut.cycles_per_frame] * (frames - 1)

    # One frame, beats far apart: every output pixel comes out after the input it needs.
    interval = dut.latency + dut.engine.cycles_per_frame // (out_beats // layer.out_shape[2]
                                                             * dut.out_lanes) + 4
    dut, driver, monitor = _simulate(layer, folding, images[:1], in_lanes=in_lanes,
                                     interval=interval, levels=levels)
    height, width, channels = in_shape
    out_height, out_width, outs = layer.out_shape
    per_pixel = outs // dut.out_lanes
    times = np.array(driver.times)
    lead = 0
    for oy in range(out_height):
        for ox in range(out_width):
            done = monitor.times[(oy * out_width + ox + 1) * per_pixel - 1]
            needed_beat = np.searchsorted(times, done) - 1  # the last beat in before it
            needed = (needed_beat + 1) * dut.in_lanes - 1
            if oy < height and ox < width:
                lead = max(lead, needed - (oy * width + ox) * channels)
    assert lead == dut.lead
    last_row = (out_height - 1) * stride[0] + kernel[0] - 1 - pads[0]
    last_beat = (min(last_row + 1, height) * width * channels) // dut.in_lanes - 1
    assert monitor.times[-1] - driver.times[last_beat] == dut.latency


def test_lead_formula_for_stride_one():
    layer = crafted_conv(np.random.default_rng(0), (8, 9, 3), 2, (3, 5), pads=(1, 2, 1, 2))
    dut = ConvLayer(layer, (1, 1))
    assert dut.lead == ((3 - 1 - 1) * 9 + 5 - 1 - 2) * 3 + 3 - 1


def test_default_in_lanes_keeps_the_engine_the_bottleneck():
    layer = crafted_conv(np.random.default_rng(0), (6, 6, 8), 8, (3, 3), pads=(1, 1, 1, 1))
    dut = ConvLayer(layer, (4, 24))  # 216 cycles: 4 lanes (128 padded beats), not 2 (256)
    assert dut.in_lanes == 4 and dut.cycles_per_frame == dut.engine.cycles_per_frame == 216
    dut = ConvLayer(layer, (1, 1))
    assert dut.in_lanes == 1
    dut = ConvLayer(layer, (8, 72))  # nothing keeps up with 36 cycles: all channels per beat
    assert dut.in_lanes == 8 and dut.cycles_per_frame == 8 * 8


def test_lenet_like_cycles():
    """The LeNet convolutions: the window keeps up with the array, so the layer runs at the
    array's OH·OW·(K/cols)·(O/rows) cycles per frame."""
    rng = np.random.default_rng(5)
    first = crafted_conv(rng, (28, 28, 1), 6, (5, 5), act_signed=False)
    images = random_images(rng, first.input, 2, (28, 28, 1))
    dut, driver, monitor = _simulate(first, (6, 5), images)
    assert dut.cycles_per_frame == 24 * 24 * 5
    assert frame_periods(monitor.times, 24 * 24) == [dut.cycles_per_frame]
    second = crafted_conv(rng, (12, 12, 6), 16, (5, 5), act_signed=False)
    images = random_images(rng, second.input, 2, (12, 12, 6))
    dut, driver, monitor = _simulate(second, (2, 6), images)
    assert dut.cycles_per_frame == 8 * 8 * 25 * 8
    assert frame_periods(monitor.times, 8 * 8 * 8) == [dut.cycles_per_frame]


def test_conv_rejects_bad_folding_and_lanes():
    layer = crafted_conv(np.random.default_rng(0), (4, 4, 2), 6, (3, 3))
    with pytest.raises(HwgenError, match="legal rows"):
        ConvLayer(layer, (4, 2))
    with pytest.raises(HwgenError, match="in_lanes must divide the 2"):
        ConvLayer(layer, (2, 2), in_lanes=3)
    depthwise = crafted_conv(np.random.default_rng(0), (4, 4, 2), 2, (3, 3), depthwise=True)
    with pytest.raises(HwgenError, match=r"is \(pe, 1\)"):
        ConvLayer(depthwise, (2, 2))
