# amaranth: UnusedElaboratable=no
"""ConcatUnit in Amaranth's simulator: parts passed or requantized, per pixel in turn, against
a numpy model of the concat contract written here."""

import numpy as np
import pytest

from hwgen.errors import HwgenError
from hwgen.hw.concat import ConcatUnit
from hwgen.qgraph import ActQuant, QConcat
from hwgen.reference import Rounding, rshift_round
from hw_helpers import StreamDriver, StreamMonitor, beats_to_frames, frames_to_beats, run

OUT = ActQuant(scale=0.1, zero_point=-4, bits=8, signed=True)


def _layer(quants, channels, multipliers, shift, pixels=(2, 3), clamp=None,
           rounding=Rounding.HALF_UP):
    lo, hi = clamp or (OUT.lo, OUT.hi)
    return QConcat(name="cat", inputs=tuple(f"x{i}" for i in range(len(quants))),
                   shape=(*pixels, sum(channels)), channels=tuple(channels),
                   input_quants=tuple(quants), output=OUT, multipliers=tuple(multipliers),
                   shift=shift, clamp_lo=lo, clamp_hi=hi, rounding=rounding)


def _expected(layer, parts):
    out = []
    for part, quant, multiplier in zip(parts, layer.input_quants, layer.multipliers):
        if multiplier:
            part = OUT.zero_point + rshift_round((part - quant.zero_point) * multiplier,
                                                 layer.shift, layer.rounding)
        out.append(np.clip(part, layer.clamp_lo, layer.clamp_hi))
    return np.concatenate(out, axis=-1)


def _check(layer, lanes, *, frames=3, seed=0, gaps=None, stall=0.3):
    rng = np.random.default_rng(seed)
    pixels = layer.shape[:-1]
    parts = [rng.integers(q.lo, q.hi + 1, size=(frames, *pixels, c))
             for q, c in zip(layer.input_quants, layer.channels)]
    dut = ConcatUnit(layer, lanes)
    gaps = gaps or [0.3] * len(parts)
    drivers = [StreamDriver(port, frames_to_beats(part.reshape(frames, -1), lanes), rng=rng,
                            gap=gap) for port, part, gap in zip(dut.inputs, parts, gaps)]
    length = int(np.prod(layer.shape))
    monitor = StreamMonitor(dut.o, frames * length // lanes, rng=rng, stall=stall)
    run(dut, *drivers, monitor)
    got = beats_to_frames(monitor.beats, length).reshape(frames, *layer.shape)
    np.testing.assert_array_equal(got, _expected(layer, parts))
    return drivers, monitor, dut


@pytest.mark.parametrize("lanes", [1, 2])
def test_passed_parts(lanes):
    layer = _layer([OUT, OUT], [4, 2], [0, 0], 0)
    _check(layer, lanes, seed=lanes)


@pytest.mark.parametrize("rounding", [Rounding.HALF_UP, Rounding.HALF_EVEN, Rounding.FLOOR])
@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_requantized_and_passed_parts(rounding, lanes):
    other = ActQuant(scale=0.37, zero_point=100, bits=8, signed=False)
    wide = ActQuant(scale=0.01, zero_point=0, bits=12, signed=True)
    layer = _layer([OUT, other, wide], [4, 8, 4], [0, 60620, 1638], 14, rounding=rounding)
    _check(layer, lanes, seed=lanes + 1)


def test_clamp_applies_to_every_part():
    other = ActQuant(scale=0.2, zero_point=3, bits=6, signed=True)
    layer = _layer([OUT, other], [2, 2], [0, 32768], 14, clamp=(OUT.zero_point, 50))
    _check(layer, 2, seed=9)


def test_vectors_and_one_slow_input():
    layer = _layer([OUT, OUT, OUT], [3, 6, 9], [0, 0, 0], 0, pixels=())
    for gaps in ([0.9, 0.0, 0.0], [0.0, 0.0, 0.9]):
        _check(layer, 3, seed=4, gaps=gaps, stall=0.5)


def test_full_rate():
    layer = _layer([OUT, OUT], [4, 2], [0, 0], 0, pixels=(3, 3))
    _, monitor, dut = _check(layer, 2, frames=2, gaps=[0.0, 0.0], stall=0.0)
    assert np.diff(monitor.times).tolist() == [1] * (len(monitor.times) - 1)
    assert dut.cycles_per_frame == 27


def test_lanes_must_divide_every_part():
    layer = _layer([OUT, OUT], [4, 6], [0, 0], 0)
    with pytest.raises(HwgenError, match=r"lanes must divide the channels of every input "
                                         r"\(4, 6; legal: 1, 2\), not 4"):
        ConcatUnit(layer, 4)
