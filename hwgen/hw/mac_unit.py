"""The MAC-unit engine of a dense layer: ``pe`` output channels × ``simd`` inputs per cycle."""

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..packing import pack_members, pack_word
from ..plan import legal_folding, multiplier_packing
from .dsp import check_target
from .multiplier import multiplier_latency, multiply_kind
from .requant import Requant, code_shape, requant_output
from .rom import weight_rom
from .stream import credit_depth, double_buffer, frame_layout

__all__ = ["MacUnit", "weight_groups"]

# Registered stages from issuing an operand read to a finished accumulator, besides the adder
# tree's and the multiplier's (2 for a DSP, 3 packed, 2–5 for a LUT multiplier by width;
# see :mod:`hwgen.hw.multiplier`): operand
# read, operand register, accumulate. The fabric operand register keeps a memory's
# clock-to-output time (5.6 ns for an ECP5 block RAM) out of the path into the multiplier.
_MAC_STAGES = 3


def weight_groups(weight, rows, cols, folds, beats, pack, layout):
    """Per group of ``pack`` consecutive output channels (``⌈rows / pack⌉`` groups, the last
    one short when ``pack`` does not divide ``rows``), the ROM words of a ``rows × cols``
    engine over a ``(channels, K)`` weight matrix: word ``fold·beats + beat`` holds, per lane,
    the weight of ``w[fold·rows + g·pack, beat·cols + lane]`` (``pack = 1``) or the packed
    constant of the group's weights (:func:`hwgen.packing.pack_word`)."""
    groups = []
    for members in pack_members(rows, pack):
        words = []
        for fold in range(folds):
            channels = [fold * rows + row for row in members]
            for beat in range(beats):
                lanes = range(beat * cols, (beat + 1) * cols)
                if pack == 1:
                    words.append([int(weight[channels[0], lane]) for lane in lanes])
                else:
                    words.append([pack_word([weight[c, lane] for c in channels], layout)
                                  for lane in lanes])
        groups.append(words)
    return groups


def tree_stages(count):
    """Registered stages of :func:`_adder_tree` over ``count`` values: one per adder level,
    at least one."""
    return max(1, ceil_log2(count))


def _adder_tree(m, values, name):
    """The sum of ``values`` by a balanced tree of two-input adders, one register per level
    (advancing every cycle), so a clock period holds one adder, not ``⌈log2 n⌉``. Each level is
    one bit wider than its operands, so no partial sum can overflow. Returns the registered
    root, ``tree_stages(len(values))`` cycles behind ``values``."""
    level = 0
    while level == 0 or len(values) > 1:
        summed = []
        for index in range(0, len(values), 2):
            pair = values[index:index + 2]
            node = Signal(signed(max(len(value) for value in pair) + (len(pair) - 1)),
                          name=f"{name}_l{level}_{index // 2}")
            m.d.sync += node.eq(pair[0] + pair[1] if len(pair) == 2 else pair[0])
            summed.append(node)
        values = summed
        level += 1
    return values[0]


