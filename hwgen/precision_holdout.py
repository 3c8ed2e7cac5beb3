"""Held-out confirmation of automatic bits: a seeded, stratified split of the labelled data, a
score bound on the accuracy drop, and the back-off when a choice fails.

A bit search scores hundreds of configurations on its samples and keeps the cheapest that meets
the limit, so the score of the winner is biased upwards: the winner is partly the configuration
that was luckiest on those samples. :func:`hwgen.choose_bits` therefore *selects* on one part
of the data and *confirms* on another that the search never looked at:

1. **Split** (:func:`split_samples`): ``holdout`` of the samples (default half) are held out,
   the same share of every class (labels ``y``, or the float model's class when there are no
   labels; no strata for the ``"close"`` metric), drawn with a seeded generator, so the same
   data always gives the same parts. Given separate confirmation data (``confirm=``, the CLI's
   ``--eval``), all of ``x`` selects instead.
2. **Bound** (:func:`drop_upper_bound`): on the confirmation part every sample is *lost* (the
   float model gets it right, the chosen bits do not), *gained* (the reverse) or neither. The
   drop in points is ``100 · (lost − gained) / n``; its one-sided upper confidence bound is the
   score bound for a difference of paired proportions (Tango's), which is Wilson's bound on
   ``lost / n`` when nothing is gained and, without labels (agreement with the float model,
   where nothing can be gained), exactly Wilson's bound on the disagreement. The float model's
   own errors are shared by both sides and add no uncertainty.
3. **Confirm**: a choice is confirmed when that bound is at most ``max_accuracy_drop``. With no
   sample lost the bound is ``z² / (n + z²)``, so a limit needs a confirmation part of at least
   :func:`samples_to_confirm` samples (268 for 1 point at 95 %). With fewer, a warning says so
   up front, the search is skipped and uniform base bits are kept.
4. **Back off** (:func:`confirmed_search`): a choice that fails is not returned; the selection
   limit (samples the selection part may lose) becomes at most half of what it was and fewer
   than the failed choice lost, and the search runs again. Once that limit would fall below 0,
   the search steps towards more bits instead: half way from the failed point to the
   least-noise end of the front (the board search: its next candidate that loses nothing on
   the selection). Halving bounds the number of confirmations (every look at the held-out part
   makes it a little less independent); when nothing is confirmed, uniform base bits are kept,
   and the result says so.

The chosen bits' accuracy on the confirmation part is reported with a two-sided Wilson interval
at the same confidence. Calibration ranges still come from all the calibration inputs, so the
held-out samples did set ranges (as they will when the model is quantized for the hardware); they
never scored a configuration before the confirmation.
"""

import dataclasses
import math
import warnings
from pathlib import Path
from statistics import NormalDist

import numpy as np

from .errors import HwgenError, HwgenWarning
from .quantize import load_calibration
from .reference import run_float, run_integer

__all__ = ["DEFAULT_HOLDOUT", "DEFAULT_CONFIDENCE", "MIN_PART_SAMPLES", "Split", "Confirmation",
           "Confirmer", "split_samples", "check_holdout", "check_confidence", "wilson_interval",
           "drop_upper_bound", "samples_to_confirm", "confirmation_parts", "confirmed_search"]

DEFAULT_HOLDOUT = 0.5
DEFAULT_CONFIDENCE = 0.95
MIN_PART_SAMPLES = 10
_BISECTIONS = 60          # halvings of [observed drop, 1]: far below one sample in 10^12


# -- the statistics -------------------------------------------------------------------------------

def _points(points):
    return f"{points:g} point{'' if points == 1 else 's'}"


def _percent(fraction):
    return f"{100 * fraction:.4g} %"


def _z(confidence):
    return NormalDist().inv_cdf(confidence)


def wilson_interval(correct, samples, confidence=DEFAULT_CONFIDENCE):
    """Two-sided Wilson score interval ``(low, high)``, as fractions, for ``correct`` of
    ``samples`` at ``confidence`` (each side holds ``(1 − confidence) / 2``)."""
    z = _z((1 + confidence) / 2)
    share = correct / samples
    scale = 1 + z * z / samples
    centre = (share + z * z / (2 * samples)) / scale
    half = z * math.sqrt(share * (1 - share) / samples + z * z / (4 * samples * samples)) / scale
    return max(centre - half, 0.0), min(centre + half, 1.0)


