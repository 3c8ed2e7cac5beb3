"""ONNX → :class:`~hwgen.graph.Graph` for float MLPs.

Reads the chains of dense layers and ReLUs that PyTorch's ``torch.onnx.export`` (the TorchScript
exporter and the dynamo exporter) and Keras via tf2onnx write:

- ``Gemm`` whose input ``A`` is the activation and ``B`` (and the optional ``C``) are constants;
  ``alpha``, ``beta`` and ``transB`` fold into the weight and bias. ``transA=1`` is accepted only
  where it reduces to a dense layer: on a ``(K, 1)`` column vector of a batch-1 model.
- ``MatMul`` of the activation by a constant ``(K, N)`` weight, followed by ``Add`` of a constant
  bias (either operand order) → one dense layer; without the ``Add``, the bias is zero. An ``Add``
  of a constant right after a ``Gemm`` folds into its bias too.
- ``Relu``.
- ``Flatten``, ``Reshape`` (shape from an initializer or a ``Constant`` node) and ``Identity`` are
  elided when they keep a ``(batch, features)`` vector; anything else is an error.
- ``Constant`` nodes are read as initializers.

The input must be a single float ``(batch, K)`` tensor; the batch dimension may be symbolic,
unknown or fixed. The graph must be a chain (every tensor has one consumer). Every problem a
model can have raises :class:`~hwgen.errors.HwgenError` naming the node at fault.

Layer names come from the node names, made into unique identifiers: ``/fc1/Gemm`` → ``fc1``,
``/seq/seq.0/Gemm`` → ``seq_0``, ``/0/Gemm`` → ``gemm_0``, ``/Relu_1`` → ``relu_1``,
``node_linear_1`` (dynamo) → ``linear_1``, ``sequential/dense/MatMul`` (tf2onnx) → ``dense``.
"""

import dataclasses
import keyword
import math
import os
import re
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import HwgenError
from ..graph import Graph

__all__ = ["load_onnx", "MIN_OPSET", "MAX_OPSET", "SUPPORTED_OPS"]

# Opset 7 is the first with numpy broadcasting for Add/Gemm (no `broadcast` attribute). Up to the
# maximum, the supported ops changed only in the types they accept (see REVIEWED_SCHEMAS in the
# tests); onnxruntime 1.31 runs up to 26, so that is what the tests can check.
MIN_OPSET, MAX_OPSET = 7, 26

SUPPORTED_OPS = ("Add (bias after MatMul/Gemm), Constant, Flatten, Gemm, Identity, MatMul, Relu, "
                 "Reshape")

_FLOAT_TYPES = {
    onnx.TensorProto.FLOAT: "FLOAT",
    onnx.TensorProto.DOUBLE: "DOUBLE",
    onnx.TensorProto.FLOAT16: "FLOAT16",
    onnx.TensorProto.BFLOAT16: "BFLOAT16",
}
_DEFAULT_DOMAINS = ("", "ai.onnx")
_SHAPE_OPS = ("Flatten", "Identity", "Reshape")
_ARITY = {"Add": (2, 2), "Flatten": (1, 1), "Gemm": (2, 3), "Identity": (1, 1), "MatMul": (2, 2),
          "Relu": (1, 1), "Reshape": (2, 2)}


def load_onnx(model, name=None):
    """Read a float MLP from ONNX into a :class:`~hwgen.graph.Graph`.

    Parameters
    ----------
    model : str, os.PathLike or onnx.ModelProto
        The ``.onnx`` file, or a model already in memory.
    name : str, optional
        The graph's name; by default the file's stem, else the ONNX graph's name, made into an
        identifier.

    Returns
    -------
    Graph
        ``input`` → dense/relu layers, with input shape ``(K,)`` (the batch dimension dropped).

    Raises
    ------
    HwgenError
        If the file is missing or unreadable, the opset is outside ``MIN_OPSET..MAX_OPSET``, or
        the model uses an op, a shape, a branch or a non-constant weight hwgen does not support.
    """
    model, stem = _read(model)
    if name is None:
        name = _identifier(stem or model.graph.name or "model", prefix="model")
    return _Importer(model).run(name)


