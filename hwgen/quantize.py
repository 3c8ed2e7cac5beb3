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
import re
import warnings
from pathlib import Path

import numpy as np

from .errors import HwgenError, HwgenWarning
from .graph import module_name
from .activations import describe, evaluate
from .qgraph import (MAX_TABLE_BITS, ActQuant, QAdd, QArgMax, QConcat, QConv, QDense, QGraph,
                     QPool, QTable, QUpsample, argmax_quant, check_bits, qgraph_from_arrays, qgraph_to_arrays)
from .reference import Rounding, run_float

__all__ = [
    "ActQuant", "LayerBits", "QDense", "QGraph",
    "calibrate", "tensor_range", "load_calibration", "resolve_bits", "quantize",
    "PreparedCalibration",
    "scale_to_multiplier", "split_bias", "CALIBRATION_METHODS",
    "qgraph_to_arrays", "qgraph_from_arrays",
]

DEFAULT_BITS = "w8a8"
# Weights of one layer: 2^24 at 2 bits is 32 Mbit, more on-chip memory than most FPGAs have.
MAX_WEIGHTS = 1 << 24
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

def load_calibration(path, what="calibration"):
    """Read ``what`` inputs (float64) from ``.npy`` or from an ``.npz`` holding them under
    ``x``."""
    path = Path(path)
    if not path.is_file():
        raise HwgenError(f"{what} file {str(path)!r} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise HwgenError(f"cannot read {str(path)!r} as .npy/.npz: {error}") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if "x" not in data.files:
                raise HwgenError(f"{str(path)!r} must hold the inputs under 'x'; it holds "
                                 f"{', '.join(data.files) or 'nothing'}")
            try:
                data = data["x"]
            except ValueError as error:  # an object array, which allow_pickle=False refuses
                raise HwgenError(f"cannot read 'x' of {str(path)!r}: {error}; store a numeric "
                                 "array") from None
    if not np.issubdtype(data.dtype, np.number):
        raise HwgenError(f"{str(path)!r} must hold numbers, not {data.dtype}")
    return np.asarray(data, dtype=np.float64)


CALIBRATION_METHODS = ("minmax", "percentile", "mse")
_MSE_SAMPLES = 1 << 16         # values per tensor the MSE search looks at
_MSE_FRACTIONS = np.linspace(0.2, 1.0, 81)  # candidate ranges, as fractions of min/max


def calibrate(graph, x, method="minmax", *, percentile=99.99, bits=8):
    """Per-layer output ranges ``{name: (lo, hi)}`` of the float graph over the batch ``x``
    (inputs in the model's user layout, e.g. ``(N, C, H, W)`` for ONNX image models).

    ``method``: ``"minmax"`` (the extremes), ``"percentile"`` (the ``100 − percentile`` and
    ``percentile`` percentiles, which ignores outliers) or ``"mse"`` (the range, a fraction of
    min/max, whose ``bits``-bit quantization has the least mean squared error on the values;
    ``bits`` an int or a dict ``{name: bits}``).
    """
    values = _calibration_values(graph, x)
    return {name: tensor_range(v, method, percentile=percentile,
                               bits=bits.get(name, 8) if isinstance(bits, dict) else bits)
            for name, v in values.items()}


def tensor_range(values, method="minmax", *, percentile=99.99, bits=8):
    """The calibrated ``(lo, hi)`` of one tensor's ``values`` (see :func:`calibrate`)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if method == "minmax":
        return float(values.min()), float(values.max())
    if method == "percentile":
        if not 50 < percentile <= 100:
            raise HwgenError(f"percentile must be in (50, 100], not {percentile}")
        lo, hi = np.percentile(values, [100 - percentile, percentile])
        return float(lo), float(hi)
    if method == "mse":
        if values.size > _MSE_SAMPLES:
            values = np.random.default_rng(0).choice(values, _MSE_SAMPLES, replace=False)
        lo, hi = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
        if lo == hi:
            return lo, hi
        best, best_error = (lo, hi), np.inf
        for fraction in _MSE_FRACTIONS:
            quant = ActQuant.from_range(lo * fraction, hi * fraction, bits)
            error = np.mean((quant.dequantize(quant.quantize(values)) - values) ** 2)
            if error < best_error:
                best, best_error = (lo * fraction, hi * fraction), error
        return best
    raise HwgenError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, "
                     f"not {method!r}")


def _calibration_values(graph, x):
    """Every float layer's output over the calibration batch ``x``."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape == graph.user_shape:
        x = x[None]
    if len(x) == 0:
        raise HwgenError("calibration data is empty")
    if not np.all(np.isfinite(x)):
        raise HwgenError("calibration data contains NaN or infinity")
    if np.all(x == x.reshape(-1)[0]):
        warnings.warn(f"every calibration value is {x.reshape(-1)[0]:g}: the activation ranges "
                      "it gives are degenerate; calibrate with representative inputs",
                      HwgenWarning, stacklevel=3)
    try:
        return run_float(graph, x, keep=True)
    except HwgenError as error:
        raise HwgenError(f"calibration data: {error}") from None


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
    bits = {name if name in layer_names else module_name(name): entry
            for name, entry in bits.items()}
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

def _quantize_weights(weight, bits, granularity="channel"):
    """Symmetric narrow-range codes with one scale per output channel (axis 0), any rank; with
    ``granularity="tensor"`` one scale for all (repeated per channel)."""
    limit = (1 << (bits - 1)) - 1
    peak = np.abs(weight).reshape(len(weight), -1).max(axis=1)
    if granularity == "tensor":
        peak = np.full_like(peak, peak.max(initial=0))
    # A channel far below the layer's largest weights (a dead unit shrunk by weight decay) would
    # need a requantization ratio too small to represent; its scale is floored, which rounds its
    # negligible weights to zero. An all-zero layer gets scale 1: its codes are 0 regardless.
    floor = peak.max(initial=0) * 2.0 ** -_CHANNEL_SCALE_RANGE
    scale = np.maximum(peak, floor) / limit if floor > 0 else np.ones_like(peak)
    broadcast = scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    codes = np.clip(np.round(weight / broadcast), -limit, limit).astype(np.int64)
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




# -- quantization ---------------------------------------------------------------------------------

_REQUANT_OPS = ("dense", "conv", "avgpool", "global_avgpool", "add", "concat")  # requantize
_TABLE_OPS = ("activation",)           # lookup tables: new codes, a clamp of their own
_CODE_OPS = _REQUANT_OPS + _TABLE_OPS  # layers whose output has a quantization of its own
_WEIGHTED_OPS = ("dense", "conv")
_PASS_OPS = ("maxpool", "flatten", "upsample")  # codes pass through unchanged
_SHARED_OPS = ("maxpool", "upsample")   # quantized layers whose output shares the input's
_ACTIVATION_OPS = ("relu", "clip")      # fold into the clamp of the layer that produced them


class _Structure:
    """How the float graph maps onto quantized layers: which layer's clamp absorbs each
    activation, which tensor every layer reads, who consumes what."""

    def __init__(self, graph):
        self.graph = graph
        self.layers = graph.layers()
        self.input = self.layers[0]
        self.source = {self.input.name: self.input.name}  # float layer → tensor it carries
        self.activation = {}                               # requant layer → (lo, hi) real clamp
        self.slopes = {}        # dense/conv layer → the negative slopes folded into it
        self.range_source = {}  # such a layer → the float layer its range is measured on
        self.folded = set()     # the layers folded so
        for layer in self.layers[1:]:
            if layer.op in _ACTIVATION_OPS:
                self._fold(layer)
            elif self._fold_slopes(layer):
                pass
            elif layer.op == "prelu":
                raise HwgenError(f"prelu {layer.name!r} must follow a dense or conv layer that "
                                 "nothing else reads: its slopes fold into that layer's "
                                 "requantization")
            elif layer.op in _PASS_OPS or layer.op in _CODE_OPS or layer.op == "argmax":
                self.source[layer.name] = layer.name
                if layer.op in _CODE_OPS:
                    self.activation[layer.name] = (-np.inf, np.inf)
            else:
                raise HwgenError(f"layer {layer.name!r}: op {layer.op!r} cannot be quantized yet")
            if layer.op == "argmax" and self.graph.successors(layer.name):
                raise HwgenError(f"argmax {layer.name!r} must be the output of the model")
        self.qlayers = [layer for layer in self.layers
                        if self.makes_codes(layer) or layer.op in _SHARED_OPS + ("argmax",)]

    def makes_codes(self, layer):
        """Whether ``layer`` becomes a quantized layer with an output quantization of its own."""
        return layer.op in _CODE_OPS and layer.name not in self.folded

    def _fold_slopes(self, layer):
        """Fold a PReLU, or a LeakyReLU with a slope ≥ 0, into the dense or conv layer right
        before it (that nothing else reads): a two-slope requantization. Returns whether it
        did."""
        if layer.op == "prelu":
            slopes = layer.spec.slope
        elif layer.op == "activation" and layer.spec.function == "leaky_relu":
            slopes = np.full(layer.shape[-1], layer.spec.params[0])
        else:
            return False
        producer = self.graph[layer.inputs[0]]
        if (producer.op not in _WEIGHTED_OPS or producer.name in self.slopes
                or len(self.graph.successors(producer.name)) != 1 or np.any(slopes < 0)):
            return False
        self.slopes[producer.name] = slopes
        self.range_source[producer.name] = layer.name
        self.folded.add(layer.name)
        self.source[layer.name] = self.source[producer.name]
        return True

    def _fold(self, layer):
        """Fold a ReLU/Clip into the requantizing layer before it, looking through max-pools,
        flattens and upsamplings (which commute with a monotonic clamp; one that inserts zeros
        only with a clamp that keeps 0)."""
        lo, hi = (0.0, np.inf) if layer.op == "relu" else (layer.spec.lo, layer.spec.hi)
        producer = self.graph[layer.inputs[0]]
        if producer.op in ("prelu", "activation") and self.source.get(producer.name) in (
                self.slopes):
            producer = self.graph[self.source[producer.name]]  # slopes folded into it
        while True:
            if len(self.graph.successors(producer.name)) != 1:
                raise HwgenError(f"{layer.op} {layer.name!r}: its input {producer.name!r} has "
                                 "other consumers too, so it cannot be folded into a clamp")
            if producer.op in _CODE_OPS:
                break
            if producer.op not in _PASS_OPS + _ACTIVATION_OPS:
                raise HwgenError(f"{layer.op} {layer.name!r} must follow a dense, conv, pool or "
                                 f"add layer, not a layer of op {producer.op!r}")
            if producer.op == "upsample" and producer.spec.mode == "zeros" and not lo <= 0 <= hi:
                raise HwgenError(f"{layer.op} {layer.name!r} clamps to [{lo}, {hi}], which moves "
                                 f"the zeros {producer.name!r} inserts; it cannot fold into "
                                 "the layer before them")
            producer = self.graph[producer.inputs[0]]
        old_lo, old_hi = self.activation[producer.name]
        self.activation[producer.name] = (max(old_lo, lo), min(old_hi, hi))
        self.source[layer.name] = self.source[layer.inputs[0]]

    def tensor(self, name):
        """The quantized tensor (a quantized layer's name or the input) a float layer carries."""
        name = self.source[name]
        while name != self.input.name and self.graph[name].op == "flatten":
            name = self.source[self.graph[name].inputs[0]]
        return name

    def consumers(self, tensor):
        """The requantizing layers that read ``tensor`` (through max-pools and flattens)."""
        found = []
        for layer in self.layers:
            if self.makes_codes(layer) and any(self.tensor(i) == tensor for i in layer.inputs):
                found.append(layer)
            elif layer.op in _SHARED_OPS and self.tensor(layer.inputs[0]) == tensor:
                found += self.consumers(layer.name)
        return found

    def output(self):
        return self.tensor(self.graph.output_layer.name)


def _bits_names(structure):
    return [layer.name for layer in structure.layers if structure.makes_codes(layer)]


class PreparedCalibration:
    """Calibration inputs run through the float ``graph`` once, for many :func:`quantize` calls.

    :func:`quantize` takes an instance in place of the calibration inputs and then skips the
    float run; the range of every tensor is computed on first use and remembered (per bit width
    for ``"mse"``, whose range depends on it). Automatic bit allocation quantizes one model
    hundreds of times with different bits and the same ranges; the resulting
    :class:`QGraph` is identical to quantizing with the inputs themselves.

    Parameters
    ----------
    graph : Graph
    calibration : float array ``(N, *user_input_shape)``, or a path to ``.npy``/``.npz``.
    method, percentile : as in :func:`calibrate`.
    """

    def __init__(self, graph, calibration, method="minmax", *, percentile=99.99):
        if isinstance(calibration, (str, Path)):
            calibration = load_calibration(calibration)
        if method not in CALIBRATION_METHODS:
            raise HwgenError(f"calibration method must be one of "
                             f"{', '.join(CALIBRATION_METHODS)}, not {method!r}")
        self._graph = graph
        self._method = method
        self._percentile = percentile
        structure = _Structure(graph)
        self._activation = structure.activation
        self._range_source = structure.range_source
        self._values = _calibration_values(graph, calibration)
        self._ranges = {}

    @property
    def method(self):
        return self._method

    @property
    def percentile(self):
        return self._percentile

    def check(self, graph, method, percentile):
        """Raise :class:`HwgenError` unless this was prepared for ``graph`` with ``method`` and
        ``percentile``."""
        if graph is not self._graph:
            raise HwgenError(f"the calibration was prepared for model {self._graph.name!r}, "
                             f"not for this {graph.name!r} graph; prepare it for this one")
        if (method, percentile) != (self._method, self._percentile):
            raise HwgenError(f"the calibration was prepared with method {self._method!r} "
                             f"(percentile {self._percentile}), not {method!r} "
                             f"(percentile {percentile}); pass the same to quantize")

    def range(self, name, bits):
        """The calibrated ``(lo, hi)`` of float layer ``name``'s output for ``bits``-bit codes,
        measured after (and clipped to) the activation folded into that layer."""
        key = (name, bits) if self._method == "mse" else name
        if key not in self._ranges:
            act_lo, act_hi = self._activation.get(name, (-np.inf, np.inf))
            # The range of the values after the folded activation, which is what gets quantized.
            values = self._values[self._range_source.get(name, name)]
            lo, hi = tensor_range(np.clip(values, act_lo, act_hi), self._method,
                                  percentile=self._percentile, bits=bits)
            self._ranges[key] = (float(np.clip(lo, act_lo, act_hi)),
                                 float(np.clip(hi, act_lo, act_hi)))
        return self._ranges[key]


def quantize(graph, calibration, bits=None, *, output_bits=8, rounding=Rounding.HALF_UP,
             calibration_method="minmax", percentile=99.99, weight_granularity="channel"):
    """Quantize ``graph`` with activation ranges measured on ``calibration`` inputs.

    Parameters
    ----------
    graph : Graph
    calibration : float array ``(N, *user_input_shape)``, a path to ``.npy``/``.npz``, or a
        :class:`PreparedCalibration` of ``graph`` (prepared with the same method and percentile).
    bits : see :func:`resolve_bits`; layers that requantize (dense, conv, average pools, add)
        take bits; ``w`` applies to dense and conv layers only.
    output_bits : int
        Bits of the last layer's output codes.
    rounding : Rounding
        The requantization rounding of every layer.
    calibration_method : ``"minmax"`` (default), ``"percentile"`` or ``"mse"``
        How activation ranges come from the calibration values (see :func:`calibrate`);
        ``percentile`` is that method's upper percentile (default 99.99).
    weight_granularity : ``"channel"`` (default) or ``"tensor"``
        One weight scale per output channel, or one per layer.

    A tensor read by several layers gets the largest of their activation bits; a max-pool
    passes codes through, so its input and output share one quantization.
    """
    if isinstance(calibration, (str, Path)):
        calibration = load_calibration(calibration)
    structure = _Structure(graph)
    names = _bits_names(structure)
    if not any(graph[name].op in _WEIGHTED_OPS for name in names):
        raise HwgenError(f"model {graph.name!r} has no dense or conv layer to map onto hardware")
    for name in names:
        spec = graph[name].spec
        if graph[name].op in _WEIGHTED_OPS and spec.weight.size > MAX_WEIGHTS:
            raise HwgenError(f"layer {name!r} has {spec.weight.size:,} weights; hwgen keeps every "
                             f"weight on chip, and {MAX_WEIGHTS:,} per layer is already more "
                             "than any FPGA's block RAM holds")
    per_layer = resolve_bits(bits, names)
    explicit = bits if isinstance(bits, dict) else {}
    for name, entry in explicit.items():
        if graph[name].op not in _WEIGHTED_OPS and isinstance(entry, dict) and "w" in entry:
            raise HwgenError(f"layer {name!r} ({graph[name].op}) has no weights; give only 'a'")
    output_bits = check_bits(output_bits, "output bits")
    if weight_granularity not in ("channel", "tensor"):
        raise HwgenError(f"weight granularity must be 'channel' or 'tensor', not "
                         f"{weight_granularity!r}")
    if calibration_method not in CALIBRATION_METHODS:
        raise HwgenError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, "
                         f"not {calibration_method!r}")
    if isinstance(calibration, PreparedCalibration):
        calibration.check(graph, calibration_method, percentile)
        prepared = calibration
    else:
        prepared = PreparedCalibration(graph, calibration, calibration_method,
                                       percentile=percentile)

    def tensor_bits(tensor):
        users = structure.consumers(tensor)
        if tensor == structure.output() or not users:
            return max([output_bits] + [per_layer[u.name].act for u in users])
        return max(per_layer[u.name].act for u in users)

    clamped_range = prepared.range
    input_bits = tensor_bits(structure.input.name)
    quants = {structure.input.name: ActQuant.from_range(
        *clamped_range(structure.input.name, input_bits), input_bits)}
    layers = []
    for layer in structure.qlayers:
        inputs = tuple(structure.tensor(name) for name in layer.inputs)
        if layer.op in _SHARED_OPS:
            quants[layer.name] = quants[inputs[0]]
        elif layer.op == "argmax":
            quants[layer.name] = argmax_quant(int(np.prod(graph[layer.inputs[0]].shape)))
        else:
            # A tensor only a concat reads takes the concat's quantization, so the concat
            # passes its codes unchanged.
            target = layer.name
            while target != structure.output():
                users = structure.consumers(target)
                if len(users) != 1 or users[0].op != "concat":
                    break
                target = users[0].name
            bits_out = tensor_bits(target)
            quants[layer.name] = ActQuant.from_range(*clamped_range(target, bits_out), bits_out)
        qlayer = _QUANTIZERS[layer.op](
            layer, inputs, [quants[name] for name in inputs], quants[layer.name],
            structure.activation.get(layer.name), per_layer.get(layer.name), rounding, graph,
            weight_granularity)
        if layer.name in structure.slopes:
            qlayer = _with_slopes(qlayer, structure.slopes[layer.name])
        layers.append(qlayer)
    return QGraph(name=graph.name, input=quants[structure.input.name], layers=tuple(layers),
                  input_name=structure.input.name, input_shape=structure.input.shape,
                  layout=structure.input.spec.layout, notes=tuple(graph.notes),
                  removed_outputs=tuple(graph.removed_outputs))


