"""Fit the LUT and flip-flop coefficients of hwgen's resource model to yosys, and print them.

    python benchmarks/calibrate_cost.py [--data DIR] [--families ecp5,ice40,xc7]

Builds the example models at several bit widths and foldings, synthesizes each with yosys for
one board per family (``hwgen synth --no-pnr``; about 20–40 s a run, cached in ``--data``,
default ``~/.cache/hwgen/cost-calibration``), then fits, per family, non-negative coefficients
of :data:`hwgen.cost.FEATURES` to the LUT and FF counts: per layer where yosys keeps the
hierarchy (ECP5, iCE40), per design where it flattens (Xilinx). It prints the coefficients in
the form of ``hwgen.cost.FAMILY_MODELS``, the block-RAM threshold that matches yosys best, and
the model's error per design with the fitted values.
"""

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import hwgen  # noqa: E402
from hwgen import cost  # noqa: E402
from hwgen.board import get_board  # noqa: E402
from hwgen.emit import load_design  # noqa: E402
from hwgen.plan import Folding, LayerPlan, Plan  # noqa: E402
from hwgen.synth import synthesize  # noqa: E402

@dataclasses.dataclass(frozen=True)
class Design:
    """One design a fit measures (``benchmarks/ice40_cells.py``, ``xilinx_layers.py``).

    model : ``"resnet8"`` or ``"ds_cnn"`` (:mod:`models`), or an ONNX file under
        ``examples/`` (calibrated with the ``calib.npz`` beside it).
    bits : the bit widths, as :func:`hwgen.quantize` takes them.
    folding : every layer pinned (:func:`hwgen.make_plan`'s ``folding``), so the plan stays
        what was measured whatever the cost model now plans; ``None``: the default rule with
        ``multipliers`` multipliers.
    label : where the plan came from.
    engine : :func:`hwgen.make_plan`'s ``engine``.
    in_lanes : input lanes per layer where the board search read wider than a pin does.
    multipliers : the default rule's multiplier budget when ``folding`` is ``None``.
    """

    model: str
    bits: str
    folding: str
    label: str
    engine: str = None
    in_lanes: dict = dataclasses.field(default_factory=dict)
    multipliers: int = None


def design_plan(design, *, rules=None, board=None):
    """``(plan, calibration inputs)`` of a :class:`Design`: planned by ``rules``'s board
    (how many products a packed DSP holds) where given, each layer with its ``in_lanes``,
    the plan for ``board`` (a name; its family sets the generated target)."""
    import models
    if design.model in ("resnet8", "ds_cnn"):
        graph, x = getattr(models, design.model)()
    else:
        path = ROOT / "examples" / design.model
        graph, x = hwgen.load(path), np.load(path.parent / "calib.npz")["x"]
    qgraph = hwgen.quantize(graph, x, design.bits)
    plan = hwgen.make_plan(qgraph, design.folding, engine=design.engine,
                           multipliers=design.multipliers, board=rules)
    layers = tuple(dataclasses.replace(p, in_lanes=design.in_lanes.get(p.name, p.in_lanes))
                   for p in plan.layers)
    return Plan(qgraph, layers, board and get_board(board)), x


CNN = ("examples/cnn/calib.npz",)
CONFIGS = {
    "lenet_w8a8_m32": ("examples/cnn/lenet.onnx", *CNN, "w8a8", 32),
    "lenet_w4a4_m8": ("examples/cnn/lenet.onnx", *CNN, "w4a4", 8),
    "mlp_w8a8_m32": ("examples/digits_mlp/digits_mlp.onnx", "examples/digits_mlp/calib.npz",
                     "w8a8", 32),
    "mlp_w2a4_m128": ("examples/digits_mlp/digits_mlp.onnx", "examples/digits_mlp/calib.npz",
                      "w2a4", 128),
    "resnet_w8a8_m32": ("examples/cnn/resnet.onnx", *CNN, "w8a8", 32),
    "dwsep_w6a6_m32": ("examples/cnn/dwsep.onnx", *CNN, "w6a6", 32),
    "lenet_w5a3_m64": ("examples/cnn/lenet.onnx", *CNN, "w5a3", 64),
    "mlp_w6a5_m16": ("examples/digits_mlp/digits_mlp.onnx", "examples/digits_mlp/calib.npz",
                     "w6a5", 16),
}
BOARDS = {"ecp5": "ulx3s_85f", "ice40": "icebreaker", "xc7": "arty_a7_35t"}

