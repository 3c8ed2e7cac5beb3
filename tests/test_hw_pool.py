# amaranth: UnusedElaboratable=no
"""Pooling blocks in Amaranth's simulator, bit-exact against numpy models built on
``hwgen.reference.windows`` and ``hwgen.reference.requantize``."""

import dataclasses
from fractions import Fraction

import numpy as np
import pytest

from hwgen.errors import HwgenError
from hwgen.hw.pool import GlobalAvgPool, PoolLayer, PoolReduce
from hwgen.qgraph import ActQuant, QPool
from hwgen.quantize import scale_to_multiplier
from hwgen.reference import Rounding, average_float32_ort, requantize, windows
from hw_helpers import StreamDriver, StreamMonitor, beats_to_frames, frames_to_beats, run


def _out_shape(in_shape, kernel, stride, pads):
    height, width, channels = in_shape
    top, left, bottom, right = pads
    return ((height + top + bottom - kernel[0]) // stride[0] + 1,
            (width + left + right - kernel[1]) // stride[1] + 1, channels)


def _pool(kind, in_shape, kernel=(1, 1), stride=(1, 1), pads=(0, 0, 0, 0), *, bits=8,
          is_signed=True, zero_point=0, out_bits=8, out_signed=True, out_zero_point=0,
          multiplier=1, shift=0, rounding=Rounding.HALF_UP, clamp=None):
    source = ActQuant(1.0, zero_point, bits, is_signed)
    target = source if kind == "max" else ActQuant(0.5, out_zero_point, out_bits, out_signed)
    if kind == "global_avg":
        kernel, out_shape = tuple(in_shape[:2]), (1, 1, in_shape[2])
    else:
        out_shape = _out_shape(in_shape, kernel, stride, pads)
    lo, hi = clamp if clamp is not None else (target.lo, target.hi)
    return QPool(name="pool", inputs=("x",), kind=kind, kernel=kernel, stride=stride, pads=pads,
                 in_shape=in_shape, out_shape=out_shape, input=source, output=target,
                 multiplier=multiplier, shift=shift, clamp_lo=lo, clamp_hi=hi,
                 rounding=rounding)


def _images(rng, layer, frames):
    """Random codes ``(N, H, W, C)``; the first image holds both end codes."""
    quant = layer.input
    images = rng.integers(quant.lo, quant.hi + 1, size=(frames, *layer.in_shape))
    images[0, 0, 0, :] = quant.hi
    images[0, -1, -1, :] = quant.lo
    return images


def _expected(layer, images):
    """The numpy model of the pool layer: ``(N, OH·OW·C)``."""
    frames = len(images)
    if layer.kind == "global_avg":
        acc = (images - layer.input.zero_point).sum(axis=(1, 2))
    else:
        pad = layer.input.lo if layer.kind == "max" else layer.input.zero_point
        patches = windows(images, layer.kernel, layer.stride, layer.pads, pad)
        if layer.kind == "max":
            return patches.max(axis=(3, 4)).reshape(frames, -1)
        acc = (patches - layer.input.zero_point).sum(axis=(3, 4))
    return requantize(acc, layer.multiplier, layer.shift, layer.output.zero_point,
                      layer.clamp_lo, layer.clamp_hi, layer.rounding).reshape(frames, -1)


def _window_beats(layer, images, lanes):
    """The depthwise-order window stream a sliding-window unit delivers to PoolReduce."""
    pad = layer.input.lo if layer.kind == "max" else layer.input.zero_point
    patches = windows(images, layer.kernel, layer.stride, layer.pads, pad)
    frames, out_h, out_w, kernel_h, kernel_w, channels = patches.shape
    groups = channels // lanes
    # (N, OH, OW, G, kh, kw, lanes): groups outside the kernel positions.
    ordered = patches.reshape(frames, out_h, out_w, kernel_h, kernel_w, groups, lanes)
    ordered = ordered.transpose(0, 1, 2, 5, 3, 4, 6)
    return frames_to_beats(ordered.reshape(frames, -1), lanes)


def _average_params(rng, layer_window, bits, out_bits):
    """``M ∈ [2^15, 2^16)`` and ``n`` so that ``M/2^n ≈ 2^(out_bits − bits) / window`` × a
    little more, which saturates the extreme windows."""
    multiplier = int(rng.integers(1 << 15, 1 << 16))
    shift = 16 + max(int(layer_window - 1).bit_length(), 0) + bits - out_bits - 1
    return multiplier, max(shift, 0)


def _run_reduce(layer, lanes, *, seed=0, frames=2, gap=0.3, stall=0.3):
    rng = np.random.default_rng(seed)
    images = _images(rng, layer, frames)
    dut = PoolReduce(layer, lanes)
    beats = _window_beats(layer, images, lanes)
    want = _expected(layer, images)
    driver = StreamDriver(dut.i, beats, rng=rng, gap=gap)
    monitor = StreamMonitor(dut.o, want.size // lanes, rng=rng, stall=stall)
    run(dut, driver, monitor)
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, want.shape[1]), want)
    return driver, monitor, dut, want


