# amaranth: UnusedElaboratable=no
"""Accelerator(plan) end to end in Amaranth's simulator: AXI4-Stream ports, MLPs with
mismatching lane counts between layers, random stalls, against ``run_integer``; measured
initiation interval and latency against the plan."""

import shutil
import types
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Cat

import hwgen
from hwgen.emit import build_manifest
from hwgen.hw.accelerator import Accelerator
from hwgen.sim.runner import run_simulation
from hwgen.plan import make_plan
from hwgen.reference import run_integer
from hw_helpers import StreamDriver, StreamMonitor, ecp5_primitives, run
from hw_layers import quantized_mlp, random_codes


def _pack(codes, bits):
    """Lane ``i`` at bits ``[i·bits, (i+1)·bits)``, two's complement."""
    return sum((int(code) & ((1 << bits) - 1)) << (index * bits)
               for index, code in enumerate(codes))


def _unpack(word, bits, lanes, signed):
    codes = [(word >> (index * bits)) & ((1 << bits) - 1) for index in range(lanes)]
    return [code - (1 << bits) if signed and code >> (bits - 1) else code for code in codes]


def _simulate(plan, codes, *, seed=0, gap=0.0, stall=0.0):
    """Stream ``codes`` through ``Accelerator(plan)``; the output codes and the transfer times."""
    rng = np.random.default_rng(seed)
    dut = Accelerator(plan)
    source, sink = plan.qgraph.input, plan.qgraph.output
    in_lanes, out_lanes = plan.in_lanes, plan.out_lanes
    in_width, out_width = len(dut.s_axis_tdata), len(dut.m_axis_tdata)
    beats = []
    for frame in codes:
        chunks = frame.reshape(-1, in_lanes)
        for index, chunk in enumerate(chunks):
            # Garbage in the pad bits must be ignored.
            pad = int(rng.integers(0, 1 << (in_width - in_lanes * source.bits)))
            word = _pack(chunk, source.bits) | pad << (in_lanes * source.bits)
            beats.append(word | (index == len(chunks) - 1) << in_width)
    s_axis = types.SimpleNamespace(valid=dut.s_axis_tvalid, ready=dut.s_axis_tready,
                                   payload=Cat(dut.s_axis_tdata, dut.s_axis_tlast))
    m_axis = types.SimpleNamespace(valid=dut.m_axis_tvalid, ready=dut.m_axis_tready,
                                   payload=Cat(dut.m_axis_tdata, dut.m_axis_tlast))

    def decode(word):
        assert word & ((1 << out_width) - 1) >> (out_lanes * sink.bits) == 0, "pad bits not 0"
        return {"data": _unpack(word, sink.bits, out_lanes, sink.signed),
                "last": bool(word >> out_width)}

    out_features = plan.layers[-1].layer.out_features
    driver = StreamDriver(s_axis, beats, rng=rng, gap=gap)
    monitor = StreamMonitor(m_axis, len(codes) * out_features // out_lanes, rng=rng,
                            stall=stall, decode=decode)
    run(dut, driver, monitor)
    got = np.array([beat["data"] for beat in monitor.beats]).reshape(len(codes), -1)
    lasts = [beat["last"] for beat in monitor.beats]
    per_frame = out_features // out_lanes
    assert lasts == [(k + 1) % per_frame == 0 for k in range(len(lasts))]
    return dut, got, driver, monitor


PLANS = [  # sizes, bits, folding
    ([12, 8, 6, 4], "w8a8", {"fc1": "2x3", "fc2": "3x4", "fc3": "4x2"}),   # II set by fc1
    ([12, 8, 6, 4], "w4a6", {"fc1": "4x6", "fc2": "1x1", "fc3": "2x3"}),   # II set by fc2
    ([6, 10, 3], {"fc1": "w2a2", "fc2": "w16a16"}, {"fc1": "5x3", "fc2": "3x2"}),
]


@pytest.mark.parametrize("sizes,bits,folding", PLANS)
@pytest.mark.parametrize("gap,stall", [(0.0, 0.0), (0.4, 0.4), (0.1, 0.8)])
def test_mlp_matches_reference(sizes, bits, folding, gap, stall):
    rng = np.random.default_rng(len(sizes))
    qgraph = quantized_mlp(rng, sizes, bits)
    plan = make_plan(qgraph, folding)
    codes = random_codes(rng, qgraph.input, 6, sizes[0])
    dut, got, driver, monitor = _simulate(plan, codes, seed=3, gap=gap, stall=stall)
    np.testing.assert_array_equal(got, run_integer(qgraph, codes))


@pytest.mark.parametrize("sizes,bits,folding", PLANS)
def test_initiation_interval_and_latency(sizes, bits, folding):
    """No stalls, frames back to back: steady-state frame spacing is the plan's II; the first
    frame (through an idle pipeline) leaves ``latency`` cycles after its first input beat."""
    rng = np.random.default_rng(0)
    qgraph = quantized_mlp(rng, sizes, bits)
    plan = make_plan(qgraph, folding)
    frames = 8
    dut, got, driver, monitor = _simulate(plan, random_codes(rng, qgraph.input, frames,
                                                             sizes[0]))
    out_beats = sizes[-1] // plan.out_lanes
    last_out = monitor.times[out_beats - 1::out_beats]
    assert dut.initiation_interval == plan.initiation_interval
    assert np.diff(last_out)[2:].tolist() == [plan.initiation_interval] * (frames - 3)
    assert last_out[0] - driver.times[0] == dut.latency


