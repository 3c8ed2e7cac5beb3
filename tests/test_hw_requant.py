"""Requant in Amaranth's simulator, bit-exact against ``hwgen.reference.requantize``."""

import dataclasses
from fractions import Fraction

import numpy as np
import pytest

from hwgen.hw.requant import Requant
from hwgen.reference import Rounding, float32_band, requantize
from hw_helpers import StreamDriver, StreamMonitor, beats_to_frames, frames_to_beats, run
from hw_layers import crafted_layer


def _accumulators(rng, layer, frames):
    """Random accumulators of log-uniform magnitude over the whole signed(acc_bits) range (so
    that every regime, saturated or not, shows up), its two ends included."""
    bound = (1 << (layer.acc_bits - 1))
    magnitude = 1 << rng.integers(0, layer.acc_bits, size=(frames, layer.out_features))
    acc = np.clip(rng.integers(-magnitude, magnitude), -bound, bound - 1)
    acc[0, :] = -bound
    acc[1, :] = bound - 1
    acc[2, :] = 0
    return acc


def _ties(rng, layer, frames):
    """Accumulators whose ``(acc + bias) · M`` is an odd multiple of ``2^(n−1)`` (a tie) in
    the even frames, a tie plus or minus one in the odd ones; the quotients below the ties
    take both parities and both signs; all fit ``signed(acc_bits)``."""
    half = (np.int64(1) << layer.shift) >> 1
    room = ((1 << (layer.acc_bits - 2)) - np.abs(layer.bias)) // (2 * half)
    odd = 2 * rng.integers(-np.minimum(room, 40), np.minimum(room, 40),
                           size=(frames, layer.out_features)) + 1
    acc = half * odd - layer.bias
    acc[1::2] += rng.choice([-1, 1], size=acc[1::2].shape)
    return acc


def _check(layer, lanes, *, seed=0, frames=8, gap=0.3, stall=0.3, accumulators=_accumulators):
    rng = np.random.default_rng(seed)
    acc = accumulators(rng, layer, frames)
    dut = Requant(layer, lanes)
    driver = StreamDriver(dut.i, frames_to_beats(acc, lanes), rng=rng, gap=gap)
    monitor = StreamMonitor(dut.o, acc.size // lanes, rng=rng, stall=stall)
    run(dut, driver, monitor)
    want = requantize(acc + layer.bias, layer.multiplier, layer.shift, layer.output.zero_point,
                      layer.clamp_lo, layer.clamp_hi, layer.rounding, layer.negative_multiplier,
                      layer.bias_fraction, layer.negative_fraction)
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, layer.out_features), want)
    return driver, monitor, dut


@pytest.mark.parametrize("rounding", [r for r in Rounding if r is not Rounding.FLOAT32_ORT])
@pytest.mark.parametrize("lanes", [1, 2, 6])
@pytest.mark.parametrize("out_bits,out_signed", [(2, True), (8, False), (16, True)])
@pytest.mark.parametrize("common_shift", [False, True])
def test_requant_matches_reference(rounding, lanes, out_bits, out_signed, common_shift):
    rng = np.random.default_rng(lanes)
    layer = crafted_layer(rng, 5, 6, out_bits=out_bits, out_signed=out_signed,
                          shifts=rng.integers(8, 24) if common_shift else None,
                          rounding=rounding)
    _check(layer, lanes, frames=16)


@pytest.mark.parametrize("rounding", [r for r in Rounding if r is not Rounding.FLOAT32_ORT])
@pytest.mark.parametrize("lanes", [1, 3])
@pytest.mark.parametrize("slopes", ["zero", "small", "per_channel", "above_one"])
def test_requant_two_slopes(rounding, lanes, slopes):
    """A folded LeakyReLU/PReLU: negative sums take their own multiplier (0, a tenth, one per
    channel, or larger than the positive one), under stalls."""
    rng = np.random.default_rng(lanes + len(slopes))
    layer = crafted_layer(rng, 5, 6, out_bits=8, out_signed=True, rounding=rounding)
    factor = {"zero": np.zeros(6), "small": np.full(6, 0.1),
              "per_channel": rng.uniform(0, 1, 6), "above_one": np.full(6, 1.7)}[slopes]
    negative = np.round(layer.multiplier * factor).astype(np.int64)
    layer = dataclasses.replace(layer, negative_multiplier=negative)
    _, monitor, _ = _check(layer, lanes, frames=16)
    assert any(value < layer.output.zero_point for beat in monitor.beats
               for value in beat["data"]) or slopes == "zero"


