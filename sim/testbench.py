"""cocotb testbench: stream frames through an hwgen accelerator and check every output code.

This module runs inside the simulator. :func:`hwgen.sim.run_simulation` starts it and hands it
a run directory through the ``HWGEN_SIM_RUN_DIR`` environment variable; that directory holds

* ``config.json`` -- stream formats, frame counts, stall probability, seed and cycle limits;
* ``vectors.npz`` -- ``inputs`` (frames, in_features) and ``expected`` (frames, out_features),
  int64 codes from the integer reference.

The test writes ``result.json`` (measurements, mismatches, the first error) and ``outputs.npy``
(the codes the RTL produced in the stress phase) next to them. Nothing is parsed from the log.

The test has two phases, separated by a synchronous reset (so the stress phase also proves that
a reset after traffic brings the design back to a clean state):

1. *timing*: the first ``min(frames, 4)`` frames back to back, ``s_axis_tvalid`` high whenever
   a beat is left to send and ``m_axis_tready`` always high. Latency is the number of cycles from
   the transfer of frame 0's last input beat to the transfer of its last output beat; the
   initiation interval is the mean distance between consecutive frames' last output beats,
   leaving out the first pair (pipeline fill) when there are at least three frames.
2. *stress*: all frames, with a gap before each input beat and ``m_axis_tready`` low, each with
   probability ``stall``, from a generator seeded with ``seed``.

Every output code of every frame is compared in both phases. The monitor also checks the
AXI4-Stream rules of the output port: ``tlast`` on exactly the last beat of each frame,
``tvalid``/``tdata``/``tlast`` held until the transfer, ``tvalid`` not depending
combinationally on ``tready``, no beats beyond the frames sent, no X/Z on a valid beat.
A violation, or a design that stops transferring, ends the test with a message saying what
happened at which cycle.

Structure, as in cocotb's ``examples/matrix_multiplier``: :class:`AxisSource` (driver),
:class:`AxisSink` (monitor), :class:`FrameChecker` (model and checker; the model is the golden
array computed outside the simulator), and the ``@cocotb.test`` coroutine that wires them.
All three are stepped from one clock loop: inputs change after the falling edge, and the
handshake is sampled in the read-only phase before the next rising edge, i.e. exactly the
values the design sees at that edge.
"""

import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly


__all__ = [
    "RUN_DIR_ENV", "CONFIG_FILE", "VECTORS_FILE", "RESULT_FILE", "OUTPUTS_FILE",
    "LaneFormat", "StreamError", "AxisSource", "AxisSink", "FrameChecker",
]

RUN_DIR_ENV = "HWGEN_SIM_RUN_DIR"
CONFIG_FILE = "config.json"
VECTORS_FILE = "vectors.npz"
RESULT_FILE = "result.json"
OUTPUTS_FILE = "outputs.npy"

#: Mismatches recorded per phase; all of them are counted.
MISMATCH_CAP = 20
#: Cycles of synchronous reset before each phase.
RESET_CYCLES = 4
#: Cycles after the last expected output during which any further output beat is an error.
DRAIN_CYCLES = 16
CLOCK_PERIOD_NS = 10