def _read(model):
    if isinstance(model, onnx.ModelProto):
        source = None
    elif isinstance(model, (str, os.PathLike)):
        source = Path(model)
        if not source.exists():
            raise HwgenError(f"ONNX file {str(source)!r} does not exist")
        if not source.is_file():
            raise HwgenError(f"{str(source)!r} is not a file; give the path of an .onnx file")
        try:
            model = onnx.load(source)
        # protobuf's DecodeError, external-data OSErrors and ValueErrors all mean "not readable".
        except Exception as error:
            raise HwgenError(f"cannot read {str(source)!r} as an ONNX model: {error}") from None
    else:
        raise HwgenError(f"model must be a path or an onnx.ModelProto, not {type(model).__name__}")

    where = f"{str(source)!r}" if source else "the model"
    if not model.HasField("graph") or not (model.graph.input or model.graph.node):
        raise HwgenError(f"{where} holds no ONNX graph; is it an .onnx file?")
    opsets = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
    opset = opsets.get("ai.onnx")
    if opset is None:
        raise HwgenError(f"{where} declares no ai.onnx opset import")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise HwgenError(
            f"{where} uses ONNX opset {opset}; hwgen reads opsets {MIN_OPSET}..{MAX_OPSET}. "
            f"Re-export with opset_version=17, or convert it with "
            f"onnx.version_converter.convert_version(model, 17)")
    return model, source.stem if source else None


@dataclasses.dataclass
class _Layer:
    """A layer being collected; ``bias`` stays mutable so a following ``Add`` can fold into it."""

    name: str
    op: str
    weight: np.ndarray = None
    bias: np.ndarray = None


@dataclasses.dataclass(frozen=True)
class _Activation:
    """A tensor computed from the input: ``(batch, features)``, or ``(features, 1)`` if
    ``column`` (then the batch is 1). ``batch`` is None when symbolic. ``layer`` indexes the layer
    that produced it (-1: the input)."""

    layer: int
    features: int
    batch: object
    column: bool = False

    def shape(self, batch):
        return (self.features, 1) if self.column else (batch, self.features)

    def __str__(self):
        if self.column:
            return f"({self.features}, 1)"
        return f"({'batch' if self.batch is None else self.batch}, {self.features})"