def test_converts_to_verilog_with_axi_ports():
    rng = np.random.default_rng(1)
    plan = make_plan(quantized_mlp(rng, [6, 10, 3], {"fc1": "w3a5", "fc2": "w8a8"}),
                     {"fc1": "5x3", "fc2": "3x2"})
    dut = Accelerator(plan)
    assert len(dut.s_axis_tdata) == 16  # 3 lanes × 5 bits, rounded up to bytes
    assert len(dut.m_axis_tdata) == 24  # 3 lanes × 8 bits
    text = verilog.convert(dut, name="top", emit_src=False)
    for port in ("clk", "rst", "s_axis_tdata", "s_axis_tvalid", "s_axis_tready", "s_axis_tlast",
                 "m_axis_tdata", "m_axis_tvalid", "m_axis_tready", "m_axis_tlast"):
        assert f" {port}" in text


# --- slow: the ECP5 target's Verilog (MULT18X18D primitives) under Verilator and Icarus -------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "cnn"


# DP16KD primitives of each model's ECP5 build (by qgraph name; see _ecp5_plan).
_BLOCK_RAMS = {"bram": 4}


def _ecp5_plan(model):
    rng = np.random.default_rng(8)
    if model == "mlp":
        # Signed and unsigned operands, 16-bit weights and codes, PE > 1 (one operand register
        # feeding several DSPs), one fold and several.
        qgraph = quantized_mlp(rng, [12, 8, 6, 4], {"fc1": "w16a16", "fc2": "w3a8",
                                                     "fc3": "w8a2"}, output_bits=16)
        return make_plan(qgraph, {"fc1": "4x3", "fc2": "2x8", "fc3": "4x1"})
    if model == "bram":
        # Weight ROMs in DP16KD block RAMs: fc1's 2560 × 8 bits in two rows of x9 blocks (the
        # registered row select), fc2's 240 × 32 bits in two x18 columns.
        qgraph = quantized_mlp(rng, [64, 40, 24], {"fc1": "w8a8", "fc2": "w8a8"}, name="bram")
        return make_plan(qgraph, {"fc1": "1x1", "fc2": "1x4"})
    graph = hwgen.load(EXAMPLES / f"{model}.onnx")   # depthwise, systolic and MAC engines
    qgraph = hwgen.quantize(graph, np.load(EXAMPLES / "calib.npz")["x"], "w6a6")
    return make_plan(qgraph, None, multipliers=16)


def _simulate_verilog(plan, target, simulator, path):
    """Emit ``Accelerator(plan, target=target)`` to ``path`` and stream random frames through
    it with stalls; returns the accelerator, the reference codes and the simulation result."""
    dut = Accelerator(plan, target=target)
    text = verilog.convert(dut, name="top", emit_src=False)
    assert text.count("MULT18X18D #(") == (ecp5_primitives(plan) if target == "ecp5" else 0)
    assert text.count("DP16KD #(") == (_BLOCK_RAMS.get(plan.qgraph.name, 0)
                                       if target == "ecp5" else 0)
    path.mkdir()
    (path / "top.v").write_text(text)
    codes = random_codes(np.random.default_rng(2), plan.qgraph.input, 6, plan.qgraph.in_features)
    expected = run_integer(plan.qgraph, codes)
    result = run_simulation(path / "top.v", build_manifest(plan, "top", dut.latency), codes,
                            expected, simulator=simulator, stall=0.3, seed=4,
                            build_root=path / "build")
    assert result.passed, result.summary()
    assert np.array_equal(result.outputs.reshape(expected.shape), expected)
    return dut, result


@pytest.mark.slow
@pytest.mark.parametrize("model, simulator", [("mlp", "verilator"), ("mlp", "icarus"),
                                               ("bram", "verilator"), ("dwsep", "verilator")])
def test_ecp5_target_simulates_bit_exactly_with_the_same_timing(model, simulator, tmp_path):
    if simulator == "icarus" and shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog is not installed")
    plan = _ecp5_plan(model)
    ecp5, ecp5_result = _simulate_verilog(plan, "ecp5", simulator, tmp_path / "ecp5")
    generic, generic_result = _simulate_verilog(plan, "generic", simulator, tmp_path / "generic")
    assert ecp5.target == "ecp5" and ecp5.latency == generic.latency
    assert ecp5_result.latency == generic_result.latency
    assert ecp5_result.initiation_interval == generic_result.initiation_interval
    if model in ("mlp", "bram"):   # the latency model is exact for chains of MAC units
        assert ecp5_result.latency == ecp5.latency
        assert ecp5_result.initiation_interval == plan.initiation_interval
