"""Quantized ONNX → :class:`~hwgen.qgraph.QGraph`, taking the model's scales, zero points and bit
widths as given (no re-calibration).

Three ways of writing a quantized network are read, also mixed in one model:

- **QDQ** (onnxruntime's ``quantize_static(..., quant_format=QuantFormat.QDQ)``):
  ``QuantizeLinear``/``DequantizeLinear`` pairs around float ``Conv``, ``Gemm``, ``MatMul``,
  ``Add`` (of two activations), ``MaxPool``, ``AveragePool``, ``GlobalAveragePool``,
  ``Flatten``/``Reshape``/``Identity``, ``Transpose`` (to channels last before a flatten);
  weights and the int32 bias as ``DequantizeLinear`` of
  constants, per tensor or per output channel; ``Relu``/``Clip`` between a layer and its
  ``QuantizeLinear`` fold into the layer's clamp.
- **QOperator** (``QuantFormat.QOperator``): ``QuantizeLinear`` at the input, ``QLinearConv``,
  ``QLinearMatMul``, ``QGemm``, ``QLinearAdd``, ``QLinearAveragePool``,
  ``QLinearGlobalAveragePool`` (the last four in domain ``com.microsoft``), ``MaxPool`` and
  ``Flatten``/``Reshape`` on code tensors, ``DequantizeLinear`` at the output; and
  ``MatMulInteger``/``ConvInteger`` followed by ``Cast`` to float, ``Mul`` by a constant scale,
  an optional ``Add`` of a constant bias, an optional ``Relu``/``Clip`` and a static
  ``QuantizeLinear``.
- **QONNX** (Brevitas' ``export_qonnx``): ``Quant`` nodes (domain ``qonnx.custom_op.general``
  or ``finn.custom_op.general``; inputs x, scale, zero point, bit width; attributes ``signed``,
  ``narrow``, ``rounding_mode``) on constant weights (and biases) and on activations, 2–16 bits.

How they map onto hwgen's integer contract (``docs/arithmetic.md``):

- A layer's accumulator scale is ``s_x · s_w[c]`` (or the constant of the ``Mul`` after an
  integer op). Dense and conv layers that onnxruntime runs as its requantizing kernels
  (``QLinearConv``, ``QLinearMatMul``, ``QGemm`` and the QDQ forms it fuses into them) take
  ``Rounding.FLOAT32_ORT``: ``M · 2^−n`` is exactly the kernels' float32 ratio
  ``fl(fl(s_x · s_w[c]) / s_y)`` (``M`` its 24-bit significand) and the result is
  ``rint(fl(acc · ratio))``, code for code, while ``|acc| < 2^24``. Elsewhere (QONNX, an
  integer op's float ``Mul``, or a wider accumulator, noted in ``QGraph.notes``) the ratio
  ``s_x · s_w[c] / s_y`` becomes a 16-bit ``(M, n)`` through
  :func:`hwgen.quantize.scale_to_multiplier`, rounding half up.
- The bias is taken in units of the accumulator scale: its integer part (``round(bias /
  (s_x · s_w[c]))``, the int32 bias itself for onnxruntime's models) starts the accumulator, with
  the input zero point folded in; what a real bias (Brevitas' default float bias) has below
  that step is kept as ``bias_fraction``, added to ``acc · M`` before the shift, so the result
  is the float computation's to ``2^−n`` output steps (:func:`hwgen.quantize.split_bias`).
- A ``MaxPool`` on dequantized values (QDQ, or QONNX's ``QuantReLU → MaxPool → QuantConv``)
  pools the codes in their quantization: the max commutes with the dequantization.
- A weight zero point folds into the codes (``w − zp_w``, exact). onnxruntime's int8 weights
  are symmetric but not narrow-range: ``−128`` occurs. hwgen's weights are narrow-range, so a
  layer whose codes reach ``−2^(b−1)`` (or, folded, leave the b-bit range) gets as many bits
  more as it needs (its multipliers are wider; results exact).
- ``Relu``/``Clip`` and QONNX ``narrow`` fold into the clamp of the layer before them.
- Average pools: a QDQ ``AveragePool`` keeps its input's scale, so ``M / 2^n`` is
  ``1 / (kH·kW)``, exactly for a power-of-two window, and a quarter of a 2×2 pool's sums are
  ties. onnxruntime computes them in float32, where the rounding of ``s·(q − zp)``, of the
  running sum and of the division moves about one in eight of those ties off the tie, to
  either side. With uint8 codes in and out onnxruntime fuses the QDQ pool into its
  ``QLinearAveragePool`` kernel on every CPU, and hwgen reproduces that kernel's arithmetic
  (``Rounding.FLOAT32_ORT``: float32 terms summed row by row, divided, divided by the output
  scale, the zero point added in float, rounded half to even), code for code.
- Known limit: int8 QDQ pools round the exact sum half to even (``Rounding.HALF_EVEN``), like
  ``QuantizeLinear``; their float32 arithmetic depends on the CPU. On x86-64 onnxruntime
  converts an int8 QDQ pair to uint8 (and fuses the pool) only when the pool's
  ``QuantizeLinear`` has a single consumer; otherwise it runs the float ``AveragePool``,
  whose summation order depends on the CPU (row by row in the blocked NCHWc kernel when the
  channels are a multiple of 16 on AVX-512 or 8 on AVX2, column pairs first otherwise); on
  ARM the fused int8 kernel runs. hwgen agrees on every non-tie code and stays within ±1
  (about 87 % of a small CNN's output codes behind such a pool are exact). The QOperator
  ``QLinearAveragePool`` with its own output scale makes exact ties rare and keeps
  ``HALF_EVEN`` (its float32 arithmetic is the fused kernel's, which ``FLOAT32_ORT`` could
  follow; it agrees like every other layer).

A tensor has one quantization: a ``DequantizeLinear`` must use the parameters its codes were
made with, and a ``QuantizeLinear`` after a max-pool or a reshape must keep them.
"""

