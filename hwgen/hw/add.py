"""The elementwise add of two quantized tensors (a residual join), per DESIGN.md's contract."""


import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..reference import Rounding
from .requant import code_shape
from .stream import BeatForBeat, check_lanes, frame_layout

__all__ = ["AddUnit", "round_shift_clamp", "rounding_addend"]


def _bits(bound):
    """The width of the signed shape holding every integer in ``[−bound, bound]``."""
    return max(int(bound).bit_length() + 1, 2)


def rounding_addend(value, shift, rounding):
    """What the signed ``value`` gets added before an arithmetic shift right by the constant
    ``shift`` so the shift rounds per ``rounding``: ``2^(shift−1)`` (``HALF_UP``),
    ``2^(shift−1) − 1`` plus bit ``shift`` of ``value`` (``HALF_EVEN``; past the top that bit
    is the sign), 0 (``FLOOR``, or ``shift = 0``)."""
    if rounding is Rounding.FLOOR or shift == 0:
        return 0
    half = 1 << (shift - 1)
    if rounding is Rounding.HALF_EVEN:
        return (half - 1) + value[min(shift, len(value) - 1)]
    return half


def round_shift_clamp(m, value, shift, rounding, zero_point, lo, hi, name):
    """``clamp(zero_point + rshift_round(value, shift, rounding), lo, hi)`` as a combinational
    expression, for every :class:`~hwgen.reference.Rounding` mode.

    ``value`` is a signed value wide enough for the sum of itself and the rounding constant
    ``2^(shift−1)`` (one more bit is added here). ``HALF_EVEN`` adds ``2^(shift−1) − 1`` and,
    as a carry in, bit ``shift`` of ``value`` (the parity of the quotient), which never
    exceeds ``2^(shift−1)``. The zero point is added at a width that holds the shifted value
    and any 16-bit code, so both clamp ends saturate exactly. The result lies in ``[lo, hi]``:
    assigning it to a code truncates nothing.
    """
    shifted = (value + rounding_addend(value, shift, rounding)) >> shift
    total = Signal(signed(max(len(shifted), 17) + 1), name=name)
    m.d.comb += total.eq(shifted + zero_point)
    return Mux(total < lo, lo, Mux(total > hi, hi, total))


class AddUnit(BeatForBeat, wiring.Component):
    """``q_y = clamp(zp_y + rshift_round((q_a − zp_a)·M_a + (q_b − zp_b)·M_b, n), lo, hi)`` on
    ``lanes`` elements per beat, bit-exact with the integer reference for every
    :class:`~hwgen.reference.Rounding` mode.

    A beat moves from ``a`` and ``b`` together: ``a.ready = en & b.valid`` and ``b.ready =
    en & a.valid`` with the pipeline enable ``en = ~o.valid | o.ready``, so neither input is
    taken alone. The two streams must carry frames of the same shape and lane count; ``o.last``
    is ``a.last`` delayed with its beat.

    Widths: ``q − zp`` is one bit wider than the code (two for unsigned codes); each product
    ``(q − zp)·M`` is sized from ``max|q − zp| · M``, their sum one bit more, plus one for the
    rounding constant; the zero point is added and clamped at full width.

    Latency: 2 cycles from a transfer on ``a``/``b`` to the offer of its result on ``o``
    (products; sum/round/shift/clamp; both registered); one beat per cycle, so a frame takes
    ``cycles_per_frame = H·W·C / lanes`` cycles. Stalls freeze the whole pipeline.

    Parameters
    ----------
    layer : QAdd
    lanes : int
        Elements per beat; must divide the channel count (the last axis of ``layer.shape``).

    Members
    -------
    a : In(stream.Signature(frame_layout(code_shape(layer.input_a), lanes)))
    b : In(stream.Signature(frame_layout(code_shape(layer.input_b), lanes)))
    o : Out(stream.Signature(frame_layout(code_shape(layer.output), lanes)))
    """

    latency = 2

    def __init__(self, layer, lanes):
        self._layer = layer
        channels = int(layer.shape[-1])
        self._lanes = check_lanes(lanes, channels, f"layer {layer.name!r}: lanes must divide "
                                  f"the {channels} channels (legal: {{legal}}), not {{lanes}}")
        self._length = int(np.prod(layer.shape))
        super().__init__({
            "a": In(stream.Signature(frame_layout(code_shape(layer.input_a), self._lanes))),
            "b": In(stream.Signature(frame_layout(code_shape(layer.input_b), self._lanes))),
            "o": Out(stream.Signature(frame_layout(code_shape(layer.output), self._lanes))),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def cycles_per_frame(self):
        """``H·W·C / lanes``: one beat of each input and of the output per cycle."""
        return self._length // self._lanes

    def elaborate(self, platform):
        m = Module()
        layer, lanes = self._layer, self._lanes
        en = Signal()
        m.d.comb += [
            en.eq(~self.o.valid | self.o.ready),
            self.a.ready.eq(en & self.b.valid),
            self.b.ready.eq(en & self.a.valid),
        ]

        def span(quant):
            return max(quant.hi - quant.zero_point, quant.zero_point - quant.lo)

        inputs = ((self.a, layer.input_a, layer.multiplier_a, "a"),
                  (self.b, layer.input_b, layer.multiplier_b, "b"))
        product_bits = [_bits(span(quant) * int(multiplier)) for _, quant, multiplier, _ in inputs]
        sum_shape = signed(max(product_bits) + 1)
        products_valid, products_last = Signal(), Signal()
        with m.If(en):
            m.d.sync += [
                products_valid.eq(self.a.valid & self.b.valid),
                products_last.eq(self.a.payload.last),
                self.o.valid.eq(products_valid),
                self.o.payload.last.eq(products_last),
            ]
        for lane in range(lanes):
            products = []
            for (port, quant, multiplier, which), bits in zip(inputs, product_bits):
                difference = Signal(signed(quant.bits + 2), name=f"{which}_diff{lane}")
                product = Signal(signed(bits), name=f"{which}_product{lane}")
                m.d.comb += difference.eq(port.payload.data[lane] - quant.zero_point)
                with m.If(en):
                    m.d.sync += product.eq(difference * int(multiplier))
                products.append(product)
            total = Signal(sum_shape, name=f"sum{lane}")
            m.d.comb += total.eq(products[0] + products[1])
            with m.If(en):
                m.d.sync += self.o.payload.data[lane].eq(round_shift_clamp(
                    m, total, int(layer.shift), layer.rounding, layer.output.zero_point,
                    layer.clamp_lo, layer.clamp_hi, f"unclamped{lane}"))
        return m