@dataclass(frozen=True)
class LaneFormat:
    """How codes are packed into ``tdata``: lane ``i`` at bits ``[i*lane_bits, (i+1)*lane_bits)``.

    Signed lanes are two's complement; bits above ``lanes * lane_bits`` are zero.
    """
    lanes: int
    lane_bits: int
    signed: bool
    tdata_bits: int

    def __post_init__(self):
        if self.lanes < 1 or self.lane_bits < 1:
            raise ValueError(f"lanes and lane_bits must be positive, not {self.lanes}, "
                             f"{self.lane_bits}")
        if self.tdata_bits < self.lanes * self.lane_bits:
            raise ValueError(f"tdata_bits must be at least lanes * lane_bits = "
                             f"{self.lanes * self.lane_bits}, not {self.tdata_bits}")

    @classmethod
    def from_json(cls, data):
        return cls(lanes=int(data["lanes"]), lane_bits=int(data["lane_bits"]),
                   signed=bool(data["signed"]), tdata_bits=int(data["tdata_bits"]))

    @property
    def min_code(self):
        return -(1 << (self.lane_bits - 1)) if self.signed else 0

    @property
    def max_code(self):
        return (1 << (self.lane_bits - 1)) - 1 if self.signed else (1 << self.lane_bits) - 1

    def beats(self, features):
        """Beats per frame of ``features`` codes; ``features`` must be a multiple of ``lanes``."""
        if features % self.lanes:
            raise ValueError(f"{features} features do not split into beats of {self.lanes} lanes")
        return features // self.lanes

    def pack(self, codes):
        """Pack a 1-D sequence of codes (a multiple of ``lanes`` long) into tdata words."""
        mask = (1 << self.lane_bits) - 1
        words = []
        for start in range(0, len(codes), self.lanes):
            word = 0
            for lane, code in enumerate(codes[start:start + self.lanes]):
                word |= (int(code) & mask) << (lane * self.lane_bits)
            words.append(word)
        return words

    def unpack(self, word):
        """The codes of one tdata word, as Python ints (pad bits are ignored)."""
        mask = (1 << self.lane_bits) - 1
        sign = 1 << (self.lane_bits - 1)
        codes = []
        for lane in range(self.lanes):
            code = (word >> (lane * self.lane_bits)) & mask
            if self.signed and code & sign:
                code -= 1 << self.lane_bits
            codes.append(code)
        return codes


class StreamError(Exception):
    """The design broke the stream protocol or stopped making progress."""


def _bit(handle, name, cycle):
    try:
        return int(handle.value)
    except ValueError:
        raise StreamError(f"cycle {cycle}: {name} is {handle.value!s}, not 0 or 1") from None


class AxisSource:
    """Driver of ``s_axis``: sends frames beat by beat, optionally with random gaps.

    A gap can only come before a beat: once ``tvalid`` is high, it and the payload hold until
    the transfer, as AXI4-Stream requires.
    """

    def __init__(self, dut, fmt, frames, *, gap_probability, rng):
        self._tvalid = dut.s_axis_tvalid
        self._tready = dut.s_axis_tready
        self._tdata = dut.s_axis_tdata
        self._tlast = dut.s_axis_tlast
        self._gap = gap_probability
        self._rng = rng
        self._beats_per_frame = fmt.beats(frames.shape[1])
        self._words = fmt.pack(frames.reshape(-1)) if frames.size else []
        self._next = 0             # index of the beat to present next
        self._presenting = False   # tvalid is high with beat self._next
        self._tvalid_driven = None
        self.first_beat_cycles = []  # per frame: cycle of its first beat's transfer
        self.last_beat_cycles = []  # per frame: cycle of its last beat's transfer

    @property
    def done(self):
        return self._next == len(self._words)

    def describe(self):
        if self.done:
            return "all input beats sent"
        frame, beat = divmod(self._next, self._beats_per_frame)
        state = "presented" if self._presenting else "not yet presented"
        return f"input frame {frame} beat {beat} {state}"

    def drive(self):
        """After the falling edge: set this cycle's inputs. Returns whether any input changed."""
        if self._presenting or self.done:
            if self.done and self._tvalid_driven != 0:
                self._tvalid.value = 0
                self._tvalid_driven = 0
                return True
            return False
        if self._gap and self._rng.random() < self._gap:
            if self._tvalid_driven != 0:
                self._tvalid.value = 0
                self._tvalid_driven = 0
                return True
            return False
        self._tdata.value = self._words[self._next]
        self._tlast.value = int(self._next % self._beats_per_frame == self._beats_per_frame - 1)
        if self._tvalid_driven != 1:
            self._tvalid.value = 1
            self._tvalid_driven = 1
        self._presenting = True
        return True

    def sample(self, cycle):
        """In the read-only phase: returns whether a beat transfers at the coming edge."""
        if not self._presenting:
            return False
        if not _bit(self._tready, "s_axis_tready", cycle):
            return False
        if self._next % self._beats_per_frame == 0:
            self.first_beat_cycles.append(cycle)
        if self._next % self._beats_per_frame == self._beats_per_frame - 1:
            self.last_beat_cycles.append(cycle)
        self._next += 1
        self._presenting = False
        return True

    def idle(self):
        """Drive ``tvalid`` low (used around reset)."""
        self._tvalid.value = 0
        self._tvalid_driven = 0


