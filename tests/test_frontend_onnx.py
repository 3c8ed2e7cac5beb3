"""The ONNX frontend: models written the way torch.onnx (TorchScript and dynamo exporters) and
tf2onnx write them, MLPs and CNNs, checked against onnxruntime; and every error a model can
cause."""

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from hwgen.errors import HwgenError
from hwgen.frontends import load_onnx
from hwgen.frontends.onnx import MAX_OPSET, MIN_OPSET
from hwgen.reference import run_float

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE = EXAMPLES / "digits_mlp"
CNN_EXAMPLE = EXAMPLES / "cnn"


# -- building models ------------------------------------------------------------------------------

def _rng(seed=0):
    return np.random.default_rng(seed)


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def weights(*shape, seed=0):
    return _rng(seed).standard_normal(shape).astype(np.float32)


def make_model(nodes, initializers=(), *, features=8, batch="N", outputs=1, opset=17,
               input_name="x", output_name="y", input_type=TensorProto.FLOAT, extra_inputs=(),
               image=None):
    """A model with one input ``(batch, features)``, or ``(batch, *image)`` for an ``image``
    ``(C, H, W)`` (``batch``: a name, an int, or None for unknown) and one output
    ``output_name``."""
    dims = [batch, features] if image is None else [batch, *image]
    x = helper.make_tensor_value_info(input_name, input_type, dims)
    ys = [helper.make_tensor_value_info(output_name if i == 0 else f"{output_name}{i}",
                                        TensorProto.FLOAT, None) for i in range(outputs)]
    graph = helper.make_graph(nodes, "g", [x, *extra_inputs], ys, initializer=list(initializers))
    # onnxruntime 1.31 reads IR versions up to 11; 10 is enough for every opset we use.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def check(model, tmp_path, batch=5, file_name="model.onnx"):
    """Save ``model``, load it with hwgen, compare ``run_float`` with onnxruntime."""
    path = tmp_path / file_name
    onnx.save(model, path)
    graph = load_onnx(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    x = _rng(1).standard_normal((batch, *graph.user_shape)).astype(np.float32)
    expected = session.run(None, {feed.name: x})[0]
    got = run_float(graph, x)
    assert got.size == expected.size
    if expected.ndim == 4:  # an image output: hwgen's is (N, H, W, C)
        expected = expected.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, expected.reshape(got.shape), rtol=1e-5, atol=1e-5)
    return graph


def names(graph):
    return [layer.name for layer in graph.layers()]


def ops(graph):
    return [layer.op for layer in graph.layers()]


# -- exporter patterns ----------------------------------------------------------------------------

def test_torchscript_exporter_pattern(tmp_path):
    # torch.onnx.export(..., dynamo=False): Flatten, Gemm transB=1, scoped node names, a final
    # bias-free Linear as MatMul with a (K, N) weight.
    model = make_model([
        helper.make_node("Flatten", ["x"], ["/Flatten_output_0"], "/Flatten", axis=1),
        helper.make_node("Gemm", ["/Flatten_output_0", "fc1.weight", "fc1.bias"],
                         ["/fc1/Gemm_output_0"], "/fc1/Gemm", alpha=1.0, beta=1.0, transB=1),
        helper.make_node("Relu", ["/fc1/Gemm_output_0"], ["/relu/Relu_output_0"], "/relu/Relu"),
        helper.make_node("Gemm", ["/relu/Relu_output_0", "fc2.weight", "fc2.bias"],
                         ["/fc2/Gemm_output_0"], "/fc2/Gemm", transB=1),
        helper.make_node("Relu", ["/fc2/Gemm_output_0"], ["/Relu_output_0"], "/Relu"),
        helper.make_node("MatMul", ["/Relu_output_0", "onnx::MatMul_17"], ["y"],
                         "/seq/seq.2/MatMul"),
    ], [const("fc1.weight", weights(6, 8)), const("fc1.bias", weights(6, seed=1)),
        const("fc2.weight", weights(5, 6, seed=2)), const("fc2.bias", weights(5, seed=3)),
        const("onnx::MatMul_17", weights(5, 3, seed=4))])
    graph = check(model, tmp_path)
    assert names(graph) == ["x", "fc1", "relu", "fc2", "relu_1", "seq_2"]
    assert ops(graph) == ["input", "dense", "relu", "dense", "relu", "dense"]
    assert graph["seq_2"].spec.weight.shape == (3, 5)
    assert not graph["seq_2"].spec.bias.any()


def test_torchscript_sequential_names(tmp_path):
    model = make_model([
        helper.make_node("Flatten", ["onnx::Flatten_0"], ["/0/Flatten_output_0"], "/0/Flatten"),
        helper.make_node("Gemm", ["/0/Flatten_output_0", "1.weight", "1.bias"],
                         ["/1/Gemm_output_0"], "/1/Gemm", transB=1),
        helper.make_node("Relu", ["/1/Gemm_output_0"], ["/2/Relu_output_0"], "/2/Relu"),
        helper.make_node("Gemm", ["/2/Relu_output_0", "3.weight", "3.bias"], ["y"], "/3/Gemm",
                         transB=1),
    ], [const("1.weight", weights(5, 8)), const("1.bias", weights(5, seed=1)),
        const("3.weight", weights(2, 5, seed=2)), const("3.bias", weights(2, seed=3))],
        input_name="onnx::Flatten_0")
    graph = check(model, tmp_path, file_name="seq.onnx")
    assert names(graph) == ["input", "gemm_1", "relu_2", "gemm_3"]
    assert graph.name == "seq"


def test_dynamo_exporter_pattern(tmp_path):
    # torch.onnx.export(..., dynamo=True): "node_*" names, explicit transA=0, no bias on the last.
    model = make_model([
        helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["linear"], "node_linear",
                         beta=1.0, transB=1, alpha=1.0, transA=0),
        helper.make_node("Relu", ["linear"], ["relu"], "node_relu"),
        helper.make_node("Gemm", ["relu", "fc2.weight"], ["y"], "node_linear_1", transB=1),
    ], [const("fc1.weight", weights(6, 8)), const("fc1.bias", weights(6, seed=1)),
        const("fc2.weight", weights(4, 6, seed=2))], opset=18)
    graph = check(model, tmp_path)
    assert names(graph) == ["x", "linear", "relu", "linear_1"]


@pytest.mark.parametrize("bias_first", [False, True])
def test_tf2onnx_keras_pattern(tmp_path, bias_first):
    # Keras Dense via tf2onnx: MatMul by a (K, N) weight, then Add of the bias ("BiasAdd"),
    # the activation inside the same scope; batch dimension "unk__6".
    def bias_add(x, bias, y, name):
        operands = [bias, x] if bias_first else [x, bias]
        return helper.make_node("Add", operands, [y], name)

    model = make_model([
        helper.make_node("MatMul", ["dense_input", "W0"], ["m0"], "sequential/dense/MatMul"),
        bias_add("m0", "b0", "a0", "sequential/dense/BiasAdd"),
        helper.make_node("Relu", ["a0"], ["r0"], "sequential/dense/Relu"),
        helper.make_node("MatMul", ["r0", "W1"], ["m1"], "sequential/dense_1/MatMul"),
        bias_add("m1", "b1", "y", "sequential/dense_1/BiasAdd"),
    ], [const("W0", weights(8, 7)), const("b0", weights(7, seed=1)),
        const("W1", weights(7, 4, seed=2)), const("b1", weights(4, seed=3))],
        input_name="dense_input", batch="unk__6")
    graph = check(model, tmp_path)
    assert names(graph) == ["dense_input", "dense", "dense_relu", "dense_1"]
    np.testing.assert_array_equal(graph["dense"].spec.bias, weights(7, seed=1))


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("alpha, beta", [(1.0, 1.0), (0.5, 2.0), (-1.5, 0.0)])
@pytest.mark.parametrize("c_shape", [None, (), (1,), (4,), (1, 4), (1, 1)])
def test_gemm_attributes_fold(tmp_path, trans_b, alpha, beta, c_shape):
    weight = weights(4, 8) if trans_b else weights(8, 4)
    initializers = [const("W", weight)]
    inputs = ["x", "W"]
    if c_shape is not None:
        initializers.append(const("C", weights(*c_shape, seed=5)))
        inputs.append("C")
    model = make_model([helper.make_node("Gemm", inputs, ["y"], "g", alpha=alpha, beta=beta,
                                         transB=trans_b)], initializers)
    graph = check(model, tmp_path)
    assert graph["g"].spec.weight.shape == (4, 8)


def test_gemm_opset7_with_c(tmp_path):
    # Before opset 11, C is required; before 9, onnxruntime still runs it.
    model = make_model([helper.make_node("Gemm", ["x", "W", "C"], ["y"], "g", transB=1)],
                       [const("W", weights(3, 8)), const("C", weights(3, seed=1))], opset=7)
    check(model, tmp_path)


def test_trans_a_on_a_batch1_column(tmp_path):
    # (1, K) → Reshape [K, 1] → Gemm transA=1: A' = (1, K), a dense layer.
    model = make_model([
        helper.make_node("Reshape", ["x", "col"], ["xc"], "to_column"),
        helper.make_node("Gemm", ["xc", "W", "C"], ["h"], "fc", transA=1, transB=1),
        helper.make_node("Relu", ["h"], ["y"], "act"),
    ], [const("col", np.array([8, 1], np.int64)), const("W", weights(5, 8)),
        const("C", weights(5, seed=1))], batch=1)
    graph = check(model, tmp_path, batch=1)
    assert ops(graph) == ["input", "dense", "relu"]


def test_column_output_and_relu_on_column(tmp_path):
    # A column vector may flow through Relu and come out as the model's (K, 1) output.
    model = make_model([
        helper.make_node("Gemm", ["x", "W"], ["h"], "fc", transB=1),
        helper.make_node("Reshape", ["h", "col"], ["hc"], "to_column"),
        helper.make_node("Relu", ["hc"], ["y"], "act"),
    ], [const("W", weights(5, 8)), const("col", np.array([-1, 1], np.int64))], batch=1)
    check(model, tmp_path, batch=1)