class _Importer:
    def __init__(self, model):
        self._graph = model.graph
        self._constants = {}
        self._activations = {}
        self._consumers = {}  # tensor name → what reads it, to reject branches
        self._layers = []
        self._names = _Namer()

    def run(self, name):
        graph = self._graph
        nodes = [node for node in graph.node if not self._read_constant(node)]
        for tensor in graph.initializer:
            self._constants[tensor.name] = _to_array(tensor, f"initializer {tensor.name!r}")
        input_name, input_layer = self._read_input()
        if len(graph.output) != 1:
            names = ", ".join(repr(output.name) for output in graph.output)
            raise HwgenError(f"the model has {len(graph.output)} outputs ({names}); "
                             "hwgen takes models with exactly one output")
        output_name = graph.output[0].name

        for node in nodes:
            for tensor in node.input:
                self._consumers.setdefault(tensor, []).append(f"node {_label(node)!r}")
        self._consumers.setdefault(output_name, []).append("the graph output")

        for node in _topological(nodes, set(self._constants) | {input_name}):
            self._convert(node)

        if output_name not in self._activations:
            raise HwgenError(f"the model output {output_name!r} does not depend on its input")
        result = Graph(name)
        previous = result.input((self._activations[input_name].features,), name=input_layer)
        for layer in self._layers:
            if layer.op == "dense":
                previous = result.dense(previous, layer.weight, layer.bias, name=layer.name)
            else:
                previous = result.relu(previous, name=layer.name)
        return result

    # -- inputs and constants ---------------------------------------------------------------------

    def _read_constant(self, node):
        if node.op_type != "Constant" or node.domain not in _DEFAULT_DOMAINS:
            return False
        what = f"node {_label(node)!r} (op Constant)"
        if len(node.attribute) != 1 or len(node.output) != 1:
            raise HwgenError(f"{what} must have one value attribute and one output")
        attribute = node.attribute[0]
        if attribute.name == "value":
            value = _to_array(attribute.t, what)
        elif attribute.name in ("value_float", "value_floats", "value_int", "value_ints"):
            value = np.array(onnx.helper.get_attribute_value(attribute))
        else:
            raise HwgenError(f"{what}: a constant given as {attribute.name} is not supported; "
                             "use value, value_float(s) or value_int(s)")
        self._constants[node.output[0]] = value
        return True

    def _read_input(self):
        initializers = {tensor.name for tensor in self._graph.initializer}
        inputs = [value for value in self._graph.input if value.name not in initializers]
        if len(inputs) != 1:
            # The usual cause: weights exported as graph inputs instead of initializers.
            names = {value.name for value in inputs}
            for node in self._graph.node:
                weights = node.input[1:] if node.op_type in ("Gemm", "MatMul") else ()
                for tensor in weights:
                    if tensor in names:
                        raise HwgenError(
                            f"node {_label(node)!r} (op {node.op_type}) reads its weight/bias "
                            f"from the graph input {tensor!r}; hwgen needs constant weights: "
                            "store them as initializers")
            names = ", ".join(repr(value.name) for value in inputs)
            raise HwgenError(f"the model has {len(inputs)} inputs ({names}); "
                             "hwgen takes models with exactly one input")
        value = inputs[0]
        what = f"input {value.name!r}"
        if not value.type.HasField("tensor_type"):
            raise HwgenError(f"{what} must be a tensor")
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type not in _FLOAT_TYPES:
            type_name = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
            raise HwgenError(f"{what} has type {type_name}; hwgen takes float inputs "
                             f"({', '.join(_FLOAT_TYPES.values())})")
        if not tensor_type.HasField("shape"):
            raise HwgenError(f"{what} has no shape information; export the model with a known "
                             "input shape (batch, features)")
        dims = [dim.dim_value if dim.HasField("dim_value") else None
                for dim in tensor_type.shape.dim]
        text = "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"
        if len(dims) != 2:
            raise HwgenError(f"{what} has shape {text}; hwgen takes (batch, features) inputs, "
                             "so flatten the input before exporting")
        batch, features = dims
        if not features:
            raise HwgenError(f"{what} has shape {text}: the number of features must be known")
        # 0 is how some exporters write an unknown dimension.
        self._activations[value.name] = _Activation(-1, features, batch or None)
        layer = value.name if value.name.isidentifier() else "input"
        return value.name, self._names.claim(_identifier(layer, prefix="input"), "input")

    def _constant(self, tensor, node, role):
        """The constant ``tensor`` as float64 (input ``role`` of ``node``), or a HwgenError."""
        what = f"node {_label(node)!r} (op {node.op_type})"
        if tensor in self._activations:
            raise HwgenError(f"{what}: its {role} {tensor!r} is computed from the network input; "
                             "hwgen needs constant weights (initializers or Constant nodes)")
        value = self._constants[tensor]
        if value.dtype.kind != "f" and value.dtype.name != "bfloat16":
            raise HwgenError(f"{what}: its {role} {tensor!r} has type {value.dtype}, not float")
        return value.astype(np.float64)

    # -- nodes ------------------------------------------------------------------------------------

    def _convert(self, node):
        what = f"node {_label(node)!r} (op {node.op_type})"
        if node.domain not in _DEFAULT_DOMAINS or node.op_type not in _CONVERTERS:
            domain = f" in domain {node.domain!r}" if node.domain not in _DEFAULT_DOMAINS else ""
            raise HwgenError(f"node {_label(node)!r} (op {node.op_type}){domain} is not "
                             f"supported; supported ops: {SUPPORTED_OPS}")
        low, high = _ARITY[node.op_type]
        if not low <= len(node.input) <= high or len(node.output) != 1:
            raise HwgenError(f"{what} must have {low}..{high} inputs and one output, not "
                             f"{len(node.input)} and {len(node.output)}")
        inputs = [tensor for tensor in node.input if tensor in self._activations]
        if not inputs:
            if node.op_type in _SHAPE_OPS:
                self._fold_constant(node, what)
                return
            raise HwgenError(f"{what} computes on constants only; export with constant folding "
                             "(torch.onnx.export(..., do_constant_folding=True))")
        for tensor in dict.fromkeys(inputs):
            consumers = self._consumers[tensor]
            if len(consumers) > 1:
                raise HwgenError(
                    f"tensor {tensor!r} feeds {len(consumers)} consumers ({', '.join(consumers)}); "
                    "branching graphs (e.g. residual connections) are not supported yet")
        _CONVERTERS[node.op_type](self, node, what)

    def _fold_constant(self, node, what):
        value = self._constants[node.input[0]]
        if node.op_type == "Identity":
            self._constants[node.output[0]] = value
            return
        shape = _flatten_shape if node.op_type == "Flatten" else _reshape_shape
        try:
            self._constants[node.output[0]] = value.reshape(shape(self, node)(value.shape))
        except ValueError as error:
            raise HwgenError(f"{what}: {error}") from None

    def _add_layer(self, node, op, weight=None, bias=None):
        name = self._names.claim(_base_name(node), op)
        self._layers.append(_Layer(name, op, weight, bias))
        return len(self._layers) - 1

    def _gemm(self, node, what):
        a, b, c = (list(node.input) + ["", ""])[:3]
        if a not in self._activations:
            raise HwgenError(f"{what}: the activation must be input A, not B; hwgen reads "
                             "Gemm as activation × constant weight")
        weight = self._constant(b, node, "weight B")
        if weight.ndim != 2:
            raise HwgenError(f"{what}: weight B must be 2-D, not {weight.shape}")
        attributes = {attribute.name: onnx.helper.get_attribute_value(attribute)
                      for attribute in node.attribute}
        weight = weight.T if attributes.get("transB", 0) else weight  # now (K, N)
        x = self._activations[a]
        if attributes.get("transA", 0):
            if x.column or (x.batch == 1 and x.features == 1):
                x = _Activation(x.layer, x.features, 1)
            else:
                raise HwgenError(
                    f"{what}: transA=1 on the activation of shape {x} would mix the batch into "
                    "the features; it is only supported on a (K, 1) column vector")
        elif x.column:
            raise HwgenError(f"{what}: the activation is the column vector {x}; with transA=0 "
                             "its elements would be batch rows")
        features, outputs = weight.shape
        if features != x.features:
            raise HwgenError(f"{what}: weight B is (K, N) = {weight.shape} after transB, but the "
                             f"activation has {x.features} features")
        bias = np.zeros(outputs)
        if c:
            bias = _bias(self._constant(c, node, "bias C"), outputs, what)
            bias = attributes.get("beta", 1.0) * bias
        weight = attributes.get("alpha", 1.0) * weight.T
        layer = self._add_layer(node, "dense", weight, bias)
        self._activations[node.output[0]] = _Activation(layer, outputs, x.batch)

    def _matmul(self, node, what):
        a, b = node.input
        if a not in self._activations:
            raise HwgenError(f"{what} multiplies the constant {a!r} by the activation; hwgen "
                             "supports activation × constant weight (K, N)")
        weight = self._constant(b, node, "weight")
        x = self._activations[a]
        if x.column:
            raise HwgenError(f"{what}: the activation is the column vector {x}; MatMul needs "
                             "(batch, features)")
        if weight.ndim != 2 or weight.shape[0] != x.features:
            raise HwgenError(f"{what}: the weight must be ({x.features}, N) for the activation "
                             f"{x}, not {weight.shape}")
        layer = self._add_layer(node, "dense", weight.T, np.zeros(weight.shape[1]))
        self._activations[node.output[0]] = _Activation(layer, weight.shape[1], x.batch)

    def _add(self, node, what):
        a, b = node.input
        tensor, other = (a, b) if a in self._activations else (b, a)
        if other in self._activations:
            raise HwgenError(f"{what} adds two activations; hwgen supports Add only as the "
                             "constant bias of the MatMul/Gemm right before it")
        x = self._activations[tensor]
        if x.layer < 0 or self._layers[x.layer].op != "dense" or x.column:
            producer = "the input" if x.layer < 0 else f"layer {self._layers[x.layer].name!r}"
            raise HwgenError(f"{what} adds a constant to the output of {producer}; hwgen "
                             "supports Add only as the bias of the MatMul/Gemm right before it")
        layer = self._layers[x.layer]
        layer.bias = layer.bias + _bias(self._constant(other, node, "bias"), x.features, what)
        self._activations[node.output[0]] = x

    def _relu(self, node, what):
        x = self._activations[node.input[0]]
        layer = self._add_layer(node, "relu")
        self._activations[node.output[0]] = dataclasses.replace(x, layer=layer)

    def _identity(self, node, what):
        self._activations[node.output[0]] = self._activations[node.input[0]]

    def _reshape(self, node, what):
        """Flatten and Reshape: elided if the result is still a vector of the same batch."""
        x = self._activations[node.input[0]]
        shape = _flatten_shape if node.op_type == "Flatten" else _reshape_shape
        shape = shape(self, node)

        def result(batch):
            try:
                return shape(x.shape(batch))
            except ValueError:
                return None

        batch = x.batch
        if batch is None:
            # A symbolic batch: the op must keep (b, K) for any b, or work only for b = 1
            # (e.g. Reshape to [1, K]), which fixes the batch to 1.
            trials = {b: result(b) for b in (2, 3)}
            if all(trials[b] == (b, x.features) for b in trials):
                self._activations[node.output[0]] = x
                return
            wrong = [(b, trials[b]) for b in trials if trials[b] not in (None, (b, x.features))]
            if wrong:
                raise HwgenError(f"{what} turns the activation {x} into {wrong[0][1]} at batch "
                                 f"{wrong[0][0]}; it mixes the batch into the features, which is "
                                 "not supported")
            batch = 1
        out = result(batch)
        if out == (batch, x.features):
            self._activations[node.output[0]] = _Activation(x.layer, x.features, batch)
        elif batch == 1 and out == (x.features, 1):
            self._activations[node.output[0]] = _Activation(x.layer, x.features, 1, column=True)
        else:
            into = "an invalid shape" if out is None else str(out)
            raise HwgenError(f"{what} turns the activation {x} into {into}; hwgen only elides "
                             "Flatten/Reshape that keep a (batch, features) vector")