class AxisSink:
    """Monitor of ``m_axis``: applies random back-pressure, checks the protocol, collects frames.

    :meth:`sample` returns the codes of a frame when its last beat transfers.
    """

    def __init__(self, dut, fmt, features, *, frames, stall_probability, rng):
        self._tvalid = dut.m_axis_tvalid
        self._tready = dut.m_axis_tready
        self._tdata = dut.m_axis_tdata
        self._tlast = dut.m_axis_tlast
        self._fmt = fmt
        self._beats_per_frame = fmt.beats(features)
        self._frames = frames
        self._stall = stall_probability
        self._rng = rng
        self._ready = None         # the value we drive on tready this cycle
        self._ready_changed = False
        self._tvalid_before = None  # tvalid read before tready changed, this cycle
        self._held = None          # (tdata, tlast) of a valid beat that did not transfer
        self._beats = []           # codes of the frame being received
        self.frames_received = 0
        self.beats_transferred = 0
        self.last_beat_cycles = []

    @property
    def done(self):
        return self.frames_received == self._frames

    def describe(self):
        beat = len(self._beats) // self._fmt.lanes
        return (f"{self.frames_received} of {self._frames} output frames received"
                + (f", frame {self.frames_received} at beat {beat}" if beat else ""))

    def drive(self, *, ready=None):
        """After the falling edge: set ``tready`` (random back-pressure unless ``ready`` given)."""
        if ready is None:
            ready = 0 if (self._stall and self._rng.random() < self._stall) else 1
        self._ready_changed = ready != self._ready
        if self._ready_changed:
            # The design's state cannot change before the next edge; if tvalid moves now while
            # no other input moves, it is a function of tready.
            self._tvalid_before = self._tvalid.value
            self._tready.value = ready
            self._ready = ready

    def sample(self, cycle, *, other_inputs_changed):
        """In the read-only phase: check the beat on the port; return a completed frame or None."""
        valid = _bit(self._tvalid, "m_axis_tvalid", cycle)
        if (self._ready_changed and not other_inputs_changed and self._tvalid_before is not None
                and self._tvalid_before.is_resolvable
                and int(self._tvalid_before) != valid):
            raise StreamError(
                f"cycle {cycle}: m_axis_tvalid went from {int(self._tvalid_before)} to {valid} "
                f"when only m_axis_tready changed (to {self._ready}); tvalid must not depend "
                f"combinationally on tready")
        if self._held is not None:
            held_data, held_last = self._held
            if not valid:
                raise StreamError(
                    f"cycle {cycle}: m_axis_tvalid dropped before the transfer of the beat it "
                    f"offered ({self.describe()}); tvalid must hold until tready")
            if self._tdata.value != held_data or self._tlast.value != held_last:
                raise StreamError(
                    f"cycle {cycle}: m_axis_tdata/tlast changed from {held_data!s}/{held_last!s} "
                    f"to {self._tdata.value!s}/{self._tlast.value!s} while tvalid was high and "
                    f"tready low ({self.describe()}); they must hold until the transfer")
        if not valid:
            self._held = None
            return None
        if self.done:
            raise StreamError(
                f"cycle {cycle}: m_axis_tvalid is high after all {self._frames} expected output "
                f"frames were received; the design sends more beats than it should")
        if not self._ready:
            self._held = (self._tdata.value, self._tlast.value)
            return None
        self._held = None
        data = self._tdata.value
        if not data.is_resolvable:
            raise StreamError(f"cycle {cycle}: m_axis_tdata is {data!s} (X/Z bits) on a "
                              f"transfer ({self.describe()})")
        last = _bit(self._tlast, "m_axis_tlast", cycle)
        beat = len(self._beats) // self._fmt.lanes
        should_be_last = beat == self._beats_per_frame - 1
        if last != should_be_last:
            raise StreamError(
                f"cycle {cycle}: m_axis_tlast is {last} on beat {beat} of output frame "
                f"{self.frames_received}, which has {self._beats_per_frame} beats; tlast must be "
                f"high on exactly the last beat")
        self.beats_transferred += 1
        self._beats.extend(self._fmt.unpack(data.to_unsigned()))
        if not should_be_last:
            return None
        codes, self._beats = self._beats, []
        self.frames_received += 1
        self.last_beat_cycles.append(cycle)
        return codes

    def idle(self):
        """Drive ``tready`` low (used around reset) and forget any half-received state."""
        self._tready.value = 0
        self._ready = 0
        self._held = None


