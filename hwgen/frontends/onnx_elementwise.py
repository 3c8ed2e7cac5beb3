"""Element-wise ONNX ops as one activation: the single ops (``Sigmoid``, ``HardSwish``,
``Gelu``...) and the chains exporters write for a function ONNX has no op for (GELU as
``Div``/``Erf``/``Add``/``Mul``/``Mul``, its tanh approximation, SiLU as ``Sigmoid``·``Mul``).

A chain is a set of element-wise nodes computing a function of one tensor (its *origin*), with
scalar constants only. :func:`identify` evaluates the chain on a grid of values and names the
function of :data:`hwgen.activations.FUNCTIONS` it computes, so the graph keeps one
``activation`` layer whatever the exporter wrote. A chain that matches none is an error that
lists its ops.
"""

import dataclasses
import math

import numpy as np
from scipy import special

from ..activations import DEFAULT_PARAMS, evaluate
from ..errors import HwgenError
from .onnx_common import _attributes, _label

__all__ = ["UNARY_OPS", "BINARY_OPS", "ELEMENTWISE_OPS", "identify", "single_op_function",
           "ChainImporter"]

# ONNX ops of one activation input and attributes (or constant inputs), with numpy semantics.
UNARY_OPS = ("Abs", "Celu", "Clip", "Elu", "Erf", "Exp", "Gelu", "HardSigmoid", "HardSwish",
             "LeakyRelu", "Log", "Mish", "Neg", "PRelu", "Reciprocal", "Relu", "Selu",
             "Sigmoid", "Softplus", "Softsign", "Sqrt", "Tanh")
BINARY_OPS = ("Add", "Sub", "Mul", "Div", "Pow")
ELEMENTWISE_OPS = UNARY_OPS + BINARY_OPS

# Single ops that are an activation by themselves: ONNX op → (function, attribute names).
_SINGLE = {
    "Sigmoid": ("sigmoid", ()),
    "Tanh": ("tanh", ()),
    "HardSigmoid": ("hardsigmoid", ("alpha", "beta")),
    "HardSwish": ("hardswish", ()),
    "Elu": ("elu", ("alpha",)),
    "Selu": ("selu", ("alpha", "gamma")),
    "Celu": ("celu", ("alpha",)),
    "Softplus": ("softplus", ()),
    "Softsign": ("softsign", ()),
    "Mish": ("mish", ()),
    "LeakyRelu": ("leaky_relu", ("alpha",)),
}
# ONNX's attribute defaults where they differ from hwgen.activations' (Selu's are float32).
_ONNX_DEFAULTS = {"selu": (1.67326319217681884765625, 1.05070102214813232421875)}

# The functions a chain is compared with; parameters are ONNX's defaults where there are any.
_CANDIDATES = ("gelu", "gelu_tanh", "silu", "mish", "hardswish", "hardsigmoid", "sigmoid",
               "tanh", "softplus", "softsign", "elu", "selu", "celu")
_GRID = np.linspace(-12.0, 12.0, 4801)


def single_op_function(node, slope=None):
    """``(function, params)`` of an element-wise ``node`` that is an activation on its own, or
    ``None``. ``slope`` is PRelu's constant slope (a scalar)."""
    op = node.op_type
    if op == "PRelu":
        return ("leaky_relu", (float(slope),)) if slope is not None else None
    if op == "Gelu":
        approximate = _attributes(node).get("approximate", "none")
        return ("gelu_tanh" if approximate == "tanh" else "gelu"), ()
    if op not in _SINGLE:
        return None
    function, names = _SINGLE[op]
    attributes = _attributes(node)
    defaults = _ONNX_DEFAULTS.get(function, DEFAULT_PARAMS.get(function, ()))
    return function, tuple(float(attributes.get(name, default))
                           for name, default in zip(names, defaults))


def _unary(node, x, constants):
    op, attributes = node.op_type, _attributes(node)
    if op == "Clip":
        lo, hi = constants.get(1, attributes.get("min", -np.inf)), constants.get(
            2, attributes.get("max", np.inf))
        return np.clip(x, lo, hi)
    if op == "Relu":
        return np.maximum(x, 0.0)
    if op == "PRelu":
        return np.where(x >= 0, x, constants[1] * x)
    simple = {"Abs": np.abs, "Erf": special.erf, "Exp": np.exp, "Log": np.log,
              "Neg": np.negative, "Reciprocal": np.reciprocal, "Sqrt": np.sqrt}
    if op in simple:
        return simple[op](x)
    function, params = single_op_function(node)
    return evaluate(function, params, x)


def _binary(op, a, b):
    return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
            "Pow": np.power}[op](a, b)


def evaluate_chain(nodes, origin, constant, x):
    """The chain's output for origin values ``x``: ``nodes`` in order, the last one's output
    is the result; ``constant(tensor)`` gives a scalar constant input's value."""
    values = {origin: x}
    with np.errstate(all="ignore"):
        for node in nodes:
            if node.op_type in BINARY_OPS:
                a, b = (values[t] if t in values else constant(t) for t in node.input)
                values[node.output[0]] = _binary(node.op_type, a, b)
            else:
                extra = {i: constant(t) for i, t in enumerate(node.input) if i and t}
                values[node.output[0]] = _unary(node, values[node.input[0]], extra)
    return values[nodes[-1].output[0]]


