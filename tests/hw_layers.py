"""Quantized dense layers for the hardware tests: crafted directly (extreme widths and values)
or produced by the real quantizer."""

import numpy as np

from hwgen.graph import Graph
from hwgen.quantize import ActQuant, QDense, quantize
from hwgen.reference import Rounding, dense_accumulate, requantize


def crafted_layer(rng, in_features, out_features, *, weight_bits=8, act_bits=8,
                  act_signed=True, out_bits=8, out_signed=True, extreme=False, shifts=None,
                  multipliers=None, relu=False, rounding=Rounding.HALF_UP, name="fc"):
    """A :class:`QDense` with random (or, with ``extreme``, maximum-magnitude) weights and
    requantization parameters that put most outputs inside the clamp range (some outside)."""
    limit = (1 << (weight_bits - 1)) - 1
    shape = (out_features, in_features)
    if extreme:
        weight = rng.choice([-limit, limit], size=shape)
    else:
        weight = rng.integers(-limit, limit + 1, size=shape)
    source = ActQuant(1.0, 0, act_bits, act_signed)
    out_lo = -(1 << (out_bits - 1)) if out_signed else 0
    target = ActQuant(1.0, out_lo + (1 << out_bits) // 4, out_bits, out_signed)
    max_code = max(abs(source.lo), source.hi)
    # A typical |acc| of random weights and codes: a sum of in_features terms of random sign.
    typical = int(np.sqrt(in_features) * limit * max_code / 4) + 1
    bias = rng.integers(-typical, typical + 1, size=out_features)
    if multipliers is None:
        multipliers = rng.integers(1 << 15, 1 << 16, size=out_features)
    if shifts is None:
        # Scale typical · M to about half the output range, so a few outputs saturate.
        shift = max(typical.bit_length() + 16 - (out_bits - 1), 0)
        shifts = rng.integers(max(shift - 1, 0), shift + 2, size=out_features)
    return QDense(
        name=name, inputs=("input",), weight=weight.astype(np.int64), weight_bits=weight_bits,
        weight_scale=np.ones(out_features), bias=bias.astype(np.int64),
        multiplier=np.broadcast_to(np.asarray(multipliers, dtype=np.int64), out_features).copy(),
        shift=np.broadcast_to(np.asarray(shifts, dtype=np.int64), out_features).copy(),
        input=source, output=target,
        clamp_lo=max(target.zero_point, target.lo) if relu else target.lo,
        clamp_hi=target.hi, rounding=rounding)


def random_codes(rng, quant, frames, features, *, extreme=False):
    """Input codes of ``quant``; with ``extreme`` only its two end codes."""
    if extreme:
        return rng.choice([quant.lo, quant.hi], size=(frames, features))
    return rng.integers(quant.lo, quant.hi + 1, size=(frames, features))


def expected_codes(layer, codes):
    """The reference output of one dense layer."""
    acc = dense_accumulate(layer, codes)
    return requantize(acc, layer.multiplier, layer.shift, layer.output.zero_point,
                      layer.clamp_lo, layer.clamp_hi, layer.rounding)


def quantized_mlp(rng, sizes, bits="w8a8", *, output_bits=8, name="mlp"):
    """A quantized chain of dense (+ ReLU between) layers of ``sizes`` via the real quantizer."""
    graph = Graph(name)
    x = graph.input((sizes[0],))
    for index, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        x = graph.dense(x, rng.normal(size=(fan_out, fan_in)), rng.normal(size=fan_out),
                        name=f"fc{index + 1}")
        if index < len(sizes) - 2:
            x = graph.relu(x)
    calibration = rng.normal(size=(64, sizes[0]))
    return quantize(graph, calibration, bits, output_bits=output_bits)


def tiny_mlp_plan(rng, sizes, bits="w4a4", *, multipliers=2):
    """The plan of a small quantized ``sizes[0] → sizes[1] (ReLU) → sizes[2]`` MLP, as the
    board tests (bitstream, host) build it."""
    graph = Graph("tiny")
    x = graph.relu(graph.dense(graph.input((sizes[0],)), rng.normal(size=(sizes[1], sizes[0])),
                               name="fc0"))
    graph.dense(x, rng.normal(size=(sizes[2], sizes[1])), rng.normal(size=sizes[2]), name="fc1")
    from hwgen.plan import make_plan
    return make_plan(quantize(graph, rng.normal(size=(40, sizes[0])), bits),
                     multipliers=multipliers)
