"""The layer-sequential engine in the plan: chains of dense, conv and pooling layers
that share one array of MACs (:mod:`hwgen.hw.sequential`), for boards too small for an
engine per layer.

``make_plan(engine="sequential")`` (``hwgen build --engine sequential``) puts every chain
(:func:`shared_chains`) on one shared engine each, the other layers on their dataflow
engines; with a ``board`` and the default ``engine=None`` the planner does so by itself when
no dataflow plan fits. In the plan a chain is one :class:`Chain` (named after its last layer,
reading its first layer's input), planned as one :class:`~hwgen.plan.LayerPlan` of engine
``"sequential"`` whose folding is ``pe × 1``. :func:`shared_ops` is how the engine sees the
chain's layers, for the plan's cycle and cost models and for the hardware alike.
"""

import dataclasses
import functools
import math

import numpy as np

from .errors import DoesNotFit, HwgenError
from .qgraph import layer_shape
from .reference import Rounding

__all__ = ["Chain", "SharedOp", "Slots", "SHARED_OPS", "buffer_slots", "shared_chains",
           "shared_ops", "plan_units", "tail_cuts", "check_cut", "share_for_board",
           "fastest_cycles", "sequential_cycles", "sequential_pes", "code_bits", "stored_bits",
           "result_apart", "weight_bits", "operand_bits", "RESULT_CODES"]

# The most multipliers the board search gives a shared engine: beyond, a dataflow plan of the
# same multipliers is the better design.
MAX_PE = 64


