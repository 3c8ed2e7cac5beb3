"""System level for the multiplier kinds: one small CNN whose layers use LUT, packed-DSP and
plain DSP multipliers, built to Verilog (generic, and with ECP5 primitives), streamed through
Verilator with random stalls against the integer reference; and yosys's DSP count of packed
designs on each family against the cost model's."""

import numpy as np
import pytest

import hwgen
import hwgen.board
import hwgen.cost
from hwgen.cost import fabric_luts
from hwgen.synth import synthesize

pytestmark = pytest.mark.slow

# Every engine kind with a multiplier, each with another kind: conv0 LUT, conv1 packed (4
# channels share each activation), the depthwise conv LUT, fc0 packed, fc1 one DSP each.
MIXED = {"conv0": "systolic:4x9:lut", "conv1": "systolic:4x6:dsp-packed",
         "dw": "depthwise:2:lut", "fc0": "mac:4x9:dsp-packed", "fc1": "mac:2x4"}


def _mixed_graph(rng):
    graph = hwgen.Graph("mixed")
    x = graph.input((6, 6, 1))
    x = graph.relu(graph.conv2d(x, rng.normal(size=(4, 3, 3, 1)), rng.normal(size=4),
                                padding=1, name="conv0"))
    x = graph.relu(graph.conv2d(x, rng.normal(size=(4, 3, 3, 4)), rng.normal(size=4),
                                stride=2, padding=1, name="conv1"))
    x = graph.relu(graph.conv2d(x, rng.normal(size=(4, 3, 3, 1)), padding=1, groups=4,
                                name="dw"))
    x = graph.flatten(x)
    x = graph.relu(graph.dense(x, rng.normal(size=(8, 36)), rng.normal(size=8), name="fc0"))
    graph.dense(x, rng.normal(size=(4, 8)), rng.normal(size=4), name="fc1")
    return graph


def _mixed_plan(bits="w4a4"):
    rng = np.random.default_rng(21)
    graph = _mixed_graph(rng)
    calibration = rng.normal(size=(64, 6, 6, 1))
    qgraph = hwgen.quantize(graph, calibration, bits)
    return hwgen.make_plan(qgraph, MIXED), calibration


@pytest.mark.parametrize("target", ["generic", "ecp5"])
def test_mixed_multiplier_kinds_are_bit_exact_under_stalls(target, tmp_path):
    plan, calibration = _mixed_plan()
    kinds = {layer.name: layer.multiplier_label for layer in plan.layers if layer.multiplier_label}
    assert kinds == {"conv0": "lut", "conv1": "dsp-packed×2", "dw": "lut",
                     "fc0": "dsp-packed×2", "fc1": "dsp"}
    design = hwgen.generate(plan, calibration, frames=5, target=target)
    result = hwgen.simulate(design.write(tmp_path), stall=0.35, seed=4)
    assert result.passed, result.summary()
    assert np.array_equal(result.outputs, design.expected)
    assert abs(result.initiation_interval - plan.initiation_interval) <= \
        0.05 * plan.initiation_interval, (result.initiation_interval, plan)


def _packed_plan(board, fc1_kind, pe=(6, 6)):
    """fc0 packed, fc1 of ``fc1_kind``, ``pe`` PEs each, sized for ``board``'s DSP ports."""
    rng = np.random.default_rng(3)
    graph = hwgen.Graph("packed")
    x = graph.relu(graph.dense(graph.input((16,)), rng.normal(size=(12, 16)),
                               rng.normal(size=12), name="fc0"))
    graph.dense(x, rng.normal(size=(6, 12)), rng.normal(size=6), name="fc1")
    qgraph = hwgen.quantize(graph, rng.normal(size=(40, 16)), "w4a4")
    pins = {"fc0": f"{pe[0]}x4:dsp-packed", "fc1": f"{pe[1]}x2:{fc1_kind}"}
    return hwgen.make_plan(qgraph, pins, board=board, max_utilization=1)


# The input is signed w4a4: three products fit 18×18 (ECP5) and 25×18 (DSP48E1), two the
# iCE40's 16×16, whose eight DSPs hold only a small engine beside the requant's.
@pytest.mark.parametrize("board, pack, pe", [("ulx3s_85f", 3, (6, 6)),
                                             ("arty_a7_35t", 3, (6, 6)),
                                             ("icebreaker", 2, (2, 1))])
def test_modelled_dsps_equal_yosys_on_packed_designs(board, pack, pe, tmp_path):
    plan = _packed_plan(board, "lut", pe)
    assert plan["fc0"].pack == pack and plan["fc1"].multiplier == "lut"
    out = hwgen.generate(plan, frames=2).write(tmp_path)
    result = synthesize(out, board, place_and_route=False)
    cost = plan.cost()
    assert result.totals["dsp"] == cost.totals["dsp"] > 0, (result.yosys, cost)


def test_modelled_luts_of_lut_multipliers_against_yosys(tmp_path):
    """On ECP5, where a plain product always takes a DSP: the LUTs fc1's twelve LUT
    multipliers add (the same design with them on DSPs, then on LUTs), modelled within 35 % of
    what yosys adds."""
    measured, modelled = {}, {}
    for kind in ("lut", "dsp"):
        plan = _packed_plan("ulx3s_85f", kind)
        out = hwgen.generate(plan, frames=2).write(tmp_path / kind)
        result = synthesize(out, "ulx3s_85f", place_and_route=False)
        assert result.totals["dsp"] == plan.cost().totals["dsp"]
        measured[kind] = fabric_luts(result.yosys, "ecp5")
        modelled[kind] = plan.cost().totals["lut"]
    added, model_added = measured["lut"] - measured["dsp"], modelled["lut"] - modelled["dsp"]
    assert added > 0 and abs(model_added - added) <= 0.35 * added, (model_added, added)
