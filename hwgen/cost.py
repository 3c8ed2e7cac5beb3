"""Plan + board family → modelled resources: DSPs, LUTs, flip-flops and block RAM per layer.

The model follows what hwgen's engines instantiate and how yosys maps it, family by family:

- **Products.** Every multiplier of an engine is one product of a signed ``w``-bit weight and an
  activation of ``a`` bits (``a + 1`` signed bits when the activation is unsigned). Yosys's
  ``mul2dsp`` puts a product on DSPs when both operands are at least ``dsp_min_width`` bits and
  the product at least ``dsp_min_product`` bits (iCE40: 11, Xilinx: 9, ECP5: every product),
  splitting operands wider than the DSP's ``dsp_a × dsp_b``; narrower products become LUT
  multipliers. Per layer, the plan's multiplier kind decides what the engine instantiates
  (:mod:`hwgen.packing`): ``dsp``, one product each; ``dsp-packed``, one product of the
  activation by the packed weights (``a × packed_bits``) per ``pack`` products, so a DSP count
  that equals yosys's exactly; ``lut``, hwgen's own LUT multiplier, ``lut_array`` LUT sites
  per partial-product bit (rows × other operand), fitted to yosys per family by
  ``benchmarks/multipliers.py --fit``.
- **Requantization.** Each output lane multiplies its ``acc``-bit sum by a 16-bit multiplier as
  two products (low 17 bits unsigned, high part signed): see :mod:`hwgen.hw.requant`. Average
  pools, global average pools and adds multiply by constants the same way.
- **Memories.** Weight ROMs (one per PE row, ``depth × simd·w``), the sliding windows' ``2·kh``
  line-buffer rows, the FIFOs the plan puts on image edges and the global-pool sums. A memory of
  at least ``bram_min_bits`` bits takes ``min over the block's aspect ratios of
  ⌈depth/d⌉·⌈width/w⌉`` block RAMs; smaller ones stay in LUTs (LUT RAM where the family has it).
  Where the family has a :class:`MemoryMap` (ECP5), every memory goes where yosys's
  ``memory_libmap`` puts it instead, by the costs it weighs: a RAM's LUT-RAM cells and their
  read multiplexer, or a ROM's bits in logic, against the blocks.
- **LUTs and flip-flops** (``lut`` counts LUT sites: LUTs, plus carries and LUT RAM in LUT
  equivalents, see :func:`fabric_luts`) are a linear function of a few structural counts per layer (adder bits,
  requant bits, LUT-multiplier bits, memory bits left in logic, datapath register bits), with
  coefficients per family fitted by non-negative least squares to yosys's counts on the example
  models at several bit widths and foldings (``benchmarks/calibrate_cost.py`` refits them). The
  FIFOs and lane converters in front of a layer count with that layer.

The error against yosys is measured, not assumed: ``benchmarks/run.py --cost`` prints it per
model and family, and the slow tests in ``tests/test_cost.py`` bound it.
"""

import dataclasses
import functools
import math

from .board import get_board
from .errors import HwgenError
from .packing import pack_groups, packing
from .reference import Rounding

__all__ = ["FamilyModel", "MemoryMap", "RAMS", "FAMILY_MODELS", "LayerCost", "CostReport",
           "estimate", "layer_features", "product_dsps", "memory_blocks", "fabric_luts",
           "weight_rom_words", "RESOURCES"]

RESOURCES = ("lut", "ff", "dsp", "bram", "spram")

# The structural counts the LUT and FF models are linear in (see layer_features).
FEATURES = ("layer", "adder_bits", "requant_bits", "lut_multiplier_bits", "logic_memory_bits",
            "register_bits", "window", "window_bits", "shared_register_bits")


@dataclasses.dataclass(frozen=True)
class MemoryMap:
    """Where yosys's ``memory_libmap`` puts a memory, by the costs it weighs, and what the
    memory then costs in the fabric.

    A RAM (no initial contents) of ``d × w`` takes ``units = r·⌈w/lutram_width⌉`` LUT-RAM
    cells, ``r = ⌈d/lutram_depth⌉`` deep, scored ``lutram_cost·units + mux_cost·(r − 1)·w``
    (the cells and the multiplexer between their rows); a ROM (LUT RAM takes none) in logic
    is scored ``rom_bit_cost`` per bit. Either goes to block RAM where ``block_cost`` per block
    is less. In LUT RAM a RAM counts ``unit_sites`` LUT sites per cell and ``mux_sites`` per
    multiplexer bit; a ROM in logic one LUT per 16 words of each bit (``w·⌈d/16⌉``, the wider
    multiplexers in the slices' own muxes); both one flip-flop per bit of width (the
    registered read).
    """

    lutram_depth: int
    lutram_width: int
    lutram_cost: float
    mux_cost: float
    block_cost: float
    rom_bit_cost: float
    unit_sites: float
    mux_sites: float

    def _rows(self, depth):
        return math.ceil(depth / self.lutram_depth)

    def _units(self, depth, width):
        return self._rows(depth) * math.ceil(width / self.lutram_width)

    def in_logic(self, depth, width, blocks, ram):
        """Whether yosys keeps a memory that would take ``blocks`` block RAMs out of them."""
        if ram:
            score = (self.lutram_cost * self._units(depth, width)
                     + self.mux_cost * (self._rows(depth) - 1) * width)
        else:
            score = self.rom_bit_cost * depth * width
        return score <= self.block_cost * blocks

    def sites(self, depth, width, ram):
        """LUT sites of a ``depth × width`` memory kept out of block RAM."""
        if ram:
            return (self.unit_sites * self._units(depth, width)
                    + self.mux_sites * (self._rows(depth) - 1) * width)
        return width * math.ceil(depth / 16)


