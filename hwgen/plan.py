"""Quantized graph → :class:`Plan`: the engine and folding of every layer, and the cycle model.

A dense layer runs on a MAC unit of ``pe`` output channels × ``simd`` input elements per cycle.
Folding is legal when ``pe`` divides ``out_features`` and ``simd`` divides ``in_features``; the
layer then takes ``(in_features / simd) · (out_features / pe)`` cycles per frame. An illegal
folding is rejected with the legal values, never replaced.

The default rule balances the pipeline: the largest layer gets about ``multipliers``
multipliers, and every other layer the fewest that keep it no slower than that layer.
"""

import dataclasses
import json
import math
import operator
import re
from pathlib import Path

from .errors import HwgenError

__all__ = ["Folding", "LayerPlan", "Plan", "make_plan", "parse_folding", "legal_folding",
           "divisors"]

DEFAULT_MULTIPLIERS = 32


def divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclasses.dataclass(frozen=True)
class Folding:
    """``pe`` output channels × ``simd`` input elements computed per cycle."""

    pe: int
    simd: int

    def __str__(self):
        return f"{self.pe}x{self.simd}"


@dataclasses.dataclass(frozen=True, eq=False)
class LayerPlan:
    """One layer's engine: the quantized layer, the engine kind and its folding."""

    layer: object
    engine: str
    folding: Folding

    @property
    def name(self):
        return self.layer.name

    @property
    def pe(self):
        return self.folding.pe

    @property
    def simd(self):
        return self.folding.simd

    @property
    def multipliers(self):
        return self.pe * self.simd

    @property
    def in_beats(self):
        """Input beats (of ``simd`` lanes) per frame."""
        return self.layer.in_features // self.simd

    @property
    def out_beats(self):
        """Output beats (of ``pe`` lanes) per frame."""
        return self.layer.out_features // self.pe

    @property
    def cycles(self):
        """Cycles per frame of the engine, in steady state without stalls."""
        return self.in_beats * self.out_beats


@dataclasses.dataclass(frozen=True, eq=False)
class Plan:
    """Every layer's engine, in stream order, and the pipeline's cycle model."""

    qgraph: object
    layers: tuple

    @property
    def name(self):
        return self.qgraph.name

    @property
    def in_lanes(self):
        """Input codes per beat on ``s_axis``: the first engine's ``simd``."""
        return self.layers[0].simd

    @property
    def out_lanes(self):
        """Output codes per beat on ``m_axis``: the last engine's ``pe``."""
        return self.layers[-1].pe

    @property
    def initiation_interval(self):
        """Predicted cycles between frames in steady state: the slowest engine (each engine
        consumes one beat and produces at most one per cycle, so its cycles bound its I/O)."""
        return max(layer.cycles for layer in self.layers)

    @property
    def bottleneck(self):
        return max(self.layers, key=lambda layer: layer.cycles).name

    @property
    def multipliers(self):
        return sum(layer.multipliers for layer in self.layers)

    @property
    def macs(self):
        return sum(layer.layer.macs for layer in self.layers)

    def __getitem__(self, name):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise HwgenError(f"no planned layer named {name!r}")

    def __repr__(self):
        rows = [f"Plan {self.name!r}: II {self.initiation_interval} cycles/frame, "
                f"{self.multipliers} multipliers, bottleneck {self.bottleneck}",
                f"  {'layer':<16} {'engine':<6} {'PExSIMD':>8} {'bits':>6} {'cycles':>7}"]
        for layer in self.layers:
            bits = f"w{layer.layer.weight_bits}a{layer.layer.act_bits}"
            rows.append(f"  {layer.name:<16} {layer.engine:<6} {str(layer.folding):>8} "
                        f"{bits:>6} {layer.cycles:>7}")
        return "\n".join(rows)