@dataclasses.dataclass(frozen=True, eq=False)
class SharedOp:
    """One layer as the shared engine computes it: per output pixel and group of ``pe``
    output channels, ``window`` steps over the input window ``(ky, kx, c)``, channels fastest.
    ``lanewise`` (a depthwise conv, a pool): lane ``p`` reads channel ``g·pe + p`` of
    each window position itself; otherwise (dense, conv) one input code per step goes to every
    lane. A dense layer is a 1×1 image; ``unit``: every weight is 1 (pools, whose zero point
    the bias takes off, ``−kh·kw·zp``); ``maximum``: the window's codes are compared, not
    added (a max pool: pads hold the lowest code, the requant is the identity); ``add``: an
    elementwise add, lane-wise over a window of two steps, the first reading its input ``a``,
    the second ``b``, their weights its multipliers ``M_a`` and ``M_b`` (per-layer constants,
    not words of the ROM), the bias ``−(M_a·zp_a + M_b·zp_b)``, the requant's multiplier 1."""

    layer: object
    in_shape: tuple
    out_shape: tuple
    kernel: tuple
    stride: tuple
    pads: tuple        # top, left
    lanewise: bool
    unit: bool
    maximum: bool = False
    add: bool = False

    @classmethod
    def of(cls, layer):
        if layer.op == "add":
            shape = tuple(layer.shape) if len(layer.shape) == 3 else (1, 1, layer.shape[-1])
            return cls(layer, shape, shape, (1, 1), (1, 1), (0, 0), True, False, add=True)
        if layer.op == "dense":
            return cls(layer, (1, 1, layer.in_features), (1, 1, layer.out_features), (1, 1),
                       (1, 1), (0, 0), False, False)
        if layer.op == "conv":
            return cls(layer, tuple(layer.in_shape), tuple(layer.out_shape), layer.kernel,
                       tuple(layer.stride), tuple(layer.pads[:2]), layer.depthwise, False)
        if layer.op in ("avgpool", "global_avgpool", "maxpool"):
            return cls(layer, tuple(layer.in_shape), tuple(layer.out_shape),
                       tuple(layer.kernel), tuple(layer.stride), tuple(layer.pads[:2]), True,
                       True, layer.op == "maxpool")
        raise HwgenError(f"the sequential engine computes dense, conv, pooling and add "
                         f"layers, not {layer.op} ({layer.name!r})")

    channel_loop = property(lambda self: 2 if self.add else 1 if self.lanewise
                            else self.in_shape[2])
    window = property(lambda self: self.kernel[0] * self.kernel[1] * self.channel_loop)
    pixels = property(lambda self: self.out_shape[0] * self.out_shape[1])
    out_channels = property(lambda self: self.out_shape[2])

    def loop(self, pe):
        """The channel loop the engine counts on ``pe`` multipliers: the window's channels, and
        idle steps after them where the window would take fewer than ``pe`` (the requant
        takes a group's ``pe`` sums one per cycle while the next group computes); an add's
        idle steps come before its two."""
        if self.add:
            return max(self.channel_loop, pe)
        return max(self.channel_loop, math.ceil(pe / (self.kernel[0] * self.kernel[1])))

    def idle(self, pe):
        """The loop's idle steps: before an add's two steps, after the others' channels."""
        return self.loop(pe) - self.channel_loop

    def groups(self, pe):
        return math.ceil(self.out_channels / pe)

    def steps(self, pe):
        """The steps the engine counts, idle ones included."""
        return self.pixels * self.groups(pe) * self.kernel[0] * self.kernel[1] * self.loop(pe)

    def active_steps(self, pe):
        """The steps that read and multiply (:meth:`steps` without the idle ones)."""
        return self.pixels * self.groups(pe) * self.window

    def span(self, pe):
        """Cycles from the layer's first step to the one after its last active step: its
        steps but the idle ones after its last window's channels, which the drain covers."""
        return self.steps(pe) - (0 if self.add else self.idle(pe))

    def weight_count(self, pe):
        """Words of :meth:`weight_words`: per group, one per window step (none for ``unit``
        and ``add``)."""
        return 0 if self.unit or self.add else self.groups(pe) * self.window

    def weight_words(self, pe):
        """The ROM words of this layer, per group and window step ``pe`` weights (none for
        ``unit`` and ``add``)."""
        if self.unit or self.add:
            return []
        layer = self.layer
        weight = np.asarray(layer.weight, np.int64).reshape(
            self.out_channels, self.kernel[0], self.kernel[1], -1)
        padded = np.zeros((self.groups(pe) * pe,) + weight.shape[1:], np.int64)
        padded[:self.out_channels] = weight
        words = []
        for group in range(self.groups(pe)):
            block = padded[group * pe:(group + 1) * pe].reshape(pe, -1)
            words.extend([int(v) for v in block[:, step]] for step in range(self.window))
        return words

    @property
    def pad_code(self):
        """The code the window reads outside the image: the zero point, for a max pool the
        lowest code."""
        return self.layer.input.lo if self.maximum else self.layer.input.zero_point

    @property
    def inputs(self):
        """The quantizations of the codes the layer reads, in its steps' order."""
        layer = self.layer
        return (layer.input_a, layer.input_b) if self.add else (layer.input,)

    @property
    def add_weights(self):
        """An add's two weights, ``(M_a, M_b)`` (``(0, 0)`` for the other ops)."""
        return (self.layer.multiplier_a, self.layer.multiplier_b) if self.add else (0, 0)

    # The requant's multiplier and shift: an add's sum carries its multipliers already.
    multiplier = property(lambda self: 1 if self.add else self.layer.multiplier)
    shift = property(lambda self: self.layer.shift)

    @property
    def bias(self):
        layer = self.layer
        if self.add:
            weight_a, weight_b = self.add_weights
            return np.full(self.out_channels, -weight_a * layer.input_a.zero_point
                           - weight_b * layer.input_b.zero_point, np.int64)
        if self.maximum:   # the requant adds the zero point back
            return np.full(self.out_channels, -layer.output.zero_point, np.int64)
        if self.unit:
            return np.full(self.out_channels, -self.kernel[0] * self.kernel[1]
                           * layer.input.zero_point, np.int64)
        return np.asarray(layer.bias, np.int64)

    @property
    def sum_bound(self):
        """The largest ``|Σ w·q|`` of a window (the bias is added in the requant)."""
        layer = self.layer
        if self.add:
            return sum(weight * max(abs(quant.lo), abs(quant.hi))
                       for weight, quant in zip(self.add_weights, self.inputs))
        code = max(abs(layer.input.lo), abs(layer.input.hi))
        if self.maximum:
            return code
        if self.unit:
            return self.kernel[0] * self.kernel[1] * code
        return int(np.abs(layer.weight).reshape(self.out_channels, -1).sum(axis=1).max()) * code


