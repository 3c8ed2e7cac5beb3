"""The layer-sequential engine: one array of MACs and one requant unit compute a chain of
dense, conv, pooling and add layers one after another (a TPU-style shared engine), for boards
too small for an engine per layer.

A frame goes through three phases, one after the other:

1. **load**: the input codes (HWC) arrive one per beat and are written, ``pe`` channels of a
   pixel to a word, into the activation buffer's bank 0;
2. **compute**: each layer reads its inputs from their banks and writes its output to a bank
   neither it nor a later layer still reads (:func:`~hwgen.plan_sequential.buffer_slots`: two
   banks in turn for a plain chain, three for residual blocks, whose input waits for the
   block's add). Per output pixel, each group of ``pe`` output channels takes one step per
   window position ``(ky, kx, c)`` (:class:`~hwgen.plan_sequential.SharedOp`): a step reads
   one input word (one code of it broadcast to the ``pe`` multipliers, or, lane-wise, each
   lane's own) and one word of ``pe`` weights from the weight ROM, whose words follow the
   schedule (layer, group, window); an add takes two lane-wise steps, its input ``a``'s codes
   times ``M_a``, then ``b``'s times ``M_b`` (idle steps before them up to ``pe``); a window
   of fewer than ``pe`` steps (a 1×1 convolution over few channels, a small pool) takes
   idle steps after its channels, so a group never finishes before the last one's sums are
   in the requant (:meth:`~hwgen.plan_sequential.SharedOp.loop`). A
   finished group's ``pe`` sums go, one per cycle, through a one-lane
   :class:`~hwgen.hw.requant.Requant` indexed by channel, whose table holds every layer's
   channels (bias, multiplier, shift, clamp ends and zero point per channel), and are written
   back ``pe`` codes to a word. The next layer starts the cycle after the last word of this
   one is written (the drain, :attr:`SequentialEngine.drain`);
3. **output**: the last layer's codes leave one per beat on ``o``, from its bank.

Codes live in the buffer at their own width, in fields as wide as the widest code the layers
read (:func:`~hwgen.plan_sequential.stored_bits`; a wider short result has registers of its
own); as a layer reads them it extends them by its input's signedness to one shape for every
layer (:func:`shared_code_shape`, signed), so the multipliers see each layer's codes as the
values they are.
Padding channels (a layer whose outputs ``pe`` does not divide) have zero weights and their
layer's last channel's requant parameters; nothing reads them.
"""

import dataclasses
import math
import operator

import numpy as np
from amaranth.hdl import (Array, Cat, ClockSignal, Const, Instance, Module, Mux, Signal, signed,
                          unsigned)
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import HwgenError
from ..plan_sequential import (MAX_PE, Chain, chain_rounding, code_bits, largest_pe,
                               operand_bits, sequential_cycles, shared_ops)
from ..reference import Rounding
from .dsp import check_target
from .multiplier import multiplier_latency, multiply_kind
from .requant import Requant, code_shape, indexed_tables
from .rom import WeightRom, weight_rom
from .stream import frame_layout

__all__ = ["SequentialEngine", "drain_cycles", "requant_table",
           "shared_code_shape", "spram_count"]

# Stages from a step's issue to its multiplier, besides the multiplier's: the address
# register, the buffer read and the operand register (the weight ROM's address register and
# its two registers line up with them).
_READ_STAGES = 3


def shared_code_shape(layers):
    """The buffer's code shape: signed, :func:`~hwgen.plan_sequential.code_bits` wide."""
    return signed(code_bits(layers))


def requant_table(layers, pe):
    """The shared requant's parameters (:class:`~hwgen.hw.requant.IndexedTables`): a word
    per channel of every layer, padded to groups of ``pe``, of the fields that vary within
    a layer (block RAM), and a word per layer of the others (logic)."""
    return indexed_tables(
        _SharedRequant.of(shared_ops(layers), pe, shared_code_shape(layers)))


def drain_cycles(layers, pe, multiplier="dsp"):
    """Cycles between a layer's last step and the next layer's first on the engine over
    ``layers``: the address register, the buffer read and operand register, the multiplier,
    the accumulate, the group's ``pe`` sums into the requant one per cycle, the requant, the
    write."""
    widths = (operand_bits(layers), code_bits(layers))
    return (_READ_STAGES + multiplier_latency(multiplier, 1, widths) + 1 + pe
            + Requant.latency_of(layers[0], indexed=True) + 1)


@dataclasses.dataclass(frozen=True)
class _Codes:
    """The requant's output codes: signed, ``bits`` wide (up to 17: a 16-bit unsigned code
    with its sign bit), their zero points in the table."""

    bits: int
    signed: bool = True
    zero_point: int = 0