# LUT-equivalents of the carry and LUT-RAM cells in yosys's per-block counts (see
# hwgen.cost.fabric_luts, which converts whole cell lists the same way).
CARRY_LUTS = {"ecp5": 2, "ice40": 0, "xc7": 0}
LUTRAM_LUTS = {"ecp5": 2, "ice40": 0, "xc7": 2}


def logic_luts(record, family):
    """LUT sites of one block's count: LUTs plus the LUT-equivalents of carries and LUT RAM."""
    return (record.get("lut", 0) + CARRY_LUTS[family] * record.get("carry", 0)
            + LUTRAM_LUTS[family] * record.get("lutram", 0))


def build(name, data):
    folder = data / name
    if (folder / "manifest.json").exists():
        return folder
    model, calib, bits, multipliers = CONFIGS[name]
    graph = hwgen.load(ROOT / model)
    x = np.load(ROOT / calib)["x"]
    qgraph = hwgen.quantize(graph, x, bits)
    plan = hwgen.make_plan(qgraph, multipliers=multipliers)
    hwgen.generate(plan, x, name=qgraph.name, frames=4).write(folder)
    return folder


def synth_record(folder, board):
    target = folder / f"{board}.json"
    if not target.exists():
        print(f"  synthesizing {folder.name} for {board}", file=sys.stderr, flush=True)
        synthesize(folder, board, place_and_route=False)
        shutil.copy(folder / "synth" / "synth.json", target)
    return json.loads(target.read_text())


def plan_of(folder):
    """The design's plan, rebuilt from its manifest and quantized graph."""
    manifest, qgraph, _ = load_design(folder)
    layers = tuple(LayerPlan(qgraph[entry["name"]], entry["engine"],
                             Folding(entry["pe"], entry["simd"]), entry["in_lanes"],
                             entry.get("multiplier_kind") or "dsp",
                             entry.get("products_per_dsp", 1))
                   for entry in manifest["layers"])
    return Plan(qgraph, layers)


def owner(block, names):
    """The layer a synthesized block belongs to: the layer itself, or the consumer of a FIFO
    or lane converter (``fifo_<src>_to_<dst>``, ``convert_<src>_to_<dst>``)."""
    if block in names:
        return block
    for prefix in ("fifo_", "convert_"):
        if block.startswith(prefix):
            consumer = block.rpartition("_to_")[2]
            if consumer in names:
                return consumer
    return None


def rows(plan, record, family):
    """``[(features, lut, ff, dsp, bram)]``: per layer when the hierarchy survived, else one
    row for the whole design (harness excluded)."""
    names = [layer_plan.name for layer_plan in plan.layers]
    per_layer = {name: dict.fromkeys(cost.RESOURCES, 0) for name in names}
    kept = False
    for block, counts in record.get("layers", {}).items():
        name = owner(block, names)
        if name is None:
            continue
        for resource in per_layer[name]:
            value = logic_luts(counts, family) if resource == "lut" else counts.get(resource, 0)
            per_layer[name][resource] += value
        kept = kept or any(counts[r] for r in ("lut", "ff"))
    modelled = {p.name: cost.layer_features(p, family, plan) for p in plan.layers}
    if kept:
        return [(modelled[name][2], *(per_layer[name][r] for r in cost.RESOURCES))
                for name in names]
    features = {key: sum(modelled[name][2][key] for name in names) for key in cost.FEATURES}
    lut = cost.fabric_luts(record["yosys"], family)
    # The harness (a few dozen cells, see hwgen.synth) stays in the flattened totals.
    return [(features, lut, record["totals"]["ff"], record["totals"]["dsp"],
             record["totals"]["bram"])]


