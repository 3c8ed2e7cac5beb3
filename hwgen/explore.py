"""Design-space exploration: one call sweeps bits × parallelism × boards × multiplier kinds ×
engines × targets, each point an independent task, and returns the results as a DataFrame.

:func:`explore` forms the product of its settings (:class:`Point`), evaluates every point not
already in the cache and returns an :class:`~hwgen.explore_report.Exploration`. A point's
evaluation (:func:`evaluate_point`) is plain functions of plain data:

1. the bits (uniform ``"w4a6"``, a per-layer dict or JSON file, or ``"auto:drop=1"``,
   ``"auto:bops=40%"``, ``"auto:fps=20000"``: :func:`hwgen.choose_bits`, resolved once per
   sweep) quantize the model (:func:`hwgen.quantize`);
2. the integer reference runs the evaluation inputs: accuracy against the labels (without
   labels, top-1 agreement with the float model);
3. the plan: ``"fit"`` sizes the folding for the board (:func:`hwgen.make_plan` with
   ``board``, within the multiplier kinds), a number is the default rule's multiplier target,
   a folding spec pins layers (``"fc1=4x8,fc2=2x4"``);
4. its modelled resources and fit (:mod:`hwgen.cost`), initiation interval, latency
   (:class:`~hwgen.hw.accelerator.Accelerator`), frames/s at the board's target clock and the
   energy per inference (:mod:`hwgen.energy`);
5. optionally the Verilog is generated and synthesized (yosys/nextpnr: real counts and fmax)
   and simulated (cocotb: measured II and latency, which the energy then uses).

Points run in a local process pool by default (``workers``), or on a Dask cluster given a
``dask.distributed.Client`` or a scheduler address (``client``). Each point's row is cached
under a content hash of everything it depends on: the model's bytes, the calibration and
evaluation data, the point's settings and options, the board profile, and hwgen's version and
source code; a repeated or extended sweep computes only the new points. A user error in one
point (a design that fits no folding, an illegal pin) becomes that row's ``error``; the sweep
goes on.
"""

import dataclasses
import hashlib
import importlib.resources
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from . import __version__
from .board import get_board
from .errors import HwgenError

__all__ = ["Point", "SweepInputs", "explore", "evaluate_point", "expand_points", "point_key"]

CACHE_FOLDER = "cache"


@dataclasses.dataclass(frozen=True)
class Point:
    """The settings of one design point, as text (see :func:`expand_points`)."""

    bits: str
    parallelism: str
    board: str
    multiplier_kinds: str = ""
    unroll: str = ""
    target: str = ""

    def label(self):
        parts = [self.bits, self.parallelism, self.board, self.multiplier_kinds, self.unroll,
                 self.target]
        return " ".join(part for part in parts if part)


@dataclasses.dataclass(frozen=True, eq=False)
class SweepInputs:
    """What every point shares: the float model (a Graph), the calibration inputs, and the
    evaluation inputs with their labels (``None``: agreement with the float model); plus the
    quantization options and the labels of the calibration data (which ``auto`` bits select
    on, confirming on the evaluation data)."""

    model: object
    calibration: np.ndarray
    x: np.ndarray
    y: object = None
    calibration_labels: object = None
    output_bits: int = 8
    digest: str = ""


# -- settings -------------------------------------------------------------------------------------

def _bits_setting(value):
    """A bits setting as its canonical text: ``"w4a8"``, ``"auto:…"``, or the JSON of a
    per-layer dict (a JSON file is read, so its content is what the cache keys on)."""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if not isinstance(value, str) or not value.strip():
        raise HwgenError(f"a bits setting is 'wXaY', 'auto:drop=1', 'auto:bops=40%', a JSON "
                         f"file or a dict of layers, not {value!r}")
    text = value.strip()
    if text.endswith(".json"):
        try:
            return json.dumps(json.loads(Path(text).read_text()), sort_keys=True)
        except (OSError, json.JSONDecodeError) as error:
            raise HwgenError(f"cannot read the bits file {text!r}: {error}") from None
    if text == "auto" or (text.startswith("auto") and not text.startswith("auto:")):
        raise HwgenError(f"bits {text!r}: 'auto' needs a limit or a budget: 'auto:drop=1', "
                         "'auto:bops=40%', 'auto:weights=16KiB' or 'auto:fps=20000'")
    return text


