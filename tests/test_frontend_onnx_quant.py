"""Quantized ONNX in: QDQ and QOperator models written by onnxruntime's own ``quantize_static``
are reproduced by hwgen's integer reference (checked against onnxruntime), QONNX ``Quant``
models against a numpy evaluation of the QONNX semantics; and every error a quantized model can
cause."""

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import hwgen
from hwgen.cli import main
from hwgen.errors import HwgenError
from hwgen.frontends import is_quantized, load_quantized_onnx
from hwgen.qgraph import QGraph
from hwgen.reference import Rounding, run_integer, windows

from quant_models import cnn, const, float_model, mlp, quantize_ort, weight_codes

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:onnxruntime")


def ort_codes(path, qgraph, x):
    """onnxruntime's output codes for float inputs ``x`` (its float output is s·(q − zp))."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]
    out = qgraph.output
    return np.round(y.reshape(len(y), -1) / out.scale + out.zero_point).astype(np.int64)


def agreement(path, x):
    qgraph = load_quantized_onnx(path)
    want = ort_codes(path, qgraph, x)
    got = run_integer(qgraph, qgraph.input_codes(x))
    diff = np.abs(got - want)
    return qgraph, np.mean(diff == 0), diff.max()


def assert_matches(path, x):
    qgraph, exact, max_diff = agreement(path, x)
    assert max_diff <= 1, f"{path.name}: a code differs by {max_diff}"
    assert exact >= 0.999, f"{path.name}: only {exact:.2%} of codes exact"
    return qgraph


# -- onnxruntime's quantize_static ----------------------------------------------------------------

FORMATS = [(fmt, act, per_channel) for fmt in ("QDQ", "QOperator")
           for act in ("uint8", "int8") for per_channel in (True, False)]


@pytest.mark.parametrize("fmt, act, per_channel", FORMATS)
@pytest.mark.parametrize("matmul", [False, True], ids=["gemm", "matmul"])
def test_mlp_matches_onnxruntime(tmp_path, fmt, act, per_channel, matmul):
    path = quantize_ort(mlp(matmul=matmul), tmp_path, fmt=fmt, activation=act,
                        per_channel=per_channel)
    x = np.random.default_rng(1).standard_normal((256, 16))
    qgraph = assert_matches(path, x)
    assert [layer.op for layer in qgraph.layers] == ["dense", "dense"]
    assert qgraph.input.signed == (act == "int8")


QDQ_INT8_AVGPOOL = pytest.mark.xfail(strict=True, reason=(
    "int8 QDQ AveragePool: onnxruntime's arithmetic depends on the CPU. On x86-64 it converts "
    "an int8 QuantizeLinear/DequantizeLinear pair to uint8 only when the QuantizeLinear has one "
    "consumer; here the pool's output feeds conv2 and the Add, so the pool stays a float32 "
    "AveragePool whose summation order is the CPU's (row by row in the NCHWc blocked kernel when "
    "the channels are a multiple of 16 on AVX-512 or of 8 on AVX2, column pairs first "
    "otherwise); on ARM it runs the fused int8 QLinearAveragePool. hwgen rounds the exact sum "
    "half to even: every non-tie code agrees, about one tie in eight does not (about 87% of the "
    "output codes exact)"))


@pytest.mark.parametrize("fmt, act, per_channel", FORMATS)
@pytest.mark.parametrize("pool", ["MaxPool", "AveragePool"])
def test_cnn_matches_onnxruntime(tmp_path, fmt, act, per_channel, pool, request):
    if fmt == "QDQ" and pool == "AveragePool" and act == "int8":
        request.applymarker(QDQ_INT8_AVGPOOL)
    path = quantize_ort(cnn(pool=pool), tmp_path, fmt=fmt, activation=act,
                        per_channel=per_channel)
    x = np.random.default_rng(2).standard_normal((128, 3, 8, 8))
    qgraph = assert_matches(path, x)
    kind = "maxpool" if pool == "MaxPool" else "avgpool"
    assert [layer.op for layer in qgraph.layers] == [
        "conv", kind, "conv", "add", "global_avgpool", "dense"]
    assert qgraph.layout == "CHW" and qgraph.input_shape == (8, 8, 3)
    # The Relus that quantize_static removed live on in the clamp.
    assert qgraph["conv1"].clamp_lo >= qgraph["conv1"].output.zero_point


def _transposed_cnn(perm=(0, 2, 3, 1), then_conv=False):
    """conv(stride 2)+relu → Transpose → Reshape → gemm (a channels-last flatten), or with
    ``then_conv`` the transposed image fed to a second conv."""
    rng = np.random.default_rng(0)
    inits = [const("w1", rng.standard_normal((8, 3, 3, 3)) * 0.3),
             const("b1", rng.standard_normal(8) * 0.1),
             const("w2", rng.standard_normal((10, 8 * 4 * 4)) * 0.1),
             const("b2", rng.standard_normal(10) * 0.1),
             const("w3", rng.standard_normal((4, 4, 1, 1)) * 0.3),
             const("shape", [-1, 128], np.int64)]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="/conv1/Conv",
                              pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c1"], ["r1"], name="/relu1/Relu"),
             helper.make_node("Transpose", ["r1"], ["t"], name="/t/Transpose", perm=list(perm))]
    if then_conv:
        nodes.append(helper.make_node("Conv", ["t", "w3"], ["y"], name="/conv2/Conv"))
        return float_model(nodes, inits[:2] + inits[4:5], (3, 8, 8), (4, 4, 8), "tcnn")
    nodes += [helper.make_node("Reshape", ["t", "shape"], ["f"], name="/flat/Reshape"),
              helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="/fc/Gemm", transB=1)]
    return float_model(nodes, inits[:4] + inits[5:], (3, 8, 8), (10,), "tcnn")


@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
def test_transpose_to_channels_last_before_a_flatten(tmp_path, fmt):
    """A channels-last flatten (Transpose (0, 2, 3, 1) → Reshape, as Keras-style models write
    it) keeps the quantizer: the dense layer reads hwgen's HWC stream as it comes."""
    path = quantize_ort(_transposed_cnn(), tmp_path, fmt=fmt)
    qgraph, exact, max_diff = agreement(path, np.random.default_rng(1).standard_normal(
        (200, 3, 8, 8)))
    assert [layer.op for layer in qgraph.layers] == ["conv", "dense"]
    assert exact == 1.0


