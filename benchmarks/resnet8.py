"""MLPerf Tiny's ResNet-8 (random weights, CIFAR-10 shape) on the small boards: the OrangeCrab
25F (ECP5 LFE5U-25F: 24k LUT4, 28 MULT18X18D, 56 DP16KD) and the Arty A7-35T (XC7A35T).

    python benchmarks/resnet8.py [--no-sim] [--no-synth] [--only BOARD]

Per row as ``hwgen build --board B [--engine sequential]`` plans it: the default plan (an
engine per layer where that fits, else the residual blocks on one shared layer-sequential
engine, adds included) or every layer on the shared engine. Then, as in
``benchmarks/ice40.py``: the modelled resources, the Verilator simulation of 3 frames (8 for
dataflow plans) under random stalls against the integer reference (codes, mismatches, measured
cycles per frame), and yosys (+ nextpnr on ECP5: fmax and frames/s at fmax; Xilinx gets yosys's
counts only). A shared ResNet-8 frame takes 0.8 M cycles: its simulation takes a few CPU
minutes.
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402
from ice40 import arguments, bench  # noqa: E402
from report import table  # noqa: E402

from hwgen.board import get_board  # noqa: E402

ROWS = [  # (board, bits, --engine)
    ("orangecrab_25f", "w4a4", None),
    ("orangecrab_25f", "w8a8", None),
    ("arty_a7_35t", "w4a4", None),
    ("arty_a7_35t", "w4a4", "sequential"),
    ("arty_a7_35t", "w8a8", None),
]


def main():
    args = arguments(__doc__, "only the rows of this board").parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for board, bits, engine in ROWS:
            if args.only and args.only != board:
                continue
            row = bench("ResNet-8", models.resnet8, bits, engine, folder, board=board,
                        simulate=not args.no_sim, synth=not args.no_synth, bitstream=False)
            if "II" in row:
                clock = get_board(board).target_mhz
                row["frames/s at target"] = f"{clock * 1e6 / row['II']:,.0f} ({clock:g} MHz)"
            rows.append({"board": board} | row)
            print(f"{board} {bits} {engine or ''}: done", file=sys.stderr, flush=True)
    print("ResNet-8 (MLPerf Tiny shape, random weights), plans of make_plan(board=...)")
    print(table(rows))


if __name__ == "__main__":
    main()
