"""The engine of a depthwise convolution: ``pe`` channels per cycle, one multiplier each."""

import operator

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import HwgenError
from ..plan import divisors
from ..packing import check_kind
from .dsp import check_target
from .multiplier import multiplier_latency, multiply_kind
from .requant import Requant, code_shape
from .rom import weight_rom
from .stream import StreamRegister, frame_layout

__all__ = ["DepthwiseEngine"]

# Registered stages from accepting a window beat to a finished accumulator, besides the
# multiplier's (2 for a DSP, 2–5 for a LUT multiplier; see :mod:`hwgen.hw.multiplier`): operand
# and weight read, operand and weight register (a memory's clock-to-output time stays out of
# the path into the multiplier), accumulate.
_STAGES = 3


class DepthwiseEngine(wiring.Component):
    """A depthwise convolution ``acc[p, c] = Σ_{ky,kx} w[c, ky, kx] · x[p, ky, kx, c]``
    followed by :class:`Requant`, ``pe`` channels per cycle.

    Input: the windows of :class:`~hwgen.hw.window.SlidingWindow` (``order="depthwise"``,
    ``out_lanes=pe``): for each pixel and channel group ``g`` (channels ``g·pe … g·pe + pe −
    1``), ``kh·kw`` beats, one per kernel position in raster order. Lane ``l`` multiplies its
    code by ``w[g·pe + l, ky, kx]`` (one ROM of ``pe`` weights per word, word
    ``(g·kh + ky)·kw + kx``) and accumulates over the group's beats; the group then leaves as
    one output beat, so the output is the HWC frame in ``pe`` lanes. Each lane has its own
    multiplier and operand: there is no broadcast (and so nothing to pack). ``multiplier``
    ``"dsp"`` builds a :class:`~hwgen.hw.dsp.Multiplier` (for ``target``, latency 2), ``"lut"``
    a :class:`~hwgen.hw.multiplier.LutMultiplier` (latency 2–5 by width).
    ``i.payload.last`` is ignored.

    Widths: products ``weight_bits × act_bits`` (one bit more for unsigned inputs),
    accumulators ``layer.acc_bits``. Stalls freeze the whole pipeline
    (``en = ~valid | ready`` at the :class:`Requant` input); a :class:`StreamRegister`
    drives ``o``.

    Parameters
    ----------
    layer : QConv
        Depthwise (``groups`` = channels).
    pe : int
        Channels per cycle; must divide the channels, else :class:`~hwgen.errors.HwgenError`
        lists the legal values.
    target : str
        ``"generic"`` (default) or ``"ecp5"``: how the multipliers are built (see
        :mod:`hwgen.hw.dsp`); the schedule and latency are the same for both.
    multiplier : str
        ``"dsp"`` (default) or ``"lut"``.
    block_weights : bool
        Keep the weight ROMs in block RAM whatever their size (the plan's ``weights="bram"``,
        see :class:`~hwgen.hw.rom.WeightRom`); the schedule and latency are the same.

    Attributes
    ----------
    cycles_per_frame : int
        ``OH·OW·(C/pe)·kh·kw``: one input beat per cycle.
    latency : int
        ``3 + 2 + 8 + 1`` with DSPs (LUT multipliers: their
        :func:`~hwgen.hw.multiplier.lut_latency` instead of 2): cycles from the transfer of a
        frame's last input beat to the transfer of its last output beat, ``o`` always ready
        (read, register the operands, accumulate; the multiplier; :class:`Requant`; the output
        register).

    Members
    -------
    i : In(stream.Signature(frame_layout(code_shape(layer.input), pe)))
    o : Out(stream.Signature(frame_layout(code_shape(layer.output), pe)))
    """

    def __init__(self, layer, pe, *, target="generic", multiplier="dsp", block_weights=False):
        self._target, self._block_weights = check_target(target), block_weights
        self._kind = check_kind(multiplier, f"layer {layer.name!r}: ")
        self._widths = (layer.weight_bits, code_shape(layer.input).width)
        if self._kind not in ("dsp", "lut"):
            raise HwgenError(f"layer {layer.name!r}: a depthwise engine's lanes share no "
                             f"operand, so it builds dsp or lut multipliers, not {multiplier!r}")
        channels = layer.in_channels
        if not layer.depthwise or layer.groups != channels or layer.out_channels != channels:
            raise HwgenError(f"layer {layer.name!r}: the depthwise engine needs groups = in = "
                             f"out channels; this layer has groups={layer.groups}")
        try:
            pe = operator.index(pe)
        except TypeError:
            raise HwgenError(f"layer {layer.name!r}: pe must be an integer, not {pe!r}")
        if pe < 1 or channels % pe:
            raise HwgenError(f"layer {layer.name!r}: illegal depthwise folding pe={pe}: pe must "
                             f"divide the {channels} channels (legal pe: "
                             f"{', '.join(map(str, divisors(channels)))})")
        self._layer, self._pe = layer, pe
        self._positions = layer.kernel[0] * layer.kernel[1]
        self._groups = channels // pe
        self._pixels = layer.out_shape[0] * layer.out_shape[1]
        super().__init__({
            "i": In(stream.Signature(frame_layout(code_shape(layer.input), pe))),
            "o": Out(stream.Signature(frame_layout(code_shape(layer.output), pe))),
        })

    @property
    def pe(self):
        return self._pe

    @property
    def cycles_per_frame(self):
        return self._pixels * self._groups * self._positions

    @property
    def latency(self):
        return (_STAGES + multiplier_latency(self._kind, 1, self._widths)
                + Requant.latency_of(self._layer) + StreamRegister.latency)

    @property
    def pixel_timing(self):
        """``(lead, interval, beats, spacing)`` as
        :attr:`hwgen.hw.systolic.SystolicArray.pixel_timing`: a group of ``pe`` channels
        leaves :attr:`latency` after its ``kh·kw`` window beats, the window's last beat being
        its last group's."""
        lead = self.latency - (self._groups - 1) * self._positions
        return lead, self._groups * self._positions, self._groups, self._positions

    def _weight_words(self):
        weight = self._layer.weight[..., 0]  # (C, kh, kw)
        kh, kw = self._layer.kernel
        return [[int(weight[group * self._pe + lane, ky, kx]) for lane in range(self._pe)]
                for group in range(self._groups) for ky in range(kh) for kx in range(kw)]

    def elaborate(self, platform):
        m = Module()
        layer, pe = self._layer, self._pe
        positions, groups, pixels = self._positions, self._groups, self._pixels
        in_shape = code_shape(layer.input)

        m.submodules.requant = requant = Requant(layer, pe, target=self._target)
        m.submodules.out = out = StreamRegister(frame_layout(code_shape(layer.output), pe))
        wiring.connect(m, requant.o, out.i)
        wiring.connect(m, out.o, wiring.flipped(self.o))

        en, accept = Signal(), Signal()
        m.d.comb += [en.eq(~requant.i.valid | requant.i.ready), self.i.ready.eq(en),
                     accept.eq(self.i.valid & en)]

        position, group = Signal(range(positions)), Signal(range(groups))
        pixel = Signal(range(pixels))
        step = Signal(range(positions * groups))  # the weight ROM address
        group_done = position == positions - 1
        pixel_done = group_done & (group == groups - 1)
        with m.If(accept):
            m.d.sync += [position.eq(Mux(group_done, 0, position + 1)),
                         step.eq(Mux(pixel_done, 0, step + 1))]
            with m.If(group_done):
                m.d.sync += group.eq(Mux(group == groups - 1, 0, group + 1))
            with m.If(pixel_done):
                m.d.sync += pixel.eq(Mux(pixel == pixels - 1, 0, pixel + 1))

        weight = weight_rom(m, "weights", data.ArrayLayout(signed(layer.weight_bits), pe),
                            self._weight_words(), step, en, target=self._target,
                            block=self._block_weights)

        flag_layout = data.StructLayout({"valid": 1, "first": 1, "last": 1, "frame_last": 1})
        read_flags, fetch_flags = (Signal(flag_layout, name=f"{stage}_flags")
                                   for stage in ("read", "fetch"))
        latency = multiplier_latency(self._kind, 1, self._widths)
        multiplier_flags = [Signal(flag_layout, name=f"multiplier_flags{stage}")
                            for stage in range(latency)]
        product_flags = multiplier_flags[-1]
        fetched = Signal(data.ArrayLayout(in_shape, pe))
        operands = Signal(data.ArrayLayout(in_shape, pe))
        products = [multiply_kind(m, self._kind, weight[lane], fetched[lane], en,
                                  target=self._target, name=f"mul{lane}")[0]
                    for lane in range(pe)]
        with m.If(en):
            m.d.sync += [
                operands.eq(self.i.payload.data),
                read_flags.valid.eq(self.i.valid),
                read_flags.first.eq(position == 0),
                read_flags.last.eq(group_done),
                read_flags.frame_last.eq(pixel_done & (pixel == pixels - 1)),
                fetch_flags.eq(read_flags),
                multiplier_flags[0].eq(fetch_flags),
                *(later.eq(earlier) for earlier, later in zip(multiplier_flags,
                                                              multiplier_flags[1:])),
                fetched.eq(operands),
                requant.i.valid.eq(product_flags.valid & product_flags.last),
                requant.i.payload.last.eq(product_flags.frame_last),
            ]
            for lane in range(pe):
                acc = requant.i.payload.data[lane]
                with m.If(product_flags.valid):
                    m.d.sync += acc.eq(Mux(product_flags.first, 0, acc) + products[lane])
        return m
