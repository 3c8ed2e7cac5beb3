"""iCE40 logic cells: nextpnr's packing of ten iCEBreaker designs against hwgen's cell model,
and the fit of that model (``ff_cells`` and the iCE40 LUT/FF coefficients of hwgen.cost).

    python benchmarks/ice40_cells.py [--data DIR] [--only NAME] [--fit]

Each design of :data:`DESIGNS` (the example models and MLPerf Tiny's DS-CNN, each planned with
every layer pinned as the board search planned it before the cell model, and a few plans with
other engines) is generated for the iCEBreaker (target ``ice40``), synthesized with yosys
(``synth_ice40 -dsp``, per-layer LUTs and FFs as ``hwgen synth --no-pnr`` counts them) and
packed by ``nextpnr-ice40 --pack-only`` (its ``ICESTORM_LC`` cells): 10–35 s a design, about
4 minutes for the ten, cached in ``--data`` (default ``~/.cache/hwgen/ice40-cells``; delete a
design's folder to measure it again after changing the hardware), so a rerun takes seconds.

It prints per design yosys's LUTs and flip-flops, nextpnr's cells, and the cells hwgen.cost
models with its coefficients. ``--fit`` also fits, on the designs measured, ``ff_cells`` (least
squares of nextpnr's cells on yosys's LUTs and flip-flops, the whole design) and the iCE40 LUT
and FF coefficients (non-negative least squares per layer, a layer's FIFOs and lane converters
with it, the LUT multipliers' and shared engines' own terms held fixed), and prints them beside
hwgen.cost's and the cells modelled with them. docs/resources.md ("iCE40 logic cells") gives
the figures.
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import hwgen  # noqa: E402
from hwgen import cost  # noqa: E402
from hwgen.board import get_board  # noqa: E402
from hwgen.synth import _nextpnr_command, _run, _tool, parse_nextpnr_log, synthesize  # noqa: E402

import calibrate_cost  # noqa: E402
from report import cached, error, table  # noqa: E402

BOARD = "icebreaker"


Design = calibrate_cost.Design
LENET, MLP, DWSEP = "cnn/lenet.onnx", "digits_mlp/digits_mlp.onnx", "cnn/dwsep.onnx"
OLD_DEFAULT = "default before the cell model"
DESIGNS = {
    "lenet_w8a8_board": Design(
        LENET, "w8a8", "conv1=systolic:1x3:lut,pool=pool:1,conv2=systolic:1x3:lut,"
        "pool_1=pool:1,fc2=sequential:1:lut", OLD_DEFAULT, in_lanes={"conv2": 4}),
    "mlp_w8a8_board": Design(
        MLP, "w8a8", "gemm_0=mac:1x4:lut,gemm_2=mac:1x2:lut,gemm_4=mac:1x1:lut", OLD_DEFAULT),
    "lenet_w4a4_board": Design(
        LENET, "w4a4", "conv1=systolic:1x9,pool=pool:1,conv2=systolic:1x18,pool_1=pool:1,"
        "fc1=mac:1x2,fc2=mac:1x1", OLD_DEFAULT),
    "lenet_w8a8_lut60": Design(LENET, "w8a8", "fc2=sequential:4", "within 60 % of the LUTs, "
                               "now the default", engine="sequential"),
    "mlp_w4a4_board": Design(MLP, "w4a4", "gemm_0=mac:1x32,gemm_2=mac:1x12,gemm_4=mac:1x3",
                             OLD_DEFAULT),
    "dwsep_w4a4_board": Design(
        DWSEP, "w4a4", "stem=systolic:1x3,depthwise=depthwise:2,pointwise=systolic:1x4,"
        "gap=gap:1,fc=mac:1x1", OLD_DEFAULT, in_lanes={"pointwise": 8}),
    "lenet_w6a6_board": Design(
        LENET, "w6a6", "conv1=systolic:1x3:lut,pool=pool:1,conv2=systolic:1x6:lut,"
        "pool_1=pool:1,fc1=mac:1x1:lut,fc2=mac:1x1", OLD_DEFAULT),
    "mlp_w8a8_dsp": Design(MLP, "w8a8", "gemm_4=sequential:4", "DSP multipliers only"),
    "dscnn_w4a4_board": Design("ds_cnn", "w4a4", "fc=sequential:8:lut", "default",
                               engine="sequential"),
    "mlp_w8a8_seq": Design(MLP, "w8a8", "gemm_4=sequential:12:lut", "--engine sequential "
                           "before the cell model"),
}


def plan_of(design):
    """``(plan, calibration inputs)`` of ``design``, sized for the iCEBreaker (the board
    makes the design's target ice40, as the board search's plans did)."""
    return calibrate_cost.design_plan(design, board=BOARD)


def measure(name, plan, x, data):
    """The design's ``cells.json``: its plan, yosys's cells and per-layer counts, nextpnr's
    logic cells; measured once and cached in ``data/name``."""
    folder = data / name
    path = folder / "cells.json"
    record = cached(path, plan, name)
    if record is not None:
        return record
    described = [layer_plan.describe() for layer_plan in plan.layers]
    print(f"  measuring {name} (yosys, nextpnr --pack-only)", file=sys.stderr, flush=True)
    hwgen.generate(plan, x, frames=2).write(folder)
    synth = synthesize(folder, BOARD, place_and_route=False)
    board = get_board(BOARD)
    tool, *options = _nextpnr_command(board, board.target_mhz, seed=1)
    status, seconds = _run([_tool(tool), *options, "--json", "netlist.json", "--pack-only",
                            "--log", "pack.log", "-q"], folder / "synth", tool, None, "pack.out")
    if status != 0:
        raise hwgen.HwgenError(f"{tool} --pack-only failed on {name} (status {status}); see "
                               f"{folder / 'synth' / 'pack.log'}")
    utilisation = parse_nextpnr_log((folder / "synth" / "pack.log").read_text())["utilisation"]
    record = {"plan": described, "layers": synth.layers, "yosys": synth.yosys,
              "lc": utilisation["ICESTORM_LC"][0],
              "seconds": sum(synth.seconds.values()) + seconds}
    path.write_text(json.dumps(record, indent=1))
    return record


def yosys_totals(record):
    """``(LUTs, flip-flops)`` of the whole design, the synthesis harness included."""
    return tuple(sum(block[resource] for block in record["layers"].values())
                 for resource in ("lut", "ff"))


def fit_ff_cells(records):
    """``ff_cells``: nextpnr's cells ≈ yosys's LUTs + ff_cells × flip-flops, by least squares
    over whole designs."""
    lut, ff = np.array([yosys_totals(record) for record in records]).T
    cells = np.array([record["lc"] for record in records])
    return round(float(ff @ (cells - lut) / (ff @ ff)), 3)


def fit(plans, records):
    """The iCE40 :class:`hwgen.cost.FamilyModel` refitted to ``records``."""
    layer_rows = [row for name, record in records.items()
                  for row in calibrate_cost.rows(plans[name], record, "ice40")]
    return dataclasses.replace(calibrate_cost.refit(cost.FAMILY_MODELS["ice40"], layer_rows),
                               ff_cells=fit_ff_cells(list(records.values())))


def modelled_cells(plan, model=None):
    """The cells hwgen.cost models for ``plan`` (by the iCE40 model or a given one)."""
    return sum(cost.layer_cost(layer_plan, BOARD, plan, model).lut for layer_plan in plan.layers)


def design_rows(plans, records, fitted):
    for name, record in records.items():
        plan = plans[name]
        lut, ff = yosys_totals(record)
        row = {"design": name, "plan": ", ".join(record["plan"]), "yosys LUT": lut,
               "yosys FF": ff, "nextpnr cells": record["lc"]}
        cell_models = {"model": None} if fitted is None else {"model": None, "fit": fitted}
        for label, model in cell_models.items():
            cells = modelled_cells(plan, model)
            row.update({f"{label} cells": cells, f"{label} error": error(cells, record["lc"])})
        yield row


def coefficient_rows(fitted):
    model = cost.FAMILY_MODELS["ice40"]
    for feature in cost.FEATURES:
        yield {"feature": feature, "LUT fit": fitted.lut[feature],
               "LUT hwgen.cost": model.lut[feature], "FF fit": fitted.ff[feature],
               "FF hwgen.cost": model.ff[feature]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path.home() / ".cache/hwgen/ice40-cells")
    parser.add_argument("--only", action="append", choices=DESIGNS, metavar="NAME",
                        help=f"measure only this design (repeatable): {', '.join(DESIGNS)}")
    parser.add_argument("--fit", action="store_true",
                        help="also fit ff_cells and the iCE40 LUT/FF coefficients")
    args = parser.parse_args()
    names = args.only or list(DESIGNS)
    plans, records = {}, {}
    for name in names:
        plans[name], x = plan_of(DESIGNS[name])
        records[name] = measure(name, plans[name], x, args.data)
    fitted = fit(plans, records) if args.fit else None
    print(table(list(design_rows(plans, records, fitted))))
    if fitted is not None:
        print()
        print(table(list(coefficient_rows(fitted))))
        print(f"ff_cells: fit {fitted.ff_cells}, "
              f"hwgen.cost {cost.FAMILY_MODELS['ice40'].ff_cells}")


if __name__ == "__main__":
    try:
        main()
    except hwgen.HwgenError as failure:
        sys.exit(f"error: {failure}")
