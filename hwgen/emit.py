"""Plan → :class:`Design`: the Verilog of the accelerator, its manifest, its test vectors and a
report; :meth:`Design.write` puts them in an output folder.

``OUT/<top>.v``
    The synthesizable Verilog (no source-location attributes, so it does not depend on where
    hwgen is installed).
``OUT/manifest.json``
    Top name, ports and widths, each layer's shapes, bits, accumulator width, folding and
    predicted cycles, the pipeline's initiation interval and latency, the input's and the
    output's quantization.
``OUT/vectors.npz``
    ``inputs`` (frames × in_features input codes) and ``outputs`` (the integer reference's codes).
``OUT/qgraph.npz``
    The quantized graph, so ``hwgen sim --inputs`` can compute golden outputs for new inputs.
``OUT/report.md``
    A human summary.

Every file is a pure function of the plan and the vectors: the same inputs give byte-identical
files (the ``.npz`` archives carry a fixed timestamp).
"""

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from . import __version__
from .activations import describe
from .errors import HwgenError
from .hw.accelerator import Accelerator
from .qgraph import layer_shape, qgraph_from_arrays, qgraph_to_arrays
from .reference import run_float, run_integer

__all__ = ["Design", "generate", "load_design", "write_npz"]

DEFAULT_FRAMES = 32