GEOMETRIES = [  # in_shape, kernel, stride, pads (top, left, bottom, right)
    ((4, 6, 4), (2, 2), (2, 2), (0, 0, 0, 0)),   # LeNet
    ((4, 5, 4), (3, 3), (1, 1), (1, 1, 1, 1)),
    ((5, 4, 4), (3, 2), (2, 1), (0, 1, 2, 0)),   # asymmetric kernel, stride and padding
    ((3, 3, 4), (1, 1), (1, 1), (0, 0, 0, 0)),
    ((5, 5, 4), (3, 3), (2, 2), (1, 1, 0, 0)),
]
CODES = [(2, True, 0), (8, False, 37), (16, True, -300), (5, False, 0)]
# Each rounding mode twice, over the code ranges.
_HALF_UP, _HALF_EVEN, _FLOOR = Rounding.HALF_UP, Rounding.HALF_EVEN, Rounding.FLOOR
ROUNDED_CODES = [(*code, rounding) for code, rounding in zip(
    CODES + CODES[:2], [_HALF_UP, _FLOOR, _HALF_EVEN, _FLOOR, _HALF_EVEN, _HALF_UP])]


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("lanes", [1, 2, 4])
@pytest.mark.parametrize("bits,is_signed,zero_point", CODES)
def test_max_reduce_matches_reference(geometry, lanes, bits, is_signed, zero_point):
    in_shape, kernel, stride, pads = geometry
    layer = _pool("max", in_shape, kernel, stride, pads, bits=bits, is_signed=is_signed,
                  zero_point=zero_point)
    _run_reduce(layer, lanes, seed=lanes + bits)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("lanes", [1, 4])
@pytest.mark.parametrize("bits,is_signed,zero_point,rounding", ROUNDED_CODES)
def test_avg_reduce_matches_reference(geometry, lanes, bits, is_signed, zero_point, rounding):
    in_shape, kernel, stride, pads = geometry
    rng = np.random.default_rng(bits)
    out_bits, out_signed = (bits, not is_signed) if bits < 16 else (12, True)
    multiplier, shift = _average_params(rng, kernel[0] * kernel[1], bits, out_bits)
    out_zero_point = 1 if out_signed else 3
    layer = _pool("avg", in_shape, kernel, stride, pads, bits=bits, is_signed=is_signed,
                  zero_point=zero_point, out_bits=out_bits, out_signed=out_signed,
                  out_zero_point=out_zero_point, multiplier=multiplier, shift=shift,
                  rounding=rounding)
    _run_reduce(layer, lanes, seed=lanes + bits)


@pytest.mark.parametrize("rounding", [r for r in Rounding if r is not Rounding.FLOAT32_ORT])
@pytest.mark.parametrize("multiplier,shift,clamp", [(1, 0, None), (3, 1, (0, 100)),
                                                    (5, 2, None), ((1 << 16) - 1, 62, None)])
def test_avg_reduce_small_multipliers_and_saturation(rounding, multiplier, shift, clamp):
    """``M/2^n`` far from 1/window: both clamp ends are hit (or, shift 62, nothing survives)."""
    layer = _pool("avg", (4, 4, 2), (2, 2), (1, 1), (1, 0, 0, 1), bits=8, is_signed=True,
                  zero_point=-3, out_bits=8, out_signed=False, out_zero_point=40,
                  multiplier=multiplier, shift=shift, rounding=rounding, clamp=clamp)
    *_, want = _run_reduce(layer, 2, seed=shift)
    if shift < 62:
        assert want.min() == layer.clamp_lo and want.max() == layer.clamp_hi


