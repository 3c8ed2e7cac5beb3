"""Unrolled constant-weight dense layers: every weight a constant in the logic, one input vector
per cycle (II = 1), pipeline registers placed by the clock.

A product by a constant is shifts and adds. Each weight ``w = ±m · 2^p`` (``m`` odd) reads the
*fundamental* ``m · x_k`` of its input: computed once per input and odd magnitude from the
canonical signed-digit (CSD) form of ``m`` (``7x = 8x − x``: one adder; ``m = 1`` is the wire
``x`` itself) and shared by every output that uses it. A zero weight costs nothing and ``±2^p``
is a wire. Each output then sums its terms ``±(m·x_k) << p`` and its bias in a tree of adders,
the two earliest-ready terms first. The requantization's multiplier is a constant too: the sum
times ``M`` is the CSD terms of ``M`` summed the same way, then the rounding constant (and for
half to even the carry of bit ``n``), the shift (wiring), the clamp and the zero point.

Widths come from value ranges (the input codes' range, propagated through every adder), so an
adder is no wider than its values need. Adder levels are counted from the input; a register
stage is put in wherever a path would exceed ``levels`` adder levels since the last register
(the operands are registered, and a value that must wait for a later stage goes through a
shared chain of registers), so a clock period holds ``levels`` adders, not one.

:class:`Netlist` is that structure in plain Python (nodes with ranges, stages and levels): the
cost model counts its adder and register bits without Amaranth, and :class:`UnrolledDense`
turns it into logic. A stalled consumer simply holds the pipeline
(one enable, ``~o.valid | o.ready``, for all its registers), and a chain of unrolled layers is
one pipeline: a layer's outputs may leave unregistered into the next, which continues the stage.
"""

import dataclasses
import functools

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import HwgenError
from ..reference import Rounding
from .requant import code_shape
from .stream import frame_layout

__all__ = ["Netlist", "UnrolledDense", "as_dense", "csd", "check_unrollable", "ADDER_NS",
           "levels_for"]

# Modelled delay of one adder level (carry chain, a LUT and its routing) per FPGA family, in ns:
# the pipeline holds ``⌊period / delay⌋`` levels per stage. ECP5 is measured: a 64→32 w6a6
# layer at 3 levels per stage closed at 87.8 MHz after nextpnr (11.4 ns: 4.1 ns logic, 7.3 ns
# routing; the inputs fan out to many adders). The others are estimates (no open-source timing
# for Xilinx parts here): the synthesis reports give the real fmax.
ADDER_NS = {"xilinx-ultrascale": 1.0, "xilinx-7": 1.3, "ecp5": 3.8, "ice40": 5.0,
            "generic": 1.5}


