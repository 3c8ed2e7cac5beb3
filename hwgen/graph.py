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

from .activations import check_activation, describe
from .errors import HwgenError

__all__ = ["InputSpec", "DenseSpec", "ReluSpec", "ClipSpec", "ActivationSpec", "ConvSpec",
           "PoolSpec", "GlobalAvgPoolSpec", "AddSpec", "ConcatSpec", "FlattenSpec", "ArgMaxSpec",
           "PReluSpec", "UpsampleSpec",
           "Layer", "Graph", "LAYOUTS", "user_shape", "to_stream_order", "module_name"]


def module_name(name):
    """The layer name a dotted module path stands for: ``"stage2.conv1"`` → ``"stage2_conv1"``
    (importers name layers so; ``--bits`` and ``--folding`` take either form)."""
    return name.replace(".", "_") if isinstance(name, str) else name

# How users hand inputs over: as they stream (HWC, or plain vectors), as ONNX image models take
# them (CHW), or as ONNX 1-D models take them (CL: channels, length; internally a 1 × L image).
LAYOUTS = ("HWC", "CHW", "CL")


def user_shape(shape, layout):
    """The shape of one input as users hand it over, for the internal ``shape``."""
    if layout == "CHW":
        height, width, channels = shape
        return (channels, height, width)
    if layout == "CL":
        _, length, channels = shape
        return (channels, length)
    return tuple(shape)


def to_stream_order(x, shape, layout, model="model"):
    """User inputs ``(N, *user_shape(shape, layout))`` (one input alone is taken too) →
    ``(N, *shape)``, float64; :class:`HwgenError` on any other shape."""
    x = np.asarray(x, dtype=np.float64)
    want = user_shape(shape, layout)
    if x.shape == want:
        x = x[None]
    if x.shape[1:] != want:
        raise HwgenError(f"model {model!r} takes inputs of shape "
                         f"(N, {', '.join(map(str, want))}), not {x.shape}")
    if layout == "CHW":
        return x.transpose(0, 2, 3, 1)
    if layout == "CL":
        return x.transpose(0, 2, 1)[:, None]
    return x


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """The network input. ``shape`` excludes the batch dimension and is ``(features,)`` or, for
    images, ``(H, W, C)`` (channels last, as tensors stream through the hardware). ``layout``
    says how users hand images over: ``"HWC"`` (default), ``"CHW"`` (as ONNX models take
    them, e.g. ``(N, 1, 28, 28)``) or, for a 1-D signal held as a ``(1, L, C)`` image,
    ``"CL"`` (``(N, C, L)``, as ONNX ``Conv1d`` models take it); :meth:`Graph.to_internal`
    converts."""

    shape: tuple
    layout: str = "HWC"

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


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """``y = min(max(x, lo), hi)``, elementwise (ReLU6 is ``ClipSpec(0, 6)``)."""

    lo: float
    hi: float

    op = "clip"


@dataclasses.dataclass(frozen=True)
class ActivationSpec:
    """``y = function(x; *params)``, elementwise, for a smooth function of
    :data:`hwgen.activations.FUNCTIONS` (``"sigmoid"``, ``"gelu"``, ``"leaky_relu"`` with
    ``params = (alpha,)``...). Quantized, it becomes a lookup table from input code to output
    code."""

    function: str
    params: tuple = ()

    op = "activation"

    def __str__(self):
        return describe(self.function, self.params)


@dataclasses.dataclass(frozen=True, eq=False)
class PReluSpec:
    """``y = x`` for ``x ≥ 0``, else ``slope[c] · x``: one slope per channel (the last axis).
    Quantized, it folds into the dense or conv layer before it as a two-slope requantization."""

    slope: np.ndarray

    op = "prelu"


@dataclasses.dataclass(frozen=True, eq=False)
class ConvSpec:
    """2-D convolution of an ``(H, W, C)`` tensor.

    ``weight`` is ``(out_channels, kh, kw, in_channels / groups)`` float64 (OHWI: the order
    in which the sliding window streams a window, channels fastest); ``stride`` is ``(sy, sx)``;
    ``pads`` is ``(top, left, bottom, right)`` and pads insert zeros; ``groups`` is 1 or, for a
    depthwise convolution, ``in_channels == out_channels``.
    """

    weight: np.ndarray
    bias: np.ndarray
    stride: tuple
    pads: tuple
    groups: int

    op = "conv"

    @property
    def kernel(self):
        return self.weight.shape[1:3]

    @property
    def out_channels(self):
        return self.weight.shape[0]

    @property
    def depthwise(self):
        return self.groups > 1


