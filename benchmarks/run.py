"""hwgen benchmarks: one command, a few tables.

    python benchmarks/run.py [--frames N]

1. The 64-48-24-10 digits MLP (examples/digits_mlp) at a few bit widths and foldings: the time
   from ONNX to written Verilog, the Verilator build time (uncached), the simulated cycles per
   frame against the ideal (MACs ÷ multipliers), the latency, and the simulation speed.
2. The example CNNs (examples/cnn: LeNet-style, residual, depthwise-separable): predicted and
   measured initiation interval, end-to-end MAC utilization (MACs ÷ (multipliers × measured
   cycles)), and the time of a Verilator build plus 20 simulated frames.
3. MAC utilization per engine of the LeNet-style model at the measured interval.
4. Per board profile (``boards/``), the LeNet-style model at w8a8 and w4a4 with the folding
   sized for the board (``make_plan(board=...)``): the initiation interval, frames/s at the
   board's target clock and the modelled share of its DSPs and LUTs (``hwgen.cost``); a model
   that does not fit says which resource runs out.
5. Automatic bit allocation (``hwgen.choose_bits``, at most 1 point below float, confirmed on
   held-out data with a 95 % bound): on the digits CNN (ranges from its calib.npz, confirmed on
   its 540 held-out images) and the digits MLP (too few samples to confirm 1 point: it warns
   and keeps w8a8), the
   float, w8a8 and chosen accuracy from the integer reference, the chosen bits, mean weight bits
   and the bit-operations saved against w8a8, and the search time. ``--fast`` prints only the
   tables 4 and 5, which need no simulation.
6. With ``--synth`` (slow: minutes per row): per model × board, LUT/FF/DSP/BRAM, fmax after
   nextpnr, frames/s at fmax (fmax / initiation interval) and the synthesis time
   (``hwgen.synth.synthesize``; Xilinx boards give yosys counts only). Designs for ECP5 boards
   use the ``ecp5`` target (DSP and block-RAM primitives), as ``hwgen build --board`` does.
   ``--synth-only`` skips the simulation tables.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import hwgen

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE = EXAMPLES / "digits_mlp"
CNN_CONFIGS = [
    # (model, bits, multipliers of the largest layer): sized so conv engines balance
    ("lenet", "w8a8", 18),
    ("resnet", "w8a8", 16),
    ("dwsep", "w6a6", 16),
]
CONFIGS = [
    # (label, bits, multipliers of the largest layer)
    ("w8a8, 32 mult.", "w8a8", 32),
    ("w4a8, 96 mult.", "w4a8", 96),
    ("w2a4, 384 mult.", "w2a4", 384),
]


def bench(bits, multipliers, frames, cache):
    calib = np.load(EXAMPLE / "calib.npz")
    started = time.perf_counter()
    graph = hwgen.load(EXAMPLE / "digits_mlp.onnx")
    qgraph = hwgen.quantize(graph, calib["x"], bits)
    plan = hwgen.make_plan(qgraph, multipliers=multipliers)
    design = hwgen.generate(plan, calib["x"], frames=frames, graph=graph, labels=calib["y"])
    out = design.write(Path(cache) / f"design-{bits}-{multipliers}")
    generate_seconds = time.perf_counter() - started

    from hwgen.sim import run_simulation
    manifest = design.manifest
    result = run_simulation(out / manifest["verilog"], manifest, design.inputs, design.expected,
                            build_root=Path(cache) / "sim", seed=1)
    assert result.passed, result.summary()
    ideal = plan.macs / plan.multipliers
    return {
        "generate_s": generate_seconds,
        "build_s": result.build_seconds,
        "multipliers": plan.multipliers,
        "ideal": ideal,
        "predicted": plan.initiation_interval,
        "measured": result.initiation_interval,
        "latency": result.latency,
        "utilization": ideal / result.initiation_interval,
        "cycles_per_s": result.cycles_per_second,
        "frames": result.frames,
    }


def bench_cnn(model, bits, multipliers, frames, cache):
    from hwgen.sim import run_simulation

    calib = np.load(EXAMPLES / "cnn" / "calib.npz")
    graph = hwgen.load(EXAMPLES / "cnn" / f"{model}.onnx")
    plan = hwgen.make_plan(hwgen.quantize(graph, calib["x"], bits), multipliers=multipliers)
    design = hwgen.generate(plan, calib["x"], frames=frames)
    out = design.write(Path(cache) / f"cnn-{model}")
    started = time.perf_counter()
    result = run_simulation(out / design.manifest["verilog"], design.manifest, design.inputs,
                            design.expected, build_root=Path(cache) / "sim", seed=1)
    total = time.perf_counter() - started
    assert result.passed, result.summary()
    return plan, result, total


SYNTH_MODELS = [
    # (label, ONNX file, calibration, multipliers of the largest layer)
    ("digits MLP", EXAMPLE / "digits_mlp.onnx", EXAMPLE / "calib.npz", 32),
    ("LeNet", EXAMPLES / "cnn" / "lenet.onnx", EXAMPLES / "cnn" / "calib.npz", 18),
]
SYNTH_BOARDS = ["ulx3s_85f", "icebreaker", "arty_a7_35t"]


def bench_synth(cache):
    from hwgen.board import get_board
    from hwgen.synth import synthesize
    print("synthesis per model x board (yosys + nextpnr from YoWASP; BRAM in the board's blocks)")
    header = (f"{'model':<11} {'board':<12} {'LUT':>6} {'FF':>6} {'DSP':>4} {'BRAM':>5} "
              f"{'fits':>4} {'fmax MHz':>9} {'frames/s':>10} {'synth s':>8}")
    print(header)
    print("-" * len(header))
    for label, model, calib, multipliers in SYNTH_MODELS:
        x = np.load(calib)["x"]
        plan = hwgen.make_plan(hwgen.quantize(hwgen.load(model), x), multipliers=multipliers)
        for board in SYNTH_BOARDS:
            # What `hwgen build --board` makes: ECP5 primitives for ECP5 boards.
            target = "ecp5" if get_board(board).family == "ecp5" else "generic"
            out = hwgen.generate(plan, x, frames=2, target=target).write(
                Path(cache) / f"synth-{model.stem}-{target}")
            result = synthesize(out, board)
            totals = result.totals
            fmax = "-" if result.fmax_mhz is None else f"{result.fmax_mhz:.1f}"
            rate = "-" if result.frames_per_second is None else f"{result.frames_per_second:,.0f}"
            print(f"{label:<11} {board:<12} {totals['lut']:>6} {totals['ff']:>6} "
                  f"{totals['dsp']:>4} {totals['bram']:>5g} {'yes' if result.fits else 'no':>4} "
                  f"{fmax:>9} {rate:>10} {sum(result.seconds.values()):>8.1f}", flush=True)


def bench_boards():
    from hwgen.board import load_boards
    from hwgen.errors import HwgenError
    calib = EXAMPLES / "cnn" / "calib.npz"
    x = np.load(calib)["x"]
    graph = hwgen.load(EXAMPLES / "cnn" / "lenet.onnx")
    print("LeNet-style model, folding sized per board (modelled resources, hwgen.cost)")
    header = (f"{'board':<15} {'bits':>5} {'clock MHz':>9} {'mult':>5} {'II':>6} "
              f"{'frames/s':>10} {'DSP used':>13} {'LUT used':>17} {'plan s':>7}")
    print(header)
    print("-" * len(header))
    for bits in ("w8a8", "w4a4"):
        qgraph = hwgen.quantize(graph, x, bits)
        for board in load_boards().values():
            started = time.perf_counter()
            try:
                plan = hwgen.make_plan(qgraph, board=board)
            except HwgenError as error:
                print(f"{board.name:<15} {bits:>5} {board.target_mhz:>9g}  does not fit: "
                      f"{str(error).partition('folding: ')[2].partition(';')[0]}")
                continue
            cost = plan.cost()
            totals, capacity = cost.totals, cost.capacity
            print(f"{board.name:<15} {bits:>5} {board.target_mhz:>9g} {plan.multipliers:>5} "
                  f"{plan.initiation_interval:>6} {cost.frames_per_second:>10,.0f} "
                  f"{totals['dsp']:>4}/{capacity['dsp']:<4}{cost.utilization['dsp']:>4.0%} "
                  f"{totals['lut']:>6}/{capacity['lut']:<6}{cost.utilization['lut']:>4.0%} "
                  f"{time.perf_counter() - started:>7.2f}", flush=True)


def bench_precision():
    rows = [("digits CNN", EXAMPLES / "digits_cnn" / "digits_cnn.onnx",
             EXAMPLES / "digits_cnn" / "calib.npz", EXAMPLES / "digits_cnn" / "test.npz"),
            ("digits MLP", EXAMPLE / "digits_mlp.onnx", EXAMPLE / "calib.npz",
             EXAMPLE / "calib.npz")]
    print("automatic bits, at most 1 point below float (accuracy: integer reference)")
    header = (f"{'model':<11} {'images':>6} {'float':>7} {'w8a8':>7} {'chosen':>7} "
              f"{'mean w (by weights/layers)':>27} {'bit-ops saved':>13} {'time s':>7}  bits")
    print(header)
    print("-" * (len(header) + 30))
    for label, model, calib, scored in rows:
        with np.load(calib) as ranges, np.load(scored) as data:
            choice = hwgen.choose_bits(hwgen.load(model), data["x"], data["y"],
                                       calibration=ranges["x"], max_accuracy_drop=1)
        bits = ", ".join(f"{name} w{b['w']}a{b['a']}" for name, b in choice.bits.items())
        means = f"{choice.mean_weight_bits:.2f} / {choice.mean_weight_bits_per_layer:.2f}"
        print(f"{label:<11} {choice.samples:>6} {choice.float_accuracy:>6.2f}% "
              f"{choice.base_accuracy:>6.2f}% {choice.accuracy:>6.2f}% {means:>27} "
              f"{choice.bit_ops_saved:>12.1f}% {choice.seconds:>7.1f}  {bits}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64, help="simulated MLP frames per row")
    parser.add_argument("--synth", action="store_true",
                        help="add the synthesis table (slow: minutes per row)")
    parser.add_argument("--synth-only", action="store_true", help="only the synthesis table")
    parser.add_argument("--fast", action="store_true",
                        help="only the bit-allocation and per-board tables (no simulation)")
    args = parser.parse_args()
    if args.fast:
        bench_precision()
        print()
        bench_boards()
        return
    if args.synth_only:
        with tempfile.TemporaryDirectory(prefix="hwgen-bench-") as cache:
            bench_synth(cache)
        return
    header = (f"{'config':<17} {'gen s':>6} {'build s':>8} {'mult':>5} {'ideal':>6} "
              f"{'pred':>5} {'meas':>5} {'util':>6} {'lat':>5} {'cycles/s':>9}")
    print("64-48-24-10 digits MLP; cycles are per frame; ideal = MACs / multipliers")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="hwgen-bench-") as cache:
        for label, bits, multipliers in CONFIGS:
            row = bench(bits, multipliers, args.frames, cache)
            print(f"{label:<17} {row['generate_s']:>6.2f} {row['build_s']:>8.1f} "
                  f"{row['multipliers']:>5} {row['ideal']:>6.1f} {row['predicted']:>5} "
                  f"{row['measured']:>5.1f} {row['utilization']:>6.1%} {row['latency']:>5} "
                  f"{row['cycles_per_s']:>9,.0f}", flush=True)

        print()
        print("example CNNs, 20 frames each; util = MACs / (multipliers x measured II)")
        header = (f"{'model':<8} {'bits':>5} {'mult':>5} {'MACs':>7} {'pred II':>8} "
                  f"{'meas II':>8} {'util':>6} {'build+20 frames s':>18} {'cycles/s':>9}")
        print(header)
        print("-" * len(header))
        lenet = None
        for model, bits, multipliers in CNN_CONFIGS:
            plan, result, total = bench_cnn(model, bits, multipliers, 20, cache)
            lenet = lenet or (plan, result)
            utilization = plan.macs / (plan.multipliers * result.initiation_interval)
            print(f"{model:<8} {bits:>5} {plan.multipliers:>5} {plan.macs:>7} "
                  f"{plan.initiation_interval:>8} {result.initiation_interval:>8.1f} "
                  f"{utilization:>6.1%} {total:>18.1f} {result.cycles_per_second:>9,.0f}",
                  flush=True)

        plan, result = lenet
        print()
        print("LeNet-style model, per engine at the measured II")
        header = f"{'layer':<10} {'engine':<10} {'folding':>8} {'MACs':>6} {'cycles':>7} {'util':>6}"
        print(header)
        print("-" * len(header))
        for layer_plan in plan.layers:
            macs = layer_plan.layer.macs
            util = (f"{macs / (layer_plan.multipliers * result.initiation_interval):.1%}"
                    if layer_plan.multipliers else "-")
            print(f"{layer_plan.name:<10} {layer_plan.engine:<10} "
                  f"{layer_plan.describe().partition(':')[2]:>8} {macs:>6} "
                  f"{layer_plan.cycles:>7} {util:>6}")

        print()
        bench_precision()
        print()
        bench_boards()

        if args.synth:
            print()
            bench_synth(cache)


if __name__ == "__main__":
    main()
