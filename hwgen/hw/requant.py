"""Requantization: accumulators → output codes, per DESIGN.md's integer contract."""

import dataclasses
import operator

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..reference import Rounding
from .dsp import check_target, multiply
from .stream import credit_output, frame_layout

__all__ = ["IndexedTables", "Requant", "code_shape", "indexed_tables", "parameter_table",
           "requant_output", "rounding_half"]

# The multiply splits ``acc + bias`` at this bit: the low part times ``M`` (at most 16 bits,
# see :func:`~hwgen.quantize.scale_to_multiplier`) fits one 18×18 DSP, so each partial product
# is a single multiplier with a register behind it, and the next stage adds the two.
_LOW_BITS = 17

# float32's significand, for ``Rounding.FLOAT32_ORT`` (see :func:`hwgen.reference.float32_band`).
_FLOAT32_BITS = 24


def code_shape(quant):
    """The Amaranth shape of the codes of an :class:`~hwgen.quantize.ActQuant`."""
    return signed(quant.bits) if quant.signed else unsigned(quant.bits)


def _signed_bits(values):
    """The width of the narrowest signed shape holding every value of ``values``."""
    return max(max(int(v).bit_length() for v in np.ravel(values)) + 1, 2)


class Requant(wiring.Component):
    """``q = clamp(zp_y + rshift_round((acc + bias[c]) · M[c], n[c]), clamp_lo, clamp_hi)`` on
    ``lanes`` channels per beat, bit-exact with :func:`hwgen.reference.requantize` (after
    adding the bias), for every :class:`~hwgen.reference.Rounding` mode.

    Beat ``j`` of a frame carries channels ``j·lanes … j·lanes + lanes − 1``; the block counts
    beats to know which channels it sees, so ``i.payload.last`` only travels along. The
    per-channel bias, multiplier (and, for a folded LeakyReLU/PReLU, the multiplier a negative
    sum takes instead), shift and rounding constant (``2^(n−1)`` half up,
    ``2^(n−1) − 1`` half to even, 0 floor or ``n = 0``) are baked into a small ROM (one word
    per beat of a frame, read asynchronously); when every channel has the same shift it is a
    constant. Half to even also adds bit ``n`` of the product (the parity of the quotient) as
    the carry in of the rounding adder, so a tie rounds up exactly when that parity is odd.

    Widths: ``acc`` is ``signed(acc_bits)``; ``acc + bias`` gets one bit more than the wider of
    the two; the product adds ``multiplier_bits + 1``; adding the rounding constant takes one
    bit more than the wider of the product and ``2^(n−1)``; the clamp compares at full width,
    so both ends saturate exactly.

    Latency: 8 cycles from the transfer of a beat on ``i`` to its offer on ``o``, one register
    per stage, so a clock period holds one multiplier or one carry chain: add the bias;
    multiply, as two partial products (the low 17 bits of the sum, and the rest, each times
    ``M``) in :class:`~hwgen.hw.dsp.Multiplier` blocks (two stages: operands, product); add
    the partial products; add the rounding constant; shift; compare with both clamp ends;
    select and add the zero point. One beat per cycle. Stalls freeze the whole pipeline
    (``i.ready = ~o.valid | o.ready``), unless ``free_running``.

    Parameters
    ----------
    layer : QDense
        Any layer with ``bias``, ``multiplier``, ``shift`` (per output channel), ``output``
        (:class:`~hwgen.quantize.ActQuant`), ``clamp_lo``, ``clamp_hi``, ``rounding`` and
        ``acc_bits``.
    lanes : int
        Channels per beat; must divide the number of channels.
    target : str
        How the multipliers are built: ``"generic"`` or ``"ecp5"`` (see :mod:`hwgen.hw.dsp`).
    free_running : bool
        The pipeline advances every cycle and ``i.ready`` is 1: the caller guarantees that
        ``o`` takes every beat it offers (an output FIFO with credits, see
        :func:`~hwgen.hw.stream.credit_output`), so no clock enable fans out from ``o.ready``.
    indexed : bool
        The table word of a beat is the ``index`` input, given with the beat, instead of the
        block's own count of beats (a shared engine whose beats revisit channels), and
        ``layer`` (``layer.layer_of[index]``) comes with it: the fields that vary within a
        layer are a block-RAM ROM read synchronously (one more stage), the others per layer
        constants, the rounding constant computed from the shift (:func:`indexed_tables`).

    Members
    -------
    i : In(stream.Signature(frame_layout(signed(acc_bits), lanes)))
    o : Out(stream.Signature(frame_layout(code_shape(layer.output), lanes)))
    """

    @staticmethod
    def latency_of(layer, indexed=False):
        """8 cycles, 9 for ``Rounding.FLOAT32_ORT`` (the float32 band takes a stage of its
        own), one more ``indexed`` (the table is read synchronously)."""
        return 8 + (layer.rounding is Rounding.FLOAT32_ORT) + bool(indexed)

    @property
    def latency(self):
        return self.latency_of(self._layer, self._indexed)

    def __init__(self, layer, lanes, *, target="generic", free_running=False, indexed=False):
        self._target = check_target(target)
        self._free_running = bool(free_running)
        self._indexed = bool(indexed)
        self._lanes = operator.index(lanes)
        channels = len(layer.bias)
        if self._lanes < 1 or channels % self._lanes:
            raise ValueError(f"lanes must divide the {channels} channels, not {lanes!r}")
        self._groups = channels // self._lanes
        self._layer = layer
        if layer.rounding is Rounding.FLOAT32_ORT and np.any(np.asarray(layer.shift) < 1):
            raise ValueError("FLOAT32_ORT requantization needs shifts of at least 1")
        self._acc_shape = signed(layer.acc_bits)
        self._code_shape = code_shape(layer.output)
        members = {
            "i": In(stream.Signature(frame_layout(self._acc_shape, self._lanes))),
            "o": Out(stream.Signature(frame_layout(self._code_shape, self._lanes))),
        }
        if self._indexed:
            members["index"] = In(range(max(self._groups, 2)))
            members["layer"] = In(range(max(int(np.max(layer.layer_of)) + 1, 2)))
        super().__init__(members)

    def _table(self):
        """The parameter ROM (:func:`parameter_table`)."""
        return parameter_table(self._layer, self._lanes)

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        en = Signal()
        m.d.comb += [en.eq(1 if self._free_running else ~self.o.valid | self.o.ready),
                     self.i.ready.eq(en)]
        if self._indexed:
            layout, first_params, beat, common_shift, common_half = self._indexed_table(m, en)
        else:
            layout, words, common_shift, common_half = self._table()
            m.submodules.table = table = memory.Memory(shape=layout, depth=self._groups,
                                                       init=words)
            params = table.read_port(domain="comb")
            group = Signal(range(self._groups))
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += group.eq(Mux(group == self._groups - 1, 0, group + 1))
            m.d.comb += params.addr.eq(group)
            first_params, beat = params.data, Cat(self.i.valid, self.i.payload)

        # The parameters, valid and last travel with the data, one register per stage.
        beat = data.View(data.StructLayout({"valid": 1, "payload": self.i.payload.shape()}),
                         beat)
        stage_params = [first_params]
        stage_flags = [Cat(beat.valid, beat.payload.last)]
        for stage in range(self.latency_of(self._layer) - 1):  # after the first stage
            delayed_params = Signal(layout, name=f"params{stage}")
            delayed_flags = Signal(2, name=f"flags{stage}")
            with m.If(en):
                m.d.sync += [delayed_params.eq(stage_params[-1]),
                             delayed_flags.eq(stage_flags[-1])]
            stage_params.append(delayed_params)
            stage_flags.append(delayed_flags)
        with m.If(en):
            m.d.sync += Cat(self.o.valid, self.o.payload.last).eq(stage_flags[-1])

        sum_shape = signed(max(self._acc_shape.width, layout["bias"].shape.elem_shape.width) + 1)
        multiplier_bits = layout["multiplier"].shape.elem_shape.width
        low_bits = min(_LOW_BITS, sum_shape.width - 1)
        product_shape = signed(sum_shape.width + multiplier_bits + 1
                               + ("bias_fraction" in layout.members))
        half_bits = (layout["half"].shape.elem_shape.width if "half" in layout.members
                     else common_half.bit_length())
        rounded_shape = signed(max(product_shape.width, half_bits + 1) + 1)
        float32 = self._layer.rounding is Rounding.FLOAT32_ORT
        late = 1 if float32 else 0  # the stages after the product are one later
        for lane in range(lanes):
            def stage_signal(shape, name):
                return Signal(shape, name=f"{name}{lane}")
            total = stage_signal(sum_shape, "sum")
            product = stage_signal(product_shape, "product")
            rounded = stage_signal(rounded_shape, "rounded")
            shifted = stage_signal(rounded_shape, "shifted")
            below, above = stage_signal(1, "below"), stage_signal(1, "above")
            narrow = stage_signal(signed(self._code_shape.width + 1), "narrow")
            multiplier = stage_params[1].multiplier[lane]
            if "negative" in layout.members:
                # A folded LeakyReLU/PReLU: a negative sum takes the other slope's multiplier.
                multiplier = Mux(total[-1], stage_params[1].negative[lane], multiplier)
            low_product = multiply(m, total[:low_bits], multiplier, en, target=self._target,
                                   name=f"low_multiplier{lane}")
            high_product = multiply(m, total[low_bits:].as_signed(), multiplier, en,
                                    target=self._target, name=f"high_multiplier{lane}")
            fraction = self._fraction(m, total, en, stage_params[3], lane, layout)
            low, high, _ = self._clamp_range(stage_params[6 + late], lane)
            final_low, final_high, zero_point = self._clamp_range(stage_params[7 + late], lane)
            rounding_in = product
            constant = (self._half(stage_params[4], lane, common_half)
                        + self._parity(product, stage_params[4], lane, common_shift))
            if float32:
                # One more stage: the product again, and whether it lies in the float32 band
                # (where the result is the even neighbour of its floor, the parity at bit n).
                held = stage_signal(product_shape, "held")
                band = stage_signal(1, "band")
                with m.If(en):
                    m.d.sync += [held.eq(product),
                                 band.eq(self._band(product, stage_params[4], lane,
                                                    common_shift, common_half))]
                parity = self._parity(held, stage_params[5], lane, common_shift)
                shift = (stage_params[5].shift[lane] if "shift" in layout.members
                         else common_shift)
                rounding_in = held
                constant = Mux(band, parity << shift,
                               self._half(stage_params[5], lane, common_half) + parity)
            with m.If(en):
                m.d.sync += [
                    total.eq(beat.payload.data[lane] + first_params.bias[lane]),
                    product.eq((high_product << low_bits) + low_product + fraction),
                    rounded.eq(rounding_in + constant),
                    shifted.eq(self._shift(rounded, stage_params[5 + late], lane,
                                           common_shift)),
                    below.eq(shifted < low),
                    above.eq(shifted > high),
                    narrow.eq(shifted[:len(narrow)]),
                    self.o.payload.data[lane].eq(
                        Mux(below, final_low, Mux(above, final_high, narrow)) + zero_point),
                ]
        return m

    def _indexed_table(self, m, en):
        """An indexed requant's first stage: the beat registered while the channel table
        (block RAM) reads the word of ``index``; beside it the layer's constants (of the
        registered ``layer``) and the rounding constant from the shift. Returns the layout,
        the parameters and the beat (valid and payload) of that stage, the common shift and
        half."""
        tables = indexed_tables(self._layer)
        m.submodules.table = table = memory.Memory(
            shape=tables.channel_layout, depth=len(tables.channel_words),
            init=tables.channel_words)
        port = table.read_port(domain="sync")
        layer, beat = Signal.like(self.layer), Signal(1 + len(self.i.payload.as_value()))
        m.d.comb += [port.addr.eq(self.index), port.en.eq(en)]
        with m.If(en):
            m.d.sync += [layer.eq(self.layer), beat.eq(Cat(self.i.valid, self.i.payload))]
        params = Signal(tables.layout)
        for name, _ in tables.channel_layout:
            m.d.comb += params[name].eq(port.data[name])
        for name, field in tables.layer_layout:
            values = Array(Const(word[name][0], field.shape.elem_shape)
                           for word in tables.layer_words)
            m.d.comb += params[name][0].eq(values[layer])
        if tables.derived_half:
            m.d.comb += params.half[0].eq(rounding_half(params.shift[0], self._layer.rounding))
        return tables.layout, params, beat, tables.common_shift, tables.common_half

    @staticmethod
    def _fraction(m, total, en, params, lane, layout):
        """The bias fraction added to the product (0 without one): the negative slope's where
        the sum was negative, its sign carried along with the multiplication."""
        if "bias_fraction" not in layout.members:
            return 0
        fraction = params.bias_fraction[lane]
        if "negative_fraction" not in layout.members:
            return fraction
        sign = total[-1]
        for stage in range(2):  # the multiplication's two registers
            delayed = Signal(name=f"sign{stage}_{lane}")
            with m.If(en):
                m.d.sync += delayed.eq(sign)
            sign = delayed
        return Mux(sign, params.negative_fraction[lane], fraction)

    def _band(self, product, params, lane, common_shift, common_half):
        """Whether ``product`` lies in :func:`hwgen.reference.float32_band` for its channel's
        shift ``n``: ``|(v mod 2^n) − 2^(n−1)|`` against ``T``, the highest set bit of ``|v|``
        (of ``~v`` for a negative ``v``) shifted right by 24 (a prefix-OR smear, then the bit
        where it starts), and ``|v| < 2^(n+23)``. Plain logic: no multiplier, a few adders."""
        width = len(product) - 1
        magnitude = Mux(product[-1], ~product, product)[:width]
        smear = magnitude
        step = 1
        while step < width:
            smear = smear | (smear >> step)
            step *= 2
        top = smear & ~(smear >> 1)
        band = top >> _FLOAT32_BITS
        half = self._half(params, lane, common_half) + 1  # the table holds 2^(n−1) − 1
        fraction = product.as_unsigned() & ((half << 1) - 1)
        distance = Mux(fraction >= half, fraction - half, half - fraction)
        small = magnitude < (half << (_FLOAT32_BITS))
        return (distance < band) | ((distance == band) & small)

    @staticmethod
    def _half(params, lane, common_half):
        return params.half[lane] if "half" in params.shape().members else common_half

    def _parity(self, product, params, lane, common_shift):
        """Half to even's carry in: bit ``n`` of ``product`` when ``n > 0``, else 0."""
        if self._layer.rounding not in (Rounding.HALF_EVEN, Rounding.FLOAT32_ORT):
            return 0
        top = len(product) - 1  # the product is signed: past its top, every bit is the sign
        if "shift" not in params.shape().members:
            return product[min(common_shift, top)] if common_shift > 0 else 0
        shift = params.shift[lane]
        bit = product.bit_select(shift, 1)
        if (1 << len(shift)) - 1 > top:
            bit = Mux(shift > top, product[top], bit)
        return Mux(shift == 0, 0, bit)

    @staticmethod
    def _shift(value, params, lane, common_shift):
        if "shift" in params.shape().members:
            return value >> params.shift[lane]
        return value >> common_shift

    def _clamp_range(self, params, lane):
        """``clamp(shifted + zp, lo, hi)`` is computed as ``clamp(shifted, lo − zp, hi − zp) +
        zp``: the comparisons run against constants (registered on their own stage), and only
        the narrow code width adds. Returns ``(lo − zp, hi − zp, zp)``: constants, or, where
        the layer gives them per channel, the table's fields of ``params``."""
        if "zero" in params.shape().members:
            return params.low[lane], params.high[lane], params.zero[lane]
        layer = self._layer
        zero_point = layer.output.zero_point
        return layer.clamp_lo - zero_point, layer.clamp_hi - zero_point, zero_point