_CONVERTERS = {
    "Add": _Importer._add,
    "Flatten": _Importer._reshape,
    "Gemm": _Importer._gemm,
    "Identity": _Importer._identity,
    "MatMul": _Importer._matmul,
    "Relu": _Importer._relu,
    "Reshape": _Importer._reshape,
}


# -- shapes ---------------------------------------------------------------------------------------

def _flatten_shape(importer, node):
    """The function ``shape → shape`` that ``node`` (Flatten) computes; ValueError if invalid."""
    axis = next((onnx.helper.get_attribute_value(attribute) for attribute in node.attribute
                 if attribute.name == "axis"), 1)

    def shape(before):
        index = axis + len(before) if axis < 0 else axis
        if not 0 <= index <= len(before):
            raise ValueError(f"axis {axis} is out of range for rank {len(before)}")
        return (math.prod(before[:index]), math.prod(before[index:]))
    return shape


def _reshape_shape(importer, node):
    """The function ``shape → shape`` that ``node`` (Reshape) computes; ValueError if invalid."""
    what = f"node {_label(node)!r} (op Reshape)"
    if len(node.input) < 2 or node.input[1] not in importer._constants:
        raise HwgenError(f"{what}: its target shape must be a constant (an initializer or a "
                         "Constant node); export with constant folding")
    target = importer._constants[node.input[1]]
    if target.dtype.kind not in "iu" or target.ndim != 1:
        raise HwgenError(f"{what}: the target shape must be a 1-D integer tensor, not "
                         f"{target.dtype} {target.shape}")
    target = [int(d) for d in target]
    allow_zero = any(attribute.name == "allowzero" and attribute.i for attribute in node.attribute)

    def shape(before):
        after = list(target)
        for index, size in enumerate(after):
            if size == 0 and not allow_zero:
                if index >= len(before):
                    raise ValueError(f"shape {target} copies dimension {index} of {before}")
                after[index] = before[index]
        total = math.prod(before)
        if after.count(-1) > 1 or any(size < -1 for size in after):
            raise ValueError(f"invalid target shape {target}")
        if -1 in after:
            known = math.prod(size for size in after if size != -1)
            if known == 0 or total % known:
                raise ValueError(f"cannot reshape {before} to {target}")
            after[after.index(-1)] = total // known
        if math.prod(after) != total:
            raise ValueError(f"cannot reshape {before} to {target}")
        return tuple(after)
    return shape