@pytest.mark.parametrize("rounding", [r for r in Rounding if r is not Rounding.FLOAT32_ORT])
@pytest.mark.parametrize("lanes", [1, 2])
@pytest.mark.parametrize("slopes", [False, True])
def test_requant_bias_fraction(rounding, lanes, slopes):
    """A real bias's fraction added after the multiplication (up to ±M/2, both signs), with
    and without a second slope's own fraction, under stalls."""
    rng = np.random.default_rng(lanes + 2 * slopes)
    layer = crafted_layer(rng, 5, 6, out_bits=8, out_signed=True, rounding=rounding)
    fraction = rng.integers(-(layer.multiplier // 2), layer.multiplier // 2 + 1)
    fraction[0] = layer.multiplier[0] // 2
    changes = dict(bias_fraction=fraction)
    if slopes:
        changes.update(negative_multiplier=layer.multiplier // 4,
                       negative_fraction=fraction // 4 - 1)
    _check(dataclasses.replace(layer, **changes), lanes, frames=16)


@pytest.mark.parametrize("rounding", [r for r in Rounding if r is not Rounding.FLOAT32_ORT])
@pytest.mark.parametrize("shifts", [0, 1, 40, 62, [0, 3, 17, 40, 1, 62]])
def test_requant_extreme_parameters(rounding, shifts):
    """Shift 0 saturates almost everything; large shifts round to about ±1/2; M = 2^16 − 1."""
    rng = np.random.default_rng(7)
    layer = crafted_layer(rng, 4, 6, weight_bits=16, act_bits=16, extreme=True,
                          multipliers=[(1 << 16) - 1, 1 << 16, 1, 0, 40000, 1 << 15],
                          shifts=shifts, rounding=rounding, relu=True)
    _check(layer, 3, seed=1)


@pytest.mark.parametrize("rounding", [r for r in Rounding if r is not Rounding.FLOAT32_ORT])
@pytest.mark.parametrize("shifts", [40, [0, 3, 17, 40, 1, 62]])
def test_requant_rounding_wider_than_product(rounding, shifts):
    """Narrow accumulators with a large shift: ``2^(n−1)`` is wider than the product, and the
    rounding stage must be as wide as it."""
    rng = np.random.default_rng(3)
    layer = crafted_layer(rng, 4, 6, weight_bits=2, act_bits=2, extreme=True, out_bits=16,
                          multipliers=[1, 1 << 16, 1, 3, 1 << 15, 2], shifts=shifts,
                          rounding=rounding)
    _check(layer, 2, seed=2)


def test_requant_latency_and_throughput():
    layer = crafted_layer(np.random.default_rng(3), 4, 4)
    driver, monitor, dut = _check(layer, 2, gap=0.0, stall=0.0)
    assert np.diff(monitor.times).tolist() == [1] * (len(monitor.times) - 1)
    assert [t - s for s, t in zip(driver.times, monitor.times)] == [dut.latency] * len(
        driver.times)


@pytest.mark.parametrize("shifts", [2, [1, 2, 3, 9, 1, 12]])
def test_requant_half_even_ties(shifts):
    """Ties of both signs round to the even code (the carry in is bit ``n`` of the product);
    one off a tie rounds to nearest. Odd multipliers keep ``acc · M`` on the ties."""
    rng = np.random.default_rng(5)
    layer = crafted_layer(rng, 4, 6, out_bits=16, multipliers=[1, 3, 1, 5, 7, 1],
                          shifts=shifts, rounding=Rounding.HALF_EVEN)
    _, monitor, _ = _check(layer, 2, seed=3, frames=6, accumulators=_ties)
    got = beats_to_frames(monitor.beats, layer.out_features)
    acc = _ties(np.random.default_rng(3), layer, 6)
    exact = [[round(Fraction(int((a + b) * m), 1 << int(n))) + layer.output.zero_point
              for a, b, m, n in zip(row, layer.bias, layer.multiplier, layer.shift)]
             for row in acc]
    np.testing.assert_array_equal(got, exact)
    half_up = requantize(acc + layer.bias, layer.multiplier, layer.shift,
                         layer.output.zero_point, layer.clamp_lo, layer.clamp_hi)
    assert np.mean(got[::2] != half_up[::2]) > 0.3  # the ties do differ from half up


def _float32_layer(rng, lanes, out_bits, out_signed, common_shift):
    """A layer of onnxruntime's float32 requantization: 24-bit multipliers (a float32
    significand), shifts that put typical sums in the output range."""
    layer = crafted_layer(rng, 512, 6, out_bits=out_bits, out_signed=out_signed,
                          multipliers=rng.integers(1 << 23, 1 << 24, size=6),
                          shifts=1, rounding=Rounding.FLOAT32_ORT)
    shift = (layer.acc_bits - 2) + 24 - (out_bits - 1)  # the sums' range onto the codes
    shifts = shift if common_shift else rng.integers(shift - 1, shift + 2, size=6)
    return dataclasses.replace(layer, shift=np.broadcast_to(shifts, 6).astype(np.int64).copy())


def _float32_band_sums(rng, layer, frames):
    """Accumulators whose ``(acc + bias) · M`` lies in the float32 band (see
    :func:`hwgen.reference.float32_band`) in the even frames, random ones in the odd frames.
    The band holds about one sum in 2^17 for 8-bit outputs (2^9 for 16-bit), so the search
    scans every sum of a window 2^22 wide."""
    bound = 1 << (layer.acc_bits - 2)
    acc = rng.integers(-bound, bound, size=(frames, layer.out_features))
    for channel in range(layer.out_features):
        hits = []
        for _ in range(32):  # windows until a few sums are found
            start = int(rng.integers(-bound, bound - (1 << 22)))
            sums = np.arange(start, start + (1 << 22)) + layer.bias[channel]
            hits.extend(sums[float32_band(sums * layer.multiplier[channel],
                                          layer.shift[channel])])
            if len(hits) >= 4:
                break
        assert len(hits) >= 4
        acc[0::2, channel] = rng.choice(hits, size=len(acc[0::2])) - layer.bias[channel]
    return acc


@pytest.mark.parametrize("lanes", [1, 3])
@pytest.mark.parametrize("out_bits,out_signed", [(8, False), (8, True), (16, True)])
@pytest.mark.parametrize("common_shift", [False, True])
def test_requant_float32_matches_reference_and_float32(lanes, out_bits, out_signed,
                                                       common_shift):
    """``Rounding.FLOAT32_ORT``: the hardware equals the reference, and the reference equals
    numpy's own float32 ``rint(fl(acc) · fl(M · 2^−n))`` (the arithmetic of onnxruntime's
    requantizing kernels), on sums in the band where half-to-even rounding would differ."""
    rng = np.random.default_rng(out_bits + lanes)
    layer = _float32_layer(rng, lanes, out_bits, out_signed, common_shift)
    driver, monitor, dut = _check(layer, lanes, frames=16, accumulators=_float32_band_sums)
    assert dut.latency == 9
    acc = _float32_band_sums(np.random.default_rng(1), layer, 64) + layer.bias
    scale = np.ldexp(layer.multiplier.astype(np.float64), -layer.shift).astype(np.float32)
    assert np.all(scale.astype(np.float64) == np.ldexp(layer.multiplier.astype(np.float64),
                                                         -layer.shift))
    zero_point = layer.output.zero_point
    float32 = np.clip(np.rint(acc.astype(np.float32) * scale).astype(np.int64) + zero_point,
                      layer.clamp_lo, layer.clamp_hi)
    want = requantize(acc, layer.multiplier, layer.shift, zero_point, layer.clamp_lo,
                      layer.clamp_hi, layer.rounding)
    np.testing.assert_array_equal(want, float32)
    half_even = requantize(acc, layer.multiplier, layer.shift, zero_point, layer.clamp_lo,
                           layer.clamp_hi, Rounding.HALF_EVEN)
    assert np.any(half_even != want)  # the band matters
