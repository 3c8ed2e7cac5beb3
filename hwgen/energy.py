"""Plan + board → an *estimate* of the energy one inference takes, split into arithmetic,
on-chip memory, datapath registers, I/O and static energy.

This is a model, not a measurement: it counts what the planned engines do per inference and
multiplies the counts by per-bit energies. Its use is comparing designs (more bits, more
MACs, weights in block RAM or in logic, a faster or slower pipeline) and showing where the
energy goes; a board's power calculator or a measurement is the reference for absolute figures.
``docs/explore.md`` gives the derivation and the sources.

Counts per inference, from the plan (:func:`activity`):

- **Arithmetic.** Every MAC is one ``w × a`` product (``w·a`` partial-product bits; a packed
  DSP computes ``a × packed_bits`` for ``pack`` products) and one accumulation of ``acc_bits``;
  every output of a layer that requantizes is one ``acc × 16`` product and an add. Products are
  *hard* where the cost model puts them on DSPs (:func:`hwgen.cost.product_dsps`), else *soft*
  (LUTs). Unrolled layers count their netlist's adder bits (zero weights cost nothing). Pools
  count a compare or add per window element, argmax a compare per input.
- **On-chip memory.** Bits read and written per inference of every memory the cost model lists
  (weight ROMs: one weight per MAC; line buffers: each input written once and read ``kh``
  times; FIFOs: each element in and out once; sums, tables, row buffers), each classified as
  block RAM or logic memory by the same rule as the resource model
  (:func:`hwgen.cost.memory_blocks`).
- **Registers.** The datapath's register bits (operands moving through a systolic array, the
  MAC unit's input buffer, pipeline registers) written on every cycle the engine works.
- **I/O.** The input frame's and the output frame's bits, read from and written to off-chip
  DRAM, where a stream of frames comes from and goes to.
- **Static.** The device's static power × the time per inference (the initiation interval at
  the clock: in a stream of frames one inference occupies one interval).

Per-bit energies start from Horowitz's 45 nm, 0.9 V figures (ISSCC 2014, "Computing's energy
problem"; as tabulated by Han et al., ISCA 2016): an 8-bit add 0.03 pJ, an 8-bit multiply
0.2 pJ (32-bit: 0.1 and 3.1 pJ, so about 0.0031 pJ per adder bit and per partial-product bit),
a 64-bit read of an 8 KB SRAM 10 pJ (32 KB: 20 pJ; about √size), a 32-bit DRAM access 640 pJ.
They are scaled to each family's process node and core voltage (``C·V²``: ×node/45 nm ×
(V/0.9 V)²) and multiplied by the FPGA's overhead over an ASIC: 14× for LUT logic (Kuon and
Rose, IEEE TCAD 26(2), 2007: the dynamic power ratio of LUT-based logic) and, as hwgen's
assumption, 7× for hard blocks (DSPs, block RAM), for which that paper finds the gap smaller.
Register bits cost one adder bit each at an activity of 0.5 (hwgen's assumption). Static powers
are hwgen's rough typical figures at 25 °C (:data:`FAMILY_ENERGY`); pass ``static_watts`` with
the vendor power calculator's number for your design and conditions.
"""

import dataclasses
import math

from .board import get_board
from .cost import FAMILY_MODELS, memory_blocks, product_dsps
from .cost import _parts as layer_parts
from .errors import HwgenError
from .packing import pack_groups, packing

__all__ = ["FamilyEnergy", "FAMILY_ENERGY", "LayerActivity", "LayerEnergy", "EnergyReport",
           "activity", "estimate_energy", "CATEGORIES"]

CATEGORIES = ("arithmetic", "memory", "registers", "io", "static")

# Horowitz, ISSCC 2014, 45 nm at 0.9 V (see the module docstring), in pJ.
ADD_PJ_PER_BIT = 0.1 / 32          # 32-bit add 0.1 pJ (8-bit: 0.03 pJ)
MULTIPLY_PJ_PER_BIT2 = 0.2 / 64    # 8-bit multiply 0.2 pJ per 8 × 8 partial-product bits
SRAM_PJ_PER_BIT = 10 / 64          # 64-bit read of an 8 KB SRAM
SRAM_REFERENCE_BYTES = 8192
DRAM_PJ_PER_BIT = 640 / 32         # 32-bit DRAM access (Han et al.'s table)
REFERENCE_NODE_NM, REFERENCE_VOLTS = 45.0, 0.9

