"""The engines' three multiplier kinds (see :mod:`hwgen.packing`): one product per hard
multiplier (:class:`~hwgen.hw.dsp.Multiplier`), several products sharing an operand from one
hard multiplier (:class:`PackedMultiplier`), and a fabric multiplier (:class:`LutMultiplier`).
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..packing import check_kind
from .dsp import Multiplier, check_target

__all__ = ["LutMultiplier", "PackedMultiplier", "lut_latency", "multiplier_latency",
           "multiply_kind"]


class LutMultiplier(wiring.Component):
    """``p = a · b`` from LUTs and carry chains, never a DSP: one partial product per bit of
    the narrower operand ``r`` (``r_j · x · 2^j``, an AND row; the sign bit's row is subtracted
    when ``r`` is signed), summed by a balanced tree of two-input adders.

    Pipelined with the clock enable ``en``: a register on each operand (as in a DSP: the
    engines share an activation between many multipliers, and without a local copy that
    fan-out, 8 PEs × 8 rows on ECP5, cost 6 ns of routing), then a register after every adder
    level, the last one ``p``, so a clock period holds one AND and one adder. Latency
    :func:`lut_latency`: 2 for an ``r`` of up to 2 bits, 3 for 3–4, 4 for 5–8, 5 for 9–16.
    Measured on ECP5 (an 8 × 8 MAC unit of them): two adder levels per stage closed at
    112 MHz (8 × 8 bits) and 145 MHz (4 × 4), one level per stage at 158 and 181 MHz.

    Widths: ``p`` has Amaranth's shape of ``a_shape × b_shape``, exact for every code.
    Cost: ``width(r) − 1`` adders of about ``width(x) + width(r)`` bits, no DSP, no memory.

    Members
    -------
    a : In(a_shape)
    b : In(b_shape)
    en : In(1)
    p : Out(product shape)
    """

    def __init__(self, a_shape, b_shape):
        a, b = Signal(a_shape), Signal(b_shape)
        self._latency = lut_latency(len(a), len(b))
        super().__init__({"a": In(a.shape()), "b": In(b.shape()), "en": In(1),
                          "p": Out((a * b).shape())})

    @property
    def latency(self):
        return self._latency

    def elaborate(self, platform):
        m = Module()
        a, b = Signal.like(self.a, name="a_reg"), Signal.like(self.b, name="b_reg")
        with m.If(self.en):
            m.d.sync += [a.eq(self.a), b.eq(self.b)]
        rows, other = sorted((a, b), key=lambda value: (len(value), value is b))
        width = len(rows)
        # A node is (value, shift, negative): it stands for ±value · 2^shift.
        nodes = [(Mux(rows[bit], other, 0), bit, rows.shape().signed and bit == width - 1)
                 for bit in range(width)]
        levels = ceil_log2(width)
        for level in range(levels):
            nodes = self._level(m, nodes, level)
            if level < levels - 1:
                registered = []
                for index, (value, shift, negative) in enumerate(nodes):
                    held = Signal(value.shape(), name=f"stage{level}_{index}")
                    with m.If(self.en):
                        m.d.sync += held.eq(value)
                    registered.append((held, shift, negative))
                nodes = registered
        (value, shift, negative), = nodes
        root = -value if negative else value
        with m.If(self.en):
            m.d.sync += self.p.eq(root << shift)
        return m

    @staticmethod
    def _level(m, nodes, level):
        """One adder level over ``nodes`` (combinational; the caller registers): pairs summed,
        an odd last node passed on."""
        summed = []
        for index in range(0, len(nodes), 2):
            pair = nodes[index:index + 2]
            if len(pair) == 1:
                summed.append(pair[0])
                continue
            (low, low_shift, low_neg), (high, high_shift, high_neg) = pair
            base = min(low_shift, high_shift)
            low = low << (low_shift - base)
            high = high << (high_shift - base)
            if low_neg == high_neg:
                value, negative = low + high, low_neg
            elif high_neg:
                value, negative = low - high, False
            else:
                value, negative = high - low, False
            node = Signal(value.shape(), name=f"sum{level}_{index // 2}")
            m.d.comb += node.eq(value)
            summed.append((node, base, negative))
        return summed


def lut_latency(a_bits, b_bits):
    """Cycles of a :class:`LutMultiplier` of ``a_bits × b_bits``: the operand register, then
    one register per adder level over the narrower operand's rows (at least one). (Two levels
    per register closed at 145 MHz on ECP5 at 4 × 4 bits, against 181 MHz with one.)"""
    return 1 + max(1, ceil_log2(min(a_bits, b_bits)))


class PackedMultiplier(wiring.Component):
    """``layout.count`` products ``x · w_i`` from one hard multiplier: ``P = x · b`` with the
    packed constant ``b = Σ w_i · 2^(i·S)`` (:func:`hwgen.packing.pack_word`, ``S =
    layout.shift``), then field ``i`` recovered as ``sext(P[iS:(i+1)S] + P[iS − 1])``.

    Latency 3 (clock enable ``en``): the multiplier's operand and product registers
    (:class:`~hwgen.hw.dsp.Multiplier`, for ``target``), then a register on the fields, so the
    sign corrections (one ``S``-bit increment per field) do not sit between a DSP's output and
    the adder tree behind it.

    Parameters
    ----------
    x_shape : ShapeLike
        The shared operand (an activation code, signed or unsigned).
    layout : :class:`hwgen.packing.Packing`
    target : str

    Members
    -------
    a : In(x_shape)
    b : In(signed(layout.packed_bits))
    en : In(1)
    p : Out(layout.shift · layout.count)
        The fields, field ``i`` (signed) in bits ``[i·S, (i+1)·S)``; :meth:`field` reads one.
        Plain bits, not an array layout: yosys's ECP5 abc9 fails an assertion on the element
        names (``fields[0]``) an array-shaped register gets.
    """

    latency = Multiplier.latency + 1

    def __init__(self, x_shape, layout, *, target="generic"):
        self._layout, self._target = layout, check_target(target)
        self._x_shape = Signal(x_shape).shape()
        super().__init__({"a": In(self._x_shape), "b": In(signed(layout.packed_bits)),
                          "en": In(1),
                          "p": Out(layout.shift * layout.count)})

    def field(self, index):
        """Product ``index`` (``x · w_index``), signed."""
        shift = self._layout.shift
        return self.p[index * shift:(index + 1) * shift].as_signed()

    def elaborate(self, platform):
        m = Module()
        layout = self._layout
        m.submodules.dsp = dsp = Multiplier(self._x_shape, signed(layout.packed_bits),
                                            target=self._target)
        m.d.comb += [dsp.a.eq(self.a), dsp.b.eq(self.b), dsp.en.eq(self.en)]
        shift = layout.shift
        for index in range(layout.count):
            base = index * shift
            field = dsp.p[base:base + shift]
            if index:
                field = field + dsp.p[base - 1]
            with m.If(self.en):
                m.d.sync += self.p[base:base + shift].eq(field)
        return m


def multiplier_latency(kind, pack=1, widths=None):
    """Cycles from operands to products of a multiplier of ``kind`` packing ``pack``; a LUT
    multiplier's depend on its operand ``widths`` ``(weight bits, activation bits)``."""
    check_kind(kind)
    if kind == "dsp-packed" and pack > 1:
        return PackedMultiplier.latency
    if kind == "lut":
        if widths is None:
            raise TypeError("a LUT multiplier's latency depends on its operand widths")
        return lut_latency(*widths)
    return Multiplier.latency


def multiply_kind(m, kind, weight, activation, en, *, layout=None, target, name):
    """Add the multiplier of ``kind`` for ``weight × activation`` (advancing when ``en``) to
    ``m`` as submodule ``name``; returns the list of its products (``layout.count`` of them for
    a packed multiplier, whose ``weight`` is the packed constant; else one),
    :func:`multiplier_latency` cycles behind the operands."""
    check_kind(kind)
    if kind == "dsp-packed" and layout is not None and layout.count > 1:
        block = PackedMultiplier(activation.shape(), layout, target=target)
    elif kind == "lut":
        block = LutMultiplier(weight.shape(), activation.shape())
    else:
        block = Multiplier(weight.shape(), activation.shape(), target=target)
    m.submodules[name] = block
    if isinstance(block, PackedMultiplier):
        m.d.comb += [block.a.eq(activation), block.b.eq(weight), block.en.eq(en)]
        return [block.field(index) for index in range(layout.count)]
    m.d.comb += [block.a.eq(weight), block.b.eq(activation), block.en.eq(en)]
    return [block.p]