@pytest.mark.parametrize("shape_op", [
    ("Flatten", {"axis": 1}, None),
    ("Flatten", {"axis": -1}, None),
    ("Reshape", {}, [-1, 8]),
    ("Reshape", {}, [0, -1]),
    ("Reshape", {}, [0, 8]),
    ("Reshape", {"allowzero": 0}, [-1, 8]),
    ("Identity", {}, None),
])
@pytest.mark.parametrize("shape_from_constant_node", [False, True])
def test_elided_shape_ops(tmp_path, shape_op, shape_from_constant_node):
    op, attributes, target = shape_op
    nodes, initializers = [], [const("W", weights(3, 8))]
    inputs = ["x"]
    if target is not None:
        target = np.array(target, np.int64)
        if shape_from_constant_node:
            nodes.append(helper.make_node("Constant", [], ["shape"], "/Constant",
                                          value=numpy_helper.from_array(target)))
        else:
            initializers.append(const("shape", target))
        inputs.append("shape")
    nodes += [helper.make_node(op, inputs, ["v"], "/view", **attributes),
              helper.make_node("Gemm", ["v", "W"], ["h"], "/fc/Gemm", transB=1),
              helper.make_node(op, ["h"] + inputs[1:2], ["y"], "/view2", **attributes)]
    if target is not None:
        nodes[-1] = helper.make_node(op, ["h", "shape2"], ["y"], "/view2", **attributes)
        initializers.append(const("shape2", np.array([-1, 3], np.int64)))
    graph = check(model=make_model(nodes, initializers, opset=14), tmp_path=tmp_path)
    assert names(graph) == ["x", "fc"]


def test_reshape_to_1_k_fixes_the_batch(tmp_path):
    # torch's x.view(1, -1) with a symbolic batch: runs at batch 1 only, still a vector.
    model = make_model([
        helper.make_node("Reshape", ["x", "shape"], ["v"], "view"),
        helper.make_node("Gemm", ["v", "W"], ["y"], "fc", transB=1),
    ], [const("shape", np.array([1, 8], np.int64)), const("W", weights(3, 8))])
    check(model, tmp_path, batch=1)


def test_constant_nodes_provide_weights(tmp_path):
    # Weight as a Constant tensor, bias as value_floats.
    model = make_model([
        helper.make_node("Constant", [], ["W"], "w", value=numpy_helper.from_array(weights(8, 4))),
        helper.make_node("Constant", [], ["b"], "b", value_floats=[0.5, -1.0, 2.0, 0.0]),
        helper.make_node("MatMul", ["x", "W"], ["m"], "mm"),
        helper.make_node("Add", ["m", "b"], ["y"], "bias"),
    ])
    graph = check(model, tmp_path)
    np.testing.assert_array_equal(graph["mm"].spec.bias, [0.5, -1.0, 2.0, 0.0])


def test_identity_and_reshape_on_constants_fold(tmp_path):
    # tf2onnx sometimes leaves Identity on a weight; a reshaped constant bias folds too.
    model = make_model([
        helper.make_node("Identity", ["W0"], ["W"], "w_read"),
        helper.make_node("Reshape", ["b0", "shape"], ["b"], "b_view"),
        helper.make_node("MatMul", ["x", "W"], ["m"], "mm"),
        helper.make_node("Add", ["b", "m"], ["y"], "bias"),
    ], [const("W0", weights(8, 4)), const("b0", weights(4, seed=1)),
        const("shape", np.array([1, 4], np.int64))])
    check(model, tmp_path)


def test_add_after_gemm_and_repeated_add_fold(tmp_path):
    model = make_model([
        helper.make_node("Gemm", ["x", "W", "C"], ["g"], "fc", transB=1),
        helper.make_node("Add", ["g", "b1"], ["a"], "add1"),
        helper.make_node("Identity", ["a"], ["i"], "id"),
        helper.make_node("Add", ["b2", "i"], ["y"], "add2"),
    ], [const("W", weights(4, 8)), const("C", weights(4, seed=1)),
        const("b1", weights(1, 4, seed=2)), const("b2", np.float32(0.25))])
    graph = check(model, tmp_path)
    assert ops(graph) == ["input", "dense"]


def test_matmul_without_bias_then_relu(tmp_path):
    model = make_model([
        helper.make_node("MatMul", ["x", "W"], ["m"], ""),
        helper.make_node("Relu", ["m"], ["y"], ""),
    ], [const("W", weights(8, 4))])
    graph = check(model, tmp_path)
    assert names(graph) == ["x", "m", "y"]  # empty node names: named after their outputs


@pytest.mark.parametrize("batch", ["N", None, 1, 3])
def test_batch_dimension(tmp_path, batch):
    model = make_model([helper.make_node("Gemm", ["x", "W"], ["y"], "fc", transB=1)],
                       [const("W", weights(3, 8))], batch=batch)
    graph = check(model, tmp_path, batch=3 if batch == 3 else 1 if batch == 1 else 4)
    assert graph.input_layer.shape == (8,)


def test_batch_dimension_zero_means_unknown():
    model = make_model([helper.make_node("Gemm", ["x", "W"], ["y"], "fc", transB=1)],
                       [const("W", weights(3, 8))], batch=0)
    assert load_onnx(model).input_layer.shape == (8,)


def test_initializers_listed_as_inputs(tmp_path):
    # Older exporters (IR < 4, keep_initializers_as_inputs=True) list weights as graph inputs.
    weight = helper.make_tensor_value_info("W", TensorProto.FLOAT, [3, 8])
    model = make_model([helper.make_node("Gemm", ["x", "W"], ["y"], "fc", transB=1)],
                       [const("W", weights(3, 8))], extra_inputs=[weight])
    check(model, tmp_path)


@pytest.mark.parametrize("opset", sorted({MIN_OPSET, 9, 11, 13, 14, 17, 19, 21, 23, MAX_OPSET}))
def test_opsets_in_range(tmp_path, opset):
    model = make_model([
        helper.make_node("Flatten", ["x"], ["f"], "flat"),
        helper.make_node("Gemm", ["f", "W", "C"], ["g"], "fc", transB=1),
        helper.make_node("Relu", ["g"], ["r"], "act"),
        helper.make_node("MatMul", ["r", "W2"], ["m"], "fc2"),
        helper.make_node("Add", ["m", "b2"], ["i"], "fc2_bias"),
        helper.make_node("Reshape", ["i", "shape"], ["y"], "view"),
    ], [const("W", weights(6, 8)), const("C", weights(6, seed=1)),
        const("W2", weights(6, 2, seed=2)), const("b2", weights(2, seed=3)),
        const("shape", np.array([-1, 2], np.int64))], opset=opset)
    check(model, tmp_path)


# Each supported op's schema versions we have read; a newer one must be reviewed before
# MAX_OPSET rises past it. The changes up to these were type additions, or attributes and inputs
# the importer handles: BatchNormalization spatial (gone in 9) and training_mode (14), MaxPool
# storage_order/Indices (8) and ceil_mode/dilations (10), AveragePool ceil_mode (10) and
# dilations (19), Clip bounds from attributes to inputs (11), Gemm's optional C (11), Reshape
# allowzero (14), ReduceMean axes from attribute to input (18).
REVIEWED_SCHEMAS = {
    "Add": {7, 13, 14}, "AveragePool": {7, 10, 11, 19, 22},
    "BatchNormalization": {7, 9, 14, 15}, "Clip": {6, 11, 12, 13},
    "Constant": {1, 9, 11, 12, 13, 19, 21, 23, 24, 25}, "Conv": {1, 11, 22},
    "Flatten": {1, 9, 11, 13, 21, 23, 24, 25}, "Gemm": {7, 9, 11, 13},
    "GlobalAveragePool": {1, 22}, "Identity": {1, 13, 14, 16, 19, 21, 23, 24, 25},
    "MatMul": {1, 9, 13}, "MaxPool": {1, 8, 10, 11, 12, 22}, "ReduceMean": {1, 11, 13, 18},
    "Relu": {6, 13, 14},
    "Reshape": {5, 13, 14, 19, 21, 23, 24, 25},
    # Added with the ops of ordinary exports (output ops, activations, concat, resize, ...).
    "Softmax": {1, 11, 13}, "LogSoftmax": {1, 11, 13}, "ArgMax": {1, 11, 12, 13},
    "Concat": {4, 11, 13}, "ConvTranspose": {1, 11, 22}, "PRelu": {6, 7, 9, 16},
    "Sigmoid": {6, 13}, "Tanh": {6, 13}, "HardSigmoid": {6, 22}, "Elu": {6, 22},
    "Selu": {6, 22}, "Softplus": {1, 22}, "Softsign": {1, 22}, "LeakyRelu": {6, 16},
    "Exp": {6, 13}, "Log": {6, 13}, "Neg": {6, 13}, "Abs": {6, 13},
    "Sqrt": {6, 13}, "Reciprocal": {6, 13}, "Sub": {7, 13, 14}, "Mul": {7, 13, 14},
    "Div": {7, 13, 14}, "Pow": {7, 12, 13, 15},
}
# Ops that appeared after opset 7: (first opset, reviewed versions).
REVIEWED_LATER = {"Resize": (10, {10, 11, 13, 18, 19}), "Erf": (9, {9, 13}), "HardSwish": (14, {14, 22}),
                  "Celu": (12, {12, 28}), "Mish": (18, {18, 22}), "Gelu": (20, {20})}


@pytest.mark.parametrize("op", sorted(REVIEWED_SCHEMAS) + sorted(REVIEWED_LATER))
def test_opset_range_is_reviewed(op):
    first, reviewed = REVIEWED_LATER.get(op, (MIN_OPSET, REVIEWED_SCHEMAS.get(op)))
    for opset in range(first, MAX_OPSET + 1):
        assert onnx.defs.get_schema(op, opset).since_version in reviewed