SOFT_OVERHEAD = 14.0   # FPGA LUT logic ÷ ASIC, dynamic power (Kuon and Rose 2007)
HARD_OVERHEAD = 7.0    # DSPs and block RAM: hwgen's assumption (the gap is smaller)
REGISTER_ACTIVITY = 0.5
REQUANT_MULTIPLIER_BITS = 16


@dataclasses.dataclass(frozen=True)
class FamilyEnergy:
    """A family's process and static power: ``node_nm`` and ``core_volts`` (from its data
    sheet) scale the 45 nm energies; ``static_watts_per_lut`` (hwgen's assumption, typical at
    25 °C) times the device's LUTs is the static power."""

    node_nm: float
    core_volts: float
    static_watts_per_lut: float
    source: str

    @property
    def scale(self):
        """Energy of one operation relative to 45 nm at 0.9 V (``C·V²``)."""
        return (self.node_nm / REFERENCE_NODE_NM) * (self.core_volts / REFERENCE_VOLTS) ** 2


FAMILY_ENERGY = {
    "ice40": FamilyEnergy(40, 1.2, 0.02e-6, "iCE40 UltraPlus data sheet (FPGA-DS-02008): 40 nm, "
                          "VCC 1.2 V; static about 0.1 mW for the UP5K (assumed)"),
    "ecp5": FamilyEnergy(40, 1.1, 1.0e-6, "ECP5 data sheet (FPGA-DS-02012): 40 nm, VCC 1.1 V; "
                         "static about 1 µW per LUT (assumed: 84 mW for the 85F)"),
    "xc7": FamilyEnergy(28, 1.0, 2.0e-6, "7 Series data sheets (DS180): 28 nm, VCCINT 1.0 V; "
                        "static about 2 µW per LUT (assumed: 106 mW for the Z-7020's logic)"),
    "xcup": FamilyEnergy(16, 0.85, 3.5e-6, "Zynq UltraScale+ data sheet (DS891): 16 nm, VCCINT "
                         "0.85 V; static about 3.5 µW per LUT (assumed)"),
}


@dataclasses.dataclass(frozen=True)
class LayerActivity:
    """What one layer's engine does per inference (see the module docstring).

    ``macs``; ``hard_product_bits`` / ``soft_product_bits``: partial-product bits of products on
    DSPs and in LUTs; ``adder_bits``: adder (and compare) bits; ``memory``: ``(what, kind,
    bits_moved, memory_bytes)`` per memory, ``kind`` ``"bram"`` or ``"logic"``;
    ``register_bit_cycles``: register bits × the cycles they are written.
    """

    name: str
    macs: int
    multiplier: str
    hard_product_bits: int
    soft_product_bits: int
    adder_bits: int
    memory: tuple
    register_bit_cycles: int

    def memory_bits(self, kind=None):
        return sum(bits for _, memory_kind, bits, _ in self.memory
                   if kind is None or memory_kind == kind)


@dataclasses.dataclass(frozen=True)
class LayerEnergy:
    """One layer's estimated energy per inference, in pJ, by category."""

    name: str
    macs: int
    arithmetic: float
    memory: float
    registers: float

    @property
    def total(self):
        return self.arithmetic + self.memory + self.registers


