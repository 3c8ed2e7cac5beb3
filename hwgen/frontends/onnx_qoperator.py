"""The quantized importer's QOperator converters: ``QLinearConv``, ``QLinearMatMul``,
``QGemm``, ``QLinearAdd``, the ``QLinear`` pools, and ``MatMulInteger``/``ConvInteger`` with the
``Cast`` and ``Mul`` after them (mixed into :class:`hwgen.frontends.onnx_quant._QuantImporter`)."""

import dataclasses

import numpy as np
import onnx

from ..errors import HwgenError
from ..reference import Rounding
from .onnx_common import _attributes
from .onnx_quant_values import (_NUMPY_CODE_TYPES, _Codes, _Constant, _IntegerInput,
                                _Pending, _channel_bias, _make_quant, _per_axis, _scalar,
                                _to_nearest)

__all__ = ["QOperatorImporter"]


class QOperatorImporter:

    def _qlinear_conv(self, node, what):
        x = self._codes_in(node, 0, 1, 2)
        weight = self._quantized_constant(node, 3, 4, 5, 0, "weight w")
        bias = None
        if len(node.input) > 8 and node.input[8]:
            bias = self._const(node, 8, "bias B").astype(np.float64)
        pending = self._conv_pending(node, what, dataclasses.replace(x, real=True), weight,
                                     None, x.quant.zero_point)
        pending = dataclasses.replace(pending, bias=None if bias is None else
                                      _channel_bias(bias, pending.shape[0], what)
                                      * pending.acc_scale)
        quant = self._act_quant(node, 6, 7, what)
        rounding = _to_nearest(pending, quant)
        self._values[node.output[0]] = self._emit(pending, quant, rounding, False, what)

    def _qgemm(self, node, what):
        attributes = _attributes(node)
        if attributes.get("transA", 0):
            raise HwgenError(f"{what}: transA=1 is not supported")
        x = self._codes_in(node, 0, 1, 2, "input A")
        trans_b = attributes.get("transB", 0)
        weight = self._quantized_constant(node, 3, 4, 5, 0 if trans_b else 1, "weight B")
        if len(node.input) < 8 or not node.input[7]:
            raise HwgenError(f"{what} has a float output (no y_scale); hwgen needs quantized "
                             "layer outputs")
        pending = self._dense_pending(node, what, dataclasses.replace(x, real=True), weight,
                                      trans_b, None, x.quant.zero_point,
                                      alpha=attributes.get("alpha", 1.0))
        if len(node.input) > 6 and node.input[6]:
            bias = self._const(node, 6, "bias C").astype(np.float64)
            pending = dataclasses.replace(
                pending, bias=_channel_bias(bias, pending.shape[0], what) * pending.acc_scale)
        quant = self._act_quant(node, 7, 8, what)
        rounding = _to_nearest(pending, quant)
        self._values[node.output[0]] = self._emit(pending, quant, rounding, False, what)

    def _qlinear_matmul(self, node, what):
        x = self._codes_in(node, 0, 1, 2, "input a")
        weight = self._quantized_constant(node, 3, 4, 5, 1, "weight b")
        pending = self._dense_pending(node, what, dataclasses.replace(x, real=True), weight,
                                      False, None, x.quant.zero_point)
        quant = self._act_quant(node, 6, 7, what)
        rounding = _to_nearest(pending, quant)
        self._values[node.output[0]] = self._emit(pending, quant, rounding, False, what)

    def _qlinear_add(self, node, what):
        a = self._codes_in(node, 0, 1, 2, "input A")
        b = self._codes_in(node, 3, 4, 5, "input B")
        pending = self._add_pending(node, what, a, b)
        quant = self._act_quant(node, 6, 7, what)
        self._values[node.output[0]] = self._emit(pending, quant, Rounding.HALF_UP, False, what)

    def _qlinear_pool(self, node, what):
        x = self._codes_in(node, 0, 1, 2)
        pending = self._pool_pending(node, what, x, node.op_type)
        quant = self._act_quant(node, 3, 4, what)
        self._values[node.output[0]] = self._emit(pending, quant, _to_nearest(pending), False,
                                                  what)

    def _integer_op(self, node, what):
        """MatMulInteger/ConvInteger: an int32 accumulator, scaled by a later Mul."""
        x = self._value(node, 0, "input")
        if isinstance(x, _IntegerInput):
            x_zp = self._const(node, 2, "input zero point", required=False)
            zero_point = 0 if x_zp is None else int(_scalar(x_zp, what, "a_zero_point"))
            x = self._codes_input(node, 0, _make_quant(1.0, zero_point, x.bits, x.signed, what),
                                  x)
        if not isinstance(x, _Codes) or x.real:
            raise HwgenError(f"{what}: its input {node.input[0]!r} must be codes from a static "
                             "QuantizeLinear")
        codes = self._const(node, 1, "weight")
        if codes.dtype.kind not in "iu":
            raise HwgenError(f"{what}: its weight must hold integer codes, not {codes.dtype}")
        conv = node.op_type == "ConvInteger"
        x_zp = self._const(node, 2, "input zero point", required=False)
        x_zp = x.quant.zero_point if x_zp is None else int(_scalar(x_zp, what, "a_zero_point"))
        w_zp = self._const(node, 3, "weight zero point", required=False)
        w_zp = np.zeros(1, np.int64) if w_zp is None else w_zp
        weight = _Constant(codes.astype(np.int64), np.ones(codes.shape),
                           _per_axis(w_zp, codes, 0 if conv else 1, what).astype(np.int64),
                           _NUMPY_CODE_TYPES.get(codes.dtype.name, (8, True))[0], real=True)
        x = dataclasses.replace(x, real=True)
        if conv:
            pending = self._conv_pending(node, what, x, weight, None, x_zp, acc_scale=False)
        else:
            pending = self._dense_pending(node, what, x, weight, False, None, x_zp,
                                          acc_scale=False)
        self._values[node.output[0]] = pending

    def _cast(self, node, what):
        source = self._value(node, 0, "input")
        to = _attributes(node).get("to")
        if not isinstance(source, _Pending) or source.acc_scale is not None or to not in (
                onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
            raise HwgenError(f"{what}: hwgen supports Cast only of a MatMulInteger/ConvInteger "
                             "result to float")
        self._values[node.output[0]] = dataclasses.replace(source, cast=True)

    def _mul(self, node, what):
        a, b = (self._value(node, i, "input") for i in (0, 1))
        pending, scale = (a, b) if isinstance(a, _Pending) else (b, a)
        if not isinstance(pending, _Pending) or not pending.cast or pending.bias is not None \
                or pending.lo != -np.inf or not isinstance(scale, np.ndarray):
            raise HwgenError(f"{what}: hwgen supports Mul only by a constant scale right after "
                             "the Cast of a MatMulInteger/ConvInteger result")
        scale = _channel_bias(scale.astype(np.float64), pending.shape[0], what)
        if np.any(scale <= 0):
            raise HwgenError(f"{what}: the scale must be positive")
        current = 1.0 if pending.acc_scale is None else pending.acc_scale
        self._values[node.output[0]] = dataclasses.replace(pending, acc_scale=current * scale)
