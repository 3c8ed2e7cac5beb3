"""The concatenation of tensors along the channels (``torch.cat(..., dim=1)``)."""

import math

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .add import round_shift_clamp
from .requant import code_shape
from .stream import check_lanes, frame_layout, queue

__all__ = ["ConcatUnit"]


class ConcatUnit(wiring.Component):
    """For every pixel (for vectors: the whole vector), ``channels[0] / lanes`` beats from
    ``i0``, then ``channels[1] / lanes`` from ``i1``, and so on, as one stream of the
    concatenated channels; bit-exact with :func:`hwgen.reference.concat_integer`.

    An input whose quantization is the output's passes its codes (clamped to the output's
    clamp); another is requantized on the way, ``clamp(zp_y + rshift_round((q − zp_i)·M_i, n))``.
    Only the input whose turn it is sees ``ready``: ``i<k>.ready = en & (part == k)`` with the
    pipeline enable ``en = ~o.valid | o.ready``. Beats are counted, so ``last`` is not read;
    ``o.last`` marks the frame's final beat.

    Latency 2 (the taken beat, then its requantized codes, both registered); one beat per cycle,
    so a frame takes ``cycles_per_frame = elements / lanes`` cycles. The plan's FIFOs let the
    inputs whose paths hold less run ahead (:meth:`hwgen.plan.Plan.skip_fifo_depth`).

    Parameters
    ----------
    layer : QConcat
    lanes : int
        Codes per beat; must divide every input's channels.

    Members
    -------
    i0, i1, … : In(stream.Signature(frame_layout(code_shape(layer.input_quants[k]), lanes)))
    o : Out(stream.Signature(frame_layout(code_shape(layer.output), lanes)))
    """

    latency = 2

    def __init__(self, layer, lanes):
        self._layer = layer
        parts = ", ".join(map(str, layer.channels))
        self._lanes = check_lanes(lanes, math.gcd(*layer.channels),
                                  f"layer {layer.name!r}: lanes must divide the channels of every "
                                  f"input ({parts}; legal: {{legal}}), not {{lanes}}")
        self._pixels = int(np.prod(layer.shape[:-1]))
        ports = {f"i{index}": In(stream.Signature(frame_layout(code_shape(quant), self._lanes)))
                 for index, quant in enumerate(layer.input_quants)}
        ports["o"] = Out(stream.Signature(frame_layout(code_shape(layer.output), self._lanes)))
        super().__init__(ports)

    @property
    def lanes(self):
        return self._lanes

    @property
    def inputs(self):
        """The input streams, in the layer's input order."""
        return [getattr(self, f"i{index}") for index in range(len(self._layer.inputs))]

    @property
    def cycles_per_frame(self):
        return self._pixels * self._layer.shape[-1] // self._lanes

    def beat_times(self, *arrivals):
        """The cycles of the output beats for the inputs' beats arriving at ``arrivals`` (see
        :meth:`hwgen.hw.accelerator.Accelerator.timeline`): per pixel each input's beats in
        turn, :attr:`latency` after they arrive, at most one per cycle."""
        ready = np.concatenate([np.asarray(times, float).reshape(self._pixels, -1)
                                for times in arrivals], axis=1).ravel()
        return queue(ready + self.latency, np.ones(len(ready)))

    def elaborate(self, platform):
        m = Module()
        layer, lanes = self._layer, self._lanes
        inputs = self.inputs
        beats = [channels // lanes for channels in layer.channels]
        en = Signal()
        m.d.comb += en.eq(~self.o.valid | self.o.ready)

        part = Signal(range(max(len(inputs), 2)))
        beat = Signal(range(max(max(beats), 2)))
        pixel = Signal(range(max(self._pixels, 2)))
        valid = Signal()
        for index, port in enumerate(inputs):
            m.d.comb += port.ready.eq(en & (part == index))
            with m.If(part == index):
                m.d.comb += valid.eq(port.valid)
        end_of_part = Signal()
        m.d.comb += end_of_part.eq(Mux(part == 0, beat == beats[0] - 1, 0))
        for index in range(1, len(inputs)):
            with m.If(part == index):
                m.d.comb += end_of_part.eq(beat == beats[index] - 1)
        final_part = part == len(inputs) - 1
        with m.If(en & valid):
            m.d.sync += beat.eq(Mux(end_of_part, 0, beat + 1))
            with m.If(end_of_part):
                m.d.sync += part.eq(Mux(final_part, 0, part + 1))
                with m.If(final_part):
                    m.d.sync += pixel.eq(Mux(pixel == self._pixels - 1, 0, pixel + 1))

        # Stage 1: the taken beat, which input it came from, and whether it ends the frame.
        widest = max(quant.bits + 1 for quant in layer.input_quants)
        taken = [Signal(signed(widest), name=f"taken{lane}") for lane in range(lanes)]
        taken_part = Signal.like(part)
        taken_valid, taken_last = Signal(), Signal()
        with m.If(en):
            m.d.sync += [taken_valid.eq(valid), taken_part.eq(part),
                         taken_last.eq(end_of_part & final_part & (pixel == self._pixels - 1))]
            for index, port in enumerate(inputs):
                with m.If(part == index):
                    m.d.sync += [taken[lane].eq(port.payload.data[lane]) for lane in range(lanes)]

        # Stage 2: pass or requantize per input, clamp, register.
        with m.If(en):
            m.d.sync += [self.o.valid.eq(taken_valid), self.o.payload.last.eq(taken_last)]
        for lane in range(lanes):
            results = []
            for index, quant in enumerate(layer.input_quants):
                if layer.passes(index):
                    value = taken[lane]
                    results.append(Mux(value < layer.clamp_lo, layer.clamp_lo,
                                       Mux(value > layer.clamp_hi, layer.clamp_hi, value)))
                    continue
                multiplier = int(layer.multipliers[index])
                span = max(quant.hi - quant.zero_point, quant.zero_point - quant.lo)
                product = Signal(signed(max((span * multiplier).bit_length() + 2, 3)),
                                 name=f"product{index}_{lane}")
                m.d.comb += product.eq((taken[lane] - quant.zero_point) * multiplier)
                results.append(round_shift_clamp(
                    m, product, int(layer.shift), layer.rounding, layer.output.zero_point,
                    layer.clamp_lo, layer.clamp_hi, f"unclamped{index}_{lane}"))
            selected = results[0]
            for index in range(1, len(results)):
                selected = Mux(taken_part == index, results[index], selected)
            with m.If(en):
                m.d.sync += self.o.payload.data[lane].eq(selected)
        return m