def _parallelism_setting(value):
    if value is None or value == "fit":
        return "fit"
    if isinstance(value, bool):
        raise HwgenError(f"parallelism is 'fit', a multiplier count or a folding, not {value!r}")
    if isinstance(value, (int, np.integer)):
        if value < 1:
            raise HwgenError(f"a multiplier target must be positive, not {value}")
        return str(int(value))
    if isinstance(value, dict):
        return ",".join(f"{name}={fold}" for name, fold in value.items())
    text = str(value).strip()
    if not (text.isdigit() or "=" in text or text.endswith(".json")):
        raise HwgenError(f"parallelism is 'fit', a multiplier count such as 32, or a folding "
                         f"such as 'fc1=4x8,fc2=2x4', not {value!r}")
    return text


def _optional(value):
    if value is None:
        return ""
    return ",".join(value) if isinstance(value, (list, tuple)) else str(value).strip()


def _listed(value, default):
    if value is None:
        return [default]
    if isinstance(value, (str, dict, int)) and not isinstance(value, bool):
        return [value]
    return list(value)


def expand_points(bits, parallelism, boards, multiplier_kinds=None, unroll=None, targets=None):
    """The product of the settings as a list of :class:`Point`, in sweep order (bits
    slowest, targets fastest); duplicates removed."""
    axes = [[_bits_setting(b) for b in _listed(bits, "w8a8")],
            [_parallelism_setting(p) for p in _listed(parallelism, "fit")],
            [get_board(b).name for b in _listed(boards, None) if b is not None],
            [_optional(k) for k in _listed(multiplier_kinds, None)],
            [_optional(u) for u in _listed(unroll, None)],
            [_optional(t) for t in _listed(targets, None)]]
    if not axes[2]:
        raise HwgenError("explore needs at least one board (see `hwgen boards`)")
    return list(dict.fromkeys(Point(*values) for values in itertools.product(*axes)))


# -- content hashes -------------------------------------------------------------------------------

def _hash_array(digest, array):
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())


def _hash_value(digest, value):
    """Feed a model's parts (dataclasses, arrays, enums, plain values) into ``digest``."""
    if isinstance(value, np.ndarray):
        _hash_array(digest, value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(type(value).__name__.encode())
        for field in dataclasses.fields(value):
            digest.update(field.name.encode())
            _hash_value(digest, getattr(value, field.name))
    elif isinstance(value, (list, tuple)):
        digest.update(b"[")
        for item in value:
            _hash_value(digest, item)
        digest.update(b"]")
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            digest.update(str(key).encode())
            _hash_value(digest, value[key])
    else:
        digest.update(repr(value).encode())


def _model_digest(model_bytes, graph):
    digest = hashlib.sha256()
    if model_bytes is not None:
        digest.update(model_bytes)
    else:
        for layer in graph.layers():
            _hash_value(digest, layer)
    return digest.hexdigest()


def inputs_digest(model_bytes, graph, calibration, x, y, calibration_labels, output_bits):
    """The content hash of what every point shares."""
    digest = hashlib.sha256(_model_digest(model_bytes, graph).encode())
    for array in (calibration, x, y, calibration_labels):
        digest.update(b"none" if array is None else b"array")
        if array is not None:
            _hash_array(digest, np.asarray(array))
    digest.update(str(output_bits).encode())
    return digest.hexdigest()


_CODE_DIGEST = None


def code_digest():
    """A hash of hwgen's version and the source of the installed package (a point's result
    depends on the code that computed it)."""
    global _CODE_DIGEST
    if _CODE_DIGEST is None:
        digest = hashlib.sha256(__version__.encode())
        root = importlib.resources.files("hwgen")
        for path in sorted(Path(str(root)).rglob("*.py")):
            digest.update(path.relative_to(Path(str(root))).as_posix().encode())
            digest.update(path.read_bytes())
        _CODE_DIGEST = digest.hexdigest()
    return _CODE_DIGEST


def point_key(inputs, point, options):
    """The content hash a point's row is cached under."""
    board = dataclasses.asdict(get_board(point.board))
    text = json.dumps({"hwgen": __version__, "code": code_digest(), "inputs": inputs.digest,
                       "point": dataclasses.asdict(point), "options": options, "board": board},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _bits_key(inputs, spec, board):
    text = json.dumps({"hwgen": __version__, "code": code_digest(), "inputs": inputs.digest,
                       "bits": spec, "board": board}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class _Cache:
    """Rows and resolved bits as JSON files under ``folder`` (``None``: no cache)."""

    def __init__(self, folder):
        self.folder = None if folder is None else Path(folder)
        if self.folder is not None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise HwgenError(f"cannot create the cache folder {str(self.folder)!r}: "
                                 f"{error}") from None

    def get(self, kind, key):
        if self.folder is None:
            return None
        path = self.folder / f"{kind}-{key}.json"
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return record.get("value") if record.get("key") == key else None

    def put(self, kind, key, value):
        if self.folder is None:
            return
        path = self.folder / f"{kind}-{key}.json"
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"key": key, "value": value}, default=_plain))
        temporary.replace(path)   # atomic: a reader sees a whole record or none


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in the cache")


