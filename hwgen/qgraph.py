"""The quantized graph: plain data that the integer reference, the planner and the hardware read.

A :class:`QGraph` is a tuple of quantized layers in topological order; each names its inputs
(another layer, or the graph input). Every layer states its integer arithmetic exactly
(DESIGN.md's contract; ``docs/arithmetic.md``):

- :class:`QDense`, :class:`QConv`: ``acc = bias' + Σ w · q_x`` then
  ``q_y = clamp(zp_y + rshift_round(acc · M[c], n[c]), clamp_lo, clamp_hi)``.
- :class:`QPool`: max of codes (output quantization = input's); average and global average:
  ``acc = Σ (q_x − zp_x)`` over the window, then the same requantization with scalar ``M, n``.
- :class:`QAdd`: ``acc = (q_a − zp_a) · M_a + (q_b − zp_b) · M_b``, then
  ``clamp(zp_y + rshift_round(acc, n), clamp_lo, clamp_hi)``.
- :class:`QTable`: ``q_y = table[q_x − lo_x]``, a smooth activation as a lookup table.
- :class:`QConcat`: the channels of its inputs one after another; an input whose quantization
  differs from the output's is requantized on the way,
  ``clamp(zp_y + rshift_round((q_i − zp_i) · M_i, n), clamp_lo, clamp_hi)``.
- :class:`QArgMax`: the index of the largest code of a vector (the first on a tie).
- :class:`QUpsample`: an image enlarged, pixels repeated or the zero point between them.
"""

import dataclasses
import json
import math
import operator

import numpy as np

from .activations import describe
from .errors import HwgenError
from .graph import module_name, to_stream_order
from .reference import Rounding

__all__ = ["ActQuant", "QDense", "QConv", "QPool", "QAdd", "QTable", "QArgMax", "QConcat",
           "QUpsample",
           "QGraph",
           "check_bits", "qgraph_to_arrays", "qgraph_from_arrays", "add_argmax"]

MIN_BITS, MAX_BITS = 2, 16


def check_bits(bits, what):
    """``bits`` as an int in ``[2, 16]``, or :class:`HwgenError` naming ``what``."""
    try:
        bits = operator.index(bits)
    except TypeError:
        raise HwgenError(f"{what} must be an integer in {MIN_BITS}..{MAX_BITS}, not {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise HwgenError(f"{what} must be in {MIN_BITS}..{MAX_BITS}, not {bits}")
    return bits


@dataclasses.dataclass(frozen=True)
class ActQuant:
    """Per-tensor activation quantization: ``real ≈ scale · (code − zero_point)``.

    Codes are ``bits`` wide, signed ``[−2^(b−1), 2^(b−1)−1]`` or unsigned ``[0, 2^b−1]``.
    """

    scale: float
    zero_point: int
    bits: int
    signed: bool

    def __post_init__(self):
        check_bits(self.bits, "activation bits")
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise HwgenError(f"activation scale must be positive and finite, not {self.scale}")
        if not self.lo <= self.zero_point <= self.hi:
            raise HwgenError(f"zero point {self.zero_point} is outside [{self.lo}, {self.hi}]")

    @property
    def lo(self):
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self):
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @classmethod
    def from_range(cls, lo, hi, bits):
        """The quantization covering ``[lo, hi]`` (widened to contain 0) with ``bits``."""
        bits = check_bits(bits, "activation bits")
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        levels = (1 << bits) - 1
        if lo == 0.0:
            return cls(scale=hi / levels if hi > 0 else 1.0, zero_point=0, bits=bits, signed=False)
        scale = (hi - lo) / levels
        code_lo = -(1 << (bits - 1))
        zero_point = int(np.clip(round(code_lo - lo / scale), code_lo, code_lo + levels))
        return cls(scale=scale, zero_point=zero_point, bits=bits, signed=True)

    def quantize(self, x):
        """Float array → int64 codes (round half to even, then clamp)."""
        codes = np.round(np.asarray(x, dtype=np.float64) / self.scale) + self.zero_point
        return np.clip(codes, self.lo, self.hi).astype(np.int64)

    def dequantize(self, codes):
        return self.scale * (np.asarray(codes, dtype=np.float64) - self.zero_point)

    def __str__(self):
        kind = "int" if self.signed else "uint"
        return f"{kind}{self.bits} scale={self.scale:.6g} zp={self.zero_point}"


