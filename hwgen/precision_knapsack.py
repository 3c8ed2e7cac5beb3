"""The cost side of automatic bit allocation (:mod:`hwgen.precision`): what a choice of bits
costs (bit-operations, weight memory), the budgets a user states, and the exact multiple-choice
knapsack solver whose front trades cost against accuracy drop."""

import dataclasses
import math
import re

import numpy as np

from .errors import HwgenError

__all__ = ["Budget", "KnapsackFront", "bit_ops", "weight_memory_bits", "parse_budget",
           "knapsack_front", "MAX_FRONT"]

_WEIGHTED_OPS = ("dense", "conv")
_COSTS = ("bops", "weight_bits")


# -- costs ----------------------------------------------------------------------------------------

def _weighted_layers(qgraph):
    return [layer for layer in qgraph.layers if layer.op in _WEIGHTED_OPS]


def bit_ops(qgraph):
    """Bit-operations per inference: ``Σ MACs × weight_bits × act_bits`` over dense and conv
    layers (pools and adds multiply nothing)."""
    return sum(layer.macs * layer.weight_bits * layer.act_bits
               for layer in _weighted_layers(qgraph))


def weight_memory_bits(qgraph):
    """Bits of weight storage: ``Σ weights × weight_bits`` over dense and conv layers (biases,
    multipliers and shifts not counted)."""
    return sum(layer.weight.size * layer.weight_bits for layer in _weighted_layers(qgraph))


def _mean_weight_bits(layers):
    """``(weighted by number of weights, plain mean over layers)`` of ``(weights, bits)``."""
    weights = sum(count for count, _ in layers)
    weighted = sum(count * bits for count, bits in layers) / weights
    return weighted, sum(bits for _, bits in layers) / len(layers)


# -- budgets --------------------------------------------------------------------------------------

_BUDGET = re.compile(r"(?P<kind>[a-z_]+)\s*=\s*(?P<number>\d+(?:\.\d*)?|\.\d+)"
                     r"\s*(?P<unit>[a-z%]*)", re.IGNORECASE)
_DECIMAL_UNITS = {"": 1, "k": 10 ** 3, "m": 10 ** 6, "g": 10 ** 9}
_BYTE_UNITS = {"b": 8, "kb": 8 * 10 ** 3, "mb": 8 * 10 ** 6, "kib": 8 << 10, "mib": 8 << 20}
_BUDGET_SYNTAX = ("a budget looks like 'bops=50%' (of uniform w8a8), 'bops=1.2M', "
                  "'weights=16KiB' (bytes: B, kB, KiB, MB, MiB, or %) or 'weight_bits=100000'")


@dataclasses.dataclass(frozen=True)
class Budget:
    """A resource budget: ``kind`` is ``"bops"`` (bit-operations) or ``"weight_bits"`` (weight
    memory); either an absolute ``amount`` or a ``fraction`` of the uniform base bits' cost."""

    kind: str
    amount: float = None
    fraction: float = None
    text: str = ""

    def __post_init__(self):
        if self.kind not in _COSTS:
            raise HwgenError(f"a budget's kind must be one of {', '.join(_COSTS)}, not "
                             f"{self.kind!r}")
        if (self.amount is None) == (self.fraction is None):
            raise HwgenError("a budget has either an amount or a fraction of the base cost")
        if not (self.amount if self.fraction is None else self.fraction) > 0:
            raise HwgenError(f"budget {self} must be positive")

    def limit(self, base_cost):
        """The budget in cost units, given the cost of uniform base bits."""
        if self.fraction is not None:
            return math.floor(self.fraction * base_cost)
        return math.floor(self.amount)

    def __str__(self):
        return self.text or (f"{self.kind}={self.fraction:.0%}" if self.fraction is not None
                             else f"{self.kind}={self.amount:g}")


def parse_budget(spec):
    """A :class:`Budget` from text such as ``"bops=50%"`` (half of uniform w8a8's bit-ops),
    ``"bops=1.2M"`` (k, M, G: decimal), ``"weights=16KiB"`` (weight memory in bytes: B, kB,
    KiB, MB, MiB) or ``"weight_bits=100000"``; a :class:`Budget` is returned as it is."""
    if isinstance(spec, Budget):
        return spec
    if not isinstance(spec, str):
        raise HwgenError(f"{_BUDGET_SYNTAX}, not {spec!r}")
    match = _BUDGET.fullmatch(spec.strip())
    if not match:
        raise HwgenError(f"{_BUDGET_SYNTAX}, not {spec!r}")
    kind, unit = match["kind"].lower(), match["unit"].lower()
    number = float(match["number"])
    if kind not in ("bops", "weights", "weight_bits"):
        raise HwgenError(f"budget {spec!r}: the resource must be bops, weights or weight_bits, "
                         f"not {match['kind']!r}")
    if number <= 0:
        raise HwgenError(f"budget {spec!r} must be positive")
    if unit == "%":
        return Budget("bops" if kind == "bops" else "weight_bits", fraction=number / 100,
                      text=spec.strip())
    units = _BYTE_UNITS if kind == "weights" else _DECIMAL_UNITS
    if unit not in units:
        names = ", ".join(repr(u) for u in units if u) + (" or none" if "" in units else "")
        raise HwgenError(f"budget {spec!r}: the unit of {kind} must be %, {names}, "
                         f"not {match['unit']!r}")
    return Budget("bops" if kind == "bops" else "weight_bits", amount=number * units[unit],
                  text=spec.strip())


