"""Accuracy against cost for a sweep of budgets: :func:`pareto` measures the bit-allocation
solver's answer for each budget with the integer reference and returns a :class:`ParetoFront`,
whose :meth:`~ParetoFront.table` is a pandas DataFrame (:meth:`~ParetoFront.text` the plain
text) and which renders as an HTML table in a notebook."""

import dataclasses
import math

import numpy as np

from .errors import HwgenError
from .precision import (DEFAULT_CHOICES, Sensitivity, _changes, _check_cost, _knapsack,
                        _measure_point, _start)
from .precision_knapsack import _mean_weight_bits, _weighted_layers, bit_ops, weight_memory_bits

__all__ = ["ParetoPoint", "ParetoFront", "pareto"]


@dataclasses.dataclass(frozen=True)
class ParetoPoint:
    """One measured solver answer: ``bits`` (as :func:`hwgen.quantize` takes them), its costs,
    its measured ``accuracy`` (percent), and whether another point beats it in both cost and
    accuracy (``dominated``)."""

    bits: dict
    bit_ops: int
    weight_memory_bits: int
    accuracy: float
    mean_weight_bits: float
    dominated: bool

    def label(self, names):
        """``"w4a6 w3a5 …"`` for the layers ``names``."""
        return " ".join(f"w{self.bits[n]['w']}a{self.bits[n]['a']}" for n in names)


@dataclasses.dataclass(frozen=True)
class ParetoFront:
    """Measured accuracy against cost for a sweep of budgets (:func:`pareto`), cost ascending.

    ``cost`` is ``"bops"`` or ``"weight_bits"``: what the budgets limited. ``float_accuracy``
    and ``base_accuracy`` (uniform base bits) are the references; ``layers`` the dense/conv
    layer names in the order of the table's bits column.
    """

    graph_name: str
    metric: str
    samples: int
    cost: str
    base_bits: int
    float_accuracy: float
    base_accuracy: float
    base_bit_ops: int
    base_weight_memory_bits: int
    layers: tuple
    points: tuple
    sensitivity: Sensitivity = dataclasses.field(repr=False, compare=False, default=None)

    def table(self):
        """One row per point as a pandas DataFrame: costs, their share of uniform base bits,
        mean weight bits (weighted by weights), measured accuracy, whether it is dominated, and
        the bits of every dense/conv layer (a column each)."""
        from .notebook import frame

        base_cost = self.base_bit_ops if self.cost == "bops" else self.base_weight_memory_bits
        rows = []
        for point in self.points:
            cost = point.bit_ops if self.cost == "bops" else point.weight_memory_bits
            row = {"bit_ops": point.bit_ops, "weight_bits": point.weight_memory_bits,
                   "cost_percent": 100 * cost / base_cost,
                   "mean_weight_bits": point.mean_weight_bits, "accuracy": point.accuracy,
                   "dominated": point.dominated}
            row.update({name: f"w{point.bits[name]['w']}a{point.bits[name]['a']}"
                        for name in self.layers})
            rows.append(row)
        return frame(rows)

    def _title(self):
        uniform = f"uniform w{self.base_bits}a{self.base_bits}"
        return (f"Pareto front of {self.graph_name!r} ({self.cost} budgets): {self.metric} on "
                f"{self.samples} samples, measured with the integer reference; float "
                f"{self.float_accuracy:.2f} %, {uniform} {self.base_accuracy:.2f} %")

    def _repr_html_(self):
        from .notebook import frame_html
        return frame_html(self.table(), self._title())

    def text(self):
        """One line per point: costs, mean weight bits (weighted by weights), accuracy, bits."""
        uniform = f"uniform w{self.base_bits}a{self.base_bits}"
        base_cost = self.base_bit_ops if self.cost == "bops" else self.base_weight_memory_bits
        lines = [self._title(),
                 f"  {'bit-ops':>11} {'weight bits':>11} {'% ' + uniform:>16} {'mean w':>6} "
                 f"{'accuracy':>8}  bits ({' '.join(self.layers)})"]
        for point in self.points:
            cost = point.bit_ops if self.cost == "bops" else point.weight_memory_bits
            lines.append(f"{'x' if point.dominated else ' '} {point.bit_ops:>11,} "
                         f"{point.weight_memory_bits:>11,} {100 * cost / base_cost:>16.1f} "
                         f"{point.mean_weight_bits:>6.2f} {point.accuracy:>7.2f}%  "
                         f"{point.label(self.layers)}")
        if any(point.dominated for point in self.points):
            lines.append("  x: another point has lower cost and at least its accuracy, or "
                         "higher accuracy at no more cost")
        return "\n".join(lines)

    __repr__ = __str__ = text

    def to_json(self):
        data = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if field.name not in ("sensitivity", "points", "layers")}
        data["layers"] = list(self.layers)
        data["points"] = [dataclasses.asdict(point) for point in self.points]
        return data

    def plot(self, ax=None):
        """Plot measured accuracy against bit-operations (or weight memory) on matplotlib axes
        ``ax`` (new ones by default); returns the axes. Needs matplotlib."""
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise HwgenError("plotting the Pareto front needs matplotlib: pip install "
                             "matplotlib") from None
        if ax is None:
            _, ax = plt.subplots()
        key, base = (("bit_ops", self.base_bit_ops) if self.cost == "bops"
                     else ("weight_memory_bits", self.base_weight_memory_bits))
        best = [p for p in self.points if not p.dominated]
        beaten = [p for p in self.points if p.dominated]
        ax.plot([getattr(p, key) for p in best], [p.accuracy for p in best], "o-",
                label="mixed precision (measured)")
        if beaten:
            ax.plot([getattr(p, key) for p in beaten], [p.accuracy for p in beaten], "x",
                    color="grey", label="dominated")
        ax.plot([base], [self.base_accuracy], "s",
                label=f"uniform w{self.base_bits}a{self.base_bits}")
        ax.axhline(self.float_accuracy, linestyle="--", color="black", label="float")
        ax.set_xlabel("bit-operations per inference" if self.cost == "bops"
                      else "weight memory (bits)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{self.graph_name}: {self.metric}")
        ax.legend()
        return ax


