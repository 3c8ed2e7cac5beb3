"""Unrolled layers in the plan: which layers ``make_plan(unroll=...)`` names, and the adder
levels per pipeline stage their registers are placed for (see :mod:`hwgen.hw.unrolled`)."""

import dataclasses

from .errors import HwgenError

__all__ = ["DEFAULT_CLOCK", "unrolled_names", "with_levels", "levels"]

DEFAULT_CLOCK = 150.0  # MHz, for unrolled layers of a plan without a board


def unrolled_names(qgraph, unroll):
    """The dense and conv layers ``unroll`` names (``"all"``: every one of them; ``"auto"``:
    none here, the board search chooses)."""
    if unroll is None or unroll == [] or unroll == "" or unroll in ("auto", ["auto"]):
        return []
    unrollable = [layer.name for layer in qgraph.layers if layer.op in ("dense", "conv")]
    if unroll == "all" or unroll == ["all"]:
        if not unrollable:
            raise HwgenError("--unroll all: the model has no dense or conv layer (only those "
                             "unroll)")
        return unrollable
    names = [n.strip() for n in unroll.split(",")] if isinstance(unroll, str) else list(unroll)
    result = []
    for name in filter(None, names):
        try:
            layer = qgraph[name]
        except HwgenError:
            raise HwgenError(f"--unroll names {name!r}, which is no layer; the layers that "
                             f"unroll are: {', '.join(unrollable) or 'none'}") from None
        if layer.op not in ("dense", "conv"):
            raise HwgenError(f"--unroll {name!r}: only dense and conv layers unroll, not "
                             f"{layer.op} layers; those are: {', '.join(unrollable)}")
        result.append(layer.name)
    return result


def with_levels(pinned, board, clock):
    """The unrolled layers of ``pinned`` with their adder levels per stage for ``clock`` MHz
    (default: the board's target clock) on the board's family."""
    from .hw.unrolled import check_unrollable

    if not any(p.engine == "unrolled" for p in pinned.values()):
        return pinned
    stage_levels = levels(board, clock)
    result = {}
    for name, plan in pinned.items():
        if plan.engine == "unrolled":
            check_unrollable(plan.layer)
            plan = dataclasses.replace(plan, levels=stage_levels)
        result[name] = plan
    return result


def levels(board, clock):
    """Adder levels per pipeline stage of unrolled layers at ``clock`` MHz (default: the
    board's target clock, or :data:`DEFAULT_CLOCK`) on the board's family."""
    from .hw.unrolled import levels_for

    family = "generic"
    if board is not None:
        from .board import get_board
        board = get_board(board)
        family = _ADDER_FAMILY.get(board.family, "generic")
        clock = clock if clock is not None else board.target_mhz
    return levels_for(DEFAULT_CLOCK if clock is None else clock, family)


# The adder-delay family (hwgen.hw.unrolled.ADDER_NS) of each board family.
_ADDER_FAMILY = {"xc7": "xilinx-7", "xcup": "xilinx-ultrascale", "ecp5": "ecp5",
                 "ice40": "ice40"}
