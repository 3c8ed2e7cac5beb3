"""The jet-tagging MLP (16-64-32-32-5, ReLU, w6a6) fully unrolled, beside hls4ml's and LogicNets'
published figures for the same architecture.

    python benchmarks/jet.py [--synth] [--board ultra96] [--clock MHZ]

Random weights (the hardware cost depends on the weights' values and zeros, not on training),
dense and with 70 % of the weights pruned to zero, built with ``make_plan(unroll="all",
board=...)`` (``hwgen build --unroll all``). Per row: the modelled LUT/FF/DSP (``hwgen.cost``),
the initiation interval, the latency in cycles and in ns at the board's target clock, the time
from the model to written Verilog and the Verilog's lines; with ``--synth``, yosys's counts
(``synth_xilinx`` for Ultra96, no open-source place and route there, so no fmax) and the
synthesis time.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import hwgen
from report import table

SIZES = (16, 64, 32, 32, 5)

# Published figures for the same 16-64-32-32-5 tagger (hls4ml: Duarte et al., JINST 13 P07027,
# 2018, 6-bit fixed point, fully parallel, Virtex UltraScale+ at 200 MHz; LogicNets: Umuroglu
# et al., FPL 2020, JSC-M).
PUBLISHED = [("hls4ml (ap_fixed<6>, II 1)", "63k", "—", "38", "9", "45", "1"),
             ("LogicNets JSC-M", "14.6k", "—", "0", "5", "—", "1")]


def jet_tagger(prune=0.7, seed=0):
    """The float graph and 512 calibration inputs."""
    rng = np.random.default_rng(seed)
    graph = hwgen.Graph("jet")
    x = graph.input((SIZES[0],))
    for index, (fan_in, fan_out) in enumerate(zip(SIZES, SIZES[1:])):
        weight = rng.standard_normal((fan_out, fan_in)) / np.sqrt(fan_in)
        weight[rng.random(weight.shape) < prune] = 0
        x = graph.dense(x, weight, rng.standard_normal(fan_out) * 0.1, name=f"fc{index + 1}")
        if index < len(SIZES) - 2:
            x = graph.relu(x, name=f"relu{index + 1}")
    return graph, rng.standard_normal((512, SIZES[0]))


def bench(prune, board, clock, synth, folder):
    graph, calib = jet_tagger(prune)
    started = time.perf_counter()
    qgraph = hwgen.quantize(graph, calib, "w6a6")
    plan = hwgen.make_plan(qgraph, unroll="all", board=board, clock=clock)
    design = hwgen.generate(plan, calib[:32])
    out = design.write(Path(folder) / f"jet-{int(prune * 100)}")
    seconds = time.perf_counter() - started
    cost = plan.cost().totals
    mhz = clock or plan.board.target_mhz
    latency = design.manifest["latency"]
    lines = (out / design.manifest["verilog"]).read_text().count("\n")
    row = {"weights": f"{prune:.0%} pruned" if prune else "dense",
           "nonzero": int(sum(np.count_nonzero(layer.weight) for layer in qgraph.layers)),
           "model LUT": cost["lut"], "model FF": cost["ff"], "model DSP": cost["dsp"],
           "II": plan.initiation_interval, "latency": latency,
           "ns": f"{latency * 1e3 / mhz:.0f}", "build s": f"{seconds:.1f}",
           "Verilog lines": lines}
    if synth:
        from hwgen.synth import synthesize
        result = synthesize(out, board, clock_mhz=clock, place_and_route=False)
        row.update({"yosys LUT": result.totals["lut"], "yosys FF": result.totals["ff"],
                    "yosys DSP": result.totals["dsp"],
                    "synth s": f"{sum(result.seconds.values()):.0f}"})
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="ultra96")
    parser.add_argument("--clock", type=float, help="MHz (default: the board's target)")
    parser.add_argument("--synth", action="store_true", help="run yosys too (minutes per row)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hwgen-jet-") as folder:
        rows = [bench(prune, args.board, args.clock, args.synth, folder)
                for prune in (0.7, 0.0)]
    print(f"Jet tagger 16-64-32-32-5 w6a6, every layer unrolled, on {args.board}")
    print(table(rows))
    print()
    print("Published, same architecture:")
    print(table([dict(zip(("design", "LUT", "FF", "DSP", "latency", "ns", "II"), row))
                 for row in PUBLISHED]))


if __name__ == "__main__":
    main()