@dataclasses.dataclass(frozen=True)
class FamilyModel:
    """How one FPGA family maps hwgen's hardware (see the module doc).

    dsp_a, dsp_b : widest signed operands of one DSP product.
    dsp_min_width : operands narrower than this never go to a DSP.
    dsp_min_product : products narrower than this (sum of operand widths) stay in LUTs.
    bram_shapes : ``(depth, width)`` aspect ratios of one block RAM, or ``(depth, width,
        blocks)`` for a smaller block that counts as that fraction of one (Xilinx's RAMB18,
        half a RAMB36, as yosys's count and the board's capacity have it).
    bram_min_depth, bram_min_bits : memories shallower or smaller than these stay in logic
        (LUTs, LUT RAM or flip-flops), as yosys's memory mapping leaves them.
    lut, ff : coefficient per name of :data:`FEATURES`.
    lut_array : LUT sites per partial-product bit (rows × other operand bits) of hwgen's own
        LUT multiplier (:class:`hwgen.hw.multiplier.LutMultiplier`), fitted to yosys by
        ``benchmarks/multipliers.py --fit``.
    lut_unrolled : LUT sites per adder bit of an unrolled layer's shift-and-add logic
        (:class:`hwgen.hw.unrolled.Netlist`); its pipeline registers are one flip-flop per
        bit. Fitted on one design each: ECP5 1.35 (nextpnr's count of a 64→32 w6a6 layer),
        Xilinx 0.66 (yosys ``synth_xilinx`` of the pruned jet tagger, LUT6 absorbing small
        adders); iCE40 is not measured (1.0, one LUT per carry bit).
    ff_cells : LUT sites per flip-flop beyond the LUTs. An iCE40 logic cell holds one LUT
        and one flip-flop, and nextpnr packs only some flip-flops beside a LUT of their own,
        so the cells are the LUTs plus this fraction of the flip-flops (fitted to nextpnr's
        packing by ``benchmarks/ice40_cells.py --fit``, see docs/resources.md); 0 where
        flip-flops have sites of their own.
    memory_map : where memories go and what they cost out of block RAM (:class:`MemoryMap`),
        or ``None``: ``bram_min_depth`` and ``bram_min_bits`` decide, and
        ``logic_memory_bits`` weighs what stays in logic.
    ram_block_units : without a ``memory_map``, a RAM (not a ROM) shallower than
        ``bram_min_depth`` goes to block RAM where it would take at least this many LUT RAMs
        (0: never). Xilinx 16: yosys's ``synth_xilinx`` puts a 136 × 16 RAM (18 RAM64M) in a
        RAMB18 and keeps a 192 × 14 one (15) in LUT RAM; with the depth and size thresholds
        it places all 43 shapes measured (32–1,024 words, 1–256 bits;
        ``tests/test_cost.py``) as yosys does.
    """

    dsp_a: int
    dsp_b: int
    dsp_min_width: int
    dsp_min_product: int
    bram_shapes: tuple
    bram_min_depth: int
    bram_min_bits: int
    lut: dict
    ff: dict
    lut_array: float = 0.0
    lut_unrolled: float = 1.0
    ff_cells: float = 0.0
    memory_map: MemoryMap = None
    ram_block_units: int = 0


_DP16KD = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
_SB_RAM40 = ((2048, 2), (1024, 4), (512, 8), (256, 16))
_RAMB36 = ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36), (512, 72),
           (16384, 1, 0.5), (8192, 2, 0.5), (4096, 4, 0.5), (2048, 9, 0.5), (1024, 18, 0.5),
           (512, 36, 0.5))

# ECP5: TRELLIS_DPR16X4 (16 × 4, cost 4 in yosys's lutrams_trellis.txt) against DP16KD (cost 128),
# ROMs in logic at 1/16 a bit; the RAM multiplexer's cost and LUT sites fitted by
# benchmarks/ecp5_memories.py --fit to yosys's synth_ecp5 of 179 RAM shapes (16-512 deep, 1-256
# wide; the costs place every one as yosys does, the LUT sites are within 14 % on average) and
# 19 ROM shapes (16-2048 deep, 2-936 wide; every one placed as yosys does).
_ECP5_MEMORIES = MemoryMap(lutram_depth=16, lutram_width=4, lutram_cost=4, mux_cost=0.39,
                           block_cost=128, rom_bit_cost=1 / 16, unit_sites=2.364,
                           mux_sites=1.191)