@dataclasses.dataclass(frozen=True, eq=False)
class _SharedRequant:
    """What :class:`Requant` reads of a layer, over every channel of the chain in schedule
    order, padded to groups of ``pe``: per-channel clamp ends and zero points, the others as
    the layers give them (a layer without a LeakyReLU's slope takes its own multiplier for
    negative sums, one without bias fractions zeros)."""

    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    clamp_lo: np.ndarray
    clamp_hi: np.ndarray
    zero_point: np.ndarray
    output: _Codes
    acc_bits: int
    rounding: Rounding
    negative_multiplier: np.ndarray = None
    bias_fraction: np.ndarray = None
    negative_fraction: np.ndarray = None
    layer_of: np.ndarray = None

    @classmethod
    def of(cls, ops, pe, shape):
        def padded(op, values):
            values = np.broadcast_to(np.asarray(values, dtype=np.int64), op.out_channels)
            return np.pad(values, (0, -op.out_channels % pe), mode="edge")

        def column(get):
            return np.concatenate([padded(op, get(op.layer, op)) for op in ops])

        def field(layer, name):
            return getattr(layer, name, None)

        layers = [op.layer for op in ops]
        optional = {}
        if any(field(layer, "negative_multiplier") is not None for layer in layers):
            optional["negative_multiplier"] = column(
                lambda layer, op: op.multiplier if field(layer, "negative_multiplier") is None
                else layer.negative_multiplier)
        if any(field(layer, "bias_fraction") is not None for layer in layers):
            optional["bias_fraction"] = column(
                lambda layer, _: 0 if field(layer, "bias_fraction") is None
                else layer.bias_fraction)
        if any(field(layer, "negative_fraction") is not None for layer in layers):
            optional["negative_fraction"] = column(
                lambda layer, _: layer.negative_fraction
                if field(layer, "negative_fraction") is not None
                else 0 if field(layer, "bias_fraction") is None else layer.bias_fraction)
        return cls(
            bias=column(lambda _, op: op.bias),
            multiplier=column(lambda _, op: op.multiplier),
            shift=column(lambda _, op: op.shift),
            clamp_lo=column(lambda layer, _: layer.clamp_lo),
            clamp_hi=column(lambda layer, _: layer.clamp_hi),
            zero_point=column(lambda layer, _: layer.output.zero_point),
            output=_Codes(shape.width),
            acc_bits=max(op.sum_bound for op in ops).bit_length() + 1,
            rounding=chain_rounding(layers),
            layer_of=np.concatenate([padded(op, index) for index, op in enumerate(ops)]),
            **optional)