def shared_ops(layers):
    """The :class:`SharedOp` of each of ``layers``, if they form a chain the shared engine
    computes: dense, conv, pooling and add layers in an order that computes them, the first
    reading one tensor (the chain's input), each later one that input or outputs of layers
    before it (a dense layer behind an image reads it as one window over the whole image),
    every output but the last read within the chain, one rounding mode other than
    onnxruntime's float32; else :class:`HwgenError` naming the layer."""
    layers = tuple(layers)
    if not layers:
        raise HwgenError("the sequential engine needs at least one layer")
    if len(layers[0].inputs) != 1:
        raise HwgenError(f"layer {layers[0].name!r} reads {len(layers[0].inputs)} tensors: the "
                         "first layer of a shared engine reads one, the engine's input")
    shapes = {layers[0].inputs[0]: SharedOp.of(layers[0]).in_shape}
    ops = []
    for layer in layers:
        op = _reading(SharedOp.of(layer), shapes)
        if layer.rounding is Rounding.FLOAT32_ORT:
            raise HwgenError(f"layer {layer.name!r} requantizes with onnxruntime's float32 "
                             "rounding, which the sequential engine does not build")
        if layer.rounding is not chain_rounding(layers) and layer.op != "maxpool":
            raise HwgenError(f"layers {layers[0].name!r} and {layer.name!r} round differently; "
                             "the sequential engine's one requant unit needs one mode")
        shapes[layer.name] = op.out_shape
        ops.append(op)
    read = {tensor for layer in layers for tensor in layer.inputs}
    unread = [layer.name for layer in layers[:-1] if layer.name not in read]
    if unread:
        raise HwgenError(f"no layer of the chain reads {unread[0]!r}: only the last layer's "
                         "output leaves a shared engine")
    return tuple(ops)


def _reading(op, shapes):
    """``op`` as it reads the tensors of ``shapes`` (the chain's so far, by name): a dense
    layer behind an image reads it whole as one window."""
    layer = op.layer
    if layer.name in shapes:
        raise HwgenError(f"layer {layer.name!r} appears twice in the chain")
    missing = [tensor for tensor in layer.inputs if tensor not in shapes]
    if missing:
        raise HwgenError(f"layer {layer.name!r} reads {missing[0]!r}, which the chain does not "
                         "compute before it: the layers of a shared engine read its input or "
                         "the layers before them")
    read = [shapes[tensor] for tensor in layer.inputs]
    if any(shape != op.in_shape for shape in read):
        if layer.op != "dense" or math.prod(read[0]) != layer.in_features:
            raise HwgenError(f"layer {layer.name!r} reads {read[0]}, not its {op.in_shape}")
        op = dataclasses.replace(op, in_shape=read[0], kernel=read[0][:2])
    return op


@dataclasses.dataclass(frozen=True)
class Slots:
    """Where a shared engine keeps its tensors, in banks of the activation buffer: per layer
    the banks it reads (in its inputs' order) and the one it writes, and how many banks."""

    reads: tuple
    writes: tuple
    count: int


def buffer_slots(layers):
    """The :class:`Slots` of a chain: its input is loaded into bank 0; each layer writes the
    lowest bank holding nothing that it or a later layer reads (a plain chain takes two, in
    turn; a residual block three)."""
    last_read = {tensor: index for index, layer in enumerate(layers) for tensor in layer.inputs}
    bank_of = {layers[0].inputs[0]: 0}
    reads, writes = [], []
    for index, layer in enumerate(layers):
        busy = {bank_of[tensor] for tensor in layer.inputs} | {
            bank for tensor, bank in bank_of.items() if last_read.get(tensor, -1) > index}
        writes.append(min(set(range(len(busy) + 1)) - busy))
        reads.append(tuple(bank_of[tensor] for tensor in layer.inputs))
        bank_of[layer.name] = writes[-1]
    return Slots(tuple(reads), tuple(writes), max(writes) + 1)


def chain_rounding(layers):
    """The rounding of the chain's requant: its layers' (a max pool, which does not round,
    takes any)."""
    return next((layer.rounding for layer in layers if layer.op != "maxpool"),
                layers[0].rounding)


def code_bits(layers):
    """Bits of the codes the shared engine's buffer holds: signed, as wide as every code of
    the chain's input and outputs needs (an unsigned code takes one bit more)."""
    quants = [layers[0].input] + [layer.output for layer in layers]
    return max(quant.bits + (not quant.signed) for quant in quants)


# A chain's result of at most this many codes, wider than every code its layers read, is
# kept in registers of its own (:func:`result_apart`), so it does not widen the banks.
RESULT_CODES = 64


def result_apart(layers):
    """Whether the chain's result goes to registers of its own, not to a bank: its codes are
    wider than every code the layers read and there are at most :data:`RESULT_CODES` of them
    (a classifier's logits after narrow hidden layers)."""
    read = _read_bits(layers)
    return (layers[-1].output.bits > read
            and math.prod(SharedOp.of(layers[-1]).out_shape) <= RESULT_CODES)