import dataclasses
import math

import numpy as np
import onnx

from ..errors import HwgenError
from ..qgraph import MAX_BITS, MIN_BITS, QAdd, QConv, QDense, QGraph, QPool
from ..quantize import split_bias
from ..reference import Rounding
from .onnx_qoperator import QOperatorImporter
from .onnx_quant_ops import FloatOpsImporter
from .onnx_quant_values import (_CODE_INPUTS, _NUMPY_CODE_TYPES, _QONNX_ROUND, _Codes, _Constant,
                                _Float, _IntegerInput, _Pending, _clamp, _code_range, _describe,
                                _hwc, _layer_base, _make_quant, _multiplier, _per_axis,
                                _same_quant, _scalar, _to_nearest)
from .onnx_common import (_Namer, _attributes, _identifier, _read, _to_array, _topological,
                          constant_value, input_dims)

__all__ = ["load_quantized_onnx", "is_quantized", "SUPPORTED_QUANT_OPS", "QONNX_DOMAINS"]

QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general")
_MS_DOMAIN = "com.microsoft"
_DEFAULT_DOMAINS = ("", "ai.onnx")
# Ops whose presence makes a model "quantized" (hwgen.load then returns a QGraph).
_QUANT_MARKERS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QGemm",
                  "QLinearAdd", "QLinearGlobalAveragePool", "QLinearAveragePool",
                  "MatMulInteger", "ConvInteger", "Quant", "BipolarQuant", "Trunc",
                  "DynamicQuantizeLinear", "QLinearMul", "QLinearConcat", "QLinearSigmoid",
                  "QLinearLeakyRelu", "QLinearSoftmax", "QLinearReduceMean"}
SUPPORTED_QUANT_OPS = (
    "QuantizeLinear, DequantizeLinear, Conv, Gemm, MatMul, Add, MaxPool, AveragePool, "
    "GlobalAveragePool, Relu, Clip, Flatten, Reshape, Identity, Constant, QLinearConv, "
    "QLinearMatMul, MatMulInteger, ConvInteger (then Cast, Mul, Add), Softmax/LogSoftmax/"
    "ArgMax (at the output), "
    "com.microsoft: QGemm, QLinearAdd, QLinearAveragePool, QLinearGlobalAveragePool; "
    "QONNX: Quant")

# zero-point element type → (bits, signed)
def is_quantized(model):
    """Whether the ``onnx.ModelProto`` ``model`` holds quantization ops (QDQ, QOperator or
    QONNX), so that :func:`load_quantized_onnx` rather than the float importer reads it."""
    return any(node.op_type in _QUANT_MARKERS for node in model.graph.node)


def load_quantized_onnx(model, name=None):
    """Read a quantized model (QDQ, QOperator or QONNX) into a :class:`~hwgen.qgraph.QGraph`.

    Parameters
    ----------
    model : str, os.PathLike or onnx.ModelProto
    name : str, optional
        The graph's name (default: the file's stem, else the ONNX graph's name).

    Returns
    -------
    QGraph
        Input shape ``(K,)``, or ``(H, W, C)`` with ``layout="CHW"`` for an image input; the
        input quantization is the model's first ``QuantizeLinear`` (or ``Quant``).

    Raises
    ------
    HwgenError
        Naming the node, its op and the reason, for anything hwgen cannot reproduce exactly.
    """
    model, stem = _read(model)
    for entry in model.opset_import:
        if entry.domain == _MS_DOMAIN and entry.version != 1:
            raise HwgenError(f"the model imports domain {_MS_DOMAIN} version {entry.version}; "
                             "hwgen reads version 1 (what onnxruntime's quantizer writes)")
    if name is None:
        name = _identifier(stem or model.graph.name or "model", prefix="model")
    return _QuantImporter(model).run(name)


