"""Registered multipliers for the engines: a generic description that every synthesis flow maps
to its hard multipliers, and, for ECP5, the ``MULT18X18D`` primitive with its own registers.

Why a primitive: yosys's ECP5 flow (``synth_ecp5``) maps a multiplier to a combinational
``MULT18X18D`` and leaves the registers around it in the fabric, so every product path runs
flip-flop → routing → DSP (3.9 ns in nextpnr-ecp5's speed-6 model) → routing → flip-flop, about
7.5 ns (≈ 134 MHz) at best. With the DSP's input and output registers in use, the paths end and
start at the DSP's edges, and nextpnr reports well over 200 MHz for the same multiplier. The
Xilinx and iCE40 flows pack registers into their DSPs by themselves (``xilinx_dsp``,
``ice40_dsp``), so the generic description serves them.
"""

import importlib.resources
import re

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal, Shape
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..errors import HwgenError

__all__ = ["TARGETS", "check_target", "Multiplier", "multiply", "simulation_models",
           "ECP5_MULT18X18D_MODEL", "ICE40_SPRAM_MODEL"]

# What a design can be generated for: "generic" (plain Verilog, every tool and simulator),
# "ecp5" (Lattice ECP5 DSP and block-RAM primitives) or "ice40" (iCE40 UltraPlus
# SB_SPRAM256KA single-port RAMs for a shared engine's activations); hwgen supplies the
# primitives' simulation models.
TARGETS = ("generic", "ecp5", "ice40")

# The operand width of one ECP5 sysDSP multiplier.
_ECP5_OPERAND_BITS = 18


def check_target(target):
    """``target`` if it is one of :data:`TARGETS`, else :class:`HwgenError`."""
    if target not in TARGETS:
        raise HwgenError(f"target must be one of {', '.join(map(repr, TARGETS))}, "
                         f"not {target!r}")
    return target


class Multiplier(wiring.Component):
    """``p = a · b``, pipelined: a register on the operands and one on the product, both
    advancing when ``en`` is high. Latency 2: operands present in cycle ``t`` (with ``en``)
    give their product on ``p`` in cycle ``t + 2`` (if ``en`` was high in both cycles); one
    product per cycle.

    Widths: ``p`` has Amaranth's shape of ``a_shape × b_shape`` (the sum of the widths, signed
    if either operand is), which holds every product exactly.

    Targets:

    - ``"generic"``: two registered assignments; synthesis tools pack them into their DSPs'
      registers where they can (Xilinx ``DSP48``, iCE40 ``SB_MAC16``). Reset clears them.
    - ``"ecp5"``: one ``MULT18X18D`` with ``REG_INPUTA``, ``REG_INPUTB`` and ``REG_OUTPUT``
      clocked by ``CLK0`` and enabled by ``CE0 = en`` (the pipeline register is unused:
      nextpnr's timing model gains nothing from it), for operands of 2 to 18 bits,
      signed or unsigned (``SIGNEDA``/``SIGNEDB`` say which). The registers are
      not reset (``RST0`` low, ``GSR`` disabled): the engines never use a product whose
      operands were not valid. A product with a 1-bit operand (the requant's high part of a
      narrow sum) stays generic: yosys builds it from a few LUTs, not a DSP. Amaranth's
      simulator cannot run a primitive; Verilog simulators
      get :data:`ECP5_MULT18X18D_MODEL` (see :func:`simulation_models`). A product with an
      operand wider than 18 bits (a 16-bit layer's requant) stays generic too, and yosys
      splits it over several DSPs.

    Parameters
    ----------
    a_shape, b_shape : ShapeLike
    target : str
        One of :data:`TARGETS`.

    Members
    -------
    a : In(a_shape)
    b : In(b_shape)
    en : In(1)
    p : Out(product shape)
    """

    latency = 2

    def __init__(self, a_shape, b_shape, *, target="generic"):
        self._a_shape, self._b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        self._target = check_target(target)
        product = (Signal(self._a_shape) * Signal(self._b_shape)).shape()
        super().__init__({"a": In(self._a_shape), "b": In(self._b_shape), "en": In(1),
                          "p": Out(product)})

    @property
    def target(self):
        return self._target

    def elaborate(self, platform):
        widths = (self._a_shape.width, self._b_shape.width)
        if self._target == "ecp5" and min(widths) >= 2 and max(widths) <= _ECP5_OPERAND_BITS:
            return self._elaborate_ecp5()
        # Generic; on ECP5 a product with a 1-bit operand (a few LUTs, as yosys maps it) or an
        # operand wider than 18 bits (yosys splits it over several MULT18X18D).
        m = Module()
        a, b = Signal(self._a_shape, name="a_reg"), Signal(self._b_shape, name="b_reg")
        with m.If(self.en):
            m.d.sync += [a.eq(self.a), b.eq(self.b), self.p.eq(a * b)]
        return m

    def _elaborate_ecp5(self):
        m = Module()
        bits = _ECP5_OPERAND_BITS
        # Sign- or zero-extended to the DSP's 18 bits; SIGNEDA/B tell it which.
        a, b = Signal(bits), Signal(bits)
        product = Signal(2 * bits)
        m.d.comb += [a.eq(self.a), b.eq(self.b)]
        ports = {}
        for index in range(bits):
            ports[f"i_A{index}"] = a[index]
            ports[f"i_B{index}"] = b[index]
            ports[f"i_C{index}"] = Const(0)
        for index in range(2 * bits):
            ports[f"o_P{index}"] = product[index]
        registered = {f"p_REG_{name}_{what}": value
                      for name in ("INPUTA", "INPUTB", "OUTPUT")
                      for what, value in (("CLK", "CLK0"), ("CE", "CE0"), ("RST", "RST0"))}
        unused = {f"p_REG_{name}_CLK": "NONE" for name in ("INPUTC", "PIPELINE")}
        m.submodules.dsp = Instance(
            "MULT18X18D", **registered, **unused,
            p_GSR="DISABLED", p_RESETMODE="SYNC", p_MULT_BYPASS="DISABLED",
            p_CLK0_DIV="ENABLED", p_HIGHSPEED_CLK="NONE", p_CAS_MATCH_REG="FALSE",
            p_SOURCEB_MODE="B_SHIFT",
            i_SIGNEDA=Const(int(self._a_shape.signed)), i_SIGNEDB=Const(int(self._b_shape.signed)),
            i_SOURCEA=Const(0), i_SOURCEB=Const(0),
            i_CLK0=ClockSignal("sync"), i_CE0=self.en, i_RST0=Const(0),
            **ports)
        m.d.comb += self.p.eq(product)
        return m


