"""Planning the layer-sequential engine: which dense layers form a chain, how the engine is
sized (multipliers, pins, the board search) and when the board search falls back to it; the
cycle model against the engine's own, the cost and energy models, the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest

import hwgen
from hwgen.cli import main
from hwgen.errors import DoesNotFit, HwgenError
from hwgen.hw.sequential import SequentialEngine
from hwgen.plan_board import _limits
from hwgen.plan_sequential import (SHARED_OPS, Chain, shared_chains, sequential_cycles,
                                   tail_cuts)
from hw_layers import quantized_mlp

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _lenet(bits="w8a8"):
    calib = np.load(EXAMPLES / "cnn" / "calib.npz")
    return hwgen.quantize(hwgen.load(EXAMPLES / "cnn" / "lenet.onnx"), calib["x"], bits)


def test_dense_chains():
    qgraph = quantized_mlp(np.random.default_rng(0), [8, 6, 5, 4], "w4a4")
    (chain,) = shared_chains(qgraph)
    assert [layer.name for layer in chain.layers] == ["fc1", "fc2", "fc3"]
    assert (chain.name, chain.inputs, chain.out_features) == ("fc3", ("input",), 4)
    assert chain.macs == 8 * 6 + 6 * 5 + 5 * 4
    lenet = _lenet()
    assert [[layer.name for layer in c.layers] for c in shared_chains(lenet)] == [["fc1", "fc2"]]


def test_residual_chains():
    """With adds shared, the residual model is one chain whose block input stays in a third
    bank; without them the chains end where a tensor leaves for the add."""
    from hwgen.plan_sequential import SHARED_OPS
    calib = np.load(EXAMPLES / "cnn" / "calib.npz")
    qgraph = hwgen.quantize(hwgen.load(EXAMPLES / "cnn" / "resnet.onnx"), calib["x"], "w8a8")
    (chain,) = shared_chains(qgraph, SHARED_OPS)
    assert [layer.name for layer in chain.layers] == ["stem", "conv1", "conv2", "add", "gap",
                                                      "fc"]
    assert chain.slots.count == 3
    assert chain.slots.reads[3] == (chain.slots.writes[0], chain.slots.writes[2])
    without = [op for op in SHARED_OPS if op != "add"]
    assert [[layer.name for layer in c.layers] for c in shared_chains(qgraph, without)] == \
        [["stem"], ["conv1", "conv2"], ["gap", "fc"]]
    assert [c.slots.count for c in shared_chains(qgraph, without)] == [2, 2, 2]


def _resnet(bits="w8a8"):
    calib = np.load(EXAMPLES / "cnn" / "calib.npz")
    return hwgen.quantize(hwgen.load(EXAMPLES / "cnn" / "resnet.onnx"), calib["x"], bits)


def test_tail_cuts_and_shared_from():
    """The graph can be cut where one tensor passes from the layers before to those after
    (not inside a residual block); ``shared_from`` puts the layers from a cut on a shared
    engine and keeps the others on dataflow engines."""
    qgraph = _resnet()
    assert tail_cuts(qgraph) == ["conv1", "gap", "fc"]
    assert tail_cuts(quantized_mlp(np.random.default_rng(0), [8, 6, 5, 4], "w4a4")) == \
        ["fc2", "fc3"]
    assert [[layer.name for layer in chain.layers]
            for chain in shared_chains(qgraph, SHARED_OPS, "conv1")] == \
        [["conv1", "conv2", "add", "gap", "fc"]]
    plan = hwgen.make_plan(qgraph, shared_from="conv1", multipliers=8)
    assert [p.engine for p in plan.layers] == ["systolic", "sequential"]
    assert plan.layers[1].layer.inputs == ("stem",) and plan.layers[1].pe == 8
    assert plan.initiation_interval == plan.layers[1].cycles
    pinned = hwgen.make_plan(qgraph, {"stem": "1x3"}, shared_from="gap")
    assert pinned.layers[0].describe() == "systolic:1x3"
    assert [p.engine for p in pinned.layers][-1] == "sequential"
    with pytest.raises(HwgenError, match="cut for a shared tail at 'conv1', 'gap', 'fc'"):
        hwgen.make_plan(qgraph, shared_from="conv2")
    with pytest.raises(HwgenError, match="never shares"):
        hwgen.make_plan(qgraph, shared_from="conv1", engine="dataflow")


def test_board_search_shares_a_tail():
    """With 30 % of an OrangeCrab neither the residual model's dataflow plan nor its
    classifier shared fits; the search then shares the layers from a cut on, and of the
    tails that fit takes the fastest: the stem keeps its systolic array, faster than the
    whole model on one engine."""
    qgraph = _resnet()
    messages = []
    plan = hwgen.make_plan(qgraph, board="orangecrab_25f", max_utilization=0.3,
                           progress=messages.append)
    assert [p.engine for p in plan.layers] == ["systolic", "sequential"]
    assert any("the layers from conv1 on" in message for message in messages)
    whole = hwgen.make_plan(qgraph, board="orangecrab_25f", max_utilization=0.3,
                            engine="sequential")
    assert plan.initiation_interval < whole.initiation_interval
    limits = _limits(plan.board, 0.3)
    assert all(plan.cost().totals[r] <= limits[r] for r in limits)
    assert hwgen.make_plan(qgraph, board="orangecrab_25f", max_utilization=0.3,
                           shared_from="conv1").initiation_interval == plan.initiation_interval


def test_multipliers_size_the_shared_engine():
    qgraph = quantized_mlp(np.random.default_rng(1), [12, 10, 8, 5], "w8a8")
    plan = hwgen.make_plan(qgraph, engine="sequential", multipliers=4)
    (shared,) = plan.layers
    assert (shared.engine, shared.pe, shared.multipliers, shared.out_lanes) == \
        ("sequential", 4, 4, 1)
    assert isinstance(shared.layer, Chain)
    engine = SequentialEngine(shared.layer.layers, 4)
    assert shared.cycles == engine.cycles_per_frame == plan.initiation_interval
    assert sequential_cycles(shared.layer, 4, "lut") == SequentialEngine(
        shared.layer.layers, 4, multiplier="lut").cycles_per_frame
    # At most the chain's most output channels (10) multipliers.
    assert hwgen.make_plan(qgraph, engine="sequential", multipliers=32).layers[0].pe == 10
    assert "fc1…fc3" in str(plan)


def test_pins():
    qgraph = quantized_mlp(np.random.default_rng(2), [12, 10, 8, 5], "w8a8")
    plan = hwgen.make_plan(qgraph, {"fc3": "sequential:3:lut"})
    assert plan.layers[0].describe() == "sequential:3:lut"
    with pytest.raises(HwgenError, match="takes pe from 1 to 10, not 11"):
        hwgen.make_plan(qgraph, {"fc3": "sequential:11"})
    with pytest.raises(HwgenError, match="sized by its multipliers"):
        hwgen.make_plan(qgraph, {"fc3": "sequential:2x3"})
    with pytest.raises(HwgenError, match="pin that engine by its last layer"):
        hwgen.make_plan(qgraph, {"fc2": "2x5"}, engine="sequential")
    with pytest.raises(HwgenError, match="cannot build 'dsp-packed'"):
        hwgen.make_plan(qgraph, {"fc3": "sequential:2:dsp-packed"})
    with pytest.raises(HwgenError, match="engine must be one of"):
        hwgen.make_plan(qgraph, engine="tpu")
    # A chain whose last layer is pinned to a dataflow engine stays dataflow.
    mixed = hwgen.make_plan(qgraph, {"fc3": "1x2"}, engine="sequential")
    assert [p.engine for p in mixed.layers] == ["mac"] * 3


def test_board_search_falls_back_to_the_shared_engine():
    """LeNet at w8a8 does not fit an iCEBreaker with an engine per layer; the planner then
    puts its classifier on a shared engine and the plan fits, within the limits."""
    qgraph = _lenet()
    with pytest.raises(DoesNotFit, match="does not fit icebreaker"):
        hwgen.make_plan(qgraph, board="icebreaker", engine="dataflow")
    messages = []
    plan = hwgen.make_plan(qgraph, board="icebreaker", progress=messages.append)
    assert plan.layers[-1].engine == "sequential"
    assert any("go on shared sequential engines" in message for message in messages)
    limits = _limits(plan.board, None)
    assert all(plan.cost().totals[r] <= limits[r] for r in limits)
    shared = hwgen.estimate_energy(plan).layers[-1]
    assert shared.name == "fc2" and shared.arithmetic > 0 and shared.memory > 0


def test_cost_counts_the_shared_engine():
    """DSPs: one per multiplier and the one requant lane's two partial products; the weight
    ROM holds one word of pe weights per step."""
    qgraph = quantized_mlp(np.random.default_rng(3), [64, 48, 24, 10], "w8a8")
    plan = hwgen.make_plan(qgraph, engine="sequential", multipliers=8)
    cost = plan.cost("ulx3s_85f").layers[0]
    assert cost.dsp == 8 + 2
    lut = hwgen.make_plan(qgraph, {"fc3": "sequential:8:lut"}).cost("ulx3s_85f").layers[0]
    assert lut.dsp == 2 and lut.lut > cost.lut


def test_cli_engine_sequential(tmp_path, capsys):
    model = EXAMPLES / "digits_mlp" / "digits_mlp.onnx"
    calib = EXAMPLES / "digits_mlp" / "calib.npz"
    out = tmp_path / "out"
    assert main(["build", str(model), "--calib", str(calib), "--engine", "sequential",
                 "--multipliers", "6", "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (layer,) = manifest["layers"]
    assert layer["engine"] == "sequential" and layer["pe"] == 6
    assert len(layer["layers"]) == 3
    assert manifest["initiation_interval"] == layer["cycles_per_frame"]


def test_cli_shared_from(tmp_path):
    out = tmp_path / "out"
    assert main(["build", str(EXAMPLES / "cnn" / "resnet.onnx"), "--calib",
                 str(EXAMPLES / "cnn" / "calib.npz"), "--shared-from", "conv1",
                 "--multipliers", "6", "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [layer["engine"] for layer in manifest["layers"]] == ["systolic", "sequential"]
    assert len(manifest["layers"][1]["layers"]) == 5


def test_spram_counts():
    """On iCE40 a shared engine's large activation banks are counted as SB_SPRAM256KA (two
    banks, 16 bits each wide), not block RAM; small ones stay in block RAM; other families
    have none."""
    from hwgen.hw.sequential import spram_count
    assert spram_count(1375, 48) == 6 and spram_count(2000, 16) == 2
    assert spram_count(100, 16) == 0            # 1.6 kbit a bank: block RAM
    assert spram_count(20000, 16) == 0          # deeper than a single-port RAM
    qgraph = quantized_mlp(np.random.default_rng(4), [1100, 40, 10], "w8a8")
    plan = hwgen.make_plan(qgraph, engine="sequential", multipliers=2)
    ice40 = plan.cost("icebreaker")
    # Banks of ⌈1100/2⌉ = 550 words of 2 × 8 bits (codes at their own width): 8.8 kbit,
    # below the threshold.
    assert ice40.totals["spram"] == 0
    plan = hwgen.make_plan(qgraph, engine="sequential", multipliers=4)
    # 275 words of 32 bits: still 8.8 kbit.
    assert plan.cost("icebreaker").totals["spram"] == 0
    wide = hwgen.make_plan(quantized_mlp(np.random.default_rng(5), [4000, 8, 4], "w8a8"),
                           engine="sequential", multipliers=4)
    # 1000 words of 32 bits a bank: 32 kbit, two 16-bit SPRAMs wide, two banks.
    assert wide.cost("icebreaker").totals["spram"] == 4
    assert wide.cost("ulx3s_85f").totals["spram"] == 0
    assert "SPRAM" in str(wide.cost("icebreaker")) and "SPRAM" not in str(wide.cost("ulx3s_85f"))


def test_residual_banks_in_spram():
    """A residual block's three banks each take their SB_SPRAM256KA on iCE40, as the cost
    model counts them and the engine instantiates them."""
    from amaranth.back import rtlil
    graph = hwgen.Graph("block")
    rng = np.random.default_rng(6)
    x = graph.input((32, 32, 4))
    y = graph.conv2d(x, rng.normal(size=(4, 3, 3, 4)), np.zeros(4), padding=1, name="conv")
    graph.add(y, x, name="add")
    qgraph = hwgen.quantize(graph, rng.normal(size=(8, 32, 32, 4)), "w4a4", output_bits=4)
    plan = hwgen.make_plan(qgraph, engine="sequential", multipliers=4)
    (chain,) = (layer.layer for layer in plan.layers)
    # 1024 words of 4 codes of 4 bits a bank: 16 kbit, one 16-bit SPRAM wide, three banks.
    assert chain.slots.count == 3 and chain.bank_words(4) == 1024
    assert chain.out_shape == (32, 32, 4)   # a chain may end in its add
    assert plan.cost("icebreaker").totals["spram"] == 3
    text = rtlil.convert(SequentialEngine(chain.layers, 4, target="ice40"))
    assert text.count("cell \\SB_SPRAM256KA") == 3


@pytest.mark.slow
def test_board_search_shares_a_tail_where_faster():
    """MLPerf Tiny's ResNet-8 at w8a8 on the Arty A7-35T: a dataflow plan fits (294,912
    cycles), but the search also tries the tails whose shared engines could beat it, and
    takes the faster one (184,943): stages 1 and 2 on systolic arrays, stage 3, the pool and
    the classifier on one engine; the whole model shared cannot be faster, so it is not
    tried."""
    import sys
    sys.path.insert(0, str(EXAMPLES.parent / "benchmarks"))
    from models import resnet8
    graph, calibration = resnet8()
    qgraph = hwgen.quantize(graph, calibration, "w8a8")
    dataflow = hwgen.make_plan(qgraph, board="arty_a7_35t", engine="dataflow")
    messages = []
    plan = hwgen.make_plan(qgraph, board="arty_a7_35t", progress=messages.append)
    assert plan.initiation_interval < dataflow.initiation_interval
    assert plan.layers[-1].engine == "sequential"
    assert plan.layers[-1].layer.layers[0].name == "s3_conv1"
    assert not any("the layers (conv0" in message for message in messages)
    limits = _limits(plan.board, None)
    assert all(plan.cost().totals[r] <= limits[r] for r in limits)


def test_board_search_keeps_pinned_layers():
    """A layer the user pins stays on its engine: the search shares no chain that would
    compute it (here it shares the tail after the pinned stem, or nothing)."""
    qgraph = _resnet()
    plan = hwgen.make_plan(qgraph, {"stem": "1x3"}, board="orangecrab_25f",
                           max_utilization=0.3)
    assert plan.layers[0].describe() == "systolic:1x3"
    inner = hwgen.make_plan(qgraph, {"conv2": "1x2"}, board="orangecrab_25f",
                            max_utilization=0.5)
    assert [p.engine for p in inner.layers if p.layer.name == "conv2"] == ["systolic"]
