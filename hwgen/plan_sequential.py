"""The layer-sequential engine in the plan: chains of dense layers that share one array of
MACs (:mod:`hwgen.hw.sequential`), for boards too small for an engine per layer.

``make_plan(engine="sequential")`` (``hwgen build --engine sequential``) puts every chain of
dense layers (:func:`dense_chains`) on one shared engine each, the other layers on their
dataflow engines; with a ``board`` and the default ``engine=None`` the planner does so by
itself when the dataflow plan does not fit. In the plan a chain is one :class:`Chain` (named
after its last layer, reading its first layer's input), planned as one
:class:`~hwgen.plan.LayerPlan` of engine ``"sequential"`` whose folding is ``pe × 1``.
"""

import dataclasses
import math

from .errors import HwgenError
from .reference import Rounding

__all__ = ["Chain", "dense_chains", "plan_units", "sequential_cycles", "sequential_pes"]

# The most multipliers the board search gives a shared engine: beyond, a dataflow plan of the
# same multipliers is the better design.
MAX_PE = 64


@dataclasses.dataclass(frozen=True, eq=False)
class Chain:
    """Dense layers, each reading the one before and read by nothing else, as one planned
    unit: the shared engine's layers."""

    layers: tuple

    op = "chain"
    name = property(lambda self: self.layers[-1].name)
    inputs = property(lambda self: self.layers[0].inputs)
    input = property(lambda self: self.layers[0].input)
    output = property(lambda self: self.layers[-1].output)
    in_features = property(lambda self: self.layers[0].in_features)
    out_features = property(lambda self: self.layers[-1].out_features)
    macs = property(lambda self: sum(layer.macs for layer in self.layers))
    weight_bits = property(lambda self: max(layer.weight_bits for layer in self.layers))
    act_bits = property(lambda self: max(layer.act_bits for layer in self.layers))
    acc_bits = property(lambda self: max(layer.acc_bits for layer in self.layers))
    multiplier_bits = property(lambda self: max(layer.multiplier_bits for layer in self.layers))
    rounding = property(lambda self: self.layers[0].rounding)
    relu = property(lambda self: self.layers[-1].relu)
    out_shape = property(lambda self: (self.out_features,))

    @property
    def weights(self):
        return sum(layer.weight.size for layer in self.layers)

    @property
    def code_bits(self):
        """Width of the shared code shape (:func:`hwgen.hw.sequential.shared_code_shape`)."""
        quants = [self.input] + [layer.output for layer in self.layers]
        return max(quant.bits + (not quant.signed) for quant in quants)

    def groups(self, pe):
        return [math.ceil(layer.out_features / pe) for layer in self.layers]

    def steps(self, pe):
        """Compute steps per frame on ``pe`` multipliers: ``Σ ⌈out/pe⌉ · in``."""
        return sum(groups * layer.in_features
                   for groups, layer in zip(self.groups(pe), self.layers))

    def bank_words(self, pe):
        """Words of ``pe`` codes in each of the two activation banks."""
        return max([math.ceil(self.in_features / pe)] + self.groups(pe))

    def describe(self):
        return " → ".join(layer.name for layer in self.layers)


def _joins(layer, previous, qgraph):
    """Whether dense ``layer`` continues the chain that ends in ``previous``."""
    return (previous is not None and tuple(layer.inputs) == (previous.name,)
            and len(qgraph.consumers(previous.name)) == 1
            and layer.rounding is previous.rounding)


def dense_chains(qgraph):
    """The chains of dense layers of ``qgraph``, each as a :class:`Chain`: maximal runs of
    dense layers in which every layer reads the one before, alone, and that one feeds nothing
    else, with one rounding mode; layers with onnxruntime's float32 rounding stay out."""
    chains, current = [], []
    for layer in qgraph.layers:
        if layer.op != "dense" or layer.rounding is Rounding.FLOAT32_ORT:
            continue
        if current and _joins(layer, current[-1], qgraph):
            current.append(layer)
            continue
        if current:
            chains.append(Chain(tuple(current)))
        current = [layer]
    if current:
        chains.append(Chain(tuple(current)))
    return chains


def sequential_pes(chain):
    """The ``pe`` values a chain's engine can take: 1 up to its smallest input (the requant
    takes a group's sums one per cycle while the next computes), at most :data:`MAX_PE`."""
    return list(range(1, min(min(layer.in_features for layer in chain.layers), MAX_PE) + 1))


def sequential_cycles(chain, pe, multiplier="dsp"):
    """Cycles per frame of the shared engine (:attr:`SequentialEngine.cycles_per_frame`):
    load, compute, a drain per layer, output."""
    from .hw.sequential import drain_cycles
    return (chain.in_features + chain.steps(pe)
            + len(chain.layers) * drain_cycles(chain.layers, pe, multiplier)
            + chain.out_features + 1)


def check_sequential_pe(chain, pe):
    """``pe`` if the chain's engine can take it, else :class:`HwgenError` with the range."""
    legal = sequential_pes(chain)
    if pe not in legal:
        raise HwgenError(f"layer {chain.name!r}: a sequential engine over {chain.describe()} "
                         f"takes pe from 1 to {legal[-1]}, not {pe}")
    return pe


def plan_units(qgraph, folding, sequential):
    """The layers to plan: ``qgraph``'s, and with ``sequential`` each chain of dense layers
    (:func:`dense_chains`) whose layers ``folding`` does not pin
    otherwise as one :class:`Chain`, where its last layer was."""
    if not sequential:
        return list(qgraph.layers)
    chains = {}
    for chain in dense_chains(qgraph):
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
