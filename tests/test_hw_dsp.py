# amaranth: UnusedElaboratable=no
"""The registered multiplier of hwgen.hw.dsp: products, latency and clock enable in Amaranth's
simulator (generic target); the ECP5 primitive's parameters and width limits; which simulation
models a Verilog text needs."""

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import signed, unsigned

from hwgen.errors import HwgenError
from hwgen.hw.dsp import ECP5_MULT18X18D_MODEL, Multiplier, check_target, simulation_models
from hw_helpers import run


@pytest.mark.parametrize("a_shape, b_shape", [
    (signed(8), unsigned(8)), (signed(2), signed(2)), (signed(16), unsigned(16)),
    (signed(3), unsigned(1)), (unsigned(17), signed(18)),
])
def test_products_arrive_two_enabled_cycles_later(a_shape, b_shape):
    rng = np.random.default_rng(a_shape.width * 100 + b_shape.width)
    dut = Multiplier(a_shape, b_shape)

    def draw(shape, count):
        low = -(1 << (shape.width - 1)) if shape.signed else 0
        high = (1 << (shape.width - 1)) - 1 if shape.signed else (1 << shape.width) - 1
        values = rng.integers(low, high, size=count, endpoint=True)
        values[:2] = (low, high)  # the extremes, whose product needs every bit of p
        return values

    count = 60
    a_values, b_values = draw(a_shape, count), draw(b_shape, count)
    enables = rng.random(count + 8) < 0.7
    got = []

    async def testbench(ctx):
        # Operand k is presented until it has been taken (en high); its product appears after
        # two more enabled cycles.
        accepted, taken = [], 0
        for cycle, enable in enumerate(enables):
            if taken < count:
                ctx.set(dut.a, int(a_values[taken]))
                ctx.set(dut.b, int(b_values[taken]))
            ctx.set(dut.en, int(enable))
            if enable:
                accepted.append(taken if taken < count else None)
                if len(accepted) > 2 and accepted[-3] is not None:
                    got.append((accepted[-3], ctx.get(dut.p)))
                taken += 1
            await ctx.tick()

    run(dut, testbench)
    assert len(got) > count // 2
    for index, product in got:
        assert product == int(a_values[index]) * int(b_values[index]), index
    assert Multiplier.latency == 2


def test_product_shape_is_exact():
    assert Multiplier(signed(8), unsigned(8)).p.shape() == signed(16)
    assert Multiplier(unsigned(5), unsigned(3)).p.shape() == unsigned(8)
    assert Multiplier(signed(18), signed(18), target="ecp5").p.shape() == signed(36)


def test_ecp5_multiplier_uses_the_dsp_registers():
    text = verilog.convert(Multiplier(signed(8), unsigned(9), target="ecp5"), name="top",
                           emit_src=False)
    assert text.count("MULT18X18D #(") == 1
    for register in ("INPUTA", "INPUTB", "OUTPUT"):
        assert f'.REG_{register}_CLK("CLK0")' in text
        assert f'.REG_{register}_CE("CE0")' in text
    assert '.REG_PIPELINE_CLK("NONE")' in text
    assert ".SIGNEDA(1'h1)" in text and ".SIGNEDB(1'h0)" in text
    assert ".CE0(en)" in text and ".CLK0(clk)" in text
    assert simulation_models(text) == {"MULT18X18D": ECP5_MULT18X18D_MODEL}


def test_generic_multiplier_needs_no_model():
    text = verilog.convert(Multiplier(signed(8), unsigned(9)), name="top", emit_src=False)
    assert "MULT18X18D" not in text and simulation_models(text) == {}


def test_ecp5_operands_wider_than_the_dsp_stay_generic():
    """A 16-bit layer's requant multiplies a 20-bit sum: no single MULT18X18D holds it, so the
    product is left to yosys, which splits it over several."""
    text = verilog.convert(Multiplier(signed(19), signed(8), target="ecp5"), name="top",
                           emit_src=False)
    assert "MULT18X18D" not in text and " * " in text
    assert Multiplier(signed(19), signed(8), target="ecp5").p.shape() == signed(27)


def test_unknown_target_is_rejected():
    with pytest.raises(HwgenError, match="'generic', 'ecp5', 'ice40'"):
        check_target("gowin")
    with pytest.raises(HwgenError, match="target must be"):
        Multiplier(signed(4), signed(4), target="xilinx")
