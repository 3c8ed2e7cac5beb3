# amaranth: UnusedElaboratable=no
"""AddUnit in Amaranth's simulator, bit-exact against a numpy model of the add contract."""

from fractions import Fraction

import numpy as np
import pytest

from hwgen.errors import HwgenError
from hwgen.hw.add import AddUnit
from hwgen.qgraph import ActQuant, QAdd
from hwgen.reference import Rounding, rshift_round
from hw_helpers import StreamDriver, StreamMonitor, beats_to_frames, frames_to_beats, run


def _quant(bits, is_signed, zero_point):
    return ActQuant(scale=1.0, zero_point=zero_point, bits=bits, signed=is_signed)


def _layer(quant_a, quant_b, output, multiplier_a, multiplier_b, shift, shape, *,
           rounding=Rounding.HALF_UP, clamp=None):
    lo, hi = clamp if clamp is not None else (output.lo, output.hi)
    return QAdd(name="add", inputs=("x", "y"), shape=shape, input_a=quant_a, input_b=quant_b,
                output=output, multiplier_a=multiplier_a, multiplier_b=multiplier_b,
                shift=shift, clamp_lo=lo, clamp_hi=hi, rounding=rounding)


def _expected(layer, codes_a, codes_b):
    acc = ((codes_a - layer.input_a.zero_point) * layer.multiplier_a
           + (codes_b - layer.input_b.zero_point) * layer.multiplier_b)
    return np.clip(layer.output.zero_point + rshift_round(acc, layer.shift, layer.rounding),
                   layer.clamp_lo, layer.clamp_hi)


def _codes(rng, quant, frames, length):
    codes = rng.integers(quant.lo, quant.hi + 1, size=(frames, length))
    codes[0, :2] = [quant.lo, quant.hi]  # both ends of the code range
    return codes


