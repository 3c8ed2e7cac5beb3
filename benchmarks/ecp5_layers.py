"""ECP5 resources per layer of MLPerf Tiny's ResNet-8 as the ULX3S 85F plans it: each
top-level block of the design (a layer's engine, a FIFO, a lane converter) through yosys's
``synth_ecp5`` on its own, beside hwgen.cost's figures.

    python benchmarks/ecp5_layers.py [--bits w8a8,w4a4] [--board ulx3s_85f] [--data DIR]

Why per block: ``hwgen synth`` of the whole design takes about 20 minutes of yosys, and on
these plans yosys 0.70's abc9 fails an assertion; block by block a failing block is mapped
again with abc's LUT mapping (``hwgen.synth.family_mapping(..., abc9=False)``, named in the
output). A plan takes 10–20 minutes of yosys on one core; results are kept in ``--data``
(default ``~/.cache/hwgen/ecp5-layers``) and measured again when the plan changes. Each layer
counts its engine and the FIFO and lane converter in front of it, as the model does; the
totals add the forks of the residual blocks. LUT sites are ``hwgen.cost.fabric_luts``.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import hwgen  # noqa: E402
from hwgen.board import get_board  # noqa: E402
from hwgen.cost import estimate, fabric_luts  # noqa: E402
from hwgen.synth import (_tool, abc9_failed, count_resources, family_mapping,  # noqa: E402
                         parse_yosys_stat)
from models import resnet8  # noqa: E402
from report import cached, table  # noqa: E402
from xilinx_layers import blocks_of  # noqa: E402

RESOURCES = ("lut", "ff", "dsp", "bram")


def measure(plan, folder):
    """``{"plan": …, "blocks": {block: {resource: count}}, "abc": [blocks mapped without
    abc9]}`` of ``plan``, cached in ``folder``."""
    path = folder / "blocks.json"
    record = cached(path, plan, folder.name)
    if record is not None:
        return record
    described = [layer_plan.describe() for layer_plan in plan.layers]
    hwgen.generate(plan, frames=1, target="ecp5").write(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    work = folder / "blocks"
    work.mkdir(exist_ok=True)
    verilog = (folder / manifest["verilog"]).read_text()
    (work / manifest["verilog"]).write_text(verilog)
    record = {"plan": described, "blocks": {}, "abc": []}
    for block in blocks_of(verilog, manifest["top"]):
        module = f"\\{manifest['top']}.{block}"
        for abc9 in (True, False):
            script = (f"read_verilog {manifest['verilog']}; hierarchy -top {module}; flatten; "
                      f"{family_mapping('ecp5', module, abc9)}; tee -q -o stat.txt stat")
            status = subprocess.run([_tool("yosys"), "-q", "-l", "yosys.log", "-p", script],
                                    cwd=work, capture_output=True).returncode
            if status == 0 or not (abc9 and abc9_failed(work / "yosys.log")):
                break
        if status != 0:
            raise hwgen.HwgenError(f"yosys failed on {block}; see {work / 'yosys.log'}")
        if not abc9:
            record["abc"].append(block)
        cells = parse_yosys_stat((work / "stat.txt").read_text())
        counts = count_resources(cells, "ecp5")
        record["blocks"][block] = {"lut": fabric_luts(cells, "ecp5"),
                                   **{kind: counts.get(kind, 0) for kind in RESOURCES[1:]}}
        print(f"  {block}: {record['blocks'][block]}", file=sys.stderr, flush=True)
    (work / "yosys.log").unlink(missing_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return record


def _owner(block, names):
    """The layer a block counts with: itself, or the layer a FIFO or converter feeds."""
    if block in names:
        return block
    if block.startswith(("fifo_", "convert_")) and "_to_" in block:
        return block.rpartition("_to_")[2]
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", default="w8a8,w4a4")
    parser.add_argument("--board", default="ulx3s_85f")
    parser.add_argument("--data", type=Path,
                        default=Path.home() / ".cache" / "hwgen" / "ecp5-layers")
    args = parser.parse_args()
    if get_board(args.board).family != "ecp5":
        parser.error(f"{args.board} is not an ECP5 board")
    graph, calibration = resnet8()
    for bits in args.bits.split(","):
        plan = hwgen.make_plan(hwgen.quantize(graph, calibration, bits), board=args.board)
        print(f"ResNet-8 {bits} on {args.board}: II {plan.initiation_interval} cycles",
              flush=True)
        record = measure(plan, args.data / f"{args.board}-{bits}")
        cost = estimate(plan, args.board)
        names = {layer.name for layer in cost.layers}
        measured = {name: dict.fromkeys(RESOURCES, 0) for name in names}
        for block, counts in record["blocks"].items():
            owner = _owner(block, names)
            for kind in RESOURCES:
                if owner is not None:
                    measured[owner][kind] += counts[kind]
        rows = [{"layer": layer.name, "kind": layer.multiplier,
                 **{f"{kind.upper()} model / yosys":
                    f"{getattr(layer, kind):.0f} / {measured[layer.name][kind]:.0f}"
                    for kind in RESOURCES}} for layer in cost.layers]
        totals = {kind: sum(counts[kind] for counts in record["blocks"].values())
                  for kind in RESOURCES}
        rows.append({"layer": "total (all blocks)", "kind": "",
                     **{f"{kind.upper()} model / yosys":
                        f"{cost.totals[kind]:.0f} / {totals[kind]:.0f}" for kind in RESOURCES}})
        print(table(rows))
        if record["abc"]:
            print(f"mapped with abc (abc9 failed): {', '.join(record['abc'])}")
        print()


if __name__ == "__main__":
    main()