@dataclasses.dataclass(frozen=True, eq=False)
class QDense:
    """A quantized dense layer: ``acc = bias + weight @ q_x``, then
    ``q_y = clamp(zp_y + rshift_round(acc · M[c], n[c]), clamp_lo, clamp_hi)``.

    Attributes
    ----------
    weight : int64 array, ``(out_features, in_features)``, narrow-range ``weight_bits`` codes.
    weight_scale : float64 array, ``(out_features,)``.
    bias : int64 array, ``(out_features,)``, scale ``s_x · s_w[c]``, input zero point folded in.
    multiplier, shift : int64 arrays, ``(out_features,)``: ``M[c] ≥ 0``, ``n[c] ≥ 0``.
    input, output : :class:`ActQuant` of the consumed and the produced activations.
    clamp_lo, clamp_hi : output code range after a folded ReLU.
    relu : whether a ReLU was folded into the clamp (``clamp_lo ≥ zero_point``).
    negative_multiplier : int64 array ``(out_features,)`` or None: a folded LeakyReLU/PReLU,
        the multiplier an ``acc < 0`` takes instead of ``M[c]`` (``≈ slope[c] · M[c]``).
    bias_fraction, negative_fraction : int64 arrays ``(out_features,)`` or None: what the
        integer ``bias`` leaves of a real bias, added to ``acc · M[c]`` before the shift (in
        units of ``2^−n[c]`` output steps; the negative one where ``acc < 0`` with slopes).
    """

    name: str
    inputs: tuple
    weight: np.ndarray
    weight_bits: int
    weight_scale: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    input: ActQuant
    output: ActQuant
    clamp_lo: int
    clamp_hi: int
    rounding: Rounding = Rounding.HALF_UP
    relu: bool = False
    negative_multiplier: np.ndarray = None
    bias_fraction: np.ndarray = None
    negative_fraction: np.ndarray = None

    op = "dense"

    def __post_init__(self):
        limit = (1 << (self.weight_bits - 1)) - 1
        assert np.abs(self.weight).max(initial=0) <= limit, "weights outside the narrow range"
        assert np.all(self.multiplier >= 0) and np.all(self.shift >= 0)
        assert self.output.lo <= self.clamp_lo <= self.clamp_hi <= self.output.hi
        assert not self.relu or self.clamp_lo >= self.output.zero_point, "ReLU not in the clamp"

    @property
    def in_features(self):
        return self.weight.shape[1]

    @property
    def out_features(self):
        return self.weight.shape[0]

    @property
    def act_bits(self):
        return self.input.bits

    @property
    def macs(self):
        return self.in_features * self.out_features

    @property
    def acc_bound(self):
        """The largest ``|acc|`` any input codes can produce: ``|bias'| + Σ|w| · max|q_x|``."""
        max_code = max(abs(self.input.lo), abs(self.input.hi))
        weight = np.abs(self.weight).reshape(len(self.weight), -1)
        per_channel = np.abs(self.bias) + weight.sum(axis=1) * max_code
        return int(per_channel.max(initial=0))

    @property
    def acc_bits(self):
        """Signed width that holds every accumulator value (and every partial dot product)."""
        return self.acc_bound.bit_length() + 1

    @property
    def multiplier_bits(self):
        largest = int(self.multiplier.max(initial=0))
        if self.negative_multiplier is not None:
            largest = max(largest, int(self.negative_multiplier.max(initial=0)))
        return max(largest.bit_length(), 1)