class _QuantImporter(FloatOpsImporter, QOperatorImporter):
    def __init__(self, model):
        self._graph = model.graph
        self._constants = {}
        self._values = {}
        self._layers = []
        self._names = _Namer()
        self._input_name = None
        self._input_quant = None
        self._input_layer = None
        self._removed = {}   # output tensor of a removed output op → that node
        self._notes = []

    # -- driver -----------------------------------------------------------------------------------

    def run(self, name):
        graph = self._graph
        for tensor in graph.initializer:
            self._constants[tensor.name] = _to_array(tensor, f"initializer {tensor.name!r}")
        nodes = []
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS:
                self._read_constant(node)
            else:
                nodes.append(node)
        self._read_input()
        if len(graph.output) != 1:
            raise HwgenError(f"the model has {len(graph.output)} outputs; hwgen takes models "
                             "with exactly one output")
        for node in _topological(nodes, set(self._constants) | {self._input_name}):
            self._convert(node)
        output = graph.output[0].name
        value = self._values.get(output)
        if value is None:
            if output in self._constants:
                raise HwgenError(f"the model output {output!r} does not depend on its input")
            raise HwgenError(f"the model output {output!r} is never computed")
        if isinstance(value, _Pending) and value.acc_scale is None:
            value = self._integer_output(value)  # MatMulInteger/ConvInteger's int32 result
        if isinstance(value, _Pending):
            raise HwgenError(f"the model output {output!r} is the float result of "
                             f"{_describe(value.node)} without a QuantizeLinear after it; hwgen "
                             "needs the output quantized")
        if not isinstance(value, _Codes) or value.tensor == self._input_layer:
            raise HwgenError(f"the model output {output!r} is not computed by any quantized "
                             "layer")
        if value.chw:
            raise HwgenError(f"the model output {output!r} is an image flattened in ONNX's "
                             "(C, H, W) order; hwgen streams (H, W, C): end with a dense layer")
        if not self._layers or self._layers[-1].name != value.tensor:
            raise HwgenError(f"the model output {output!r} must be the last layer's output")
        read = {i for layer in self._layers for i in layer.inputs} | {value.tensor}
        for layer in self._layers:
            if layer.name not in read:
                raise HwgenError(f"layer {layer.name!r}: its output is read by no node and is not "
                                 "the graph output; hwgen takes models with exactly one output")
        shape = self._values[self._input_name].shape
        if len(shape) == 3:
            channels, height, width = shape
            input_shape, layout = (height, width, channels), "CHW"
        else:
            input_shape, layout = tuple(shape), "HWC"
        return QGraph(name=name, input=self._input_quant, layers=tuple(self._layers),
                      input_name=self._input_layer, input_shape=input_shape, layout=layout,
                      notes=tuple(self._notes),
                      removed_outputs=tuple(n.op_type for n in self._removed.values()))

    def _read_constant(self, node):
        self._constants[node.output[0]] = constant_value(node, _describe(node))

    def _integer_output(self, pending):
        """An integer op's raw accumulator as the model output: codes of scale 1, as wide as
        the accumulator (at most 16 bits)."""
        what = _describe(pending.node)
        ones = np.ones(pending.shape[0])
        probe = self._emit(dataclasses.replace(pending, acc_scale=ones),
                           _make_quant(1.0, 0, 16, True, what), Rounding.HALF_UP, False, what)
        layer = self._layers.pop()
        self._names.release(probe.tensor)
        if layer.acc_bits > 16:
            raise HwgenError(f"{what}: its int32 result needs {layer.acc_bits} bits; hwgen's "
                             "outputs take at most 16 (add the usual Cast, Mul and "
                             "QuantizeLinear after it)")
        return self._emit(dataclasses.replace(pending, acc_scale=ones),
                          _make_quant(1.0, 0, max(layer.acc_bits, 2), True, what),
                          Rounding.HALF_UP, False, what)

    def _read_input(self):
        initializers = {tensor.name for tensor in self._graph.initializer}
        inputs = [value for value in self._graph.input if value.name not in initializers]
        if len(inputs) != 1:
            names = ", ".join(repr(value.name) for value in inputs)
            raise HwgenError(f"the model has {len(inputs)} inputs ({names}); hwgen takes models "
                             "with exactly one input (weights must be initializers)")
        value = inputs[0]
        what = f"input {value.name!r}"
        tensor_type = value.type.tensor_type
        codes = _CODE_INPUTS.get(tensor_type.elem_type) if value.type.HasField(
            "tensor_type") else None
        if codes is None and (not value.type.HasField("tensor_type") or tensor_type.elem_type
                              not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE,
                                      onnx.TensorProto.FLOAT16)):
            raise HwgenError(f"{what} must be a float tensor, quantized inside the model by a "
                             "QuantizeLinear (or QONNX Quant) node, or 8/16-bit integer codes")
        if not tensor_type.HasField("shape"):
            raise HwgenError(f"{what} has no shape information; export with a known shape")
        dims, text = input_dims(tensor_type)
        if len(dims) not in (2, 4) or not all(dims[1:]):
            raise HwgenError(f"{what} has shape {text}; hwgen takes (batch, features) or "
                             "(batch, channels, height, width) with every size but the batch "
                             "known (no dynamic shapes)")
        self._input_name = value.name
        self._values[value.name] = (_Float(tuple(dims[1:])) if codes is None
                                    else _IntegerInput(tuple(dims[1:]), *codes))
        layer = value.name if value.name.isidentifier() else "input"
        self._input_layer = self._names.claim(_identifier(layer, prefix="input"), "input")

    # -- helpers ----------------------------------------------------------------------------------

    def _const(self, node, index, role, required=True):
        """Constant input ``index`` of ``node`` as an array (None if absent and optional)."""
        what = _describe(node)
        if index >= len(node.input) or not node.input[index]:
            if required:
                raise HwgenError(f"{what}: its {role} is missing")
            return None
        tensor = node.input[index]
        if tensor not in self._constants:
            raise HwgenError(f"{what}: its {role} {tensor!r} is computed from the network input; "
                             "hwgen needs constant weights and quantization parameters "
                             "(initializers or Constant nodes)")
        return self._constants[tensor]

    def _value(self, node, index, role):
        tensor = node.input[index]
        if tensor in self._values:
            return self._values[tensor]
        if tensor in self._constants:
            return self._constants[tensor]
        raise HwgenError(f"{_describe(node)}: its {role} {tensor!r} is not available")

    def _codes_in(self, node, index, scale_index, zp_index, role="input"):
        """Input ``index`` of a QLinear op: codes whose quantization equals the op's
        ``(scale, zero point)`` inputs."""
        what = _describe(node)
        value = self._value(node, index, role)
        if isinstance(value, _IntegerInput):
            quant = self._act_quant(node, scale_index, zp_index, what,
                                    zp_dtype_default=(value.bits, value.signed))
            return self._codes_input(node, index, quant, value)
        if not isinstance(value, _Codes) or value.real:
            raise HwgenError(f"{what}: its {role} {node.input[index]!r} must be a quantized "
                             "activation (codes from QuantizeLinear or a QLinear op)")
        quant = self._act_quant(node, scale_index, zp_index, what)
        if not _same_quant(quant, value.quant):
            raise HwgenError(f"{what} reads {node.input[index]!r} as {quant}, but its codes were "
                             f"made as {value.quant}; hwgen needs one quantization per tensor")
        return value

    def _codes_input(self, node, index, quant, value):
        """The integer graph input as codes of ``quant`` (one quantization for every reader)."""
        if (quant.bits, quant.signed) != (value.bits, value.signed):
            raise HwgenError(f"{_describe(node)} reads the input as {quant}, but it holds "
                             f"{'int' if value.signed else 'uint'}{value.bits} codes")
        if self._input_quant is not None and not _same_quant(self._input_quant, quant):
            raise HwgenError(f"{_describe(node)} reads the input as {quant}, another node as "
                             f"{self._input_quant}; hwgen takes one input quantization")
        self._input_quant = quant
        codes = _Codes(self._input_layer, quant, value.shape)
        self._values[node.input[index]] = codes
        return codes

    def _act_quant(self, node, scale_index, zp_index, what, zp_dtype_default=(8, False)):
        scale = float(_scalar(self._const(node, scale_index, "scale"), what, "the scale"))
        zero_point = self._const(node, zp_index, "zero point", required=False)
        if zero_point is None:
            bits, signed, zp = *zp_dtype_default, 0
        else:
            if zero_point.dtype.name not in _NUMPY_CODE_TYPES or zero_point.dtype.name == "int32":
                raise HwgenError(f"{what}: activation codes of type {zero_point.dtype} are not "
                                 "supported; hwgen reads int8/uint8/int16/uint16 (and int4/uint4)")
            bits, signed = _NUMPY_CODE_TYPES[zero_point.dtype.name]
            zp = int(_scalar(zero_point, what, "the zero point"))
        return _make_quant(scale, zp, bits, signed, what)

    def _quantized_constant(self, node, index, scale_index, zp_index, axis, role):
        """A quantized constant (a QLinear op's weight or bias) as a :class:`_Constant`."""
        what = _describe(node)
        codes = self._const(node, index, role)
        if codes.dtype.kind not in "iu":
            raise HwgenError(f"{what}: its {role} must hold integer codes, not {codes.dtype}")
        scale = self._const(node, scale_index, f"{role} scale")
        zero_point = self._const(node, zp_index, f"{role} zero point", required=False)
        zero_point = np.zeros(1, codes.dtype) if zero_point is None else zero_point
        return _Constant(codes.astype(np.int64), _per_axis(scale, codes, axis, what),
                         _per_axis(zero_point, codes, axis, what).astype(np.int64),
                         _NUMPY_CODE_TYPES.get(codes.dtype.name, (32, True))[0], real=True)

    # -- conversion -------------------------------------------------------------------------------

    def _convert(self, node):
        what = _describe(node)
        if node.domain in QONNX_DOMAINS:
            converter = _QONNX_CONVERTERS.get(node.op_type)
        elif node.domain == _MS_DOMAIN:
            converter = _MS_CONVERTERS.get(node.op_type)
        elif node.domain in _DEFAULT_DOMAINS:
            converter = _CONVERTERS.get(node.op_type)
        else:
            converter = None
        if converter is None:
            domain = "" if node.domain in _DEFAULT_DOMAINS else f" in domain {node.domain!r}"
            hint = ""
            if node.op_type == "DynamicQuantizeLinear":
                hint = ("; dynamic quantization computes scales at run time, hardware needs them "
                        "fixed: quantize with onnxruntime.quantization.quantize_static")
            raise HwgenError(f"{what}{domain} is not supported in a quantized model{hint}; "
                             f"supported ops: {SUPPORTED_QUANT_OPS}")
        if len(node.output) != 1:
            raise HwgenError(f"{what} must have one output, not {len(node.output)}")
        if node.input and all(t in self._constants or not t for t in node.input) and \
                node.op_type not in ("QuantizeLinear", "DequantizeLinear", "Quant"):
            if node.op_type in ("Identity", "Reshape", "Flatten", "Cast"):
                self._fold_constant(node, what)
                return
            raise HwgenError(f"{what} computes on constants only; export with constant folding")
        for tensor in node.input:
            if tensor in self._removed and node.op_type not in _OUTPUT_OPS:
                raise HwgenError(f"{_describe(self._removed[tensor])} is not at the output: "
                                 f"{what} reads its result; hwgen removes "
                                 f"{'/'.join(_OUTPUT_OPS)} only where they end the model")
        converter(self, node, what)

    def _output_op(self, node, what):
        """An output Softmax/LogSoftmax/ArgMax over the classes of a quantized vector: the
        class it picks is the one the codes pick, so it is removed, with a note."""
        x = self._value(node, 0, "input")
        if not isinstance(x, _Codes) or len(x.shape) != 1:
            raise HwgenError(f"{what}: hwgen removes it at the output only over the classes of "
                             "a quantized (batch, classes) vector")
        axis = _attributes(node).get("axis", 0 if node.op_type == "ArgMax" else -1)
        if axis not in (1, -1):
            raise HwgenError(f"{what} works along axis {axis}; hwgen removes it at the output "
                             "only over the classes (axis 1)")
        self._removed[node.output[0]] = node
        self._values[node.output[0]] = x
        self._notes.append(f"removed the output {node.op_type} ({_describe(node)}): the class "
                           "the output codes pick is unchanged; the accelerator outputs the "
                           "codes before it")

    def _fold_constant(self, node, what):
        value = self._constants[node.input[0]]
        if node.op_type == "Identity":
            result = value
        elif node.op_type == "Cast":
            result = value.astype(onnx.helper.tensor_dtype_to_np_dtype(
                _attributes(node)["to"]))
        elif node.op_type == "Flatten":
            axis = _attributes(node).get("axis", 1)
            result = value.reshape(math.prod(value.shape[:axis]), -1)
        else:
            target = [int(d) for d in self._const(node, 1, "shape")]
            target = [value.shape[i] if d == 0 else d for i, d in enumerate(target)]
            result = value.reshape(target)
        self._constants[node.output[0]] = result

    # QuantizeLinear / DequantizeLinear / Quant

    def _quantize_linear(self, node, what):
        attributes = _attributes(node)
        if attributes.get("block_size", 0):
            raise HwgenError(f"{what}: blocked quantization (block_size) is not supported")
        source = self._value(node, 0, "input")
        if isinstance(source, np.ndarray):  # a float constant quantized in the graph
            scale = self._const(node, 1, "scale")
            zero_point = self._const(node, 2, "zero point", required=False)
            zero_point = np.zeros((), np.uint8) if zero_point is None else zero_point
            axis = attributes.get("axis", 1)
            bits, signed = _NUMPY_CODE_TYPES.get(zero_point.dtype.name, (8, False))
            lo, hi = _code_range(bits, signed, False)
            scale_b = _per_axis(scale, source, axis, what)
            zp_b = _per_axis(zero_point, source, axis, what).astype(np.int64)
            codes = np.clip(np.round(source / scale_b) + zp_b, lo, hi).astype(zero_point.dtype)
            self._constants[node.output[0]] = codes
            return
        quant = self._act_quant(node, 1, 2, what)
        self._values[node.output[0]] = self._quantize(node, what, source, quant,
                                                      _to_nearest(source, quant), narrow=False)

    def _quantize(self, node, what, source, quant, rounding, narrow):
        """``source`` (the float input, a pending layer or dequantized codes) quantized with
        ``quant``: codes of the input, a new layer, or the same codes."""
        if isinstance(source, _Float):
            if self._input_quant is not None and not _same_quant(self._input_quant, quant):
                raise HwgenError(f"{what} quantizes the input as {quant}, but another node "
                                 f"quantizes it as {self._input_quant}; hwgen takes one input "
                                 "quantization")
            self._input_quant = quant
            return _Codes(self._input_layer, quant, source.shape)
        if isinstance(source, _Pending):
            return self._emit(source, quant, rounding, narrow, what)
        if isinstance(source, _Codes) and source.real:
            if not _same_quant(quant, source.quant) or narrow:
                raise HwgenError(f"{what} re-quantizes {node.input[0]!r} ({source.quant}) as "
                                 f"{quant} without a layer in between; hwgen keeps one "
                                 "quantization per tensor (MaxPool, Flatten and Reshape must keep "
                                 "their input's scale and zero point)")
            return dataclasses.replace(source, real=False)
        raise HwgenError(f"{what}: its input {node.input[0]!r} is already quantized")

    def _dequantize_linear(self, node, what):
        source = self._value(node, 0, "input")
        if isinstance(source, np.ndarray):
            self._values[node.output[0]] = self._quantized_constant(
                node, 0, 1, 2, _attributes(node).get("axis", 1), "input")
            return
        if not isinstance(source, _Codes) or source.real:
            raise HwgenError(f"{what}: its input {node.input[0]!r} must be quantized codes")
        quant = self._act_quant(node, 1, 2, what)
        if not _same_quant(quant, source.quant):
            raise HwgenError(f"{what} reads {node.input[0]!r} as {quant}, but its codes were made "
                             f"as {source.quant}; hwgen needs one quantization per tensor")
        self._values[node.output[0]] = dataclasses.replace(source, real=True)

    def _qonnx_quant(self, node, what):
        attributes = _attributes(node)
        signed, narrow = bool(attributes.get("signed", 1)), bool(attributes.get("narrow", 0))
        mode = str(attributes.get("rounding_mode", "ROUND")).upper()
        source = self._value(node, 0, "input")
        scale = np.asarray(self._const(node, 1, "scale"), dtype=np.float64)
        zero_point = np.asarray(self._const(node, 2, "zero point"), dtype=np.float64)
        bitwidth = float(_scalar(self._const(node, 3, "bit width"), what, "the bit width"))
        if bitwidth != int(bitwidth) or not np.all(zero_point == np.round(zero_point)):
            raise HwgenError(f"{what}: bit width {bitwidth} and zero point must be integers")
        bits = int(bitwidth)
        if isinstance(source, np.ndarray):  # a weight or bias: quantize it here
            if bits < MIN_BITS or bits > 32:
                raise HwgenError(f"{what}: bit width {bits} must be in {MIN_BITS}..32")
            if mode not in _QONNX_ROUND:
                raise HwgenError(f"{what}: rounding_mode {mode!r} is not supported; use one of "
                                 f"{', '.join(_QONNX_ROUND)}")
            lo, hi = _code_range(bits, signed, narrow)
            scale_b = np.broadcast_to(scale, source.shape).astype(np.float64)
            zp_b = np.broadcast_to(zero_point, source.shape).astype(np.int64)
            codes = np.clip(_QONNX_ROUND[mode](source / scale_b + zp_b), lo, hi).astype(np.int64)
            self._values[node.output[0]] = _Constant(codes, scale_b, zp_b, bits, real=True)
            return
        if not MIN_BITS <= bits <= MAX_BITS:
            raise HwgenError(f"{what}: activations of {bits} bits are not supported; hwgen "
                             f"takes {MIN_BITS}..{MAX_BITS}")
        # hwgen's HALF_UP rounds ties toward +∞, qonnx's away from zero: the two differ only
        # at an exact tie of a negative value.
        rounding = {"ROUND": _to_nearest(source), "HALF_EVEN": _to_nearest(source),
                    "HALF_UP": Rounding.HALF_UP, "FLOOR": Rounding.FLOOR}.get(mode)
        if rounding is None or (isinstance(source, _Float) and mode not in ("ROUND", "HALF_EVEN")):
            raise HwgenError(f"{what}: rounding_mode {mode!r} is not supported on this tensor; "
                             "hwgen rounds activations to nearest (ROUND) or down (FLOOR, layer "
                             "outputs only)")
        quant = _make_quant(float(_scalar(scale, what, "the scale")),
                            int(_scalar(zero_point, what, "the zero point")), bits, signed, what)
        if isinstance(source, _Float) and narrow:
            raise HwgenError(f"{what}: a narrow-range input quantization is not supported")
        codes = self._quantize(node, what, source, quant, rounding, narrow)
        self._values[node.output[0]] = dataclasses.replace(codes, real=True)

    # -- emitting layers --------------------------------------------------------------------------

    def _float32_requant(self, node, acc_scale, quant, units, weight, x_quant, fraction,
                         approximate):
        """``(rounding, M, n, fraction)`` of a dense/conv layer onnxruntime requantizes in
        float32: ``M · 2^−n`` is exactly the kernel's float32 ratio ``fl(fl(s_x · s_w) / s_y)``
        (``M`` its 24-bit significand), bit-exact while ``|acc| < 2^24`` (an exact float32).
        A layer whose accumulator can pass ``2^24``, or whose bias is not on the accumulator's
        grid (not onnxruntime's int32 bias), keeps ``HALF_UP`` with ``approximate`` and a note."""
        ratio = (acc_scale.astype(np.float32) / np.float32(quant.scale)).astype(np.float64)
        mantissa, exponent = np.frexp(ratio)
        multiplier = np.ldexp(mantissa, 24).astype(np.int64)
        shift = (24 - exponent).astype(np.int64)
        flat = np.abs(weight.reshape(len(weight), -1))
        span = max(abs(x_quant.lo - x_quant.zero_point), abs(x_quant.hi - x_quant.zero_point))
        # onnxruntime's int32 accumulator, Σ w·(q − zp_x) + b (hwgen's starts from b − zp_x·Σw
        # and adds w·q: the same value)
        start = np.zeros(len(weight)) if units is None else np.abs(np.round(units))
        bound = int((start + flat.sum(axis=1) * span).max(initial=0))
        reason = None
        # onnxruntime's int32 bias, scaled by fl(s_x · s_w), is an integer to float32 precision
        if units is not None and not np.allclose(units, np.round(units), rtol=2 ** -22,
                                                 atol=1e-6):
            reason = "its bias is not on the accumulator's grid"
        elif bound >= 1 << 24:
            reason = (f"its accumulator reaches {bound:,} (float32 is exact below 2^24, "
                      "16,777,216)")
        elif np.any(shift < 1) or np.any(shift > 62):
            reason = "its ratio is out of range"
        if reason is None:
            return Rounding.FLOAT32_ORT, multiplier, shift, None
        self._notes.append(f"{_describe(node)}: onnxruntime requantizes in float32; hwgen rounds "
                           f"half up instead, because {reason} (±1 at rare ties)")
        return (Rounding.HALF_UP, *approximate, fraction)

    def _emit(self, pending, quant, rounding, narrow, what):
        """The hwgen layer computing ``pending`` with output ``quant``; returns its codes."""
        if any(getattr(x, "hwc", False) for x in pending.inputs):
            raise HwgenError(f"{_describe(pending.node)} reads an image transposed to (H, W, C); "
                             "hwgen takes a Transpose (0, 2, 3, 1) only before a "
                             "Flatten/Reshape")
        if pending.acc_scale is None and pending.kind in ("dense", "conv"):
            raise HwgenError(f"{_describe(pending.node)}: its integer result must be Cast to float "
                             f"and multiplied by a constant scale before {what}")
        node = pending.node
        op = {"dense": "dense", "conv": "conv", "add": "add"}.get(pending.kind, "pool")
        name = self._names.claim(_layer_base(node), op if op != "pool" else pending.kind + "pool")
        inputs = tuple(x.tensor for x in pending.inputs)
        clamp = _clamp(quant, pending.lo, pending.hi, narrow)
        x = pending.inputs[0]
        if pending.kind == "max":
            if not _same_quant(quant, x.quant) or narrow:
                raise HwgenError(f"{_describe(node)}: its output is quantized as {quant}, its "
                                 f"input as {x.quant}; hwgen's max-pool keeps its input's "
                                 "quantization")
            layer = QPool(name=name, inputs=inputs, kind="max", input=x.quant, output=x.quant,
                          **pending.fields)
        elif pending.kind in ("avg", "global_avg"):
            window = pending.fields["kernel"][0] * pending.fields["kernel"][1]
            ratio = x.quant.scale / (quant.scale * window)
            multiplier, shift = _multiplier(ratio, what)
            layer = QPool(name=name, inputs=inputs, kind=pending.kind, input=x.quant,
                          output=quant, multiplier=int(multiplier[0]), shift=int(shift[0]),
                          rounding=rounding, **clamp, **pending.fields)
        elif pending.kind == "add":
            a, b = pending.inputs
            ratios = np.array([a.quant.scale / quant.scale, b.quant.scale / quant.scale])
            _, shifts = _multiplier(ratios, what)
            shift = int(shifts.max())
            multiplier_a, multiplier_b = (int(m) for m in np.round(np.ldexp(ratios, shift)))
            layer = QAdd(name=name, inputs=inputs, shape=_hwc(pending.shape), input_a=a.quant,
                         input_b=b.quant, output=quant, multiplier_a=multiplier_a,
                         multiplier_b=multiplier_b, shift=shift, rounding=rounding, **clamp)
        else:
            fields = dict(pending.fields)
            zero_point = fields.pop("zero_point")
            weight = fields["weight"]
            flat = weight.reshape(len(weight), -1)
            acc_scale = np.broadcast_to(pending.acc_scale, (len(weight),)).astype(np.float64)
            multiplier, shift = _multiplier(acc_scale / quant.scale, what)
            # A real bias (Brevitas' default) keeps what lies below the accumulator's step as
            # a fraction added after the multiplication (exact to 2^−n output steps).
            bias, fraction = np.zeros(len(weight), np.int64), None
            if pending.bias is not None:
                bias, fraction = split_bias(pending.bias / acc_scale, acc_scale / quant.scale,
                                            shift)
            bias = bias - zero_point * flat.sum(axis=1)
            if rounding is Rounding.FLOAT32_ORT:
                units = None if pending.bias is None else pending.bias / acc_scale
                rounding, multiplier, shift, fraction = self._float32_requant(
                    node, acc_scale, quant, units, weight, x.quant, fraction,
                    (multiplier, shift))
            # hwgen's weights are narrow-range; a code of −2^(b−1) (onnxruntime's int8 weights
            # reach −128) takes one more bit so the layer stays exact.
            bits = fields["weight_bits"]
            while np.abs(weight).max(initial=0) > (1 << (bits - 1)) - 1:
                bits += 1
            if not MIN_BITS <= bits <= MAX_BITS:
                raise HwgenError(f"{_describe(node)}: {bits}-bit weights are not supported; "
                                 f"hwgen takes {MIN_BITS}..{MAX_BITS} (narrow range)")
            fields["weight_bits"] = bits
            weight_scale = fields["weight_scale"]
            fields["weight_scale"] = np.broadcast_to(weight_scale, (len(weight),)).astype(
                np.float64) if weight_scale is not None else np.ones(len(weight))
            cls = QDense if pending.kind == "dense" else QConv
            layer = cls(name=name, inputs=inputs, bias=bias, multiplier=multiplier, shift=shift,
                        input=x.quant, output=quant, rounding=rounding, bias_fraction=fraction,
                        **clamp, **fields)
        self._layers.append(layer)
        return _Codes(name, quant, pending.shape)


