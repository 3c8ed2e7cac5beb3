"""The ONNX frontend on the ops ordinary exports contain beyond MLPs and CNNs: activation
functions (single ops and the chains exporters write), output Softmax/LogSoftmax/ArgMax, Concat,
1-D models; each float graph checked against onnxruntime, and every error."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from hwgen.errors import HwgenError
from hwgen.frontends import load_onnx
from hwgen.frontends.onnx_common import module_path
from hwgen.reference import run_float
from test_frontend_onnx import const, make_model, weights


def _run_ort(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]


def check(model, tmp_path, *, batch=6, scale=3.0, file_name="model.onnx"):
    """Save ``model``, load it, compare ``run_float`` with onnxruntime (images and 1-D
    signals brought to hwgen's channels-last order)."""
    path = tmp_path / file_name
    onnx.save(model, path)
    graph = load_onnx(path)
    x = np.random.default_rng(1).standard_normal((batch, *graph.user_shape)) * scale
    expected = _run_ort(path, x)
    got = run_float(graph, x)
    if expected.ndim == 4:
        expected = expected.transpose(0, 2, 3, 1)
    elif expected.ndim == 3:
        expected = expected.transpose(0, 2, 1)
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)
    return graph


def _gemm_then(nodes, opset=17, initializers=(), out="y"):
    """x (N, 8) → Gemm (6 outputs) → ``nodes`` (reading "h", writing ``out``)."""
    gemm = helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1, name="/fc1/Gemm")
    inits = [const("w", weights(6, 8)), const("b", weights(6, seed=1))] + list(initializers)
    return make_model([gemm] + nodes, inits, opset=opset, output_name=out)


def _functions(graph):
    return [(layer.spec.function, layer.spec.params) for layer in graph.layers()
            if layer.op == "activation"]


# -- single ops -----------------------------------------------------------------------------------

@pytest.mark.parametrize("op,attributes,opset,function,params", [
    ("Sigmoid", {}, 17, "sigmoid", ()),
    ("Tanh", {}, 17, "tanh", ()),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, 17, "hardsigmoid", (0.3, 0.4)),
    ("HardSigmoid", {}, 17, "hardsigmoid", (0.2, 0.5)),
    ("HardSwish", {}, 14, "hardswish", ()),
    ("Elu", {"alpha": 0.5}, 17, "elu", (0.5,)),
    ("Selu", {}, 17, "selu", (1.67326319217681884765625, 1.05070102214813232421875)),
    ("Celu", {"alpha": 2.0}, 17, "celu", (2.0,)),
    ("Softplus", {}, 17, "softplus", ()),
    ("Softsign", {}, 17, "softsign", ()),
    ("Mish", {}, 18, "mish", ()),
    ("LeakyRelu", {"alpha": 0.1}, 17, "leaky_relu", (0.1,)),
    ("LeakyRelu", {}, 17, "leaky_relu", (0.01,)),
    ("Gelu", {}, 20, "gelu", ()),
    ("Gelu", {"approximate": "tanh"}, 20, "gelu_tanh", ()),
])
def test_activation_op(tmp_path, op, attributes, opset, function, params):
    node = helper.make_node(op, ["h"], ["y"], name=f"/act/{op}", **attributes)
    graph = check(_gemm_then([node], opset=opset), tmp_path)
    (got_function, got_params), = _functions(graph)
    assert got_function == function
    np.testing.assert_allclose(got_params, params, rtol=1e-6)
    assert [layer.name for layer in graph.layers()] == ["x", "fc1", "act"]


def test_prelu_with_one_slope_is_a_leaky_relu(tmp_path):
    node = helper.make_node("PRelu", ["h", "slope"], ["y"])
    graph = check(_gemm_then([node], initializers=[const("slope", np.float32([0.25]))]),
                  tmp_path)
    assert _functions(graph) == [("leaky_relu", (0.25,))]


