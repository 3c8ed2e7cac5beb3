# amaranth: UnusedElaboratable=no
"""SystolicArray and DepthwiseEngine in Amaranth's simulator, fed the reference's windows:
every output code against ``hwgen.reference``, under random stalls, over widths and foldings;
measured latency and cycles per frame."""

import numpy as np
import pytest

from hwgen.errors import HwgenError
from hwgen.hw.depthwise import DepthwiseEngine
from hwgen.hw.multiplier import multiplier_latency
from hwgen.hw.systolic import SystolicArray
from hwgen.packing import pack_groups
from hw_conv_layers import (crafted_conv, expected_conv, frame_periods, random_images,
                            window_stream)
from hw_helpers import StreamDriver, StreamMonitor, beats_to_frames, frames_to_beats, run


def _simulate(layer, folding, images, *, seed=0, gap=0.0, stall=0.0, interval=0,
              multiplier="dsp", pack=1):
    rng = np.random.default_rng(seed)
    if layer.depthwise:
        dut = DepthwiseEngine(layer, folding[0], multiplier=multiplier)
        in_lanes, out_lanes, order = dut.pe, dut.pe, "depthwise"
    else:
        dut = SystolicArray(layer, *folding, multiplier=multiplier, pack=pack)
        in_lanes, out_lanes, order = dut.cols, dut.rows, "conv"
    # The engine sees the windows of the padded image.
    padded = np.pad(images, ((0, 0), (layer.pads[0], layer.pads[2]),
                             (layer.pads[1], layer.pads[3]), (0, 0)),
                    constant_values=layer.input.zero_point)
    stream = window_stream(padded, layer.kernel, layer.stride, in_lanes, order)
    expected = expected_conv(layer, images)
    driver = StreamDriver(dut.i, frames_to_beats(stream, in_lanes), rng=rng, gap=gap,
                          interval=interval)
    monitor = StreamMonitor(dut.o, expected.size // out_lanes, rng=rng, stall=stall)
    run(dut, driver, monitor)
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, expected.shape[1]), expected)
    return dut, driver, monitor


WIDTHS = [  # weight_bits, act_bits, act_signed
    (2, 2, False), (2, 2, True), (16, 16, True), (16, 16, False), (4, 8, False), (8, 3, True),
]


@pytest.mark.parametrize("weight_bits,act_bits,act_signed", WIDTHS)
@pytest.mark.parametrize("rows,cols", [(1, 1), (2, 9), (4, 18)])
def test_systolic_widths_and_stalls(weight_bits, act_bits, act_signed, rows, cols):
    rng = np.random.default_rng(weight_bits * 100 + act_bits)
    layer = crafted_conv(rng, (4, 4, 2), 4, (3, 3), weight_bits=weight_bits,
                         act_bits=act_bits, act_signed=act_signed, out_bits=act_bits,
                         out_signed=not act_signed, relu=act_signed)
    images = random_images(rng, layer.input, 2, (4, 4, 2))
    _simulate(layer, (rows, cols), images, seed=rows, gap=0.4, stall=0.4)


@pytest.mark.parametrize("weight_bits,act_bits,act_signed", WIDTHS)
@pytest.mark.parametrize("multiplier,pack,rows", [("lut", 1, 4), ("dsp-packed", 2, 4),
                                                  ("dsp-packed", 4, 4), ("dsp-packed", 2, 2),
                                                  ("dsp-packed", 3, 4)])  # rows 3 + 1
def test_systolic_multiplier_kinds(weight_bits, act_bits, act_signed, multiplier, pack, rows):
    rng = np.random.default_rng(weight_bits * 10 + act_bits + pack)
    layer = crafted_conv(rng, (4, 4, 2), 4, (3, 3), weight_bits=weight_bits,
                         act_bits=act_bits, act_signed=act_signed, out_bits=act_bits,
                         out_signed=not act_signed, relu=act_signed)
    images = random_images(rng, layer.input, 2, (4, 4, 2))
    dut, _, _ = _simulate(layer, (rows, 6), images, seed=pack, gap=0.4, stall=0.4,
                          multiplier=multiplier, pack=pack)
    extra = multiplier_latency(multiplier, pack, (weight_bits, act_bits)) - 2
    physical = pack_groups(rows, pack)
    assert dut.latency == SystolicArray(layer, rows, 6).latency + extra - (rows - physical)


@pytest.mark.parametrize("weight_bits,act_bits,act_signed", WIDTHS[:3])
def test_depthwise_lut_multipliers(weight_bits, act_bits, act_signed):
    rng = np.random.default_rng(weight_bits + act_bits)
    layer = crafted_conv(rng, (4, 4, 4), 4, (3, 3), depthwise=True, weight_bits=weight_bits,
                         act_bits=act_bits, act_signed=act_signed, out_bits=act_bits,
                         out_signed=not act_signed, relu=act_signed)
    images = random_images(rng, layer.input, 2, (4, 4, 4))
    _simulate(layer, (2, 1), images, seed=3, gap=0.3, stall=0.3, multiplier="lut")
    with pytest.raises(HwgenError, match="share no operand"):
        DepthwiseEngine(layer, 2, multiplier="dsp-packed")


