"""The UART bitstream's gateware in Amaranth's simulator (UART receiver and transmitter, the
byte ↔ code packing, the whole bridge around a stand-in accelerator), the errors of boards
without a bitstream flow and, marked slow, an iCEBreaker bitstream of a tiny MLP."""

import json
import re

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

import hwgen
from hwgen.board_top import (BitstreamResult, BoardTop, CodePacker, CodeUnpacker, UARTBridge,
                             UARTReceiver, UARTTransmitter, _faster, build_bitstream,
                             ice40_pll)
from hwgen.cli import main
from hwgen.errors import HwgenError
from hw_layers import tiny_mlp_plan


def _run(dut, testbench, *processes):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    for process in processes:
        sim.add_testbench(process, background=True)
    sim.run()


async def _send_serial(ctx, line, data, divisor, stop=1):
    """Drive ``line`` with 8N1 bytes (``stop=0`` makes a framing error)."""
    for byte in data:
        for level in [0, *((byte >> bit) & 1 for bit in range(8)), stop]:
            ctx.set(line, level)
            await ctx.tick().repeat(divisor)
        ctx.set(line, 1)
        await ctx.tick().repeat(divisor)


async def _receive_serial(ctx, line, count, divisor):
    """Decode ``count`` 8N1 bytes from ``line``, sampling each bit at its middle; returns
    (bytes, cycles from the first start edge to the last stop bit's middle)."""
    data, first = [], None
    cycle = 0
    while len(data) < count:
        while ctx.get(line):
            await ctx.tick()
            cycle += 1
        first = cycle if first is None else first
        await ctx.tick().repeat(divisor // 2)
        cycle += divisor // 2
        assert ctx.get(line) == 0
        byte = 0
        for bit in range(8):
            await ctx.tick().repeat(divisor)
            cycle += divisor
            byte |= ctx.get(line) << bit
        await ctx.tick().repeat(divisor)
        cycle += divisor
        assert ctx.get(line) == 1, "stop bit"
        data.append(byte)
    return data, cycle - first


def _codes_to_bytes(codes, bits):
    """The host's side of the protocol: each code little-endian in ceil(bits/8) bytes."""
    size = -(-bits // 8)
    return [byte for code in codes for byte in int(code).to_bytes(size, "little", signed=True)]


def _bytes_to_codes(data, bits):
    size = -(-bits // 8)
    return [int.from_bytes(bytes(data[i:i + size]), "little", signed=True)
            for i in range(0, len(data), size)]


@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_uart_transmitter_sends_8n1_bytes(divisor):
    dut = UARTTransmitter(divisor)
    data = [0x00, 0xFF, 0xA5, 0x3C, 0x81]
    received = []

    async def sender(ctx):
        for byte in data:
            ctx.set(dut.i.payload, byte)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def testbench(ctx):
        got, cycles = await _receive_serial(ctx, dut.tx, len(data), divisor)
        received.extend(got)
        # back to back: 10 bit times and a cycle per byte, to the middle of the last stop bit
        assert cycles == (10 * divisor + 1) * (len(data) - 1) + 9 * divisor + divisor // 2

    _run(dut, testbench, sender)
    assert received == data


@pytest.mark.parametrize("divisor", [4, 9, 16])
def test_uart_receiver_decodes_bytes_and_drops_framing_errors(divisor):
    dut = UARTReceiver(divisor)
    received = []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        await ctx.tick().repeat(3)
        await _send_serial(ctx, dut.rx, [0x12, 0xFE], divisor)
        await _send_serial(ctx, dut.rx, [0x55], divisor, stop=0)   # framing error: dropped
        await ctx.tick().repeat(2 * divisor)
        await _send_serial(ctx, dut.rx, [0x80, 0x01], divisor)
        await ctx.tick().repeat(4 * divisor)

    async def monitor(ctx):
        async for _, _, valid, payload in ctx.tick().sample(dut.o.valid, dut.o.payload):
            if valid:
                received.append(payload)

    _run(dut, testbench, monitor)
    assert received == [0x12, 0xFE, 0x80, 0x01]


@pytest.mark.parametrize("bits, lanes", [(4, 2), (8, 1), (3, 3), (12, 2)])
def test_code_packer_builds_beats_from_little_endian_bytes(bits, lanes):
    frame_beats = 3
    tdata_bits = -(-bits * lanes // 8) * 8
    dut = CodePacker(bits, lanes, frame_beats, tdata_bits)
    rng = np.random.default_rng(bits * 10 + lanes)
    codes = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=2 * frame_beats * lanes)
    data = _codes_to_bytes(codes, bits)
    beats = []

    async def sender(ctx):
        for byte in data:
            ctx.set(dut.i.payload, byte)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            for _ in range(int(rng.integers(0, 3))):   # gaps between bytes
                await ctx.tick()

    async def testbench(ctx):
        while len(beats) < len(codes) // lanes:
            ready = int(rng.random() < 0.5)
            ctx.set(dut.s_axis_tready, ready)
            await ctx.tick()

    async def monitor(ctx):
        async for _, _, valid, ready, tdata, tlast in ctx.tick().sample(
                dut.s_axis_tvalid, dut.s_axis_tready, dut.s_axis_tdata, dut.s_axis_tlast):
            if valid and ready:
                beats.append((tdata, tlast))

    _run(dut, testbench, sender, monitor)
    mask = (1 << bits) - 1
    expected = [sum((int(code) & mask) << (lane * bits)
                    for lane, code in enumerate(codes[beat * lanes:(beat + 1) * lanes]))
                for beat in range(len(codes) // lanes)]
    assert [tdata for tdata, _ in beats] == expected
    assert [tlast for _, tlast in beats] == [int(beat % frame_beats == frame_beats - 1)
                                           for beat in range(len(expected))]


@pytest.mark.parametrize("bits, lanes, signed", [(8, 1, True), (4, 2, True), (4, 2, False),
                                                 (10, 3, True)])
def test_code_unpacker_sends_codes_as_bytes(bits, lanes, signed):
    tdata_bits = -(-bits * lanes // 8) * 8
    dut = CodeUnpacker(bits, lanes, signed, tdata_bits)
    rng = np.random.default_rng(bits + lanes)
    low, high = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    codes = rng.integers(low, high, size=4 * lanes)
    received = []

    async def sender(ctx):
        mask = (1 << bits) - 1
        for beat in range(len(codes) // lanes):
            tdata = sum((int(code) & mask) << (lane * bits)
                        for lane, code in enumerate(codes[beat * lanes:(beat + 1) * lanes]))
            ctx.set(dut.m_axis_tdata, tdata)
            ctx.set(dut.m_axis_tvalid, 1)
            await ctx.tick().until(dut.m_axis_tready)
        ctx.set(dut.m_axis_tvalid, 0)

    async def testbench(ctx):
        size = -(-bits // 8)
        while len(received) < len(codes) * size:
            ready = int(rng.random() < 0.6)
            ctx.set(dut.o.ready, ready)
            await ctx.tick()

    async def monitor(ctx):
        async for _, _, valid, ready, payload in ctx.tick().sample(dut.o.valid, dut.o.ready,
                                                                 dut.o.payload):
            if valid and ready:
                received.append(payload)

    _run(dut, testbench, sender, monitor)
    size = -(-bits // 8)
    expected = [byte for code in codes for byte in
                int(code).to_bytes(size, "little", signed=bool(signed))]
    assert received == expected


class _Negate(wiring.Component):
    """Stand-in accelerator: each frame of ``elements`` codes (``lanes`` per beat) comes back
    negated and in reverse lane order, one beat per input beat, a cycle later."""

    def __init__(self, bits, lanes, tdata_bits):
        self._bits, self._lanes = bits, lanes
        super().__init__({
            "s_axis_tdata": In(tdata_bits), "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1), "s_axis_tlast": In(1),
            "m_axis_tdata": Out(tdata_bits), "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1), "m_axis_tlast": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bits, lanes = self._bits, self._lanes
        m.d.comb += self.s_axis_tready.eq(~self.m_axis_tvalid | self.m_axis_tready)
        with m.If(self.m_axis_tready):
            m.d.sync += self.m_axis_tvalid.eq(0)
        with m.If(self.s_axis_tvalid & self.s_axis_tready):
            for lane in range(lanes):
                code = self.s_axis_tdata[lane * bits:][:bits].as_signed()
                m.d.sync += self.m_axis_tdata[(lanes - 1 - lane) * bits:][:bits].eq(-code)
            m.d.sync += [self.m_axis_tvalid.eq(1), self.m_axis_tlast.eq(self.s_axis_tlast)]
        return m


def _manifest(bits, lanes, elements):
    tdata_bits = -(-bits * lanes // 8) * 8
    port = {"lanes": lanes, "lane_bits": bits, "signed": True, "tdata_bits": tdata_bits}
    return {"top": "stand_in", "ports": {"s_axis": port, "m_axis": port},
            "input": {"shape": [elements]}}


@pytest.mark.parametrize("bits, lanes", [(4, 2), (8, 1), (12, 2)])
def test_bridge_round_trip_through_a_stand_in_accelerator(bits, lanes):
    divisor, elements, frames = 4, 4, 2
    manifest = _manifest(bits, lanes, elements)
    m = Module()
    m.submodules.bridge = bridge = UARTBridge(manifest, divisor)
    m.submodules.accelerator = accelerator = _Negate(bits, lanes,
                                                     manifest["ports"]["s_axis"]["tdata_bits"])
    for name in ("tdata", "tvalid", "tlast"):
        m.d.comb += [getattr(accelerator, f"s_axis_{name}").eq(getattr(bridge, f"s_axis_{name}")),
                     getattr(bridge, f"m_axis_{name}").eq(getattr(accelerator, f"m_axis_{name}"))]
    m.d.comb += [bridge.s_axis_tready.eq(accelerator.s_axis_tready),
                 accelerator.m_axis_tready.eq(bridge.m_axis_tready)]
    rng = np.random.default_rng(bits)
    codes = rng.integers(-(1 << (bits - 1)) + 1, 1 << (bits - 1), size=frames * elements)
    beats, received = [], []

    async def host(ctx):
        await _send_serial(ctx, bridge.rx, _codes_to_bytes(codes, bits), divisor)

    async def monitor(ctx):
        async for _, _, valid, ready, tdata, tlast in ctx.tick().sample(
                bridge.s_axis_tvalid, bridge.s_axis_tready, bridge.s_axis_tdata,
                bridge.s_axis_tlast):
            if valid and ready:
                beats.append((tdata, tlast))

    async def testbench(ctx):
        count = len(_codes_to_bytes(codes, bits))
        got, _ = await _receive_serial(ctx, bridge.tx, count, divisor)
        received.extend(got)

    _run(m, testbench, host, monitor)
    mask = (1 << bits) - 1
    assert [tdata for tdata, _ in beats] == [
        sum((int(code) & mask) << (lane * bits) for lane, code in enumerate(beat))
        for beat in codes.reshape(-1, lanes)]
    frame_beats = elements // lanes
    assert [tlast for _, tlast in beats] == [int(index % frame_beats == frame_beats - 1)
                                           for index in range(len(beats))]
    assert _bytes_to_codes(received, bits) == [-int(code) for code in
                                               codes.reshape(-1, lanes)[:, ::-1].ravel()]


# icepll's (IceStorm) settings: reference MHz, wanted MHz → DIVR, DIVF, DIVQ, FILTER_RANGE.
ICEPLL = [(12, 30, (0, 79, 5, 1)), (16, 50, (0, 49, 4, 1)), (48, 25, (2, 49, 5, 1)),
          (96, 20, (2, 19, 5, 3))]


@pytest.mark.parametrize("reference, wanted, settings", ICEPLL)
def test_ice40_pll_settings_agree_with_icepll(reference, wanted, settings):
    pll = ice40_pll(reference, wanted)
    assert (pll.divr, pll.divf, pll.divq, pll.filter_range) == settings
    assert pll.mhz == wanted


def test_ice40_pll_takes_the_highest_clock_at_most_the_one_asked():
    pll = ice40_pll(12, 38.8)   # the DS-CNN's fmax on the iCEBreaker
    assert pll.mhz == 38.25 and (pll.divr, pll.divf, pll.divq) == (0, 50, 4)
    assert 533 <= pll.vco_mhz <= 1066 and 10 <= pll.pfd_mhz <= 133
    with pytest.raises(HwgenError, match="makes 16.125 MHz at the least, nothing at or below 15"):
        ice40_pll(12, 15)
    with pytest.raises(HwgenError, match="reference of 10 to 133 MHz, not 8"):
        ice40_pll(8, 50)


def _result(clock, fmax):
    return BitstreamResult(board="icebreaker", path=None, size=0, seconds=0.0, clock_mhz=clock,
                           fmax_mhz=fmax, baud=115200, bytes_in=1, bytes_out=1, notes=[])


class _FakeBuild:
    """Stands in for the bitstream builds: the fmax each clock (None: the oscillator)
    reaches, and the clocks built."""

    def __init__(self, fmax):
        self.fmax, self.clocks = fmax, []

    def __call__(self, pll):
        clock = 12.0 if pll is None else pll.mhz
        self.clocks.append(None if pll is None else clock)
        return _result(clock, self.fmax(clock))


@pytest.mark.parametrize("slow_fmax, fmax, clocks, clock", [
    (40.0, lambda clock: 39.0, [37.5], 37.5),                 # meets at 95 % of 40 MHz
    (40.0, lambda clock: 36.0 if clock > 37 else 37.0, [37.5, 36.0], 36.0),  # once lower
    (40.0, lambda clock: clock - 1 if clock > 12 else 40.0, [37.5, 36.0, None], 12.0),  # never
    (16.5, lambda clock: 16.5, [], 12.0),                     # none below 15.7 MHz
    (12.5, lambda clock: 12.5, [], 12.0),
])
def test_fastest_pll_clock_that_meets_timing(slow_fmax, fmax, clocks, clock):
    """From the oscillator build's fmax: a PLL at 95 % of it, once more lower where the
    placed design misses that, else the oscillator (built again only where a PLL build
    replaced its files)."""
    build = _FakeBuild(fmax)
    built = _faster(build, _result(12.0, slow_fmax))
    assert build.clocks == clocks and built.clock_mhz == clock
    assert built.notes and ("PLL at" in built.notes[0]) == (clock > 12)


def test_board_top_on_a_pll():
    """On a PLL the bitstream's logic runs on SB_PLL40_PAD's output from the oscillator's pad
    (whose constraint nextpnr carries through the PLL's settings)."""
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    pll = ice40_pll(12, 30)
    platform = ICEBreakerPlatform()
    plan = platform.build(BoardTop("stand_in", _manifest(8, 1, 4), 115200, pll), name="top",
                          do_build=False)
    netlist = plan.files["top.il"]
    assert "cell \\SB_PLL40_PAD" in netlist and "connect \\PACKAGEPIN" in netlist
    assert "DIVR 4'0000" in netlist and "DIVF 7'1001111" in netlist and "DIVQ 3'101" in netlist
    assert "set_frequency clk12_0__io 12.0" in plan.files["top.pcf"]


def test_pll_clock_only_on_ice40_and_not_below_the_oscillator(tmp_path):
    with pytest.raises(HwgenError, match="sets an iCE40 PLL"):
        build_bitstream(tmp_path, "ulx3s_85f", clock_mhz=50)
    with pytest.raises(HwgenError, match="runs at 12 MHz at the least"):
        build_bitstream(tmp_path, "icebreaker", clock_mhz=10)


@pytest.mark.parametrize("board, message", [
    ("pynq_z2", "no amaranth-boards platform"),
    ("orangecrab_25f", "no UART resource"),
    ("arty_a7_35t", "no open-source bitstream flow"),
])
def test_boards_without_a_bitstream_flow_are_errors(tmp_path, board, message):
    with pytest.raises(HwgenError, match=message):
        build_bitstream(tmp_path, board)


def test_bitstream_of_a_folder_without_a_design_is_an_error(tmp_path, capsys):
    assert main(["synth", str(tmp_path), "--board", "icebreaker", "--bitstream"]) == 1
    assert "no manifest.json" in capsys.readouterr().err


def test_bitstream_rejects_a_frame_of_partial_beats(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest(4, 2, 5)))
    with pytest.raises(HwgenError, match="5 input codes are not a whole number of 2-lane"):
        build_bitstream(tmp_path, "icebreaker")


@pytest.mark.slow
def test_icebreaker_bitstream_of_a_tiny_mlp(tmp_path, capsys):
    plan = tiny_mlp_plan(np.random.default_rng(8), (8, 6, 4))
    out = hwgen.generate(plan, frames=2).write(tmp_path / "tiny")
    assert main(["synth", str(out), "--board", "icebreaker", "--bitstream"]) == 0
    bitstream = out / "synth" / "bitstream" / "tiny_icebreaker.bin"
    assert bitstream.is_file() and bitstream.stat().st_size > 0
    printed = capsys.readouterr().out
    assert f"{bitstream.stat().st_size:,} bytes" in printed
    assert "send 8 bytes per frame, receive 4" in printed   # 8 4-bit codes in, 4 8-bit out
    log = (out / "synth" / "bitstream" / "tiny_icebreaker.tim").read_text()
    assert "ICESTORM_DSP" in log and "Max frequency" in log
    # On the PLL at the fastest clock the placed design meets (nextpnr's own figures).
    clock = float(re.search(r"clocked by the iCE40 PLL at ([\d.]+) MHz", printed).group(1))
    assert clock > 12 and f"Derived frequency constraint of {clock:.1f} MHz" in log
    fmax = min(float(f) for f in re.findall(r"Max frequency for clock .*?: ([\d.]+) MHz",
                                             log.split("Info: Routing")[-1]))
    assert fmax >= clock