# -- names ----------------------------------------------------------------------------------------

def test_layer_names_are_unique_identifiers():
    model = make_model([
        helper.make_node("Gemm", ["x", "W1"], ["a"], "/fc/Gemm", transB=1),
        helper.make_node("Relu", ["a"], ["b"], "/relu/Relu"),
        helper.make_node("Gemm", ["b", "W2"], ["c"], "/fc/Gemm_1", transB=1),
        helper.make_node("Relu", ["c"], ["d"], "/Relu"),
        helper.make_node("Gemm", ["d", "W3"], ["e"], "/lambda/Gemm", transB=1),
        helper.make_node("Relu", ["e"], ["f"], "block-2.act (ReLU)"),
        helper.make_node("Gemm", ["f", "W4"], ["y"], "/x/Gemm", transB=1),
    ], [const("W1", weights(8, 8)), const("W2", weights(8, 8, seed=1)),
        const("W3", weights(8, 8, seed=2)), const("W4", weights(2, 8, seed=3))])
    graph = load_onnx(model)
    assert names(graph) == ["x", "fc", "relu", "fc_dense", "relu_1", "lambda_",
                            "block_2_act_ReLU", "x_dense"]
    assert all(name.isidentifier() for name in names(graph))
    assert names(load_onnx(model)) == names(graph)  # deterministic


def test_graph_name(tmp_path):
    model = make_model([helper.make_node("Relu", ["x"], ["y"], "act")])
    model.graph.name = "main_graph"
    path = tmp_path / "my-model.v2.onnx"
    onnx.save(model, path)
    assert load_onnx(path).name == "my_model_v2"
    assert load_onnx(str(path), name="digits").name == "digits"
    assert load_onnx(model).name == "main_graph"
    onnx.save(model, tmp_path / "3layer.onnx")
    assert load_onnx(tmp_path / "3layer.onnx").name == "model_3layer"
    with pytest.raises(HwgenError, match="identifier"):
        load_onnx(model, name="not an identifier")


# -- errors ---------------------------------------------------------------------------------------

def test_unsupported_op_names_node_op_and_supported_ops():
    model = make_model([
        helper.make_node("Gemm", ["x", "W"], ["g"], "/fc1/Gemm", transB=1),
        helper.make_node("LpNormalization", ["g"], ["y"], "/norm/LpNormalization"),
    ], [const("W", weights(3, 8))])
    with pytest.raises(HwgenError) as error:
        load_onnx(model)
    message = str(error.value)
    assert "node '/norm/LpNormalization' (op LpNormalization) is not supported" in message
    assert ("supported ops: Add (a bias after Conv/MatMul/Gemm, or two activations), ArgMax and "
            "LogSoftmax/Softmax (at the output), AveragePool, BatchNormalization (after "
            "Conv/Gemm/MatMul), Clip, Concat (channels), Constant, Conv (1-D, 2-D), "
            "ConvTranspose, Flatten, Gemm, GlobalAveragePool, Identity, MatMul, MaxPool, "
            "ReduceMean (over H and W, or L), Relu, Reshape, Resize (nearest, integer scales), "
            "and activation functions of one tensor: Celu, Elu, Gelu") in message


def test_unsupported_op_in_other_domain():
    model = make_model([helper.make_node("Relu", ["x"], ["y"], "custom", domain="com.example")])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(HwgenError, match=r"node 'custom' \(op Relu\) in domain 'com.example' is "
                                         "not supported"):
        load_onnx(model)


def test_dynamic_reshape_shape_is_unsupported_op():
    # x.view(x.size(0), -1) without constant folding: Shape → ... → Reshape.
    model = make_model([
        helper.make_node("Shape", ["x"], ["s"], "/Shape"),
        helper.make_node("Reshape", ["x", "s"], ["y"], "/Reshape"),
    ])
    with pytest.raises(HwgenError, match=r"node '/Shape' \(op Shape\) is not supported"):
        load_onnx(model)


def test_weight_transpose_not_folded_is_unsupported():
    model = make_model([
        helper.make_node("Transpose", ["W"], ["Wt"], "/Transpose"),
        helper.make_node("MatMul", ["x", "Wt"], ["y"], "/MatMul"),
    ], [const("W", weights(3, 8))])
    with pytest.raises(HwgenError, match=r"node '/Transpose' \(op Transpose\) is not supported"):
        load_onnx(model)


def test_computation_on_constants_only():
    model = make_model([
        helper.make_node("Relu", ["W"], ["Wr"], "/weight_relu"),
        helper.make_node("MatMul", ["x", "Wr"], ["y"], "/MatMul"),
    ], [const("W", weights(8, 3))])
    with pytest.raises(HwgenError, match=r"'/weight_relu' \(op Relu\) computes on constants only"):
        load_onnx(model)


def test_residual_branch_on_vectors(tmp_path):
    model = make_model([
        helper.make_node("Gemm", ["x", "W"], ["h"], "fc", transB=1),
        helper.make_node("Relu", ["h"], ["r"], "act"),
        helper.make_node("Add", ["h", "r"], ["y"], "residual"),
    ], [const("W", weights(8, 8))])
    graph = check(model, tmp_path)
    assert ops(graph) == ["input", "dense", "relu", "add"]
    assert graph["residual"].inputs == ("fc", "act")


def test_intermediate_tensor_also_a_graph_output():
    model = make_model([
        helper.make_node("Gemm", ["x", "W"], ["y"], "fc", transB=1),
        helper.make_node("Relu", ["y"], ["r"], "act"),
    ], [const("W", weights(8, 8))])
    with pytest.raises(HwgenError, match="'y' feeds 2 consumers.*the graph output"):
        load_onnx(model)


def test_non_constant_weight_from_graph_input():
    weight = helper.make_tensor_value_info("W", TensorProto.FLOAT, [3, 8])
    model = make_model([helper.make_node("Gemm", ["x", "W"], ["y"], "fc", transB=1)],
                       extra_inputs=[weight])
    with pytest.raises(HwgenError, match=r"node 'fc' \(op Gemm\) reads its weight/bias from the "
                                         "graph input 'W'; hwgen needs constant weights"):
        load_onnx(model)


def test_activation_as_gemm_b():
    model = make_model([helper.make_node("Gemm", ["W", "x"], ["y"], "fc")],
                       [const("W", weights(3, 2))], batch=2)
    with pytest.raises(HwgenError, match=r"node 'fc' \(op Gemm\): the activation must be input A"):
        load_onnx(model)


def test_constant_times_activation_matmul():
    model = make_model([helper.make_node("MatMul", ["W", "x"], ["y"], "mm")],
                       [const("W", weights(3, 2))], batch=2)
    with pytest.raises(HwgenError, match=r"'mm' \(op MatMul\) multiplies the constant 'W'"):
        load_onnx(model)


def test_multiple_inputs():
    other = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 8])
    model = make_model([helper.make_node("Relu", ["x"], ["y"], "act")], extra_inputs=[other])
    with pytest.raises(HwgenError, match=r"2 inputs \('x', 'z'\); .*exactly one input"):
        load_onnx(model)


def test_multiple_outputs():
    model = make_model([helper.make_node("Relu", ["x"], ["y"], "act"),
                        helper.make_node("Relu", ["y"], ["y1"], "act2")], outputs=2)
    with pytest.raises(HwgenError, match=r"2 outputs \('y', 'y1'\); .*exactly one output"):
        load_onnx(model)


@pytest.mark.parametrize("op, attributes, target, match", [
    ("Reshape", {}, [-1], r"\(16,\) at batch 2; it mixes the batch"),
    ("Reshape", {}, [-1, 4], r"\(4, 4\) at batch 2; it mixes the batch"),
    ("Reshape", {}, [2, -1, 2], r"\(2, 4, 2\) at batch 2; it mixes the batch"),
    ("Reshape", {}, [1, 2, 4], r"\(1, 2, 4\); hwgen only elides"),
    ("Reshape", {}, [3, -1], r"an invalid shape; hwgen only elides"),
    ("Reshape", {"allowzero": 1}, [0, -1], r"an invalid shape"),
    ("Flatten", {"axis": 0}, None, r"\(1, 16\) at batch 2; it mixes the batch"),
])
def test_bad_reshape(op, attributes, target, match):
    inputs, initializers = ["x"], [const("W", weights(3, 8))]
    if target is not None:
        inputs.append("shape")
        initializers.append(const("shape", np.array(target, np.int64)))
    model = make_model([helper.make_node(op, inputs, ["v"], "/view", **attributes),
                        helper.make_node("Gemm", ["v", "W"], ["y"], "fc", transB=1)],
                       initializers, opset=14)
    with pytest.raises(HwgenError, match=rf"node '/view' \(op {op}\) turns the activation "
                                         rf"\(batch, 8\) into {match}"):
        load_onnx(model)


def test_bad_reshape_with_batch_one():
    model = make_model([helper.make_node("Reshape", ["x", "shape"], ["y"], "/view")],
                       [const("shape", np.array([2, 4], np.int64))], batch=1)
    with pytest.raises(HwgenError, match=r"turns the activation \(1, 8\) into \(2, 4\)"):
        load_onnx(model)


def test_reshape_with_computed_shape():
    model = make_model([helper.make_node("Relu", ["x"], ["r"], "act"),
                        helper.make_node("Reshape", ["x", "r"], ["y"], "/view")])
    with pytest.raises(HwgenError, match=r"'/view' \(op Reshape\): its target shape must be a "
                                         "constant"):
        load_onnx(model)


def test_trans_a_on_a_batch():
    model = make_model([helper.make_node("Gemm", ["x", "W"], ["y"], "fc", transA=1)],
                       [const("W", weights(1, 3))], batch=1)
    with pytest.raises(HwgenError, match=r"'fc' \(op Gemm\): transA=1 on the activation of shape "
                                         r"\(1, 8\) would mix the batch into the features"):
        load_onnx(model)