def test_prelu_with_a_slope_per_channel(tmp_path):
    node = helper.make_node("PRelu", ["h", "slope"], ["y"], name="/act/PRelu")
    graph = check(_gemm_then([node], initializers=[const("slope", weights(6, seed=3))]),
                  tmp_path)
    layer = graph["act"]
    assert layer.op == "prelu"
    np.testing.assert_allclose(layer.spec.slope, weights(6, seed=3))


def test_prelu_on_an_image_takes_one_slope_per_channel(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("PRelu", ["c", "slope"], ["y"])]
    inits = [const("w", weights(3, 2, 1, 1)), const("slope", np.float32([[[0.1]], [[0.2]],
                                                                          [[0.3]]]))]
    graph = check(make_model(nodes, inits, image=(2, 4, 4)), tmp_path)
    np.testing.assert_allclose(graph.output_layer.spec.slope, [0.1, 0.2, 0.3], rtol=1e-6)


def test_prelu_with_a_slope_per_pixel_is_rejected():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("PRelu", ["c", "slope"], ["y"], name="pixelwise")]
    inits = [const("w", weights(3, 2, 1, 1)), const("slope", weights(3, 4, 4))]
    with pytest.raises(HwgenError, match=r"node 'pixelwise' \(op PRelu\): slope of shape "
                                         r"\(3, 4, 4\) does not broadcast to one value per "
                                         "channel"):
        load_onnx(make_model(nodes, inits, image=(2, 4, 4)))


# -- chains the exporters write -------------------------------------------------------------------

def _scalar(name, value):
    return const(name, np.float32(value))


GELU_ERF = ([helper.make_node("Div", ["h", "c_sqrt2"], ["d"]),
             helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "c_one"], ["f"]),
             helper.make_node("Mul", ["h", "f"], ["g"]),
             helper.make_node("Mul", ["g", "c_half"], ["y"], name="/stage2/act/Mul_1")],
            [_scalar("c_sqrt2", np.sqrt(2.0)), _scalar("c_one", 1.0), _scalar("c_half", 0.5)])
GELU_TANH = ([helper.make_node("Mul", ["h", "h"], ["x2"]),
              helper.make_node("Mul", ["h", "x2"], ["x3"]),
              helper.make_node("Mul", ["c_k", "x3"], ["kx3"]),
              helper.make_node("Add", ["h", "kx3"], ["inner"]),
              helper.make_node("Mul", ["c_s", "inner"], ["scaled"]),
              helper.make_node("Tanh", ["scaled"], ["t"]),
              helper.make_node("Add", ["c_one", "t"], ["t1"]),
              helper.make_node("Mul", ["h", "t1"], ["ht"]),
              helper.make_node("Mul", ["c_half", "ht"], ["y"])],
             [_scalar("c_k", 0.044715), _scalar("c_s", np.sqrt(2 / np.pi)), _scalar("c_one", 1.0),
              _scalar("c_half", 0.5)])
SILU = ([helper.make_node("Sigmoid", ["h"], ["s"]), helper.make_node("Mul", ["h", "s"], ["y"])],
        [])
MISH = ([helper.make_node("Softplus", ["h"], ["p"]), helper.make_node("Tanh", ["p"], ["t"]),
         helper.make_node("Mul", ["h", "t"], ["y"])], [])
# HardSwish as the TorchScript exporter writes it below opset 14.
HARDSWISH = ([helper.make_node("HardSigmoid", ["h"], ["s"], alpha=1 / 6, beta=0.5),
              helper.make_node("Mul", ["h", "s"], ["y"])], [])


@pytest.mark.parametrize("pattern,function", [(GELU_ERF, "gelu"), (GELU_TANH, "gelu_tanh"),
                                              (SILU, "silu"), (MISH, "mish"),
                                              (HARDSWISH, "hardswish")])
