"""FIFO depths on a plan's edges: what lets every engine run at its own pace, so the
pipeline's initiation interval is its slowest engine's (:meth:`hwgen.plan.Plan.fifo_depth`).

An image edge gets a row, or what its producer emits while a padded consumer's pad beats run
(:func:`_pad_run_codes`); a residual skip or a concat input also holds what the longer path
takes in ahead of its outputs (:func:`skip_fifo_depth`)."""

import math

from .reference import Rounding

_PIPELINE_ALLOWANCE = 24   # beats a layer's pipeline registers may hold, a generous bound
_FIFO_MARGIN = 4


def lead_elements(layer):
    """Input elements a layer needs beyond those of an output before it can emit it, plus two
    pixels of buffering."""
    if layer.op in ("dense", "argmax", "chain"):
        return layer.in_features
    if layer.op in ("add", "activation", "concat"):
        return layer.shape[-1]
    if layer.op == "global_avgpool":
        return math.prod(layer.in_shape)
    if layer.op == "upsample":
        return (layer.in_shape[1] + 2) * layer.in_shape[2]  # a row, double-buffered
    height, width, channels = layer.in_shape
    kh, kw = layer.kernel
    top, left = layer.pads[:2]
    lead = (max(kh - 1 - top, 0) * width + kw + 2) * channels
    if getattr(layer, "rounding", None) is Rounding.FLOAT32_ORT:
        lead += (4 * kh * kw + 7) * channels  # the float32 path's stages (hw.pool.PoolReduce)
    return lead


def fifo_depth(plan, tensor, consumer):
    """Beats of FIFO on the edge ``tensor`` → ``consumer``: one image row for image tensors,
    or what the producer emits during a padded consumer's pad run if that is more
    (:func:`_pad_run_codes`), plus the skip-path depth where the edge is a residual skip or a
    concat input (:func:`skip_fifo_depth`); none for vectors.

    A windowed consumer takes its input in bursts around row boundaries while its producer
    emits at a steady pace; one row of buffering lets each run at its own rate, so the
    pipeline's initiation interval is its slowest engine's (without it, measured intervals
    came out 12–13 % above the model on the example CNNs). Vectors need none (a MAC unit
    double-buffers its whole input), except a burst that a lane converter narrows
    (:func:`_burst_beats`). A shared sequential engine gets a whole frame in front (it
    loads its input only between computations) and behind (it sends its output in one burst,
    which a consumer taking it more slowly, such as a concat taking its inputs in turn,
    would otherwise stretch into the engine's next frame).
    """
    shape = plan.qgraph.shape_of(tensor)
    frame = math.prod(shape) // lanes_of(plan, tensor) + _FIFO_MARGIN
    if plan[consumer].engine == "sequential" and tensor != plan.qgraph.input_name:
        return frame
    if tensor != plan.qgraph.input_name and plan[tensor].engine == "sequential":
        return max(frame, _dataflow_depth(plan, tensor, consumer, shape))
    return _dataflow_depth(plan, tensor, consumer, shape)