def parameter_table(layer, lanes):
    """A :class:`Requant`'s parameter ROM over ``lanes`` channels per beat: its word layout,
    one word per beat of a frame, and the common shift and rounding constant (used where
    every channel has the same shift)."""
    fields, shift, half = _parameter_fields(layer)
    layout = _layout(fields, lanes)
    return layout, _words(fields, lanes, len(layer.bias)), shift, half


@dataclasses.dataclass(frozen=True)
class IndexedTables:
    """An indexed :class:`Requant`'s parameters (a shared engine's, one lane): the fields that
    vary within a layer in ``channel_words`` (a block-RAM ROM, read synchronously), those
    constant per layer in ``layer_words`` (a few constants, logic), and the rounding constant
    ``half`` computed from the shift where the shift varies (``derived_half``); ``layout``
    is the word every stage of the requant sees, all fields together."""

    layout: data.StructLayout
    channel_layout: data.StructLayout
    channel_words: list
    layer_layout: data.StructLayout
    layer_words: list
    common_shift: int
    common_half: int
    derived_half: bool

    @property
    def channel_bits(self):
        return self.channel_layout.size

    @property
    def layer_bits(self):
        return self.layer_layout.size


def indexed_tables(layer):
    """:class:`IndexedTables` of ``layer``, which gives ``layer_of``: the index, per channel,
    of the layer the channel belongs to."""
    fields, shift, half = _parameter_fields(layer)
    owner = np.asarray(layer.layer_of)
    layers = int(owner.max()) + 1
    first = np.array([np.flatnonzero(owner == index)[0] for index in range(layers)])

    def per_layer(values):
        return np.array_equal(np.asarray(values)[first][owner], values)

    derived = "half" in fields and not per_layer(fields["half"][1])
    channel = {name: field for name, field in fields.items()
               if not per_layer(field[1]) and name != "half"}
    common = {name: (shape, np.asarray(values)[first]) for name, (shape, values)
              in fields.items() if name not in channel and not (derived and name == "half")}
    if not channel:  # a table of one bit: block RAM wants a word
        channel = {"bias": fields["bias"]}
    return IndexedTables(
        _layout(fields, 1), _layout(channel, 1), _words(channel, 1, len(layer.bias)),
        _layout(common, 1), _words(common, 1, layers), shift, half, derived)


