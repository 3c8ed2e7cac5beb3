"""Random designs for differential testing: a seed becomes a layer graph, bits, a folding,
calibration data and a stall rate; :func:`run_case` builds it to Verilog, simulates it under
random stalls and compares every output code with the integer reference and the measured
initiation interval and latency with the plan's cycle model.

A case is a pure function of its seed (and of hwgen's version), so a failure is reproduced by
its seed alone; :func:`save_reproducer` also keeps the design folder. ``benchmarks/fuzz.py``
runs campaigns; ``tests/test_fuzz.py`` runs a few seeds in CI.

The generator covers every engine (MAC units, unrolled dense and conv layers, systolic and
depthwise convolutions, max/average pools, global average pools, residual adds, concats, upsampling,
activation tables, argmax), bits 2–16, every multiplier kind with random legal foldings, and
skewed calibration (heavy tails, outliers, mostly-zero inputs), so ranges and saturation are
exercised as well as the datapath.
"""

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from .errors import HwgenError
from .graph import Graph
from .plan import KINDS, divisors, make_plan
from .reference import Rounding

__all__ = ["FuzzCase", "FuzzOutcome", "random_case", "run_case", "save_reproducer"]

# A case's frames: enough for about _CODES output codes, within _CYCLE_BUDGET simulated cycles
# (both phases) and _MAX_FRAMES.
_CODES = 20_000
_CYCLE_BUDGET = 1_500_000
_MAX_FRAMES = 2048
# What the simulation's latency counts from (FuzzOutcome.latency_from).
LATENCY_FROM = "first input beat"
_TABLE_FUNCTIONS = ("sigmoid", "tanh", "hardswish", "gelu", "silu", "softsign", "elu")


@dataclasses.dataclass(frozen=True)
class FuzzCase:
    """One random design: the float graph, its calibration and test inputs, the quantizer's
    settings, the plan's pins and the simulation's stall rate."""

    seed: int
    graph: Graph
    calibration: np.ndarray
    inputs: np.ndarray
    bits: dict
    output_bits: int
    rounding: Rounding
    calibration_method: str
    weight_granularity: str
    folding: dict
    stall: float
    engine: str = None  # make_plan's engine: "sequential" shares every chain it can

    def describe(self):
        ops = " ".join(layer.op for layer in self.graph.layers()[1:])
        return f"seed {self.seed}: {ops}"

    def quantize(self):
        """The graph quantized with the case's calibration and settings."""
        from .quantize import quantize

        return quantize(self.graph, self.calibration, self.bits, output_bits=self.output_bits,
                        rounding=self.rounding, calibration_method=self.calibration_method,
                        weight_granularity=self.weight_granularity)


@dataclasses.dataclass(frozen=True)
class FuzzOutcome:
    """What one case showed. ``codes`` counts the output codes compared (both simulation
    phases); ``error`` is a build or protocol failure, ``None`` when the run completed."""

    seed: int
    description: str
    engines: tuple
    frames: int
    codes: int
    mismatches: int
    ii_predicted: int = 0
    ii_measured: float = 0.0
    latency_predicted: int = 0
    latency_measured: int = 0
    seconds: float = 0.0
    error: "str | None" = None
    # Where the latency is counted from: the frame's first input beat since the max-plus
    # model (hwgen.hw.accelerator.Accelerator.timeline); logs before it counted from the last.
    latency_from: str = "last input beat"

    @property
    def ii_error(self):
        return self.ii_measured - self.ii_predicted

    @property
    def latency_error(self):
        return self.latency_measured - self.latency_predicted

    @property
    def rejected(self):
        """Whether hwgen refused to build the design (a clear error, not a failure)."""
        return (self.error or "").startswith("build:")

    @property
    def cycle_model_exact(self):
        return self.ii_error == 0 and self.latency_error == 0

    @property
    def passed(self):
        return self.error is None and self.mismatches == 0 and self.cycle_model_exact


# -- the generator --------------------------------------------------------------------------------

def _weights(rng, shape, fan_in):
    """Random weights: Gaussian, a random share pruned to zero, some cases powers of two."""
    weight = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
    style = rng.integers(4)
    if style == 1:
        weight[rng.random(shape) < rng.uniform(0.3, 0.9)] = 0.0
    elif style == 2:
        weight = np.sign(weight) * 2.0 ** np.round(np.log2(np.abs(weight) + 1e-9))
    return weight


def _bias(rng, size):
    return rng.normal(0.0, 0.3, size) if rng.random() < 0.7 else np.zeros(size)


