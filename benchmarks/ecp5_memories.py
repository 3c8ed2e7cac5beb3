"""Where yosys puts a memory on ECP5, in the fabric or in block RAM, against hwgen's rule.

    python benchmarks/ecp5_memories.py [--fit] [--shapes 272x8,96x16,...] [--roms ...]

Synthesizes with ``synth_ecp5`` one simple dual-port RAM (a write port, a registered read
port, no initial contents: what hwgen's line buffers, FIFOs and sums are) per ``depth ×
width`` shape, 179 shapes from 16 to 512 deep and 1 to 256 wide by default, and one ROM
(random contents, a registered read port: a weight ROM) per shape of 19, and prints per shape
where yosys put it (``DP16KD`` blocks, or LUT RAM / logic and its LUT sites) beside
:func:`hwgen.cost.memory_blocks` and :meth:`hwgen.cost.MemoryMap.sites`. ``--fit`` prints the
range of RAM multiplexer costs that places every RAM as yosys does and the least-squares LUT
sites per LUT-RAM cell and per multiplexer bit (``hwgen.cost._ECP5_MEMORIES``). About 3 s of
yosys per shape.
"""

import argparse
import dataclasses
import math
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from hwgen import cost  # noqa: E402
from multipliers import synthesize  # noqa: E402

DEPTHS = (24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 256, 320, 384, 512)
WIDTHS = (1, 2, 4, 5, 8, 9, 12, 16, 24, 32, 48, 64)
EXTRA = ((16, 8), (272, 8), (283, 9), (256, 16), (512, 2), (64, 64), (32, 128), (16, 256),
         (95, 5), (128, 8), (256, 4))
ROMS = ((16, 936), (16, 512), (16, 256), (16, 128), (32, 256), (32, 128), (32, 64), (64, 128),
        (64, 64), (64, 32), (128, 64), (128, 32), (128, 16), (256, 16), (256, 8), (512, 8),
        (512, 4), (1024, 4), (2048, 2))


class Ram(wiring.Component):
    """A ``depth × width`` memory with a registered read port (with an enable): a RAM with a
    write port, or a ROM of random words."""

    def __init__(self, depth, width, rom=False):
        self._depth, self._width, self._rom = depth, width, rom
        ports = {"read_addr": In(range(depth)), "read_en": In(1), "read_data": Out(width)}
        if not rom:
            ports.update(write_addr=In(range(depth)), write_en=In(1), write_data=In(width))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        words = random.Random(self._depth * 1000 + self._width)
        init = [words.getrandbits(self._width) for _ in range(self._depth)] if self._rom else []
        m.submodules.ram = ram = memory.Memory(shape=self._width, depth=self._depth, init=init)
        read = ram.read_port()
        m.d.comb += [read.addr.eq(self.read_addr), read.en.eq(self.read_en),
                     self.read_data.eq(read.data)]
        if not self._rom:
            write = ram.write_port()
            m.d.comb += [write.addr.eq(self.write_addr), write.en.eq(self.write_en),
                         write.data.eq(self.write_data)]
        return m


def measure(shapes, rom=False):
    """``[(depth, width, yosys's cell counts)]``."""
    results = []
    for depth, width in shapes:
        with tempfile.TemporaryDirectory() as folder:
            counts = synthesize(Ram(depth, width, rom), "ecp5", folder)
        results.append((depth, width, counts))
        print(f"  {'ROM' if rom else 'RAM'} {depth}×{width}: {counts}", file=sys.stderr,
              flush=True)
    return results


def lut_sites(counts):
    return cost.fabric_luts(counts, "ecp5")


def fit(results, model):
    """The multiplexer costs that place every RAM as yosys does, and the LUT-site fit."""
    memories = model.memory_map
    separating = []
    for step in range(0, 2001):
        trial = dataclasses.replace(
            model, memory_map=dataclasses.replace(memories, mux_cost=step / 1000))
        if all((cost.memory_blocks(d, w, trial, "fifo") > 0) == ("DP16KD" in counts)
               for d, w, counts in results):
            separating.append(step / 1000)
    rows, sites = [], []
    for depth, width, counts in results:
        if "DP16KD" not in counts:
            cells_deep = math.ceil(depth / memories.lutram_depth)
            rows.append((cells_deep * math.ceil(width / memories.lutram_width),
                         (cells_deep - 1) * width))
            sites.append(lut_sites(counts))
    solution, *_ = np.linalg.lstsq(np.array(rows, float), np.array(sites, float), rcond=None)
    predicted = np.array(rows, float) @ solution
    error = np.abs(predicted - sites) / np.array(sites, float)
    return separating, solution, error


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", help="depth×width list, e.g. 272x8,96x16 (default: the grid)")
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--roms", help="ROM depth×width list (default: 19 shapes)")
    args = parser.parse_args()

    def shapes_of(text, default):
        if not text:
            return list(default)
        return [tuple(int(v) for v in shape.split("x")) for shape in text.split(",")]

    shapes = shapes_of(args.shapes, [(d, w) for d in DEPTHS for w in WIDTHS] + list(EXTRA))
    model = cost.FAMILY_MODELS["ecp5"]
    results = measure(shapes)
    roms = measure(shapes_of(args.roms, ROMS), rom=True)
    print(f"{'memory':>6} {'depth':>5} {'width':>5} {'yosys':>14} {'model':>14}  "
          f"LUT sites yosys/model")
    agree = 0
    for kind, rows in (("RAM", results), ("ROM", roms)):
        for depth, width, counts in rows:
            blocks = cost.memory_blocks(depth, width, model, "fifo" if kind == "RAM" else "weights")
            yosys = (f"{counts['DP16KD']} DP16KD" if "DP16KD" in counts
                     else "LUT RAM" if kind == "RAM" else "logic")
            mine = f"{blocks} DP16KD" if blocks else "LUT RAM" if kind == "RAM" else "logic"
            agree += (blocks > 0) == ("DP16KD" in counts)
            modelled = model.memory_map.sites(depth, width, kind == "RAM")
            sites = "" if blocks else f"{lut_sites(counts)}/{modelled:.0f}"
            print(f"{kind:>6} {depth:>5} {width:>5} {yosys:>14} {mine:>14}  {sites}")
    print(f"placed as yosys does on {agree} of {len(results) + len(roms)} memories")
    if args.fit:
        separating, solution, error = fit(results, model)
        span = (f"{min(separating):.3f} … {max(separating):.3f}" if separating
                else "none separates every shape")
        print(f"mux_cost separating every shape: {span}")
        print(f"unit_sites={solution[0]:.3f}, mux_sites={solution[1]:.3f} "
              f"(mean error {error.mean():.0%}, max {error.max():.0%}, {len(error)} shapes)")


if __name__ == "__main__":
    main()
