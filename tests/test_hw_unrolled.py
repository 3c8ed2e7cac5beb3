"""Unrolled constant-weight dense layers (``hwgen.hw.unrolled``): the CSD recoding, the netlist's
exact requantization constants, the block in Amaranth's simulator against the integer reference
over widths 2–16 with random, zero and power-of-two weights under stalls, and the plan."""

import dataclasses

import numpy as np
import pytest
from amaranth.back import verilog

import hwgen
from hwgen.errors import HwgenError
from hwgen.hw.unrolled import Netlist, UnrolledDense, csd, levels_for, simplest_requant
from hwgen.reference import Rounding, dense_accumulate, requantize
from hw_helpers import StreamDriver, StreamMonitor, beats_to_frames, frames_to_beats, run
from hw_layers import crafted_layer, random_codes


def test_csd_is_exact_and_minimal():
    for value in range(-3000, 3001):
        digits = csd(value)
        assert sum(sign << position for sign, position in digits) == value
        positions = [position for _, position in digits]
        assert all(b - a >= 2 for a, b in zip(positions, positions[1:]))  # non-adjacent
    assert csd(0) == [] and csd(7) == [(-1, 0), (1, 3)] and len(csd(0b10101010)) == 4


def _layer(rng, weights, *, weight_bits, act_bits, act_signed, out_bits, rounding, fan_in=7,
           out=5):
    layer = crafted_layer(rng, fan_in, out, weight_bits=weight_bits, act_bits=act_bits,
                          act_signed=act_signed, out_bits=out_bits, rounding=rounding)
    limit = (1 << (weight_bits - 1)) - 1
    weight = layer.weight.copy()
    if weights == "sparse":
        weight[rng.random(weight.shape) < 0.7] = 0
    elif weights == "zero":
        weight[:] = 0
    elif weights == "powers":
        exponents = rng.integers(0, weight_bits - 1, weight.shape)
        weight = rng.choice([-1, 1], weight.shape) * (1 << exponents)
        weight = np.clip(weight, -limit, limit)
    weight[0, 0] = limit  # an extreme weight in every layer
    return dataclasses.replace(layer, weight=weight.astype(np.int64))


def _simulate(layer, levels, rng, frames=24):
    dut = UnrolledDense(layer, levels)
    codes = random_codes(rng, layer.input, frames, layer.in_features)
    codes[0], codes[1] = layer.input.lo, layer.input.hi
    driver = StreamDriver(dut.i, frames_to_beats(codes, layer.in_features), rng=rng, gap=0.3)
    monitor = StreamMonitor(dut.o, frames, rng=rng, stall=0.3)
    run(dut, driver, monitor)
    want = requantize(dense_accumulate(layer, codes), layer.multiplier, layer.shift,
                      layer.output.zero_point, layer.clamp_lo, layer.clamp_hi, layer.rounding,
                      fraction=layer.bias_fraction)
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, layer.out_features), want)
    return dut


WIDTHS = [(2, 2, True, 2), (3, 8, False, 8), (6, 6, True, 6), (8, 4, False, 16),
          (16, 16, True, 16), (12, 2, False, 4)]


@pytest.mark.parametrize("weight_bits, act_bits, act_signed, out_bits", WIDTHS)
@pytest.mark.parametrize("weights", ["random", "sparse", "zero", "powers"])
def test_unrolled_matches_reference(weight_bits, act_bits, act_signed, out_bits, weights):
    rng = np.random.default_rng(weight_bits * 31 + act_bits + len(weights))
    rounding = list(Rounding)[(weight_bits + act_bits) % 3]  # half up, half even, floor
    layer = _layer(rng, weights, weight_bits=weight_bits, act_bits=act_bits,
                   act_signed=act_signed, out_bits=out_bits, rounding=rounding)
    for levels in (1, 4):
        dut = _simulate(layer, levels, rng)
        assert dut.latency == dut.netlist.stages + 1


@pytest.mark.parametrize("rounding", [Rounding.HALF_UP, Rounding.HALF_EVEN, Rounding.FLOOR])
def test_bias_fractions_and_relu(rounding):
    rng = np.random.default_rng(3)
    layer = crafted_layer(rng, 9, 4, weight_bits=5, act_bits=7, out_bits=8, relu=True,
                          rounding=rounding)
    fraction = rng.integers(-(1 << 14), 1 << 14, 4)
    _simulate(dataclasses.replace(layer, bias_fraction=fraction), 3, rng)


