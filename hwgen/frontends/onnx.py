"""ONNX → :class:`~hwgen.graph.Graph` for float MLPs and CNNs.

Reads the graphs that PyTorch's ``torch.onnx.export`` (the TorchScript exporter and the dynamo
exporter) and Keras via tf2onnx write:

- ``Gemm`` whose input ``A`` is the activation and ``B`` (and the optional ``C``) are constants;
  ``alpha``, ``beta`` and ``transB`` fold into the weight and bias. ``transA=1`` is accepted only
  where it reduces to a dense layer: on a ``(K, 1)`` column vector of a batch-1 model.
- ``MatMul`` of the activation by a constant ``(K, N)`` weight, followed by ``Add`` of a constant
  bias (either operand order) → one dense layer; without the ``Add``, the bias is zero. An ``Add``
  of a constant right after a ``Gemm`` or a ``Conv`` folds into its bias too.
- ``Conv`` (2-D, constant weight, ``group`` 1 or depthwise, dilations 1, explicit ``pads`` or
  ``auto_pad``) → ``conv2d``, the weight transposed from OIHW to OHWI.
- ``BatchNormalization`` (inference form) right after a ``Conv``/``Gemm``/``MatMul`` whose output
  nothing else reads: folded into that layer's weight and bias.
- ``MaxPool`` and ``AveragePool`` (dilations 1; ``ceil_mode=1`` only where it changes nothing; an
  average pool with padding needs ``count_include_pad=1``), ``GlobalAveragePool``, and
  ``ReduceMean`` over the height and width (how the dynamo exporter writes
  ``adaptive_avg_pool2d(x, 1)`` and ``x.mean((2, 3))``) → ``global_avgpool``.
- ``Add`` of two activations of the same shape (a residual connection) → ``add``.
- ``Relu``; ``Clip`` (bounds as attributes before opset 11, as constant inputs since) → ``clip``.
- Activation functions of one tensor (single ops, or the element-wise chains exporters write for
  GELU, SiLU, Mish...) → ``activation`` (a lookup table once quantized); ``PRelu`` with one slope
  per channel → ``prelu`` (:mod:`~hwgen.frontends.onnx_elementwise`).
- 1-D models ``(batch, C, L)``: ``Conv``, pools, ``GlobalAveragePool`` and ``ReduceMean`` over
  ``L`` on a ``1 × L`` image (the graph input's ``layout="CL"``).
- ``ConvTranspose`` → ``upsample`` (``mode="zeros"``, for strides above 1) then ``conv2d``
  with the kernel flipped and its channels swapped.
- ``Flatten``, ``Reshape`` (shape from an initializer or a ``Constant`` node) and ``Identity``
  are elided when they keep a ``(batch, features)`` vector; ``Flatten``/``Reshape`` of an image
  becomes a ``flatten`` layer (the ``Gemm``/``MatMul`` after it gets its weight re-ordered from
  ONNX's ``(C, H, W)`` to hwgen's ``(H, W, C)``); ``Concat`` along the channels; ``Resize``
  nearest with integer scales; ``Softmax``/``LogSoftmax``/``ArgMax`` at the output are removed
  with a note (:mod:`~hwgen.frontends.onnx_tensors`).
- ``Constant`` nodes are read as initializers.

The input must be a single float tensor, ``(batch, K)``, a signal ``(batch, C, L)`` or an image
``(batch, C, H, W)`` (the graph's input then has shape ``(1, L, C)`` or ``(H, W, C)``); the
batch dimension may be symbolic, unknown or fixed. Tensors may fork (a residual connection, a
concat) as long as every branch ends in the single output. Every problem a model can have raises
:class:`~hwgen.errors.HwgenError` naming the node at fault.

Layer names: see :mod:`~hwgen.frontends.onnx_common` (the PyTorch module path, alike for both
exporters).
"""

import dataclasses
import math

import numpy as np
import onnx

from ..errors import HwgenError
from ..graph import Graph
from .onnx_elementwise import BINARY_OPS, ELEMENTWISE_OPS, UNARY_OPS, ChainImporter
from .onnx_tensors import (OUTPUT_OPS, ShapeImporter, _Activation, _flatten_shape, _Layer,
                           _order_error, _reshape_shape)