def _clamp(output, activation):
    """Output code range after a folded activation ``(lo, hi)`` in real units."""
    lo, hi = activation if activation is not None else (-np.inf, np.inf)
    clamp_lo = output.lo if lo == -np.inf else max(output.lo, int(output.quantize(lo)))
    clamp_hi = output.hi if hi == np.inf else min(output.hi, int(output.quantize(hi)))
    return {"clamp_lo": clamp_lo, "clamp_hi": clamp_hi, "relu": lo >= 0}


def _weighted(layer, quant_in, output, bits, rounding, granularity):
    """The fields shared by dense and conv layers: codes, bias, requantization."""
    weight, weight_scale = _quantize_weights(layer.spec.weight, bits.weight, granularity)
    bias_scale = quant_in.scale * weight_scale
    units = np.round(layer.spec.bias / bias_scale)
    if not np.all(np.abs(units) < 2.0 ** 62):
        raise HwgenError(f"layer {layer.name!r}: a bias of {np.abs(layer.spec.bias).max():.3g} "
                         f"is {np.abs(units).max():.3g} accumulator steps "
                         f"({bias_scale.min():.3g}), beyond int64; the input or weight scale is "
                         "degenerate (check the calibration data)")
    bias = units.astype(np.int64)
    bias -= quant_in.zero_point * weight.reshape(len(weight), -1).sum(axis=1)
    try:
        multiplier, shift = scale_to_multiplier(bias_scale / output.scale)
    except HwgenError as error:
        raise HwgenError(f"layer {layer.name!r}: {error} (s_x·s_w / s_y; the output range "
                         "is far wider than the input's: check the calibration data)") from None
    return dict(weight=weight, weight_bits=bits.weight, weight_scale=weight_scale, bias=bias,
                multiplier=multiplier, shift=shift, rounding=rounding)