def stored_bits(layers):
    """Bits a code takes in the shared engine's buffer: the widest code the layers read, and
    the result's unless it is kept apart (:func:`result_apart`); each is stored at its own
    width (the engine extends it by its layer's signedness as it reads it)."""
    read = _read_bits(layers)
    return read if result_apart(layers) else max(read, layers[-1].output.bits)


def _read_bits(layers):
    """The widest code the layers read."""
    return max(quant.bits for op in map(SharedOp.of, layers) for quant in op.inputs)


def weight_bits(layers):
    """The chain's widest weights in the ROM (a pool's unit weight takes 2 bits)."""
    return max(getattr(layer, "weight_bits", 2) for layer in layers)


def operand_bits(layers):
    """The width of the multipliers' weight operand: the ROM's weights, or an add's
    multipliers where wider (unsigned, so one bit more)."""
    return max([weight_bits(layers)] + [max(SharedOp.of(layer).add_weights).bit_length() + 1
                                        for layer in layers if layer.op == "add"])


@dataclasses.dataclass(frozen=True, eq=False)
class Chain:
    """Layers the shared engine computes one after another (see :func:`shared_chains`): the
    first reading the chain's input, each later one that input or outputs of layers before it,
    only the last one's output read outside; as one planned unit."""

    layers: tuple

    op = "chain"
    name = property(lambda self: self.layers[-1].name)
    inputs = property(lambda self: self.layers[0].inputs)
    input = property(lambda self: self.layers[0].input)
    output = property(lambda self: self.layers[-1].output)
    in_features = property(lambda self: math.prod(self.ops[0].in_shape))
    out_features = property(lambda self: math.prod(self.ops[-1].out_shape))
    macs = property(lambda self: sum(layer.macs for layer in self.layers))
    weight_bits = property(lambda self: weight_bits(self.layers))
    operand_bits = property(lambda self: operand_bits(self.layers))
    code_bits = property(lambda self: code_bits(self.layers))
    stored_bits = property(lambda self: stored_bits(self.layers))
    result_apart = property(lambda self: result_apart(self.layers))
    act_bits = property(lambda self: max(layer.act_bits for layer in self.layers))
    acc_bits = property(lambda self: max(op.sum_bound for op in self.ops).bit_length() + 1)
    multiplier_bits = property(lambda self: max(
        max(int(np.max(op.multiplier)), 1).bit_length() for op in self.ops))
    rounding = property(lambda self: chain_rounding(self.layers))
    relu = property(lambda self: self.layers[-1].relu)
    out_shape = property(lambda self: layer_shape(self.layers[-1]))

    @functools.cached_property
    def ops(self):
        """:func:`shared_ops` of the layers (computed once)."""
        return shared_ops(self.layers)

    @functools.cached_property
    def slots(self):
        """:func:`buffer_slots` of the layers (computed once)."""
        return buffer_slots(self.layers)

    def groups(self, pe):
        """Output words per layer (pixels × groups of ``pe`` channels)."""
        return [op.pixels * op.groups(pe) for op in self.ops]

    def steps(self, pe):
        """Compute steps per frame on ``pe`` multipliers, idle ones included."""
        return sum(op.steps(pe) for op in self.ops)

    def active_steps(self, pe):
        """Steps per frame that read and multiply, on ``pe`` multipliers."""
        return sum(op.active_steps(pe) for op in self.ops)

    def weight_words(self, pe):
        """Words of the weight ROM on ``pe`` multipliers."""
        return sum(op.weight_count(pe) for op in self.ops)

    def bank_words(self, pe):
        """Words of ``pe`` codes in each bank of the activation buffer (:attr:`slots`)."""
        first = self.ops[0]
        return max([first.in_shape[0] * first.in_shape[1] * math.ceil(first.in_shape[2] / pe)]
                   + self.groups(pe))

    def describe(self):
        return " → ".join(layer.name for layer in self.layers)


# The ops a shared engine computes; ``make_plan``'s fallback first shares only the dense ones.
SHARED_OPS = ("dense", "conv", "avgpool", "global_avgpool", "maxpool", "add")


def _shareable(layer, ops):
    return layer.op in ops and layer.rounding is not Rounding.FLOAT32_ORT