# -- one point ------------------------------------------------------------------------------------

def _needs_board(spec):
    return spec.startswith("auto:fps")


def resolve_bits(inputs, spec, board=None):
    """The per-layer bits of an ``auto:`` setting (a dict :func:`hwgen.quantize` takes), chosen
    by :func:`hwgen.choose_bits` (or :func:`hwgen.choose_bits_for_board` for ``auto:fps=N``):
    selected on the calibration data (with its labels) and confirmed on the evaluation data,
    or, without calibration labels, selected and confirmed on halves of the evaluation data."""
    from .precision import choose_bits
    from .precision_board import choose_bits_for_board

    rule = spec.partition(":")[2].strip()
    if inputs.calibration_labels is not None:
        data = dict(x=inputs.calibration, y=inputs.calibration_labels,
                    confirm=(inputs.x, inputs.y))
    else:
        data = dict(x=inputs.x, y=inputs.y)
    common = dict(calibration=inputs.calibration, output_bits=inputs.output_bits, **data)
    if rule.startswith("fps"):
        try:
            min_fps = float(rule.partition("=")[2].lower().replace("k", "e3").replace("m", "e6"))
        except ValueError:
            raise HwgenError(f"bits {spec!r}: a frames/s budget looks like 'auto:fps=20000' "
                             "or 'auto:fps=1.5M'") from None
        choice = choose_bits_for_board(inputs.model, board=board, min_fps=min_fps, **common)
    elif rule.startswith("drop="):
        try:
            drop = float(rule.partition("=")[2])
        except ValueError:
            raise HwgenError(f"bits {spec!r}: the limit looks like 'auto:drop=1' (accuracy "
                             "points)") from None
        choice = choose_bits(inputs.model, max_accuracy_drop=drop, **common)
    else:
        choice = choose_bits(inputs.model, budget=rule, **common)
    return choice.bits


def _quantized(inputs, point, resolved):
    from .quantize import quantize

    if point.bits.startswith("auto:"):
        bits = resolved[point.bits, point.board if _needs_board(point.bits) else ""]
    elif point.bits.startswith("{"):
        bits = json.loads(point.bits)
    else:
        bits = point.bits
    return quantize(inputs.model, inputs.calibration, bits, output_bits=inputs.output_bits)


