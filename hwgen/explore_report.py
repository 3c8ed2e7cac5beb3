"""The result of :func:`hwgen.explore`: the rows as a pandas DataFrame, Pareto fronts over any
two or three columns, matplotlib plots, and the files of an exploration folder.

``DIR/results.csv`` (and ``results.parquet`` when pyarrow is installed) holds every point;
``DIR/pareto_fps.png`` plots accuracy against frames/s and ``DIR/pareto_energy.png``
accuracy against energy per inference, the Pareto points joined; ``DIR/energy.png`` stacks the
energy breakdown (arithmetic, on-chip memory, registers, I/O, static) of the Pareto points;
``DIR/report.html`` shows the plots, the Pareto tables and the whole table.
"""

import html
import math
from pathlib import Path

from .errors import HwgenError
from .notebook import frame_html

__all__ = ["Exploration", "DIRECTIONS", "pareto_front"]

# Whether a larger value of a column is better ("max") or worse ("min").
DIRECTIONS = {
    "accuracy": "max", "agreement": "max", "frames_per_s": "max", "synth_frames_per_s": "max",
    "fmax_mhz": "max", "fits": "max",
    "energy_nj": "min", "energy_measured_nj": "min", "latency_us": "min",
    "latency_cycles": "min", "ii": "min", "lut": "min", "ff": "min", "dsp": "min", "bram": "min",
    "max_util": "min", "bit_ops": "min", "weight_bits": "min", "multipliers": "min",
    "synth_lut": "min", "synth_ff": "min", "synth_dsp": "min", "synth_bram": "min",
}
ENERGY_PARTS = ("arithmetic", "memory", "registers", "io", "static")
SETTINGS = ("bits", "parallelism", "board", "multiplier_kinds", "unroll", "target")


def _direction(column):
    """``(name, "max" | "min")`` of ``"col"``, ``"col:max"`` or ``"col:min"``."""
    name, _, direction = column.partition(":")
    direction = direction or DIRECTIONS.get(name)
    if direction not in ("max", "min"):
        raise HwgenError(f"say whether more {name!r} is better: '{name}:max' or '{name}:min'")
    return name, direction


def pareto_front(table, *columns, fits_only=True):
    """The rows of ``table`` (a DataFrame) that no other row beats: at least as good in every
    column of ``columns`` (2 or 3, as :func:`_direction` reads them) and better in one. Rows
    with an error or a missing value, and unless not ``fits_only`` the designs that do not fit
    their board, are left out; the result is sorted by the first column."""
    if not 2 <= len(columns) <= 3:
        raise HwgenError(f"a Pareto front is over two or three columns, not {len(columns)}")
    directions = [_direction(column) for column in columns]
    for name, _ in directions:
        if name not in table.columns:
            raise HwgenError(f"no column {name!r}; the columns are: {', '.join(table.columns)}")
    names = [name for name, _ in directions]
    valid = table[(table["error"] == "") & table[names].notna().all(axis=1)]
    if fits_only and "fits" in valid.columns:
        valid = valid[valid["fits"] == True]  # noqa: E712 (a column of booleans and NaN)
    # Larger is better in every column once the "min" ones are negated.
    values = [[float(row[name]) * (1 if direction == "max" else -1)
               for name, direction in directions] for _, row in valid.iterrows()]
    keep = [not any(all(o >= v for o, v in zip(other, value)) and other != value
                    for other in values) for value in values]
    front = valid[keep]
    return front.sort_values(names[0], kind="stable").reset_index(drop=True)