def test_exporter_chains_are_one_activation(tmp_path, pattern, function):
    nodes, constants = pattern
    graph = check(_gemm_then(nodes, initializers=constants), tmp_path)
    assert _functions(graph) == [(function, ())]
    assert len(graph.layers()) == 3


def test_chain_named_by_its_module(tmp_path):
    nodes, constants = GELU_ERF
    graph = check(_gemm_then(nodes, initializers=constants), tmp_path)
    assert graph.layers()[-1].name == "stage2_act"


def test_chain_read_twice_is_one_table(tmp_path):
    """A chain's result read by two layers becomes one activation layer."""
    nodes, constants = SILU
    fc2 = helper.make_node("Gemm", ["y", "w2"], ["u"], transB=1)
    fc3 = helper.make_node("Gemm", ["y", "w3"], ["v"], transB=1)
    add = helper.make_node("Add", ["u", "v"], ["z"])
    model = _gemm_then(nodes + [fc2, fc3, add], out="z",
                       initializers=constants + [const("w2", weights(4, 6, seed=4)),
                                                 const("w3", weights(4, 6, seed=5))])
    graph = check(model, tmp_path)
    assert [layer.op for layer in graph.layers()] == ["input", "dense", "activation", "dense",
                                                       "dense", "add"]


def test_unknown_chain_names_its_ops(tmp_path):
    nodes = [helper.make_node("Exp", ["h"], ["e"]), helper.make_node("Mul", ["e", "c"], ["y"],
                                                                     name="scaled_exp")]
    model = _gemm_then(nodes, initializers=[_scalar("c", 3.0)])
    with pytest.raises(HwgenError, match=r"node 'scaled_exp' \(op Mul\): the element-wise ops "
                                         r"Exp, Mul compute a function .* not recognise"):
        load_onnx(model)


def test_product_of_two_layers_is_rejected():
    gemm2 = helper.make_node("Gemm", ["x", "w2"], ["h2"], transB=1)
    mul = helper.make_node("Mul", ["h", "h2"], ["y"], name="gate")
    model = _gemm_then([gemm2, mul], initializers=[const("w2", weights(6, 8, seed=2))])
    with pytest.raises(HwgenError, match=r"node 'gate' \(op Mul\) combines the activations "
                                         r"'h', 'h2', which come from different layers"):
        load_onnx(model)


# -- output ops -----------------------------------------------------------------------------------

@pytest.mark.parametrize("ops", [["Softmax"], ["LogSoftmax"], ["ArgMax"], ["Softmax", "ArgMax"]])
def test_output_ops_are_removed_with_a_note(tmp_path, ops):
    nodes, tensor = [], "h"
    for index, op in enumerate(ops):
        out = "y" if index == len(ops) - 1 else f"t{index}"
        attributes = {"axis": 1} if op != "Softmax" else {}
        nodes.append(helper.make_node(op, [tensor], [out], name=f"/out/{op}", **attributes))
        tensor = out
    model = _gemm_then(nodes)
    if ops[-1] == "ArgMax":
        model.graph.output[0].type.tensor_type.elem_type = TensorProto.INT64
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    graph = load_onnx(path)
    assert [layer.op for layer in graph.layers()] == ["input", "dense"]
    assert graph.removed_outputs == tuple(ops)
    assert len(graph.notes) == len(ops)
    assert all(f"removed the output {op} (node '/out/{op}')" in note
               for op, note in zip(ops, graph.notes))
    x = np.random.default_rng(0).standard_normal((20, 8))
    want = _run_ort(path, x).reshape(20, -1)
    got = run_float(graph, x)
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1) if want.shape[1] > 1 else
                                  want[:, 0])


def test_softmax_inside_the_model_is_an_error():
    softmax = helper.make_node("Softmax", ["h"], ["s"], name="inner_softmax")
    gemm = helper.make_node("Gemm", ["s", "w2"], ["y"], transB=1, name="fc2")
    model = _gemm_then([softmax, gemm], initializers=[const("w2", weights(3, 6, seed=2))])
    with pytest.raises(HwgenError, match=r"node 'inner_softmax' \(op Softmax\) is not at the "
                                         r"output: node 'fc2' \(op Gemm\) reads its result"):
        load_onnx(model)


