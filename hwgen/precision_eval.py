"""How automatic bit allocation (:mod:`hwgen.precision`) scores a choice of bits: the search's
settings, the metric (top-1 against labels or the float model, or outputs close to a target) and
the evaluator that quantizes with given bits, ranges calibrated once, and counts the samples the
bit-exact integer reference gets right."""

import copy
import dataclasses
from pathlib import Path

import numpy as np

from .errors import HwgenError
from .precision_knapsack import _weighted_layers
from .qgraph import QGraph, check_bits
from .quantize import PreparedCalibration, load_calibration, quantize
from .reference import run_float, run_integer

__all__ = ["SearchSettings", "METRICS", "DEFAULT_CHOICES"]

DEFAULT_CHOICES = (2, 3, 4, 5, 6, 7, 8)
METRICS = ("auto", "top1", "close")


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """What a bit allocation searches and how it quantizes and scores (as :func:`quantize`)."""

    weight_choices: tuple = DEFAULT_CHOICES
    act_choices: tuple = DEFAULT_CHOICES
    base_bits: int = 8
    output_bits: int = 8
    calibration_method: str = "minmax"
    percentile: float = 99.99
    weight_granularity: str = "channel"
    metric: str = "auto"
    tolerance: float = 0.05

    def __post_init__(self):
        base_bits = check_bits(self.base_bits, "base bits")
        object.__setattr__(self, "base_bits", base_bits)
        for field in ("weight_choices", "act_choices"):
            choices = getattr(self, field)
            if isinstance(choices, int) or not choices:
                raise HwgenError(f"{field} must be a non-empty list of bit widths, "
                                 f"not {choices!r}")
            checked = {check_bits(bits, field) for bits in choices}
            above = sorted(bits for bits in checked if bits > base_bits)
            if above:
                raise HwgenError(f"{field} must not exceed the base bits {base_bits}, not "
                                 f"include {above}")
            # Highest first, so that of equal options the solver keeps the widest.
            object.__setattr__(self, field, tuple(sorted(checked | {base_bits}, reverse=True)))
        object.__setattr__(self, "output_bits", check_bits(self.output_bits, "output bits"))
        if self.metric not in METRICS:
            raise HwgenError(f"metric must be one of {', '.join(METRICS)}, not {self.metric!r}")
        if not self.tolerance > 0:
            raise HwgenError(f"tolerance must be positive, not {self.tolerance!r}")

    def to_json(self):
        return {field.name: (list(value) if isinstance(value, tuple) else value)
                for field in dataclasses.fields(self)
                for value in [getattr(self, field.name)]}


class _Metric:
    """Which samples a model output gets right: top-1 against labels or the float model's
    argmax, or outputs close to a target (see the module docstring)."""

    def __init__(self, kind, float_out, y, tolerance):
        samples, features = float_out.shape
        if kind == "auto":
            kind = "top1" if features > 1 else "close"
        if kind == "top1" and features < 2:
            raise HwgenError("the top1 metric needs a model with several outputs; this one has "
                             "one: use metric='close'")
        self.kind = kind
        if kind == "top1":
            self.target = float_out.argmax(axis=1) if y is None else _labels(y, samples,
                                                                            features)
            self.description = ("top-1 agreement with the float model" if y is None
                                else "top-1 accuracy against the labels")
            return
        self.target = float_out if y is None else _targets(y, samples, features)
        span = float(float_out.max() - float_out.min())
        self.limit = tolerance * (span if span > 0 else 1.0)
        self.description = (f"outputs within {tolerance:.0%} of the float output span of "
                            f"{'the float model' if y is None else 'the targets'}")

    def correct(self, outputs):
        """Per-sample booleans for real-valued outputs ``(N, features)``."""
        if self.kind == "top1":
            return outputs.argmax(axis=1) == self.target
        return np.all(np.abs(outputs - self.target) <= self.limit, axis=1)

    def subset(self, indices):
        """This metric for the samples ``indices`` only."""
        part = copy.copy(self)
        part.target = self.target[indices]
        return part

    def like(self, float_out, y, tolerance):
        """The same kind of metric for other samples; ``"close"`` keeps this limit, in output
        units, rather than one from their own span."""
        other = _Metric(self.kind, float_out, y, tolerance)
        if self.kind == "close":
            other.limit = self.limit
        return other


def _labels(y, samples, classes):
    y = np.asarray(y)
    if y.shape != (samples,):
        raise HwgenError(f"labels must have shape ({samples},), one per input, not {y.shape}")
    if not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0 or y.max() >= classes:
        raise HwgenError(f"labels must be class indices in 0..{classes - 1} (the model has "
                         f"{classes} outputs)")
    return y.astype(np.int64)


