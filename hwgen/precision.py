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

Modules: :mod:`hwgen.precision_knapsack` (costs, budgets, the solver),
:mod:`hwgen.precision_eval` (settings, metric, evaluator), this module (sensitivity and the
choice), :mod:`hwgen.precision_front` (the Pareto front), :mod:`hwgen.precision_holdout`
(confirmation) and :mod:`hwgen.precision_board` (scored by a board's frames/s).
"""

import dataclasses
import itertools
import math
import numbers
import time
from pathlib import Path

from .errors import HwgenError
from .precision_eval import (DEFAULT_CHOICES, METRICS, SearchSettings, _Evaluator, _Measurement,
                             _load_samples, _say)
from .precision_holdout import (DEFAULT_CONFIDENCE, check_confidence, check_holdout,
                                confirmation_parts, confirmed_search)
from .precision_knapsack import (_COSTS, Budget, KnapsackFront, _mean_weight_bits, bit_ops,
                                 knapsack_front, parse_budget, weight_memory_bits)

__all__ = ["SearchSettings", "LayerOption", "LayerSensitivity", "Sensitivity", "Budget",
           "KnapsackFront", "LayerChoice", "BitChoice", "ParetoPoint", "ParetoFront",
           "measure_sensitivity", "choose_bits", "pareto", "parse_budget", "knapsack_front",
           "bit_ops", "weight_memory_bits", "METRICS"]

DEFAULT_ROUNDS = 16


def __getattr__(name):
    # The Pareto front lives in hwgen.precision_front, which builds on this module; importing
    # it lazily keeps ``from hwgen.precision import pareto`` working without a cycle.
    if name in ("ParetoPoint", "ParetoFront", "pareto"):
        from . import precision_front
        return getattr(precision_front, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