def test_column_into_gemm_without_trans_a():
    model = make_model([
        helper.make_node("Reshape", ["x", "col"], ["xc"], "to_column"),
        helper.make_node("Gemm", ["xc", "W"], ["y"], "fc"),
    ], [const("col", np.array([8, 1], np.int64)), const("W", weights(1, 3))], batch=1)
    with pytest.raises(HwgenError, match=r"column vector \(8, 1\); with transA=0"):
        load_onnx(model)


def test_weight_shape_mismatch():
    model = make_model([helper.make_node("Gemm", ["x", "W"], ["y"], "fc", transB=1)],
                       [const("W", weights(3, 7))])
    with pytest.raises(HwgenError, match="weight B is .* \\(7, 3\\) after transB, but the "
                                         "activation has 8 features"):
        load_onnx(model)


@pytest.mark.parametrize("shape", [(5,), (2, 4), (1, 1, 4)])
def test_bad_bias_shape(shape):
    model = make_model([helper.make_node("Gemm", ["x", "W", "C"], ["y"], "fc", transB=1)],
                       [const("W", weights(4, 8)), const("C", weights(*shape))])
    with pytest.raises(HwgenError, match=re.escape(f"'fc' (op Gemm): the bias has shape {shape}")):
        load_onnx(model)


def test_add_not_after_a_dense_layer():
    model = make_model([
        helper.make_node("Gemm", ["x", "W"], ["g"], "fc", transB=1),
        helper.make_node("Relu", ["g"], ["r"], "act"),
        helper.make_node("Add", ["r", "b"], ["y"], "shift"),
    ], [const("W", weights(4, 8)), const("b", weights(4))])
    with pytest.raises(HwgenError, match=r"'shift' \(op Add\) adds a constant to the output of "
                                         "layer 'act'"):
        load_onnx(model)


def test_integer_weight():
    model = make_model([helper.make_node("MatMul", ["x", "W"], ["y"], "mm")],
                       [const("W", np.ones((8, 3), np.int8))])
    with pytest.raises(HwgenError, match="weight 'W' has type int8, not float"):
        load_onnx(model)


def test_non_float_input():
    model = make_model([helper.make_node("Relu", ["x"], ["y"], "act")],
                       input_type=TensorProto.INT64)
    with pytest.raises(HwgenError, match="input 'x' has type INT64; hwgen takes float inputs"):
        load_onnx(model)


def test_missing_input_shape():
    model = make_model([helper.make_node("Relu", ["x"], ["y"], "act")])
    model.graph.input[0].type.tensor_type.ClearField("shape")
    with pytest.raises(HwgenError, match="input 'x' has no shape information"):
        load_onnx(model)


def test_image_input_rank():
    model = make_model([helper.make_node("Relu", ["x"], ["y"], "act")], image=(2, 3, 4, 5))
    with pytest.raises(HwgenError, match=r"input 'x' has shape \(\?, 2, 3, 4, 5\); hwgen takes "
                                         r"\(batch, features\), \(batch, channels, length\) or "
                                         r"\(batch, channels, height, width\) inputs"):
        load_onnx(model)


def test_unknown_feature_count():
    model = make_model([helper.make_node("Relu", ["x"], ["y"], "act")], features="F")
    with pytest.raises(HwgenError, match="the number of features must be known"):
        load_onnx(model)


def test_undefined_tensor():
    model = make_model([helper.make_node("MatMul", ["x", "nowhere"], ["y"], "mm")])
    with pytest.raises(HwgenError, match="'mm' \\(op MatMul\\) reads 'nowhere', which is neither"):
        load_onnx(model)


def test_output_independent_of_input():
    model = make_model([helper.make_node("Identity", ["W"], ["y"], "id")],
                       [const("W", weights(3))])
    with pytest.raises(HwgenError, match="output 'y' does not depend on its input"):
        load_onnx(model)


@pytest.mark.parametrize("opset", [MIN_OPSET - 1, MAX_OPSET + 1])
def test_bad_opset(opset):
    model = make_model([helper.make_node("Relu", ["x"], ["y"], "act")], opset=opset)
    with pytest.raises(HwgenError, match=rf"opset {opset}; hwgen reads opsets {MIN_OPSET}\.\."
                                         rf"{MAX_OPSET}.*convert_version"):
        load_onnx(model)


def test_no_default_opset():
    model = make_model([helper.make_node("Relu", ["x"], ["y"], "act")])
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(HwgenError, match="declares no ai.onnx opset"):
        load_onnx(model)


@pytest.mark.parametrize("content, match", [
    (b"\x08\x07\x12\xff\xff\xff garbage", "cannot read .* as an ONNX model"),
    (b"", "holds no ONNX graph"),
    (b"hello, not a model\n", "cannot read|holds no ONNX graph"),
])
def test_corrupt_file(tmp_path, content, match):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(HwgenError, match=match):
        load_onnx(path)


def test_truncated_file(tmp_path):
    data = (EXAMPLE / "digits_mlp.onnx").read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(HwgenError, match="cannot read"):
        load_onnx(path)


def test_missing_file(tmp_path):
    with pytest.raises(HwgenError, match="ONNX file .*nope.onnx' does not exist"):
        load_onnx(tmp_path / "nope.onnx")


def test_not_a_model():
    with pytest.raises(HwgenError, match="model must be a path or an onnx.ModelProto, not int"):
        load_onnx(42)


def test_external_data(tmp_path):
    model = make_model([helper.make_node("Gemm", ["x", "W"], ["y"], "fc", transB=1)],
                       [const("W", weights(64, 8))])
    path = tmp_path / "external.onnx"
    onnx.save(model, path, save_as_external_data=True, size_threshold=0)
    graph = load_onnx(path)  # from the path, the external data is found next to the file
    assert graph["fc"].spec.weight.shape == (64, 8)
    unloaded = onnx.load(path, load_external_data=False)
    with pytest.raises(HwgenError, match="initializer 'W'.*pass the path"):
        load_onnx(unloaded)


# -- the example model ----------------------------------------------------------------------------

def test_digits_example_matches_onnxruntime():
    path = EXAMPLE / "digits_mlp.onnx"
    graph = load_onnx(path)
    assert graph.name == "digits_mlp"
    assert [layer.shape for layer in graph.layers()] == [(64,), (48,), (48,), (24,), (24,), (10,)]
    assert ops(graph) == ["input", "dense", "relu", "dense", "relu", "dense"]
    with np.load(EXAMPLE / "calib.npz") as calib:
        x, y = calib["x"], calib["y"]
    assert x.shape == (256, 64) and x.dtype == np.float32 and y.dtype == np.int64
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    got = run_float(graph, x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert (got.argmax(axis=1) == y).mean() > 0.9


# -- CNNs -----------------------------------------------------------------------------------------

class Net:
    """Builds an image model node by node, named and attributed the way torch.onnx.export
    (``dynamo=False``) writes them: ``/conv1/Conv`` reading ``conv1.weight``, output
    ``/conv1/Conv_output_0``, every attribute spelled out."""

    def __init__(self, image=(3, 9, 9), seed=0):
        self.image, self.nodes, self.initializers = image, [], []
        self.tensor, self.channels, self.seed = "x", image[0], seed

    def node(self, op, inputs, name, **attributes):
        output = f"{name}_output_0"
        self.nodes.append(helper.make_node(op, inputs, [output], name, **attributes))
        self.tensor = output
        return output

    def constant(self, name, array):
        self.initializers.append(const(name, array))
        return name

    def random(self, *shape, scale=0.5):
        self.seed += 1
        return scale * weights(*shape, seed=self.seed)

    def conv(self, scope, out_channels, kernel=3, stride=1, pads=0, group=1, bias=True,
             **attributes):
        kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
        pads = (pads,) * 4 if isinstance(pads, int) else tuple(pads)
        weight = self.random(out_channels, self.channels // group, *kernel)
        inputs = [self.tensor, self.constant(f"{scope}.weight", weight)]
        if bias:
            inputs.append(self.constant(f"{scope}.bias", self.random(out_channels)))
        self.channels = out_channels
        attributes = {"dilations": [1, 1], "group": group, "kernel_shape": list(kernel),
                      "pads": list(pads), "strides": list(stride), **attributes}
        return self.node("Conv", inputs, f"/{scope}/Conv", **attributes)

    def batch_norm(self, scope, features=None, **attributes):
        count = features or self.channels
        rng = _rng(self.seed + 100)
        self.seed += 1
        inputs = [self.tensor] + [self.constant(f"{scope}.{role}", array.astype(np.float32))
                                  for role, array in (
                                      ("weight", rng.uniform(0.5, 1.5, count)),
                                      ("bias", rng.standard_normal(count)),
                                      ("running_mean", rng.standard_normal(count)),
                                      ("running_var", rng.uniform(0.2, 2.0, count)))]
        attributes = {"epsilon": 1e-5, "momentum": 0.9, **attributes}
        return self.node("BatchNormalization", inputs, f"/{scope}/BatchNormalization",
                         **attributes)

    def relu(self, name="/Relu"):
        return self.node("Relu", [self.tensor], name)

    def relu6(self, name="/Clip"):
        x = self.tensor
        bounds = [self.node("Constant", [], f"{name}_{bound}", value=numpy_helper.from_array(
            np.array(value, np.float32))) for bound, value in (("min", 0), ("max", 6))]
        return self.node("Clip", [x, *bounds], name)

    def pool(self, op, scope, kernel=2, stride=None, pads=0, **attributes):
        kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        stride = kernel if stride is None else (stride, stride) if isinstance(stride, int) \
            else tuple(stride)
        pads = (pads,) * 4 if isinstance(pads, int) else tuple(pads)
        attributes = {"kernel_shape": list(kernel), "pads": list(pads), "strides": list(stride),
                      **attributes}
        return self.node(op, [self.tensor], f"/{scope}/{op}", **attributes)

    def flatten(self, name="/Flatten"):
        return self.node("Flatten", [self.tensor], name, axis=1)

    def gemm(self, scope, in_features, out_features):
        inputs = [self.tensor, self.constant(f"{scope}.weight",
                                             self.random(out_features, in_features)),
                  self.constant(f"{scope}.bias", self.random(out_features))]
        return self.node("Gemm", inputs, f"/{scope}/Gemm", alpha=1.0, beta=1.0, transB=1)

    def model(self, batch="N", opset=17):
        return make_model(self.nodes, self.initializers, image=self.image, batch=batch,
                          opset=opset, output_name=self.tensor)


def test_image_input_becomes_hwc_with_chw_layout(tmp_path):
    net = Net(image=(3, 5, 7))
    net.relu()
    graph = check(net.model(), tmp_path)
    assert graph.input_layer.shape == (5, 7, 3)
    assert graph.input_layer.spec.layout == "CHW"
    assert graph.user_shape == (3, 5, 7)


@pytest.mark.parametrize("kernel", range(1, 8))
@pytest.mark.parametrize("padded", [False, True])
def test_conv_kernel_sizes(tmp_path, kernel, padded):
    pad = kernel // 2 if padded else 0
    net = Net(image=(3, 9, 9))
    net.conv("conv", 4, kernel, pads=pad)
    graph = check(net.model(), tmp_path)
    assert ops(graph) == ["input", "conv"]
    assert graph["conv"].spec.weight.shape == (4, kernel, kernel, 3)
    size = 9 + 2 * pad - kernel + 1
    assert graph["conv"].shape == (size, size, 4)


@pytest.mark.parametrize("kernel", [(3, 3), (2, 3), (3, 1)])
@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (1, 2), (3, 2)])
@pytest.mark.parametrize("pads", [(0, 0, 0, 0), (1, 1, 1, 1), (0, 1, 2, 0), (2, 0, 1, 1)])
def test_conv_strides_and_pads(tmp_path, kernel, stride, pads):
    net = Net(image=(2, 8, 7))
    net.conv("conv", 3, kernel, stride=stride, pads=pads)
    graph = check(net.model(), tmp_path)
    # ONNX's (y_begin, x_begin, y_end, x_end) is hwgen's (top, left, bottom, right).
    assert graph["conv"].spec.pads == pads
    assert graph["conv"].spec.stride == stride


