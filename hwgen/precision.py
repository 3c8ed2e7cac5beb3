"""Automatic per-layer bit allocation: measured sensitivity, an exact knapsack solver, and a
check of every answer with the integer reference.

The steps (``docs/precision.md`` tells the whole story):

1. **Sensitivity.** For every dense/conv layer and every candidate ``(w, a)`` — ``w`` its weight
   bits, ``a`` the bits of the activations it consumes — the model is quantized with only that
   layer changed (all others at the base bits, ``w8a8`` by default) and run on the evaluation
   inputs with the bit-exact integer reference. Two things are recorded: the *accuracy* (see
   *Metric*) and the *output noise*, the mean squared difference between the dequantized integer
   outputs and the float model's outputs divided by the float outputs' variance (1/SQNR).
   Ranges are calibrated once (:class:`~hwgen.quantize.PreparedCalibration`) and reused.
2. **Cost** of a choice, per layer: *bit-operations* ``MACs × w × a`` (the work of a
   ``w × a``-bit multiplier array, the usual proxy for the area and energy of mixed-precision
   arithmetic) or *weight-memory bits* ``weights × w``. ``a`` is the width the layer really gets
   (a tensor read by several layers takes the largest of their ``a``).
3. **Solver.** One option per layer, additive costs and additive noise (each layer's noise above
   the base bits' noise: quantization errors of different layers are nearly independent, so
   their powers add up, which per-layer accuracy drops on a few hundred samples do not):
   a multiple-choice knapsack, solved exactly by :func:`knapsack_front` (dynamic programming over
   Pareto sets). Every point of its front is the fewest cost for its noise and the least noise
   for its cost.
4. **Check.** Each answer is quantized as a whole and measured with the integer reference. With
   an accuracy-drop limit, a bisection over the front (cheap → expensive) finds the cheapest
   answer whose *measured* accuracy meets the limit, in a bounded number of measurements; with a
   budget, the least-noise answer within the budget is measured. Results always report the
   measured accuracy, never a prediction.
5. **Confirmation** (:mod:`hwgen.precision_holdout`). :func:`choose_bits` selects on one part
   of its samples and confirms the answer on the other (or on separate data): the accuracy
   drop's upper confidence bound there must meet the limit, or the search backs off.

Metric: with labels ``y``, top-1 accuracy (``argmax`` of the output against ``y``); without,
top-1 agreement with the float model's ``argmax``. For a model with one output value (regression)
``argmax`` means nothing: the ``"close"`` metric counts a sample as correct when every output
lies within ``tolerance`` (default 5 %) of the float model's output span (max − min over the
batch) from its target (``y`` if given, else the float output). Accuracy drops are in
percentage points *below the float model's accuracy* on the same samples.
"""

import copy
import dataclasses
import itertools
import math
import numbers
import re
import time
from pathlib import Path

import numpy as np

from .errors import HwgenError
from .precision_holdout import (DEFAULT_CONFIDENCE, check_confidence, check_holdout,
                                confirmation_parts, confirmed_search)
from .qgraph import QGraph, check_bits
from .quantize import PreparedCalibration, load_calibration, quantize
from .reference import run_float, run_integer

__all__ = ["SearchSettings", "LayerOption", "LayerSensitivity", "Sensitivity", "Budget",
           "KnapsackFront", "LayerChoice", "BitChoice", "ParetoPoint", "ParetoFront",
           "measure_sensitivity", "choose_bits", "pareto", "parse_budget", "knapsack_front",
           "bit_ops", "weight_memory_bits", "METRICS"]

DEFAULT_CHOICES = (2, 3, 4, 5, 6, 7, 8)
DEFAULT_ROUNDS = 16
METRICS = ("auto", "top1", "close")
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


# -- settings, metric and evaluation ---------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """What a bit allocation searches and how it quantizes and scores (as :func:`quantize`)."""

    weight_choices: tuple = DEFAULT_CHOICES
    act_choices: tuple = DEFAULT_CHOICES
    base_bits: int = 8
    output_bits: int = 8
    calibration_method: str = "minmax"
    percentile: float = 99.99
    weight_granularity: str = "channel"
    metric: str = "auto"
    tolerance: float = 0.05

    def __post_init__(self):
        base_bits = check_bits(self.base_bits, "base bits")
        object.__setattr__(self, "base_bits", base_bits)
        for field in ("weight_choices", "act_choices"):
            choices = getattr(self, field)
            if isinstance(choices, int) or not choices:
                raise HwgenError(f"{field} must be a non-empty list of bit widths, "
                                 f"not {choices!r}")
            checked = {check_bits(bits, field) for bits in choices}
            above = sorted(bits for bits in checked if bits > base_bits)
            if above:
                raise HwgenError(f"{field} must not exceed the base bits {base_bits}, not "
                                 f"include {above}")
            # Highest first, so that of equal options the solver keeps the widest.
            object.__setattr__(self, field, tuple(sorted(checked | {base_bits}, reverse=True)))
        object.__setattr__(self, "output_bits", check_bits(self.output_bits, "output bits"))
        if self.metric not in METRICS:
            raise HwgenError(f"metric must be one of {', '.join(METRICS)}, not {self.metric!r}")
        if not self.tolerance > 0:
            raise HwgenError(f"tolerance must be positive, not {self.tolerance!r}")

    def to_json(self):
        return {field.name: (list(value) if isinstance(value, tuple) else value)
                for field in dataclasses.fields(self)
                for value in [getattr(self, field.name)]}