@dataclasses.dataclass(frozen=True)
class PoolSpec:
    """Max or average pooling over ``kernel`` windows of an ``(H, W, C)`` tensor.

    ``kind`` is ``"max"`` or ``"avg"``. Pads are ``(top, left, bottom, right)``: a max pool pads
    with −∞; an average pool pads with zeros and always divides by ``kh · kw`` (ONNX
    ``count_include_pad=1``).
    """

    kind: str
    kernel: tuple
    stride: tuple
    pads: tuple

    @property
    def op(self):
        return f"{self.kind}pool"


@dataclasses.dataclass(frozen=True)
class GlobalAvgPoolSpec:
    """The mean over all pixels of an ``(H, W, C)`` tensor, giving ``(1, 1, C)``."""

    op = "global_avgpool"


@dataclasses.dataclass(frozen=True)
class AddSpec:
    """``y = a + b`` of two tensors of the same shape (a residual connection)."""

    op = "add"


@dataclasses.dataclass(frozen=True)
class UpsampleSpec:
    """Enlarge an ``(H, W, C)`` image by the integer ``factor`` ``(sy, sx)``.

    ``mode="nearest"``: every pixel repeated, ``(sy·H, sx·W, C)`` (ONNX ``Resize`` nearest with
    integer scales, ``nn.Upsample``). ``mode="zeros"``: ``sy − 1`` rows and ``sx − 1`` columns
    of zeros between the pixels, ``(sy·(H − 1) + 1, sx·(W − 1) + 1, C)`` (how a transposed
    convolution becomes a convolution).
    """

    factor: tuple
    mode: str = "nearest"

    op = "upsample"


@dataclasses.dataclass(frozen=True)
class ConcatSpec:
    """The channels of several tensors of the same height and width, one after another
    (``torch.cat(..., dim=1)``); for vectors, the features one after another."""

    op = "concat"


@dataclasses.dataclass(frozen=True)
class ArgMaxSpec:
    """The index of the largest of a vector's values (the first on a tie), as a ``(1,)``
    tensor: the class a classifier picks."""

    op = "argmax"


