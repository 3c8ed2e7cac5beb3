"""The top level: every planned engine chained in stream order, behind AXI4-Stream ports."""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..errors import HwgenError
from .mac_unit import MacUnit
from .requant import code_shape
from .stream import LaneConverter

__all__ = ["Accelerator"]


def _bytes_width(bits):
    """``bits`` rounded up to a whole number of bytes, as AXI4-Stream ``tdata`` requires."""
    return -(-bits // 8) * 8


class Accelerator(wiring.Component):
    """The accelerator of a :class:`~hwgen.plan.Plan`: one :class:`MacUnit` per layer, with a
    :class:`LaneConverter` wherever an engine's ``pe`` differs from the next one's ``simd``.

    Ports (plus the implicit ``clk`` and synchronous, active-high ``rst``):

    - ``s_axis_tdata`` / ``tvalid`` / ``tready`` / ``tlast``: input codes, ``plan.in_lanes``
      per beat; lane ``i`` occupies bits ``[i·bits, (i+1)·bits)`` (two's complement when
      signed); ``tdata`` is rounded up to whole bytes and its pad bits are ignored. ``tlast``
      is accepted but ignored: the engines count beats, a frame being ``in_features`` codes.
    - ``m_axis_tdata`` / ``tvalid`` / ``tready`` / ``tlast``: output codes, ``plan.out_lanes``
      per beat, packed the same way with zero pad bits; ``tlast`` marks each frame's last beat.

    Attributes
    ----------
    latency : int
        Cycles from the transfer of a frame's last ``s_axis`` beat to the transfer of its last
        ``m_axis`` beat, for a frame entering an idle accelerator with ``m_axis_tready`` held
        high: the sum of the engines' and converters' latencies (same definition for each).
        The sum is exact because each converter's buffer is sized for the pace of the engine
        before it (one beat every ``in_beats`` cycles), so it never stalls that engine.
    initiation_interval : int
        Cycles between frames in steady state, ``plan.initiation_interval`` (the slowest
        engine's ``cycles_per_frame``).
    """

    def __init__(self, plan):
        self._plan = plan
        for index, layer_plan in enumerate(plan.layers):
            if layer_plan.engine != "mac":
                raise HwgenError(f"layer {layer_plan.name!r}: engine {layer_plan.engine!r} has "
                                 "no hardware yet; only 'mac' is supported")
            if index and layer_plan.layer.input != plan.layers[index - 1].layer.output:
                raise HwgenError(f"layer {layer_plan.name!r} consumes {layer_plan.layer.input}, "
                                 f"but the layer before produces "
                                 f"{plan.layers[index - 1].layer.output}")
        self._in_shape = code_shape(plan.layers[0].layer.input)
        self._out_shape = code_shape(plan.layers[-1].layer.output)
        in_width = _bytes_width(plan.in_lanes * self._in_shape.width)
        out_width = _bytes_width(plan.out_lanes * self._out_shape.width)
        self._blocks = self._make_blocks()
        super().__init__({
            "s_axis_tdata": In(in_width), "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1), "s_axis_tlast": In(1),
            "m_axis_tdata": Out(out_width), "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1), "m_axis_tlast": Out(1),
        })

    @property
    def plan(self):
        return self._plan

    def _make_blocks(self):
        """``{name: block}`` of the engines (``layer<k>``) and converters (``convert<k>``, in
        front of layer ``k``) in stream order."""
        blocks = {}
        for index, layer_plan in enumerate(self._plan.layers):
            previous = self._plan.layers[index - 1].pe if index else layer_plan.simd
            if previous != layer_plan.simd:
                # Paced like the engine before it, so it never stalls that engine's output.
                blocks[f"convert{index}"] = LaneConverter(
                    code_shape(layer_plan.layer.input), previous, layer_plan.simd,
                    layer_plan.layer.in_features,
                    in_interval=self._plan.layers[index - 1].in_beats)
            blocks[f"layer{index}"] = MacUnit(layer_plan.layer, layer_plan.pe, layer_plan.simd)
        return blocks

    @property
    def latency(self):
        return sum(block.latency for block in self._blocks.values())

    @property
    def initiation_interval(self):
        return self._plan.initiation_interval

    def elaborate(self, platform):
        m = Module()
        blocks = self._blocks
        for name, block in blocks.items():
            m.submodules[name] = block
        blocks = list(blocks.values())
        for upstream, downstream in zip(blocks, blocks[1:]):
            wiring.connect(m, upstream.o, downstream.i)

        first, last = blocks[0].i, blocks[-1].o
        in_bits = self._plan.in_lanes * self._in_shape.width
        m.d.comb += [
            first.payload.data.eq(self.s_axis_tdata[:in_bits]),
            first.payload.last.eq(self.s_axis_tlast),
            first.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(first.ready),
            self.m_axis_tdata.eq(last.payload.data),
            self.m_axis_tlast.eq(last.payload.last),
            self.m_axis_tvalid.eq(last.valid),
            last.ready.eq(self.m_axis_tready),
        ]
        return m
