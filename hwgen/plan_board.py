"""The board search of :func:`hwgen.plan.make_plan`: with a ``board``, the fastest plan whose
modelled resources (:mod:`hwgen.cost`) fit, over every layer's foldings, input lanes and
multiplier kinds (see :mod:`hwgen.plan` for the rule and ``docs/resources.md`` for the
search)."""

import dataclasses
import math

import numpy as np

from .errors import DoesNotFit, HwgenError
from .packing import DSP_PORTS
from .plan import (ENGINES, KINDS, ROM_ENGINES, LayerPlan, Plan, _cycles, _fill,
                   _in_lanes_options, _kind, _options, choose_pack, default_utilization)

__all__ = ["fit_board", "AUTO_UNROLL_WEIGHTS"]


def _multiplier_options(layer, engine, pe, ports, kinds):
    """``[(kind, pack)]`` ``layer`` may use on ``engine`` with ``pe`` PEs: each allowed kind,
    ``"dsp-packed"`` only where at least two products fit one DSP (see :func:`choose_pack`)."""
    if engine not in KINDS:
        return [("dsp", 1)]
    options = []
    for kind in KINDS[engine]:
        if kinds is not None and kind not in kinds:
            continue
        if kind == "dsp-packed":
            pack = choose_pack(layer, pe, ports)
            if pack > 1:
                options.append((kind, pack))
        else:
            options.append((kind, 1))
    return options or [("lut" if kinds and "lut" in kinds else "dsp", 1)]


def _limits(board, max_utilization):
    """Resource → the most the plan may use of ``board``."""
    if max_utilization is None:
        max_utilization = {}
    if isinstance(max_utilization, dict):
        unknown = set(max_utilization) - set(board.capacity)
        if unknown:
            raise HwgenError(f"max_utilization names {', '.join(sorted(unknown))}; the "
                             f"resources are {', '.join(board.capacity)}")
        fractions = {resource: max_utilization.get(resource, default_utilization(resource))
                     for resource in board.capacity}
    else:
        fractions = dict.fromkeys(board.capacity, float(max_utilization))
    for resource, fraction in fractions.items():
        if not 0 < fraction <= 1:
            raise HwgenError(f"max utilization of {resource} must be in (0, 1], not {fraction}")
    return {resource: math.floor(board.capacity[resource] * fraction)
            for resource, fraction in fractions.items()}


def _layer_options(layer, engine, target):
    """Every ``(folding, in_lanes)`` of ``layer`` on ``engine`` within ``target`` cycles."""
    lanes_options = _in_lanes_options(layer, engine)
    return [(fold, lanes) for fold in _options(layer, engine) for lanes in lanes_options(fold)
            if _cycles(layer, engine, fold, lanes) <= target]


# The most non-zero weights a layer may have for ``unroll="auto"`` to consider unrolling it:
# beyond, its constant logic outgrows the boards hwgen sizes for (about 8 LUTs per weight at
# 8 bits), and building its netlist would slow the search.
AUTO_UNROLL_WEIGHTS = 8192


def _catalog(units, pinned, board, kinds, unroll_levels=None):
    """Per layer, every ``(LayerPlan, modelled cost)`` it may take on ``board``: the pinned
    plan, or each folding, input-lane count and multiplier kind (of ``kinds``) of its default
    engine, and with ``unroll_levels`` (adder levels per stage) the unrolled engine where the
    layer unrolls (:func:`_unrollable`). Computed once per search; :func:`_select` filters it
    by cycles."""
    from .cost import layer_cost

    ports = DSP_PORTS[board.family]
    catalog = []
    for layer in units:
        if layer.name in pinned:
            options = [pinned[layer.name]]
        else:
            engine = ENGINES[_kind(layer)][0]
            options = [LayerPlan(layer, engine, fold, lanes, kind, pack)
                       for fold, lanes in _layer_options(layer, engine, math.inf)
                       for kind, pack in _multiplier_options(layer, engine, fold.pe, ports,
                                                             kinds)]
            if unroll_levels is not None and _unrollable(layer):
                options += [LayerPlan(layer, "unrolled", fold, lanes, levels=unroll_levels)
                            for fold, lanes in _layer_options(layer, "unrolled", math.inf)]
        costs = [(option, layer_cost(option, board)) for option in options]
        catalog.append(costs + [twin for option, cost in costs
                                if layer.name not in pinned and option.engine in ROM_ENGINES
                                for twin in _in_block_ram(option, cost, board)])
    return catalog


