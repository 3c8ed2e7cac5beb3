"""Pooling engines: the window reduction of max/average pooling, global average pooling, and the
whole max/average pool layer (padding, sliding window, reduction)."""

import math
import operator
from fractions import Fraction

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import HwgenError
from ..reference import Rounding
from .add import round_shift_clamp
from .dsp import check_target
from .rom import weight_rom
from .requant import code_shape
from .stream import chain, credit_depth, credit_output, delay, frame_layout, queue
from .window import PadUnit, SlidingWindow, pixel_beats, serializer_for, window_times

__all__ = ["PoolReduce", "GlobalAvgPool", "PoolLayer"]

# FLOAT32_ORT's registered stages after the float32 sum: product, guess, clamp flags and table
# index, the threshold table's two, the comparison, the result.
_FLOAT32_TAIL = 7


def _lanes(layer, lanes):
    """``lanes`` as an int dividing the layer's channel count, or :class:`HwgenError`."""
    channels = int(layer.in_shape[2])
    try:
        value = operator.index(lanes)
    except TypeError:
        value = 0
    if value < 1 or channels % value:
        legal = ", ".join(str(d) for d in range(1, channels + 1) if channels % d == 0)
        raise HwgenError(f"layer {layer.name!r}: lanes must divide the {channels} channels "
                         f"(legal: {legal}), not {lanes!r}")
    return value


def _kind(layer, kinds, block):
    if layer.kind not in kinds:
        raise HwgenError(f"layer {layer.name!r}: {block} implements {' and '.join(kinds)} "
                         f"pooling, not {layer.kind!r}")


def _span(quant):
    """``max |q − zp|`` over the codes of ``quant``."""
    return max(quant.hi - quant.zero_point, quant.zero_point - quant.lo)


def _signed_bits(bound):
    """The width of the signed shape holding every integer in ``[−bound, bound]``."""
    return max(int(bound).bit_length() + 1, 2)


def _difference(m, code, zero_point, name):
    """``code − zero_point`` as a signed signal one bit wider than the code (two if unsigned)."""
    value = Signal(signed(len(code) + 2), name=name)
    m.d.comb += value.eq(code - zero_point)
    return value


_SIGNIFICAND = 24  # float32


def _round_significant(value):
    """The integer ``value`` rounded to 24 significant bits, ties to even: float32 rounding of
    a sum whose terms are integer multiples of one power of two."""
    magnitude = abs(value)
    excess = magnitude.bit_length() - _SIGNIFICAND
    if excess <= 0:
        return value
    quotient, remainder = divmod(magnitude, 1 << excess)
    half = 1 << (excess - 1)
    if remainder > half or (remainder == half and quotient & 1):
        quotient += 1
    return (quotient << excess) * (1 if value > 0 else -1)


# The registered stages of one float32 addition in FLOAT32_ORT pools (see _float32_stage).
_FLOAT32_ADD_PHASES = ("add", "mask", "decide", "round")


def _float32_stage(m, phase, state, shape, name):
    """One registered stage of a float32 addition on integers (``state`` a dict of signals;
    returns the next; every sum fits the signed ``shape``). ``"add"``: ``{"a", "b"}`` →
    ``{"value": a + b}``; then ``value``
    rounded to 24 significant bits, ties to even, with constant shifts only, in three stages:

    - ``"mask"``: the leading one of ``value`` (of ``~value`` when negative: ``|v| − 1``,
      whose leading one is ``|v|``'s unless ``|v|`` is a power of two, which rounds to itself
      either way) smeared down: ``smear``;
    - ``"decide"``: the value floored below its last kept bit, that bit (``unit``) and whether
      to round up (the dropped bits exceed half a unit, or equal it with the kept part odd);
    - ``"round"``: ``floored + (up ? unit : 0)``.

    Rounding the two's complement value this way is rounding its magnitude to nearest even
    and restoring the sign."""
    def register(shape, value, suffix):
        signal = Signal(shape, name=f"{name}_{suffix}")
        m.d.sync += signal.eq(value)
        return signal

    if phase == "add":
        a, b = state["a"], state["b"]
        return {"value": register(shape, a + b, "sum")}
    if phase == "mask":
        value = state["value"]
        width = len(value)
        bits = value.as_unsigned() ^ Mux(value[-1], (1 << width) - 1, 0)
        step = 1
        while step < width:
            bits = bits | (bits >> step)
            step *= 2
        return {"value": register(value.shape(), value, "value"),
                "smear": register(width, bits, "smear")}
    if phase == "decide":
        value, smear = state["value"], state["smear"]
        below = smear >> _SIGNIFICAND                       # the bits rounded away
        unit = (smear >> (_SIGNIFICAND - 1)) & ~below        # the last kept bit
        half = below & ~(smear >> (_SIGNIFICAND + 1))        # the first bit rounded away
        raw = value.as_unsigned()
        up = ((raw & half) != 0) & (((raw & (below & ~half)) != 0) | ((raw & unit) != 0))
        return {"floored": register(value.shape(), (raw & ~below).as_signed(), "floored"),
                "unit": register(len(value), unit, "unit"),
                "up": register(1, up, "up")}
    floored = state["floored"]
    return {"value": register(shape, floored + Mux(state["up"], state["unit"], 0), "rounded")}


