"""A bitstream for a real board: the accelerator behind the board's UART.

:func:`build_bitstream` wraps ``OUT/<top>.v`` (instantiated as a Verilog black box) in
:class:`BoardTop`, an Amaranth design for the board's amaranth-boards platform, and builds it
with that platform's open-source flow (yosys, nextpnr, icepack/ecppack, all from YoWASP) into
``OUT/synth/bitstream/``. On iCE40 the design runs on a PLL's clock (:class:`Ice40Pll`,
``SB_PLL40_PAD`` from the board's oscillator): the fastest the placed design meets, found by
building it at the oscillator first, or the one asked for; elsewhere it runs at the
oscillator.

Byte protocol (8N1, :data:`DEFAULT_BAUD` baud unless told otherwise, no flow control):

- Host → board: the input codes of frames in ``s_axis`` order (HWC, lane 0 first). Each code
  is ``ceil(bits / 8)`` bytes, little-endian two's complement (plain binary for unsigned
  codes); only the low ``bits`` bits of a code are used, so its sign-extension bits may be
  anything. Every ``in_lanes`` codes form one ``s_axis`` beat; ``tlast`` is raised on each
  frame's last beat. There is no header or framing byte: the board counts bytes from reset.
- Board → host: every ``m_axis`` code the same way, ``ceil(out_bits / 8)`` bytes per code,
  little-endian, sign-extended to whole bytes when the codes are signed, lanes in order.

A frame of ``N`` input codes of ``b`` bits is ``N·ceil(b/8)`` bytes; its ``M`` output codes
come back as ``M·ceil(out_bits/8)`` bytes. A byte that arrives while the previous one still
waits for the accelerator is lost (at 115200 baud a byte lasts 87 µs, i.e. thousands of
cycles, so this only happens when the accelerator back-pressures for that long: send one
frame and read its result before the next if the results are long). Reset: for 15 cycles after
configuration, and while button 0 is pressed where the board has one (it also clears the byte
counters, re-synchronising host and board).
"""

import dataclasses
import importlib
import json
import os
from pathlib import Path

from amaranth.build import ResourceError
from amaranth.hdl import (Cat, ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module,
                          ResetInserter, Signal)
from amaranth.lib import io, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from .board import get_board
from .errors import HwgenError

__all__ = ["DEFAULT_BAUD", "UARTReceiver", "UARTTransmitter", "CodePacker", "CodeUnpacker",
           "UARTBridge", "BoardTop", "BitstreamResult", "Ice40Pll", "ice40_pll",
           "build_bitstream"]

DEFAULT_BAUD = 115200


def _divisor(divisor):
    divisor = int(divisor)
    if divisor < 4:
        raise HwgenError(f"UART clock divisor (clock ÷ baud) must be at least 4, not {divisor!r}")
    return divisor


class UARTReceiver(wiring.Component):
    """8N1 receiver: ``rx`` (idle high) → bytes on the stream ``o``.

    A falling edge starts a byte; the start bit is checked again at its middle (half a bit
    later), then the 8 data bits (LSB first) and the stop bit are sampled at their middles. A
    byte whose stop bit is low (framing error) is discarded. ``o.valid`` holds until
    ``o.ready``; a newer byte overwrites one still waiting. ``rx`` passes a two-flip-flop
    synchronizer first; a byte appears at the middle of its stop bit (plus those 2 cycles).

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (clock frequency ÷ baud rate, rounded).
    """

    def __init__(self, divisor):
        self._divisor = _divisor(divisor)
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8))})

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.rx_sync = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(self._divisor))
        bit = Signal(range(8))
        shift = Signal(8)

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.FSM():
            with m.State("idle"):
                with m.If(~rx):
                    m.d.sync += timer.eq(self._divisor // 2 - 1)
                    m.next = "start"
            with m.State("start"):
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(self._divisor - 1), bit.eq(0)]
                    m.next = "data"
                    with m.If(rx):   # a glitch, not a start bit
                        m.next = "idle"
            with m.State("data"):
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(self._divisor - 1), bit.eq(bit + 1),
                                 shift.eq(Cat(shift[1:], rx))]
                    with m.If(bit == 7):
                        m.next = "stop"
            with m.State("stop"):
                with m.If(timer == 0):
                    with m.If(rx):
                        m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1)]
                    m.next = "idle"
        return m