@dataclasses.dataclass(frozen=True, eq=False)
class QConv:
    """A quantized 2-D convolution of an ``(H, W, C)`` code tensor.

    ``weight`` is int64 ``(out_channels, kh, kw, in_channels / groups)`` (OHWI, the order the
    sliding window streams a window in: channels fastest); ``groups`` is 1 or, depthwise, the
    channel count. Padding inserts the input zero point, which the folded bias accounts for.
    Other fields as :class:`QDense`: per output channel ``weight_scale``, ``bias`` (input zero
    point folded in over the whole window), ``multiplier`` and ``shift``.
    """

    name: str
    inputs: tuple
    weight: np.ndarray
    weight_bits: int
    weight_scale: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    input: ActQuant
    output: ActQuant
    clamp_lo: int
    clamp_hi: int
    stride: tuple
    pads: tuple
    groups: int
    in_shape: tuple
    out_shape: tuple
    rounding: Rounding = Rounding.HALF_UP
    relu: bool = False
    negative_multiplier: np.ndarray = None
    bias_fraction: np.ndarray = None
    negative_fraction: np.ndarray = None

    op = "conv"

    def __post_init__(self):
        limit = (1 << (self.weight_bits - 1)) - 1
        assert np.abs(self.weight).max(initial=0) <= limit, "weights outside the narrow range"
        assert self.output.lo <= self.clamp_lo <= self.clamp_hi <= self.output.hi

    kernel = property(lambda self: tuple(self.weight.shape[1:3]))
    depthwise = property(lambda self: self.groups > 1)
    in_channels = property(lambda self: self.in_shape[2])
    out_channels = property(lambda self: self.weight.shape[0])
    act_bits = property(lambda self: self.input.bits)
    acc_bound = QDense.acc_bound
    acc_bits = QDense.acc_bits
    multiplier_bits = QDense.multiplier_bits

    @property
    def window(self):
        """Products per output value: ``kh · kw · in_channels / groups``."""
        return int(np.prod(self.weight.shape[1:]))

    @property
    def macs(self):
        return self.out_shape[0] * self.out_shape[1] * self.out_channels * self.window


@dataclasses.dataclass(frozen=True, eq=False)
class QPool:
    """A quantized pooling layer over an ``(H, W, C)`` code tensor.

    ``kind``: ``"max"`` (max of codes, pads hold the lowest code, ``output`` is ``input``),
    ``"avg"`` (pads hold the zero point) or ``"global_avg"`` (the window is the whole image).
    Average kinds requantize ``Σ (q − zp_x)`` with the scalars ``multiplier``/``shift``
    (``M / 2^n ≈ s_x / (s_y · window)``) and ``rounding`` (half to even for pools imported
    from quantized ONNX, whose ratio is often exactly ``1 / window``). ``Rounding.FLOAT32_ORT``
    (``kind="avg"`` only) instead computes onnxruntime's float32 ``QLinearAveragePool`` from the
    float32 ``input.scale``, ``output.scale`` and zero points; ``M / 2^n`` then only gives the
    hardware its first guess.
    """

    name: str
    inputs: tuple
    kind: str
    kernel: tuple
    stride: tuple
    pads: tuple
    in_shape: tuple
    out_shape: tuple
    input: ActQuant
    output: ActQuant
    multiplier: int = 1
    shift: int = 0
    clamp_lo: int = None
    clamp_hi: int = None
    rounding: Rounding = Rounding.HALF_UP
    relu: bool = False

    def __post_init__(self):
        assert self.kind in ("max", "avg", "global_avg")
        assert self.kind != "max" or self.output == self.input
        if self.clamp_lo is None:
            object.__setattr__(self, "clamp_lo", self.output.lo)
        if self.clamp_hi is None:
            object.__setattr__(self, "clamp_hi", self.output.hi)

    @property
    def op(self):
        return f"{self.kind}pool"

    act_bits = property(lambda self: self.input.bits)

    @property
    def window(self):
        return self.kernel[0] * self.kernel[1]

    @property
    def acc_bound(self):
        """The largest ``|Σ (q − zp_x)|`` over a window (0 for max pooling)."""
        if self.kind == "max":
            return 0
        return self.window * max(self.input.hi - self.input.zero_point,
                                 self.input.zero_point - self.input.lo)

    acc_bits = property(lambda self: self.acc_bound.bit_length() + 1)

    @property
    def macs(self):
        return 0


@dataclasses.dataclass(frozen=True, eq=False)
class QAdd:
    """A quantized elementwise add of two tensors of ``shape``:
    ``q_y = clamp(zp_y + rshift_round((q_a − zp_a)·M_a + (q_b − zp_b)·M_b, n), lo, hi)``."""

    name: str
    inputs: tuple
    shape: tuple
    input_a: ActQuant
    input_b: ActQuant
    output: ActQuant
    multiplier_a: int
    multiplier_b: int
    shift: int
    clamp_lo: int
    clamp_hi: int
    rounding: Rounding = Rounding.HALF_UP
    relu: bool = False

    op = "add"

    @property
    def input(self):
        return self.input_a

    act_bits = property(lambda self: max(self.input_a.bits, self.input_b.bits))

    @property
    def acc_bound(self):
        def span(quant):
            return max(quant.hi - quant.zero_point, quant.zero_point - quant.lo)
        return span(self.input_a) * self.multiplier_a + span(self.input_b) * self.multiplier_b

    acc_bits = property(lambda self: self.acc_bound.bit_length() + 1)

    @property
    def macs(self):
        return 0


