"""The quantized importer's values (what flows between its nodes) and the helpers its
converters share (:mod:`hwgen.frontends.onnx_quant`, :mod:`hwgen.frontends.onnx_qoperator`)."""

import dataclasses
import math
import re

import numpy as np
import onnx

from ..errors import HwgenError
from ..qgraph import ActQuant
from ..quantize import scale_to_multiplier
from ..reference import Rounding
from .onnx_common import _base_name, _label

_CODE_TYPES = {
    onnx.TensorProto.UINT8: (8, False), onnx.TensorProto.INT8: (8, True),
    onnx.TensorProto.UINT16: (16, False), onnx.TensorProto.INT16: (16, True),
}
for _name, _entry in (("UINT4", (4, False)), ("INT4", (4, True))):
    if hasattr(onnx.TensorProto, _name):
        _CODE_TYPES[getattr(onnx.TensorProto, _name)] = _entry
_NUMPY_CODE_TYPES = {"uint8": (8, False), "int8": (8, True), "uint16": (16, False),
                     "int16": (16, True), "int32": (32, True)}
# Graph inputs that hold codes already (as ONNX's QLinear/Integer node tests feed them).
_CODE_INPUTS = {onnx.TensorProto.UINT8: (8, False), onnx.TensorProto.INT8: (8, True),
                onnx.TensorProto.UINT16: (16, False), onnx.TensorProto.INT16: (16, True)}


# -- values flowing through the graph ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Float:
    """The float graph input (before its ``QuantizeLinear``/``Quant``)."""

    shape: tuple


@dataclasses.dataclass(frozen=True)
class _IntegerInput:
    """A graph input that already holds integer codes (``bits``, ``signed``); the first op that
    reads it states its quantization (a QLinear op's scale and zero point; an integer op's zero
    point, scale 1)."""

    shape: tuple
    bits: int
    signed: bool


@dataclasses.dataclass(frozen=True)
class _Codes:
    """Integer codes of one hwgen tensor (``tensor``: the input's or a layer's name), or with
    ``real`` their dequantized values. ``shape`` is the ONNX shape without the batch; ``chw`` the
    ``(C, H, W)`` of an image flattened in ONNX's order (hwgen streams HWC). ``hwc``: an image
    a ``Transpose`` put in ``(H, W, C)`` order, hwgen's own, which only a flatten may read."""

    tensor: str
    quant: ActQuant
    shape: tuple
    real: bool = False
    chw: tuple = None
    hwc: bool = False


@dataclasses.dataclass(frozen=True)
class _Constant:
    """A constant integer tensor with its quantization (a quantized weight or bias):
    ``real = scale · (codes − zero_point)``, ``scale``/``zero_point`` broadcast to ``codes``.
    ``bits``: the declared width; ``real`` tells whether it has been dequantized."""

    codes: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    bits: int
    real: bool

    def value(self):
        return self.scale * (self.codes - self.zero_point)


@dataclasses.dataclass(frozen=True)
class _Pending:
    """A layer's float (or int32) result before its output quantization: ``acc_scale`` is the
    real value of one accumulator unit per output channel (``None`` while an integer op's result
    has not met its ``Mul``); ``bias`` real, per channel; ``lo``/``hi`` the real clamp from a
    folded ``Relu``/``Clip``; ``fields`` the layer's structural fields."""

    kind: str
    node: object
    inputs: tuple
    shape: tuple
    fields: dict
    acc_scale: np.ndarray = None
    bias: np.ndarray = None
    lo: float = -np.inf
    hi: float = np.inf
    cast: bool = False


def _scalar(array, what, role):
    array = np.asarray(array)
    if array.size != 1:
        raise HwgenError(f"{what}: {role} must be a scalar (per-tensor activation quantization), "
                         f"not of shape {array.shape}")
    return array.reshape(()).item()