class _Metric:
    """Which samples a model output gets right: top-1 against labels or the float model's
    argmax, or outputs close to a target (see the module docstring)."""

    def __init__(self, kind, float_out, y, tolerance):
        samples, features = float_out.shape
        if kind == "auto":
            kind = "top1" if features > 1 else "close"
        if kind == "top1" and features < 2:
            raise HwgenError("the top1 metric needs a model with several outputs; this one has "
                             "one: use metric='close'")
        self.kind = kind
        if kind == "top1":
            self.target = float_out.argmax(axis=1) if y is None else _labels(y, samples,
                                                                            features)
            self.description = ("top-1 agreement with the float model" if y is None
                                else "top-1 accuracy against the labels")
            return
        self.target = float_out if y is None else _targets(y, samples, features)
        span = float(float_out.max() - float_out.min())
        self.limit = tolerance * (span if span > 0 else 1.0)
        self.description = (f"outputs within {tolerance:.0%} of the float output span of "
                            f"{'the float model' if y is None else 'the targets'}")

    def correct(self, outputs):
        """Per-sample booleans for real-valued outputs ``(N, features)``."""
        if self.kind == "top1":
            return outputs.argmax(axis=1) == self.target
        return np.all(np.abs(outputs - self.target) <= self.limit, axis=1)

    def subset(self, indices):
        """This metric for the samples ``indices`` only."""
        part = copy.copy(self)
        part.target = self.target[indices]
        return part

    def like(self, float_out, y, tolerance):
        """The same kind of metric for other samples; ``"close"`` keeps this limit, in output
        units, rather than one from their own span."""
        other = _Metric(self.kind, float_out, y, tolerance)
        if self.kind == "close":
            other.limit = self.limit
        return other


def _labels(y, samples, classes):
    y = np.asarray(y)
    if y.shape != (samples,):
        raise HwgenError(f"labels must have shape ({samples},), one per input, not {y.shape}")
    if not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0 or y.max() >= classes:
        raise HwgenError(f"labels must be class indices in 0..{classes - 1} (the model has "
                         f"{classes} outputs)")
    return y.astype(np.int64)


def _targets(y, samples, features):
    y = np.asarray(y, dtype=np.float64)
    if y.shape == (samples,) and features == 1:
        y = y[:, None]
    if y.shape != (samples, features):
        raise HwgenError(f"targets must have shape ({samples}, {features}), not {y.shape}")
    return y


def _load_samples(path, y):
    """Inputs from ``.npy``/``.npz`` (under ``x``) and, unless ``y`` is given, the labels an
    ``.npz`` holds under ``y``."""
    x = load_calibration(path, what="evaluation")
    if y is None and Path(path).suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            y = data["y"] if "y" in data.files else None
    return x, y


@dataclasses.dataclass(frozen=True)
class _Measurement:
    qgraph: QGraph
    correct: int
    noise: float