@dataclasses.dataclass(frozen=True, eq=False)
class QConcat:
    """The concatenation of ``inputs`` along the channels (the last axis of ``shape``, the
    output's). Input ``i`` has ``channels[i]`` channels and quantization ``input_quants[i]``;
    where that is the output's, its codes pass unchanged (``multipliers[i] = 0`` marks it),
    else ``clamp(zp_y + rshift_round((q − zp_i) · multipliers[i], shift), lo, hi)``."""

    name: str
    inputs: tuple
    shape: tuple
    channels: tuple
    input_quants: tuple
    output: ActQuant
    multipliers: tuple
    shift: int
    clamp_lo: int
    clamp_hi: int
    rounding: Rounding = Rounding.HALF_UP
    relu: bool = False

    op = "concat"

    def __post_init__(self):
        assert len(self.inputs) == len(self.channels) == len(self.input_quants) == len(
            self.multipliers) >= 2
        assert sum(self.channels) == self.shape[-1]

    @property
    def input(self):
        return self.input_quants[0]

    def passes(self, index):
        """Whether input ``index``'s codes pass unchanged."""
        return self.multipliers[index] == 0

    act_bits = property(lambda self: max(quant.bits for quant in self.input_quants))

    @property
    def acc_bound(self):
        return max([abs(quant.hi - quant.zero_point) * m + abs(quant.lo - quant.zero_point) * m
                    for quant, m in zip(self.input_quants, self.multipliers)] + [0])

    acc_bits = property(lambda self: max(self.acc_bound.bit_length() + 1, self.output.bits))

    macs = 0


@dataclasses.dataclass(frozen=True, eq=False)
class QUpsample:
    """An ``(H, W, C)`` code image enlarged by ``factor``: pixels repeated (``"nearest"``) or the
    zero point between them (``"zeros"``); codes pass unchanged (``output`` is ``input``)."""

    name: str
    inputs: tuple
    factor: tuple
    mode: str
    in_shape: tuple
    out_shape: tuple
    input: ActQuant
    output: ActQuant
    relu: bool = False

    op = "upsample"

    def __post_init__(self):
        assert self.output == self.input and self.mode in ("nearest", "zeros")

    act_bits = property(lambda self: self.input.bits)
    acc_bits = property(lambda self: self.input.bits)

    macs = 0


# The widest input code a lookup table takes: 2^12 entries per lane.
MAX_TABLE_BITS = 12


@dataclasses.dataclass(frozen=True, eq=False)
class QTable:
    """An elementwise lookup table over a tensor of ``shape``: ``q_y = table[q_x − input.lo]``.

    ``table`` (int64, ``2^input.bits`` entries) was computed once from the float activation
    ``function(x; *params)`` (:mod:`hwgen.activations`):
    ``table[i] = clamp(output.quantize(f(input.dequantize(input.lo + i))), clamp_lo, clamp_hi)``;
    the reference and the hardware's ROM use it as is.
    """

    name: str
    inputs: tuple
    shape: tuple
    function: str
    params: tuple
    table: np.ndarray
    input: ActQuant
    output: ActQuant
    clamp_lo: int
    clamp_hi: int
    relu: bool = False

    op = "activation"

    def __post_init__(self):
        assert self.input.bits <= MAX_TABLE_BITS
        assert self.table.shape == (1 << self.input.bits,)
        assert self.table.min() >= self.clamp_lo and self.table.max() <= self.clamp_hi

    act_bits = property(lambda self: self.input.bits)
    acc_bits = property(lambda self: self.output.bits)

    macs = 0


@dataclasses.dataclass(frozen=True, eq=False)
class QArgMax:
    """The index of the largest code of a vector of ``in_features`` codes, the first on a tie;
    its ``output`` is an unsigned code of scale 1 (the class index)."""

    name: str
    inputs: tuple
    in_features: int
    input: ActQuant
    output: ActQuant
    relu: bool = False

    op = "argmax"

    def __post_init__(self):
        assert not self.output.signed and (1 << self.output.bits) >= self.in_features

    act_bits = property(lambda self: self.input.bits)
    acc_bits = property(lambda self: self.input.bits)

    macs = 0


