"""Images enlarged by integer factors: nearest-neighbour upsampling (``Resize``), and the zeros
a transposed convolution inserts between pixels."""


import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .requant import code_shape
from .stream import check_lanes, frame_layout, queue

__all__ = ["Upsample"]


class Upsample(wiring.Component):
    """A :class:`~hwgen.qgraph.QUpsample`: ``mode="nearest"`` emits every input row ``sy``
    times and every pixel of it ``sx`` times; ``mode="zeros"`` emits each input row, then (but
    after the last) ``sy − 1`` rows of the zero point, and within a row each pixel followed (but
    the last) by ``sx − 1`` pixels of the zero point.

    Input rows go into one of two row buffers (a memory of ``2 · W · C / lanes`` beats) while the
    other is read out, so a row comes in while the previous one goes out; an input row is taken
    only into a free buffer (``i.ready`` low otherwise). The output side advances when
    ``en = ~o.valid | o.ready`` (a synchronous read whose data holds while ``en`` is low), one
    beat per cycle: a frame takes ``cycles_per_frame`` = its output beats, as long as the input
    keeps up. Beats are counted; ``o.last`` marks the frame's final beat.

    Latency: a row's output starts one cycle after its last beat arrived; the frame's last
    output beat follows the last input beat by :attr:`latency` cycles (the last row's output).

    Parameters
    ----------
    layer : QUpsample
    lanes : int
        Codes per beat; must divide the channels.

    Members
    -------
    i : In(stream.Signature(frame_layout(code_shape(layer.input), lanes)))
    o : Out(stream.Signature(frame_layout(code_shape(layer.output), lanes)))
    """

    def __init__(self, layer, lanes):
        self._layer = layer
        channels = layer.in_shape[2]
        self._lanes = check_lanes(lanes, channels, f"layer {layer.name!r}: lanes must divide "
                                  f"its {channels} channels (legal: {{legal}}), not {{lanes}}")
        self._beats = channels // self._lanes
        shape = frame_layout(code_shape(layer.input), self._lanes)
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    @property
    def lanes(self):
        return self._lanes

    @property
    def cycles_per_frame(self):
        out_height, out_width, _ = self._layer.out_shape
        return out_height * out_width * self._beats

    @property
    def latency(self):
        """Cycles from the frame's last input beat to its last output beat: the output of the
        last input row (``sy`` rows for nearest, one for zeros) and the read register."""
        rows = self._layer.factor[0] if self._layer.mode == "nearest" else 1
        return rows * self._layer.out_shape[1] * self._beats + 1

    def beat_times(self, arrival):
        """The cycles of the output beats for input beats arriving at ``arrival`` (see
        :meth:`hwgen.hw.accelerator.Accelerator.timeline`): row by row, a beat per cycle; a
        row of data (every row for nearest, each input row's first for zeros) once its input
        row is in its buffer, two cycles after that row's last beat."""
        layer = self._layer
        height, width, _ = layer.in_shape
        out_height, out_width, _ = layer.out_shape
        row_ends = np.asarray(arrival, float)[np.arange(1, height + 1) * width * self._beats - 1]
        nearest = layer.mode == "nearest"
        step = layer.factor[0]
        ready = [row_ends[row // step] + 2 if nearest or row % step == 0 else 0.0
                 for row in range(out_height)]
        ready = np.repeat(ready, out_width * self._beats)
        return queue(ready, np.ones(len(ready)))

    def elaborate(self, platform):
        m = Module()
        layer, lanes, beats = self._layer, self._lanes, self._beats
        height, width, _ = layer.in_shape
        step_y, step_x = layer.factor
        nearest = layer.mode == "nearest"
        row_beats = width * beats
        word = data.ArrayLayout(code_shape(layer.input), lanes)
        m.submodules.rows = rows = memory.Memory(shape=word, depth=2 * row_beats, init=[])
        write, read = rows.write_port(), rows.read_port()
        full = Signal(2)

        # Writer: an input row into the free buffer.
        w_bank, w_beat = Signal(), Signal(range(max(row_beats, 2)))
        taken = Signal()
        m.d.comb += [
            self.i.ready.eq(~Mux(w_bank, full[1], full[0])),
            taken.eq(self.i.valid & self.i.ready),
            write.addr.eq(Mux(w_bank, row_beats + w_beat, w_beat)),
            write.data.eq(self.i.payload.data),
            write.en.eq(taken),
        ]
        row_written = Signal()
        m.d.comb += row_written.eq(taken & (w_beat == row_beats - 1))
        with m.If(taken):
            m.d.sync += w_beat.eq(Mux(row_written, 0, w_beat + 1))
            with m.If(row_written):
                m.d.sync += w_bank.eq(~w_bank)

        # Reader: source row/column counters and the repeats of each.
        r_bank = Signal()
        src_y, rep_y = Signal(range(max(height, 2))), Signal(range(max(step_y, 2)))
        src_x, rep_x = Signal(range(max(width, 2))), Signal(range(max(step_x, 2)))
        beat = Signal(range(max(beats, 2)))
        last_beat, last_x, last_y = beat == beats - 1, src_x == width - 1, src_y == height - 1
        if nearest:
            last_rep_x, last_rep_y = rep_x == step_x - 1, rep_y == step_y - 1
            data_row = data_pixel = Const(1, 1)
        else:
            last_rep_x = last_x | (rep_x == step_x - 1)
            last_rep_y = last_y | (rep_y == step_y - 1)
            data_row = rep_y == 0
            data_pixel = data_row & (rep_x == 0)
        row_done = last_beat & last_rep_x & last_x
        release = row_done & (last_rep_y if nearest else data_row)

        en, can_emit, issue = Signal(), Signal(), Signal()
        m.d.comb += [
            en.eq(~self.o.valid | self.o.ready),
            can_emit.eq(~data_row | Mux(r_bank, full[1], full[0])),
            issue.eq(en & can_emit),
            read.addr.eq(Mux(r_bank, row_beats, 0) + src_x * beats + beat),
            read.en.eq(en),
        ]
        with m.If(issue):
            m.d.sync += beat.eq(Mux(last_beat, 0, beat + 1))
            with m.If(last_beat):
                m.d.sync += rep_x.eq(Mux(last_rep_x, 0, rep_x + 1))
                with m.If(last_rep_x):
                    m.d.sync += src_x.eq(Mux(last_x, 0, src_x + 1))
                    with m.If(last_x):
                        m.d.sync += rep_y.eq(Mux(last_rep_y, 0, rep_y + 1))
                        with m.If(last_rep_y):
                            m.d.sync += src_y.eq(Mux(last_y, 0, src_y + 1))
            with m.If(release):
                m.d.sync += r_bank.eq(~r_bank)

        for bank in range(2):
            with m.If(row_written & (w_bank == bank)):
                m.d.sync += full[bank].eq(1)
            with m.Elif(issue & release & (r_bank == bank)):
                m.d.sync += full[bank].eq(0)

        # Output: the read word, or the zero point where zeros are inserted.
        fill = Signal()
        with m.If(en):
            m.d.sync += [self.o.valid.eq(can_emit), fill.eq(~data_pixel),
                         self.o.payload.last.eq(row_done & last_rep_y & last_y)]
        for lane in range(lanes):
            m.d.comb += self.o.payload.data[lane].eq(
                Mux(fill, layer.input.zero_point, read.data[lane]))
        return m