class _Evaluator:
    """Quantizes ``graph`` with given bits (ranges calibrated once) and counts the samples the
    integer reference gets right; remembers every configuration it measured."""

    def __init__(self, graph, x, y, calibration, settings):
        if isinstance(graph, QGraph):
            raise HwgenError(f"model {graph.name!r} is already quantized; bit allocation needs "
                             "the float model")
        self.graph, self.settings = graph, settings
        if isinstance(x, (str, Path)):
            x, y = _load_samples(x, y)
        self.x = np.asarray(x, dtype=np.float64)
        if self.x.ndim == 0 or len(self.x) == 0:
            raise HwgenError("bit allocation needs at least one evaluation input")
        self.prepared = PreparedCalibration(
            graph, self.x if calibration is None else calibration, settings.calibration_method,
            percentile=settings.percentile)
        float_out = run_float(graph, self.x)
        self.metric = _Metric(settings.metric, float_out.reshape(len(float_out), -1), y,
                              settings.tolerance)
        self.float_out = float_out.reshape(len(float_out), -1)
        self.float_correct = int(self.metric.correct(self.float_out).sum())
        self.float_power = max(float(np.var(self.float_out)), np.finfo(float).tiny)
        self._cache = {}
        base_qgraph = self._quantize(None)
        self.names = [layer.name for layer in base_qgraph.layers if layer.op != "maxpool"]
        self.weighted = [layer.name for layer in _weighted_layers(base_qgraph)]
        self.base = self.measure(self.config({}))

    @property
    def samples(self):
        return len(self.x)

    def subset(self, indices):
        """This evaluator on the samples ``indices`` only: the same ranges and metric."""
        part = copy.copy(self)
        part.x, part.float_out = self.x[indices], self.float_out[indices]
        part.metric = self.metric.subset(indices)
        part.float_correct = int(part.metric.correct(part.float_out).sum())
        part.float_power = max(float(np.var(part.float_out)), np.finfo(float).tiny)
        part._cache = {}
        part.base = part.measure(part.config({}))
        return part

    def config(self, changes):
        """Bits for every layer that takes bits: the base, with ``changes`` ``{name: (w, a)}``
        (pools and adds keep the base activation bits)."""
        base = self.settings.base_bits
        bits = {}
        for name in self.names:
            if name in self.weighted:
                weight, act = changes.get(name, (base, base))
                bits[name] = {"w": weight, "a": act}
            else:
                bits[name] = {"a": base}
        return bits

    def _quantize(self, bits):
        settings = self.settings
        if bits is None:
            bits = f"w{settings.base_bits}a{settings.base_bits}"
        return quantize(self.graph, self.prepared, bits, output_bits=settings.output_bits,
                        calibration_method=settings.calibration_method,
                        percentile=settings.percentile,
                        weight_granularity=settings.weight_granularity)

    def measure(self, bits):
        """Quantize with ``bits`` (from :meth:`config`), count the correct samples and the
        output noise. The integer run of a configuration measured before is not repeated (the
        quantization is: it is cheap, and keeping every QGraph would not be)."""
        qgraph = self._quantize(bits)
        key = tuple((name, entry.get("w"), entry["a"]) for name, entry in bits.items())
        if key not in self._cache:
            codes = run_integer(qgraph, qgraph.input_codes(self.x))
            outputs = qgraph.output.dequantize(codes)
            noise = float(np.mean((outputs - self.float_out) ** 2)) / self.float_power
            self._cache[key] = (int(self.metric.correct(outputs).sum()), noise)
        return _Measurement(qgraph, *self._cache[key])

    def percent(self, correct):
        return 100.0 * correct / self.samples


def _say(progress):
    return progress if progress is not None else (lambda line: None)


# -- sensitivity ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LayerOption:
    """One measured option of one layer, all other layers at the base bits.

    ``act_bits`` is what the layer really got (``requested_act_bits`` may be raised by another
    reader of the same tensor); ``correct`` counts the samples scored correct; ``noise`` is the
    output noise power relative to the float outputs' variance (1/SQNR); ``bit_ops`` and
    ``weight_memory_bits`` are this layer's costs.
    """

    weight_bits: int
    requested_act_bits: int
    act_bits: int
    correct: int
    noise: float
    bit_ops: int
    weight_memory_bits: int

    def __str__(self):
        return f"w{self.weight_bits}a{self.act_bits}"


@dataclasses.dataclass(frozen=True)
class LayerSensitivity:
    """The measured options of one dense/conv layer (``options``: highest bits first)."""

    name: str
    op: str
    macs: int
    weights: int
    options: tuple


@dataclasses.dataclass(frozen=True)
class Sensitivity:
    """Per-layer sensitivity to lower bits, measured with the integer reference.

    ``samples``: evaluation inputs; ``float_correct``/``base_correct``: samples the float model
    and the uniform base bits get right; ``base_noise``: the uniform base bits' output noise;
    ``layers``: one :class:`LayerSensitivity` per dense or conv layer; ``metric``: what
    "correct" means.
    """

    graph_name: str
    metric: str
    samples: int
    float_correct: int
    base_correct: int
    base_noise: float
    base_bit_ops: int
    base_weight_memory_bits: int
    settings: SearchSettings
    layers: tuple

    @property
    def float_accuracy(self):
        return 100.0 * self.float_correct / self.samples

    @property
    def base_accuracy(self):
        return 100.0 * self.base_correct / self.samples

    def drop(self, option):
        """Accuracy points ``option`` alone loses against the uniform base bits."""
        return 100.0 * (self.base_correct - option.correct) / self.samples

    def excess_noise(self, option):
        """The output noise ``option`` alone adds to the uniform base bits' (at least 0)."""
        return max(option.noise - self.base_noise, 0.0)

    def table(self):
        """Accuracy drop and output SQNR per layer and option."""
        base = self.settings.base_bits
        acts = self.settings.act_choices
        header = "".join(f"{'a' + str(a):>7}" for a in acts)
        lines = [f"sensitivity of {self.graph_name!r}: {self.metric}, {self.samples} samples; "
                 f"float {self.float_accuracy:.2f} %, uniform w{base}a{base} "
                 f"{self.base_accuracy:.2f} % (output SQNR {_decibels(self.base_noise):.1f} dB)",
                 "  when only that layer changes: accuracy drop in points against uniform "
                 f"w{base}a{base} | output SQNR in dB"]
        for layer in self.layers:
            lines.append(f"  {layer.name} ({layer.op}, {layer.macs:,} MACs, {layer.weights:,} "
                         "weights)")
            lines.append(f"      {header}   | {header}")
            by_bits = {(o.weight_bits, o.requested_act_bits): o for o in layer.options}
            for weight in self.settings.weight_choices:
                options = [by_bits[weight, act] for act in acts]
                drops = "".join(f"{self.drop(o):7.2f}" for o in options)
                sqnr = "".join(f"{_decibels(o.noise):7.1f}" for o in options)
                lines.append(f"    w{weight:<2}{drops}   | {sqnr}")
        return "\n".join(lines)

    __repr__ = table