def test_softmax_over_an_image_is_an_error():
    conv = helper.make_node("Conv", ["x", "w"], ["c"])
    softmax = helper.make_node("Softmax", ["c"], ["y"], axis=1, name="pixels")
    model = make_model([conv, softmax], [const("w", weights(3, 2, 1, 1))], image=(2, 4, 4))
    with pytest.raises(HwgenError, match=r"node 'pixels' \(op Softmax\) works along axis 1 .* "
                                         "only over the classes"):
        load_onnx(model)


# -- concat ---------------------------------------------------------------------------------------

def test_concat_of_two_conv_branches_and_the_input(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["ar"]),
             helper.make_node("Conv", ["x", "w2"], ["b"]),
             helper.make_node("Concat", ["ar", "b", "x"], ["c"], axis=1, name="/Concat"),
             helper.make_node("Conv", ["c", "w3"], ["y"])]
    inits = [const("w1", weights(4, 3, 3, 3)), const("w2", weights(2, 3, 1, 1, seed=1)),
             const("w3", weights(5, 9, 1, 1, seed=2))]
    graph = check(make_model(nodes, inits, image=(3, 5, 5)), tmp_path)
    layer = graph["concat"]
    assert layer.op == "concat" and layer.shape == (5, 5, 9)


def test_concat_of_vectors(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["a"], transB=1),
             helper.make_node("Gemm", ["x", "w2"], ["b"], transB=1),
             helper.make_node("Concat", ["a", "b"], ["y"], axis=-1)]
    inits = [const("w1", weights(3, 8)), const("w2", weights(5, 8, seed=1))]
    graph = check(make_model(nodes, inits), tmp_path)
    assert graph.output_layer.shape == (8,)


@pytest.mark.parametrize("axis,match", [(2, "joins along axis 2; hwgen concatenates along the "
                                            "channels"),
                                        (0, "joins along axis 0")])
def test_concat_along_another_axis_is_rejected(axis, match):
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"]),
             helper.make_node("Concat", ["a", "a"], ["y"], axis=axis)]
    model = make_model(nodes, [const("w", weights(2, 2, 1, 1))], image=(2, 3, 3))
    with pytest.raises(HwgenError, match=match):
        load_onnx(model)


def test_concat_of_a_constant_is_rejected():
    nodes = [helper.make_node("Gemm", ["x", "w"], ["a"], transB=1),
             helper.make_node("Concat", ["a", "k"], ["y"], axis=1, name="join")]
    model = make_model(nodes, [const("w", weights(3, 8)), const("k", weights(1, 2))])
    with pytest.raises(HwgenError, match=r"node 'join' \(op Concat\) joins the constant 'k'"):
        load_onnx(model)


# -- 1-D models -----------------------------------------------------------------------------------

def _one_d(nodes, inits, channels=3, length=20, opset=17):
    return make_model(nodes, inits, image=(channels, length), opset=opset)


def test_conv1d_pool1d_flatten_dense(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[5], pads=[2, 2],
                              strides=[2]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2], strides=[2]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], group=4, pads=[1, 1]),
             helper.make_node("AveragePool", ["c2"], ["p2"], kernel_shape=[3], strides=[1]),
             helper.make_node("Flatten", ["p2"], ["f"]),
             helper.make_node("Gemm", ["f", "w3"], ["y"], transB=1)]
    inits = [const("w1", weights(4, 3, 5)), const("b1", weights(4, seed=1)),
             const("w2", weights(4, 1, 3, seed=2)), const("w3", weights(6, 4 * 3, seed=3))]
    graph = check(_one_d(nodes, inits), tmp_path)
    assert graph.input_layer.spec.layout == "CL"
    assert graph.input_layer.shape == (1, 20, 3) and graph.user_shape == (3, 20)
    assert graph["p1"].shape == (1, 5, 4)
    convs = [layer for layer in graph.layers() if layer.op == "conv"]
    assert [c.spec.kernel for c in convs] == [(1, 5), (1, 3)]
    assert convs[1].spec.depthwise