class SequentialEngine(wiring.Component):
    """A chain of ``layers`` (dense, conv, depthwise conv, average and max pools, adds) on one
    array of ``pe`` multipliers and a one-lane requant unit, layer after layer (see the module
    doc), bit-exact with :func:`hwgen.reference.run_integer` over the chain.

    Cycles per frame (input always valid, ``o`` always ready) are :attr:`cycles_per_frame`:
    the input's codes (load) ``+`` :attr:`steps` (compute) ``+ n ·`` :attr:`drain` ``+`` the
    output's codes ``+ 1``; the next frame's load starts the cycle after its last output code
    has gone. Stalls on ``i`` hold the load, stalls on ``o`` hold the output; compute never
    waits.

    Parameters
    ----------
    layers : sequence of QDense, QConv, QPool or QAdd
        A chain (:func:`~hwgen.plan_sequential.shared_ops`).
    pe : int
        Multipliers, one output channel each per step; at most the chain's most output
        channels (:func:`~hwgen.plan_sequential.largest_pe`).
    target : str
        One of :data:`hwgen.hw.dsp.TARGETS`; ``"ice40"`` puts large activation banks into
        ``SB_SPRAM256KA`` (:func:`spram_count`).
    multiplier : str
        ``"dsp"`` (default) or ``"lut"`` (see :mod:`hwgen.hw.multiplier`).

    Members
    -------
    i : In(stream.Signature(frame_layout(code_shape(layers[0].input), 1)))
    o : Out(stream.Signature(frame_layout(code_shape(layers[-1].output), 1)))
    """

    def __init__(self, layers, pe, *, target="generic", multiplier="dsp"):
        self._chain = Chain(tuple(layers))
        self._layers = self._chain.layers
        self._ops = self._chain.ops
        self._pe = operator.index(pe)
        smallest = largest_pe(self._ops)
        if not 1 <= self._pe <= smallest:
            raise HwgenError(f"the sequential engine's pe must be from 1 to {smallest} (the "
                             f"chain's most output channels, at most {MAX_PE}), not {pe}")
        if multiplier not in ("dsp", "lut"):
            raise HwgenError(f"the sequential engine builds 'dsp' or 'lut' multipliers, not "
                             f"{multiplier!r}")
        self._target = check_target(target)
        self._kind = multiplier
        self._shape = shared_code_shape(self._layers)
        self._forms = sorted({(quant.bits, quant.signed) for op in self._ops
                              for quant in op.inputs})
        self._weight_bits = self._chain.weight_bits
        self._slots = self._chain.slots
        self._bank_words = self._chain.bank_words(self._pe)
        super().__init__({
            "i": In(stream.Signature(frame_layout(code_shape(self._layers[0].input), 1))),
            "o": Out(stream.Signature(frame_layout(code_shape(self._layers[-1].output), 1))),
        })

    layers = property(lambda self: self._layers)
    pe = property(lambda self: self._pe)
    multiplier = property(lambda self: self._kind)
    in_codes = property(lambda self: self._chain.in_features)
    out_codes = property(lambda self: self._chain.out_features)

    @property
    def steps(self):
        """Compute steps per frame: per layer, output pixels × groups × window."""
        return self._chain.steps(self._pe)

    @property
    def drain(self):
        """Cycles from a layer's last step to the first step of the next (or the output's
        first read): :func:`drain_cycles`."""
        return drain_cycles(self._layers, self._pe, self._kind)

    @property
    def cycles_per_frame(self):
        """Cycles between frames in steady state (see the class doc):
        :func:`~hwgen.plan_sequential.sequential_cycles`."""
        return sequential_cycles(self._chain, self._pe, self._kind)

    @property
    def latency(self):
        """Cycles from the transfer of a frame's last input code to the transfer of its last
        output code, ``o`` always ready."""
        return self.cycles_per_frame - self.in_codes

    def beat_times(self, arrival):
        """The cycles of the output beats for input beats arriving at ``arrival`` (see
        :meth:`hwgen.hw.accelerator.Accelerator.timeline`): the result is sent a code per
        cycle, the last :attr:`latency` after the last input."""
        codes = self.out_codes
        return arrival[-1] + self.latency - (codes - 1) + np.arange(codes)

    def weight_words(self):
        """The weight ROM: per layer, group and window step ``pe`` weights (pools and adds
        none)."""
        words = [word for op in self._ops for word in op.weight_words(self._pe)]
        return words or [[0] * self._pe]

    def _constants(self):
        """Per layer, the constants its loops and addresses take."""
        pe, base, channel = self._pe, 0, 0
        rows = []
        for op, reads in zip(self._ops, self._slots.reads):
            forms = [self._forms.index((quant.bits, quant.signed)) for quant in op.inputs]
            height, width, channels = op.in_shape
            words = math.ceil(channels / pe)
            (kh, kw), (sy, sx), (top, left) = op.kernel, op.stride, op.pads
            rows.append(dict(
                height=height, width=width, loop=op.loop(pe), kh=kh, kw=kw,
                out_width=op.out_shape[1], out_height=op.out_shape[0], groups=op.groups(pe),
                lanewise=int(op.lanewise), unit=int(op.unit), maximum=int(op.maximum),
                zero=op.pad_code,
                base=base, channel=channel, top=-top, left=-left, cw=words,
                down=(width - kw + 1) * words, step_x=sx * words, step_y=sy * width * words,
                origin=(-top * width - left) * words, sx=sx, sy=sy,
                out_words=op.pixels * op.groups(pe), form=forms[0], form_b=forms[-1],
                add=int(op.add), first_step=op.idle(pe) if op.add else 0,
                last_step=op.loop(pe) - 1 if op.add else op.channel_loop - 1,
                weight_a=op.add_weights[0], weight_b=op.add_weights[1],
                bank_a=reads[0], bank_b=reads[-1]))
            base += op.weight_count(pe)
            channel += op.groups(pe) * pe
        return rows
    def elaborate(self, platform):
        m = Module()
        pe, shape, ops = self._pe, self._shape, self._ops
        count, bank = len(ops), self._bank_words
        word = data.ArrayLayout(unsigned(self._chain.stored_bits), pe)
        read, write = _banks(m, word, bank, self._slots.count, self._target)
        rows = self._constants()
        const = {name: _table([row[name] for row in rows]) for name in rows[0]}
        phase = Signal(range(3))

        # Load: the input's codes (HWC, channels fastest), pe channels of a pixel to a word,
        # into bank 0.
        first = ops[0]
        loaded = _Position(m, "loaded", self.in_codes, 1)
        load_c, load_lane, _ = _Position(m, "load_c", first.in_shape[2], pe)
        load_word = Signal(range(bank + 1))
        accepted, incoming = Signal(), Signal(word)
        m.d.comb += [self.i.ready.eq(phase == _LOAD), accepted.eq(self.i.valid & self.i.ready)]
        _insert(m, incoming, _held(m, "assembling", word, accepted, incoming),
                load_lane, self.i.payload.data[0])
        last_input = loaded.last
        load_write = accepted & ((load_lane == pe - 1) | load_c.last)
        loaded.advance(accepted)
        load_c.advance(accepted)
        with m.If(load_write):
            m.d.sync += load_word.eq(Mux(last_input, 0, load_word + 1))
        with m.If(accepted & last_input):
            m.d.sync += phase.eq(_COMPUTE)

        # Compute: one step per cycle while a layer runs. Loops, innermost first: the window's
        # channels c, columns kx and rows ky, the group g of pe output channels, the output
        # column ox and row oy. (iy, ix) is the input pixel of the step, pix its word address
        # (without the channel word), origin the address of the window's first pixel.
        # The running layer's constants are registers loaded as it starts (no multiplexer
        # from the layer number on the per-step paths); loop ends as last indices.
        layer = Signal(range(count))
        following = Signal(range(count + 1))  # layer + 1, a register of its own
        held = {name: Signal.like(values[0], name=f"held_{name}")
                for name, values in const.items()}
        limits = ("loop", "kw", "kh", "groups", "out_width", "out_height")
        ends = {name: Signal.like(const[name][0], name=f"end_{name}") for name in limits}
        c, c_lane, c_word = _Position(m, "c", max(op.loop(pe) for op in ops), pe,
                                      end=ends["loop"])
        counters = {name: Signal(range(max(max(row[limit] for row in rows), 2)), name=name)
                    for name, limit in (("kx", "kw"), ("ky", "kh"), ("g", "groups"),
                                        ("ox", "out_width"), ("oy", "out_height"))}
        kx, ky, g, ox, oy = counters.values()
        reach = max(2 * bank, max(abs(row["origin"]) + 1 for row in rows),
                    max(max(row["height"], row["width"]) for row in rows) + 2)
        address = signed(reach.bit_length() + 2)
        iy0, ix0, iy, ix = (Signal(address, name=name) for name in ("iy0", "ix0", "iy", "ix"))
        origin, row_origin, pix = (Signal(address, name=name)
                                   for name in ("origin", "row_origin", "pix"))
        weight_words = self.weight_words()
        wstep = Signal(range(max(len(weight_words), 2)))
        channel = Signal(range(max(sum(row["groups"] for row in rows) * pe, 2)))
        running, waiting = Signal(), Signal()
        written = Signal(range(count + 1))  # layers of this frame whose outputs are written
        # Whether each counter is at its loop's end, registered: set as the counter steps
        # onto its last index, so no compare sits on the loops' enable paths.
        limit_of = dict(zip(counters, limits[1:]))
        last = {name: Signal(name=f"{name}_last") for name in counters}

        def up(name):
            counter = counters[name]
            return [counter.eq(counter + 1), last[name].eq(counter + 1 == ends[limit_of[name]])]

        def zero(*names):
            return [statement for name in names for statement in
                    (counters[name].eq(0), last[name].eq(ends[limit_of[name]] == 0))]

        single = {name: _table([int(row[limit] == 1) for row in rows])
                  for name, limit in limit_of.items()}
        single["c"] = _table([int(row["loop"] == 1) for row in rows])
        # Idle steps: an add's before its two, a short window's after its channels; the
        # window's last real step closes the group.
        idle = (c.value < held["first_step"]) | (c.value > held["last_step"])
        window_end = (c.value == held["last_step"]) & last["kx"] & last["ky"]

        def start(index):
            """The counters' values at the start of layer ``index``."""
            return [layer.eq(index), following.eq(index + 1), running.eq(1),
                    wstep.eq(const["base"][index]),
                    channel.eq(const["channel"][index]),
                    iy0.eq(const["top"][index]), iy.eq(const["top"][index]),
                    ix0.eq(const["left"][index]), ix.eq(const["left"][index]),
                    origin.eq(const["origin"][index]), row_origin.eq(const["origin"][index]),
                    pix.eq(const["origin"][index]),
                    *(held[name].eq(const[name][index]) for name in const),
                    *(ends[name].eq(const[name][index] - 1) for name in limits),
                    *(last[name].eq(single[name][index]) for name in counters),
                    c.last.eq(single["c"][index])]

        c.advance(running)
        with m.If(running & ~idle):
            m.d.sync += wstep.eq(wstep + 1)
        with m.If(running):
            with m.If(c.last):
                with m.If(~last["kx"]):
                    m.d.sync += [*up("kx"), ix.eq(ix + 1), pix.eq(pix + held["cw"])]
                with m.Elif(~last["ky"]):
                    m.d.sync += [*zero("kx"), *up("ky"), iy.eq(iy + 1), ix.eq(ix0),
                                 pix.eq(pix + held["down"])]
                with m.Elif(~last["g"]):
                    m.d.sync += [*zero("kx", "ky"), *up("g"), iy.eq(iy0), ix.eq(ix0),
                                 pix.eq(origin), channel.eq(channel + pe)]
                with m.Else():
                    m.d.sync += [*zero("kx", "ky", "g"), wstep.eq(held["base"]),
                                 channel.eq(held["channel"])]
                    step_x, step_y = held["step_x"], held["step_y"]
                    with m.If(~last["ox"]):
                        m.d.sync += [*up("ox"), ix0.eq(ix0 + held["sx"]),
                                     ix.eq(ix0 + held["sx"]), iy.eq(iy0),
                                     origin.eq(origin + step_x), pix.eq(origin + step_x)]
                    with m.Elif(~last["oy"]):
                        m.d.sync += [*zero("ox"), *up("oy"), iy0.eq(iy0 + held["sy"]),
                                     iy.eq(iy0 + held["sy"]),
                                     ix0.eq(held["left"]), ix.eq(held["left"]),
                                     row_origin.eq(row_origin + step_y),
                                     origin.eq(row_origin + step_y),
                                     pix.eq(row_origin + step_y)]
                    with m.Else():
                        m.d.sync += [*zero("ox", "oy"), running.eq(0), waiting.eq(1)]
        with m.If(accepted & last_input):
            m.d.sync += [*start(0), written.eq(0)]
        with m.If(waiting & (written == following)):
            m.d.sync += waiting.eq(0)
            with m.If(following == count):
                m.d.sync += phase.eq(_OUTPUT)
            with m.Else():
                m.d.sync += start(following)

        # Operands, three registers behind the issue like the weight ROM's words: the step's
        # input word from its bank; one code of it for every lane, or lane p's own code
        # (lanewise); the input zero point where the window leaves the image.
        out_c, out_lane, _ = _Position(m, "out_c", ops[-1].out_shape[2], pe)
        out_count = _Position(m, "out_count", self.out_codes, 1)
        out_word = Signal(range(bank + 1))
        output_en = Signal()
        lanewise = held["lanewise"]
        outside = ((iy < 0) | (iy >= held["height"])
                   | (ix < 0) | (ix >= held["width"]))
        # A step's buffer address and read enable are registered (the read is a cycle behind
        # the issue, its data two, the operand three), so the counters' compares and adders
        # end in flip-flops, not in the RAMs' pins.
        # An add's second step reads its input b, from its own bank, in its own form.
        step_addr, step_bank, step_read = Signal.like(read.addr), Signal.like(read.bank), Signal()
        step_lane, step_pad, step_second = Signal.like(c_lane), Signal(), Signal()
        # An add's loop is idle steps up to pe, then a and b: b is the loop's last step.
        second = held["add"] & c.last
        m.d.sync += [
            step_addr.eq(pix + Mux(lanewise, g, c_word)),
            step_bank.eq(Mux(second, held["bank_b"], held["bank_a"])), step_second.eq(second),
            # Only real reads: a single-port bank may be written in the same cycle.
            step_read.eq(running & ~outside & ~idle), step_lane.eq(c_lane), step_pad.eq(outside),
        ]
        m.d.comb += [
            read.bank.eq(Mux(phase == _OUTPUT, self._slots.writes[-1], step_bank)),
            read.addr.eq(Mux(phase == _OUTPUT, out_word, step_addr)),
            read.en.eq(Mux(phase == _OUTPUT, output_en, step_read)),
        ]
        read_lane, read_pad, read_second = Signal.like(c_lane), Signal(), Signal()
        m.d.sync += [read_lane.eq(step_lane), read_pad.eq(step_pad), read_second.eq(step_second)]
        selected = _select(m, read.data, read_lane, word.elem_shape)
        operands = [Signal(shape, name=f"operand{lane}") for lane in range(pe)]
        form = Mux(read_second, held["form_b"], held["form"])
        for lane, operand in enumerate(operands):
            stored = Mux(lanewise, read.data[lane], selected)
            forms = Array(stored[:bits].as_signed() if is_signed else stored[:bits]
                          for bits, is_signed in self._forms)
            m.d.sync += operand.eq(Mux(read_pad, held["zero"], forms[form]))
        operand_second = Signal()
        m.d.sync += operand_second.eq(read_second)
        assert WeightRom.latency + 1 == _READ_STAGES
        weight_shape = signed(self._weight_bits)
        weight_addr = Signal.like(wstep)
        m.d.sync += weight_addr.eq(wstep)
        weights = weight_rom(m, "weights", data.ArrayLayout(weight_shape, pe),
                             weight_words, weight_addr, target=self._target)
        add_weight = Mux(operand_second, held["weight_b"], held["weight_a"])

        # Flags travel with the step: valid, first and last step of a window, the requant
        # table's word of the group's first channel.
        flags = data.StructLayout({"valid": 1, "first": 1, "last": 1,
                                   "channel": len(channel), "layer": len(layer)})
        operand_shape = signed(self._chain.operand_bits)
        widths = (operand_shape.width, shape.width)
        stages = [Signal(flags, name=f"flags{index}")
                  for index in range(_READ_STAGES + multiplier_latency(self._kind, 1, widths))]
        m.d.sync += [stages[0].valid.eq(running & ~idle),
                     stages[0].first.eq((c.value == held["first_step"]) & (kx == 0) & (ky == 0)),
                     stages[0].last.eq(window_end),
                     stages[0].channel.eq(channel),
                     stages[0].layer.eq(layer)]
        m.d.sync += [later.eq(earlier) for earlier, later in zip(stages, stages[1:])]
        arrived = stages[-1]
        acc_shape = signed(max(op.sum_bound for op in ops).bit_length() + 1)
        sums = [Signal(acc_shape, name=f"acc{lane}") for lane in range(pe)]
        unit = held["unit"]
        for lane, total in enumerate(sums):
            weight = Signal(operand_shape, name=f"weight{lane}")
            m.d.comb += weight.eq(Mux(unit, 1, Mux(held["add"], add_weight, weights[lane])))
            product = multiply_kind(m, self._kind, weight, operands[lane], 1,
                                    target=self._target, name=f"mul{lane}")[0]
            with m.If(arrived.valid):
                # A max pool keeps the larger code (its weight is 1), the others add.
                m.d.sync += total.eq(Mux(held["maximum"],
                                         Mux(arrived.first | (product > total), product, total),
                                         Mux(arrived.first, 0, total) + product))
        finished = Signal()  # the sums hold a whole group
        finished_channel, finished_layer = Signal.like(channel), Signal.like(layer)
        m.d.sync += [finished.eq(arrived.valid & arrived.last),
                     finished_channel.eq(arrived.channel), finished_layer.eq(arrived.layer)]

        # The group's sums into the one-lane requant, one per cycle, each with its channel.
        m.submodules.requant = requant = Requant(
            _SharedRequant.of(ops, pe, shape), 1, target=self._target, free_running=True,
            indexed=True)
        queue = [Signal(acc_shape, name=f"queue{lane}") for lane in range(pe)]
        left, index, index_layer = Signal(range(pe + 1)), Signal.like(channel), Signal.like(layer)
        m.d.comb += [requant.i.valid.eq(left != 0), requant.i.payload.data[0].eq(queue[0]),
                     requant.index.eq(index), requant.layer.eq(index_layer)]
        with m.If(finished):
            m.d.sync += [*(q.eq(total) for q, total in zip(queue, sums)), left.eq(pe),
                         index.eq(finished_channel), index_layer.eq(finished_layer)]
        with m.Elif(left != 0):
            m.d.sync += [*(q.eq(n) for q, n in zip(queue, queue[1:])), left.eq(left - 1),
                         index.eq(index + 1)]

        # Write back: pe codes to a word, the layer's words in order into the layer's bank.
        w_layer, w_word, w_lane = (Signal(range(count)), Signal(range(bank + 1)),
                                   Signal(range(pe)))
        result = requant.o.valid
        apart = self._chain.result_apart
        out_field = unsigned(max(word.elem_shape.width, ops[-1].layer.output.bits))
        collected = data.ArrayLayout(out_field, pe)
        complete = Signal(collected)
        _insert(m, complete, _held(m, "collected", collected, result, complete), w_lane,
                requant.o.payload.data[0])
        # The layer's last word, a register loaded as the layer before it finishes.
        last_words = [row["out_words"] - 1 for row in rows]
        w_end = Signal(range(max(max(last_words) + 1, 2)), init=last_words[0])
        writes = self._slots.writes
        w_bank = Signal.like(write.bank, init=writes[0])
        word_done = result & (w_lane == pe - 1)
        layer_done = word_done & (w_word == w_end)
        with m.If(result):
            m.d.sync += w_lane.eq(Mux(w_lane == pe - 1, 0, w_lane + 1))
        with m.If(word_done):
            m.d.sync += w_word.eq(Mux(layer_done, 0, w_word + 1))
        with m.If(layer_done):
            next_layer = Mux(w_layer == count - 1, 0, w_layer + 1)
            m.d.sync += [w_layer.eq(next_layer), w_end.eq(_table(last_words)[next_layer]),
                         w_bank.eq(_table(writes)[next_layer]), written.eq(written + 1)]
        loading = phase == _LOAD
        last_layer = w_layer == count - 1
        m.d.comb += [
            write.en.eq(Mux(loading, load_write, word_done & ~(apart & last_layer))),
            write.bank.eq(Mux(loading, 0, w_bank)),
            write.addr.eq(Mux(loading, load_word, w_word)),
            write.data.eq(Mux(loading, incoming,
                              Cat(code[:word.elem_shape.width] for code in complete))),
        ]
        results = read.data
        if apart:
            # The result in registers of its own, read like a bank (one cycle, held).
            kept = Array(Signal(collected, name=f"result{index}")
                         for index in range(rows[-1]["out_words"]))
            results = Signal(collected)
            with m.If(word_done & last_layer):
                m.d.sync += kept[w_word].eq(complete)
            with m.If(output_en):
                m.d.sync += results.eq(kept[out_word])

        # Output: the last layer's codes (HWC) from its bank, one per beat; the read port
        # holds its data while o stalls.
        pending, sent, code_lane, code_last = Signal(), Signal(), Signal.like(out_lane), Signal()
        m.d.comb += [
            output_en.eq((phase == _OUTPUT) & ~sent & (~self.o.valid | self.o.ready)),
            self.o.valid.eq(pending),
            self.o.payload.data[0].eq(_select(m, results, code_lane, out_field)),
            self.o.payload.last.eq(code_last),
        ]
        out_c.advance(output_en)
        out_count.advance(output_en)
        with m.If(output_en & ((out_lane == pe - 1) | out_c.last)):
            m.d.sync += out_word.eq(Mux(out_count.last, 0, out_word + 1))
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += pending.eq(0)
            with m.If(code_last):
                m.d.sync += [sent.eq(0), phase.eq(_LOAD)]
        with m.If(output_en):
            m.d.sync += [pending.eq(1), code_lane.eq(out_lane), code_last.eq(out_count.last)]
            with m.If(out_count.last):
                m.d.sync += sent.eq(1)
        return m


