"""The layer-sequential engine: one array of MACs and one requant unit compute a chain of
dense layers one after another (a TPU-style shared engine), for boards too small for an
engine per layer.

A frame goes through three phases, one after the other:

1. **load**: the input codes arrive one per beat and are written, ``pe`` to a word, into the
   activation buffer's bank 0;
2. **compute**: layer ``l`` reads its input from bank ``l mod 2`` and writes its output to the
   other. Its ``⌈out/pe⌉`` groups of ``pe`` output channels each take ``in`` steps: a step
   reads one input code (broadcast to the ``pe`` multipliers) and one word of ``pe`` weights
   from the weight ROM, whose words follow the schedule (layer, group, input), so its address
   is one counter over the frame. A finished group's ``pe`` sums go, one per cycle, through a
   one-lane :class:`~hwgen.hw.requant.Requant` whose table holds every layer's channels in
   schedule order (bias, multiplier, shift, clamp ends and zero point per channel), and are
   written back ``pe`` codes to a word. The next layer starts the cycle after the last word
   of this one is written (the drain, :attr:`SequentialEngine.drain`);
3. **output**: the last layer's codes leave one per beat on ``o``, from its bank.

Codes live in the buffer at one shape for every layer (:func:`shared_code_shape`, signed, as
wide as the widest code), so the multipliers see each layer's codes as the values they are.
Padding channels (a layer whose outputs ``pe`` does not divide) have zero weights and a zero
clamp range; nothing reads them.
"""

import dataclasses
import math
import operator

import numpy as np
from amaranth.hdl import Array, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import HwgenError
from ..reference import Rounding
from .dsp import check_target
from .multiplier import multiplier_latency, multiply_kind
from .requant import Requant, code_shape
from .rom import WeightRom, weight_rom
from .stream import frame_layout

__all__ = ["SequentialEngine", "check_chain", "drain_cycles", "requant_table",
           "shared_code_shape"]

# Stages from a step's issue to its accumulation, besides the multiplier's: the buffer read
# and the operand register (the weight ROM's two registers line up with them), accumulate.
_READ_STAGES = 2


def check_chain(layers):
    """``layers`` as a tuple, if they form a chain the engine computes: dense layers, each
    reading the one before, one rounding mode other than onnxruntime's float32; else
    :class:`HwgenError` naming the layer."""
    layers = tuple(layers)
    if not layers:
        raise HwgenError("the sequential engine needs at least one layer")
    for index, layer in enumerate(layers):
        if layer.op != "dense":
            raise HwgenError(f"the sequential engine computes dense layers, not {layer.op} "
                             f"({layer.name!r})")
        if index and (tuple(layer.inputs) != (layers[index - 1].name,)
                      or layer.in_features != layers[index - 1].out_features):
            raise HwgenError(f"layer {layer.name!r} does not read {layers[index - 1].name!r} "
                             "alone: the sequential engine computes a chain")
        if layer.rounding is Rounding.FLOAT32_ORT:
            raise HwgenError(f"layer {layer.name!r} requantizes with onnxruntime's float32 "
                             "rounding, which the sequential engine does not build")
        if layer.rounding is not layers[0].rounding:
            raise HwgenError(f"layers {layers[0].name!r} and {layer.name!r} round differently; "
                             "the sequential engine's one requant unit needs one mode")
    return layers


def shared_code_shape(layers):
    """The buffer's code shape: signed, as wide as every code of the chain's input and
    outputs needs (an unsigned code takes one bit more)."""
    quants = [layers[0].input] + [layer.output for layer in layers]
    return signed(max(quant.bits + (not quant.signed) for quant in quants))


def requant_table(layers, pe):
    """``(depth, width)`` of the shared requant's parameter table (read asynchronously, so
    it is logic, not block RAM): a word per channel of the chain, padded to groups of ``pe``."""
    layers = check_chain(layers)
    requant = Requant(_SharedRequant.of(layers, pe, shared_code_shape(layers)), 1)
    layout, words, _, _ = requant._table()
    return len(words), layout.size