@dataclasses.dataclass(frozen=True)
class FlattenSpec:
    """``(H, W, C)`` → ``(H·W·C,)`` in HWC order: free in hardware, where tensors already stream
    in that order."""

    op = "flatten"


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
        self.notes = []
        self.removed_outputs = ()

    # ``notes``: what an importer changed on the way in, one sentence each (an output Softmax it
    # removed, say); the CLI prints them, the manifest and report record them.
    # ``removed_outputs``: the ONNX ops it removed from the output (``("Softmax",)``), so a
    # comparison with the original model compares classes only.

    @property
    def name(self):
        return self._name

    @property
    def nx(self):
        """The underlying :class:`networkx.DiGraph` (nodes are layer names)."""
        return self._nx

    # -- building ---------------------------------------------------------------------------------

    def input(self, shape, name="input", layout="HWC"):
        """Add the network input of ``shape`` (no batch dimension; ``(features,)`` or
        ``(H, W, C)``); ``layout="CHW"`` makes the user-facing functions take images as
        ``(N, C, H, W)``. Returns the layer's name."""
        if self.layers():
            raise HwgenError(f"input {name!r}: the input must be the first layer added")
        try:
            shape = tuple(operator.index(d) for d in shape)
        except TypeError:
            raise HwgenError(f"input {name!r}: shape must be a tuple of integers, not {shape!r}")
        if len(shape) not in (1, 3) or any(d <= 0 for d in shape):
            raise HwgenError(f"input {name!r}: shape must be (features,) or (H, W, C) with "
                             f"positive sizes, not {shape!r}")
        if layout not in LAYOUTS or (layout != "HWC" and len(shape) != 3) or (
                layout == "CL" and shape[0] != 1):
            raise HwgenError(f"input {name!r}: layout must be 'HWC', 'CHW' for images, or 'CL' "
                             f"for a (1, L, C) signal, not {layout!r} for shape {shape}")
        return self._add(name, InputSpec(shape, layout), (), shape)

    def to_internal(self, x):
        """User inputs ``(N, *user_shape)`` → ``(N, *shape)`` (CHW images become HWC)."""
        spec = self.input_layer.spec
        return to_stream_order(x, spec.shape, spec.layout, self._name)

    @property
    def user_shape(self):
        """The shape of one input as users hand it over (CHW for ``layout="CHW"``)."""
        spec = self.input_layer.spec
        return user_shape(spec.shape, spec.layout)

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

    def clip(self, x, lo, hi, name=None):
        """Add ``min(max(x, lo), hi)``; ``clip(x, 0, 6)`` is ReLU6."""
        name = self._fresh(name, "clip")
        lo, hi = float(lo), float(hi)
        if not lo < hi:
            raise HwgenError(f"clip {name!r}: lo must be below hi, not [{lo}, {hi}]")
        return self._add(name, ClipSpec(lo, hi), (x,), self._shape_of(x, name))

    def activation(self, x, function, params=None, name=None):
        """Add ``function(x; *params)`` elementwise, a function of
        :data:`hwgen.activations.FUNCTIONS`: ``g.activation(x, "sigmoid")``,
        ``g.activation(x, "leaky_relu", (0.1,))``; ``params=None`` takes its defaults."""
        name = self._fresh(name, "act")
        try:
            function, params = check_activation(function, params)
        except HwgenError as error:
            raise HwgenError(f"layer {name!r}: {error}") from None
        return self._add(name, ActivationSpec(function, params), (x,), self._shape_of(x, name))

    def prelu(self, x, slope, name=None):
        """Add ``x`` for ``x ≥ 0``, else ``slope[c] · x`` with one slope per channel (the last
        axis); it must follow a dense or conv layer, into whose requantization it folds (a
        single slope for all channels is ``activation(x, "leaky_relu", (alpha,))``)."""
        name = self._fresh(name, "prelu")
        shape = self._shape_of(x, name)
        slope = np.array(slope, dtype=np.float64).reshape(-1)
        if slope.shape != (shape[-1],) or not np.all(np.isfinite(slope)):
            raise HwgenError(f"prelu {name!r}: slope must hold {shape[-1]} finite values (one "
                             f"per channel), not shape {slope.shape}")
        return self._add(name, PReluSpec(slope), (x,), shape)

    def conv2d(self, x, weight, bias=None, stride=1, padding=0, groups=1, name=None):
        """Add a 2-D convolution; ``weight`` is ``(out_channels, kh, kw, in_channels/groups)``,
        ``padding`` an int or ``(top, left, bottom, right)``, ``stride`` an int or ``(sy, sx)``,
        ``groups`` 1 or, depthwise, the number of channels."""
        name = self._fresh(name, "conv")
        height, width, channels = self._image_shape(x, name)
        weight = np.array(weight, dtype=np.float64)
        if weight.ndim != 4:
            raise HwgenError(f"conv {name!r}: weight must be 4-D (out, kh, kw, in/groups), "
                             f"not {weight.shape}")
        out_channels, kh, kw, per_group = weight.shape
        groups = operator.index(groups)
        if groups == 1:
            if per_group != channels:
                raise HwgenError(f"conv {name!r}: input {x!r} has {channels} channels, but the "
                                 f"weight expects {per_group}")
        elif not (groups == channels == out_channels and per_group == 1):
            raise HwgenError(f"conv {name!r}: groups={groups} is supported only as a depthwise "
                             f"convolution (groups = in = out channels = {channels}, "
                             "one weight per channel and position)")
        bias = np.zeros(out_channels) if bias is None else np.array(bias, dtype=np.float64)
        if bias.shape != (out_channels,):
            raise HwgenError(f"conv {name!r}: bias must have shape ({out_channels},), "
                             f"not {bias.shape}")
        if not (np.all(np.isfinite(weight)) and np.all(np.isfinite(bias))):
            raise HwgenError(f"conv {name!r}: weight and bias must be finite")
        stride, pads = _pair(stride, name, "stride"), _pads(padding, name)
        shape = _window_output(name, (height, width), (kh, kw), stride, pads) + (out_channels,)
        return self._add(name, ConvSpec(weight, bias, stride, pads, groups), (x,), shape)

    def maxpool(self, x, kernel, stride=None, padding=0, name=None):
        """Add a max pool (pads with −∞); ``stride`` defaults to ``kernel``."""
        return self._pool("max", x, kernel, stride, padding, name)

    def avgpool(self, x, kernel, stride=None, padding=0, name=None):
        """Add an average pool (pads with zeros, divides by the window size)."""
        return self._pool("avg", x, kernel, stride, padding, name)

    def global_avgpool(self, x, name=None):
        """Add the mean over all pixels: ``(H, W, C)`` → ``(1, 1, C)``."""
        name = self._fresh(name, "gap")
        channels = self._image_shape(x, name)[2]
        return self._add(name, GlobalAvgPoolSpec(), (x,), (1, 1, channels))

    def add(self, a, b, name=None):
        """Add ``a + b`` (same shapes)."""
        name = self._fresh(name, "add")
        shape_a, shape_b = self._shape_of(a, name), self._shape_of(b, name)
        if shape_a != shape_b:
            raise HwgenError(f"add {name!r}: inputs {a!r} {shape_a} and {b!r} {shape_b} must "
                             "have the same shape")
        return self._add(name, AddSpec(), (a, b), shape_a)

    def upsample(self, x, factor, mode="nearest", name=None):
        """Add an image enlarged by the integer ``factor`` (an int or ``(sy, sx)``): pixels
        repeated (``mode="nearest"``) or zeros inserted between them (``mode="zeros"``)."""
        name = self._fresh(name, "upsample")
        height, width, channels = self._image_shape(x, name)
        factor = _pair(factor, name, "factor")
        if mode == "nearest":
            shape = (height * factor[0], width * factor[1], channels)
        elif mode == "zeros":
            shape = ((height - 1) * factor[0] + 1, (width - 1) * factor[1] + 1, channels)
        else:
            raise HwgenError(f"upsample {name!r}: mode must be 'nearest' or 'zeros', "
                             f"not {mode!r}")
        return self._add(name, UpsampleSpec(factor, mode), (x,), shape)

    def concat(self, inputs, name=None):
        """Add the concatenation of ``inputs`` (two or more) along the channels (the last axis):
        images of the same height and width, or vectors."""
        name = self._fresh(name, "concat")
        inputs = list(inputs)
        if len(inputs) < 2:
            raise HwgenError(f"concat {name!r} needs at least two inputs, not {len(inputs)}")
        shapes = [self._shape_of(x, name) for x in inputs]
        if any(len(s) != len(shapes[0]) or s[:-1] != shapes[0][:-1] for s in shapes):
            listed = ", ".join(f"{x!r} {s}" for x, s in zip(inputs, shapes))
            raise HwgenError(f"concat {name!r}: inputs {listed} must agree in every axis but "
                             "the channels (the last)")
        shape = shapes[0][:-1] + (sum(s[-1] for s in shapes),)
        return self._add(name, ConcatSpec(), inputs, shape)

    def argmax(self, x, name=None):
        """Add the index of the largest element of the vector ``x`` (the first on a tie)."""
        name = self._fresh(name, "argmax")
        shape = self._shape_of(x, name)
        if len(shape) != 1 and shape[:-1] != (1, 1):
            raise HwgenError(f"argmax {name!r}: its input {x!r} must be a vector, not {shape}")
        return self._add(name, ArgMaxSpec(), (x,), (1,))

    def flatten(self, x, name=None):
        """Add ``(H, W, C)`` → ``(H·W·C,)`` in HWC order."""
        name = self._fresh(name, "flatten")
        return self._add(name, FlattenSpec(), (x,), (int(np.prod(self._shape_of(x, name))),))

    # -- reading ----------------------------------------------------------------------------------

    def __getitem__(self, name):
        try:
            return self._nx.nodes[name if name in self._nx else module_name(name)]["layer"]
        except KeyError:
            raise HwgenError(f"no layer named {name!r}; layers: {', '.join(self._nx)}") from None

    def __contains__(self, name):
        return name in self._nx

    def layers(self):
        """All layers in topological order; among layers that could come in either order, the
        one added first comes first."""
        order = nx.lexicographical_topological_sort(
            self._nx, key=lambda name: self._nx.nodes[name]["index"])
        return [self._nx.nodes[name]["layer"] for name in order]

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
            op = str(layer.spec) if layer.op == "activation" else layer.op
            rows.append(f"  {layer.name:<16} {op:<6} <- {inputs:<16} shape {layer.shape}")
        return "\n".join(rows)

    def table(self):
        """One row per layer (name, op, inputs, output shape) as a pandas DataFrame."""
        from .notebook import frame
        return frame([{"layer": layer.name,
                       "op": str(layer.spec) if layer.op == "activation" else layer.op,
                       "inputs": ", ".join(layer.inputs),
                       "shape": "×".join(map(str, layer.shape))} for layer in self.layers()])

    def _repr_html_(self):
        from .notebook import frame_html
        return frame_html(self.table(), f"Graph {self._name!r}: {len(self._nx)} layers")

    # -- internals --------------------------------------------------------------------------------

    def _fresh(self, name, op):
        if name is None:
            index = 0
            while f"{op}{index}" in self._nx:
                index += 1
            return f"{op}{index}"
        return name

    def _pool(self, kind, x, kernel, stride, padding, name):
        name = self._fresh(name, f"{kind}pool")
        height, width, channels = self._image_shape(x, name)
        kernel = _pair(kernel, name, "kernel")
        stride = kernel if stride is None else _pair(stride, name, "stride")
        pads = _pads(padding, name)
        if max(pads[0], pads[2]) >= kernel[0] or max(pads[1], pads[3]) >= kernel[1]:
            raise HwgenError(f"{kind}pool {name!r}: padding {pads} must be smaller than the "
                             f"kernel {kernel}")
        shape = _window_output(name, (height, width), kernel, stride, pads) + (channels,)
        return self._add(name, PoolSpec(kind, kernel, stride, pads), (x,), shape)

    def _image_shape(self, x, consumer):
        shape = self._shape_of(x, consumer)
        if len(shape) != 3:
            raise HwgenError(f"layer {consumer!r}: its input {x!r} must be an image (H, W, C), "
                             f"not {shape}")
        return shape

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
        self._nx.add_node(name, layer=Layer(name, spec, tuple(inputs), tuple(shape)),
                          index=len(self._nx))
        for source in inputs:
            self._nx.add_edge(source, name)
        return name