def test_conv_weight_is_transposed_to_ohwi(tmp_path):
    net = Net(image=(2, 6, 6))
    net.conv("conv", 3, (2, 3))
    graph = check(net.model(), tmp_path)
    oihw = numpy_helper.to_array(net.initializers[0])
    np.testing.assert_array_equal(graph["conv"].spec.weight, oihw.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("minimal", [False, True])
def test_conv_without_bias_and_default_attributes(tmp_path, minimal):
    net = Net(image=(2, 6, 6))
    net.conv("conv", 3, bias=False)
    if minimal:  # no kernel_shape, pads, strides, dilations or group: all defaults
        del net.nodes[0].attribute[:]
    graph = check(net.model(), tmp_path)
    assert not graph["conv"].spec.bias.any()


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("kernel, stride", [(3, 1), (2, 1), (4, 2), (3, 2), (5, 3)])
def test_conv_auto_pad(tmp_path, auto_pad, kernel, stride):
    net = Net(image=(2, 7, 8))
    net.conv("conv", 3, kernel, stride=stride)
    conv = net.nodes[0]
    conv.attribute.remove(next(a for a in conv.attribute if a.name == "pads"))
    conv.attribute.append(helper.make_attribute("auto_pad", auto_pad))
    graph = check(net.model(), tmp_path)
    if auto_pad != "VALID":
        assert graph["conv"].shape[:2] == (-(-7 // stride), -(-8 // stride))


@pytest.mark.parametrize("kernel, stride, pads, bias", [
    (3, 1, 1, True), (3, 2, 1, False), (5, 1, 2, True), (1, 1, 0, True), (3, 1, (0, 1, 2, 1), True),
])
def test_depthwise_conv(tmp_path, kernel, stride, pads, bias):
    net = Net(image=(4, 8, 8))
    net.conv("dw", 4, kernel, stride=stride, pads=pads, group=4, bias=bias)
    graph = check(net.model(), tmp_path)
    spec = graph["dw"].spec
    assert spec.groups == 4 and spec.depthwise and spec.weight.shape == (4, kernel, kernel, 1)


def test_conv_with_a_single_channel_is_not_depthwise(tmp_path):
    net = Net(image=(1, 6, 6))
    net.conv("conv", 1, 3, group=1)
    graph = check(net.model(), tmp_path)
    assert graph["conv"].spec.groups == 1


@pytest.mark.parametrize("kernel, stride, pads, extra", [
    (2, None, 0, {}),
    (3, 1, 1, {}),
    (3, 2, (0, 1, 1, 0), {}),
    ((2, 3), (2, 1), 0, {}),
    (3, 2, 1, {"ceil_mode": 0, "dilations": [1, 1], "storage_order": 0}),
    (2, None, 0, {"ceil_mode": 1}),  # 8×8 by 2: ceil_mode changes nothing
    (3, 2, 1, {"ceil_mode": 1}),     # (8 + 2 - 3) / 2 has a remainder… of one
])
def test_maxpool(tmp_path, kernel, stride, pads, extra):
    net = Net(image=(3, 8, 8))
    net.pool("MaxPool", "pool", kernel, stride, pads, **extra)
    if extra.get("ceil_mode") and kernel == 3:
        with pytest.raises(HwgenError, match="ceil_mode=1 adds partial windows"):
            load_onnx(net.model())
        return
    graph = check(net.model(), tmp_path)
    assert ops(graph) == ["input", "maxpool"]


def test_maxpool_storage_order_only_changes_indices(tmp_path):
    net = Net(image=(3, 6, 6))
    net.pool("MaxPool", "pool", 2, storage_order=1)
    check(net.model(), tmp_path)


@pytest.mark.parametrize("opset", [7, 9, 10, 12, 19, 22])
def test_pools_across_opsets(tmp_path, opset):
    net = Net(image=(3, 8, 8))
    net.pool("MaxPool", "pool", 2)
    net.pool("AveragePool", "avg", 2, 1)
    net.node("GlobalAveragePool", [net.tensor], "/GlobalAveragePool")
    check(net.model(opset=opset), tmp_path)


@pytest.mark.parametrize("kernel, stride, pads, extra", [
    (2, None, 0, {}),
    (3, 1, 0, {"count_include_pad": 0}),
    (3, 1, 1, {"count_include_pad": 1}),
    (3, 2, (1, 0, 0, 1), {"count_include_pad": 1}),
    ((2, 3), (1, 2), 0, {"ceil_mode": 0}),
    (2, None, 0, {"ceil_mode": 1}),
])
def test_avgpool(tmp_path, kernel, stride, pads, extra):
    net = Net(image=(3, 8, 8))
    net.pool("AveragePool", "pool", kernel, stride, pads, **extra)
    graph = check(net.model(), tmp_path)
    assert ops(graph) == ["input", "avgpool"]


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_pool_auto_pad(tmp_path, op, auto_pad):
    net = Net(image=(2, 7, 7))
    extra = {"count_include_pad": 1} if op == "AveragePool" else {}
    net.pool(op, "pool", 2, 2, **extra)
    pool = net.nodes[0]
    pool.attribute.remove(next(a for a in pool.attribute if a.name == "pads"))
    pool.attribute.append(helper.make_attribute("auto_pad", auto_pad))
    check(net.model(), tmp_path)


def test_global_avgpool(tmp_path):
    net = Net(image=(5, 6, 7))
    net.node("GlobalAveragePool", [net.tensor], "/GlobalAveragePool")
    graph = check(net.model(), tmp_path)
    assert ops(graph) == ["input", "global_avgpool"]
    assert graph.output_layer.shape == (1, 1, 5)


@pytest.mark.parametrize("opset", [11, 13, 18, MAX_OPSET])
@pytest.mark.parametrize("axes", [[2, 3], [-1, -2]])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_mean_over_height_and_width(tmp_path, opset, axes, keepdims):
    # The dynamo exporter writes adaptive_avg_pool2d(x, 1) as ReduceMean over [-1, -2].
    net = Net(image=(5, 4, 6))
    if opset >= 18:
        net.node("ReduceMean", [net.tensor, net.constant("axes", np.array(axes, np.int64))],
                 "node_mean", keepdims=keepdims, noop_with_empty_axes=0)
    else:
        net.node("ReduceMean", [net.tensor], "node_mean", axes=axes, keepdims=keepdims)
    if keepdims:
        net.flatten()
    net.gemm("fc", 5, 3)
    graph = check(net.model(opset=opset), tmp_path)
    assert ops(graph) == ["input", "global_avgpool", "flatten", "dense"]


@pytest.mark.parametrize("axes", [None, [1, 2, 3], [3], [0, 2, 3]])
def test_reduce_mean_over_other_axes(axes):
    net = Net(image=(5, 4, 6))
    net.node("ReduceMean", [net.tensor], "/ReduceMean", **({} if axes is None else {"axes": axes}))
    shown = "all axes" if axes is None else re.escape(f"axes {axes}")
    with pytest.raises(HwgenError, match=rf"'/ReduceMean' \(op ReduceMean\) averages over "
                                         rf"{shown}; hwgen supports ReduceMean only over the "
                                         "height and width"):
        load_onnx(net.model(opset=13))


@pytest.mark.parametrize("opset", [7, 10])
@pytest.mark.parametrize("bounds", [{"min": 0.0, "max": 6.0}, {"min": -0.5}, {"max": 0.25},
                                    {"min": -1.0, "max": 1.0}])
def test_clip_bounds_as_attributes(tmp_path, opset, bounds):
    net = Net(image=(2, 4, 4))
    net.node("Clip", [net.tensor], "/Clip", **bounds)
    graph = check(net.model(opset=opset), tmp_path)
    spec = graph.output_layer.spec
    assert (spec.lo, spec.hi) == (bounds.get("min", -np.inf), bounds.get("max", np.inf))


@pytest.mark.parametrize("opset", [11, 13, 17, MAX_OPSET])
@pytest.mark.parametrize("bounds", [(0.0, 6.0), (None, 0.5), (-2.0, None), (-1.0, 1.0)])
def test_clip_bounds_as_inputs(tmp_path, opset, bounds):
    model = make_model([
        helper.make_node("Gemm", ["x", "W"], ["g"], "/fc/Gemm", transB=1),
        helper.make_node("Clip", ["g"] + ["" if b is None else f"b{i}"
                                          for i, b in enumerate(bounds)], ["y"], "/Clip"),
    ], [const("W", weights(4, 8))] + [const(f"b{i}", np.array(b, np.float32))
                                      for i, b in enumerate(bounds) if b is not None],
        opset=opset)
    graph = check(model, tmp_path)
    assert ops(graph) == ["input", "dense", "clip"]
    lo, hi = bounds
    spec = graph["clip"].spec
    assert (spec.lo, spec.hi) == (-np.inf if lo is None else lo, np.inf if hi is None else hi)


def test_relu6_as_torch_exports_it(tmp_path):
    net = Net(image=(2, 4, 4))
    net.relu6()
    graph = check(net.model(), tmp_path)
    assert ops(graph) == ["input", "clip"]
    assert names(graph) == ["x", "clip"]


def test_clip_float32_limits_mean_unbounded(tmp_path):
    limit = float(np.finfo(np.float32).max)
    net = Net(image=(2, 4, 4))
    net.node("Clip", [net.tensor], "/Clip", min=-limit, max=3.0)
    graph = check(net.model(opset=9), tmp_path)
    assert graph["clip"].spec.lo == -np.inf


@pytest.mark.parametrize("opset", [7, 9, 14, 15, 17])
@pytest.mark.parametrize("depthwise", [False, True])
def test_batch_norm_folds_into_conv(tmp_path, opset, depthwise):
    net = Net(image=(4, 6, 6))
    net.conv("conv", 4, 3, pads=1, group=4 if depthwise else 1, bias=not depthwise)
    net.batch_norm("bn", **({"training_mode": 0} if opset >= 14 else
                            {"spatial": 1} if opset < 9 else {}))
    net.relu()
    graph = check(net.model(opset=opset), tmp_path)
    assert ops(graph) == ["input", "conv", "relu"]


def test_batch_norm_epsilon(tmp_path):
    net = Net(image=(3, 5, 5))
    net.conv("conv", 2, 3)
    net.batch_norm("bn", epsilon=0.5)
    check(net.model(), tmp_path)


@pytest.mark.parametrize("dense", ["gemm", "matmul_add"])
def test_batch_norm_folds_into_dense(tmp_path, dense):
    if dense == "gemm":
        nodes = [helper.make_node("Gemm", ["x", "W", "C"], ["h"], "/fc/Gemm", transB=1)]
    else:
        nodes = [helper.make_node("MatMul", ["x", "Wt"], ["m"], "/fc/MatMul"),
                 helper.make_node("Add", ["m", "C"], ["h"], "/fc/Add")]
    rng = _rng(3)
    nodes.append(helper.make_node("BatchNormalization", ["h", "s", "B", "mean", "var"], ["y"],
                                  "/bn/BatchNormalization", epsilon=1e-3))
    model = make_model(nodes, [const("W", weights(5, 8)), const("Wt", weights(5, 8).T.copy()),
                               const("C", weights(5, seed=1))] + [
        const(n, rng.uniform(0.5, 2.0, 5).astype(np.float32)) for n in ("s", "B", "mean", "var")])
    graph = check(model, tmp_path)
    assert ops(graph) == ["input", "dense"]


def test_constant_add_after_conv_folds_into_its_bias(tmp_path):
    net = Net(image=(2, 5, 5))
    net.conv("conv", 3, 3, bias=False)
    net.node("Add", [net.tensor, net.constant("b", weights(3, 1, 1))], "/Add")
    net.node("Add", [net.constant("b2", weights(1, 3, 1, 1, seed=2)), net.tensor], "/Add_1")
    graph = check(net.model(), tmp_path)
    assert ops(graph) == ["input", "conv"]


@pytest.mark.parametrize("shape_op", ["Flatten", "Reshape_0_-1", "Reshape_-1_K", "MatMul"])
def test_flatten_of_an_image_reorders_the_dense_weight(tmp_path, shape_op):
    net = Net(image=(3, 6, 6))
    net.conv("conv", 4, 3, stride=2, pads=1)  # → (4, 3, 3)
    net.relu()
    if shape_op == "Flatten" or shape_op == "MatMul":
        net.flatten()
    else:
        target = [0, -1] if shape_op == "Reshape_0_-1" else [-1, 36]
        net.node("Reshape", [net.tensor, net.constant("shape", np.array(target, np.int64))],
                 "/Reshape")
    if shape_op == "MatMul":
        net.node("MatMul", [net.tensor, net.constant("W", weights(36, 5))], "/fc/MatMul")
    else:
        net.gemm("fc", 36, 5)
    graph = check(net.model(), tmp_path)
    assert ops(graph) == ["input", "conv", "relu", "flatten", "dense"]
    assert graph["fc"].inputs == (names(graph)[3],)


@pytest.mark.parametrize("image", [(1, 4, 4), (6, 1, 1)])
def test_flatten_where_chw_and_hwc_orders_coincide(tmp_path, image):
    net = Net(image=image)
    net.relu()
    net.flatten()
    net.relu("/Relu_1")  # allowed: nothing to re-order
    graph = check(net.model(), tmp_path)
    assert ops(graph) == ["input", "relu", "flatten", "relu"]


def test_flatten_then_identity_then_gemm(tmp_path):
    net = Net(image=(2, 3, 3))
    net.flatten()
    net.node("Identity", [net.tensor], "/Identity")
    net.gemm("fc", 18, 4)
    check(net.model(), tmp_path)


def test_output_may_be_an_image(tmp_path):
    net = Net(image=(2, 6, 6))
    net.conv("conv", 3, 3, pads=1)
    graph = check(net.model(), tmp_path)
    assert graph.output_layer.shape == (6, 6, 3)


@pytest.mark.parametrize("batch", ["N", None, 1, 2])
def test_image_batch_dimension(tmp_path, batch):
    net = Net(image=(2, 6, 6))
    net.conv("conv", 3, 3)
    net.flatten()
    net.gemm("fc", 48, 4)
    check(net.model(batch=batch), tmp_path, batch=2 if batch in ("N", None, 2) else 1)


def test_image_reshape_to_1_k_fixes_the_batch(tmp_path):
    net = Net(image=(2, 3, 3))
    net.node("Reshape", [net.tensor, net.constant("shape", np.array([1, 18], np.int64))],
             "/Reshape")
    net.gemm("fc", 18, 4)
    check(net.model(), tmp_path, batch=1)


def test_residual_add_of_images(tmp_path):
    net = Net(image=(4, 6, 6))
    stem = net.relu()
    net.conv("conv1", 4, 3, pads=1)
    net.relu("/Relu_1")
    net.conv("conv2", 4, 3, pads=1)
    net.node("Add", [stem, net.tensor], "/Add")
    net.relu("/Relu_2")
    graph = check(net.model(), tmp_path)
    assert graph["add"].inputs == ("relu", "conv2")
    assert graph.successors("relu") == ["conv1", "add"]


def test_add_of_a_tensor_to_itself(tmp_path):
    net = Net(image=(2, 4, 4))
    net.conv("conv", 2, 1)
    net.node("Add", [net.tensor, net.tensor], "/Add")
    check(net.model(), tmp_path)


def test_fork_through_identity(tmp_path):
    # The skip path read through an Identity: still one fork of one layer.
    net = Net(image=(2, 4, 4))
    stem = net.conv("stem", 2, 1)
    skip = net.node("Identity", [stem], "/Identity")
    net.relu()
    net.conv("conv", 2, 3, pads=1)
    net.node("Add", [net.tensor, skip], "/Add")
    graph = check(net.model(), tmp_path)
    assert ops(graph) == ["input", "conv", "relu", "conv", "add"]
    assert graph["add"].inputs == ("conv", "stem")


# -- whole networks -------------------------------------------------------------------------------

def lenet(opset=17):
    """conv5x5 → relu → maxpool2 → conv5x5 → relu → maxpool2 → flatten → gemm → relu → gemm."""
    net = Net(image=(1, 20, 20))
    net.conv("conv1", 4, 5)                   # 16×16
    net.relu()
    net.pool("MaxPool", "pool", 2)            # 8×8
    net.conv("conv2", 6, 5)                   # 4×4
    net.relu("/Relu_1")
    net.pool("MaxPool", "pool_1", 2)          # 2×2
    net.flatten()
    net.gemm("fc1", 24, 12)
    net.relu("/Relu_2")
    net.gemm("fc2", 12, 10)
    return net.model(opset=opset)


def residual_block(opset=17):
    """conv → [conv, relu, conv] + skip → relu → GAP → flatten → gemm."""
    net = Net(image=(3, 8, 8))
    stem = net.conv("stem", 6, 3, pads=1)
    net.conv("conv1", 6, 3, pads=1)
    net.relu()
    net.conv("conv2", 6, 3, pads=1)
    net.node("Add", [net.tensor, stem], "/Add")
    net.relu("/Relu_1")
    net.node("GlobalAveragePool", [net.tensor], "/GlobalAveragePool")
    net.flatten()
    net.gemm("fc", 6, 10)
    return net.model(opset=opset)


def depthwise_separable(opset=17):
    """depthwise 3x3 → BN → relu6 → pointwise 1x1 conv → BN → relu."""
    net = Net(image=(4, 7, 7))
    mode = {"training_mode": 0} if opset >= 14 else {}
    net.conv("dw", 4, 3, pads=1, group=4, bias=False)
    net.batch_norm("bn1", **mode)
    net.relu6()
    net.conv("pw", 8, 1, bias=False)
    net.batch_norm("bn2", **mode)
    net.relu()
    return net.model(opset=opset)


def test_lenet(tmp_path):
    graph = check(lenet(), tmp_path)
    assert names(graph) == ["x", "conv1", "relu", "pool", "conv2", "relu_1", "pool_1", "flatten",
                            "fc1", "relu_2", "fc2"]
    assert [layer.shape for layer in graph.layers()][1:8] == [
        (16, 16, 4), (16, 16, 4), (8, 8, 4), (4, 4, 6), (4, 4, 6), (2, 2, 6), (24,)]


def test_residual_block(tmp_path):
    graph = check(residual_block(), tmp_path)
    assert ops(graph) == ["input", "conv", "conv", "relu", "conv", "add", "relu",
                          "global_avgpool", "flatten", "dense"]
    assert graph["add"].inputs == ("conv2", "stem")


def test_depthwise_separable_block(tmp_path):
    graph = check(depthwise_separable(), tmp_path)
    assert ops(graph) == ["input", "conv", "clip", "conv", "relu"]
    assert graph["dw"].spec.depthwise and not graph["pw"].spec.depthwise


@pytest.mark.parametrize("opset", sorted({11, 13, 14, 17, 19, 21, 22, MAX_OPSET}))
def test_cnn_opsets_in_range(tmp_path, opset):
    check(depthwise_separable(opset), tmp_path, file_name="dwsep.onnx")
    check(residual_block(opset), tmp_path, file_name="resnet.onnx")
    check(lenet(opset), tmp_path, file_name="lenet.onnx")


# -- CNN errors -----------------------------------------------------------------------------------

def test_conv_dilation():
    net = Net(image=(2, 8, 8))
    net.conv("conv", 3, 3, dilations=[2, 2])
    with pytest.raises(HwgenError, match=r"node '/conv/Conv' \(op Conv\): dilations \[2, 2\] are "
                                         "not supported; hwgen's windows are dense"):
        load_onnx(net.model())


def test_pool_dilation():
    net = Net(image=(2, 8, 8))
    net.pool("MaxPool", "pool", 2, dilations=[1, 2])
    with pytest.raises(HwgenError, match=r"'/pool/MaxPool' \(op MaxPool\): dilations \[1, 2\]"):
        load_onnx(net.model())


@pytest.mark.parametrize("channels, out_channels, group", [(4, 4, 2), (4, 8, 4), (6, 3, 3)])
def test_grouped_conv_that_is_not_depthwise(channels, out_channels, group):
    net = Net(image=(channels, 6, 6))
    net.conv("conv", out_channels, 3, group=group)
    with pytest.raises(HwgenError, match=rf"'/conv/Conv' \(op Conv\): group={group} with "
                                         rf"{channels} input and {out_channels} output channels "
                                         "is a grouped convolution; hwgen supports group=1 and "
                                         "depthwise"):
        load_onnx(net.model())


def test_conv_weight_channels_mismatch():
    net = Net(image=(3, 6, 6))
    net.channels = 2
    net.conv("conv", 4, 3)
    with pytest.raises(HwgenError, match=r"weight W \(4, 2, 3, 3\) with group=1 expects 2 input "
                                         r"channels, but the activation \(batch, 3, 6, 6\) has 3"):
        load_onnx(net.model())


def test_conv_1d_weight():
    net = Net(image=(3, 6, 6))
    net.nodes.append(helper.make_node("Conv", ["x", net.constant("w", weights(4, 3, 3))], ["y"],
                                      "/conv/Conv"))
    net.tensor = "y"
    with pytest.raises(HwgenError, match=r"weight W has shape \(4, 3, 3\), but a 2-D "
                                         "convolution"):
        load_onnx(net.model())


def test_conv_kernel_shape_disagrees_with_weight():
    net = Net(image=(3, 6, 6))
    net.conv("conv", 4, 3, kernel_shape=[3, 2])
    with pytest.raises(HwgenError, match=r"kernel_shape \[3, 2\] disagrees with weight W \(3×3\)"):
        load_onnx(net.model())


def test_conv_kernel_larger_than_input():
    net = Net(image=(3, 4, 4))
    net.conv("conv", 4, 5, pads=(0, 0, 0, 1))
    with pytest.raises(HwgenError, match=r"the kernel 5×5 is larger than the padded input 4×4"):
        load_onnx(net.model())


def test_bad_auto_pad():
    net = Net(image=(3, 4, 4))
    net.conv("conv", 4, 3, auto_pad="SAME")
    with pytest.raises(HwgenError, match="auto_pad 'SAME' must be NOTSET, VALID, SAME_UPPER"):
        load_onnx(net.model())


def test_conv_on_a_vector():
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], "/conv/Conv")],
                       [const("w", weights(2, 1, 3, 3))])
    with pytest.raises(HwgenError, match=r"'/conv/Conv' \(op Conv\) needs an image \(batch, "
                                         r"channels, height, width\), but 'x' has shape "
                                         r"\(batch, 8\)"):
        load_onnx(model)


