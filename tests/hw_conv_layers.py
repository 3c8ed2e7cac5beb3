"""Quantized convolution layers for the hardware tests, crafted directly, and their reference
outputs computed from :func:`hwgen.reference.windows` and :func:`hwgen.reference.requantize`
(independently of the hardware code)."""

import numpy as np

from hwgen.qgraph import ActQuant, QConv
from hwgen.reference import Rounding, requantize, windows


def out_size(size, kernel, stride, before, after):
    return (size + before + after - kernel) // stride + 1


def crafted_conv(rng, in_shape, out_channels, kernel, *, stride=(1, 1), pads=(0, 0, 0, 0),
                 depthwise=False, weight_bits=8, act_bits=8, act_signed=True, out_bits=8,
                 out_signed=True, relu=False, zero_point=None, rounding=Rounding.HALF_UP,
                 name="conv"):
    """A :class:`QConv` with random narrow-range weights, a random bias and requantization
    parameters that put most outputs inside the clamp range (some outside)."""
    height, width, channels = in_shape
    kh, kw = kernel
    if depthwise:
        out_channels = channels
    per_group = 1 if depthwise else channels
    limit = (1 << (weight_bits - 1)) - 1
    weight = rng.integers(-limit, limit + 1, size=(out_channels, kh, kw, per_group))
    source_lo = -(1 << (act_bits - 1)) if act_signed else 0
    if zero_point is None:
        zero_point = int(rng.integers(source_lo, source_lo + (1 << act_bits)))
    source = ActQuant(1.0, zero_point, act_bits, act_signed)
    out_lo = -(1 << (out_bits - 1)) if out_signed else 0
    target = ActQuant(1.0, out_lo + (1 << out_bits) // 4, out_bits, out_signed)
    window = kh * kw * per_group
    max_code = max(abs(source.lo), source.hi)
    typical = int(np.sqrt(window) * limit * max_code / 4) + 1
    bias = rng.integers(-typical, typical + 1, size=out_channels)
    multipliers = rng.integers(1 << 15, 1 << 16, size=out_channels)
    shift = max(typical.bit_length() + 16 - (out_bits - 1), 0)
    shifts = rng.integers(max(shift - 1, 0), shift + 2, size=out_channels)
    top, left, bottom, right = pads
    out_shape = (out_size(height, kh, stride[0], top, bottom),
                 out_size(width, kw, stride[1], left, right), out_channels)
    return QConv(
        name=name, inputs=("input",), weight=weight.astype(np.int64), weight_bits=weight_bits,
        weight_scale=np.ones(out_channels), bias=bias.astype(np.int64),
        multiplier=multipliers.astype(np.int64), shift=shifts.astype(np.int64),
        input=source, output=target,
        clamp_lo=max(target.zero_point, target.lo) if relu else target.lo, clamp_hi=target.hi,
        stride=tuple(stride), pads=tuple(pads), groups=channels if depthwise else 1,
        in_shape=tuple(in_shape), out_shape=out_shape, rounding=rounding, relu=relu)


def random_images(rng, quant, frames, shape):
    return rng.integers(quant.lo, quant.hi + 1, size=(frames,) + tuple(shape))


def conv_accumulate(layer, images):
    """``bias + Σ w · window`` over windows padded with the input zero point: ``(N, OH, OW, O)``
    int64."""
    patches = windows(np.asarray(images, dtype=np.int64), layer.kernel, layer.stride,
                      layer.pads, layer.input.zero_point)
    if layer.groups > 1:
        acc = np.einsum("nyxhwc,chw->nyxc", patches, layer.weight[..., 0])
    else:
        acc = np.einsum("nyxhwc,ohwc->nyxo", patches, layer.weight)
    return acc + layer.bias


def expected_conv(layer, images):
    """Reference output codes, flattened per frame in HWC order: ``(N, OH·OW·O)``."""
    codes = requantize(conv_accumulate(layer, images), layer.multiplier, layer.shift,
                       layer.output.zero_point, layer.clamp_lo, layer.clamp_hi, layer.rounding)
    return codes.reshape(len(codes), -1)


def window_stream(images, kernel, stride, lanes, order):
    """The expected output of a sliding window (no padding), flattened per frame:
    ``"conv"`` (ky, kx, c) per pixel; ``"depthwise"`` (group, ky, kx, lane)."""
    patches = windows(np.asarray(images), kernel, stride, (0, 0, 0, 0), 0)
    frames, out_height, out_width, kh, kw, channels = patches.shape
    if order == "depthwise":
        patches = patches.reshape(frames, out_height, out_width, kh, kw, channels // lanes,
                                  lanes).transpose(0, 1, 2, 5, 3, 4, 6)
    return patches.reshape(frames, -1)


def frame_periods(times, beats_per_frame):
    """Cycles between the last beats of consecutive frames."""
    return np.diff(times[beats_per_frame - 1::beats_per_frame]).tolist()