def _accuracy(inputs, qgraph):
    """``(accuracy %, agreement with the float model %)`` of the integer reference."""
    from .reference import run_float, run_integer

    got = run_integer(qgraph, qgraph.input_codes(inputs.x)).reshape(len(inputs.x), -1)
    want = run_float(inputs.model, inputs.x).reshape(len(inputs.x), -1)
    argmax = qgraph.layers[-1].op == "argmax"
    got_class = got[:, 0] if argmax else got.argmax(axis=1)
    want_class = want[:, 0] if argmax else want.argmax(axis=1)
    agreement = 100.0 * float(np.mean(got_class == want_class))
    if inputs.y is None:
        return agreement, agreement, 100.0
    labels = np.asarray(inputs.y)
    return (100.0 * float(np.mean(got_class == labels)), agreement,
            100.0 * float(np.mean(want_class == labels)))


def _with_kind(qgraph, plan, kinds):
    """``plan`` with every multiplier engine re-pinned to the one multiplier kind ``kinds``."""
    from .plan import KINDS, make_plan

    if "," in kinds:
        raise HwgenError(f"multiplier kinds {kinds!r}: a multiplier target or folding builds "
                         "one kind per layer; give one kind, or use parallelism 'fit'")
    folding = {}
    for layer_plan in plan.layers:
        if layer_plan.engine in KINDS:
            size = (f"{layer_plan.pe}x{layer_plan.simd}" if layer_plan.engine != "depthwise"
                    else str(layer_plan.pe))
            folding[layer_plan.name] = f"{layer_plan.engine}:{size}:{kinds}"
        else:
            folding[layer_plan.name] = layer_plan.describe()
    return make_plan(qgraph, folding)


def _plan(qgraph, point, board):
    from .plan import make_plan

    unroll = point.unroll or None
    kinds = point.multiplier_kinds or None
    if point.parallelism == "fit":
        return make_plan(qgraph, board=board, multiplier_kinds=kinds, unroll=unroll)
    if point.parallelism.isdigit():
        plan = make_plan(qgraph, multipliers=int(point.parallelism), unroll=unroll,
                         clock=board.target_mhz)
    else:
        plan = make_plan(qgraph, point.parallelism, unroll=unroll, clock=board.target_mhz)
    return _with_kind(qgraph, plan, kinds) if kinds else plan


def _target(point, board):
    from .emit import default_target

    if not point.target:
        return default_target(board)
    if point.target in ("ecp5", "ice40") and board.family != point.target:
        raise HwgenError(f"target {point.target!r} builds {point.target} primitives, which "
                         f"{board.name} ({board.family}) does not have")
    return point.target


def _model_row(inputs, point, resolved):
    """The cost-model part of a point's row, and the plan (for synthesis and simulation)."""
    from .energy import estimate_energy
    from .hw.accelerator import plan_latency
    from .precision import bit_ops, weight_memory_bits

    board = get_board(point.board)
    target = _target(point, board)
    qgraph = _quantized(inputs, point, resolved)
    accuracy, agreement, float_accuracy = _accuracy(inputs, qgraph)
    plan = _plan(qgraph, point, board)
    cost = plan.cost(board)
    latency = plan_latency(plan, target)
    interval = plan.initiation_interval
    energy = estimate_energy(plan, board)
    utilization = cost.utilization
    row = {"accuracy": accuracy, "float_accuracy": float_accuracy, "agreement": agreement,
           "samples": len(inputs.x), "macs": plan.macs, "bit_ops": bit_ops(qgraph),
           "weight_bits": weight_memory_bits(qgraph), "multipliers": plan.multipliers,
           **cost.totals,
           **{f"{resource}_util": utilization[resource] for resource in utilization},
           "max_util": max(utilization.values()), "fits": cost.fits,
           "ii": interval, "latency_cycles": latency, "clock_mhz": board.target_mhz,
           "latency_us": latency / board.target_mhz,
           "frames_per_s": board.target_mhz * 1e6 / interval,
           "energy_nj": energy.total / 1e3,
           **{f"energy_{name}_nj": value / 1e3 for name, value in energy.breakdown.items()},
           "target": target,
           "layer_bits": " ".join(f"{lp.name}:{_bits_label(lp.layer)}" for lp in plan.layers),
           "folding": " ".join(f"{lp.name}={lp.describe()}" for lp in plan.layers)}
    return row, plan, target


