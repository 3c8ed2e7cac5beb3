"""ONNX's own node test cases of the quantized ops (``onnx.backend.test.case.node``: inputs and
expected outputs computed by ONNX's reference implementation), with every input but the first
turned into an initializer: hwgen's integer reference reproduces them code for code, and the RTL
of two of them under cocotb."""

import functools
import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import hwgen
from hwgen.errors import HwgenError
from hwgen.frontends import load_quantized_onnx
from hwgen.reference import run_integer

SUPPORTED = ["test_convinteger_with_padding", "test_convinteger_without_padding",
             "test_matmulinteger", "test_qlinearconv", "test_qlinearmatmul_2D_int8_float16",
             "test_qlinearmatmul_2D_int8_float32", "test_qlinearmatmul_2D_uint8_float16",
             "test_qlinearmatmul_2D_uint8_float32"]
# Batched matrix products with a weight per batch entry: not one dense layer.
BATCHED = ["test_qlinearmatmul_3D_int8_float16", "test_qlinearmatmul_3D_int8_float32",
           "test_qlinearmatmul_3D_uint8_float16", "test_qlinearmatmul_3D_uint8_float32"]


@functools.lru_cache(maxsize=1)
def _cases():
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {case.name: case for case in collect_testcases(None)
                if case.name in SUPPORTED + BATCHED}


def _model(name):
    """The case's model with its weights, scales and zero points as initializers; its first
    input and expected output."""
    case = _cases()[name]
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    inputs, outputs = case.data_sets[0]
    graph = model.graph
    for value, array in zip(list(graph.input)[1:], inputs[1:]):
        graph.initializer.append(numpy_helper.from_array(np.asarray(array), value.name))
    del graph.input[1:]
    return model, np.asarray(inputs[0]), np.asarray(outputs[0])


def _stream(array):
    """(N, C, H, W) → (N, H·W·C); (N, K) as it is."""
    if array.ndim == 4:
        array = array.transpose(0, 2, 3, 1)
    return array.reshape(len(array), -1)


def test_the_cases_are_all_known():
    assert sorted(_cases()) == sorted(SUPPORTED + BATCHED)


@pytest.mark.parametrize("name", SUPPORTED)
def test_node_case_code_for_code(name):
    model, x, want = _model(name)
    qgraph = load_quantized_onnx(model)
    got = run_integer(qgraph, _stream(x))
    np.testing.assert_array_equal(got, _stream(want))


def test_integer_ops_output_their_accumulator():
    model, x, want = _model("test_matmulinteger")
    qgraph = load_quantized_onnx(model)
    assert qgraph.output.scale == 1.0 and qgraph.output.zero_point == 0
    assert qgraph.output.bits == qgraph.layers[0].acc_bits


@pytest.mark.parametrize("name", BATCHED)
def test_batched_products_are_rejected(name):
    model, _, _ = _model(name)
    with pytest.raises(HwgenError, match=r"input 'a' has shape \(2, 2, 4\)"):
        load_quantized_onnx(model)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_qlinearconv", "test_qlinearmatmul_2D_int8_float32"])
def test_node_case_rtl(name, tmp_path):
    model, x, want = _model(name)
    qgraph = load_quantized_onnx(model, name=name.removeprefix("test_"))
    plan = hwgen.make_plan(qgraph)
    design = hwgen.generate(plan, None, frames=4)
    # The codes, given as the float values they stand for in the model's layout.
    result = hwgen.simulate(design.write(tmp_path), qgraph.input.dequantize(x), stall=0.3)
    assert result.passed, result.summary()
    np.testing.assert_array_equal(result.outputs, _stream(want))
