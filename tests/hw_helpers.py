"""Shared testbench pieces for the Amaranth-simulator tests of ``hwgen.hw``: a stream driver
and a stream monitor with seeded random stalls that time-stamp every transfer, and frame ↔ beat
conversion.

Both sides sample ``valid``/``ready`` at the clock edge (``ctx.tick().sample``), so a transfer
is recorded exactly when the hardware sees one, even with combinational ready paths.
"""

import numpy as np
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator


def frames_to_beats(frames, lanes):
    """``[{"data": [...], "last": bool}]`` for a ``(N, length)`` array of codes."""
    beats = []
    for frame in np.asarray(frames):
        chunks = frame.reshape(-1, lanes)
        for index, chunk in enumerate(chunks):
            beats.append({"data": [int(v) for v in chunk], "last": index == len(chunks) - 1})
    return beats


def beats_to_frames(beats, length):
    """The ``(N, length)`` int64 array of codes carried by ``beats``; checks ``last``."""
    codes = [v for beat in beats for v in beat["data"]]
    lanes = len(beats[0]["data"])
    lasts = [beat["last"] for beat in beats]
    per_frame = length // lanes
    expected = [(index + 1) % per_frame == 0 for index in range(len(beats))]
    assert lasts == expected, f"last flags {lasts} != {expected}"
    return np.array(codes, dtype=np.int64).reshape(-1, length)


class StreamDriver:
    """Offers ``beats`` on ``port`` (anything with ``valid``, ``ready``, ``payload``), inserting
    a gap before a beat with probability ``gap``, and offering beat ``k`` no earlier than cycle
    ``k · interval``. ``times[k]`` is the cycle beat ``k`` moved."""

    def __init__(self, port, beats, *, rng=None, gap=0.0, interval=0):
        self.port, self.beats, self.rng, self.gap = port, list(beats), rng, gap
        self.interval = interval
        self.times = []

    async def testbench(self, ctx):
        cycle = 0
        for index, beat in enumerate(self.beats):
            while (cycle < index * self.interval
                   or self.rng is not None and self.rng.random() < self.gap):
                ctx.set(self.port.valid, 0)
                await ctx.tick()
                cycle += 1
            ctx.set(self.port.payload, beat)
            ctx.set(self.port.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(self.port.ready)
                cycle += 1
                if ready:
                    break
            self.times.append(cycle - 1)
        ctx.set(self.port.valid, 0)


class StreamMonitor:
    """Takes ``count`` beats from ``port``, dropping ``ready`` in a cycle with probability
    ``stall``; ``beats`` holds what arrived (as decoded by ``decode``), ``times`` when."""

    def __init__(self, port, count, *, rng=None, stall=0.0, decode=None, timeout=100_000):
        self.port, self.count, self.rng, self.stall = port, count, rng, stall
        self.decode = decode or (lambda p: {"data": list(p.data), "last": bool(p.last)})
        self.timeout = timeout
        self.beats, self.times = [], []

    async def testbench(self, ctx):
        cycle = 0
        while len(self.beats) < self.count:
            stalled = self.rng is not None and self.rng.random() < self.stall
            ctx.set(self.port.ready, not stalled)
            _, _, valid, ready, payload = await ctx.tick().sample(
                self.port.valid, self.port.ready, self.port.payload)
            if valid and ready:
                self.beats.append(self.decode(payload))
                self.times.append(cycle)
            cycle += 1
            assert cycle < self.timeout, f"only {len(self.beats)} of {self.count} beats arrived"
        ctx.set(self.port.ready, 0)


def run(dut, *testbenches):
    """Simulate ``dut`` until every testbench (an async function, or a driver or monitor) has
    finished."""
    top = Module()  # declares the sync domain, which a purely combinational dut lacks
    top.domains.sync = ClockDomain()
    top.submodules.dut = dut
    sim = Simulator(top)
    sim.add_clock(1e-8)
    for testbench in testbenches:
        sim.add_testbench(getattr(testbench, "testbench", testbench))
    sim.run()


def ecp5_primitives(plan):
    """``MULT18X18D`` primitives an accelerator built for target ``"ecp5"`` instantiates: one per
    engine product, and per requant lane one for the low partial product plus one for the high
    part when that is at least 2 bits wide (a 1-bit one stays in LUTs; see hwgen.hw.requant)."""
    from hwgen.hw.requant import _LOW_BITS, _signed_bits
    count = plan.multipliers
    for layer_plan in plan.layers:
        if layer_plan.engine not in ("mac", "systolic", "depthwise"):
            continue
        layer = layer_plan.layer
        sum_bits = max(layer.acc_bits, _signed_bits(layer.bias)) + 1
        high_bits = sum_bits - min(_LOW_BITS, sum_bits - 1)
        count += layer_plan.pe * (1 + (high_bits >= 2))
    return count