def _bias(value, outputs, what):
    """A bias broadcastable to ``(1, outputs)`` without growing it, as ``(outputs,)``."""
    try:
        fits = value.ndim <= 2 and np.broadcast_shapes(value.shape, (1, outputs)) == (1, outputs)
    except ValueError:
        fits = False
    if not fits:
        raise HwgenError(f"{what}: the bias has shape {value.shape}; it must broadcast to "
                         f"({outputs},): a scalar, ({outputs},) or (1, {outputs})")
    return np.broadcast_to(value, (1, outputs)).reshape(outputs)


# -- graph helpers --------------------------------------------------------------------------------

def _to_array(tensor, what):
    try:
        return numpy_helper.to_array(tensor)
    except Exception as error:  # external data not found, unsupported storage: all unreadable
        raise HwgenError(f"cannot read {what}: {error}; if its data lives in an external file, "
                         "pass the path of the .onnx file instead of a loaded model") from None


def _label(node):
    return node.name or (node.output[0] if node.output else node.op_type)


def _topological(nodes, available):
    """``nodes`` in an order where every input is available before it is read (Kahn's algorithm,
    stable: exporters already write nodes in order, so this is one pass in practice)."""
    available = set(available) | {""}  # "" is an omitted optional input
    pending, ordered = list(nodes), []
    while pending:
        ready = [node for node in pending if all(t in available for t in node.input)]
        if not ready:
            node = pending[0]
            missing = next(t for t in node.input if t not in available)
            raise HwgenError(f"node {_label(node)!r} (op {node.op_type}) reads {missing!r}, which "
                             "is neither the input, an initializer nor any node's output "
                             "(or the graph has a cycle)")
        for node in ready:
            available.update(node.output)
        ready_ids = set(map(id, ready))
        pending = [node for node in pending if id(node) not in ready_ids]
        ordered += ready
    return ordered


