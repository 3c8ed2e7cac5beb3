# amaranth: UnusedElaboratable=no
"""The accelerator's latency model (``Accelerator.timeline``, a max-plus schedule of every beat)
against Amaranth's simulator, block by block: for fuzzed CNNs that between them have pad
units, rows a stride drops, lane converters that narrow and widen, systolic, depthwise and
unrolled convolutions, max and average pools, global average pools, upsampling, activation
tables, residual adds, a concat, MAC units, shared layer-sequential engines and argmax, the
cycle of every layer's first output beat and of the frame's last output beat, counted from the
frame's first input beat, equal the simulation's."""

import math

import pytest
from amaranth.sim import Simulator

from hwgen.fuzz import random_case
from hwgen.hw.accelerator import Accelerator
from hwgen.plan import make_plan

# Seeds of hwgen.fuzz.random_case, each a small design (its engines in the comment).
SEEDS = [
    1001,  # padded systolic conv (1 lane) → gap → MAC → argmax
    1012,  # systolic, table, unrolled conv, systolic, concat, gap, MAC
    1024,  # systolic, depthwise (3 → 1 lanes), avg pool, upsample, gap, unrolled dense
    1062,  # unrolled convs dropping a row, depthwise behind a converter, MAC
    1093,  # unrolled conv, systolic conv needing bottom pads, add, upsample, MAC, argmax
    1118,  # systolic, max pool, systolic, unrolled conv, gap, MAC, argmax
    3213,  # a shared engine over convs, table, a shared engine over dense layers, argmax
    3214,  # systolic, a shared engine sending an image to an upsample, shared dense, argmax
]


def _measure(accelerator):
    """Per layer, the cycles of its output beats' transfers for the first frame, and the
    cycle of the first input beat, with the input always valid and the output always ready."""
    plan = accelerator.plan
    qgraph = plan.qgraph
    blocks = accelerator.blocks
    beats = {name: math.prod(qgraph.shape_of(name)) // plan[name].out_lanes for name in blocks}
    last = plan.layers[-1].name
    record = {name: [] for name in blocks}
    inputs = []

    async def bench(ctx):
        ctx.set(accelerator.m_axis_tready, 1)
        ctx.set(accelerator.s_axis_tvalid, 1)
        for cycle in range(4 * plan.initiation_interval + 4000):
            for name, block in blocks.items():
                if ctx.get(block.o.valid) and ctx.get(block.o.ready):
                    record[name].append(cycle)
            if ctx.get(accelerator.s_axis_tready):
                inputs.append(cycle)
            await ctx.tick()
            if len(record[last]) >= beats[last]:
                return

    simulator = Simulator(accelerator)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    assert len(record[last]) >= beats[last], "the frame did not come out"
    return {name: times[:beats[name]] for name, times in record.items()}, inputs[0]


@pytest.mark.parametrize("seed", SEEDS)
def test_model_equals_the_simulation_block_by_block(seed):
    case = random_case(seed)
    plan = make_plan(case.quantize(), case.folding, engine=case.engine)
    accelerator = Accelerator(plan)
    model = accelerator.timeline()
    measured, start = _measure(accelerator)
    firsts = {layer.name: (model[layer.name][0], measured[layer.name][0] - start)
              for layer in plan.layers}
    assert {name: predicted for name, (predicted, _) in firsts.items()} == \
        {name: got for name, (_, got) in firsts.items()}
    last = plan.layers[-1].name
    assert accelerator.latency == measured[last][-1] - start
