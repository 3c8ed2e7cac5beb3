# amaranth: UnusedElaboratable=no
"""MacUnit in Amaranth's simulator: every output code against ``hwgen.reference``, under
random stalls, over widths and foldings; measured latency and cycles per frame."""

import numpy as np
import pytest

from hwgen.errors import HwgenError
from hwgen.hw.mac_unit import MacUnit
from hwgen.reference import Rounding
from hw_helpers import StreamDriver, StreamMonitor, beats_to_frames, frames_to_beats, run
from hw_layers import crafted_layer, expected_codes, quantized_mlp, random_codes


def _simulate(layer, pe, simd, codes, *, seed=0, gap=0.0, stall=0.0, multiplier="dsp", pack=1):
    rng = np.random.default_rng(seed)
    dut = MacUnit(layer, pe, simd, multiplier=multiplier, pack=pack)
    driver = StreamDriver(dut.i, frames_to_beats(codes, simd), rng=rng, gap=gap)
    monitor = StreamMonitor(dut.o, codes.shape[0] * layer.out_features // pe, rng=rng,
                            stall=stall)
    run(dut, driver, monitor)
    got = beats_to_frames(monitor.beats, layer.out_features)
    np.testing.assert_array_equal(got, expected_codes(layer, codes))
    return dut, driver, monitor


WIDTHS = [  # weight_bits, act_bits, act_signed
    (2, 2, False), (2, 2, True), (16, 16, True), (16, 16, False), (4, 8, False), (8, 3, True),
]


@pytest.mark.parametrize("weight_bits,act_bits,act_signed", WIDTHS)
@pytest.mark.parametrize("pe,simd", [(1, 1), (2, 3), (4, 6)])
def test_widths_and_stalls(weight_bits, act_bits, act_signed, pe, simd):
    rng = np.random.default_rng(weight_bits * 100 + act_bits)
    layer = crafted_layer(rng, 6, 4, weight_bits=weight_bits, act_bits=act_bits,
                          act_signed=act_signed, out_bits=act_bits,
                          out_signed=not act_signed, relu=act_signed)
    codes = random_codes(rng, layer.input, 4, 6)
    _simulate(layer, pe, simd, codes, seed=pe, gap=0.4, stall=0.4)


@pytest.mark.parametrize("rounding", [r for r in Rounding if r is not Rounding.FLOAT32_ORT])
@pytest.mark.parametrize("weight_bits,act_bits,act_signed", [(16, 16, True), (16, 16, False),
                                                             (2, 2, True)])
def test_extreme_accumulators(rounding, weight_bits, act_bits, act_signed):
    """Maximum-magnitude weights and end-of-range inputs reach the accumulator bound."""
    rng = np.random.default_rng(5)
    layer = crafted_layer(rng, 8, 4, weight_bits=weight_bits, act_bits=act_bits,
                          act_signed=act_signed, extreme=True, out_bits=16,
                          multipliers=[(1 << 16) - 1, 1 << 16, 1, 1 << 15],
                          shifts=[0, 20, 33, 45], rounding=rounding)
    codes = random_codes(rng, layer.input, 4, 8, extreme=True)
    codes[0] = layer.input.hi
    codes[1] = np.where(layer.weight[0] > 0, layer.input.lo, layer.input.hi)
    _simulate(layer, 2, 4, codes, seed=1, gap=0.3, stall=0.3)


FOLDINGS = [(1, 1), (1, 12), (6, 1), (6, 12), (2, 3), (3, 4), (2, 6)]


@pytest.mark.parametrize("pe,simd", FOLDINGS)
@pytest.mark.parametrize("gap,stall", [(0.3, 0.5), (0.0, 0.9)])
def test_foldings_of_a_quantized_layer(pe, simd, gap, stall):
    rng = np.random.default_rng(11)
    layer = quantized_mlp(rng, [12, 6], "w6a5").layers[0]
    codes = random_codes(rng, layer.input, 3, 12)
    _simulate(layer, pe, simd, codes, seed=pe * simd, gap=gap, stall=stall)