def _decibels(noise):
    return -10 * math.log10(noise) if noise > 0 else math.inf


def _settings(weight_choices, act_choices, base_bits, output_bits, calibration_method,
              percentile, weight_granularity, metric, tolerance):
    return SearchSettings(tuple(weight_choices), tuple(act_choices), base_bits, output_bits,
                          calibration_method, percentile, weight_granularity, metric, tolerance)


def _layer_sensitivity(evaluator, name, say):
    """Measure every ``(w, a)`` candidate of layer ``name`` alone."""
    settings = evaluator.settings
    options = []
    for weight, act in itertools.product(settings.weight_choices, settings.act_choices):
        measured = evaluator.measure(evaluator.config({name: (weight, act)}))
        layer = measured.qgraph[name]
        options.append(LayerOption(
            weight_bits=weight, requested_act_bits=act, act_bits=layer.act_bits,
            correct=measured.correct, noise=measured.noise,
            bit_ops=layer.macs * layer.weight_bits * layer.act_bits,
            weight_memory_bits=layer.weight.size * layer.weight_bits))
    say(f"sensitivity of {name}: {len(options)} settings measured")
    layer = evaluator.base.qgraph[name]
    return LayerSensitivity(name=name, op=layer.op, macs=layer.macs, weights=layer.weight.size,
                            options=tuple(options))


def _measure(evaluator, say):
    settings = evaluator.settings
    say(f"bit allocation: {len(evaluator.weighted)} layers × "
        f"{len(settings.weight_choices) * len(settings.act_choices)} settings on "
        f"{evaluator.samples} samples")
    layers = tuple(_layer_sensitivity(evaluator, name, say) for name in evaluator.weighted)
    base = evaluator.base
    return Sensitivity(graph_name=evaluator.graph.name, metric=evaluator.metric.description,
                       samples=evaluator.samples, float_correct=evaluator.float_correct,
                       base_correct=base.correct, base_noise=base.noise,
                       base_bit_ops=bit_ops(base.qgraph),
                       base_weight_memory_bits=weight_memory_bits(base.qgraph),
                       settings=settings, layers=layers)


def measure_sensitivity(graph, x, y=None, *, calibration=None, weight_choices=DEFAULT_CHOICES,
                        act_choices=DEFAULT_CHOICES, base_bits=8, output_bits=8,
                        calibration_method="minmax", percentile=99.99,
                        weight_granularity="channel", metric="auto", tolerance=0.05,
                        progress=None):
    """How much each dense/conv layer alone loses at each candidate ``(w, a)``.

    Parameters
    ----------
    graph : Graph
        The float model.
    x : float array ``(N, *user_input_shape)``, or a path to ``.npy``/``.npz``
        Evaluation inputs; also the calibration inputs unless ``calibration`` is given. An
        ``.npz`` holds them under ``x`` and may hold the labels under ``y``.
    y : array, optional
        Labels ``(N,)`` (or targets ``(N, outputs)`` for the ``"close"`` metric); without them
        the float model's outputs are the reference.
    calibration : float array, optional
        Inputs whose float activations set the ranges (default ``x``).
    weight_choices, act_choices : bit widths to try, at most ``base_bits`` (default 2..8;
        ``base_bits`` is always added).
    base_bits : int
        The bits of every layer not being measured (default 8: uniform ``w8a8``).
    output_bits, calibration_method, percentile, weight_granularity : as :func:`quantize`.
    metric : ``"auto"`` (top-1 for several outputs, else ``"close"``), ``"top1"``, ``"close"``
    tolerance : float
        For ``"close"``: the allowed error as a fraction of the float output span.
    progress : callable(str), optional
        Receives a line per measured layer.

    Returns
    -------
    :class:`Sensitivity`
    """
    settings = _settings(weight_choices, act_choices, base_bits, output_bits,
                         calibration_method, percentile, weight_granularity, metric, tolerance)
    return _measure(_Evaluator(graph, x, y, calibration, settings), _say(progress))


