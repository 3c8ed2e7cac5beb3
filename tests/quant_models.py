"""Float models built with onnx.helper and quantized by onnxruntime's own ``quantize_static``
(QDQ and QOperator), for the quantized-ONNX importer's tests."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)


def const(name, array, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(array, dtype=dtype), name)


def weight_codes(rng, shape):
    """Random int8 weight codes in ±64, the range in which onnxruntime's uint8 × int8 kernels
    are exact on every x86-64 CPU (two products of 255 · 64 fit an int16; see
    :func:`hwgen.check.onnxruntime_saturates`)."""
    return rng.integers(-64, 65, shape)


def float_model(nodes, initializers, input_shape, output_shape, name="g", opset=17):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *input_shape])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *output_shape])
    graph = helper.make_graph(nodes, name, [x], [y], initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def mlp(seed=0, features=16, hidden=24, out=10, matmul=False):
    """Gemm+Relu+Gemm (torch's Linear export), or MatMul+Relu+MatMul without biases."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((hidden, features)) * 0.3
    w2 = rng.standard_normal((out, hidden)) * 0.3
    if matmul:
        inits = [const("w1", w1.T), const("w2", w2.T)]
        nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="/fc1/MatMul"),
                 helper.make_node("Relu", ["h"], ["hr"], name="/relu/Relu"),
                 helper.make_node("MatMul", ["hr", "w2"], ["y"], name="/fc2/MatMul")]
    else:
        inits = [const("w1", w1), const("b1", rng.standard_normal(hidden) * 0.1),
                 const("w2", w2), const("b2", rng.standard_normal(out) * 0.1)]
        nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="/fc1/Gemm", transB=1),
                 helper.make_node("Relu", ["h"], ["hr"], name="/relu/Relu"),
                 helper.make_node("Gemm", ["hr", "w2", "b2"], ["y"], name="/fc2/Gemm",
                                  transB=1)]
    return float_model(nodes, inits, (features,), (out,), "mlp")


def cnn(seed=0, pool="MaxPool"):
    """conv+relu+pool+conv+relu+add(residual)+GAP+flatten+gemm on (3, 8, 8) images."""
    rng = np.random.default_rng(seed)
    inits = [const("w1", rng.standard_normal((8, 3, 3, 3)) * 0.3),
             const("b1", rng.standard_normal(8) * 0.1),
             const("w2", rng.standard_normal((8, 8, 3, 3)) * 0.2),
             const("b2", rng.standard_normal(8) * 0.1),
             const("w3", rng.standard_normal((10, 8)) * 0.3),
             const("b3", rng.standard_normal(10) * 0.1)]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="/conv1/Conv",
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="/relu1/Relu"),
             helper.make_node(pool, ["r1"], ["p1"], name=f"/pool/{pool}", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="/conv2/Conv",
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"], name="/relu2/Relu"),
             helper.make_node("Add", ["r2", "p1"], ["a"], name="/add/Add"),
             helper.make_node("GlobalAveragePool", ["a"], ["g"], name="/gap/GlobalAveragePool"),
             helper.make_node("Flatten", ["g"], ["f"], name="/flatten/Flatten"),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], name="/fc/Gemm", transB=1)]
    return float_model(nodes, inits, (3, 8, 8), (10,), "cnn")


class _Reader(CalibrationDataReader):
    def __init__(self, x):
        self._frames = iter([{"x": frame[None]} for frame in x])

    def get_next(self):
        return next(self._frames, None)


def quantize_ort(model, folder, *, fmt="QDQ", activation="uint8", per_channel=True, seed=0,
                 frames=32, reduce_range=True, weight_symmetric=True):
    """``model`` quantized by onnxruntime's ``quantize_static`` (int8 weights, calibrated on
    random normal data); returns the path of the quantized file.

    ``reduce_range`` (7-bit weights, the default here) keeps onnxruntime's own results exact on
    every x86-64 CPU: without VNNI its uint8 × int8 kernels add two products into an int16
    with saturation (:func:`hwgen.check.onnxruntime_saturates`), and the golden model must
    not saturate."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"{model.graph.name}_float.onnx"
    target = folder / (f"{model.graph.name}_{fmt}_{activation}_{int(per_channel)}"
                       f"{'_r' if reduce_range else ''}{'' if weight_symmetric else '_a'}.onnx")
    onnx.save(model, source)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    x = np.random.default_rng(seed).standard_normal((frames, *shape)).astype(np.float32)
    quantize_static(str(source), str(target), _Reader(x),
                    quant_format=getattr(QuantFormat, fmt),
                    activation_type=QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=per_channel,
                    reduce_range=reduce_range,
                    extra_options={"WeightSymmetric": weight_symmetric})
    return target