_FLOAT_OPS = {"QLinearConv": "Conv", "ConvInteger": "Conv", "QGemm": "Gemm",
              "QLinearMatMul": "MatMul", "MatMulInteger": "MatMul", "QLinearAdd": "Add",
              "QLinearGlobalAveragePool": "GlobalAveragePool",
              "QLinearAveragePool": "AveragePool"}


def _layer_base(node):
    """A layer name from ``node`` as for float models; onnxruntime's quantizer appends
    ``_quant`` to node names and its QLinear ops stand for the float op."""
    name = re.sub(r"_quant$", "", node.name or node.output[0])
    name = re.sub(r"_(output_)?quantized$|_QuantizeLinear_(Input|Output)$", "", name)
    return _base_name(onnx.helper.make_node(_FLOAT_OPS.get(node.op_type, node.op_type), [],
                                            [node.output[0]], name=name))


def _to_nearest(source, quant=None):
    """hwgen's rounding for a quantization of what ``source`` computes that rounds to nearest,
    ties to even (``QuantizeLinear``, the ``QLinear*`` kernels, QONNX ``ROUND``), into
    ``quant`` (given for onnxruntime's QDQ and QOperator ops, not for QONNX).

    An average pool that onnxruntime runs as its fused ``QLinearAveragePool`` kernel (uint8
    codes in and out: onnxruntime fuses a QDQ ``DequantizeLinear → AveragePool →
    QuantizeLinear`` of uint8 on every CPU) gets ``FLOAT32_ORT``, that kernel's float32
    arithmetic: its ratio ``s_x / (s_y · kH·kW)`` is an exact power of two when the pool keeps
    its input's scale (as ``quantize_static`` makes it), so a quarter of a 2×2 pool's sums are
    ties, which float32 rounding moves either way. Other average pools (int8, whose kernel
    onnxruntime picks by CPU, and QONNX) get ``HALF_EVEN``. Elsewhere the ratio is a float32
    product that makes exact ties rare.

    Dense and conv layers of onnxruntime's models (``QLinearConv``, ``QLinearMatMul``,
    ``QGemm`` and the QDQ forms onnxruntime fuses into them) get ``FLOAT32_ORT`` too: those
    kernels requantize as ``rint(fl(fl(acc) · fl(fl(s_x · s_w) / s_y)))``, which the layer then
    reproduces with the float32 ratio as its ``M · 2^−n`` (see :meth:`_QuantImporter._emit`).
    A ``MatMulInteger``/``ConvInteger`` followed by float ops rounds twice in float32 (the
    ``Mul``, the ``QuantizeLinear``) and, like everything else, keeps ``HALF_UP``.
    """
    if isinstance(source, _Pending) and source.kind == "avg":
        if quant is not None and all(q.bits == 8 and not q.signed
                                     for q in (source.inputs[0].quant, quant)):
            return Rounding.FLOAT32_ORT
        return Rounding.HALF_EVEN
    if (isinstance(source, _Pending) and source.kind in ("dense", "conv") and quant is not None
            and not source.cast):
        return Rounding.FLOAT32_ORT
    return Rounding.HALF_UP


def _hwc(shape):
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else tuple(shape)


def _multiplier(ratio, what):
    ratio = np.atleast_1d(np.asarray(ratio, dtype=np.float64))
    if not np.all(np.isfinite(ratio)) or np.any(ratio <= 0):
        raise HwgenError(f"{what}: the requantization ratio must be positive and finite")
    return scale_to_multiplier(ratio)


def _clamp(quant, lo, hi, narrow):
    """Output code range after a folded activation ``[lo, hi]`` (real) and a narrow range."""
    clamp_lo, clamp_hi = quant.lo, quant.hi
    if narrow:
        if quant.signed:
            clamp_lo += 1
        else:
            clamp_hi -= 1
    if lo != -np.inf:
        clamp_lo = max(clamp_lo, int(quant.quantize(lo)))
    if hi != np.inf:
        clamp_hi = min(clamp_hi, int(quant.quantize(hi)))
    if clamp_lo > clamp_hi:
        raise HwgenError(f"the clamp range [{lo}, {hi}] is empty under {quant}")
    return {"clamp_lo": clamp_lo, "clamp_hi": clamp_hi,
            "relu": bool(clamp_lo >= quant.zero_point)}