# -- choosing bits --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LayerChoice:
    """The bits chosen for one dense/conv layer, its costs, and what that option alone lost
    (``drop_alone``, points against uniform base bits, from the sensitivity measurement)."""

    name: str
    op: str
    weight_bits: int
    act_bits: int
    macs: int
    weights: int
    bit_ops: int
    weight_memory_bits: int
    drop_alone: float


@dataclasses.dataclass(frozen=True)
class BitChoice:
    """The outcome of :func:`choose_bits`.

    ``bits`` is what :func:`hwgen.quantize` takes. Accuracies are in percent, *measured* with the
    integer reference on the ``samples`` confirmation samples, which the search never scored
    (without a ``confirmation``: on the evaluation samples): ``float_accuracy`` (the float
    model), ``base_accuracy`` (uniform base bits, ``w8a8`` by default) and ``accuracy`` (the
    chosen bits). ``confirmation`` (:class:`~hwgen.precision_holdout.Confirmation`) holds the
    sizes of both parts, the accuracy's interval, the bound on the drop and whether it met the
    limit. ``bit_ops`` and ``weight_memory_bits`` are those of the chosen bits, ``base_*`` those
    of uniform base bits. ``measurements``: solver answers measured on the selection part;
    ``seconds``: the run time.
    """

    graph_name: str
    bits: dict
    layers: tuple
    objective: str
    metric: str
    samples: int
    float_accuracy: float
    base_accuracy: float
    accuracy: float
    bit_ops: int
    base_bit_ops: int
    weight_memory_bits: int
    base_weight_memory_bits: int
    measurements: int
    seconds: float
    sensitivity: Sensitivity = dataclasses.field(repr=False, compare=False, default=None)
    confirmation: object = None

    @property
    def accuracy_drop(self):
        """Points below the float model's accuracy (measured)."""
        return self.float_accuracy - self.accuracy

    @property
    def bit_ops_saved(self):
        """Percent fewer bit-operations than uniform base bits."""
        return 100.0 * (1 - self.bit_ops / self.base_bit_ops)

    @property
    def mean_weight_bits(self):
        """Mean weight bits, weighted by each layer's number of weights (weight memory bits per
        weight)."""
        return _mean_weight_bits([(layer.weights, layer.weight_bits) for layer in self.layers])[0]

    @property
    def mean_weight_bits_per_layer(self):
        """Plain mean of the dense/conv layers' weight bits."""
        return _mean_weight_bits([(layer.weights, layer.weight_bits) for layer in self.layers])[1]

    def table(self):
        """A readable summary and one line per layer."""
        base = self.sensitivity.settings.base_bits if self.sensitivity else 8
        lines = [f"bit allocation for {self.graph_name!r}: {self.objective}"]
        if self.confirmation is not None:
            lines += self.confirmation.lines(self.metric, base)
        else:
            lines += [f"  {self.metric} on {self.samples} samples, measured with the integer "
                      "reference:",
                      f"  float {self.float_accuracy:.2f} %, uniform w{base}a{base} "
                      f"{self.base_accuracy:.2f} %, chosen {self.accuracy:.2f} % "
                      f"({self.accuracy_drop:.2f} points below float)"]
        lines += [
            f"  bit-ops {self.bit_ops:,} vs {self.base_bit_ops:,} for w{base}a{base} "
            f"({self.bit_ops_saved:.1f} % fewer); weight memory {self.weight_memory_bits:,} vs "
            f"{self.base_weight_memory_bits:,} bits",
            f"  mean weight bits {self.mean_weight_bits:.2f} (weighted by weights), "
            f"{self.mean_weight_bits_per_layer:.2f} (per layer)",
            f"  {'layer':<16} {'op':<6} {'bits':>6} {'MACs':>9} {'weights':>8} {'bit-ops':>11} "
            f"{'drop alone':>10}"]
        for layer in self.layers:
            lines.append(f"  {layer.name:<16} {layer.op:<6} "
                         f"{'w%da%d' % (layer.weight_bits, layer.act_bits):>6} "
                         f"{layer.macs:>9,} {layer.weights:>8,} {layer.bit_ops:>11,} "
                         f"{layer.drop_alone:>10.2f}")
        return "\n".join(lines)

    __repr__ = table

    def to_json(self):
        """Plain data for a manifest (without the sensitivity tables)."""
        data = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if field.name not in ("sensitivity", "layers", "confirmation")}
        data["layers"] = [dataclasses.asdict(layer) for layer in self.layers]
        data["confirmation"] = (None if self.confirmation is None
                                else self.confirmation.to_json())
        data.update(accuracy_drop=self.accuracy_drop, bit_ops_saved=self.bit_ops_saved,
                    mean_weight_bits=self.mean_weight_bits,
                    mean_weight_bits_per_layer=self.mean_weight_bits_per_layer)
        if self.sensitivity is not None:
            data["settings"] = self.sensitivity.settings.to_json()
        return data