@pytest.mark.parametrize("kind,rounding", [("max", _HALF_UP), ("avg", _HALF_UP),
                                            ("avg", _HALF_EVEN)])
def test_reduce_latency_and_throughput(kind, rounding):
    layer = _pool(kind, (4, 6, 4), (2, 2), (2, 2), multiplier=40000, shift=17,
                  rounding=rounding)
    driver, monitor, dut, want = _run_reduce(layer, 2, frames=3, gap=0.0, stall=0.0)
    window = layer.kernel[0] * layer.kernel[1]
    assert driver.times == list(range(len(driver.times)))  # never stalls the input
    assert [t - s for s, t in zip(driver.times[window - 1::window], monitor.times)] == [
        dut.latency] * len(monitor.times)
    per_frame = want.shape[1] // 2
    starts = driver.times[::dut.cycles_per_frame]
    assert len(starts) == 3 and np.diff(starts).tolist() == [dut.cycles_per_frame] * 2
    assert monitor.times[per_frame] - monitor.times[0] == dut.cycles_per_frame


def _run_global(layer, lanes, *, seed=0, frames=3, gap=0.3, stall=0.3):
    rng = np.random.default_rng(seed)
    images = _images(rng, layer, frames)
    dut = GlobalAvgPool(layer, lanes)
    want = _expected(layer, images)
    driver = StreamDriver(dut.i, frames_to_beats(images.reshape(frames, -1), lanes), rng=rng,
                          gap=gap)
    monitor = StreamMonitor(dut.o, want.size // lanes, rng=rng, stall=stall)
    run(dut, driver, monitor)
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, want.shape[1]), want)
    return driver, monitor, dut, want


@pytest.mark.parametrize("in_shape", [(3, 4, 6), (1, 1, 6), (7, 7, 6)])
@pytest.mark.parametrize("lanes", [1, 2, 6])
@pytest.mark.parametrize("bits,is_signed,zero_point,rounding", ROUNDED_CODES)
def test_global_avg_matches_reference(in_shape, lanes, bits, is_signed, zero_point, rounding):
    rng = np.random.default_rng(bits + lanes)
    out_bits, out_signed = (bits, not is_signed) if bits < 16 else (12, True)
    multiplier, shift = _average_params(rng, in_shape[0] * in_shape[1], bits, out_bits)
    layer = _pool("global_avg", in_shape, bits=bits, is_signed=is_signed,
                  zero_point=zero_point, out_bits=out_bits, out_signed=out_signed,
                  out_zero_point=2 if out_signed else 0, multiplier=multiplier, shift=shift,
                  rounding=rounding)
    _run_global(layer, lanes, seed=lanes)


@pytest.mark.parametrize("gap,stall", [(0.0, 0.8), (0.8, 0.0), (0.5, 0.5)])
def test_global_avg_stalls_and_saturation(gap, stall):
    layer = _pool("global_avg", (2, 3, 4), bits=8, is_signed=False, zero_point=100,
                  out_bits=4, out_signed=True, out_zero_point=-1, multiplier=5, shift=3)
    *_, want = _run_global(layer, 2, seed=int(stall * 10), frames=5, gap=gap, stall=stall)
    assert want.min() == -8 and want.max() == 7


@pytest.mark.parametrize("lanes", [1, 3, 6])
def test_global_avg_latency_and_throughput(lanes):
    """Back-to-back frames without a bubble; each output beat 4 cycles after the last-pixel
    beat that completes it."""
    layer = _pool("global_avg", (3, 2, 6), multiplier=40000, shift=18)
    driver, monitor, dut, _ = _run_global(layer, lanes, frames=3, gap=0.0, stall=0.0)
    assert driver.times == list(range(len(driver.times)))
    cycles = dut.cycles_per_frame
    groups = 6 // lanes
    finals = [t for k, t in enumerate(driver.times) if k % cycles >= cycles - groups]
    assert [t - s for s, t in zip(finals, monitor.times)] == [dut.latency] * len(finals)
    assert monitor.times[groups] - monitor.times[0] == cycles


def _tie_pool(kind, pads=(0, 0, 0, 0)):
    """``M / 2^n = 1/4`` on 2×2 windows, input and output alike (as a QDQ ``AveragePool``
    imports): a quarter of the sums are ties, of both signs (zero point 5 of int6 codes)."""
    in_shape = (4, 4, 4) if kind != "global_avg" else (2, 2, 4)
    return _pool(kind, in_shape, (2, 2), (2, 2), pads, bits=6, is_signed=True, zero_point=5,
                 out_bits=6, out_signed=True, out_zero_point=5, multiplier=1, shift=2,
                 rounding=_HALF_EVEN)