def _joins(layer, current):
    """Whether ``layer`` can continue the run of layers ``current``: it reads only the run's
    input and outputs, and rounds like the run (a max pool, which does not round, joins any)."""
    known = {current[0].inputs[0]} | {previous.name for previous in current}
    rounds = [previous.rounding for previous in current if previous.op != "maxpool"]
    return (set(layer.inputs) <= known and layer.name not in known
            and (layer.op == "maxpool" or not rounds or layer.rounding is rounds[0]))


def _closed(run, qgraph):
    """How many of the run's first layers form a chain: the most whose outputs but the last's
    no layer after them reads."""
    inside = set()
    for index in range(len(run), 1, -1):
        inside = {layer.name for layer in run[:index]}
        if all({consumer.name for consumer in qgraph.consumers(layer.name)} <= inside
               for layer in run[:index - 1]):
            return index
    return 1


def shared_chains(qgraph, ops=("dense",), first=None):
    """The chains of ``qgraph``'s layers of ``ops`` (default dense; :data:`SHARED_OPS` for
    all a shared engine computes), from layer ``first`` on (default: all; see
    :func:`tail_cuts`), each as a :class:`Chain`: maximal runs of such layers, in
    the graph's order, whose first reads one tensor and each later one that tensor or outputs
    of the run (a residual block: its convolutions and the add of the skip), and whose outputs
    but the last nothing outside reads, with one rounding mode; layers with onnxruntime's
    float32 rounding stay out."""
    chains, layers, run = [], list(qgraph.layers), []
    index = 0 if first is None else [layer.name for layer in layers].index(first)
    while index < len(layers) or run:
        layer = layers[index] if index < len(layers) else None
        if run and layer is not None and _shareable(layer, ops) and _joins(layer, run):
            run.append(layer)
            index += 1
            continue
        if run:  # close the run; the layers after its chain are looked at again
            length = _closed(run, qgraph)
            chains.append(Chain(tuple(run[:length])))
            index -= len(run) - length
            run = []
            continue
        if _shareable(layer, ops) and len(layer.inputs) == 1:
            run = [layer]
        index += 1
    return chains


def tail_cuts(qgraph):
    """The layers at which ``qgraph`` can be cut in two, in the graph's order: those whose
    input is the one tensor the layers before them pass to the layers after (in a ResNet the
    first layer of each residual block). From such a layer on, the layers can go on shared
    engines while those before keep their dataflow engines (``make_plan``'s fallback)."""
    layers = list(qgraph.layers)
    cuts = []
    for index in range(1, len(layers)):
        before = {qgraph.input_name} | {layer.name for layer in layers[:index]}
        passed = {tensor for layer in layers[index:] for tensor in layer.inputs
                  if tensor in before}
        if len(layers[index].inputs) == 1 and passed == set(layers[index].inputs):
            cuts.append(layers[index].name)
    return cuts


def check_cut(qgraph, name):
    """``name`` if the layers from it on can be shared (one of :func:`tail_cuts`), else
    :class:`HwgenError` with the cuts."""
    cuts = tail_cuts(qgraph)
    if name not in cuts:
        where = (f"at {', '.join(map(repr, cuts))}" if cuts
                 else "nowhere (no layer reads the one tensor the layers before it pass on)")
        raise HwgenError(f"shared_from={name!r}: {qgraph.name} can be cut for a shared tail "
                         f"{where}; a cut is a layer that reads the one tensor the layers "
                         "before it pass to those after")
    return name


def _sharings(qgraph, fallback):
    """The ways the board search shares layers, in the order it tries them, as ``(ops, first
    layer, what)`` for :func:`plan_units`: the dense layers (only as a ``fallback``, when no
    dataflow plan fits), the layers from each of :func:`tail_cuts` on (the latest first),
    every layer."""
    return ([(("dense",), None, "the dense layers")] if fallback else []) + [
        (SHARED_OPS, cut, f"the layers from {cut} on") for cut in reversed(tail_cuts(qgraph))
    ] + [(SHARED_OPS, None, "the layers")]


