"""The top level: every planned engine, wired as the layer graph says, behind AXI4-Stream ports."""

import math

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import HwgenError
from .dsp import check_target
from .requant import code_shape
from .stream import LaneConverter, frame_layout, queue

__all__ = ["Accelerator", "make_block", "plan_latency"]


def _bytes_width(bits):
    """``bits`` rounded up to a whole number of bytes, as AXI4-Stream ``tdata`` requires."""
    return -(-bits // 8) * 8


def make_block(layer_plan, *, target="generic", link=(0, True)):
    """The engine of one :class:`~hwgen.plan.LayerPlan`, its multipliers built for ``target``
    (imports are local so each engine's module loads only when a plan uses it); ``link`` is an
    unrolled layer's ``(start_level, registered)`` (:meth:`hwgen.plan.Plan.unrolled_links`)."""
    layer, engine = layer_plan.layer, layer_plan.engine
    if engine == "mac":
        from .mac_unit import MacUnit
        return MacUnit(layer, layer_plan.pe, layer_plan.simd, target=target,
                       multiplier=layer_plan.multiplier, pack=layer_plan.pack,
                       block_weights=layer_plan.weights == "bram")
    if engine == "sequential":
        from .sequential import SequentialEngine
        return SequentialEngine(layer.layers, layer_plan.pe, target=target,
                                multiplier=layer_plan.multiplier)
    if engine == "unrolled" and layer.op == "conv":
        from .conv import ConvLayer
        return ConvLayer(layer, "unrolled", in_lanes=layer_plan.in_lanes,
                         levels=layer_plan.levels)
    if engine == "unrolled":
        from .unrolled import UnrolledDense
        return UnrolledDense(layer, layer_plan.levels, start_level=link[0],
                             registered=link[1])
    if engine in ("systolic", "depthwise"):
        from .conv import ConvLayer
        return ConvLayer(layer, (layer_plan.pe, layer_plan.simd), in_lanes=layer_plan.in_lanes,
                         target=target, multiplier=layer_plan.multiplier, pack=layer_plan.pack,
                         block_weights=layer_plan.weights == "bram")
    if engine == "pool":
        from .pool import PoolLayer
        return PoolLayer(layer, layer_plan.pe, target=target)
    if engine == "gap":
        from .pool import GlobalAvgPool
        return GlobalAvgPool(layer, layer_plan.pe)
    if engine == "add":
        from .add import AddUnit
        return AddUnit(layer, layer_plan.pe)
    if engine == "table":
        from .table import TableUnit
        return TableUnit(layer, layer_plan.pe, target=target)
    if engine == "argmax":
        from .table import ArgMaxUnit
        return ArgMaxUnit(layer, layer_plan.pe)
    if engine == "concat":
        from .concat import ConcatUnit
        return ConcatUnit(layer, layer_plan.pe)
    if engine == "upsample":
        from .upsample import Upsample
        return Upsample(layer, layer_plan.pe)
    raise HwgenError(f"layer {layer_plan.name!r}: engine {engine!r} has no hardware")


def _ports(layer_plan):
    if layer_plan.engine == "concat":
        return tuple(f"i{index}" for index in range(len(layer_plan.layer.inputs)))
    return ("a", "b") if layer_plan.engine == "add" else ("i",)


class Accelerator(wiring.Component):
    """The accelerator of a :class:`~hwgen.plan.Plan`: one engine per layer, connected along
    the layer graph. Between a producer and a consumer whose lanes differ sits a
    :class:`LaneConverter`; a tensor read by several layers goes through a
    :class:`~hwgen.hw.fifo.StreamFork`. Edges carrying images get a
    :class:`~hwgen.hw.fifo.StreamFifo` of ``plan.fifo_depth(tensor, consumer)`` beats: a row
    to decouple the engines' rates, and on a residual skip path the depth the plan's latency
    model gives, so the fork never waits for the add.

    Ports (plus the implicit ``clk`` and synchronous, active-high ``rst``):

    - ``s_axis_tdata`` / ``tvalid`` / ``tready`` / ``tlast``: input codes in HWC order,
      ``plan.in_lanes`` per beat; lane ``i`` occupies bits ``[i·bits, (i+1)·bits)`` (two's
      complement when signed); ``tdata`` is rounded up to whole bytes and its pad bits are
      ignored. ``tlast`` is accepted but ignored: the engines count beats.
    - ``m_axis_tdata`` / ``tvalid`` / ``tready`` / ``tlast``: output codes, ``plan.out_lanes``
      per beat, packed the same way with zero pad bits; ``tlast`` marks each frame's last beat.

    Parameters
    ----------
    plan : Plan
    target : str
        ``"generic"`` (the default: plain Verilog for any tool and simulator) or ``"ecp5"``
        (the engines' multipliers become ``MULT18X18D`` primitives with their registers in use,
        which yosys's ECP5 flow does not infer; Verilog simulators then need the model
        :func:`hwgen.hw.dsp.simulation_models` supplies, which :mod:`hwgen.sim` adds by
        itself). Cycle for cycle the two designs behave alike: same latency, same initiation
        interval.

    Attributes
    ----------
    target : str
    latency : int
        Cycles from the transfer of a frame's first ``s_axis`` beat to the transfer of its
        last ``m_axis`` beat, for a frame entering an idle accelerator with ``s_axis_tvalid``
        and ``m_axis_tready`` held high: how long a lone frame takes, whatever the first
        layer's pace. From :meth:`timeline`, a max-plus schedule of every beat of the frame
        through the blocks as built: a conv's or pool's pad unit, window reader and engine
        pixel by pixel, MAC units fold by fold, elementwise blocks beat for beat, the FIFOs
        and lane converters between them. It leaves out backpressure (a producer is never
        made to wait), so a fast layer in front of a slow one is modelled as finishing early,
        which the slow one's schedule absorbs. The manifest calls it exact, as it does the
        interval: it has equalled the measurement on every design simulated since (see
        ``docs/architecture.md``, "Cycle model"); not a proof.
    initiation_interval : int
        Cycles between frames in steady state: ``plan.initiation_interval``.
    """

    def __init__(self, plan, *, target="generic"):
        self._plan = plan
        self._target = check_target(target)
        qgraph = plan.qgraph
        self._in_shape = code_shape(qgraph.input)
        self._out_shape = code_shape(qgraph.output)
        links = plan.unrolled_links()
        self._blocks = {p.name: make_block(p, target=self._target,
                                           link=links.get(p.name, (0, True)))
                        for p in plan.layers}
        self._edges = self._make_edges()
        in_width = _bytes_width(plan.in_lanes * self._in_shape.width)
        out_width = _bytes_width(plan.out_lanes * self._out_shape.width)
        super().__init__({
            "s_axis_tdata": In(in_width), "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1), "s_axis_tlast": In(1),
            "m_axis_tdata": Out(out_width), "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1), "m_axis_tlast": Out(1),
        })

    @property
    def plan(self):
        return self._plan

    @property
    def target(self):
        return self._target

    @property
    def blocks(self):
        """``{layer name: engine}``."""
        return dict(self._blocks)

    def _make_edges(self):
        """``{tensor: [(consumer plan, port, fifo or None, converter or None)]}``."""
        from .fifo import StreamFifo

        qgraph, edges = self._plan.qgraph, {}
        for consumer in self._plan.layers:
            for tensor, port in zip(consumer.layer.inputs, _ports(consumer)):
                quant, shape = qgraph.quant_of(tensor), qgraph.shape_of(tensor)
                lanes = self._plan.lanes_of(tensor)
                elements = math.prod(shape)
                fifo = None
                depth = self._plan.fifo_depth(tensor, consumer.name)
                # The FIFO sits on the wide side of a converter: behind one that widens, so
                # the consumer can read a burst at one beat per cycle (in front, the converter
                # would pace every read to the narrow side's rate and a consumer that fell
                # behind, a window at a row's start, or a concat waiting for its other inputs,
                # could never catch up).
                fifo_lanes = max(lanes, consumer.in_lanes)
                if depth:
                    fifo = StreamFifo(frame_layout(code_shape(quant), fifo_lanes),
                                      -(-depth * lanes // fifo_lanes))
                converter = None
                if lanes != consumer.in_lanes:
                    # A MAC unit emits a beat every in_beats cycles; pacing the converter to it
                    # keeps that engine from ever waiting (and the latency exact).
                    producer = self._plan[tensor] if tensor in self._blocks else None
                    pace = None
                    if producer is not None and producer.engine == "mac" and fifo is None:
                        pace = producer.layer.in_features // producer.simd
                    converter = LaneConverter(code_shape(quant), lanes, consumer.in_lanes,
                                              elements, in_interval=pace)
                edges.setdefault(tensor, []).append((consumer, port, fifo, converter))
        return edges

    def _fifo_first(self, tensor, consumer):
        """Whether the edge ``tensor`` → ``consumer`` has its FIFO in front of its lane
        converter (else behind it: where the converter widens the beats)."""
        return self._plan.lanes_of(tensor) >= consumer.in_lanes


    @property
    def latency(self):
        return math.ceil(self.timeline()[self._plan.layers[-1].name][-1])

    def timeline(self):
        """``{tensor: times}``: per tensor, the cycle of each beat of a frame (an array, in
        the producer's beats), counted from the frame's first ``s_axis`` beat, the input
        arriving at one beat per cycle and the output always ready: the model behind
        :attr:`latency`, a max-plus schedule of the blocks as they are built. Per layer in
        graph order, its inputs' beats reach it through the edges' FIFOs and lane converters
        (:meth:`_arrival`) and its block turns them into its output beats
        (:meth:`_beat_times`). Backpressure is left out: a producer is never made to wait."""
        plan, qgraph = self._plan, self._plan.qgraph
        in_beats = math.prod(qgraph.shape_of(qgraph.input_name)) // plan.in_lanes
        times = {qgraph.input_name: np.arange(in_beats, dtype=float)}
        for layer_plan in plan.layers:
            arrivals = [self._arrival(tensor, layer_plan, fifo, converter, times[tensor])
                        for tensor, (_, _, fifo, converter) in self._incoming(layer_plan)]
            times[layer_plan.name] = self._beat_times(layer_plan, arrivals)
        return times

    def _arrival(self, tensor, layer_plan, fifo, converter, times):
        """When the producer's beats of ``tensor`` (at ``times``) reach ``layer_plan``, in its
        own input beats: a cycle later through a FIFO; through a lane converter, a cycle
        after the producer's beat that completes it and a cycle after the one before it."""
        times = times + (fifo.latency if fifo else 0)
        if converter is None:
            return times
        elements = math.prod(self._plan.qgraph.shape_of(tensor))
        lanes, in_lanes = self._plan.lanes_of(tensor), layer_plan.in_lanes
        source = (np.arange(1, elements // in_lanes + 1) * in_lanes - 1) // lanes
        return queue(times[source] + 1, np.ones(len(source)))

    def _beat_times(self, layer_plan, arrivals):
        """The cycles of ``layer_plan``'s output beats for its inputs' beats at ``arrivals``
        (arrays, one per input). A block with a schedule of its own (``beat_times``: a conv's
        or pool's pixel by pixel, an elementwise block's, a MAC unit's) gives them. Else (an
        argmax, an unrolled dense layer, a shared engine: each needs its whole input) they are
        taken evenly spaced: the share of its input that
        :func:`~hwgen.plan_fifo.lead_elements` says an output needs starts it, and its block
        latency after that share, or after its last input or its remaining share of its
        cycles, it ends."""
        from ..plan_fifo import lead_elements

        qgraph = self._plan.qgraph
        block, layer = self._blocks[layer_plan.name], layer_plan.layer
        if hasattr(block, "beat_times"):
            return block.beat_times(*arrivals)
        beats = math.prod(qgraph.shape_of(layer_plan.name)) // layer_plan.out_lanes
        end = max(times[-1] for times in arrivals)
        begin = max(times[0] for times in arrivals)
        share = min(1.0, lead_elements(layer) / math.prod(qgraph.shape_of(layer.inputs[0])))
        start = begin + (end - begin) * share
        return np.linspace(start + block.latency,
                           max(end, start + layer_plan.cycles * (1 - share)) + block.latency,
                           beats)

    def _incoming(self, layer_plan):
        for tensor in layer_plan.layer.inputs:
            for edge in self._edges[tensor]:
                if edge[0] is layer_plan:
                    yield tensor, edge

    @property
    def initiation_interval(self):
        return self._plan.initiation_interval

    def elaborate(self, platform):
        from .fifo import StreamFork

        m = Module()
        for name, block in self._blocks.items():
            m.submodules[name] = block

        qgraph = self._plan.qgraph
        sources = {name: block.o for name, block in self._blocks.items()}
        sources[qgraph.input_name] = self._input_stream(m)

        for tensor, edges in self._edges.items():
            source = sources[tensor]
            if len(edges) > 1:
                fork = StreamFork(source.payload.shape(), len(edges))
                m.submodules[f"fork_{tensor}"] = fork
                wiring.connect(m, source, fork.i)
                outputs = [getattr(fork, f"o{index}") for index in range(len(edges))]
            else:
                outputs = [source]
            for stream_out, (consumer, port, fifo, converter) in zip(outputs, edges):
                suffix = f"{tensor}_to_{consumer.name}"
                stages = [("fifo", fifo), ("convert", converter)]
                if not self._fifo_first(tensor, consumer):
                    stages.reverse()
                for kind, block in stages:
                    if block is not None:
                        m.submodules[f"{kind}_{suffix}"] = block
                        wiring.connect(m, stream_out, block.i)
                        stream_out = block.o
                wiring.connect(m, stream_out, getattr(self._blocks[consumer.name], port))

        last = sources[self._plan.layers[-1].name]
        m.d.comb += [
            self.m_axis_tdata.eq(last.payload.data),
            self.m_axis_tlast.eq(last.payload.last),
            self.m_axis_tvalid.eq(last.valid),
            last.ready.eq(self.m_axis_tready),
        ]
        return m

    def _input_stream(self, m):
        """``s_axis`` as a frame stream (source side) of ``plan.in_lanes`` input codes."""
        lanes = self._plan.in_lanes
        signature = stream.Signature(frame_layout(self._in_shape, lanes))
        port = signature.create(path=("input",))
        m.d.comb += [
            port.payload.data.eq(self.s_axis_tdata[:lanes * self._in_shape.width]),
            port.payload.last.eq(self.s_axis_tlast),
            port.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(port.ready),
        ]
        return port


def plan_latency(plan, target="generic"):
    """The latency in cycles of ``plan``'s accelerator (:attr:`Accelerator.latency`), from its
    blocks without elaborating them (1–2 s a design). The blocks are never used, so
    Amaranth's warning about that is silenced while they are collected."""
    import gc
    import warnings

    from amaranth.hdl import UnusedElaboratable

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        accelerator = Accelerator(plan, target=target)
        latency = accelerator.latency
        del accelerator
        gc.collect()
    return latency