def _table(values):
    """Per-layer constants as an Array indexed by a layer signal: signed where any is
    negative."""
    low, high = min(values), max(values)
    shape = signed(max(abs(low), abs(high)).bit_length() + 1) if low < 0 else \
        range(max(high + 1, 2))
    return Array(Const(int(v), shape) for v in values)


_LOAD, _COMPUTE, _OUTPUT = range(3)

# The iCE40 UltraPlus single-port RAM: 16384 words of 16 bits.
SPRAM_WORDS, SPRAM_BITS = 16384, 16
# From this many bits a bank goes into SB_SPRAM256KA on target "ice40" (four EBRs' worth);
# smaller ones stay in block RAM.
SPRAM_MIN_BITS = 16384


def spram_count(bank_words, width, banks=2):
    """``SB_SPRAM256KA`` the ``banks`` activation banks of ``bank_words`` words of ``width``
    bits take on target ``"ice40"``: ``banks·⌈width/16⌉``, or 0 where they stay in block RAM
    (too small, or deeper than a single-port RAM)."""
    if bank_words * width < SPRAM_MIN_BITS or bank_words > SPRAM_WORDS:
        return 0
    return banks * math.ceil(width / SPRAM_BITS)


@dataclasses.dataclass
class _Port:
    """A port of the activation buffer: ``bank`` (which of them) and the ``addr`` within it,
    so no adder or compare sits between the engine's counters and the RAMs."""

    bank: object
    addr: object
    en: object
    data: object


