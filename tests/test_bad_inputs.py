"""Bad inputs a user can give: each is one ``hwgen: error:`` line (no traceback) naming the
argument or layer, found before the long steps; suspect calibration is a warning."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hwgen
from hwgen.cli import main
from hwgen.errors import HwgenError, HwgenWarning

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits_mlp"
MODEL, CALIB = str(EXAMPLE / "digits_mlp.onnx"), str(EXAMPLE / "calib.npz")


def _build(tmp_path, *extra, calib=CALIB, out=None):
    return main(["build", MODEL, "--calib", calib, "-o", str(out or tmp_path / "out"), *extra])


def _object_npz(path, key):
    arrays = {"x": np.load(CALIB)["x"][:8]}
    arrays[key] = np.array([object(), 1], dtype=object)
    np.savez(path, **arrays)  # savez stores object arrays with pickle
    return str(path)


def test_object_array_as_calibration(tmp_path, capsys):
    path = tmp_path / "c.npz"
    np.savez(path, x=np.array([[1, "a"]], dtype=object))
    assert _build(tmp_path, calib=str(path)) == 1
    err = capsys.readouterr().err
    assert "cannot read 'x' of" in err and "store a numeric array" in err


def test_object_array_as_labels(tmp_path, capsys):
    assert _build(tmp_path, calib=_object_npz(tmp_path / "c.npz", "y")) == 1
    assert "cannot read the labels 'y'" in capsys.readouterr().err


@pytest.mark.parametrize("frames", ["0", "-3"])
def test_frames_must_be_positive(tmp_path, capsys, frames):
    assert _build(tmp_path, "--frames", frames) == 1
    assert f"--frames must be at least 1, not {frames}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_plan_goal_needs_a_board(tmp_path, capsys):
    assert _build(tmp_path, "--plan-goal", "latency") == 1
    assert "--plan-goal latency selects among the plans that fit a board" in \
        capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_generate_checks_frames_and_inputs():
    graph = hwgen.load(MODEL)
    qgraph = hwgen.quantize(graph, np.load(CALIB)["x"])
    plan = hwgen.make_plan(qgraph)
    with pytest.raises(HwgenError, match="frames must be a positive number"):
        hwgen.generate(plan, frames=0)
    with pytest.raises(HwgenError, match="the test inputs are empty"):
        hwgen.generate(plan, np.zeros((0, 64)))
    with pytest.raises(HwgenError, match="NaN or infinity"):
        hwgen.generate(plan, np.full((2, 64), np.nan))


def test_bad_output_folder_is_found_first(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert _build(tmp_path, out=blocker) == 1
    assert "is a file; give a folder" in capsys.readouterr().err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert _build(tmp_path, out=locked / "out") == 1
        assert "permission denied" in capsys.readouterr().err


def test_sim_inputs_must_be_finite_and_not_empty(tmp_path, capsys):
    assert _build(tmp_path, "--frames", "2") == 0
    capsys.readouterr()
    for name, array in (("nan.npy", np.full((3, 64), np.nan)), ("empty.npy", np.zeros((0, 64)))):
        np.save(tmp_path / name, array)
        assert main(["sim", str(tmp_path / "out"), "--inputs", str(tmp_path / name)]) == 1
        err = capsys.readouterr().err
        assert "NaN or infinite" in err or "at least one frame" in err
        assert "Traceback" not in err


def test_constant_calibration_warns(tmp_path, capsys):
    np.save(tmp_path / "zeros.npy", np.zeros((16, 64)))
    assert _build(tmp_path, "--frames", "2", calib=str(tmp_path / "zeros.npy")) == 0
    assert "hwgen: warning: every calibration value is 0" in capsys.readouterr().err
    graph = hwgen.load(MODEL)
    with pytest.warns(HwgenWarning, match="degenerate"):
        hwgen.quantize(graph, np.zeros((4, 64)))


def test_huge_layer_is_refused_before_quantizing():
    graph = hwgen.Graph("huge")
    x = graph.input((1 << 13,))
    graph.dense(x, np.zeros(((1 << 11) + 1, 1 << 13), np.float32))
    with pytest.raises(HwgenError, match=r"has 16,785,408 weights; hwgen keeps every weight on "
                                         "chip"):
        hwgen.quantize(graph, np.ones((2, 1 << 13)))


def test_degenerate_bias_names_the_layer():
    graph = hwgen.Graph("tiny")
    x = graph.input((2,))
    h = graph.dense(x, [[1e-12, 0.0], [0.0, 1e-12]], name="fc1")
    graph.dense(h, [[1.0, 1.0]], [1e9], name="fc2")
    with pytest.raises(HwgenError, match=r"layer 'fc2': a bias of 1e\+09 is .* accumulator steps "
                                         r".*beyond int64"):
        hwgen.quantize(graph, np.random.default_rng(0).standard_normal((10, 2)))


def test_errors_have_no_traceback(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, x=np.array([[1, "a"]], dtype=object))
    done = subprocess.run([sys.executable, "-m", "hwgen", "build", MODEL, "--calib", str(path),
                           "-o", str(tmp_path / "o")], capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0