@dataclasses.dataclass(frozen=True)
class EnergyReport:
    """The energy estimate of one design on one board (pJ per inference, by category).

    ``io`` and ``static`` belong to the whole design; ``seconds`` is the time per inference
    the static energy is charged for (``initiation_interval / clock``), ``static_watts`` the
    power used.
    """

    board: object
    layers: tuple
    io: float
    static: float
    seconds: float
    static_watts: float
    clock_mhz: float
    initiation_interval: float

    @property
    def breakdown(self):
        """Category → pJ per inference (:data:`CATEGORIES`)."""
        return {"arithmetic": sum(layer.arithmetic for layer in self.layers),
                "memory": sum(layer.memory for layer in self.layers),
                "registers": sum(layer.registers for layer in self.layers),
                "io": self.io, "static": self.static}

    @property
    def dynamic(self):
        """pJ per inference without the static part."""
        return sum(value for key, value in self.breakdown.items() if key != "static")

    @property
    def total(self):
        """pJ per inference, everything included."""
        return sum(self.breakdown.values())

    @property
    def nanojoules(self):
        return self.total / 1e3

    def table(self):
        """A pandas DataFrame: one row per layer (pJ per inference) and the design's rows."""
        import pandas as pd

        rows = [{"layer": layer.name, "macs": layer.macs, "arithmetic_pj": layer.arithmetic,
                 "memory_pj": layer.memory, "registers_pj": layer.registers,
                 "total_pj": layer.total} for layer in self.layers]
        breakdown = self.breakdown
        rows.append({"layer": "(I/O: frames from/to DRAM)", "total_pj": breakdown["io"]})
        rows.append({"layer": f"(static: {self.static_watts * 1e3:.3g} mW × "
                              f"{self.seconds * 1e6:.3g} µs)", "total_pj": breakdown["static"]})
        rows.append({"layer": "total", "macs": sum(layer.macs for layer in self.layers),
                     "arithmetic_pj": breakdown["arithmetic"], "memory_pj": breakdown["memory"],
                     "registers_pj": breakdown["registers"], "total_pj": self.total})
        return pd.DataFrame(rows)

    def text(self):
        """The breakdown as a few lines of text."""
        total = self.total
        parts = ", ".join(f"{name} {value / 1e3:,.2f} nJ ({value / total:.0%})"
                          for name, value in self.breakdown.items())
        return (f"energy per inference on {self.board.name} (estimate): {total / 1e3:,.2f} nJ "
                f"at {self.clock_mhz:g} MHz, II {self.initiation_interval:g} cycles: {parts}")

    __repr__ = text

    def _repr_html_(self):
        from .notebook import frame_html
        return frame_html(self.table(), self.text())

    def to_json(self):
        return {"board": self.board.name, "total_pj": self.total, "seconds": self.seconds,
                "static_watts": self.static_watts, "clock_mhz": self.clock_mhz,
                "breakdown_pj": self.breakdown,
                "layers": [dataclasses.asdict(layer) for layer in self.layers]}


def _elements(shape):
    return math.prod(shape)


def _hard(a_bits, b_bits, model, product_bits=None):
    return product_dsps(a_bits, b_bits, model, product_bits) > 0


def _requant_ops(outputs, acc_bits, model):
    """``(hard, soft, adder)`` bits of ``outputs`` requantizations of an ``acc_bits`` sum."""
    bits = outputs * acc_bits * REQUANT_MULTIPLIER_BITS
    adds = outputs * (acc_bits + REQUANT_MULTIPLIER_BITS)
    if _hard(min(acc_bits, 17), REQUANT_MULTIPLIER_BITS, model):
        return bits, 0, adds
    return 0, bits, adds


