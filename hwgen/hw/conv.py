# amaranth: UnusedElaboratable=no
# (the planner reads cycles, latency and lead of layers it never elaborates, and the default
# in_lanes is found by trial constructions)
"""A whole convolution layer as one component: padding, sliding window and engine."""

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import HwgenError
from ..plan import divisors
from .depthwise import DepthwiseEngine
from .requant import code_shape
from .stream import chain, frame_layout
from .systolic import SystolicArray, check_conv_folding
from .window import (PadUnit, SlidingWindow, last_real, pixel_beats, serializer_for,
                     window_needs, window_times)

__all__ = ["ConvLayer"]


def _folding_pair(layer, folding):
    if hasattr(folding, "pe") and hasattr(folding, "simd"):
        folding = (folding.pe, folding.simd)
    try:
        first, second = folding
    except (TypeError, ValueError):
        raise HwgenError(f"layer {layer.name!r}: a conv folding is (rows, cols), or (pe, 1) for "
                         f"a depthwise conv, not {folding!r}")
    return first, second


class ConvLayer(wiring.Component):
    """A :class:`~hwgen.qgraph.QConv` layer: ``i`` takes the input codes as an ``(H, W, C)``
    frame in ``in_lanes`` channel lanes, ``o`` gives the output codes as an ``(OH, OW, O)``
    frame in ``out_lanes`` lanes.

    ``PadUnit`` (pads the input zero point; absent when every pad is 0) →
    ``SlidingWindow`` → ``SystolicArray`` (``groups == 1``, ``folding = (rows, cols)``, window
    order ``"conv"`` in ``cols`` lanes) or ``DepthwiseEngine`` (``folding = (pe, 1)``, order
    ``"depthwise"`` in ``pe`` lanes), or with ``levels`` an
    :class:`~hwgen.hw.unrolled.UnrolledDense` over the whole window (order ``"conv"``, ``K``
    lanes; constant weights, one output pixel of all ``O`` channels per cycle, depthwise too).

    Parameters
    ----------
    layer : QConv
    folding : (int, int)
        ``(rows, cols)`` or, depthwise, ``(pe, 1)``; illegal values raise
        :class:`~hwgen.errors.HwgenError` with the legal ones.
    in_lanes : int or None
        Input channels per beat, a divisor of ``C``. By default the smallest one for which
        neither the padding nor the window is slower than the engine (``C`` if none is).
    target : str
        ``"generic"`` (default) or ``"ecp5"``: how the engine's multipliers are built (see
        :mod:`hwgen.hw.dsp`).
    multiplier, pack : str, int
        The engine's multiplier kind and products per packed multiplier (see
        :class:`~hwgen.hw.systolic.SystolicArray`; a depthwise engine takes ``"dsp"`` or
        ``"lut"``).
    block_weights : bool
        The folded engine's weight ROMs in block RAM (see
        :class:`~hwgen.hw.rom.WeightRom`).
    levels : int or None
        Adder levels per pipeline stage of an unrolled engine (``folding`` is then
        ``"unrolled"`` or ``None``); ``None`` builds a folded one.

    Attributes
    ----------
    in_lanes, out_lanes : int
    cycles_per_frame : int
        The slowest part's (``max`` of the pad unit's, the window's bound and the engine's):
        the cycles between frames in steady state, input always valid, ``o`` always ready.
    latency : int
        Cycles from the transfer of the last input beat the frame's last output pixel needs
        (the frame's last beat unless bottom rows are dropped by the floor of the output size)
        to the transfer of the frame's last output beat, when that pixel finds the layer
        otherwise drained and ``o`` is always ready: the pad beats the window still needs
        after that input beat (plus the pad register), then the window's and the engine's
        latencies.
    lead : int
        How far the layer reads ahead: for every input element ``j`` (stream order, pixel
        ``(y, x)``) whose position is also an output pixel ``(y, x)`` (``y < OH``, ``x < OW``),
        the layer emits output pixel ``(y, x)`` once input elements up to ``j + lead`` have
        arrived — it never needs more. Exact for this hardware: the window's last element
        (its bottom-right pixel, all channels, pads mapped to the last real element before
        them), or for a row's last pixel, when the window releases its newest row (stride
        ``sy ≥ kh``, or the last output row), the end of that row. For stride 1 and no bottom
        or right clamping that is ``((kh−1−top)·W + kw−1−left)·C + C−1``. A skip path
        beside this layer needs a FIFO of at least ``lead`` elements (plus the in-flight
        latency).

    Members
    -------
    i : In(stream.Signature(frame_layout(code_shape(layer.input), in_lanes)))
    o : Out(stream.Signature(frame_layout(code_shape(layer.output), out_lanes)))
    """

    def __init__(self, layer, folding, *, in_lanes=None, target="generic", multiplier="dsp",
                 pack=1, levels=None, block_weights=False):
        self._layer, self._target = layer, target
        if levels is not None:
            self._engine, self._out_lanes, order = self._unrolled(folding, levels)
        else:
            self._engine, self._out_lanes, order = self._folded(folding, target, multiplier,
                                                                pack, block_weights)
        self._order = order
        height, width, channels = layer.in_shape
        top, left, bottom, right = layer.pads
        self._padded = (height + top + bottom, width + left + right, channels)
        if in_lanes is None:
            in_lanes = self._default_in_lanes()
        if not isinstance(in_lanes, int) or in_lanes < 1 or channels % in_lanes:
            raise HwgenError(f"layer {layer.name!r}: in_lanes must divide the {channels} input "
                             f"channels (legal: {', '.join(map(str, divisors(channels)))}), "
                             f"not {in_lanes!r}")
        self._in_lanes = in_lanes
        self._pad, self._window = self._front(in_lanes)
        if self._window.out_shape != tuple(layer.out_shape[:2]):
            raise HwgenError(f"layer {layer.name!r}: out_shape {layer.out_shape} does not match "
                             f"the {self._window.out_shape} windows of its input")
        super().__init__({
            "i": In(stream.Signature(frame_layout(code_shape(layer.input), in_lanes))),
            "o": Out(stream.Signature(frame_layout(code_shape(layer.output),
                                                   self._engine_lanes))),
        })

    def _unrolled(self, folding, levels):
        """The unrolled engine, the window's lanes (the whole window) and order."""
        from .unrolled import UnrolledDense

        layer = self._layer
        if folding not in (None, "unrolled"):
            raise HwgenError(f"layer {layer.name!r}: an unrolled conv has no folding (give "
                             f"'unrolled' or None), not {folding!r}")
        pixels = layer.out_shape[0] * layer.out_shape[1]
        kh, kw = layer.kernel
        return (UnrolledDense(layer, levels, beats=pixels), kh * kw * layer.in_shape[2],
                "conv")

    def _folded(self, folding, target, multiplier, pack, block_weights):
        """The systolic or depthwise engine, the window's lanes and order."""
        layer = self._layer
        first, second = _folding_pair(layer, folding)
        if layer.depthwise:
            if second != 1:
                raise HwgenError(f"layer {layer.name!r}: a depthwise conv's folding is (pe, 1), "
                                 f"not ({first}, {second})")
            if pack != 1:
                raise HwgenError(f"layer {layer.name!r}: a depthwise engine does not pack "
                                 f"products (pack={pack})")
            engine = DepthwiseEngine(layer, first, target=target, multiplier=multiplier,
                                     block_weights=block_weights)
            return engine, engine.pe, "depthwise"
        rows, cols = check_conv_folding(layer, first, second)
        engine = SystolicArray(layer, rows, cols, target=target, multiplier=multiplier,
                               pack=pack, block_weights=block_weights)
        return engine, cols, "conv"

    @property
    def _engine_lanes(self):
        engine = self._engine
        if not hasattr(engine, "rows") and not hasattr(engine, "pe"):
            return self._layer.out_channels  # unrolled: a whole pixel per beat
        return engine.pe if self._layer.depthwise else engine.rows

    def _front(self, in_lanes):
        layer = self._layer
        pad = None
        if any(layer.pads):
            pad = PadUnit(layer.in_shape, layer.pads, in_lanes, layer.input.zero_point,
                          code_shape(layer.input))
        window = SlidingWindow(code_shape(layer.input), self._padded, layer.kernel, layer.stride,
                               in_lanes, self._out_lanes, self._order,
                               serializer_for(self._target))
        return pad, window

    def _default_in_lanes(self):
        channels = self._layer.in_channels
        for lanes in divisors(channels):
            pad, window = self._front(lanes)
            front = max(window.cycles_per_frame, pad.cycles_per_frame if pad else 0)
            if front <= self._engine.cycles_per_frame:
                return lanes
        return channels

    @property
    def in_lanes(self):
        return self._in_lanes

    @property
    def out_lanes(self):
        return self._engine_lanes

    @property
    def engine(self):
        return self._engine

    @property
    def cycles_per_frame(self):
        parts = [self._window.cycles_per_frame, self._engine.cycles_per_frame]
        if self._pad is not None:
            parts.append(self._pad.cycles_per_frame)
        return max(parts)

    @property
    def lead(self):
        height, width, channels = self._layer.in_shape
        rows, cols = window_needs(self._layer)
        rows, cols = rows[:height, :width], cols[:height, :width]
        oy, ox = np.meshgrid(np.arange(rows.shape[0]), np.arange(rows.shape[1]), indexing="ij")
        need = last_real(self._layer, rows, cols)
        return int(np.max(need - (oy * width + ox) * channels))

    @property
    def latency(self):
        """See the class docstring. The pixels that wait for the same last input element
        (with padding, a whole bottom row may) leave one per ``period`` cycles: the last one
        ``max_i (pad beats before pixel i's need + (n − 1 − i)·period)`` after the chain
        latency, with ``period`` the slower of the window's and the engine's per pixel."""
        layer = self._layer
        front = self._window.latency + self._engine.latency
        if self._pad is None:
            return front
        _, padded_width, channels = self._padded
        top, left, _, _ = layer.pads
        width = layer.in_shape[1]
        rows, cols = (part.ravel() for part in window_needs(self._layer))
        real = last_real(self._layer, rows, cols)
        pending = real == real[-1]  # the pixels waiting for the last needed real element
        y, x = divmod(int(real[-1]) // channels, width)
        real_padded = (y + top) * padded_width + x + left
        pad_beats = (rows[pending] * padded_width + cols[pending] - real_padded) \
            * channels // self._in_lanes
        column_beats = channels // self._in_lanes
        reads = min(layer.stride[1], layer.kernel[1]) * column_beats
        window_period = max(self._window.window_beats, reads)
        engine_period = self._engine.cycles_per_frame // len(rows)
        period = max(window_period, engine_period)
        count = len(pad_beats)
        behind = (count - 1 - np.arange(count)) * period
        return 1 + int(np.max(pad_beats + behind)) + front

    def beat_times(self, arrival):
        """The cycles of the output beats for input beats (at :attr:`in_lanes`) arriving at
        ``arrival`` (see :meth:`hwgen.hw.accelerator.Accelerator.timeline`): the windows
        leave as :func:`~hwgen.hw.window.window_times` says; the engine starts a pixel's
        output its ``pixel_timing`` lead after its window, and not before its interval after
        the previous pixel's."""
        window = window_times(self._layer, self._window, self._pad is not None,
                              self._in_lanes, arrival)
        return pixel_beats(window, *self._engine.pixel_timing)

    def elaborate(self, platform):
        m = Module()
        pad = [("pad", self._pad)] if self._pad is not None else []
        chain(m, self, pad + [("window", self._window), ("engine", self._engine)])
        return m