def _check(layer, lanes, *, seed=0, frames=3, gap_a=0.3, gap_b=0.3, stall=0.3):
    rng = np.random.default_rng(seed)
    length = int(np.prod(layer.shape))
    codes_a = _codes(rng, layer.input_a, frames, length)
    codes_b = _codes(rng, layer.input_b, frames, length)
    dut = AddUnit(layer, lanes)
    driver_a = StreamDriver(dut.a, frames_to_beats(codes_a, lanes), rng=rng, gap=gap_a)
    driver_b = StreamDriver(dut.b, frames_to_beats(codes_b, lanes), rng=rng, gap=gap_b)
    monitor = StreamMonitor(dut.o, codes_a.size // lanes, rng=rng, stall=stall)
    run(dut, driver_a, driver_b, monitor)
    want = _expected(layer, codes_a, codes_b)
    got = beats_to_frames(monitor.beats, length)
    np.testing.assert_array_equal(got, want)
    return driver_a, driver_b, monitor, dut, want


@pytest.mark.parametrize("rounding", [r for r in Rounding if r is not Rounding.FLOAT32_ORT])
@pytest.mark.parametrize("lanes", [1, 3, 6])
@pytest.mark.parametrize("bits_a,signed_a,zp_a,bits_b,signed_b,zp_b,out_bits,out_signed,zp_y", [
    (8, True, -5, 8, True, 17, 8, True, 3),
    (8, False, 128, 4, False, 0, 8, False, 10),
    (2, True, 0, 16, True, -1000, 16, True, 123),
    (16, False, 40000, 3, True, -2, 4, False, 7),
])
def test_add_matches_reference(rounding, lanes, bits_a, signed_a, zp_a, bits_b, signed_b, zp_b,
                               out_bits, out_signed, zp_y):
    rng = np.random.default_rng(lanes * 7 + bits_a)
    multipliers = rng.integers(1 << 15, 1 << 16, size=2)
    # M / 2^n about 2^(out_bits − max(bits)) × a little: typical sums land inside the output
    # range, the extreme codes saturate.
    shift = 16 + max(bits_a, bits_b) - out_bits + 1
    layer = _layer(_quant(bits_a, signed_a, zp_a), _quant(bits_b, signed_b, zp_b),
                   _quant(out_bits, out_signed, zp_y), int(multipliers[0]), int(multipliers[1]),
                   max(shift, 0), (2, 2, 6), rounding=rounding)
    *_, want = _check(layer, lanes, seed=lanes)
    assert want.min() < want.max()


@pytest.mark.parametrize("rounding", [r for r in Rounding if r is not Rounding.FLOAT32_ORT])
def test_add_saturates_both_ends_and_clamp(rounding):
    """Small multipliers, shift 0 and 1: most sums leave the range; a ReLU-style clamp."""
    quant = _quant(8, True, 0)
    for shift, clamp in ((0, None), (1, (-1, 5))):
        layer = _layer(quant, _quant(8, False, 100), _quant(4, True, -1), 3, 1, shift, (3, 1, 4),
                       rounding=rounding, clamp=clamp)
        *_, want = _check(layer, 2, seed=shift)
        lo, hi = clamp if clamp else (layer.output.lo, layer.output.hi)
        assert want.min() == lo and want.max() == hi


@pytest.mark.parametrize("shift", [1, 2])
def test_add_half_even_ties(shift):
    """``M_a = M_b = 1``: a half (shift 1) or a quarter (shift 2) of the sums are ties, of both
    signs, and round to the even code, under random stalls."""
    layer = _layer(_quant(6, True, 3), _quant(6, True, -2), _quant(8, True, -4), 1, 1, shift,
                   (2, 2, 6), rounding=Rounding.HALF_EVEN)
    *_, want = _check(layer, 3, seed=shift, frames=4)
    rng = np.random.default_rng(shift)  # the codes _check drew
    length = int(np.prod(layer.shape))
    sums = (_codes(rng, layer.input_a, 4, length) - 3) + (_codes(rng, layer.input_b, 4, length) + 2)
    ties = sums % (1 << shift) == 1 << (shift - 1)
    assert ties.mean() > 0.15 and (sums[ties] > 0).any() and (sums[ties] < 0).any()
    exact = np.vectorize(lambda total: round(Fraction(int(total), 1 << shift)))(sums)
    np.testing.assert_array_equal(want, exact - 4)


def test_add_extreme_parameters():
    """The widest operands and multipliers, shift 62 (rounds to 0 or ±1) and zero multipliers."""
    wide = _quant(16, True, -32768)
    for multipliers, shift in (((1 << 16) - 1, 1 << 16), 40), ((0, 5), 1), ((7, 0), 62):
        layer = _layer(wide, _quant(16, False, 65535), _quant(16, True, 0), *multipliers, shift,
                       (1, 2, 4))
        _check(layer, 4, seed=shift, frames=4)


def test_add_independent_stalls():
    """One input much slower than the other, and the output heavily back-pressured."""
    layer = _layer(_quant(8, True, 1), _quant(8, True, -1), _quant(8, True, 0), 40000, 50000, 17,
                   (2, 3, 4))
    for gap_a, gap_b, stall in ((0.8, 0.0, 0.0), (0.0, 0.8, 0.5), (0.5, 0.5, 0.8)):
        _check(layer, 2, seed=int(gap_a * 10), gap_a=gap_a, gap_b=gap_b, stall=stall)


def test_add_latency_and_throughput():
    layer = _layer(_quant(8, True, 1), _quant(8, True, -1), _quant(8, True, 0), 40000, 50000, 17,
                   (2, 3, 4))
    driver_a, driver_b, monitor, dut, _ = _check(layer, 2, frames=3, gap_a=0.0, gap_b=0.0,
                                                 stall=0.0)
    assert driver_a.times == driver_b.times
    assert np.diff(monitor.times).tolist() == [1] * (len(monitor.times) - 1)
    assert [t - s for s, t in zip(driver_a.times, monitor.times)] == [dut.latency] * len(
        driver_a.times)
    assert monitor.times[dut.cycles_per_frame] - monitor.times[0] == dut.cycles_per_frame


@pytest.mark.parametrize("lanes", [0, 5, "2"])
def test_add_rejects_illegal_lanes(lanes):
    layer = _layer(_quant(8, True, 0), _quant(8, True, 0), _quant(8, True, 0), 1, 1, 0, (2, 2, 6))
    with pytest.raises(HwgenError, match="lanes must divide the 6 channels"):
        AddUnit(layer, lanes)