def _arithmetic(layer_plan, model):
    """``(hard product bits, soft product bits, adder bits)`` per inference of one layer."""
    layer, engine = layer_plan.layer, layer_plan.engine
    if engine == "unrolled":
        from .cost import unrolled_netlist
        netlist = unrolled_netlist(layer, layer_plan.levels)
        return 0, 0, netlist.adder_bits * _vectors(layer_plan)
    if engine == "sequential":
        # Every active step multiplies one code by pe weights, padding channels included.
        pe, w, a = layer_plan.pe, layer.operand_bits, layer.code_bits
        products = layer.active_steps(pe) * pe * w * a
        hard = layer_plan.multiplier != "lut" and _hard(w, a, model, w + a)
        hard_bits, soft_bits, adds = _requant_ops(sum(layer.groups(pe)) * pe, layer.acc_bits,
                                                  model)
        adds += layer.active_steps(pe) * pe * layer.acc_bits
        return hard_bits + products * hard, soft_bits + products * (not hard), adds
    if engine in ("mac", "systolic", "depthwise"):
        w, a = layer.weight_bits, layer.input.bits
        signed_a = a + (not layer.input.signed)
        if layer_plan.multiplier == "dsp-packed" and layer_plan.pack > 1:
            # ⌈pe / pack⌉ multipliers compute pe products (the last group may be short).
            pack, pe = layer_plan.pack, layer_plan.pe
            packed = packing(w, a, layer.input.signed, pack).packed_bits
            per_mac, hard = signed_a * packed * pack_groups(pe, pack) / pe, True
        else:
            per_mac = w * a
            hard = layer_plan.multiplier != "lut" and _hard(w, signed_a, model, w + a)
        products = round(layer.macs * per_mac)
        hard_bits, soft_bits, adds = _requant_ops(_elements(layer.out_shape if engine != "mac"
                                                            else (layer.out_features,)),
                                                  layer.acc_bits, model)
        adds += layer.macs * layer.acc_bits
        return hard_bits + products * hard, soft_bits + products * (not hard), adds
    if engine == "pool":
        window = layer.kernel[0] * layer.kernel[1]
        outputs = _elements(layer.out_shape)
        adds = outputs * window * (layer.acc_bits if layer.kind == "avg" else layer.act_bits + 1)
        if layer.kind == "max":
            return 0, 0, adds
        hard_bits, soft_bits, requant_adds = _requant_ops(outputs, layer.acc_bits, model)
        return hard_bits, soft_bits, adds + requant_adds
    if engine == "gap":
        adds = _elements(layer.in_shape) * layer.acc_bits
        hard_bits, soft_bits, requant_adds = _requant_ops(layer.in_shape[2], layer.acc_bits,
                                                          model)
        return hard_bits, soft_bits, adds + requant_adds
    if engine in ("add", "concat"):
        elements = _elements(layer.shape)
        rescaled = (len(layer.inputs) if engine == "add"
                    else sum(not layer.passes(i) for i in range(len(layer.inputs))))
        hard_bits, soft_bits, adds = _requant_ops(elements * rescaled, layer.act_bits + 2, model)
        return hard_bits, soft_bits, adds
    if engine == "argmax":
        return 0, 0, layer.in_features * (layer.input.bits + layer.output.bits)
    return 0, 0, 0   # tables (a memory read each) and upsampling (row buffers) compute nothing


def _memory_traffic(layer_plan, plan, what, depth, width, count, fifo_bits):
    """Bits read plus written per inference of one memory ``(what, depth, width, count)`` of
    the cost model's list (see the module docstring)."""
    layer = layer_plan.layer
    if what == "weights":
        return layer.macs * width * count / max(layer_plan.multipliers, 1)
    if what == "activations":  # a shared engine's banks: a word read per step, and written
        pe = layer_plan.pe
        return (layer.active_steps(pe) + sum(layer.groups(pe)) + layer.bank_words(pe)) * width
    if what == "line buffer":
        written = _elements(layer.in_shape) * layer.input.bits
        return written * (1 + layer.kernel[0])
    if what == "output fifo":  # an unrolled layer's, written and read once per vector
        return 2 * width * _vectors(layer_plan)
    if what == "fifo":
        return 2 * next(fifo_bits)
    if what == "sums":
        return 2 * _elements(layer.in_shape) * layer.acc_bits
    if what == "table":
        return _elements(layer.shape) * layer.output.bits
    if what == "rows":
        return (_elements(layer.in_shape) + _elements(layer.out_shape)) * layer.input.bits
    # Other tables (onnxruntime's float32 pool terms): one word per output per memory.
    return _elements(layer.out_shape) * width * count


def _vectors(layer_plan):
    """Vectors an unrolled layer computes per inference: 1 (dense) or its output pixels."""
    layer = layer_plan.layer
    return 1 if layer.op == "dense" else layer.out_shape[0] * layer.out_shape[1]


def _fifo_bits(layer_plan, plan):
    """Bits each input FIFO of a layer carries per inference, in the cost model's order."""
    qgraph = plan.qgraph
    for tensor in layer_plan.layer.inputs:
        if plan.fifo_depth(tensor, layer_plan.name) > 1:
            yield _elements(qgraph.shape_of(tensor)) * qgraph.quant_of(tensor).bits


def _bytes_of_block(board):
    return board.bram_bits / 8 if board.bram_bits else 0