# The fewest words a weight ROM needs for the search to offer it block RAM: a shallower one is
# a few constants per bit in logic (a LUT4 holds 16 words), which a block would waste.
BLOCK_WEIGHT_WORDS = 16


def _in_block_ram(option, cost, board):
    """``[(option with its weights in block RAM, its cost)]``, or ``[]`` where that changes
    nothing (the weights are in block RAM already) or the ROMs are shallower than
    :data:`BLOCK_WEIGHT_WORDS`."""
    from .cost import layer_cost, weight_rom_words

    if weight_rom_words(option) < BLOCK_WEIGHT_WORDS:
        return []
    twin = dataclasses.replace(option, weights="bram")
    twin_cost = layer_cost(twin, board)
    return [(twin, twin_cost)] if twin_cost["bram"] != cost["bram"] else []


def _unrollable(layer):
    """Whether ``unroll="auto"`` considers unrolling ``layer``: a dense or conv layer the
    unrolled engine builds, of at most :data:`AUTO_UNROLL_WEIGHTS` non-zero weights."""
    from .hw.unrolled import check_unrollable

    if "unrolled" not in ENGINES[_kind(layer)]:
        return False
    try:
        check_unrollable(layer)
    except HwgenError:
        return False
    return int(np.count_nonzero(layer.weight)) <= AUTO_UNROLL_WEIGHTS


def _achievable_cycles(catalog, pinned):
    """Every initiation interval some option of the catalog reaches, no shorter than the
    pinned layers allow, ascending."""
    floor = max([plan.cycles for plan in pinned.values()], default=1)
    cycles = {option.cycles for options in catalog for option, _ in options}
    return sorted({floor} | {value for value in cycles if value >= floor})


