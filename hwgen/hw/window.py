"""Image-stream front ends of the convolution and pooling engines: constant padding and the
sliding window (a line buffer that turns a frame into one window per output pixel).

Both take and give frame streams (:func:`~hwgen.hw.stream.frame_layout`): an ``(H, W, C)``
image in raster order, channels fastest, ``lanes`` consecutive values per beat.
"""

import operator

import numpy as np

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .stream import frame_layout, queue

__all__ = ["PadUnit", "SlidingWindow", "SERIALIZERS", "serializer_for", "last_real",
           "pixel_beats", "window_needs", "window_order", "window_times"]


# How a sliding window's hold register hands out its beats: "shift" moves the register by one
# beat per transfer (a 2:1 multiplexer in front of every bit, and the shortest path to ``o``);
# "select" loads it once per window and picks the beat with a multiplexer on ``o`` (no logic
# in front of the bits). yosys, 3×3 window over 64 channels of 4-bit codes, 4 per beat:
# synth_xilinx 2,422 LUTs shifting against 1,135 selecting (LUT6 and MUXF7/8 make wide
# multiplexers cheap); synth_ecp5 2,549 LUT4 against 5,743. So the Xilinx (generic) build
# selects and the ECP5 and iCE40 builds shift (:func:`serializer_for`).
SERIALIZERS = ("shift", "select")


def serializer_for(target):
    """The hold register's :data:`SERIALIZERS` entry for a build ``target``."""
    return "select" if target == "generic" else "shift"


def _positive(value, what):
    value = operator.index(value)
    if value < 1:
        raise ValueError(f"{what} must be a positive integer, not {value!r}")
    return value


def _pair(value, what):
    if isinstance(value, int):
        value = (value, value)
    first, second = value
    return _positive(first, what), _positive(second, what)


def _shape3(shape):
    height, width, channels = shape
    return (_positive(height, "height"), _positive(width, "width"),
            _positive(channels, "channels"))