def test_transpose_errors(tmp_path, capsys):
    _expect_error(quantize_ort(_transposed_cnn(perm=(0, 1, 3, 2)), tmp_path / "a"),
                  r"perm=\[0, 1, 3, 2\] .*hwgen supports \(0, 2, 3, 1\)", capsys)
    _expect_error(quantize_ort(_transposed_cnn(then_conv=True), tmp_path / "b"),
                  r"transposed to \(H, W, C\); hwgen takes a Transpose \(0, 2, 3, 1\) only "
                  "before a Flatten/Reshape", capsys)


def test_onnxruntime_layers_requantize_in_float32(tmp_path):
    """Dense and conv layers of onnxruntime's models take its kernels' float32 requantization,
    ``M · 2^−n`` exactly the float32 ratio ``fl(fl(s_x · s_w) / s_y)`` with a 24-bit ``M``."""
    path = quantize_ort(cnn(), tmp_path, fmt="QOperator", per_channel=True)
    qgraph = load_quantized_onnx(path)
    model = onnx.load(path)
    values = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.op_type == "QLinearConv")
    x_scale, w_scale, y_scale = (values[conv.input[i]] for i in (1, 4, 6))
    ratio = (np.float32(x_scale) * w_scale.astype(np.float32)) / np.float32(y_scale)
    layer = qgraph["conv1"]
    assert layer.rounding is Rounding.FLOAT32_ORT
    assert np.all(layer.multiplier >= 1 << 23) and np.all(layer.multiplier < 1 << 24)
    np.testing.assert_array_equal(np.ldexp(layer.multiplier.astype(np.float64), -layer.shift),
                                  ratio.astype(np.float64))
    assert all(qgraph[name].rounding is Rounding.FLOAT32_ORT for name in ("conv2", "fc"))


def test_float32_requant_needs_an_exact_float32_accumulator(tmp_path):
    """A layer whose accumulator can pass 2^24 (float32 is no longer exact) keeps the 16-bit
    multiplier and half-up rounding, and the QGraph says so."""
    rng = np.random.default_rng(5)
    path = tmp_path / "wide.onnx"
    onnx.save(_qdq_dense(np.full((3, 2048), 64), rng.uniform(0.01, 0.02, 3)), path)
    qgraph = load_quantized_onnx(path)
    assert qgraph.layers[0].rounding is Rounding.HALF_UP
    assert any("accumulator reaches 16,777,216" in note for note in qgraph.notes)


@pytest.mark.slow
def test_rtl_reproduces_onnxruntime_code_for_code(tmp_path):
    """A uint8 QDQ CNN from ``quantize_static`` (per-channel, max pool, residual add, global
    average pool): the RTL, under stalls, equals onnxruntime's codes one by one."""
    path = quantize_ort(cnn(), tmp_path, fmt="QDQ", per_channel=True)
    qgraph = load_quantized_onnx(path)
    x = np.random.default_rng(6).standard_normal((24, 3, 8, 8))
    want = ort_codes(path, qgraph, x)
    design = hwgen.generate(hwgen.make_plan(qgraph, multipliers=16), x)
    result = hwgen.simulate(design.write(tmp_path / "design"), stall=0.3, seed=5)
    assert result.passed, result.summary()
    np.testing.assert_array_equal(result.outputs, want)


