"""The quantized importer's converters of float ops on dequantized values (QDQ, QONNX):
``Conv``, ``Gemm``, ``MatMul``, ``Add``, the pools, ``Relu``, ``Clip``, ``Reshape``/``Flatten``
and ``Transpose`` (mixed into :class:`hwgen.frontends.onnx_quant._QuantImporter`)."""

import dataclasses
import math

import numpy as np

from ..errors import HwgenError
from ..reference import Rounding
from .onnx_quant_values import _Codes, _Constant, _Pending, _channel_bias, _describe, _weight_codes
from .onnx_common import _attributes, _check_kernel, _window, _window_output

__all__ = ["FloatOpsImporter"]


class FloatOpsImporter:

    def _weight(self, node, index, role):
        value = self._value(node, index, role)
        if isinstance(value, np.ndarray):
            raise HwgenError(f"{_describe(node)}: its {role} {node.input[index]!r} is a float "
                             "constant; in a quantized model weights must be quantized "
                             "(DequantizeLinear of integer codes, or a QONNX Quant)")
        if not isinstance(value, _Constant):
            raise HwgenError(f"{_describe(node)}: its {role} {node.input[index]!r} is computed "
                             "from the network input; hwgen needs constant weights")
        return value

    def _bias_real(self, node, index):
        if index >= len(node.input) or not node.input[index]:
            return None
        value = self._value(node, index, "bias")
        if isinstance(value, _Constant):
            return value.value()
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            return value.astype(np.float64)
        raise HwgenError(f"{_describe(node)}: its bias {node.input[index]!r} must be a constant")

    def _real_in(self, node, index, role="input"):
        value = self._value(node, index, role)
        if not isinstance(value, _Codes) or not value.real:
            raise HwgenError(f"{_describe(node)}: its {role} {node.input[index]!r} must be a "
                             "dequantized activation (DequantizeLinear or Quant output); hwgen "
                             "maps quantized layers only")
        return value

    def _conv(self, node, what):
        x = self._real_in(node, 0)
        weight = self._weight(node, 1, "weight W")
        bias = self._bias_real(node, 2)
        self._values[node.output[0]] = self._conv_pending(node, what, x, weight, bias,
                                                          x.quant.zero_point)

    def _conv_pending(self, node, what, x, weight, bias, zero_point, acc_scale=True):
        if len(x.shape) != 3:
            raise HwgenError(f"{what} needs an image input, not shape {x.shape}")
        if x.hwc:
            raise HwgenError(f"{what} reads an image transposed to (H, W, C); hwgen takes a "
                             "Transpose (0, 2, 3, 1) only before a Flatten/Reshape")
        codes, scale = _weight_codes(weight, what, axis=0)
        if codes.ndim != 4:
            raise HwgenError(f"{what}: weight W has shape {codes.shape}; hwgen supports 2-D "
                             "convolutions")
        attributes = _attributes(node)
        out_channels, per_group, kh, kw = codes.shape
        channels = x.shape[0]
        group = attributes.get("group", 1)
        if per_group * group != channels or (group != 1 and not group == channels
                                             == out_channels):
            raise HwgenError(f"{what}: group={group} with weight {codes.shape} on {channels} "
                             "channels; hwgen supports group=1 and depthwise convolutions")
        kernel = _check_kernel(attributes, (kh, kw), what, "weight W")
        stride, pads = _window(attributes, x.shape[1:], kernel, what)
        size = _window_output(x.shape[1:], kernel, stride, pads, what)
        fields = dict(weight=codes.transpose(0, 2, 3, 1), weight_bits=weight.bits,
                      weight_scale=scale, stride=stride, pads=pads, groups=group,
                      in_shape=(x.shape[1], x.shape[2], channels),
                      out_shape=(size[0], size[1], out_channels), zero_point=zero_point)
        return _Pending("conv", node, (x,), (out_channels, *size), fields,
                        acc_scale=x.quant.scale * scale if acc_scale else None,
                        bias=_channel_bias(bias, out_channels, what))

    def _dense_pending(self, node, what, x, weight, trans_b, bias, zero_point, alpha=1.0,
                       acc_scale=True):
        if len(x.shape) != 1:
            raise HwgenError(f"{what} needs a (batch, features) input, not an image {x.shape}; "
                             "flatten it first")
        # ONNX's weight is (K, N), or (N, K) with transB; per-channel scales run along N.
        axis = 0 if trans_b else 1
        codes, scale = _weight_codes(weight, what, axis=axis)
        if codes.ndim != 2:
            raise HwgenError(f"{what}: the weight must be 2-D, not {codes.shape}")
        codes = codes if trans_b else codes.T
        if codes.shape[1] != x.shape[0]:
            raise HwgenError(f"{what}: the weight {codes.shape} (N, K) does not fit the "
                             f"activation's {x.shape[0]} features")
        if x.chw:
            channels, height, width = x.chw
            codes = codes.reshape(-1, channels, height, width).transpose(0, 2, 3, 1)
            codes = codes.reshape(len(codes), -1)
        fields = dict(weight=codes, weight_bits=weight.bits, weight_scale=scale,
                      zero_point=zero_point)
        out = codes.shape[0]
        return _Pending("dense", node, (x,), (out,), fields,
                        acc_scale=alpha * x.quant.scale * scale if acc_scale else None,
                        bias=_channel_bias(bias, out, what))

    def _gemm(self, node, what):
        attributes = _attributes(node)
        if attributes.get("transA", 0):
            raise HwgenError(f"{what}: transA=1 is not supported in a quantized model")
        x = self._real_in(node, 0, "input A")
        weight = self._weight(node, 1, "weight B")
        bias = self._bias_real(node, 2)
        if bias is not None:
            bias = attributes.get("beta", 1.0) * bias
        self._values[node.output[0]] = self._dense_pending(
            node, what, x, weight, attributes.get("transB", 0), bias, x.quant.zero_point,
            alpha=attributes.get("alpha", 1.0))

    def _matmul(self, node, what):
        x = self._real_in(node, 0, "input A")
        weight = self._weight(node, 1, "weight B")
        self._values[node.output[0]] = self._dense_pending(node, what, x, weight, False, None,
                                                           x.quant.zero_point)

    def _add(self, node, what):
        a, b = (self._value(node, i, "input") for i in (0, 1))
        if isinstance(a, _Pending) or isinstance(b, _Pending):
            pending, other = (a, b) if isinstance(a, _Pending) else (b, a)
            if pending.kind not in ("dense", "conv") or pending.lo != -np.inf or \
                    pending.hi != np.inf:
                raise HwgenError(f"{what} adds to the result of {_describe(pending.node)}; "
                                 "hwgen folds only a constant bias into a Conv/Gemm/MatMul")
            if isinstance(other, _Constant):
                other = other.value()
            if not isinstance(other, np.ndarray):
                raise HwgenError(f"{what}: a bias added to {_describe(pending.node)} must be a "
                                 "constant")
            bias = _channel_bias(other.astype(np.float64), pending.shape[0], what)
            total = bias if pending.bias is None else pending.bias + bias
            self._values[node.output[0]] = dataclasses.replace(pending, bias=total)
            return
        for index, value in enumerate((a, b)):
            if not isinstance(value, _Codes) or not value.real:
                raise HwgenError(f"{what}: input {node.input[index]!r} must be a dequantized "
                                 "activation; hwgen adds two quantized activations (a residual "
                                 "connection) or folds a constant bias into the layer before")
        self._values[node.output[0]] = self._add_pending(node, what, a, b)

    def _add_pending(self, node, what, a, b):
        if a.shape != b.shape or a.chw != b.chw:
            raise HwgenError(f"{what} adds tensors of shapes {a.shape} and {b.shape}; hwgen adds "
                             "tensors of the same shape only (no broadcasting)")
        return _Pending("add", node, (a, b), a.shape, {})

    def _pool(self, node, what):
        x = self._value(node, 0, "input")
        if not isinstance(x, _Codes):
            raise HwgenError(f"{what}: its input must be a quantized activation")
        pending = self._pool_pending(node, what, x, node.op_type)
        if pending.kind == "max":
            # The max commutes with the (monotonic) dequantization: a max-pool of the codes,
            # in the input's quantization, whether it runs on codes (QOperator) or on their
            # dequantized values (QDQ, and QONNX's QuantReLU → MaxPool → QuantConv).
            codes = self._emit(pending, x.quant, Rounding.HALF_UP, False, what)
            self._values[node.output[0]] = dataclasses.replace(codes, real=x.real)
        else:
            self._values[node.output[0]] = pending

    def _pool_pending(self, node, what, x, op_type):
        if len(x.shape) != 3:
            raise HwgenError(f"{what} needs an image input, not shape {x.shape}")
        if x.hwc:
            raise HwgenError(f"{what} reads an image transposed to (H, W, C); hwgen takes a "
                             "Transpose (0, 2, 3, 1) only before a Flatten/Reshape")
        channels, height, width = x.shape
        attributes = _attributes(node)
        if op_type.endswith("GlobalAveragePool"):
            if attributes.get("channels_last", 0):
                raise HwgenError(f"{what}: channels_last=1 is not supported")
            kind, kernel, stride, pads = "global_avg", (height, width), (1, 1), (0, 0, 0, 0)
            size = (1, 1)
        else:
            if "kernel_shape" not in attributes:
                raise HwgenError(f"{what} has no kernel_shape")
            kernel = _check_kernel(attributes, None, what, None)
            stride, pads = _window(attributes, (height, width), kernel, what)
            if attributes.get("ceil_mode", 0) or (attributes.get("storage_order", 0)):
                raise HwgenError(f"{what}: ceil_mode=1 / storage_order=1 is not supported")
            if op_type.endswith("AveragePool") and any(pads) and not attributes.get(
                    "count_include_pad", 0):
                raise HwgenError(f"{what}: padding with count_include_pad=0 is not supported; "
                                 "hwgen divides every window by kH·kW")
            size = _window_output((height, width), kernel, stride, pads, what)
            kind = "max" if op_type == "MaxPool" else "avg"
        fields = dict(kernel=tuple(kernel), stride=tuple(stride), pads=tuple(pads),
                      in_shape=(height, width, channels), out_shape=(*size, channels))
        return _Pending(kind, node, (x,), (channels, *size), fields)

    def _relu(self, node, what):
        source = self._value(node, 0, "input")
        if not isinstance(source, _Pending) or source.kind == "max":
            raise HwgenError(f"{what} must follow a Conv, Gemm, MatMul, Add or average pool "
                             "before its QuantizeLinear; hwgen folds it into that layer's clamp")
        self._values[node.output[0]] = dataclasses.replace(source, lo=max(source.lo, 0.0))

    def _clip(self, node, what):
        source = self._value(node, 0, "input")
        if not isinstance(source, _Pending) or source.kind == "max":
            raise HwgenError(f"{what} must follow a Conv, Gemm, MatMul, Add or average pool "
                             "before its QuantizeLinear; hwgen folds it into that layer's clamp")
        attributes = _attributes(node)
        bounds = []
        for index, role, default in ((1, "min", -np.inf), (2, "max", np.inf)):
            value = self._const(node, index, role, required=False)
            if value is None:
                value = attributes.get(role, default)
            if isinstance(value, _Constant):
                value = value.value()
            bounds.append(float(np.asarray(value, dtype=np.float64).reshape(())))
        self._values[node.output[0]] = dataclasses.replace(
            source, lo=max(source.lo, bounds[0]), hi=min(source.hi, bounds[1]))

    def _reshape(self, node, what):
        x = self._value(node, 0, "input")
        if not isinstance(x, _Codes):
            raise HwgenError(f"{what}: hwgen reshapes only quantized activations (after their "
                             "QuantizeLinear/DequantizeLinear)")
        if node.op_type == "Identity":
            self._values[node.output[0]] = x
            return
        features = math.prod(x.shape)
        if node.op_type == "Flatten":
            axis = _attributes(node).get("axis", 1)
            if axis != 1:
                raise HwgenError(f"{what}: axis={axis}; hwgen flattens (batch, …) to "
                                 "(batch, features) only (axis=1)")
            shape = (features,)
        else:
            target = [int(d) for d in self._const(node, 1, "shape")]
            rest = target[1:]
            if len(target) < 2 or target[0] not in (0, -1, 1) or (
                    rest != [features] and rest != [-1] and rest != list(x.shape)):
                raise HwgenError(f"{what}: reshaping {x.shape} to {target}; hwgen supports "
                                 "Reshape to (batch, features) or to the same shape only")
            shape = x.shape if rest == list(x.shape) else (features,)
        if shape == x.shape:
            self._values[node.output[0]] = x
            return
        chw = x.chw
        if len(x.shape) == 3 and x.shape[0] > 1 and x.shape[1] * x.shape[2] > 1 and not x.hwc:
            chw = x.shape
        self._values[node.output[0]] = dataclasses.replace(x, shape=shape, chw=chw, hwc=False)

    def _transpose(self, node, what):
        """A ``Transpose`` of codes (or their dequantized values) keeps their quantization:
        ``(0, 2, 3, 1)`` puts an image in hwgen's own ``(H, W, C)`` order, for a flatten (the
        dense layer after it then reads the stream as it comes), ``(0, 3, 1, 2)`` undoes it,
        the identity passes."""
        x = self._value(node, 0, "input")
        if not isinstance(x, _Codes):
            raise HwgenError(f"{what}: hwgen transposes only quantized activations (after their "
                             "QuantizeLinear/DequantizeLinear)")
        rank = len(x.shape) + 1
        perm = [int(p) for p in _attributes(node).get("perm", reversed(range(rank)))]
        if perm == list(range(rank)):
            self._values[node.output[0]] = x
        elif rank == 4 and perm == [0, 2, 3, 1] and not x.hwc:
            channels, height, width = x.shape
            self._values[node.output[0]] = dataclasses.replace(
                x, shape=(height, width, channels), hwc=True)
        elif rank == 4 and perm == [0, 3, 1, 2] and x.hwc:
            height, width, channels = x.shape
            self._values[node.output[0]] = dataclasses.replace(
                x, shape=(channels, height, width), hwc=False)
        else:
            raise HwgenError(f"{what}: perm={perm} of a tensor of shape (N, "
                             f"{', '.join(map(str, x.shape))}); hwgen supports (0, 2, 3, 1) of an "
                             "image before a Flatten/Reshape, its inverse, and the identity")