def _activate(rng, graph, x):
    choice = rng.integers(5)
    if choice <= 1:
        return graph.relu(x)
    if choice == 2:
        return graph.clip(x, 0.0, float(rng.choice([1.0, 6.0])))
    if choice == 3:
        return x
    return graph.activation(x, str(rng.choice(_TABLE_FUNCTIONS)))


def _conv(rng, graph, x, channels, *, kernel=None, same=False):
    height, width, in_channels = graph[x].shape
    kernel = kernel or int(rng.integers(1, 4))
    kernel = min(kernel, height, width) if not same else kernel
    stride = 1 if same or rng.random() < 0.7 else 2
    pad = (kernel - 1) // 2 if same or rng.random() < 0.5 else 0
    if height + 2 * pad < kernel or width + 2 * pad < kernel:
        pad = kernel
    weight = _weights(rng, (channels, kernel, kernel, in_channels), kernel * kernel * in_channels)
    return graph.conv2d(x, weight, _bias(rng, channels), stride=stride, padding=pad)


def _depthwise(rng, graph, x):
    channels = graph[x].shape[2]
    weight = _weights(rng, (channels, 3, 3, 1), 9)
    return graph.conv2d(x, weight, _bias(rng, channels), padding=1, groups=channels)


def _image_block(rng, graph, x):
    height, width, channels = graph[x].shape
    choice = rng.integers(8)
    if choice == 0 and min(height, width) >= 4:
        pool = graph.maxpool if rng.random() < 0.5 else graph.avgpool
        return pool(x, 2)
    if choice == 1:
        body = _activate(rng, graph, _conv(rng, graph, x, channels, kernel=3, same=True))
        return graph.add(x, body)
    if choice == 2:
        left = _conv(rng, graph, x, int(rng.integers(1, 5)), kernel=1, same=True)
        right = _conv(rng, graph, x, int(rng.integers(1, 5)), kernel=3, same=True)
        return graph.concat([left, right])
    if choice == 3 and height * width <= 25:
        return graph.upsample(x, 2, mode=str(rng.choice(["nearest", "zeros"])))
    if choice == 4:
        return _activate(rng, graph, _depthwise(rng, graph, x))
    return _activate(rng, graph, _conv(rng, graph, x, int(rng.integers(1, 9))))


def _cnn(rng, graph):
    shape = (int(rng.integers(3, 9)), int(rng.integers(3, 9)), int(rng.integers(1, 5)))
    x = _activate(rng, graph, _conv(rng, graph, graph.input(shape), int(rng.integers(1, 9))))
    for _ in range(int(rng.integers(0, 4))):
        x = _image_block(rng, graph, x)
    ending = rng.integers(3)
    if ending == 0:
        return x, shape
    x = graph.global_avgpool(x) if ending == 1 else graph.flatten(x)
    features = int(np.prod(graph[x].shape))
    if ending == 1:
        x = graph.flatten(x)
    out = int(rng.integers(2, 11))
    return graph.dense(x, _weights(rng, (out, features), features), _bias(rng, out)), shape


def _mlp(rng, graph):
    features = int(rng.integers(3, 25))
    in_shape = (features,)
    x = graph.input(in_shape)
    for _ in range(int(rng.integers(1, 4))):
        out = int(rng.integers(2, 25))
        x = graph.dense(x, _weights(rng, (out, features), features), _bias(rng, out))
        x = _activate(rng, graph, x)
        features = out
    return x, in_shape


def _skewed(rng, count, shape):
    """Inputs from one of several distributions that stress calibration and saturation."""
    style = rng.integers(4)
    size = (count, *shape)
    if style == 0:
        return rng.normal(0.0, 1.0, size)
    if style == 1:
        return rng.exponential(1.0, size) * rng.choice([-1.0, 1.0])
    if style == 2:
        x = rng.uniform(-1.0, 1.0, size)
        x[rng.random(size) < 0.01] *= 20.0
        return x
    x = rng.normal(0.0, 1.0, size)
    x[rng.random(size) < 0.8] = 0.0
    return x


def _random_bits(rng, layers):
    """``{name: {"w": .., "a": ..}}`` for the layers that requantize (``w`` for those with
    weights only)."""
    bits = {}
    for layer in layers:
        if rng.random() < 0.3:
            w = a = int(rng.choice([2, 4, 8, 16]))
        else:
            w, a = (int(v) for v in rng.integers(2, 17, 2))
        bits[layer.name] = {"a": min(a, 10) if rng.random() < 0.5 else a}
        if layer.op in ("dense", "conv"):
            bits[layer.name]["w"] = w
    return bits