def legal_folding(layer, folding):
    """Validate ``folding`` (a Folding, ``(pe, simd)`` or ``"PExSIMD"``) for ``layer``."""
    if isinstance(folding, str):
        match = re.fullmatch(r"(\d+)x(\d+)", folding.strip())
        if not match:
            raise HwgenError(f"layer {layer.name!r}: folding must look like 'PExSIMD' "
                             f"(e.g. '4x8'), not {folding!r}")
        folding = tuple(int(group) for group in match.groups())
    if isinstance(folding, Folding):
        folding = (folding.pe, folding.simd)
    try:
        pe, simd = (operator.index(value) for value in folding)
    except (TypeError, ValueError):
        raise HwgenError(f"layer {layer.name!r}: folding must be (pe, simd), not {folding!r}")
    problems = []
    if pe < 1 or layer.out_features % pe:
        problems.append(f"pe={pe} must divide out_features={layer.out_features} "
                        f"(legal pe: {', '.join(map(str, divisors(layer.out_features)))})")
    if simd < 1 or layer.in_features % simd:
        problems.append(f"simd={simd} must divide in_features={layer.in_features} "
                        f"(legal simd: {', '.join(map(str, divisors(layer.in_features)))})")
    if problems:
        raise HwgenError(f"layer {layer.name!r}: illegal folding {pe}x{simd}: "
                         + "; ".join(problems))
    return Folding(pe, simd)


def _default_folding(layer, target_cycles):
    """The fewest multipliers that finish ``layer`` within ``target_cycles``; ties prefer wide
    ``simd`` (fewer accumulators)."""
    options = [Folding(pe, simd) for pe in divisors(layer.out_features)
               for simd in divisors(layer.in_features)]
    fast_enough = [f for f in options if layer.macs // (f.pe * f.simd) <= target_cycles]
    return min(fast_enough, key=lambda f: (f.pe * f.simd, -f.simd))


def parse_folding(spec):
    """``{"fc1": "4x8", ...}`` from a JSON file path, a dict, or ``"fc1=4x8,fc2=2x4"``."""
    if spec is None:
        return {}
    if isinstance(spec, dict):
        return dict(spec)
    text = str(spec)
    if text.endswith(".json"):
        try:
            loaded = json.loads(Path(text).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise HwgenError(f"cannot read folding file {text!r}: {error}") from None
        if not isinstance(loaded, dict):
            raise HwgenError(f"folding file {text!r} must map layer names to 'PExSIMD'")
        return loaded
    result = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise HwgenError(f"folding must look like 'fc1=4x8,fc2=2x4', not {text!r}")
        result[name.strip()] = value.strip()
    return result


def make_plan(qgraph, folding=None, *, multipliers=DEFAULT_MULTIPLIERS):
    """Plan ``qgraph``: user ``folding`` (see :func:`parse_folding`) where given, else the
    default rule sized so the largest layer has about ``multipliers`` multipliers."""
    folding = parse_folding(folding)
    names = [layer.name for layer in qgraph.layers]
    unknown = [name for name in folding if name not in names]
    if unknown:
        raise HwgenError(f"folding names {', '.join(map(repr, unknown))}, which match no layer; "
                         f"the layers are: {', '.join(names)}")
    multipliers = operator.index(multipliers)
    if multipliers < 1:
        raise HwgenError(f"multipliers must be positive, not {multipliers}")
    largest = max(qgraph.layers, key=lambda layer: layer.macs)
    pinned = {name: legal_folding(qgraph[name], value) for name, value in folding.items()}
    target = math.ceil(largest.macs / multipliers)
    if pinned:
        # Engines the user sized set the pace; the others need not be faster.
        target = max(target, max(qgraph[name].macs // f.pe // f.simd
                                 for name, f in pinned.items()))
    layers = tuple(
        LayerPlan(layer, "mac", pinned.get(layer.name) or _default_folding(layer, target))
        for layer in qgraph.layers)
    return Plan(qgraph, layers)