def levels_for(clock_mhz, family="generic"):
    """Adder levels per pipeline stage at ``clock_mhz`` on ``family`` (at least 1)."""
    if clock_mhz is None or clock_mhz <= 0:
        raise HwgenError(f"the clock must be a positive number of MHz, not {clock_mhz!r}")
    return max(1, int(1e3 / clock_mhz // ADDER_NS.get(family, ADDER_NS["generic"])))


def csd(value):
    """The canonical signed-digit form of the integer ``value``: ``[(sign, position)]`` with
    ``value = Σ sign · 2^position``, no two adjacent digits non-zero (the fewest digits)."""
    digits, position, value = [], 0, int(value)
    while value:
        if value & 1:
            digit = 2 - (value & 3)  # +1 if the value is 1 mod 4, −1 if 3 mod 4
            digits.append((digit, position))
            value -= digit
        value >>= 1
        position += 1
    return digits


def simplest_requant(layer, channel, acc_lo, acc_hi):
    """``(M', n', F')`` with the fewest CSD digits that requantize every sum in
    ``[acc_lo, acc_hi]`` exactly as channel ``channel``'s own ``(M, n, F)`` do.

    hwgen's multipliers have 16 bits (a relative error of 2^−16), but an unrolled layer builds
    ``acc · M`` from ``M``'s signed digits, so a constant with fewer digits is fewer adders. The
    candidates are ``M · 2^(n'−n)`` rounded to 1…16 significant bits for every ``n' ≤ n``
    (``F`` scaled alike); one is kept only if it gives the same code as the original for every
    sum where the original is not saturated, plus one saturated sum past each end (beyond,
    both are monotone in the sum and stay saturated). So the layer's results are unchanged,
    exactly, for every sum the netlist can produce."""
    from ..reference import requantize

    multiplier, shift = int(layer.multiplier[channel]), int(layer.shift[channel])
    fractions = getattr(layer, "bias_fraction", None)
    fraction = int(fractions[channel]) if fractions is not None else 0
    zero_point, lo, hi = layer.output.zero_point, layer.clamp_lo, layer.clamp_hi
    original = (multiplier, shift, fraction)
    if multiplier == 0:
        return original
    # The sums where the original is not saturated, a margin past each end (where it is:
    # the bias fraction moves the thresholds by less than one sum), and the range's ends.
    first = max(acc_lo, ((lo - zero_point - 1) << shift) // multiplier - 2)
    last = min(acc_hi, -((-(hi - zero_point + 1) << shift) // multiplier) + 2)
    if last - first > 1 << 20:
        return original  # too wide a window to check exhaustively
    sums = np.unique(np.concatenate([[acc_lo, acc_hi], np.arange(first, last + 1)])).astype(
        np.int64)

    def codes(m, n, f):
        return requantize(sums, m, n, zero_point, lo, hi, layer.rounding, fraction=f)

    want = codes(*original)
    best, best_key = original, (len(csd(multiplier)), shift)
    for n in range(max(shift - 16, 0), shift + 1):
        exact = multiplier * 2.0 ** (n - shift)
        for significant in range(1, 17):
            step = 2 ** max(int(exact).bit_length() - significant, 0)
            m = int(round(exact / step)) * step
            f = int(round(fraction * 2.0 ** (n - shift)))
            key = (len(csd(m)), n)
            if m <= 0 or key >= best_key:
                continue
            if np.array_equal(codes(m, n, f), want):
                best, best_key = (m, n, f), key
                break  # more significant bits only add digits at this n
    return best


def check_unrollable(layer):
    """:class:`HwgenError` unless ``layer`` is a dense or convolution layer the unrolled engine
    builds."""
    if layer.op not in ("dense", "conv"):
        raise HwgenError(f"layer {layer.name!r}: only dense and conv layers unroll, not "
                         f"{layer.op}")
    if getattr(layer, "negative_multiplier", None) is not None:
        raise HwgenError(f"layer {layer.name!r}: a folded LeakyReLU/PReLU (two slopes) does not "
                         "unroll yet; run it on a mac engine")
    if layer.rounding is Rounding.FLOAT32_ORT:
        raise HwgenError(f"layer {layer.name!r}: onnxruntime's float32 requantization does not "
                         "unroll yet; run it on a mac engine")


@functools.lru_cache(maxsize=256)
def as_dense(layer):
    """The dense layer an unrolled engine computes for ``layer``: the layer itself, or for a
    convolution the dense layer over its im2col window (``K = kh·kw·C`` inputs in the sliding
    window's ``"conv"`` order, OHWI flattened; a depthwise conv's weights block-diagonal, each
    output reading its own channel's ``kh·kw`` elements, the other weights zero, which cost
    nothing). Cached per layer, so the netlist cache keyed on it holds."""
    check_unrollable(layer)
    if layer.op == "dense":
        return layer
    kh, kw = layer.kernel
    channels = layer.in_shape[2]
    if layer.depthwise:
        weight = np.zeros((channels, kh * kw * channels), dtype=np.int64)
        taps = np.arange(kh * kw) * channels
        for c in range(channels):
            weight[c, taps + c] = layer.weight[c].reshape(-1)
    else:
        weight = layer.weight.reshape(layer.out_channels, -1).astype(np.int64)
    from ..qgraph import QDense
    return QDense(name=layer.name, inputs=layer.inputs, weight=weight,
                  weight_bits=layer.weight_bits, weight_scale=layer.weight_scale,
                  bias=layer.bias, multiplier=layer.multiplier, shift=layer.shift,
                  input=layer.input, output=layer.output, clamp_lo=layer.clamp_lo,
                  clamp_hi=layer.clamp_hi, rounding=layer.rounding, relu=layer.relu,
                  negative_multiplier=layer.negative_multiplier,
                  bias_fraction=layer.bias_fraction, negative_fraction=layer.negative_fraction)


@dataclasses.dataclass(eq=False)
class _Node:
    """A value of the netlist: ``op`` ``"input"``, ``"const"``, ``"add"`` (operands
    ``(node, shift, sign)``: ``Σ sign · (node << shift)``), ``"reg"`` (its operand one cycle
    later), ``"bit"`` (bit ``arg`` of the operand), ``"shr"`` (the operand ``>> arg``) or
    ``"clamp"`` (``clamp(operand, lo, hi) + zp``, ``arg = (lo, hi, zp)``); ``lo``/``hi`` its
    range; ``stage`` the registers since the input; ``level`` the adder levels since the last
    register."""

    op: str
    operands: tuple
    lo: int
    hi: int
    stage: int
    level: int
    arg: object = None

    @property
    def bits(self):
        """Width of the narrowest shape holding ``[lo, hi]`` (signed if ``lo < 0``)."""
        return _shape(self.lo, self.hi).width


def _wired_bits(node):
    """Low bits of a two-operand add that are its unshifted, positive operand's own: the other
    operand is shifted past them (``a + (b << k)``: ``k`` bits)."""
    if len(node.operands) != 2:
        return 0
    (a, s0, g0), (_, s1, _) = node.operands
    return min(s1, a.bits) if s0 == 0 and g0 > 0 else 0


def _shape(lo, hi):
    if lo >= 0:
        return unsigned(max(int(hi).bit_length(), 1))
    return signed(max(int(hi).bit_length(), int(-lo - 1).bit_length()) + 1)


class Netlist:
    """The adders and registers of an unrolled dense ``layer`` with ``levels`` adder levels per
    pipeline stage (see the module doc). ``outputs`` are its per-channel code nodes, all at
    ``stages``; ``adder_bits`` and ``register_bits`` count the logic (the cost model's
    features)."""

    def __init__(self, layer, levels, start_level=0):
        layer = as_dense(layer)
        if levels < 1:
            raise HwgenError(f"levels per stage must be at least 1, not {levels}")
        self.layer, self.levels = layer, int(levels)
        self.nodes = []
        self._delays = {}
        quant = layer.input
        # ``start_level``: adder levels the inputs already went through since their last
        # register (an unrolled layer before, whose outputs come unregistered).
        self.inputs = [self._node("input", (), quant.lo, quant.hi, 0, int(start_level), k)
                       for k in range(layer.in_features)]
        fundamentals = {}
        self.requant_constants = []  # (M', n', F') per channel, see simplest_requant
        sums = [self._dot(c, fundamentals) for c in range(layer.out_features)]
        codes = [self._requant(c, total) for c, total in enumerate(sums)]
        self.stages = max(node.stage for node in codes)
        self.outputs = [self.at(node, self.stages) for node in codes]

    # -- building -------------------------------------------------------------------------------

    def _node(self, op, operands, lo, hi, stage, level, arg=None):
        node = _Node(op, tuple(operands), int(lo), int(hi), stage, level, arg)
        self.nodes.append(node)
        return node

    def const(self, value):
        return self._node("const", (), value, value, 0, 0, int(value))

    def at(self, node, stage):
        """``node`` delayed to ``stage`` (a shared register chain; constants need none)."""
        if node.op == "const" or node.stage >= stage:
            return node
        key = (id(node), stage)
        if key not in self._delays:
            before = self.at(node, stage - 1)
            self._delays[key] = self._node("reg", (before,), node.lo, node.hi, stage, 0)
        return self._delays[key]

    def add(self, terms):
        """One adder: ``Σ sign · (node << shift)`` over ``terms``, registered first where the
        adder would pass the stage's levels."""
        stage = max(node.stage for node, _, _ in terms)
        level = max(node.level if node.stage == stage else 0 for node, _, _ in terms) + 1
        if level > self.levels:
            stage, level = stage + 1, 1
        operands = tuple((self.at(node, stage), shift, sign) for node, shift, sign in terms)
        lo = sum(min(sign * (n.lo << s), sign * (n.hi << s)) for n, s, sign in operands)
        hi = sum(max(sign * (n.lo << s), sign * (n.hi << s)) for n, s, sign in operands)
        return self._node("add", operands, lo, hi, stage, level)

    def _unary(self, op, node, lo, hi, arg, levels=1):
        stage, level = node.stage, node.level + levels
        if level > self.levels:
            stage, level = stage + 1, levels
        return self._node(op, (self.at(node, stage),), lo, hi, stage, level, arg)

    def tree(self, terms):
        """The sum of ``terms`` (``(node, shift, sign)``), the two earliest-ready first; returns
        ``(node, shift, sign)`` of the result (a common shift and sign factored out)."""
        terms = [t for t in terms if not (t[0].op == "const" and t[0].arg == 0)]
        if not terms:
            return self.const(0), 0, 1
        terms = [self._const_term(t) if t[0].op == "const" else t for t in terms]
        while len(terms) > 1:
            terms.sort(key=lambda t: (t[0].stage, t[0].level, t[0].hi - t[0].lo))
            (a, sa, ga), (b, sb, gb) = terms[:2]
            if sb < sa:
                (a, sa, ga), (b, sb, gb) = (b, sb, gb), (a, sa, ga)
            # The less shifted operand enters positive (the result's sign takes the rest): the
            # other's shift then leaves its low bits as wires (see _value).
            shift, sign = sa, ga
            pair = [(a, 0, 1), (b, sb - sa, gb * ga)]
            terms = terms[2:] + [(self.add(pair), shift, sign)]
        return terms[0]

    def _const_term(self, term):
        """A constant term with its trailing zero bits as a shift."""
        node, shift, sign = term
        value = sign * node.arg
        zeros = (value & -value).bit_length() - 1
        return self.const(value >> zeros), shift + zeros, 1

    def _fundamental(self, k, magnitude, cache):
        """``(node, sign)`` with ``sign · node = magnitude · x_k`` for an odd ``magnitude``
        (shared across outputs)."""
        if magnitude == 1:
            return self.inputs[k], 1
        key = (k, magnitude)
        if key not in cache:
            node, shift, sign = self.tree([(self.inputs[k], p, s) for s, p in csd(magnitude)])
            assert shift == 0
            cache[key] = node, sign
        return cache[key]

    def _dot(self, channel, fundamentals):
        """``bias[c] + Σ_k w[c,k] · x_k`` as ``(node, shift, sign)``."""
        terms = []
        for k, weight in enumerate(self.layer.weight[channel]):
            weight = int(weight)
            if weight:
                shift = (weight & -weight).bit_length() - 1
                magnitude = abs(weight) >> shift
                node, sign = self._fundamental(k, magnitude, fundamentals)
                terms.append((node, shift, sign if weight > 0 else -sign))
        bias = int(self.layer.bias[channel])
        if bias:
            terms.append((self.const(bias), 0, 1))
        return self.tree(terms)

    def _requant(self, channel, total):
        """``clamp(zp + rshift_round(acc · M + F, n), lo, hi)`` of one channel's sum."""
        layer = self.layer
        node, acc_shift, acc_sign = total
        values = sorted(acc_sign * (bound << acc_shift) for bound in (node.lo, node.hi))
        multiplier, shift, fraction = simplest_requant(layer, channel, *values)
        self.requant_constants.append((multiplier, shift, fraction))
        terms = [(node, acc_shift + p, acc_sign * s) for s, p in csd(multiplier)]
        if fraction:
            terms.append((self.const(fraction), 0, 1))
        half = (1 << shift) >> 1
        if layer.rounding is Rounding.FLOOR or shift == 0:
            half = 0
        elif layer.rounding is Rounding.HALF_EVEN:
            half -= 1
        if layer.rounding is Rounding.HALF_EVEN and shift > 0:
            # The parity of the quotient, bit n of the product, as a carry in.
            product = self._resolve(self.tree(terms))
            parity = self._unary("bit", product, 0, 1, shift, levels=0)
            terms = [(product, 0, 1), (parity, 0, 1)]
        if half:
            terms.append((self.const(half), 0, 1))
        product = self._resolve(self.tree(terms))
        shifted = self._unary("shr", product, product.lo >> shift, product.hi >> shift, shift,
                              levels=0)
        zero_point = layer.output.zero_point
        lo, hi = layer.clamp_lo - zero_point, layer.clamp_hi - zero_point
        # the comparisons are one carry chain (the select a LUT after it); a zero point adds
        return self._unary("clamp", shifted, layer.clamp_lo, layer.clamp_hi,
                           (lo, hi, zero_point), levels=1 + (zero_point != 0))

    def _resolve(self, term):
        """A node equal to the term ``(node, shift, sign)``."""
        node, shift, sign = term
        if shift == 0 and sign == 1:
            return node
        if node.op == "const":
            return self.const(sign * (node.arg << shift))
        return self.add([(node, shift, sign)])

    # -- figures --------------------------------------------------------------------------------

    @property
    def residual(self):
        """Adder levels of the outputs' last stage (what an unrolled layer after this one
        continues from when the outputs are not registered)."""
        return max(node.level for node in self.outputs)

    @property
    def adders(self):
        return [node for node in self.nodes if node.op == "add"]

    @property
    def adder_bits(self):
        """Σ adder widths (about one LUT per bit on a carry chain) above the bits an operand's
        shift leaves as wires, clamps counted as two comparators and a code-wide adder."""
        clamp = sum(3 * node.bits for node in self.nodes if node.op == "clamp")
        return sum(node.bits - _wired_bits(node) for node in self.adders) + clamp

    @property
    def register_bits(self):
        return sum(node.bits for node in self.nodes if node.op == "reg")

    @property
    def nonzero_weights(self):
        return int(np.count_nonzero(self.layer.weight))


class UnrolledDense(wiring.Component):
    """A dense layer with its weights as constants in the logic (see the module doc): one input
    vector per cycle, bit-exact with the integer reference.

    The pipeline holds while its consumer is not ready: every register advances on
    ``en = ~o.valid | o.ready`` and ``i.ready = en``. With ``registered=False`` its outputs
    leave straight from the last stage's logic, for an unrolled layer after it that continues
    the same stage (``start_level``: the adder levels its inputs already went through), so a
    chain of unrolled layers is one pipeline whose stages do not restart at each layer.

    A convolution's engine (:class:`~hwgen.hw.conv.ConvLayer`) is this over the layer's
    im2col window (:func:`as_dense`): one window in, one output pixel (all channels) out per
    cycle, ``beats`` of them per frame, ``last`` carried along the pipeline.

    Parameters
    ----------
    layer : QDense or QConv
    levels : int
        Adder levels per pipeline stage (:func:`levels_for` from a clock and family).
    start_level : int
    registered : bool
    beats : int
        Input vectors per frame (1 for a dense layer; a convolution's output pixels).

    Members
    -------
    i : In(stream.Signature(frame_layout(code_shape(layer.input), in_features)))
    o : Out(stream.Signature(frame_layout(code_shape(layer.output), out_features)))

    Attributes
    ----------
    netlist : Netlist
    latency : int
        Cycles from an input vector's transfer to its offer on ``o``: the pipeline's stages,
        plus the output register when ``registered``.
    cycles_per_frame : int
        ``beats``: one vector per cycle.
    """

    def __init__(self, layer, levels, *, start_level=0, registered=True, beats=1):
        self._registered = bool(registered)
        self.netlist = Netlist(layer, levels, start_level)
        layer = self._layer = self.netlist.layer
        if not isinstance(beats, int) or beats < 1:
            raise HwgenError(f"layer {layer.name!r}: beats per frame must be a positive "
                             f"integer, not {beats!r}")
        self._beats = beats
        super().__init__({
            "i": In(stream.Signature(frame_layout(code_shape(layer.input), layer.in_features))),
            "o": Out(stream.Signature(frame_layout(code_shape(layer.output),
                                                   layer.out_features))),
        })

    @property
    def cycles_per_frame(self):
        return self._beats

    @property
    def latency(self):
        return self.netlist.stages + self._registered

    @property
    def pixel_timing(self):
        """``(lead, interval, beats, spacing)`` as
        :attr:`hwgen.hw.systolic.SystolicArray.pixel_timing`: a vector per cycle."""
        return self.latency, 1, 1, 0

    def elaborate(self, platform):
        m = Module()
        netlist = self.netlist
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        values = {}
        for index, node in enumerate(netlist.nodes):
            values[id(node)] = self._value(m, node, values, index, en)
        # ``last`` rides along with ``valid`` (always 1 for one vector per frame).
        valid, last = self.i.valid, self.i.payload.last if self._beats > 1 else 1
        for stage in range(netlist.stages):
            delayed = Signal(name=f"valid{stage}")
            with m.If(en):
                m.d.sync += delayed.eq(valid)
            valid = delayed
            if self._beats > 1:
                delayed = Signal(name=f"last{stage}")
                with m.If(en):
                    m.d.sync += delayed.eq(last)
                last = delayed
        codes = [values[id(node)] for node in netlist.outputs]
        outputs = [self.o.valid.eq(valid),
                   *(self.o.payload.data[c].eq(code) for c, code in enumerate(codes))]
        if self._beats > 1:
            outputs.append(self.o.payload.last.eq(last))
        else:
            m.d.comb += self.o.payload.last.eq(1)
        if self._registered:
            with m.If(en):
                m.d.sync += outputs
        else:
            m.d.comb += outputs
        return m

    def _value(self, m, node, values, index, en):
        if node.op == "const":
            return Const(node.arg, _shape(node.lo, node.hi))
        if node.op == "input":
            return self.i.payload.data[node.arg]
        signal = Signal(_shape(node.lo, node.hi), name=f"{node.op}{index}")
        operands = [values[id(operand[0] if isinstance(operand, tuple) else operand)]
                    for operand in node.operands]
        if node.op == "reg":
            with m.If(en):
                m.d.sync += signal.eq(operands[0])
            return signal
        if node.op == "add":
            wired = _wired_bits(node)
            if wired:
                # a ± (b << k): the low bits are a's (up to k, at most a's width), the adder
                # only spans the rest.
                (_, _, _), (_, shift, sign) = node.operands
                a, b = operands
                b = b << (shift - wired) if shift > wired else b
                high = (a >> wired) + b if sign > 0 else (a >> wired) - b
                m.d.comb += signal.eq(Cat(a[:wired], high))
            else:
                total = 0
                for (_, shift, sign), value in zip(node.operands, operands):
                    term = value << shift if shift else value
                    total = total + term if sign > 0 else total - term
                m.d.comb += signal.eq(total)
        elif node.op == "bit":
            source = operands[0]
            if node.arg < len(source):
                bit = source[node.arg]
            else:  # past the top: the sign of a signed value, 0 of an unsigned one
                bit = source[-1] if source.shape().signed else 0
            m.d.comb += signal.eq(bit)
        elif node.op == "shr":
            m.d.comb += signal.eq(operands[0] >> node.arg)
        elif node.op == "clamp":
            lo, hi, zero_point = node.arg
            value = operands[0]
            m.d.comb += signal.eq(Mux(value < lo, lo, Mux(value > hi, hi, value)) + zero_point)
        return signal
