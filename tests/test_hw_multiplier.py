# amaranth: UnusedElaboratable=no
"""The LUT and packed multipliers of hwgen.hw.multiplier in Amaranth's simulator, over widths
2–16, signed and unsigned operands, the extremes of both included, with a random clock enable;
and the packing arithmetic of hwgen.packing against Python's integers."""

import itertools

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Shape, signed, unsigned

from hwgen.hw.dsp import Multiplier
from hwgen.hw.multiplier import LutMultiplier, PackedMultiplier, multiplier_latency
from hwgen.packing import DSP_PORTS, max_pack, pack_word, packing, unpack_product
from hw_helpers import run


def _range(shape, narrow=False):
    shape = Shape.cast(shape)
    if shape.signed:
        return -(1 << (shape.width - 1)) + narrow, (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


def _draw(rng, shape, count, narrow=False):
    """``count`` codes of ``shape``: every pairing of the extremes and zero first, then random."""
    low, high = _range(shape, narrow)
    values = rng.integers(low, high, size=count, endpoint=True)
    return values, (low, high, 0)


def _enabled_products(dut, inputs, latency, rng, count):
    """Drive ``inputs`` (a list of ``((port, value), ...)``) through ``dut`` with a random clock
    enable; returns ``[(index, p)]``, the output ``latency`` enabled cycles after input
    ``index`` was taken."""
    enables = rng.random(2 * count + 3 * latency) < 0.7
    got = []

    async def testbench(ctx):
        accepted, taken = [], 0
        for enable in enables:
            if taken < count:
                for port, value in inputs[taken]:
                    ctx.set(port, value)
            ctx.set(dut.en, int(enable))
            if enable:
                accepted.append(taken if taken < count else None)
                if len(accepted) > latency and accepted[-1 - latency] is not None:
                    got.append((accepted[-1 - latency], ctx.get(dut.p)))
                taken += 1
            await ctx.tick()

    run(dut, testbench)
    assert len(got) > count // 3
    return got


LUT_SHAPES = [(2, 2), (2, 16), (16, 2), (3, 5), (4, 4), (5, 9), (8, 8), (12, 7), (16, 16)]


@pytest.mark.parametrize("widths", LUT_SHAPES, ids=lambda w: f"{w[0]}x{w[1]}")
@pytest.mark.parametrize("signs", list(itertools.product((True, False), repeat=2)),
                         ids=lambda s: "".join("s" if v else "u" for v in s))
def test_lut_multiplier_is_exact(widths, signs):
    a_shape = signed(widths[0]) if signs[0] else unsigned(widths[0])
    b_shape = signed(widths[1]) if signs[1] else unsigned(widths[1])
    rng = np.random.default_rng(widths[0] * 131 + widths[1] * 7 + 2 * signs[0] + signs[1])
    a_values, a_special = _draw(rng, a_shape, 40)
    b_values, b_special = _draw(rng, b_shape, 40)
    pairs = list(itertools.product(a_special, b_special)) + list(zip(a_values, b_values))
    dut = LutMultiplier(a_shape, b_shape)
    assert dut.p.shape() == (Multiplier(a_shape, b_shape).p.shape())
    inputs = [((dut.a, int(a)), (dut.b, int(b))) for a, b in pairs]
    got = _enabled_products(dut, inputs, dut.latency, rng, len(pairs))
    for index, product in got:
        a, b = pairs[index]
        assert product == int(a) * int(b), (index, a, b)


def test_lut_multiplier_has_no_multiply_cell():
    text = verilog.convert(LutMultiplier(signed(8), unsigned(8)), name="top", emit_src=False)
    assert " * " not in text


PACKED = [
    # (weight bits, activation bits, activation signed, ports)
    (2, 2, False, DSP_PORTS["ecp5"]), (2, 2, True, DSP_PORTS["xcup"]),
    (3, 3, True, DSP_PORTS["ecp5"]), (4, 4, False, DSP_PORTS["ecp5"]),
    (4, 4, False, DSP_PORTS["xc7"]), (4, 4, True, DSP_PORTS["ice40"]),
    (5, 3, False, DSP_PORTS["xc7"]), (8, 8, False, DSP_PORTS["xc7"]),
    (8, 8, True, DSP_PORTS["xcup"]), (2, 16, True, DSP_PORTS["xc7"]),
    (6, 2, False, DSP_PORTS["ecp5"]),
]


@pytest.mark.parametrize("weight_bits, act_bits, act_signed, ports", PACKED)
def test_packed_multiplier_recovers_every_field(weight_bits, act_bits, act_signed, ports):
    count = max_pack(weight_bits, act_bits, act_signed, ports)
    assert count >= 2
    layout = packing(weight_bits, act_bits, act_signed, count)
    x_shape = signed(act_bits) if act_signed else unsigned(act_bits)
    rng = np.random.default_rng(weight_bits * 97 + act_bits + act_signed)
    w_shape = signed(weight_bits)
    x_values, x_special = _draw(rng, x_shape, 50)
    # Narrow-range weights (hwgen's contract): the extremes are ±(2^(w−1) − 1).
    weight_rows = rng.integers(*_range(w_shape, narrow=True), size=(50, count), endpoint=True)
    low, high = _range(w_shape, narrow=True)
    special_rows = [list(row) for row in itertools.product((low, high, 0), repeat=count)][:27]
    cases = ([(x, row) for x in x_special for row in special_rows]
             + list(zip(x_values, weight_rows)))
    dut = PackedMultiplier(x_shape, layout)
    inputs = [((dut.a, int(x)), (dut.b, pack_word(row, layout))) for x, row in cases]
    got = _enabled_products(dut, inputs, PackedMultiplier.latency, rng, len(cases))
    shift = layout.shift
    for index, bits in got:
        x, row = cases[index]
        fields = [(bits >> (k * shift)) & ((1 << shift) - 1) for k in range(count)]
        fields = [f - (1 << shift) if f >> (shift - 1) else f for f in fields]
        assert fields == [int(x) * int(w) for w in row], index


@pytest.mark.parametrize("narrow", [True, False])
def test_unpacking_rule_matches_python(narrow):
    rng = np.random.default_rng(5)
    for weight_bits, act_bits, act_signed in itertools.product((2, 3, 5, 8), (2, 4, 9),
                                                               (True, False)):
        for family, ports in DSP_PORTS.items():
            count = max_pack(weight_bits, act_bits, act_signed, ports, narrow=narrow)
            layout = packing(weight_bits, act_bits, act_signed, count, narrow=narrow)
            assert layout.shared_bits <= max(ports) and layout.packed_bits <= max(ports)
            x_low, x_high = _range(signed(act_bits) if act_signed else unsigned(act_bits))
            w_low, w_high = _range(signed(weight_bits), narrow=narrow)
            for _ in range(200):
                x = int(rng.choice([x_low, x_high, rng.integers(x_low, x_high + 1)]))
                row = [int(rng.choice([w_low, w_high, rng.integers(w_low, w_high + 1)]))
                       for _ in range(count)]
                word = pack_word(row, layout)
                assert -(1 << (layout.packed_bits - 1)) <= word < 1 << (layout.packed_bits - 1)
                assert unpack_product(x * word, layout) == [x * w for w in row]


def test_pack_counts_follow_the_ports():
    # Two 8-bit products per DSP48 (as FINN packs), none on an 18×18 MULT18X18D.
    assert max_pack(8, 8, False, DSP_PORTS["xc7"]) == 2
    assert max_pack(8, 8, False, DSP_PORTS["ecp5"]) == 1
    assert max_pack(4, 4, False, DSP_PORTS["ecp5"]) == 2
    assert max_pack(4, 4, False, DSP_PORTS["xcup"]) == 3
    assert max_pack(2, 2, False, DSP_PORTS["ecp5"]) == 5
    assert max_pack(16, 16, True, DSP_PORTS["xcup"]) == 1


def test_latencies():
    assert multiplier_latency("dsp") == 2
    assert multiplier_latency("dsp-packed", 2) == 3
    # A LUT multiplier: its operand register, then one register per adder level.
    assert [multiplier_latency("lut", widths=(w, 9)) for w in (1, 2, 3, 4, 5, 8, 9, 16)] == \
        [2, 2, 3, 3, 4, 4, 5, 5]
    assert LutMultiplier(signed(16), unsigned(4)).latency == 3
    assert multiplier_latency("dsp-packed", 1) == 2