def _dataflow_depth(plan, tensor, consumer, shape):
    """:func:`fifo_depth` between two dataflow engines."""
    skip = skip_fifo_depth(plan, tensor, consumer)
    pad_run = _pad_run_codes(plan, tensor, consumer)
    pad_run = math.ceil(pad_run / lanes_of(plan, tensor)) + _FIFO_MARGIN if pad_run else 0
    if len(shape) != 3 or (shape[:2] == (1, 1) and not pad_run):
        return skip + _burst_beats(plan, tensor, consumer)
    row = max(shape[1] * shape[2] // lanes_of(plan, tensor), 2)
    return skip + max(row, pad_run)


def _burst_beats(plan, tensor, consumer):
    """Beats of a global average pool's output frame where a lane converter narrows it for
    ``consumer`` (else 0).

    The pool emits its frame's sums one beat per cycle while its last pixel streams in; a
    narrowing converter takes a beat only every ``lanes / in_lanes`` cycles, so without room
    for the burst the pool stalls its input every frame (measured: 87 cycles per frame
    against the model's 84 on a random design whose pool ran at the interval)."""
    if tensor == plan.qgraph.input_name or plan[tensor].engine != "gap":
        return 0
    lanes = lanes_of(plan, tensor)
    if lanes <= plan[consumer].in_lanes:
        return 0
    return math.prod(plan.qgraph.shape_of(tensor)) // lanes


def lanes_of(plan, tensor):
    """Codes per beat of ``tensor``'s stream."""
    return plan.in_lanes if tensor == plan.qgraph.input_name else plan[tensor].out_lanes


def _pad_run_codes(plan, tensor, consumer):
    """Codes of ``tensor`` its producer emits, at the pipeline's pace, while the padding
    unit in front of ``consumer`` emits its longest run of pad beats (none without
    padding).

    Between the last image pixel of one frame and the first of the next, a padded
    window's front end emits the right pad, the bottom pad rows, the next frame's top pad
    rows and its left pad, one beat per cycle at most, taking no input; a producer
    running at the initiation interval keeps emitting meanwhile, and a FIFO shorter than
    that stalls it every frame (measured on random designs: 5–32 % over the slowest
    engine with a one-row FIFO in front of a 3×3 "same" convolution fed at its own
    rate)."""
    layer_plan = plan[consumer]
    pads = getattr(layer_plan.layer, "pads", None)
    if not pads or not any(pads) or layer_plan.layer.op == "global_avgpool":
        return 0
    _, width, channels = plan.qgraph.shape_of(tensor)
    top, left, bottom, right = pads
    run_cycles = (left + right + (top + bottom) * (left + width + right)) * (
        channels // layer_plan.in_lanes)
    frame_codes = math.prod(plan.qgraph.shape_of(tensor))
    return frame_codes * run_cycles / plan.initiation_interval


def skip_fifo_depth(plan, tensor, consumer):
    """Beats of FIFO on the edge ``tensor`` → ``consumer``: non-zero only where the edge
    runs straight from a fork to an add whose other input comes through a longer path of
    engines from the same tensor (a residual skip connection).

    The long path must receive ``lead`` more elements of ``tensor`` before it emits the
    element the add pairs with the skip path's; the skip FIFO holds them. The model sums,
    over the long path's layers, the input a layer needs ahead of an output (windowed:
    ``(kh − 1 − pad_top)`` rows plus ``kw`` pixels; MAC unit: its whole input vector), two
    pixels of internal buffering, a pipeline allowance and what its input FIFO takes in
    while its padding runs (:func:`_pad_run_codes`), each scaled to elements of
    ``tensor``. It never exceeds one frame plus a margin, which always suffices.
    """
    qgraph, join = plan.qgraph, plan[consumer]
    if join.engine == "concat":
        return _concat_fifo_depth(plan, tensor, join)
    if join.engine != "add" or len(qgraph.consumers(tensor)) < 2:
        return 0
    others = [name for name in join.layer.inputs if name != tensor]
    path = _between(plan, tensor, others[0]) if others else []
    if not path:
        return 0
    return _held_beats(plan, tensor, _held(plan, tensor, path), tensor)


def _held(plan, fork, path):
    """Elements of ``fork`` the layers of ``path`` take in ahead of their outputs."""
    qgraph, elements = plan.qgraph, math.prod(plan.qgraph.shape_of(fork))
    held = 0
    for layer_plan in path:
        layer = layer_plan.layer
        layer_in = math.prod(qgraph.shape_of(layer.inputs[0]))
        held += (lead_elements(layer) + _PIPELINE_ALLOWANCE * layer_plan.in_lanes
                 + _pad_run_codes(plan, layer.inputs[0], layer_plan.name)) * (
            elements / layer_in)
    return held


def _held_beats(plan, fork, held, tensor):
    """``held`` elements of ``fork`` as beats of ``tensor`` (plus a margin, at most a
    frame plus the margin)."""
    qgraph = plan.qgraph
    lanes = lanes_of(plan, tensor)
    elements = math.prod(qgraph.shape_of(tensor))
    scaled = held * elements / math.prod(qgraph.shape_of(fork))
    return min(math.ceil(scaled / lanes) + _FIFO_MARGIN, elements // lanes + _FIFO_MARGIN)


def _concat_fifo_depth(plan, tensor, join):
    """A concat takes a pixel of each input in turn, so an input whose path from the
    tensor they all come from holds less than another's must buffer the difference."""
    fork = _fork(plan, join.layer.inputs)
    if fork is None:
        return 0
    held = {name: _held(plan, fork, _between(plan, fork, name)) if name != fork else 0
            for name in join.layer.inputs}
    need = max(held.values()) - held[tensor]
    return _held_beats(plan, fork, need, tensor) if need > 0 else 0


def _fork(plan, names):
    """The latest tensor every one of ``names`` depends on (or is), if any."""
    qgraph = plan.qgraph

    def ancestors(name):
        found, stack = set(), [name]
        while stack:
            current = stack.pop()
            if current in found:
                continue
            found.add(current)
            if current != qgraph.input_name:
                stack.extend(qgraph[current].inputs)
        return found

    common = set.intersection(*(ancestors(name) for name in names))
    order = [qgraph.input_name] + [layer.name for layer in qgraph.layers]
    return max(common, key=order.index) if common else None


def _between(plan, tensor, name):
    """The planned layers on paths from ``tensor`` (exclusive) to ``name`` (inclusive)."""
    qgraph = plan.qgraph
    found, stack = {}, [name]
    while stack:
        current = stack.pop()
        if current == tensor or current == qgraph.input_name or current in found:
            continue
        found[current] = plan[current]
        stack.extend(plan[current].layer.inputs)
    return list(found.values())