def _score(lost, gained, samples, drop):
    """Tango's score statistic for a true drop ``drop`` (a fraction), given the paired counts:
    ``(lost − gained − n·drop) / sd``, with the standard deviation of ``lost − gained`` at the
    most likely gain rate whose loss rate is that much higher."""
    if drop >= 1:
        return -math.inf
    # Restricted maximum likelihood of the gain rate q (the loss rate being q + drop): the
    # positive root of 2n·q² − w·q − gained·drop·(1 − drop) = 0.
    w = lost + gained - drop * (2 * samples - lost + gained)
    gain_rate = (w + math.sqrt(max(w * w + 8 * samples * gained * drop * (1 - drop), 0.0))) \
        / (4 * samples)
    variance = samples * (2 * gain_rate + drop - drop * drop)
    if variance <= 0:
        return -math.inf if lost - gained < samples * drop else math.inf
    return (lost - gained - samples * drop) / math.sqrt(variance)


def drop_upper_bound(lost, gained, samples, confidence=DEFAULT_CONFIDENCE):
    """One-sided upper confidence bound, as a fraction, of the drop ``(lost − gained) / n``.

    ``lost``: samples the reference (the float model) gets right and the candidate wrong;
    ``gained``: the reverse; both of the same ``samples``. The bound is the largest drop that
    the score test at level ``1 − confidence`` does not reject; with ``gained == 0`` it equals
    the upper Wilson bound of ``lost / samples``.
    """
    if not 0 <= lost + gained <= samples:
        raise ValueError(f"{lost} lost and {gained} gained of {samples} samples")
    limit = -_z(confidence)
    low, high = (lost - gained) / samples, 1.0
    if low >= 1:
        return 1.0
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        if _score(lost, gained, samples, middle) >= limit:
            low = middle
        else:
            high = middle
    return low


def samples_to_confirm(max_drop, confidence=DEFAULT_CONFIDENCE):
    """The fewest confirmation samples on which a drop of ``max_drop`` points can be confirmed
    at all: with none lost the bound is ``z² / (n + z²)``; ``None`` for a limit of 0."""
    limit = max_drop / 100
    if limit <= 0:
        return None
    z = _z(confidence)
    return max(math.ceil(z * z * (1 - limit) / limit - 1e-9), 1)


def check_holdout(holdout):
    """``holdout`` as a float in (0, 1), or a :class:`HwgenError`."""
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) \
            or not 0 < holdout < 1:
        raise HwgenError(f"holdout must be a fraction between 0 and 1 (exclusive), such as 0.5, "
                         f"not {holdout!r}")
    return float(holdout)


def check_confidence(confidence):
    """``confidence`` as a float in [0.5, 1), or a :class:`HwgenError`."""
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) \
            or not 0.5 <= confidence < 1:
        raise HwgenError(f"confidence must be a probability in [0.5, 1), such as 0.95, not "
                         f"{confidence!r}")
    return float(confidence)


