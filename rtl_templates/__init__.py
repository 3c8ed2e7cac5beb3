"""Hand-written Verilog that hwgen ships (simulation models of vendor primitives)."""
