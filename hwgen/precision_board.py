"""Bits for the hardware: per-layer bit widths chosen by what the board realizes, the frames/s
of the plan sized for it, rather than by bit-operations.

:func:`hwgen.choose_bits` trades accuracy against bit-operations, a count the hardware only
follows loosely: an engine's cost depends on its multiplier kind, its folding's divisors and
the board's DSP ports. Here every candidate is *planned* (``make_plan(board=...)``, the same
search ``hwgen build --board`` runs) and scored by its initiation interval:

1. The per-layer sensitivity and the knapsack front of :mod:`hwgen.precision` give the
   least-noise bits at every bit-operation cost, cheapest first.
2. Up to ``samples`` front points, evenly spread, are quantized and planned for the board
   (no simulation); a bisection between the evaluated points then finds the edge of what
   reaches ``min_fps``.
3. ``min_fps``: the least-noise point that reaches it is measured with the integer reference.
   ``max_accuracy_drop``: points are measured fastest first until one loses at most that many
   points against the float model on the selection samples (at most ``rounds`` measurements)
   and its drop is confirmed on the held-out samples (:mod:`hwgen.precision_holdout`); after a
   failed confirmation the selection limit tightens and the scan goes on towards slower points,
   and when none is confirmed uniform base bits are kept, planned for the board like the rest.

Bit-operations stay a reported figure (:class:`~hwgen.precision.BitChoice`); ``plan`` holds the
chosen bits' sized plan and ``frames_per_second`` its rate at the board's target clock.
"""

import dataclasses
import math
import time

from .board import get_board
from .errors import HwgenError
from .plan import make_plan
from .precision import (DEFAULT_CHOICES, DEFAULT_ROUNDS, _changes, _choice, _confirm,
                        _keep_base, _knapsack, _measure_point, _start_confirmed)
from .precision_holdout import DEFAULT_CONFIDENCE, confirmed_search

__all__ = ["BoardBitChoice", "choose_bits_for_board", "DEFAULT_SAMPLES"]

DEFAULT_SAMPLES = 16


@dataclasses.dataclass(frozen=True)
class BoardBitChoice:
    """A :class:`~hwgen.precision.BitChoice` (``choice``) with the plan its bits get on the
    board and that plan's frames/s; ``planned`` counts the candidates planned."""

    choice: object
    plan: object
    frames_per_second: float
    planned: int

    def __getattr__(self, name):
        # The bit choice's fields (bits, accuracy, bit_ops, ...) read through.
        if name.startswith("_") or name in ("choice", "plan"):
            raise AttributeError(name)
        return getattr(self.choice, name)

    def table(self):
        cost = self.plan.cost()
        return (self.choice.table() + f"\n  on {self.plan.board.name}: II "
                f"{self.plan.initiation_interval} cycles, {self.frames_per_second:,.0f} "
                f"frames/s at {self.plan.board.target_mhz:g} MHz; DSP {cost.totals['dsp']}/"
                f"{cost.capacity['dsp']}, LUT {cost.totals['lut']}/{cost.capacity['lut']} "
                f"({self.planned} candidates planned)")

    __repr__ = table

    def to_json(self):
        data = self.choice.to_json()
        data.update(board=self.plan.board.name, frames_per_second=self.frames_per_second,
                    initiation_interval=self.plan.initiation_interval, planned=self.planned)
        return data


class _Planner:
    """Plans front points for the board, once each: ``rate(index)`` is the frames/s of the
    point's sized plan, 0 where nothing fits."""

    def __init__(self, evaluator, sensitivity, front, board, plan_options, say):
        self.evaluator, self.sensitivity, self.front = evaluator, sensitivity, front
        self.board, self.plan_options, self.say = board, plan_options, say
        self.plans = {}

    def bits(self, index):
        return self.evaluator.config(_changes(self.sensitivity, self.front.picks(index)))

    def rate(self, index):
        if index not in self.plans:
            qgraph = self.evaluator._quantize(self.bits(index))
            try:
                plan = make_plan(qgraph, board=self.board, **self.plan_options)
            except HwgenError:
                plan = None
            self.plans[index] = plan
            rate = self._rate(plan)
            self.say(f"front point {index + 1}/{len(self.front)} "
                     f"({int(self.front.cost[index]):,} bit-ops): "
                     + (f"{rate:,.0f} frames/s" if plan else "does not fit"))
        return self._rate(self.plans[index])

    def _rate(self, plan):
        if plan is None:
            return 0.0
        return self.board.target_mhz * 1e6 / plan.initiation_interval


def _spread(length, samples):
    """Up to ``samples`` indices over ``range(length)``, evenly spread, both ends included."""
    if length <= samples:
        return list(range(length))
    return sorted({round(k * (length - 1) / (samples - 1)) for k in range(samples)})


def _edge(planner, indices, min_fps):
    """The highest front index (least noise) whose plan reaches ``min_fps``: the highest
    evaluated one, then a bisection towards the next evaluated index that misses."""
    reaching = [index for index in indices if planner.rate(index) >= min_fps]
    if not reaching:
        return None
    low = max(reaching)
    higher = [index for index in indices if index > low]
    high = min(higher) if higher else low
    while high - low > 1:
        middle = (low + high) // 2
        if planner.rate(middle) >= min_fps:
            low = middle
        else:
            high = middle
    return low