class FrameChecker:
    """Compares each received frame with the golden codes; keeps the RTL's outputs."""

    def __init__(self, expected, phase):
        self._expected = expected
        self.phase = phase
        self.outputs = np.zeros_like(expected)
        self.mismatches = []       # the first MISMATCH_CAP, as [frame, index, expected, got]
        self.mismatch_count = 0

    def check(self, frame, codes):
        got = np.asarray(codes, dtype=np.int64)
        self.outputs[frame] = got
        wrong = np.flatnonzero(got != self._expected[frame])
        self.mismatch_count += len(wrong)
        for index in wrong[:max(0, MISMATCH_CAP - len(self.mismatches))]:
            self.mismatches.append([frame, int(index), int(self._expected[frame, index]),
                                    int(got[index])])


class _Clocked:
    """Counts rising edges; cycle ``n`` is the ``n``-th rising edge after the clock started."""

    def __init__(self, dut):
        self.dut = dut
        self.cycle = 0
        self._falling = FallingEdge(dut.clk)
        self._read_only = ReadOnly()

    async def falling(self):
        await self._falling

    async def read_only(self):
        await self._read_only
        # The rising edge that follows this read-only phase is the one these values reach.
        self.cycle += 1


async def _reset(clocked, source, sink):
    dut = clocked.dut
    await clocked.falling()
    dut.rst.value = 1
    source.idle()
    sink.idle()
    for _ in range(RESET_CYCLES):
        await clocked.read_only()
        await clocked.falling()
    dut.rst.value = 0


async def _run_phase(clocked, config, phase, inputs, expected, stall, rng, record):
    """Stream ``inputs`` through the design, checking every frame against ``expected``.

    ``record[phase]`` gets the phase's ``(source, sink, checker)`` before the first cycle, so
    the caller can report what happened even when the phase ends with a :class:`StreamError`.
    """
    fmt_in = LaneFormat.from_json(config["s_axis"])
    fmt_out = LaneFormat.from_json(config["m_axis"])
    source = AxisSource(clocked.dut, fmt_in, inputs, gap_probability=stall, rng=rng)
    sink = AxisSink(clocked.dut, fmt_out, expected.shape[1], frames=len(inputs),
                    stall_probability=stall, rng=rng)
    checker = FrameChecker(expected, phase)
    record[phase] = source, sink, checker
    await _reset(clocked, source, sink)

    max_cycles = int(config["limits"][phase]["max_cycles"])
    idle_limit = int(config["limits"]["idle_cycles"])
    start = last_progress = clocked.cycle
    while not sink.done:
        inputs_changed = source.drive()
        sink.drive()
        await clocked.read_only()
        cycle = clocked.cycle
        if source.sample(cycle):
            last_progress = cycle
        beats = sink.beats_transferred
        codes = sink.sample(cycle, other_inputs_changed=inputs_changed)
        if sink.beats_transferred != beats:
            last_progress = cycle
        if codes is not None:
            checker.check(sink.frames_received - 1, codes)
        if cycle - last_progress > idle_limit:
            raise StreamError(
                f"{phase} phase, cycle {cycle}: no beat transferred on either port for "
                f"{idle_limit} cycles ({source.describe()}, {sink.describe()}); the design "
                f"looks hung")
        if cycle - start > max_cycles:
            raise StreamError(
                f"{phase} phase, cycle {cycle}: timed out after {max_cycles} cycles "
                f"({source.describe()}, {sink.describe()})")
        await clocked.falling()

    # Anything after the last expected beat is an extra beat; look for one briefly.
    for _ in range(DRAIN_CYCLES):
        source.drive()
        sink.drive(ready=1)
        await clocked.read_only()
        sink.sample(clocked.cycle, other_inputs_changed=True)
        await clocked.falling()


