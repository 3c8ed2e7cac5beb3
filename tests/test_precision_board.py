"""Bits for the hardware (hwgen.precision_board): bit choices scored by the frames/s of the plan
sized for a board, on the digits MLP, selected on half of the images and confirmed on the other
half; every accuracy and rate re-measured here with quantize, the integer reference and
make_plan."""

from pathlib import Path

import numpy as np
import pytest

import hwgen
from hwgen.cli import main
from hwgen.errors import HwgenError
from hwgen.precision_board import choose_bits_for_board
from hwgen.precision_holdout import split_samples
from hwgen.reference import run_integer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits_mlp"
BOARD = "orangecrab_25f"


@pytest.fixture(scope="module")
def digits():
    data = np.load(EXAMPLE / "calib.npz")
    return hwgen.load(EXAMPLE / "digits_mlp.onnx"), data["x"], data["y"]


def _remeasure(graph, x, y, bits):
    """Accuracy (percent) on the confirmation half of the default split and frames/s on BOARD
    of ``bits``, computed here (ranges from all of ``x``)."""
    qgraph = hwgen.quantize(graph, x, bits)
    held = split_samples(len(x), y, 0.5, seed=0).confirmation
    codes = run_integer(qgraph, qgraph.input_codes(x[held]))
    accuracy = 100 * np.mean(codes.reshape(len(held), -1).argmax(1) == y[held])
    plan = hwgen.make_plan(qgraph, board=BOARD)
    return accuracy, plan.cost().frames_per_second


def test_best_accuracy_at_a_frame_rate(digits):
    graph, x, y = digits
    w8a8 = _remeasure(graph, x, y, "w8a8")[1]
    choice = choose_bits_for_board(graph, x, y, board=BOARD, min_fps=2 * w8a8)
    accuracy, rate = _remeasure(graph, x, y, choice.bits)
    assert rate >= 2 * w8a8 and choice.frames_per_second == rate
    assert choice.accuracy == pytest.approx(accuracy)
    assert choice.plan.board.name == BOARD and "frames/s" in choice.objective
    assert choice.bit_ops < choice.base_bit_ops           # still reported
    assert f"{rate:,.0f} frames/s" in repr(choice)
    assert choice.confirmation.samples == 128 and choice.confirmation.confirmed is None


def test_most_frames_within_an_accuracy_drop(digits):
    """3 points: on the 128 confirmation images a limit of 1 could never be confirmed."""
    graph, x, y = digits
    choice = choose_bits_for_board(graph, x, y, board=BOARD, max_accuracy_drop=3)
    accuracy, rate = _remeasure(graph, x, y, choice.bits)
    assert choice.accuracy == pytest.approx(accuracy)
    assert choice.confirmation.confirmed and not choice.confirmation.fallback
    assert choice.float_accuracy - accuracy <= choice.confirmation.drop_bound <= 3
    w8a8 = _remeasure(graph, x, y, "w8a8")[1]
    # Fewer bits buy frames: the answer is several times uniform w8a8's rate.
    assert rate >= 2 * w8a8, (rate, w8a8)
    # ... and at least as fast as the fewest-bit-operations answer of the same limit.
    by_bops = hwgen.choose_bits(graph, x, y, max_accuracy_drop=3)
    assert rate >= _remeasure(graph, x, y, by_bops.bits)[1]


def test_board_choice_confirmed_on_separate_data(digits):
    graph, x, y = digits
    choice = choose_bits_for_board(graph, x[:128], y[:128], board=BOARD, max_accuracy_drop=3,
                                   confirm=(x[128:], y[128:]))
    assert (choice.confirmation.selection_samples, choice.confirmation.samples) == (128, 128)
    qgraph = hwgen.quantize(graph, x[:128], choice.bits)
    codes = run_integer(qgraph, qgraph.input_codes(x[128:]))
    assert choice.accuracy == pytest.approx(100 * np.mean(codes.argmax(1) == y[128:]))
    assert choice.confirmation.confirmed and not choice.confirmation.fallback
    assert choice.confirmation.drop_bound <= 3 and choice.bit_ops < choice.base_bit_ops


def test_unreachable_rates_and_bad_targets_are_clear(digits):
    graph, x, y = digits
    with pytest.raises(HwgenError, match=r"reaches 1,000,000,000,000 frames/s.*fastest planned "
                                         r"reaches [\d,]+"):
        choose_bits_for_board(graph, x, y, board=BOARD, min_fps=1e12)
    with pytest.raises(HwgenError, match="exactly one of"):
        choose_bits_for_board(graph, x, y, board=BOARD)
    with pytest.raises(HwgenError, match="positive number"):
        choose_bits_for_board(graph, x, y, board=BOARD, min_fps=-3)


def test_cli_frame_rate_budget(tmp_path, capsys):
    args = ["build", str(EXAMPLE / "digits_mlp.onnx"), "--calib", str(EXAMPLE / "calib.npz"),
            "--bits", "auto"]
    assert main(args + ["--budget", "fps=5M", "-o", str(tmp_path / "a")]) == 1
    assert "give --board" in capsys.readouterr().err
    assert main(args + ["--max-accuracy-drop", "1", "--objective", "fps", "-o",
                        str(tmp_path / "b")]) == 1
    assert "give --board" in capsys.readouterr().err
    assert main(args + ["--budget", "fps=5M", "--board", BOARD, "-o",
                        str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "at least 5,000,000 frames/s on orangecrab_25f" in out
    manifest = (tmp_path / "c" / "manifest.json").read_text()
    assert '"frames_per_second"' in manifest
