"""Requantization: accumulators → output codes, per DESIGN.md's integer contract."""

import operator

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..reference import Rounding
from .stream import frame_layout

__all__ = ["Requant", "code_shape"]


def code_shape(quant):
    """The Amaranth shape of the codes of an :class:`~hwgen.quantize.ActQuant`."""
    return signed(quant.bits) if quant.signed else unsigned(quant.bits)


def _signed_bits(values):
    """The width of the narrowest signed shape holding every value of ``values``."""
    return max(max(int(v).bit_length() for v in np.ravel(values)) + 1, 2)


class Requant(wiring.Component):
    """``q = clamp(zp_y + rshift_round((acc + bias[c]) · M[c], n[c]), clamp_lo, clamp_hi)`` on
    ``lanes`` channels per beat, bit-exact with :func:`hwgen.reference.requantize` (after
    adding the bias), for both :class:`~hwgen.reference.Rounding` modes.

    Beat ``j`` of a frame carries channels ``j·lanes … j·lanes + lanes − 1``; the block counts
    beats to know which channels it sees, so ``i.payload.last`` only travels along. The
    per-channel bias, multiplier, shift and rounding constant ``2^(n−1)`` are baked into a
    small ROM (one word per beat of a frame, read asynchronously); when every channel has the
    same shift it is a constant.

    Widths: ``acc`` is ``signed(acc_bits)``; ``acc + bias`` gets one bit more than the wider of
    the two; the product adds ``multiplier_bits + 1``, the rounding constant one more; the
    clamp compares at full width, so both ends saturate exactly.

    Latency: 3 cycles from the transfer of a beat on ``i`` to its offer on ``o`` (add, multiply,
    round/shift/clamp, each registered); one beat per cycle. Stalls freeze the whole pipeline
    (``i.ready = ~o.valid | o.ready``).

    Parameters
    ----------
    layer : QDense
        Any layer with ``bias``, ``multiplier``, ``shift`` (per output channel), ``output``
        (:class:`~hwgen.quantize.ActQuant`), ``clamp_lo``, ``clamp_hi``, ``rounding`` and
        ``acc_bits``.
    lanes : int
        Channels per beat; must divide the number of channels.

    Members
    -------
    i : In(stream.Signature(frame_layout(signed(acc_bits), lanes)))
    o : Out(stream.Signature(frame_layout(code_shape(layer.output), lanes)))
    """

    latency = 3

    def __init__(self, layer, lanes):
        self._lanes = operator.index(lanes)
        channels = len(layer.bias)
        if self._lanes < 1 or channels % self._lanes:
            raise ValueError(f"lanes must divide the {channels} channels, not {lanes!r}")
        self._groups = channels // self._lanes
        self._layer = layer
        self._acc_shape = signed(layer.acc_bits)
        self._code_shape = code_shape(layer.output)
        super().__init__({
            "i": In(stream.Signature(frame_layout(self._acc_shape, self._lanes))),
            "o": Out(stream.Signature(frame_layout(self._code_shape, self._lanes))),
        })

    def _table(self):
        """The parameter ROM: its word layout and one word per beat of a frame."""
        layer, lanes = self._layer, self._lanes
        shifts = np.asarray(layer.shift, dtype=np.int64)
        half = (np.int64(1) << shifts) >> 1
        if layer.rounding is Rounding.FLOOR:
            half = np.zeros_like(half)
        fields = {
            "bias": (signed(_signed_bits(layer.bias)), layer.bias),
            "multiplier": (unsigned(max(int(max(layer.multiplier)).bit_length(), 1)),
                           layer.multiplier),
        }
        if np.any(shifts != shifts[0]):
            fields["shift"] = (unsigned(max(int(shifts.max()).bit_length(), 1)), shifts)
            fields["half"] = (unsigned(max(int(half.max()).bit_length(), 1)), half)
        layout = data.StructLayout({name: data.ArrayLayout(shape, lanes)
                                    for name, (shape, _) in fields.items()})
        words = [{name: [int(v) for v in values[group * lanes:(group + 1) * lanes]]
                  for name, (_, values) in fields.items()} for group in range(self._groups)]
        return layout, words, int(shifts[0]), int(half[0])

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        layout, words, common_shift, common_half = self._table()
        m.submodules.table = table = memory.Memory(shape=layout, depth=self._groups, init=words)
        params = table.read_port(domain="comb")

        group = Signal(range(self._groups))
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += group.eq(Mux(group == self._groups - 1, 0, group + 1))
        m.d.comb += params.addr.eq(group)

        sum_shape = signed(max(self._acc_shape.width, layout["bias"].shape.elem_shape.width) + 1)
        add = Signal(data.ArrayLayout(sum_shape, lanes))
        add_params = Signal(layout)
        add_valid, add_last = Signal(), Signal()
        multiplier_bits = layout["multiplier"].shape.elem_shape.width
        product = Signal(data.ArrayLayout(signed(sum_shape.width + multiplier_bits + 1), lanes))
        product_params = Signal(layout)
        product_valid, product_last = Signal(), Signal()

        with m.If(en):
            m.d.sync += [
                add_params.eq(params.data), add_valid.eq(self.i.valid),
                add_last.eq(self.i.payload.last),
                product_params.eq(add_params), product_valid.eq(add_valid),
                product_last.eq(add_last),
                self.o.valid.eq(product_valid), self.o.payload.last.eq(product_last),
            ]
            for lane in range(lanes):
                m.d.sync += [
                    add[lane].eq(self.i.payload.data[lane] + params.data.bias[lane]),
                    product[lane].eq(add[lane] * add_params.multiplier[lane]),
                    self.o.payload.data[lane].eq(self._finish(m, lane, product[lane],
                                                              product_params, common_shift,
                                                              common_half)),
                ]
        return m

    def _finish(self, m, lane, product, params, common_shift, common_half):
        """Round, shift, add the zero point and clamp one lane: a combinational expression."""
        layer = self._layer
        if "shift" in params.shape().members:
            rounded = product + params.half[lane]
            shifted = rounded >> params.shift[lane]
        else:
            shifted = (product + common_half) >> common_shift
        # Wide enough for the shifted value plus any code (the zero point, the clamp bounds).
        value = Signal(signed(max(len(shifted), self._code_shape.width + 1) + 1),
                       name=f"unclamped{lane}")
        m.d.comb += value.eq(shifted + layer.output.zero_point)
        return Mux(value < layer.clamp_lo, layer.clamp_lo,
                   Mux(value > layer.clamp_hi, layer.clamp_hi, value))
