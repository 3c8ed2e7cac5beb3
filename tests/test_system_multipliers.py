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


def _mixed_plan(bits="w4a4", in_block_ram=()):
    rng = np.random.default_rng(21)
    graph = _mixed_graph(rng)
    calibration = rng.normal(size=(64, 6, 6, 1))
    qgraph = hwgen.quantize(graph, calibration, bits)
    pins = {name: pin + ":bram" if name in in_block_ram else pin for name, pin in MIXED.items()}
    return hwgen.make_plan(qgraph, pins), calibration


# The ECP5 target with three layers' weights in block RAM: their small ROMs become DP16KD
# grids (x18 and x9) that the Verilog model of the primitive reads.
@pytest.mark.parametrize("target, in_block_ram", [("generic", ()), ("ecp5", ()),
                                                  ("ecp5", ("conv1", "dw", "fc0"))],
                         ids=["generic", "ecp5", "ecp5-bram"])
def test_mixed_multiplier_kinds_are_bit_exact_under_stalls(target, in_block_ram, tmp_path):
    plan, calibration = _mixed_plan(in_block_ram=in_block_ram)
    kinds = {layer.name: layer.multiplier_label for layer in plan.layers if layer.multiplier_label}
    assert kinds == {"conv0": "lut", "conv1": "dsp-packed×2", "dw": "lut",
                     "fc0": "dsp-packed×2", "fc1": "dsp"}
    assert {layer.name for layer in plan.layers if layer.weights == "bram"} == set(in_block_ram)
    design = hwgen.generate(plan, calibration, frames=5, target=target)
    assert design.verilog.count("DP16KD #(") >= 3 * bool(in_block_ram)
    result = hwgen.simulate(design.write(tmp_path), stall=0.35, seed=4)
    assert result.passed, result.summary()
    assert np.array_equal(result.outputs, design.expected)
    assert abs(result.initiation_interval - plan.initiation_interval) <= \
        0.05 * plan.initiation_interval, (result.initiation_interval, plan)


def _packed_plan(board, fc1_kind, pe=(6, 6), hidden=12):
    """fc0 (``hidden`` outputs) packed, fc1 of ``fc1_kind``, ``pe`` PEs each, sized for
    ``board``'s DSP ports."""
    rng = np.random.default_rng(3)
    graph = hwgen.Graph("packed")
    x = graph.relu(graph.dense(graph.input((16,)), rng.normal(size=(hidden, 16)),
                               rng.normal(size=hidden), name="fc0"))
    graph.dense(x, rng.normal(size=(6, hidden)), rng.normal(size=6), name="fc1")
    qgraph = hwgen.quantize(graph, rng.normal(size=(40, 16)), "w4a4")
    pins = {"fc0": f"{pe[0]}x4:dsp-packed", "fc1": f"{pe[1]}x2:{fc1_kind}"}
    return hwgen.make_plan(qgraph, pins, board=board, max_utilization=1)


# The input is signed w4a4: three products fit 18×18 (ECP5) and 25×18 (DSP48E1), two the
# iCE40's 16×16, whose eight DSPs hold only a small engine beside the requant's. Eight PEs
# on ECP5 pack 3 + 3 + 2 (three multipliers per lane, not the four of pairs).
@pytest.mark.parametrize("board, pack, pe, hidden", [("ulx3s_85f", 3, (6, 6), 12),
                                                     ("ulx3s_85f", 3, (8, 6), 16),
                                                     ("arty_a7_35t", 3, (6, 6), 12),
                                                     ("icebreaker", 2, (2, 1), 12)])
def test_modelled_dsps_equal_yosys_on_packed_designs(board, pack, pe, hidden, tmp_path):
    plan = _packed_plan(board, "lut", pe, hidden)
    assert plan["fc0"].pack == pack and plan["fc1"].multiplier == "lut"
    out = hwgen.generate(plan, frames=2).write(tmp_path)
    result = synthesize(out, board, place_and_route=False)
    cost = plan.cost()
    assert result.totals["dsp"] == cost.totals["dsp"] > 0, (result.yosys, cost)


def test_short_packed_group_is_bit_exact_under_stalls(tmp_path):
    """Eight PEs packed three to a multiplier: the last group computes two products, its
    third field unused, in Verilator with stalls against the reference (fc1's unsigned
    input packs two)."""
    plan = _packed_plan("ulx3s_85f", "dsp-packed", (8, 6), hidden=16)
    assert (plan["fc0"].pack, plan["fc1"].pack) == (3, 2)
    rng = np.random.default_rng(8)
    design = hwgen.generate(plan, rng.normal(size=(40, 16)), frames=6)
    result = hwgen.simulate(design.write(tmp_path), stall=0.35, seed=6)
    assert result.passed, result.summary()
    assert np.array_equal(result.outputs, design.expected)


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


# (On iCE40 the model already counts these small ROMs in SB_RAM40_4K, where yosys keeps them
# in logic: its block-RAM column is an estimate, see docs/resources.md.)
@pytest.mark.parametrize("board", ["ulx3s_85f", "arty_a7_35t"])
def test_weights_in_block_ram_take_the_modelled_blocks(board, tmp_path):
    """The same MLP with its weights where yosys puts them and pinned to block RAM
    (``:bram``), each for the board's default target: the blocks yosys adds are the blocks
    the model adds, and the LUTs go down."""
    from test_cost import _mlp

    qgraph = _mlp(sizes=(64, 32, 10), bits="w4a4")
    measured, modelled = {}, {}
    for weights in ("", ":bram"):
        plan = hwgen.make_plan(qgraph, {"fc0": f"mac:2x16:lut{weights}",
                                        "fc1": f"mac:1x8:lut{weights}"})
        family = hwgen.board.get_board(board).family
        target = "ecp5" if family == "ecp5" else "generic"
        out = hwgen.generate(plan, frames=2, target=target).write(
            tmp_path / (weights[1:] or "auto"))
        result = synthesize(out, board, place_and_route=False)
        measured[weights] = (result.totals["bram"], fabric_luts(result.yosys, family))
        cost = hwgen.cost.estimate(plan, board).totals
        modelled[weights] = (cost["bram"], cost["lut"])
    added = measured[":bram"][0] - measured[""][0]
    assert added > 0 and added == modelled[":bram"][0] - modelled[""][0], (measured, modelled)
    assert measured[":bram"][1] < measured[""][1] and modelled[":bram"][1] < modelled[""][1]