class MacUnit(wiring.Component):
    """A dense layer ``acc[c] = Σ_k w[c,k] · x[k]`` followed by :class:`Requant`, computed
    ``pe`` output channels × ``simd`` input elements per cycle.

    Schedule: a frame of ``in_features`` codes arrives as ``in_beats = in_features / simd``
    beats. The engine computes ``out_beats = out_features / pe`` folds; fold ``j`` runs through
    all input beats in ``in_beats`` cycles, PE ``p`` accumulating channel ``j·pe + p``, and
    yields output beat ``j`` (channels ``j·pe … j·pe + pe − 1``). Weights of PE ``p`` live in its
    own ROM, word ``j·in_beats + b`` holding ``w[j·pe + p, b·simd : (b+1)·simd]``.

    With more than one fold, the input is double-buffered in a RAM of ``2·in_beats`` words: one
    bank fills from ``i`` (at any rate) while the folds read the other, so the next frame is
    accepted while the current one computes. With a single fold the engine computes straight
    from ``i``. ``i.payload.last`` is ignored: the engine counts beats.

    Multipliers (``multiplier``, see :mod:`hwgen.hw.multiplier`): ``"dsp"``, one
    :class:`~hwgen.hw.dsp.Multiplier` per PE and lane (weight × operand), each with its own
    registers, built for ``target``; ``"lut"``, one :class:`~hwgen.hw.multiplier.LutMultiplier`
    each; ``"dsp-packed"``, one :class:`~hwgen.hw.multiplier.PackedMultiplier` per lane and
    group of ``pack`` PEs (the last group short when ``pack`` does not divide ``pe``), which
    share the operand, with the group's weights packed into one ROM (one cycle more latency).

    Widths: products ``weight_bits × act_bits`` (one bit more for unsigned inputs, to carry the
    sign), an adder tree one bit wider per level, accumulators ``layer.acc_bits`` (derived from
    the weights, so they cannot overflow).

    Stalls: the MAC pipeline and :class:`Requant` advance every cycle (no clock enable); an
    output FIFO of ``output_depth`` beats drives ``o``, and the engine issues a step only while
    a registered credit flag says the FIFO has room for every result in flight (see
    :func:`~hwgen.hw.stream.credit_output`). So ``o.ready`` reaches nothing but the credit
    counter, and ``i.ready`` comes from registers.

    Parameters
    ----------
    layer : QDense
    pe, simd : int
        Must divide ``out_features`` and ``in_features``; else :class:`~hwgen.errors.HwgenError`
        lists the legal values.
    target : str
        ``"generic"`` (default) or ``"ecp5"``: how the multipliers are built (see
        :mod:`hwgen.hw.dsp`); the schedule and latency are the same for both.
    multiplier : str
        ``"dsp"`` (default), ``"dsp-packed"`` or ``"lut"``.
    pack : int
        Products per packed multiplier (``"dsp-packed"`` only), ``2 ≤ pack ≤ pe``.
    block_weights : bool
        Keep the weight ROMs in block RAM whatever their size (the plan's ``weights="bram"``,
        see :class:`~hwgen.hw.rom.WeightRom`); the schedule and latency are the same.

    Members
    -------
    i : In(stream.Signature(frame_layout(code_shape(layer.input), simd)))
    o : Out(stream.Signature(frame_layout(code_shape(layer.output), pe)))
    """

    def __init__(self, layer, pe, simd, *, target="generic", multiplier="dsp", pack=1,
                 block_weights=False):
        folding = legal_folding(layer, (pe, simd))
        self._target, self._block_weights = check_target(target), block_weights
        self._layer = layer
        self._pe, self._simd = folding.pe, folding.simd
        self._kind, self._layout = multiplier_packing(layer, multiplier, pack, self._pe)
        self._pack = self._layout.count if self._layout else 1
        self._widths = (layer.weight_bits, code_shape(layer.input).width)
        self._in_beats = layer.in_features // self._simd
        self._out_beats = layer.out_features // self._pe
        super().__init__({
            "i": In(stream.Signature(frame_layout(code_shape(layer.input), self._simd))),
            "o": Out(stream.Signature(frame_layout(code_shape(layer.output), self._pe))),
        })

    @property
    def pe(self):
        return self._pe

    @property
    def simd(self):
        return self._simd

    @property
    def multiplier(self):
        return self._kind

    @property
    def pack(self):
        return self._pack

    @property
    def buffered(self):
        """Whether the input is double-buffered (more than one output fold)."""
        return self._out_beats > 1

    @property
    def cycles_per_frame(self):
        """Cycles between frames in steady state, input available and ``o`` never stalled:
        ``(in_features / simd) · (out_features / pe)``, as ``LayerPlan.cycles``."""
        return self._in_beats * self._out_beats

    @property
    def latency(self):
        """Cycles from the transfer of a frame's last input beat to the transfer of its last
        output beat, for a frame that finds the engine idle and ``o`` always ready:
        ``cycles_per_frame`` when buffered (the folds start the cycle after the last input beat;
        unbuffered, that beat is itself the last operand), plus the MAC pipeline (operand read,
        operand register, the multipliers' 2 registers (3 when packed),
        ``max(1, ⌈log2 simd⌉)`` adder-tree levels, accumulate),
        :class:`Requant` (8) and the output FIFO (1)."""
        compute = self.cycles_per_frame if self.buffered else 0
        return compute + self._result_latency

    def beat_times(self, arrival):
        """The cycles of the output beats for input beats arriving at ``arrival`` (see
        :meth:`hwgen.hw.accelerator.Accelerator.timeline`): every output needs the whole
        input; then a fold per ``in_features / simd`` cycles (the first after the last input
        when buffered) and the pipeline."""
        first = arrival[-1] + (self._in_beats if self.buffered else 0) + self._result_latency
        return first + np.arange(self._out_beats) * self._in_beats

    @property
    def _result_latency(self):
        """Cycles from issuing a fold's last step to the transfer of its output beat."""
        return (_MAC_STAGES + multiplier_latency(self._kind, self._pack, self._widths)
                + tree_stages(self._simd) + Requant.latency_of(self._layer) + 1)

    @property
    def output_depth(self):
        """Beats of the output FIFO: room for every result in flight at full rate."""
        return credit_depth(self._result_latency, self._in_beats)

    def elaborate(self, platform):
        m = Module()
        layer, pe, simd = self._layer, self._pe, self._simd
        in_beats, out_beats = self._in_beats, self._out_beats
        in_shape = code_shape(layer.input)

        # ``issued``: a fold's last step issues, one more output beat on its way.
        requant, issued, room = requant_output(m, self.o, layer, pe, self.output_depth,
                                               target=self._target)

        # Issue: pick the operands of (fold, beat) this cycle; they arrive one cycle later.
        beat, fold = Signal(range(in_beats)), Signal(range(out_beats))
        step = Signal(range(in_beats * out_beats))  # the weight ROM address: fold, then beat
        issue = Signal()
        operands = Signal(data.ArrayLayout(in_shape, simd))
        go = Signal()  # the step issues: operands there and room for its result
        frame_done = (beat == in_beats - 1) & (fold == out_beats - 1)
        if self.buffered:
            double_buffer(m, self.i, code_shape(self._layer.input), self._simd, self._in_beats,
                          go, beat, frame_done, issue, operands)
        else:
            m.d.comb += [issue.eq(self.i.valid), self.i.ready.eq(room)]
            m.d.sync += operands.eq(self.i.payload.data)
        m.d.comb += [go.eq(issue & room), issued.eq(go & (beat == in_beats - 1))]
        with m.If(go):
            m.d.sync += [
                beat.eq(Mux(beat == in_beats - 1, 0, beat + 1)),
                step.eq(Mux(frame_done, 0, step + 1)),
            ]
            with m.If(beat == in_beats - 1):
                m.d.sync += fold.eq(Mux(fold == out_beats - 1, 0, fold + 1))

        # Each PE group's weights, two registers behind ``step``: the multipliers' operands.
        pack, layout = self._pack, self._layout
        word_shape = signed(layout.packed_bits if layout else layer.weight_bits)
        weights = [weight_rom(m, f"weights{index}", data.ArrayLayout(word_shape, simd), words,
                              step, target=self._target, block=self._block_weights)
                   for index, words in enumerate(weight_groups(
                       layer.weight, pe, simd, out_beats, in_beats, pack, layout))]

        # Flags travel with the operands: valid, first/last beat of a fold, last fold.
        flag_layout = data.StructLayout({"valid": 1, "first": 1, "last": 1, "frame_last": 1})
        read_flags, fetch_flags = (Signal(flag_layout, name=f"{stage}_flags")
                                   for stage in ("read", "fetch"))
        multiplier_flags = [Signal(flag_layout, name=f"multiplier_flags{stage}") for stage in
                            range(multiplier_latency(self._kind, pack, self._widths))]
        product_flags = multiplier_flags[-1]
        tree_flags = [Signal(flag_layout, name=f"tree_flags{level}")
                      for level in range(tree_stages(simd))]
        dot_flags = tree_flags[-1]
        product_shape = signed(layer.weight_bits + in_shape.width + (not in_shape.signed))
        dot_shape = signed(min(product_shape.width + ceil_log2(simd), layer.acc_bits))
        m.d.sync += [
            read_flags.valid.eq(go),
            read_flags.first.eq(beat == 0),
            read_flags.last.eq(beat == in_beats - 1),
            read_flags.frame_last.eq(frame_done),
            fetch_flags.eq(read_flags),
            multiplier_flags[0].eq(fetch_flags),
            *(later.eq(earlier) for earlier, later in zip(multiplier_flags,
                                                          multiplier_flags[1:])),
            tree_flags[0].eq(product_flags),
            *(later.eq(earlier) for earlier, later in zip(tree_flags, tree_flags[1:])),
            requant.i.valid.eq(dot_flags.valid & dot_flags.last),
            requant.i.payload.last.eq(dot_flags.frame_last),
        ]
        # Registered copies of the memories' read data: the multipliers' operands.
        fetched = Signal.like(operands, name="fetched")
        m.d.sync += fetched.eq(operands)
        for group, (weight, members) in enumerate(zip(weights, pack_members(pe, pack))):
            # lanes[lane][k]: the product of PE group·pack + k in that lane.
            lanes = [multiply_kind(m, self._kind, weight[lane], fetched[lane], 1, layout=layout,
                                   target=self._target, name=f"mul{group}_{lane}")
                     for lane in range(simd)]
            for offset, index in enumerate(members):
                dot = Signal(dot_shape, name=f"dot{index}")
                acc = requant.i.payload.data[index]
                m.d.comb += dot.eq(_adder_tree(m, [products[offset] for products in lanes],
                                               f"tree{index}"))
                with m.If(dot_flags.valid):
                    m.d.sync += acc.eq(Mux(dot_flags.first, 0, acc) + dot)
        return m