def _banks(m, word, bank, banks, target):
    """The activation buffer's read and write ports: one RAM of ``banks`` banks of ``bank``
    words, or on target ``"ice40"`` (where :func:`spram_count` says so) one set of
    ``SB_SPRAM256KA`` per bank, each single-port: the engine never reads and writes one bank
    in the same cycle (load writes bank 0 alone; a layer writes a bank it does not read,
    :func:`~hwgen.plan_sequential.buffer_slots`; the output only reads). Both read with one
    cycle of latency and hold the data while the read enable is low."""
    read = _Port(Signal(range(banks)), Signal(range(bank)), Signal(), Signal(word))
    write = _Port(Signal(range(banks)), Signal(range(bank)), Signal(), Signal(word))
    if target != "ice40" or not spram_count(bank, word.size, banks):
        m.submodules.buffer = buffer = memory.Memory(shape=word, depth=banks * bank, init=[])
        ports = buffer.read_port(), buffer.write_port()
        offsets = Array(Const(index * bank, range(banks * bank)) for index in range(banks))
        for port, inner in zip((read, write), ports):
            m.d.comb += [inner.addr.eq(port.addr + offsets[port.bank]), inner.en.eq(port.en)]
        m.d.comb += [read.data.eq(ports[0].data), ports[1].data.eq(write.data)]
        return read, write
    chunks = math.ceil(word.size / SPRAM_BITS)
    selected = Signal(range(banks))  # the bank the read data comes from
    with m.If(read.en):
        m.d.sync += selected.eq(read.bank)
    outputs = []
    stored = write.data.as_value()
    for index in range(banks):
        reading = read.en & (read.bank == index)
        writing = write.en & (write.bank == index)
        local = Signal(range(SPRAM_WORDS), name=f"bank{index}_address")
        m.d.comb += local.eq(Mux(writing, write.addr, read.addr))
        bank_out = []
        for chunk in range(chunks):
            out = Signal(SPRAM_BITS, name=f"bank{index}_data{chunk}")
            m.submodules[f"bank{index}_spram{chunk}"] = Instance(
                "SB_SPRAM256KA", i_ADDRESS=local,
                i_DATAIN=stored[chunk * SPRAM_BITS:(chunk + 1) * SPRAM_BITS],
                i_MASKWREN=0b1111, i_WREN=writing, i_CHIPSELECT=writing | reading,
                i_CLOCK=ClockSignal(), i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1, o_DATAOUT=out)
            bank_out.append(out)
        outputs.append(Cat(*bank_out))
    m.d.comb += read.data.eq(Array(outputs)[selected][:word.size])
    return read, write