def _select(catalog, target, limits, goal="throughput"):
    """The layers' plans within ``target`` cycles whose summed modelled resources fit
    ``limits`` and leave the most headroom: the smallest largest share of any resource's
    limit, then the smallest sum of shares (so DSPs and LUTs fill evenly, as place and route
    prefers, rather than one of them to the brim); ``None`` if no choice fits. With ``goal``
    ``"latency"``, the smallest sum of the layers' cycles per frame first (each layer as fast
    as the resources allow, which shortens the time a frame spends in it), headroom only
    breaking ties. An exact mixed
    0/1 program (:func:`scipy.optimize.milp`): one binary per layer and option, one option per
    layer, one capacity row per resource, and the largest share ``t`` bounding every
    resource's share. FIFOs are not in the sum; the caller checks the whole plan."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    from .cost import RESOURCES

    choices = [[(option, cost) for option, cost in options if option.cycles <= target]
               for options in catalog]
    if not all(choices):
        return None
    count = sum(len(options) for options in choices)
    usable = [resource for resource in RESOURCES if limits[resource] > 0]
    # Columns: the options' binaries, then t.
    objective = np.zeros(count + 1)
    pick = np.zeros((len(choices), count + 1))
    use = np.zeros((len(RESOURCES), count + 1))
    share = np.zeros((len(usable), count + 1))
    column = 0
    for row, options in enumerate(choices):
        for option, cost in options:
            pick[row, column] = 1
            use[:, column] = [cost[resource] for resource in RESOURCES]
            share[:, column] = [cost[resource] / limits[resource] for resource in usable]
            objective[column] = _SUM_WEIGHT * sum(share[:, column])
            if goal == "latency":
                objective[column] += option.cycles / target
            column += 1
    objective[count] = _SUM_WEIGHT if goal == "latency" else 1.0
    share[:, count] = -1.0
    constraints = [LinearConstraint(pick, 1, 1),
                   LinearConstraint(use, -np.inf, [limits[r] for r in RESOURCES]),
                   LinearConstraint(share, -np.inf, 0)]
    integrality = np.ones(count + 1)
    integrality[count] = 0
    result = milp(objective, constraints=constraints, integrality=integrality,
                  bounds=Bounds(0, [1] * count + [np.inf]))
    if result.x is None:
        return None
    chosen, column = [], 0
    for options in choices:
        values = result.x[column:column + len(options)]
        chosen.append(options[int(np.argmax(values))][0])
        column += len(options)
    return tuple(chosen)


# The weight of the summed shares beside the largest share in _select's objective: a tie-break.
_SUM_WEIGHT = 1e-3


_FIFO_ROUNDS = 4


def _fit_with_fifos(qgraph, catalog, target, limits, chosen, board, goal="throughput"):
    """The plan of ``chosen`` (layer plans within ``target``) if it fits ``limits`` with its
    FIFOs; else the selection redone with the FIFOs' resources held back from the limits, a
    few rounds (the FIFOs depend on the lanes chosen, so each round holds back the most any
    earlier selection's FIFOs took, which cannot oscillate); ``None`` if none fits."""
    from .cost import RESOURCES, estimate, layer_cost

    reserve = dict.fromkeys(RESOURCES, 0)
    for _ in range(_FIFO_ROUNDS):
        if chosen is None:
            return None
        plan = Plan(qgraph, chosen, board)
        totals = estimate(plan, board).totals
        if all(totals[resource] <= limits[resource] for resource in limits):
            return plan
        layers = [layer_cost(option, board) for option in chosen]
        for resource in RESOURCES:
            fifos = totals[resource] - sum(cost[resource] for cost in layers)
            reserve[resource] = max(reserve[resource], fifos)
        chosen = _select(catalog, target, {resource: limits[resource] - reserve[resource]
                                           for resource in limits}, goal)
    return None


def _lower_latency(plan, other, progress):
    """Of two plans of one interval, the one with the lower accelerator latency."""
    from .hw.accelerator import plan_latency

    if other is None or all(mine is theirs for mine, theirs in zip(plan.layers, other.layers)):
        return plan
    latency, other_latency = plan_latency(plan), plan_latency(other)
    if progress:
        progress(f"latency: {other_latency} cycles selected for latency, {latency} for "
                 "headroom")
    return other if other_latency < latency else plan


def fit_board(qgraph, pinned, board, max_utilization, kinds, progress, unroll_levels=None,
              goal="throughput", units=None):
    """The plan with the shortest achievable interval whose modelled resources fit ``board``.

    Feasibility only grows with the interval (every layer keeps its options and gains
    slower ones), so a binary search finds the shortest interval where :func:`_select` finds
    a choice; FIFOs, which the selection leaves out, are then checked on the whole plan: where
    they push it over, the selection is redone with their resources held back
    (:func:`_fit_with_fifos`), and only then does the search step to longer intervals.
    ``unroll_levels`` (``unroll="auto"``) adds the unrolled engine to the layers' options.

    ``units`` are the planned layers (default ``qgraph.layers``; a chain of dense layers on a
    shared engine is one, see :mod:`hwgen.plan_sequential`).

    ``goal="latency"`` keeps that interval and then selects for the latency instead of the
    headroom (see :func:`_select`), keeping that plan where the accelerator's latency
    (:func:`hwgen.hw.accelerator.plan_latency`) is lower than the headroom plan's."""
    from .board import get_board
    from .cost import estimate

    board = get_board(board)
    limits = _limits(board, max_utilization)
    units = qgraph.layers if units is None else units
    catalog = _catalog(units, pinned, board, kinds, unroll_levels)
    candidates = _achievable_cycles(catalog, pinned)
    selections = {}

    def select(target):
        if target not in selections:
            selections[target] = _select(catalog, target, limits)
        return selections[target]

    low, high = 0, len(candidates)
    while low < high:
        middle = (low + high) // 2
        if select(candidates[middle]) is None:
            low = middle + 1
        else:
            high = middle
    for target in candidates[low:]:
        plan = _fit_with_fifos(qgraph, catalog, target, limits, select(target), board)
        if plan is not None and goal == "latency":
            plan = _lower_latency(plan, _fit_with_fifos(
                qgraph, catalog, target, limits, _select(catalog, target, limits, goal), board,
                goal), progress)
        if plan is not None:
            if progress:
                progress(f"folding for {board.name}: II {plan.initiation_interval} cycles, "
                         f"bottleneck {plan.bottleneck}")
            return plan
    smallest = estimate(Plan(qgraph, _fill(units, pinned, candidates[-1]), board), board)
    over = {resource: (smallest.totals[resource], limits[resource])
            for resource in limits if smallest.totals[resource] > limits[resource]}
    detail = "; ".join(f"{resource.upper()} needs {used}, the limit is {limit} "
                       f"({used - limit} over)" for resource, (used, limit) in over.items())
    raise DoesNotFit(f"{qgraph.name} does not fit {board.name} even at its smallest folding"
                     f"{' (with the pinned layers)' if pinned else ''}: {detail}; lower the bit "
                     "widths, pin smaller engines, or pick a larger board")