def rounding_half(shift, rounding):
    """The rounding constant of a shift of ``shift`` bits (numbers or an Amaranth value):
    ``2^(n−1)`` half up, ``2^(n−1) − 1`` half to even (0 at ``n = 0``), 0 floor."""
    one = np.int64(1) if isinstance(shift, (int, np.integer, np.ndarray)) else Const(1)
    if rounding is Rounding.FLOOR:
        return 0 * shift
    if rounding in (Rounding.HALF_EVEN, Rounding.FLOAT32_ORT):
        return ((one << shift) - 1) >> 1
    return (one << shift) >> 1


def _layout(fields, lanes):
    return data.StructLayout({name: data.ArrayLayout(shape, lanes)
                              for name, (shape, _) in fields.items()})


def _words(fields, lanes, channels):
    return [{name: [int(v) for v in values[group * lanes:(group + 1) * lanes]]
             for name, (_, values) in fields.items()} for group in range(channels // lanes)]


def _parameter_fields(layer):
    """The parameter fields of ``layer`` (``{name: (shape, values per channel)}``), the first
    channel's shift and rounding constant."""
    shifts = np.asarray(layer.shift, dtype=np.int64)
    half = rounding_half(shifts, layer.rounding)
    fields = {
        "bias": (signed(_signed_bits(layer.bias)), layer.bias),
        "multiplier": (unsigned(max(int(max(layer.multiplier)).bit_length(), 1)),
                       layer.multiplier),
    }
    negative = getattr(layer, "negative_multiplier", None)
    if negative is not None:
        fields["negative"] = (unsigned(max(int(max(negative)).bit_length(), 1)), negative)
    for name in ("bias_fraction", "negative_fraction"):
        values = getattr(layer, name, None)
        if values is not None:
            fields[name] = (signed(_signed_bits(values)), values)
    if np.any(shifts != shifts[0]):
        fields["shift"] = (unsigned(max(int(shifts.max()).bit_length(), 1)), shifts)
        fields["half"] = (unsigned(max(int(half.max()).bit_length(), 1)), half)
    if np.ndim(layer.clamp_lo):
        # Per-channel clamp ends and zero points (a shared engine's table over its
        # layers' channels): lo − zp and hi − zp, as _clamp_range computes them.
        zero = np.asarray(layer.zero_point, dtype=np.int64)
        for name, values in (("low", np.asarray(layer.clamp_lo) - zero),
                             ("high", np.asarray(layer.clamp_hi) - zero), ("zero", zero)):
            fields[name] = (signed(_signed_bits(values)), values)
    return fields, int(shifts[0]), int(half[0])


def requant_output(m, o, layer, lanes, depth, *, target):
    """The tail of a free-running MAC engine: a :class:`Requant` of ``lanes`` (free running,
    multipliers for ``target``) writing into :func:`~hwgen.hw.stream.credit_output`'s FIFO
    of ``depth`` beats, which drives the engine's output stream ``o``.

    Returns ``(requant, issued, room)``: the engine drives ``requant.i`` with its sums, raises
    ``issued`` in the cycle it commits to one more output beat, and issues only while ``room``.
    """
    m.submodules.requant = requant = Requant(layer, lanes, target=target, free_running=True)
    issued = Signal()
    fifo_i, room = credit_output(m, o, frame_layout(code_shape(layer.output), lanes), depth,
                                 issued)
    wiring.connect(m, requant.o, fifo_i)
    return requant, issued, room
