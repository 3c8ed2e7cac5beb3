"""Frames/s against bits: what fewer bits buy on a board, with every multiplier kind and with
one DSP per product.

    python benchmarks/bits_speed.py [--boards ulx3s_85f,arty_a7_35t,pynq_z2] [--models ...]

For each model (MLPerf Tiny's ResNet-8 with random weights, and the example CNNs) × board ×
uniform bits, the folding and multiplier kinds sized for the board (``make_plan(board=...)``,
the modelled resources of ``hwgen.cost``): the initiation interval, frames/s at the board's
target clock, the speed-up over w8a8, the modelled DSP and LUT use, the kinds chosen (and the
layers whose weights the search put in block RAM), and the interval of the same search
restricted to one DSP per product (``multiplier_kinds="dsp"``, what hwgen built before the
multiplier kinds). No simulation or synthesis: a few seconds a row.
"""

import argparse
import collections
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import hwgen  # noqa: E402
from hwgen.errors import HwgenError  # noqa: E402
from models import resnet8  # noqa: E402

EXAMPLES = ROOT / "examples"
BITS = ("w8a8", "w6a6", "w4a4", "w3a3", "w2a2")


def _models(names):
    for name in names:
        if name == "resnet8":
            graph, calibration = resnet8()
        elif name == "digits_cnn":
            graph = hwgen.load(EXAMPLES / "digits_cnn" / "digits_cnn.onnx")
            calibration = np.load(EXAMPLES / "digits_cnn" / "calib.npz")["x"]
        else:
            graph = hwgen.load(EXAMPLES / "cnn" / f"{name}.onnx")
            calibration = np.load(EXAMPLES / "cnn" / "calib.npz")["x"]
        yield name, graph, calibration


def _kinds(plan):
    """The multiplier kinds the plan's layers use (a shared engine counts once), how many
    keep their weights in block RAM, and the layers a shared engine computes."""
    counts = collections.Counter(layer.multiplier_label for layer in plan.layers
                                 if layer.multiplier_label)
    kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items()))
    in_bram = sum(layer.weights == "bram" for layer in plan.layers)
    shared = [f"{layer.layer.layers[0].name}…{layer.name} on {layer.pe} "
              f"{layer.multiplier_label}" for layer in plan.layers if layer.engine == "sequential"]
    return (kinds + (f"; {in_bram} with weights in BRAM" if in_bram else "")
            + "".join(f"; shared engine {chain}" for chain in shared))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", default="ulx3s_85f,arty_a7_35t,pynq_z2")
    parser.add_argument("--models", default="resnet8,lenet,resnet,dwsep,digits_cnn")
    parser.add_argument("--bits", default=",".join(BITS))
    parser.add_argument("--max-utilization", type=float, default=None,
                        help="the board search's limit (default: make_plan's)")
    args = parser.parse_args()
    limit = {} if args.max_utilization is None else {"max_utilization": args.max_utilization}
    header = (f"{'model':<10} {'board':<12} {'bits':<5} {'II':>7} {'frames/s':>10} "
              f"{'× w8a8':>6} {'DSP':>9} {'LUT':>13} {'II dsp-only':>11} {'× dsp-only':>10}  "
              f"kinds")
    print("folding and multiplier kinds sized per board (modelled resources, hwgen.cost)")
    print(header)
    print("-" * (len(header) + 20))
    for name, graph, calibration in _models(args.models.split(",")):
        for board in args.boards.split(","):
            base = None
            for bits in args.bits.split(","):
                qgraph = hwgen.quantize(graph, calibration, bits)
                started = time.perf_counter()
                try:
                    plan = hwgen.make_plan(qgraph, board=board, **limit)
                except HwgenError as error:
                    print(f"{name:<10} {board:<12} {bits:<5} does not fit: {error}")
                    continue
                try:
                    dsp_only = hwgen.make_plan(qgraph, board=board, multiplier_kinds="dsp",
                                               **limit).initiation_interval
                except HwgenError:
                    dsp_only = None
                cost = plan.cost()
                totals, capacity = cost.totals, cost.capacity
                rate = cost.frames_per_second
                base = base or rate
                old = "-" if dsp_only is None else f"{dsp_only:>11}"
                gain = "-" if dsp_only is None else f"{dsp_only / plan.initiation_interval:.2f}"
                print(f"{name:<10} {board:<12} {bits:<5} {plan.initiation_interval:>7} "
                      f"{rate:>10,.0f} {rate / base:>6.2f} "
                      f"{totals['dsp']:>4}/{capacity['dsp']:<4} "
                      f"{totals['lut']:>6}/{capacity['lut']:<6} {old:>11} {gain:>10}  "
                      f"{_kinds(plan)} ({time.perf_counter() - started:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
