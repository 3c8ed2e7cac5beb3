"""The golden models: float inference of a :class:`~hwgen.graph.Graph` and bit-exact integer
inference of a :class:`~hwgen.quantize.QGraph`.

The integer run implements DESIGN.md's contract with numpy ``int64``. numpy's ``>>`` on negative
``int64`` is an arithmetic shift (it floors), which is exactly what ``rshift_round`` needs. Every
product that could leave ``int64`` is checked before it is computed, never assumed away.
"""

import enum

import numpy as np

from .activations import evaluate
from .errors import HwgenError

__all__ = ["Rounding", "rshift_round", "float32_band", "requantize", "average_float32_ort",
           "run_float", "run_integer"]

_INT64_LIMIT = 2 ** 63 - 1


class Rounding(enum.Enum):
    """How ``acc · M`` is shifted right by ``n``.

    ``HALF_UP``: ``floor((v + 2^(n−1)) / 2^n)``, ties toward +∞ (the default).
    ``HALF_EVEN``: to nearest, ties to the even result: ``floor((v + 2^(n−1) − 1 + b) / 2^n)``
    with ``b = floor(v / 2^n) mod 2``, the bit of ``v`` at weight ``2^n`` (so the hardware adds
    it as a carry in). onnxruntime's float kernels round this way.
    ``FLOOR``: ``floor(v / 2^n)``, a plain arithmetic shift.

    For ``n = 0`` every mode returns ``v``.

    ``FLOAT32_ORT``: onnxruntime's float32 requantization. For a shift (dense and conv layers
    imported from onnxruntime's ``QLinearConv``/``QLinearMatMul``/``QGemm`` and their QDQ
    forms): ``rint(fl(v · 2^−n))``, the value rounded to float32 (24 significant bits, to
    nearest even) and then to an integer (ties to even), as onnxruntime's
    ``fl(fl(acc) · scale)`` with the float32 scale exactly ``M · 2^−n`` (``M < 2^24``) and
    ``|acc| < 2^24``. Computed in integers (:func:`_float32_round`), as the hardware does: half
    to even, except in the narrow band where the float32 rounding lands on a tie.

    For average pools (not a shift): onnxruntime's ``QLinearAveragePool``
    kernel, in float32, which no rounding of the integer sum reproduces: terms
    ``t = fl(s_x · (q − zp_x))``, summed from 0 in kernel order (row ``ky`` outer, ``kx``
    inner) with a rounding after every addition, ``y = fl(Σ / (kh·kw))``, then
    ``q_y = clamp(rint(fl(fl(y / s_y) + zp_y)))`` (zero point added in float, ties to even).
    ``multiplier``/``shift`` then only bound the result (the hardware's first guess).
    """

    HALF_UP = "half_up"
    HALF_EVEN = "half_even"
    FLOOR = "floor"
    FLOAT32_ORT = "float32_ort"