class _Float32Average:
    """The constants of :class:`PoolReduce`'s ``FLOAT32_ORT`` path (see the class docstring),
    computed at elaboration time.

    ``s_x = m·2^e`` with ``2^23 ≤ m < 2^24``: a float32 term is ``T[q] = rne24((q − zp)·m)``
    in units of ``2^e`` (an exact integer), and every float32 sum of terms is an integer in
    those units. ``y(F) = rint(fl(fl(fl(F·2^e) / N) / s_y) + zp_y)`` is non-decreasing in the
    float sum ``F``; ``thresholds[c − clamp_lo] = ⌈T_{c+1} / 2^e⌉``, with ``T_k`` the least
    float32 ``F`` with ``y(F) ≥ k``, so ``y(F) ≥ c + 1 ⟺ F ≥ thresholds[c − clamp_lo]``.
    The first guess ``c0 = zp_y + ⌊D·M / 2^n⌋`` from the exact sum ``D = Σ (q − zp)`` is
    proven here, for every ``D`` and every float sum within the rounding error of ``D·m``,
    to leave ``y ∈ {c0, c0 + 1}`` (or a clamp end), so one comparison decides.
    """

    def __init__(self, layer, window):
        quant = layer.input
        scale = np.float32(quant.scale)
        if not np.isfinite(scale) or scale < np.finfo(np.float32).tiny:
            raise HwgenError(f"layer {layer.name!r}: input scale {quant.scale} is not a "
                             "normal float32")
        fraction, exponent = math.frexp(float(scale))
        significand, self.exponent = int(fraction * (1 << _SIGNIFICAND)), exponent - _SIGNIFICAND
        self.terms = [_round_significant((q - quant.zero_point) * significand)
                      for q in range(quant.lo, quant.hi + 1)]
        term_bound = max(abs(t) for t in self.terms)
        # |F − D·m|: each term's rounding, and each addition's (at most 2^−24 of its result).
        sum_bound = window * term_bound
        error = window * max(abs(t - (q - quant.zero_point) * significand)
                             for t, q in zip(self.terms, range(quant.lo, quant.hi + 1)))
        error += (window - 1) * (sum_bound >> (_SIGNIFICAND - 1)) + window
        self.term_shape = signed(_signed_bits(term_bound))
        self.sum_shape = signed(_signed_bits(sum_bound + error))
        self._layer, self._window, self._significand = layer, window, significand
        lo, hi = layer.clamp_lo, layer.clamp_hi
        codes = np.arange(lo + 1, hi + 1)
        self.thresholds = [max(min(t, sum_bound + error + 1), -sum_bound - error - 1)
                           for t in self._least_sums(codes)]
        self.threshold_shape = signed(_signed_bits(sum_bound + error + 1))
        self._check(quant, error)

    def code(self, sums):
        """``y(F)`` (unclamped) of float32 sums ``F`` (real values, a numpy float32 array)."""
        f32 = np.float32
        layer = self._layer
        mean = sums / f32(self._window)
        return np.rint(mean / f32(layer.output.scale) + f32(layer.output.zero_point))

    def _least_sums(self, codes):
        """``⌈T_k / 2^e⌉`` for each ``k`` of ``codes``: a bisection over float32 in order."""
        def to_float(key):  # order-preserving int ↔ float32 bits (−0.0 just below +0.0)
            bits = np.where(key >= 0, key, (-key - 1) | (1 << 31)).astype(np.uint32)
            return bits.view(np.float32)

        infinity = int(np.float32(np.inf).view(np.uint32))
        low = np.full(len(codes), -infinity - 1, np.int64)   # y(low) < k (−inf counts so)
        high = np.full(len(codes), infinity, np.int64)        # y(high) ≥ k (+inf counts so)
        with np.errstate(over="ignore", invalid="ignore"):
            while np.any(high - low > 1):
                middle = (low + high) // 2
                reached = self.code(to_float(middle)) >= codes
                low, high = np.where(reached, low, middle), np.where(reached, middle, high)
        unit = Fraction(2) ** self.exponent
        return [math.ceil(Fraction(float(value)) / unit) if np.isfinite(value) else
                (1 if value > 0 else -1) << 80 for value in to_float(high)]

    def _check(self, quant, error):
        layer, window = self._layer, self._window
        totals = np.arange(window * (quant.lo - quant.zero_point),
                           window * (quant.hi - quant.zero_point) + 1)
        unit = float(2.0 ** self.exponent)
        exact = totals.astype(np.float64) * self._significand
        with np.errstate(over="ignore"):
            low = np.nextafter(np.float32((exact - error) * unit), np.float32(-np.inf))
            high = np.nextafter(np.float32((exact + error) * unit), np.float32(np.inf))
        low_code, high_code = self.code(low), self.code(high)
        guess = layer.output.zero_point + (totals * int(layer.multiplier) >> int(layer.shift))
        ok = np.where(guess < layer.clamp_lo, high_code <= layer.clamp_lo,
                      np.where(guess >= layer.clamp_hi, low_code >= layer.clamp_hi,
                               (low_code >= guess) & (high_code <= guess + 1)))
        if not ok.all():
            raise HwgenError(f"layer {layer.name!r}: M/2^n = {layer.multiplier}/2^{layer.shift}"
                             " is too far from the pool's scale ratio for the float32 average")