def test_conv_weight_from_an_activation():
    net = Net(image=(1, 3, 3))
    net.node("Conv", ["x", "x"], "/conv/Conv")
    with pytest.raises(HwgenError, match="weight W 'x' is computed from the network input"):
        load_onnx(net.model())


def test_gemm_on_an_unflattened_image():
    net = Net(image=(2, 3, 3))
    net.gemm("fc", 18, 4)
    with pytest.raises(HwgenError, match=r"'/fc/Gemm' \(op Gemm\): the activation 'x' is the image "
                                         r"\(batch, 2, 3, 3\); flatten it first"):
        load_onnx(net.model())


def test_unknown_image_size():
    net = Net(image=(2, "H", 3))
    net.relu()
    with pytest.raises(HwgenError, match=r"input 'x' has shape \(\?, 2, \?, 3\): the channels "
                                         "and the length, or height and width, must be known"):
        load_onnx(net.model())


@pytest.mark.parametrize("mode", ["ceil_mode", "count_include_pad_0", "auto_pad_same"])
def test_avgpool_that_divides_by_fewer_pixels(mode):
    net = Net(image=(2, 8, 8))
    if mode == "ceil_mode":
        net.pool("AveragePool", "pool", 3, 2, ceil_mode=1)
        match = (r"'/pool/AveragePool' \(op AveragePool\): ceil_mode=1 adds partial windows at "
                 r"the bottom/right edge \(output 4×4 instead of 3×3\)")
    else:
        extra = {"count_include_pad": 0} if mode == "count_include_pad_0" else {}
        net.pool("AveragePool", "pool", 3, 1, 1, **extra)
        if mode == "auto_pad_same":
            pool = net.nodes[0]
            pool.attribute.remove(next(a for a in pool.attribute if a.name == "pads"))
            pool.attribute.append(helper.make_attribute("auto_pad", "SAME_UPPER"))
        match = (r"with pads \[1, 1, 1, 1\] and count_include_pad=0, windows at the edge are "
                 r"divided by their number of real pixels; hwgen's average pool always divides "
                 "by kH·kW")
    with pytest.raises(HwgenError, match=match):
        load_onnx(net.model())