def choose_bits_for_board(graph, x, y=None, *, board, min_fps=None, max_accuracy_drop=None,
                          calibration=None, weight_choices=DEFAULT_CHOICES,
                          act_choices=DEFAULT_CHOICES, base_bits=8, output_bits=8,
                          calibration_method="minmax", percentile=99.99,
                          weight_granularity="channel", metric="auto", tolerance=0.05,
                          rounds=DEFAULT_ROUNDS, samples=DEFAULT_SAMPLES,
                          max_utilization=None, multiplier_kinds=None,
                          holdout=None, confirm=None, confidence=DEFAULT_CONFIDENCE, seed=0,
                          progress=None):
    """Per-layer bits scored by the frames/s of the plan sized for ``board`` (see the module
    doc): the best accuracy that reaches ``min_fps`` frames/s, or the most frames/s within
    ``max_accuracy_drop`` points of the float model. Exactly one of the two.

    ``max_utilization`` and ``multiplier_kinds`` are passed to :func:`hwgen.make_plan`;
    ``samples`` front points are planned before the bisection; the other parameters are
    :func:`hwgen.choose_bits`'s, the selection/confirmation split (``holdout``, ``confirm``,
    ``confidence``, ``seed``) included. Returns a :class:`BoardBitChoice`; raises
    :class:`HwgenError` when no candidate reaches ``min_fps`` (naming the fastest found) or
    none of the measured ones keeps within ``max_accuracy_drop`` on the selection samples.
    """
    started = time.perf_counter()
    board = get_board(board)
    if (min_fps is None) == (max_accuracy_drop is None):
        raise HwgenError("give exactly one of min_fps (frames/s on the board) and "
                         "max_accuracy_drop (points)")
    if min_fps is not None and not (isinstance(min_fps, (int, float)) and min_fps > 0
                                    and math.isfinite(min_fps)):
        raise HwgenError(f"min_fps must be a positive number of frames/s, not {min_fps!r}")
    if samples < 2:
        raise HwgenError(f"samples must be at least 2, not {samples!r}")
    evaluator, sensitivity, confirmer, say = _start_confirmed(
        graph, x, y, calibration, progress, confirm, holdout, seed, confidence,
        max_accuracy_drop, weight_choices, act_choices, base_bits, output_bits,
        calibration_method, percentile, weight_granularity, metric, tolerance)
    front = _knapsack(sensitivity, "bops")
    planner = _Planner(evaluator, sensitivity, front, board,
                       {"max_utilization": max_utilization,
                        "multiplier_kinds": multiplier_kinds}, say)
    indices = _spread(len(front), samples)
    if min_fps is not None:
        index = _edge(planner, indices, min_fps)
        if index is None:
            fastest = max(planner.rate(i) for i in indices)
            raise HwgenError(
                f"no bit choice of {graph.name} reaches {min_fps:,.0f} frames/s on "
                f"{board.name}: the fastest planned reaches {fastest:,.0f} (at "
                f"{board.target_mhz:g} MHz); lower the target, allow lower bit widths "
                f"({', '.join(map(str, weight_choices))} now) or pick a larger board")
        answer = _measure_point(evaluator, sensitivity, front, index)
        confirmation = _confirm(evaluator, confirmer, answer)
        objective = (f"at least {min_fps:,.0f} frames/s on {board.name} "
                     f"({planner.rate(index):,.0f} reached), best accuracy")
        choice = _choice(evaluator, sensitivity, answer, objective, 1, started, confirmation)
        return BoardBitChoice(choice, planner.plans[index], planner.rate(index),
                              len(planner.plans))
    return _fastest_within_drop(evaluator, sensitivity, confirmer, front, planner, indices,
                                max_accuracy_drop, rounds, say, started)


def _fastest_within_drop(evaluator, sensitivity, confirmer, front, planner, indices, max_drop,
                         rounds, say, started):
    """Front points fastest first, each measured on the selection samples; the first within
    the selection limit is confirmed, and after a failure the scan goes on with a tighter
    limit, at the floor with the next point that loses nothing on the selection
    (:func:`~hwgen.precision_holdout.confirmed_search`)."""
    board = planner.board
    max_lost = math.floor(max_drop * sensitivity.samples / 100 + 1e-9)
    candidates = iter(sorted((i for i in indices if planner.rate(i) > 0),
                             key=lambda i: (-planner.rate(i), -i))[:rounds])
    measured = 0

    def search(limit):
        nonlocal measured
        for index in candidates:
            trial = _measure_point(evaluator, sensitivity, front, index)
            measured += 1
            lost = sensitivity.float_correct - trial.measurement.correct
            say(f"front point {index + 1}: {planner.rate(index):,.0f} frames/s, "
                f"{evaluator.percent(trial.measurement.correct):.2f} %, "
                f"{'meets' if lost <= limit else 'misses'} the limit")
            if lost <= limit:
                return (index, trial), lost
        return None

    def step_up(_):
        # Towards more bits: the next slower candidate that loses nothing on the selection.
        found = search(0)
        return None if found is None else found[0]

    found, confirmation = None, None
    if confirmer.note is None:
        found, confirmation = confirmed_search(
            search, lambda found: _confirm(evaluator, confirmer, found[1]), max_lost, say,
            step_up)
    if found is None and confirmation is None and confirmer.note is None:
        raise HwgenError(
            f"none of the {measured} fastest bit choices planned for {board.name} keeps "
            f"within {max_drop:g} points of the float model; allow a larger drop, "
            "more rounds, or higher bit widths")
    if found is None:
        answer, confirmation = _keep_base(evaluator, sensitivity, confirmer, confirmation,
                                          max_lost, max_drop, say)
        plan = make_plan(answer.measurement.qgraph, board=board, **planner.plan_options)
    else:
        index, answer = found
        plan = planner.plans[index]
    rate = planner._rate(plan)
    objective = (f"at most {max_drop:g} points below float, most frames/s on {board.name} "
                 f"({rate:,.0f})")
    choice = _choice(evaluator, sensitivity, answer, objective, measured, started, confirmation)
    return BoardBitChoice(choice, plan, rate, len(planner.plans))