def rshift_round(value, shift, rounding=Rounding.HALF_UP):
    """``value / 2^shift`` rounded per ``rounding``; ``value`` and ``shift`` are int64 arrays
    (broadcast together), ``shift ≥ 0``."""
    value = np.asarray(value, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(shift < 0) or np.any(shift > 62):
        raise ValueError("shift must be in [0, 62]")
    if rounding is Rounding.FLOAT32_ORT:
        return _float32_round(value, shift)
    if rounding is Rounding.FLOOR:
        return value >> shift
    # (1 << shift) >> 1 is 2^(n-1) for n > 0 and 0 for n = 0.
    half = (np.int64(1) << shift) >> 1
    _check_int64(np.abs(value).max(initial=0) + half.max(initial=0), "rounding")
    if rounding is Rounding.HALF_EVEN:
        # Below a tie by one unit, plus the bit of weight 2^n: a tie then reaches the next
        # multiple of 2^n exactly when the quotient below it is odd. Nothing to add for n = 0.
        odd = (value >> shift) & 1
        half = np.where(shift > 0, half - 1 + odd, 0)
    return (value + half) >> shift


# float32's significand: 24 bits. A product ``acc · M`` of an exact float32 ``acc`` and
# ``M < 2^24`` has at most 48 bits, which float64 (53) counts exactly below.
_FLOAT32_BITS = 24


def float32_band(value, shift):
    """Where ``rint(fl(v · 2^−n))`` differs from rounding ``v / 2^n`` half to even: the float32
    rounding of ``v`` (to 24 significant bits, ``d = bitlen|v| − 24`` bits dropped) lands on the
    tie ``(q + ½) · 2^n``, whose rounding to even is then the result. That happens where
    ``g = (v mod 2^n) − 2^(n−1)`` has ``|g| < T = 2^(d−1)``, or ``|g| = T`` with ``d ≤ n − 2``
    (a tie of the float32 rounding goes to the even significand, which the tie is then).
    ``T`` is computed as the highest set bit of ``|v|`` (``~v`` for a negative ``v``: the same
    but where ``|v|`` is a power of two, which the band never holds) shifted right by 24, and
    ``d ≤ n − 2`` as ``|v| < 2^(n+23)``. Returns the boolean array (``False`` for ``n = 0``)."""
    value = np.asarray(value, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    magnitude = np.where(value < 0, ~value, value)
    if int(magnitude.max(initial=0)) >= 1 << 52:
        raise HwgenError("FLOAT32_ORT rounding: the product exceeds the 48 bits of a float32 "
                         "accumulator times a 24-bit multiplier")
    _, exponent = np.frexp(magnitude.astype(np.float64))  # bitlen, exact below 2^53
    band = np.where(exponent >= _FLOAT32_BITS + 1, np.int64(1) << np.maximum(
        exponent - _FLOAT32_BITS - 1, 0), 0)
    floor = value >> shift
    half = (np.int64(1) << shift) >> 1
    distance = np.abs(value - (floor << shift) - half)
    small = magnitude < (np.int64(1) << (shift + _FLOAT32_BITS - 1))
    return (shift > 0) & ((distance < band) | ((distance == band) & small))


def _float32_round(value, shift):
    """``rint(fl(v · 2^−n))`` in integers: half to even, and in :func:`float32_band` the even
    one of ``floor(v / 2^n)`` and the next integer. Exact for ``|v| < 2^(n+23)``; beyond, the
    float32 result is a multiple of a power of two and this is only as large (the clamp of any
    16-bit code takes both alike)."""
    value = np.asarray(value, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    floor = value >> shift
    even = rshift_round(value, shift, Rounding.HALF_EVEN)
    return np.where(float32_band(value, shift), floor + (floor & 1), even)


def requantize(acc, multiplier, shift, zero_point, lo, hi, rounding=Rounding.HALF_UP,
               negative_multiplier=None, fraction=None, negative_fraction=None):
    """``clamp(zero_point + rshift_round(acc · M + F, n), lo, hi)``.

    ``acc`` is ``(..., channels)``; ``multiplier`` and ``shift`` are per channel (or scalars).
    With ``negative_multiplier`` (per channel), an ``acc < 0`` takes it instead of ``M``: a
    LeakyReLU/PReLU folded into the requantization (two slopes, exact). ``fraction`` ``F`` (per
    channel; default 0) is the part of a real bias below the accumulator's step, in units of
    ``2^−n`` output steps (``negative_fraction`` where ``acc < 0`` takes the other slope).
    """
    acc = np.asarray(acc, dtype=np.int64)
    multiplier = np.asarray(multiplier, dtype=np.int64)
    negative = acc < 0
    if negative_multiplier is not None:
        multiplier = np.where(negative, np.asarray(negative_multiplier, dtype=np.int64),
                              multiplier)
    addend = np.int64(0)
    if fraction is not None:
        addend = np.asarray(fraction, dtype=np.int64)
        if negative_fraction is not None:
            addend = np.where(negative, np.asarray(negative_fraction, dtype=np.int64), addend)
    _check_int64(int(np.abs(acc).max(initial=0)) * int(np.abs(multiplier).max(initial=0))
                 + int(np.abs(addend).max(initial=0)), "requantize product")
    scaled = rshift_round(acc * multiplier + addend, shift, rounding)
    return np.clip(zero_point + scaled, lo, hi)


def _check_int64(bound, what):
    if int(bound) > _INT64_LIMIT:
        raise HwgenError(f"{what}: magnitude {int(bound)} exceeds int64; "
                         "lower the bit widths of this layer")


def run_float(graph, x, *, keep=False):
    """Float64 inference of ``graph`` on a batch ``x`` of shape ``(N, *input_shape)``.

    Returns the output ``(N, *output_shape)``, or with ``keep=True`` a dict of every layer's
    output keyed by layer name (calibration reads it).
    """
    x = graph.to_internal(x)
    layers = graph.layers()
    values = {}
    for layer in layers:
        args = [values[name] for name in layer.inputs]
        values[layer.name] = _FLOAT_OPS[layer.op](layer.spec, x, *args)
    return values if keep else values[graph.output_layer.name]


def windows(x, kernel, stride, pads, pad_value):
    """Sliding windows of a batch of images ``(N, H, W, C)``, padded with ``pad_value``:
    ``(N, OH, OW, kh, kw, C)``."""
    top, left, bottom, right = pads
    x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=pad_value)
    view = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=(1, 2))
    # sliding_window_view puts the window axes last: (N, OH', OW', C, kh, kw)
    view = view[:, ::stride[0], ::stride[1]]
    return view.transpose(0, 1, 2, 4, 5, 3)


def conv_float(spec, a):
    patches = windows(a, spec.kernel, spec.stride, spec.pads, 0.0)
    if spec.depthwise:
        return np.einsum("nyxhwc,chw->nyxc", patches, spec.weight[..., 0]) + spec.bias
    return np.einsum("nyxhwc,ohwc->nyxo", patches, spec.weight) + spec.bias


def pool_float(spec, a):
    if spec.kind == "max":
        return windows(a, spec.kernel, spec.stride, spec.pads, -np.inf).max(axis=(3, 4))
    return windows(a, spec.kernel, spec.stride, spec.pads, 0.0).mean(axis=(3, 4))


_FLOAT_OPS = {
    "input": lambda spec, x: x,
    "dense": lambda spec, x, a: a @ spec.weight.T + spec.bias,
    "relu": lambda spec, x, a: np.maximum(a, 0.0),
    "clip": lambda spec, x, a: np.clip(a, spec.lo, spec.hi),
    "conv": lambda spec, x, a: conv_float(spec, a),
    "maxpool": lambda spec, x, a: pool_float(spec, a),
    "avgpool": lambda spec, x, a: pool_float(spec, a),
    "global_avgpool": lambda spec, x, a: a.mean(axis=(1, 2), keepdims=True),
    "add": lambda spec, x, a, b: a + b,
    "activation": lambda spec, x, a: evaluate(spec.function, spec.params, a),
    "prelu": lambda spec, x, a: np.where(a >= 0, a, spec.slope * a),
    "upsample": lambda spec, x, a: upsample(a, spec.factor, spec.mode, 0.0),
    "concat": lambda spec, x, *parts: np.concatenate(parts, axis=-1),
    "argmax": lambda spec, x, a: a.reshape(len(a), -1).argmax(axis=1)[:, None].astype(
        np.float64),
    "flatten": lambda spec, x, a: a.reshape(len(a), -1),
}


def upsample(a, factor, mode, fill):
    """``a`` ``(N, H, W, C)`` enlarged by ``factor``: pixels repeated (``"nearest"``), or
    ``fill`` between them (``"zeros"``)."""
    sy, sx = factor
    if mode == "nearest":
        return np.repeat(np.repeat(a, sy, axis=1), sx, axis=2)
    n, height, width, channels = a.shape
    out = np.full((n, (height - 1) * sy + 1, (width - 1) * sx + 1, channels), fill,
                  dtype=a.dtype)
    out[:, ::sy, ::sx] = a
    return out


def dense_accumulate(layer, codes):
    """The exact accumulator ``bias' + Σ_k w[c,k] · q_x[k]`` of a quantized dense layer, int64,
    for ``codes`` of shape ``(N, in_features)``."""
    codes = np.asarray(codes, dtype=np.int64)
    _check_int64(layer.acc_bound, f"layer {layer.name!r} accumulator")
    return codes @ layer.weight.T + layer.bias


def conv_accumulate(layer, codes):
    """The exact accumulators of a quantized convolution for ``codes`` ``(N, H, W, C)``:
    padding holds the input zero point; ``(N, OH, OW, out_channels)`` int64."""
    _check_int64(layer.acc_bound, f"layer {layer.name!r} accumulator")
    patches = windows(np.asarray(codes, dtype=np.int64), layer.kernel, layer.stride, layer.pads,
                      layer.input.zero_point)
    if layer.depthwise:
        acc = np.einsum("nyxhwc,chw->nyxc", patches, layer.weight[..., 0])
    else:
        acc = np.einsum("nyxhwc,ohwc->nyxo", patches, layer.weight)
    return acc + layer.bias


def pool_integer(layer, codes):
    """Max, average or global average pooling of ``codes`` ``(N, H, W, C)``."""
    codes = np.asarray(codes, dtype=np.int64)
    if layer.kind == "max":
        return windows(codes, layer.kernel, layer.stride, layer.pads,
                       layer.input.lo).max(axis=(3, 4))
    patches = windows(codes, layer.kernel, layer.stride, layer.pads, layer.input.zero_point)
    if layer.rounding is Rounding.FLOAT32_ORT:
        return average_float32_ort(layer, patches)
    acc = (patches - layer.input.zero_point).sum(axis=(3, 4))
    return requantize(acc, layer.multiplier, layer.shift, layer.output.zero_point,
                      layer.clamp_lo, layer.clamp_hi, layer.rounding,
                      getattr(layer, "negative_multiplier", None),
                      getattr(layer, "bias_fraction", None),
                      getattr(layer, "negative_fraction", None))


def average_float32_ort(layer, patches):
    """The average pool of ``Rounding.FLOAT32_ORT`` over ``patches`` ``(N, OH, OW, kh, kw, C)``
    (padding holds the zero point, a term of 0 that leaves the float sum unchanged, as the
    kernel skipping pads does), in numpy float32, every operation rounded as onnxruntime's."""
    f32 = np.float32
    if layer.kind != "avg":
        raise HwgenError(f"layer {layer.name!r}: FLOAT32_ORT rounding is for average pools")
    terms = (patches - layer.input.zero_point).astype(f32) * f32(layer.input.scale)
    total = np.zeros(terms[:, :, :, 0, 0].shape, f32)
    for ky in range(terms.shape[3]):
        for kx in range(terms.shape[4]):
            total = total + terms[:, :, :, ky, kx]
    mean = total / f32(terms.shape[3] * terms.shape[4])
    codes = np.rint(mean / f32(layer.output.scale) + f32(layer.output.zero_point))
    return np.clip(codes, layer.clamp_lo, layer.clamp_hi).astype(np.int64)


def add_integer(layer, a, b):
    """``clamp(zp_y + rshift_round((a − zp_a)·M_a + (b − zp_b)·M_b, n), lo, hi)``."""
    _check_int64(layer.acc_bound, f"layer {layer.name!r} sum")
    acc = ((np.asarray(a, dtype=np.int64) - layer.input_a.zero_point) * layer.multiplier_a
           + (np.asarray(b, dtype=np.int64) - layer.input_b.zero_point) * layer.multiplier_b)
    scaled = rshift_round(acc, layer.shift, layer.rounding)
    return np.clip(layer.output.zero_point + scaled, layer.clamp_lo, layer.clamp_hi)


def concat_integer(layer, parts):
    """The parts one after another along the channels, each requantized to the output's
    quantization where its own differs, and clamped."""
    out = []
    for index, (part, quant) in enumerate(zip(parts, layer.input_quants)):
        part = np.asarray(part, dtype=np.int64)
        if not layer.passes(index):
            scaled = rshift_round((part - quant.zero_point) * layer.multipliers[index],
                                  layer.shift, layer.rounding)
            part = layer.output.zero_point + scaled
        out.append(np.clip(part, layer.clamp_lo, layer.clamp_hi))
    return np.concatenate(out, axis=-1)


def _run_layer(layer, args):
    if layer.op == "dense":
        acc = dense_accumulate(layer, args[0].reshape(len(args[0]), -1))
    elif layer.op == "conv":
        acc = conv_accumulate(layer, args[0])
    elif layer.op == "add":
        return add_integer(layer, *args)
    elif layer.op == "activation":
        return layer.table[np.asarray(args[0], dtype=np.int64) - layer.input.lo]
    elif layer.op == "concat":
        return concat_integer(layer, args)
    elif layer.op == "upsample":
        return upsample(args[0], layer.factor, layer.mode, layer.input.zero_point)
    elif layer.op == "argmax":
        return args[0].reshape(len(args[0]), -1).argmax(axis=1)[:, None]
    else:
        return pool_integer(layer, args[0])
    return requantize(acc, layer.multiplier, layer.shift, layer.output.zero_point,
                      layer.clamp_lo, layer.clamp_hi, layer.rounding,
                      getattr(layer, "negative_multiplier", None),
                      getattr(layer, "bias_fraction", None),
                      getattr(layer, "negative_fraction", None))


def run_integer(qgraph, codes, *, keep=False):
    """Bit-exact integer inference of ``qgraph`` on input codes ``(N, in_features)`` (images
    flattened in HWC order, as they stream).

    Returns the output codes ``(N, out_features)`` as int64 (HWC order for image outputs), or
    with ``keep=True`` a dict of every layer's output codes (in their natural shapes).
    """
    codes = np.asarray(codes)
    if not np.issubdtype(codes.dtype, np.integer):
        raise HwgenError(f"integer inference takes integer codes, not {codes.dtype}; "
                         "quantize float inputs with QGraph.input_codes first")
    codes = codes.astype(np.int64)
    if codes.ndim != 2 or codes.shape[1] != qgraph.in_features:
        raise HwgenError(f"model {qgraph.name!r} takes codes of shape "
                         f"(N, {qgraph.in_features}), not {codes.shape}")
    lo, hi = qgraph.input.lo, qgraph.input.hi
    if codes.size and (codes.min() < lo or codes.max() > hi):
        raise HwgenError(f"input codes must lie in [{lo}, {hi}] ({qgraph.input}), "
                         f"not [{codes.min()}, {codes.max()}]")
    values = {qgraph.input_name: codes.reshape((len(codes),) + tuple(qgraph.input_shape))}
    for layer in qgraph.layers:
        values[layer.name] = _run_layer(layer, [values[name] for name in layer.inputs])
    if keep:
        return values
    out = values[qgraph.layers[-1].name]
    return out.reshape(len(out), -1)