@pytest.mark.parametrize("reduce", ["GlobalAveragePool", "ReduceMean"])
def test_conv1d_global_average(tmp_path, reduce):
    conv = helper.make_node("Conv", ["x", "w"], ["c"], auto_pad="SAME_UPPER")
    if reduce == "ReduceMean":
        pool = helper.make_node("ReduceMean", ["c"], ["g"], axes=[-1], keepdims=0)
        nodes = [conv, pool, helper.make_node("Gemm", ["g", "w2"], ["y"], transB=1)]
    else:
        pool = helper.make_node("GlobalAveragePool", ["c"], ["g"])
        nodes = [conv, pool, helper.make_node("Flatten", ["g"], ["f"]),
                 helper.make_node("Gemm", ["f", "w2"], ["y"], transB=1)]
    inits = [const("w", weights(4, 3, 4)), const("w2", weights(2, 4, seed=1))]
    graph = check(_one_d(nodes, inits), tmp_path)
    assert "global_avgpool" in [layer.op for layer in graph.layers()]


def test_conv1d_output_is_compared_channels_last(tmp_path):
    conv = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1])
    check(_one_d([conv], [const("w", weights(2, 3, 3))]), tmp_path)


def test_conv1d_with_a_2d_weight_shape_is_rejected():
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="c1")
    model = _one_d([conv], [const("w", weights(2, 3, 1, 3))])
    with pytest.raises(HwgenError, match=r"weight W has shape \(2, 3, 1, 3\), but a 1-D "
                                         r"convolution"):
        load_onnx(model)


# -- names ----------------------------------------------------------------------------------------

def _named(name, scopes=None):
    node = helper.make_node("Conv", ["x", "w"], ["y"], name=name)
    if scopes is not None:
        entry = node.metadata_props.add()
        entry.key, entry.value = "pkg.torch.onnx.name_scopes", repr(scopes)
    return node


@pytest.mark.parametrize("node,path", [
    (_named("/stage2/conv1/Conv"), "stage2.conv1"),
    (_named("/fc/fc.0/Gemm"), "fc.0"),
    (_named("/layer1/layer1.0/conv1/Conv"), "layer1.0.conv1"),
    (_named("node_conv1d", ["", "stage2", "stage2.conv1", "conv1d"]), "stage2.conv1"),
    (_named("node_cat", ["", "cat"]), None),
    (_named("/Relu_1"), None),
    (_named("sequential/dense/MatMul"), None),
])
def test_module_paths(node, path):
    assert module_path(node) == path


def test_both_exporters_name_layers_alike(tmp_path):
    """The same conv named as each exporter names it gives one layer name."""
    names = []
    for node in (_named("/stage2/conv1/Conv"),
                 _named("node_conv2d_3", ["", "stage2", "stage2.conv1", "conv2d_3"])):
        model = make_model([node], [const("w", weights(2, 2, 1, 1))], image=(2, 3, 3))
        names.append([layer.name for layer in load_onnx(model).layers()][1])
    assert names == ["stage2_conv1", "stage2_conv1"]


# -- resize and transposed convolutions -----------------------------------------------------------

def _resize(attributes, scales=None, sizes=None, image=(2, 3, 4), opset=17):
    inputs = ["x", "", "scales"] if sizes is None else ["x", "", "", "sizes"]
    inits = [const("scales", np.float32(scales))] if sizes is None else [
        const("sizes", np.int64(sizes))]
    conv = helper.make_node("Conv", ["r", "w"], ["y"])
    resize = helper.make_node("Resize", inputs, ["r"], name="/up/Resize", **attributes)
    return make_model([resize, conv], inits + [const("w", weights(3, image[0], 1, 1))],
                      image=image, opset=opset)


