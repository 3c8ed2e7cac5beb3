# amaranth: UnusedElaboratable=no
"""TableUnit and ArgMaxUnit in Amaranth's simulator, against numpy (table lookups computed here
from the table array, argmax by numpy's first-maximum rule)."""

import numpy as np
import pytest

from hwgen.errors import HwgenError
from hwgen.hw.table import ArgMaxUnit, TableUnit
from hwgen.qgraph import ActQuant, QArgMax, QTable, argmax_quant
from hw_helpers import StreamDriver, StreamMonitor, beats_to_frames, frames_to_beats, run


def _quant(bits, is_signed, zero_point=0):
    return ActQuant(scale=1.0, zero_point=zero_point, bits=bits, signed=is_signed)


def _table_layer(source, output, shape, seed):
    """A table of random output codes (not a monotonic function: every entry matters)."""
    rng = np.random.default_rng(seed)
    table = rng.integers(output.lo, output.hi + 1, size=1 << source.bits)
    return QTable(name="act", inputs=("x",), shape=shape, function="sigmoid", params=(),
                  table=table, input=source, output=output, clamp_lo=output.lo,
                  clamp_hi=output.hi)


def _check_table(layer, lanes, *, seed=0, frames=3, gap=0.3, stall=0.3):
    rng = np.random.default_rng(seed)
    length = int(np.prod(layer.shape))
    codes = rng.integers(layer.input.lo, layer.input.hi + 1, size=(frames, length))
    codes[0, :2] = [layer.input.lo, layer.input.hi]
    dut = TableUnit(layer, lanes)
    driver = StreamDriver(dut.i, frames_to_beats(codes, lanes), rng=rng, gap=gap)
    monitor = StreamMonitor(dut.o, codes.size // lanes, rng=rng, stall=stall)
    run(dut, driver, monitor)
    want = layer.table[codes - layer.input.lo]
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, length), want)
    return driver, monitor, dut


@pytest.mark.parametrize("lanes", [1, 2, 4])
@pytest.mark.parametrize("in_bits,in_signed,out_bits,out_signed", [
    (8, True, 8, False), (8, False, 8, True), (2, True, 16, True), (12, True, 3, False),
    (5, False, 2, True)])
def test_table_matches_numpy_under_stalls(lanes, in_bits, in_signed, out_bits, out_signed):
    layer = _table_layer(_quant(in_bits, in_signed), _quant(out_bits, out_signed), (2, 1, 4),
                         seed=in_bits + lanes)
    _check_table(layer, lanes, seed=lanes)


def test_table_latency_and_throughput():
    layer = _table_layer(_quant(6, True), _quant(6, True), (3, 1, 4), seed=1)
    driver, monitor, dut = _check_table(layer, 2, gap=0.0, stall=0.0)
    assert np.diff(monitor.times).tolist() == [1] * (len(monitor.times) - 1)
    assert [t - s for s, t in zip(driver.times, monitor.times)] == [dut.latency] * len(
        driver.times)
    assert dut.cycles_per_frame == 6


def test_table_rejects_illegal_lanes():
    layer = _table_layer(_quant(4, True), _quant(4, True), (1, 1, 6), seed=0)
    with pytest.raises(HwgenError, match="lanes must divide its 6 channels"):
        TableUnit(layer, 4)


def _argmax_layer(source, classes):
    return QArgMax(name="cls", inputs=("x",), in_features=classes, input=source,
                   output=argmax_quant(classes))


def _check_argmax(layer, lanes, codes, *, seed=0, gap=0.3, stall=0.3):
    rng = np.random.default_rng(seed)
    dut = ArgMaxUnit(layer, lanes)
    driver = StreamDriver(dut.i, frames_to_beats(codes, lanes), rng=rng, gap=gap)
    monitor = StreamMonitor(dut.o, len(codes), rng=rng, stall=stall)
    run(dut, driver, monitor)
    got = beats_to_frames(monitor.beats, 1)[:, 0]
    np.testing.assert_array_equal(got, codes.argmax(axis=1))
    return driver, monitor, dut


@pytest.mark.parametrize("classes,lanes", [(10, 1), (10, 2), (10, 5), (10, 10), (12, 3),
                                           (7, 7), (2, 1)])
@pytest.mark.parametrize("bits,is_signed", [(8, True), (4, False), (16, True)])
def test_argmax_first_maximum_under_stalls(classes, lanes, bits, is_signed):
    quant = _quant(bits, is_signed)
    rng = np.random.default_rng(classes * lanes + bits)
    # Few distinct values, so ties (within a beat and across beats) are common.
    codes = rng.choice([quant.lo, quant.lo + 1, quant.hi - 1, quant.hi], size=(12, classes))
    codes[0] = quant.lo                        # all equal: index 0
    codes[1] = quant.hi                        # all equal at the top
    codes[2, -1] = quant.hi                    # the maximum at the last position
    codes[2, :-1] = quant.lo
    _check_argmax(_argmax_layer(quant, classes), lanes, codes, seed=lanes)


def test_argmax_latency():
    quant = _quant(8, True)
    codes = np.random.default_rng(0).integers(quant.lo, quant.hi + 1, size=(4, 12))
    driver, monitor, dut = _check_argmax(_argmax_layer(quant, 12), 3, codes, gap=0.0,
                                         stall=0.0)
    lasts = driver.times[dut.cycles_per_frame - 1::dut.cycles_per_frame]
    assert [t - s for s, t in zip(lasts, monitor.times)] == [dut.latency] * 4
    assert argmax_quant(12).bits == 4 and argmax_quant(2).bits == 2