def _code_range(bits, signed, narrow):
    if signed:
        return -(1 << (bits - 1)) + int(narrow), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1 - int(narrow)


def _make_quant(scale, zero_point, bits, signed, what):
    if not (scale > 0 and math.isfinite(scale)):
        raise HwgenError(f"{what}: the scale must be positive and finite, not {scale}")
    try:
        return ActQuant(scale=float(scale), zero_point=int(zero_point), bits=bits, signed=signed)
    except HwgenError as error:
        raise HwgenError(f"{what}: {error}") from None


def _same_quant(a, b):
    return (a.zero_point, a.bits, a.signed) == (b.zero_point, b.bits, b.signed) and \
        np.float32(a.scale) == np.float32(b.scale)


def _per_axis(value, codes, axis, what):
    """A per-tensor or per-axis quantization parameter broadcast to ``codes``' shape."""
    value = np.asarray(value)
    if value.size == 1:
        return np.broadcast_to(value.reshape(()), codes.shape)
    axis = axis % codes.ndim
    if value.ndim != 1 or value.size != codes.shape[axis]:
        raise HwgenError(f"{what}: a parameter of shape {value.shape} does not fit axis {axis} "
                         f"of a tensor of shape {codes.shape}")
    shape = [1] * codes.ndim
    shape[axis] = value.size
    return np.broadcast_to(value.reshape(shape), codes.shape)


def _weight_codes(weight, what, axis):
    """``(codes, per-channel scale)`` of a quantized weight whose output channels run along
    ``axis``; raises unless the scale varies along ``axis`` only.

    A weight zero point folds into the codes, ``w − zp_w``: exact, as ``Σ (w − zp_w)·x`` is
    what the float computation multiplies (asymmetric weights, as onnxruntime writes them with
    ``WeightSymmetric=False``, take a bit or two more per multiplier; see ``_emit``)."""
    codes = np.asarray(weight.codes, dtype=np.int64) - np.broadcast_to(
        np.asarray(weight.zero_point, dtype=np.int64), np.shape(weight.codes))
    scale = np.moveaxis(np.asarray(weight.scale, dtype=np.float64), axis, 0)
    channels = scale.reshape(len(scale), -1)
    if not np.all(channels == channels[:, :1]):
        raise HwgenError(f"{what}: the weight scale varies along an input axis; hwgen takes one "
                         "scale per output channel")
    scale = channels[:, 0].copy()
    if np.any(scale <= 0):
        raise HwgenError(f"{what}: weight scales must be positive")
    return codes, scale


def _channel_bias(bias, channels, what):
    """A bias (or per-channel scale) broadcast to ``(channels,)``."""
    if bias is None:
        return None
    bias = np.asarray(bias, dtype=np.float64)
    if bias.size == 1:
        return np.full(channels, float(bias.reshape(())))
    squeezed = bias.reshape(-1)
    if squeezed.size != channels or max(bias.shape) != channels:
        raise HwgenError(f"{what}: a per-channel constant of shape {bias.shape} does not fit "
                         f"{channels} channels")
    return squeezed


def _describe(node):
    return f"node {_label(node)!r} (op {node.op_type})"


# QONNX's rounding modes (qonnx.custom_op.general.intquant.resolve_rounding_mode), for weights.
_QONNX_ROUND = {
    "ROUND": np.round, "HALF_EVEN": np.round, "FLOOR": np.floor, "CEIL": np.ceil,
    "UP": lambda v: np.sign(v) * np.ceil(np.abs(v)), "DOWN": np.fix,
    "HALF_UP": lambda v: np.sign(v) * np.floor(np.abs(v) + 0.5),
    "HALF_DOWN": lambda v: np.sign(v) * np.ceil(np.abs(v) - 0.5),
}
