"""Float graph → quantized graph (:class:`QGraph`): integer weights, per-layer bit widths,
integer bias and requantization parameters, following DESIGN.md's integer contract.

- Activations: per tensor, asymmetric; a tensor whose calibrated range has no negative values is
  unsigned with zero point 0, any other is signed with the zero point that makes 0.0 exact.
- Weights: symmetric, narrow range ``[−(2^(b−1)−1), 2^(b−1)−1]``, one scale per output channel.
- Bias: ``round(bias / (s_x · s_w[c])) − zp_x · Σ_k w[c,k]`` (input zero point folded in).
- Requantization: ``s_x · s_w[c] / s_y ≈ M[c] / 2^n[c]`` with ``2^15 ≤ M[c] < 2^16`` (or
  ``n[c] = 0``), so the relative error of the ratio is at most 2^−16.
- A ReLU that follows a dense layer folds into that layer's clamp.

A layer's ``act_bits`` are the bits of the activations it *consumes*, so its multipliers are
``weight_bits × act_bits``; the last layer's output has ``output_bits`` (default 8).
"""

import dataclasses
import json
import math
import operator
import re
from pathlib import Path

import numpy as np

from .errors import HwgenError
from .reference import Rounding, run_float

__all__ = [
    "ActQuant", "LayerBits", "QDense", "QGraph",
    "calibrate", "load_calibration", "resolve_bits", "quantize",
    "qgraph_to_arrays", "qgraph_from_arrays",
]

MIN_BITS, MAX_BITS = 2, 16
DEFAULT_BITS = "w8a8"
_MULTIPLIER_BITS = 16
_CHANNEL_SCALE_RANGE = 24  # log2 of the widest spread of per-channel weight scales


def _check_bits(bits, what):
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
        _check_bits(self.bits, "activation bits")
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
        bits = _check_bits(bits, "activation bits")
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


@dataclasses.dataclass(frozen=True)
class LayerBits:
    """The bit widths chosen for one layer: its weights and the activations it consumes."""

    weight: int
    act: int

    def __str__(self):
        return f"w{self.weight}a{self.act}"


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
        per_channel = np.abs(self.bias) + np.abs(self.weight).sum(axis=1) * max_code
        return int(per_channel.max(initial=0))

    @property
    def acc_bits(self):
        """Signed width that holds every accumulator value (and every partial dot product)."""
        return self.acc_bound.bit_length() + 1

    @property
    def multiplier_bits(self):
        return max(int(self.multiplier.max(initial=0)).bit_length(), 1)


@dataclasses.dataclass(frozen=True, eq=False)
class QGraph:
    """A quantized network: a chain of quantized layers from ``input`` to the last layer."""

    name: str
    input: ActQuant
    layers: tuple

    @property
    def output(self):
        return self.layers[-1].output

    def __getitem__(self, name):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise HwgenError(f"no quantized layer named {name!r}; layers: "
                         f"{', '.join(layer.name for layer in self.layers)}")

    def __repr__(self):
        rows = [f"QGraph {self.name!r}: input {self.input}",
                f"  {'layer':<16} {'op':<6} {'shape':>9} {'bits':>6} {'acc':>4}  output"]
        for layer in self.layers:
            shape = f"{layer.in_features}→{layer.out_features}"
            bits = f"w{layer.weight_bits}a{layer.act_bits}"
            relu = " relu" if layer.relu else ""
            rows.append(f"  {layer.name:<16} {layer.op:<6} {shape:>9} {bits:>6} "
                        f"{layer.acc_bits:>4}  {layer.output}{relu}")
        return "\n".join(rows)


# -- calibration ----------------------------------------------------------------------------------

