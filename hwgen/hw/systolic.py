"""The systolic-array engine of a convolution: ``rows`` output channels × ``cols`` window
elements per cycle, operands passed between neighbours through registers."""

import operator

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import HwgenError
from ..packing import pack_groups, pack_members
from ..plan import divisors, multiplier_packing
from .dsp import check_target
from .mac_unit import _adder_tree, tree_stages, weight_groups
from .multiplier import multiplier_latency, multiply_kind
from .requant import Requant, code_shape, requant_output
from .rom import weight_rom
from .stream import credit_depth, delay, double_buffer, frame_layout

__all__ = ["SystolicArray", "check_conv_folding"]

# Registered stages from issuing a window beat to row 0's finished accumulator, besides the
# adder tree's max(1, ⌈log2 cols⌉) and the multipliers' (2, or 3 when packed; see
# :mod:`hwgen.hw.multiplier`): operand and weight read, operand and weight register (a
# memory's clock-to-output time stays out of the path into the multiplier), accumulate.
# Physical row r finishes r cycles later.
_CELL_STAGES = 3


def check_conv_folding(layer, rows, cols):
    """``(rows, cols)`` as ints if ``rows`` divides the output channels and ``cols`` the
    window of ``layer``; else :class:`HwgenError` naming the legal values."""
    try:
        rows, cols = operator.index(rows), operator.index(cols)
    except TypeError:
        raise HwgenError(f"layer {layer.name!r}: folding must be two integers (rows, cols), "
                         f"not {(rows, cols)!r}")
    problems = []
    if rows < 1 or layer.out_channels % rows:
        problems.append(f"rows={rows} must divide out_channels={layer.out_channels} "
                        f"(legal rows: {', '.join(map(str, divisors(layer.out_channels)))})")
    if cols < 1 or layer.window % cols:
        problems.append(f"cols={cols} must divide the window kh·kw·C={layer.window} "
                        f"(legal cols: {', '.join(map(str, divisors(layer.window)))})")
    if problems:
        raise HwgenError(f"layer {layer.name!r}: illegal systolic folding {rows}x{cols}: "
                         + "; ".join(problems))
    return rows, cols