class UARTTransmitter(wiring.Component):
    """8N1 transmitter: bytes from the stream ``i`` → ``tx`` (idle high).

    A byte takes ``10·divisor + 1`` cycles (start bit, 8 data bits LSB first, stop bit, and
    the cycle that takes the next byte); ``i.ready`` is high while idle.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit.
    """

    def __init__(self, divisor):
        self._divisor = _divisor(divisor)
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self._divisor))
        bits_left = Signal(range(11))
        frame = Signal(10, init=1)   # shifted out LSB first: start bit, data, stop bit

        m.d.comb += [self.i.ready.eq(bits_left == 0), self.tx.eq(frame[0])]
        with m.If(bits_left == 0):
            with m.If(self.i.valid):
                m.d.sync += [frame.eq(Cat(0, self.i.payload, 1)), bits_left.eq(10),
                             timer.eq(self._divisor - 1)]
        with m.Elif(timer == 0):
            m.d.sync += [timer.eq(self._divisor - 1), bits_left.eq(bits_left - 1),
                         frame.eq(Cat(frame[1:], 1))]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


def _code_bytes(bits):
    return -(-bits // 8)


class CodePacker(wiring.Component):
    """Bytes (stream ``i``) → ``s_axis`` beats of ``lanes`` codes of ``bits`` bits.

    A code arrives as ``ceil(bits / 8)`` little-endian bytes; its low ``bits`` bits become lane
    ``k`` of ``s_axis_tdata`` (bits ``[k·bits, (k+1)·bits)``; pad bits zero). ``s_axis_tlast``
    is high on every ``frame_beats``-th beat. ``i.ready`` is low while a full beat waits.

    Parameters
    ----------
    bits, lanes, frame_beats : int
    tdata_bits : int
        Width of ``s_axis_tdata``, at least ``lanes·bits``.
    """

    def __init__(self, bits, lanes, frame_beats, tdata_bits):
        self._bits, self._lanes = int(bits), int(lanes)
        self._frame_beats = int(frame_beats)
        if tdata_bits < self._bits * self._lanes:
            raise HwgenError(f"tdata_bits must be at least lanes·bits = "
                             f"{self._bits * self._lanes}, not {tdata_bits!r}")
        super().__init__({
            "i": In(stream.Signature(8)),
            "s_axis_tdata": Out(tdata_bits), "s_axis_tvalid": Out(1),
            "s_axis_tready": In(1), "s_axis_tlast": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        code_bits = 8 * _code_bytes(self._bits)
        total = code_bits // 8 * self._lanes
        buffer = Signal(8 * total)
        count = Signal(range(total + 1))
        beat = Signal(range(self._frame_beats))

        m.d.comb += [
            self.i.ready.eq(count != total),
            self.s_axis_tdata.eq(Cat(buffer[lane * code_bits:][:self._bits]
                                     for lane in range(self._lanes))),
            self.s_axis_tvalid.eq(count == total),
            self.s_axis_tlast.eq(beat == self._frame_beats - 1),
        ]
        with m.If(self.i.valid & self.i.ready):
            # Bytes enter at the top and move down: after `total` of them byte 0 is at the bottom.
            m.d.sync += [buffer.eq(Cat(buffer[8:], self.i.payload)), count.eq(count + 1)]
        with m.If(self.s_axis_tvalid & self.s_axis_tready):
            m.d.sync += [count.eq(0), beat.eq(beat + 1)]
            with m.If(self.s_axis_tlast):
                m.d.sync += beat.eq(0)
        return m


class CodeUnpacker(wiring.Component):
    """``m_axis`` beats of ``lanes`` codes of ``bits`` bits → bytes (stream ``o``): each code as
    ``ceil(bits / 8)`` little-endian bytes, sign-extended when ``signed``, lane 0 first.
    ``m_axis_tready`` is high once the previous beat's bytes are all out.

    Parameters
    ----------
    bits, lanes : int
    signed : bool
    tdata_bits : int
        Width of ``m_axis_tdata``.
    """

    def __init__(self, bits, lanes, signed, tdata_bits):
        self._bits, self._lanes, self._signed = int(bits), int(lanes), bool(signed)
        super().__init__({
            "m_axis_tdata": In(tdata_bits), "m_axis_tvalid": In(1),
            "m_axis_tready": Out(1), "m_axis_tlast": In(1),
            "o": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        code_bits = 8 * _code_bytes(self._bits)
        total = code_bits // 8 * self._lanes
        buffer = Signal(8 * total)
        left = Signal(range(total + 1))

        extended = []
        for lane in range(self._lanes):
            code = self.m_axis_tdata[lane * self._bits:][:self._bits]
            wide = Signal(code_bits, name=f"code{lane}")
            # Assigning a signed value to a wider signal sign-extends it.
            m.d.comb += wide.eq(code.as_signed() if self._signed else code)
            extended.append(wide)
        m.d.comb += [self.m_axis_tready.eq(left == 0), self.o.valid.eq(left != 0),
                     self.o.payload.eq(buffer[:8])]
        with m.If(self.m_axis_tvalid & self.m_axis_tready):
            m.d.sync += [buffer.eq(Cat(extended)), left.eq(total)]
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += [buffer.eq(buffer[8:]), left.eq(left - 1)]
        return m


def _frame_beats(manifest):
    lanes, elements = manifest["ports"]["s_axis"]["lanes"], 1
    for size in manifest["input"]["shape"]:
        elements *= size
    if elements % lanes:
        raise HwgenError(f"design {manifest['top']!r}: {elements} input codes are not a whole "
                         f"number of {lanes}-lane beats")
    return elements // lanes


class UARTBridge(wiring.Component):
    """The glue of the bitstream: UART receiver → :class:`CodePacker` → ``s_axis_*`` and
    ``m_axis_*`` → :class:`CodeUnpacker` → UART transmitter, for the ports a design's manifest
    describes (the byte protocol of the module docstring). ``rx``/``tx`` are the serial lines;
    the ``s_axis_*``/``m_axis_*`` ports face the accelerator (``s_axis`` ones are outputs here).

    Parameters
    ----------
    manifest : dict
        The design's ``manifest.json``.
    divisor : int
        Clock cycles per UART bit.
    """

    def __init__(self, manifest, divisor):
        self._in, self._out = manifest["ports"]["s_axis"], manifest["ports"]["m_axis"]
        self._frame_beats = _frame_beats(manifest)
        self._divisor = _divisor(divisor)
        super().__init__({
            "rx": In(1, init=1), "tx": Out(1, init=1),
            "s_axis_tdata": Out(self._in["tdata_bits"]), "s_axis_tvalid": Out(1),
            "s_axis_tready": In(1), "s_axis_tlast": Out(1),
            "m_axis_tdata": In(self._out["tdata_bits"]), "m_axis_tvalid": In(1),
            "m_axis_tready": Out(1), "m_axis_tlast": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = receiver = UARTReceiver(self._divisor)
        m.submodules.transmitter = transmitter = UARTTransmitter(self._divisor)
        m.submodules.packer = packer = CodePacker(
            self._in["lane_bits"], self._in["lanes"], self._frame_beats, self._in["tdata_bits"])
        m.submodules.unpacker = unpacker = CodeUnpacker(
            self._out["lane_bits"], self._out["lanes"], self._out["signed"],
            self._out["tdata_bits"])
        wiring.connect(m, receiver.o, packer.i)
        wiring.connect(m, unpacker.o, transmitter.i)
        m.d.comb += [receiver.rx.eq(self.rx), self.tx.eq(transmitter.tx)]
        for name in ("tdata", "tvalid", "tlast"):
            m.d.comb += [getattr(self, f"s_axis_{name}").eq(getattr(packer, f"s_axis_{name}")),
                         getattr(unpacker, f"m_axis_{name}").eq(getattr(self, f"m_axis_{name}"))]
        m.d.comb += [packer.s_axis_tready.eq(self.s_axis_tready),
                     self.m_axis_tready.eq(unpacker.m_axis_tready)]
        return m


@dataclasses.dataclass(frozen=True)
class Ice40Pll:
    """An iCE40 PLL in simple feedback (``SB_PLL40_PAD``): the reference divided by
    ``divr + 1`` (the phase detector's input, 10–133 MHz), multiplied by ``divf + 1`` in the VCO
    (533–1066 MHz), divided by ``2^divq``: ``out = ref·(divf + 1) / ((divr + 1)·2^divq)``,
    16–275 MHz (Lattice's iCE40 sysCLOCK PLL design guide)."""

    reference_mhz: float
    divr: int
    divf: int
    divq: int

    pfd_mhz = property(lambda self: self.reference_mhz / (self.divr + 1))
    vco_mhz = property(lambda self: self.pfd_mhz * (self.divf + 1))
    mhz = property(lambda self: self.vco_mhz / 2 ** self.divq)

    @property
    def filter_range(self):
        """The loop filter's setting for the phase detector's frequency."""
        return 1 + sum(self.pfd_mhz >= edge for edge in (17, 26, 44, 66, 101))


def _ice40_plls(reference_mhz):
    """Every setting of an iCE40 PLL from ``reference_mhz`` within the part's limits."""
    for divr in range(16):
        for divq in range(1, 7):
            for divf in range(128):
                pll = Ice40Pll(float(reference_mhz), divr, divf, divq)
                if (10 <= pll.pfd_mhz <= 133 and 533 <= pll.vco_mhz <= 1066
                        and 16 <= pll.mhz <= 275):
                    yield pll


def ice40_pll(reference_mhz, most_mhz):
    """The :class:`Ice40Pll` from ``reference_mhz`` (10–133 MHz) with the highest output of
    at most ``most_mhz`` (the first such setting, lowest ``divr`` first); :class:`HwgenError`
    where there is none."""
    if not 10 <= reference_mhz <= 133:
        raise HwgenError(f"an iCE40 PLL takes a reference of 10 to 133 MHz, not "
                         f"{reference_mhz:g} MHz")
    plls = list(_ice40_plls(reference_mhz))
    below = [pll for pll in plls if pll.mhz <= most_mhz]
    if not below:
        lowest = min(pll.mhz for pll in plls)
        raise HwgenError(f"an iCE40 PLL from {reference_mhz:g} MHz makes {lowest:g} MHz at the "
                         f"least, nothing at or below {most_mhz:g} MHz")
    return max(below, key=lambda pll: pll.mhz)


class BoardTop(Elaboratable):
    """The accelerator ``top`` (a Verilog black box the platform must have been given with
    ``add_file``) behind a :class:`UARTBridge` on the platform's ``uart`` 0 at ``baud`` baud,
    clocked by the platform's default clock or, given ``pll`` (an :class:`Ice40Pll`), by that
    PLL from it (held in reset until the PLL locks).

    Parameters
    ----------
    top : str
        The accelerator's module name.
    manifest : dict
        The design's ``manifest.json`` (ports, input shape).
    baud : int
    pll : Ice40Pll or None
    """

    def __init__(self, top, manifest, baud=DEFAULT_BAUD, pll=None):
        self._top, self._manifest, self._baud = top, manifest, int(baud)
        self._pll = pll

    def _clock(self, m, platform):
        """The design's clock in Hz, and whether it runs (the PLL has locked)."""
        if self._pll is None:
            return platform.default_clk_frequency, Const(1)
        pll, clock = self._pll, Signal(name="pll_clk")
        locked, stable = Signal(name="pll_locked"), Signal(name="pll_stable")
        m.domains.sync = ClockDomain("sync")
        pad = platform.request(platform.default_clk, 0, dir="-")
        m.submodules.pll = Instance(
            "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
            p_DIVR=Const(pll.divr, 4), p_DIVF=Const(pll.divf, 7), p_DIVQ=Const(pll.divq, 3),
            p_FILTER_RANGE=Const(pll.filter_range, 3), i_PACKAGEPIN=pad.io, i_RESETB=1,
            i_BYPASS=0, o_PLLOUTGLOBAL=clock, o_LOCK=locked)
        # nextpnr derives the output's clock constraint from the pad's and the settings.
        m.d.comb += ClockSignal("sync").eq(clock)
        m.submodules.lock_sync = FFSynchronizer(locked, stable)
        return pll.mhz * 1e6, stable

    def elaborate(self, platform):
        m = Module()
        frequency, running = self._clock(m, platform)
        divisor = round(frequency / self._baud)
        uart = platform.request("uart", 0, dir={"rx": "-", "tx": "-"})
        m.submodules.rx_buffer = rx_buffer = io.Buffer("i", uart.rx)
        m.submodules.tx_buffer = tx_buffer = io.Buffer("o", uart.tx)
        button = Signal()
        try:
            button_port = platform.request("button", 0, dir="-")
        except ResourceError:
            pass
        else:
            m.submodules.button_buffer = button_buffer = io.Buffer("i", button_port)
            m.submodules.button_sync = FFSynchronizer(button_buffer.i, button)
        # Some platforms' clock domains are reset-less (ECP5 relies on the global set/reset at
        # configuration), so the accelerator's synchronous reset comes from a counter of our own
        # that starts at zero with the bitstream.
        power_on = Signal(4, reset_less=True)
        with m.If(~running):   # counts from the PLL's lock
            m.d.sync += power_on.eq(0)
        with m.Elif(~power_on.all()):
            m.d.sync += power_on.eq(power_on + 1)
        reset = Signal()
        m.d.comb += reset.eq((~power_on.all()) | button | ~running)

        m.submodules.bridge = bridge = ResetInserter(reset)(UARTBridge(
            self._manifest, divisor))
        m.d.comb += [bridge.rx.eq(rx_buffer.i), tx_buffer.o.eq(bridge.tx)]
        m.submodules.accelerator = Instance(
            self._top,
            i_clk=ClockSignal(), i_rst=reset,
            i_s_axis_tdata=bridge.s_axis_tdata, i_s_axis_tvalid=bridge.s_axis_tvalid,
            i_s_axis_tlast=bridge.s_axis_tlast, o_s_axis_tready=bridge.s_axis_tready,
            o_m_axis_tdata=bridge.m_axis_tdata, o_m_axis_tvalid=bridge.m_axis_tvalid,
            o_m_axis_tlast=bridge.m_axis_tlast, i_m_axis_tready=bridge.m_axis_tready)
        return m


@dataclasses.dataclass(frozen=True)
class BitstreamResult:
    """What :func:`build_bitstream` built.

    Attributes
    ----------
    board : str
    path : pathlib.Path
        The bitstream (``.bin`` for iCE40, ``.bit`` for ECP5).
    size : int
        Its size in bytes.
    seconds : float
        Wall-clock time of the build (yosys, nextpnr, packing).
    clock_mhz : float
        The clock the design runs at: the board's oscillator, or an iCE40 PLL's.
    fmax_mhz : float or None
        nextpnr's maximum frequency of the design's clock.
    baud : int
    bytes_in, bytes_out : int
        Bytes of one frame's input codes (host → board) and output codes (board → host).
    notes : list of str
    """

    board: str
    path: Path
    size: int
    seconds: float
    clock_mhz: float
    fmax_mhz: float | None
    baud: int
    bytes_in: int
    bytes_out: int
    notes: list

    def summary(self):
        timing = "" if self.fmax_mhz is None else (
            f"; fmax {self.fmax_mhz:.1f} MHz ("
            f"{'meets' if self.fmax_mhz >= self.clock_mhz else 'MISSES'} its "
            f"{self.clock_mhz:g} MHz clock)")
        return (f"bitstream for {self.board}: {self.path} ({self.size:,} bytes) in "
                f"{self.seconds:.1f} s{timing}\nUART {self.baud} baud 8N1: send "
                f"{self.bytes_in} bytes per frame, receive {self.bytes_out} (little-endian "
                "codes, see hwgen.board_top)" + "".join("\n" + note for note in self.notes))


def _platform(board):
    if not board.platform:
        raise HwgenError(f"board {board.name!r} has no amaranth-boards platform, so hwgen cannot "
                         "build a bitstream for it; boards with one are listed by `hwgen boards`")
    if not board.uart:
        raise HwgenError(f"board {board.name!r} has no UART resource in its amaranth-boards "
                         "platform, and the bitstream talks to the host over a UART")
    module, _, name = board.platform.partition(":")
    try:
        return getattr(importlib.import_module(module), name)()
    except ImportError:
        raise HwgenError("bitstreams need amaranth-boards; install it with pip install "
                         "'hwgen[synth]'") from None


_TOOLS = {"ice40": ("yosys", "nextpnr-ice40", "icepack"),
          "ecp5": ("yosys", "nextpnr-ecp5", "ecppack")}
_EXTENSIONS = {"ice40": ".bin", "ecp5": ".bit"}


# The first PLL clock tried: this much of the oscillator build's fmax (the placement changes
# with the clock).
_PLL_MARGIN = 0.95


def build_bitstream(design_dir, board, *, baud=DEFAULT_BAUD, clock_mhz=None, progress=None):
    """Build the bitstream of the design in ``design_dir`` behind ``board``'s UART (see the
    module docstring) into ``OUT/synth/bitstream/``; returns a :class:`BitstreamResult`.

    On iCE40 multipliers go to the DSP blocks (``synth_ice40 -dsp``); a design with more
    multipliers than the device has DSP blocks is built again with every multiplier in LUTs.
    On iCE40 the design runs on a PLL: at the highest clock of at most ``clock_mhz``, or, by
    default, at the fastest it meets: built at the oscillator, then on a PLL at
    :data:`_PLL_MARGIN` of that build's fmax, then once more at the fmax it reached, kept
    where nextpnr says it meets its clock (else the oscillator build is built again)."""
    board = get_board(board)
    _platform(board)   # the board's own errors come before the design's
    if board.family not in _TOOLS:
        raise HwgenError(f"board {board.name!r}: no open-source bitstream flow for the "
                         f"{board.family} family (only iCE40 and ECP5)")
    if clock_mhz is not None and board.family != "ice40":
        raise HwgenError(f"a bitstream's clock (--clock) sets an iCE40 PLL; {board.name}'s "
                         f"bitstream runs at its {board.clock_mhz:g} MHz oscillator")
    if clock_mhz is not None and clock_mhz < board.clock_mhz:
        raise HwgenError(f"a bitstream for {board.name} runs at {board.clock_mhz:g} MHz at the "
                         f"least (its oscillator), not {clock_mhz:g}")
    pll = None if clock_mhz is None else _pll_at_most(board.clock_mhz, clock_mhz)
    out = Path(design_dir)
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        raise HwgenError(f"{str(out)!r} is not a design folder (no manifest.json); "
                         "create one with `hwgen build`")
    manifest = json.loads(manifest_path.read_text())
    _frame_beats(manifest)   # before any Elaboratable exists, so an error leaves none unused
    build = _Build(board, manifest, out, baud, progress)
    built = build(pll)
    if clock_mhz is None and board.family == "ice40" and built.fmax_mhz:
        built = _faster(build, built)
    elif clock_mhz is not None:
        built = dataclasses.replace(built, notes=[
            f"runs at the {board.clock_mhz:g} MHz oscillator: the PLL makes nothing above it "
            f"at most {clock_mhz:g} MHz" if pll is None else
            f"clocked by the iCE40 PLL at {pll.mhz:g} MHz (at most the {clock_mhz:g} asked) "
            f"from the {board.clock_mhz:g} MHz oscillator"])
    return dataclasses.replace(built, seconds=round(build.seconds, 2),
                               notes=build.notes + built.notes)


def _pll_at_most(reference_mhz, most_mhz):
    """:func:`ice40_pll`, or ``None`` (the oscillator) where no PLL clock above the reference
    is at most ``most_mhz``."""
    try:
        pll = ice40_pll(reference_mhz, most_mhz)
    except HwgenError:
        return None
    return pll if pll.mhz > reference_mhz else None


def _faster(build, slow):
    """The build on the fastest PLL clock that meets timing, from the oscillator build
    ``slow`` (see :func:`build_bitstream`): ``slow`` itself where no PLL clock above the
    oscillator is below its fmax, else up to two PLL builds, or ``slow`` built again where
    neither meets its clock."""
    pll = _pll_at_most(slow.clock_mhz, slow.fmax_mhz * _PLL_MARGIN)
    if pll is None:
        return dataclasses.replace(slow, notes=[
            f"runs at the {slow.clock_mhz:g} MHz oscillator: no PLL clock above it is below "
            f"its fmax of {slow.fmax_mhz:.1f} MHz"])
    for _ in range(2):
        built = build(pll)
        if built.fmax_mhz and built.fmax_mhz >= pll.mhz:
            return dataclasses.replace(built, notes=[
                f"clocked by the iCE40 PLL at {pll.mhz:g} MHz from the {slow.clock_mhz:g} MHz "
                f"oscillator (the oscillator build's fmax: {slow.fmax_mhz:.1f} MHz)"])
        pll = _pll_at_most(slow.clock_mhz, min(built.fmax_mhz or 0, pll.mhz - 0.5))
        if pll is None:
            break
    return dataclasses.replace(build(None), notes=[
        "no PLL clock above the oscillator met timing: runs at the oscillator"])


class _Build:
    """Builds of one design for one board, at the oscillator (``pll=None``) or on a PLL,
    adding up their time and notes."""

    def __init__(self, board, manifest, out, baud, progress):
        from amaranth._toolchain import tool_env_var

        from .synth import _tool

        self.board, self.manifest, self.out, self.baud = board, manifest, out, baud
        self.progress, self.seconds, self.notes = progress, 0.0, []
        # Multipliers into DSP blocks, else (once they overflow) into LUTs for every build.
        self.synth_options = ["-dsp", ""] if board.family == "ice40" else [""]
        self.name = f"{manifest['top']}_{board.name}"
        self.build_dir = out / "synth" / "bitstream"
        self.build_dir.mkdir(parents=True, exist_ok=True)
        # Amaranth's build script takes each tool's path from an environment variable named
        # after the tool (YOSYS, NEXTPNR_ICE40, ICEPACK, ...): point them at YoWASP's.
        self.env = dict(os.environ)
        self.env.update({tool_env_var(tool): _tool(tool) for tool in _TOOLS[board.family]})

    def __call__(self, pll):
        from .synth import parse_nextpnr_log

        board, build_dir = self.board, self.build_dir
        bitstream = build_dir / (self.name + _EXTENSIONS[board.family])
        for synth_opts in list(self.synth_options):
            bitstream.unlink(missing_ok=True)
            status, elapsed = self._once(synth_opts, pll)
            self.seconds += elapsed
            if status == 0 and bitstream.is_file():
                break
            log = (build_dir / "build.log").read_text(errors="replace").splitlines()
            reason = next((line for line in log if line.startswith("ERROR")),
                          f"the build script exited with status {status}")
            if synth_opts and "ICESTORM_DSP" in reason:
                note = (f"more multipliers than the {board.dsps} DSP blocks: built again with "
                        "the multipliers in LUTs")
                if note not in self.notes:
                    self.notes.append(note)
                self.synth_options.remove(synth_opts)
                continue
            raise HwgenError(f"bitstream build for {board.name} failed: {reason}; see "
                             f"{build_dir / 'build.log'}")
        timing = build_dir / f"{self.name}.tim"
        clocks = parse_nextpnr_log(timing.read_text())["fmax"] if timing.is_file() else None
        return BitstreamResult(
            board=board.name, path=bitstream, size=bitstream.stat().st_size,
            seconds=round(self.seconds, 2),
            clock_mhz=board.clock_mhz if pll is None else pll.mhz,
            fmax_mhz=min(clocks.values()) if clocks else None, baud=int(self.baud),
            bytes_in=_frame_bytes(self.manifest, "input"),
            bytes_out=_frame_bytes(self.manifest, "output"), notes=[])

    def _once(self, synth_opts, pll):
        """One run of the platform's build script (a platform builds once, so a fresh one)."""
        from .synth import _run

        board, manifest, name = self.board, self.manifest, self.name
        platform = _platform(board)
        platform.add_file(manifest["verilog"], (self.out / manifest["verilog"]).read_text())
        overrides = {"nextpnr_opts": "--timing-allow-fail"}
        if synth_opts:
            overrides["synth_opts"] = synth_opts
        plan = platform.build(BoardTop(manifest["top"], manifest, self.baud, pll), name=name,
                              build_dir=str(self.build_dir), do_build=False, **overrides)
        plan.extract(str(self.build_dir))
        luts = board.family == "ice40" and not synth_opts
        clock = "" if pll is None else f", PLL {pll.mhz:g} MHz"
        label = f"bitstream ({board.name}{', multipliers in LUTs' if luts else ''}{clock})"
        return _run(["sh", f"build_{name}.sh"], self.build_dir, label, self.progress,
                    "build.log", self.env)


def _frame_bytes(manifest, which):
    elements = 1
    for size in manifest[which]["shape"]:
        elements *= size
    return elements * _code_bytes(manifest[which]["bits"])