def _q_dense(layer, inputs, quant_in, output, activation, bits, rounding, graph, granularity):
    return QDense(name=layer.name, inputs=inputs, input=quant_in[0], output=output,
                  **_weighted(layer, quant_in[0], output, bits, rounding, granularity),
                  **_clamp(output, activation))


def _q_conv(layer, inputs, quant_in, output, activation, bits, rounding, graph, granularity):
    spec = layer.spec
    return QConv(name=layer.name, inputs=inputs, input=quant_in[0], output=output,
                 stride=spec.stride, pads=spec.pads, groups=spec.groups,
                 in_shape=graph[layer.inputs[0]].shape, out_shape=layer.shape,
                 **_weighted(layer, quant_in[0], output, bits, rounding, granularity),
                 **_clamp(output, activation))


def _q_pool(layer, inputs, quant_in, output, activation, bits, rounding, graph, granularity):
    spec, in_shape = layer.spec, graph[layer.inputs[0]].shape
    if layer.op == "maxpool":
        return QPool(name=layer.name, inputs=inputs, kind="max", kernel=spec.kernel,
                     stride=spec.stride, pads=spec.pads, in_shape=in_shape,
                     out_shape=layer.shape, input=quant_in[0], output=output)
    if layer.op == "global_avgpool":
        kind, kernel, stride, pads = "global_avg", in_shape[:2], (1, 1), (0, 0, 0, 0)
    else:
        kind, kernel, stride, pads = "avg", spec.kernel, spec.stride, spec.pads
    multiplier, shift = scale_to_multiplier(
        np.array([quant_in[0].scale / (output.scale * kernel[0] * kernel[1])]))
    return QPool(name=layer.name, inputs=inputs, kind=kind, kernel=tuple(kernel),
                 stride=stride, pads=pads, in_shape=in_shape, out_shape=layer.shape,
                 input=quant_in[0], output=output, multiplier=int(multiplier[0]),
                 shift=int(shift[0]), rounding=rounding, **_clamp(output, activation))