def drain_cycles(layers, pe, multiplier="dsp"):
    """Cycles between a layer's last step and the next layer's first on the engine over
    ``layers``: the buffer read and operand register, the multiplier, the accumulate, the
    group's ``pe`` sums into the requant one per cycle, the requant, the write."""
    widths = (max(layer.weight_bits for layer in layers), shared_code_shape(layers).width)
    return (_READ_STAGES + multiplier_latency(multiplier, 1, widths) + 1 + pe
            + Requant.latency_of(layers[0]) + 1)


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

    @classmethod
    def of(cls, layers, pe, shape):
        def padded(layer, values):
            values = np.broadcast_to(np.asarray(values, dtype=np.int64), layer.out_features)
            return np.concatenate([values, np.zeros(-layer.out_features % pe, np.int64)])

        def column(get):
            return np.concatenate([padded(layer, get(layer)) for layer in layers])

        optional = {}
        if any(layer.negative_multiplier is not None for layer in layers):
            optional["negative_multiplier"] = column(
                lambda layer: layer.multiplier if layer.negative_multiplier is None
                else layer.negative_multiplier)
        if any(layer.bias_fraction is not None for layer in layers):
            optional["bias_fraction"] = column(
                lambda layer: 0 if layer.bias_fraction is None else layer.bias_fraction)
        if any(layer.negative_fraction is not None for layer in layers):
            optional["negative_fraction"] = column(
                lambda layer: layer.negative_fraction if layer.negative_fraction is not None
                else 0 if layer.bias_fraction is None else layer.bias_fraction)
        return cls(
            bias=column(lambda layer: layer.bias), multiplier=column(lambda layer: layer.multiplier),
            shift=column(lambda layer: layer.shift), clamp_lo=column(lambda layer: layer.clamp_lo),
            clamp_hi=column(lambda layer: layer.clamp_hi),
            zero_point=column(lambda layer: layer.output.zero_point),
            output=_Codes(shape.width),
            acc_bits=max(layer.acc_bits for layer in layers), rounding=layers[0].rounding,
            **optional)