# -- the split ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """Sample indices (sorted) of the ``selection`` and ``confirmation`` parts of a split of
    ``holdout`` of the samples, made with ``seed``; ``stratified``: the same share of every
    class."""

    selection: np.ndarray
    confirmation: np.ndarray
    holdout: float
    seed: int
    stratified: bool

    def describe(self, strata_name="label"):
        by = f"stratified by {strata_name}" if self.stratified else "not stratified"
        return f"{_percent(self.holdout)} of the data held out, {by}, seed {self.seed}"


def split_samples(count, strata=None, holdout=DEFAULT_HOLDOUT, seed=0):
    """Split ``count`` samples into a selection and a held-out confirmation part.

    ``round(holdout · count)`` samples are held out. With ``strata`` (one integer class per
    sample), every class gives its share, rounded so that the shares add up to that total
    (each class within one sample of ``holdout`` of its size). Within a class the samples are
    drawn by ``numpy.random.default_rng(seed)``: the same arguments give the same split.
    Each part needs :data:`MIN_PART_SAMPLES`; a :class:`HwgenError` says how many samples that
    takes.
    """
    holdout = check_holdout(holdout)
    held = math.floor(holdout * count + 0.5)
    if min(held, count - held) < MIN_PART_SAMPLES:
        needed = math.ceil(MIN_PART_SAMPLES / min(holdout, 1 - holdout) - 1e-9)
        while min(math.floor(holdout * needed + 0.5),
                  needed - math.floor(holdout * needed + 0.5)) < MIN_PART_SAMPLES:
            needed += 1
        raise HwgenError(
            f"bit allocation selects on one part of its {count} samples and confirms on the "
            f"other, each of at least {MIN_PART_SAMPLES}: with holdout {holdout:g} that needs "
            f"at least {needed} samples; give more data or separate confirmation data "
            "(confirm=, the CLI's --eval)")
    order = np.random.default_rng(seed).permutation(count)
    if strata is None:
        confirmation = order[:held]
    else:
        strata = np.asarray(strata)
        order = order[np.argsort(strata[order], kind="stable")]  # by class, random within
        _, starts, sizes = np.unique(strata[order], return_index=True, return_counts=True)
        ends = np.floor(holdout * np.cumsum(sizes) + 0.5).astype(np.int64)
        shares = np.diff(np.concatenate([[0], ends]))
        confirmation = np.concatenate([order[start:start + share]
                                       for start, share in zip(starts, shares)])
    mask = np.zeros(count, dtype=bool)
    mask[confirmation] = True
    return Split(selection=np.flatnonzero(~mask), confirmation=np.flatnonzero(mask),
                 holdout=holdout, seed=seed, stratified=strata is not None)


# -- confirmation ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Confirmation:
    """How the chosen bits did on samples the search never scored.

    ``source`` says where those samples came from; ``selection_samples`` and ``samples`` are the
    sizes of the two parts. On the confirmation part: ``float_correct``, ``base_correct``
    (uniform base bits) and ``correct`` (the chosen bits) count the samples scored right;
    ``lost`` / ``gained`` those the float model gets right and the chosen bits wrong / the
    reverse. Percentages: ``accuracy`` with its two-sided interval ``accuracy_low`` ..
    ``accuracy_high``; ``drop`` (points below float) and ``drop_bound``, its one-sided upper
    bound, both at ``confidence``. ``max_drop``: the limit (``None`` for a budget);
    ``confirmed``: ``drop_bound <= max_drop`` (``None`` without a limit); ``attempts``: choices
    put to confirmation; ``fallback``: no choice was confirmed and uniform base bits were kept
    (``note``: why none could be, when that was clear before the search).
    ``selection_accuracy`` and ``selection_float_accuracy``: the chosen bits and the float model
    on the selection part, for comparison.
    """

    source: str
    selection_samples: int
    samples: int
    confidence: float
    float_correct: int
    base_correct: int
    correct: int
    lost: int
    gained: int
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    drop: float
    drop_bound: float
    max_drop: float
    confirmed: bool
    selection_accuracy: float
    selection_float_accuracy: float
    attempts: int = 1
    fallback: bool = False
    note: str = None

    @property
    def float_accuracy(self):
        return 100.0 * self.float_correct / self.samples

    @property
    def base_accuracy(self):
        return 100.0 * self.base_correct / self.samples

    def summary(self):
        """One line: the confirmed accuracy, its interval and the bound on the drop."""
        level = _percent(self.confidence)
        line = (f"on {self.samples} held-out samples: {self.accuracy:.2f} % ({level} "
                f"interval {self.accuracy_low:.2f}–{self.accuracy_high:.2f} %), float "
                f"{self.float_accuracy:.2f} %; drop {self.drop:.2f} points ({self.lost} lost, "
                f"{self.gained} gained), at most {self.drop_bound:.2f} at {level} confidence")
        if self.max_drop is None:
            return line
        verdict = "confirmed" if self.confirmed else "NOT confirmed"
        return f"{line}: {verdict} within the limit of {self.max_drop:g}"

    def lines(self, metric, base_bits):
        """The lines :meth:`hwgen.precision.BitChoice.table` prints for this."""
        base = f"w{base_bits}a{base_bits}"
        lines = [f"  selected on {self.selection_samples} samples, confirmed on {self.samples} "
                 f"others ({self.source})",
                 f"  {metric} on the {self.samples} confirmation samples, integer reference:",
                 f"  float {self.float_accuracy:.2f} %, uniform {base} {self.base_accuracy:.2f} %, "
                 f"chosen {self.accuracy:.2f} % ({_percent(self.confidence)} interval "
                 f"{self.accuracy_low:.2f}–{self.accuracy_high:.2f} %)",
                 f"  drop {self.drop:.2f} points ({self.lost} "
                 f"sample{'' if self.lost == 1 else 's'} lost, {self.gained} gained), "
                 f"at most {self.drop_bound:.2f} at {_percent(self.confidence)} confidence"
                 + ("" if self.max_drop is None else
                    f": {'confirmed' if self.confirmed else 'NOT confirmed'} within "
                    f"{self.max_drop:g}"),
                 f"  on the selection samples: float {self.selection_float_accuracy:.2f} %, "
                 f"chosen {self.selection_accuracy:.2f} %; {self.attempts} choice"
                 f"{'s' if self.attempts != 1 else ''} put to confirmation"]
        if self.fallback:
            lines.append(f"  {self.note or 'no lower bits were confirmed'}: uniform {base} kept")
        return lines

    def to_json(self):
        data = dataclasses.asdict(self)
        data.update(float_accuracy=self.float_accuracy, base_accuracy=self.base_accuracy)
        return data


class Confirmer:
    """Scores quantized models on the confirmation samples and judges them against a limit.

    Parameters
    ----------
    x : float array
        The confirmation inputs.
    float_out : array ``(N, outputs)``
        The float model's outputs on them.
    metric
        An object whose ``correct(outputs)`` gives per-sample booleans (the selection's
        metric, with its targets for these samples).
    base_qgraph : QGraph
        Uniform base bits, scored once for the report.
    source : str
        Where the samples come from, for the report.
    selection_samples : int
    confidence : float
    max_drop : float or None
        The accuracy-drop limit in points.
    holdout : float or None
        The share of the data these samples are, when split off (for messages).
    """

    def __init__(self, x, float_out, metric, base_qgraph, *, source, selection_samples,
                 confidence=DEFAULT_CONFIDENCE, max_drop=None, holdout=None):
        self.x, self.metric, self.holdout = x, metric, holdout
        self.source, self.selection_samples = source, selection_samples
        self.confidence = check_confidence(confidence)
        self.max_drop = max_drop
        self.float_right = np.asarray(metric.correct(float_out), dtype=bool)
        self.attempts = 0
        self.base_correct = int(self._right(base_qgraph).sum())
        # Set when no choice could be confirmed whatever it scores: the search is then skipped
        # and uniform base bits are kept.
        self.note = self._unconfirmable()

    @property
    def samples(self):
        return len(self.x)

    def _unconfirmable(self):
        """Why no choice could be confirmed within ``max_drop`` on this many samples, or
        ``None``."""
        if self.max_drop is None:
            return None
        level = _percent(self.confidence)
        needed = samples_to_confirm(self.max_drop, self.confidence)
        if needed is None:
            return (f"a limit of 0 points can never be confirmed on a finite sample (at {level} "
                    "confidence); allow a drop above 0")
        if self.samples >= needed:
            return None
        best = 100 * drop_upper_bound(0, 0, self.samples, self.confidence)
        total = ("" if self.holdout is None else
                 f" ({math.ceil(needed / self.holdout - 1e-9)} labelled samples at holdout "
                 f"{self.holdout:g})")
        return (f"a limit of {_points(self.max_drop)} cannot be confirmed on {self.samples} "
                f"held-out samples at {level} confidence: even with none lost, the bound on the "
                f"drop is {best:.2f} points. It takes at least {needed} confirmation samples"
                f"{total}; give separate confirmation data (--eval DATA; confirm= in Python), "
                "more labelled data, a larger holdout, a lower confidence or a larger limit")

    def _right(self, qgraph):
        outputs = qgraph.output.dequantize(run_integer(qgraph, qgraph.input_codes(self.x)))
        return np.asarray(self.metric.correct(outputs.reshape(len(self.x), -1)), dtype=bool)

    def __call__(self, qgraph, selection_accuracy, selection_float_accuracy, fallback=False):
        """The :class:`Confirmation` of ``qgraph``, whose accuracy on the selection part was
        ``selection_accuracy`` (float model: ``selection_float_accuracy``), in percent."""
        self.attempts += 1
        right = self._right(qgraph)
        lost = int(np.sum(self.float_right & ~right))
        gained = int(np.sum(~self.float_right & right))
        correct = int(right.sum())
        low, high = wilson_interval(correct, self.samples, self.confidence)
        bound = 100 * drop_upper_bound(lost, gained, self.samples, self.confidence)
        return Confirmation(
            source=self.source, selection_samples=self.selection_samples, samples=self.samples,
            confidence=self.confidence, float_correct=int(self.float_right.sum()),
            base_correct=self.base_correct, correct=correct, lost=lost, gained=gained,
            accuracy=100.0 * correct / self.samples, accuracy_low=100 * low,
            accuracy_high=100 * high, drop=100.0 * (lost - gained) / self.samples,
            drop_bound=bound,
            max_drop=self.max_drop,
            confirmed=None if self.max_drop is None else bool(bound <= self.max_drop + 1e-9),
            selection_accuracy=selection_accuracy,
            selection_float_accuracy=selection_float_accuracy, attempts=self.attempts,
            fallback=fallback, note=self.note if fallback else None)


def confirmed_search(search, confirm, max_lost, say, step_up=None):
    """The first answer of ``search`` (or of ``step_up``) that ``confirm`` accepts.

    ``search(max_lost)`` returns ``(answer, lost)``, the answer it prefers among those losing at
    most ``max_lost`` selection samples against the float model (and the samples it lost), or
    ``None``; ``confirm(answer)`` returns its :class:`Confirmation`. After a failed
    confirmation the selection limit becomes ``min(lost − 1, max_lost // 2)``: stricter than
    the failed answer, and at most half. Once it would fall below 0, ``step_up(failed)``, if
    given, proposes the next answer towards more bits, until it returns ``None``. Both ways
    keep the number of confirmations logarithmic (each one is a look at the held-out samples,
    which makes them a little less independent). Returns ``(answer, confirmation)``, or
    ``(None, the last confirmation or None)``.
    """
    answer, confirmation = None, None
    while max_lost >= 0:
        found = search(max_lost)
        if found is None:
            break
        answer, lost = found
        confirmation = confirm(answer)
        say(f"candidate {confirmation.summary()}")
        if confirmation.confirmed:
            return answer, confirmation
        max_lost = min(lost - 1, max_lost // 2)
        if max_lost >= 0:
            say(f"backing off: the selection part may now lose at most {max_lost} "
                f"sample{'' if max_lost == 1 else 's'}")
    while step_up is not None and answer is not None:
        answer = step_up(answer)
        if answer is None:
            break
        confirmation = confirm(answer)
        say(f"backing off towards more bits: candidate {confirmation.summary()}")
        if confirmation.confirmed:
            return answer, confirmation
    return None, confirmation


def _confirmation_data(confirm):
    """``(inputs, labels or None, description)`` of a ``confirm=`` argument: a path to
    ``.npy``/``.npz`` (labels under ``y``), an ``(inputs, labels)`` pair or inputs."""
    if isinstance(confirm, (str, Path)):
        x, y = load_calibration(confirm, what="confirmation"), None
        if Path(confirm).suffix == ".npz":
            with np.load(confirm, allow_pickle=False) as data:
                y = data["y"] if "y" in data.files else None
        return x, y, repr(Path(confirm).name)
    if isinstance(confirm, tuple) and len(confirm) == 2:
        return np.asarray(confirm[0], dtype=np.float64), confirm[1], "separate data"
    return np.asarray(confirm, dtype=np.float64), None, "separate data"


def confirmation_parts(whole, labelled, confirm, holdout, seed, confidence, max_drop, say):
    """The evaluator the search selects with, and the :class:`Confirmer` of the other samples.

    ``whole`` is the evaluator (:mod:`hwgen.precision`) of all the samples, ``labelled`` whether
    they came with ``y``. Without ``confirm`` data, :func:`split_samples` holds ``holdout``
    (default :data:`DEFAULT_HOLDOUT`) of them out, stratified by ``whole``'s top-1 targets; with
    it, all of them select and ``confirm`` is scored like them (labels for both or neither).
    Warns (:class:`~hwgen.errors.HwgenWarning`) when ``max_drop`` cannot be confirmed on that
    many samples (``confirmer.note`` says why).
    """
    if confirm is None:
        split = split_samples(whole.samples,
                              whole.metric.target if whole.metric.kind == "top1" else None,
                              DEFAULT_HOLDOUT if holdout is None else holdout, seed)
        evaluator, part = whole.subset(split.selection), split.confirmation
        x, float_out, metric = whole.x[part], whole.float_out[part], whole.metric.subset(part)
        source = split.describe("label" if labelled else "the float model's class")
        holdout = split.holdout
    else:
        if holdout is not None:
            raise HwgenError("holdout splits the samples for the confirmation; with separate "
                             "confirmation data all of them select: give one of the two")
        x, y, source = _confirmation_data(confirm)
        if (y is not None) != labelled:
            raise HwgenError("the confirmation data must be scored like the selection data: "
                             "labels 'y' for both or for neither")
        if x.ndim == 0 or len(x) < MIN_PART_SAMPLES:
            raise HwgenError(f"the confirmation data needs at least {MIN_PART_SAMPLES} samples, "
                             f"not {0 if x.ndim == 0 else len(x)}")
        evaluator = whole
        float_out = run_float(whole.graph, x)
        float_out = float_out.reshape(len(float_out), -1)
        metric = whole.metric.like(float_out, y, whole.settings.tolerance)
    confirmer = Confirmer(x, float_out, metric, evaluator.base.qgraph, source=source,
                          selection_samples=evaluator.samples, confidence=confidence,
                          max_drop=max_drop, holdout=holdout)
    say(f"bits are selected on {evaluator.samples} samples and confirmed on {confirmer.samples} "
        f"others ({source})")
    if confirmer.note:
        warnings.warn(f"{confirmer.note}; keeping uniform base bits", HwgenWarning,
                      stacklevel=4)
    return evaluator, confirmer
