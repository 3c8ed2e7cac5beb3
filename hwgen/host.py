"""The host's side of a bitstream's UART: send frames to the board, check what comes back.

:mod:`hwgen.board_top` puts the accelerator behind the board's UART; this module is the other
end of its byte protocol, written from the protocol (see that module's docstring), not from
the gateware, so that running it against a board checks the board top too:

- host → board: every input code of a frame in ``s_axis`` order (HWC, lane 0 first) as
  ``ceil(bits / 8)`` bytes, little-endian two's complement (plain binary when unsigned); no
  header, the board counts bytes.
- board → host: every output code the same way, ``ceil(out_bits / 8)`` bytes, sign-extended
  to whole bytes when the output is signed.

At 8N1 a byte is 10 bits on the line, so ``baud / 10`` bytes/s each way (11,520 at 115200).

One frame is in flight at a time: :func:`run_frames` writes a frame, reads all of its output
bytes, then writes the next. The board's receiver holds a single byte, and a byte that arrives
while the previous one still waits is lost without a trace; the byte counters of host and
board then disagree until the board is reset. Whether a second frame sent early would wait
that long depends on how much of a frame the accelerator's pipeline can buffer while its
output drains at UART speed, which the manifest does not say, so the host does not guess. The
cost is the output's bytes: a frame takes ``(bytes_in + bytes_out) / (baud / 10)`` seconds
instead of ``max(bytes_in, bytes_out) / (baud / 10)``.

>>> from hwgen.host import run_design
>>> result = run_design("out", "/dev/ttyUSB0")      # the design's own test vectors
>>> print(result.summary())
"""

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from .board_top import DEFAULT_BAUD
from .errors import HwgenError

__all__ = ["encode_frame", "decode_output", "frame_bytes", "default_timeout", "open_port",
           "run_frames", "BoardRun", "run_design"]

_BITS_PER_BYTE = 10   # 8N1: start bit, 8 data bits, stop bit
_PROGRESS_SECONDS = 1.0


def _formats(manifest):
    """``(fmt_in, fmt_out, in_features, out_features)`` of a manifest, checked."""
    from .sim.runner import stream_formats

    _, fmt_in, fmt_out, in_features, out_features = stream_formats(manifest)
    return fmt_in, fmt_out, in_features, out_features


def _manifest(design):
    """A manifest dict from a dict, a design folder or a ``manifest.json`` path."""
    if isinstance(design, dict):
        return design
    from .sim.runner import load_manifest

    path = Path(design)
    if path.is_dir():
        if not (path / "manifest.json").is_file():
            raise HwgenError(f"{str(path)!r} is not a design folder (no manifest.json); "
                             "create one with `hwgen build`")
        path = path / "manifest.json"
    return load_manifest(path)