_CONVERTERS = {
    "QuantizeLinear": _QuantImporter._quantize_linear,
    "DequantizeLinear": _QuantImporter._dequantize_linear,
    "Conv": _QuantImporter._conv,
    "Gemm": _QuantImporter._gemm,
    "MatMul": _QuantImporter._matmul,
    "Add": _QuantImporter._add,
    "MaxPool": _QuantImporter._pool,
    "AveragePool": _QuantImporter._pool,
    "GlobalAveragePool": _QuantImporter._pool,
    "Relu": _QuantImporter._relu,
    "Clip": _QuantImporter._clip,
    "Flatten": _QuantImporter._reshape,
    "Reshape": _QuantImporter._reshape,
    "Identity": _QuantImporter._reshape,
    "Transpose": _QuantImporter._transpose,
    "QLinearConv": _QuantImporter._qlinear_conv,
    "QLinearMatMul": _QuantImporter._qlinear_matmul,
    "MatMulInteger": _QuantImporter._integer_op,
    "ConvInteger": _QuantImporter._integer_op,
    "Cast": _QuantImporter._cast,
    "Mul": _QuantImporter._mul,
    "Softmax": _QuantImporter._output_op,
    "LogSoftmax": _QuantImporter._output_op,
    "ArgMax": _QuantImporter._output_op,
}
_OUTPUT_OPS = ("Softmax", "LogSoftmax", "ArgMax")
_MS_CONVERTERS = {
    "QGemm": _QuantImporter._qgemm,
    "QLinearAdd": _QuantImporter._qlinear_add,
    "QLinearGlobalAveragePool": _QuantImporter._qlinear_pool,
    "QLinearAveragePool": _QuantImporter._qlinear_pool,
}
_QONNX_CONVERTERS = {"Quant": _QuantImporter._qonnx_quant}