from .onnx_common import (_DEFAULT_DOMAINS, MAX_OPSET, MIN_OPSET, _attributes, _base_name,
                          _check_kernel, _identifier, _label, _Namer, _read, _to_array,
                          _topological, _window, _window_output, constant_value, input_dims)

__all__ = ["load_onnx", "MIN_OPSET", "MAX_OPSET", "SUPPORTED_OPS"]


SUPPORTED_OPS = ("Add (a bias after Conv/MatMul/Gemm, or two activations), ArgMax and "
                 "LogSoftmax/Softmax (at the output), AveragePool, BatchNormalization (after "
                 "Conv/Gemm/MatMul), Clip, Concat (channels), Constant, Conv (1-D, 2-D), "
                 "ConvTranspose, "
                 "Flatten, Gemm, GlobalAveragePool, Identity, MatMul, MaxPool, ReduceMean (over "
                 "H and W, or L), Relu, Reshape, Resize (nearest, integer scales), and "
                 "activation functions of one tensor: "
                 "Celu, Elu, Gelu (and its Div/Erf/Add/Mul forms), HardSigmoid, HardSwish, "
                 "LeakyRelu, Mish, PRelu (one slope), Selu, Sigmoid, SiLU (x·Sigmoid(x)), "
                 "Softplus, Softsign, Tanh")

_FLOAT_TYPES = {
    onnx.TensorProto.FLOAT: "FLOAT",
    onnx.TensorProto.DOUBLE: "DOUBLE",
    onnx.TensorProto.FLOAT16: "FLOAT16",
    onnx.TensorProto.BFLOAT16: "BFLOAT16",
}
_SHAPE_OPS = ("Flatten", "Identity", "Reshape")
# Ops that may read a vector flattened in ONNX's (C, H, W) order: the dense layers re-order their
# weights, the shape ops pass the order on.
_CHW_READERS = ("Gemm", "MatMul") + _SHAPE_OPS
_ARITY = {"Add": (2, 2), "AveragePool": (1, 1), "BatchNormalization": (5, 5), "Clip": (1, 3),
          "Conv": (2, 3), "Flatten": (1, 1), "Gemm": (2, 3), "GlobalAveragePool": (1, 1),
          "Identity": (1, 1), "MatMul": (2, 2), "MaxPool": (1, 1), "ReduceMean": (1, 2),
          "Relu": (1, 1), "Reshape": (2, 2), "Softmax": (1, 1), "LogSoftmax": (1, 1),
          "ArgMax": (1, 1), "Concat": (1, 1 << 10), "ConvTranspose": (2, 3), "Resize": (2, 4),
          **{op: (1, 1) for op in UNARY_OPS if op != "Clip"}, "PRelu": (2, 2),
          **{op: (2, 2) for op in BINARY_OPS}}