def test_fewer_levels_mean_more_stages():
    rng = np.random.default_rng(4)
    layer = crafted_layer(rng, 32, 6, weight_bits=6, act_bits=6)
    stages = [Netlist(layer, levels).stages for levels in (1, 2, 4, 8, 64)]
    assert stages == sorted(stages, reverse=True) and stages[0] > 3 * stages[-1]
    assert levels_for(200, "xilinx-ultrascale") == 5 and levels_for(100, "ecp5") == 2
    assert levels_for(1000, "ice40") == 1
    with pytest.raises(HwgenError, match="positive number of MHz"):
        levels_for(0)


def test_zero_weights_cost_nothing_and_powers_of_two_are_wires():
    rng = np.random.default_rng(5)
    layer = crafted_layer(rng, 16, 8, weight_bits=8, act_bits=8)
    dense = Netlist(layer, 4)
    weight = layer.weight.copy()
    weight[:, 4:] = 0
    pruned = Netlist(dataclasses.replace(layer, weight=weight), 4)
    assert pruned.adder_bits < 0.5 * dense.adder_bits
    ones = dataclasses.replace(layer, weight=np.where(layer.weight > 0, 64, -32))
    # every weight is ±2^k: the dot products need no fundamentals, one adder per extra term
    powers = Netlist(ones, 4)
    assert len([n for n in powers.adders if n.operands[0][0].op == "input"
                and n.operands[1][0] is n.operands[0][0]]) == 0


def test_verilog_size_follows_the_nonzero_weights():
    rng = np.random.default_rng(6)
    layer = crafted_layer(rng, 32, 16, weight_bits=6, act_bits=6)
    weight = layer.weight.copy()
    weight[rng.random(weight.shape) < 0.9] = 0
    sizes = [len(verilog.convert(UnrolledDense(lay, 4), name="top").splitlines())
             for lay in (layer, dataclasses.replace(layer, weight=weight))]
    assert sizes[1] < 0.4 * sizes[0]


def test_simplest_requant_is_exact_over_the_whole_range():
    rng = np.random.default_rng(7)
    for rounding in (Rounding.HALF_UP, Rounding.HALF_EVEN, Rounding.FLOOR):
        layer = crafted_layer(rng, 8, 6, weight_bits=4, act_bits=4, out_bits=4, relu=True,
                              rounding=rounding)
        bound = 1 << (layer.acc_bits - 1)
        sums = np.arange(-bound, bound)
        for channel in range(6):
            m, n, f = simplest_requant(layer, channel, -bound, bound - 1)
            assert len(csd(m)) <= len(csd(int(layer.multiplier[channel])))
            args = (layer.output.zero_point, layer.clamp_lo, layer.clamp_hi, rounding)
            want = requantize(sums, layer.multiplier[channel], layer.shift[channel], *args)
            np.testing.assert_array_equal(requantize(sums, m, n, *args, fraction=f), want)


# -- the plan ---------------------------------------------------------------------------------------

def _mlp():
    rng = np.random.default_rng(8)
    graph = hwgen.Graph("mlp")
    x = graph.input((12,))
    x = graph.relu(graph.dense(x, rng.normal(size=(10, 12)), rng.normal(size=10), name="fc1"))
    x = graph.relu(graph.dense(x, rng.normal(size=(8, 10)), rng.normal(size=8), name="fc2"))
    x = graph.dense(x, rng.normal(size=(4, 8)), rng.normal(size=4), name="fc3")
    calib = rng.normal(size=(100, 12))
    return hwgen.quantize(graph, calib, "w5a6"), calib