class _ScalarRequant:
    """The two registered stages shared by the average pools: ``product = sum · M``, then
    ``clamp(zp_y + rshift_round(product, n, layer.rounding), clamp_lo, clamp_hi)`` into the
    output beat (half to even only adds a carry in: no extra cycle)."""

    stages = 2

    def __init__(self, layer, sum_bound):
        self.layer = layer
        self.multiplier = int(layer.multiplier)
        self.product_shape = signed(_signed_bits(sum_bound * self.multiplier))

    def build(self, m, en, sums, valid, last, o):
        """Pipe ``sums`` (a list of lanes), ``valid`` and ``last`` into ``o`` when ``en``."""
        layer = self.layer
        product_valid, product_last = Signal(), Signal()
        with m.If(en):
            m.d.sync += [product_valid.eq(valid), product_last.eq(last),
                         o.valid.eq(product_valid), o.payload.last.eq(product_last)]
        for lane, value in enumerate(sums):
            product = Signal(self.product_shape, name=f"product{lane}")
            with m.If(en):
                m.d.sync += [
                    product.eq(value * self.multiplier),
                    o.payload.data[lane].eq(round_shift_clamp(
                        m, product, int(layer.shift), layer.rounding, layer.output.zero_point,
                        layer.clamp_lo, layer.clamp_hi, f"unclamped{lane}")),
                ]


