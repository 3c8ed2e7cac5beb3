"""Quantized graph → :class:`Plan`: the engine and folding of every layer, and the cycle model.

Every layer is its own engine; a :class:`Folding` ``(pe, simd)`` sizes it:

- ``mac`` (dense): ``pe`` output channels × ``simd`` input elements per cycle; legal when
  ``pe | out_features`` and ``simd | in_features``.
- ``systolic`` (conv, groups = 1): ``pe`` rows (output channels) × ``simd`` columns (window
  elements) per cycle; legal when ``pe | out_channels`` and ``simd | kh·kw·C``.
- ``depthwise`` (depthwise conv): ``pe`` channels per cycle, ``simd = 1``; ``pe | C``.
- ``unrolled`` (dense and conv, on request: ``make_plan(unroll=...)`` or the pin
  ``"unrolled"``; ``unroll="auto"`` lets the board search choose it): every weight a constant
  in the logic (:mod:`hwgen.hw.unrolled`), the whole input vector (a conv: the whole window)
  per beat, one vector (one output pixel) per cycle; its pipeline registers follow the clock
  (``clock``, default the board's target).
- ``pool`` (max/average pool), ``gap`` (global average pool), ``add``: ``pe = simd`` lanes
  (channels per cycle); ``lanes | C``.

Windowed layers (conv, depthwise, pool) also read their input ``in_lanes`` channels per beat
(``in_lanes | C``). Cycles per frame, in steady state without stalls:

- unrolled: 1 (dense), or the pad unit's and window's pace ``window`` (conv: one window per
  beat);
- mac: ``(in / simd) · (out / pe)``;
- systolic: ``max(P · (K / simd) · (out / pe), window)`` with ``P`` output pixels and
  ``K = kh·kw·C``;
- depthwise and pool: ``max(P · (C / pe) · kh · kw, window)``;
- ``window``, the pad unit's and sliding window's own pace: at least the padded image's beats
  ``Hp · Wp · C / in_lanes``, and per output row ``kw·C/in_lanes`` beats for its first pixel
  and ``min(sx, kw)·C/in_lanes`` for each further one (see :func:`_window_cycles`);
- gap and add: ``H · W · C / lanes``.

The pipeline's initiation interval is the slowest layer's cycles. An illegal folding is
rejected with the legal values, never replaced. The default rule balances the pipeline: the
layer with the most MACs gets about ``multipliers`` multipliers, and every other layer the
fewest resources that keep it no slower.

Each MAC unit, systolic array and depthwise engine also has a multiplier kind (:data:`KINDS`,
see :mod:`hwgen.packing`): ``dsp`` (the default rule's), ``dsp-packed`` (``pack`` products
sharing an activation per DSP; MAC units and systolic arrays) or ``lut``; a pin may name it
(``"systolic:6x5:lut"``). Its weight ROMs go where synthesis puts them (``weights="auto"``)
or into block RAM whatever their size (``"bram"``, :data:`WEIGHT_PLACES`; pin
``"systolic:6x5:lut:bram"``), which trades LUTs for block RAM.

With a ``board``, the rule instead maximizes throughput on that board (:mod:`hwgen.plan_board`):
it searches the achievable initiation intervals (a binary search; feasibility grows with the
interval), lets every unpinned layer take any folding, multiplier kind and weight placement
that meets the interval, and keeps the choice whose modelled resources (:func:`hwgen.cost.estimate`) fit
within ``max_utilization`` (default :func:`default_utilization`: 80 % of logic and DSPs, 95 %
of block RAM, all SPRAM) of every resource of the board and leave the most headroom. The
result is exact for the resource model: no shorter interval has a fitting plan. A model that
does not fit even at its smallest folding is an error naming the resources that run out and
by how much.
"""

import dataclasses
import json
import math
import operator
import re
from pathlib import Path

from .errors import DoesNotFit, HwgenError
from .graph import module_name
from . import plan_fifo
from .packing import DEFAULT_PORTS, DSP_PORTS, check_kind, max_pack, pack_groups, packing
from .plan_sequential import (SHARED_OPS, check_cut, check_sequential_pe, plan_units,
                              sequential_cycles, sequential_pes, share_for_board)
from .plan_unrolled import DEFAULT_CLOCK, levels, unrolled_names, with_levels

__all__ = ["Folding", "LayerPlan", "Plan", "make_plan", "parse_folding", "legal_folding",
           "divisors", "ENGINES", "KINDS", "multiplier_packing", "choose_pack",
           "DEFAULT_MAX_UTILIZATION", "DEFAULT_MEMORY_UTILIZATION", "DEFAULT_CLOCK",
           "default_utilization", "WEIGHT_PLACES", "ROM_ENGINES"]