def fit_bram(plans, records, family):
    """The ``(bram_min_depth, bram_min_bits)`` whose block-RAM counts per layer (per design
    where yosys flattens) come closest to yosys's, by total absolute error."""
    best = None
    for depth in (2, 4, 8, 10, 12, 16, 24, 32, 48, 64, 96, 128):
        for bits in (0, 64, 128, 256, 512, 1024, 2048, 3072, 4096, 8192):
            model = dataclasses.replace(cost.FAMILY_MODELS[family], bram_min_depth=depth,
                                        bram_min_bits=bits)
            error = 0
            for name, record in records.items():
                plan = plans[name]
                modelled = [cost.layer_features(p, family, plan, model)[1] for p in plan.layers]
                measured = [row[4] for row in rows(plan, record, family)]
                if len(measured) == 1:
                    modelled = [sum(modelled)]
                error += sum(abs(m - y) for m, y in zip(modelled, measured))
            if best is None or error < best[0]:
                best = (error, depth, bits)
    return {"bram_min_depth": best[1], "bram_min_bits": best[2]}


def fit(samples):
    matrix = np.array([[features[name] for name in cost.FEATURES] for features, *_ in samples],
                      dtype=float)
    result = {}
    for column, resource in ((1, "lut"), (2, "ff")):
        target = np.array([sample[column] for sample in samples], dtype=float)
        scale = matrix.max(axis=0)
        scale[scale == 0] = 1
        solution, _ = nnls(matrix / scale, target)
        result[resource] = {name: round(float(value / s), 4)
                            for name, value, s in zip(cost.FEATURES, solution, scale)}
    return result


def refit(model, layer_rows):
    """``model`` with its LUT and FF coefficients fitted to ``layer_rows`` (``(features,
    lut, ff, …)`` per layer, as :func:`rows` gives them), the terms it holds fixed
    (:func:`hwgen.cost.fixed_terms`) taken off first."""
    samples = []
    for features, lut, ff, *_ in layer_rows:
        fixed_lut, fixed_ff = cost.fixed_terms(features, model)
        samples.append((features, lut - fixed_lut, ff - fixed_ff))
    coefficients = fit(samples)
    return dataclasses.replace(model, lut=coefficients["lut"], ff=coefficients["ff"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path.home() / ".cache/hwgen/cost-calibration")
    parser.add_argument("--families", default=",".join(BOARDS))
    parser.add_argument("--cached-only", action="store_true",
                        help="fit only the runs already in --data (no synthesis)")
    parser.add_argument("--extra", type=Path, action="append", default=[],
                        help="also fit this design folder (hwgen build -o; synthesized here "
                             "for the family's board unless already)")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    folders = {name: build(name, args.data) for name in CONFIGS}
    folders.update({folder.name: folder for folder in args.extra})
    plans = {name: plan_of(folder) for name, folder in folders.items()}
    for family in args.families.split(","):
        board = BOARDS[family]
        records = {name: synth_record(folder, board) for name, folder in folders.items()
                   if not args.cached_only or (folder / f"{board}.json").exists()}
        samples = [row for name in records for row in rows(plans[name], records[name], family)]
        fitted = refit(cost.FAMILY_MODELS[family], samples)
        coefficients = {"lut": fitted.lut, "ff": fitted.ff}
        coefficients.update(fit_bram(plans, records, family))
        print(f"{family}: lut={coefficients['lut']}")
        print(f"{family}: ff={coefficients['ff']}")
        print(f"{family}: bram_min_depth={coefficients['bram_min_depth']}, "
              f"bram_min_bits={coefficients['bram_min_bits']}")
        model = dataclasses.replace(cost.FAMILY_MODELS[family], **coefficients)
        print(f"{'design':<18} {'LUT model/yosys':>18} {'FF model/yosys':>18} "
              f"{'DSP model/yosys':>16} {'BRAM model/yosys':>17}")
        for name in records:
            measured = [sum(row[i] for row in rows(plans[name], records[name], family))
                        for i in range(1, 5)]
            features = [cost.layer_features(p, family, plans[name], model)
                        for p in plans[name].layers]
            dsp = sum(f[0] for f in features)
            bram = sum(f[1] for f in features)
            fixed = [cost.fixed_terms(f[2], model) for f in features]
            lut = sum(cost._linear(model.lut, f[2], extra[0]) for f, extra in zip(features, fixed))
            ff = sum(cost._linear(model.ff, f[2], extra[1]) for f, extra in zip(features, fixed))
            cells = [f"{m}/{y} ({(m - y) / max(y, 1):+.0%})"
                     for m, y in zip((lut, ff, dsp, bram), measured)]
            print(f"{name:<18} {cells[0]:>18} {cells[1]:>18} {cells[2]:>16} {cells[3]:>17}")
        print()


if __name__ == "__main__":
    main()