def test_plan_unroll():
    qgraph, _ = _mlp()
    plan = hwgen.make_plan(qgraph, unroll="all")
    assert [p.engine for p in plan.layers] == ["unrolled"] * 3
    assert plan.initiation_interval == 1 and plan.multipliers == 0
    assert plan.in_lanes == 12 and plan.out_lanes == 4
    assert all(p.levels == levels_for(150) for p in plan.layers)
    mixed = hwgen.make_plan(qgraph, {"fc2": "2x5"}, unroll="fc1,fc3", clock=300)
    assert [p.engine for p in mixed.layers] == ["unrolled", "mac", "unrolled"]
    assert mixed["fc1"].levels == levels_for(300)
    pinned = hwgen.make_plan(qgraph, {"fc1": "unrolled"})
    assert pinned["fc1"].engine == "unrolled" and pinned["fc1"].describe() == "unrolled"
    board = hwgen.make_plan(qgraph, unroll=["fc1"], board="ultra96")
    assert board["fc1"].levels == levels_for(board.board.target_mhz, "xilinx-ultrascale")
    cost = board.cost()
    assert cost.layers[0].lut > 0 and cost.layers[0].dsp == 0


def test_a_chain_of_unrolled_layers_is_one_pipeline():
    """Consecutive unrolled layers continue each other's last stage: all but the last leave
    their outputs unregistered, and the next starts at the levels they used."""
    qgraph, _ = _mlp()
    plan = hwgen.make_plan(qgraph, unroll="all", clock=150)
    links = plan.unrolled_links()
    assert [links[name][1] for name in ("fc1", "fc2", "fc3")] == [False, False, True]
    first = Netlist(qgraph["fc1"], plan["fc1"].levels)
    assert links["fc2"][0] == first.residual and 0 < first.residual <= plan["fc1"].levels
    mixed = hwgen.make_plan(qgraph, {"fc2": "2x5"}, unroll="fc1,fc3")
    assert mixed.unrolled_links() == {"fc1": (0, True), "fc3": (0, True)}


def test_plan_unroll_errors():
    qgraph, _ = _mlp()
    with pytest.raises(HwgenError, match="--unroll names 'fc9', which is no layer"):
        hwgen.make_plan(qgraph, unroll="fc9")
    with pytest.raises(HwgenError, match="must be a positive number of MHz"):
        hwgen.make_plan(qgraph, unroll="all", clock=-5)


def test_cli_unroll(tmp_path, capsys):
    from pathlib import Path
    from hwgen.cli import main
    example = Path(__file__).resolve().parent.parent / "examples" / "digits_mlp"
    args = ["build", str(example / "digits_mlp.onnx"), "--calib", str(example / "calib.npz"),
            "--bits", "w3a4", "--frames", "4"]
    assert main(args + ["-o", str(tmp_path / "a"), "--unroll", "all", "--clock", "100"]) == 0
    out = capsys.readouterr().out
    assert "II 1 cycles/frame" in out and out.count("unrolled") >= 3
    report = (tmp_path / "a" / "report.md").read_text()
    assert "ns at 100 MHz" in report
    assert main(args + ["-o", str(tmp_path / "b"), "--unroll", "nope"]) == 1
    assert "--unroll names 'nope', which is no layer" in capsys.readouterr().err


# -- unrolled convolutions in the plan ------------------------------------------------------------

def _cnn(model="dwsep", bits="w4a4"):
    from pathlib import Path
    examples = Path(__file__).resolve().parent.parent / "examples" / "cnn"
    graph = hwgen.load(examples / f"{model}.onnx")
    return hwgen.quantize(graph, np.load(examples / "calib.npz")["x"], bits)


def test_plan_unrolls_convolutions():
    """``unroll="all"`` takes convs (depthwise too) as well as dense layers: one output pixel
    per cycle, so the layer runs at its window's pace; no multipliers, no DSPs."""
    from hwgen.plan import _window_cycles

    qgraph = _cnn()
    plan = hwgen.make_plan(qgraph, unroll="all", multipliers=16)
    unrolled = [p for p in plan.layers if p.engine == "unrolled"]
    assert [p.name for p in unrolled] == ["stem", "depthwise", "pointwise", "fc"]
    for layer_plan in unrolled[:3]:
        layer = layer_plan.layer
        kh, kw = layer.kernel
        assert layer_plan.folding.pe == layer.out_channels == layer_plan.out_lanes
        assert layer_plan.folding.simd == kh * kw * layer.in_shape[2]
        assert layer_plan.cycles == _window_cycles(layer, layer_plan.in_lanes, layer_plan.simd)
        assert layer_plan.multipliers == 0 and layer_plan.describe() == "unrolled"
    assert plan.cost("ulx3s_85f").layers[0].dsp == 0
    assert plan.unrolled_links() == {"fc": (0, True)}  # convs read registered windows
    pinned = hwgen.make_plan(qgraph, {"pointwise": "unrolled"}, multipliers=16)
    assert pinned["pointwise"].engine == "unrolled" and pinned["stem"].engine == "systolic"