DEFAULT_MULTIPLIERS = 32

# The share of each resource a board plan may use by default: place and route needs headroom
# in logic (a digits CNN sized to 150 of 156 MULT18X18D closed at 110 MHz on ULX3S, its DSP
# outputs routed across the die); block RAM is sites of its own, so it keeps only a margin
# for the model's error (MLPerf Tiny's DS-CNN on the iCEBreaker: 29 of 30 EBRs placed and
# routed), and SPRAM, which hwgen instantiates itself and counts exactly, none.
# ``max_utilization`` overrides it.
DEFAULT_MAX_UTILIZATION = 0.8
DEFAULT_MEMORY_UTILIZATION = {"bram": 0.95, "spram": 1.0}


def default_utilization(resource):
    """The share of ``resource`` a board plan may use unless told otherwise."""
    return DEFAULT_MEMORY_UTILIZATION.get(resource, DEFAULT_MAX_UTILIZATION)

# Engines each op can run on; the first is the default.
ENGINES = {
    "dense": ("mac", "unrolled"),
    "conv": ("systolic", "unrolled"),
    "depthwise": ("depthwise", "unrolled"),
    "maxpool": ("pool",),
    "avgpool": ("pool",),
    "global_avgpool": ("gap",),
    "add": ("add",),
    "activation": ("table",),
    "argmax": ("argmax",),
    "concat": ("concat",),
    "upsample": ("upsample",),
    "chain": ("sequential",),  # layers sharing one engine (hwgen.plan_sequential)
}


# Multiplier kinds each engine can build (see hwgen.packing); the first is the default.
# Packing needs products that share an operand: the PEs of a MAC unit and the rows of a
# systolic array share each activation, a depthwise engine's lanes do not.
KINDS = {
    "mac": ("dsp", "dsp-packed", "lut"),
    "systolic": ("dsp", "dsp-packed", "lut"),
    "depthwise": ("dsp", "lut"),
    "sequential": ("dsp", "lut"),
}


def divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def _kind(layer):
    return "depthwise" if layer.op == "conv" and layer.depthwise else layer.op


def _channels(layer):
    """Channels of a layer's input tensor (elements for dense)."""
    if layer.op in ("dense", "argmax"):
        return layer.in_features
    if layer.op in ("add", "activation"):
        return layer.shape[-1]
    if layer.op == "concat":
        return math.gcd(*layer.channels)  # lanes must divide every part
    return layer.in_shape[2]


@dataclasses.dataclass(frozen=True)
class Folding:
    """``pe`` output lanes × ``simd`` input elements computed per cycle (see the module doc)."""

    pe: int
    simd: int

    def __str__(self):
        return f"{self.pe}x{self.simd}"


@dataclasses.dataclass(frozen=True, eq=False)
class LayerPlan:
    """One layer's engine: the quantized layer, the engine kind, its folding, the lanes of
    the stream it reads, its multiplier kind (:data:`KINDS`; ``"dsp"`` for engines without
    multipliers), for ``"dsp-packed"`` the products per hard multiplier, and where its weight
    ROMs go (:data:`WEIGHT_PLACES`: ``"auto"``, where synthesis puts them; ``"bram"``, block
    RAM whatever their size, which trades LUTs for block RAM)."""

    layer: object
    engine: str
    folding: Folding
    in_lanes: int
    multiplier: str = "dsp"
    pack: int = 1
    levels: int = 0  # adder levels per pipeline stage of an unrolled layer (0 elsewhere)
    weights: str = "auto"

    def __post_init__(self):
        if self.weights not in WEIGHT_PLACES:
            raise HwgenError(f"layer {self.layer.name!r}: weights go {' or '.join(WEIGHT_PLACES)}, "
                             f"not {self.weights!r}")

    name = property(lambda self: self.layer.name)
    pe = property(lambda self: self.folding.pe)
    simd = property(lambda self: self.folding.simd)

    @property
    def out_lanes(self):
        """Codes per beat of the engine's output (an argmax emits its one index alone)."""
        return 1 if self.engine in ("argmax", "sequential") else self.folding.pe

    @property
    def multipliers(self):
        if self.engine in ("mac", "systolic"):
            return self.pe * self.simd
        return self.pe if self.engine in ("depthwise", "sequential") else 0

    @property
    def cycles(self):
        """Cycles per frame of the engine, in steady state without stalls."""
        if self.engine == "sequential":
            return sequential_cycles(self.layer, self.pe, self.multiplier)
        return _cycles(self.layer, self.engine, self.folding, self.in_lanes)

    @property
    def utilization(self):
        """MACs per frame ÷ (multipliers × cycles): the engine's own busy fraction."""
        if not self.multipliers:
            return None
        return self.layer.macs / (self.multipliers * self.cycles)

    @property
    def weights_in(self):
        """Where the engine's weight ROMs go (``"auto"`` or ``"bram"``); ``None`` for engines
        without them."""
        return self.weights if self.engine in ROM_ENGINES else None

    @property
    def multiplier_label(self):
        """``"dsp"``, ``"lut"``, ``"dsp-packed×2"``; ``""`` for engines without multipliers."""
        if self.engine not in KINDS:
            return ""
        return f"{self.multiplier}×{self.pack}" if self.pack > 1 else self.multiplier

    def describe(self):
        """The folding as a user would pin it (``"systolic:4x8"``, ``"mac:2x16:lut"``,
        ``"systolic:4x8:dsp:bram"``, ``"unrolled"``)."""
        if self.engine == "unrolled":
            return "unrolled"
        folding = str(self.folding) if self.engine in ("mac", "systolic") else str(self.pe)
        kind = f":{self.multiplier}" if self.multiplier != "dsp" or self.weights != "auto" \
            else ""
        weights = f":{self.weights}" if self.weights != "auto" else ""
        return f"{self.engine}:{folding}{kind}{weights}"