def share_for_board(qgraph, folding, plan_with, dataflow, failure, board_name, progress):
    """``make_plan``'s board search over shared engines (``plan_with(ops, first=...)`` plans
    one way of :func:`_sharings`). Without a ``dataflow`` plan that fits: the dense layers
    shared, then the layers from a cut of the graph on (a tail; the layers before keep their
    engines), then every layer a shared engine computes. With one: the tails and the whole
    whose shared engines could be faster. Of the plans that fit, the fastest; none fitting,
    the last :class:`DoesNotFit` (or ``failure``, the dataflow plan's). Chains that would
    compute a layer ``folding`` pins are not shared."""
    tried, fits = set(), [dataflow] if dataflow is not None else []
    for ops, first, what in _sharings(qgraph, fallback=not fits):
        found = shared_chains(qgraph, ops, first)
        if any(layer.name in folding for chain in found for layer in chain.layers[:-1]):
            continue  # the user pinned a layer such an engine would compute
        chains = [chain for chain in found if chain.layers[-1].name not in folding]
        described = tuple(chain.describe() for chain in chains)
        if not chains or described in tried:
            continue
        tried.add(described)
        best = min((plan.initiation_interval for plan in fits), default=None)
        if best is not None and max(map(fastest_cycles, chains)) >= best:
            continue  # its shared engines cannot beat the plan so far
        if progress:
            progress((f"no plan fits {board_name} yet" if best is None else
                      f"the best plan for {board_name} so far takes {best} cycles")
                     + f": {what} ({'; '.join(described)}) go on shared sequential engines")
        try:
            plan = plan_with(ops, first=first)
        except DoesNotFit as error:
            failure = error
            continue
        if ops == ("dense",):
            return plan  # the convolutions keep their dataflow engines
        fits.append(plan)
    if fits:
        return min(fits, key=lambda plan: plan.initiation_interval)
    raise failure


def fastest_cycles(chain):
    """The fewest cycles per frame a shared engine over ``chain`` takes at any ``pe``."""
    return min(sequential_cycles(chain, pe, kind) for pe in sequential_pes(chain)
               for kind in ("dsp", "lut"))


def largest_pe(ops):
    """The most multipliers an engine over ``ops`` takes: as many as its widest layer's
    output channels (more would only idle), at most :data:`MAX_PE`. A window of fewer steps
    than ``pe`` takes idle ones (:meth:`SharedOp.loop`)."""
    return min(max(op.out_channels for op in ops), MAX_PE)


def sequential_pes(chain):
    """The ``pe`` values a chain's engine can take: 1 up to :func:`largest_pe`."""
    return list(range(1, largest_pe(chain.ops) + 1))


def sequential_cycles(chain, pe, multiplier="dsp"):
    """Cycles per frame of the shared engine (:attr:`SequentialEngine.cycles_per_frame`):
    load, compute, a drain per layer, output."""
    from .hw.sequential import drain_cycles
    return (chain.in_features + sum(op.span(pe) for op in chain.ops)
            + len(chain.layers) * drain_cycles(chain.layers, pe, multiplier)
            + chain.out_features + 1)


def check_sequential_pe(chain, pe):
    """``pe`` if the chain's engine can take it, else :class:`HwgenError` with the range."""
    legal = sequential_pes(chain)
    if pe not in legal:
        raise HwgenError(f"layer {chain.name!r}: a sequential engine over {chain.describe()} "
                         f"takes pe from 1 to {legal[-1]}, not {pe}")
    return pe


def plan_units(qgraph, folding, ops, only_pinned=False, first=None):
    """The layers to plan: ``qgraph``'s, with each chain of layers of ``ops`` from layer
    ``first`` on (:func:`shared_chains`) whose layers ``folding`` does not pin otherwise as
    one :class:`Chain`, where its last layer was (``only_pinned``: only the chains whose last
    layer is pinned ``"sequential…"``)."""
    if not ops:
        return list(qgraph.layers)
    chains = {}
    for chain in shared_chains(qgraph, ops, first):
        pin = str(folding.get(chain.name, ""))
        if only_pinned and not pin.startswith("sequential"):
            continue
        inner = [layer.name for layer in chain.layers[:-1] if layer.name in folding]
        if inner:
            raise HwgenError(f"folding pins {', '.join(map(repr, inner))}, which the shared "
                             f"sequential engine over {chain.describe()} computes: pin that "
                             f"engine by its last layer ('{chain.name}=sequential:8'), or "
                             "plan without --engine sequential")
        if chain.name in folding and not str(folding[chain.name]).startswith("sequential"):
            continue  # the user pinned the chain's last layer to a dataflow engine
        chains[chain.name] = chain
    members = {layer.name for chain in chains.values() for layer in chain.layers}
    return [chains.get(layer.name, layer) for layer in qgraph.layers
            if layer.name not in members or layer.name in chains]
