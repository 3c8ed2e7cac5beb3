"""Latency: the model against Verilator on the example CNNs and ResNet-8 as the board search
plans them.

    python benchmarks/latency.py [--only NAME]

Per row, the plan of ``make_plan(board=...)`` for the model at the bits given: its
initiation interval, the modelled latency (``Accelerator.latency``: cycles from a frame's
first input beat to its last output beat, the frame entering an idle accelerator) and the
one Verilator measures on the emitted Verilog (``hwgen.simulate``, stall-free timing phase,
then the codes compared under random stalls), and the model's error. The latency in µs is at
the board's target clock. ResNet-8's dataflow plan for ULX3S is a large design: its
Verilator build takes several CPU minutes.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import hwgen
from hwgen.board import get_board

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402
from report import error, table  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _example(folder, onnx):
    return lambda: (hwgen.load(EXAMPLES / folder / onnx),
                    np.load(EXAMPLES / folder / "calib.npz")["x"])


ROWS = [  # (label, model, bits, board, make_plan options)
    ("LeNet", _example("cnn", "lenet.onnx"), "w8a8", "ulx3s_85f", {}),
    ("ResNet (example)", _example("cnn", "resnet.onnx"), "w8a8", "ulx3s_85f", {}),
    ("depthwise-separable", _example("cnn", "dwsep.onnx"), "w4a4", "arty_a7_35t", {}),
    ("depthwise-separable", _example("cnn", "dwsep.onnx"), "w4a4", "arty_a7_35t",
     {"unroll": "auto"}),
    ("depthwise-separable", _example("cnn", "dwsep.onnx"), "w4a4", "arty_a7_35t",
     {"unroll": "auto", "goal": "latency"}),
    ("digits CNN", _example("digits_cnn", "digits_cnn.onnx"), "w8a8", "ulx3s_85f", {}),
    ("DS-CNN", models.ds_cnn, "w8a8", "ulx3s_85f", {}),
    ("ResNet-8", models.resnet8, "w8a8", "arty_a7_35t", {}),
    ("ResNet-8", models.resnet8, "w4a4", "ulx3s_85f", {}),
]


def bench(label, make, bits, board, options, folder):
    graph, x = make()
    plan = hwgen.make_plan(hwgen.quantize(graph, x, bits), board=board, **options)
    design = hwgen.generate(plan, x, frames=2)
    started = time.perf_counter()
    result = hwgen.simulate(design.write(Path(folder) / f"{label}-{bits}-{board}".replace(
        " ", "_")), stall=0.2, seed=1)
    predicted, measured = design.manifest["latency"], result.latency
    clock = get_board(board).target_mhz
    return {"model": label, "bits": bits, "board": board,
            "options": ",".join(f"{k}={v}" for k, v in options.items()) or "-",
            "II": plan.initiation_interval, "latency model": predicted,
            "latency measured": "-" if measured is None else measured,
            "error": "-" if measured is None else error(predicted, measured),
            "µs at target": f"{predicted / clock:,.1f}",
            "mismatches": result.mismatch_count,
            "sim s": f"{time.perf_counter() - started:.0f}"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="only the rows whose model's label contains this")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, make, bits, board, options in ROWS:
            if args.only and args.only not in label:
                continue
            rows.append(bench(label, make, bits, board, options, folder))
            print(f"{label} {bits} {board}: done", file=sys.stderr, flush=True)
    print("latency, first input beat to last output beat (cycles), model against Verilator")
    print(table(rows))


if __name__ == "__main__":
    main()