def _mark_dominated(rows):
    """``rows`` of ``(cost, accuracy, …)``: whether each is beaten in both by another."""
    return [any(other[0] <= row[0] and other[1] >= row[1] and other[:2] != row[:2]
                for other in rows) for row in rows]


def pareto(graph, x, y=None, *, points=12, cost="bops", calibration=None,
           weight_choices=DEFAULT_CHOICES, act_choices=DEFAULT_CHOICES, base_bits=8,
           output_bits=8, calibration_method="minmax", percentile=99.99,
           weight_granularity="channel", metric="auto", tolerance=0.05, progress=None):
    """Accuracy against cost: the solver's least-noise answer for ``points`` budgets spaced
    geometrically from the cheapest choice to uniform base bits, each measured with the integer
    reference (answers found twice are measured once).

    Parameters as :func:`choose_bits`; ``cost`` is what the budgets limit (``"bops"`` or
    ``"weight_bits"``). Returns a :class:`ParetoFront`.
    """
    _check_cost(cost)
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise HwgenError(f"points must be an integer ≥ 2, not {points!r}")
    evaluator, sensitivity, say = _start(
        graph, x, y, calibration, progress, weight_choices, act_choices, base_bits, output_bits,
        calibration_method, percentile, weight_granularity, metric, tolerance)
    front = _knapsack(sensitivity, cost)
    base_cost = (sensitivity.base_bit_ops if cost == "bops"
                 else sensitivity.base_weight_memory_bits)
    # Geometric spacing: the interesting trade-offs sit at a small fraction of the base cost.
    budgets = np.geomspace(int(front.cost[0]), max(base_cost, int(front.cost[0])), points)
    indices = sorted({front.best_within(math.floor(budget)) for budget in budgets})
    answers = [_measure_point(evaluator, sensitivity, front, index) for index in indices]
    say(f"Pareto front: {len(answers)} answers measured")
    rows = []
    for answer in answers:
        qgraph = answer.measurement.qgraph
        layers = _weighted_layers(qgraph)
        rows.append((bit_ops(qgraph) if cost == "bops" else weight_memory_bits(qgraph),
                     evaluator.percent(answer.measurement.correct), answer, qgraph, layers))
    flags = _mark_dominated(rows)
    pareto_points = tuple(
        ParetoPoint(bits=evaluator.config(_changes(sensitivity, answer.picks)),
                    bit_ops=bit_ops(qgraph), weight_memory_bits=weight_memory_bits(qgraph),
                    accuracy=accuracy, dominated=dominated,
                    mean_weight_bits=_mean_weight_bits(
                        [(layer.weight.size, layer.weight_bits) for layer in layers])[0])
        for (_, accuracy, answer, qgraph, layers), dominated in zip(rows, flags))
    return ParetoFront(
        graph_name=graph.name, metric=sensitivity.metric, samples=sensitivity.samples,
        cost=cost, base_bits=sensitivity.settings.base_bits,
        float_accuracy=sensitivity.float_accuracy,
        base_accuracy=sensitivity.base_accuracy, base_bit_ops=sensitivity.base_bit_ops,
        base_weight_memory_bits=sensitivity.base_weight_memory_bits,
        layers=tuple(layer.name for layer in sensitivity.layers), points=pareto_points,
        sensitivity=sensitivity)
