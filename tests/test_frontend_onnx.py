"""The ONNX frontend: models written the way torch.onnx (TorchScript and dynamo exporters) and
tf2onnx write them, checked against onnxruntime; and every error a model can cause."""

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

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits_mlp"


# -- building models ------------------------------------------------------------------------------

def _rng(seed=0):
    return np.random.default_rng(seed)


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def weights(*shape, seed=0):
    return _rng(seed).standard_normal(shape).astype(np.float32)


def make_model(nodes, initializers=(), *, features=8, batch="N", outputs=1, opset=17,
               input_name="x", output_name="y", input_type=TensorProto.FLOAT, extra_inputs=()):
    """A model with one input ``(batch, features)`` (``batch``: a name, an int, or None for
    unknown) and one output ``output_name``."""
    x = helper.make_tensor_value_info(input_name, input_type, [batch, features])
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
    x = _rng(1).standard_normal((batch, graph.input_layer.shape[0])).astype(np.float32)
    expected = session.run(None, {feed.name: x})[0]
    got = run_float(graph, x)
    assert got.size == expected.size
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
# MAX_OPSET rises past it (all changes up to these were type additions only).
REVIEWED_SCHEMAS = {
    "Add": {7, 13, 14}, "Constant": {1, 9, 11, 12, 13, 19, 21, 23, 24, 25},
    "Flatten": {1, 9, 11, 13, 21, 23, 24, 25}, "Gemm": {7, 9, 11, 13}, "Identity": {1, 13, 14, 16,
    19, 21, 23, 24, 25}, "MatMul": {1, 9, 13}, "Relu": {6, 13, 14},
    "Reshape": {5, 13, 14, 19, 21, 23, 24, 25},
}


@pytest.mark.parametrize("op", sorted(REVIEWED_SCHEMAS))
def test_opset_range_is_reviewed(op):
    for opset in range(MIN_OPSET, MAX_OPSET + 1):
        assert onnx.defs.get_schema(op, opset).since_version in REVIEWED_SCHEMAS[op]


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
        helper.make_node("Sigmoid", ["g"], ["y"], "/act/Sigmoid"),
    ], [const("W", weights(3, 8))])
    with pytest.raises(HwgenError) as error:
        load_onnx(model)
    message = str(error.value)
    assert "node '/act/Sigmoid' (op Sigmoid) is not supported" in message
    assert ("supported ops: Add (bias after MatMul/Gemm), Constant, Flatten, Gemm, Identity, "
            "MatMul, Relu, Reshape") in message


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


def test_residual_branch():
    model = make_model([
        helper.make_node("Gemm", ["x", "W"], ["h"], "fc", transB=1),
        helper.make_node("Relu", ["h"], ["r"], "act"),
        helper.make_node("Add", ["h", "r"], ["y"], "residual"),
    ], [const("W", weights(8, 8))])
    with pytest.raises(HwgenError, match=r"tensor 'h' feeds 2 consumers \(node 'act', node "
                                         r"'residual'\); branching graphs .* not supported yet"):
        load_onnx(model)


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
    with pytest.raises(HwgenError, match="feeds 2 consumers"):
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
    model = make_model([helper.make_node("Relu", ["x"], ["y"], "act")])
    model.graph.input[0].type.tensor_type.shape.dim.add().dim_value = 8
    with pytest.raises(HwgenError, match=r"input 'x' has shape \(\?, 8, 8\); hwgen takes "
                                         r"\(batch, features\) inputs"):
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