def _assert_even_ties(layer, images, got):
    """``got`` rounds every tie of ``images`` to even (Python's ``round`` of the exact
    quarter), and the ties, of both signs, are many."""
    pad = layer.input.zero_point
    sums = (windows(images, layer.kernel, layer.stride, layer.pads, pad)
            - layer.input.zero_point).sum(axis=(3, 4)).reshape(len(images), -1)
    ties = sums % 4 == 2
    assert ties.mean() > 0.15 and (sums[ties] > 0).any() and (sums[ties] < 0).any()
    exact = np.vectorize(lambda total: round(Fraction(int(total), 4)))(sums)
    np.testing.assert_array_equal(got, np.clip(exact + 5, -32, 31))


@pytest.mark.parametrize("block", ["reduce", "global", "layer", "padded layer"])
def test_avg_half_even_ties(block):
    """The half-to-even requantization of the average pools, under random stalls."""
    frames = 4
    if block == "reduce":
        layer = _tie_pool("avg")
        _, monitor, _, want = _run_reduce(layer, 2, seed=1, frames=frames)
    elif block == "global":
        layer = _tie_pool("global_avg")
        _, monitor, _, want = _run_global(layer, 2, seed=1, frames=frames)
    else:
        layer = _tie_pool("avg", (1, 1, 1, 1) if block == "padded layer" else (0, 0, 0, 0))
        _, monitor, _ = _run_layer(layer, 2, seed=1, frames=frames)
    got = beats_to_frames(monitor.beats, int(np.prod(layer.out_shape)))
    _assert_even_ties(layer, _images(np.random.default_rng(1), layer, frames), got)


def test_pool_blocks_reject_bad_arguments():
    layer = _pool("max", (4, 4, 6), (2, 2), (2, 2))
    with pytest.raises(HwgenError, match=r"lanes must divide the 6 channels \(legal: 1, 2, 3, 6"):
        PoolReduce(layer, 4)
    with pytest.raises(HwgenError, match="GlobalAvgPool implements global_avg pooling"):
        GlobalAvgPool(layer, 2)
    with pytest.raises(HwgenError, match="PoolReduce implements max and avg pooling"):
        PoolReduce(_pool("global_avg", (4, 4, 6)), 2)


# -- the whole layer: PadUnit → SlidingWindow → PoolReduce ----------------------------------------

LAYER_GEOMETRIES = GEOMETRIES + [
    ((5, 7, 4), (2, 2), (2, 2), (0, 0, 0, 0)),   # odd sizes: the last row and column dropped
    ((6, 5, 4), (3, 3), (3, 2), (2, 0, 0, 1)),
]


def _run_layer(layer, lanes, *, seed=0, frames=2, gap=0.3, stall=0.3):
    rng = np.random.default_rng(seed)
    images = _images(rng, layer, frames)
    dut = PoolLayer(layer, lanes)
    want = _expected(layer, images)
    driver = StreamDriver(dut.i, frames_to_beats(images.reshape(frames, -1), lanes), rng=rng,
                          gap=gap)
    monitor = StreamMonitor(dut.o, want.size // lanes, rng=rng, stall=stall)
    run(dut, driver, monitor)
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, want.shape[1]), want)
    return driver, monitor, dut


@pytest.mark.parametrize("geometry", LAYER_GEOMETRIES)
@pytest.mark.parametrize("kind,lanes,bits,is_signed,zero_point,rounding", [
    ("max", 1, 8, True, 5, None), ("max", 4, 2, False, 1, None),
    ("avg", 2, 8, False, 37, Rounding.HALF_UP), ("avg", 4, 16, True, -300, Rounding.FLOOR),
])
def test_pool_layer_matches_reference(geometry, kind, lanes, bits, is_signed, zero_point,
                                      rounding):
    in_shape, kernel, stride, pads = geometry
    rng = np.random.default_rng(bits)
    params = {}
    if kind == "avg":
        multiplier, shift = _average_params(rng, kernel[0] * kernel[1], bits, 8)
        params = dict(out_bits=8, out_signed=True, out_zero_point=-2, multiplier=multiplier,
                      shift=shift, rounding=rounding)
    layer = _pool(kind, in_shape, kernel, stride, pads, bits=bits, is_signed=is_signed,
                  zero_point=zero_point, **params)
    _run_layer(layer, lanes, seed=lanes)


