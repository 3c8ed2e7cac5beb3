"""The float layer graph: what every frontend produces and every later stage reads.

A :class:`Graph` wraps a :class:`networkx.DiGraph` whose nodes are layer names and whose node
attribute ``layer`` holds a :class:`Layer`. Shapes exclude the batch dimension and are inferred and
checked as layers are added, so a graph that exists is a graph whose shapes agree.

Example (from a notebook)::

    g = Graph("mlp")
    x = g.input((64,))
    x = g.relu(g.dense(x, w1, b1, name="fc1"))
    g.dense(x, w2, b2, name="fc2")
"""

import dataclasses
import operator

import networkx as nx
import numpy as np

from .errors import HwgenError

__all__ = ["InputSpec", "DenseSpec", "ReluSpec", "Layer", "Graph"]


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """The network input; ``shape`` excludes the batch dimension."""

    shape: tuple

    op = "input"


@dataclasses.dataclass(frozen=True, eq=False)
class DenseSpec:
    """``y = weight @ x + bias``; ``weight`` is ``(out_features, in_features)`` float64."""

    weight: np.ndarray
    bias: np.ndarray

    op = "dense"

    @property
    def in_features(self):
        return self.weight.shape[1]

    @property
    def out_features(self):
        return self.weight.shape[0]


@dataclasses.dataclass(frozen=True)
class ReluSpec:
    """``y = max(x, 0)``, elementwise."""

    op = "relu"


@dataclasses.dataclass(frozen=True, eq=False)
class Layer:
    """One node of the graph: its name, its spec, the names of its inputs, its output shape."""

    name: str
    spec: object
    inputs: tuple
    shape: tuple

    @property
    def op(self):
        return self.spec.op


class Graph:
    """A network of float layers, built in topological order.

    Parameters
    ----------
    name : str
        The model's name; it becomes the default name of the generated top module.
    """

    def __init__(self, name="model"):
        if not isinstance(name, str) or not name.isidentifier():
            raise HwgenError(f"model name must be a Verilog-safe identifier, not {name!r}")
        self._name = name
        self._nx = nx.DiGraph()

    @property
    def name(self):
        return self._name

    @property
    def nx(self):
        """The underlying :class:`networkx.DiGraph` (nodes are layer names)."""
        return self._nx

    # -- building ---------------------------------------------------------------------------------

    def input(self, shape, name="input"):
        """Add the network input of ``shape`` (no batch dimension); returns its name."""
        if self.layers():
            raise HwgenError(f"input {name!r}: the input must be the first layer added")
        try:
            shape = tuple(operator.index(d) for d in shape)
        except TypeError:
            raise HwgenError(f"input {name!r}: shape must be a tuple of integers, not {shape!r}")
        if not shape or any(d <= 0 for d in shape):
            raise HwgenError(f"input {name!r}: shape must have positive sizes, not {shape!r}")
        return self._add(name, InputSpec(shape), (), shape)

    def dense(self, x, weight, bias=None, name=None):
        """Add ``weight @ x + bias`` with ``weight`` of shape ``(out_features, in_features)``."""
        name = self._fresh(name, "dense")
        shape = self._shape_of(x, name)
        weight = np.array(weight, dtype=np.float64)
        if weight.ndim != 2:
            raise HwgenError(f"dense {name!r}: weight must be 2-D (out, in), not {weight.shape}")
        out_features, in_features = weight.shape
        if shape != (in_features,):
            raise HwgenError(
                f"dense {name!r}: input {x!r} has shape {shape}, but the weight expects "
                f"({in_features},); flatten the input or transpose the weight")
        if bias is None:
            bias = np.zeros(out_features)
        bias = np.array(bias, dtype=np.float64)
        if bias.shape != (out_features,):
            raise HwgenError(
                f"dense {name!r}: bias must have shape ({out_features},), not {bias.shape}")
        if not (np.all(np.isfinite(weight)) and np.all(np.isfinite(bias))):
            raise HwgenError(f"dense {name!r}: weight and bias must be finite")
        return self._add(name, DenseSpec(weight, bias), (x,), (out_features,))

    def relu(self, x, name=None):
        """Add ``max(x, 0)``."""
        name = self._fresh(name, "relu")
        return self._add(name, ReluSpec(), (x,), self._shape_of(x, name))

    # -- reading ----------------------------------------------------------------------------------

    def __getitem__(self, name):
        try:
            return self._nx.nodes[name]["layer"]
        except KeyError:
            raise HwgenError(f"no layer named {name!r}; layers: {', '.join(self._nx)}") from None

    def __contains__(self, name):
        return name in self._nx

    def layers(self):
        """All layers in a topological order (the order they were added)."""
        return [self._nx.nodes[n]["layer"] for n in nx.topological_sort(self._nx)]

    @property
    def input_layer(self):
        layers = self.layers()
        if not layers:
            raise HwgenError(f"model {self._name!r} is empty")
        return layers[0]

    @property
    def output_layer(self):
        """The single layer with no consumers."""
        sinks = [n for n in self._nx if self._nx.out_degree(n) == 0]
        if len(sinks) != 1:
            raise HwgenError(
                f"model {self._name!r} must have exactly one output, not {len(sinks)}: {sinks}")
        return self[sinks[0]]

    def successors(self, name):
        return list(self._nx.successors(name))

    def __repr__(self):
        rows = [f"Graph {self._name!r}: {len(self._nx)} layers"]
        for layer in self.layers():
            inputs = ", ".join(layer.inputs) or "-"
            rows.append(f"  {layer.name:<16} {layer.op:<6} <- {inputs:<16} shape {layer.shape}")
        return "\n".join(rows)

    # -- internals --------------------------------------------------------------------------------

    def _fresh(self, name, op):
        if name is None:
            index = 0
            while f"{op}{index}" in self._nx:
                index += 1
            return f"{op}{index}"
        return name

    def _shape_of(self, x, consumer):
        if x not in self._nx:
            raise HwgenError(f"layer {consumer!r}: its input {x!r} is not a layer of the graph")
        return self[x].shape

    def _add(self, name, spec, inputs, shape):
        if not isinstance(name, str) or not name.isidentifier():
            raise HwgenError(
                f"layer name must be an identifier (letters, digits, _), not {name!r}")
        if name in self._nx:
            raise HwgenError(f"layer name {name!r} is used twice")
        self._nx.add_node(name, layer=Layer(name, spec, tuple(inputs), tuple(shape)))
        for source in inputs:
            self._nx.add_edge(source, name)
        return name