def _random_pin(rng, layer_plan):
    """A random legal pin for one planned layer, or ``None`` to keep the default."""
    engine, layer = layer_plan.engine, layer_plan.layer
    if engine in ("mac", "systolic"):
        outs = layer.out_features if engine == "mac" else layer.out_channels
        ins = layer.in_features if engine == "mac" else layer.window
        pe, simd = int(rng.choice(divisors(outs))), int(rng.choice(divisors(ins)))
        if engine == "mac" and outs * ins <= 256 and rng.random() < 0.25:
            return "unrolled"
        kind = str(rng.choice(KINDS[engine]))
        return f"{engine}:{pe}x{simd}" + (f":{kind}" if kind != "dsp" else "")
    if engine == "depthwise":
        kind = str(rng.choice(KINDS[engine]))
        pe = int(rng.choice(divisors(layer.in_shape[2])))
        return f"depthwise:{pe}" + (f":{kind}" if kind != "dsp" else "")
    if engine in ("pool", "gap", "add", "table", "concat", "upsample", "argmax"):
        return None if rng.random() < 0.5 else str(layer_plan.pe)
    return None


def random_case(seed, shared=False):
    """The case of ``seed``: a random graph, its bits, pins, data and stall rate; ``shared``:
    every chain a shared engine computes on one (a campaign of the shared engine: the graph,
    bits and data are the seed's, the engines not)."""
    rng = np.random.default_rng(seed)
    graph = Graph(f"fuzz{seed}")
    x, in_shape = (_cnn if rng.random() < 0.75 else _mlp)(rng, graph)
    if len(graph[x].shape) == 1 and rng.random() < 0.3:
        graph.argmax(x)
    calibration = _skewed(rng, int(rng.integers(8, 64)), in_shape)
    inputs = _skewed(rng, _MAX_FRAMES, in_shape) * rng.uniform(0.5, 2.0)
    bits = _random_bits(rng, [layer for layer in graph.layers()
                              if layer.op in ("dense", "conv", "avgpool", "add")])
    output_bits = int(rng.integers(2, 17))
    rounding = (Rounding.HALF_UP, Rounding.HALF_EVEN, Rounding.FLOOR)[rng.integers(3)]
    method = str(rng.choice(["minmax", "percentile", "mse"]))
    granularity = str(rng.choice(["channel", "tensor"]))
    case = FuzzCase(seed, graph, calibration, inputs, bits, output_bits, rounding, method,
                    granularity, folding={}, stall=0.0)
    qgraph = case.quantize()
    plan = make_plan(qgraph, multipliers=int(rng.choice([4, 16, 64])))
    folding = {}
    for layer_plan in plan.layers:
        pin = _random_pin(rng, layer_plan)
        if pin is None:
            continue
        try:
            make_plan(qgraph, {**folding, layer_plan.name: pin})
        except HwgenError:
            continue
        folding[layer_plan.name] = pin
    stall = float(rng.choice([0.0, 0.1, 0.3, 0.5]))
    folding.update(_unrolled_convs(seed, qgraph, folding))
    engine, folding = _shared_chains(seed, qgraph, folding, always=shared)
    return dataclasses.replace(case, folding=folding, stall=stall, engine=engine)


# Convolutions of at most this many weights may be unrolled by the fuzzer.
_UNROLL_WEIGHTS = 512


def _unrolled_convs(seed, qgraph, folding):
    """Small convolutions (depthwise too) to build unrolled, one in five, drawn from a stream
    of their own (so the graphs, bits and pins of every earlier seed stay as they were)."""
    rng = np.random.default_rng([seed, 17])
    chosen = {}
    for layer in qgraph.layers:
        if layer.op != "conv" or rng.random() >= 0.2 or layer.weight.size > _UNROLL_WEIGHTS:
            continue
        try:
            make_plan(qgraph, {**folding, **chosen, layer.name: "unrolled"})
        except HwgenError:
            continue
        chosen[layer.name] = "unrolled"
    return chosen


# The first seed that may share engines: the seeds logged before (benchmarks/fuzz_log.jsonl)
# keep their designs, so their reproducers stay valid.
SHARED_FROM_SEED = 3140


