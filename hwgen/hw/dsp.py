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

import re

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal, Shape
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..errors import HwgenError

__all__ = ["TARGETS", "check_target", "Multiplier", "multiply", "simulation_models",
           "ECP5_MULT18X18D_MODEL"]

# What a design can be generated for: "generic" (plain Verilog, every tool and simulator) or
# "ecp5" (Lattice ECP5 DSP primitives, whose simulation models hwgen supplies).
TARGETS = ("generic", "ecp5")

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
# is not a model of the whole primitive: C, the shift chains, CLK1-3 and RST are ignored.
ECP5_MULT18X18D_MODEL = """\
// Written by hwgen: behavioural model of the Lattice ECP5 MULT18X18D as hwgen uses it
// (registers on CLK0 with clock enable CE0, no reset; C, shift chains and CLK1-3 unused).
module MULT18X18D(
  input A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0,
  input B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
  input C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
  input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
  input CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1, RST2, RST3,
  output P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19,
  output P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0,
  output SIGNEDP
);
  parameter REG_INPUTA_CLK = "NONE";
  parameter REG_INPUTB_CLK = "NONE";
  parameter REG_PIPELINE_CLK = "NONE";
  parameter REG_OUTPUT_CLK = "NONE";
  parameter REG_INPUTA_CE = "CE0", REG_INPUTA_RST = "RST0";
  parameter REG_INPUTB_CE = "CE0", REG_INPUTB_RST = "RST0";
  parameter REG_INPUTC_CLK = "NONE", REG_INPUTC_CE = "CE0", REG_INPUTC_RST = "RST0";
  parameter REG_PIPELINE_CE = "CE0", REG_PIPELINE_RST = "RST0";
  parameter REG_OUTPUT_CE = "CE0", REG_OUTPUT_RST = "RST0";
  parameter CLK0_DIV = "ENABLED", CLK1_DIV = "ENABLED", CLK2_DIV = "ENABLED";
  parameter CLK3_DIV = "ENABLED", HIGHSPEED_CLK = "NONE", GSR = "ENABLED";
  parameter CAS_MATCH_REG = "FALSE", SOURCEB_MODE = "B_SHIFT", MULT_BYPASS = "DISABLED";
  parameter RESETMODE = "SYNC";

  wire [17:0] a_in = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2,
                      A1, A0};
  wire [17:0] b_in = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2,
                      B1, B0};
  reg [17:0] a_q, b_q;
  reg sa_q, sb_q;
  always @(posedge CLK0) if (CE0) begin a_q <= a_in; b_q <= b_in; sa_q <= SIGNEDA; sb_q <= SIGNEDB; end
  wire [17:0] a = REG_INPUTA_CLK == "NONE" ? a_in : a_q;
  wire [17:0] b = REG_INPUTB_CLK == "NONE" ? b_in : b_q;
  wire sa = REG_INPUTA_CLK == "NONE" ? SIGNEDA : sa_q;
  wire sb = REG_INPUTB_CLK == "NONE" ? SIGNEDB : sb_q;
  wire signed [18:0] a_ext = {sa & a[17], a};
  wire signed [18:0] b_ext = {sb & b[17], b};
  wire signed [37:0] full = a_ext * b_ext;
  wire [35:0] product = full[35:0];
  reg [35:0] pipe_q, out_q;
  always @(posedge CLK0) if (CE0) pipe_q <= product;
  wire [35:0] piped = REG_PIPELINE_CLK == "NONE" ? product : pipe_q;
  always @(posedge CLK0) if (CE0) out_q <= piped;
  wire [35:0] p = REG_OUTPUT_CLK == "NONE" ? piped : out_q;
  assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19,
          P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1,
          P0} = p;
  assign SIGNEDP = sa | sb;
endmodule
"""

def simulation_models(verilog):
    """``{primitive: Verilog model}`` of the vendor primitives the Verilog text ``verilog``
    instantiates (those :class:`Multiplier` and :class:`hwgen.hw.rom.WeightRom` use), for a
    Verilog simulator to compile with it; empty for a generic design."""
    from .rom import ECP5_DP16KD_MODEL

    models = {"MULT18X18D": ECP5_MULT18X18D_MODEL, "DP16KD": ECP5_DP16KD_MODEL}
    return {name: model for name, model in models.items()
            if re.search(rf"^\s*{name}\s*(#|\w)", verilog, flags=re.M)}
