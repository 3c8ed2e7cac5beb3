"""The host side of the bitstream's UART (``hwgen.host``, ``hwgen run``): the byte encoding
against hand-computed bytes, the real UART bridge and a real accelerator in Amaranth's
simulator behind a simulated serial port, the timeout error, and the command line on a board
simulated in Python."""

import collections
import re
import sys

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

import hwgen
from hwgen import host
from hwgen.board_top import UARTBridge
from hwgen.cli import main
from hwgen.emit import build_manifest, load_design
from hwgen.errors import HwgenError
from hwgen.hw.accelerator import Accelerator
from hwgen.reference import run_integer
from hw_layers import tiny_mlp_plan


def _manifest(bits, signed, lanes=1, elements=4, out_bits=None, out_signed=None, out_lanes=1,
              outputs=2):
    """A manifest with just what the protocol needs: ports and shapes."""
    def port(bits, signed, lanes):
        return {"lanes": lanes, "lane_bits": bits, "signed": signed,
                "tdata_bits": -(-bits * lanes // 8) * 8}

    out_bits = bits if out_bits is None else out_bits
    out_signed = signed if out_signed is None else out_signed
    return {"top": "stand_in",
            "ports": {"s_axis": port(bits, signed, lanes),
                      "m_axis": port(out_bits, out_signed, out_lanes)},
            "input": {"shape": [elements]}, "output": {"shape": [outputs]}}


# --- the encoding, against bytes computed by hand ---------------------------------------------

@pytest.mark.parametrize("lanes", [1, 2, 4])
@pytest.mark.parametrize("bits, signed, codes, expected", [
    (2, True, [-2, 1, -1, 0], [0xFE, 0x01, 0xFF, 0x00]),
    (2, False, [3, 0, 2, 1], [0x03, 0x00, 0x02, 0x01]),
    (4, True, [-8, 7, -1, 0], [0xF8, 0x07, 0xFF, 0x00]),
    (8, True, [-128, 127, -1, 1], [0x80, 0x7F, 0xFF, 0x01]),
    (8, False, [255, 128, 0, 77], [0xFF, 0x80, 0x00, 0x4D]),
    (9, False, [511, 256, 1, 0], [0xFF, 0x01, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00]),
    (12, True, [-2048, 2047, -1, 5], [0x00, 0xF8, 0xFF, 0x07, 0xFF, 0xFF, 0x05, 0x00]),
    (16, False, [65535, 258, 0, 32768], [0xFF, 0xFF, 0x02, 0x01, 0x00, 0x00, 0x00, 0x80]),
    (16, True, [-32768, 32767, -2, 256], [0x00, 0x80, 0xFF, 0x7F, 0xFE, 0xFF, 0x00, 0x01]),
])
def test_encode_and_decode_match_hand_computed_bytes(bits, signed, codes, expected, lanes):
    manifest = _manifest(bits, signed, lanes, elements=4, outputs=4, out_lanes=lanes)
    assert host.encode_frame(np.array(codes), manifest) == bytes(expected)
    decoded = host.decode_output(bytes(expected), manifest, frames=1)
    assert decoded.dtype == np.int64
    assert decoded.tolist() == [codes]


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("bits", range(2, 17))
def test_encode_decode_round_trip_of_every_width(bits, signed):
    lanes, elements, frames = 3, 6, 5
    manifest = _manifest(bits, signed, lanes, elements, outputs=elements, out_lanes=lanes)
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    rng = np.random.default_rng(bits)
    codes = rng.integers(low, high + 1, size=(frames, elements))
    codes[0, :2] = low, high
    data = host.encode_frame(codes, manifest)
    size = -(-bits // 8)
    assert data == b"".join(int(code).to_bytes(size, "little", signed=signed)
                            for code in codes.ravel())
    np.testing.assert_array_equal(host.decode_output(data, manifest, frames), codes)


def test_decode_sign_extends_only_signed_outputs():
    data = bytes([0x00, 0xFE, 0xFF, 0x01])   # two 10-bit codes, 2 bytes each
    assert host.decode_output(data, _manifest(10, True), 1).tolist() == [[-512, 511]]
    assert host.decode_output(data, _manifest(10, False), 1).tolist() == [[65024, 511]]


def test_frame_bytes_and_default_timeout():
    manifest = _manifest(12, True, lanes=2, elements=6, out_bits=8, outputs=3, out_lanes=3)
    assert host.frame_bytes(manifest) == (12, 3)
    assert host.default_timeout(manifest, 115200) == pytest.approx(1 + 2 * 15 * 10 / 115200)


@pytest.mark.parametrize("codes, message", [
    (np.array([0, 1, 2]), "takes frames of 4 input codes"),
    (np.array([0, 1, 2, 8]), "code 8 at frame 0, index 3 does not fit the port's 4-bit signed"),
    (np.array([0.0, 1, 2, 3]), "integer codes"),
])
def test_encode_rejects_bad_codes(codes, message):
    with pytest.raises(HwgenError, match=message):
        host.encode_frame(codes, _manifest(4, True))


def test_decode_rejects_a_wrong_byte_count():
    with pytest.raises(HwgenError, match="2 frames of design 'stand_in' are 8 bytes of output "
                                         "codes, not 7"):
        host.decode_output(bytes(7), _manifest(12, True), 2)


# --- the real UART bridge and a real accelerator in Amaranth's simulator ----------------------

class _SimulatedSerialPort:
    """A serial port wired to ``rx``/``tx`` of a design in Amaranth's simulator (1 µs clock).

    ``write`` queues bytes that a testbench shifts into ``rx`` back to back as 8N1 frames of
    ``divisor`` cycles per bit; another testbench decodes ``tx`` (each bit sampled at its
    middle). ``read(n)`` runs the simulation until ``n`` bytes arrived or ``timeout`` seconds
    of simulated time passed, as a pyserial port would."""

    def __init__(self, design, rx, tx, divisor, timeout):
        self.timeout, self._divisor = timeout, divisor
        self._rx, self._tx = rx, tx
        self._to_send, self._received = collections.deque(), bytearray()
        self._cycle, self._closing = 0, False
        self._sim = Simulator(design)
        self._sim.add_clock(1e-6)
        self._sim.add_testbench(self._drive, background=True)
        self._sim.add_testbench(self._listen, background=True)

    def write(self, data):
        self._to_send.extend(data)
        return len(data)

    def read(self, count):
        deadline = self._cycle + round(self.timeout * 1e6)
        while len(self._received) < count and self._cycle < deadline:
            self._cycle += self._divisor
            self._sim.run_until(self._cycle * 1e-6)
        data = bytes(self._received[:count])
        del self._received[:count]
        return data

    def close(self):
        """Let both testbenches return, so none is left suspended in the simulator."""
        self._closing = True
        self._sim.run_until((self._cycle + 12 * self._divisor) * 1e-6)

    async def _drive(self, ctx):
        while not self._closing:
            if not self._to_send:
                await ctx.tick()
                continue
            byte = self._to_send.popleft()
            for level in [0, *((byte >> bit) & 1 for bit in range(8)), 1]:
                ctx.set(self._rx, level)
                await ctx.tick().repeat(self._divisor)

    async def _listen(self, ctx):
        while not self._closing:
            if ctx.get(self._tx):
                await ctx.tick()
                continue
            await ctx.tick().repeat(self._divisor // 2)
            assert ctx.get(self._tx) == 0, "a glitch on tx, not a start bit"
            byte = 0
            for bit in range(8):
                await ctx.tick().repeat(self._divisor)
                byte |= ctx.get(self._tx) << bit
            await ctx.tick().repeat(self._divisor)
            assert ctx.get(self._tx) == 1, "stop bit"
            self._received.append(byte)


def _tiny_plan(bits, output_bits, folding, *, unsigned, seed=1):
    """A 6→4 dense layer (ReLU'd when the input is unsigned, so the output is too)."""
    rng = np.random.default_rng(seed)
    graph = hwgen.Graph("tiny")
    x = graph.dense(graph.input((6,)), rng.normal(size=(4, 6)), rng.normal(size=4), name="fc")
    if unsigned:
        x = graph.relu(x)
    calibration = rng.uniform(0, 2, size=(64, 6)) if unsigned else rng.normal(size=(64, 6))
    return hwgen.make_plan(hwgen.quantize(graph, calibration, bits, output_bits=output_bits),
                           {"fc": folding})


def _board(plan, divisor):
    """The gateware of a board: the real :class:`UARTBridge` in front of ``Accelerator(plan)``;
    ``(module, bridge, manifest)``."""
    accelerator = Accelerator(plan)
    manifest = build_manifest(plan, "tiny", accelerator.latency)
    m = Module()
    m.submodules.bridge = bridge = UARTBridge(manifest, divisor)
    m.submodules.accelerator = accelerator
    for name in ("tdata", "tvalid", "tlast"):
        m.d.comb += [getattr(accelerator, f"s_axis_{name}").eq(getattr(bridge, f"s_axis_{name}")),
                     getattr(bridge, f"m_axis_{name}").eq(getattr(accelerator, f"m_axis_{name}"))]
    m.d.comb += [bridge.s_axis_tready.eq(accelerator.s_axis_tready),
                 accelerator.m_axis_tready.eq(bridge.m_axis_tready)]
    return m, bridge, manifest


@pytest.mark.parametrize("bits, output_bits, folding, unsigned, in_bytes, out_bytes", [
    ("w8a8", 8, "2x3", False, 6, 4),      # signed codes, 3 lanes in, 2 out
    ("w6a12", 10, "4x2", True, 12, 8),    # unsigned, 2 bytes per code both ways
    ("w4a10", 10, "1x6", False, 12, 8),   # signed 10-bit outputs sign-extended to 2 bytes
])
def test_run_frames_through_the_uart_bridge_and_a_real_accelerator(
        bits, output_bits, folding, unsigned, in_bytes, out_bytes):
    divisor, frames = 4, 3
    plan = _tiny_plan(bits, output_bits, folding, unsigned=unsigned)
    m, bridge, manifest = _board(plan, divisor)
    assert host.frame_bytes(manifest) == (in_bytes, out_bytes)
    assert manifest["ports"]["s_axis"]["signed"] == (not unsigned)
    source = plan.qgraph.input
    rng = np.random.default_rng(7)
    codes = rng.integers(source.lo, source.hi + 1, size=(frames, 6))
    codes[0] = source.lo   # the extremes, where sign extension and masking matter
    codes[1] = source.hi
    port = _SimulatedSerialPort(m, bridge.rx, bridge.tx, divisor, timeout=0.01)
    try:
        got = host.run_frames(port, manifest, codes)
        assert port.read(1) == b"", "the board sent more bytes than the frames' outputs"
    finally:
        port.close()

    expected = run_integer(plan.qgraph, codes)
    np.testing.assert_array_equal(got, expected)
    assert len(set(map(tuple, expected.tolist()))) > 1, "frames that cannot tell each other apart"


def test_a_board_at_another_baud_rate_is_a_timeout_error():
    """The bitstream's UART runs at half the host's baud rate: its receiver sees no proper
    bytes, so nothing comes back."""
    plan = _tiny_plan("w8a8", 8, "2x3", unsigned=False)
    m, bridge, manifest = _board(plan, divisor=8)
    port = _SimulatedSerialPort(m, bridge.rx, bridge.tx, divisor=4, timeout=0.005)
    codes = np.zeros((2, 6), dtype=np.int64)
    try:
        with pytest.raises(HwgenError, match="board sent 0 of 4 bytes for frame 0 .* the baud "
                                             "rate right"):
            host.run_frames(port, manifest, codes)
    finally:
        port.close()


# --- run_frames against ports in Python --------------------------------------------------------

def _software_board_answer(manifest, qgraph, data):
    """What a correct board answers to whole frames of input bytes, from the protocol's words
    (int.from_bytes / int.to_bytes), not from hwgen.host."""
    in_port, out_port = manifest["ports"]["s_axis"], manifest["ports"]["m_axis"]
    in_size, out_size = -(-in_port["lane_bits"] // 8), -(-out_port["lane_bits"] // 8)
    codes = [int.from_bytes(data[i:i + in_size], "little", signed=in_port["signed"])
             for i in range(0, len(data), in_size)]
    features = int(np.prod(manifest["input"]["shape"]))
    outputs = run_integer(qgraph, np.array(codes, dtype=np.int64).reshape(-1, features))
    return outputs, out_size, out_port["signed"]


class _SoftwareBoard:
    """A fake serial port that answers like a board running ``design``'s bitstream. It refuses
    a frame sent before the previous frame's answer was read (one frame in flight), and can
    corrupt an output code (``corrupt=(frame, index)``: +1) or stop answering after
    ``answer_bytes`` bytes."""

    def __init__(self, design, *, corrupt=None, answer_bytes=None):
        self.manifest, self.qgraph, _ = load_design(design)
        self.corrupt, self.answer_bytes = corrupt, answer_bytes
        self.timeout, self.closed = None, False
        self._input, self._output = bytearray(), bytearray()
        self._frames, self._sent = 0, 0
        in_port = self.manifest["ports"]["s_axis"]
        self._frame_size = (int(np.prod(self.manifest["input"]["shape"]))
                            * -(-in_port["lane_bits"] // 8))

    def write(self, data):
        self._input += data
        while len(self._input) >= self._frame_size:
            assert not self._output, "a frame sent before the last one's answer was read"
            frame, self._input = self._input[:self._frame_size], self._input[self._frame_size:]
            outputs, size, signed = _software_board_answer(self.manifest, self.qgraph,
                                                           bytes(frame))
            for index, code in enumerate(outputs.ravel()):
                if self.corrupt == (self._frames, index):
                    code += 1
                self._output += int(code).to_bytes(size, "little", signed=signed)
            self._frames += 1
        assert not (self._output and self._input), "a frame sent before the last one's answer"
        return len(data)

    def read(self, count):
        if self.answer_bytes is not None:
            count = min(count, self.answer_bytes - self._sent)
        data = bytes(self._output[:count])
        del self._output[:count]
        self._sent += len(data)
        return data

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    """A 6-5-4 MLP (4-bit inputs, signed 8-bit outputs) written as a design folder."""
    rng = np.random.default_rng(3)
    plan = tiny_mlp_plan(rng, (6, 5, 4))
    return hwgen.generate(plan, rng.normal(size=(6, 6)), frames=6).write(
        tmp_path_factory.mktemp("host") / "tiny")


def test_run_frames_returns_the_boards_codes_one_frame_at_a_time(design):
    manifest, qgraph, vectors = load_design(design)
    board = _SoftwareBoard(design)
    got = host.run_frames(board, design, vectors["inputs"], timeout=0.25)
    np.testing.assert_array_equal(got, vectors["outputs"])
    assert board.timeout == 0.25


@pytest.mark.parametrize("answer_bytes, message", [
    (0, "board sent 0 of 4 bytes for frame 0 (of 6) within the 0.5 s timeout — is the "
        "bitstream loaded and the baud rate right?"),
    (4 + 3, "board sent 3 of 4 bytes for frame 1 (of 6)"),
])
def test_run_frames_short_answer_is_a_timeout_error(design, answer_bytes, message):
    _, _, vectors = load_design(design)
    board = _SoftwareBoard(design, answer_bytes=answer_bytes)
    with pytest.raises(HwgenError, match=re.escape(message)):
        host.run_frames(board, design, vectors["inputs"], timeout=0.5)


def test_run_frames_reports_progress(design, monkeypatch):
    _, _, vectors = load_design(design)
    lines = []
    monkeypatch.setattr(host, "_PROGRESS_SECONDS", 0.0)
    host.run_frames(_SoftwareBoard(design), design, vectors["inputs"][:3], progress=lines.append)
    assert [line.split(":")[0] for line in lines] == ["frame 1/3", "frame 2/3", "frame 3/3"]
    assert all(line.endswith("frames/s") for line in lines)


def test_run_frames_rejects_codes_of_the_wrong_shape(design):
    with pytest.raises(HwgenError, match=r"takes \(frames, 6\) input codes, not an array of "
                                         r"shape \(2, 5\)"):
        host.run_frames(_SoftwareBoard(design), design, np.zeros((2, 5), dtype=np.int64))


def test_run_frames_over_pyserial_loop_url_echoes_the_frames():
    """loop:// sends every byte back: with equal input and output formats the 'board' is the
    identity, which checks open_port and run_frames on a real pyserial object."""
    pytest.importorskip("serial")
    manifest = _manifest(12, True, lanes=2, elements=4, outputs=4, out_lanes=2)
    codes = np.array([[-2048, 2047, -1, 0], [5, -6, 7, -8]])
    port = host.open_port("loop://", 115200, timeout=0.5)
    try:
        np.testing.assert_array_equal(host.run_frames(port, manifest, codes), codes)
    finally:
        port.close()


# --- hwgen run ----------------------------------------------------------------------------------

def _use_board(monkeypatch, board):
    opened = []

    def open_port(url, baud, timeout):
        opened.append((url, baud, timeout))
        return board

    monkeypatch.setattr(host, "open_port", open_port)
    return opened


def test_cli_run_passes_on_a_correct_board(design, monkeypatch, capsys):
    board = _SoftwareBoard(design)
    opened = _use_board(monkeypatch, board)
    assert main(["run", str(design), "--port", "/dev/ttyBOARD", "--baud", "57600"]) == 0
    out = capsys.readouterr().out
    assert opened[0][:2] == ("/dev/ttyBOARD", 57600)
    assert opened[0][2] == pytest.approx(1 + 2 * (6 + 4) * 10 / 57600)
    assert board.closed
    assert "board on /dev/ttyBOARD: 6 frames, 6 bytes in and 4 out per frame" in out
    assert "vs the integer reference: 24/24 exact (100.00%), 6/6 frames exact; largest " \
           "difference 0" in out
    assert "vs vectors.npz: 24/24 exact (100.00%)" in out
    assert "top-1 agreement with the reference: 100.00%" in out
    assert "frames/s" in out and "the bound at 57600 baud, one frame in flight: 576.0 frames/s" in out
    assert "PASS" in out


def test_cli_run_reports_a_wrong_code_and_exits_3(design, monkeypatch, capsys):
    _, _, vectors = load_design(design)
    _use_board(monkeypatch, _SoftwareBoard(design, corrupt=(2, 1)))
    assert main(["run", str(design), "--port", "/dev/ttyBOARD"]) == 3
    out = capsys.readouterr().out
    want = int(vectors["outputs"][2, 1])
    assert f"frame 2, output 1: expected {want}, got {want + 1}" in out
    assert "23/24 exact (95.83%), 5/6 frames exact; largest difference 1" in out
    assert "MISMATCH: 1 codes differ" in out


def test_cli_run_float_inputs_and_frames(design, monkeypatch, capsys, tmp_path):
    _use_board(monkeypatch, _SoftwareBoard(design))
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.random.default_rng(0).normal(size=(5, 6)))
    assert main(["run", str(design), "--port", "/dev/ttyBOARD", "--inputs", str(inputs),
                 "--frames", "3"]) == 0
    out = capsys.readouterr().out
    assert "3 frames" in out and "12/12 exact" in out and "vectors.npz" not in out


@pytest.mark.parametrize("args, message", [
    (["--inputs", "{tmp}/x.npy"], "model 'tiny' takes inputs of shape (N, 6), not (3, 5)"),
    (["--frames", "0"], "frames must be positive, not 0"),
    (["--timeout", "0.5"], "board sent 0 of 4 bytes for frame 0 (of 6) within the 0.5 s"),
])
def test_cli_run_errors_are_one_line(design, monkeypatch, capsys, tmp_path, args, message):
    np.save(tmp_path / "x.npy", np.zeros((3, 5)))
    _use_board(monkeypatch, _SoftwareBoard(design, answer_bytes=0))
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    assert main(["run", str(design), "--port", "/dev/ttyBOARD", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hwgen: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_run_without_a_design_is_an_error(tmp_path, capsys):
    assert main(["run", str(tmp_path), "--port", "loop://"]) == 1
    assert "is not a design folder (no manifest.json)" in capsys.readouterr().err


def test_cli_run_on_a_port_that_does_not_exist(design, tmp_path, capsys):
    pytest.importorskip("serial")
    port = str(tmp_path / "ttyUSB9")
    assert main(["run", str(design), "--port", port]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"hwgen: error: cannot open serial port {port!r}")
    assert err.count("\n") == 1


def test_cli_run_without_pyserial(design, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "serial", None)   # makes `import serial` fail
    assert main(["run", str(design), "--port", "/dev/ttyUSB0"]) == 1
    assert "talking to a board needs pyserial: pip install 'hwgen[synth]'" in \
        capsys.readouterr().err
