"""System level for convolutional networks: the ONNX examples (LeNet-style, residual,
depthwise-separable) built to Verilog, streamed through Verilator with random stalls, every
output code compared with the integer reference, and the measured initiation interval compared
with the plan's cycle model."""

from pathlib import Path

import numpy as np
import pytest

import hwgen

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "cnn"

CASES = {
    "lenet": dict(bits=None, folding=None),
    # mixed per-layer bits; the skip path and the long path arrive at the add in different
    # quantizations
    "resnet": dict(bits="mixed", folding=None),
    "dwsep": dict(bits="w6a6", folding=None),
}


def _mixed_bits(qgraph_names):
    widths = [(8, 8), (4, 6), (6, 5), (5, 7), (3, 8)]
    return {name: {"w": w, "a": a} for name, (w, a) in zip(qgraph_names, widths * 4)}


@pytest.mark.parametrize("model", sorted(CASES))
def test_cnn_examples_are_bit_exact_under_stalls(model, tmp_path):
    graph = hwgen.load(EXAMPLES / f"{model}.onnx")
    calib = np.load(EXAMPLES / "calib.npz")
    bits = CASES[model]["bits"]
    if bits == "mixed":
        names = [layer.name for layer in graph.layers() if layer.op in ("conv", "dense")]
        bits = _mixed_bits(names)
    qgraph = hwgen.quantize(graph, calib["x"], bits)
    plan = hwgen.make_plan(qgraph, CASES[model]["folding"], multipliers=16)
    design = hwgen.generate(plan, calib["x"], frames=6)
    result = hwgen.simulate(design.write(tmp_path), stall=0.3, seed=9)
    assert result.passed, result.summary()
    assert abs(result.initiation_interval - plan.initiation_interval) <= \
        0.05 * plan.initiation_interval, (result.initiation_interval, plan)
    assert np.array_equal(result.outputs, design.expected)


@pytest.mark.parametrize("model, unroll", [("dwsep", "all"), ("resnet", "stem,conv2")],
                         ids=["dwsep-unrolled", "resnet-mixed"])
def test_unrolled_convolutions_are_bit_exact_under_stalls(model, unroll, tmp_path):
    """Unrolled convolutions (depthwise too; constant weights, one output pixel per cycle),
    alone and beside folded systolic engines on a residual block: every code equals the
    reference under random stalls and the measured interval is the plan's."""
    graph = hwgen.load(EXAMPLES / f"{model}.onnx")
    calib = np.load(EXAMPLES / "calib.npz")
    qgraph = hwgen.quantize(graph, calib["x"], "w4a4")
    plan = hwgen.make_plan(qgraph, unroll=unroll, multipliers=16)
    unrolled = {p.name for p in plan.layers if p.engine == "unrolled"}
    assert unrolled >= set(unroll.split(",")) - {"all"}
    design = hwgen.generate(plan, calib["x"], frames=6)
    result = hwgen.simulate(design.write(tmp_path), stall=0.3, seed=4)
    assert result.passed, result.summary()
    assert result.initiation_interval == plan.initiation_interval
    assert np.array_equal(result.outputs, design.expected)
