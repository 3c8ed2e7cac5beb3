"""hwgen: trained network in, verified mixed-precision FPGA accelerator out.

The flow, one module per stage: :mod:`hwgen.frontends` (ONNX → :class:`Graph`),
:mod:`hwgen.quantize` (→ :class:`QGraph`), :mod:`hwgen.reference` (golden models),
:mod:`hwgen.precision` (automatic per-layer bits; :mod:`hwgen.precision_board` scores them by
the board's frames/s), :mod:`hwgen.plan` (→ :class:`Plan`, sized by hand, by a default rule or
for a board with :mod:`hwgen.cost`; multiplier kinds in :mod:`hwgen.packing`), :mod:`hwgen.hw`
(Amaranth engines), :mod:`hwgen.emit` (→ Verilog, manifest, vectors, report) and
:mod:`hwgen.sim` (cocotb against the reference); :mod:`hwgen.explore` sweeps designs (results in
:mod:`hwgen.explore_report`, energy in :mod:`hwgen.energy`, notebook tables and progress bars
in :mod:`hwgen.notebook`).
"""

__version__ = "0.1.0"

from .errors import HwgenError
from .graph import Graph
from .quantize import QGraph, quantize
from .plan import Plan, make_plan
from .emit import Design, generate
from .api import load, simulate
from .precision import choose_bits, measure_sensitivity, pareto
from .cost import estimate
from .precision_board import choose_bits_for_board
from .energy import estimate_energy
from .explore import explore

__all__ = ["HwgenError", "Graph", "QGraph", "Plan", "Design",
           "load", "quantize", "make_plan", "generate", "simulate",
           "choose_bits", "choose_bits_for_board", "measure_sensitivity", "pareto", "estimate",
           "estimate_energy", "explore"]