def _knapsack(sensitivity, cost):
    """The front over the layers' options: ``cost`` against the excess output noise, ties
    going to the smaller other cost."""
    key, other = ("bit_ops", "weight_memory_bits") if cost == "bops" else \
        ("weight_memory_bits", "bit_ops")
    options = [layer.options for layer in sensitivity.layers]
    return knapsack_front([[getattr(o, key) for o in layer] for layer in options],
                          [[sensitivity.excess_noise(o) for o in layer] for layer in options],
                          [[getattr(o, other) for o in layer] for layer in options])


def _changes(sensitivity, picks):
    return {layer.name: (layer.options[j].weight_bits, layer.options[j].requested_act_bits)
            for layer, j in zip(sensitivity.layers, picks)}


@dataclasses.dataclass(frozen=True)
class _Answer:
    picks: tuple
    measurement: _Measurement
    index: int = None   # on the front, if it came from one


def _measure_point(evaluator, sensitivity, front, index):
    picks = front.picks(index)
    return _Answer(picks, evaluator.measure(evaluator.config(_changes(sensitivity, picks))),
                   index)


def _search_drop(evaluator, sensitivity, front, max_lost, rounds, say):
    """Bisection over the front for the cheapest answer that loses at most ``max_lost`` samples
    against the float model, measured; ``(answer or None, measurements)``.

    Accuracy falls as the predicted noise rises, though not strictly (a few samples either way):
    the answer meets the limit and the cheaper front point next to it, if measured, does not.
    """
    def meets(index):
        answer = _measure_point(evaluator, sensitivity, front, index)
        lost = sensitivity.float_correct - answer.measurement.correct
        say(f"front point {index + 1}/{len(front)} ({front.cost[index]:,} cost): "
            f"{evaluator.percent(answer.measurement.correct):.2f} %, "
            f"{'meets' if lost <= max_lost else 'misses'} the limit")
        return lost <= max_lost, answer

    low, high = 0, len(front) - 1
    ok, best = meets(high)
    used = 1
    if not ok:
        return None, used
    while low < high and used < rounds:
        middle = (low + high) // 2
        ok, answer = meets(middle)
        used += 1
        if ok:
            high, best = middle, answer
        else:
            low = middle + 1
    return best, used


def _check_target(max_accuracy_drop, budget):
    if (max_accuracy_drop is None) == (budget is None):
        raise HwgenError("give exactly one of max_accuracy_drop (points) and budget "
                         "(e.g. 'bops=50%')")
    if max_accuracy_drop is not None:
        if (isinstance(max_accuracy_drop, bool)
                or not isinstance(max_accuracy_drop, numbers.Real)
                or not 0 <= max_accuracy_drop <= 100):
            raise HwgenError(f"max_accuracy_drop must be a number of points in 0..100, not "
                             f"{max_accuracy_drop!r}")
        return None
    return parse_budget(budget)


def _choice(evaluator, sensitivity, answer, objective, measurements, started,
            confirmation=None):
    """The :class:`BitChoice` of ``answer``; its accuracies are ``confirmation``'s when given."""
    qgraph = answer.measurement.qgraph
    layers = []
    for layer, j in zip(sensitivity.layers, answer.picks):
        qlayer = qgraph[layer.name]
        layers.append(LayerChoice(
            name=layer.name, op=layer.op, weight_bits=qlayer.weight_bits,
            act_bits=qlayer.act_bits, macs=qlayer.macs, weights=qlayer.weight.size,
            bit_ops=qlayer.macs * qlayer.weight_bits * qlayer.act_bits,
            weight_memory_bits=qlayer.weight.size * qlayer.weight_bits,
            drop_alone=sensitivity.drop(layer.options[j])))
    scored = sensitivity if confirmation is None else confirmation
    return BitChoice(
        graph_name=evaluator.graph.name,
        bits=evaluator.config(_changes(sensitivity, answer.picks)), layers=tuple(layers),
        objective=objective, metric=sensitivity.metric, samples=scored.samples,
        float_accuracy=scored.float_accuracy, base_accuracy=scored.base_accuracy,
        accuracy=(evaluator.percent(answer.measurement.correct) if confirmation is None
                  else confirmation.accuracy), bit_ops=bit_ops(qgraph),
        base_bit_ops=sensitivity.base_bit_ops, weight_memory_bits=weight_memory_bits(qgraph),
        base_weight_memory_bits=sensitivity.base_weight_memory_bits,
        measurements=measurements, seconds=time.perf_counter() - started,
        sensitivity=sensitivity, confirmation=confirmation)