def _targets(y, samples, features):
    y = np.asarray(y, dtype=np.float64)
    if y.shape == (samples,) and features == 1:
        y = y[:, None]
    if y.shape != (samples, features):
        raise HwgenError(f"targets must have shape ({samples}, {features}), not {y.shape}")
    return y


def _load_samples(path, y):
    """Inputs from ``.npy``/``.npz`` (under ``x``) and, unless ``y`` is given, the labels an
    ``.npz`` holds under ``y``."""
    x = load_calibration(path, what="evaluation")
    if y is None and Path(path).suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            y = data["y"] if "y" in data.files else None
    return x, y


@dataclasses.dataclass(frozen=True)
class _Measurement:
    qgraph: QGraph
    correct: int
    noise: float


class _Evaluator:
    """Quantizes ``graph`` with given bits (ranges calibrated once) and counts the samples the
    integer reference gets right; remembers every configuration it measured."""

    def __init__(self, graph, x, y, calibration, settings):
        if isinstance(graph, QGraph):
            raise HwgenError(f"model {graph.name!r} is already quantized; bit allocation needs "
                             "the float model")
        self.graph, self.settings = graph, settings
        if isinstance(x, (str, Path)):
            x, y = _load_samples(x, y)
        self.x = np.asarray(x, dtype=np.float64)
        if self.x.ndim == 0 or len(self.x) == 0:
            raise HwgenError("bit allocation needs at least one evaluation input")
        self.prepared = PreparedCalibration(
            graph, self.x if calibration is None else calibration, settings.calibration_method,
            percentile=settings.percentile)
        float_out = run_float(graph, self.x)
        self.metric = _Metric(settings.metric, float_out.reshape(len(float_out), -1), y,
                              settings.tolerance)
        self.float_out = float_out.reshape(len(float_out), -1)
        self.float_correct = int(self.metric.correct(self.float_out).sum())
        self.float_power = max(float(np.var(self.float_out)), np.finfo(float).tiny)
        self._cache = {}
        base_qgraph = self._quantize(None)
        self.names = [layer.name for layer in base_qgraph.layers if layer.op != "maxpool"]
        self.weighted = [layer.name for layer in _weighted_layers(base_qgraph)]
        self.base = self.measure(self.config({}))

    @property
    def samples(self):
        return len(self.x)

    def subset(self, indices):
        """This evaluator on the samples ``indices`` only: the same ranges and metric."""
        part = copy.copy(self)
        part.x, part.float_out = self.x[indices], self.float_out[indices]
        part.metric = self.metric.subset(indices)
        part.float_correct = int(part.metric.correct(part.float_out).sum())
        part.float_power = max(float(np.var(part.float_out)), np.finfo(float).tiny)
        part._cache = {}
        part.base = part.measure(part.config({}))
        return part

    def config(self, changes):
        """Bits for every layer that takes bits: the base, with ``changes`` ``{name: (w, a)}``
        (pools and adds keep the base activation bits)."""
        base = self.settings.base_bits
        bits = {}
        for name in self.names:
            if name in self.weighted:
                weight, act = changes.get(name, (base, base))
                bits[name] = {"w": weight, "a": act}
            else:
                bits[name] = {"a": base}
        return bits

    def _quantize(self, bits):
        settings = self.settings
        if bits is None:
            bits = f"w{settings.base_bits}a{settings.base_bits}"
        return quantize(self.graph, self.prepared, bits, output_bits=settings.output_bits,
                        calibration_method=settings.calibration_method,
                        percentile=settings.percentile,
                        weight_granularity=settings.weight_granularity)

    def measure(self, bits):
        """Quantize with ``bits`` (from :meth:`config`), count the correct samples and the
        output noise. The integer run of a configuration measured before is not repeated (the
        quantization is: it is cheap, and keeping every QGraph would not be)."""
        qgraph = self._quantize(bits)
        key = tuple((name, entry.get("w"), entry["a"]) for name, entry in bits.items())
        if key not in self._cache:
            codes = run_integer(qgraph, qgraph.input_codes(self.x))
            outputs = qgraph.output.dequantize(codes)
            noise = float(np.mean((outputs - self.float_out) ** 2)) / self.float_power
            self._cache[key] = (int(self.metric.correct(outputs).sum()), noise)
        return _Measurement(qgraph, *self._cache[key])

    def percent(self, correct):
        return 100.0 * correct / self.samples


def _say(progress):
    return progress if progress is not None else (lambda line: None)
