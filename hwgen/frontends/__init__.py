"""Model importers: each reads a model format into a :class:`~hwgen.graph.Graph`."""

from .onnx import load_onnx

__all__ = ["load_onnx"]