def window_order(kernel, channels, lanes, order):
    """Where each element of a window goes: ``result[e]`` is the ``(ky·kw + kx)·C + c`` index
    (channels fastest, as OHWI weights flatten) of element ``e`` of the stream order ``order``.

    ``"conv"`` is the identity. ``"depthwise"`` visits channel groups of ``lanes`` channels, and
    for each the kernel positions in raster order: ``e = ((g·kh + ky)·kw + kx)·lanes + c'``.
    """
    kh, kw = kernel
    if order == "conv":
        return list(range(kh * kw * channels))
    if order == "depthwise":
        return [(ky * kw + kx) * channels + group * lanes + lane
                for group in range(channels // lanes)
                for ky in range(kh) for kx in range(kw) for lane in range(lanes)]
    raise ValueError(f"order must be 'conv' or 'depthwise', not {order!r}")


def window_needs(layer):
    """Per output pixel ``(OH, OW)`` of a windowed ``layer`` (a conv or a pool: its
    ``kernel``, ``stride``, ``pads``, ``in_shape`` and ``out_shape``), the padded position
    ``(row, column)`` of the last input the sliding window needs for it: its bottom-right
    pixel, or for a row's last pixel when the window releases its newest row (stride
    ``sy ≥ kh``, or the last output row), the end of that row."""
    (kh, kw), (sy, sx) = layer.kernel, layer.stride
    out_height, out_width = layer.out_shape[:2]
    padded_width = layer.pads[1] + layer.in_shape[1] + layer.pads[3]
    oy, ox = np.meshgrid(np.arange(out_height), np.arange(out_width), indexing="ij")
    releases = (oy == out_height - 1) | (sy >= kh)
    whole_row = (ox == out_width - 1) & releases
    return oy * sy + kh - 1, np.where(whole_row, padded_width - 1, ox * sx + kw - 1)


def last_real(layer, rows, cols):
    """The stream index of the last real input element of ``layer`` at or before padded
    position ``(rows, cols)`` (all channels of it), −1 if none."""
    height, width, channels = layer.in_shape
    top, left = layer.pads[:2]
    y, x = np.asarray(rows) - top, np.asarray(cols) - left
    after_row = (y * width + np.clip(x + 1, 0, width)) * channels - 1
    return np.where(y >= height, height * width * channels - 1,
                    np.where(y < 0, -1, after_row))


def window_times(layer, window, padded, lanes, arrival):
    """The cycle each output pixel's window (raster order) leaves ``window``, the
    :class:`SlidingWindow` of ``layer``, with its last beat, for input beats of ``lanes``
    channels arriving at ``arrival`` (the accelerator's latency model,
    :meth:`hwgen.hw.accelerator.Accelerator.timeline`): once the last input it needs has
    arrived (:func:`window_needs`), through the :class:`PadUnit` when ``padded`` (its
    register, and a beat per cycle in padded order: an idle pad unit sends the pads before
    a frame's first input from cycle 0, the frame's first ``s_axis`` beat), plus the window's
    latency, and not before the reader has finished the window before it
    (:attr:`SlidingWindow.reads`)."""
    height, width, channels = layer.in_shape
    rows, cols = (part.ravel() for part in window_needs(layer))
    arrival = np.asarray(arrival, float)
    if padded:
        top, left, bottom, right = layer.pads
        column_beats = channels // lanes
        # The pad unit's output, a beat per cycle in padded order: a real beat a cycle after
        # it arrives, a pad beat whenever its turn comes.
        ready = np.ones((top + height + bottom, left + width + right, column_beats))
        ready[top:top + height, left:left + width] = arrival.reshape(
            height, width, column_beats) + 1
        padded_beats = queue(ready.ravel(), np.ones(ready.size))
        times = padded_beats[(rows * ready.shape[1] + cols + 1) * column_beats - 1]
    else:
        times = arrival[np.maximum(last_real(layer, rows, cols), 0) // lanes]
    return queue(times + window.latency, window.reads)


def pixel_beats(windows, lead, interval, beats, spacing):
    """The cycles of an engine's output beats behind a sliding window whose windows leave at
    ``windows``: a pixel's first beat ``lead`` cycles after its window, and not before
    ``interval`` cycles after the previous pixel's; its ``beats`` beats ``spacing`` apart."""
    pixels = queue(np.asarray(windows, float) + lead, np.full(len(windows), interval))
    return (pixels[:, None] + np.arange(beats) * spacing).ravel()


class PadUnit(wiring.Component):
    """Surrounds each ``(H, W, C)`` frame with constant pixels: the output frame is
    ``(top + H + bottom, left + W + right, C)``, every pad value the code ``value`` (the input
    zero point for a convolution, the lowest code for max pooling).

    One output beat per cycle whenever ``o`` is not stalled: a pad beat needs no input, an
    image beat passes ``i`` → ``o`` through one register (``i.ready`` is ``o``'s register being
    free at an image position, so it depends combinationally on ``o.ready``; ``o.valid`` is a
    register). ``i.payload.last`` is not used: the unit counts beats.

    Parameters
    ----------
    shape : (int, int, int)
        ``(H, W, C)`` of the input frame.
    pads : (int, int, int, int)
        ``(top, left, bottom, right)``, each ≥ 0.
    lanes : int
        Channels per beat on both sides; must divide ``C``.
    value : int
        The pad code; must be representable in ``code_shape``.
    code_shape : ShapeLike
        The shape of one code.

    Attributes
    ----------
    cycles_per_frame : int
        Output beats of a padded frame, ``(top+H+bottom)·(left+W+right)·C/lanes``: the cycles
        between frames with ``i`` always valid and ``o`` always ready.
    latency : int
        Cycles from the transfer of a frame's last input beat to the transfer of its last
        output beat, ``o`` always ready: ``1 + (right + bottom·(left+W+right))·C/lanes`` (the
        register, then the pad beats after the last image beat).

    Members
    -------
    i : In(stream.Signature(frame_layout(code_shape, lanes)))
    o : Out(stream.Signature(frame_layout(code_shape, lanes)))
    """

    def __init__(self, shape, pads, lanes, value, code_shape):
        self._shape = _shape3(shape)
        self._pads = tuple(operator.index(pad) for pad in pads)
        if len(self._pads) != 4 or min(self._pads) < 0:
            raise ValueError(f"pads must be (top, left, bottom, right) ≥ 0, not {pads!r}")
        self._lanes = _positive(lanes, "lanes")
        if self._shape[2] % self._lanes:
            raise ValueError(f"lanes must divide the {self._shape[2]} channels, not {lanes}")
        self._value = operator.index(value)
        self._code_shape = code_shape
        layout = frame_layout(code_shape, self._lanes)
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    @property
    def out_shape(self):
        height, width, channels = self._shape
        top, left, bottom, right = self._pads
        return (top + height + bottom, left + width + right, channels)

    @property
    def cycles_per_frame(self):
        height, width, channels = self.out_shape
        return height * width * channels // self._lanes

    @property
    def latency(self):
        _, width, channels = self.out_shape
        _, _, bottom, right = self._pads
        return 1 + (right + bottom * width) * channels // self._lanes

    def elaborate(self, platform):
        m = Module()
        height, width, _ = self._shape
        top, left, _, _ = self._pads
        out_height, out_width, channels = self.out_shape
        beats = channels // self._lanes
        row, column, beat = (Signal(range(out_height)), Signal(range(out_width)),
                             Signal(range(beats)))
        inside = Signal()
        load = Signal()  # the output register takes this position's beat this cycle
        m.d.comb += [
            inside.eq((row >= top) & (row < top + height)
                      & (column >= left) & (column < left + width)),
            self.i.ready.eq(inside & (~self.o.valid | self.o.ready)),
            load.eq((~self.o.valid | self.o.ready) & (~inside | self.i.valid)),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(load):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.last.eq((row == out_height - 1) & (column == out_width - 1)
                                       & (beat == beats - 1)),
                beat.eq(Mux(beat == beats - 1, 0, beat + 1)),
            ]
            with m.If(inside):
                m.d.sync += self.o.payload.data.eq(self.i.payload.data)
            with m.Else():
                m.d.sync += [self.o.payload.data[lane].eq(self._value)
                             for lane in range(self._lanes)]
            with m.If(beat == beats - 1):
                m.d.sync += column.eq(Mux(column == out_width - 1, 0, column + 1))
                with m.If(column == out_width - 1):
                    m.d.sync += row.eq(Mux(row == out_height - 1, 0, row + 1))
        return m


class SlidingWindow(wiring.Component):
    """A line buffer: for each output pixel ``(oy, ox)`` of an ``(H, W, C)`` frame (raster
    order, no padding, floor semantics: rows and columns no full window covers are read and
    dropped), the pixel's window of ``K = kh·kw·C`` values in ``K / out_lanes`` beats, in the
    element order ``order`` (see :func:`window_order`): ``"conv"`` (im2col, channels fastest,
    as OHWI weights flatten; ``out_lanes`` any divisor of ``K``, so a beat may span kernel
    positions) or ``"depthwise"`` (per group of ``out_lanes`` channels, one beat per kernel
    position; ``out_lanes`` must divide ``C``).

    Structure::

        i ─▶ writer ─▶ 2·kh row slots (a Memory each: W·C/in_lanes words of in_lanes codes)
                                │ reader: kh slots at once, one column word per cycle
                                ▼
                        window register (kh × kw·C codes, shifts in in_lanes per row)
                                │ snapshot (permuted by ``order``)
                                ▼
                        hold register ──shift out_lanes per beat──▶ o

    The writer stores the rows windows use, round robin in ``2·kh`` slots, and drops the rest
    (bottom rows below the last window, rows between windows when ``sy > kh``). The reader
    walks the output pixels: it reads ``kw`` columns for a row's first pixel, ``min(sx, kw)``
    new columns for each further one (one ``in_lanes`` word of each of the ``kh`` rows per
    cycle, through a rotation by the slot of the window's first row), then snapshots the
    window register into the hold register as soon as that is free, and moves on. It may read
    the row still being written up to the writer's position, so a window leaves a few cycles
    after its last input beat; it releases slots after an output row (``min(sy, kh)`` rows,
    all ``kh`` after the last), and releasing the row being written waits for its end.
    With ``kh`` slots to spare the writer runs up to ``kh`` rows ahead (into the next frame),
    so neither side waits for the other in steady state.

    Flow control: ``i.ready`` is a register (a free slot, or a dropped row); ``o.valid`` is a
    register, ``o.payload`` comes straight from the hold register. The reader's pipeline
    depends combinationally on ``o.ready`` (the hold register frees on the transfer of its last
    beat), which never reaches ``i``.

    Storage: ``2·kh·W·C`` codes in memories, ``2·K`` codes in registers.

    Parameters
    ----------
    code_shape : ShapeLike
        The shape of one code.
    shape : (int, int, int)
        ``(H, W, C)``.
    kernel, stride : (int, int)
        ``(kh, kw)`` ≤ ``(H, W)``, and ``(sy, sx)``, all ≥ 1.
    in_lanes : int
        Channels per input beat; divides ``C``.
    out_lanes : int
        Window elements per output beat: divides ``K`` (``"conv"``) or ``C`` (``"depthwise"``).
    order : str
        ``"conv"`` or ``"depthwise"``.
    serializer : str
        How the hold register hands out its beats (:data:`SERIALIZERS`): ``"shift"``
        (default) moves it by ``out_lanes`` codes per transfer; ``"select"`` leaves it as the
        snapshot loaded it and multiplexes beat ``beat`` onto ``o``. Same values at the same
        cycles; they differ in logic only (see :data:`SERIALIZERS`).

    Attributes
    ----------
    out_shape : (int, int)
        ``(OH, OW) = ((H − kh)//sy + 1, (W − kw)//sx + 1)``.
    cycles_per_frame : int
        A tight upper bound on the cycles between frames in steady state (input always valid,
        ``o`` always ready; the tests measure it exactly):
        ``max(in_beats, OH·(max(S, kw·Cb) + (OW − 1)·max(S, min(sx, kw)·Cb)))``
        with ``in_beats = H·W·Cb``, ``Cb = C/in_lanes`` and ``S = K/out_lanes`` beats per
        window: the input side, or the reader and serializer (a pixel takes its new columns'
        reads or its output beats, whichever is longer).
    latency : int
        ``3 + S``: cycles from the transfer of the last input beat the frame's last window needs
        (the last beat of its bottom row, row ``(OH−1)·sy + kh − 1``: the frame's last beat
        unless rows are dropped) to the transfer of the frame's last output beat, when the
        window finds the serializer idle and ``o`` is always ready (read, shift, snapshot,
        then ``S`` beats).

    Members
    -------
    i : In(stream.Signature(frame_layout(code_shape, in_lanes)))
    o : Out(stream.Signature(frame_layout(code_shape, out_lanes)))
    """

    def __init__(self, code_shape, shape, kernel, stride, in_lanes, out_lanes, order="conv",
                 serializer="shift"):
        if serializer not in SERIALIZERS:
            raise ValueError(f"serializer must be one of {', '.join(map(repr, SERIALIZERS))}, "
                             f"not {serializer!r}")
        self._serializer = serializer
        self._code_shape = code_shape
        self._shape = _shape3(shape)
        self._kernel = _pair(kernel, "kernel")
        self._stride = _pair(stride, "stride")
        height, width, channels = self._shape
        kh, kw = self._kernel
        if kh > height or kw > width:
            raise ValueError(f"kernel {self._kernel} must fit in the {height}×{width} image")
        self._in_lanes = _positive(in_lanes, "in_lanes")
        self._out_lanes = _positive(out_lanes, "out_lanes")
        if channels % self._in_lanes:
            raise ValueError(f"in_lanes must divide the {channels} channels, not {in_lanes}")
        self._window = kh * kw * channels
        limit = channels if order == "depthwise" else self._window
        if limit % self._out_lanes:
            raise ValueError(f"out_lanes must divide {limit} for order {order!r}, "
                             f"not {out_lanes}")
        self._order = window_order(self._kernel, channels, self._out_lanes, order)
        super().__init__({
            "i": In(stream.Signature(frame_layout(code_shape, self._in_lanes))),
            "o": Out(stream.Signature(frame_layout(code_shape, self._out_lanes))),
        })

    @property
    def out_shape(self):
        (height, width, _), (kh, kw), (sy, sx) = self._shape, self._kernel, self._stride
        return ((height - kh) // sy + 1, (width - kw) // sx + 1)

    @property
    def window_beats(self):
        """Output beats per window, ``K / out_lanes``."""
        return self._window // self._out_lanes

    @property
    def slots(self):
        """Rows of line buffer, ``2·kh``."""
        return 2 * self._kernel[0]

    @property
    def cycles_per_frame(self):
        height, width, channels = self._shape
        return max(height * width * channels // self._in_lanes, self.reader_cycles)

    @property
    def reader_cycles(self):
        """The reader's and serializer's part of :attr:`cycles_per_frame`: the cycles of a
        frame's windows when the input is never waited for (the sum of :attr:`reads`)."""
        return int(self.reads.sum())

    @property
    def reads(self):
        """The reader's cycles per window in raster order (``OH·OW``): the columns it reads
        (``kw`` at a row's start, ``min(sx, kw)`` after) or its beats serialized, whichever
        takes longer."""
        (_, kw), (_, sx) = self._kernel, self._stride
        out_height, out_width = self.out_shape
        column_beats = self._shape[2] // self._in_lanes
        reads = np.full((out_height, out_width), max(self.window_beats,
                                                     min(sx, kw) * column_beats))
        reads[:, 0] = max(self.window_beats, kw * column_beats)
        return reads.ravel()

    @property
    def latency(self):
        return 3 + self.window_beats

    def elaborate(self, platform):
        m = Module()
        height, width, channels = self._shape
        (kh, kw), (sy, sx) = self._kernel, self._stride
        out_height, out_width = self.out_shape
        in_lanes, out_lanes = self._in_lanes, self._out_lanes
        column_beats = channels // in_lanes
        row_beats = width * column_beats
        slots = self.slots
        used_rows = (out_height - 1) * sy + kh  # rows below are dropped

        # -- writer ------------------------------------------------------------------------
        word = data.ArrayLayout(self._code_shape, in_lanes)
        write_row = Signal(range(height))
        write_phase = Signal(range(sy))       # write_row mod sy
        write_pos = Signal(range(row_beats))  # the beat of the row to be written next
        write_slot = Signal(range(slots))
        filled = Signal(range(slots + 1))      # whole rows stored and not released
        storing = Signal()
        accept = Signal()
        released = Signal(range(kh + 1))      # rows the reader releases this cycle
        row_done = Signal()
        m.d.comb += [
            storing.eq((write_row < used_rows) & (write_phase < kh)),
            self.i.ready.eq(~storing | (filled < slots)),
            accept.eq(self.i.valid & self.i.ready),
            row_done.eq(accept & (write_pos == row_beats - 1)),
        ]
        ports = []
        for slot in range(slots):
            mem = memory.Memory(shape=word, depth=row_beats, init=[])
            m.submodules[f"row{slot}"] = mem
            write = mem.write_port()
            m.d.comb += [write.addr.eq(write_pos), write.data.eq(self.i.payload.data),
                         write.en.eq(accept & storing & (write_slot == slot))]
            ports.append(mem.read_port())
        with m.If(accept):
            m.d.sync += write_pos.eq(Mux(row_done, 0, write_pos + 1))
        with m.If(row_done):
            m.d.sync += [
                write_row.eq(Mux(write_row == height - 1, 0, write_row + 1)),
                write_phase.eq(Mux((write_phase == sy - 1) | (write_row == height - 1), 0,
                                   write_phase + 1)),
            ]
            with m.If(storing):
                m.d.sync += write_slot.eq(Mux(write_slot == slots - 1, 0, write_slot + 1))
        m.d.sync += filled.eq(filled + (row_done & storing) - released)

        # -- reader: issue one column word of the kh window rows per cycle -------------------
        first_reads = kw * column_beats
        next_reads = min(sx, kw) * column_beats
        skip = max(sx - kw, 0) * column_beats
        out_row, out_col = Signal(range(out_height)), Signal(range(out_width))
        read_pos = Signal(range(row_beats))
        reads = Signal(range(first_reads))    # words read of this pixel
        base = Signal(range(slots))           # the slot of the window's first row
        advance = Signal(range(kh + 1))
        pixel_end, row_end, ready_rows, issue, en = Signal(), Signal(), Signal(), Signal(), Signal()
        # ``read_pos < write_pos``, registered: the next cycle's comparison is selected from
        # all the ways both positions can move, so no carry chain sits in front of ``issue``.
        behind = Signal()
        m.d.comb += [
            pixel_end.eq(reads == Mux(out_col == 0, first_reads, next_reads) - 1),
            row_end.eq(pixel_end & (out_col == out_width - 1)),
            advance.eq(Mux(out_row == out_height - 1, kh, min(sy, kh))),
            # The row being written may be read up to the writer, unless this read releases it.
            ready_rows.eq((filled >= kh)
                          | ((filled == kh - 1) & storing & behind
                             & ~(row_end & (advance == kh)))),
            issue.eq(en & ready_rows),
            released.eq(Mux(issue & row_end, advance, 0)),
        ]
        for port in ports:
            m.d.comb += [port.addr.eq(read_pos), port.en.eq(en)]
        read_step = Signal()   # read_pos moves to read_pos + 1 + ``jump``
        read_jump = Signal()   # ... with ``jump`` = skip (else 0)
        read_reset = Signal()  # read_pos moves to 0
        m.d.comb += [
            read_step.eq(issue & ~row_end),
            read_jump.eq(pixel_end),
            read_reset.eq(issue & row_end),
        ]
        # ``read_pos + r < write_pos + w`` compares ``write_pos`` with a register holding
        # ``read_pos + r − w`` (kept beside ``read_pos`` for the few offsets needed), so one
        # compare, not an adder and a compare, sits in front of ``behind``.
        ahead = {0: read_pos}
        for offset in sorted({1, skip, 1 + skip} - {0}):
            ahead[offset] = Signal(range(row_beats + offset), init=offset,
                                   name=f"read_pos_plus{offset}")

        def beyond(offset):
            """``write_pos > read_pos + offset``, offset ≥ −1."""
            return write_pos >= read_pos if offset < 0 else write_pos > ahead[offset]

        for write_moves, moved in ((~accept, 0), (accept & ~row_done, 1)):
            with m.If(write_moves):
                with m.If(read_reset):
                    m.d.sync += behind.eq((write_pos != 0) | moved)
                with m.Elif(read_step & read_jump):
                    m.d.sync += behind.eq(beyond(1 + skip - moved))
                with m.Elif(read_step):
                    m.d.sync += behind.eq(beyond(1 - moved))
                with m.Else():
                    m.d.sync += behind.eq(beyond(-moved))
        with m.If(accept & row_done):
            m.d.sync += behind.eq(0)
        with m.If(issue):
            m.d.sync += reads.eq(Mux(pixel_end, 0, reads + 1))
            with m.If(~pixel_end):
                m.d.sync += [value.eq(value + 1) for value in ahead.values()]
            with m.Elif(~row_end):
                m.d.sync += [value.eq(value + 1 + skip) for value in ahead.values()]
                m.d.sync += out_col.eq(out_col + 1)
            with m.Else():
                m.d.sync += [value.eq(offset) for offset, value in ahead.items()]
                m.d.sync += [
                    out_col.eq(0),
                    out_row.eq(Mux(out_row == out_height - 1, 0, out_row + 1)),
                    base.eq(Mux(base + advance >= slots, base + advance - slots,
                                base + advance)),
                ]

        # -- data stage: rotate the slots into window rows, shift into the window register ----
        read_valid, read_pixel_end, read_frame_end = Signal(), Signal(), Signal()
        read_base = Signal(range(slots))
        with m.If(en):
            m.d.sync += [
                read_valid.eq(issue), read_pixel_end.eq(pixel_end), read_base.eq(base),
                read_frame_end.eq(row_end & (out_row == out_height - 1)),
            ]
        row_length = kw * channels
        window = [[Signal(self._code_shape, name=f"window{ky}_{index}")
                   for index in range(row_length)] for ky in range(kh)]
        words = Array(port.data for port in ports)
        shift = Signal()
        m.d.comb += shift.eq(en & read_valid)
        for ky in range(kh):
            slot = Signal(range(slots), name=f"slot{ky}")
            m.d.comb += slot.eq(Mux(read_base + ky >= slots, read_base + ky - slots,
                                    read_base + ky))
            incoming = words[slot]
            with m.If(shift):
                m.d.sync += [window[ky][index].eq(window[ky][index + in_lanes])
                             for index in range(row_length - in_lanes)]
                m.d.sync += [window[ky][row_length - in_lanes + lane].eq(incoming[lane])
                             for lane in range(in_lanes)]
        full, full_frame_end = Signal(), Signal()  # the window register holds a whole window

        # -- serializer: the hold register shifts out out_lanes codes per beat ---------------
        flat = [value for row in window for value in row]
        beats = self.window_beats
        hold = [Signal(self._code_shape, name=f"hold{index}") for index in range(self._window)]
        hold_valid, hold_frame_end = Signal(), Signal()
        beat = Signal(range(beats))
        taken, free, snapshot = Signal(), Signal(), Signal()
        m.d.comb += [
            taken.eq(self.o.valid & self.o.ready),
            free.eq(~hold_valid | (taken & (beat == beats - 1))),
            snapshot.eq(full & free),
            en.eq(~full | free),
            self.o.valid.eq(hold_valid),
            self.o.payload.last.eq(hold_frame_end & (beat == beats - 1)),
        ]
        if self._serializer == "shift":
            m.d.comb += [self.o.payload.data[lane].eq(hold[lane]) for lane in range(out_lanes)]
        else:
            words = Array(Cat(*hold[index * out_lanes:(index + 1) * out_lanes])
                          for index in range(beats))
            m.d.comb += self.o.payload.data.as_value().eq(words[beat])
        m.d.sync += full.eq((full & ~snapshot) | (shift & read_pixel_end))
        with m.If(shift & read_pixel_end):
            m.d.sync += full_frame_end.eq(read_frame_end)
        with m.If(snapshot):
            m.d.sync += [hold_valid.eq(1), hold_frame_end.eq(full_frame_end), beat.eq(0)]
            m.d.sync += [hold[index].eq(flat[source])
                         for index, source in enumerate(self._order)]
        with m.Elif(taken):
            m.d.sync += beat.eq(beat + 1)
            if self._serializer == "shift":
                m.d.sync += [hold[index].eq(hold[index + out_lanes])
                             for index in range(self._window - out_lanes)]
            with m.If(beat == beats - 1):
                m.d.sync += hold_valid.eq(0)
        return m