# -- names ----------------------------------------------------------------------------------------

def _identifier(text, prefix):
    """``text`` as an identifier: runs of other characters become ``_``; a leading digit gets
    ``prefix_``; a Python keyword gets a trailing ``_``."""
    text = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")
    text = re.sub(r"_+", "_", text)
    if not text:
        return prefix
    if text[0].isdigit():
        text = f"{prefix}_{text}"
    return text + "_" if keyword.iskeyword(text) else text


def _base_name(node):
    """A readable name for ``node``: its innermost scope, without the op's own name."""
    op = node.op_type
    parts = [part for part in (node.name or node.output[0]).split("/") if part]
    if len(parts) > 1 and re.fullmatch(rf"{op}(_\d+)?", parts[-1], re.IGNORECASE):
        parts.pop()  # "/fc1/Gemm" → "fc1", "sequential/dense/MatMul" → "dense"
    text = parts[-1] if parts else op
    if re.fullmatch(rf"{op}(_\d+)?", text, re.IGNORECASE):
        text = text.lower()  # "/Relu_1" → "relu_1"
    text = re.sub(r"^node_", "", text)  # the dynamo exporter's "node_linear_1"
    return _identifier(text, prefix=op.lower())


class _Namer:
    """Hands out unique names: the base, else ``base_op`` (``dense`` → ``dense_relu``), else
    ``base_1``, ``base_2``, …"""

    def __init__(self):
        self._used = set()

    def claim(self, base, op):
        candidates = [base] if op in base.lower() else [base, f"{base}_{op}"]
        index = 1
        while all(candidate in self._used for candidate in candidates):
            candidates = [f"{base}_{index}"]
            index += 1
        name = next(candidate for candidate in candidates if candidate not in self._used)
        self._used.add(name)
        return name
