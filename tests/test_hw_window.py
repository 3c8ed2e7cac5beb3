# amaranth: UnusedElaboratable=no
"""PadUnit and SlidingWindow in Amaranth's simulator: every output code against
:func:`hwgen.reference.windows` under random stalls; throughput and latency."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hwgen.hw.window import SERIALIZERS, PadUnit, SlidingWindow, serializer_for
from hwgen.reference import windows
from hw_conv_layers import frame_periods, window_stream
from hw_helpers import StreamDriver, StreamMonitor, beats_to_frames, frames_to_beats, run


def _images(rng, shape, frames, image_shape):
    if shape.signed:
        lo, hi = -(1 << (shape.width - 1)), 1 << (shape.width - 1)
    else:
        lo, hi = 0, 1 << shape.width
    return rng.integers(lo, hi, size=(frames,) + tuple(image_shape))


def _pad(code, image_shape, pads, lanes, value, frames, *, seed=0, gap=0.0, stall=0.0,
         interval=0):
    rng = np.random.default_rng(seed)
    images = _images(rng, code, frames, image_shape)
    dut = PadUnit(image_shape, pads, lanes, value, code)
    top, left, bottom, right = pads
    expected = np.pad(images, ((0, 0), (top, bottom), (left, right), (0, 0)),
                      constant_values=value).reshape(frames, -1)
    driver = StreamDriver(dut.i, frames_to_beats(images.reshape(frames, -1), lanes), rng=rng,
                          gap=gap, interval=interval)
    monitor = StreamMonitor(dut.o, expected.size // lanes, rng=rng, stall=stall)
    run(dut, driver, monitor)
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, expected.shape[1]), expected)
    return dut, driver, monitor


@pytest.mark.parametrize("code,value", [(signed(2), -2), (unsigned(16), 65535), (signed(8), 3)])
@pytest.mark.parametrize("image_shape,pads,lanes", [
    ((3, 4, 2), (1, 2, 0, 1), 1), ((2, 2, 4), (0, 0, 2, 0), 4), ((4, 3, 6), (2, 1, 1, 2), 3),
    ((1, 1, 1), (1, 1, 1, 1), 1), ((3, 3, 2), (0, 0, 0, 0), 2)])
def test_pad_values_under_stalls(code, value, image_shape, pads, lanes):
    _pad(code, image_shape, pads, lanes, value, 3, seed=lanes, gap=0.4, stall=0.4)


@pytest.mark.parametrize("image_shape,pads,lanes", [
    ((3, 4, 2), (1, 2, 0, 1), 1), ((4, 3, 6), (2, 1, 1, 2), 3), ((2, 5, 1), (0, 0, 3, 2), 1)])
def test_pad_cycles_and_latency(image_shape, pads, lanes):
    frames = 4
    dut, driver, monitor = _pad(signed(4), image_shape, pads, lanes, 1, frames)
    out_beats = dut.cycles_per_frame
    assert out_beats == np.prod(dut.out_shape) // lanes
    assert frame_periods(monitor.times, out_beats) == [out_beats] * (frames - 1)
    # One frame alone: the latency after its last input beat.
    dut, driver, monitor = _pad(signed(4), image_shape, pads, lanes, 1, 1)
    assert monitor.times[-1] - driver.times[-1] == dut.latency


def _window(code, image_shape, kernel, stride, in_lanes, out_lanes, order, frames, *, seed=0,
            gap=0.0, stall=0.0, interval=0, serializer="shift"):
    rng = np.random.default_rng(seed)
    images = _images(rng, code, frames, image_shape)
    dut = SlidingWindow(code, image_shape, kernel, stride, in_lanes, out_lanes, order,
                        serializer)
    expected = window_stream(images, kernel, stride, out_lanes, order)
    driver = StreamDriver(dut.i, frames_to_beats(images.reshape(frames, -1), in_lanes),
                          rng=rng, gap=gap, interval=interval)
    monitor = StreamMonitor(dut.o, expected.size // out_lanes, rng=rng, stall=stall)
    run(dut, driver, monitor)
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, expected.shape[1]), expected)
    return dut, driver, monitor


CASES = [  # image (H, W, C), kernel, stride, in_lanes, out_lanes, order
    ((6, 6, 1), (3, 3), (1, 1), 1, 1, "conv"),
    ((6, 7, 2), (3, 3), (1, 1), 1, 9, "conv"),        # beats span kernel positions
    ((8, 8, 1), (5, 5), (1, 1), 1, 5, "conv"),        # LeNet-like first layer
    ((7, 9, 3), (3, 3), (2, 2), 3, 27, "conv"),       # whole window per beat, dropped edges
    ((5, 6, 4), (1, 1), (2, 2), 2, 4, "conv"),        # 1×1 stride 2: sy > kh
    ((9, 8, 2), (7, 7), (1, 1), 2, 14, "conv"),
    ((6, 6, 4), (2, 3), (3, 2), 4, 6, "conv"),        # asymmetric kernel and stride
    ((5, 5, 4), (3, 3), (1, 1), 2, 2, "depthwise"),
    ((6, 7, 6), (3, 3), (2, 2), 6, 3, "depthwise"),
    ((4, 4, 2), (2, 2), (2, 2), 1, 1, "depthwise"),   # a pooling window
    ((3, 3, 4), (3, 3), (1, 1), 4, 4, "depthwise"),   # one output pixel
]


@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest.mark.parametrize("image_shape,kernel,stride,in_lanes,out_lanes,order", CASES)
@pytest.mark.parametrize("gap,stall", [(0.4, 0.4), (0.0, 0.8), (0.7, 0.0)])
def test_window_values_under_stalls(image_shape, kernel, stride, in_lanes, out_lanes, order,
                                    gap, stall, serializer):
    _window(signed(3), image_shape, kernel, stride, in_lanes, out_lanes, order, 3,
            seed=out_lanes, gap=gap, stall=stall, serializer=serializer)


@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest.mark.parametrize("code", [unsigned(2), signed(16), unsigned(16)])
def test_window_widths(code, serializer):
    _window(code, (5, 5, 2), (3, 3), (1, 1), 2, 6, "conv", 2, seed=3, gap=0.3, stall=0.3,
            serializer=serializer)


@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest.mark.parametrize("image_shape,kernel,stride,in_lanes,out_lanes,order", CASES)
def test_window_cycles_per_frame(image_shape, kernel, stride, in_lanes, out_lanes, order,
                                 serializer):
    """Back to back, no stalls: the frame period is the stated bound (here reached exactly),
    never below the input's or the output's beats, whichever serializer."""
    frames = 4
    dut, driver, monitor = _window(signed(4), image_shape, kernel, stride, in_lanes, out_lanes,
                                   order, frames, serializer=serializer)
    in_beats = int(np.prod(image_shape)) // in_lanes
    out_beats = dut.out_shape[0] * dut.out_shape[1] * dut.window_beats
    assert dut.cycles_per_frame >= max(in_beats, out_beats)
    assert frame_periods(monitor.times, out_beats) == [dut.cycles_per_frame] * (frames - 1)


@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest.mark.parametrize("image_shape,kernel,stride,in_lanes,out_lanes,order", CASES)
def test_window_latency(image_shape, kernel, stride, in_lanes, out_lanes, order, serializer):
    """Beats far apart, so every window finds the serializer idle: the frame's last window
    leaves ``latency`` cycles after the last beat of its bottom row."""
    dut = SlidingWindow(signed(4), image_shape, kernel, stride, in_lanes, out_lanes, order)
    _, driver, monitor = _window(signed(4), image_shape, kernel, stride, in_lanes, out_lanes,
                                 order, 1, interval=dut.latency + 2, serializer=serializer)
    height, width, channels = image_shape
    used_rows = (dut.out_shape[0] - 1) * stride[0] + kernel[0]
    needed = used_rows * width * channels // in_lanes - 1
    assert monitor.times[-1] - driver.times[needed] == dut.latency


def test_window_keeps_accepting_while_serializing():
    """A slow output (9 beats per window) does not hold the input back: the whole next frame's
    first rows go in while the windows of the current frame leave."""
    dut, driver, monitor = _window(signed(4), (6, 6, 1), (3, 3), (1, 1), 1, 1, "conv", 2)
    assert np.diff(driver.times[:36]).tolist() == [1] * 35
    second_frame_rows = driver.times[36 + 3 * 6 - 1]
    assert second_frame_rows < monitor.times[16 * 9 - 1]


def test_xilinx_builds_select_and_lattice_builds_shift():
    assert [serializer_for(target) for target in ("generic", "ecp5", "ice40")] == \
        ["select", "shift", "shift"]


def test_window_stores_rows_not_frames():
    dut = SlidingWindow(signed(8), (64, 32, 4), (3, 3), (1, 1), 4, 4, "conv")
    assert dut.slots == 6  # 6 rows of 64


@pytest.mark.parametrize("kwargs,match", [
    (dict(in_lanes=3), "in_lanes must divide"),
    (dict(out_lanes=4), "out_lanes must divide 18"),
    (dict(out_lanes=9, order="depthwise"), "out_lanes must divide 2"),
    (dict(order="im2row"), "order must be"),
    (dict(kernel=(7, 1)), "must fit"),
    (dict(serializer="mux"), "serializer must be one of"),
])
def test_window_rejects_bad_arguments(kwargs, match):
    args = dict(code_shape=signed(4), shape=(6, 6, 2), kernel=(3, 3), stride=(1, 1),
                in_lanes=1, out_lanes=2, order="conv")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SlidingWindow(**args)


def test_reference_windows_order():
    """The expected window stream is the reference's windows, channels fastest."""
    images = np.arange(2 * 4 * 4 * 2).reshape(2, 4, 4, 2)
    stream = window_stream(images, (2, 2), (2, 2), 1, "conv").reshape(2, 2, 2, 2, 2, 2)
    np.testing.assert_array_equal(stream[1, 1, 0], images[1, 2:4, 0:2])
    np.testing.assert_array_equal(windows(images, (2, 2), (2, 2), (0, 0, 0, 0), 0)[1, 1, 0],
                                  images[1, 2:4, 0:2])