def _qdq_average_pool(scale, zero_point, dtype, kernel=(2, 2), stride=(2, 2),
                      pads=(0, 0, 0, 0), shape=(4, 6, 6)):
    """x → Q → DQ → AveragePool → Q → DQ, the output keeping the input's quantization, as
    ``quantize_static`` writes it (``count_include_pad=1``: hwgen divides by kH·kW)."""
    inits = [const("s", scale), const("z", zero_point, dtype)]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("AveragePool", ["xd"], ["p"], name="/pool/AveragePool",
                              kernel_shape=list(kernel), strides=list(stride), pads=list(pads),
                              count_include_pad=1),
             helper.make_node("QuantizeLinear", ["p", "s", "z"], ["pq"]),
             helper.make_node("DequantizeLinear", ["pq", "s", "z"], ["y"])]
    channels, height, width = shape
    top, left, bottom, right = pads
    size = ((height + top + bottom - kernel[0]) // stride[0] + 1,
            (width + left + right - kernel[1]) // stride[1] + 1)
    return float_model(nodes, inits, shape, (channels, *size), "avgpool")


def _pool_against_onnxruntime(tmp_path, model, frames=64, seed=9):
    """``(qgraph, input codes, hwgen's codes, onnxruntime's codes, the pool's exact integer
    sums)`` on random codes, the last three ``(frames, OH·OW·C)`` in HWC order."""
    path = tmp_path / "avgpool.onnx"
    onnx.save(model, path)
    qgraph = load_quantized_onnx(path)
    pool = qgraph["pool"]
    rng = np.random.default_rng(seed)
    codes = rng.integers(qgraph.input.lo, qgraph.input.hi + 1, size=(frames, qgraph.in_features))
    x = qgraph.input.dequantize(codes).reshape(frames, *pool.in_shape).transpose(0, 3, 1, 2)
    assert np.array_equal(qgraph.input_codes(x), codes)
    got = run_integer(qgraph, codes)
    out_h, out_w, channels = pool.out_shape
    want = ort_codes(path, qgraph, x).reshape(frames, channels, out_h, out_w).transpose(
        0, 2, 3, 1).reshape(frames, -1)
    sums = (windows(codes.reshape(frames, *pool.in_shape), pool.kernel, pool.stride, pool.pads,
                    pool.input.zero_point) - pool.input.zero_point).sum(axis=(3, 4))
    return qgraph, codes, got, want, sums.reshape(frames, -1)


UINT8_POOLS = [  # scale, zero point, kernel, stride, pads, shape
    (0.0218801, 0, (2, 2), (2, 2), (0, 0, 0, 0), (4, 6, 6)),
    (0.0218801, 7, (2, 2), (1, 1), (0, 0, 0, 0), (4, 6, 6)),
    (0.1, 128, (3, 3), (2, 2), (0, 0, 0, 0), (4, 9, 9)),
    (0.003, 7, (4, 4), (1, 1), (0, 0, 0, 0), (4, 9, 9)),
    (1.7, 255, (2, 2), (2, 2), (1, 1, 1, 1), (4, 6, 6)),
    (0.0218801, 3, (3, 2), (2, 2), (1, 0, 1, 1), (4, 5, 7)),
]


@pytest.mark.parametrize("scale, zero_point, kernel, stride, pads, shape", UINT8_POOLS)
def test_qdq_uint8_average_pool_matches_onnxruntime_exactly(tmp_path, scale, zero_point, kernel,
                                                            stride, pads, shape):
    """onnxruntime fuses a uint8 QDQ AveragePool into its QLinearAveragePool kernel on every
    CPU; hwgen's ``FLOAT32_ORT`` reproduces its float32 arithmetic code for code, ties
    included, where rounding the exact sum half to even would not."""
    model = _qdq_average_pool(scale, zero_point, np.uint8, kernel, stride, pads, shape)
    qgraph, codes, got, want, sums = _pool_against_onnxruntime(tmp_path, model)
    assert qgraph["pool"].rounding is Rounding.FLOAT32_ORT
    assert np.array_equal(got, want)
    if kernel == (2, 2):  # ratio 1/4: ties the exact sum's half-to-even rounding gets wrong
        assert np.mean(sums % 4 == 2) > 0.15
        half_even = dataclasses.replace(qgraph["pool"], rounding=Rounding.HALF_EVEN)
        integer = run_integer(dataclasses.replace(qgraph, layers=(half_even,)), codes)
        assert not np.array_equal(integer, want)


@pytest.mark.parametrize("zero_point", [-128, 6])
def test_qdq_int8_average_pool_rounds_half_to_even(tmp_path, zero_point):
    """int8 pools keep ``HALF_EVEN``: onnxruntime's int8 arithmetic depends on the CPU (see
    ``QDQ_INT8_AVGPOOL``), so only what every CPU shares is asserted: every code whose exact sum
    is not a tie equals onnxruntime's, and ties differ by at most one."""
    qgraph, _, got, want, sums = _pool_against_onnxruntime(
        tmp_path, _qdq_average_pool(0.0218801, zero_point, np.int8))
    pool = qgraph["pool"]
    assert pool.rounding is Rounding.HALF_EVEN and pool.multiplier / 2 ** pool.shift == 0.25
    ties = sums % 4 == 2
    assert ties.mean() > 0.2
    assert np.array_equal(got[~ties], want[~ties])
    assert np.abs(got - want).max() <= 1


def test_names_follow_the_float_model(tmp_path):
    path = quantize_ort(cnn(), tmp_path, fmt="QOperator")
    qgraph = load_quantized_onnx(path)
    assert [layer.name for layer in qgraph.layers] == ["conv1", "pool", "conv2", "add", "gap",
                                                       "fc"]


def _qdq_dense(weight_codes, weight_scale, x_scale=0.05, y_scale=0.1, weight_zp=None):
    """x → Q → DQ → Gemm(DQ(weight codes)) → Q → DQ, written by hand."""
    out, features = weight_codes.shape
    zp = np.zeros(out, np.int8) if weight_zp is None else np.asarray(weight_zp, np.int8)
    inits = [const("xs", x_scale), const("xz", 128, np.uint8), const("w", weight_codes, np.int8),
             const("ws", weight_scale), const("wz", zp, np.int8), const("ys", y_scale),
             const("yz", 100, np.uint8)]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Gemm", ["xd", "wd"], ["h"], name="/fc/Gemm", transB=1),
             helper.make_node("QuantizeLinear", ["h", "ys", "yz"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    return float_model(nodes, inits, (features,), (out,), "dense")


def test_weight_code_minus_128_widens_the_layer(tmp_path):
    """onnxruntime's int8 weights are symmetric but not narrow: −128 occurs. hwgen keeps the
    codes and gives the layer 9-bit weights, so it stays exact."""
    rng = np.random.default_rng(3)
    codes = weight_codes(rng, (6, 12))
    codes[0, 0] = -128
    codes[0, 1] = abs(codes[0, 1])  # its neighbour of the other sign: no int16 pair saturates
    path = tmp_path / "dense.onnx"
    onnx.save(_qdq_dense(codes, rng.uniform(0.01, 0.02, 6)), path)
    qgraph, exact, max_diff = agreement(path, rng.standard_normal((256, 12)) * 3)
    assert qgraph.layers[0].weight_bits == 9
    assert qgraph.layers[0].weight.min() == -128
    assert exact == 1.0
    codes[0, 0] = -127
    onnx.save(_qdq_dense(codes, rng.uniform(0.01, 0.02, 6)), path)
    assert load_quantized_onnx(path).layers[0].weight_bits == 8


def test_check_names_onnxruntime_saturation(tmp_path):
    """Full-range int8 weights after uint8 inputs near 255: where onnxruntime's kernels add
    product pairs into a saturating int16 (x86-64 without VNNI), its codes leave the exact
    arithmetic and ``hwgen check`` says why; elsewhere they agree."""
    import warnings
    from hwgen.check import check_model, onnxruntime_saturates
    from hwgen.errors import HwgenWarning
    rng = np.random.default_rng(3)
    codes = rng.integers(100, 128, (6, 64)) * rng.choice([-1, 1], (6, 1))
    path = tmp_path / "dense.onnx"
    onnx.save(_qdq_dense(codes, rng.uniform(0.001, 0.002, 6)), path)
    x = rng.uniform(4, 6.3, (64, 64))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = check_model(path, x)
    if onnxruntime_saturates():
        assert result.max_diff > 1 and len(result.caveats) == 1
        assert "saturate" in result.caveats[0] and "reduce_range=True" in result.caveats[0]
        assert "note: onnxruntime's uint8×int8 kernels saturate" in result.summary()
        assert any(issubclass(w.category, HwgenWarning) for w in caught)
    else:
        assert result.max_diff <= 1 and not result.caveats


def test_matmul_integer_and_conv_integer(tmp_path):
    """QuantizeLinear → MatMulInteger/ConvInteger → Cast → Mul(scale) → Add(bias) → Relu →
    QuantizeLinear, checked against onnxruntime."""
    rng = np.random.default_rng(4)
    w1 = weight_codes(rng, (4, 3, 3, 3))
    w2 = weight_codes(rng, (4 * 6 * 6, 5))
    s1, s2 = 0.02 * 0.01, 0.03 * 0.005
    inits = [const("xs", 0.02), const("xz", 128, np.uint8), const("w1", w1, np.int8),
             const("m1", np.full((1, 4, 1, 1), s1)), const("b1", rng.normal(0, 0.1, (1, 4, 1, 1))),
             const("hs", 0.03), const("hz", 0, np.uint8), const("w2", w2, np.int8),
             const("m2", s2), const("b2", rng.normal(0, 0.1, 5)), const("ys", 0.05),
             const("yz", 7, np.int8), const("shape", [-1, 4 * 6 * 6], np.int64)]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("ConvInteger", ["xq", "w1", "xz"], ["a1"], name="conv"),
             helper.make_node("Cast", ["a1"], ["f1"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["f1", "m1"], ["g1"]),
             helper.make_node("Add", ["g1", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["r1"]),
             helper.make_node("QuantizeLinear", ["r1", "hs", "hz"], ["q1"]),
             helper.make_node("Reshape", ["q1", "shape"], ["v1"]),
             helper.make_node("MatMulInteger", ["v1", "w2", "hz"], ["a2"], name="fc"),
             helper.make_node("Cast", ["a2"], ["f2"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["m2", "f2"], ["g2"]),
             helper.make_node("Add", ["g2", "b2"], ["h2"]),
             helper.make_node("QuantizeLinear", ["h2", "ys", "yz"], ["q2"]),
             helper.make_node("DequantizeLinear", ["q2", "ys", "yz"], ["y"])]
    path = tmp_path / "integer.onnx"
    onnx.save(float_model(nodes, inits, (3, 8, 8), (5,)), path)
    qgraph, exact, max_diff = agreement(path, rng.standard_normal((128, 3, 8, 8)))
    # onnxruntime computes Cast → Mul → Add in float32; the conv layer agrees on > 99.8 % of
    # its codes, and each of its rare ±1 codes feeds all 5 outputs of the dense layer.
    assert max_diff <= 1 and exact >= 0.95
    assert [layer.op for layer in qgraph.layers] == ["conv", "dense"]
    assert qgraph.output.signed and qgraph.layers[0].relu


# -- QONNX ----------------------------------------------------------------------------------------

QONNX = "qonnx.custom_op.general"


def quant_node(x, prefix, bits, signed, narrow, scale, zero_point=0.0, mode="ROUND"):
    inits = [const(f"{prefix}_s", scale), const(f"{prefix}_z", zero_point),
             const(f"{prefix}_b", float(bits))]
    node = helper.make_node("Quant", [x, f"{prefix}_s", f"{prefix}_z", f"{prefix}_b"],
                            [f"{prefix}_q"], domain=QONNX, signed=int(signed),
                            narrow=int(narrow), rounding_mode=mode, name=f"{prefix}_quant")
    return node, inits


def qonnx_quant(x, scale, zero_point, bits, signed, narrow):
    """QONNX's Quant: fake-quantize ``x`` (round half to even)."""
    lo = -(2 ** (bits - 1)) + narrow if signed else 0
    hi = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1 - narrow
    codes = np.clip(np.round(x / scale + zero_point), lo, hi)
    return codes, scale * (codes - zero_point)


def numpy_conv(x, weight, bias, pad):
    """``(N, C, H, W)`` * ``(O, C, kh, kw)``, stride 1, zero padding ``pad``."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    _, kh, kw = weight.shape[1:]
    out_h, out_w = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    y = np.zeros((len(x), len(weight), out_h, out_w))
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("nchw,oc->nohw", x[:, :, i:i + out_h, j:j + out_w], weight[:, :, i, j])
    return y + bias[None, :, None, None]


def qonnx_cnn(w_bits, a_bits, narrow, seed=0):
    """Brevitas-style: Quant(input) → Conv(Quant(W), float bias) → Relu → Quant(unsigned) →
    Flatten → Gemm(Quant(W) per channel) → Quant(signed, non-zero zero point)."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((4, 2, 3, 3)) * 0.4
    w2 = rng.standard_normal((5, 4 * 6 * 6)) * 0.1
    limit = 2 ** (w_bits - 1) - 1
    s_w1 = np.abs(w1).reshape(4, -1).max(1).reshape(4, 1, 1, 1) / limit
    s_w2 = np.abs(w2).max(1, keepdims=True) / limit
    zp_y = 1 if a_bits <= 3 else 3
    params = dict(s_x=0.04, s_h=4.0 / (2 ** a_bits - 1), s_y=0.3 / 2 ** (a_bits - 3))
    # Biases on the accumulator grid s_x · s_w[c], as Brevitas' Int32Bias exports them (a float
    # bias off that grid is rounded onto it by hwgen, which moves about 1 % of codes by one).
    b1 = np.round(rng.normal(0, 0.1, 4) / (0.04 * s_w1.ravel())) * 0.04 * s_w1.ravel()
    b2 = np.round(rng.normal(0, 0.1, 5) / (params["s_h"] * s_w2.ravel())) * params["s_h"] * \
        s_w2.ravel()
    nodes, inits = [], [const("w1", w1), const("w2", w2), const("b1", b1), const("b2", b2)]
    for node, extra in (
            quant_node("x", "qx", 8, True, False, params["s_x"]),
            quant_node("w1", "qw1", w_bits, True, narrow, s_w1),
            quant_node("h", "qh", a_bits, False, narrow, params["s_h"]),
            quant_node("w2", "qw2", w_bits, True, narrow, s_w2),
            quant_node("z", "qy", a_bits, True, False, params["s_y"], float(zp_y))):
        nodes.append(node)
        inits += extra
    nodes[2:2] = [helper.make_node("Conv", ["qx_q", "qw1_q", "b1"], ["c"], name="/conv/Conv",
                                   pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", ["c"], ["h"], name="/relu/Relu")]
    nodes[5:5] = [helper.make_node("Flatten", ["qh_q"], ["f"], name="/flatten/Flatten"),
                  helper.make_node("Gemm", ["f", "qw2_q", "b2"], ["z"], name="/fc/Gemm",
                                   transB=1)]
    order = {n.output[0]: n for n in nodes}
    nodes = [order[t] for t in ("qx_q", "qw1_q", "c", "h", "qh_q", "f", "qw2_q", "z", "qy_q")]
    nodes[-1].output[0] = "y"
    model = float_model(nodes, inits, (2, 6, 6), (5,), "qonnx")
    model.opset_import.append(helper.make_opsetid(QONNX, 1))

    def evaluate(x):
        _, xq = qonnx_quant(x, params["s_x"], 0, 8, True, False)
        _, wq1 = qonnx_quant(w1, s_w1, 0, w_bits, True, narrow)
        h = np.maximum(numpy_conv(xq, wq1, b1, 1), 0)
        _, hq = qonnx_quant(h, params["s_h"], 0, a_bits, False, narrow)
        _, wq2 = qonnx_quant(w2, s_w2, 0, w_bits, True, narrow)
        z = hq.reshape(len(hq), -1) @ wq2.T + numpy_helper_value(inits, "b2")
        codes, _ = qonnx_quant(z, params["s_y"], zp_y, a_bits, True, False)
        return codes.astype(np.int64)
    return model, evaluate


def numpy_helper_value(inits, name):
    return next(onnx.numpy_helper.to_array(t) for t in inits if t.name == name).astype(np.float64)


@pytest.mark.parametrize("w_bits, a_bits", [(2, 2), (3, 4), (4, 4), (5, 6), (8, 8), (4, 8)])
@pytest.mark.parametrize("narrow", [False, True])
def test_qonnx_matches_its_semantics(w_bits, a_bits, narrow):
    model, evaluate = qonnx_cnn(w_bits, a_bits, narrow)
    qgraph = load_quantized_onnx(model)
    assert [layer.op for layer in qgraph.layers] == ["conv", "dense"]
    assert qgraph.layers[1].output.bits == a_bits and qgraph.layers[0].output.bits == a_bits
    # Non-narrow signed weights can reach −2^(b−1): one more bit keeps them exact.
    assert qgraph.layers[0].weight_bits in (w_bits, w_bits + 1)
    x = np.random.default_rng(5).standard_normal((200, 2, 6, 6)) * 1.5
    want = evaluate(x)
    got = run_integer(qgraph, qgraph.input_codes(x))
    diff = np.abs(got - want)
    assert diff.max() <= 1 and np.mean(diff == 0) >= 0.99
    if narrow:
        assert qgraph.layers[0].clamp_hi == 2 ** a_bits - 2


def test_qonnx_finn_domain_and_floor_rounding():
    model, _ = qonnx_cnn(4, 4, False)
    for node in model.graph.node:
        if node.op_type == "Quant":
            node.domain = "finn.custom_op.general"
            if node.name == "qh_quant":
                for attribute in node.attribute:
                    if attribute.name == "rounding_mode":
                        attribute.s = b"FLOOR"
    qgraph = load_quantized_onnx(model)
    assert qgraph.layers[0].rounding is hwgen.reference.Rounding.FLOOR


def test_qonnx_unsupported_rounding_and_bits():
    model, _ = qonnx_cnn(4, 4, False)
    node = next(n for n in model.graph.node if n.name == "qh_quant")
    next(a for a in node.attribute if a.name == "rounding_mode").s = b"CEIL"
    with pytest.raises(HwgenError, match="qh_quant.*rounding_mode 'CEIL'"):
        load_quantized_onnx(model)
    model, _ = qonnx_cnn(4, 4, False)
    init = next(t for t in model.graph.initializer if t.name == "qh_b")
    init.CopyFrom(const("qh_b", 20.0))
    with pytest.raises(HwgenError, match="qh_quant.*20 bits"):
        load_quantized_onnx(model)


# -- the notebook API and the CLI -----------------------------------------------------------------

def test_load_returns_a_qgraph_make_plan_accepts(tmp_path):
    path = quantize_ort(cnn(), tmp_path)
    model = onnx.load(path)
    assert is_quantized(model) and not is_quantized(cnn())
    qgraph = hwgen.load(path)
    assert isinstance(qgraph, QGraph) and qgraph.name == path.stem
    plan = hwgen.make_plan(qgraph)
    assert plan.qgraph is qgraph
    assert isinstance(hwgen.load(qgraph), QGraph)


def test_build_without_calib(tmp_path, capsys):
    path = quantize_ort(mlp(), tmp_path)
    out = tmp_path / "out"
    assert main(["build", str(path), "-o", str(out), "--frames", "8"]) == 0
    vectors = np.load(out / "vectors.npz")
    assert vectors["inputs"].shape == (8, 16)
    qgraph = load_quantized_onnx(path)
    assert np.array_equal(vectors["outputs"], run_integer(qgraph, vectors["inputs"]))
    assert main(["build", str(path), "-o", str(out), "--bits", "w4a4"]) == 1
    assert "--bits does not apply" in capsys.readouterr().err


def test_build_float_model_still_needs_calib(tmp_path, capsys):
    path = tmp_path / "float.onnx"
    onnx.save(mlp(), path)
    assert main(["build", str(path), "-o", str(tmp_path / "out")]) == 1
    assert "--calib" in capsys.readouterr().err


def test_check_command_quantized(tmp_path, capsys):
    path = quantize_ort(cnn(), tmp_path, fmt="QOperator", activation="int8")
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.random.default_rng(6).standard_normal((64, 3, 8, 8)))
    assert main(["check", str(path), "--inputs", str(inputs)]) == 0
    out = capsys.readouterr().out
    exact = float(out.split("% of codes exact")[0].split()[-1])
    assert exact >= 99 and "100.00% within ±1" in out and "top-1 agreement" in out


def test_check_command_float(tmp_path, capsys):
    path = tmp_path / "float.onnx"
    onnx.save(mlp(), path)
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(7).standard_normal((64, 16)))
    assert main(["check", str(path), "--inputs", str(x)]) == 1
    assert "needs calibration data" in capsys.readouterr().err
    assert main(["check", str(path), "--inputs", str(x), "--calib", str(x)]) == 0
    out = capsys.readouterr().out
    assert "top-1 agreement" in out and "largest |error|" in out


def test_check_missing_onnxruntime(tmp_path, monkeypatch, capsys):
    import builtins
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    path = quantize_ort(mlp(), tmp_path)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 16)))
    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert main(["check", str(path), "--inputs", str(x)]) == 1
    assert "hwgen[check]" in capsys.readouterr().err


# -- errors ---------------------------------------------------------------------------------------

def _qdq_model_with(tmp_path, edit):
    path = quantize_ort(mlp(), tmp_path)
    model = onnx.load(path)
    edit(model)
    bad = tmp_path / "bad.onnx"
    onnx.save(model, bad)
    return bad


def _expect_error(path, pattern, capsys):
    with pytest.raises(HwgenError, match=pattern):
        hwgen.load(path)
    assert main(["build", str(path), "-o", str(path.parent / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hwgen: error:") and "Traceback" not in err


def test_error_unsupported_op(tmp_path, capsys):
    def edit(model):
        node = next(n for n in model.graph.node if n.op_type == "Gemm")
        node.op_type, node.name = "Sigmoid", "/act/Sigmoid"
        del node.input[1:]
        del node.attribute[:]
    _expect_error(_qdq_model_with(tmp_path, edit),
                  r"node '/act/Sigmoid' \(op Sigmoid\) is not supported.*supported ops", capsys)


def test_error_dynamic_quantization(tmp_path, capsys):
    def edit(model):
        node = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
        node.op_type = "DynamicQuantizeLinear"
        node.name = "dq"
    _expect_error(_qdq_model_with(tmp_path, edit), "DynamicQuantizeLinear.*quantize_static",
                  capsys)


def test_error_unsupported_opset(tmp_path, capsys):
    def edit(model):
        model.opset_import[0].version = 99
    _expect_error(_qdq_model_with(tmp_path, edit), "opset 99", capsys)


def test_error_dynamic_shape(tmp_path, capsys):
    def edit(model):
        model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "K"
    _expect_error(_qdq_model_with(tmp_path, edit), r"input 'x' has shape \(\?, \?\)", capsys)


def test_error_weight_not_constant(tmp_path, capsys):
    def edit(model):
        node = next(n for n in model.graph.node if n.op_type == "Gemm")
        node.input[1] = "x_DequantizeLinear_Output"
    _expect_error(_qdq_model_with(tmp_path, edit), "weight B .* computed from the network input",
                  capsys)


def test_weight_zero_points_fold_into_the_codes(tmp_path):
    """Asymmetric int8 weights (a zero point per channel, as onnxruntime writes them with
    WeightSymmetric=False): the codes become ``w − zp_w``, the layer takes the bits they need,
    and the result is onnxruntime's code for code."""
    rng = np.random.default_rng(8)
    codes = weight_codes(rng, (5, 12))
    path = tmp_path / "zp.onnx"
    onnx.save(_qdq_dense(codes, rng.uniform(0.01, 0.02, 5), weight_zp=[0, 1, -7, 100, -128]),
              path)
    qgraph, exact, max_diff = agreement(path, rng.standard_normal((256, 12)) * 3)
    layer = qgraph.layers[0]
    np.testing.assert_array_equal(layer.weight[3], codes[3] - 100)
    assert layer.weight_bits == 9 and layer.weight.max() == codes[4].max() + 128
    assert exact == 1.0


@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_asymmetric_weights_from_quantize_static(tmp_path, fmt, model):
    """``quantize_static`` with ``WeightSymmetric=False`` (uint8 activations, int8 weights with a
    zero point; onnxruntime writes one only per tensor): every output code is onnxruntime's."""
    float_net = mlp() if model == "mlp" else cnn()
    path = quantize_ort(float_net, tmp_path, fmt=fmt, per_channel=False, weight_symmetric=False)
    zero_points = [onnx.numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer
                   if t.name.startswith("w") and t.name.endswith("zero_point")]
    assert zero_points and any(np.any(zp != 0) for zp in zero_points)
    shape = (16,) if model == "mlp" else (3, 8, 8)
    _, exact, _ = agreement(path, np.random.default_rng(3).standard_normal((128, *shape)))
    assert exact == 1.0


def test_error_requantize_without_layer(tmp_path, capsys):
    def edit(model):
        scale = next(t for t in model.graph.initializer if t.name == "hr_scale")
        model.graph.initializer.append(const("other_scale", 2 * onnx.numpy_helper.to_array(
            scale)))
        node = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
                and n.input[0] == "hr_QuantizeLinear_Output"][0]
        node.input[1] = "other_scale"
    _expect_error(_qdq_model_with(tmp_path, edit), "one quantization per tensor", capsys)


def test_error_corrupt_file(tmp_path, capsys):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(HwgenError):
        hwgen.load(path)
    assert main(["check", str(path), "--inputs", str(path)]) == 1
    assert "Traceback" not in capsys.readouterr().err


# -- RTL ------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("act, rounding", [("uint8", Rounding.FLOAT32_ORT),
                                           ("int8", Rounding.HALF_EVEN)])
def test_qdq_cnn_rtl_is_bit_exact(tmp_path, act, rounding):
    """A model imported from onnxruntime's QDQ format, with an average pool in onnxruntime's
    float32 arithmetic (uint8) or rounding half to even (int8), built to Verilog and simulated
    under cocotb with random stalls: every output code equals the integer reference's."""
    path = quantize_ort(cnn(pool="AveragePool"), tmp_path, activation=act)
    qgraph = hwgen.load(path)
    assert qgraph["pool"].rounding is rounding
    x = np.random.default_rng(8).standard_normal((6, 3, 8, 8))
    design = hwgen.generate(hwgen.make_plan(qgraph), x, frames=6)
    result = hwgen.simulate(design.write(tmp_path / "out"), stall=0.3, seed=3)
    assert result.passed, result.summary()
    assert np.array_equal(result.outputs, run_integer(qgraph, qgraph.input_codes(x)))


def _with_output_op(model, op, **attributes):
    """``model`` with ``op`` reading its output ``y`` and writing the new output ``p``."""
    model.graph.node.append(helper.make_node(op, ["y"], ["p"], name=f"/out/{op}", **attributes))
    model.graph.output[0].name = "p"
    if op == "ArgMax":
        model.graph.output[0].type.tensor_type.elem_type = TensorProto.INT64
    return model


@pytest.mark.parametrize("op,attributes", [("Softmax", {}), ("LogSoftmax", {"axis": 1}),
                                           ("ArgMax", {"axis": 1})])
def test_quantized_output_softmax_is_removed(tmp_path, op, attributes):
    from hwgen.check import check_model
    rng = np.random.default_rng(2)
    path = tmp_path / "soft.onnx"
    onnx.save(_with_output_op(_qdq_dense(weight_codes(rng, (6, 12)),
                                         rng.uniform(0.01, 0.02, 6)), op, **attributes), path)
    qgraph = load_quantized_onnx(path)
    assert qgraph.removed_outputs == (op,)
    assert qgraph.notes[0].startswith(f"removed the output {op} (node '/out/{op}'")
    result = check_model(path, rng.standard_normal((200, 12)) * 3)
    assert result.kind == "classes" and result.top1 >= 0.99


def test_quantized_softmax_inside_is_an_error():
    rng = np.random.default_rng(2)
    model = _with_output_op(_qdq_dense(weight_codes(rng, (6, 12)),
                                       rng.uniform(0.01, 0.02, 6)), "Softmax")
    model.graph.node.append(helper.make_node("Identity", ["p"], ["z"], name="after"))
    model.graph.output[0].name = "z"
    with pytest.raises(HwgenError, match=r"'/out/Softmax' \(op Softmax\) is not at the output"):
        load_quantized_onnx(model)