def _q_add(layer, inputs, quant_in, output, activation, bits, rounding, graph, granularity):
    ratios = np.array([quant_in[0].scale / output.scale, quant_in[1].scale / output.scale])
    _, shifts = scale_to_multiplier(ratios)
    shift = int(shifts.max())
    multiplier_a, multiplier_b = (int(m) for m in np.round(np.ldexp(ratios, shift)))
    return QAdd(name=layer.name, inputs=inputs, shape=layer.shape, input_a=quant_in[0],
                input_b=quant_in[1], output=output, multiplier_a=multiplier_a,
                multiplier_b=multiplier_b, shift=shift, rounding=rounding,
                **_clamp(output, activation))


def _with_slopes(layer, slopes):
    """``layer`` with a LeakyReLU/PReLU folded in: an ``acc < 0`` takes
    ``round(slope · s_x · s_w[c] / s_y · 2^n[c])`` instead of ``M[c]`` (and the bias fraction
    times the slope)."""
    ratio = layer.input.scale * layer.weight_scale / layer.output.scale
    negative = np.round(np.ldexp(slopes * ratio, layer.shift)).astype(np.int64)
    fraction = None
    if layer.bias_fraction is not None:
        fraction = np.round(layer.bias_fraction * slopes).astype(np.int64)
    return dataclasses.replace(layer, negative_multiplier=negative, negative_fraction=fraction)


