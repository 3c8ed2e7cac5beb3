"""``hwgen check``: run a model under onnxruntime and hwgen's integer reference on the same inputs
and measure how well they agree.

- A **quantized** model (QDQ, QOperator, QONNX) is read with the model's own quantization; its
  output codes are compared one by one: the fraction exactly equal, the fraction within ±1, the
  largest difference, and top-1 agreement (argmax over each frame's outputs). onnxruntime's float
  output ``y`` becomes codes as ``round(y / s_y + zp_y)`` (exact: it was ``s_y · (q − zp_y)``).
- A **float** model needs calibration data: it is quantized like ``hwgen build`` does, and the
  dequantized output of the integer reference is compared with onnxruntime's float output: top-1
  agreement and the largest absolute error (with the output step for scale).

On x86-64 CPUs without VNNI (AVX2 without AVX-VNNI, AVX-512 without AVX512-VNNI)
onnxruntime's uint8 × int8 kernels multiply with ``vpmaddubsw``, which adds two products into
an int16 with saturation: where two neighbouring weight codes of the same sign add up to more
than 128 its results are not the model's arithmetic (seen: 24 codes off). The int8 QDQ
activations of such a model are turned into uint8 by onnxruntime on x86-64, so they are hit
too. hwgen's reference and hardware compute exactly. ``hwgen check`` probes onnxruntime once
(:func:`onnxruntime_saturates`) and, where it saturates and a layer's weight codes reach ±65,
says so in the result and a warning: compare on a CPU with VNNI, or quantize with
``reduce_range=True`` (7-bit weights), as onnxruntime's documentation advises for these CPUs.

onnxruntime is an optional dependency (``pip install hwgen[check]``). A QONNX model (Brevitas'
``export_qonnx``) runs under qonnx's executor if qonnx is installed (``pip install
hwgen[qonnx]``), else under onnxruntime with its ``Quant`` nodes emulated in float
(:mod:`hwgen.qonnx_float`, checked against qonnx's outputs).
"""

import dataclasses
import functools
import warnings
from pathlib import Path

import numpy as np

from .errors import HwgenError, HwgenWarning
from .frontends import is_quantized, load_onnx, load_quantized_onnx
from .frontends.onnx_common import _read
from .graph import user_shape
from .qonnx_float import has_qonnx_ops, run_qonnx
from .quantize import quantize
from .reference import run_integer

__all__ = ["CheckResult", "check_model", "onnxruntime_saturates"]


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """Agreement of hwgen's integer reference with onnxruntime on one output.

    ``kind`` is ``"codes"`` (quantized model: ``exact``, ``within_one``, ``max_diff`` over
    output codes), ``"float"`` (float model: ``max_abs_error`` of the dequantized output,
    ``step`` its quantization step) or ``"classes"`` (a float model whose output Softmax,
    LogSoftmax or ArgMax, listed in ``removed``, was removed at import: only the classes
    compare). ``top1`` is the argmax agreement over frames.
    """

    output: str
    kind: str
    frames: int
    values: int
    top1: float
    exact: float = None
    within_one: float = None
    max_diff: int = None
    max_abs_error: float = None
    step: float = None
    removed: tuple = ()
    golden: str = "onnxruntime"
    caveats: tuple = ()

    def summary(self):
        head = (f"output {self.output!r} ({self.frames} frames × {self.values // self.frames}, "
                f"against {self.golden})")
        if self.kind == "classes":
            return (f"output {self.output!r} ({self.frames} frames): the model's output "
                    f"{'/'.join(self.removed)} was removed at import, so classes are compared: "
                    f"top-1 agreement {self.top1:.2%}")
        if self.kind == "codes":
            return "\n".join([
                f"{head}: {self.exact:.2%} of codes exact, {self.within_one:.2%} within ±1, "
                f"largest difference {self.max_diff} codes, top-1 agreement {self.top1:.2%}",
                *(f"note: {caveat}" for caveat in self.caveats)])
        return (f"{head}: float model vs quantized reference: top-1 agreement {self.top1:.2%}, "
                f"largest |error| {self.max_abs_error:.4g} (output step {self.step:.4g})")


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise HwgenError("hwgen check runs the model under onnxruntime, which is not installed: "
                         "pip install 'hwgen[check]' (or pip install onnxruntime)") from None
    return onnxruntime


@functools.lru_cache(maxsize=None)
def onnxruntime_saturates():
    """Whether onnxruntime's uint8 × int8 integer kernels saturate on this CPU: a
    ``MatMulInteger`` of 64 codes 255 by 64 weights 127 (exact: 2,072,640) run once."""
    ort = _onnxruntime()
    from onnx import TensorProto, helper, numpy_helper

    depth = 64
    weight = numpy_helper.from_array(np.full((depth, 1), 127, np.int8), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["x", "w"], ["y"])], "probe",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, depth])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1])], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": np.full((1, depth), 255, np.uint8)})[0]
    return int(y[0, 0]) != depth * 255 * 127