def argmax_quant(in_features):
    """The output quantization of an argmax over ``in_features`` classes: unsigned, scale 1,
    wide enough for the largest index (at least 2 bits)."""
    return ActQuant(scale=1.0, zero_point=0, bits=max(2, (in_features - 1).bit_length()),
                    signed=False)


@dataclasses.dataclass(frozen=True, eq=False)
class QGraph:
    """A quantized network: ``layers`` in topological order; the first consumes the graph input
    ``input_name`` of ``input_shape`` (``(features,)`` or ``(H, W, C)``, with user ``layout``
    ``"HWC"`` or ``"CHW"``); the last is the output."""

    name: str
    input: ActQuant
    layers: tuple
    input_name: str = "input"
    input_shape: tuple = None
    layout: str = "HWC"
    notes: tuple = ()
    removed_outputs: tuple = ()

    # ``notes``, ``removed_outputs``: what the importer changed on the way in (see
    # :attr:`hwgen.graph.Graph.notes`).

    def __post_init__(self):
        if self.input_shape is None:
            object.__setattr__(self, "input_shape", (self.layers[0].in_features,))

    @property
    def output(self):
        return self.layers[-1].output

    @property
    def in_features(self):
        return int(np.prod(self.input_shape))

    @property
    def output_shape(self):
        return layer_shape(self.layers[-1])

    @property
    def out_features(self):
        return int(np.prod(self.output_shape))

    @property
    def macs(self):
        return sum(layer.macs for layer in self.layers)

    def consumers(self, name):
        return [layer for layer in self.layers if name in layer.inputs]

    def quant_of(self, name):
        """The quantization of tensor ``name`` (the graph input or a layer's output)."""
        return self.input if name == self.input_name else self[name].output

    def shape_of(self, name):
        return self.input_shape if name == self.input_name else layer_shape(self[name])

    def input_codes(self, x):
        """User float inputs ``(N, *user_shape)`` → int64 codes ``(N, in_features)`` in stream
        (HWC) order."""
        x = np.asarray(x, dtype=np.float64)
        if self.layout != "HWC":
            x = to_stream_order(x, self.input_shape, self.layout, self.name)
        elif x.shape == tuple(self.input_shape):
            x = x[None]
        if x.ndim < 2 or int(np.prod(x.shape[1:])) != self.in_features:
            shape = ", ".join(map(str, self.input_shape))
            raise HwgenError(f"model {self.name!r} takes inputs of shape (N, {shape}), "
                             f"not {x.shape}")
        return self.input.quantize(x.reshape(len(x), self.in_features))

    def __getitem__(self, name):
        for candidate in dict.fromkeys((name, module_name(name))):
            for layer in self.layers:
                if layer.name == candidate:
                    return layer
        raise HwgenError(f"no quantized layer named {name!r}; layers: "
                         f"{', '.join(layer.name for layer in self.layers)}")

    def __repr__(self):
        rows = [f"QGraph {self.name!r}: input {self.input} shape {self.input_shape}",
                f"  {'layer':<16} {'op':<14} {'out shape':>12} {'bits':>7} {'acc':>4}  output"]
        for layer in self.layers:
            weight = f"w{layer.weight_bits}" if hasattr(layer, "weight_bits") else ""
            bits = f"{weight}a{layer.act_bits}"
            relu = " relu" if layer.relu else ""
            shape = "x".join(map(str, layer_shape(layer)))
            op = describe(layer.function, layer.params) if layer.op == "activation" else layer.op
            rows.append(f"  {layer.name:<16} {op:<14} {shape:>12} {bits:>7} "
                        f"{layer.acc_bits:>4}  {layer.output}{relu}")
        return "\n".join(rows)

    def table(self):
        """One row per quantized layer (op, output shape, bits, accumulator width, output
        quantization) as a pandas DataFrame."""
        from .notebook import frame
        rows = []
        for layer in self.layers:
            weight = f"w{layer.weight_bits}" if hasattr(layer, "weight_bits") else ""
            op = describe(layer.function, layer.params) if layer.op == "activation" else layer.op
            rows.append({"layer": layer.name, "op": op + (" relu" if layer.relu else ""),
                         "shape": "×".join(map(str, layer_shape(layer))),
                         "bits": f"{weight}a{layer.act_bits}", "acc_bits": layer.acc_bits,
                         "output": str(layer.output), "macs": layer.macs})
        return frame(rows)

    def _repr_html_(self):
        from .notebook import frame_html
        return frame_html(self.table(), f"QGraph {self.name!r}: input {self.input} shape "
                                        f"{self.input_shape}")


