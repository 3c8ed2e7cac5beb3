# amaranth: UnusedElaboratable=no
"""StreamRegister and LaneConverter in Amaranth's simulator: order, ``last``, stalls, timing."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hwgen.hw.stream import LaneConverter, StreamRegister, frame_layout
from hw_helpers import StreamDriver, StreamMonitor, beats_to_frames, frames_to_beats, run


def _random_frames(rng, shape, frames, length):
    lo, hi = (-(1 << (shape.width - 1)), 1 << (shape.width - 1)) if shape.signed else \
        (0, 1 << shape.width)
    return rng.integers(lo, hi, size=(frames, length))


def _stream(dut, frames, in_lanes, out_lanes, *, seed=None, gap=0.0, stall=0.0):
    rng = np.random.default_rng(seed) if seed is not None else None
    beats = frames_to_beats(frames, in_lanes)
    driver = StreamDriver(dut.i, beats, rng=rng, gap=gap)
    monitor = StreamMonitor(dut.o, frames.size // out_lanes, rng=rng, stall=stall)
    run(dut, driver, monitor)
    return driver, monitor


@pytest.mark.parametrize("shape", [signed(2), unsigned(16), signed(16)])
@pytest.mark.parametrize("gap,stall", [(0.0, 0.0), (0.4, 0.4), (0.0, 0.7)])
def test_register_passes_beats_in_order(shape, gap, stall):
    rng = np.random.default_rng(1)
    frames = _random_frames(rng, shape, 5, 6)
    dut = StreamRegister(frame_layout(shape, 3))
    driver, monitor = _stream(dut, frames, 3, 3, seed=2, gap=gap, stall=stall)
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, 6), frames)


def test_register_timing():
    frames = np.arange(40).reshape(4, 10)
    dut = StreamRegister(frame_layout(unsigned(8), 2))
    driver, monitor = _stream(dut, frames, 2, 2)
    assert np.diff(driver.times).tolist() == [1] * (len(driver.times) - 1)
    assert [t - s for s, t in zip(driver.times, monitor.times)] == [dut.latency] * 20


def test_register_ready_is_registered():
    # Back-pressure reaches i.ready only one cycle later: the skid register takes that beat.
    from amaranth.sim import Simulator
    dut = StreamRegister(frame_layout(unsigned(4), 1))
    seen = []

    async def testbench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        ctx.set(dut.o.ready, 0)
        seen.append(ctx.get(dut.i.ready))
        await ctx.tick()
        seen.append(ctx.get(dut.i.ready))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert seen == [1, 0]


LANE_PAIRS = [(4, 4), (4, 2), (2, 4), (6, 4), (4, 6), (3, 1), (1, 3), (6, 9), (1, 1)]


@pytest.mark.parametrize("in_lanes,out_lanes", LANE_PAIRS)
@pytest.mark.parametrize("gap,stall", [(0.0, 0.0), (0.5, 0.5)])
def test_converter_keeps_frames(in_lanes, out_lanes, gap, stall):
    length = np.lcm(in_lanes, out_lanes) * 2
    shape = signed(5)
    frames = _random_frames(np.random.default_rng(in_lanes * 10 + out_lanes), shape, 4, length)
    dut = LaneConverter(shape, in_lanes, out_lanes, length)
    driver, monitor = _stream(dut, frames, in_lanes, out_lanes, seed=3, gap=gap, stall=stall)
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, length), frames)


@pytest.mark.parametrize("in_lanes,out_lanes", LANE_PAIRS)
def test_converter_timing(in_lanes, out_lanes):
    """Without stalls the narrower side moves a beat every cycle, and the last beat of a frame
    leaves ``latency`` cycles after the last one came in."""
    length = np.lcm(in_lanes, out_lanes) * 2
    frames = _random_frames(np.random.default_rng(0), unsigned(3), 3, length)
    dut = LaneConverter(unsigned(3), in_lanes, out_lanes, length)
    driver, monitor = _stream(dut, frames, in_lanes, out_lanes)
    narrow = monitor.times if out_lanes <= in_lanes else driver.times
    assert np.diff(narrow).tolist() == [1] * (len(narrow) - 1)
    per_frame_in, per_frame_out = length // in_lanes, length // out_lanes
    first_frame_in = driver.times[per_frame_in - 1]
    assert monitor.times[per_frame_out - 1] - first_frame_in == dut.latency


@pytest.mark.parametrize("in_lanes,out_lanes,interval", [(4, 1, 2), (8, 1, 1), (6, 4, 1),
                                                         (2, 3, 1), (5, 2, 3)])
def test_paced_converter_never_stalls_its_input(in_lanes, out_lanes, interval):
    """Sized for input beats every ``interval`` cycles, the converter takes each on arrival."""
    length = np.lcm(in_lanes, out_lanes) * 2
    frames = _random_frames(np.random.default_rng(0), signed(4), 1, length)
    dut = LaneConverter(signed(4), in_lanes, out_lanes, length, in_interval=interval)
    driver = StreamDriver(dut.i, frames_to_beats(frames, in_lanes), interval=interval)
    monitor = StreamMonitor(dut.o, length // out_lanes)
    run(dut, driver, monitor)
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, length), frames)
    assert driver.times == [k * interval for k in range(length // in_lanes)]
    assert monitor.times[-1] - driver.times[-1] == dut.latency


def test_converter_rejects_lanes_that_do_not_divide_the_frame():
    with pytest.raises(ValueError, match="must divide frame_length 6"):
        LaneConverter(unsigned(4), 4, 2, 6)