def split_bias(units, ratio, shift):
    """A real bias in units of the accumulator's step, ``units`` (per channel), as the integer
    bias the accumulator starts from and the fraction the requantization adds to ``acc · M``
    (``round((units − round(units)) · ratio · 2^n)``, in units of ``2^−n`` output steps; ``None``
    when every fraction is 0, as for onnxruntime's int32 biases)."""
    units = np.asarray(units, dtype=np.float64)
    integer = np.round(units)
    fraction = np.round(np.ldexp((units - integer) * ratio, shift)).astype(np.int64)
    return integer.astype(np.int64), (fraction if np.any(fraction) else None)


def _q_concat(layer, inputs, quant_in, output, activation, bits, rounding, graph, granularity):
    differ = [quant != output for quant in quant_in]
    ratios = np.array([quant.scale / output.scale for quant in quant_in])
    shift, multipliers = 0, (0,) * len(quant_in)
    if any(differ):
        _, shifts = scale_to_multiplier(ratios[differ])
        shift = int(shifts.max())
        multipliers = tuple(int(np.round(np.ldexp(ratio, shift))) if change else 0
                            for ratio, change in zip(ratios, differ))
    channels = tuple(int(graph[name].shape[-1]) for name in layer.inputs)
    return QConcat(name=layer.name, inputs=inputs, shape=layer.shape, channels=channels,
                   input_quants=tuple(quant_in), output=output, multipliers=multipliers,
                   shift=shift, rounding=rounding, **_clamp(output, activation))