# Coefficients fitted by benchmarks/calibrate_cost.py on eight example designs, iCE40's LUT, FF
# and ff_cells by benchmarks/ice40_cells.py --fit on ten iCEBreaker designs, the Xilinx LUT and
# FF coefficients by benchmarks/xilinx_layers.py --fit per layer on thirteen designs (ResNet-8
# as planned for the Arty A7-35T among them; the LUTs refitted when the Xilinx (generic) build's
# sliding windows began selecting their beats instead of shifting them; see docs/resources.md
# for the data and the error they leave).
FAMILY_MODELS = {
    "ecp5": FamilyModel(18, 18, 2, 0, _DP16KD, 2, 4096,
                        lut={"layer": 225.5, "adder_bits": 0.2216, "requant_bits": 4.926,
                             "lut_multiplier_bits": 0.0, "logic_memory_bits": 0.0,
                             "register_bits": 0.161, "window": 86.98, "window_bits": 0.4067,
                             "shared_register_bits": 0.161},
                        ff={"layer": 0.0, "adder_bits": 0.0, "requant_bits": 6.764,
                            "lut_multiplier_bits": 0.0, "logic_memory_bits": 0.0,
                            "register_bits": 0.6528, "window": 111.3, "window_bits": 0.9405,
                            "shared_register_bits": 0.6528},
                        lut_array=2.116, lut_unrolled=1.353, memory_map=_ECP5_MEMORIES),
    "ice40": FamilyModel(16, 16, 2, 11, _SB_RAM40, 8, 64,
                         lut={"layer": 0.0, "adder_bits": 5.643, "requant_bits": 10.97,
                              "lut_multiplier_bits": 0.0045, "logic_memory_bits": 0.371,
                              "register_bits": 0.0101, "window": 350.4, "window_bits": 0.0,
                              "shared_register_bits": 0.0101},
                         ff={"layer": 0.0, "adder_bits": 5.103, "requant_bits": 9.805,
                             "lut_multiplier_bits": 0.0, "logic_memory_bits": 0.4512,
                             "register_bits": 0.2192, "window": 420.6, "window_bits": 0.0,
                             "shared_register_bits": 0.2192},
                         lut_array=2.036, ff_cells=0.563),
    "xc7": FamilyModel(25, 18, 2, 9, _RAMB36, 256, 3072,
                       lut={"layer": 103.3, "adder_bits": 0.1775, "requant_bits": 2.156,
                            "lut_multiplier_bits": 0.7053, "logic_memory_bits": 0.0531,
                            "register_bits": 0.2055, "window": 74.59, "window_bits": 0.2469,
                            "shared_register_bits": 0.8289},
                       ff={"layer": 0.0, "adder_bits": 0.1462, "requant_bits": 6.223,
                           "lut_multiplier_bits": 1.117, "logic_memory_bits": 0.0024,
                           "register_bits": 0.2235, "window": 86.02, "window_bits": 1.02,
                           "shared_register_bits": 1.117},
                       lut_array=1.454, lut_unrolled=0.66, ram_block_units=16),
}
FAMILY_MODELS["xcup"] = dataclasses.replace(FAMILY_MODELS["xc7"], dsp_a=27)

# Memories read asynchronously, which stay in logic whatever their size.
_LOGIC_MEMORIES = {"requant layers"}

# Memories without initial contents (the rest are ROMs), as a family's MemoryMap tells them.
RAMS = {"line buffer", "fifo", "output fifo", "sums", "rows", "activations"}

# A shared engine's sequencing (loop counters, addresses, the running layer's constants) in
# LUT sites: a fixed part and one per layer after the first, and its requant table, where it
# is too small for block RAM, as a multiplexer of constants (LUT sites per bit). Fitted to
# yosys's iCE40 LUTs of five shared engines (1 to 11 layers: LeNet's and MLPerf Tiny's
# DS-CNN's); docs/resources.md gives the error.
_SHARED_CONTROL_LUTS = (90, 85)
_SHARED_TABLE_LUTS_PER_BIT = 0.32

_REQUANT_MULTIPLIER_BITS = 16   # M < 2^16, unsigned (see hwgen.hw.requant)
_REQUANT_LOW_BITS = 17


def _chunks(bits, limit, model):
    """Pieces ``mul2dsp`` cuts a ``bits``-wide operand into for ``limit``-wide DSP ports: full
    pieces, plus the remainder when it is at least ``dsp_min_width`` (a narrower remainder's
    partial product is built from LUTs)."""
    return bits // limit + (bits % limit >= model.dsp_min_width)