def test_maxpool_ceil_mode_that_adds_windows():
    net = Net(image=(2, 7, 7))
    net.pool("MaxPool", "pool", 2, ceil_mode=1)
    with pytest.raises(HwgenError, match=r"ceil_mode=1 adds partial windows .* \(output 4×4 "
                                         r"instead of 3×3\); hwgen pools like ceil_mode=0"):
        load_onnx(net.model())


def test_pool_pads_as_large_as_the_kernel():
    net = Net(image=(2, 6, 6))
    net.pool("MaxPool", "pool", 2, 1, (0, 2, 0, 0))
    with pytest.raises(HwgenError, match=r"pads \[0, 2, 0, 0\] must be smaller than the kernel "
                                         r"\[2, 2\]"):
        load_onnx(net.model())


def test_pool_without_kernel_shape():
    net = Net(image=(2, 6, 6))
    net.node("MaxPool", [net.tensor], "/pool/MaxPool")
    with pytest.raises(HwgenError, match=r"'/pool/MaxPool' \(op MaxPool\) has no kernel_shape"):
        load_onnx(net.model())


def test_maxpool_indices_output():
    net = Net(image=(2, 6, 6))
    net.nodes.append(helper.make_node("MaxPool", ["x"], ["y", "i"], "/pool/MaxPool",
                                      kernel_shape=[2, 2]))
    net.tensor = "y"
    with pytest.raises(HwgenError, match=r"must have 1\.\.1 inputs and one output, not 1 and 2"):
        load_onnx(net.model())


def test_batch_norm_with_a_shared_producer():
    # The conv's output feeds the BN and the skip connection: folding would change the skip.
    net = Net(image=(3, 6, 6))
    conv = net.conv("conv", 3, 3, pads=1)
    net.batch_norm("bn")
    net.node("Add", [net.tensor, conv], "/Add")
    with pytest.raises(HwgenError, match=r"node '/bn/BatchNormalization' \(op BatchNormalization\) "
                                         r"normalizes the output of layer 'conv' \(node "
                                         r"'/conv/Conv' \(op Conv\)\), which also feeds node "
                                         r"'/Add'; hwgen folds BatchNormalization into the layer "
                                         "before it only when nothing else reads"):
        load_onnx(net.model())


