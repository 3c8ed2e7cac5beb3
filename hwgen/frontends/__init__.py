"""Model importers: float models into a :class:`~hwgen.graph.Graph`, quantized models (QDQ,
QOperator, QONNX) straight into a :class:`~hwgen.qgraph.QGraph`."""

from .onnx import load_onnx
from .onnx_quant import is_quantized, load_quantized_onnx

__all__ = ["load_onnx", "load_quantized_onnx", "is_quantized"]
