"""The notebook side of hwgen: tables as pandas DataFrames, HTML for Jupyter's rich display, and
progress bars (tqdm: a widget in a notebook, a text bar in a terminal).

Each object of the flow renders as an HTML table when it ends a cell: ``Graph``, ``QGraph``,
``Design``, ``ParetoFront``, ``EnergyReport`` and the exploration result define
``_repr_html_`` with :func:`frame_html`; :func:`plan_html` and :func:`sim_result_html` are the
same for ``Plan`` and ``SimResult``. pandas is imported only when a table is made.

Progress: functions that take ``progress`` accept a callable of one string (as everywhere in
hwgen), ``True`` for a bar (:class:`StepBar`), or ``None``/``False`` for silence;
:func:`progress_callback` turns that argument into a callable.
"""

import html

__all__ = ["frame", "frame_html", "plan_table", "plan_html", "design_table", "sim_result_table",
           "sim_result_html", "progress_bar", "StepBar", "progress_callback"]


def frame(rows, columns=None):
    """A pandas DataFrame of ``rows`` (dicts), columns in the order given."""
    import pandas as pd
    return pd.DataFrame(rows, columns=columns)


def frame_html(table, title=None, notes=()):
    """HTML of a DataFrame under a bold ``title``, with ``notes`` as lines below it."""
    parts = [f"<p><b>{html.escape(title)}</b></p>"] if title else []
    parts.append(table.to_html(index=False, na_rep="", escape=True, border=0,
                               float_format=lambda value: f"{value:,.4g}"))
    parts += [f"<p>{html.escape(note)}</p>" for note in notes]
    return "<div>" + "".join(parts) + "</div>"


def plan_table(plan):
    """One row per planned layer: engine, folding, multiplier kind, where its weights go
    (``auto`` or ``bram``), lanes, bits, cycles and the engine's busy fraction."""
    rows = []
    for layer_plan in plan.layers:
        layer = layer_plan.layer
        weight = f"w{layer.weight_bits}" if hasattr(layer, "weight_bits") else ""
        rows.append({"layer": layer_plan.name, "engine": layer_plan.engine,
                     "folding": layer_plan.describe().partition(":")[2].partition(":")[0],
                     "multiplier": layer_plan.multiplier_label,
                     "weights": layer_plan.weights_in or "",
                     "in_lanes": layer_plan.in_lanes,
                     "bits": f"{weight}a{layer.act_bits}", "multipliers": layer_plan.multipliers,
                     "cycles": layer_plan.cycles, "busy": layer_plan.utilization})
    return frame(rows)


def plan_html(plan):
    """``Plan._repr_html_``: the plan's table under its initiation interval and bottleneck."""
    board = f" for {plan.board.name}" if plan.board is not None else ""
    return frame_html(plan_table(plan), f"Plan {plan.name!r}{board}: II "
                      f"{plan.initiation_interval} cycles/frame, {plan.multipliers} multipliers, "
                      f"bottleneck {plan.bottleneck}")


def design_table(design):
    """One row per layer of a generated design, from its manifest."""
    rows = [{"layer": layer["name"], "op": layer["op"],
             "output": "×".join(map(str, layer["output_shape"])),
             "bits": (f"w{layer['weight_bits']}" if "weight_bits" in layer else "")
             + f"a{layer['act_bits']}→{layer['output_bits']}",
             "acc_bits": layer["acc_bits"], "engine": layer["engine"],
             "folding": f"{layer['pe']}×{layer['simd']}",
             "multiplier": layer["multiplier_kind"] or "", "cycles": layer["cycles_per_frame"]}
            for layer in design.manifest["layers"]]
    return frame(rows)


def sim_result_table(result):
    """The measurements of a simulation as a one-row DataFrame."""
    return frame([{"passed": result.passed, "frames": result.frames,
                   "mismatches": result.mismatch_count,
                   "initiation_interval": result.initiation_interval,
                   "latency": result.latency, "cycles": result.cycles,
                   "cycles_per_s": result.cycles_per_second,
                   "build_s": result.build_seconds, "sim_s": result.sim_seconds,
                   "cached_build": result.cached_build, "simulator": result.simulator}])


def sim_result_html(result):
    """``SimResult._repr_html_``: verdict and measurements, then the first mismatches."""
    notes = [str(mismatch) for mismatch in result.mismatches[:10]]
    if result.error is not None:
        notes.insert(0, f"error: {result.error}")
    verdict = "PASSED" if result.passed else "FAILED"
    return frame_html(sim_result_table(result), f"Simulation ({result.simulator}): {verdict}",
                      notes)


def progress_bar(total=None, description="", enabled=True):
    """A tqdm bar (a widget in Jupyter, text on stderr elsewhere); disabled when not
    ``enabled``."""
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=description, disable=not enabled, leave=True,
                dynamic_ncols=True)


class StepBar:
    """A progress bar driven by hwgen's progress lines: each line advances it one step and
    becomes its status. Usable as the ``progress`` callable of :func:`hwgen.simulate`,
    :func:`hwgen.generate` or :func:`hwgen.synth.synthesize`."""

    def __init__(self, description, total=None):
        self._bar = progress_bar(total, description)

    def __call__(self, line):
        self._bar.set_postfix_str(str(line)[:70], refresh=False)
        self._bar.update(1)

    def close(self):
        self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress_callback(progress, description, total=None):
    """``(callable or None, close)`` for a ``progress`` argument: a callable stays as it is,
    ``True`` becomes a :class:`StepBar`, ``None``/``False`` silence; call ``close()`` when
    done."""
    if progress is True:
        bar = StepBar(description, total)
        return bar, bar.close
    if progress is None or progress is False:
        return None, lambda: None
    if not callable(progress):
        from .errors import HwgenError
        raise HwgenError(f"progress must be a function of one string, True or None, not "
                         f"{progress!r}")
    return progress, lambda: None
