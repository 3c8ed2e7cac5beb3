# amaranth: UnusedElaboratable=no
"""StreamFork and StreamFifo in Amaranth's simulator: order, capacity, latency, throughput."""

import numpy as np
import pytest
from amaranth.hdl import signed

from hwgen.hw.fifo import StreamFifo, StreamFork
from hwgen.hw.stream import frame_layout
from hw_helpers import StreamDriver, StreamMonitor, beats_to_frames, frames_to_beats, run

LAYOUT = frame_layout(signed(7), 3)


def _frames(rng, frames=4, length=12):
    return rng.integers(-64, 64, size=(frames, length))


@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.parametrize("gap,stalls", [(0.0, (0.0, 0.0, 0.0)), (0.3, (0.6, 0.0, 0.3)),
                                        (0.0, (0.0, 0.9, 0.5)), (0.5, (0.5, 0.5, 0.5))])
def test_fork_copies_every_beat(count, gap, stalls):
    rng = np.random.default_rng(count)
    frames = _frames(rng)
    dut = StreamFork(LAYOUT, count)
    driver = StreamDriver(dut.i, frames_to_beats(frames, 3), rng=rng, gap=gap)
    monitors = [StreamMonitor(port, frames.size // 3, rng=rng, stall=stall)
                for port, stall in zip(dut.outputs, stalls)]
    run(dut, driver, *monitors)
    for monitor in monitors:
        np.testing.assert_array_equal(beats_to_frames(monitor.beats, 12), frames)
    if gap == 0 and not any(stalls[:count]):
        assert driver.times == list(range(len(driver.times)))
        for monitor in monitors:
            assert monitor.times == driver.times  # latency 0


def test_fork_does_not_retake_for_the_fast_output():
    """A slow output must not hold the fast one back more than one beat: the fast output takes
    each beat exactly once, in the first cycle it is offered."""
    rng = np.random.default_rng(5)
    frames = _frames(rng, frames=2)
    dut = StreamFork(LAYOUT, 2)
    driver = StreamDriver(dut.i, frames_to_beats(frames, 3))
    fast = StreamMonitor(dut.o0, frames.size // 3)
    slow = StreamMonitor(dut.o1, frames.size // 3, rng=rng, stall=0.7)
    run(dut, driver, fast, slow)
    np.testing.assert_array_equal(beats_to_frames(fast.beats, 12), frames)
    np.testing.assert_array_equal(beats_to_frames(slow.beats, 12), frames)
    # The input moves when the slow side takes a beat; the fast side took it no later.
    assert driver.times == slow.times
    assert all(f <= s for f, s in zip(fast.times, slow.times))
    assert fast.times[0] == 0 and fast.times[1:] == [s + 1 for s in slow.times[:-1]]


@pytest.mark.parametrize("depth", [0, 1, 2, 3, 7, 16])
@pytest.mark.parametrize("gap,stall", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.6), (0.5, 0.5),
                                       (0.1, 0.9)])
def test_fifo_keeps_order(depth, gap, stall):
    rng = np.random.default_rng(depth)
    frames = _frames(rng, frames=6)
    dut = StreamFifo(LAYOUT, depth)
    driver = StreamDriver(dut.i, frames_to_beats(frames, 3), rng=rng, gap=gap)
    monitor = StreamMonitor(dut.o, frames.size // 3, rng=rng, stall=stall)
    run(dut, driver, monitor)
    np.testing.assert_array_equal(beats_to_frames(monitor.beats, 12), frames)


@pytest.mark.parametrize("depth", [0, 2, 3, 8])
def test_fifo_latency_and_throughput(depth):
    rng = np.random.default_rng(1)
    frames = _frames(rng, frames=3)
    dut = StreamFifo(LAYOUT, depth)
    driver = StreamDriver(dut.i, frames_to_beats(frames, 3))
    monitor = StreamMonitor(dut.o, frames.size // 3)
    run(dut, driver, monitor)
    assert driver.times == list(range(len(driver.times)))
    assert [t - s for s, t in zip(driver.times, monitor.times)] == [dut.latency] * len(
        driver.times)


@pytest.mark.parametrize("depth", [1, 2, 5, 16])
def test_fifo_fill_and_drain(depth):
    """With ``o`` held off, the FIFO accepts exactly ``depth`` beats back to back, reports its
    level, then drains them in order one per cycle and accepts again."""
    rng = np.random.default_rng(depth)
    beats = frames_to_beats(rng.integers(-64, 64, size=(1, 3 * (depth + 4))), 3)
    dut = StreamFifo(LAYOUT, depth)
    record = {}

    async def testbench(ctx):
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i.valid, 1)
        accepted = 0
        for cycle in range(depth + 5):
            ctx.set(dut.i.payload, beats[accepted])
            _, _, ready, level = await ctx.tick().sample(dut.i.ready, dut.level)
            assert level == min(cycle, depth)
            accepted += ready
        assert accepted == depth
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 1)
        drained = []
        for cycle in range(depth):
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            assert valid
            drained.append({"data": list(payload.data), "last": bool(payload.last)})
        assert drained == beats[:depth]
        _, _, valid, level = await ctx.tick().sample(dut.o.valid, dut.level)
        assert not valid and level == 0
        record["done"] = True

    run(dut, testbench)
    assert record["done"]


@pytest.mark.parametrize("bad", [-1, 1.5])
def test_fifo_rejects_bad_depth(bad):
    with pytest.raises((ValueError, TypeError)):
        StreamFifo(LAYOUT, bad)


def test_fork_rejects_bad_count():
    with pytest.raises(ValueError, match="count must be a positive integer"):
        StreamFork(LAYOUT, 0)