def _pair(value, name, what):
    try:
        pair = (operator.index(value),) * 2 if not hasattr(value, "__len__") else tuple(
            operator.index(v) for v in value)
    except TypeError:
        raise HwgenError(f"layer {name!r}: {what} must be an int or a pair, not {value!r}")
    if len(pair) != 2 or min(pair) < 1:
        raise HwgenError(f"layer {name!r}: {what} must be positive, one or two of them, "
                         f"not {value!r}")
    return pair


def _pads(padding, name):
    try:
        if not hasattr(padding, "__len__"):
            pads = (operator.index(padding),) * 4
        else:
            pads = tuple(operator.index(p) for p in padding)
            pads = pads * 2 if len(pads) == 2 else pads
    except TypeError:
        raise HwgenError(f"layer {name!r}: padding must be an int, (y, x) or "
                         f"(top, left, bottom, right), not {padding!r}")
    if len(pads) != 4 or min(pads) < 0:
        raise HwgenError(f"layer {name!r}: padding must be non-negative (top, left, bottom, "
                         f"right), not {padding!r}")
    return pads


def _window_output(name, size, kernel, stride, pads):
    """Output ``(H, W)`` of a windowed op; floors like ONNX (``ceil_mode=0``)."""
    out = []
    for axis, (extent, k, s, before, after) in enumerate(
            zip(size, kernel, stride, pads[:2], pads[2:])):
        padded = extent + before + after
        if padded < k:
            raise HwgenError(f"layer {name!r}: kernel {tuple(kernel)} is larger than the padded "
                             f"input {size}")
        out.append((padded - k) // s + 1)
    return tuple(out)