def activity(plan, board):
    """The :class:`LayerActivity` of every layer of ``plan`` on ``board`` (a name or Board)."""
    board = get_board(board)
    model = FAMILY_MODELS[board.family]
    result = []
    for layer_plan in plan.layers:
        hard, soft, adds = _arithmetic(layer_plan, model)
        parts = layer_parts(layer_plan, plan)
        fifo_bits = _fifo_bits(layer_plan, plan)
        memories = []
        for what, depth, width, count in parts.memories:
            bits = _memory_traffic(layer_plan, plan, what, depth, width, count, fifo_bits)
            in_bram = memory_blocks(depth, width, model, what) > 0
            size = _bytes_of_block(board) if in_bram else depth * width / 8
            memories.append((what, "bram" if in_bram else "logic", round(bits), size))
        cycles = _vectors(layer_plan) if layer_plan.engine == "unrolled" else layer_plan.cycles
        # A MAC unit's double-buffered input vector is written once per inference; the rest of
        # the datapath's registers on every cycle the engine works.
        buffer = (2 * layer_plan.layer.in_features * (layer_plan.layer.input.bits
                                                     + (not layer_plan.layer.input.signed))
                  if layer_plan.engine == "mac" else 0)
        registers = (parts.register_bits - buffer + parts.pipeline_bits) * cycles + buffer // 2
        result.append(LayerActivity(layer_plan.name, layer_plan.layer.macs,
                                    layer_plan.multiplier_label, int(hard), int(soft),
                                    int(adds), tuple(memories), int(registers)))
    return tuple(result)


def _sram_pj_per_bit(size_bytes):
    """Horowitz's SRAM read energy per bit at 45 nm for a memory of ``size_bytes``, √size."""
    return SRAM_PJ_PER_BIT * math.sqrt(max(size_bytes, 1) / SRAM_REFERENCE_BYTES)


def estimate_energy(plan, board=None, *, clock_mhz=None, initiation_interval=None,
                    static_watts=None):
    """The :class:`EnergyReport` of ``plan`` on ``board`` (default: the board it was sized for).

    ``clock_mhz`` (default the board's target clock, or an fmax from synthesis) and
    ``initiation_interval`` (default the plan's; a simulation's measured one) set the time per
    inference the static power is charged for; ``static_watts`` replaces the family's assumed
    static power (:data:`FAMILY_ENERGY`) with, say, the vendor power calculator's figure.
    """
    if board is None and plan.board is None:
        raise HwgenError("name a board: the energy estimate needs the board's family")
    board = get_board(board if board is not None else plan.board)
    if board.family not in FAMILY_ENERGY:
        raise HwgenError(f"no energy model for the {board.family!r} family")
    family = FAMILY_ENERGY[board.family]
    clock_mhz = float(clock_mhz or board.target_mhz)
    interval = float(initiation_interval or plan.initiation_interval)
    if clock_mhz <= 0 or interval <= 0:
        raise HwgenError(f"the clock ({clock_mhz} MHz) and the initiation interval "
                         f"({interval} cycles) must be positive")
    soft, hard = SOFT_OVERHEAD * family.scale, HARD_OVERHEAD * family.scale
    layers = []
    for counts in activity(plan, board):
        arithmetic = (MULTIPLY_PJ_PER_BIT2 * (counts.hard_product_bits * hard
                                              + counts.soft_product_bits * soft)
                      + ADD_PJ_PER_BIT * counts.adder_bits * soft)
        memory = sum(bits * _sram_pj_per_bit(size) * (hard if kind == "bram" else soft)
                     for _, kind, bits, size in counts.memory)
        registers = counts.register_bit_cycles * ADD_PJ_PER_BIT * REGISTER_ACTIVITY * soft
        layers.append(LayerEnergy(counts.name, counts.macs, arithmetic, memory, registers))
    qgraph = plan.qgraph
    io_bits = (qgraph.in_features * qgraph.input.bits
               + qgraph.out_features * qgraph.output.bits)
    seconds = interval / (clock_mhz * 1e6)
    watts = board.luts * family.static_watts_per_lut if static_watts is None else static_watts
    if watts < 0:
        raise HwgenError(f"static_watts must be ≥ 0, not {watts!r}")
    return EnergyReport(board, tuple(layers), io_bits * DRAM_PJ_PER_BIT, watts * seconds * 1e12,
                        seconds, float(watts), clock_mhz, interval)