def _shared_chains(seed, qgraph, folding, always=False):
    """``(engine, folding)``: one design in ten (``always``: every one) runs every chain a
    shared sequential engine computes on one (``engine="sequential"``), one in five has each
    dense chain pinned to a shared engine (in both, of random size and multiplier kind,
    replacing the chains' own pins); drawn from a stream of their own, as
    :func:`_unrolled_convs`, from seed :data:`SHARED_FROM_SEED` on."""
    from .plan_sequential import SHARED_OPS, shared_chains, sequential_pes

    if seed < SHARED_FROM_SEED and not always:
        return None, folding
    rng = np.random.default_rng([seed, 23])
    draw = rng.random()
    if draw < 0.1 or always:
        chains = shared_chains(qgraph, SHARED_OPS)
        members = {layer.name for chain in chains for layer in chain.layers}
        kept = {name: pin for name, pin in folding.items() if name not in members}
        kept.update({chain.name: f"sequential:{int(rng.choice(sequential_pes(chain)))}:"
                                 f"{rng.choice(['dsp', 'lut'])}" for chain in chains})
        try:
            make_plan(qgraph, kept, engine="sequential")
        except HwgenError:
            return None, folding
        return "sequential", kept
    if draw >= 0.3:
        return None, folding
    chosen = dict(folding)
    for chain in shared_chains(qgraph):
        pes = sequential_pes(chain)
        pin = f"sequential:{int(rng.choice(pes))}:{rng.choice(['dsp', 'lut'])}"
        trial = {name: value for name, value in chosen.items()
                 if name not in {layer.name for layer in chain.layers}}
        try:
            make_plan(qgraph, {**trial, chain.name: pin})
        except HwgenError:
            continue
        chosen = {**trial, chain.name: pin}
    return None, chosen


# -- running --------------------------------------------------------------------------------------

def build_case(case, codes=_CODES):
    """``(plan, design)`` of ``case``, with frames for about ``codes`` output codes within
    :data:`_CYCLE_BUDGET` simulated cycles."""
    from .emit import generate

    plan = make_plan(case.quantize(), case.folding, engine=case.engine)
    stress = 1.0 / (1.0 - case.stall) ** 2
    out_features = int(np.prod(plan.qgraph.shape_of(plan.layers[-1].name)))
    frames = min(codes / out_features,
                 _CYCLE_BUDGET / (plan.initiation_interval * (1 + stress)))
    frames = int(np.clip(frames, 2, _MAX_FRAMES))
    return plan, generate(plan, case.inputs, frames=frames)


def run_case(case, folder, *, codes=_CODES, simulator="verilator"):
    """Build, simulate and compare ``case`` in ``folder`` (about ``codes`` output codes); a
    :class:`FuzzOutcome`."""
    from .api import simulate
    from .sim.runner import _TIMING_FRAMES

    start = time.perf_counter()
    description = case.describe()
    try:
        plan, design = build_case(case, codes)
    except HwgenError as error:
        return FuzzOutcome(case.seed, description, (), 0, 0, 0, error=f"build: {error}",
                           seconds=time.perf_counter() - start)
    engines = tuple(layer.describe() for layer in plan.layers)
    path = design.write(Path(folder))
    result = simulate(path, simulator=simulator, stall=case.stall, seed=case.seed)
    frames = len(design.inputs)
    codes = (frames + min(frames, _TIMING_FRAMES)) * design.expected.shape[1] if result.error is None else 0
    return FuzzOutcome(
        case.seed, description, engines, frames, codes, result.mismatch_count,
        ii_predicted=plan.initiation_interval,
        ii_measured=result.initiation_interval or 0.0,
        latency_predicted=design.manifest["latency"], latency_measured=result.latency or 0,
        seconds=time.perf_counter() - start, error=result.error, latency_from=LATENCY_FROM)


def save_reproducer(case, outcome, design_folder, folder, shared=False):
    """Write ``folder/seed-N/`` (``seed-N-shared`` for a case of :func:`random_case`'s
    ``shared``): the outcome as JSON, the command that reruns it and the design folder's
    files."""
    target = Path(folder) / f"seed-{case.seed}{'-shared' if shared else ''}"
    target.mkdir(parents=True, exist_ok=True)
    record = dataclasses.asdict(outcome) | {
        "bits": case.bits, "folding": case.folding, "output_bits": case.output_bits,
        "rounding": case.rounding.name, "calibration_method": case.calibration_method,
        "weight_granularity": case.weight_granularity, "stall": case.stall,
        "rerun": f"python benchmarks/fuzz.py --seed {case.seed}{' --shared' if shared else ''}"}
    (target / "outcome.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    for path in Path(design_folder).iterdir():
        if path.is_file():
            (target / path.name).write_bytes(path.read_bytes())
    return target