@pytest.mark.parametrize("geometry", LAYER_GEOMETRIES)
@pytest.mark.parametrize("kind,lanes", [("max", 2), ("avg", 4)])
def test_pool_layer_cycles_per_frame(geometry, kind, lanes):
    """Back-to-back frames, no stalls: frames leave ``cycles_per_frame`` apart."""
    in_shape, kernel, stride, pads = geometry
    layer = _pool(kind, in_shape, kernel, stride, pads, multiplier=40000, shift=18)
    driver, monitor, dut = _run_layer(layer, lanes, frames=4, gap=0.0, stall=0.0)
    per_frame = len(monitor.times) // 4
    ends = monitor.times[per_frame - 1::per_frame]
    assert np.diff(ends).tolist() == [dut.cycles_per_frame] * 3


def _last_needed_beat(layer, lanes):
    """The index (in beats of a frame) of the last input beat the frame's last window needs."""
    height, width, channels = layer.in_shape
    needed_row = (layer.out_shape[0] - 1) * layer.stride[0] + layer.kernel[0] - 1
    row = min(needed_row - layer.pads[0], height - 1)
    return (row + 1) * width * channels // lanes - 1


@pytest.mark.parametrize("geometry", LAYER_GEOMETRIES + [((6, 4, 2), (2, 2), (2, 2), (0, 0, 1, 0))])
@pytest.mark.parametrize("kind,lanes", [("max", 2), ("avg", 1)])
def test_pool_layer_latency(geometry, kind, lanes):
    """The last needed input beat, held back until everything before it has drained, takes
    ``latency`` cycles to the frame's last output beat."""
    in_shape, kernel, stride, pads = geometry
    layer = _pool(kind, in_shape, kernel, stride, pads, multiplier=40000, shift=18)
    rng = np.random.default_rng(2)
    images = _images(rng, layer, 1)
    dut = PoolLayer(layer, lanes)
    beats = frames_to_beats(images.reshape(1, -1), lanes)
    held = _last_needed_beat(layer, lanes)
    want = _expected(layer, images)
    driver = StreamDriver(dut.i, beats[:held])
    monitor = StreamMonitor(dut.o, want.size // lanes)
    sent = {}

    async def rest(ctx):
        cycle = 0
        while len(driver.times) < held or cycle < 1000 + (driver.times[-1] if held else 0):
            await ctx.tick()
            cycle += 1
        assert 0 < len(monitor.beats) < want.size // lanes  # drained up to the held beat
        for index, beat in enumerate(beats[held:]):
            ctx.set(dut.i.payload, beat)
            ctx.set(dut.i.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.i.ready)
                cycle += 1
                if ready:
                    break
            if index == 0:
                sent["time"] = cycle - 1
        ctx.set(dut.i.valid, 0)

    run(dut, driver, monitor, rest)
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, want.shape[1]), want)
    assert monitor.times[-1] - sent["time"] == dut.latency


