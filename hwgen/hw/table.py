"""Element-wise lookup tables (smooth activations) and the argmax at a classifier's output."""


from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .requant import code_shape
from .rom import WeightRom, weight_rom
from .stream import BeatForBeat, check_lanes, frame_layout

__all__ = ["TableUnit", "ArgMaxUnit"]


def _lanes(layer, lanes, elements, what):
    return check_lanes(lanes, elements, f"layer {layer.name!r}: lanes must divide its "
                       f"{elements} {what} (legal: {{legal}}), not {{lanes}}")


class TableUnit(BeatForBeat, wiring.Component):
    """``q_y = table[q_x − lo_x]`` on ``lanes`` codes per beat: one ROM of ``2^a`` output codes
    per lane, read through :class:`~hwgen.hw.rom.WeightRom` (so on ECP5 a table big enough for
    a block RAM uses the block's own output register).

    The pipeline advances when ``en = ~o.valid | o.ready`` (``i.ready = en``): the ROM's two
    registers and the valid/last bits beside them move together, so a stall freezes all of it.
    Latency 2 (a beat taken in cycle ``t`` is offered in ``t + 2``); one beat per cycle, so a
    frame takes ``cycles_per_frame = elements / lanes`` cycles.

    Parameters
    ----------
    layer : QTable
    lanes : int
        Codes per beat; must divide the channels (the last axis of ``layer.shape``).
    target : str
        As :class:`~hwgen.hw.rom.WeightRom`'s.

    Members
    -------
    i : In(stream.Signature(frame_layout(code_shape(layer.input), lanes)))
    o : Out(stream.Signature(frame_layout(code_shape(layer.output), lanes)))
    """

    latency = WeightRom.latency

    def __init__(self, layer, lanes, *, target="generic"):
        self._layer = layer
        self._lanes = _lanes(layer, lanes, int(layer.shape[-1]), "channels")
        self._target = target
        self._elements = 1
        for size in layer.shape:
            self._elements *= int(size)
        super().__init__({
            "i": In(stream.Signature(frame_layout(code_shape(layer.input), self._lanes))),
            "o": Out(stream.Signature(frame_layout(code_shape(layer.output), self._lanes))),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def cycles_per_frame(self):
        return self._elements // self._lanes

    def elaborate(self, platform):
        m = Module()
        layer = self._layer
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        valid, last = Signal(), Signal()
        with m.If(en):
            m.d.sync += [valid.eq(self.i.valid), last.eq(self.i.payload.last),
                         self.o.valid.eq(valid), self.o.payload.last.eq(last)]
        words = [int(value) for value in layer.table]
        for lane in range(self._lanes):
            addr = Signal(unsigned(layer.input.bits), name=f"addr{lane}")
            m.d.comb += addr.eq(self.i.payload.data[lane] - layer.input.lo)
            data = weight_rom(m, f"table{lane}", code_shape(layer.output), words, addr, en,
                              target=self._target)
            m.d.comb += self.o.payload.data[lane].eq(data)
        return m


class ArgMaxUnit(wiring.Component):
    """The index of the largest of a vector's codes, the first on a tie, as one beat per frame.

    Each beat of ``lanes`` codes goes through a comparator tree (a later code wins only when
    strictly greater), registered with its position in the frame; a second stage keeps the
    running best and, on the frame's last beat, offers the winner's index on ``o`` (one lane,
    ``last`` set). Beats are counted, so ``i.last`` is not needed. The pipeline advances when
    ``en = ~o.valid | o.ready`` (``i.ready = en``).

    Latency 2: the index is offered two cycles after the frame's last beat was taken. A frame
    takes ``cycles_per_frame = in_features / lanes`` cycles.

    Parameters
    ----------
    layer : QArgMax
    lanes : int
        Codes per input beat; must divide ``layer.in_features``.

    Members
    -------
    i : In(stream.Signature(frame_layout(code_shape(layer.input), lanes)))
    o : Out(stream.Signature(frame_layout(code_shape(layer.output), 1)))
    """

    latency = 2

    def __init__(self, layer, lanes):
        self._layer = layer
        self._lanes = _lanes(layer, lanes, layer.in_features, "inputs")
        super().__init__({
            "i": In(stream.Signature(frame_layout(code_shape(layer.input), self._lanes))),
            "o": Out(stream.Signature(frame_layout(code_shape(layer.output), 1))),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def cycles_per_frame(self):
        return self._layer.in_features // self._lanes

    def elaborate(self, platform):
        m = Module()
        layer, lanes = self._layer, self._lanes
        beats = layer.in_features // lanes
        value_shape, index_shape = code_shape(layer.input), code_shape(layer.output)
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]

        # Stage 0: the beat's best lane, by a tree whose left side wins ties.
        beat = Signal(range(max(beats, 2)))
        candidates = [(self.i.payload.data[lane], lane) for lane in range(lanes)]
        level = 0
        while len(candidates) > 1:
            merged = []
            for pair in range(0, len(candidates) - 1, 2):
                (left, left_index), (right, right_index) = candidates[pair:pair + 2]
                take_right = Signal(name=f"right_{level}_{pair // 2}")
                m.d.comb += take_right.eq(right > left)
                merged.append((Mux(take_right, right, left),
                               Mux(take_right, right_index, left_index)))
            if len(candidates) % 2:
                merged.append(candidates[-1])
            candidates, level = merged, level + 1
        best_lane_value, best_lane = candidates[0]

        # Stage 1 registers: the beat's best and where the beat sits in the frame.
        value, index = Signal(value_shape), Signal(index_shape)
        valid, first, final = Signal(), Signal(), Signal()
        with m.If(en):
            m.d.sync += [valid.eq(self.i.valid), value.eq(best_lane_value),
                         index.eq(best_lane + beat * lanes),
                         first.eq(beat == 0), final.eq(beat == beats - 1)]
            with m.If(self.i.valid):
                m.d.sync += beat.eq(Mux(beat == beats - 1, 0, beat + 1))

        # Stage 2: the running best; the frame's winner goes out with its last beat.
        best_value, best_index = Signal(value_shape), Signal(index_shape)
        take = Signal()
        m.d.comb += take.eq(first | (value > best_value))
        winner = Mux(take, index, best_index)
        with m.If(en):
            m.d.sync += [self.o.valid.eq(valid & final), self.o.payload.last.eq(1),
                         self.o.payload.data[0].eq(winner)]
            with m.If(valid):
                m.d.sync += [best_value.eq(Mux(take, value, best_value)),
                             best_index.eq(winner)]
        return m