def _tdata_bits(lanes, bits):
    return -(-lanes * bits // 8) * 8


def _port(lanes, quant):
    return {"lanes": lanes, "lane_bits": quant.bits, "signed": quant.signed,
            "tdata_bits": _tdata_bits(lanes, quant.bits)}


def _quant(quant, shape):
    return {"shape": list(shape), "scale": quant.scale, "zero_point": quant.zero_point,
            "bits": quant.bits, "signed": quant.signed}


def default_target(board):
    """The target a design for ``board`` is built for by default: its family's primitives
    where hwgen has them (``"ecp5"``, ``"ice40"``), else ``"generic"``."""
    family = board.family if board is not None else None
    return family if family in ("ecp5", "ice40") else "generic"


def build_manifest(plan, top, latency):
    qgraph = plan.qgraph
    layers = []
    for entry in plan.layers:
        layer = entry.layer
        record = {
            "name": layer.name, "op": layer.op, "inputs": list(layer.inputs),
            "input_shape": list(qgraph.shape_of(layer.inputs[0])),
            "output_shape": list(layer_shape(layer)),
        }
        if hasattr(layer, "weight_bits"):
            record["weight_bits"] = layer.weight_bits
        record.update({
            "act_bits": layer.act_bits, "output_bits": layer.output.bits,
            "acc_bits": layer.acc_bits, "relu": layer.relu,
            "rounding": layer.rounding.value if hasattr(layer, "rounding") else None,
            "engine": entry.engine, "pe": entry.pe, "simd": entry.simd,
            "in_lanes": entry.in_lanes, "multipliers": entry.multipliers,
            "multiplier_kind": entry.multiplier_label and entry.multiplier,
            "products_per_dsp": entry.pack,
            "weights_in": entry.weights_in,
            "macs_per_frame": layer.macs, "cycles_per_frame": entry.cycles,
        })
        if hasattr(layer, "weight"):
            record["weight_memory_bits"] = layer.weight.size * layer.weight_bits
        if layer.op == "chain":  # a shared sequential engine's layers
            record["layers"] = [member.name for member in layer.layers]
            record["weight_memory_bits"] = sum(member.weight.size * member.weight_bits
                                               for member in layer.layers
                                               if hasattr(member, "weight"))
        if layer.op == "activation":
            record["function"] = describe(layer.function, layer.params)
            record["table_bits"] = layer.table.size * layer.output.bits
        layers.append(record)
    return {
        "hwgen_version": __version__,
        "top": top,
        "verilog": f"{top}.v",
        "clock": "clk",
        "reset": "rst (synchronous, active high)",
        "ports": {"s_axis": _port(plan.in_lanes, qgraph.input),
                  "m_axis": _port(plan.out_lanes, qgraph.output)},
        "input": dict(_quant(qgraph.input, qgraph.input_shape), layout=qgraph.layout),
        "output": dict(_quant(qgraph.output, qgraph.output_shape),
                       argmax=qgraph.layers[-1].op == "argmax"),
        "import_notes": list(qgraph.notes),
        "layers": layers,
        "initiation_interval": plan.initiation_interval,
        "latency": latency,
        # What the two figures are: the interval is the slowest engine's cycles, which the
        # FIFO depths make the steady state; the latency (first input beat to last output
        # beat) is the max-plus schedule of hwgen.hw.accelerator.Accelerator.timeline. Both
        # equal the simulation on every design checked (docs/architecture.md).
        "cycle_model": {"initiation_interval": "exact", "latency": "exact",
                        "latency_from": "first input beat", "latency_to": "last output beat"},
        "bottleneck": plan.bottleneck,
        "multipliers": plan.multipliers,
        "macs_per_frame": plan.macs,
        **({"resources": plan.cost().to_json()} if plan.board is not None else {}),
    }


@dataclasses.dataclass(frozen=True, eq=False)
class Design:
    """A generated accelerator, ready to be written to a folder."""

    plan: object
    verilog: str
    manifest: dict
    inputs: np.ndarray
    expected: np.ndarray
    report: str

    @property
    def top(self):
        return self.manifest["top"]

    def write(self, out_dir):
        """Write every file of the design into ``out_dir`` (created if needed); returns it."""
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{self.top}.v").write_text(self.verilog)
            (out / "manifest.json").write_text(json.dumps(self.manifest, indent=2) + "\n")
            write_npz(out / "vectors.npz", inputs=self.inputs, outputs=self.expected)
            write_npz(out / "qgraph.npz", **qgraph_to_arrays(self.plan.qgraph))
            (out / "report.md").write_text(self.report)
        except OSError as error:
            raise HwgenError(f"cannot write the design to {str(out)!r}: {error}") from None
        return out

    def __repr__(self):
        manifest = self.manifest
        return (f"Design {self.top!r}: {len(manifest['layers'])} layers, "
                f"{manifest['multipliers']} multipliers, II {manifest['initiation_interval']} "
                f"cycles/frame, latency {manifest['latency']} cycles, "
                f"{len(self.verilog.splitlines())} lines of Verilog, "
                f"{len(self.inputs)} test frames")

    def table(self):
        """One row per layer (op, shape, bits, engine, folding, cycles) as a DataFrame."""
        from .notebook import design_table
        return design_table(self)

    def _repr_html_(self):
        from .notebook import frame_html
        return frame_html(self.table(), repr(self))


def write_npz(path, **arrays):
    """``numpy.savez`` with a fixed timestamp, so equal arrays give byte-identical files."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)),
                             buffer.getvalue())


def generate(plan, x=None, *, name=None, frames=DEFAULT_FRAMES, graph=None, labels=None,
             precision=None, target=None, progress=None):
    """Build the accelerator of ``plan`` and its files.

    Parameters
    ----------
    plan : Plan
    x : float array ``(N, in_features)``, optional
        Inputs for the test vectors (the first ``frames`` are used); without them, ``frames``
        random codes spanning the input's whole code range.
    name : str, optional
        The top module's name (default: the model's name).
    graph : Graph, optional
        The float model: the report then compares the integer reference with it.
    labels : int array ``(N,)``, optional
        Class labels of ``x``: the report then gives both models' accuracy.
    precision : BitChoice, optional
        The automatic bit allocation the quantized graph came from
        (:func:`hwgen.precision.choose_bits`): the manifest and report then record it.
    target : ``"generic"`` or ``"ecp5"``, optional
        How the multipliers are built (:mod:`hwgen.hw.dsp`): plain Verilog for every tool, or
        ECP5 ``MULT18X18D`` primitives with their registers in use (faster on ECP5; Verilog
        simulators get hwgen's model of the primitive). Default: ``"ecp5"`` when the plan was
        sized for an ECP5 board, else ``"generic"``.
    progress : callable(str) or True, optional
        Receives a line per step (reference, engines, Verilog, report); ``True`` shows a
        progress bar (:class:`hwgen.notebook.StepBar`).
    """
    from .notebook import progress_callback

    say, close = progress_callback(progress, "generate", total=4)
    try:
        return _generate(plan, x, name, frames, graph, labels, precision, target,
                         say or (lambda line: None))
    finally:
        close()


def _generate(plan, x, name, frames, graph, labels, precision, target, say):
    qgraph = plan.qgraph
    top = name or qgraph.name
    if not top.isidentifier():
        raise HwgenError(f"top name must be a Verilog identifier, not {top!r}")
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise HwgenError(f"frames must be a positive number of test frames, not {frames!r}")
    if x is not None:
        x = np.asarray(x, dtype=np.float64)
        if len(x) == 0:
            raise HwgenError("the test inputs are empty: give at least one frame")
        if not np.all(np.isfinite(x)):
            raise HwgenError("the test inputs contain NaN or infinity")
    if x is None:
        rng = np.random.default_rng(0)
        inputs = rng.integers(qgraph.input.lo, qgraph.input.hi, size=(frames, qgraph.in_features),
                              endpoint=True)
    else:
        inputs = qgraph.input_codes(x)[:frames]
    say(f"golden outputs of {len(inputs)} test frames (integer reference)")
    expected = run_integer(qgraph, inputs)
    if target is None:
        target = default_target(plan.board)
    say(f"building {len(plan.layers)} engines (target {target})")
    accelerator = Accelerator(plan, target=target)
    say("converting to Verilog")
    text = verilog.convert(accelerator, name=top, emit_src=False)
    say("writing the manifest and report")
    manifest = build_manifest(plan, top, accelerator.latency)
    manifest["target"] = accelerator.target
    if precision is not None:
        manifest["precision"] = precision.to_json()
    report = _report(plan, manifest, graph, x, labels)
    if precision is not None:
        report += "\n## Automatic bit allocation\n\n```\n" + precision.table() + "\n```\n"
    return Design(plan, text, manifest, inputs.astype(np.int64), expected.astype(np.int64),
                  report)


def load_design(out_dir):
    """``(manifest, qgraph, vectors)`` of a design folder written by :meth:`Design.write`."""
    out = Path(out_dir)
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        raise HwgenError(f"{str(out)!r} is not a design folder (no manifest.json); "
                         "create one with `hwgen build`")
    try:
        manifest = json.loads(manifest_path.read_text())
        with np.load(out / "qgraph.npz") as arrays:
            qgraph = qgraph_from_arrays(dict(arrays))
        with np.load(out / "vectors.npz") as arrays:
            vectors = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError, KeyError) as error:
        raise HwgenError(f"design folder {str(out)!r} is incomplete or corrupt: {error}") from None
    return manifest, qgraph, vectors


def _report(plan, manifest, graph, x, labels):
    qgraph = plan.qgraph
    clock = plan.board.target_mhz if plan.board is not None else 100.0
    utilization = (f"{plan.macs / (plan.multipliers * plan.initiation_interval):.1%}"
                   if plan.multipliers else "none (no multipliers)")
    lines = [
        f"# {manifest['top']}", "",
        f"Generated by hwgen {__version__}.", "",
        f"- input: {qgraph.input}, {manifest['ports']['s_axis']['lanes']} lanes per beat",
        f"- output: {qgraph.output}, {manifest['ports']['m_axis']['lanes']} lanes per beat",
        f"- initiation interval: {plan.initiation_interval} cycles/frame "
        f"(bottleneck: {plan.bottleneck}); latency: {manifest['latency']} cycles from a "
        f"frame's first input beat to its last output beat "
        f"({manifest['latency'] * 1e3 / clock:,.0f} ns at {clock:g} MHz; the cycle model's, "
        "`hwgen sim` measures it)",
        f"- multipliers: {plan.multipliers}; MACs per frame: {plan.macs}; "
        f"MAC utilization at the II: {utilization}",
        f"- throughput at 100 MHz: {100e6 / plan.initiation_interval:,.0f} frames/s",
        *(f"- import: {note}" for note in qgraph.notes), "",
        "| layer | op | output | bits | acc bits | engine | PE×SIMD | in lanes | cycles/frame "
        "| engine busy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for layer, entry in zip(manifest["layers"], plan.layers):
        relu = "+relu" if layer["relu"] else ""
        if "function" in layer:
            relu = f" {layer['function']}{relu}"
        acc_bits = "-" if layer["op"] == "maxpool" else layer["acc_bits"]
        weight = f"w{layer['weight_bits']}" if "weight_bits" in layer else ""
        utilization = "" if entry.utilization is None else f"{entry.utilization:.0%}"
        kind = f" ({entry.multiplier_label})" if entry.multiplier_label else ""
        kind += ", weights in block RAM" if entry.weights == "bram" else ""
        lines.append(
            f"| {layer['name']} | {layer['op']}{relu} | "
            f"{'×'.join(map(str, layer['output_shape']))} | {weight}a{layer['act_bits']}"
            f"→{layer['output_bits']} | {acc_bits} | {layer['engine']}{kind} | "
            f"{layer['pe']}×{layer['simd']} | {layer['in_lanes']} | "
            f"{layer['cycles_per_frame']} | {utilization} |")
    if plan.board is not None:
        lines += _cost_section(plan.cost())
    if graph is not None and x is not None:
        want = run_float(graph, x)
        want = want.reshape(len(want), -1)
        got = qgraph.output.dequantize(run_integer(qgraph, qgraph.input_codes(x)))
        lines += ["", f"## Integer reference vs float model ({len(want)} inputs)", ""]
        if manifest["output"]["argmax"]:
            # Both already give the class index.
            want_class, got_class = want[:, 0], got[:, 0]
            lines.append(f"- top-1 agreement: {np.mean(got_class == want_class):.2%}")
        else:
            want_class, got_class = want.argmax(1), got.argmax(1)
            lines += [f"- top-1 agreement: {np.mean(got_class == want_class):.2%}",
                      f"- mean |error|: {np.abs(got - want).mean():.4g} "
                      f"(output step {qgraph.output.scale:.4g})"]
        if labels is not None and len(labels) == len(want):
            labels = np.asarray(labels)
            lines += [f"- accuracy, float model: {np.mean(want_class == labels):.2%}",
                      f"- accuracy, integer reference: {np.mean(got_class == labels):.2%}"]
    return "\n".join(lines) + "\n"


def _cost_section(cost):
    """The report's "Modelled resources" section (see :mod:`hwgen.cost`)."""
    board, totals = cost.board, cost.totals
    verdict = "fits" if cost.fits else f"does NOT fit: {cost.describe_overflow()}"
    lines = ["", f"## Modelled resources on {board.title}", "",
             f"The folding was sized for this board; the design {verdict}. At the board's "
             f"{board.target_mhz:g} MHz target clock: {cost.frames_per_second:,.0f} frames/s. "
             "Numbers are hwgen's resource model (`hwgen synth` measures them).", "",
             "| layer | engine | folding | multiplier kind | bits | multipliers | LUT | FF | DSP "
             "| BRAM | cycles/frame |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {layer.name} | {layer.engine} | {layer.folding} | {layer.multiplier} | "
              f"{layer.bits} | {layer.multipliers} | {layer.lut} | {layer.ff} | {layer.dsp} | "
              f"{layer.bram} | {layer.cycles} |" for layer in cost.layers]
    lines.append(f"| **total** | | | | | {sum(layer.multipliers for layer in cost.layers)} | "
                 + " | ".join(f"{totals[r]} ({cost.utilization[r]:.0%} of {cost.capacity[r]})"
                              for r in ("lut", "ff", "dsp", "bram"))
                 + f" | {cost.initiation_interval} |")
    return lines
