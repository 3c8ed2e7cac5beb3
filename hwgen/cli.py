"""``hwgen build``, ``sim``, ``synth``, ``check`` and ``explore``: thin wrappers over the
notebook API.

A user error (:class:`~hwgen.errors.HwgenError`) is printed as one line, ``hwgen: error: …``,
without a traceback; the exit status is 1 for errors, 2 for bad command lines and 3 when a
simulation finds mismatches.
"""

import argparse
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from .api import load_inputs, load, load_labels as _labels, simulate
from .emit import generate
from .errors import HwgenError, HwgenWarning
from .hw.dsp import TARGETS
from .plan import (DEFAULT_MAX_UTILIZATION, DEFAULT_MEMORY_UTILIZATION, DEFAULT_MULTIPLIERS,
                   make_plan)
from .precision import choose_bits
from .precision_board import choose_bits_for_board
from .qgraph import QGraph
from .quantize import DEFAULT_BITS, load_calibration, quantize

EXIT_ERROR, EXIT_MISMATCH = 1, 3


def _progress(message):
    print(f"hwgen: {message}", file=sys.stderr, flush=True)


def _check_output(folder):
    """Fail before the long steps if ``folder`` cannot become the design's folder."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise HwgenError(f"-o {folder!r} is a file; give a folder for the design")
    existing = next((p for p in [out, *out.parents] if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise HwgenError(f"-o {folder!r}: cannot create or write a folder under "
                         f"{str(existing)!r} (permission denied)")


def _check_auto(args):
    """``--max-accuracy-drop`` and ``--budget`` belong to ``--bits auto``, which needs one."""
    if args.bits == "auto":
        if (args.max_accuracy_drop is None) == (args.budget is None):
            raise HwgenError("--bits auto needs exactly one of --max-accuracy-drop POINTS and "
                             "--budget SPEC")
    elif (args.max_accuracy_drop is not None or args.budget is not None or args.eval
          or args.holdout is not None or args.confidence is not None
          or args.objective != "bops"):
        raise HwgenError("--max-accuracy-drop, --budget, --objective, --eval, --holdout and "
                         "--confidence choose the bits: use them with --bits auto")
    if args.eval and args.holdout is not None:
        raise HwgenError("--holdout splits --calib to confirm the bits; with --eval DATA the "
                         "bits are confirmed on DATA and all of --calib selects: give one of "
                         "them")
    if args.objective == "fps" and not args.board:
        raise HwgenError("--objective fps scores bits by the frames/s of the plan sized for a "
                         "board: give --board")


_FPS = re.compile(r"fps\s*=\s*(\d+(?:\.\d*)?)\s*([kKmM]?)")


def _fps_budget(budget):
    """The frames/s of a ``--budget fps=20000`` (``k``/``M`` suffixes), or ``None``."""
    match = _FPS.fullmatch((budget or "").strip())
    if not match:
        if (budget or "").strip().lower().startswith("fps"):
            raise HwgenError(f"--budget {budget!r}: a frames/s budget looks like 'fps=20000' "
                             "or 'fps=1.5M'")
        return None
    return float(match[1]) * {"": 1, "k": 1e3, "m": 1e6}[match[2].lower()]


def _choose(args, graph, calibration, options):
    """``--bits auto``: by bit-operations (``choose_bits``), or, with ``--budget fps=N`` or
    ``--objective fps``, by the frames/s of the plan sized for ``--board``. The bits are
    selected on ``--calib`` and confirmed on ``--eval`` if given, else on ``--holdout`` of
    ``--calib`` set aside; all of ``--calib`` sets the ranges."""
    if args.eval:
        _labels(args.eval)  # integer classes, or a clear error
    confirmation = dict(holdout=args.holdout, confirm=args.eval, progress=_progress)
    if args.confidence is not None:
        confirmation["confidence"] = args.confidence
    min_fps = _fps_budget(args.budget)
    if min_fps is None and args.objective != "fps":
        choice = choose_bits(graph, calibration, _labels(args.calib), calibration=calibration,
                             max_accuracy_drop=args.max_accuracy_drop, budget=args.budget,
                             **confirmation, **options)
    elif not args.board:
        raise HwgenError("--budget fps=N scores bits by the frames/s of the plan sized for a "
                         "board: give --board")
    else:
        choice = choose_bits_for_board(
            graph, calibration, _labels(args.calib), calibration=calibration, board=args.board,
            min_fps=min_fps, max_accuracy_drop=None if min_fps else args.max_accuracy_drop,
            max_utilization=_utilization(args.max_utilization),
            multiplier_kinds=args.multiplier_kinds, **confirmation, **options)
    _progress(f"chosen bits {choice.confirmation.summary()}")
    return choice


def cmd_build(args):
    started = time.perf_counter()
    _check_auto(args)
    _check_output(args.output)
    if args.frames < 1:
        raise HwgenError(f"--frames must be at least 1, not {args.frames}")
    if args.plan_goal != "throughput" and not args.board:
        raise HwgenError(f"--plan-goal {args.plan_goal} selects among the plans that fit a "
                         "board: give --board")
    choice = None
    graph = load(args.model, name=args.name, argmax=args.argmax)
    calibration = load_calibration(args.calib) if args.calib else None
    if isinstance(graph, QGraph):
        # A quantized model (QDQ, QOperator, QONNX) brings its own quantization; test vectors
        # come from --calib if given, else from random input codes.
        _progress(f"loaded the quantized model {args.model}: {len(graph.layers)} layers")
        for note in graph.notes:
            _progress(note)
        if args.bits is not None:
            raise HwgenError("--bits does not apply to a quantized model: its bit widths are "
                             "the model's own")
        qgraph, graph = graph, None
        if calibration is not None:
            _warn_if_approximate(args.model, calibration)
    else:
        _progress(f"loaded {args.model}: {len(graph.layers())} layers")
        for note in graph.notes:
            _progress(note)
        if calibration is None:
            raise HwgenError(f"{args.model} is a float model: give calibration inputs with "
                             "--calib DATA (only quantized models build without)")
        options = dict(output_bits=args.output_bits, calibration_method=args.calib_method,
                       weight_granularity=args.weight_scale)
        bits = args.bits
        if bits == "auto":
            choice = _choose(args, graph, calibration, options)
            print(choice)
            bits = choice.bits
        qgraph = quantize(graph, calibration, bits, **options)
    if args.multiplier_kinds and not args.board:
        raise HwgenError("--multiplier-kinds chooses among kinds for --board; without a board "
                         "pin a layer's kind in --folding (e.g. 'fc1=4x8:lut')")
    plan = make_plan(qgraph, args.folding, multipliers=args.multipliers, board=args.board,
                     max_utilization=_utilization(args.max_utilization),
                     multiplier_kinds=args.multiplier_kinds, unroll=args.unroll,
                     goal=args.plan_goal, engine=args.engine,
                     shared_from=args.shared_from, clock=args.clock, progress=_progress)
    print(plan)
    if plan.board is not None:
        print(plan.cost())
    design = generate(plan, calibration, name=args.name, frames=args.frames, graph=graph,
                      labels=_labels(args.calib) if args.calib else None, precision=choice,
                      target=args.target)
    out = design.write(args.output)
    print(f"wrote {out / design.manifest['verilog']}, manifest.json, vectors.npz, report.md "
          f"in {time.perf_counter() - started:.1f} s")
    return 0


def _warn_if_approximate(model, inputs):
    """A quantized model's own arithmetic against hwgen's reference on ``inputs`` (up to 256):
    a warning line when not every output code agrees, or when it cannot be measured."""
    from .check import check_model

    try:
        result = check_model(model, inputs[:256])
    except HwgenError as error:
        _progress(f"warning: could not compare hwgen's arithmetic with the model's ({error})")
        return
    if result.kind == "codes" and result.exact < 1.0 and result.caveats:
        _progress(f"warning: {result.exact:.2%} of output codes equal {result.golden}'s on "
                  f"{result.frames} inputs (largest difference {result.max_diff}), whose kernels "
                  "saturate on this CPU (the warning above)")
    elif result.kind == "codes" and result.exact < 1.0:
        _progress(f"warning: hwgen approximates this model's arithmetic: {result.exact:.2%} of "
                  f"output codes equal {result.golden}'s on {result.frames} inputs (largest "
                  f"difference {result.max_diff}); see docs/arithmetic.md")


def _utilization(text):
    """``--max-utilization``: one fraction, or ``lut=0.8,dsp=1`` per resource (``None``:
    the defaults)."""
    if text is None:
        return None
    if "=" not in text:
        return _fraction(text)
    result = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        resource, _, value = item.partition("=")
        result[resource.strip().lower()] = _fraction(value)
    return result


def _fraction(text):
    text = text.strip()
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise HwgenError(f"--max-utilization takes a fraction such as 0.8 or 80%, or "
                         f"'lut=0.8,dsp=1', not {text!r}") from None


def cmd_sim(args):
    inputs = load_inputs(args.inputs) if args.inputs else None
    result = simulate(args.design, inputs, frames=args.frames, simulator=args.simulator,
                      waves=args.waves, seed=args.seed, stall=args.stall, progress=_progress)
    print(result.summary())
    manifest = json.loads((Path(args.design) / "manifest.json").read_text())
    print(f"predicted: II {manifest['initiation_interval']} cycles, "
          f"latency {manifest['latency']} cycles (manifest.json)")
    if args.save:
        np.save(args.save, result.outputs)
        print(f"saved the RTL's output codes ({result.outputs.shape[0]} × "
              f"{result.outputs.shape[1]}) to {args.save}")
    return 0 if result.passed else EXIT_MISMATCH


def cmd_check(args):
    from .check import check_model

    result = check_model(args.model, args.inputs, args.calib, bits=args.bits,
                         output_bits=args.output_bits)
    print(result.summary())
    if result.kind == "codes" and result.max_diff > 1:
        return EXIT_MISMATCH
    return 0


def cmd_boards(args):
    from .board import boards_table
    print(boards_table())
    return 0


def cmd_synth(args):
    from .synth import synthesize
    if args.bitstream:
        from .board_top import build_bitstream
        result = build_bitstream(args.design, args.board, baud=args.baud,
                                 clock_mhz=args.clock, progress=_progress)
        print(result.summary())
        return 0
    result = synthesize(args.design, args.board, clock_mhz=args.clock,
                        place_and_route=not args.no_pnr, seed=args.seed, progress=_progress)
    print(result.summary())
    print(f"wrote {Path(args.design) / 'synth'}/ (logs, synth.json) and a Synthesis section "
          "in report.md")
    return 0


def cmd_run(args):
    from . import host

    result = host.run_design(args.design, args.port, args.inputs, frames=args.frames,
                             baud=args.baud, timeout=args.timeout, progress=_progress)
    print(result.summary())
    return 0 if result.passed else EXIT_MISMATCH


def _split(text):
    """``"w8a8,w4a4"`` → ``["w8a8", "w4a4"]``; ``;`` separates foldings (which hold commas)."""
    separator = ";" if ";" in text else ","
    return [part.strip() for part in text.split(separator) if part.strip()]


def _number(value):
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def cmd_explore(args):
    from .explore import explore

    _check_output(args.output)
    parallelism = [int(p) if p.isdigit() else p for p in _split(args.parallelism)]
    result = explore(
        args.model, args.calib, test=args.eval, bits=_split(args.bits), parallelism=parallelism,
        boards=_split(args.boards),
        multiplier_kinds=[None if k == "default" else k for k in args.multiplier_kinds.split(";")],
        unroll=[None if u == "none" else u for u in args.unroll.split(";")],
        targets=[None if t == "auto" else t for t in _split(args.target)],
        output_bits=args.output_bits, synth=args.synth, sim=args.sim,
        sim_frames=args.sim_frames, out=args.output, cache=not args.no_cache,
        client=args.scheduler, workers=args.workers, progress=True)
    shown = [c for c in ("bits", "parallelism", "board", "accuracy", "lut", "dsp", "bram",
                         "fits", "ii", "frames_per_s", "energy_nj", "error")
             if c in result.frame.columns]
    table = result.frame[shown].copy()
    table["error"] = table["error"].str.slice(0, 60)
    print(table.to_string(index=False, float_format=_number))
    print(result.summary())
    print(f"wrote {Path(args.output) / 'results.csv'}, report.html and plots")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="hwgen", description="Trained network in, verified FPGA accelerator out.")
    parser.add_argument("--version", action="version", version=f"hwgen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="generate Verilog, manifest, vectors and report")
    build.add_argument("model", help="an ONNX file")
    build.add_argument("--calib",
                       help="calibration inputs: .npy, or .npz with 'x' (and labels 'y'); "
                            "required for float models, test inputs for quantized ones")
    build.add_argument("--calib-method", choices=["minmax", "percentile", "mse"],
                       default="minmax", help="activation range from calibration (default "
                                              "minmax)")
    build.add_argument("--weight-scale", choices=["channel", "tensor"], default="channel",
                       help="weight scales per output channel (default) or per tensor")
    build.add_argument("-o", "--output", required=True, help="output folder")
    build.add_argument("--bits",
                       help="uniform 'wXaY', a JSON file {layer: {\"w\": 4, \"a\": 6}}, or "
                            "'auto' (with --max-accuracy-drop or --budget) "
                            f"(default {DEFAULT_BITS}; float models only)")
    build.add_argument("--max-accuracy-drop", type=float, metavar="POINTS",
                       help="--bits auto: the fewest bit-operations losing at most this many "
                            "accuracy points against the float model (labels 'y' if the .npz "
                            "has them, else agreement with the float model), selected on "
                            "--calib and confirmed, with a confidence bound, on --eval or on "
                            "a held-out part of --calib")
    build.add_argument("--eval", metavar="DATA",
                       help="--bits auto: confirm the bits on these inputs (.npz with 'x' and "
                            "labels 'y' if --calib has labels, or .npy); all of --calib then "
                            "selects, and --calib always sets the ranges")
    build.add_argument("--holdout", type=float, metavar="FRACTION",
                       help="--bits auto without --eval: the share of --calib held out to "
                            "confirm the bits, stratified by label (default 0.5)")
    build.add_argument("--confidence", type=float, metavar="LEVEL",
                       help="--bits auto: confidence of the bound on the accuracy drop that "
                            "confirms the bits (default 0.95)")
    build.add_argument("--budget", metavar="SPEC",
                       help="--bits auto: the best accuracy within a cost, e.g. 'bops=40%%', "
                            "'bops=1.2M', 'weights=16KiB', 'weight_bits=100000', or with "
                            "--board 'fps=20000' (frames/s of the plan sized for the board)")
    build.add_argument("--objective", choices=["bops", "fps"], default="bops",
                       help="--bits auto --max-accuracy-drop: minimize bit-operations "
                            "(default) or maximize the frames/s of the plan sized for --board")
    build.add_argument("--output-bits", type=int, default=8,
                       help="bits of the last layer's output codes (default 8)")
    build.add_argument("--folding",
                       help="per-layer PExSIMD, optionally with engine and multiplier kind: "
                            "'fc1=4x8,fc2=2x4:lut,conv1=systolic:4x9:dsp-packed' or a JSON file")
    build.add_argument("--unroll", metavar="LAYERS",
                       help="dense and conv layers to build unrolled, their weights as "
                            "constants in the logic at one input vector (a conv: one output "
                            "pixel) per cycle: 'all', 'fc1,conv2' (same as --folding "
                            "fc1=unrolled) or, with --board, 'auto' (the board search unrolls "
                            "the layers where that fits best)")
    build.add_argument("--engine", choices=["dataflow", "sequential"],
                       help="'sequential': every chain of dense, conv and pooling layers "
                            "on one shared layer-sequential engine (size it with "
                            "--multipliers, --board or --folding fc3=sequential:8); "
                            "'dataflow': an engine per layer only; default: an engine per "
                            "layer, and with --board the dense layers, a tail of the network "
                            "or every layer shared when that does not fit")
    build.add_argument("--shared-from", metavar="LAYER",
                       help="the layers from LAYER on (a cut of the graph, e.g. the first "
                            "layer of a residual block) on shared layer-sequential engines, "
                            "those before on their dataflow engines")
    build.add_argument("--plan-goal", choices=["throughput", "latency"], default="throughput",
                       help="with --board: at the shortest interval, plan for headroom "
                            "(throughput, the default) or for the lowest latency (every layer "
                            "as fast as the board allows; with --unroll auto that favours "
                            "unrolled layers)")
    build.add_argument("--clock", type=float, metavar="MHZ",
                       help="the clock unrolled layers place their pipeline registers for "
                            "(default: the --board's target clock, else 150)")
    build.add_argument("--multipliers", type=int,
                       help="multipliers of the largest layer under the default folding "
                            f"(default {DEFAULT_MULTIPLIERS}; not with --board)")
    build.add_argument("--board",
                       help="size the folding for this board (see `hwgen boards`): the "
                            "fastest plan whose modelled resources fit")
    build.add_argument("--max-utilization",
                       help="with --board: the share of each resource the plan may use, "
                            "e.g. 0.9, 90%% or 'lut=0.7,dsp=1' (default "
                            f"{DEFAULT_MAX_UTILIZATION:g} of LUTs, FFs and DSPs, the headroom "
                            "place and route needs, "
                            f"{DEFAULT_MEMORY_UTILIZATION['bram']:g} of block RAM, "
                            f"{DEFAULT_MEMORY_UTILIZATION['spram']:g} of SPRAM; resources a "
                            "per-resource list leaves out get the default)")
    build.add_argument("--multiplier-kinds", metavar="KINDS",
                       help="with --board: the multiplier kinds the board search may use per "
                            "layer, from dsp, dsp-packed, lut (default all: 'dsp,dsp-packed,"
                            "lut'; 'dsp' builds one DSP per product everywhere)")
    build.add_argument("--target", choices=TARGETS,
                       help="which vendor primitives the Verilog instantiates: none "
                            "('generic'), ECP5 MULT18X18D with their registers and DP16KD "
                            "('ecp5'), iCE40 SB_SPRAM256KA for a shared engine's activations "
                            "('ice40'); default: the --board's family where it is one of "
                            "these, else 'generic'")
    build.add_argument("--argmax", action="store_true",
                       help="end the accelerator in an argmax unit: it outputs the class index "
                            "(an output Softmax/LogSoftmax/ArgMax is removed either way)")
    build.add_argument("--name", help="top module name (default: the model file's stem)")
    build.add_argument("--frames", type=int, default=32,
                       help="test frames taken from the calibration data (default 32)")
    build.set_defaults(run=cmd_build)

    sim = commands.add_parser("sim", help="simulate a design with cocotb against the reference")
    sim.add_argument("design", help="a folder written by `hwgen build`")
    sim.add_argument("--inputs", help="float inputs (.npy, or .npz with 'x'), quantized with "
                                      "the model's input parameters (default: vectors.npz)")
    sim.add_argument("--save", help="write the RTL's output codes (frames × outputs) to .npy")
    sim.add_argument("--simulator", choices=["verilator", "icarus"], default="verilator")
    sim.add_argument("--waves", action="store_true", help="dump a waveform")
    sim.add_argument("--frames", type=int, help="simulate only the first N frames")
    sim.add_argument("--seed", type=int, default=0, help="seed of the random stalls")
    sim.add_argument("--stall", type=float, default=0.25,
                     help="probability of an input gap / output back-pressure per cycle")
    sim.set_defaults(run=cmd_sim)

    synth = commands.add_parser(
        "synth", help="resources, fmax and fit on a board (yosys, nextpnr); or a bitstream")
    synth.add_argument("design", help="a folder written by `hwgen build`")
    synth.add_argument("--board", required=True, help="a board profile (see `hwgen boards`)")
    synth.add_argument("--clock", type=float,
                       help="place-and-route target in MHz (default: the board's); with "
                            "--bitstream on iCE40 the PLL's clock (default: the fastest the "
                            "placed design meets)")
    synth.add_argument("--no-pnr", action="store_true", help="stop after yosys")
    synth.add_argument("--seed", type=int, default=1, help="nextpnr's placement seed")
    synth.add_argument("--bitstream", action="store_true",
                       help="build a bitstream with the accelerator behind the board's UART "
                            "(into OUT/synth/bitstream/)")
    synth.add_argument("--baud", type=int, default=115200,
                       help="UART baud rate of --bitstream (default 115200)")
    synth.set_defaults(run=cmd_synth)

    run = commands.add_parser(
        "run", help="send frames to a board running the bitstream, check its answers")
    run.add_argument("design", help="a folder written by `hwgen build` whose bitstream "
                                    "(`hwgen synth --bitstream`) is loaded on the board")
    run.add_argument("--port", required=True,
                     help="the board's serial port (/dev/ttyUSB0, COM3) or a pyserial URL")
    run.add_argument("--baud", type=int, default=115200,
                     help="the bitstream's baud rate (`hwgen synth --baud`; default 115200)")
    run.add_argument("--inputs", help="float inputs (.npy, or .npz with 'x'), quantized with "
                                      "the model's input parameters (default: vectors.npz)")
    run.add_argument("--frames", type=int, help="send only the first N frames")
    run.add_argument("--timeout", type=float,
                     help="seconds to wait for a frame's answer (default: 1 s plus twice the "
                          "frame's time on the line)")
    run.set_defaults(run=cmd_run)

    explore = commands.add_parser(
        "explore", help="sweep bits × parallelism × boards: accuracy, resources, frames/s, "
                        "energy; CSV, plots and an HTML report")
    explore.add_argument("model", help="a float ONNX file")
    explore.add_argument("--calib", required=True,
                         help="calibration inputs: .npy, or .npz with 'x' (and labels 'y', "
                              "which auto bits select on)")
    explore.add_argument("--eval", metavar="DATA",
                         help="evaluation inputs, .npz with 'x' and labels 'y' (default: "
                              "--calib): accuracy is measured on them")
    explore.add_argument("-o", "--output", required=True,
                         help="folder for results.csv, report.html, plots and the cache")
    explore.add_argument("--bits", default="w8a8",
                         help="comma-separated bit settings: 'w8a8,w4a4', JSON files of layers, "
                              "'auto:drop=1', 'auto:bops=40%%', 'auto:fps=20000' (default w8a8)")
    explore.add_argument("--parallelism", default="fit",
                         help="comma-separated: 'fit' (the fastest plan that fits the board), "
                              "multiplier targets such as 8,32, or foldings separated by ';' "
                              "('fc1=4x8,fc2=2x4;fc1=2x4,fc2=1x4') (default fit)")
    explore.add_argument("--boards", default="ulx3s_85f",
                         help="comma-separated board names (see `hwgen boards`)")
    explore.add_argument("--multiplier-kinds", default="default",
                         help="';'-separated multiplier kinds: 'default;dsp;lut' or, for fit, "
                              "lists such as 'dsp,lut' (default: the engines' defaults)")
    explore.add_argument("--unroll", default="none",
                         help="';'-separated: 'none', 'all', 'auto' (boards) or dense and "
                              "conv layers 'fc1,conv2'")
    explore.add_argument("--target", default="auto",
                         help="comma-separated: auto, generic, ecp5, ice40 (which vendor "
                              "primitives the Verilog instantiates; auto: the board's)")
    explore.add_argument("--output-bits", type=int, default=8,
                         help="bits of the last layer's output codes (default 8)")
    explore.add_argument("--synth", action="store_true",
                         help="also synthesize every point (yosys/nextpnr: counts and fmax)")
    explore.add_argument("--sim", action="store_true",
                         help="also simulate every point (cocotb/Verilator: II and latency)")
    explore.add_argument("--sim-frames", type=int, default=8,
                         help="test frames per simulated design (default 8)")
    explore.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                         help="run the points on this Dask scheduler (pip install "
                              "'hwgen[dask]') instead of a local process pool")
    explore.add_argument("--workers", type=int,
                         help="local processes (default: one per core; 1 runs in this process)")
    explore.add_argument("--no-cache", action="store_true",
                         help="compute every point again (the cache is OUT/cache)")
    explore.set_defaults(run=cmd_explore)

    boards = commands.add_parser("boards", help="list the board profiles")
    boards.set_defaults(run=cmd_boards)

    check = commands.add_parser(
        "check", help="compare hwgen's integer reference with onnxruntime on given inputs")
    check.add_argument("model", help="an ONNX file (quantized, or float with --calib)")
    check.add_argument("--inputs", required=True,
                       help="float inputs in the model's layout: .npy, or .npz with 'x'")
    check.add_argument("--calib", help="calibration inputs (float models only)")
    check.add_argument("--bits", help="bits for quantizing a float model (default w8a8)")
    check.add_argument("--output-bits", type=int, default=8,
                       help="output bits for quantizing a float model (default 8)")
    check.set_defaults(run=cmd_check)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, HwgenWarning):
        print(f"hwgen: warning: {message}", file=sys.stderr, flush=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.run(args)
    except HwgenError as error:
        print(f"hwgen: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("hwgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
