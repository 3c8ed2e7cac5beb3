"""The project's set-up promises: the README's two commands, CI running exactly them, and a
plain (non-editable) `pip install .` giving a working `hwgen` command, simulation included."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
INSTALL, TEST = 'pip install -e ".[dev]"', "pytest"


def test_readme_opens_with_the_two_commands():
    head = (ROOT / "README.md").read_text().splitlines()[:15]
    commands = [line.strip() for line in head if line.startswith("    ")]
    assert commands[:2] == [INSTALL, TEST]


def test_ci_runs_exactly_the_readme_commands():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert INSTALL in lines and TEST in lines
    assert lines.index(INSTALL) < lines.index(TEST)


def write_tiny_mlp(path, rng):
    """An 8-6-4 MLP in the shape torch.onnx.export writes (Gemm with transB=1, Relu)."""
    weights = [rng.normal(size=(6, 8)), rng.normal(size=(4, 6))]
    biases = [rng.normal(size=6), rng.normal(size=4)]
    inits = []
    for index, (w, b) in enumerate(zip(weights, biases)):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"fc{index}.weight"),
                  numpy_helper.from_array(b.astype(np.float32), f"fc{index}.bias")]
    nodes = [
        helper.make_node("Gemm", ["x", "fc0.weight", "fc0.bias"], ["h"], name="/fc0/Gemm",
                         transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="/relu/Relu"),
        helper.make_node("Gemm", ["r", "fc1.weight", "fc1.bias"], ["y"], name="/fc1/Gemm",
                         transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.mark.slow
def test_plain_pip_install_builds_and_simulates(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", "out"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python, hwgen = venv / "bin" / "python", venv / "bin" / "hwgen"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(source)], check=True)
    shutil.rmtree(source)  # the installed package must not need the checkout

    work = tmp_path / "work"
    work.mkdir()
    rng = np.random.default_rng(3)
    write_tiny_mlp(work / "tiny.onnx", rng)
    np.save(work / "calib.npy", rng.normal(size=(64, 8)))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HWGEN_SIM_CACHE"] = str(tmp_path / "cache")

    def run(*args):
        return subprocess.run([str(hwgen), *args], cwd=work, env=env, capture_output=True,
                              text=True)

    where = subprocess.run([str(python), "-c", "import hwgen, hwgen.sim; print(hwgen.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(venv))
    built = run("build", "tiny.onnx", "--calib", "calib.npy", "-o", "out", "--bits", "w4a6",
                "--frames", "8")
    assert built.returncode == 0, built.stderr
    assert (work / "out" / "tiny.v").is_file()
    boards = run("boards")  # the board profiles are package data, not files of the checkout
    assert boards.returncode == 0 and "ulx3s_85f" in boards.stdout, boards.stderr
    simulated = run("sim", "out", "--save", "codes.npy")
    assert simulated.returncode == 0, simulated.stdout + simulated.stderr
    assert "PASSED" in simulated.stdout and " 0 mismatches" in simulated.stdout
    with np.load(work / "out" / "vectors.npz") as vectors:
        assert np.array_equal(np.load(work / "codes.npy"), vectors["outputs"])
