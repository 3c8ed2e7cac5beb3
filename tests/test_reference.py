"""The integer contract, pinned by hand-computed cases and by exact rational arithmetic."""

from fractions import Fraction
import math

import numpy as np
import pytest

from hwgen.errors import HwgenError
from hwgen.graph import Graph
from hwgen.quantize import ActQuant, QDense, QGraph, quantize, scale_to_multiplier
from hwgen.reference import (Rounding, dense_accumulate, requantize, rshift_round, run_float,
                             run_integer)


def exact_rshift_round(value, shift):
    """floor((v + 2^(n-1)) / 2^n) with Python integers (no numpy involved)."""
    if shift == 0:
        return value
    return math.floor(Fraction(value + (1 << (shift - 1)), 1 << shift))


@pytest.mark.parametrize("value, shift, expected", [
    (5, 1, 3),      # 2.5 -> 3: ties go up
    (-5, 1, -2),    # -2.5 -> -2: ties go toward +inf, not away from zero
    (-6, 2, -1),    # -1.5 -> -1
    (-7, 2, -2),    # -1.75 -> -2
    (7, 2, 2),      # 1.75 -> 2
    (6, 2, 2),      # 1.5 -> 2
    (-1, 1, 0),     # -0.5 -> 0
    (-3, 1, -1),    # -1.5 -> -1
    (123, 0, 123),  # n = 0 is the identity
    (-123, 0, -123),
])
def test_rshift_round_ties_and_negatives(value, shift, expected):
    assert int(rshift_round(value, shift)) == expected


@pytest.mark.parametrize("value, shift, expected", [(5, 1, 2), (-5, 1, -3), (-1, 4, -1)])
def test_rshift_floor(value, shift, expected):
    assert int(rshift_round(value, shift, Rounding.FLOOR)) == expected


@pytest.mark.parametrize("value, shift, expected", [
    (5, 1, 2),      # 2.5 -> 2: ties go to the even neighbour
    (7, 1, 4),      # 3.5 -> 4
    (-5, 1, -2),    # -2.5 -> -2
    (-7, 1, -4),    # -3.5 -> -4
    (-1, 1, 0),     # -0.5 -> 0
    (1, 1, 0),      # 0.5 -> 0
    (-3, 1, -2),    # -1.5 -> -2
    (6, 2, 2),      # 1.5 -> 2
    (10, 2, 2),     # 2.5 -> 2
    (-10, 2, -2),   # -2.5 -> -2
    (-6, 2, -2),    # -1.5 -> -2
    (-7, 2, -2),    # -1.75 -> -2: not a tie, nearest
    (9, 2, 2),      # 2.25 -> 2
    (11, 2, 3),     # 2.75 -> 3
    (-123, 0, -123),  # n = 0 is the identity
    (3 << 40, 41, 2),   # 1.5 -> 2 with a wide shift
    (-(1 << 61), 62, 0),  # -0.5 -> 0 at the widest shift
])
def test_rshift_half_even_ties_of_both_signs(value, shift, expected):
    assert int(rshift_round(value, shift, Rounding.HALF_EVEN)) == expected


def test_rshift_half_even_matches_exact_arithmetic():
    """Against Python's ``round`` of the exact fraction (ties to even), over values dense in
    ties of both signs."""
    rng = np.random.default_rng(2)
    shifts = rng.integers(0, 40, size=2000)
    values = rng.integers(-2 ** 20, 2 ** 20, size=2000) << shifts
    values += np.where(rng.random(2000) < 0.5, (np.int64(1) << shifts) >> 1, 0)
    got = rshift_round(values, shifts, Rounding.HALF_EVEN)
    for v, n, g in zip(values, shifts, got):
        assert int(g) == round(Fraction(int(v), 1 << int(n)))


def test_rshift_round_matches_exact_arithmetic():
    rng = np.random.default_rng(1)
    values = rng.integers(-2 ** 40, 2 ** 40, size=2000)
    shifts = rng.integers(0, 40, size=2000)
    got = rshift_round(values, shifts)
    for v, n, g in zip(values, shifts, got):
        assert int(g) == exact_rshift_round(int(v), int(n))


def test_requantize_saturates_at_both_ends():
    acc = np.array([-10 ** 6, -3, 0, 3, 10 ** 6])
    got = requantize(acc, multiplier=1 << 15, shift=16, zero_point=2, lo=-8, hi=7)
    # acc/2 rounded half up, plus 2, clamped to [-8, 7]
    assert got.tolist() == [-8, 1, 2, 4, 7]


def test_requantize_per_channel():
    acc = np.array([[100, 100], [-100, -100]])
    got = requantize(acc, multiplier=[3, 1], shift=[2, 0], zero_point=0, lo=-128, hi=127)
    assert got.tolist() == [[75, 100], [-75, -100]]


def test_requantize_refuses_int64_overflow():
    with pytest.raises(HwgenError, match="exceeds int64"):
        requantize(np.array([2 ** 50]), multiplier=2 ** 16, shift=0, zero_point=0, lo=0, hi=1)


@pytest.mark.parametrize("ratio", [1e-9, 3.7e-4, 0.5, 0.99999, 1.0, 17.25, 4e4, 1e7])
def test_scale_to_multiplier_precision(ratio):
    multiplier, shift = scale_to_multiplier(np.array([ratio]))
    approx = float(multiplier[0]) / 2.0 ** float(shift[0])
    assert abs(approx - ratio) / ratio < 2.0 ** -15
    assert shift[0] >= 0