class SequentialEngine(wiring.Component):
    """A chain of dense ``layers`` on one array of ``pe`` multipliers and a one-lane requant
    unit, layer after layer (see the module doc), bit-exact with
    :func:`hwgen.reference.run_integer` over the chain.

    Cycles per frame (input always valid, ``o`` always ready) are :attr:`cycles_per_frame`:
    ``in`` (load) ``+ Σ_l ⌈out_l/pe⌉ · in_l`` (compute) ``+ n · drain + out`` (output)
    ``+ 1``; the next frame's load starts the cycle after its last output code has gone. Stalls on ``i``
    hold the load, stalls on ``o`` hold the output; compute never waits.

    Parameters
    ----------
    layers : sequence of QDense
        A chain (:func:`check_chain`).
    pe : int
        Multipliers, one output channel each per step; at most the smallest ``in_features``
        of the chain (the requant takes a group's sums one per cycle while the next group
        computes).
    target : str
        ``"generic"`` or ``"ecp5"`` (see :mod:`hwgen.hw.dsp`).
    multiplier : str
        ``"dsp"`` (default) or ``"lut"`` (see :mod:`hwgen.hw.multiplier`).

    Members
    -------
    i : In(stream.Signature(frame_layout(code_shape(layers[0].input), 1)))
    o : Out(stream.Signature(frame_layout(code_shape(layers[-1].output), 1)))
    """

    def __init__(self, layers, pe, *, target="generic", multiplier="dsp"):
        self._layers = check_chain(layers)
        self._pe = operator.index(pe)
        smallest = min(layer.in_features for layer in self._layers)
        if not 1 <= self._pe <= smallest:
            raise HwgenError(f"the sequential engine's pe must be from 1 to {smallest} (the "
                             f"chain's smallest input), not {pe}")
        if multiplier not in ("dsp", "lut"):
            raise HwgenError(f"the sequential engine builds 'dsp' or 'lut' multipliers, not "
                             f"{multiplier!r}")
        self._target = check_target(target)
        self._kind = multiplier
        self._shape = shared_code_shape(self._layers)
        self._weight_bits = max(layer.weight_bits for layer in self._layers)
        self._groups = [math.ceil(layer.out_features / self._pe) for layer in self._layers]
        self._bank_words = max([math.ceil(self._layers[0].in_features / self._pe)]
                               + self._groups)
        super().__init__({
            "i": In(stream.Signature(frame_layout(code_shape(self._layers[0].input), 1))),
            "o": Out(stream.Signature(frame_layout(code_shape(self._layers[-1].output), 1))),
        })

    layers = property(lambda self: self._layers)
    pe = property(lambda self: self._pe)
    multiplier = property(lambda self: self._kind)

    @property
    def steps(self):
        """Compute steps per frame: ``Σ_l ⌈out_l/pe⌉ · in_l``."""
        return sum(groups * layer.in_features
                   for groups, layer in zip(self._groups, self._layers))

    @property
    def drain(self):
        """Cycles from a layer's last step to the first step of the next (or the output's
        first read): :func:`drain_cycles`."""
        return drain_cycles(self._layers, self._pe, self._kind)

    @property
    def cycles_per_frame(self):
        """Cycles between frames in steady state (see the class doc)."""
        return (self._layers[0].in_features + self.steps + len(self._layers) * self.drain
                + self._layers[-1].out_features + 1)

    @property
    def latency(self):
        """Cycles from the transfer of a frame's last input code to the transfer of its last
        output code, ``o`` always ready."""
        return self.cycles_per_frame - self._layers[0].in_features

    def weight_words(self):
        """The weight ROM: per step of the schedule (layer, group, input), ``pe`` weights."""
        words = []
        for groups, layer in zip(self._groups, self._layers):
            weight = np.zeros((groups * self._pe, layer.in_features), np.int64)
            weight[:layer.out_features] = layer.weight
            for group in range(groups):
                rows = weight[group * self._pe:(group + 1) * self._pe]
                words.extend([int(v) for v in rows[:, k]] for k in range(layer.in_features))
        return words

    def elaborate(self, platform):
        m = Module()
        pe, shape, layers = self._pe, self._shape, self._layers
        count, bank = len(layers), self._bank_words
        word = data.ArrayLayout(shape, pe)
        m.submodules.buffer = buffer = memory.Memory(shape=word, depth=2 * bank, init=[])
        write, read = buffer.write_port(), buffer.read_port()
        in_features = Array(Const(layer.in_features) for layer in layers)
        groups = Array(Const(value) for value in self._groups)
        phase = Signal(range(3))

        # Load: the input codes, pe to a word, into bank 0.
        loaded, load_lane, load_word = _Position(m, "load", layers[0].in_features, pe)
        accepted, incoming = Signal(), Signal(word)
        m.d.comb += [self.i.ready.eq(phase == _LOAD), accepted.eq(self.i.valid & self.i.ready)]
        _insert(m, incoming, _Position.held(m, "assembling", word, accepted, incoming),
                load_lane, self.i.payload.data[0])
        last_input = loaded.last
        loaded.advance(accepted)
        with m.If(accepted & last_input):
            m.d.sync += phase.eq(_COMPUTE)

        # Compute: one step per cycle while a layer runs (input k of group g of layer l).
        layer = Signal(range(count))
        k, k_lane, k_word = _Position(m, "k", max(l.in_features for l in layers), pe,
                                      length=in_features[layer])
        group = Signal(range(max(self._groups)))
        step = Signal(range(self.steps + 1))
        running, waiting = Signal(), Signal()
        written = Signal(range(count + 1))  # layers of this frame whose outputs are written
        last_group = group == groups[layer] - 1
        k.advance(running)
        with m.If(running):
            m.d.sync += step.eq(step + 1)
            with m.If(k.last):
                m.d.sync += group.eq(Mux(last_group, 0, group + 1))
                with m.If(last_group):
                    m.d.sync += [running.eq(0), waiting.eq(1)]
        with m.If(accepted & last_input):
            m.d.sync += [running.eq(1), layer.eq(0), step.eq(0), written.eq(0)]
        with m.If(waiting & (written == layer + 1)):
            m.d.sync += waiting.eq(0)
            with m.If(layer == count - 1):
                m.d.sync += phase.eq(_OUTPUT)
            with m.Else():
                m.d.sync += [layer.eq(layer + 1), running.eq(1)]

        # Operands, two registers behind the issue like the weight ROM's words: the input
        # code from bank l mod 2, broadcast to every multiplier.
        out, out_lane, out_word = _Position(m, "out", layers[-1].out_features, pe)
        output_en = Signal()
        source = Mux(layer[0], bank, 0) if count > 1 else 0
        m.d.comb += [
            read.addr.eq(Mux(phase == _OUTPUT, (count % 2) * bank + out_word, source + k_word)),
            read.en.eq(Mux(phase == _OUTPUT, output_en, 1)),
        ]
        read_lane, operand = Signal.like(k_lane), Signal(shape)
        m.d.sync += [read_lane.eq(k_lane), operand.eq(_select(m, read.data, read_lane, shape))]
        assert WeightRom.latency == _READ_STAGES
        weights = weight_rom(m, "weights", data.ArrayLayout(signed(self._weight_bits), pe),
                             self.weight_words(), step, target=self._target)

        # Flags travel with the step: valid, first and last input of a group.
        flags = data.StructLayout({"valid": 1, "first": 1, "last": 1})
        widths = (self._weight_bits, shape.width)
        stages = [Signal(flags, name=f"flags{index}")
                  for index in range(_READ_STAGES + multiplier_latency(self._kind, 1, widths))]
        m.d.sync += [stages[0].valid.eq(running), stages[0].first.eq(k == 0),
                     stages[0].last.eq(k.last)]
        m.d.sync += [later.eq(earlier) for earlier, later in zip(stages, stages[1:])]
        arrived = stages[-1]
        acc_shape = signed(max(layer_.acc_bits for layer_ in layers))
        sums = [Signal(acc_shape, name=f"acc{lane}") for lane in range(pe)]
        for lane, total in enumerate(sums):
            product = multiply_kind(m, self._kind, weights[lane], operand, 1,
                                    target=self._target, name=f"mul{lane}")[0]
            with m.If(arrived.valid):
                m.d.sync += total.eq(Mux(arrived.first, 0, total) + product)
        finished = Signal()  # the sums hold a whole group
        m.d.sync += finished.eq(arrived.valid & arrived.last)

        # The group's sums into the one-lane requant, one per cycle.
        m.submodules.requant = requant = Requant(
            _SharedRequant.of(layers, pe, shape), 1, target=self._target, free_running=True)
        queue = [Signal(acc_shape, name=f"queue{lane}") for lane in range(pe)]
        left = Signal(range(pe + 1))
        m.d.comb += [requant.i.valid.eq(left != 0), requant.i.payload.data[0].eq(queue[0])]
        with m.If(finished):
            m.d.sync += [*(q.eq(total) for q, total in zip(queue, sums)), left.eq(pe)]
        with m.Elif(left != 0):
            m.d.sync += [*(q.eq(n) for q, n in zip(queue, queue[1:])), left.eq(left - 1)]

        # Write back: pe codes to a word, word g of bank (l + 1) mod 2.
        w_layer, w_group, w_lane = (Signal(range(count)), Signal(range(max(self._groups))),
                                    Signal(range(pe)))
        result, complete = requant.o.valid, Signal(word)
        _insert(m, complete, _Position.held(m, "collected", word, result, complete), w_lane,
                requant.o.payload.data[0])
        word_done = result & (w_lane == pe - 1)
        layer_done = word_done & (w_group == groups[w_layer] - 1)
        with m.If(result):
            m.d.sync += w_lane.eq(Mux(w_lane == pe - 1, 0, w_lane + 1))
        with m.If(word_done):
            m.d.sync += w_group.eq(Mux(layer_done, 0, w_group + 1))
        with m.If(layer_done):
            m.d.sync += [w_layer.eq(Mux(w_layer == count - 1, 0, w_layer + 1)),
                         written.eq(written + 1)]
        target_bank = Mux(w_layer[0], 0, bank) if count > 1 else bank
        loading = phase == _LOAD
        m.d.comb += [
            write.en.eq(Mux(loading, accepted & ((load_lane == pe - 1) | last_input),
                            word_done)),
            write.addr.eq(Mux(loading, load_word, target_bank + w_group)),
            write.data.eq(Mux(loading, incoming, complete)),
        ]

        # Output: the last layer's codes from its bank, one per beat; the read port holds its
        # data while o stalls.
        pending, sent, code_lane, code_last = Signal(), Signal(), Signal.like(out_lane), Signal()
        m.d.comb += [
            output_en.eq((phase == _OUTPUT) & ~sent & (~self.o.valid | self.o.ready)),
            self.o.valid.eq(pending),
            self.o.payload.data[0].eq(_select(m, read.data, code_lane, shape)),
            self.o.payload.last.eq(code_last),
        ]
        out.advance(output_en)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += pending.eq(0)
            with m.If(code_last):
                m.d.sync += [sent.eq(0), phase.eq(_LOAD)]
        with m.If(output_en):
            m.d.sync += [pending.eq(1), code_lane.eq(out_lane), code_last.eq(out.last)]
            with m.If(out.last):
                m.d.sync += sent.eq(1)
        return m