_OUTPUT_OPS = OUTPUT_OPS
# float32's largest value: exporters write it for an absent Clip bound.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def load_onnx(model, name=None):
    """Read a float MLP or CNN from ONNX into a :class:`~hwgen.graph.Graph`.

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
        With input shape ``(K,)``, or ``(H, W, C)`` and ``layout="CHW"`` for an image input
        ``(batch, C, H, W)`` (the batch dimension dropped).

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


class _Importer(ChainImporter, ShapeImporter):
    def __init__(self, model):
        self._graph = model.graph
        self._constants = {}
        self._activations = {}
        self._consumers = {}  # tensor name → what reads it, to check forks and folding
        self._layers = []
        self._names = _Namer()
        self._removed = {}    # output tensor of a removed output op → that node
        self._notes = []

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
        readers = self._consumers.get(output_name, [])
        self._consumers.setdefault(output_name, []).append("the graph output")
        if readers:
            consumers = self._consumers[output_name]
            raise HwgenError(
                f"tensor {output_name!r} feeds {len(consumers)} consumers "
                f"({', '.join(consumers)}); the graph output must be the last layer, read by "
                "no other node")

        for node in _topological(nodes, set(self._constants) | {input_name}):
            self._convert(node)

        if output_name not in self._activations:
            raise HwgenError(f"the model output {output_name!r} does not depend on its input")
        self._materialize(output_name)
        output = self._activations[output_name]
        if output.chw:
            raise _order_error(f"the model output {output_name!r}", output)
        self._check_single_sink(output.layer)

        result = Graph(name)
        result.notes = list(self._notes)
        result.removed_outputs = tuple(node.op_type for node in self._removed.values())
        x = self._activations[input_name]
        if x.image:
            channels, height, width = x.image
            previous = result.input((height, width, channels), name=input_layer,
                                    layout="CL" if x.one_d else "CHW")
        else:
            previous = result.input((x.features,), name=input_layer)
        made = {-1: previous}
        for index, layer in enumerate(self._layers):
            method = getattr(result, "conv2d" if layer.op == "conv" else layer.op)
            arrays = {} if layer.weight is None else {"weight": layer.weight, "bias": layer.bias}
            inputs = [made[i] for i in layer.inputs]
            inputs = [inputs] if layer.op == "concat" else inputs
            made[index] = method(*inputs, name=layer.name, **arrays,
                                 **layer.options)
        return result

    def _check_single_sink(self, output_layer):
        read = {output_layer} | {i for layer in self._layers for i in layer.inputs}
        for index, layer in enumerate(self._layers):
            if index not in read:
                raise HwgenError(f"{layer.source}: its output is read by no node and is not the "
                                 "graph output; hwgen takes models with exactly one output")

    # -- inputs and constants ---------------------------------------------------------------------

    def _read_constant(self, node):
        if node.op_type != "Constant" or node.domain not in _DEFAULT_DOMAINS:
            return False
        self._constants[node.output[0]] = constant_value(
            node, f"node {_label(node)!r} (op Constant)")
        return True

    def _read_input(self):
        initializers = {tensor.name for tensor in self._graph.initializer}
        inputs = [value for value in self._graph.input if value.name not in initializers]
        if len(inputs) != 1:
            # The usual cause: weights exported as graph inputs instead of initializers.
            names = {value.name for value in inputs}
            for node in self._graph.node:
                weights = node.input[1:] if node.op_type in (
                    "Gemm", "MatMul", "Conv", "BatchNormalization") else ()
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
                             "input shape (batch, features) or (batch, channels, height, width)")
        dims, text = input_dims(tensor_type)
        if len(dims) == 2:
            batch, features = dims
            if not features:
                raise HwgenError(f"{what} has shape {text}: the number of features must be known")
            # 0 is how some exporters write an unknown dimension.
            self._activations[value.name] = _Activation(-1, features, batch or None)
        elif len(dims) in (3, 4):
            batch, *image = dims
            if not all(image):
                raise HwgenError(f"{what} has shape {text}: the channels and the length, or "
                                 "height and width, must be known; export with a fixed size")
            one_d = len(dims) == 3
            image = (image[0], 1, image[1]) if one_d else tuple(image)
            self._activations[value.name] = _Activation(-1, math.prod(image), batch or None,
                                                        image=image, one_d=one_d)
        else:
            raise HwgenError(f"{what} has shape {text}; hwgen takes (batch, features), "
                             "(batch, channels, length) or (batch, channels, height, width) "
                             "inputs")
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
        known = node.op_type in _CONVERTERS or node.op_type in ELEMENTWISE_OPS
        if node.domain not in _DEFAULT_DOMAINS or not known:
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
        for tensor in inputs:
            x = self._activations[tensor]
            if x.chw and node.op_type not in _CHW_READERS:
                raise _order_error(f"{what} reads {tensor!r}, which", x)
            if tensor in self._removed and node.op_type not in _OUTPUT_OPS:
                removed = self._removed[tensor]
                raise HwgenError(f"node {_label(removed)!r} (op {removed.op_type}) is not at the "
                                 f"output: {what} reads its result; hwgen removes "
                                 f"{'/'.join(_OUTPUT_OPS)} only where they end the model")
        if self._extends_chain(node):
            self._chain(node)
            return
        for tensor in inputs:
            self._materialize(tensor)
        if node.op_type not in _CONVERTERS:
            self._elementwise_error(node, what)
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

    def _add_layer(self, node, op, inputs, weight=None, bias=None, *, kind=None, name=None,
                   **options):
        if name is None:  # else the caller claimed it
            name = self._names.claim(_base_name(node, kind), op)
        source = f"node {_label(node)!r} (op {node.op_type})"
        self._layers.append(_Layer(name, op, tuple(inputs), source, weight, bias, options))
        return len(self._layers) - 1

    def _alias(self, node, x, **changes):
        """``node``'s output is ``x`` (its first input) again, maybe reshaped: an elided op."""
        readers = list(self._consumers[node.input[0]])
        readers.remove(f"node {_label(node)!r}")
        self._activations[node.output[0]] = dataclasses.replace(
            x, shared=x.shared + tuple(readers), **changes)

    def _fold_target(self, node, tensor, what, verb, ops, kind):
        """The layer that ``kind`` (read by ``node`` from ``tensor``) folds into: the one right
        before it, if its op is one of ``ops`` and nothing else reads its output."""
        x = self._activations[tensor]
        layer = self._layers[x.layer] if x.layer >= 0 else None
        producer = "the input" if layer is None else f"layer {layer.name!r}"
        if layer is None or layer.op not in ops or x.column:
            raise HwgenError(f"{what} {verb} the output of {producer}; hwgen supports {kind} only "
                             f"right after a {'/'.join(_ONNX_NAMES[op] for op in ops)}, folded "
                             "into it")
        readers = list(self._consumers[tensor])
        readers.remove(f"node {_label(node)!r}")
        readers = list(x.shared) + readers
        if readers:
            raise HwgenError(f"{what} {verb} the output of {producer} ({layer.source}), which "
                             f"also feeds {', '.join(readers)}; hwgen folds {kind} into the layer "
                             "before it only when nothing else reads that layer's output")
        return layer, x

    def _image(self, node, what):
        """The image activation read by ``node`` as its first input, or a HwgenError."""
        tensor = node.input[0]
        if tensor not in self._activations:
            raise HwgenError(f"{what}: its first input {tensor!r} must be the activation")
        x = self._activations[tensor]
        if not x.image:
            raise HwgenError(f"{what} needs an image (batch, channels, height, width), but "
                             f"{tensor!r} has shape {x}")
        return x

    def _gemm(self, node, what):
        a, b, c = (list(node.input) + ["", ""])[:3]
        if a not in self._activations:
            raise HwgenError(f"{what}: the activation must be input A, not B; hwgen reads "
                             "Gemm as activation × constant weight")
        weight = self._constant(b, node, "weight B")
        if weight.ndim != 2:
            raise HwgenError(f"{what}: weight B must be 2-D, not {weight.shape}")
        attributes = _attributes(node)
        weight = weight.T if attributes.get("transB", 0) else weight  # now (K, N)
        x = self._vector(node, a, what)
        if attributes.get("transA", 0):
            if x.column or (x.batch == 1 and x.features == 1):
                x = dataclasses.replace(x, batch=1, column=False)
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
            bias = _bias(self._constant(c, node, "bias C"), (1, outputs), what)
            bias = attributes.get("beta", 1.0) * bias
        weight = attributes.get("alpha", 1.0) * _rows_to_hwc(weight, x.chw).T
        layer = self._add_layer(node, "dense", (x.layer,), weight, bias)
        self._activations[node.output[0]] = _Activation(layer, outputs, x.batch)

    def _matmul(self, node, what):
        a, b = node.input
        if a not in self._activations:
            raise HwgenError(f"{what} multiplies the constant {a!r} by the activation; hwgen "
                             "supports activation × constant weight (K, N)")
        weight = self._constant(b, node, "weight")
        x = self._vector(node, a, what)
        if x.column:
            raise HwgenError(f"{what}: the activation is the column vector {x}; MatMul needs "
                             "(batch, features)")
        if weight.ndim != 2 or weight.shape[0] != x.features:
            raise HwgenError(f"{what}: the weight must be ({x.features}, N) for the activation "
                             f"{x}, not {weight.shape}")
        weight = _rows_to_hwc(weight, x.chw)
        layer = self._add_layer(node, "dense", (x.layer,), weight.T, np.zeros(weight.shape[1]))
        self._activations[node.output[0]] = _Activation(layer, weight.shape[1], x.batch)

    def _vector(self, node, tensor, what):
        x = self._activations[tensor]
        if x.image:
            raise HwgenError(f"{what}: the activation {tensor!r} is the image {x}; flatten it "
                             "first (torch.flatten(x, 1))")
        return x

    def _conv(self, node, what):
        x = self._image(node, what)
        weight = self._constant(node.input[1], node, "weight W")
        if weight.ndim != (3 if x.one_d else 4):
            want = "1-D convolution of (batch, C, L), whose weight is (M, C/group, k)" if (
                x.one_d) else "2-D convolution, whose weight is (M, C/group, kH, kW)"
            raise HwgenError(f"{what}: weight W has shape {weight.shape}, but a {want}")
        if x.one_d:
            weight = weight[:, :, None, :]
        attributes = _window_attributes(node, x)
        out_channels, per_group, kh, kw = weight.shape
        channels = x.image[0]
        group = attributes.get("group", 1)
        if per_group * group != channels:
            raise HwgenError(f"{what}: weight W {weight.shape} with group={group} expects "
                             f"{per_group * group} input channels, but the activation {x} has "
                             f"{channels}")
        if group != 1 and not group == channels == out_channels:
            raise HwgenError(f"{what}: group={group} with {channels} input and {out_channels} "
                             "output channels is a grouped convolution; hwgen supports group=1 "
                             "and depthwise convolutions (group = input channels = output "
                             "channels)")
        kernel = _check_kernel(attributes, (kh, kw), what, "weight W")
        stride, pads = _window(attributes, x.image[1:], kernel, what)
        bias = np.zeros(out_channels)
        if len(node.input) > 2 and node.input[2]:
            bias = _bias(self._constant(node.input[2], node, "bias B"), (out_channels,), what)
        size = _window_output(x.image[1:], kernel, stride, pads, what)
        layer = self._add_layer(node, "conv", (x.layer,), weight.transpose(0, 2, 3, 1), bias,
                                stride=stride, padding=pads, groups=group)
        self._activations[node.output[0]] = _Activation(
            layer, out_channels * math.prod(size), x.batch, image=(out_channels, *size),
            one_d=x.one_d)

    def _conv_transpose(self, node, what):
        """A transposed convolution as zeros inserted between the pixels (``stride − 1`` of
        them; an ``upsample`` layer of mode ``"zeros"``), then a convolution with the kernel
        flipped and its in/out channels swapped, padded ``k − 1 − pad`` (plus
        ``output_padding`` at the end)."""
        x = self._image(node, what)
        weight = self._constant(node.input[1], node, "weight W")
        if x.one_d and weight.ndim == 3:
            weight = weight[:, :, None, :]
        if weight.ndim != 4:
            raise HwgenError(f"{what}: weight W has shape {weight.shape}; a transposed "
                             "convolution's weight is (C, M/group, kH, kW), or (C, M/group, k)")
        attributes = _window_attributes(node, x)
        for key in ("output_padding",):
            if x.one_d and len(attributes.get(key, ())) == 1:
                attributes[key] = [0, *attributes[key]]
        channels, per_group, kh, kw = weight.shape
        group = attributes.get("group", 1)
        if channels != x.image[0] or not (group == 1 or group == channels and per_group == 1):
            raise HwgenError(f"{what}: weight W {weight.shape} with group={group} does not fit "
                             f"{x}; hwgen supports group=1 and depthwise (group = channels)")
        if "output_shape" in attributes or attributes.get("auto_pad", "NOTSET") not in (
                "NOTSET", "VALID"):
            raise HwgenError(f"{what}: give pads (and output_padding), not output_shape or "
                             "auto_pad SAME_*")
        kernel = _check_kernel(attributes, (kh, kw), what, "weight W")
        stride = tuple(attributes.get("strides", (1, 1)))
        pads = tuple(attributes.get("pads", (0, 0, 0, 0)))
        extra = tuple(attributes.get("output_padding", (0, 0)))
        if any(p > k - 1 for p, k in zip(pads, kernel * 2)) or any(
                e >= s for e, s in zip(extra, stride)):
            raise HwgenError(f"{what}: pads {list(pads)} must be at most kernel − 1 "
                             f"({kh - 1}, {kw - 1}) and output_padding {list(extra)} below the "
                             f"strides {list(stride)}")
        out_channels = channels if group > 1 else per_group
        flipped = weight[:, :, ::-1, ::-1]
        # OHWI of the equivalent convolution: out = the transposed conv's M, in = its C.
        conv_weight = (flipped.transpose(0, 2, 3, 1) if group > 1
                       else flipped.transpose(1, 2, 3, 0))
        bias = np.zeros(out_channels)
        if len(node.input) > 2 and node.input[2]:
            bias = _bias(self._constant(node.input[2], node, "bias B"), (out_channels,), what)
        name = self._names.claim(_base_name(node), "conv")
        source = x.layer
        height, width = x.image[1:]
        if stride != (1, 1):
            zeros = self._add_layer(node, "upsample", (x.layer,),
                                    name=self._names.claim(f"{name}_zeros", "upsample"),
                                    factor=stride, mode="zeros")
            source, height, width = zeros, (height - 1) * stride[0] + 1, (
                width - 1) * stride[1] + 1
        conv_pads = (kh - 1 - pads[0], kw - 1 - pads[1], kh - 1 - pads[2] + extra[0],
                     kw - 1 - pads[3] + extra[1])
        layer = self._add_layer(node, "conv", (source,), conv_weight, bias, name=name,
                                stride=(1, 1), padding=conv_pads, groups=group)
        size = (height + conv_pads[0] + conv_pads[2] - kh + 1,
                width + conv_pads[1] + conv_pads[3] - kw + 1)
        self._activations[node.output[0]] = _Activation(
            layer, out_channels * math.prod(size), x.batch, image=(out_channels, *size),
            one_d=x.one_d)

    def _pool(self, node, what):
        x = self._image(node, what)
        attributes = _window_attributes(node, x)
        if "kernel_shape" not in attributes:
            raise HwgenError(f"{what} has no kernel_shape")
        kernel = _check_kernel(attributes, None, what, None)
        stride, pads = _window(attributes, x.image[1:], kernel, what)
        if max(pads[0], pads[2]) >= kernel[0] or max(pads[1], pads[3]) >= kernel[1]:
            raise HwgenError(f"{what}: pads {list(pads)} must be smaller than the kernel "
                             f"{list(kernel)}")
        size = _window_output(x.image[1:], kernel, stride, pads, what)
        if attributes.get("ceil_mode", 0):
            ceiled = tuple(-(-(extent + before + after - k) // s) + 1 for extent, k, s, before,
                           after in zip(x.image[1:], kernel, stride, pads[:2], pads[2:]))
            if ceiled != size:
                raise HwgenError(
                    f"{what}: ceil_mode=1 adds partial windows at the bottom/right edge (output "
                    f"{ceiled[0]}×{ceiled[1]} instead of {size[0]}×{size[1]}); hwgen pools like "
                    "ceil_mode=0: export with ceil_mode=False, or pad or crop the input so the "
                    "windows fit")
        if node.op_type == "AveragePool" and any(pads) and not attributes.get(
                "count_include_pad", 0):
            raise HwgenError(
                f"{what}: with pads {list(pads)} and count_include_pad=0, windows at the edge "
                "are divided by their number of real pixels; hwgen's average pool always divides "
                "by kH·kW (count_include_pad=1): export with count_include_pad=True, or without "
                "padding")
        op = "maxpool" if node.op_type == "MaxPool" else "avgpool"
        layer = self._add_layer(node, op, (x.layer,), kernel=kernel, stride=stride, padding=pads)
        channels = x.image[0]
        self._activations[node.output[0]] = _Activation(
            layer, channels * math.prod(size), x.batch, image=(channels, *size), one_d=x.one_d)

    def _global_avgpool(self, node, what):
        x = self._image(node, what)
        channels = x.image[0]
        layer = self._add_layer(node, "global_avgpool", (x.layer,))
        self._activations[node.output[0]] = _Activation(layer, channels, x.batch,
                                                        image=(channels, 1, 1), one_d=x.one_d)

    def _reduce_mean(self, node, what):
        """The mean over height and width: a global average pool (then a flatten, orders
        coinciding, if the reduced axes are dropped)."""
        x = self._image(node, what)
        attributes = _attributes(node)
        if len(node.input) > 1 and node.input[1]:  # opset ≥ 18: axes as an input
            axes = self._constants.get(node.input[1])
            if axes is None:
                raise HwgenError(f"{what}: its axes must be a constant (an initializer or a "
                                 "Constant node)")
            axes = [int(axis) for axis in np.ravel(axes)]
        else:
            axes = attributes.get("axes")
        spatial, rank = ([2], 3) if x.one_d else ([2, 3], 4)
        if axes is None or sorted(axis % rank for axis in axes) != spatial:
            shown = "all axes" if axes is None else f"axes {list(axes)}"
            raise HwgenError(f"{what} averages over {shown}; hwgen supports ReduceMean only "
                             "over the height and width (axes [2, 3]) of an image, or the "
                             "length (axis 2) of a 1-D signal, as a global average pool")
        channels = x.image[0]
        layer = self._add_layer(node, "global_avgpool", (x.layer,))
        if attributes.get("keepdims", 1):
            self._activations[node.output[0]] = _Activation(layer, channels, x.batch,
                                                            image=(channels, 1, 1),
                                                            one_d=x.one_d)
        else:
            layer = self._add_layer(node, "flatten", (layer,))
            self._activations[node.output[0]] = _Activation(layer, channels, x.batch)

    def _batch_norm(self, node, what):
        tensor = node.input[0]
        if tensor not in self._activations:
            raise HwgenError(f"{what}: its first input {tensor!r} must be the activation")
        attributes = _attributes(node)
        if not attributes.get("spatial", 1):
            raise HwgenError(f"{what}: spatial=0 (statistics per pixel) is not supported; "
                             "hwgen folds per-channel batch normalization")
        if attributes.get("training_mode", 0):
            raise HwgenError(f"{what}: training_mode=1 normalizes with the batch's own "
                             "statistics; export the model in eval mode (model.eval())")
        layer, x = self._fold_target(node, tensor, what, "normalizes", ("conv", "dense"),
                                     "BatchNormalization")
        channels = x.image[0] if x.image else x.features
        scale, offset, mean, variance = (
            self._constant(t, node, role) for t, role in zip(
                node.input[1:], ("scale", "bias B", "mean", "variance")))
        for value, role in zip((scale, offset, mean, variance),
                               ("scale", "B", "mean", "var")):
            if value.shape != (channels,):
                raise HwgenError(f"{what}: {role} has shape {value.shape}, but the activation "
                                 f"{x} has {channels} channels")
        variance = variance + attributes.get("epsilon", 1e-5)
        if np.any(variance <= 0):
            raise HwgenError(f"{what}: var + epsilon must be positive")
        factor = scale / np.sqrt(variance)
        layer.weight = layer.weight * factor.reshape((-1,) + (1,) * (layer.weight.ndim - 1))
        layer.bias = (layer.bias - mean) * factor + offset
        self._activations[node.output[0]] = x

    def _add(self, node, what):
        a, b = node.input
        if a in self._activations and b in self._activations:
            self._add_activations(node, what)
            return
        tensor, other = (a, b) if a in self._activations else (b, a)
        layer, x = self._fold_target(node, tensor, what, "adds a constant to",
                                     ("dense", "conv"), "Add of a constant (a bias)")
        shape = (1, x.image[0], 1, 1) if x.image else (1, x.features)
        layer.bias = layer.bias + _bias(self._constant(other, node, "bias"), shape, what)
        self._activations[node.output[0]] = x

    def _add_activations(self, node, what):
        a, b = (self._activations[tensor] for tensor in node.input)
        if (a.image, a.features, a.column) != (b.image, b.features, b.column) or None not in (
                a.batch, b.batch) and a.batch != b.batch:
            raise HwgenError(f"{what} adds activations of shapes {a} and {b}; hwgen adds "
                             "tensors of the same shape only (no broadcasting)")
        layer = self._add_layer(node, "add", (a.layer, b.layer))
        batch = b.batch if a.batch is None else a.batch
        self._activations[node.output[0]] = dataclasses.replace(a, layer=layer, batch=batch,
                                                                shared=())

    def _relu(self, node, what):
        x = self._activations[node.input[0]]
        layer = self._add_layer(node, "relu", (x.layer,))
        self._activations[node.output[0]] = dataclasses.replace(x, layer=layer, shared=())

    def _clip(self, node, what):
        tensor = node.input[0]
        if tensor not in self._activations:
            raise HwgenError(f"{what}: its first input {tensor!r} must be the activation")
        x = self._activations[tensor]
        attributes = _attributes(node)
        bounds = []
        for index, role, default in ((1, "min", -np.inf), (2, "max", np.inf)):
            if len(node.input) > index and node.input[index]:  # opset ≥ 11: constant inputs
                value = self._constant(node.input[index], node, role)
                if value.size != 1:
                    raise HwgenError(f"{what}: {role} must be a scalar, not {value.shape}")
                value = float(value.reshape(()))
            else:  # opset < 11: attributes; absent means unbounded
                value = float(attributes.get(role, default))
            if abs(value) >= _FLOAT32_MAX:
                value = math.copysign(np.inf, value)
            bounds.append(value)
        lo, hi = bounds
        if not lo < hi:
            raise HwgenError(f"{what}: min {lo} must be below max {hi}")
        layer = self._add_layer(node, "clip", (x.layer,), lo=lo, hi=hi)
        self._activations[node.output[0]] = dataclasses.replace(x, layer=layer, shared=())

_CONVERTERS = {
    "Add": _Importer._add,
    "ArgMax": _Importer._output_op,
    "Concat": _Importer._concat,
    "LogSoftmax": _Importer._output_op,
    "PRelu": _Importer._prelu,
    "Softmax": _Importer._output_op,
    "AveragePool": _Importer._pool,
    "BatchNormalization": _Importer._batch_norm,
    "Clip": _Importer._clip,
    "Conv": _Importer._conv,
    "ConvTranspose": _Importer._conv_transpose,
    "Flatten": _Importer._reshape,
    "Gemm": _Importer._gemm,
    "GlobalAveragePool": _Importer._global_avgpool,
    "Identity": _Importer._identity,
    "MatMul": _Importer._matmul,
    "MaxPool": _Importer._pool,
    "ReduceMean": _Importer._reduce_mean,
    "Relu": _Importer._relu,
    "Reshape": _Importer._reshape,
    "Resize": _Importer._resize,
}
_ONNX_NAMES = {"dense": "Gemm/MatMul", "conv": "Conv"}


def _window_attributes(node, x):
    """``node``'s attributes, with a 1-D op's windows (``kernel_shape [k]``, ``strides [s]``,
    ``pads [begin, end]``, ``dilations [d]``) written as the 2-D ones of a ``1 × L`` image."""
    attributes = _attributes(node)
    if not x.one_d:
        return attributes
    for key in ("kernel_shape", "strides", "dilations"):
        if key in attributes and len(attributes[key]) == 1:
            attributes[key] = [1, *attributes[key]]
    if "pads" in attributes and len(attributes["pads"]) == 2:
        begin, end = attributes["pads"]
        attributes["pads"] = [0, begin, 0, end]
    return attributes


def _rows_to_hwc(weight, chw):
    """A ``(K, N)`` weight whose rows follow a vector flattened in ``(C, H, W)`` order, re-ordered
    so its rows follow the same vector flattened in ``(H, W, C)`` order."""
    if chw is None:
        return weight
    return weight.reshape(*chw, -1).transpose(1, 2, 0, 3).reshape(weight.shape)


def _bias(value, shape, what):
    """A bias broadcastable to ``shape`` (``(1, N)``, ``(1, C, 1, 1)`` or ``(C,)``) without
    growing it, as a vector."""
    count = max(shape)
    try:
        fits = value.ndim <= len(shape) and np.broadcast_shapes(value.shape, shape) == shape
    except ValueError:
        fits = False
    if not fits:
        if shape == (count,):
            forms = f"({count},)"
        elif len(shape) == 2:
            forms = f"a scalar, ({count},) or (1, {count})"
        else:
            forms = f"a scalar, ({count}, 1, 1) or (1, {count}, 1, 1)"
        raise HwgenError(f"{what}: the bias has shape {value.shape}; it must broadcast to "
                         f"{shape}: {forms}")
    return np.broadcast_to(value, shape).reshape(count)