def identify(nodes, origin, constant, what):
    """``(function, params)`` the element-wise chain ``nodes`` (reading ``origin``) computes,
    or :class:`HwgenError` naming its ops."""
    if len(nodes) == 1:
        slope = constant(nodes[0].input[1]) if nodes[0].op_type == "PRelu" else None
        found = single_op_function(nodes[0], slope)
        if found is not None:
            return found
    got = evaluate_chain(nodes, origin, constant, _GRID)
    for function in _CANDIDATES:
        params = _ONNX_DEFAULTS.get(function, DEFAULT_PARAMS.get(function, ()))
        want = evaluate(function, params, _GRID)
        if np.all(np.isfinite(got)) and np.allclose(got, want, rtol=1e-4, atol=1e-5):
            return function, params
    if np.all(np.isfinite(got)) and _is_leaky(got):
        return "leaky_relu", (float(got[0] / _GRID[0]),)
    ops = ", ".join(node.op_type for node in nodes)
    raise HwgenError(f"{what}: the element-wise ops {ops} compute a function of one tensor that "
                     "hwgen does not recognise; it computes these as lookup tables: "
                     "Sigmoid, Tanh, HardSigmoid, HardSwish, Elu, Selu, Celu, Gelu (also as "
                     "Div/Erf/Add/Mul and its tanh form), SiLU (x·Sigmoid(x)), Mish, Softplus, "
                     "Softsign, LeakyRelu, PRelu with one constant slope")


def _is_leaky(values):
    """Whether ``values`` over the grid are ``x`` for ``x ≥ 0`` and ``alpha·x`` below."""
    alpha = values[0] / _GRID[0]
    want = np.where(_GRID >= 0, _GRID, alpha * _GRID)
    return math.isfinite(alpha) and np.allclose(values, want, rtol=1e-6, atol=1e-9)


class ChainImporter:
    """The float importer's handling of element-wise ops (mixed into
    :class:`hwgen.frontends.onnx._Importer`, whose ``_activations``, ``_constants`` and
    ``_add_layer`` it uses).

    An element-wise node of one tensor does not make a layer at once: its output is recorded as
    *pending*, a chain ``(origin tensor, nodes)``. Further element-wise nodes of the same origin
    extend it; the first other reader of a pending tensor (or the graph output) turns the chain
    into one ``activation`` layer, named by :func:`identify`.
    """

    def _origin(self, tensor):
        chain = self._activations[tensor].chain
        return chain[0] if chain else tensor

    def _extends_chain(self, node):
        """Whether ``node`` starts or extends a chain (else its own converter takes it)."""
        op = node.op_type
        if op not in ELEMENTWISE_OPS:
            return False
        readers = [t for t in node.input if t in self._activations]
        pending = any(self._activations[t].chain for t in readers)
        if op in ("Relu", "Clip") and not pending:
            return False        # folded into the clamp of the layer before
        if op == "Add" and not pending:
            return False        # a bias, or a residual join (of a tensor and itself, too)
        if len({self._origin(t) for t in readers}) != 1:
            return False        # Add: a residual join; other ops: an error
        constants = [t for t in node.input if t and t not in self._activations]
        return all(self._constants[t].size == 1 for t in constants)

    def _chain(self, node):
        readers = [t for t in node.input if t in self._activations]
        origin = self._origin(readers[0])
        nodes = []
        for tensor in readers:
            chain = self._activations[tensor].chain
            for earlier in chain[1] if chain else ():
                if all(earlier is not seen for seen in nodes):
                    nodes.append(earlier)
        nodes.append(node)
        self._activations[node.output[0]] = dataclasses.replace(
            self._activations[origin], chain=(origin, tuple(nodes)), shared=())

    def _materialize(self, tensor):
        """Make the pending ``tensor`` an ``activation`` layer (nothing if it is not pending)."""
        x = self._activations.get(tensor)
        if x is None or x.chain is None:
            return
        origin, nodes = x.chain
        what = f"node {_label(nodes[-1])!r} (op {nodes[-1].op_type})"
        function, params = identify(nodes, origin, lambda t: self._scalar(t, what), what)
        layer = self._add_layer(nodes[-1], "activation", (x.layer,), kind=function,
                                function=function, params=params)
        self._activations[tensor] = dataclasses.replace(x, layer=layer, chain=None, shared=())

    def _prelu(self, node, what):
        """PRelu with one slope per channel (a single slope is an activation function)."""
        x = self._activations[node.input[0]]
        if node.input[1] in self._activations:
            raise HwgenError(f"{what}: its slope {node.input[1]!r} must be a constant")
        channels = x.image[0] if x.image else x.features
        slope = self._constant(node.input[1], node, "slope")
        shape = (1, channels, *([1] * (len(x.shape(1)) - 2)))
        try:
            slope = np.broadcast_to(slope, shape).reshape(channels)
        except ValueError:
            raise HwgenError(f"{what}: slope of shape {slope.shape} does not broadcast to one "
                             f"value per channel of {x}") from None
        layer = self._add_layer(node, "prelu", (x.layer,), slope=slope)
        self._activations[node.output[0]] = dataclasses.replace(x, layer=layer, shared=())

    def _scalar(self, tensor, what):
        value = self._constants[tensor]
        if value.size != 1:
            raise HwgenError(f"{what}: its constant {tensor!r} has shape {value.shape}, not one "
                             "value")
        return float(np.asarray(value, dtype=np.float64).reshape(()))

    def _elementwise_error(self, node, what):
        """Why an element-wise ``node`` that is no activation function is not supported."""
        readers = [t for t in node.input if t in self._activations]
        constants = [t for t in node.input if t and t not in self._activations]
        wide = [t for t in constants if self._constants[t].size != 1]
        if wide:
            shape = self._constants[wide[0]].shape
            raise HwgenError(f"{what} combines the activation with the constant {wide[0]!r} of "
                             f"shape {shape}; hwgen computes element-wise ops of one tensor "
                             "with scalar constants only (activation functions)")
        raise HwgenError(f"{what} combines the activations {', '.join(map(repr, readers))}, "
                         "which come from different layers; hwgen computes element-wise ops "
                         "of one tensor only (activation functions), and Add of two activations")