# LUT sites per cell that yosys counts apart from the LUTs: an ECP5 CCU2C carry and a
# TRELLIS_DPR16X4 LUT RAM fill two LUT4 sites each; a Xilinx LUT RAM or shift register fills
# the LUT6s of its SLICEM (RAM64M: four, RAM64X1D: two, SRLC32E: one); iCE40 carries sit
# beside LUTs that are counted already.
_XILINX_LUT_SITES = {"RAM32X1S": 1, "RAM64X1S": 1, "RAM32X1D": 2, "RAM64X1D": 2,
                     "RAM128X1S": 2, "RAM32M": 4, "RAM64M": 4, "RAM128X1D": 4, "RAM256X1S": 4,
                     "RAM32M16": 8, "RAM64M8": 8, "RAM256X1D": 8, "RAM512X1S": 8,
                     "RAM32X16DR8": 8, "RAM64X8SW": 8, "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1}
_LUT_SITES = {"ecp5": {"CCU2C": 2, "TRELLIS_DPR16X4": 2}, "ice40": {},
              "xc7": _XILINX_LUT_SITES, "xcup": _XILINX_LUT_SITES}
_LUT_CELLS = {"ecp5": ("LUT4",), "ice40": ("SB_LUT4",),
              "xc7": tuple(f"LUT{n}" for n in range(1, 7)),
              "xcup": tuple(f"LUT{n}" for n in range(1, 7))}


def fabric_luts(cells, family):
    """The LUT sites a yosys cell count (``{"LUT4": 3357, "CCU2C": 1158, ...}``) occupies: what
    the model's ``lut`` predicts (LUTs, plus carries, LUT RAM and shift registers in LUT-site
    equivalents)."""
    total = sum(cells.get(name, 0) for name in _LUT_CELLS[family])
    total += sum(sites * cells.get(name, 0) for name, sites in _LUT_SITES[family].items())
    return total


def product_dsps(a_bits, b_bits, model, product_bits=None):
    """DSPs one signed ``a_bits × b_bits`` product takes (0: it is built from LUTs).
    ``product_bits`` is the width the product really needs, when less than the sum (an unsigned
    activation is one bit wider as a signed operand, but yosys narrows it back)."""
    small, large = sorted((a_bits, b_bits))
    product_bits = small + large if product_bits is None else product_bits
    if small < model.dsp_min_width or product_bits < model.dsp_min_product:
        return 0
    return min(_chunks(a, model.dsp_a, model) * _chunks(b, model.dsp_b, model)
               for a, b in ((a_bits, b_bits), (b_bits, a_bits)))


def memory_blocks(depth, width, model, what=None, block=False):
    """Block RAMs a ``depth × width`` memory takes (0: it stays in logic, as every memory
    named in :data:`_LOGIC_MEMORIES` does). ``what`` names the memory (one of :data:`RAMS`,
    or a ROM); where it is given and the family has a :class:`MemoryMap`, that decides.
    ``block``: the memory is marked for block RAM (a plan's ``weights="bram"``), which the
    memory mapper honours whatever the size."""
    if what in _LOGIC_MEMORIES:
        return 0
    blocks = min(math.ceil(depth / d) * math.ceil(width / w) * (share[0] if share else 1)
                 for d, w, *share in model.bram_shapes)
    if block:
        return blocks
    memories = model.memory_map if what is not None else None
    if memories is not None:
        return 0 if memories.in_logic(depth, width, blocks, what in RAMS) else blocks
    if (what in RAMS and depth < model.bram_min_depth
            and _lut_ram_units(depth, width) >= model.ram_block_units > 0):
        return blocks
    if depth < model.bram_min_depth or depth * width < model.bram_min_bits:
        return 0
    return blocks


def _lut_ram_units(depth, width):
    """Xilinx LUT RAMs a simple dual-port ``depth × width`` RAM would take where yosys builds
    one deeper than 64 words from them: RAM64M (64 × 3) or, up to 96 words, RAM32M (32 × 6)
    where fewer; 0 for 64 words or fewer (yosys keeps those in LUT RAM however wide)."""
    if depth <= 64:
        return 0
    units = math.ceil(depth / 64) * math.ceil(width / 3)
    if depth <= 96:
        units = min(units, math.ceil(depth / 32) * math.ceil(width / 6))
    return units


@dataclasses.dataclass(frozen=True)
class _Parts:
    """What one layer's engine is made of, before the family's coefficients."""

    products: tuple          # ((a_bits, b_bits, product_bits, count), ...)
    memories: tuple          # ((what, depth, width, count), ...)
    adder_bits: int
    requant_bits: int
    register_bits: int
    lut_array_bits: int = 0  # partial-product bits of hwgen's LUT multipliers
    unrolled_bits: int = 0   # adder bits of an unrolled layer's constant arithmetic
    pipeline_bits: int = 0   # its pipeline registers
    control_luts: int = 0    # a shared engine's sequencing, in LUT sites (measured, iCE40)


def _act_bits(quant):
    return quant.bits + (not quant.signed)


def _requant(lanes, acc_bits, multiplier_bits=_REQUANT_MULTIPLIER_BITS):
    """Products and adder bits of ``lanes`` requant lanes over an ``acc_bits`` sum
    (``multiplier_bits``: 16, or 24 for onnxruntime's float32 ratio)."""
    low = min(_REQUANT_LOW_BITS, acc_bits)
    products = [(low, multiplier_bits, low + multiplier_bits, lanes)]
    if acc_bits > low:
        high = acc_bits - low + 1
        products.append((high, multiplier_bits + 1, high + multiplier_bits, lanes))
    return products, lanes * (acc_bits + multiplier_bits)


def _lut_multiplier_registers(w, a, product_bits):
    """Flip-flops of one :class:`~hwgen.hw.multiplier.LutMultiplier`: the operands, the sums
    after every adder level but the last (``⌈rows / 2^l⌉`` sums of about ``other + 2^l`` bits;
    rows = the narrower operand) and the product."""
    rows, other = sorted((w, a))
    levels = math.ceil(math.log2(rows)) if rows > 1 else 0
    tree = sum(math.ceil(rows / (1 << level)) * (other + (1 << level))
               for level in range(1, levels))
    return w + a + tree + product_bits


def _multipliers(layer, kind, pack, pe, simd, a, product_bits):
    """``(products, lut_array_bits, register_bits, weight_word_bits)`` of ``pe × simd``
    products of ``kind`` (when packed, ``⌈pe / pack⌉ × simd`` DSPs: the PEs share the
    operand) of ``layer``'s widths."""
    w = layer.weight_bits
    count = pe * simd
    if kind == "dsp-packed" and pack > 1:
        layout = packing(w, layer.input.bits, layer.input.signed, pack)
        dsps = pack_groups(pe, pack) * simd
        packed = layout.packed_bits
        registers = dsps * (a + packed + a + packed + pack * layout.shift)
        return [(a, packed, a + packed, dsps)], 0, registers, packed
    if kind == "lut":
        return ([], count * w * layer.input.bits,
                count * _lut_multiplier_registers(w, layer.input.bits, product_bits), w)
    return [(w, a, product_bits, count)], 0, count * (w + a + product_bits), w


def _weighted_parts(layer_plan):
    """MAC unit, systolic array, depthwise engine."""
    layer, engine, pe, simd = layer_plan.layer, layer_plan.engine, layer_plan.pe, \
        layer_plan.simd
    w, a = layer.weight_bits, _act_bits(layer.input)
    acc = layer.acc_bits
    product_bits = w + layer.input.bits
    kind, pack = layer_plan.multiplier, layer_plan.pack
    if engine == "depthwise":
        lanes, depth = pe, layer.kernel[0] * layer.kernel[1] * layer.in_shape[2] // pe
        products, array_bits, multiplier_registers, _ = _multipliers(layer, kind, 1, pe, 1, a,
                                                                     product_bits)
        memories = [("weights", depth, pe * w, 1)]
        adders = pe * acc
        registers = multiplier_registers + pe * 2 * acc
    else:
        lanes = pe
        ins = layer.in_features if engine == "mac" else layer.window
        outs = layer.out_features if engine == "mac" else layer.out_channels
        depth = (ins // simd) * (outs // pe)
        products, array_bits, multiplier_registers, word_bits = _multipliers(
            layer, kind, pack, pe, simd, a, product_bits)
        memories = [("weights", depth, simd * word_bits, pack_groups(pe, pack))]
        tree = pe * (simd - 1) * (product_bits + math.ceil(math.log2(simd)) // 2 + 1)
        adders = tree + pe * acc
        registers = multiplier_registers + simd * a + 2 * tree + 2 * pe * acc
        if engine == "mac":
            registers += 2 * layer.in_features * a        # the double-buffered input vector
        else:
            registers += pack_groups(pe, pack) * simd * a  # the window moving down the rows
    requant_products, requant_bits = _requant(
        lanes, acc, max(_REQUANT_MULTIPLIER_BITS, layer.multiplier_bits))
    return products + requant_products, memories, adders, requant_bits, registers, array_bits


def weight_rom_words(layer_plan):
    """Words of each weight ROM of a mac, systolic or depthwise layer's plan."""
    return next(depth for what, depth, *_ in _weighted_parts(layer_plan)[1] if what == "weights")


def _sequential_parts(layer_plan):
    """A shared layer-sequential engine (:class:`~hwgen.hw.sequential.SequentialEngine`): its
    ``pe`` multipliers at the chain's widest weight operand and shared code width, one requant
    lane, the weight ROM (per layer, group and window step one word of ``pe`` weights), the
    activation banks (:attr:`~hwgen.plan_sequential.Chain.slots`), the requant's table, the
    accumulators and the queue into the requant."""
    chain, pe, kind = layer_plan.layer, layer_plan.pe, layer_plan.multiplier
    w, a, acc = chain.operand_bits, chain.code_bits, chain.acc_bits
    product_bits = w + a
    if kind == "lut":
        products, array_bits = [], pe * w * a
        multiplier_registers = pe * _lut_multiplier_registers(w, a, product_bits)
    else:
        products, array_bits, multiplier_registers = [(w, a, product_bits, pe)], 0, \
            pe * (w + a + product_bits)
    requant_products, requant_bits = _requant(
        1, acc, max(_REQUANT_MULTIPLIER_BITS, chain.multiplier_bits))
    from .hw.sequential import requant_table
    table = requant_table(chain.layers, pe)
    memories = [("weights", max(chain.weight_words(pe), 1), pe * chain.weight_bits, 1),
                ("activations", chain.slots.count * chain.bank_words(pe),
                 pe * chain.stored_bits, 1),
                ("requant table", len(table.channel_words), table.channel_bits, 1),
                ("requant layers", len(table.layer_words), table.layer_bits, 1)]
    counters = 6 * max(chain.steps(pe), 2).bit_length()
    adders = pe * acc + counters
    registers = multiplier_registers + 2 * pe * acc + 3 * pe * a + counters
    control = _SHARED_CONTROL_LUTS[0] + _SHARED_CONTROL_LUTS[1] * (len(chain.layers) - 1)
    return (products + requant_products, memories, adders, requant_bits, registers, array_bits,
            control)


def _window_parts(layer_plan, lanes):
    """The pad unit's and sliding window's line buffer and window register."""
    layer = layer_plan.layer
    height, width, channels = layer.in_shape
    top, left, bottom, right = layer.pads
    kh, kw = layer.kernel
    a = layer.input.bits
    in_lanes = layer_plan.in_lanes
    row_words = (width + left + right) * channels // in_lanes
    memories = [("line buffer", row_words, in_lanes * a, 2 * kh)]
    registers = kh * kw * channels * a // max(channels // lanes, 1) + kh * in_lanes * a
    return memories, registers


def _window_register_bits(layer):
    """Flip-flops of a sliding window's window and hold registers
    (:class:`~hwgen.hw.window.SlidingWindow`): each holds the whole ``kh × kw × C`` window of
    codes. (``_window_parts`` counts an older, smaller estimate in ``register_bits``, which the
    ECP5 and iCE40 coefficients were fitted with; the Xilinx fit weighs this count instead.)"""
    kh, kw = layer.kernel
    return 2 * kh * kw * layer.in_shape[2] * layer.input.bits


def _pool_parts(layer_plan):
    layer, lanes = layer_plan.layer, layer_plan.pe
    a, sum_bits = layer.act_bits, layer.acc_bits
    if layer.op == "global_avgpool":
        channels = layer.in_shape[2]
        products, requant_bits = _requant(lanes, sum_bits)
        memories = [("sums", channels // lanes, lanes * sum_bits, 1)]
        return products, memories, lanes * sum_bits, requant_bits, lanes * (a + 2 * sum_bits)
    if layer.op == "concat":
        requantized = sum(not layer.passes(i) for i in range(len(layer.inputs)))
        products = [(a + 2, _REQUANT_MULTIPLIER_BITS, a + 2 + _REQUANT_MULTIPLIER_BITS,
                     requantized * lanes)] if requantized else []
        bits = lanes * (a + 2 + _REQUANT_MULTIPLIER_BITS) * requantized
        return products, [], bits + lanes * a, bits, 2 * lanes * (a + 1) + 16
    if layer.op == "add":
        products = [(a + 2, _REQUANT_MULTIPLIER_BITS, a + 2 + _REQUANT_MULTIPLIER_BITS,
                     2 * lanes)]
        bits = lanes * (a + 2 + _REQUANT_MULTIPLIER_BITS)
        return products, [], 2 * bits, bits, 3 * bits
    if layer.kind == "max":
        sum_bits = a + 1
    products, requant_bits = ([], 0) if layer.kind == "max" else _requant(lanes, sum_bits)
    memories, registers = _window_parts(layer_plan, lanes)
    adders = lanes * sum_bits
    if layer.kind == "avg" and layer.rounding is Rounding.FLOAT32_ORT:
        # onnxruntime's float32 arithmetic (hw.pool.PoolReduce), counted roughly: a term and a
        # threshold table per lane, an adder and a rounder per addition, and the terms that
        # ride the chain (about window²/2 + 2·window registers of a + 25 bits each).
        window = layer.kernel[0] * layer.kernel[1]
        term_bits = a + 26
        float_bits = term_bits + max(window - 1, 1).bit_length()
        memories = memories + [("float32 terms", 1 << a, term_bits, lanes),
                               ("float32 thresholds", 1 << layer.output.bits, float_bits + 1,
                                lanes)]
        adders += lanes * (window - 1) * 2 * float_bits
        registers += lanes * (window * window // 2 + 2 * window) * term_bits
    return products, memories, adders, requant_bits, registers + 2 * lanes * sum_bits


def _lookup_parts(layer_plan):
    """A lookup table per lane (:class:`~hwgen.hw.table.TableUnit`), or an argmax's
    comparator tree over its lanes and the running best (:class:`~hwgen.hw.table.ArgMaxUnit`)."""
    layer, lanes = layer_plan.layer, layer_plan.pe
    a = layer.input.bits
    if layer_plan.engine == "table":
        out = layer.output.bits
        memories = [("table", 1 << a, out, lanes)]
        return [], memories, 0, 0, lanes * (a + 2 * out) + 4
    index = layer.output.bits
    comparators = 2 * lanes - 1
    return [], [], comparators * (a + index), 0, comparators * (a + index) + 2 * (a + index)


def _upsample_parts(layer_plan):
    """Two rows of the input (:class:`~hwgen.hw.upsample.Upsample`), and its counters."""
    layer, lanes = layer_plan.layer, layer_plan.pe
    height, width, channels = layer.in_shape
    a = layer.input.bits
    memories = [("rows", 2 * width * channels // lanes, lanes * a, 1)]
    counters = 4 * max(width, height, layer.factor[0] * layer.factor[1], 2).bit_length()
    return [], memories, counters, 0, lanes * a + counters + 4


@functools.lru_cache(maxsize=64)
def unrolled_netlist(layer, levels, start_level=0):
    """The :class:`hwgen.hw.unrolled.Netlist` of an unrolled layer (cached: the board search
    asks for it once per candidate plan)."""
    from .hw.unrolled import Netlist
    return Netlist(layer, levels, start_level)


def _unrolled_parts(layer_plan):
    """An unrolled layer: its netlist's adders and registers and its output FIFO, and for a
    conv the pad unit's and sliding window's line buffer and registers (the whole window per
    beat)."""
    layer = layer_plan.layer
    netlist = unrolled_netlist(layer, layer_plan.levels)
    outputs = netlist.layer.out_features
    width = outputs * layer.output.bits + 1
    memories, registers = [("output fifo", netlist.stages + 2, width, 1)], 2 * width + 4
    if layer.op == "conv":
        window_memories, window_registers = _window_parts(layer_plan, layer_plan.simd)
        memories, registers = memories + window_memories, registers + window_registers
    return memories, registers, netlist


def _parts(layer_plan, plan):
    """The :class:`_Parts` of one layer, with the FIFOs on its input edges."""
    layer = layer_plan.layer
    array_bits, unrolled_bits, pipeline_bits, control_luts = 0, 0, 0, 0
    if layer_plan.engine == "unrolled":
        memories, registers, netlist = _unrolled_parts(layer_plan)
        products, adders, requant_bits = [], 0, 0
        unrolled_bits, pipeline_bits = netlist.adder_bits, netlist.register_bits
    elif layer_plan.engine == "upsample":
        products, memories, adders, requant_bits, registers = _upsample_parts(layer_plan)
    elif layer_plan.engine in ("table", "argmax"):
        products, memories, adders, requant_bits, registers = _lookup_parts(layer_plan)
    elif layer_plan.engine == "sequential":
        (products, memories, adders, requant_bits, registers, array_bits,
         control_luts) = _sequential_parts(layer_plan)
    elif layer_plan.engine in ("mac", "systolic", "depthwise"):
        products, memories, adders, requant_bits, registers, array_bits = _weighted_parts(
            layer_plan)
        if layer_plan.engine != "mac":
            lanes = layer_plan.simd if layer_plan.engine == "systolic" else layer_plan.pe
            window_memories, window_registers = _window_parts(layer_plan, lanes)
            memories, registers = memories + window_memories, registers + window_registers
    else:
        products, memories, adders, requant_bits, registers = _pool_parts(layer_plan)
    if plan is not None:
        qgraph = plan.qgraph
        for tensor in layer.inputs:
            depth = plan.fifo_depth(tensor, layer.name)
            if depth > 1:
                lanes = (plan.in_lanes if tensor == qgraph.input_name
                         else plan[tensor].out_lanes)
                bits = qgraph.quant_of(tensor).bits
                memories = memories + [("fifo", depth - 1, lanes * bits + 1, 1)]
                registers += 2 * (lanes * bits + 1)
    return _Parts(tuple(products), tuple(memories), int(adders), int(requant_bits),
                  int(registers), int(array_bits), unrolled_bits=int(unrolled_bits),
                  pipeline_bits=int(pipeline_bits), control_luts=int(control_luts))


def layer_features(layer_plan, family, plan=None, model=None):
    """``(dsp, bram, features)`` of one layer on ``family`` (or a given :class:`FamilyModel`):
    DSP and block-RAM counts by the mapping rules, and the :data:`FEATURES` counts the LUT and
    FF models weigh (plus ``lut_array_bits``, which ``FamilyModel.lut_array`` weighs)."""
    model = model or FAMILY_MODELS[family]
    parts = _parts(layer_plan, plan)
    dsp, lut_multiplier_bits = 0, 0
    for a_bits, b_bits, product_bits, count in parts.products:
        per_product = product_dsps(a_bits, b_bits, model, product_bits)
        dsp += per_product * count
        if not per_product:
            lut_multiplier_bits += a_bits * b_bits * count
    from .hw.rom import ecp5_rom_blocks  # hwgen.hw.rom imports this module

    bram, logic_memory_bits, spram = 0, 0, 0
    memory_sites, memory_reads = 0, 0
    control_luts = parts.control_luts
    for what, depth, width, count in parts.memories:
        if what == "activations" and family == "ice40":
            # A shared engine's banks go into SB_SPRAM256KA where they are large (the
            # default target "ice40" builds them so).
            from .hw.sequential import spram_count
            banks = layer_plan.layer.slots.count
            sprams = spram_count(depth // banks, width, banks)
            if sprams:
                spram += sprams * count
                continue
        rom = what == "weights" and layer_plan.weights_in is not None  # a WeightRom
        block = rom and layer_plan.weights == "bram"
        if rom and family == "ecp5":
            # The ECP5 target builds its weight ROMs' block RAMs itself (x18 or x9 DP16KDs).
            blocks = ecp5_rom_blocks(depth, width, block)
        else:
            blocks = memory_blocks(depth, width, model, what, block)
        bram += blocks * count
        if not blocks and what == "requant table":
            control_luts += _SHARED_TABLE_LUTS_PER_BIT * depth * width * count
        elif not blocks and model.memory_map is not None:
            memory_sites += model.memory_map.sites(depth, width, what in RAMS) * count
            memory_reads += width * count
        elif not blocks:
            logic_memory_bits += depth * width * count
    windowed = any(what == "line buffer" for what, *_ in parts.memories)
    shared = layer_plan.engine == "sequential"
    features = {"layer": 1, "adder_bits": parts.adder_bits,
                "requant_bits": parts.requant_bits,
                "lut_multiplier_bits": lut_multiplier_bits,
                "logic_memory_bits": logic_memory_bits,
                "register_bits": 0 if shared else parts.register_bits,
                "shared_register_bits": parts.register_bits if shared else 0,
                "window": int(windowed),
                "window_bits": _window_register_bits(layer_plan.layer) if windowed else 0,
                "lut_array_bits": parts.lut_array_bits, "unrolled_bits": parts.unrolled_bits,
                "pipeline_bits": parts.pipeline_bits, "spram": spram,
                "control_luts": control_luts, "memory_sites": memory_sites,
                "memory_reads": memory_reads}
    return dsp, bram, features


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """One layer's modelled resources (its input FIFOs included) and cycles per frame."""

    name: str
    engine: str
    folding: str
    bits: str
    multipliers: int
    lut: int
    ff: int
    dsp: int
    bram: int
    cycles: int
    multiplier: str = ""
    spram: int = 0

    def __getitem__(self, resource):
        return getattr(self, resource)


@dataclasses.dataclass(frozen=True)
class CostReport:
    """Every layer's :class:`LayerCost` on one board, the totals and whether they fit."""

    board: object
    layers: tuple
    initiation_interval: int

    @property
    def totals(self):
        return {resource: sum(layer[resource] for layer in self.layers)
                for resource in RESOURCES}

    @property
    def capacity(self):
        return self.board.capacity

    @property
    def utilization(self):
        """Resource → used ÷ available (``inf`` when the board has none and some are used)."""
        return {resource: _fraction(used, self.capacity[resource])
                for resource, used in self.totals.items()}

    @property
    def overflow(self):
        """Resource → ``(used, available)`` for every resource the design runs out of."""
        return {resource: (used, self.capacity[resource])
                for resource, used in self.totals.items() if used > self.capacity[resource]}

    @property
    def fits(self):
        return not self.overflow

    @property
    def frames_per_second(self):
        """Throughput at the board's target clock."""
        return self.board.target_mhz * 1e6 / self.initiation_interval

    def describe_overflow(self):
        """``"DSP 12 of 8 (4 over, 150%)"``-style text for every resource that runs out."""
        return "; ".join(f"{resource.upper()} {used} of {available} ({used - available} over, "
                         f"{_fraction(used, available):.0%})"
                         for resource, (used, available) in self.overflow.items())

    def table(self):
        """A per-layer text table with totals and the board's capacity (SPRAM only where the
        board has or the design uses some)."""
        totals = self.totals
        shown = [resource for resource in RESOURCES
                 if resource != "spram" or self.capacity["spram"] or totals["spram"]]
        header = ("layer", "engine", "folding", "kind", "bits", "mult",
                  *(resource.upper() for resource in shown), "cycles")
        rows = [header] + [
            (layer.name, layer.engine, layer.folding, layer.multiplier, layer.bits,
             str(layer.multipliers), *(str(layer[resource]) for resource in shown),
             str(layer.cycles))
            for layer in self.layers]
        rows.append(("total", "", "", "", "",
                     str(sum(layer.multipliers for layer in self.layers)),
                     *(str(totals[resource]) for resource in shown),
                     str(self.initiation_interval)))
        rows.append((self.board.name, "", "", "", "", "",
                     *(f"{self.capacity[resource]}" for resource in shown), ""))
        rows.append(("used", "", "", "", "", "",
                     *(f"{self.utilization[resource]:.0%}" for resource in shown), ""))
        widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
        return "\n".join("  ".join(cell.rjust(width) if column >= 5 else cell.ljust(width)
                                   for column, (cell, width) in enumerate(zip(row, widths)))
                         .rstrip() for row in rows)

    def to_json(self):
        return {"board": self.board.name, "family": self.board.family,
                "totals": self.totals, "capacity": self.capacity,
                "utilization": {k: round(v, 4) for k, v in self.utilization.items()},
                "fits": self.fits, "frames_per_second_at_target": self.frames_per_second,
                "layers": [dataclasses.asdict(layer) for layer in self.layers]}

    def __repr__(self):
        verdict = "fits" if self.fits else "does NOT fit: " + self.describe_overflow()
        return (f"Modelled resources on {self.board.title}, {verdict}\n" + self.table())


def _fraction(used, available):
    if available:
        return used / available
    return math.inf if used else 0.0


def _bits_label(layer):
    weight = f"w{layer.weight_bits}" if hasattr(layer, "weight_bits") else ""
    return f"{weight}a{layer.act_bits}"


def _linear(coefficients, features, extra=0.0):
    return max(0, round(sum(coefficients[name] * features[name] for name in FEATURES) + extra))


def fixed_terms(features, model):
    """``(LUT sites, flip-flops)`` of a layer that ``model`` counts outside its linear
    coefficients: LUT multipliers' partial products, unrolled adders, a shared engine's
    sequencing and memories out of block RAM (:class:`MemoryMap`); unrolled pipeline registers
    and those memories' read registers."""
    return (model.lut_array * features["lut_array_bits"]
            + model.lut_unrolled * features["unrolled_bits"] + features["control_luts"]
            + features["memory_sites"],
            features["pipeline_bits"] + features["memory_reads"])


def layer_cost(layer_plan, board, plan=None, model=None):
    """The :class:`LayerCost` of one planned layer on ``board`` (a name or Board), by the
    family's :class:`FamilyModel` or a given one."""
    board = get_board(board)
    model = model or FAMILY_MODELS[board.family]
    dsp, bram, features = layer_features(layer_plan, board.family, plan, model)
    folding = layer_plan.describe().partition(":")[2].partition(":")[0]
    fixed_lut, fixed_ff = fixed_terms(features, model)
    ff = _linear(model.ff, features, fixed_ff)
    return LayerCost(layer_plan.name, layer_plan.engine, folding,
                     _bits_label(layer_plan.layer), layer_plan.multipliers,
                     _linear(model.lut, features, fixed_lut + model.ff_cells * ff),
                     ff, dsp, bram,
                     layer_plan.cycles,
                     layer_plan.multiplier_label, features["spram"])


def estimate(plan, board):
    """The :class:`CostReport` of ``plan`` on ``board`` (a name or a Board)."""
    board = get_board(board)
    if board.family not in FAMILY_MODELS:
        raise HwgenError(f"no cost model for the {board.family!r} family")
    layers = tuple(layer_cost(layer_plan, board, plan) for layer_plan in plan.layers)
    return CostReport(board, layers, plan.initiation_interval)