def _saturation_caveat(qgraph):
    """The note of the module docstring when onnxruntime saturates here and a layer's weight
    codes can make it (two same-sign codes adding up to 129 or more need one of ±65), or
    ``None``."""
    layers = [layer.name for layer in qgraph.layers
              if getattr(layer, "weight", None) is not None
              and np.abs(layer.weight).max(initial=0) >= 65]
    if not layers or not onnxruntime_saturates():
        return None
    named = ", ".join(layers[:4]) + (f" and {len(layers) - 4} more" if len(layers) > 4 else "")
    return (f"onnxruntime's uint8×int8 kernels saturate on this CPU (int16 pair sums, x86-64 "
            f"without VNNI) and the weight codes of {named} reach ±65, where its results can "
            "leave the model's exact arithmetic; hwgen computes exactly. Compare on a CPU with "
            "VNNI, or quantize with reduce_range=True")


def _run_onnxruntime(model, source, x):
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        data = str(source) if source is not None else model.SerializeToString()
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        raise HwgenError(f"onnxruntime cannot load the model: {error}") from None
    feed = session.get_inputs()[0]
    batch = feed.shape[0] if feed.shape else None
    try:
        if isinstance(batch, int) and batch != len(x):
            if batch != 1:
                raise HwgenError(f"the model's batch size is fixed to {batch}; give inputs in "
                                 f"multiples of it, not {len(x)}")
            outputs = [session.run(None, {feed.name: frame[None]})[0] for frame in x]
            y = np.concatenate(outputs)
        else:
            y = session.run(None, {feed.name: x})[0]
    except HwgenError:
        raise
    except Exception as error:
        raise HwgenError(f"onnxruntime cannot run the model on these inputs: {error}") from None
    return session.get_outputs()[0].name, _to_stream_order(y)


def _to_stream_order(y):
    """An ONNX output as the reference's ``(N, values)`` in HWC stream order."""
    if y.ndim == 4:  # NCHW → HWC
        y = y.transpose(0, 2, 3, 1)
    elif y.ndim == 3:  # NCL → the reference's (1, L, C)
        y = y.transpose(0, 2, 1)
    return y.reshape(len(y), -1)


def check_model(model, inputs, calibration=None, *, bits=None, output_bits=8):
    """Compare onnxruntime with hwgen's integer reference on ``inputs``.

    Parameters
    ----------
    model : path or onnx.ModelProto
    inputs : float array ``(N, *input_shape)`` in the model's layout (``(N, C, H, W)`` for
        images), or a ``.npy``/``.npz`` path.
    calibration : float array or path, optional
        Required for float models (quantized with ``bits``/``output_bits``); ignored for
        quantized ones.

    Returns
    -------
    CheckResult
    """
    from .api import load_inputs

    proto, stem = _read(model)
    source = Path(model) if isinstance(model, (str, Path)) else None
    quantized = is_quantized(proto)
    if quantized:
        qgraph = load_quantized_onnx(proto, name=stem)
        graph = None
    else:
        if calibration is None:
            raise HwgenError("the model is a float model: hwgen check compares it with its "
                             "quantized integer reference, so it needs calibration data "
                             "(--calib DATA)")
        graph = load_onnx(proto, name=stem)
        qgraph = quantize(graph, calibration, bits, output_bits=output_bits)
    x = load_inputs(inputs)
    shape = user_shape(qgraph.input_shape, qgraph.layout)
    if x.shape == shape:
        x = x[None]
    if x.shape[1:] != shape or len(x) == 0:
        raise HwgenError(f"the model takes inputs of shape (N, {', '.join(map(str, shape))}), "
                         f"not {x.shape}")
    golden = "onnxruntime"
    if has_qonnx_ops(proto):
        want, golden = run_qonnx(proto, x.astype(np.float32))
        name = proto.graph.output[0].name
        want = _to_stream_order(want)
    else:
        name, want = _run_onnxruntime(proto, source, x.astype(np.float32))
    got = run_integer(qgraph, qgraph.input_codes(x))
    removed = qgraph.removed_outputs  # quantize carries a float model's over
    if removed:
        # The model's output Softmax/ArgMax was removed at import: only the class compares.
        want_class = want[:, 0] if removed[-1] == "ArgMax" else want.argmax(axis=1)
        top1 = float(np.mean(got.argmax(axis=1) == want_class))
        return CheckResult(name, "classes", len(x), len(x), top1, removed=removed)
    top1 = float(np.mean(got.argmax(axis=1) == want.argmax(axis=1)))
    if quantized:
        out = qgraph.output
        if np.issubdtype(want.dtype, np.integer):
            codes = want.astype(np.int64)
        else:
            codes = np.round(want.astype(np.float64) / out.scale + out.zero_point)
            codes = codes.astype(np.int64)
        diff = np.abs(got - codes)
        caveats = ()
        if golden == "onnxruntime" and diff.max(initial=0) > 0:
            caveat = _saturation_caveat(qgraph)
            if caveat:
                caveats = (caveat,)
                warnings.warn(caveat, HwgenWarning, stacklevel=2)
        return CheckResult(name, "codes", len(x), diff.size, top1, golden=golden, caveats=caveats,
                           exact=float(np.mean(diff == 0)), within_one=float(np.mean(diff <= 1)),
                           max_diff=int(diff.max(initial=0)))
    real = qgraph.output.dequantize(got)
    return CheckResult(name, "float", len(x), real.size, top1,
                       max_abs_error=float(np.abs(real - want).max(initial=0)),
                       step=qgraph.output.scale)