@pytest.mark.parametrize("pe,simd", FOLDINGS)
def test_latency_and_cycles_per_frame(pe, simd):
    """No stalls, frames back to back: frames leave every ``cycles_per_frame`` cycles and the
    first one ``latency`` cycles after its last input beat."""
    rng = np.random.default_rng(2)
    layer = crafted_layer(rng, 12, 6)
    frames = 4
    codes = random_codes(rng, layer.input, frames, 12)
    dut, driver, monitor = _simulate(layer, pe, simd, codes)
    in_beats, out_beats = 12 // simd, 6 // pe
    last_in = driver.times[in_beats - 1::in_beats]
    last_out = monitor.times[out_beats - 1::out_beats]
    assert dut.cycles_per_frame == in_beats * out_beats
    assert np.diff(last_out).tolist() == [dut.cycles_per_frame] * (frames - 1)
    assert last_out[0] - last_in[0] == dut.latency


# pack 4 of 6 PEs: a group of 4 and a short one of 2.
KINDS = [("lut", 1), ("dsp-packed", 2), ("dsp-packed", 3), ("dsp-packed", 4)]


@pytest.mark.parametrize("weight_bits,act_bits,act_signed", WIDTHS)
@pytest.mark.parametrize("multiplier,pack", KINDS)
def test_multiplier_kinds_widths_and_stalls(weight_bits, act_bits, act_signed, multiplier, pack):
    """Every kind is bit-exact at the extremes of both operands, under stalls."""
    rng = np.random.default_rng(weight_bits * 10 + act_bits + pack)
    layer = crafted_layer(rng, 6, 6, weight_bits=weight_bits, act_bits=act_bits,
                          act_signed=act_signed, extreme=True, out_bits=act_bits,
                          out_signed=not act_signed, relu=act_signed)
    codes = random_codes(rng, layer.input, 4, 6, extreme=True)
    codes[0] = layer.input.hi
    codes[1] = np.where(layer.weight[0] > 0, layer.input.lo, layer.input.hi)
    dut, _, _ = _simulate(layer, 6, 2, codes, seed=pack, gap=0.3, stall=0.4,
                          multiplier=multiplier, pack=pack)
    assert (dut.multiplier, dut.pack) == (multiplier, pack)


@pytest.mark.parametrize("multiplier,pack", [("dsp", 1)] + KINDS)
def test_latency_of_each_multiplier_kind(multiplier, pack):
    rng = np.random.default_rng(3)
    layer = crafted_layer(rng, 12, 6, weight_bits=4, act_bits=4)
    frames = 3
    codes = random_codes(rng, layer.input, frames, 12)
    dut, driver, monitor = _simulate(layer, 6, 4, codes, multiplier=multiplier, pack=pack)
    last_in = driver.times[2::3]
    last_out = monitor.times[0::1]
    assert np.diff(last_out).tolist() == [dut.cycles_per_frame] * (frames - 1)
    assert last_out[0] - last_in[0] == dut.latency
    assert dut.latency == MacUnit(layer, 6, 4).latency + (multiplier != "dsp")   # 4 × 4 bits


def test_illegal_packing_is_rejected():
    layer = crafted_layer(np.random.default_rng(0), 12, 6)
    with pytest.raises(HwgenError, match=r"2 ≤ pack ≤ pe=3 products .*, not 4"):
        MacUnit(layer, 3, 4, multiplier="dsp-packed", pack=4)
    with pytest.raises(HwgenError, match=r"2 ≤ pack ≤ pe=3 products .*, not 1"):
        MacUnit(layer, 3, 4, multiplier="dsp-packed", pack=1)
    with pytest.raises(HwgenError, match=r"multiplier kind must be one of"):
        MacUnit(layer, 3, 4, multiplier="dsp48")
    with pytest.raises(HwgenError, match=r"only dsp-packed multipliers pack"):
        MacUnit(layer, 6, 4, multiplier="lut", pack=2)


def test_next_frame_is_accepted_while_computing():
    """Double buffering: the whole second frame goes in while the first is computed."""
    rng = np.random.default_rng(4)
    layer = crafted_layer(rng, 4, 8)
    codes = random_codes(rng, layer.input, 3, 4)
    dut, driver, monitor = _simulate(layer, 1, 2, codes)
    assert dut.buffered
    assert driver.times[:4] == [0, 1, 2, 3]
    assert driver.times[3] < monitor.times[0]


def test_illegal_folding_names_legal_values():
    layer = crafted_layer(np.random.default_rng(0), 12, 6)
    with pytest.raises(HwgenError, match=r"pe=4 must divide out_features=6 \(legal pe: 1, 2, 3, "
                                         r"6\).*simd=5 .*legal simd: 1, 2, 3, 4, 6, 12"):
        MacUnit(layer, 4, 5)
