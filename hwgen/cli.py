"""``hwgen build`` and ``hwgen sim``: thin wrappers over the notebook API.

A user error (:class:`~hwgen.errors.HwgenError`) is printed as one line, ``hwgen: error: …``,
without a traceback; the exit status is 1 for errors, 2 for bad command lines and 3 when a
simulation finds mismatches.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__
from .api import _load_inputs, load, simulate
from .emit import generate
from .errors import HwgenError
from .plan import DEFAULT_MULTIPLIERS, make_plan
from .quantize import DEFAULT_BITS, load_calibration, quantize

EXIT_ERROR, EXIT_MISMATCH = 1, 3


def _progress(message):
    print(f"hwgen: {message}", file=sys.stderr, flush=True)


def _labels(path):
    path = Path(path)
    if path.suffix != ".npz":
        return None
    with np.load(path) as data:
        return data["y"] if "y" in data.files else None


def cmd_build(args):
    started = time.perf_counter()
    graph = load(args.model, name=args.name)
    _progress(f"loaded {args.model}: {len(graph.layers())} layers")
    calibration = load_calibration(args.calib)
    qgraph = quantize(graph, calibration, args.bits, output_bits=args.output_bits)
    plan = make_plan(qgraph, args.folding, multipliers=args.multipliers)
    print(plan)
    design = generate(plan, calibration, name=args.name, frames=args.frames, graph=graph,
                      labels=_labels(args.calib))
    out = design.write(args.output)
    print(f"wrote {out / design.manifest['verilog']}, manifest.json, vectors.npz, report.md "
          f"in {time.perf_counter() - started:.1f} s")
    return 0


def cmd_sim(args):
    inputs = _load_inputs(args.inputs) if args.inputs else None
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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="hwgen", description="Trained network in, verified FPGA accelerator out.")
    parser.add_argument("--version", action="version", version=f"hwgen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="generate Verilog, manifest, vectors and report")
    build.add_argument("model", help="an ONNX file")
    build.add_argument("--calib", required=True,
                       help="calibration inputs: .npy, or .npz with 'x' (and labels 'y')")
    build.add_argument("-o", "--output", required=True, help="output folder")
    build.add_argument("--bits", default=DEFAULT_BITS,
                       help="uniform 'wXaY' or a JSON file {layer: {\"w\": 4, \"a\": 6}} "
                            f"(default {DEFAULT_BITS})")
    build.add_argument("--output-bits", type=int, default=8,
                       help="bits of the last layer's output codes (default 8)")
    build.add_argument("--folding", help="per-layer PExSIMD: 'fc1=4x8,fc2=2x4' or a JSON file")
    build.add_argument("--multipliers", type=int, default=DEFAULT_MULTIPLIERS,
                       help="multipliers of the largest layer under the default folding "
                            f"(default {DEFAULT_MULTIPLIERS})")
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
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except HwgenError as error:
        print(f"hwgen: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("hwgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