@pytest.mark.parametrize("bits, signed, lo, hi", [
    (2, True, -2, 1), (2, False, 0, 3), (8, True, -128, 127), (16, False, 0, 65535),
    (16, True, -32768, 32767),
])
def test_act_quant_code_ranges(bits, signed, lo, hi):
    quant = ActQuant(scale=0.5, zero_point=0 if not signed else -1, bits=bits, signed=signed)
    assert (quant.lo, quant.hi) == (lo, hi)
    assert quant.quantize([-1e9, 1e9]).tolist() == [lo, hi]


def test_act_quant_from_range_makes_zero_exact():
    quant = ActQuant.from_range(-1.3, 2.9, 8)
    assert quant.signed
    assert quant.dequantize(quant.quantize(0.0)) == 0.0
    unsigned = ActQuant.from_range(0.0, 6.0, 4)
    assert (unsigned.signed, unsigned.zero_point, unsigned.scale) == (False, 0, 6.0 / 15)


def _dense(weight, bias, input_quant, output_quant, multiplier, shift, weight_bits, relu=False):
    out = len(weight)
    return QDense(
        name="fc", inputs=("input",), weight=np.array(weight, dtype=np.int64),
        weight_bits=weight_bits, weight_scale=np.ones(out), bias=np.array(bias, dtype=np.int64),
        multiplier=np.array(multiplier, dtype=np.int64), shift=np.array(shift, dtype=np.int64),
        input=input_quant, output=output_quant,
        clamp_lo=max(output_quant.lo, output_quant.zero_point) if relu else output_quant.lo,
        clamp_hi=output_quant.hi, relu=relu)


def test_integer_dense_by_hand():
    # 2 inputs, 2 outputs, w4a4; computed on paper.
    x_quant = ActQuant(scale=1.0, zero_point=3, bits=4, signed=False)
    y_quant = ActQuant(scale=1.0, zero_point=-1, bits=4, signed=True)
    layer = _dense([[7, -7], [1, 2]], [5, -4], x_quant, y_quant, [3, 1 << 15], [1, 16], 4)
    codes = np.array([[15, 0], [3, 3], [0, 15]])
    acc = dense_accumulate(layer, codes)
    assert acc.tolist() == [[110, 11], [5, 5], [-100, 26]]
    # ch0: rshift_round(330, 1) = 165 -> -1 + 165 -> 7 (clamp); rshift_round(15, 1) = 8 -> 7
    #      rshift_round(-300, 1) = -150 -> -151 -> -8 (clamp)
    # ch1: 11/2 = 5.5 -> 6 -> 5; 5/2 = 2.5 -> 3 -> 2; 26/2 = 13 -> 12 -> 7 (clamp)
    qgraph = QGraph("hand", x_quant, (layer,))
    assert run_integer(qgraph, codes).tolist() == [[7, 5], [7, 2], [-8, 7]]


def test_widest_accumulator_is_exact():
    # 16-bit weights and activations at full magnitude: the largest dot products a layer makes.
    x_quant = ActQuant(scale=1.0, zero_point=0, bits=16, signed=True)
    y_quant = ActQuant(scale=1.0, zero_point=0, bits=16, signed=True)
    limit = 2 ** 15 - 1
    weight = np.full((2, 256), limit)
    weight[1] = -limit
    layer = _dense(weight, [0, 0], x_quant, y_quant, [1, 1], [0, 0], 16)
    codes = np.full((1, 256), -2 ** 15)
    acc = dense_accumulate(layer, codes)
    assert acc.tolist() == [[-limit * 2 ** 15 * 256, limit * 2 ** 15 * 256]]
    assert layer.acc_bound == limit * 2 ** 15 * 256
    # the accumulator width holds exactly this bound, signed
    assert -(2 ** (layer.acc_bits - 1)) <= -layer.acc_bound
    assert layer.acc_bound < 2 ** (layer.acc_bits - 1)
    assert layer.acc_bound >= 2 ** (layer.acc_bits - 2)


def _mlp(rng, sizes):
    graph = Graph("mlp")
    x = graph.input((sizes[0],))
    for index, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        x = graph.dense(x, rng.normal(size=(fan_out, fan_in)) / np.sqrt(fan_in),
                        rng.normal(size=fan_out) * 0.1, name=f"fc{index}")
        if index < len(sizes) - 2:
            x = graph.relu(x)
    return graph


@pytest.mark.parametrize("bits", ["w8a8", "w4a8", "w6a6", "w16a16", "w3a5"])
def test_integer_run_tracks_float_run(bits):
    """The integer run dequantized stays within a few output steps of the float run (an error
    bound that shrinks with the bits, not a tautology: it catches any scale/zero-point slip)."""
    rng = np.random.default_rng(7)
    graph = _mlp(rng, [12, 10, 6])
    x = rng.normal(size=(300, 12))
    qgraph = quantize(graph, x, bits, output_bits=int(bits.partition("a")[2]))
    got = qgraph.output.dequantize(run_integer(qgraph, qgraph.input.quantize(x)))
    want = run_float(graph, x)
    error = np.abs(got - want).mean() / np.abs(want).mean()
    limit = {"w8a8": 0.03, "w4a8": 0.25, "w6a6": 0.1, "w16a16": 0.001, "w3a5": 0.5}[bits]
    assert error < limit


def test_integer_run_rejects_float_and_out_of_range_codes():
    rng = np.random.default_rng(0)
    graph = _mlp(rng, [4, 3])
    qgraph = quantize(graph, rng.normal(size=(10, 4)), "w8a4")
    with pytest.raises(HwgenError, match="integer codes"):
        run_integer(qgraph, np.zeros((1, 4)))
    with pytest.raises(HwgenError, match="must lie in"):
        run_integer(qgraph, np.full((1, 4), 100))
    with pytest.raises(HwgenError, match="shape"):
        run_integer(qgraph, np.zeros((1, 5), dtype=np.int64))
