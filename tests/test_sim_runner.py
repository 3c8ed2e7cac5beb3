"""``hwgen.sim``: the cocotb testbench and its runner, on a tiny hand-made design.

The design under test reverses a frame and adds a constant: ``y[j] = x[N-1-j] + offset``. It
reads a whole frame (``N / in_lanes`` beats) into registers, then sends the result
(``N / out_lanes`` beats), one frame at a time, so by construction its latency (first input
beat to last output beat) is ``N / in_lanes − 1 + N / out_lanes`` cycles and its initiation
interval is
``N / in_lanes + N / out_lanes`` cycles. Its first input code can switch on a deliberate
protocol bug for that frame, so one build also proves that the monitor catches each bug.
"""

import enum
import json
import os
import re
import shutil

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwgen.errors import HwgenError
from hwgen.sim import Mismatch, SimResult, run_simulation
from hwgen.sim.runner import _TIMING_FRAMES
from hwgen.sim.testbench import LaneFormat


class Bug(enum.IntEnum):
    """Deliberate protocol bugs, chosen by a frame's first code (offset from the minimum code,
    which normal test inputs never use)."""
    TLAST_ON_FIRST_BEAT = 0
    TVALID_BLINKS = 1        # tvalid drops every other cycle, even when the beat did not move
    TDATA_WOBBLES = 2        # tdata changes while tvalid is high and tready low
    TVALID_FROM_TREADY = 3   # tvalid is combinationally tvalid & tready
    HANG = 4                 # never answers the frame