def test_unrolled_conv_netlist_is_the_window_dense_layer():
    """A conv's netlist is the dense layer over its im2col window; a depthwise conv's other
    channels are zero weights and cost no adder."""
    from hwgen.hw.unrolled import as_dense

    qgraph = _cnn()
    depthwise = qgraph["depthwise"]
    dense = as_dense(depthwise)
    channels = depthwise.in_shape[2]
    assert dense.weight.shape == (channels, 9 * channels)
    assert np.count_nonzero(dense.weight) == np.count_nonzero(depthwise.weight)
    assert np.array_equal(dense.weight[1, 1::channels], depthwise.weight[1].reshape(-1))
    assert as_dense(depthwise) is dense  # cached, so the netlist cache holds
    stem = qgraph["stem"]
    assert np.array_equal(as_dense(stem).weight, stem.weight.reshape(stem.out_channels, -1))


def test_board_search_may_unroll():
    """``unroll="auto"`` adds the unrolled engine to the board search's options: on the
    depthwise-separable example it unrolls the convolutions, whose folded engines cannot keep
    pace with the input, and the plan still fits the board's limits."""
    from hwgen.plan_board import _limits

    qgraph = _cnn()
    folded = hwgen.make_plan(qgraph, board="ulx3s_85f")
    auto = hwgen.make_plan(qgraph, board="ulx3s_85f", unroll="auto")
    assert {p.name for p in auto.layers if p.engine == "unrolled"} >= {"depthwise", "pointwise"}
    assert auto.initiation_interval < folded.initiation_interval
    limits = _limits(auto.board, None)
    assert all(auto.cost().totals[r] <= limits[r] for r in limits)
    assert all(p.engine != "unrolled" for p in folded.layers)
    with pytest.raises(HwgenError, match="--unroll auto lets the board search choose"):
        hwgen.make_plan(qgraph, unroll="auto")


def test_auto_unroll_skips_large_layers(monkeypatch):
    import hwgen.plan_board as plan_board
    qgraph = _cnn()
    monkeypatch.setattr(plan_board, "AUTO_UNROLL_WEIGHTS", 0)
    plan = hwgen.make_plan(qgraph, board="ulx3s_85f", unroll="auto")
    assert all(p.engine != "unrolled" for p in plan.layers)


def test_unroll_errors_for_other_layers():
    qgraph = _cnn()
    with pytest.raises(HwgenError, match="only dense and conv layers unroll, not global_avgpool"):
        hwgen.make_plan(qgraph, unroll="gap")


def test_latency_goal_keeps_the_interval_and_lowers_the_latency():
    """``goal="latency"`` selects, at the same shortest interval, the layers' plans with the
    fewest summed cycles, within the same limits: on the depthwise-separable example with
    ``unroll="auto"`` it unrolls the classifier too, and the accelerator's latency drops
    (measured in cocotb on Arty A7-35T: 100 → 38 cycles)."""
    from hwgen.hw.accelerator import plan_latency
    from hwgen.plan_board import _limits

    qgraph = _cnn()
    headroom = hwgen.make_plan(qgraph, board="arty_a7_35t", unroll="auto")
    fast = hwgen.make_plan(qgraph, board="arty_a7_35t", unroll="auto", goal="latency")
    assert fast.initiation_interval == headroom.initiation_interval
    assert plan_latency(fast) < plan_latency(headroom)
    assert sum(p.cycles for p in fast.layers) < sum(p.cycles for p in headroom.layers)
    assert fast["fc"].engine == "unrolled"
    limits = _limits(fast.board, None)
    assert all(fast.cost().totals[r] <= limits[r] for r in limits)
    with pytest.raises(HwgenError, match="goal must be one of throughput, latency"):
        hwgen.make_plan(qgraph, board="arty_a7_35t", goal="fast")
    with pytest.raises(HwgenError, match="give a board"):
        hwgen.make_plan(qgraph, goal="latency")
