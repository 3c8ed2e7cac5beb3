"""The notebook API: each step of the flow as one function over plain objects.

>>> import hwgen
>>> graph = hwgen.load("examples/digits_mlp/digits_mlp.onnx")
>>> qgraph = hwgen.quantize(graph, "examples/digits_mlp/calib.npz", bits="w4a8")
>>> plan = hwgen.make_plan(qgraph, folding={"gemm_0": "4x16"})
>>> design = hwgen.generate(plan, calib_x)
>>> out = design.write("out")
>>> result = hwgen.simulate(out)

Every object has a readable ``repr``: a table of layers, bits, folding and cycles.
"""

import tempfile
from pathlib import Path

import numpy as np

from .emit import load_design
from .errors import HwgenError
from .frontends import is_quantized, load_onnx, load_quantized_onnx
from .frontends.onnx_common import _identifier, _read as _read_onnx
from .graph import Graph
from .notebook import progress_callback
from .qgraph import QGraph, add_argmax
from .quantize import load_calibration
from .reference import run_integer

__all__ = ["load", "load_labels", "simulate", "with_argmax"]


def load(model, name=None, *, argmax=False):
    """A model from an ONNX file or ``onnx.ModelProto``; a Graph or QGraph built in Python is
    returned as it is.

    A float model gives a :class:`~hwgen.graph.Graph` (quantize it with
    :func:`hwgen.quantize`). A quantized model (QDQ or QOperator as onnxruntime's
    ``quantize_static`` writes them, or QONNX ``Quant`` nodes as Brevitas exports them) gives a
    :class:`~hwgen.qgraph.QGraph` with the model's own scales, zero points and bit widths, which
    :func:`hwgen.make_plan` takes directly (see :mod:`hwgen.frontends.onnx_quant`).

    An output Softmax, LogSoftmax or ArgMax is removed on import (it changes no decision; the
    graph's ``notes`` say so). ``argmax=True`` ends the model in an argmax unit instead, so the
    accelerator outputs the class index.
    """
    if not isinstance(model, (Graph, QGraph)):
        proto, stem = _read_onnx(model)
        if name is None and stem:
            name = _identifier(stem, prefix="model")
        model = (load_quantized_onnx if is_quantized(proto) else load_onnx)(proto, name=name)
    return with_argmax(model) if argmax else model


def with_argmax(model):
    """``model`` (a Graph or a QGraph) ending in an argmax over its output vector, unless it
    already does."""
    if isinstance(model, QGraph):
        if model.layers[-1].op == "argmax":
            return model
        return add_argmax(model)
    if model.output_layer.op != "argmax":
        model.argmax(model.output_layer.name, name=_fresh_name(model, "argmax"))
    return model


def _fresh_name(graph, base):
    names = {layer.name for layer in graph.layers()}
    index, name = 0, base
    while name in names:
        index += 1
        name = f"{base}_{index}"
    return name


def load_labels(path):
    """The integer class labels ``y`` of an ``.npz`` file, or ``None`` (a ``.npy`` file, or
    an ``.npz`` without ``y``)."""
    path = Path(path)
    if path.suffix != ".npz":
        return None
    with np.load(path, allow_pickle=False) as data:
        if "y" not in data.files:
            return None
        try:
            labels = data["y"]
        except ValueError as error:  # an object array
            raise HwgenError(f"cannot read the labels 'y' of {str(path)!r}: {error}; store "
                             "integer class labels") from None
    if not np.issubdtype(labels.dtype, np.integer):
        raise HwgenError(f"the labels 'y' of {str(path)!r} must be integer classes, not "
                         f"{labels.dtype}")
    return labels


def load_inputs(inputs):
    """Float inputs from an array or a ``.npy``/``.npz`` path: at least one frame, all finite."""
    if isinstance(inputs, (str, Path)):
        inputs = load_calibration(inputs, what="inputs")
    try:
        inputs = np.asarray(inputs, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise HwgenError(f"inputs must be numbers: {error}") from None
    if inputs.ndim == 0 or len(inputs) == 0:
        raise HwgenError(f"inputs must hold at least one frame, not shape {inputs.shape}")
    if not np.all(np.isfinite(inputs)):
        bad = int(np.sum(~np.isfinite(inputs)))
        raise HwgenError(f"inputs contain {bad} NaN or infinite values; every input must be "
                         "finite")
    return inputs


def simulate(design, inputs=None, *, frames=None, simulator="verilator", waves=False, seed=0,
             stall=0.25, progress=None):
    """Simulate a design folder (or a :class:`~hwgen.emit.Design`) under cocotb.

    Parameters
    ----------
    design : path or Design
    inputs : float array ``(N, in_features)`` or a ``.npy``/``.npz`` path, optional
        Quantized with the model's input parameters; golden outputs come from the integer
        reference. Default: the design's ``vectors.npz``.
    frames : int, optional
        Simulate only the first ``frames`` inputs.
    simulator : ``"verilator"`` (default) or ``"icarus"``.
    waves : bool
        Dump a waveform into the run folder.
    seed, stall : random stall pattern (probability of a gap/back-pressure per cycle).
    progress : callable(str) or True, optional
        Receives progress lines (building, cached build, simulating, simulated); ``True``
        shows them on a progress bar (:class:`hwgen.notebook.StepBar`).

    Returns
    -------
    :class:`hwgen.sim.SimResult`
    """
    from .sim import run_simulation

    if not isinstance(design, (str, Path)):
        folder = Path(tempfile.mkdtemp(prefix="hwgen-design-"))
        design = design.write(folder)
    folder = Path(design)
    manifest, qgraph, vectors = load_design(folder)
    if inputs is None:
        codes, expected = vectors["inputs"], vectors["outputs"]
    else:
        codes = qgraph.input_codes(load_inputs(inputs))
        expected = run_integer(qgraph, codes)
    if frames is not None:
        if frames < 1:
            raise HwgenError(f"frames must be positive, not {frames}")
        codes, expected = codes[:frames], expected[:frames]
    if len(codes) == 0:
        raise HwgenError("there are no frames to simulate")
    verilog_path = folder / manifest["verilog"]
    say, close = progress_callback(progress, f"simulate {manifest['top']}")
    try:
        return run_simulation(verilog_path, manifest, codes, expected, simulator=simulator,
                              waves=waves, seed=seed, stall=stall, progress=say)
    finally:
        close()