def load_calibration(path):
    """Read calibration inputs from ``.npy`` or from an ``.npz`` holding them under ``x``."""
    path = Path(path)
    if not path.is_file():
        raise HwgenError(f"calibration file {str(path)!r} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise HwgenError(f"cannot read {str(path)!r} as .npy/.npz: {error}") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if "x" not in data.files:
                raise HwgenError(f"{str(path)!r} must hold the inputs under 'x'; it holds "
                                 f"{', '.join(data.files) or 'nothing'}")
            data = data["x"]
    if not np.issubdtype(data.dtype, np.number):
        raise HwgenError(f"{str(path)!r} must hold numbers, not {data.dtype}")
    return np.asarray(data, dtype=np.float64)


def calibrate(graph, x):
    """Per-layer output ranges ``{name: (min, max)}`` of the float graph over the batch ``x``."""
    x = np.asarray(x, dtype=np.float64)
    shape = graph.input_layer.shape
    if x.shape == shape:
        x = x[None]
    if x.shape[1:] != shape or len(x) == 0:
        raise HwgenError(f"calibration data must have shape (N, {', '.join(map(str, shape))}), "
                         f"not {x.shape}")
    if not np.all(np.isfinite(x)):
        raise HwgenError("calibration data contains NaN or infinity")
    values = run_float(graph, x, keep=True)
    return {name: (float(v.min()), float(v.max())) for name, v in values.items()}


# -- bit widths -----------------------------------------------------------------------------------

_UNIFORM = re.compile(r"w(\d+)a(\d+)")


def _parse_uniform(text):
    match = _UNIFORM.fullmatch(text.strip().lower())
    if not match:
        raise HwgenError(f"bits must look like 'w8a8' (weights 8, activations 8), not {text!r}")
    weight, act = (int(group) for group in match.groups())
    return LayerBits(_check_bits(weight, "weight bits"), _check_bits(act, "activation bits"))


def resolve_bits(bits, layer_names, default=DEFAULT_BITS):
    """Per-layer :class:`LayerBits` for ``layer_names``.

    ``bits`` is ``None`` (the default for all), a uniform spec such as ``"w4a8"``, a
    :class:`LayerBits`, a path to a JSON file, inline JSON, or a dict mapping layer name →
    ``{"w": 4, "a": 6}`` (or ``"w4a6"``). Layers a mapping leaves out get ``default``; a name
    that matches no layer is an error.
    """
    if bits is None:
        bits = default
    if isinstance(bits, LayerBits):
        return {name: bits for name in layer_names}
    if isinstance(bits, Path) or (isinstance(bits, str) and bits.endswith(".json")):
        path = Path(bits)
        try:
            bits = json.loads(path.read_text())
        except OSError as error:
            raise HwgenError(f"cannot read bits file {str(path)!r}: {error.strerror}") from None
        except json.JSONDecodeError as error:
            raise HwgenError(f"bits file {str(path)!r} is not valid JSON: {error}") from None
        if not isinstance(bits, dict):
            raise HwgenError(f"bits file {str(path)!r} must map layer names to bits")
    if isinstance(bits, str) and bits.lstrip().startswith("{"):
        try:
            bits = json.loads(bits)
        except json.JSONDecodeError as error:
            raise HwgenError(f"bits {bits!r} is not valid JSON: {error}") from None
    if isinstance(bits, str):
        uniform = _parse_uniform(bits)
        return {name: uniform for name in layer_names}
    if not isinstance(bits, dict):
        raise HwgenError(f"bits must be 'wXaY', a dict or a JSON file, not {bits!r}")
    unknown = [name for name in bits if name not in layer_names]
    if unknown:
        raise HwgenError(f"bits name {', '.join(map(repr, unknown))}, which match no layer; "
                         f"the layers are: {', '.join(layer_names)}")
    fallback = _parse_uniform(default)
    resolved = {}
    for name in layer_names:
        entry = bits.get(name, {})
        if isinstance(entry, str):
            resolved[name] = _parse_uniform(entry)
            continue
        if not isinstance(entry, dict) or set(entry) - {"w", "a"}:
            raise HwgenError(f"layer {name!r}: bits must be like {{\"w\": 4, \"a\": 6}}, "
                             f"not {entry!r}")
        resolved[name] = LayerBits(
            _check_bits(entry.get("w", fallback.weight), f"layer {name!r}: weight bits"),
            _check_bits(entry.get("a", fallback.act), f"layer {name!r}: activation bits"))
    return resolved


# -- quantization ---------------------------------------------------------------------------------

def _quantize_weights(weight, bits):
    limit = (1 << (bits - 1)) - 1
    peak = np.abs(weight).max(axis=1)
    # A channel far below the layer's largest weights (a dead unit shrunk by weight decay) would
    # need a requantization ratio too small to represent; its scale is floored, which rounds its
    # negligible weights to zero. An all-zero layer gets scale 1: its codes are 0 regardless.
    floor = peak.max(initial=0) * 2.0 ** -_CHANNEL_SCALE_RANGE
    scale = np.maximum(peak, floor) / limit if floor > 0 else np.ones_like(peak)
    codes = np.clip(np.round(weight / scale[:, None]), -limit, limit).astype(np.int64)
    return codes, scale


def scale_to_multiplier(ratio):
    """``ratio ≈ M / 2^n`` per element with ``2^15 ≤ M < 2^16`` (or ``n = 0``): int64 arrays."""
    ratio = np.asarray(ratio, dtype=np.float64)
    assert np.all(ratio > 0) and np.all(np.isfinite(ratio))
    exponent = np.floor(np.log2(ratio)).astype(np.int64)
    shift = np.maximum(_MULTIPLIER_BITS - 1 - exponent, 0)
    if np.any(shift > 62):
        raise HwgenError(f"a requantization ratio of {ratio.min():.3g} is too small to represent")
    multiplier = np.round(np.ldexp(ratio, shift)).astype(np.int64)
    return multiplier, shift


def _dense_chain(graph):
    """``[(dense_layer, relu_follows)]`` in order, for a chain input → (dense [relu])+."""
    layers = graph.layers()
    if layers[0].op != "input":
        raise HwgenError(f"model {graph.name!r} must start with its input")
    chain, previous = [], layers[0]
    for layer in layers[1:]:
        if layer.inputs != (previous.name,) or graph.successors(previous.name) != [layer.name]:
            raise HwgenError(f"layer {layer.name!r}: only chains of layers are supported yet "
                             f"(it does not simply follow {previous.name!r})")
        if layer.op == "dense":
            chain.append([layer, False])
        elif layer.op == "relu":
            if not chain or previous.op != "dense":
                raise HwgenError(f"relu {layer.name!r} must follow a dense layer, "
                                 f"not a layer of op {previous.op!r}")
            chain[-1][1] = True
        else:
            raise HwgenError(f"layer {layer.name!r}: op {layer.op!r} cannot be quantized yet")
        previous = layer
    if not chain:
        raise HwgenError(f"model {graph.name!r} has no dense layer to map onto hardware")
    return [tuple(item) for item in chain]


def quantize(graph, calibration, bits=None, *, output_bits=8, rounding=Rounding.HALF_UP):
    """Quantize ``graph`` with activation ranges measured on ``calibration`` inputs.

    Parameters
    ----------
    graph : Graph
    calibration : array ``(N, *input_shape)`` of float inputs, or a path to ``.npy``/``.npz``.
    bits : see :func:`resolve_bits`.
    output_bits : int
        Bits of the last layer's output codes.
    rounding : Rounding
        The requantization rounding of every layer.
    """
    if isinstance(calibration, (str, Path)):
        calibration = load_calibration(calibration)
    ranges = calibrate(graph, calibration)
    chain = _dense_chain(graph)
    names = [dense.name for dense, _ in chain]
    per_layer = resolve_bits(bits, names)
    output_bits = _check_bits(output_bits, "output bits")

    act_bits = [per_layer[name].act for name in names[1:]] + [output_bits]
    current = ActQuant.from_range(*ranges[graph.input_layer.name], per_layer[names[0]].act)
    model_input = current
    layers = []
    for (dense, relu), out_bits in zip(chain, act_bits):
        produced = graph.successors(dense.name)[0] if relu else dense.name
        output = ActQuant.from_range(*ranges[produced], out_bits)
        weight, weight_scale = _quantize_weights(dense.spec.weight, per_layer[dense.name].weight)
        bias_scale = current.scale * weight_scale
        bias = np.round(dense.spec.bias / bias_scale).astype(np.int64)
        bias -= current.zero_point * weight.sum(axis=1)
        multiplier, shift = scale_to_multiplier(bias_scale / output.scale)
        layers.append(QDense(
            name=dense.name, inputs=(layers[-1].name if layers else graph.input_layer.name,),
            weight=weight, weight_bits=per_layer[dense.name].weight, weight_scale=weight_scale,
            bias=bias, multiplier=multiplier, shift=shift, input=current, output=output,
            clamp_lo=max(output.lo, output.zero_point) if relu else output.lo,
            clamp_hi=output.hi, rounding=rounding, relu=relu))
        current = output
    return QGraph(name=graph.name, input=model_input, layers=tuple(layers))


# -- persistence ----------------------------------------------------------------------------------

def _act_to_dict(quant):
    return dataclasses.asdict(quant)


def qgraph_to_arrays(qgraph):
    """``{name: array}`` holding all of ``qgraph`` (metadata as a JSON string under ``meta``)."""
    arrays = {}
    meta = {"name": qgraph.name, "input": _act_to_dict(qgraph.input), "layers": []}
    for index, layer in enumerate(qgraph.layers):
        for field in ("weight", "weight_scale", "bias", "multiplier", "shift"):
            arrays[f"{index}.{field}"] = getattr(layer, field)
        meta["layers"].append({
            "name": layer.name, "op": layer.op, "inputs": list(layer.inputs),
            "weight_bits": layer.weight_bits, "input": _act_to_dict(layer.input),
            "output": _act_to_dict(layer.output), "clamp_lo": layer.clamp_lo,
            "clamp_hi": layer.clamp_hi, "rounding": layer.rounding.value, "relu": layer.relu})
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    return arrays


def qgraph_from_arrays(arrays):
    """The inverse of :func:`qgraph_to_arrays`."""
    meta = json.loads(str(arrays["meta"]))
    layers = []
    for index, entry in enumerate(meta["layers"]):
        fields = {field: np.asarray(arrays[f"{index}.{field}"])
                  for field in ("weight", "weight_scale", "bias", "multiplier", "shift")}
        layers.append(QDense(
            name=entry["name"], inputs=tuple(entry["inputs"]), weight_bits=entry["weight_bits"],
            input=ActQuant(**entry["input"]), output=ActQuant(**entry["output"]),
            clamp_lo=entry["clamp_lo"], clamp_hi=entry["clamp_hi"],
            rounding=Rounding(entry["rounding"]), relu=entry["relu"], **fields))
    return QGraph(name=meta["name"], input=ActQuant(**meta["input"]), layers=tuple(layers))