FOLDINGS = [(1, 1), (6, 1), (1, 36), (6, 36), (2, 4), (3, 12), (6, 9)]


@pytest.mark.parametrize("rows,cols", FOLDINGS)
def test_systolic_foldings(rows, cols):
    rng = np.random.default_rng(7)
    layer = crafted_conv(rng, (5, 4, 4), 6, (3, 3), stride=(2, 1), pads=(1, 0, 2, 1))
    images = random_images(rng, layer.input, 2, (5, 4, 4))
    _simulate(layer, (rows, cols), images, seed=cols, gap=0.3, stall=0.5)


@pytest.mark.parametrize("rows,cols", [(1, 1), (6, 5), (2, 5), (3, 25), (6, 25)])
def test_systolic_cycles_and_latency(rows, cols):
    """Back to back, no stalls: frames leave every ``cycles_per_frame`` cycles; a window far
    from the previous one leaves ``latency`` cycles after its last beat."""
    rng = np.random.default_rng(2)
    layer = crafted_conv(rng, (6, 6, 1), 6, (5, 5))
    images = random_images(rng, layer.input, 4, (6, 6, 1))
    dut, driver, monitor = _simulate(layer, (rows, cols), images)
    out_beats = 4 * 6 // rows
    assert dut.cycles_per_frame == 4 * 25 // cols * 6 // rows
    assert frame_periods(monitor.times, out_beats) == [dut.cycles_per_frame] * 3
    dut, driver, monitor = _simulate(layer, (rows, cols), images[:1],
                                     interval=dut.latency + dut.cycles_per_frame)
    assert monitor.times[-1] - driver.times[-1] == dut.latency


def test_systolic_accepts_next_window_while_computing():
    rng = np.random.default_rng(4)
    layer = crafted_conv(rng, (3, 3, 2), 8, (3, 3))
    images = random_images(rng, layer.input, 3, (3, 3, 2))
    dut, driver, monitor = _simulate(layer, (2, 6), images)
    assert dut.buffered
    assert driver.times[:6] == list(range(6))
    assert driver.times[5] < monitor.times[0]


def test_systolic_rejects_illegal_folding():
    layer = crafted_conv(np.random.default_rng(0), (4, 4, 2), 6, (3, 3))
    with pytest.raises(HwgenError, match=r"rows=4 must divide out_channels=6 \(legal rows: 1, "
                                         r"2, 3, 6\).*cols=5 .*legal cols: 1, 2, 3, 6, 9, 18"):
        SystolicArray(layer, 4, 5)
    depthwise = crafted_conv(np.random.default_rng(0), (4, 4, 2), 2, (3, 3), depthwise=True)
    with pytest.raises(HwgenError, match="groups=1"):
        SystolicArray(depthwise, 1, 1)


@pytest.mark.parametrize("weight_bits,act_bits,act_signed", WIDTHS[:4])
@pytest.mark.parametrize("pe", [1, 2, 4])
def test_depthwise_widths_and_stalls(weight_bits, act_bits, act_signed, pe):
    rng = np.random.default_rng(weight_bits + act_bits)
    layer = crafted_conv(rng, (5, 4, 4), 4, (3, 3), stride=(1, 2), pads=(1, 1, 1, 0),
                         depthwise=True, weight_bits=weight_bits, act_bits=act_bits,
                         act_signed=act_signed, out_bits=act_bits, out_signed=act_signed)
    images = random_images(rng, layer.input, 2, (5, 4, 4))
    _simulate(layer, (pe, 1), images, seed=pe, gap=0.4, stall=0.4)


@pytest.mark.parametrize("pe", [1, 3, 6])
def test_depthwise_cycles_and_latency(pe):
    rng = np.random.default_rng(3)
    layer = crafted_conv(rng, (4, 4, 6), 6, (3, 3), depthwise=True)
    images = random_images(rng, layer.input, 3, (4, 4, 6))
    dut, driver, monitor = _simulate(layer, (pe, 1), images)
    assert dut.cycles_per_frame == 4 * (6 // pe) * 9
    assert frame_periods(monitor.times, 4 * 6 // pe) == [dut.cycles_per_frame] * 2
    dut, driver, monitor = _simulate(layer, (pe, 1), images[:1], interval=dut.latency + 1)
    assert monitor.times[-1] - driver.times[-1] == dut.latency


def test_depthwise_rejects_illegal_pe():
    layer = crafted_conv(np.random.default_rng(0), (4, 4, 6), 6, (3, 3), depthwise=True)
    with pytest.raises(HwgenError, match=r"pe=4: .*legal pe: 1, 2, 3, 6"):
        DepthwiseEngine(layer, 4)