def add_argmax(qgraph, name="argmax"):
    """``qgraph`` with an argmax over its output vector appended (as the layer ``name``,
    made unique)."""
    shape = qgraph.output_shape
    if len(shape) != 1 and tuple(shape[:-1]) != (1, 1):
        raise HwgenError(f"an argmax needs a vector output, not {shape}")
    names = {layer.name for layer in qgraph.layers} | {qgraph.input_name}
    base, index = name, 0
    while name in names:
        index += 1
        name = f"{base}_{index}"
    last = qgraph.layers[-1]
    features = int(np.prod(shape))
    layer = QArgMax(name=name, inputs=(last.name,), in_features=features, input=last.output,
                    output=argmax_quant(features))
    return dataclasses.replace(qgraph, layers=qgraph.layers + (layer,))


def layer_shape(layer):
    """The output shape of a quantized layer."""
    if layer.op == "dense":
        return (layer.out_features,)
    if layer.op in ("add", "activation", "concat"):
        return tuple(layer.shape)
    if layer.op == "argmax":
        return (1,)
    return tuple(layer.out_shape)


# -- persistence ----------------------------------------------------------------------------------

_LAYER_TYPES = {cls.__name__: cls for cls in (QDense, QConv, QPool, QAdd, QTable, QArgMax,
                                               QConcat, QUpsample)}


def _to_json(value):
    if isinstance(value, ActQuant):
        return {"ActQuant": dataclasses.asdict(value)}
    if isinstance(value, Rounding):
        return {"Rounding": value.value}
    if isinstance(value, tuple):
        return {"tuple": [_to_json(v) for v in value]}
    if isinstance(value, np.integer):
        return int(value)
    return value


def _from_json(value):
    if isinstance(value, dict):
        (kind, content), = value.items()
        if kind == "ActQuant":
            return ActQuant(**content)
        if kind == "Rounding":
            return Rounding(content)
        return tuple(_from_json(v) for v in content)
    return value


def qgraph_to_arrays(qgraph):
    """``{name: array}`` holding all of ``qgraph`` (metadata as a JSON string under ``meta``)."""
    arrays, layers = {}, []
    for index, layer in enumerate(qgraph.layers):
        fields = {}
        for field in dataclasses.fields(layer):
            value = getattr(layer, field.name)
            if isinstance(value, np.ndarray):
                arrays[f"{index}.{field.name}"] = value
            else:
                fields[field.name] = _to_json(value)
        layers.append({"type": type(layer).__name__, "fields": fields})
    meta = {"name": qgraph.name, "input": _to_json(qgraph.input), "layers": layers,
            "input_name": qgraph.input_name, "input_shape": list(qgraph.input_shape),
            "layout": qgraph.layout, "notes": list(qgraph.notes),
            "removed_outputs": list(qgraph.removed_outputs)}
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    return arrays


def qgraph_from_arrays(arrays):
    """The inverse of :func:`qgraph_to_arrays`."""
    meta = json.loads(str(arrays["meta"]))
    layers = []
    for index, entry in enumerate(meta["layers"]):
        cls = _LAYER_TYPES[entry["type"]]
        fields = {name: _from_json(value) for name, value in entry["fields"].items()}
        for field in dataclasses.fields(cls):
            key = f"{index}.{field.name}"
            if key in arrays:
                fields[field.name] = np.asarray(arrays[key])
        layers.append(cls(**fields))
    return QGraph(name=meta["name"], input=_from_json(meta["input"]), layers=tuple(layers),
                  input_name=meta["input_name"], input_shape=tuple(meta["input_shape"]),
                  layout=meta["layout"], notes=tuple(meta.get("notes", ())),
                  removed_outputs=tuple(meta.get("removed_outputs", ())))