class _Position:
    """A counter over ``most`` positions (or up to ``end``, a signal: the last index) with its
    lane and word among words of ``lanes``: three counters that advance together, so no
    division is built. Unpacks as ``(position, lane, word)``."""

    def __init__(self, m, name, most, lanes, end=None):
        self._m = m
        self.value = Signal(range(max(most, 2)), name=name)
        self.lane = Signal(range(lanes), name=f"{name}_lane")
        self.word = Signal(range(max(math.ceil(most / lanes), 2)), name=f"{name}_word")
        self._lanes = lanes
        # Whether the position is the last, registered (a signal ``end`` changes only while
        # the counter stands at 0, and whoever changes it sets ``last`` too).
        self._end = most - 1 if end is None else end
        self.last = Signal(name=f"{name}_last", init=int(end is None and most == 1))

    def __iter__(self):
        return iter((self, self.lane, self.word))

    def advance(self, en):
        lane_end = self.lane == self._lanes - 1
        with self._m.If(en):
            with self._m.If(self.last):
                self._m.d.sync += [self.value.eq(0), self.lane.eq(0), self.word.eq(0),
                                   self.last.eq(self._end == 0)]
            with self._m.Else():
                self._m.d.sync += [self.value.eq(self.value + 1),
                                   self.lane.eq(Mux(lane_end, 0, self.lane + 1)),
                                   self.word.eq(self.word + lane_end),
                                   self.last.eq(self.value + 1 == self._end)]


def _held(m, name, layout, en, value):
    """A register of ``layout`` taking ``value`` when ``en``."""
    register = Signal(layout, name=name)
    with m.If(en):
        m.d.sync += register.eq(value)
    return register


def _insert(m, result, word, lane, code):
    """``result`` = ``word`` with ``code`` at ``lane``."""
    m.d.comb += result.eq(word)
    with m.Switch(lane):
        for index in range(len(result)):
            with m.Case(index):
                m.d.comb += result[index].eq(code)


def _select(m, word, lane, shape):
    """The code of ``word`` at ``lane``."""
    code = Signal(shape)
    with m.Switch(lane):
        for index in range(len(word)):
            with m.Case(index):
                m.d.comb += code.eq(word[index])
    return code
