# amaranth: UnusedElaboratable=no
"""Upsample in Amaranth's simulator: nearest-neighbour repeats and zero insertion, against
numpy (``np.repeat``, and a strided assignment into an array of the zero point)."""

import numpy as np
import pytest

from hwgen.errors import HwgenError
from hwgen.hw.upsample import Upsample
from hwgen.qgraph import ActQuant, QUpsample
from hw_helpers import StreamDriver, StreamMonitor, beats_to_frames, frames_to_beats, run


def _layer(in_shape, factor, mode, quant=ActQuant(1.0, -3, 8, True)):
    height, width, channels = in_shape
    if mode == "nearest":
        out = (height * factor[0], width * factor[1], channels)
    else:
        out = ((height - 1) * factor[0] + 1, (width - 1) * factor[1] + 1, channels)
    return QUpsample(name="up", inputs=("x",), factor=factor, mode=mode, in_shape=in_shape,
                     out_shape=out, input=quant, output=quant)


def _expected(layer, images):
    sy, sx = layer.factor
    if layer.mode == "nearest":
        return np.repeat(np.repeat(images, sy, axis=1), sx, axis=2)
    out = np.full((len(images), *layer.out_shape), layer.input.zero_point)
    out[:, ::sy, ::sx] = images
    return out


def _check(layer, lanes, *, frames=3, seed=0, gap=0.3, stall=0.3, interval=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(layer.input.lo, layer.input.hi + 1, size=(frames, *layer.in_shape))
    dut = Upsample(layer, lanes)
    driver = StreamDriver(dut.i, frames_to_beats(images.reshape(frames, -1), lanes), rng=rng,
                          gap=gap, interval=interval)
    length = int(np.prod(layer.out_shape))
    monitor = StreamMonitor(dut.o, frames * length // lanes, rng=rng, stall=stall)
    run(dut, driver, monitor)
    got = beats_to_frames(monitor.beats, length).reshape(frames, *layer.out_shape)
    np.testing.assert_array_equal(got, _expected(layer, images))
    return driver, monitor, dut


@pytest.mark.parametrize("mode", ["nearest", "zeros"])
@pytest.mark.parametrize("in_shape,factor,lanes", [
    ((3, 4, 2), (2, 2), 1), ((3, 4, 2), (2, 2), 2), ((2, 3, 6), (1, 3), 3),
    ((4, 1, 4), (3, 1), 2), ((1, 5, 2), (1, 2), 1), ((2, 2, 1), (2, 2), 1)])
def test_upsample_matches_numpy_under_stalls(mode, in_shape, factor, lanes):
    _check(_layer(in_shape, factor, mode), lanes, seed=sum(in_shape) + lanes)


@pytest.mark.parametrize("mode", ["nearest", "zeros"])
def test_upsample_runs_at_its_output_rate(mode):
    layer = _layer((4, 4, 2), (2, 2), mode)
    driver, monitor, dut = _check(layer, 2, frames=4, gap=0.0, stall=0.0)
    per_frame = dut.cycles_per_frame
    starts = monitor.times[::per_frame]
    assert all(later - earlier == per_frame for earlier, later in zip(starts[1:], starts[2:]))


def test_upsample_latency_with_an_input_at_its_pace():
    """Input rows arriving as fast as their output leaves: the last output beat follows the
    last input beat by the last row's output (sy rows) and the read register."""
    layer = _layer((3, 4, 2), (2, 2), "nearest")
    driver, monitor, dut = _check(layer, 2, frames=1, gap=0.0, stall=0.0, interval=4)
    assert monitor.times[-1] - driver.times[-1] == dut.latency


def test_upsample_rejects_illegal_lanes():
    with pytest.raises(HwgenError, match="lanes must divide its 2 channels"):
        Upsample(_layer((2, 2, 2), (2, 2), "nearest"), 3)
