"""Xilinx 7-series LUTs and flip-flops per layer: yosys ``synth_xilinx`` on each layer of a
design on its own, against hwgen's cost model, and the fit of the xc7 LUT/FF coefficients.

    python benchmarks/xilinx_layers.py [--data DIR] [--only NAME] [--fit] [--flat]

``hwgen synth`` flattens a design before ``synth_xilinx``, and after ABC its LUTs no longer
name the layer they came from, so it gives whole-design totals only. Here every top-level
block of each design of :data:`DESIGNS` (MLPerf Tiny's ResNet-8 as the Arty A7-35T planned it,
every layer pinned; three shared engines; the calibration designs of
``benchmarks/calibrate_cost.py``) is synthesized as a top of its own (``synth_xilinx -family
xc7``, one yosys process per design), and counts with its layer: the layer's engine, or the
FIFO or lane converter in front of it (as in the model; the forks of residual blocks, a few
LUTs each, count with none). A ResNet-8 plan takes 1–6 minutes of yosys, a calibration design
10–60 s; the runs are cached in ``--data`` (default ``~/.cache/hwgen/xilinx-layers``; a design
is measured again when its plan changes).

It prints per design yosys's LUT sites (``hwgen.cost.fabric_luts``: LUTs, LUT RAM and shift
registers in the LUT6s they fill), flip-flops, DSPs and block RAMs summed over its layers
beside hwgen.cost's, and per engine kind the LUT and FF error summed over the designs'
layers. ``--fit`` refits the xc7 LUT and FF coefficients (non-negative least squares per
layer, the LUT multipliers' and shared engines' own terms held fixed) and prints them beside
hwgen.cost's and the designs modelled with them. ``--flat`` also runs ``hwgen synth``
(flattened, the harness included) on each design and prints its totals. docs/resources.md
("Xilinx LUTs and flip-flops") gives the figures.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import hwgen  # noqa: E402
from hwgen import cost  # noqa: E402
from hwgen.board import FAMILIES  # noqa: E402
from hwgen.synth import _run, _tool, count_resources, parse_yosys_stat, synthesize  # noqa: E402

import calibrate_cost  # noqa: E402
from report import error, table  # noqa: E402

BOARD = "arty_a7_35t"
FAMILY = "xc7"


Design = calibrate_cost.Design
ARTY_DEFAULT = "Arty default before the refit"
RESNET8_W4A4 = ("conv0=systolic:4x3,s1_conv1=systolic:8x8,s1_conv2=systolic:16x4,s1_add=add:1,"
                "s2_conv1=systolic:2x16,s2_conv2=systolic:4x16,s2_skip=systolic:2x2,"
                "s2_add=add:1,s3_conv1=systolic:8x4,s3_conv2=systolic:8x8,"
                "s3_skip=systolic:2x2:dsp-packed,s3_add=add:1,pool=gap:1,fc=mac:1x1")
RESNET8_W8A8 = ("conv0=systolic:1x3,s1_conv1=systolic:2x6:dsp-packed,"
                "s1_conv2=systolic:2x6:dsp-packed,s1_add=add:1,s2_conv1=systolic:1x6:lut,"
                "s2_conv2=systolic:2x6:dsp-packed,s2_skip=systolic:1x1:lut,s2_add=add:1,"
                "s3_conv1=systolic:1x6:lut,s3_conv2=systolic:2x6:dsp-packed,"
                "s3_skip=systolic:1x1:lut,s3_add=add:1,pool=gap:1,fc=mac:1x1")
DESIGNS = {
    "resnet8_w4a4_arty": Design("resnet8", "w4a4", RESNET8_W4A4, ARTY_DEFAULT,
                                in_lanes={"s1_conv2": 2}),
    "resnet8_w8a8_arty": Design("resnet8", "w8a8", RESNET8_W8A8, ARTY_DEFAULT),
    "resnet8_w4a4_seq": Design("resnet8", "w4a4", "fc=sequential:16", "--engine sequential",
                               engine="sequential"),
    "lenet_w8a8_seq": Design("cnn/lenet.onnx", "w8a8", "fc2=sequential:4",
                             "a shared engine of 4 DSP multipliers", engine="sequential"),
    "mlp_w8a8_seq": Design("digits_mlp/digits_mlp.onnx", "w8a8", "gemm_4=sequential:12:lut",
                           "a shared engine of 12 LUT multipliers", engine="sequential"),
} | {name: Design(path.removeprefix("examples/"), bits, None, "calibrate_cost.py",
                  multipliers=multipliers)
     for name, (path, _, bits, multipliers) in calibrate_cost.CONFIGS.items()}


def plan_of(design):
    """``(plan, calibration inputs)`` of ``design``: pinned plans by the PYNQ-Z2's rules (the
    Arty's family, a larger device: how many products a packed DSP holds), as they need not
    fit the Arty by the model."""
    return calibrate_cost.design_plan(
        design, rules=None if design.folding is None else "pynq_z2")


def blocks_of(verilog, top):
    """The top-level blocks of a design's Verilog: the modules Amaranth names ``top.NAME``
    (a layer, a FIFO, a lane converter)."""
    return re.findall(rf"^module \\{re.escape(top)}\.([^.\s]+) \(", verilog, flags=re.M)


def measure(name, plan, x, data, flat):
    """The design's ``layers.json``: its plan, and per top-level block yosys's cells (and,
    with ``flat``, ``hwgen synth``'s flattened totals); measured once, cached in
    ``data/name``."""
    folder = data / name
    path = folder / "layers.json"
    described = [layer_plan.describe() for layer_plan in plan.layers]
    record = json.loads(path.read_text()) if path.exists() else None
    if record is not None and record["plan"] != described:
        print(f"  {name}: the cached plan {record['plan']} is not {described}: measuring again",
              file=sys.stderr, flush=True)
        record = None
    if record is None:
        print(f"  measuring {name} (yosys, a block at a time)", file=sys.stderr, flush=True)
        hwgen.generate(plan, x, frames=1).write(folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        work = folder / "blocks"
        work.mkdir(exist_ok=True)
        verilog = (folder / manifest["verilog"]).read_text()
        (work / manifest["verilog"]).write_text(verilog)
        blocks = blocks_of(verilog, manifest["top"])
        # Each block is synthesized as a top of its own, flattened: synth_xilinx's ABC9 pass
        # fails an assertion on a hierarchy, and after flattening the whole design its LUTs no
        # longer name their layer.
        steps = [f"read_verilog {manifest['verilog']}", "design -save read"]
        for block in blocks:
            module = f"\\{manifest['top']}.{block}"
            steps += ["design -load read", f"hierarchy -top {module}", "flatten",
                      f"{FAMILIES[FAMILY][0]} -top {module}",
                      f"tee -q -o stat_{block}.txt stat"]
        status, seconds = _run([_tool("yosys"), "-q", "-l", "yosys.log", "-p", "; ".join(steps)],
                               work, f"yosys ({name})", None, "yosys.out")
        if status != 0:
            raise hwgen.HwgenError(f"yosys failed on {name} (status {status}); see "
                                   f"{work / 'yosys.log'}")
        cells = {block: parse_yosys_stat((work / f"stat_{block}.txt").read_text())
                 for block in blocks}
        (work / "yosys.log").unlink()   # hundreds of MB on ResNet-8
        record = {"plan": described, "blocks": cells, "seconds": seconds}
        path.write_text(json.dumps(record, indent=1))
    if flat and "flat" not in record:
        print(f"  measuring {name} (hwgen synth, flattened)", file=sys.stderr, flush=True)
        synth = synthesize(folder, BOARD, place_and_route=False)
        record["flat"] = {"yosys": synth.yosys, "totals": synth.totals}
        path.write_text(json.dumps(record, indent=1))
    return record


def layer_rows(plan, record):
    """``{layer: (features, lut, ff, dsp, bram)}``, yosys's counts per layer, a layer's FIFOs
    and lane converters with it (the forks of residual blocks and the top's own frame counters
    are left out)."""
    names = [layer_plan.name for layer_plan in plan.layers]
    cells = {name: {} for name in names}
    for block, types in record["blocks"].items():
        name = calibrate_cost.owner(block, names)
        if name is not None:
            for cell, count in types.items():
                cells[name][cell] = cells[name].get(cell, 0) + count
    rows = {}
    for layer_plan in plan.layers:
        counts = count_resources(cells[layer_plan.name], FAMILY)
        rows[layer_plan.name] = (cost.layer_features(layer_plan, FAMILY, plan)[2],
                                 cost.fabric_luts(cells[layer_plan.name], FAMILY),
                                 counts.get("ff", 0), counts.get("dsp", 0),
                                 counts.get("bram", 0))
    return rows


def fit(plans, records):
    """The xc7 :class:`hwgen.cost.FamilyModel` refitted to ``records``, per layer."""
    return calibrate_cost.refit(cost.FAMILY_MODELS[FAMILY], [
        row for name, record in records.items()
        for row in layer_rows(plans[name], record).values()])


def modelled(plan, model=None):
    """``{layer: LayerCost}`` by hwgen.cost's xc7 model or a given one."""
    return {p.name: cost.layer_cost(p, BOARD, plan, model) for p in plan.layers}


def design_rows(plans, records, fitted):
    for name, record in records.items():
        plan = plans[name]
        measured = layer_rows(plan, record).values()
        lut, ff, dsp, bram = (sum(row[i] for row in measured) for i in range(1, 5))
        row = {"design": name, "yosys LUT/FF/DSP/BRAM": f"{lut}/{ff}/{dsp}/{bram:g}"}
        if "flat" in record:
            totals = record["flat"]["totals"]
            flat_lut = cost.fabric_luts(record["flat"]["yosys"], FAMILY)
            row["flattened"] = f"{flat_lut}/{totals['ff']}/{totals['dsp']}/{totals['bram']:g}"
        models_ = {"model": None} if fitted is None else {"model": None, "fit": fitted}
        for label, model in models_.items():
            layers = modelled(plan, model).values()
            m_lut, m_ff, m_dsp, m_bram = (sum(layer[r] for layer in layers)
                                          for r in ("lut", "ff", "dsp", "bram"))
            row[f"{label} LUT/FF/DSP/BRAM"] = f"{m_lut}/{m_ff}/{m_dsp}/{m_bram}"
            row[f"{label} LUT, FF error"] = f"{error(m_lut, lut)}, {error(m_ff, ff)}"
        yield row


def kind_of(layer_plan):
    kind = layer_plan.engine
    if layer_plan.engine in ("mac", "systolic", "depthwise", "sequential"):
        kind += f" {layer_plan.multiplier}"
    return kind


def kind_rows(plans, records, fitted):
    """LUT and FF summed over every design's layers of one engine and multiplier kind."""
    sums = {}
    for name, record in records.items():
        plan = plans[name]
        measured = layer_rows(plan, record)
        before = modelled(plan)
        after = modelled(plan, fitted) if fitted is not None else before
        for layer_plan in plan.layers:
            entry = sums.setdefault(kind_of(layer_plan), np.zeros(7))
            _, lut, ff, *_ = measured[layer_plan.name]
            entry += (1, lut, ff, before[layer_plan.name].lut, before[layer_plan.name].ff,
                      after[layer_plan.name].lut, after[layer_plan.name].ff)
    for kind, (layers, lut, ff, lut0, ff0, lut1, ff1) in sorted(sums.items()):
        row = {"engine": kind, "layers": int(layers), "yosys LUT": int(lut), "yosys FF": int(ff),
               "model LUT": f"{lut0:.0f} ({error(lut0, lut)})",
               "model FF": f"{ff0:.0f} ({error(ff0, ff)})"}
        if fitted is not None:
            row.update({"fit LUT": f"{lut1:.0f} ({error(lut1, lut)})",
                        "fit FF": f"{ff1:.0f} ({error(ff1, ff)})"})
        yield row


def coefficient_rows(fitted):
    model = cost.FAMILY_MODELS[FAMILY]
    for feature in cost.FEATURES:
        yield {"feature": feature, "LUT fit": fitted.lut[feature],
               "LUT hwgen.cost": model.lut[feature], "FF fit": fitted.ff[feature],
               "FF hwgen.cost": model.ff[feature]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=Path.home() / ".cache/hwgen/xilinx-layers")
    parser.add_argument("--only", action="append", choices=DESIGNS, metavar="NAME",
                        help=f"measure only this design (repeatable): {', '.join(DESIGNS)}")
    parser.add_argument("--fit", action="store_true",
                        help="also fit the xc7 LUT/FF coefficients")
    parser.add_argument("--flat", action="store_true",
                        help="also run hwgen synth (flattened) on each design")
    args = parser.parse_args()
    names = args.only or list(DESIGNS)
    plans, records = {}, {}
    for name in names:
        plans[name], x = plan_of(DESIGNS[name])
        records[name] = measure(name, plans[name], x, args.data, args.flat)
    fitted = fit(plans, records) if args.fit else None
    print(table(list(design_rows(plans, records, fitted))))
    print()
    print(table(list(kind_rows(plans, records, fitted))))
    if fitted is not None:
        print()
        print(table(list(coefficient_rows(fitted))))


if __name__ == "__main__":
    try:
        main()
    except hwgen.HwgenError as failure:
        sys.exit(f"error: {failure}")