@pytest.mark.parametrize("attributes", [
    {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
    {"mode": "nearest"},
    {"mode": "nearest", "coordinate_transformation_mode": "pytorch_half_pixel",
     "nearest_mode": "round_prefer_ceil"},
])
@pytest.mark.parametrize("scales", [[1, 1, 2, 2], [1, 1, 3, 1], [1, 1, 2, 3]])
def test_resize_nearest_integer_scales(tmp_path, attributes, scales):
    graph = check(_resize(attributes, scales), tmp_path)
    layer = graph["up"]
    assert layer.op == "upsample" and layer.spec.factor == tuple(scales[2:])


def test_resize_by_sizes(tmp_path):
    graph = check(_resize({"mode": "nearest"}, sizes=[1, 2, 6, 8]), tmp_path, batch=1)
    assert graph["up"].shape == (6, 8, 2)


def test_resize_of_a_1d_signal(tmp_path):
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="nearest"),
             helper.make_node("Conv", ["r", "w"], ["y"], pads=[1, 1])]
    model = make_model(nodes, [const("scales", np.float32([1, 1, 2])),
                               const("w", weights(2, 3, 3))], image=(3, 7))
    graph = check(model, tmp_path)
    assert graph.output_layer.shape == (1, 14, 2)


@pytest.mark.parametrize("attributes,scales,match", [
    ({"mode": "linear"}, [1, 1, 2, 2], "mode 'linear' interpolates"),
    ({"mode": "nearest"}, [1, 1, 1.5, 2], r"by integer factors only"),
    ({"mode": "nearest"}, [1, 2, 2, 2], r"by integer factors only"),
    ({"mode": "nearest", "coordinate_transformation_mode": "align_corners"}, [1, 1, 3, 3],
     "a scale of 3 does not repeat each pixel 3 times"),
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric"}, [1, 1, 3, 3],
     "a scale of 3 does not repeat each pixel 3 times"),
])
def test_resize_errors(attributes, scales, match):
    with pytest.raises(HwgenError, match=match):
        load_onnx(_resize(attributes, scales))


@pytest.mark.parametrize("kernel,stride,pads,extra,group", [
    (2, 2, 0, 0, 1), (3, 2, 1, 1, 1), (3, 1, 1, 0, 1), (4, 2, 1, 0, 1), (3, 2, 0, 0, 1),
    (3, 2, 1, 1, 3)])
def test_conv_transpose(tmp_path, kernel, stride, pads, extra, group):
    out = 3 if group > 1 else 4
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="/dec/up/ConvTranspose",
                            kernel_shape=[kernel, kernel], strides=[stride, stride],
                            pads=[pads] * 4, output_padding=[extra, extra], group=group)
    inits = [const("w", weights(3, out // group if group == 1 else 1, kernel, kernel)),
             const("b", weights(out, seed=1))]
    graph = check(make_model([node], inits, image=(3, 4, 5)), tmp_path)
    ops = [layer.op for layer in graph.layers()]
    assert ops == (["input", "upsample", "conv"] if stride > 1 else ["input", "conv"])
    assert graph["dec_up"].op == "conv"


def test_conv_transpose_1d(tmp_path):
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2], pads=[1, 1],
                            output_padding=[1])
    graph = check(make_model([node], [const("w", weights(3, 2, 3))], image=(3, 6)), tmp_path)
    assert graph.output_layer.shape == (1, 12, 2)


def test_conv_transpose_with_wide_pads_is_rejected():
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2],
                            pads=[2, 2, 2, 2], name="up")
    with pytest.raises(HwgenError, match=r"pads \[2, 2, 2, 2\] must be at most kernel − 1"):
        load_onnx(make_model([node], [const("w", weights(3, 2, 2, 2))], image=(3, 4, 4)))