@pytest.mark.parametrize("geometry", LAYER_GEOMETRIES)
def test_pool_layer_lead(geometry):
    """With only the first ``j + 1 + lead`` input elements delivered, every output whose window
    holds element ``j``'s pixel comes out."""
    in_shape, kernel, stride, pads = geometry
    layer = _pool("max", in_shape, kernel, stride, pads)
    lanes = 2
    height, width, channels = in_shape
    images = _images(np.random.default_rng(4), layer, 1)
    beats = frames_to_beats(images.reshape(1, -1), lanes)
    want = _expected(layer, images)
    out_h, out_w, _ = layer.out_shape
    # The number of output beats whose windows end no later than each output pixel.
    for y, x in [(0, 0), (height // 2, width - 1), (height - 2, 1), (height - 1, width - 1)]:
        # Output pixels whose (padded) window holds input pixel (y, x); the last of them in
        # raster order bounds the output beats that must have arrived.
        holding = [oy * out_w + ox for oy in range(out_h) for ox in range(out_w)
                   if 0 <= y + pads[0] - oy * stride[0] < kernel[0]
                   and 0 <= x + pads[1] - ox * stride[1] < kernel[1]]
        if not holding:
            continue
        dut = PoolLayer(layer, lanes)
        j = (y * width + x) * channels
        available = min(-(-(j + 1 + dut.lead) // lanes), len(beats))
        expected_beats = (max(holding) + 1) * channels // lanes
        driver = StreamDriver(dut.i, beats[:available])
        got = []

        async def collect(ctx, got=got, dut=dut):
            ctx.set(dut.o.ready, 1)
            for _ in range(2000):
                _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
                if valid:
                    got.extend(payload.data)

        run(dut, driver, collect)
        assert len(got) >= expected_beats * lanes, (y, x, available, len(got))
        np.testing.assert_array_equal(got[:expected_beats * lanes],
                                      want[0, :expected_beats * lanes])


def test_pool_layer_rejects_ceil_mode_shapes():
    layer = _pool("max", (5, 5, 2), (2, 2), (2, 2))
    ceil = QPool(**{**layer.__dict__, "out_shape": (3, 3, 2)})
    with pytest.raises(HwgenError, match=r"not the floor-mode shape \(2, 2, 2\)"):
        PoolLayer(ceil, 2)
    with pytest.raises(HwgenError, match="PoolLayer implements max and avg pooling"):
        PoolLayer(_pool("global_avg", (4, 4, 2)), 2)


# -- FLOAT32_ORT: onnxruntime's fused QLinearAveragePool in float32 --------------------------------

def _float32_pool(scale, zero_point, in_shape, kernel, stride, pads=(0, 0, 0, 0), *,
                  out_scale=None, out_zero_point=None, clamp=None):
    """A uint8 average pool with ``Rounding.FLOAT32_ORT``, its ``M/2^n`` from the float32
    scales as the importer makes it."""
    source = ActQuant(scale, zero_point, 8, False)
    target = ActQuant(scale if out_scale is None else out_scale,
                      zero_point if out_zero_point is None else out_zero_point, 8, False)
    ratio = np.float64(np.float32(source.scale)) / (np.float32(target.scale) * kernel[0]
                                                     * kernel[1])
    multiplier, shift = scale_to_multiplier(ratio)
    lo, hi = clamp if clamp is not None else (target.lo, target.hi)
    return QPool(name="pool", inputs=("x",), kind="avg", kernel=kernel, stride=stride, pads=pads,
                 in_shape=in_shape, out_shape=_out_shape(in_shape, kernel, stride, pads),
                 input=source, output=target, multiplier=int(multiplier), shift=int(shift),
                 clamp_lo=lo, clamp_hi=hi, rounding=Rounding.FLOAT32_ORT)


def _float32_images(rng, layer, frames):
    """Random codes, half of the frames drawn near the zero point, where the float sums of a
    ratio-1/N pool sit on exact ties most often and terms of both signs meet."""
    images = _images(rng, layer, frames)
    near = rng.integers(-6, 7, size=images[frames // 2:].shape) + layer.input.zero_point
    images[frames // 2:] = np.clip(near, layer.input.lo, layer.input.hi)
    return images


def _run_float32_reduce(layer, lanes, *, seed, frames, gap=0.3, stall=0.3):
    rng = np.random.default_rng(seed)
    images = _float32_images(rng, layer, frames)
    patches = windows(images, layer.kernel, layer.stride, layer.pads, layer.input.zero_point)
    want = average_float32_ort(layer, patches).reshape(frames, -1)
    dut = PoolReduce(layer, lanes)
    driver = StreamDriver(dut.i, _window_beats(layer, images, lanes), rng=rng, gap=gap)
    monitor = StreamMonitor(dut.o, want.size // lanes, rng=rng, stall=stall)
    run(dut, driver, monitor)
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, want.shape[1]), want)
    return driver, monitor, dut, want, patches


FLOAT32_CASES = [  # scale, zero point, geometry, output scale and zero point (None: the input's)
    (0.0218801, 0, GEOMETRIES[0], None, None),
    (0.1, 7, ((4, 4, 4), (2, 2), (1, 1), (0, 0, 0, 0)), None, None),
    (0.003, 128, GEOMETRIES[1], None, None),
    (1.7, 255, GEOMETRIES[2], None, None),
    (0.0218801, 7, ((5, 5, 2), (4, 4), (1, 1), (0, 0, 0, 0)), None, None),
    (0.0218801, 3, GEOMETRIES[4], 0.0113, 20),     # QOperator-like: an output scale of its own
]


@pytest.mark.parametrize("scale,zero_point,geometry,out_scale,out_zero_point", FLOAT32_CASES)
@pytest.mark.parametrize("lanes", [1, 2])
def test_float32_reduce_matches_reference(scale, zero_point, geometry, out_scale,
                                          out_zero_point, lanes):
    """Bit-exact with the numpy float32 model under random gaps and stalls; the frames near
    the zero point make many exact ties of the integer sum, which float32 moves either way."""
    layer = _float32_pool(scale, zero_point, *geometry, out_scale=out_scale,
                          out_zero_point=out_zero_point)
    *_, want, patches = _run_float32_reduce(layer, lanes, seed=lanes + zero_point, frames=8)
    if out_scale is None and layer.kernel == (2, 2):
        sums = (patches - zero_point).sum(axis=(3, 4)).reshape(want.shape)
        ties = sums % 4 == 2
        half_even = np.clip(np.round(sums / 4) + zero_point, 0, 255)
        # Float32 rounding moves ties off half to even, to both sides, and nothing else.
        assert ties.mean() > 0.1
        assert np.array_equal(want[~ties], half_even[~ties])
        assert (want[ties] > half_even[ties]).any() and (want[ties] < half_even[ties]).any()


def test_float32_reduce_every_window_of_a_small_range():
    """Every 2×2 window of codes 0…9 around zero point 5 (10⁴ windows, one channel each),
    and a clamp narrower than the code range."""
    codes = np.stack(np.meshgrid(*[np.arange(10)] * 4, indexing="ij"), -1).reshape(-1, 4)
    for scale, clamp in ((0.0218801, None), (0.37, (3, 9))):
        layer = _float32_pool(scale, 5, (2, 2, 1), (2, 2), (2, 2), clamp=clamp)
        images = codes.reshape(-1, 2, 2, 1)
        patches = windows(images, layer.kernel, layer.stride, layer.pads, 5)
        want = average_float32_ort(layer, patches).reshape(-1)
        dut = PoolReduce(layer, 1)
        rng = np.random.default_rng(4)
        driver = StreamDriver(dut.i, _window_beats(layer, images, 1), rng=rng, gap=0.1)
        monitor = StreamMonitor(dut.o, len(want), rng=rng, stall=0.1, timeout=10 ** 6)
        run(dut, driver, monitor)
        np.testing.assert_array_equal(beats_to_frames(monitor.beats, 1).reshape(-1), want)


@pytest.mark.parametrize("kernel", [(2, 2), (3, 3)])
def test_float32_reduce_latency_and_throughput(kernel):
    """``4·kh·kw + 7`` cycles from a window's last beat to its result, one beat per cycle."""
    layer = _float32_pool(0.0218801, 7, (6, 6, 4), kernel, kernel)
    driver, monitor, dut, want, _ = _run_float32_reduce(layer, 2, seed=1, frames=3, gap=0.0,
                                                        stall=0.0)
    window = kernel[0] * kernel[1]
    assert dut.latency == 4 * window + 7
    assert driver.times == list(range(len(driver.times)))
    assert [t - s for s, t in zip(driver.times[window - 1::window], monitor.times)] == [
        dut.latency] * len(monitor.times)


def test_float32_padded_layer_matches_reference():
    """The whole layer: pads hold the zero point, a float term of 0."""
    layer = _float32_pool(0.0218801, 7, (5, 5, 2), (2, 2), (2, 2), (1, 1, 1, 1))
    rng = np.random.default_rng(5)
    images = _float32_images(rng, layer, 4)
    want = average_float32_ort(layer, windows(images, layer.kernel, layer.stride, layer.pads,
                                              7)).reshape(4, -1)
    dut = PoolLayer(layer, 2)
    driver = StreamDriver(dut.i, frames_to_beats(images.reshape(4, -1), 2), rng=rng, gap=0.3)
    monitor = StreamMonitor(dut.o, want.size // 2, rng=rng, stall=0.3)
    run(dut, driver, monitor)
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, want.shape[1]), want)


def test_float32_global_pool_is_refused():
    layer = dataclasses.replace(_pool("global_avg", (2, 2, 4), bits=8, is_signed=False),
                                rounding=Rounding.FLOAT32_ORT)
    with pytest.raises(HwgenError, match="FLOAT32_ORT"):
        GlobalAvgPool(layer, 2)