def _bits_label(layer):
    weight = f"w{layer.weight_bits}" if hasattr(layer, "weight_bits") else ""
    return f"{weight}a{layer.act_bits}"


def _synth_and_sim(inputs, point, plan, target, options, folder, row):
    """Generate the point's design into ``folder``; synthesize and/or simulate it."""
    from .api import simulate
    from .emit import generate
    from .energy import estimate_energy

    board = get_board(point.board)
    design = generate(plan, inputs.x, frames=options["sim_frames"], target=target,
                      name="explore_top")
    design.write(folder)
    clock, interval = board.target_mhz, plan.initiation_interval
    if options["synth"]:
        from .synth import synthesize
        result = synthesize(folder, board)
        row.update({f"synth_{key}": result.totals[key] for key in ("lut", "ff", "dsp", "bram")})
        row.update(synth_fits=result.fits, fmax_mhz=result.fmax_mhz,
                   synth_frames_per_s=result.frames_per_second)
        clock = result.fmax_mhz or clock
    if options["sim"]:
        result = simulate(folder, frames=options["sim_frames"])
        row.update(sim_passed=result.passed, sim_mismatches=result.mismatch_count,
                   sim_ii=result.initiation_interval, sim_latency=result.latency)
        interval = result.initiation_interval or interval
    if options["synth"] or options["sim"]:
        # The energy with what was measured: the fmax's time per inference, the measured II.
        row["energy_measured_nj"] = estimate_energy(
            plan, board, clock_mhz=clock, initiation_interval=interval).total / 1e3


def evaluate_point(inputs, point, resolved, options, design_folder=None):
    """The row of one point (a dict of plain values; see the module docstring). A
    :class:`HwgenError` of the point's own settings is returned as its ``error``."""
    row = {**dataclasses.asdict(point), "error": ""}
    try:
        model_row, plan, target = _model_row(inputs, point, resolved)
        row.update(model_row)
        if options["synth"] or options["sim"]:
            with tempfile.TemporaryDirectory(prefix="hwgen-explore-") as scratch:
                _synth_and_sim(inputs, point, plan, target, options,
                               design_folder or scratch, row)
    except HwgenError as error:
        row["error"] = str(error)
    return row


# -- tasks ----------------------------------------------------------------------------------------

def _point_task(inputs, point, resolved, options, design_folder):
    started = time.process_time()
    row = evaluate_point(inputs, point, resolved, options, design_folder)
    return row, time.process_time() - started


def _bits_task(inputs, spec, board):
    started = time.process_time()
    try:
        return resolve_bits(inputs, spec, board or None), "", time.process_time() - started
    except HwgenError as error:
        return None, str(error), time.process_time() - started


class _Runner:
    """Runs tasks inline, in a local process pool, or on a Dask cluster; yields results as
    they complete, each with its index."""

    def __init__(self, client, workers):
        self.client, self.workers = client, workers

    def run(self, function, argument_lists):
        if not argument_lists:
            return
        if self.client is not None:
            yield from self._dask(function, argument_lists)
            return
        workers = self.workers or min(os.cpu_count() or 1, len(argument_lists))
        if workers <= 1 or len(argument_lists) == 1:
            for index, arguments in enumerate(argument_lists):
                yield index, function(*arguments)
            return
        import concurrent.futures
        import multiprocessing

        # spawn: the parent may hold threads (Dask, tqdm), which fork would copy half-way.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {pool.submit(function, *arguments): index
                       for index, arguments in enumerate(argument_lists)}
            for future in concurrent.futures.as_completed(futures):
                yield futures[future], future.result()

    def _dask(self, function, argument_lists):
        from dask.distributed import as_completed

        shared = self.client.scatter(argument_lists[0][0], broadcast=True)
        futures = [self.client.submit(function, shared, *arguments[1:], pure=False)
                   for arguments in argument_lists]
        index = {future.key: position for position, future in enumerate(futures)}
        for future in as_completed(futures):
            yield index[future.key], future.result()