class Exploration:
    """Every point of a sweep (see :mod:`hwgen.explore`).

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per point, in sweep order: the settings, ``error`` (empty when the point was
        evaluated), accuracy, resources, II, latency, frames/s, energy, and with synthesis or
        simulation their columns; ``key`` is the point's cache key (its first 12 digits).
    log : pandas.DataFrame
        Per point: ``key``, whether it came from the cache, and its CPU seconds.
    seconds : float
        Wall time of the sweep.
    computed : int
        Points evaluated (the others came from the cache).
    """

    def __init__(self, rows, log, *, seconds, computed, samples):
        import pandas as pd

        self.frame = pd.DataFrame(rows)
        first = [c for c in ("key", *SETTINGS, "error") if c in self.frame.columns]
        self.frame = self.frame[first + [c for c in self.frame.columns if c not in first]]
        self.log = pd.DataFrame(log)
        self.seconds, self.computed, self.samples = seconds, computed, samples

    def __len__(self):
        return len(self.frame)

    def pareto(self, *columns, fits_only=True):
        """The non-dominated points over two or three columns, e.g.
        ``pareto("frames_per_s", "accuracy")`` or ``pareto("energy_nj", "accuracy", "lut")``;
        a column's direction is known for the standard columns (:data:`DIRECTIONS`) or given
        as ``"column:max"`` / ``"column:min"``. Designs that do not fit their board take part
        only with ``fits_only=False``."""
        return pareto_front(self.frame, *columns, fits_only=fits_only)

    def summary(self):
        errors = int((self.frame["error"] != "").sum())
        cached = len(self.frame) - self.computed
        return (f"exploration: {len(self.frame)} points ({self.computed} computed, {cached} "
                f"from the cache, {errors} with errors) in {self.seconds:.1f} s; accuracy on "
                f"{self.samples} samples, integer reference")

    def __repr__(self):
        return self.summary()

    def _repr_html_(self):
        return frame_html(self.frame, self.summary())

    def plot(self, x="frames_per_s", y="accuracy", *, by="board", ax=None, logx=None):
        """Scatter ``y`` against ``x``, one colour per value of ``by``, the Pareto front of the
        two joined; returns the matplotlib axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6.4, 4.4))
        valid = self.frame[self.frame["error"] == ""]
        for value, group in valid.groupby(by, sort=True):
            ax.scatter(group[x], group[y], label=f"{by} {value}", alpha=0.8)
        front = self.pareto(x, y)
        if len(front):
            ax.plot(front[x], front[y], "k--", linewidth=1, label="Pareto front")
        if logx if logx is not None else _wide(valid[x]):
            ax.set_xscale("log")
        ax.set_xlabel(_AXIS_LABELS.get(x, x))
        ax.set_ylabel(_AXIS_LABELS.get(y, y))
        ax.legend(fontsize="small")
        ax.grid(True, alpha=0.3)
        return ax

    def plot_energy(self, points=None, ax=None):
        """Stacked bars of the energy breakdown (nJ per inference) of ``points`` (a DataFrame;
        default the Pareto front of energy and accuracy); returns the axes."""
        import matplotlib.pyplot as plt

        points = self.pareto("energy_nj", "accuracy") if points is None else points
        if ax is None:
            _, ax = plt.subplots(figsize=(7.2, 4.4))
        bottom = [0.0] * len(points)
        labels = [f"{row.bits}\n{row.parallelism} {row.board}" for row in points.itertuples()]
        for part in ENERGY_PARTS:
            values = list(points[f"energy_{part}_nj"])
            ax.bar(range(len(points)), values, bottom=bottom, label=part)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_xticks(range(len(points)), labels, fontsize="x-small")
        ax.set_ylabel("energy per inference (nJ, estimate)")
        ax.legend(fontsize="small")
        return ax

    def write(self, folder):
        """Write ``results.csv`` (and ``results.parquet`` with pyarrow), the plots and
        ``report.html`` into ``folder``; returns its path."""
        import importlib.util

        import matplotlib
        import matplotlib.pyplot as plt

        out = Path(folder)
        try:
            out.mkdir(parents=True, exist_ok=True)
            self.frame.to_csv(out / "results.csv", index=False)
            if importlib.util.find_spec("pyarrow") is not None:
                self.frame.to_parquet(out / "results.parquet", index=False)
        except OSError as error:
            raise HwgenError(f"cannot write the results to {str(out)!r}: {error}") from None
        images = []
        valid = (self.frame["error"] == "").any()
        if valid:
            with matplotlib.rc_context({"backend": "agg"}):
                for name, (x, y) in (("pareto_fps.png", ("frames_per_s", "accuracy")),
                                     ("pareto_energy.png", ("energy_nj", "accuracy"))):
                    figure, ax = plt.subplots(figsize=(6.4, 4.4))
                    self.plot(x, y, ax=ax)
                    figure.tight_layout()
                    figure.savefig(out / name, dpi=110)
                    plt.close(figure)
                    images.append(name)
                figure, ax = plt.subplots(figsize=(7.2, 4.4))
                self.plot_energy(ax=ax)
                figure.tight_layout()
                figure.savefig(out / "energy.png", dpi=110)
                plt.close(figure)
                images.append("energy.png")
        (out / "report.html").write_text(self._report(images, valid))
        return out

    def _report(self, images, valid):
        parts = ["<!doctype html><html><head><meta charset='utf-8'><title>hwgen exploration"
                 "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:"
                 "collapse;font-size:0.8em}td,th{padding:2px 6px;border-bottom:1px solid #ddd}"
                 "</style></head><body>", "<h1>hwgen design-space exploration</h1>",
                 f"<p>{html.escape(self.summary())}. Resources, II and energy are hwgen's "
                 "models (energy: an estimate, see docs/explore.md); accuracy is measured with "
                 "the bit-exact integer reference.</p>"]
        parts += [f"<img src='{name}' alt='{name}'>" for name in images]
        if valid:
            for columns in (("frames_per_s", "accuracy"), ("energy_nj", "accuracy")):
                front = self.pareto(*columns)
                shown = [c for c in ("key", *SETTINGS, "accuracy", "frames_per_s", "energy_nj",
                                     *(f"energy_{p}_nj" for p in ENERGY_PARTS), "lut", "ff",
                                     "dsp", "bram", "fits", "ii", "latency_us")
                         if c in front.columns]
                parts.append(frame_html(front[shown], f"Pareto front: {columns[1]} against "
                                                      f"{columns[0]}"))
        parts.append(frame_html(self.frame, "All points"))
        parts.append("</body></html>")
        return "\n".join(parts)


_AXIS_LABELS = {"frames_per_s": "frames/s at the board's clock (model)",
                "accuracy": "accuracy (%, integer reference)",
                "energy_nj": "energy per inference (nJ, estimate)",
                "latency_us": "latency (µs)", "lut": "LUTs (model)"}


def _wide(values):
    values = [v for v in values if v and v > 0 and math.isfinite(v)]
    return len(values) > 1 and max(values) / min(values) > 30
