"""hwgen benchmarks: one command, one table.

    python benchmarks/run.py [--frames N]

For the 64-48-24-10 digits MLP (examples/digits_mlp) at a few bit widths and foldings: the time
from ONNX to written Verilog, the Verilator build time (uncached), the simulated cycles per frame
against the ideal (MACs ÷ multipliers), the latency, and the simulation speed in cycles/s.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import hwgen

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits_mlp"
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64, help="simulated frames per row")
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
