"""System level: the emitted Verilog under cocotb + Verilator, random stalls on both streams,
every output code compared with the integer reference, cycles compared with the plan."""

from pathlib import Path

import numpy as np
import pytest

import hwgen
from hwgen.cli import main

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits_mlp"


def _random_mlp(sizes, seed):
    rng = np.random.default_rng(seed)
    graph = hwgen.Graph(f"mlp{seed}")
    x = graph.input((sizes[0],))
    for index, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        x = graph.dense(x, rng.normal(size=(fan_out, fan_in)), rng.normal(size=fan_out),
                        name=f"fc{index}")
        if index < len(sizes) - 2:
            x = graph.relu(x)
    return graph, rng.normal(size=(200, sizes[0])) * 2


CASES = {
    # w4a8 then w6a4 then w3a6; lane counts differ between every pair of engines
    "mixed": dict(sizes=(24, 16, 12, 6), bits={"fc0": "w4a8", "fc1": "w6a4", "fc2": "w3a6"},
                  folding={"fc0": "4x6", "fc1": "3x8", "fc2": "2x4"}, output_bits=8),
    # a 2-bit layer and a 16-bit layer, a single-fold engine and a one-multiplier engine
    "extremes": dict(sizes=(10, 8, 4), bits={"fc0": "w2a16", "fc1": "w16a2"},
                     folding={"fc0": "8x2", "fc1": "1x1"}, output_bits=16),
    # wide SIMD, narrow PE, a final layer computed in a single cycle
    "wide": dict(sizes=(32, 8, 3), bits="w5a7", folding={"fc0": "1x32", "fc1": "3x8"},
                 output_bits=6),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_random_mlps_are_bit_exact_under_stalls(case, tmp_path):
    spec = CASES[case]
    graph, calib = _random_mlp(spec["sizes"], seed=len(case))
    qgraph = hwgen.quantize(graph, calib, spec["bits"], output_bits=spec["output_bits"])
    plan = hwgen.make_plan(qgraph, spec["folding"])
    design = hwgen.generate(plan, calib, frames=24)
    result = hwgen.simulate(design.write(tmp_path), stall=0.3, seed=5)
    assert result.passed, result.summary()
    assert result.initiation_interval == plan.initiation_interval
    assert result.latency == design.manifest["latency"]
    assert np.array_equal(result.outputs, design.expected)


def test_digits_mlp_through_the_cli(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["build", f"{EXAMPLE}/digits_mlp.onnx", "--calib", f"{EXAMPLE}/calib.npz",
                 "-o", str(out), "--bits", "w8a8", "--frames", "16"]) == 0
    x = np.load(f"{EXAMPLE}/calib.npz")["x"][100:140]
    np.save(tmp_path / "x.npy", x)
    status = main(["sim", str(out), "--inputs", str(tmp_path / "x.npy"), "--save",
                   str(tmp_path / "codes.npy"), "--seed", "2"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "PASSED: 40 frames, 0 mismatches" in printed
    manifest, qgraph, _ = hwgen.emit.load_design(out)
    expected = hwgen.reference.run_integer(qgraph, qgraph.input.quantize(x))
    assert np.array_equal(np.load(tmp_path / "codes.npy"), expected)


def test_a_wrong_reference_is_reported_frame_by_frame(tmp_path, capsys):
    """The checker is live: corrupt one golden code and the simulation must fail naming it."""
    graph, calib = _random_mlp(CASES["wide"]["sizes"], seed=len("wide"))
    qgraph = hwgen.quantize(graph, calib, "w5a7", output_bits=6)
    plan = hwgen.make_plan(qgraph, CASES["wide"]["folding"])
    design = hwgen.generate(plan, calib, frames=6)
    out = design.write(tmp_path)
    vectors = dict(np.load(out / "vectors.npz"))
    vectors["outputs"][4, 2] += 1
    hwgen.emit.write_npz(out / "vectors.npz", **vectors)
    assert main(["sim", str(out)]) == 3
    printed = capsys.readouterr().out
    expected = vectors["outputs"][4, 2]
    assert f"frame 4, output 2: expected {expected}, got {expected - 1}" in printed


@pytest.mark.parametrize("unroll, folding", [("all", None), ("fc0,fc2", {"fc1": "2x4"})],
                         ids=["unrolled", "mixed"])
def test_unrolled_layers_are_bit_exact_under_stalls(unroll, folding, tmp_path):
    """Unrolled constant-weight layers (70 % of the weights zero), alone and between folded MAC
    units: every code equals the reference under random stalls; the measured interval and
    latency are the plan's."""
    graph, calib = _random_mlp((16, 12, 8, 5), seed=9)
    rng = np.random.default_rng(9)
    for layer in graph.layers():
        if layer.op == "dense":
            layer.spec.weight[rng.random(layer.spec.weight.shape) < 0.7] = 0
    qgraph = hwgen.quantize(graph, calib, "w6a6")
    plan = hwgen.make_plan(qgraph, folding, unroll=unroll, clock=250)
    design = hwgen.generate(plan, calib, frames=24)
    result = hwgen.simulate(design.write(tmp_path), stall=0.3, seed=6)
    assert result.passed, result.summary()
    assert result.initiation_interval == plan.initiation_interval
    assert result.latency == design.manifest["latency"]
    assert np.array_equal(result.outputs, design.expected)