# -- the solver -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class KnapsackFront:
    """Every non-dominated ``(total cost, total drop)`` of a multiple-choice knapsack, cost
    ascending and drop strictly descending, with the choice that makes each.

    ``cost``, ``drop``, ``tiebreak``: arrays over the front (sums over the layers); ``exact``:
    false when the front had to be thinned (see :func:`knapsack_front`).
    """

    cost: np.ndarray
    drop: np.ndarray
    tiebreak: np.ndarray
    exact: bool
    _steps: tuple  # per layer: (parent index into the previous front, option index), arrays

    def __len__(self):
        return len(self.cost)

    def picks(self, index):
        """The option index of every layer for front point ``index``."""
        picks = []
        for parents, options in reversed(self._steps):
            picks.append(int(options[index]))
            index = parents[index]
        return tuple(reversed(picks))

    def cheapest_within(self, max_drop):
        """Index of the least-cost point whose drop is at most ``max_drop``, or ``None``."""
        feasible = np.flatnonzero(self.drop <= max_drop)
        return int(feasible[0]) if len(feasible) else None

    def best_within(self, budget):
        """Index of the least-drop point whose cost is at most ``budget``, or ``None``."""
        feasible = np.flatnonzero(self.cost <= budget)
        return int(feasible[-1]) if len(feasible) else None


MAX_FRONT = 100_000


def knapsack_front(costs, drops, tiebreak=None, *, max_points=MAX_FRONT):
    """Solve a multiple-choice knapsack exactly: the Pareto front of all combinations.

    ``costs[i][j]``, ``drops[i][j]`` (and optionally ``tiebreak[i][j]``, integers) belong to
    option ``j`` of layer ``i``; a combination takes one option per layer and sums them. Costs
    are integers, drops integers or floats.

    Dynamic programming over layers keeps, after each layer, only the partial sums that no other
    partial sum beats in both cost and drop (of equal pairs, the one with the smaller tiebreak).
    This is exact: the remaining layers add the same amounts whichever partial sum they extend,
    so a dominated partial sum can never complete into something the dominating one cannot
    match. The final front therefore holds an optimum of "least cost within a drop" and of
    "least drop within a cost" for every limit, and nothing else. The work is
    ``O(layers · front · options · log)``; the front has at most one point per distinct cost
    sum and, with integer drops, per distinct drop sum.

    Should a front grow beyond ``max_points``, it is thinned to the cheapest point of each of
    ``max_points`` equal slices of its drop range, and the result says ``exact=False``.
    """
    if len(costs) == 0 or len(costs) != len(drops):
        raise HwgenError("the knapsack needs one list of costs and one of drops per layer")
    if tiebreak is None:
        tiebreak = [[0] * len(layer) for layer in costs]
    front_cost = np.zeros(1, dtype=np.int64)
    front_drop = np.zeros(1, dtype=np.result_type(*[np.asarray(d) for d in drops]))
    front_tie = np.zeros(1, dtype=np.int64)
    steps, exact = [], True
    for layer_cost, layer_drop, layer_tie in zip(costs, drops, tiebreak):
        layer_cost = np.asarray(layer_cost, dtype=np.int64)
        if len(layer_cost) == 0 or len(layer_cost) != len(layer_drop):
            raise HwgenError("every layer needs at least one option, each with a cost and a drop")
        cost = (front_cost[:, None] + layer_cost[None, :]).ravel()
        drop = (front_drop[:, None] + np.asarray(layer_drop)[None, :]).ravel()
        tie = (front_tie[:, None] + np.asarray(layer_tie, dtype=np.int64)[None, :]).ravel()
        order = np.lexsort((tie, drop, cost))           # by cost, then drop, then tiebreak
        sorted_drop = drop[order]
        keep = np.ones(len(order), dtype=bool)
        # A point survives when its drop is below that of every cheaper (or equal) point.
        keep[1:] = sorted_drop[1:] < np.minimum.accumulate(sorted_drop)[:-1]
        kept = order[keep]
        if len(kept) > max_points:
            kept, exact = _thin(kept, drop[kept], max_points), False
        parents, options = np.divmod(kept, len(layer_cost))
        steps.append((parents, options))
        front_cost, front_drop, front_tie = cost[kept], drop[kept], tie[kept]
    return KnapsackFront(front_cost, front_drop, front_tie, exact, tuple(steps))


def _thin(kept, drop, max_points):
    """The cheapest point (the first, along a front) of each of ``max_points`` drop slices."""
    low, high = float(drop.min()), float(drop.max())
    slices = np.floor((drop - low) / ((high - low) / max_points)).astype(np.int64)
    slices = np.minimum(slices, max_points - 1)
    _, first = np.unique(slices, return_index=True)
    return kept[np.sort(first)]