def _q_table(layer, inputs, quant_in, output, activation, bits, rounding, graph, granularity):
    spec, source = layer.spec, quant_in[0]
    if source.bits > MAX_TABLE_BITS:
        raise HwgenError(
            f"layer {layer.name!r} ({describe(spec.function, spec.params)}): its input has "
            f"{source.bits}-bit codes, but a lookup table takes at most {MAX_TABLE_BITS} bits "
            f"({1 << MAX_TABLE_BITS} entries per lane); give it fewer activation bits, "
            f"e.g. {{\"{layer.name}\": {{\"a\": 8}}}}")
    clamp = _clamp(output, activation)
    real = evaluate(spec.function, spec.params,
                    source.dequantize(np.arange(source.lo, source.hi + 1)))
    table = np.clip(output.quantize(real), clamp["clamp_lo"], clamp["clamp_hi"])
    return QTable(name=layer.name, inputs=inputs, shape=layer.shape, function=spec.function,
                  params=spec.params, table=table, input=source, output=output, **clamp)


def _q_upsample(layer, inputs, quant_in, output, activation, bits, rounding, graph,
                granularity):
    spec = layer.spec
    return QUpsample(name=layer.name, inputs=inputs, factor=spec.factor, mode=spec.mode,
                     in_shape=graph[layer.inputs[0]].shape, out_shape=layer.shape,
                     input=quant_in[0], output=quant_in[0])


def _q_argmax(layer, inputs, quant_in, output, activation, bits, rounding, graph, granularity):
    return QArgMax(name=layer.name, inputs=inputs,
                   in_features=int(np.prod(graph[layer.inputs[0]].shape)), input=quant_in[0],
                   output=output)


_QUANTIZERS = {"dense": _q_dense, "conv": _q_conv, "avgpool": _q_pool,
               "global_avgpool": _q_pool, "maxpool": _q_pool, "add": _q_add,
               "activation": _q_table, "argmax": _q_argmax, "concat": _q_concat,
               "upsample": _q_upsample}
