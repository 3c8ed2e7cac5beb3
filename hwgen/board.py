"""Board profiles: the FPGA, its resources and clocks, read from the TOML files of ``boards/``
(installed as the package ``hwgen.boards``)."""

import dataclasses
import importlib.resources
import tomllib

from .errors import HwgenError

__all__ = ["FAMILIES", "Board", "get_board", "load_boards", "boards_table"]

# family → (yosys synthesis command, nextpnr tool or None when there is no open P&R)
FAMILIES = {
    "ice40": ("synth_ice40 -dsp", "nextpnr-ice40"),
    "ecp5": ("synth_ecp5", "nextpnr-ecp5"),
    "xc7": ("synth_xilinx -family xc7", None),
    "xcup": ("synth_xilinx -family xcup", None),
}


@dataclasses.dataclass(frozen=True)
class Board:
    """One board profile.

    Attributes
    ----------
    name : str
        The key ``hwgen synth --board`` takes (the TOML file's stem).
    title : str
        Human name with the full part number.
    family : str
        ``"ice40"``, ``"ecp5"`` (yosys + nextpnr place and route), ``"xc7"`` (7-series and
        Zynq-7000) or ``"xcup"`` (UltraScale+; both Xilinx families get yosys counts only).
    device, package, speed : str
        As amaranth-boards and nextpnr spell them (``"LFE5U-85F"``, ``"BG381"``, ``"6"``).
    part : str
        The vendor's full part number (``"LFE5U-85F-6BG381C"``).
    luts : int
        Logic LUTs (4-input on Lattice, 6-input on Xilinx).
    ffs : int
        Flip-flops.
    dsp_kind : str
        The hard multiplier primitive (``"MULT18X18D"``, ``"SB_MAC16"``, ``"DSP48E1"``, …).
    dsps : int
        How many of them.
    bram_kind : str
        The block-RAM primitive counted by ``brams``.
    brams : int
        Block RAMs of ``bram_bits`` bits each (Xilinx: 36 Kb blocks; two 18 Kb halves count
        as one).
    bram_bits : int
        Bits per block RAM (parity bits included).
    clock_mhz : float
        The board's oscillator, which the UART bitstream's logic runs at.
    target_mhz : float
        The clock place-and-route aims at (reachable from the oscillator through a PLL).
    platform : str
        ``"module:Class"`` of the amaranth-boards platform, or ``""`` where there is none.
    uart : bool
        Whether the amaranth-boards platform has a ``uart`` resource the bitstream can use.
    spram_kind : str
        Large single-port RAM primitive (iCE40 UltraPlus ``SB_SPRAM256KA``), or ``""``.
    sprams : int
        How many of them.
    spram_bits : int
        Bits per single-port RAM.
    """

    name: str
    title: str
    family: str
    device: str
    package: str
    speed: str
    part: str
    luts: int
    ffs: int
    dsp_kind: str
    dsps: int
    bram_kind: str
    brams: int
    bram_bits: int
    clock_mhz: float
    target_mhz: float
    platform: str = ""
    uart: bool = False
    spram_kind: str = ""
    sprams: int = 0
    spram_bits: int = 0

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise HwgenError(f"board {self.name!r}: family must be one of "
                             f"{', '.join(FAMILIES)}, not {self.family!r}")
        for field in ("luts", "ffs", "dsps", "brams", "bram_bits"):
            if getattr(self, field) < 0:
                raise HwgenError(f"board {self.name!r}: {field} must be ≥ 0")
        if self.clock_mhz <= 0 or self.target_mhz <= 0:
            raise HwgenError(f"board {self.name!r}: clocks must be positive")

    @property
    def bram_total_bits(self):
        """Block-RAM bits of the whole device (single-port RAMs not included)."""
        return self.brams * self.bram_bits

    @property
    def has_pnr(self):
        """Whether an open-source place-and-route (nextpnr) exists for the family."""
        return FAMILIES[self.family][1] is not None

    @property
    def capacity(self):
        """``{"lut", "ff", "dsp", "bram", "spram"}`` → how many the device has."""
        return {"lut": self.luts, "ff": self.ffs, "dsp": self.dsps, "bram": self.brams,
                "spram": self.sprams}


def _read(resource):
    try:
        data = tomllib.loads(resource.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise HwgenError(f"board file {resource.name}: {error}") from None
    fields = {field.name for field in dataclasses.fields(Board)}
    unknown = sorted(set(data) - fields)
    missing = sorted(name for name in fields - set(data)
                     if Board.__dataclass_fields__[name].default is dataclasses.MISSING)
    if unknown or missing:
        raise HwgenError(f"board file {resource.name}: "
                         + "; ".join(filter(None, [
                             unknown and f"unknown keys {', '.join(unknown)}",
                             missing and f"missing keys {', '.join(missing)}"])))
    return Board(**data)


def load_boards():
    """Every profile of ``boards/``, by name, sorted."""
    folder = importlib.resources.files("hwgen.boards")
    boards = [_read(entry) for entry in folder.iterdir() if entry.name.endswith(".toml")]
    return {board.name: board for board in sorted(boards, key=lambda board: board.name)}


def get_board(name):
    """The profile called ``name``; a :class:`~hwgen.errors.HwgenError` listing the known
    boards if there is none."""
    if isinstance(name, Board):
        return name
    boards = load_boards()
    if name not in boards:
        raise HwgenError(f"unknown board {name!r}; known boards: {', '.join(boards)}")
    return boards[name]


def boards_table(boards=None):
    """The profiles as a plain-text table (what ``hwgen boards`` prints)."""
    boards = list((boards or load_boards()).values())
    header = ("board", "part", "LUT", "FF", "DSP", "BRAM", "clock", "P&R", "platform")
    rows = [header] + [
        (b.name, b.part, str(b.luts), str(b.ffs), f"{b.dsps} {b.dsp_kind}",
         f"{b.brams}×{b.bram_bits // 1024}Kb", f"{b.clock_mhz:g}/{b.target_mhz:g} MHz",
         "nextpnr" if b.has_pnr else "-", b.platform.rpartition(":")[2] or "-")
        for b in boards]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)