def test_batch_norm_shared_through_an_identity():
    net = Net(image=(3, 6, 6))
    conv = net.conv("conv", 3, 3, pads=1)
    view = net.node("Identity", [conv], "/Identity")
    net.batch_norm("bn")
    net.node("Add", [net.tensor, conv], "/Add")
    assert net.nodes[2].input[0] == view
    with pytest.raises(HwgenError, match=r"which also feeds node '/Add'"):
        load_onnx(net.model())


@pytest.mark.parametrize("before", ["relu", "input", "pool"])
def test_batch_norm_not_after_conv_or_dense(before):
    net = Net(image=(3, 6, 6))
    if before == "relu":
        net.conv("conv", 3, 3)
        net.relu()
    elif before == "pool":
        net.pool("MaxPool", "pool", 2)
    net.batch_norm("bn")
    producer = {"relu": "layer 'relu'", "input": "the input", "pool": "layer 'pool'"}[before]
    with pytest.raises(HwgenError, match=rf"'/bn/BatchNormalization' \(op BatchNormalization\) "
                                         rf"normalizes the output of {producer}; hwgen supports "
                                         "BatchNormalization only right after a Conv/Gemm/MatMul"):
        load_onnx(net.model())


@pytest.mark.parametrize("attributes, opset, match", [
    ({"training_mode": 1}, 17, "training_mode=1 normalizes with the batch's own statistics"),
    ({"spatial": 0}, 7, "spatial=0 .* is not supported"),
])
def test_batch_norm_not_in_inference_form(attributes, opset, match):
    net = Net(image=(3, 6, 6))
    net.conv("conv", 3, 3)
    net.batch_norm("bn", **attributes)
    with pytest.raises(HwgenError, match=match):
        load_onnx(net.model(opset=opset))


def test_batch_norm_parameter_shape():
    net = Net(image=(3, 6, 6))
    net.conv("conv", 3, 3)
    net.batch_norm("bn", features=4)
    with pytest.raises(HwgenError, match=r"scale has shape \(4,\), but the activation "
                                         r"\(batch, 3, 4, 4\) has 3 channels"):
        load_onnx(net.model())


def test_bias_add_on_a_shared_dense_output():
    model = make_model([
        helper.make_node("MatMul", ["x", "W"], ["m"], "/fc/MatMul"),
        helper.make_node("Add", ["m", "b"], ["a"], "/fc/Add"),
        helper.make_node("Relu", ["m"], ["r"], "/Relu"),
        helper.make_node("Add", ["a", "r"], ["y"], "/Add"),
    ], [const("W", weights(8, 8)), const("b", weights(8, seed=1))])
    with pytest.raises(HwgenError, match=r"'/fc/Add' \(op Add\) adds a constant to the output of "
                                         r"layer 'fc' .* which also feeds node '/Relu'"):
        load_onnx(model)


def test_conv_bias_add_with_a_bad_shape():
    net = Net(image=(2, 5, 5))
    net.conv("conv", 3, 3)
    net.node("Add", [net.tensor, net.constant("b", weights(3))], "/Add")
    with pytest.raises(HwgenError, match=r"'/Add' \(op Add\): the bias has shape \(3,\); it must "
                                         r"broadcast to \(1, 3, 1, 1\): a scalar, \(3, 1, 1\)"):
        load_onnx(net.model())


@pytest.mark.parametrize("after", ["Relu", "Add", "output", "MaxPool"])
def test_flatten_followed_by_a_non_dense_op(after):
    net = Net(image=(3, 4, 4))
    flat = net.flatten()
    if after == "Relu":
        net.relu()
        subject = r"node '/Relu' \(op Relu\) reads '/Flatten_output_0', which"
    elif after == "Add":
        net.node("Add", [flat, flat], "/Add")
        subject = r"node '/Add' \(op Add\) reads '/Flatten_output_0', which"
    elif after == "MaxPool":
        net.pool("MaxPool", "pool", 2)
        subject = r"node '/pool/MaxPool' \(op MaxPool\) reads '/Flatten_output_0', which"
    else:
        subject = r"the model output '/Flatten_output_0'"
    with pytest.raises(HwgenError, match=subject + r" is an image flattened in ONNX's \(C, H, W\) "
                                                   r"= \(3, 4, 4\) order, while hwgen streams "
                                                   r"tensors in \(H, W, C\) order; hwgen "
                                                   r"re-orders the features only into the weight "
                                                   "of a Gemm/MatMul right after the Flatten"):
        load_onnx(net.model())


@pytest.mark.parametrize("op, attributes, target, batch, into", [
    ("Flatten", {"axis": 2}, None, "N", r"\(6, 16\) at batch 2"),
    ("Flatten", {"axis": 0}, None, "N", r"\(1, 96\) at batch 2"),
    ("Flatten", {"axis": 3}, None, 1, r"\(12, 4\)"),
    ("Reshape", {}, [0, 3, -1], "N", r"\(2, 3, 16\) at batch 2"),
    ("Reshape", {}, [-1, 16], "N", r"\(6, 16\) at batch 2"),
    ("Reshape", {}, [1, 48], 2, "an invalid shape"),
])
def test_image_reshape_other_than_a_flatten(op, attributes, target, batch, into):
    net = Net(image=(3, 4, 4))
    inputs = [net.tensor]
    if target is not None:
        inputs.append(net.constant("shape", np.array(target, np.int64)))
    net.node(op, inputs, f"/{op}", **attributes)
    shown = "batch" if batch == "N" else batch
    with pytest.raises(HwgenError, match=rf"'/{op}' \(op {op}\) turns the image "
                                         rf"\({shown}, 3, 4, 4\) into {into}; hwgen supports "
                                         "Flatten/Reshape of an image only to "
                                         rf"\(batch, C·H·W\) = \({shown}, 48\)"):
        load_onnx(net.model(batch=batch))


@pytest.mark.parametrize("target", [[0, 3, 4, 4], [-1, 3, 4, 4], [0, 0, 0, 0]])
def test_image_reshape_to_itself_is_elided(tmp_path, target):
    net = Net(image=(3, 4, 4))
    net.node("Reshape", [net.tensor, net.constant("shape", np.array(target, np.int64))],
             "/Reshape")
    net.relu()
    graph = check(net.model(), tmp_path)
    assert ops(graph) == ["input", "relu"]


@pytest.mark.parametrize("case", ["broadcast", "features"])
def test_add_of_activations_with_different_shapes(case):
    if case == "broadcast":
        net = Net(image=(3, 4, 4))
        gap = net.node("GlobalAveragePool", ["x"], "/GlobalAveragePool")
        net.node("Add", ["x", gap], "/Add")
        model, shapes = net.model(), r"\(batch, 3, 4, 4\) and \(batch, 3, 1, 1\)"
    else:
        model = make_model([helper.make_node("Gemm", ["x", "W"], ["h"], "fc", transB=1),
                            helper.make_node("Add", ["x", "h"], ["y"], "/Add")],
                           [const("W", weights(4, 8))])
        shapes = r"\(batch, 8\) and \(batch, 4\)"
    with pytest.raises(HwgenError, match=rf"'/Add' \(op Add\) adds activations of shapes {shapes};"
                                         " hwgen adds tensors of the same shape only"):
        load_onnx(model)


def test_dangling_branch():
    net = Net(image=(3, 4, 4))
    net.relu()
    net.node("Relu", ["x"], "/unused/Relu")
    net.tensor = net.nodes[0].output[0]
    with pytest.raises(HwgenError, match=r"node '/unused/Relu' \(op Relu\): its output is read by "
                                         "no node and is not the graph output; hwgen takes models "
                                         "with exactly one output"):
        load_onnx(net.model())


@pytest.mark.parametrize("bounds, match", [
    ({"min": 1.0, "max": 1.0}, r"min 1\.0 must be below max 1\.0"),
    ({"min": 2.0, "max": -2.0}, r"min 2\.0 must be below max -2\.0"),
])
def test_clip_with_empty_range(bounds, match):
    net = Net(image=(2, 4, 4))
    net.node("Clip", [net.tensor], "/Clip", **bounds)
    with pytest.raises(HwgenError, match=r"'/Clip' \(op Clip\): " + match):
        load_onnx(net.model(opset=9))


def test_clip_bound_from_an_activation():
    net = Net(image=(1, 1, 1))
    net.node("Clip", ["x", "x"], "/Clip")
    with pytest.raises(HwgenError, match="its min 'x' is computed from the network input"):
        load_onnx(net.model())


def test_clip_bound_not_a_scalar():
    net = Net(image=(2, 1, 1))
    net.node("Clip", ["x", net.constant("lo", np.zeros(2, np.float32))], "/Clip")
    with pytest.raises(HwgenError, match=r"min must be a scalar, not \(2,\)"):
        load_onnx(net.model())


# -- the CNN examples -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, layers", [
    ("lenet", ["input", "conv", "relu", "maxpool", "conv", "relu", "maxpool", "flatten", "dense",
               "relu", "dense"]),
    ("resnet", ["input", "conv", "relu", "conv", "relu", "conv", "add", "relu", "global_avgpool",
                "flatten", "dense"]),
    ("dwsep", ["input", "conv", "relu", "conv", "clip", "conv", "relu", "global_avgpool",
               "flatten", "dense"]),
])
def test_cnn_examples_match_onnxruntime(name, layers):
    path = CNN_EXAMPLE / f"{name}.onnx"
    graph = load_onnx(path)
    assert graph.name == name
    assert ops(graph) == layers
    assert graph.input_layer.shape == (8, 8, 1) and graph.user_shape == (1, 8, 8)
    with np.load(CNN_EXAMPLE / "calib.npz") as calib:
        x, y = calib["x"], calib["y"]
    assert x.shape == (256, 1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    got = run_float(graph, x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert (got.argmax(axis=1) == y).mean() > 0.9


def test_dwsep_example_has_batch_norms_to_fold():
    model = onnx.load(CNN_EXAMPLE / "dwsep.onnx")
    assert [node.op_type for node in model.graph.node].count("BatchNormalization") == 2