def _client(client):
    """A Dask client from a ``Client`` or a scheduler address (``tcp://HOST:PORT``)."""
    if client is None or not isinstance(client, str):
        return client, lambda: None
    try:
        from dask.distributed import Client
    except ImportError:
        raise HwgenError("running on a Dask scheduler needs dask.distributed: pip install "
                         "'hwgen[dask]'") from None
    try:
        connected = Client(client, timeout="10s")
    except (OSError, TimeoutError) as error:
        raise HwgenError(f"cannot reach the Dask scheduler {client!r}: {error}") from None
    return connected, connected.close


# -- the sweep ------------------------------------------------------------------------------------

def _load_sweep_inputs(model, calibration, test, labels, output_bits):
    from .api import load, load_labels
    from .graph import Graph
    from .quantize import load_calibration

    model_bytes = Path(model).read_bytes() if isinstance(model, (str, Path)) else None
    graph = load(model)
    if not isinstance(graph, Graph):
        raise HwgenError(f"explore sweeps bit widths of a float model; {graph.name!r} is "
                         "already quantized")
    calibration_labels = None
    if isinstance(calibration, (str, Path)):
        calibration_labels = load_labels(calibration)
        calibration = load_calibration(calibration)
    elif isinstance(calibration, tuple):
        calibration, calibration_labels = calibration
    calibration = np.asarray(calibration, dtype=np.float64)
    if isinstance(test, (str, Path)):
        x, y = load_calibration(test, what="evaluation"), load_labels(test)
    elif isinstance(test, tuple):
        x, y = test
    elif test is None:
        x, y = calibration, calibration_labels
    else:
        x, y = test, None
    if labels is not None:
        y = labels
    x = np.asarray(x, dtype=np.float64)
    if y is not None:
        y = np.asarray(y)
        if y.shape != (len(x),):
            raise HwgenError(f"labels must have one class per evaluation input, shape "
                             f"({len(x)},), not {y.shape}")
    digest = inputs_digest(model_bytes, graph, calibration, x, y, calibration_labels,
                           output_bits)
    return SweepInputs(graph, calibration, x, y, calibration_labels, output_bits, digest)