def _timing(source, sink):
    """Latency and initiation interval from the timing phase's transfer cycles."""
    latency = None
    if source.first_beat_cycles and sink.last_beat_cycles:
        latency = sink.last_beat_cycles[0] - source.first_beat_cycles[0]
    gaps = np.diff(sink.last_beat_cycles)
    if len(gaps) >= 2:
        # The last quarter: engines of equal rate take frames to settle their offsets.
        interval = float(np.mean(gaps[max(3 * len(gaps) // 4, 1):]))
    elif len(gaps) == 1:
        interval = float(gaps[0])
    else:
        interval = None
    return latency, interval


@cocotb.test()
async def stream_frames(dut):
    """Stream the run directory's frames through ``dut`` and compare every output code."""
    run_dir = Path(os.environ[RUN_DIR_ENV])
    config = json.loads((run_dir / CONFIG_FILE).read_text())
    with np.load(run_dir / VECTORS_FILE) as vectors:
        inputs = vectors["inputs"]
        expected = vectors["expected"]

    result = {
        "latency": None, "initiation_interval": None, "cycles": 0, "error": None,
        "mismatch_count": 0, "mismatches": [], "frames_received": 0, "testbench_seconds": 0.0,
    }
    started = time.perf_counter()
    clocked = _Clocked(dut)
    record = {}
    try:
        for port in ("s_axis", "m_axis"):
            width = len(getattr(dut, f"{port}_tdata"))
            if width != config[port]["tdata_bits"]:
                raise StreamError(f"{port}_tdata is {width} bits wide in the Verilog, but the "
                                  f"manifest says {config[port]['tdata_bits']}")
        dut.rst.value = 1
        dut.s_axis_tvalid.value = 0
        dut.m_axis_tready.value = 0
        Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start(start_high=False)

        timing_frames = int(config["timing_frames"])
        await _run_phase(clocked, config, "timing", inputs[:timing_frames],
                         expected[:timing_frames], 0.0, random.Random(0), record)
        await _run_phase(clocked, config, "stress", inputs, expected, float(config["stall"]),
                         random.Random(int(config["seed"])), record)
    except StreamError as error:
        result["error"] = str(error)
    except Exception as error:
        result["error"] = f"the testbench failed: {error!r}"
        raise
    finally:
        if "timing" in record:
            source, sink, _ = record["timing"]
            result["latency"], result["initiation_interval"] = _timing(source, sink)
        for phase, (_, _, checker) in record.items():
            result["mismatches"] += [m + [phase] for m in checker.mismatches]
            result["mismatch_count"] += checker.mismatch_count
        if "stress" in record:
            _, sink, checker = record["stress"]
            result["frames_received"] = sink.frames_received
            outputs = checker.outputs
        else:
            outputs = np.zeros_like(expected)
        result["cycles"] = clocked.cycle
        result["testbench_seconds"] = time.perf_counter() - started
        np.save(run_dir / OUTPUTS_FILE, outputs)
        tmp = run_dir / (RESULT_FILE + ".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(run_dir / RESULT_FILE)

    assert result["error"] is None, result["error"]
    assert result["mismatch_count"] == 0, (
        f"{result['mismatch_count']} output codes differ from the reference, first: "
        + "; ".join(f"frame {f}, output {i}: expected {e}, got {g} ({p} phase)"
                    for f, i, e, g, p in result["mismatches"][:5]))
