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
from .qgraph import (ActQuant, QAdd, QConv, QDense, QGraph, QPool, check_bits,
                     qgraph_from_arrays, qgraph_to_arrays)
from .reference import Rounding, run_float

__all__ = [
    "ActQuant", "LayerBits", "QDense", "QGraph",
    "calibrate", "load_calibration", "resolve_bits", "quantize",
    "qgraph_to_arrays", "qgraph_from_arrays",
]

DEFAULT_BITS = "w8a8"
_MULTIPLIER_BITS = 16
_CHANNEL_SCALE_RANGE = 24  # log2 of the widest spread of per-channel weight scales


@dataclasses.dataclass(frozen=True)
class LayerBits:
    """The bit widths chosen for one layer: its weights and the activations it consumes."""

    weight: int
    act: int

    def __str__(self):
        return f"w{self.weight}a{self.act}"


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
    return LayerBits(check_bits(weight, "weight bits"), check_bits(act, "activation bits"))


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
            check_bits(entry.get("w", fallback.weight), f"layer {name!r}: weight bits"),
            check_bits(entry.get("a", fallback.act), f"layer {name!r}: activation bits"))
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
    output_bits = check_bits(output_bits, "output bits")

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