class PoolReduce(wiring.Component):
    """Reduces the windows of a max or average pool, ``lanes`` channels at a time.

    Input: the window stream of a sliding-window unit in depthwise order: for each output pixel
    (raster order), for each channel group ``g`` of ``lanes`` channels, ``kh·kw`` beats (kernel
    positions, ``ky`` then ``kx``) carrying channels ``g·lanes … g·lanes + lanes − 1`` of that
    position (padding already inserted: the lowest code for max, the zero point for average).
    Output: one beat per window and group, i.e. the ``(OH, OW, C)`` output frame in HWC order
    with ``lanes`` lanes; ``o.last`` is regenerated by counting windows (``i.payload.last`` is
    not used).

    - ``"max"``: the largest code of each lane's window; codes keep the input quantization.
    - ``"avg"``: ``acc = Σ (q − zp_x)`` over the window, then
      ``clamp(zp_y + rshift_round(acc · M, n), clamp_lo, clamp_hi)`` (scalar ``M``, ``n``).

    - ``"avg"`` with ``Rounding.FLOAT32_ORT``: onnxruntime's float32 ``QLinearAveragePool``
      (see :class:`~hwgen.reference.Rounding`), in integers. With ``s_x = m·2^e``
      (``2^23 ≤ m < 2^24``) every float32 value involved is an integer in units of ``2^e``: a
      term table ``T[q] = rne24((q − zp_x)·m)`` (a :class:`~hwgen.hw.rom.WeightRom` per
      lane, addressed by the code's bits, read per beat); the terms of a window, kept in
      registers as they arrive, are summed in kernel order by a chain of four registered
      stages per addition (the exact sum; its leading-one mask; the floored value, last kept
      bit and round-up decision; the sum rounded to 24 significant bits, ties to even);
      beside it the exact ``D = Σ (q − zp_x)``. Then ``c0 = zp_y + ⌊D·M / 2^n⌋``, proven at
      elaboration for every ``D`` (and every float sum within its rounding error) to leave
      the result in ``{c0, c0 + 1}`` or at a clamp end, and the float sum compared with a
      threshold table (indexed by ``c0``, computed by bisection over float32 with numpy)
      decides between the two.

    Widths: max compares codes; the average sum is ``signed`` wide enough for
    ``kh·kw · max|q − zp_x|``, the product for that bound times ``M``. ``FLOAT32_ORT``: terms of
    about ``a + 25`` bits, the float sums and thresholds ``log2(kh·kw)`` wider, ``kh·kw`` term
    registers per lane in the capture plus those still to add along the chain.

    Latency: from the transfer of a window's last beat to the offer of its result on ``o``:
    2 cycles for max (the running maximum register, the output FIFO), 4 for average (sum,
    product, round/clamp, the output FIFO), ``4·kh·kw + 7`` for ``FLOAT32_ORT`` (the term
    table's two registers, window capture, ``4·(kh·kw − 1)`` chain stages, product, guess,
    clamp flags and table index, the threshold table's two registers, comparison, result,
    the output FIFO; every table read lands in a register, the block RAM's own on ECP5).
    One input beat per cycle:
    ``cycles_per_frame = OH·OW·(C/lanes)·kh·kw`` (the input beats).

    Back-pressure: the reduction never stalls; an output FIFO with room for every window in
    flight drives ``o``, and ``i.ready`` is a registered credit flag (see
    :func:`~hwgen.hw.stream.credit_output`), so ``o.ready`` does not reach ``i.ready`` (nor
    the sliding window in front) combinationally.

    Parameters
    ----------
    layer : QPool
        ``kind`` ``"max"`` or ``"avg"``.
    lanes : int
        Channels per beat; must divide the channel count.

    Members
    -------
    i : In(stream.Signature(frame_layout(code_shape(layer.input), lanes)))
    o : Out(stream.Signature(frame_layout(code_shape(layer.output), lanes)))
    """

    def __init__(self, layer, lanes, *, target="generic"):
        _kind(layer, ("max", "avg"), "PoolReduce")
        self._layer = layer
        self._target = check_target(target)
        self._lanes = _lanes(layer, lanes)
        self._window = int(layer.kernel[0]) * int(layer.kernel[1])
        self._float32 = None
        if layer.kind == "avg" and layer.rounding is Rounding.FLOAT32_ORT:
            self._float32 = _Float32Average(layer, self._window)
        height, width, channels = (int(v) for v in layer.out_shape)
        self._out_beats = height * width * channels // self._lanes
        super().__init__({
            "i": In(stream.Signature(frame_layout(code_shape(layer.input), self._lanes))),
            "o": Out(stream.Signature(frame_layout(code_shape(layer.output), self._lanes))),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def cycles_per_frame(self):
        """Input beats per frame, ``OH·OW·(C/lanes)·kh·kw``: one per cycle."""
        return self._out_beats * self._window

    @property
    def latency(self):
        """2 for max, 4 for average, ``4·kh·kw + 7`` for ``FLOAT32_ORT``: see the class
        docstring."""
        if self._float32 is not None:
            return 3 + len(_FLOAT32_ADD_PHASES) * (self._window - 1) + _FLOAT32_TAIL + 1
        return (1 if self._layer.kind == "max" else 1 + _ScalarRequant.stages) + 1

    @property
    def output_depth(self):
        """Beats of the output FIFO: room for every window in flight at full rate."""
        return credit_depth(self.latency, self._window)

    def elaborate(self, platform):
        m = Module()
        layer, lanes, window = self._layer, self._lanes, self._window
        complete = Signal()
        result, room = credit_output(m, self.o, self.o.payload.shape(), self.output_depth,
                                     complete)
        en = Const(1)  # runs free: the credits keep the output FIFO from overflowing
        m.d.comb += self.i.ready.eq(room)

        position = Signal(range(window))       # kernel position of the next beat
        index = Signal(range(self._out_beats))  # window (and group) of the next beat
        accept = self.i.valid & self.i.ready
        first = position == 0
        m.d.comb += complete.eq(accept & (position == window - 1))
        frame_last = index == self._out_beats - 1
        with m.If(accept):
            m.d.sync += position.eq(Mux(position == window - 1, 0, position + 1))
        with m.If(complete):
            m.d.sync += index.eq(Mux(frame_last, 0, index + 1))

        if layer.kind == "max":
            running = Signal(data.ArrayLayout(code_shape(layer.input), lanes))
            m.d.comb += result.payload.data.eq(running)
            m.d.sync += [result.valid.eq(complete), result.payload.last.eq(frame_last)]
            for lane in range(lanes):
                code = self.i.payload.data[lane]
                with m.If(accept & (first | (code > running[lane]))):
                    m.d.sync += running[lane].eq(code)
            return m

        # Average: the running sum doubles as the sum register the product stage reads; the
        # next window's first beat overwrites it in the same cycle the product takes it.
        sum_bound = window * _span(layer.input)
        sums = [Signal(signed(_signed_bits(sum_bound)), name=f"sum{lane}")
                for lane in range(lanes)]
        sum_valid, sum_last = Signal(), Signal()
        with m.If(en):
            m.d.sync += [sum_valid.eq(complete), sum_last.eq(frame_last)]
        for lane, total in enumerate(sums):
            difference = _difference(m, self.i.payload.data[lane], layer.input.zero_point,
                                     f"difference{lane}")
            with m.If(accept):
                m.d.sync += total.eq(Mux(first, 0, total) + difference)
        if self._float32 is None:
            _ScalarRequant(layer, sum_bound).build(m, en, sums, sum_valid, sum_last, result)
        else:
            self._build_float32(m, accept, position, complete, frame_last, sums, result)
        return m

    def _build_float32(self, m, accept, position, complete, frame_last, sums, result):
        """The ``FLOAT32_ORT`` path: the window's float32 terms, their float32 sum in kernel
        order, then the first guess from the exact sum corrected by one threshold."""
        layer, lanes, window, constants = self._layer, self._lanes, self._window, self._float32
        quant = layer.input
        # The term table is indexed by the code's bits as they are (no subtraction in front of
        # the address); the thresholds by the clamped first guess. Both are WeightRoms: two
        # registers from address to data, the second the block RAM's own on ECP5.
        bits = code_shape(quant).width
        table = [0] * (1 << bits)
        for q, term in zip(range(quant.lo, quant.hi + 1), constants.terms):
            table[q & ((1 << bits) - 1)] = term
        count = max(layer.clamp_hi - layer.clamp_lo, 1)

        # Stages 1–2: the beat's code addresses the term table; its place in the window and
        # the exact sum (complete in the cycle after the window's last beat) follow.
        beat_valid, beat_position, beat_complete, beat_last = (
            Signal(), Signal.like(position), Signal(), Signal())
        m.d.sync += [beat_valid.eq(accept), beat_position.eq(position),
                     beat_complete.eq(complete), beat_last.eq(frame_last)]
        read_valid, read_position, read_complete, read_last = (
            Signal(), Signal.like(position), Signal(), Signal())
        m.d.sync += [read_valid.eq(beat_valid), read_position.eq(beat_position),
                     read_complete.eq(beat_complete), read_last.eq(beat_last)]
        # Stage 3: the term, kept until the window is complete, when the window's terms and
        # exact sums leave together.
        valid, last = Signal(name="window_valid"), Signal(name="window_last")
        m.d.sync += [valid.eq(read_complete), last.eq(read_last)]
        lane_terms, totals = [], []
        for lane in range(lanes):
            term = weight_rom(m, f"terms{lane}", constants.term_shape, table,
                              self.i.payload.data[lane].as_unsigned(),
                              target=self._target)
            exact = Signal.like(sums[lane], name=f"exact_held{lane}")
            m.d.sync += exact.eq(sums[lane])
            kept = [Signal(constants.term_shape, name=f"kept{lane}_{k}")
                    for k in range(window - 1)]
            for k, register in enumerate(kept):
                with m.If(read_valid & (read_position == k)):
                    m.d.sync += register.eq(term)
            window_terms = [Signal(constants.term_shape, name=f"term{lane}_{k}")
                            for k in range(window)]
            total = Signal.like(sums[lane], name=f"exact{lane}")
            with m.If(read_complete):
                m.d.sync += [register.eq(value) for register, value in
                             zip(window_terms, kept + [term])]
                m.d.sync += total.eq(exact)
            lane_terms.append(window_terms)
            totals.append(total)

        # The float32 sum in kernel order, each addition in the registered stages of
        # _FLOAT32_ADD_PHASES. The terms still to add and the exact sum travel along.
        partials = [{"value": window_terms[0]} for window_terms in lane_terms]
        rests = [window_terms[1:] for window_terms in lane_terms]
        for step in range(1, window):
            for phase in _FLOAT32_ADD_PHASES:
                next_valid = Signal(name=f"{phase}{step}_valid")
                next_last = Signal(name=f"{phase}{step}_last")
                m.d.sync += [next_valid.eq(valid), next_last.eq(last)]
                valid, last = next_valid, next_last
                for lane in range(lanes):
                    state, rest = partials[lane], rests[lane]
                    if phase == "add":
                        state, rest = {"a": state["value"], "b": rest[0]}, rest[1:]
                    partials[lane] = _float32_stage(m, phase, state, constants.sum_shape,
                                                    f"{phase}{step}_{lane}")
                    moved = [Signal(constants.term_shape, name=f"{phase}{step}_{lane}_{k}")
                             for k in range(len(rest))]
                    m.d.sync += [register.eq(value) for register, value in zip(moved, rest)]
                    total = Signal.like(totals[lane], name=f"{phase}{step}_exact{lane}")
                    m.d.sync += total.eq(totals[lane])
                    rests[lane], totals[lane] = moved, total
        lane_terms = [[partial["value"]] for partial in partials]

        # The first guess c0 = zp_y + ⌊D·M / 2^n⌋ and the result, a registered stage each:
        # product; guess; clamp flags and table index; threshold (two stages); the float sum
        # against it; the result (a clamp end, or c0 plus whether the float sum reaches c0 + 1).
        multiplier, shift = int(layer.multiplier), int(layer.shift)
        flags = [(valid, last)]
        for stage in range(_FLOAT32_TAIL):
            flags.append((Signal(name=f"tail{stage}_valid"), Signal(name=f"tail{stage}_last")))
            m.d.sync += [flags[-1][0].eq(flags[-2][0]), flags[-1][1].eq(flags[-2][1])]
        m.d.comb += [result.valid.eq(flags[-1][0]), result.payload.last.eq(flags[-1][1])]

        for lane in range(lanes):
            float_sum = lane_terms[lane][0]
            product = Signal(signed(_signed_bits(window * _span(quant) * multiplier)),
                             name=f"product{lane}")
            m.d.sync += product.eq(totals[lane] * multiplier)
            guess = Signal(signed(len(product) + 2), name=f"guess{lane}")
            m.d.sync += guess.eq((product >> shift) + layer.output.zero_point)
            low, high = Signal(name=f"low{lane}"), Signal(name=f"high{lane}")
            index = Signal(range(count), name=f"index{lane}")
            m.d.sync += [low.eq(guess < layer.clamp_lo), high.eq(guess >= layer.clamp_hi),
                         index.eq(Mux(guess < layer.clamp_lo, 0,
                                      Mux(guess >= layer.clamp_lo + count, count - 1,
                                          guess - layer.clamp_lo)))]
            threshold = weight_rom(m, f"thresholds{lane}", constants.threshold_shape,
                                   constants.thresholds or [0], index, target=self._target)
            # The float sum waits for the threshold: product, guess, index, two table reads.
            waiting = delay(m, float_sum, 5, f"float_sum{lane}")
            reaches = Signal(name=f"reaches{lane}")
            m.d.sync += reaches.eq(waiting >= threshold)
            guess_out = delay(m, guess, 4, f"guess{lane}")
            low_out, high_out = delay(m, low, 3, f"low{lane}"), delay(m, high, 3, f"high{lane}")
            m.d.sync += result.payload.data[lane].eq(
                Mux(low_out, layer.clamp_lo,
                    Mux(high_out, layer.clamp_hi, guess_out + reaches)))


class GlobalAvgPool(wiring.Component):
    """Global average pooling: ``(H, W, C)`` → ``(1, 1, C)``, ``q_y[c] = clamp(zp_y +
    rshift_round(Σ_{y,x} (q[y,x,c] − zp_x) · M, n), clamp_lo, clamp_hi)``.

    The input frame arrives in HWC order, ``lanes`` channels per beat (``G = C/lanes`` beats per
    pixel). The per-channel sums live in a :class:`Memory` of ``G`` words (``lanes`` sums
    each), updated read-modify-write: the beat of group ``g`` reads word ``g`` when it is
    accepted and writes the new sum the next cycle. The read port is transparent to the write
    port, so back-to-back beats of the same group (``G == 1``) see each other's sums. The
    first pixel of a frame ignores the stored sums (no clearing pass); the sums of the last
    pixel go to the requantization instead of the memory. So the ``G`` output beats leave
    while the last pixel streams in, and the next frame's beats are accepted right behind:
    no bubble between frames.

    Widths: sums ``signed`` wide enough for ``H·W · max|q − zp_x|``; the product for that bound
    times ``M``.

    Latency: 4 cycles from the transfer of a beat of the last pixel to the offer of its
    output beat (read, sum, product, round/clamp), so 4 from the frame's last input beat to its
    last output beat. ``cycles_per_frame = H·W·C/lanes`` (one input beat per cycle).
    Back-pressure freezes the block (``i.ready = ~o.valid | o.ready``); ``i.payload.last`` is
    not used (the block counts pixels).

    Parameters
    ----------
    layer : QPool
        ``kind`` ``"global_avg"``.
    lanes : int
        Channels per beat; must divide ``C``.

    Members
    -------
    i : In(stream.Signature(frame_layout(code_shape(layer.input), lanes)))
    o : Out(stream.Signature(frame_layout(code_shape(layer.output), lanes)))
    """

    latency = 2 + _ScalarRequant.stages

    def beat_times(self, arrival):
        """The cycles of the output beats for input beats arriving at ``arrival`` (see
        :meth:`hwgen.hw.accelerator.Accelerator.timeline`): a beat per channel group of the
        last pixel, :attr:`latency` after it, at most one per cycle."""
        last = np.asarray(arrival, float)[-self._groups:]
        return queue(last + self.latency, np.ones(self._groups))

    def __init__(self, layer, lanes):
        _kind(layer, ("global_avg",), "GlobalAvgPool")
        if layer.rounding is Rounding.FLOAT32_ORT:
            raise HwgenError(f"layer {layer.name!r}: FLOAT32_ORT rounding is implemented for "
                             "windowed average pools (PoolReduce), not global ones")
        self._layer = layer
        self._lanes = _lanes(layer, lanes)
        height, width, channels = (int(v) for v in layer.in_shape)
        self._pixels = height * width
        self._groups = channels // self._lanes
        super().__init__({
            "i": In(stream.Signature(frame_layout(code_shape(layer.input), self._lanes))),
            "o": Out(stream.Signature(frame_layout(code_shape(layer.output), self._lanes))),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def cycles_per_frame(self):
        """Input beats per frame, ``H·W·C/lanes``: one per cycle, none lost between frames."""
        return self._pixels * self._groups

    def elaborate(self, platform):
        m = Module()
        layer, lanes, groups = self._layer, self._lanes, self._groups
        sum_bound = self._pixels * _span(layer.input)
        sum_shape = signed(_signed_bits(sum_bound))
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]

        group, pixel = Signal(range(groups)), Signal(range(self._pixels))
        accept = self.i.valid & self.i.ready
        with m.If(accept):
            m.d.sync += group.eq(Mux(group == groups - 1, 0, group + 1))
            with m.If(group == groups - 1):
                m.d.sync += pixel.eq(Mux(pixel == self._pixels - 1, 0, pixel + 1))

        m.submodules.sums = sums = memory.Memory(shape=data.ArrayLayout(sum_shape, lanes),
                                                 depth=groups, init=[])
        write = sums.write_port()
        read = sums.read_port(transparent_for=(write,))
        m.d.comb += [read.addr.eq(group), read.en.eq(en)]

        # Stage 1: the beat, beside the stored sums of its group.
        beat_valid, beat_first, beat_final, beat_last = Signal(), Signal(), Signal(), Signal()
        beat_group = Signal.like(group)
        with m.If(en):
            m.d.sync += [
                beat_valid.eq(accept), beat_group.eq(group),
                beat_first.eq(pixel == 0), beat_final.eq(pixel == self._pixels - 1),
                beat_last.eq((pixel == self._pixels - 1) & (group == groups - 1)),
            ]
        # Stage 2: the new sums, written back or, on the last pixel, passed on.
        updated = [Signal(sum_shape, name=f"updated{lane}") for lane in range(lanes)]
        totals = [Signal(sum_shape, name=f"total{lane}") for lane in range(lanes)]
        total_valid, total_last = Signal(), Signal()
        for lane in range(lanes):
            difference = Signal(signed(len(self.i.payload.data[lane]) + 2),
                                name=f"difference{lane}")
            with m.If(en):
                m.d.sync += difference.eq(self.i.payload.data[lane] - layer.input.zero_point)
            m.d.comb += [
                updated[lane].eq(Mux(beat_first, 0, read.data[lane]) + difference),
                write.data[lane].eq(updated[lane]),
            ]
            with m.If(en):
                m.d.sync += totals[lane].eq(updated[lane])
        m.d.comb += [write.addr.eq(beat_group), write.en.eq(en & beat_valid & ~beat_final)]
        with m.If(en):
            m.d.sync += [total_valid.eq(beat_valid & beat_final), total_last.eq(beat_last)]
        _ScalarRequant(layer, sum_bound).build(m, en, totals, total_valid, total_last,
                                                   self.o)
        return m


class PoolLayer(wiring.Component):
    """A whole max or average pool layer: :class:`~hwgen.hw.window.PadUnit` (only when some pad
    is non-zero) → :class:`~hwgen.hw.window.SlidingWindow` (``order="depthwise"``, ``lanes``
    in and out) → :class:`PoolReduce`.

    Pads hold the lowest code ``input.lo`` for max pooling and the zero point for average
    pooling (where they add 0 to the sum). Output pixels follow floor semantics (rows and
    columns no whole window covers are dropped), which must agree with ``layer.out_shape``.

    Parameters
    ----------
    layer : QPool
        ``kind`` ``"max"`` or ``"avg"``.
    lanes : int
        Channels per beat, in and out; must divide the channel count.

    Attributes
    ----------
    in_lanes, out_lanes : int
        Both ``lanes``.
    cycles_per_frame : int
        Cycles between frames in steady state, input always valid and ``o`` always ready: the
        slowest block's, in practice the sliding window's (it emits ``kh·kw·C/lanes`` beats per
        output pixel).
    latency : int
        Cycles from the transfer of the last input beat the frame's last output needs to the
        transfer of the frame's last output beat, when everything that does not need that
        beat has left and ``o`` is always ready. That beat is the last of input row
        ``min((OH−1)·sy + kh − 1 − top, H − 1)`` (the frame's last beat unless bottom rows
        are dropped). Without padding only the last window waits for it: ``3 + kh·kw·C/lanes
        + PoolReduce.latency``. With padding, the windows needing right or bottom pads after
        it wait too; see ``_latency`` for the exact schedule.
    lead : int
        Input elements beyond element ``j`` the layer may need before it emits every output
        whose window holds ``j``'s pixel: ``kh·W·C − 1``, a bound that allows for the rest of
        the window's bottom row (the sliding window releases a finished row only after its
        last beat). ``j = (y, x, c)`` needs at most the input up to the end of row
        ``y + kh − 1``, which is ``(kh − 1)·W·C + (W − 1 − x)·C + (C − 1 − c) ≤ kh·W·C − 1``
        elements beyond ``j``.

    Members
    -------
    i : In(stream.Signature(frame_layout(code_shape(layer.input), lanes)))
    o : Out(stream.Signature(frame_layout(code_shape(layer.output), lanes)))
    """

    def __init__(self, layer, lanes, *, target="generic"):
        _kind(layer, ("max", "avg"), "PoolLayer")
        self._layer = layer
        self._lanes = _lanes(layer, lanes)
        height, width, channels = (int(v) for v in layer.in_shape)
        top, left, bottom, right = (int(v) for v in layer.pads)
        kernel = tuple(int(v) for v in layer.kernel)
        stride = tuple(int(v) for v in layer.stride)
        padded = (top + height + bottom, left + width + right, channels)
        out_shape = ((padded[0] - kernel[0]) // stride[0] + 1,
                     (padded[1] - kernel[1]) // stride[1] + 1, channels)
        if tuple(layer.out_shape) != out_shape:
            raise HwgenError(f"layer {layer.name!r}: output shape {tuple(layer.out_shape)} is "
                             f"not the floor-mode shape {out_shape} of its kernel, stride and "
                             "pads (ceil mode is not supported)")
        shape = code_shape(layer.input)
        self._pad = None
        if any(layer.pads):
            value = layer.input.lo if layer.kind == "max" else layer.input.zero_point
            self._pad = PadUnit(tuple(layer.in_shape), tuple(layer.pads), self._lanes, value,
                                shape)
        self._window = SlidingWindow(shape, padded, kernel, stride, self._lanes, self._lanes,
                                     "depthwise", serializer_for(target))
        self._reduce = PoolReduce(layer, self._lanes, target=target)
        self._padded = padded
        self._needed_row = (out_shape[0] - 1) * stride[0] + kernel[0] - 1  # padded coordinates
        super().__init__({
            "i": In(stream.Signature(frame_layout(shape, self._lanes))),
            "o": Out(stream.Signature(frame_layout(code_shape(layer.output), self._lanes))),
        })

    @property
    def in_lanes(self):
        return self._lanes

    @property
    def out_lanes(self):
        return self._lanes

    @property
    def cycles_per_frame(self):
        blocks = [self._window, self._reduce] + ([self._pad] if self._pad else [])
        return max(block.cycles_per_frame for block in blocks)

    @property
    def latency(self):
        return self._latency()

    def _latency(self):
        """The schedule behind :attr:`latency`, in beats of the sliding window's input (the
        padded frame). Let ``P`` be the beat of the last needed input beat and the pending
        windows ``1 … N`` those (in output order) needing a beat at or after ``P``; window ``n``
        needs ``T_n`` beats after ``P`` (its bottom-right pixel, or for a window that
        releases its bottom row — the last of an output row when ``sy ≥ kh`` or of the frame —
        the end of that row). Beats after ``P`` are pads, which the pad unit emits one per
        cycle; a window leaves its last beat ``3 + S`` cycles after its last needed beat
        (:attr:`SlidingWindow.latency`, ``S = kh·kw·C/lanes``) and pending windows leave back
        to back, so the last one leaves ``3 + max_n (T_n + (N − n + 1)·S)`` cycles after
        ``P``. The pad unit's register adds 1, :class:`PoolReduce` its latency."""
        layer = self._layer
        height, width, _ = (int(v) for v in layer.in_shape)
        top, left, _, _ = (int(v) for v in layer.pads)
        (kh, kw), (sy, sx) = layer.kernel, layer.stride
        padded_width = self._padded[1]
        out_height, out_width, _ = (int(v) for v in layer.out_shape)
        groups = self._padded[2] // self._lanes

        def last_beat(row, column):
            return (row * padded_width + column) * groups + groups - 1

        held = last_beat(top + min(self._needed_row - top, height - 1), left + width - 1)
        needs = []
        for oy in range(out_height):
            for ox in range(out_width):
                row = oy * sy + kh - 1
                releases = ox == out_width - 1 and (oy == out_height - 1 or sy >= kh)
                column = padded_width - 1 if releases else ox * sx + kw - 1
                needs.append(last_beat(row, column) - held)
        pending = [need for need in needs if need >= 0]
        serial = self._window.window_beats
        window = 3 + max(need + (len(pending) - n) * serial for n, need in enumerate(pending))
        return (1 if self._pad is not None else 0) + window + self._reduce.latency

    def beat_times(self, arrival):
        """The cycles of the output beats for input beats arriving at ``arrival`` (see
        :meth:`hwgen.hw.accelerator.Accelerator.timeline`): the windows leave as
        :func:`~hwgen.hw.window.window_times` says; a channel group's result
        ``PoolReduce.latency`` after its ``kh·kw`` beats, the window's last beat being its last
        group's."""
        windows = window_times(self._layer, self._window, self._pad is not None, self._lanes,
                               arrival)
        positions = int(self._layer.kernel[0]) * int(self._layer.kernel[1])
        groups = self._padded[2] // self._lanes
        return pixel_beats(windows, self._reduce.latency - (groups - 1) * positions,
                           groups * positions, groups, positions)

    @property
    def lead(self):
        _, width, channels = (int(v) for v in self._layer.in_shape)
        return int(self._layer.kernel[0]) * width * channels - 1

    def elaborate(self, platform):
        m = Module()
        pad = [("pad", self._pad)] if self._pad is not None else []
        chain(m, self, pad + [("window", self._window), ("reduce", self._reduce)])
        return m