def _code_bytes(bits):
    return -(-bits // 8)


def frame_bytes(manifest):
    """``(bytes_in, bytes_out)``: the bytes of one frame's input codes (host → board) and of
    its output codes (board → host)."""
    fmt_in, fmt_out, in_features, out_features = _formats(_manifest(manifest))
    return (in_features * _code_bytes(fmt_in.lane_bits),
            out_features * _code_bytes(fmt_out.lane_bits))


def default_timeout(manifest, baud=DEFAULT_BAUD):
    """Seconds :func:`run_frames` waits for a frame's answer by default: one second plus twice
    the time the frame's bytes take on the line each way at ``baud``."""
    bytes_in, bytes_out = frame_bytes(manifest)
    return 1.0 + 2 * (bytes_in + bytes_out) * _BITS_PER_BYTE / int(baud)


def encode_frame(codes, manifest):
    """The bytes the host sends for ``codes``.

    Parameters
    ----------
    codes : int array
        One frame (``in_features`` codes, any shape, in ``s_axis`` order) or several,
        ``(frames, in_features)`` or ``(frames, *input_shape)``; each within the input port's
        ``lane_bits``-bit signed or unsigned range.
    manifest : dict or path
        The design's manifest (or its folder).

    Returns
    -------
    bytes
        ``ceil(lane_bits / 8)`` bytes per code, little-endian; signed codes are sign-extended.
    """
    from .sim.runner import checked_codes

    manifest = _manifest(manifest)
    fmt_in, _, in_features, _ = _formats(manifest)
    codes = np.asarray(codes)
    if codes.size == 0 or codes.size % in_features:
        raise HwgenError(f"design {manifest['top']!r} takes frames of {in_features} input "
                         f"codes, not an array of shape {codes.shape}")
    codes = checked_codes(codes.reshape(-1, in_features), "input", in_features, fmt_in).ravel()
    size = _code_bytes(fmt_in.lane_bits)
    # int64 & mask is two's complement for negative codes; then byte k is bits [8k, 8k+8).
    words = codes & ((1 << (8 * size)) - 1)
    shifts = 8 * np.arange(size, dtype=np.int64)
    return ((words[:, None] >> shifts) & 0xFF).astype(np.uint8).tobytes()


def decode_output(data, manifest, frames):
    """The output codes in the bytes the board sent for ``frames`` frames.

    Parameters
    ----------
    data : bytes
        Exactly ``frames · bytes_out`` bytes.
    manifest : dict or path
    frames : int

    Returns
    -------
    int64 array ``(frames, out_features)``
        Each code from its ``ceil(out_bits / 8)`` little-endian bytes, read as two's complement
        when the output is signed. A board that breaks the protocol can send values outside
        the ``out_bits`` range; they are returned as they are (and then differ from the
        reference).
    """
    manifest = _manifest(manifest)
    _, fmt_out, _, out_features = _formats(manifest)
    frames = int(frames)
    size = _code_bytes(fmt_out.lane_bits)
    data = bytes(data)
    if frames < 1 or len(data) != frames * out_features * size:
        raise HwgenError(f"{frames} frames of design {manifest['top']!r} are "
                         f"{max(frames, 0) * out_features * size} bytes of output codes, "
                         f"not {len(data)}")
    raw = np.frombuffer(data, dtype=np.uint8).astype(np.int64).reshape(-1, size)
    values = (raw << (8 * np.arange(size, dtype=np.int64))).sum(axis=1)
    if fmt_out.signed:
        values -= (values >> (8 * size - 1)) << (8 * size)
    return values.reshape(frames, out_features)


def open_port(url, baud=DEFAULT_BAUD, timeout=1.0):
    """A serial port opened with pyserial's ``serial_for_url``: a device (``/dev/ttyUSB0``,
    ``COM3``) or any URL pyserial knows (``loop://``, ``socket://host:port``, ...), 8N1 at
    ``baud``, reads returning after ``timeout`` seconds at the latest."""
    try:
        import serial
    except ImportError:
        raise HwgenError("talking to a board needs pyserial: pip install 'hwgen[synth]' "
                         "(or pip install pyserial)") from None
    try:
        return serial.serial_for_url(url, baudrate=int(baud), timeout=timeout)
    except (serial.SerialException, ValueError) as error:
        raise HwgenError(f"cannot open serial port {url!r}: {error}") from None


def _seconds(port):
    timeout = getattr(port, "timeout", None)
    return f"{timeout:.3g} s" if isinstance(timeout, (int, float)) else "port's"


def run_frames(port, design, codes, *, timeout=None, progress=None):
    """Send each frame of ``codes`` to the board on ``port`` and read back its output codes,
    one frame in flight at a time (see the module docstring for why).

    Parameters
    ----------
    port : object
        Anything with ``write(bytes)`` and ``read(n)`` where ``read`` returns fewer than ``n``
        bytes only when the port's ``timeout`` passed: a :class:`serial.Serial`, or what
        :func:`open_port` returns. Bytes already waiting in it are discarded first when it has
        ``reset_input_buffer``.
    design : dict or path
        The design's manifest, its ``manifest.json`` or its folder.
    codes : int array ``(frames, in_features)`` or ``(frames, *input_shape)``
    timeout : float, optional
        Set as ``port.timeout``: a frame fails when a read gets no byte in that time. Default:
        the port's own.
    progress : callable(str), optional
        Receives a line about once a second (none for a run shorter than that), and one
        after the last frame of a run that got any.

    Returns
    -------
    int64 array ``(frames, out_features)``
        The board's output codes.

    Raises
    ------
    HwgenError
        When the board answers a frame with fewer bytes than its output codes take before the
        timeout.
    """
    manifest = _manifest(design)
    _, _, in_features, _ = _formats(manifest)
    codes = np.asarray(codes)
    if codes.ndim < 2 or math.prod(codes.shape[1:]) != in_features or len(codes) == 0:
        raise HwgenError(f"design {manifest['top']!r} takes (frames, {in_features}) input "
                         f"codes, not an array of shape {codes.shape}")
    data = encode_frame(codes, manifest)   # every code checked before anything is sent
    bytes_in, bytes_out = frame_bytes(manifest)
    frames = [data[start:start + bytes_in] for start in range(0, len(data), bytes_in)]
    if timeout is not None:
        port.timeout = timeout
    if hasattr(port, "reset_input_buffer"):
        port.reset_input_buffer()
    received = []
    started = reported = time.perf_counter()
    for index, frame in enumerate(frames):
        port.write(frame)
        answer = bytearray()
        while len(answer) < bytes_out:
            chunk = port.read(bytes_out - len(answer))
            if not chunk:
                raise HwgenError(
                    f"board sent {len(answer)} of {bytes_out} bytes for frame {index} (of "
                    f"{len(frames)}) within the {_seconds(port)} timeout — is "
                    "the bitstream loaded and the baud rate right? (after an interrupted run, "
                    "reset the board so its byte count starts again)")
            answer += chunk
        received.append(bytes(answer))
        now = time.perf_counter()
        if progress is not None and (now - reported >= _PROGRESS_SECONDS
                                     or index == len(frames) - 1 and reported > started):
            reported = now
            progress(f"frame {index + 1}/{len(frames)}: "
                     f"{(index + 1) / max(now - started, 1e-9):,.1f} frames/s")
    return decode_output(b"".join(received), manifest, len(frames))


@dataclasses.dataclass(frozen=True, eq=False)
class BoardRun:
    """The result of :func:`run_design`: the board's output codes beside hwgen's.

    Attributes
    ----------
    outputs : int64 array ``(frames, out_features)``
        What the board sent back.
    expected : int64 array ``(frames, out_features)``
        The integer reference's codes for the same inputs.
    vectors : int64 array or None
        ``vectors.npz``'s ``outputs`` for those frames, when the inputs were its own.
    output_shape : tuple
    out_bits : int
    out_signed : bool
    seconds : float
        Wall-clock time of :func:`run_frames`.
    bytes_in, bytes_out : int
        Bytes per frame each way.
    baud : int
        The link's baud rate (the port's own when it has one).
    port : str
    """

    outputs: np.ndarray
    expected: np.ndarray
    vectors: np.ndarray | None
    output_shape: tuple
    out_bits: int
    out_signed: bool
    seconds: float
    bytes_in: int
    bytes_out: int
    baud: int
    port: str

    @property
    def frames(self):
        return len(self.outputs)

    @property
    def passed(self):
        """Every output code equals the reference (and ``vectors.npz``, when compared)."""
        same = np.array_equal(self.outputs, self.expected)
        return same and (self.vectors is None or np.array_equal(self.outputs, self.vectors))

    @property
    def max_diff(self):
        return int(np.abs(self.outputs - self.expected).max())

    @property
    def mismatches(self):
        """``(frame, index, expected, got)`` of every code that differs from the reference."""
        return [(int(frame), int(index), int(self.expected[frame, index]),
                 int(self.outputs[frame, index]))
                for frame, index in np.argwhere(self.outputs != self.expected)]

    @property
    def top1(self):
        """Share of frames whose largest output code is where the reference's is (for vector
        outputs of more than one class), else None."""
        if len(self.output_shape) != 1 or self.output_shape[0] < 2:
            return None
        return float(np.mean(self.outputs.argmax(1) == self.expected.argmax(1)))

    @property
    def frames_per_second(self):
        return self.frames / self.seconds if self.seconds > 0 else math.inf

    def summary(self, max_mismatches=10):
        codes = self.outputs.size
        exact = int((self.outputs == self.expected).sum())
        frames_exact = int((self.outputs == self.expected).all(axis=1).sum())
        lines = [f"board on {self.port}: {self.frames} frames, {self.bytes_in} bytes in and "
                 f"{self.bytes_out} out per frame",
                 f"output codes vs the integer reference: {exact}/{codes} exact "
                 f"({exact / codes:.2%}), {frames_exact}/{self.frames} frames exact; largest "
                 f"difference {self.max_diff}"]
        if self.vectors is not None:
            same = int((self.outputs == self.vectors).sum())
            lines.append(f"output codes vs vectors.npz: {same}/{codes} exact ({same / codes:.2%})")
        if self.top1 is not None:
            lines.append(f"top-1 agreement with the reference: {self.top1:.2%}")
        rate = f"link: {self.frames_per_second:,.1f} frames/s ({self.seconds:.3f} s)"
        bound = self.baud / _BITS_PER_BYTE / (self.bytes_in + self.bytes_out)
        rate += f"; the bound at {self.baud} baud, one frame in flight: {bound:,.1f} frames/s"
        lines.append(rate)
        low, high = ((-(1 << (self.out_bits - 1)), (1 << (self.out_bits - 1)) - 1)
                     if self.out_signed else (0, (1 << self.out_bits) - 1))
        outside = int(((self.outputs < low) | (self.outputs > high)).sum())
        if outside:
            lines.append(f"{outside} codes outside the {self.out_bits}-bit output range: host "
                         "and board are out of step (reset the board and run again)")
        mismatches = self.mismatches
        if mismatches:
            lines.append(f"MISMATCH: {len(mismatches)} codes differ from the reference; first "
                         f"{min(len(mismatches), max_mismatches)}:")
            lines += [f"  frame {frame}, output {index}: expected {want}, got {got}"
                      for frame, index, want, got in mismatches[:max_mismatches]]
        elif self.vectors is not None and not self.passed:
            lines.append("MISMATCH: the reference and vectors.npz disagree: the design folder "
                         "is stale; build it again")
        else:
            lines.append("PASS: every output code matches")
        return "\n".join(lines)


def run_design(design, port, inputs=None, *, frames=None, baud=DEFAULT_BAUD, timeout=None,
               progress=None):
    """Run a design folder's frames on a board with its bitstream loaded and compare the output
    codes with hwgen's integer reference.

    Parameters
    ----------
    design : path
        A folder written by ``hwgen build`` (its bitstream from ``hwgen synth --bitstream``
        loaded on the board).
    port : str or port object
        A serial device or pyserial URL (opened with :func:`open_port` at ``baud``), or an open
        port (see :func:`run_frames`).
    inputs : float array or ``.npy``/``.npz`` path, optional
        Quantized with the design's input parameters, as ``hwgen sim --inputs``. Default: the
        design's ``vectors.npz``.
    frames : int, optional
        Only the first ``frames`` inputs.
    baud : int
        The baud rate the bitstream was built for (``hwgen synth --baud``).
    timeout : float, optional
        Seconds to wait for the board's bytes (default :func:`default_timeout`).
    progress : callable(str), optional

    Returns
    -------
    BoardRun
    """
    from .api import load_inputs
    from .emit import load_design
    from .reference import run_integer

    manifest, qgraph, vectors = load_design(design)
    if inputs is None:
        codes, expected_vectors = vectors["inputs"], vectors["outputs"]
    else:
        codes, expected_vectors = qgraph.input_codes(load_inputs(inputs)), None
    if frames is not None:
        if frames < 1:
            raise HwgenError(f"frames must be positive, not {frames}")
        codes = codes[:frames]
        expected_vectors = None if expected_vectors is None else expected_vectors[:frames]
    if len(codes) == 0:
        raise HwgenError("there are no frames to send")
    expected = run_integer(qgraph, codes)
    expected = expected.reshape(len(expected), -1)
    if timeout is None:
        timeout = default_timeout(manifest, baud)
    opened = isinstance(port, str)
    if opened:
        name, port = port, open_port(port, baud, timeout)
    else:
        name = str(getattr(port, "name", None) or type(port).__name__)
    try:
        started = time.perf_counter()
        outputs = run_frames(port, manifest, codes, timeout=timeout, progress=progress)
        seconds = time.perf_counter() - started
    finally:
        if opened:
            port.close()
    _, fmt_out, _, _ = _formats(manifest)
    bytes_in, bytes_out = frame_bytes(manifest)
    return BoardRun(outputs=outputs, expected=expected,
                    vectors=None if expected_vectors is None
                    else expected_vectors.reshape(len(expected_vectors), -1),
                    output_shape=tuple(manifest["output"]["shape"]),
                    out_bits=fmt_out.lane_bits, out_signed=fmt_out.signed,
                    seconds=seconds, bytes_in=bytes_in, bytes_out=bytes_out,
                    baud=int(getattr(port, "baudrate", None) or baud), port=name)