class ReverseOffset(wiring.Component):
    """``y[j] = x[N-1-j] + offset`` over a frame of ``features`` codes, with AXI4-Stream ports.

    Latency ``features // out_lanes`` cycles, initiation interval
    ``features // in_lanes + features // out_lanes`` cycles (no overlap between frames).
    Input lanes are signed; the output codes must fit ``out_bits`` (not checked).
    """

    def __init__(self, *, features, in_lanes, in_bits, out_lanes, out_bits, out_signed, offset):
        self.features, self.offset = features, offset
        self.in_lanes, self.in_bits = in_lanes, in_bits
        self.out_lanes, self.out_bits, self.out_signed = out_lanes, out_bits, out_signed
        assert features % in_lanes == 0 and features % out_lanes == 0
        super().__init__({
            "s_axis_tdata": In(tdata_bits(in_lanes, in_bits)),
            "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(tdata_bits(out_lanes, out_bits)),
            "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        })

    @property
    def latency(self):
        return self.features // self.in_lanes - 1 + self.features // self.out_lanes

    @property
    def initiation_interval(self):
        return self.features // self.in_lanes + self.features // self.out_lanes

    def elaborate(self, platform):
        m = Module()
        in_beats, out_beats = self.features // self.in_lanes, self.features // self.out_lanes
        codes = [Signal(signed(self.in_bits), name=f"x{k}") for k in range(self.features)]
        in_beat = Signal(range(in_beats))
        out_beat = Signal(range(out_beats))
        sending = Signal()
        dead = Signal()
        blink = Signal()
        bug = Signal(range(len(Bug) + 1), init=len(Bug))   # len(Bug) = no bug

        lanes_in = [self.s_axis_tdata[k * self.in_bits:(k + 1) * self.in_bits].as_signed()
                    for k in range(self.in_lanes)]
        m.d.comb += self.s_axis_tready.eq(~sending & ~dead)
        # The bug a frame asks for is decoded from its first code, on its first beat.
        minimum = -(1 << (self.in_bits - 1))
        asked = Signal.like(bug)
        m.d.comb += asked.eq(len(Bug))
        for kind in Bug:
            with m.If(lanes_in[0] == minimum + kind):
                m.d.comb += asked.eq(kind)
        frame_bug = Mux(in_beat == 0, asked, bug)
        with m.If(self.s_axis_tvalid & self.s_axis_tready):
            for beat in range(in_beats):
                with m.If(in_beat == beat):
                    for lane in range(self.in_lanes):
                        m.d.sync += codes[beat * self.in_lanes + lane].eq(lanes_in[lane])
            m.d.sync += bug.eq(frame_bug)
            with m.If(in_beat == in_beats - 1):
                m.d.sync += in_beat.eq(0)
                with m.If(frame_bug == Bug.HANG):
                    m.d.sync += dead.eq(1)
                with m.Else():
                    m.d.sync += sending.eq(1)
            with m.Else():
                m.d.sync += in_beat.eq(in_beat + 1)

        out_shape = signed(self.out_bits) if self.out_signed else unsigned(self.out_bits)
        lanes_out = []
        for lane in range(self.out_lanes):
            choices = [codes[self.features - 1 - (beat * self.out_lanes + lane)]
                       for beat in range(out_beats)]
            value = Signal(out_shape, name=f"y_lane{lane}")
            chosen = choices[0]
            for beat in range(1, out_beats):
                chosen = Mux(out_beat == beat, choices[beat], chosen)
            m.d.comb += value.eq(chosen + self.offset)
            lanes_out.append(value[:self.out_bits])
        m.d.sync += blink.eq(~blink)
        wobble = Mux((bug == Bug.TDATA_WOBBLES) & blink, 1, 0)
        m.d.comb += [
            self.m_axis_tdata.eq(Cat(*lanes_out) ^ wobble),
            self.m_axis_tvalid.eq(sending),
            self.m_axis_tlast.eq(sending & (out_beat == out_beats - 1)),
        ]
        with m.Switch(bug):
            with m.Case(Bug.TLAST_ON_FIRST_BEAT):
                m.d.comb += self.m_axis_tlast.eq(sending & (out_beat == 0))
            with m.Case(Bug.TVALID_BLINKS):
                m.d.comb += self.m_axis_tvalid.eq(sending & blink)
            with m.Case(Bug.TVALID_FROM_TREADY):
                m.d.comb += self.m_axis_tvalid.eq(sending & self.m_axis_tready)
        with m.If(self.m_axis_tvalid & self.m_axis_tready):
            with m.If(out_beat == out_beats - 1):
                m.d.sync += [out_beat.eq(0), sending.eq(0)]
            with m.Else():
                m.d.sync += out_beat.eq(out_beat + 1)
        return m


def tdata_bits(lanes, bits):
    return -(-lanes * bits // 8) * 8


class TinyDesign:
    """A :class:`ReverseOffset` emitted as Verilog, with its manifest and a numpy model."""

    def __init__(self, directory, top, **params):
        self.component = ReverseOffset(**params)
        self.params = params
        directory.mkdir(parents=True, exist_ok=True)
        self.verilog_path = directory / f"{top}.v"
        self.verilog_path.write_text(verilog.convert(self.component, name=top, emit_src=False))
        c = self.component
        self.manifest = {
            "top": top, "verilog": self.verilog_path.name,
            "ports": {
                "s_axis": {"lanes": c.in_lanes, "lane_bits": c.in_bits, "signed": True,
                           "tdata_bits": tdata_bits(c.in_lanes, c.in_bits)},
                "m_axis": {"lanes": c.out_lanes, "lane_bits": c.out_bits,
                           "signed": c.out_signed,
                           "tdata_bits": tdata_bits(c.out_lanes, c.out_bits)},
            },
            "input": {"shape": [c.features]},
            "output": {"shape": [c.features]},
            "initiation_interval": c.initiation_interval,
            "latency": c.latency,
        }

    def inputs(self, frames, seed=0):
        """Random codes that never start a frame with a bug trigger."""
        bits = self.params["in_bits"]
        low = -(1 << (bits - 1)) + len(Bug)
        rng = np.random.default_rng(seed)
        return rng.integers(low, 1 << (bits - 1), size=(frames, self.params["features"]))

    def model(self, inputs):
        out = np.asarray(inputs, dtype=np.int64)[:, ::-1] + self.params["offset"]
        fmt = LaneFormat.from_json(self.manifest["ports"]["m_axis"])
        assert out.min() >= fmt.min_code and out.max() <= fmt.max_code
        return out

    def with_bug(self, inputs, frame, bug):
        inputs = inputs.copy()
        inputs[frame, 0] = -(1 << (self.params["in_bits"] - 1)) + bug
        return inputs


# 5-bit signed in, 3 lanes (16-bit tdata, 1 pad bit); 6-bit unsigned out, 2 lanes (4 pad bits).
NARROW = dict(features=12, in_lanes=3, in_bits=5, out_lanes=2, out_bits=6, out_signed=False,
              offset=16)
# 16-bit signed, 8 lanes in (128-bit tdata, wider than any C integer); 3 lanes out.
WIDE = dict(features=24, in_lanes=8, in_bits=16, out_lanes=3, out_bits=16, out_signed=True,
            offset=-1)


needs_icarus = pytest.mark.skipif(
    shutil.which("iverilog") is None or shutil.which("vvp") is None,
    reason="Icarus Verilog is not installed (no iverilog/vvp on PATH)")
#: Every system test runs on both simulators; Icarus ones skip where it is not installed.
SIMULATORS = ["verilator", pytest.param("icarus", marks=needs_icarus)]


@pytest.fixture(scope="session")
def build_root(tmp_path_factory):
    """One build cache per test session, shared by pytest-xdist workers (they take turns)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    return base / "hwgen-sim-cache"


@pytest.fixture(scope="session")
def narrow(build_root):
    return TinyDesign(build_root.parent / "designs", "reverse_narrow", **NARROW)


@pytest.fixture(scope="session")
def wide(build_root):
    return TinyDesign(build_root.parent / "designs", "reverse_wide", **WIDE)


# ----------------------------------------------------------------------------------------------
# Quick tests: no simulator.

@pytest.mark.parametrize("lanes, bits, is_signed", [(3, 5, True), (2, 6, False), (8, 16, True),
                                                    (1, 2, True), (4, 16, False)])
def test_lane_packing_round_trips(lanes, bits, is_signed):
    fmt = LaneFormat(lanes, bits, is_signed, tdata_bits(lanes, bits))
    rng = np.random.default_rng(lanes * bits)
    codes = rng.integers(fmt.min_code, fmt.max_code + 1, size=4 * lanes)
    codes[:2] = fmt.min_code, fmt.max_code
    words = fmt.pack(codes)
    assert len(words) == 4
    assert all(0 <= word < 1 << (lanes * bits) for word in words)   # pad bits stay 0
    assert [c for word in words for c in fmt.unpack(word)] == codes.tolist()


def test_lane_packing_layout():
    fmt = LaneFormat(lanes=3, lane_bits=5, signed=True, tdata_bits=16)
    # lane i at bits [5i, 5i+5), two's complement
    assert fmt.pack([1, -1, -16]) == [1 | 0b11111 << 5 | 0b10000 << 10]
    assert fmt.unpack(0b1_10000_11111_00001) == [1, -1, -16]   # the pad bit is ignored


def test_lane_format_rejects_narrow_tdata():
    with pytest.raises(ValueError, match=r"at least lanes \* lane_bits = 15, not 8"):
        LaneFormat(lanes=3, lane_bits=5, signed=True, tdata_bits=8)


def make_result(**fields):
    defaults = dict(frames=8, outputs=np.zeros((8, 4), dtype=np.int64), mismatches=(),
                    mismatch_count=0, latency=6, initiation_interval=10.0, cycles=20_000,
                    build_seconds=0.0, sim_seconds=3.0, clocked_seconds=2.0,
                    cached_build=True, simulator="verilator")
    return SimResult(**{**defaults, **fields})


def test_result_summary_names_frame_index_expected_and_got():
    mismatches = (Mismatch(3, 7, 12, 13), Mismatch(0, 1, -2, 5, "timing"))
    result = make_result(mismatches=mismatches, mismatch_count=25)
    assert not result.passed
    assert result.cycles_per_second == 10_000
    text = result.summary()
    assert "FAILED: 8 frames, 25 mismatches; measured II 10 cycles, latency 6 cycles" in text
    assert "20,000 cycles at 10,000 cycles/s, 3.0 s with start-up (cached build)" in text
    assert "frame 3, output 7: expected 12, got 13\n" in text
    assert "frame 0, output 1: expected -2, got 5 (timing phase)" in text
    assert "… and 23 more" in text
    assert repr(result).startswith("<SimResult verilator: FAILED")


def test_result_with_an_error_did_not_pass():
    result = make_result(error="cycle 40: m_axis_tvalid dropped")
    assert not result.passed
    assert "error: cycle 40: m_axis_tvalid dropped" in result.summary()
    assert make_result().passed


def test_missing_verilog_is_a_user_error(tmp_path, narrow):
    codes = narrow.inputs(2)
    with pytest.raises(HwgenError, match="does not exist"):
        run_simulation(tmp_path / "nope.v", narrow.manifest, codes, narrow.model(codes),
                       build_root=tmp_path)


@pytest.mark.parametrize("change, message", [
    (lambda i, e: (i + 100, e), r"inputs code \d+ at frame 0, index 0 does not fit the port's "
                                r"5-bit signed lanes \[-16, 15\]"),
    (lambda i, e: (i[:, :5], e), r"inputs must be \(frames, 12\)"),
    (lambda i, e: (i, e[:1]), "inputs has 3 frames but expected has 1"),
    (lambda i, e: (i * 0.5, e), "inputs must hold integer codes"),
])
def test_bad_vectors_are_user_errors(tmp_path, narrow, change, message):
    codes = narrow.inputs(3)
    inputs, expected = change(codes, narrow.model(codes))
    with pytest.raises(HwgenError, match=message):
        run_simulation(narrow.verilog_path, narrow.manifest, inputs, expected,
                       build_root=tmp_path)


def test_bad_arguments_are_user_errors(tmp_path, narrow):
    codes = narrow.inputs(2)
    args = narrow.verilog_path, narrow.manifest, codes, narrow.model(codes)
    with pytest.raises(HwgenError, match="simulator must be one of 'verilator', 'icarus'"):
        run_simulation(*args, simulator="modelsim", build_root=tmp_path)
    with pytest.raises(HwgenError, match=r"stall must be a probability in \[0, 1\)"):
        run_simulation(*args, stall=1.0, build_root=tmp_path)
    manifest = {**narrow.manifest, "ports": {"s_axis": narrow.manifest["ports"]["s_axis"]}}
    with pytest.raises(HwgenError, match="the manifest lacks 'm_axis'"):
        run_simulation(*args[:1], manifest, *args[2:], build_root=tmp_path)


@pytest.mark.skipif(shutil.which("iverilog") is not None, reason="Icarus is installed")
def test_missing_icarus_says_how_to_install_it(tmp_path, narrow):
    codes = narrow.inputs(2)
    with pytest.raises(HwgenError, match="apt-get install iverilog"):
        run_simulation(narrow.verilog_path, narrow.manifest, codes, narrow.model(codes),
                       simulator="icarus", build_root=tmp_path)
    assert not any(tmp_path.iterdir())   # nothing half-built left behind


def test_manifest_may_be_a_path(tmp_path, narrow):
    (tmp_path / "manifest.json").write_text(json.dumps({**narrow.manifest, "top": 3}))
    codes = narrow.inputs(1)
    with pytest.raises(HwgenError, match="inputs has 1 frames but expected has 2"):
        run_simulation(narrow.verilog_path, tmp_path / "manifest.json", codes,
                       narrow.model(narrow.inputs(2)), build_root=tmp_path)
    with pytest.raises(HwgenError, match="manifest .* does not exist"):
        run_simulation(narrow.verilog_path, tmp_path / "other.json", codes, codes,
                       build_root=tmp_path)


# ----------------------------------------------------------------------------------------------
# System tests: Verilator and Icarus builds (cached per session) and cocotb runs.

@pytest.mark.slow
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("design, frames, stall, seed", [
    ("narrow", 40, 0.25, 0), ("narrow", 25, 0.6, 7), ("wide", 20, 0.4, 1)])
def test_correct_design_passes_with_stalls(request, build_root, design, frames, stall, seed,
                                           simulator):
    design = request.getfixturevalue(design)
    codes = design.inputs(frames, seed)
    lines = []
    result = run_simulation(design.verilog_path, design.manifest, codes, design.model(codes),
                            simulator=simulator, build_root=build_root, stall=stall, seed=seed,
                            progress=lines.append)
    assert result.passed, result.summary()
    assert result.simulator == simulator
    assert result.mismatches == () and result.error is None
    np.testing.assert_array_equal(result.outputs, design.model(codes))
    assert result.outputs.dtype == np.int64
    assert result.frames == frames
    assert result.latency == design.component.latency
    assert result.initiation_interval == design.component.initiation_interval
    # Both phases ran: at least the stall-free time of all frames plus the timing frames.
    assert result.cycles > (frames + 4) * design.component.initiation_interval
    assert result.run_dir is None                    # a passing run cleans up after itself
    assert any(line.startswith("simulating") for line in lines)


@pytest.mark.slow
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_wrong_reference_gives_named_mismatches(build_root, narrow, simulator):
    codes = narrow.inputs(_TIMING_FRAMES + 2, seed=3)   # frames beyond the timing phase
    expected = narrow.model(codes)
    expected[3, 7] += 1
    expected[-1, :] = 0
    result = run_simulation(narrow.verilog_path, narrow.manifest, codes, expected,
                            simulator=simulator, build_root=build_root)
    assert not result.passed and result.error is None
    stress = [m for m in result.mismatches if m.phase == "stress"]
    assert stress[0] == Mismatch(3, 7, expected[3, 7], expected[3, 7] - 1, "stress")
    assert [m.index for m in stress[1:]] == list(range(12))
    assert all(m.frame == len(codes) - 1 and m.expected == 0 for m in stress[1:])
    # Frame 3 also went through the timing phase, the last frame did not.
    timing = [m for m in result.mismatches if m.phase == "timing"]
    assert timing == [Mismatch(3, 7, expected[3, 7], expected[3, 7] - 1, "timing")]
    assert result.mismatch_count == 1 + 1 + 12
    got = expected[3, 7] - 1
    assert f"frame 3, output 7: expected {expected[3, 7]}, got {got}" in result.summary()
    np.testing.assert_array_equal(result.outputs, narrow.model(codes))
    assert (result.run_dir / "sim.log").is_file()   # kept for a look at the failure


@pytest.mark.slow
def test_second_run_reuses_the_build(build_root, narrow):
    codes = narrow.inputs(3)
    first = run_simulation(narrow.verilog_path, narrow.manifest, codes, narrow.model(codes),
                           build_root=build_root)
    lines = []
    second = run_simulation(narrow.verilog_path, narrow.manifest, codes, narrow.model(codes),
                            build_root=build_root, progress=lines.append)
    assert first.passed and second.passed
    assert second.cached_build and second.build_seconds == 0
    assert any(line.startswith("using cached build") for line in lines)
    assert not any(line.startswith("building") for line in lines)
    assert len([p for p in build_root.glob("verilator-*") if p.is_dir()]) >= 1


def _run_cached(design, root):
    codes = design.inputs(2)
    lines = []
    result = run_simulation(design.verilog_path, design.manifest, codes, design.model(codes),
                            build_root=root, progress=lines.append)
    assert result.passed, result.summary()
    return result, lines


@pytest.mark.slow
def test_tampered_cache_entries_are_rebuilt(tmp_path, narrow, wide):
    """A hit is checked against its record: a changed binary, a changed source, or another
    design's build planted under this design's key are rebuilt, never run."""
    root = tmp_path / "cache"
    first, _ = _run_cached(narrow, root)
    assert not first.cached_build
    assert root.stat().st_mode & 0o777 == 0o700
    (entry,) = [p for p in root.glob("verilator-*") if p.is_dir()]
    binary = next(p for p in entry.iterdir() if p.is_file() and os.access(p, os.X_OK))
    for tamper in ("binary", "source", "planted"):
        if tamper == "binary":
            binary.write_bytes(binary.read_bytes() + b"\0")
        elif tamper == "source":
            source = next(entry.glob("*.v"))
            source.write_text(source.read_text().replace("module", "module ", 1))
        else:
            other_root = tmp_path / "other"
            _run_cached(wide, other_root)
            (other,) = [p for p in other_root.glob("verilator-*") if p.is_dir()]
            shutil.rmtree(entry)
            shutil.copytree(other, entry)
        again, lines = _run_cached(narrow, root)
        assert not again.cached_build, tamper
        assert any("does not match its record; rebuilding" in line for line in lines), tamper
    cached, _ = _run_cached(narrow, root)
    assert cached.cached_build


@pytest.mark.slow
def test_lock_symlink_is_not_followed(tmp_path, narrow):
    root = tmp_path / "cache"
    _run_cached(narrow, root)
    (entry,) = [p for p in root.glob("verilator-*") if p.is_dir()]
    shutil.rmtree(entry)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    lock = root / f"{entry.name}.lock"
    lock.unlink()
    lock.symlink_to(victim)
    with pytest.raises(HwgenError, match="cannot open the lock .* is it a symlink"):
        _run_cached(narrow, root)
    assert victim.read_text() == "keep me"


def test_cache_writable_by_others_is_refused(tmp_path, narrow):
    root = tmp_path / "shared"
    root.mkdir()
    root.chmod(0o777)
    codes = narrow.inputs(1)
    with pytest.raises(HwgenError, match="is writable by other users"):
        run_simulation(narrow.verilog_path, narrow.manifest, codes, narrow.model(codes),
                       build_root=root)


@pytest.mark.slow
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("frames, interval", [(1, None), (2, 10), (3, 10)])
def test_timing_with_few_frames(build_root, narrow, frames, interval, simulator):
    codes = narrow.inputs(frames)
    result = run_simulation(narrow.verilog_path, narrow.manifest, codes, narrow.model(codes),
                            simulator=simulator, build_root=build_root, stall=0.0)
    assert result.passed, result.summary()
    assert result.latency == 4 - 1 + 6 and result.initiation_interval == interval


@pytest.mark.slow
@pytest.mark.parametrize("bug, message", [
    (Bug.TLAST_ON_FIRST_BEAT, r"m_axis_tlast is 1 on beat 0 of output frame 5, which has 6 "
                              r"beats; tlast must be high on exactly the last beat"),
    (Bug.TVALID_BLINKS, r"m_axis_tvalid dropped before the transfer of the beat it offered"),
    (Bug.TDATA_WOBBLES, r"m_axis_tdata/tlast changed from .* while tvalid was high and tready "
                        r"low"),
    (Bug.TVALID_FROM_TREADY, r"tvalid must not depend combinationally on tready"),
    (Bug.HANG, r"no beat transferred on either port for \d+ cycles \(input frame 6 beat 0 "
               r"presented, 5 of 8 output frames received\); the design looks hung"),
])
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_protocol_violations_fail_clearly(build_root, narrow, bug, message, simulator):
    codes = narrow.with_bug(narrow.inputs(8, seed=5), frame=5, bug=bug)
    expected = narrow.model(narrow.inputs(8, seed=5))
    result = run_simulation(narrow.verilog_path, narrow.manifest, codes, expected,
                            simulator=simulator, build_root=build_root, stall=0.5, seed=2)
    assert not result.passed
    assert result.error is not None
    assert re.search(message, result.error), result.error
    assert f"error: {result.error}" in result.summary()


@pytest.mark.slow
@pytest.mark.parametrize("simulator, suffix", [
    ("verilator", ".vcd"), pytest.param("icarus", ".fst", marks=needs_icarus)])
def test_waves_are_dumped(build_root, narrow, simulator, suffix):
    codes = narrow.inputs(2)
    result = run_simulation(narrow.verilog_path, narrow.manifest, codes, narrow.model(codes),
                            simulator=simulator, build_root=build_root, waves=True)
    assert result.passed, result.summary()
    assert result.waves_path is not None and result.waves_path.stat().st_size > 0
    assert result.waves_path.suffix == suffix
    assert result.waves_path.parent == result.run_dir
    assert str(result.waves_path) in result.summary()


@pytest.mark.slow
@pytest.mark.parametrize("simulator, log", [
    ("verilator", "endmodul"),
    pytest.param("icarus", r"reverse_narrow\.v:\d+: syntax error", marks=needs_icarus)])
def test_build_failure_shows_the_compiler_log(tmp_path, narrow, simulator, log):
    broken = tmp_path / "broken.v"
    broken.write_text(narrow.verilog_path.read_text().replace("endmodule", "endmodul", 1))
    codes = narrow.inputs(1)
    with pytest.raises(HwgenError, match=rf"(?s)building 'reverse_narrow' .* with {simulator} "
                                         rf"failed.*{log}"):
        run_simulation(broken, narrow.manifest, codes, narrow.model(codes),
                       simulator=simulator, build_root=tmp_path / "cache")


@pytest.mark.slow
@needs_icarus
def test_generated_mlp_passes_under_icarus(tmp_path, build_root, monkeypatch):
    """An 8-6-4 MLP from the whole flow. Its first two inputs are always 0 (like the border
    pixels of a digit), so the adders of their products never see an input change: under
    Icarus's SystemVerilog mode such `always @*` blocks were never evaluated and the output was
    X from the first beat on."""
    import hwgen

    rng = np.random.default_rng(0)
    graph = hwgen.Graph("mlp864")
    x = graph.input((8,))
    x = graph.relu(graph.dense(x, rng.normal(size=(6, 8)) / 2, rng.normal(size=6) / 10,
                               name="fc1"))
    graph.dense(x, rng.normal(size=(4, 6)) / 2, rng.normal(size=4) / 10, name="fc2")
    calibration = rng.uniform(0, 1, size=(32, 8))
    calibration[:, :2] = 0
    plan = hwgen.make_plan(hwgen.quantize(graph, calibration))
    out = hwgen.generate(plan, calibration[:12]).write(tmp_path / "mlp")
    monkeypatch.setenv("HWGEN_SIM_CACHE", str(build_root))
    result = hwgen.simulate(out, simulator="icarus")
    assert result.passed, result.summary()
    assert result.frames == 12 and result.simulator == "icarus"
    with np.load(out / "vectors.npz") as vectors:
        np.testing.assert_array_equal(result.outputs, vectors["outputs"].reshape(12, -1))