def explore(model, calibration, *, test=None, labels=None, bits=("w8a8",),
            parallelism=("fit",), boards=("ulx3s_85f",), multiplier_kinds=(None,),
            unroll=(None,), targets=(None,), output_bits=8, synth=False, sim=False,
            sim_frames=8, out=None, cache=True, client=None, workers=None, progress=True):
    """Sweep the product of the settings and return an
    :class:`~hwgen.explore_report.Exploration` (``.frame``, ``.pareto(...)``, ``.plot(...)``,
    ``.write(DIR)``).

    Parameters
    ----------
    model : ONNX path or Graph
    calibration : array, ``.npy``/``.npz`` path (labels ``y`` in an ``.npz`` are used), or
        ``(x, y)``
    test : ``.npz`` path with ``x``/``y``, ``(x, y)``, or an array (labels in ``labels``);
        default the calibration data. Accuracy is measured on it.
    bits : settings: ``"w4a8"``, a per-layer dict or JSON file, ``"auto:drop=1"``,
        ``"auto:bops=40%"``, ``"auto:weights=16KiB"``, ``"auto:fps=20000"``
    parallelism : ``"fit"`` (the fastest plan that fits the board), a multiplier target
        (``32``) or a folding (``"fc1=4x8,fc2=2x4"`` or a dict)
    boards : board names (``hwgen boards``)
    multiplier_kinds : ``None`` (every kind for ``"fit"``, ``dsp`` otherwise), ``"dsp"``,
        ``"lut"``, ``"dsp-packed"``, or for ``"fit"`` a list such as ``"dsp,lut"``
    unroll : ``None`` or the dense and conv layers to unroll (``"all"``, ``"fc1,conv2"``, or
        ``"auto"`` on board points: the board search chooses)
    targets : ``None`` (``ecp5`` on ECP5 boards, ``ice40`` on iCE40, else ``generic``),
        ``"generic"``, ``"ecp5"``, ``"ice40"``
    synth, sim : also synthesize (yosys/nextpnr) and simulate (cocotb) every point
    sim_frames : test frames of each simulated design
    out : folder for the results (``results.csv``, ``results.parquet``, plots,
        ``report.html``), the cache (``out/cache``) and, with ``synth``/``sim``, the designs
    cache : ``True`` (``out/cache`` when ``out`` is given), a folder, or ``False``
    client : a ``dask.distributed.Client`` or a scheduler address ``"tcp://HOST:PORT"``
    workers : local processes (default: one per core, at most one per point; 1 runs inline)
    progress : a tqdm bar over the points (``True``), a callable of one line, or ``None``
    """
    from .explore_report import Exploration
    from .notebook import progress_bar

    started = time.perf_counter()
    points = expand_points(bits, parallelism, boards, multiplier_kinds, unroll, targets)
    inputs = _load_sweep_inputs(model, calibration, test, labels, output_bits)
    options = {"synth": bool(synth), "sim": bool(sim), "sim_frames": int(sim_frames)}
    if cache is True:
        cache = None if out is None else Path(out) / CACHE_FOLDER
    store = _Cache(cache or None)
    keys = [point_key(inputs, point, options) for point in points]
    rows = [store.get("point", key) for key in keys]
    log = [{"key": key[:12], "cached": row is not None, "cpu_seconds": 0.0}
           for key, row in zip(keys, rows)]
    todo = [index for index, row in enumerate(rows) if row is None]
    client, disconnect = _client(client)
    runner = _Runner(client, workers)
    say = progress if callable(progress) else None
    bar = progress_bar(len(points), "explore", enabled=progress is True)
    bar.update(len(points) - len(todo))
    try:
        resolved = _resolve_all(inputs, [points[i] for i in todo], store, runner, say)
        design_root = Path(out) / "designs" if out is not None and (synth or sim) else None
        arguments = [(inputs, points[i], resolved, options,
                      None if design_root is None else str(design_root / keys[i][:12]))
                     for i in todo]
        for position, (row, seconds) in runner.run(_point_task, arguments):
            index = todo[position]
            rows[index] = row
            log[index]["cpu_seconds"] = seconds
            store.put("point", keys[index], row)
            bar.update(1)
            if say:
                say(f"{points[index].label()}: {row['error'] or 'done'}")
    finally:
        bar.close()
        disconnect()
    for row, key in zip(rows, keys):
        row["key"] = key[:12]
    result = Exploration(rows, log, seconds=time.perf_counter() - started,
                         computed=len(todo), samples=len(inputs.x))
    if out is not None:
        result.write(out)
    return result


def _resolve_all(inputs, points, store, runner, say):
    """The bits of every ``auto:`` setting the points need, chosen once each (cached)."""
    needed = sorted({(p.bits, p.board if _needs_board(p.bits) else "") for p in points
                     if p.bits.startswith("auto:")})
    resolved, missing = {}, []
    for spec, board in needed:
        bits = store.get("bits", _bits_key(inputs, spec, board))
        if bits is not None:
            resolved[spec, board] = bits
        else:
            missing.append((spec, board))
    if say and missing:
        say(f"choosing bits for {len(missing)} auto setting(s)")
    tasks = [(inputs, spec, board) for spec, board in missing]
    for position, (bits, error, _) in runner.run(_bits_task, tasks):
        spec, board = missing[position]
        if error:
            raise HwgenError(f"bits {spec!r}: {error}")
        resolved[spec, board] = bits
        store.put("bits", _bits_key(inputs, spec, board), bits)
    return resolved

