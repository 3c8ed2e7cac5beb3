"""Design-space exploration (hwgen.explore, hwgen explore) and the energy estimate
(hwgen.energy): a sweep's rows against the stages computed by hand, its files, its cache, the
same rows on Dask, Pareto fronts, and energy that grows with bits and MACs."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hwgen
from hwgen.cli import main
from hwgen.energy import DRAM_PJ_PER_BIT, FAMILY_ENERGY, activity, estimate_energy
from hwgen.errors import HwgenError
from hwgen.explore import expand_points, explore
from hwgen.explore_report import Exploration
from hwgen.reference import run_integer

ROOT = Path(__file__).resolve().parents[1]
MLP = ROOT / "examples" / "digits_mlp"
CNN = ROOT / "examples" / "digits_cnn"
SWEEP = dict(bits=["w8a8", "w4a4"], parallelism=[8, "fit"],
             boards=["ulx3s_85f", "icebreaker"])


@pytest.fixture(scope="module")
def mlp():
    graph = hwgen.load(MLP / "digits_mlp.onnx")
    with np.load(MLP / "calib.npz") as data:
        return graph, data["x"], data["y"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, mlp):
    """Eight points over two boards in a local pool of two processes, written to a folder."""
    out = tmp_path_factory.mktemp("sweep")
    result = explore(MLP / "digits_mlp.onnx", MLP / "calib.npz", out=out, workers=2,
                     progress=False, **SWEEP)
    return out, result


def test_sweep_rows_match_the_stages(sweep, mlp):
    _, result = sweep
    graph, x, y = mlp
    frame = result.frame
    assert len(frame) == 8 and result.computed == 8
    assert set(frame["board"]) == {"ulx3s_85f", "icebreaker"}
    assert list(frame["bits"]) == ["w8a8"] * 4 + ["w4a4"] * 4
    for row in frame.itertuples():
        if row.error:
            continue
        qgraph = hwgen.quantize(graph, x, row.bits)
        plan = (hwgen.make_plan(qgraph, board=row.board) if row.parallelism == "fit"
                else hwgen.make_plan(qgraph, multipliers=int(row.parallelism)))
        codes = run_integer(qgraph, qgraph.input_codes(x))
        assert row.accuracy == pytest.approx(100 * np.mean(codes.argmax(1) == y))
        cost = plan.cost(row.board)
        assert (row.lut, row.ff, row.dsp, row.bram) == tuple(cost.totals[r] for r in
                                                              ("lut", "ff", "dsp", "bram"))
        assert row.fits == cost.fits and row.ii == plan.initiation_interval
        board = hwgen.board.get_board(row.board)
        assert row.frames_per_s == pytest.approx(board.target_mhz * 1e6 / row.ii)
        assert row.energy_nj == pytest.approx(estimate_energy(plan, board).total / 1e3)
        parts = sum(getattr(row, f"energy_{p}_nj") for p in
                    ("arithmetic", "memory", "registers", "io", "static"))
        assert parts == pytest.approx(row.energy_nj)
    # A faster plan at the same bits: the board-sized one beats 8 multipliers.
    ulx3s = frame[(frame["board"] == "ulx3s_85f") & (frame["bits"] == "w8a8")]
    assert ulx3s["frames_per_s"].iloc[1] > ulx3s["frames_per_s"].iloc[0]


def test_sweep_writes_csv_plots_and_report(sweep):
    out, result = sweep
    csv = pd.read_csv(out / "results.csv", keep_default_na=False, na_values=[""])
    assert len(csv) == 8 and list(csv["key"]) == list(result.frame["key"])
    assert csv["accuracy"].tolist() == pytest.approx(result.frame["accuracy"].tolist(),
                                                     nan_ok=True)
    parquet = pd.read_parquet(out / "results.parquet")
    assert parquet["lut"].equals(result.frame["lut"])
    for name in ("pareto_fps.png", "pareto_energy.png", "energy.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.html").read_text()
    assert "<img src='pareto_fps.png'" in report and "Pareto front" in report
    assert report.count("<tr>") > 8
    assert "<table" in result._repr_html_()


def test_repeated_and_extended_sweep_hits_the_cache(sweep):
    out, result = sweep
    again = explore(MLP / "digits_mlp.onnx", MLP / "calib.npz", out=out, workers=1,
                    progress=False, **SWEEP)
    assert again.computed == 0 and again.log["cached"].all()
    pd.testing.assert_frame_equal(again.frame, result.frame)
    extended = explore(MLP / "digits_mlp.onnx", MLP / "calib.npz", out=out, workers=1,
                       progress=False, **dict(SWEEP, bits=["w8a8", "w4a4", "w6a6"]))
    assert extended.computed == 4 and len(extended) == 12
    pd.testing.assert_frame_equal(extended.frame.iloc[:8].reset_index(drop=True), result.frame)
    # Other calibration data is another point.
    with np.load(MLP / "calib.npz") as data:
        moved = explore(MLP / "digits_mlp.onnx", (data["x"][:100], data["y"][:100]), out=out,
                        workers=1, progress=False, bits="w8a8", parallelism=8,
                        boards="ulx3s_85f")
    assert moved.computed == 1


def test_dask_scheduler_gives_identical_rows(sweep, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    _, result = sweep
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            on_dask = explore(MLP / "digits_mlp.onnx", MLP / "calib.npz", cache=False,
                              client=client, progress=False, **SWEEP)
        assert on_dask.computed == 8
        pd.testing.assert_frame_equal(on_dask.frame, result.frame)
        # The CLI reaches the same scheduler by its address.
        argv = ["explore", str(MLP / "digits_mlp.onnx"), "--calib", str(MLP / "calib.npz"),
                "--bits", "w8a8", "--parallelism", "8", "--boards", "ulx3s_85f",
                "--scheduler", cluster.scheduler_address, "-o", str(tmp_path / "cli")]
        assert main(argv) == 0
    csv = pd.read_csv(tmp_path / "cli" / "results.csv", keep_default_na=False)
    row = result.frame.iloc[0]
    assert csv["lut"][0] == row["lut"] and csv["accuracy"][0] == pytest.approx(row["accuracy"])


def test_cli_explore_errors(tmp_path, capsys):
    argv = ["explore", str(MLP / "digits_mlp.onnx"), "--calib", str(MLP / "calib.npz"),
            "--bits", "auto", "-o", str(tmp_path / "x")]
    assert main(argv) == 1
    assert "'auto' needs a limit or a budget" in capsys.readouterr().err
    argv = ["explore", str(MLP / "digits_mlp.onnx"), "--calib", str(MLP / "calib.npz"),
            "--boards", "nope", "-o", str(tmp_path / "x")]
    assert main(argv) == 1
    assert "unknown board 'nope'" in capsys.readouterr().err


def test_settings_expand_and_validate(tmp_path):
    layers = tmp_path / "bits.json"
    layers.write_text(json.dumps({"gemm_0": {"w": 4, "a": 8}}))
    points = expand_points(["w8a8", str(layers), {"gemm_0": {"w": 4, "a": 8}}],
                           [8, "fit", {"gemm_0": "4x16"}], ["icebreaker"], ["dsp", None])
    assert len(points) == 2 * 3 * 2   # the file and the dict are the same setting
    assert {p.parallelism for p in points} == {"8", "fit", "gemm_0=4x16"}
    for bad in (dict(bits=["auto"]), dict(parallelism=["fast"]), dict(parallelism=[0]),
                dict(boards=[])):
        settings = {**dict(bits=["w8a8"], parallelism=["fit"], boards=["icebreaker"]), **bad}
        with pytest.raises(HwgenError):
            expand_points(**settings)


def test_auto_bits_kinds_and_pins_in_one_sweep(mlp):
    graph, x, y = mlp
    result = explore(graph, (x, y), bits=["auto:bops=50%"], parallelism=["fit", 8],
                     boards=["orangecrab_25f"], multiplier_kinds=["lut", None],
                     targets=[None, "generic"], workers=1, progress=False)
    frame = result.frame
    assert len(frame) == 8 and (frame["error"] == "").all()
    assert set(frame["target"]) == {"ecp5", "generic"}
    lut_rows = frame[(frame["multiplier_kinds"] == "lut") & (frame["parallelism"] == "8")]
    assert (lut_rows["dsp"] < frame[(frame["multiplier_kinds"] == "")
                                    & (frame["parallelism"] == "8")]["dsp"].values).all()
    assert all("mac:" in f and ":lut" in f for f in lut_rows["folding"])
    # The auto bits: within half of w8a8's bit-operations.
    w8 = hwgen.quantize(graph, x, "w8a8")
    assert (frame["bit_ops"] <= 0.5 * hwgen.precision.bit_ops(w8)).all()
    ecp5_on_ice = explore(graph, (x, y), bits="w8a8", parallelism=8, boards="icebreaker",
                          targets="ecp5", workers=1, progress=False)
    assert "does not have" in ecp5_on_ice.frame["error"][0]


def _rows(values):
    rows = [{"bits": f"b{i}", "parallelism": "fit", "board": "x", "error": "", "fits": True,
             "frames_per_s": fps, "accuracy": acc, "energy_nj": energy, "key": str(i)}
            for i, (fps, acc, energy) in enumerate(values)]
    return Exploration(rows, [], seconds=0, computed=len(rows), samples=1)


def test_pareto_over_two_and_three_columns():
    result = _rows([(10, 90, 5), (20, 85, 6), (15, 80, 1), (5, 95, 9), (20, 84, 7)])
    front = result.pareto("frames_per_s", "accuracy")
    assert list(front["bits"]) == ["b3", "b0", "b1"]        # b2 is beaten by b0, b4 by b1
    three = result.pareto("frames_per_s", "accuracy", "energy_nj")
    assert set(three["bits"]) == {"b0", "b1", "b2", "b3"}  # b2 is the lowest energy
    flipped = result.pareto("frames_per_s:min", "accuracy")
    assert list(flipped["bits"]) == ["b3"]
    with pytest.raises(HwgenError, match="two or three"):
        result.pareto("accuracy")
    with pytest.raises(HwgenError, match="no column"):
        result.pareto("accuracy", "speed:max")
    with pytest.raises(HwgenError, match="more 'key' is better"):
        result.pareto("accuracy", "key")


def _dense_plan(width, bits, board="ulx3s_85f"):
    """A 64→width→10 MLP with fixed random weights, folded 1×8 / 1×8."""
    rng = np.random.default_rng(1)
    graph = hwgen.Graph(f"mlp{width}")
    x = graph.input((64,))
    x = graph.relu(graph.dense(x, rng.normal(size=(width, 64)), rng.normal(size=width),
                               name="fc1"))
    graph.dense(x, rng.normal(size=(10, width)), rng.normal(size=10), name="fc2")
    data = rng.uniform(0, 1, size=(64, 64))
    qgraph = hwgen.quantize(graph, data, bits)
    return hwgen.make_plan(qgraph, {"fc1": "1x8", "fc2": "1x8"})


@pytest.mark.parametrize("board", ["ulx3s_85f", "icebreaker", "pynq_z2", "ultra96"])
def test_energy_grows_with_bits_and_macs(board):
    by_bits = [estimate_energy(_dense_plan(32, f"w{b}a{b}"), board) for b in (2, 4, 6, 8)]
    for low, high in zip(by_bits, by_bits[1:]):
        for part in ("arithmetic", "memory", "registers", "io"):
            assert 0 < low.breakdown[part] < high.breakdown[part]
        assert low.total < high.total
    small, large = (estimate_energy(_dense_plan(width, "w4a4"), board) for width in (16, 64))
    assert sum(l.macs for l in large.layers) == 4 * sum(l.macs for l in small.layers)
    assert small.breakdown["arithmetic"] < large.breakdown["arithmetic"]
    assert small.dynamic < large.dynamic and small.static < large.static   # a longer II


def test_energy_static_io_and_counts():
    plan = _dense_plan(32, "w4a6")
    board = hwgen.board.get_board("ulx3s_85f")
    report = estimate_energy(plan, board)
    seconds = plan.initiation_interval / (board.target_mhz * 1e6)
    watts = board.luts * FAMILY_ENERGY["ecp5"].static_watts_per_lut
    assert report.static == pytest.approx(watts * seconds * 1e12)
    assert report.io == pytest.approx((64 * plan.qgraph.input.bits + 10 * 8) * DRAM_PJ_PER_BIT)
    slower = estimate_energy(plan, board, clock_mhz=75, static_watts=0.5)
    assert slower.static == pytest.approx(0.5 * 2 * seconds * 1e12)
    assert slower.dynamic == pytest.approx(report.dynamic)
    counts = {layer.name: layer for layer in activity(plan, board)}
    fc1 = plan["fc1"].layer
    assert counts["fc1"].macs == 64 * 32
    assert counts["fc1"].hard_product_bits >= 64 * 32 * 4 * 6        # every product on a DSP
    weights = [m for m in counts["fc1"].memory if m[0] == "weights"]
    assert weights and weights[0][2] == 64 * 32 * fc1.weight_bits   # one weight read per MAC
    assert "arithmetic" in report.text() and "<table" in report._repr_html_()
    assert report.table()["total_pj"].iloc[-1] == pytest.approx(report.total)
    with pytest.raises(HwgenError, match="name a board"):
        estimate_energy(plan)


@pytest.mark.slow
def test_synthesis_and_simulation_of_one_tiny_point(tmp_path):
    """One 16→4 dense layer on the iCEBreaker: yosys/nextpnr counts and fmax, a cocotb run,
    and the energy with the measured II."""
    rng = np.random.default_rng(2)
    graph = hwgen.Graph("tiny")
    graph.dense(graph.input((16,)), rng.normal(size=(4, 16)), rng.normal(size=4), name="fc")
    x = rng.uniform(-1, 1, size=(32, 16))
    result = explore(graph, x, bits="w4a4", parallelism=4, boards="icebreaker", synth=True,
                     sim=True, sim_frames=4, out=tmp_path, workers=1, progress=False)
    row = result.frame.iloc[0]
    assert row["error"] == "" and row["sim_passed"]
    assert row["synth_lut"] > 0 and row["fmax_mhz"] > 0
    assert row["sim_ii"] == pytest.approx(row["ii"], rel=0.05)
    assert row["energy_measured_nj"] > 0
    assert (tmp_path / "designs" / row["key"] / "synth" / "synth.json").is_file()