_LOAD, _COMPUTE, _OUTPUT = range(3)


class _Position:
    """A counter over ``length`` positions (a constant, or a signal) with its lane and word
    among words of ``lanes``: three counters that advance together, so no division is
    built. Unpacks as ``(position, lane, word)``."""

    def __init__(self, m, name, most, lanes, length=None):
        self._m = m
        self.value = Signal(range(max(most, 2)), name=name)
        self.lane = Signal(range(lanes), name=f"{name}_lane")
        self.word = Signal(range(max(math.ceil(most / lanes), 2)), name=f"{name}_word")
        self._lanes = lanes
        self.last = self.value == (most if length is None else length) - 1

    def __iter__(self):
        return iter((self, self.lane, self.word))

    def __eq__(self, other):
        return self.value == other

    __hash__ = None

    def advance(self, en):
        lane_end = self.lane == self._lanes - 1
        with self._m.If(en):
            with self._m.If(self.last):
                self._m.d.sync += [self.value.eq(0), self.lane.eq(0), self.word.eq(0)]
            with self._m.Else():
                self._m.d.sync += [self.value.eq(self.value + 1),
                                   self.lane.eq(Mux(lane_end, 0, self.lane + 1)),
                                   self.word.eq(self.word + lane_end)]

    @staticmethod
    def held(m, name, layout, en, value):
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