def _base_answer(evaluator, sensitivity):
    """Uniform base bits as an answer (every layer's base option)."""
    base = (sensitivity.settings.base_bits, sensitivity.settings.base_bits)
    picks = tuple(next(j for j, o in enumerate(layer.options)
                       if (o.weight_bits, o.requested_act_bits) == base)
                  for layer in sensitivity.layers)
    return _Answer(picks, evaluator.base)


def _confirm(evaluator, confirmer, answer, fallback=False):
    return confirmer(answer.measurement.qgraph, evaluator.percent(answer.measurement.correct),
                     evaluator.percent(evaluator.float_correct), fallback)


def _keep_base(evaluator, sensitivity, confirmer, confirmation, max_lost, max_drop, say):
    """Uniform base bits and their confirmation, when no lower bits were confirmed; an error
    when the search found nothing to confirm because the base bits lose too much already."""
    base = sensitivity.settings.base_bits
    lost = sensitivity.float_correct - sensitivity.base_correct
    searched = confirmer.note is None
    if searched and confirmation is None and lost > max_lost:
        raise HwgenError(
            f"uniform w{base}a{base} already loses {100 * lost / sensitivity.samples:.2f} "
            f"points against the float model, more than the allowed {max_drop:g}; allow a "
            "larger drop, raise the base bits or try another calibration method")
    say(("the limit cannot be confirmed on these samples" if not searched else
         "no front point met the limit" if confirmation is None else
         "no lower bits were confirmed") + f"; keeping uniform w{base}a{base}")
    answer = _base_answer(evaluator, sensitivity)
    confirmation = _confirm(evaluator, confirmer, answer, fallback=True)
    return answer, confirmation