def multiply(m, a, b, en, *, target, name):
    """Add a :class:`Multiplier` of ``a × b`` (advancing when ``en``, built for ``target``) to
    ``m`` as submodule ``name``; returns its product ``p``, ``Multiplier.latency`` cycles
    behind ``a`` and ``b``."""
    multiplier = Multiplier(a.shape(), b.shape(), target=target)
    m.submodules[name] = multiplier
    m.d.comb += [multiplier.a.eq(a), multiplier.b.eq(b), multiplier.en.eq(en)]
    return multiplier.p


# A behavioural model of the MULT18X18D configurations :class:`Multiplier` instantiates (any
# mix of input/pipeline/output registers on CLK0/CE0, no reset), for Verilator and Icarus. It
# is not a model of the whole primitive: C, the shift chains, CLK1-3 and RST are ignored. The
# Verilog lives in ``rtl_templates/MULT18X18D.v`` (installed as ``hwgen.rtl_templates``).
ECP5_MULT18X18D_MODEL = (importlib.resources.files("hwgen.rtl_templates")
                         / "MULT18X18D.v").read_text(encoding="utf-8")

# The iCE40 UltraPlus single-port RAM as the shared engine uses it (hwgen.hw.sequential).
ICE40_SPRAM_MODEL = (importlib.resources.files("hwgen.rtl_templates")
                     / "SB_SPRAM256KA.v").read_text(encoding="utf-8")


def simulation_models(verilog):
    """``{primitive: Verilog model}`` of the vendor primitives the Verilog text ``verilog``
    instantiates (those :class:`Multiplier` and :class:`hwgen.hw.rom.WeightRom` use), for a
    Verilog simulator to compile with it; empty for a generic design."""
    from .rom import ECP5_DP16KD_MODEL

    models = {"MULT18X18D": ECP5_MULT18X18D_MODEL, "DP16KD": ECP5_DP16KD_MODEL,
              "SB_SPRAM256KA": ICE40_SPRAM_MODEL}
    return {name: model for name, model in models.items()
            if re.search(rf"^\s*{name}\s*(#|\w)", verilog, flags=re.M)}