class SystolicArray(wiring.Component):
    """A convolution (``groups == 1``) ``acc[p, o] = Σ_k w[o, k] · window[p, k]`` followed by
    :class:`Requant`, on a ``rows × cols`` grid of multiply-accumulate cells.

    Input: the windows of :class:`~hwgen.hw.window.SlidingWindow` (``order="conv"``,
    ``out_lanes=cols``): pixel ``p``'s ``K = kh·kw·C`` values (OHWI order) in
    ``in_beats = K / cols`` beats. Output: an HWC frame of ``rows`` lanes; pixel ``p`` gives
    ``folds = out_channels / rows`` beats, channels ``j·rows … j·rows + rows − 1`` in beat ``j``.

    Dataflow, output stationary::

                 window beat (cols codes)
                     │
           ROM0 ─▶ [×][×]…[×] ─▶ adder tree ─▶ acc0 ─▶ skew (rows−1) ──┐
                     │ register                                        │
           ROM1 ─▶ [×][×]…[×] ─▶ adder tree ─▶ acc1 ─▶ skew (rows−2) ──┤
                     │ register                                        ├─▶ Requant ─▶ o
                     ⋮                                                 │
           ROMr ─▶ [×][×]…[×] ─▶ adder tree ─▶ acc(rows−1) ────────────┘

    A window beat enters row 0 and moves down one row per cycle through registers, with its
    control flags; row ``r`` reads its weight ROM (``Memory(init=…)``, word
    ``fold·in_beats + beat`` = ``w[fold·rows + r, beat·cols : (beat+1)·cols]``) with the
    address delayed ``r`` cycles to match. Each row's accumulator holds one output channel of
    the current fold; it sums the row's ``cols`` products through a pipelined adder tree —
    the products never leave the row, so every net has a fan-out independent of the array
    size, and a tree adds ``⌈log2 cols⌉`` registered adder levels (one adder per clock period)
    where a rightward partial-sum chain would add ``cols`` cycles of latency and a skew
    register per column. Row ``r`` finishes a
    fold ``r`` cycles after row 0; ``rows − 1 − r`` skew registers line the sums up for one
    :class:`Requant` beat.

    Schedule: fold ``j`` of a pixel runs through its ``in_beats`` beats in ``in_beats``
    cycles. With more than one fold, the window is double-buffered in a RAM of
    ``2·in_beats`` words (as :class:`~hwgen.hw.mac_unit.MacUnit`): the next pixel's window is
    accepted while the current one computes. With one fold the array computes straight from
    ``i``. ``i.payload.last`` is ignored: the engine counts beats and pixels.

    Multipliers (``multiplier``, see :mod:`hwgen.hw.multiplier`): ``"dsp"``, one
    :class:`~hwgen.hw.dsp.Multiplier` per cell, with its own operand and product registers,
    built for ``target``; ``"lut"``, one :class:`~hwgen.hw.multiplier.LutMultiplier` per cell;
    ``"dsp-packed"``, ``pack`` rows share one physical row whose cells are
    :class:`~hwgen.hw.multiplier.PackedMultiplier` blocks (the activation is shared, the ROM
    word holds the packed weights of the ``pack`` channels): the grid has ``⌈rows / pack⌉``
    physical rows (the last one short when ``pack`` does not divide ``rows``), each with
    ``pack`` adder trees and accumulators, and one cycle more of multiplier latency.

    Widths: products ``weight_bits × act_bits`` (one bit more for unsigned inputs, to carry
    the sign), the tree one bit wider per level, accumulators ``layer.acc_bits``.

    Stalls: the array and :class:`Requant` advance every cycle (no clock enable); an output
    FIFO of ``output_depth`` beats drives ``o``, and a window beat issues only while a
    registered credit flag says the FIFO has room for every result in flight (see
    :func:`~hwgen.hw.stream.credit_output`), so ``o.ready`` reaches nothing but the credit
    counter.

    Parameters
    ----------
    layer : QConv
        With ``groups == 1``.
    rows, cols : int
        Must divide ``out_channels`` and ``K``; else :class:`~hwgen.errors.HwgenError` lists
        the legal values.
    target : str
        ``"generic"`` (default) or ``"ecp5"``: how the multipliers are built (see
        :mod:`hwgen.hw.dsp`); the schedule and latency are the same for both.
    multiplier : str
        ``"dsp"`` (default), ``"dsp-packed"`` or ``"lut"``.
    pack : int
        Channels per packed multiplier (``"dsp-packed"`` only), ``2 ≤ pack ≤ rows``.
    block_weights : bool
        Keep the weight ROMs in block RAM whatever their size (the plan's ``weights="bram"``,
        see :class:`~hwgen.hw.rom.WeightRom`); the schedule and latency are the same.

    Attributes
    ----------
    cycles_per_frame : int
        ``OH·OW·in_beats·folds``: cycles between frames in steady state, windows available and
        ``o`` never stalled.
    latency : int
        Cycles from the transfer of a frame's last input beat to the transfer of its last output
        beat, when that pixel finds the array idle and ``o`` always ready: ``in_beats·folds``
        if buffered (the folds start after the window is complete), plus
        ``5 + max(1, ⌈log2 cols⌉) + ⌈rows / pack⌉ − 1`` (read, register the operands, the
        multipliers' operand and product registers (one more when packed), accumulate, one
        register per adder-tree level; the skew over the physical rows), :class:`Requant` (8)
        and the output FIFO (1).

    Members
    -------
    i : In(stream.Signature(frame_layout(code_shape(layer.input), cols)))
    o : Out(stream.Signature(frame_layout(code_shape(layer.output), rows)))
    """

    def __init__(self, layer, rows, cols, *, target="generic", multiplier="dsp", pack=1,
                 block_weights=False):
        self._target, self._block_weights = check_target(target), block_weights
        if layer.groups != 1:
            raise HwgenError(f"layer {layer.name!r}: the systolic array computes convolutions "
                             f"with groups=1, not {layer.groups}; use the depthwise engine")
        self._rows, self._cols = check_conv_folding(layer, rows, cols)
        self._kind, self._layout = multiplier_packing(layer, multiplier, pack, self._rows)
        self._pack = self._layout.count if self._layout else 1
        self._widths = (layer.weight_bits, code_shape(layer.input).width)
        self._layer = layer
        self._in_beats = layer.window // self._cols
        self._folds = layer.out_channels // self._rows
        self._pixels = layer.out_shape[0] * layer.out_shape[1]
        super().__init__({
            "i": In(stream.Signature(frame_layout(code_shape(layer.input), self._cols))),
            "o": Out(stream.Signature(frame_layout(code_shape(layer.output), self._rows))),
        })

    @property
    def rows(self):
        return self._rows

    @property
    def cols(self):
        return self._cols

    @property
    def multiplier(self):
        return self._kind

    @property
    def pack(self):
        return self._pack

    @property
    def buffered(self):
        """Whether the window input is double-buffered (more than one fold)."""
        return self._folds > 1

    @property
    def cycles_per_pixel(self):
        return self._in_beats * self._folds

    @property
    def cycles_per_frame(self):
        return self._pixels * self.cycles_per_pixel

    @property
    def latency(self):
        compute = self.cycles_per_pixel if self.buffered else 0
        return compute + self._result_latency

    @property
    def pixel_timing(self):
        """``(lead, interval, beats, spacing)`` for the accelerator's latency model: a
        pixel's first output beat ``lead`` cycles after its window's last beat (its first fold
        when buffered, then the result's pipeline), at least ``interval`` cycles after the
        previous pixel's; its ``beats`` output beats (one per fold) ``spacing`` apart."""
        lead = (self._in_beats if self.buffered else 0) + self._result_latency
        return lead, self.cycles_per_pixel, self._folds, self._in_beats

    @property
    def _result_latency(self):
        """Cycles from issuing a fold's last beat to the transfer of its output beat."""
        return (_CELL_STAGES + multiplier_latency(self._kind, self._pack, self._widths)
                + tree_stages(self._cols) + pack_groups(self._rows, self._pack) - 1
                + Requant.latency_of(self._layer) + 1)

    @property
    def output_depth(self):
        """Beats of the output FIFO: room for every result in flight at full rate."""
        return credit_depth(self._result_latency, self._in_beats)

    def elaborate(self, platform):
        m = Module()
        layer, rows, cols = self._layer, self._rows, self._cols
        in_beats, folds, pixels = self._in_beats, self._folds, self._pixels
        in_shape = code_shape(layer.input)

        # ``issued``: a fold's last beat issues, one more output beat on its way.
        requant, issued, room = requant_output(m, self.o, layer, rows, self.output_depth,
                                               target=self._target)

        # Issue: the operands of (pixel, fold, beat) this cycle; they reach row 0 next cycle.
        beat, fold = Signal(range(in_beats)), Signal(range(folds))
        pixel = Signal(range(pixels))
        step = Signal(range(in_beats * folds))  # the weight ROM address: fold, then beat
        issue = Signal()
        operands = Signal(data.ArrayLayout(in_shape, cols))
        go = Signal()  # the beat issues: operands there and room for its result
        pixel_done = (beat == in_beats - 1) & (fold == folds - 1)
        if self.buffered:
            double_buffer(m, self.i, code_shape(self._layer.input), self._cols, self._in_beats,
                          go, beat, pixel_done, issue, operands)
        else:
            m.d.comb += [issue.eq(self.i.valid), self.i.ready.eq(room)]
            m.d.sync += operands.eq(self.i.payload.data)
        m.d.comb += [go.eq(issue & room), issued.eq(go & (beat == in_beats - 1))]
        with m.If(go):
            m.d.sync += [
                beat.eq(Mux(beat == in_beats - 1, 0, beat + 1)),
                step.eq(Mux(pixel_done, 0, step + 1)),
            ]
            with m.If(beat == in_beats - 1):
                m.d.sync += fold.eq(Mux(fold == folds - 1, 0, fold + 1))
            with m.If(pixel_done):
                m.d.sync += pixel.eq(Mux(pixel == pixels - 1, 0, pixel + 1))

        flag_layout = data.StructLayout({"valid": 1, "first": 1, "last": 1, "frame_last": 1})
        issue_flags = Signal(flag_layout)
        m.d.comb += [
            issue_flags.valid.eq(go),
            issue_flags.first.eq(beat == 0),
            issue_flags.last.eq(beat == in_beats - 1),
            issue_flags.frame_last.eq(pixel_done & (pixel == pixels - 1)),
        ]
        product_shape = signed(layer.weight_bits + in_shape.width + (not in_shape.signed))
        dot_shape = signed(min(product_shape.width + (cols - 1).bit_length(), layer.acc_bits))
        acc_shape = signed(layer.acc_bits)

        # Physical row r's inputs arrive r cycles after row 0's: activations, flags and ROM
        # address each move down one register per row. A physical row computes ``pack``
        # channels (one unless packed).
        pack, layout = self._pack, self._layout
        members = pack_members(rows, pack)
        physical = len(members)
        word_shape = signed(layout.packed_bits if layout else layer.weight_bits)
        words = weight_groups(layer.weight.reshape(layer.out_channels, -1), rows, cols, folds,
                              in_beats, pack, layout)
        latency = multiplier_latency(self._kind, pack, self._widths)
        activations, address, flags = operands, step, issue_flags
        last_flags = None
        for row in range(physical):
            weight = weight_rom(m, f"weights{row}", data.ArrayLayout(word_shape, cols),
                                words[row], address, target=self._target,
                                block=self._block_weights)
            read_flags = Signal(flag_layout, name=f"read_flags{row}")
            fetch_flags = Signal(flag_layout, name=f"fetch_flags{row}")
            multiplier_flags = [Signal(flag_layout, name=f"multiplier_flags{row}_{stage}")
                                for stage in range(latency)]
            fetched = Signal(data.ArrayLayout(in_shape, cols), name=f"fetched{row}")
            tree_flags = [Signal(flag_layout, name=f"tree_flags{row}_{level}")
                          for level in range(tree_stages(cols))]
            dot_flags = tree_flags[-1]
            # lanes[lane][k]: the product of channel row·pack + k in that lane.
            lanes = [multiply_kind(m, self._kind, weight[lane], fetched[lane], 1, layout=layout,
                                   target=self._target, name=f"mul{row}_{lane}")
                     for lane in range(cols)]
            m.d.sync += [
                read_flags.eq(flags), fetch_flags.eq(read_flags),
                multiplier_flags[0].eq(fetch_flags),
                *(later.eq(earlier) for earlier, later in zip(multiplier_flags,
                                                              multiplier_flags[1:])),
                fetched.eq(activations),
                tree_flags[0].eq(multiplier_flags[-1]),
                *(later.eq(earlier) for earlier, later in zip(tree_flags, tree_flags[1:])),
            ]
            for offset, channel in enumerate(members[row]):
                dot = Signal(dot_shape, name=f"dot{channel}")
                acc = Signal(acc_shape, name=f"acc{channel}")
                m.d.comb += dot.eq(_adder_tree(m, [products[offset] for products in lanes],
                                               f"tree{channel}"))
                with m.If(dot_flags.valid):
                    m.d.sync += acc.eq(Mux(dot_flags.first, 0, acc) + dot)
                # Skew: physical − 1 − row registers line this sum up with the last row's.
                m.d.comb += requant.i.payload.data[channel].eq(
                    delay(m, acc, physical - 1 - row, f"skew{channel}"))
            last_flags = dot_flags
            if row < physical - 1:
                next_activations = Signal(data.ArrayLayout(in_shape, cols),
                                          name=f"activations{row + 1}")
                next_address = Signal.like(step, name=f"address{row + 1}")
                m.d.sync += [next_activations.eq(activations), next_address.eq(address)]
                # The flags travel with the activations: row r + 1 sees row r's a cycle later.
                next_flags = Signal(flag_layout, name=f"flags{row + 1}")
                m.d.sync += next_flags.eq(flags)
                activations, address, flags = next_activations, next_address, next_flags
        m.d.sync += [
            requant.i.valid.eq(last_flags.valid & last_flags.last),
            requant.i.payload.last.eq(last_flags.frame_last),
        ]
        return m