def _choose_within_drop(evaluator, sensitivity, confirmer, max_drop, cost, rounds, say,
                        started):
    max_lost = math.floor(max_drop * sensitivity.samples / 100 + 1e-9)
    front = _knapsack(sensitivity, cost)
    used = 0

    def search(limit):
        nonlocal used
        answer, measured = _search_drop(evaluator, sensitivity, front, limit, rounds, say)
        used += measured
        if answer is None:
            return None
        return answer, sensitivity.float_correct - answer.measurement.correct

    def step_up(answer):
        # Half way from a failed answer to the least-noise end of the front.
        last = len(front) - 1
        if answer.index is None or answer.index >= last:
            return None
        return _measure_point(evaluator, sensitivity, front,
                              answer.index + (last - answer.index + 1) // 2)

    answer, confirmation = None, None
    if confirmer.note is None:
        answer, confirmation = confirmed_search(
            search, lambda answer: _confirm(evaluator, confirmer, answer), max_lost, say,
            step_up)
    if answer is None:
        answer, confirmation = _keep_base(evaluator, sensitivity, confirmer, confirmation,
                                          max_lost, max_drop, say)
    objective = f"at most {max_drop:g} points below float, fewest {cost}"
    return _choice(evaluator, sensitivity, answer, objective, used, started, confirmation)


def _choose_within_budget(evaluator, sensitivity, confirmer, budget, say, started):
    front = _knapsack(sensitivity, budget.kind)
    base_cost = (sensitivity.base_bit_ops if budget.kind == "bops"
                 else sensitivity.base_weight_memory_bits)
    limit = budget.limit(base_cost)
    index = front.best_within(limit)
    if index is None:
        raise HwgenError(f"budget {budget} ({limit:,} {budget.kind}) is below the cheapest "
                         f"choice of these bit widths ({int(front.cost[0]):,} {budget.kind}); "
                         "raise the budget or allow lower bit widths")
    answer = _measure_point(evaluator, sensitivity, front, index)
    say(f"least-noise answer within {limit:,} {budget.kind}: "
        f"{evaluator.percent(answer.measurement.correct):.2f} %")
    confirmation = _confirm(evaluator, confirmer, answer)
    objective = f"budget {budget} ({limit:,} {budget.kind}), best accuracy"
    return _choice(evaluator, sensitivity, answer, objective, 1, started, confirmation)


def _check_cost(cost):
    if cost not in _COSTS:
        raise HwgenError(f"cost must be one of {', '.join(_COSTS)}, not {cost!r}")


def _start(graph, x, y, calibration, progress, *settings):
    """What :func:`choose_bits` and :func:`pareto` begin with: the evaluator over the inputs,
    the measured per-layer sensitivity and the progress function. ``settings`` are
    :func:`_settings`'s arguments."""
    evaluator = _Evaluator(graph, x, y, calibration, _settings(*settings))
    say = _say(progress)
    return evaluator, _measure(evaluator, say), say


def _start_confirmed(graph, x, y, calibration, progress, confirm, holdout, seed, confidence,
                     max_drop, *settings):
    """:func:`_start` for a choice confirmed on samples the search never scores
    (:func:`~hwgen.precision_holdout.confirmation_parts`): the selection part's evaluator and
    sensitivity, the confirmation part's :class:`~hwgen.precision_holdout.Confirmer` and the
    progress function. Ranges come from ``calibration``, else from all of ``x``."""
    if holdout is not None:
        check_holdout(holdout)
    check_confidence(confidence)
    say = _say(progress)
    if isinstance(x, (str, Path)):
        x, y = _load_samples(x, y)
    whole = _Evaluator(graph, x, y, calibration, _settings(*settings))
    evaluator, confirmer = confirmation_parts(whole, y is not None, confirm, holdout, seed,
                                              confidence, max_drop, say)
    return evaluator, _measure(evaluator, say), confirmer, say


def choose_bits(graph, x, y=None, *, max_accuracy_drop=None, budget=None, cost="bops",
                calibration=None, weight_choices=DEFAULT_CHOICES, act_choices=DEFAULT_CHOICES,
                base_bits=8, output_bits=8, calibration_method="minmax", percentile=99.99,
                weight_granularity="channel", metric="auto", tolerance=0.05,
                rounds=DEFAULT_ROUNDS, holdout=None, confirm=None,
                confidence=DEFAULT_CONFIDENCE, seed=0, progress=None):
    """Per-layer bits for ``graph``: the fewest bit-operations within an accuracy-drop limit,
    or the best accuracy within a budget, selected on one part of the data and confirmed on
    another (:mod:`hwgen.precision_holdout`).

    Parameters
    ----------
    graph, x, y, calibration : as :func:`measure_sensitivity`. Quantize the result with the
        same calibration inputs and options: ``quantize(graph, x, choice.bits, ...)`` (without
        ``calibration``, all of ``x`` sets the ranges, the held-out part included).
    max_accuracy_drop : float
        Points the chosen bits may lose against the float model's accuracy. The search selects
        on its part of the samples; the answer is returned when the upper confidence bound of
        its drop on the confirmation samples is at most this, else the search backs off (to
        uniform base bits at worst, which the result then says).
    budget : str or Budget
        ``"bops=50%"``, ``"bops=1.2M"``, ``"weights=16KiB"``, ``"weight_bits=100000"`` (see
        :func:`parse_budget`). Exactly one of ``max_accuracy_drop`` and ``budget``.
    cost : ``"bops"`` (default) or ``"weight_bits"``
        What ``max_accuracy_drop`` minimizes.
    rounds : int
        At most this many solver answers are measured in the search for the accuracy limit
        (default 16: a bisection over a front of up to 2^15 points) per selection limit.
    holdout : float in (0, 1)
        The share of ``x`` held out for the confirmation (default 0.5), stratified by label (or
        by the float model's class without labels); not with ``confirm``.
    confirm : array, ``(inputs, labels)`` or path to ``.npy``/``.npz``, optional
        Separate confirmation samples; all of ``x`` then selects. Labels for both or neither.
    confidence : float
        Of the bound on the drop and of the accuracy's interval (default 0.95).
    seed : int
        Of the split.
    other parameters : as :func:`measure_sensitivity`.

    Returns
    -------
    :class:`BitChoice`, whose accuracies are measured with the integer reference on the
    confirmation samples, never predicted; ``choice.confirmation`` has the details.
    Raises :class:`HwgenError` when nothing meets the target (the budget is below the cheapest
    choice, or even the uniform base bits lose more than ``max_accuracy_drop``) or when there
    are too few samples to split. When the confirmation part is too small to ever confirm
    ``max_accuracy_drop``, a :class:`~hwgen.errors.HwgenWarning` says how many samples it
    takes, and uniform base bits are returned without a search.
    """
    started = time.perf_counter()
    target = _check_target(max_accuracy_drop, budget)
    _check_cost(cost)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise HwgenError(f"rounds must be a positive integer, not {rounds!r}")
    evaluator, sensitivity, confirmer, say = _start_confirmed(
        graph, x, y, calibration, progress, confirm, holdout, seed, confidence,
        max_accuracy_drop, weight_choices, act_choices, base_bits, output_bits,
        calibration_method, percentile, weight_granularity, metric, tolerance)
    if target is None:
        return _choose_within_drop(evaluator, sensitivity, confirmer, max_accuracy_drop, cost,
                                   rounds, say, started)
    return _choose_within_budget(evaluator, sensitivity, confirmer, target, say, started)


# -- Pareto front ---------------------------------------------------------------------------------

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
        """One line per point: costs, mean weight bits (weighted by weights), accuracy, bits."""
        uniform = f"uniform w{self.base_bits}a{self.base_bits}"
        base_cost = self.base_bit_ops if self.cost == "bops" else self.base_weight_memory_bits
        lines = [f"Pareto front of {self.graph_name!r} ({self.cost} budgets): {self.metric} on "
                 f"{self.samples} samples, measured with the integer reference; float "
                 f"{self.float_accuracy:.2f} %, {uniform} {self.base_accuracy:.2f} %",
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

    __repr__ = table

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
