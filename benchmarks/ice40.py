"""TinyML on the smallest board: the digits MLP, LeNet and MLPerf Tiny's DS-CNN on the
iCEBreaker (iCE40 UP5K: 5,280 LUT4, 8 SB_MAC16, 30 EBR, 4 SB_SPRAM256KA).

    python benchmarks/ice40.py [--no-sim] [--no-synth] [--bitstream] [--only NAME]

Each model is planned as ``hwgen build --board icebreaker`` plans it (``make_plan(board=...)``:
an engine per layer where that fits, else the layers on shared layer-sequential engines), and
where the table says so with ``--engine sequential`` (every chain on one shared engine). Per
row: the plan (engines, multipliers, initiation interval in cycles), the modelled resources
(``hwgen.cost``); the Verilator simulation of 3 frames (8 where dataflow engines run, which
take a few frames to settle) under random stalls against the integer reference (codes compared,
mismatches, measured cycles per frame); and yosys + nextpnr's placed-and-routed
LUT/FF/DSP/EBR/SPRAM, fmax and inferences/s at fmax (``hwgen.synth.synthesize``, CPU minutes
per row). ``--bitstream`` also builds the bitstream behind the board's UART (``hwgen synth
--bitstream``).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import hwgen

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402
from report import table  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BOARD = "icebreaker"


def _example(folder, onnx):
    return lambda: (hwgen.load(EXAMPLES / folder / onnx),
                    np.load(EXAMPLES / folder / "calib.npz")["x"])


MODELS = [  # (label, make (graph, calibration inputs), bits, --engine)
    ("digits MLP", _example("digits_mlp", "digits_mlp.onnx"), "w8a8", None),
    ("digits MLP", _example("digits_mlp", "digits_mlp.onnx"), "w8a8", "sequential"),
    ("LeNet", _example("cnn", "lenet.onnx"), "w8a8", None),
    ("LeNet", _example("cnn", "lenet.onnx"), "w8a8", "sequential"),
    ("DS-CNN", models.ds_cnn, "w4a4", None),
    ("DS-CNN", models.ds_cnn, "w8a8", None),
]


def _engines(plan):
    return ", ".join(sorted({f"{lp.engine}×{sum(1 for p in plan.layers if p.engine == lp.engine)}"
                             for lp in plan.layers}))


def bench(label, make, bits, engine, folder, *, simulate, synth, bitstream, board=BOARD):
    """One row: plan ``make()``'s model at ``bits`` for ``board``, then simulate, place and
    build it as asked."""
    graph, x = make()
    started = time.process_time()
    qgraph = hwgen.quantize(graph, x, bits)
    row = {"model": label, "bits": bits, "--engine": engine or "-"}
    try:
        plan = hwgen.make_plan(qgraph, board=board, engine=engine)
    except hwgen.HwgenError as error:
        row["plan"] = f"does not fit: {str(error).split(': ', 1)[-1][:90]}"
        return row
    cost = plan.cost().totals
    row.update({"engines": _engines(plan), "mult": plan.multipliers,
                "II": plan.initiation_interval,
                "model LUT/FF/DSP/EBR/SPRAM": "/".join(str(cost[r]) for r in
                                                       ("lut", "ff", "dsp", "bram", "spram"))})
    # Shared engines run at their interval from the first frame; dataflow engines of equal
    # rate take a few frames to settle their offsets (the simulation measures the last ones).
    shared = all(layer.engine == "sequential" for layer in plan.layers)
    design = hwgen.generate(plan, x, frames=3 if shared else 8)
    out = design.write(Path(folder) / f"{label.replace(' ', '_')}-{bits}-{engine}-{board}")
    row["build s"] = f"{time.process_time() - started:.1f}"
    if simulate:
        result = hwgen.simulate(out, stall=0.2, seed=1)
        row.update({"codes": result.outputs.size, "mismatches": result.mismatch_count,
                    "measured II": "-" if result.initiation_interval is None
                    else f"{result.initiation_interval:.0f}",
                    "sim s": f"{result.build_seconds + result.sim_seconds:.0f}"})
    if synth:
        from hwgen.synth import synthesize
        result = synthesize(out, board)
        totals = result.totals
        row.update({"LUT/FF/DSP/EBR/SPRAM": "/".join(str(totals.get(r, 0)) for r in
                                                     ("lut", "ff", "dsp", "bram", "spram")),
                    "fits": "yes" if result.fits else "no",
                    "fmax MHz": "-" if result.fmax_mhz is None else f"{result.fmax_mhz:.1f}",
                    "inf/s": "-" if result.frames_per_second is None
                    else f"{result.frames_per_second:,.0f}",
                    "synth s": f"{sum(result.seconds.values()):.0f}"})
    if bitstream:
        from hwgen.board_top import build_bitstream
        built = build_bitstream(out, board)
        row.update({"bitstream": f"{built.size:,} B", "clock MHz": built.clock_mhz,
                    "inf/s on board": f"{built.clock_mhz * 1e6 / plan.initiation_interval:,.0f}"})
    return row


def arguments(description, only):
    """The options the board benchmarks share: ``--no-sim``, ``--no-synth``, ``--only``."""
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--no-sim", action="store_true", help="skip the Verilator simulation")
    parser.add_argument("--no-synth", action="store_true", help="skip yosys and nextpnr")
    parser.add_argument("--only", help=only)
    return parser


def main():
    parser = arguments(__doc__, "only the models whose label contains this")
    parser.add_argument("--bitstream", action="store_true", help="also build the bitstream")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, make, bits, engine in MODELS:
            if args.only and args.only.lower() not in label.lower():
                continue
            rows.append(bench(label, make, bits, engine, folder, simulate=not args.no_sim,
                              synth=not args.no_synth, bitstream=args.bitstream))
            print(f"{label} {bits}: done", file=sys.stderr, flush=True)
    print(f"iCEBreaker (iCE40 UP5K), plans of make_plan(board={BOARD!r})")
    print(table(rows))


if __name__ == "__main__":
    main()