def _window_cycles(layer, in_lanes, out_lanes):
    """Cycles per frame of the pad unit and sliding window in front of a windowed engine: the
    padded image's beats, or the window beats with the per-pixel minimum of the line buffer's
    reader (``kw·C/in_lanes`` beats for a row's first pixel, ``min(sx, kw)·C/in_lanes`` after)."""
    height, width, channels = layer.in_shape
    top, left, bottom, right = layer.pads
    padded = (height + top + bottom) * (width + left + right) * (channels // in_lanes)
    return max(padded, _reader_cycles(layer, in_lanes, out_lanes))


def _reader_cycles(layer, in_lanes, out_lanes):
    """The line buffer reader's share of :func:`_window_cycles` (without the input side)."""
    channels, (kh, kw) = layer.in_shape[2], layer.kernel
    out_height, out_width = layer.out_shape[:2]
    channel_beats = channels // in_lanes
    per_pixel = kh * kw * channels // out_lanes
    first = max(per_pixel, kw * channel_beats)
    later = max(per_pixel, min(layer.stride[1], kw) * channel_beats)
    return out_height * (first + (out_width - 1) * later)


def _unrolled_folding(layer):
    """An unrolled layer's :class:`Folding`: every output × every input (a conv: its output
    channels × its whole window ``kh·kw·C``, depthwise too)."""
    if layer.op == "dense":
        return Folding(layer.out_features, layer.in_features)
    kh, kw = layer.kernel
    return Folding(layer.out_channels, kh * kw * layer.in_shape[2])


def _cycles(layer, engine, folding, in_lanes):
    if engine == "sequential":
        return sequential_cycles(layer, folding.pe)
    if engine == "unrolled":
        return 1 if layer.op == "dense" else _window_cycles(layer, in_lanes, folding.simd)
    if engine == "mac":
        return (layer.in_features // folding.simd) * (layer.out_features // folding.pe)
    if engine in ("gap", "add", "table", "concat", "upsample"):
        shape = {"gap": "in_shape", "upsample": "out_shape"}.get(engine, "shape")
        return math.prod(getattr(layer, shape)) // folding.pe
    if engine == "argmax":
        return layer.in_features // folding.pe
    pixels = layer.out_shape[0] * layer.out_shape[1]
    if engine == "systolic":
        compute = pixels * (layer.window // folding.simd) * (layer.out_channels // folding.pe)
        window = _window_cycles(layer, in_lanes, folding.simd)
    else:
        compute = pixels * (layer.in_shape[2] // folding.pe) * layer.kernel[0] * layer.kernel[1]
        window = _window_cycles(layer, in_lanes, folding.pe)
    return max(compute, window)


@dataclasses.dataclass(frozen=True, eq=False)
class Plan:
    """Every layer's engine, in topological order, and the pipeline's cycle model; ``board``
    is the :class:`~hwgen.board.Board` the folding was sized for, or ``None``."""

    qgraph: object
    layers: tuple
    board: object = None

    name = property(lambda self: self.qgraph.name)

    def _repr_html_(self):
        from .notebook import plan_html
        return plan_html(self)

    @property
    def in_lanes(self):
        """Input codes per beat on ``s_axis``: the widest reader of the graph input."""
        return max(p.in_lanes for p in self.layers if self.qgraph.input_name in p.layer.inputs)

    @property
    def out_lanes(self):
        """Output codes per beat on ``m_axis``: the last engine's output lanes."""
        return self.layers[-1].out_lanes

    @property
    def initiation_interval(self):
        """Predicted cycles between frames in steady state: the slowest engine."""
        return max(layer.cycles for layer in self.layers)

    @property
    def bottleneck(self):
        return max(self.layers, key=lambda layer: layer.cycles).name

    def cost(self, board=None):
        """The modelled resources on ``board`` (default: the board the plan was sized for), a
        :class:`~hwgen.cost.CostReport`."""
        from .cost import estimate
        board = board or self.board
        if board is None:
            raise HwgenError("name a board: this plan was not sized for one")
        return estimate(self, board)

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

    def unrolled_links(self):
        """``{name: (start_level, registered)}`` of the unrolled dense layers (an unrolled conv
        reads registered windows from its line buffer, at level 0): a layer whose only
        input comes from an unrolled layer it alone reads continues that layer's last pipeline
        stage (``start_level`` adder levels into it), and that layer leaves its outputs
        unregistered; so a chain of unrolled layers is one pipeline (see
        :class:`hwgen.hw.unrolled.UnrolledDense`)."""
        from .cost import unrolled_netlist

        links = {}
        for layer_plan in self.layers:
            if layer_plan.engine != "unrolled" or layer_plan.layer.op != "dense":
                continue  # a conv reads its windows from a line buffer, registered
            start = 0
            (tensor,) = layer_plan.layer.inputs
            producer = links.get(tensor)
            if producer is not None and len(self.qgraph.consumers(tensor)) == 1 \
                    and self[tensor].levels == layer_plan.levels:
                netlist = unrolled_netlist(self[tensor].layer, self[tensor].levels,
                                           producer[0])
                links[tensor] = (producer[0], False)
                start = netlist.residual
            links[layer_plan.name] = (start, True)
        return links

    def fifo_depth(self, tensor, consumer):
        """Beats of FIFO on the edge ``tensor`` → ``consumer`` (see
        :func:`hwgen.plan_fifo.fifo_depth`)."""
        return plan_fifo.fifo_depth(self, tensor, consumer)

    def skip_fifo_depth(self, tensor, consumer):
        """The residual-skip or concat share of :meth:`fifo_depth` (see
        :func:`hwgen.plan_fifo.skip_fifo_depth`)."""
        return plan_fifo.skip_fifo_depth(self, tensor, consumer)

    def lanes_of(self, tensor):
        """Codes per beat of ``tensor``'s stream."""
        return plan_fifo.lanes_of(self, tensor)

    def __repr__(self):
        rows = [f"Plan {self.name!r}: II {self.initiation_interval} cycles/frame, "
                f"{self.multipliers} multipliers, bottleneck {self.bottleneck}",
                f"  {'layer':<16} {'engine':<10} {'folding':>8} {'kind':<13} {'in':>3} "
                f"{'bits':>7} {'cycles':>7} {'util':>6}  weights"]
        for layer in self.layers:
            weight = f"w{layer.layer.weight_bits}" if hasattr(layer.layer, "weight_bits") else ""
            utilization = "" if layer.utilization is None else f"{layer.utilization:.0%}"
            folding = layer.describe().partition(":")[2].partition(":")[0]
            name = layer.name
            if layer.engine == "sequential":  # the chain's layers, first to last
                name = f"{layer.layer.layers[0].name}…{name}" if len(layer.layer.layers) > 1 \
                    else name
            rows.append(f"  {name:<16} {layer.engine:<10} {folding:>8} "
                        f"{layer.multiplier_label:<13} {layer.in_lanes:>3} "
                        f"{weight + 'a' + str(layer.layer.act_bits):>7} "
                        f"{layer.cycles:>7} {utilization:>6}  "
                        f"{'bram' if layer.weights == 'bram' else ''}".rstrip())
        return "\n".join(rows)


# -- legality -------------------------------------------------------------------------------------

_PIN = re.compile(r"(?:(?P<engine>[a-z]+):)?(?P<pe>\d+)(?:x(?P<simd>\d+))?"
                  r"(?::(?P<kind>[a-z-]+))?(?::(?P<weights>bram))?")

# Where a layer's weight ROMs go (LayerPlan.weights): "auto", where synthesis puts them
# (yosys's memory mapper: small ROMs in LUTs), or "bram", block RAM whatever their size.
WEIGHT_PLACES = ("auto", "bram")
# The engines with weight ROMs, which "bram" applies to.
ROM_ENGINES = ("mac", "systolic", "depthwise")


def _parse_pin(layer, value):
    """``(engine or None, pe, simd or None, multiplier kind or None, weights or None)`` from
    ``"systolic:6x5:lut"``, ``"systolic:6x5:lut:bram"``, ``"systolic:6x5:bram"``,
    ``"systolic:6x5"``, ``"4x8:dsp-packed"``, ``"4x8"``, ``"4"``, ``4``, a :class:`Folding`
    or ``(pe, simd)``."""
    if isinstance(value, Folding):
        return None, value.pe, value.simd, None, None
    if isinstance(value, int):
        return None, value, None, None, None
    if isinstance(value, str) and value.strip() == "unrolled" and layer.op in ("dense", "conv"):
        fold = _unrolled_folding(layer)
        return "unrolled", fold.pe, fold.simd, None, None
    if isinstance(value, str):
        match = _PIN.fullmatch(value.strip())
        if not match:
            raise HwgenError(f"layer {layer.name!r}: folding must look like 'PExSIMD' (e.g. "
                             f"'4x8'), 'LANES', 'ENGINE:PExSIMD' or 'ENGINE:PExSIMD:KIND' "
                             f"(KIND one of dsp, dsp-packed, lut), with ':bram' after it to "
                             f"keep the weights in block RAM, not {value!r}")
        simd = match["simd"] and int(match["simd"])
        kind, weights = match["kind"], match["weights"]
        if kind == "bram" and weights is None:  # "systolic:4x8:bram"
            kind, weights = None, "bram"
        return match["engine"], int(match["pe"]), simd, kind, weights
    try:
        pe, simd = (operator.index(v) for v in value)
    except (TypeError, ValueError):
        raise HwgenError(f"layer {layer.name!r}: folding must be (pe, simd), not {value!r}")
    return None, pe, simd, None, None


def multiplier_packing(layer, kind, pack, pe):
    """``(kind, Packing or None)`` of a weighted layer's multipliers: the
    :class:`hwgen.packing.Packing` of ``pack`` products for ``"dsp-packed"`` (``2 ≤ pack ≤
    pe``; where ``pack`` does not divide ``pe`` the last group of PEs packs fewer), ``None``
    for the other kinds; :class:`HwgenError` otherwise."""
    check_kind(kind, f"layer {layer.name!r}: ")
    if kind != "dsp-packed":
        if pack != 1:
            raise HwgenError(f"layer {layer.name!r}: only dsp-packed multipliers pack "
                             f"products, not {kind!r} (pack={pack})")
        return kind, None
    if not 2 <= pack <= pe:
        raise HwgenError(f"layer {layer.name!r}: a packed multiplier computes 2 ≤ pack ≤ "
                         f"pe={pe} products of PEs that share an operand, not {pack}")
    return kind, packing(layer.weight_bits, layer.input.bits, layer.input.signed, pack)


def choose_pack(layer, pe, ports=DEFAULT_PORTS):
    """The products per packed multiplier for ``pe`` PEs of ``layer``'s widths, at most what
    one hard multiplier with signed operand widths ``ports`` holds: the fewest multipliers
    (:func:`~hwgen.packing.pack_groups`), then the fewest products each (so a divisor of
    ``pe`` where one does as well); 1 when packing gains nothing."""
    most = min(pe, max_pack(layer.weight_bits, layer.input.bits, layer.input.signed, ports))
    return min(range(1, most + 1), key=lambda pack: (pack_groups(pe, pack), pack))


def legal_folding(layer, folding, engine=None):
    """Validate ``folding`` for ``layer`` on ``engine`` (default: the op's default engine);
    returns the :class:`Folding`, or raises :class:`HwgenError` listing the legal values."""
    kind = _kind(layer)
    pinned, pe, simd, _, _ = _parse_pin(layer, folding)
    engine = _legal_engine(layer, pinned or engine)
    if engine == "unrolled":
        return _unrolled_folding(layer)
    if engine == "sequential":
        if simd not in (None, 1):
            raise HwgenError(f"layer {layer.name!r}: a sequential engine is sized by its "
                             f"multipliers (one number), not {pe}x{simd}")
        return Folding(check_sequential_pe(layer, pe), 1)
    if engine in ("mac", "systolic"):
        outs = layer.out_features if engine == "mac" else layer.out_channels
        ins = layer.in_features if engine == "mac" else layer.window
        what = ("out_features", "in_features") if engine == "mac" else (
            "out_channels", "the window size kh·kw·C")
        simd = 1 if simd is None else simd
        problems = []
        if pe < 1 or outs % pe:
            problems.append(f"pe={pe} must divide {what[0]}={outs} "
                            f"(legal pe: {', '.join(map(str, divisors(outs)))})")
        if simd < 1 or ins % simd:
            problems.append(f"simd={simd} must divide {what[1]}={ins} "
                            f"(legal simd: {', '.join(map(str, divisors(ins)))})")
        if problems:
            raise HwgenError(f"layer {layer.name!r}: illegal folding {pe}x{simd}: "
                             + "; ".join(problems))
        return Folding(pe, simd)
    channels = _channels(layer) if kind != "depthwise" else layer.in_shape[2]
    if simd not in (None, 1 if engine == "depthwise" else pe):
        raise HwgenError(f"layer {layer.name!r}: a {engine} engine is sized by one number (its "
                         f"lanes), not {pe}x{simd}")
    if pe < 1 or channels % pe:
        raise HwgenError(f"layer {layer.name!r}: {pe} lanes must divide its {channels} channels "
                         f"(legal: {', '.join(map(str, divisors(channels)))})")
    return Folding(pe, 1 if engine == "depthwise" else pe)


def _legal_engine(layer, engine):
    kind = _kind(layer)
    if engine is None:
        return ENGINES[kind][0]
    if engine not in ENGINES[kind]:
        raise HwgenError(f"layer {layer.name!r}: a {kind} layer cannot run on a {engine!r} "
                         f"engine; legal: {', '.join(ENGINES[kind])}")
    return engine


def parse_folding(spec):
    """``{"fc1": "4x8", ...}`` from a JSON file path, a dict, or a string such as
    ``"fc1=4x8,conv1=systolic:6x5,pool1=4"``."""
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


# -- the default rule -----------------------------------------------------------------------------

def _options(layer, engine):
    kind = _kind(layer)
    if engine == "unrolled":
        return [_unrolled_folding(layer)]
    if engine == "sequential":
        return [Folding(pe, 1) for pe in sequential_pes(layer)]
    if engine in ("mac", "systolic"):
        outs = layer.out_features if engine == "mac" else layer.out_channels
        ins = layer.in_features if engine == "mac" else layer.window
        return [Folding(pe, simd) for pe in divisors(outs) for simd in divisors(ins)]
    channels = layer.in_shape[2] if kind == "depthwise" else _channels(layer)
    return [Folding(pe, 1 if engine == "depthwise" else pe) for pe in divisors(channels)]


def _cost(folding, engine):
    return folding.pe * folding.simd if engine in ("mac", "systolic") else folding.pe


def _choose(layer, engine, target, in_lanes_options):
    """The cheapest folding (then the widest ``simd``, then the fewest input lanes) that
    finishes within ``target`` cycles; the fastest one when none does."""
    best = None
    for folding in _options(layer, engine):
        for in_lanes in in_lanes_options(folding):
            cycles = _cycles(layer, engine, folding, in_lanes)
            key = (cycles > target, _cost(folding, engine) if cycles <= target else cycles,
                   -folding.simd, in_lanes)
            if best is None or key < best[0]:
                best = (key, folding, in_lanes)
    return best[1], best[2]


def _in_lanes_options(layer, engine):
    if engine == "unrolled" and layer.op == "dense":
        return lambda folding: [layer.in_features]
    if engine == "mac":
        return lambda folding: [folding.simd]
    if engine == "sequential":
        return lambda folding: [1]
    if engine in ("pool", "gap", "add", "table", "argmax", "concat", "upsample"):
        return lambda folding: [folding.pe]
    if engine == "depthwise":
        return lambda folding: [folding.pe]
    return lambda folding: divisors(layer.in_shape[2])


def make_plan(qgraph, folding=None, *, multipliers=None, board=None, max_utilization=None,
              multiplier_kinds=None, unroll=None,
              clock=None, goal="throughput", engine=None, shared_from=None, progress=None):
    """Plan ``qgraph``: user ``folding`` (see :func:`parse_folding`; an engine may be pinned as
    ``"systolic:6x5"``, and its multiplier kind as ``"systolic:6x5:lut"``) where given; the
    other layers follow the default rule sized so that the layer with the most MACs has about
    ``multipliers`` (default 32) multipliers, or, with a ``board`` (a name or
    :class:`~hwgen.board.Board`), the fastest plan whose modelled resources fit within
    ``max_utilization`` (a fraction for every resource, or a dict per resource
    ``lut``/``ff``/``dsp``/``bram``/``spram``; by default, and for the resources a dict leaves
    out, :func:`default_utilization`: 80 % of LUTs, flip-flops and DSPs, the headroom place
    and route needs, 95 % of block RAM, all SPRAM) of the board's (see the module doc).

    Multiplier kinds: the default rule builds ``"dsp"`` multipliers; the board search picks,
    per layer, the folding and the kind among ``multiplier_kinds`` (default: every kind the
    engine has, :data:`KINDS`), packing as many products per DSP as the board's DSP ports
    hold (:func:`choose_pack`).

    ``unroll`` (``"all"``, or dense and conv layer names as a list or ``"fc1,conv2"``) builds
    those layers unrolled (:mod:`hwgen.hw.unrolled`: constant weights, one vector or output
    pixel per cycle), as the pin ``"fc1=unrolled"`` does; ``"auto"`` (with a ``board``) lets
    the board search unroll any dense or conv layer of at most
    :data:`hwgen.plan_board.AUTO_UNROLL_WEIGHTS` non-zero weights where that fits better.
    Unrolled pipeline registers are placed for ``clock`` MHz (default: the board's target
    clock, or :data:`DEFAULT_CLOCK`).

    ``goal`` (with a ``board``): ``"throughput"`` (the default) takes, at the shortest
    interval, the layers' plans that leave the most headroom; ``"latency"`` those with the
    fewest summed cycles per frame (each layer as fast as the board allows; with
    ``unroll="auto"`` that favours unrolled layers), kept where the accelerator's latency is
    lower.

    ``engine``: ``None`` (the default) plans a dataflow engine per layer, and with a
    ``board`` puts the dense layers, and then every chain of dense, conv and pooling
    layers, on shared layer-sequential engines (:mod:`hwgen.plan_sequential`) when no plan
    fits; ``"dataflow"`` never shares; ``"sequential"`` puts every such chain on one shared
    engine. The pin ``"fc3=sequential:8"`` sizes the engine of the chain ending in ``fc3``
    (and without ``engine="sequential"`` shares only that chain's dense layers). With a
    ``board`` the search also tries, at each cut of the graph
    (:func:`~hwgen.plan_sequential.tail_cuts`: in a ResNet the first layer of each residual
    block), the layers from the cut on shared and those before on their dataflow engines
    (where no dataflow plan fits, or where the tail's engine could be faster than the plan so
    far, goal ``"throughput"``), and takes the fastest plan that fits.

    ``shared_from`` (a layer of :func:`~hwgen.plan_sequential.tail_cuts`) plans that split
    itself: the layers from ``shared_from`` on on shared engines, those before on dataflow
    engines."""
    if goal not in GOALS:
        raise HwgenError(f"goal must be one of {', '.join(GOALS)}, not {goal!r}")
    if goal != "throughput" and board is None:
        raise HwgenError(f"the plan goal {goal!r} selects among the plans that fit a board: "
                         "give a board (--board)")
    if engine not in ENGINE_CHOICES:
        raise HwgenError(f"engine must be one of {', '.join(map(str, ENGINE_CHOICES))}, not "
                         f"{engine!r}")
    folding = parse_folding(folding)
    folding.update({name: "unrolled" for name in unrolled_names(qgraph, unroll)})
    kinds = _allowed_kinds(multiplier_kinds)
    names = [layer.name for layer in qgraph.layers]
    folding = {name if name in names else module_name(name): value
               for name, value in folding.items()}
    unknown = [name for name in folding if name not in names]
    if unknown:
        raise HwgenError(f"folding names {', '.join(map(repr, unknown))}, which match no layer; "
                         f"the layers are: {', '.join(names)}")
    if board is not None and multipliers is not None:
        raise HwgenError("give multipliers or a board to size the folding, not both")
    multipliers = operator.index(DEFAULT_MULTIPLIERS if multipliers is None else multipliers)
    if multipliers < 1:
        raise HwgenError(f"multipliers must be positive, not {multipliers}")
    largest = max(qgraph.layers, key=lambda layer: layer.macs)
    target = math.ceil(largest.macs / multipliers)
    auto = unroll in ("auto", ["auto"])
    if auto and board is None:
        raise HwgenError("--unroll auto lets the board search choose which layers to unroll: "
                         "give a board (--board), or name the layers (--unroll fc1,conv2)")

    def plan_with(ops, only_pinned=False, first=None):
        units = plan_units(qgraph, folding, ops, only_pinned, first)
        ports = DSP_PORTS[_board_family(board)] if board is not None else DEFAULT_PORTS
        pinned = with_levels(_pinned(units, folding, target, ports), board, clock)
        if board is not None:
            from .plan_board import fit_board
            return fit_board(qgraph, pinned, board, max_utilization, kinds, progress,
                             unroll_levels=levels(board, clock) if auto else None, goal=goal,
                             units=units)
        # Without a board a shared engine gets the multipliers asked for.
        pinned.update({unit.name: LayerPlan(unit, "sequential", Folding(min(
            multipliers, sequential_pes(unit)[-1]), 1), 1) for unit in units
            if unit.op == "chain" and unit.name not in pinned})
        pace = target
        if pinned:
            # Engines the user sized set the pace; the others need not be faster.
            pace = max([target] + [plan.cycles for plan in pinned.values()])
        return Plan(qgraph, _fill(units, pinned, pace))

    if shared_from is not None:
        if engine == "dataflow":
            raise HwgenError(f"shared_from={shared_from!r} puts layers on shared engines; "
                             "engine 'dataflow' never shares")
        return plan_with(SHARED_OPS, first=check_cut(qgraph, shared_from))
    if engine == "sequential":
        return plan_with(SHARED_OPS)
    if any(str(value).startswith("sequential") for value in folding.values()):
        return plan_with(("dense",), only_pinned=True)
    try:
        dataflow = plan_with(())
    except DoesNotFit as error:
        if engine is not None or board is None:
            raise
        dataflow, failure = None, error
    else:
        failure = None
    if dataflow is not None and (engine is not None or board is None or goal != "throughput"):
        return dataflow
    from .board import get_board
    return share_for_board(qgraph, folding, plan_with, dataflow, failure,
                           get_board(board).name, progress)


# ``make_plan``'s engine choices: None (dataflow engines; with a board, shared engines when
# those do not fit), "dataflow" (never shared), "sequential" (every chain the shared engine
# computes on one).
ENGINE_CHOICES = (None, "dataflow", "sequential")


# What the board search selects for at the shortest interval (see make_plan).
GOALS = ("throughput", "latency")


def _allowed_kinds(kinds):
    """The multiplier kinds the board search may use: a tuple of :data:`MULTIPLIER_KINDS`."""
    if kinds is None:
        return None
    if isinstance(kinds, str):
        kinds = [part.strip() for part in kinds.split(",") if part.strip()]
    kinds = tuple(check_kind(kind) for kind in kinds)
    if "dsp" not in kinds and "lut" not in kinds:
        raise HwgenError("the multiplier kinds must include dsp or lut (every engine can "
                         f"build one of them), not {', '.join(kinds) or 'none'}")
    return kinds


def _board_family(board):
    from .board import get_board
    return get_board(board).family


def _pinned(units, folding, target, ports):
    """The layers the user sized, as :class:`LayerPlan`; ``target`` picks their input lanes,
    ``ports`` (the DSP's signed operand widths) the products a packed multiplier holds."""
    pinned, by_name = {}, {unit.name: unit for unit in units}
    for name, value in folding.items():
        layer = by_name[name]
        engine_name, _, _, kind, weights = _parse_pin(layer, value)
        engine = _legal_engine(layer, engine_name)
        fold = legal_folding(layer, value, engine)
        kind, pack = _pinned_kind(layer, engine, fold, kind or "dsp", ports)
        if weights and engine not in ROM_ENGINES:
            raise HwgenError(f"layer {layer.name!r}: a {engine} engine has no weight ROMs to "
                             f"put in block RAM (':bram' applies to {', '.join(ROM_ENGINES)})")
        in_lanes = min(_in_lanes_options(layer, engine)(fold),
                       key=lambda lanes: (_cycles(layer, engine, fold, lanes) > target, lanes))
        pinned[layer.name] = LayerPlan(layer, engine, fold, in_lanes, kind, pack,
                                       weights=weights or "auto")
    return pinned


def _pinned_kind(layer, engine, fold, kind, ports):
    """``(kind, pack)`` of a kind the user pinned, or :class:`HwgenError` saying why not."""
    check_kind(kind, f"layer {layer.name!r}: ")
    if kind == "dsp":
        return kind, 1
    if engine not in KINDS or kind not in KINDS[engine]:
        legal = ", ".join(KINDS.get(engine, ("dsp",)))
        raise HwgenError(f"layer {layer.name!r}: a {engine} engine cannot build {kind!r} "
                         f"multipliers; legal: {legal}")
    if kind == "lut":
        return kind, 1
    pack = choose_pack(layer, fold.pe, ports)
    if pack < 2:
        why = (f"pe={fold.pe}: one PE has no other to share its operand with"
               if fold.pe < 2 else f"not even two w{layer.weight_bits}×a{layer.input.bits} "
               f"products fit one {ports[0]}×{ports[1]} multiplier")
        raise HwgenError(f"layer {layer.name!r}: cannot pack: {why}; use dsp or lut")
    return kind, pack


def _fill(units, pinned, target):
    """Every planned layer's plan (``units``: the layers, a shared engine's chain as one):
    the pinned ones, and the cheapest folding within ``target`` cycles for the others."""
    layers = []
    for layer in units:
        if layer.name in pinned:
            layers.append(pinned[layer.name])
            continue
        engine = ENGINES[_kind(layer)][0]
        fold, in_lanes = _choose(layer, engine, target, _in_lanes_options(layer, engine))
        layers.append(LayerPlan(layer, engine, fold, in_lanes))
    return tuple(layers)
