"""Held-out confirmation of automatic bits (hwgen.precision_holdout): the bound against scipy's
Wilson intervals and its exact coverage, the seeded stratified split, the back-off, and
choose_bits / the CLI on small graphs, every confirmed figure re-measured here with quantize and
the integer reference."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from hwgen.cli import main
from hwgen.errors import HwgenError, HwgenWarning
from hwgen.graph import Graph
from hwgen.precision import choose_bits
from hwgen.precision_holdout import (DEFAULT_HOLDOUT, confirmed_search, drop_upper_bound,
                                     samples_to_confirm, split_samples, wilson_interval)
from hwgen.quantize import quantize
from hwgen.reference import run_float, run_integer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits_mlp"
SMALL_CHOICES = dict(weight_choices=(3, 4, 6, 8), act_choices=(3, 4, 6, 8))


def _mlp(seed, samples=600, outputs=6):
    rng = np.random.default_rng(seed)
    graph = Graph("mlp")
    x = graph.relu(graph.dense(graph.input((12,)), rng.normal(size=(16, 12)),
                               rng.normal(size=16) * 0.1, name="fc0"))
    graph.dense(x, rng.normal(size=(outputs, 16)), name="fc1")
    return graph, rng.normal(size=(samples, 12))


def _right(graph, calibration, bits, x, targets):
    """Per-sample top-1 hits of ``bits`` on ``x``, measured independently of the module."""
    qgraph = quantize(graph, calibration, bits)
    return run_integer(qgraph, qgraph.input_codes(x)).argmax(axis=1) == targets


# -- the statistics -------------------------------------------------------------------------------

@pytest.mark.parametrize("correct, samples", [(0, 10), (3, 10), (10, 10), (97, 100), (250, 540)])
@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_wilson_interval_is_scipys(correct, samples, confidence):
    expected = stats.binomtest(correct, samples).proportion_ci(confidence, method="wilson")
    assert wilson_interval(correct, samples, confidence) == pytest.approx(
        (expected.low, expected.high), abs=1e-12)


@pytest.mark.parametrize("lost, samples", [(0, 50), (1, 540), (5, 100), (30, 60)])
def test_without_gains_the_bound_is_wilsons_upper_bound(lost, samples):
    # A one-sided 95 % bound is the upper end of the two-sided 90 % interval.
    expected = stats.binomtest(lost, samples).proportion_ci(0.90, method="wilson").high
    assert drop_upper_bound(lost, 0, samples, 0.95) == pytest.approx(expected, abs=1e-9)


def test_the_bound_credits_gains_and_grows_with_losses():
    bounds = {(lost, gained): drop_upper_bound(lost, gained, 540)
              for lost in range(6) for gained in range(6)}
    for (lost, gained), bound in bounds.items():
        assert bound >= (lost - gained) / 540
        if lost < 5:
            assert bounds[lost + 1, gained] > bound
        if gained < 5:
            assert bounds[lost, gained + 1] < bound
    assert drop_upper_bound(60, 0, 60) == 1.0
    assert drop_upper_bound(0, 0, 100, 0.99) > drop_upper_bound(0, 0, 100, 0.9)


def test_the_bound_covers_the_true_drop():
    """Exact coverage on 60 samples: every (lost, gained) outcome weighted by its multinomial
    probability, for a grid of true loss and gain rates."""
    samples = 60
    bounds = {(lost, gained): drop_upper_bound(lost, gained, samples)
              for lost in range(samples + 1) for gained in range(samples + 1 - lost)}
    for loss_rate in (0.0, 0.01, 0.05, 0.1, 0.2):
        for gain_rate in (0.0, 0.01, 0.03, 0.1):
            drop = loss_rate - gain_rate
            covered = sum(stats.multinomial.pmf([lost, gained, samples - lost - gained], samples,
                                                [loss_rate, gain_rate, 1 - loss_rate - gain_rate])
                          for (lost, gained), bound in bounds.items() if bound >= drop - 1e-12)
            assert covered >= 0.92, (loss_rate, gain_rate, covered)


@pytest.mark.parametrize("points, confidence", [(1, 0.95), (0.5, 0.95), (3, 0.9), (10, 0.99)])
def test_samples_to_confirm_is_the_least_that_can_confirm(points, confidence):
    needed = samples_to_confirm(points, confidence)
    assert drop_upper_bound(0, 0, needed, confidence) <= points / 100 + 1e-12
    assert drop_upper_bound(0, 0, needed - 1, confidence) > points / 100
    assert samples_to_confirm(1) == 268 and samples_to_confirm(0) is None


# -- the split ------------------------------------------------------------------------------------

@pytest.mark.parametrize("holdout", [0.3, 0.4, 0.5, 0.6])
def test_split_is_stratified_and_deterministic(holdout):
    labels = np.repeat(np.arange(5), [7, 13, 40, 21, 19])
    np.random.default_rng(3).shuffle(labels)
    split = split_samples(len(labels), labels, holdout, seed=4)
    assert split.stratified
    assert len(split.confirmation) == int(np.floor(holdout * len(labels) + 0.5))
    assert sorted(np.concatenate([split.selection, split.confirmation])) == list(range(100))
    for label, size in zip(range(5), [7, 13, 40, 21, 19]):
        held = np.sum(labels[split.confirmation] == label)
        assert abs(held - holdout * size) < 1
    again = split_samples(len(labels), labels, holdout, seed=4)
    np.testing.assert_array_equal(split.confirmation, again.confirmation)
    other = split_samples(len(labels), labels, holdout, seed=5)
    assert not np.array_equal(split.confirmation, other.confirmation)
    assert "stratified by label, seed 4" in split.describe()


def test_split_without_strata():
    split = split_samples(31, None, 0.5, seed=0)
    assert not split.stratified and len(split.confirmation) == 16 and len(split.selection) == 15
    assert "not stratified" in split.describe()


@pytest.mark.parametrize("holdout", [0, 1, -0.2, 1.5, True, "0.5", float("nan")])
def test_a_holdout_outside_0_1_is_refused(holdout):
    with pytest.raises(HwgenError, match="holdout must be a fraction between 0 and 1"):
        split_samples(100, None, holdout)


@pytest.mark.parametrize("count, holdout, needed", [(15, 0.5, 20), (60, 0.1, 100), (25, 0.7, 34)])
def test_too_few_samples_to_split_says_how_many(count, holdout, needed):
    with pytest.raises(HwgenError, match=f"with holdout {holdout:g} that needs at least {needed} "
                                         "samples"):
        split_samples(count, None, holdout)
    split_samples(needed, None, holdout)


# -- the back-off ---------------------------------------------------------------------------------

class _Verdict:
    def __init__(self, confirmed):
        self.confirmed = confirmed

    def summary(self):
        return "confirmed" if self.confirmed else "not confirmed"


def _fake_search(lost, limits):
    """A search over answers named by the selection limit they are found at: the one at the
    largest limit within ``max_lost``, losing ``lost[limit]`` selection samples."""
    def search(max_lost):
        limits.append(max_lost)
        within = [limit for limit in lost if limit <= max_lost]
        return (f"at {max(within)}", lost[max(within)]) if within else None
    return search


def test_a_choice_that_fails_confirmation_is_not_returned():
    limits, confirmed = [], []

    def confirm(answer):
        confirmed.append(answer)
        return _Verdict(answer == "at 2")

    answer, verdict = confirmed_search(_fake_search({12: 12, 6: 5, 2: 2}, limits), confirm, 12,
                                       lambda line: None)
    assert answer == "at 2" and verdict.confirmed
    assert confirmed == ["at 12", "at 6", "at 2"]
    assert limits == [12, 6, 3]      # min(lost - 1, limit // 2) after each failure


def test_the_back_off_halves_then_steps_up_then_gives_up():
    limits, confirmed, steps = [], [], []

    def step_up(answer):
        steps.append(answer)
        return None if len(steps) == 3 else f"step {len(steps)}"

    lines = []
    answer, verdict = confirmed_search(
        _fake_search({20: 20, 10: 9, 4: 4, 1: 1}, limits),
        lambda answer: confirmed.append(answer) or _Verdict(False), 20, lines.append, step_up)
    assert answer is None and not verdict.confirmed
    assert limits == [20, 10, 5, 2, 0]
    assert confirmed == ["at 20", "at 10", "at 4", "at 1", "step 1", "step 2"]
    assert steps == ["at 1", "step 1", "step 2"]
    assert "backing off: the selection part may now lose at most 1 sample" not in lines
    assert "backing off: the selection part may now lose at most 2 samples" in lines


def test_the_first_confirmed_answer_is_returned():
    answers = iter(["cheap", "dear"])
    answer, verdict = confirmed_search(
        lambda max_lost: (next(answers), max_lost), lambda a: _Verdict(a == "dear"), 8,
        lambda line: None)
    assert answer == "dear" and verdict.confirmed


# -- choose_bits ----------------------------------------------------------------------------------

def test_the_confirmation_is_the_held_out_half_and_is_reported():
    graph, x = _mlp(seed=1)
    labels = run_float(graph, x).argmax(axis=1)
    choice = choose_bits(graph, x, labels, max_accuracy_drop=5, **SMALL_CHOICES)
    confirmation = choice.confirmation
    split = split_samples(len(x), labels, DEFAULT_HOLDOUT, seed=0)
    held = split.confirmation
    right = _right(graph, x, choice.bits, x[held], labels[held])
    assert (confirmation.selection_samples, confirmation.samples) == (300, 300)
    assert choice.samples == 300 and confirmation.correct == right.sum()
    assert choice.accuracy == pytest.approx(100 * right.mean())
    assert choice.float_accuracy == 100.0 and confirmation.lost == (~right).sum()
    low, high = stats.binomtest(int(right.sum()), 300).proportion_ci(0.95, method="wilson")
    assert (confirmation.accuracy_low, confirmation.accuracy_high) == pytest.approx(
        (100 * low, 100 * high))
    assert confirmation.drop_bound == pytest.approx(
        100 * drop_upper_bound(int((~right).sum()), 0, 300))
    assert confirmation.confirmed and confirmation.drop_bound <= 5
    assert choice.bit_ops < choice.base_bit_ops
    table = choice.table()
    assert "selected on 300 samples, confirmed on 300 others (50 % of the data held out, " \
           "stratified by label, seed 0)" in table
    assert f"(95 % interval {100 * low:.2f}–{100 * high:.2f} %)" in table
    assert "confirmed within 5" in table
    data = json.loads(json.dumps(choice.to_json()))["confirmation"]
    assert data["samples"] == 300 and data["accuracy_low"] == pytest.approx(100 * low)


def test_a_candidate_that_fails_is_replaced_by_more_bits():
    """Selected on ordinary inputs, confirmed on inputs near the float model's decision
    boundaries, where fewer bits flip more answers: the first candidate fails."""
    graph, x = _mlp(seed=2)
    labels = run_float(graph, x).argmax(axis=1)
    pool = np.random.default_rng(9).normal(size=(500, 12))
    logits = np.sort(run_float(graph, pool), axis=1)
    near = pool[np.argsort(logits[:, -1] - logits[:, -2])[:300]]
    near_labels = run_float(graph, near).argmax(axis=1)
    lines = []
    choice = choose_bits(graph, x, labels, max_accuracy_drop=5, confirm=(near, near_labels),
                         progress=lines.append, **SMALL_CHOICES)
    failed = [line for line in lines if "NOT confirmed" in line]
    assert len(failed) == 1 and choice.confirmation.attempts == 2
    right = _right(graph, x, choice.bits, near, near_labels)
    assert 100 * drop_upper_bound(int((~right).sum()), 0, 300) <= 5
    assert choice.confirmation.confirmed and not choice.confirmation.fallback
    assert choice.confirmation.selection_samples == 600
    assert choice.bit_ops < choice.base_bit_ops


def test_when_nothing_is_confirmed_the_base_bits_are_kept_and_said():
    graph, x = _mlp(seed=2)
    labels = run_float(graph, x).argmax(axis=1)
    pool = np.random.default_rng(9).normal(size=(2000, 12))
    logits = np.sort(run_float(graph, pool), axis=1)
    near = pool[np.argsort(logits[:, -1] - logits[:, -2])[:300]]
    lines = []
    choice = choose_bits(graph, x, labels, max_accuracy_drop=5,
                         confirm=(near, run_float(graph, near).argmax(axis=1)),
                         progress=lines.append, **SMALL_CHOICES)
    assert choice.confirmation.fallback and not choice.confirmation.confirmed
    assert choice.bit_ops == choice.base_bit_ops
    assert "no lower bits were confirmed; keeping uniform w8a8" in lines
    assert "no lower bits were confirmed: uniform w8a8 kept" in choice.table()


def test_agreement_without_labels_uses_the_same_split_and_bound():
    graph, x = _mlp(seed=3)
    choice = choose_bits(graph, x, max_accuracy_drop=5, **SMALL_CHOICES)
    float_class = run_float(graph, x).argmax(axis=1)
    held = split_samples(len(x), float_class, DEFAULT_HOLDOUT, seed=0).confirmation
    agree = _right(graph, x, choice.bits, x[held], float_class[held])
    confirmation = choice.confirmation
    assert confirmation.gained == 0 and confirmation.float_accuracy == 100.0
    assert confirmation.lost == (~agree).sum()
    assert confirmation.drop_bound == pytest.approx(
        100 * stats.binomtest(int((~agree).sum()), 300).proportion_ci(0.9, method="wilson").high)
    assert "stratified by the float model's class" in confirmation.source


def test_a_regression_output_is_split_without_strata():
    graph, x = _mlp(seed=4, outputs=1)
    choice = choose_bits(graph, x, max_accuracy_drop=5, **SMALL_CHOICES)
    held = split_samples(len(x), None, DEFAULT_HOLDOUT, seed=0).confirmation
    qgraph = quantize(graph, x, choice.bits)
    outputs = qgraph.output.dequantize(run_integer(qgraph, qgraph.input_codes(x[held])))
    float_all = run_float(graph, x)
    limit = 0.05 * (float_all.max() - float_all.min())   # the span of all the samples
    close = np.all(np.abs(outputs - float_all[held]) <= limit, axis=1)
    assert choice.accuracy == pytest.approx(100 * close.mean())
    assert "not stratified" in choice.confirmation.source


def test_confirmation_data_from_a_file(tmp_path):
    graph, x = _mlp(seed=1)
    labels = run_float(graph, x).argmax(axis=1)
    other = np.random.default_rng(11).normal(size=(300, 12))
    np.savez(tmp_path / "held.npz", x=other, y=run_float(graph, other).argmax(axis=1))
    choice = choose_bits(graph, x, labels, budget="bops=60%", confirm=tmp_path / "held.npz",
                         **SMALL_CHOICES)
    confirmation = choice.confirmation
    assert (confirmation.selection_samples, confirmation.samples) == (600, 300)
    assert confirmation.source == "'held.npz'" and confirmation.confirmed is None
    right = _right(graph, x, choice.bits, other, run_float(graph, other).argmax(axis=1))
    assert choice.accuracy == pytest.approx(100 * right.mean())


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_accuracy_drop=1), r"a limit of 1 point cannot be confirmed on 100 held-out "
                                r"samples at 95 % confidence: .* at least 268 confirmation "
                                r"samples \(536 labelled samples at holdout 0.5\)"),
    (dict(max_accuracy_drop=0), "a limit of 0 points can never be confirmed"),
    (dict(max_accuracy_drop=2, confirm=(np.zeros((130, 12)), np.zeros(130, int))),
     r"a limit of 2 points cannot be confirmed on 130 held-out samples .* at least 133 "
     r"confirmation samples; give separate"),
])
def test_a_limit_too_small_for_the_confirmation_keeps_the_base_bits(kwargs, message):
    graph, x = _mlp(seed=1, samples=200)
    labels = run_float(graph, x).argmax(axis=1)
    lines = []
    with pytest.warns(HwgenWarning, match=message):
        choice = choose_bits(graph, x, labels, progress=lines.append, **SMALL_CHOICES, **kwargs)
    confirmation = choice.confirmation
    assert confirmation.fallback and confirmation.attempts == 1 and confirmation.note
    assert choice.bit_ops == choice.base_bit_ops
    assert not any(line.startswith("front point") for line in lines)     # no search
    assert "the limit cannot be confirmed on these samples; keeping uniform w8a8" in lines
    assert f"{confirmation.note}: uniform w8a8 kept" in choice.table()


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_accuracy_drop=5, holdout=0), "holdout must be a fraction between 0 and 1"),
    (dict(max_accuracy_drop=5, confidence=1), r"confidence must be a probability in \[0.5, 1\)"),
    (dict(max_accuracy_drop=5, holdout=0.5, confirm="x"), "give one of the two"),
    (dict(max_accuracy_drop=5, confirm=np.zeros((50, 12))), "labels 'y' for both or for neither"),
    (dict(max_accuracy_drop=5, confirm=(np.zeros((5, 12)), np.zeros(5, int))),
     "needs at least 10 samples, not 5"),
])
def test_confirmation_errors_are_explained(kwargs, message):
    graph, x = _mlp(seed=1, samples=200)
    labels = run_float(graph, x).argmax(axis=1)
    with pytest.raises(HwgenError, match=message):
        choose_bits(graph, x, labels, **SMALL_CHOICES, **kwargs)


# -- the command line -----------------------------------------------------------------------------

def test_cli_eval_is_the_confirmation_set(tmp_path, capsys):
    with np.load(EXAMPLE / "calib.npz") as data:
        np.savez(tmp_path / "eval.npz", x=data["x"][:100], y=data["y"][:100])
    out = tmp_path / "out"
    assert main(["build", str(EXAMPLE / "digits_mlp.onnx"), "--calib", str(EXAMPLE / "calib.npz"),
                 "--eval", str(tmp_path / "eval.npz"), "--bits", "auto", "--budget", "bops=40%",
                 "-o", str(out)]) == 0
    confirmation = json.loads((out / "manifest.json").read_text())["precision"]["confirmation"]
    assert (confirmation["selection_samples"], confirmation["samples"]) == (256, 100)
    assert confirmation["source"] == "'eval.npz'"
    err = capsys.readouterr().err
    assert "bits are selected on 256 samples and confirmed on 100 others ('eval.npz')" in err
    assert (f"chosen bits on 100 held-out samples: {confirmation['accuracy']:.2f} % (95 % "
            f"interval {confirmation['accuracy_low']:.2f}–") in err
    assert "selected on 256 samples, confirmed on 100 others" in (out / "report.md").read_text()


def test_cli_holdout_splits_calib(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["build", str(EXAMPLE / "digits_mlp.onnx"), "--calib", str(EXAMPLE / "calib.npz"),
                 "--bits", "auto", "--max-accuracy-drop", "4", "--holdout", "0.6",
                 "--confidence", "0.9", "-o", str(out)]) == 0
    precision = json.loads((out / "manifest.json").read_text())["precision"]
    confirmation = precision["confirmation"]
    assert (confirmation["selection_samples"], confirmation["samples"]) == (102, 154)
    assert confirmation["confidence"] == 0.9 and precision["samples"] == 154
    assert confirmation["confirmed"] and confirmation["drop_bound"] <= 4
    assert "chosen bits on 154 held-out samples" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--holdout", "0.3"], "use them with --bits auto"),
    (["--confidence", "0.9"], "use them with --bits auto"),
    (["--bits", "auto", "--budget", "bops=50%", "--holdout", "0.3", "--eval",
      str(EXAMPLE / "calib.npz")], "give one of them"),
    (["--bits", "auto", "--budget", "bops=50%", "--holdout", "1.5"],
     "holdout must be a fraction between 0 and 1"),
])
def test_cli_confirmation_errors(tmp_path, capsys, args, message):
    assert main(["build", str(EXAMPLE / "digits_mlp.onnx"), "--calib",
                 str(EXAMPLE / "calib.npz"), "-o", str(tmp_path / "out"), *args]) == 1
    assert message in capsys.readouterr().err


def test_cli_warns_when_the_limit_cannot_be_confirmed(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["build", str(EXAMPLE / "digits_mlp.onnx"), "--calib", str(EXAMPLE / "calib.npz"),
                 "--bits", "auto", "--max-accuracy-drop", "1", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert ("hwgen: warning: a limit of 1 point cannot be confirmed on 128 held-out samples at "
            "95 % confidence") in err
    assert "at least 268 confirmation samples (536 labelled samples at holdout 0.5)" in err
    precision = json.loads((out / "manifest.json").read_text())["precision"]
    assert precision["confirmation"]["fallback"] and precision["bit_ops_saved"] == 0
