"""The benchmarks' plain-text tables, and their cache of measurements."""

import json
import sys


def table(rows):
    """``rows`` (dicts) as right-aligned columns, one per key in order of first appearance."""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    widths = {key: max(len(key), *(len(str(row.get(key, ""))) for row in rows)) for key in keys}
    lines = ["  ".join(f"{key:>{widths[key]}}" for key in keys)]
    lines += ["  ".join(f"{str(row.get(key, '')):>{widths[key]}}" for key in keys)
              for row in rows]
    return "\n".join(lines)


def error(modelled, measured):
    """The model's relative error against a measurement, as ``+12%``."""
    return f"{(modelled - measured) / max(measured, 1):+.0%}"


def cached(path, plan, name):
    """The measurement record cached at ``path`` if it was taken of ``plan`` (its layers
    described as now, the record's ``"plan"``), else ``None`` (saying so when the plan
    changed); ``name`` labels the message."""
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    described = [layer_plan.describe() for layer_plan in plan.layers]
    if record["plan"] == described:
        return record
    print(f"  {name}: the cached plan {record['plan']} is not {described}: measuring again",
          file=sys.stderr, flush=True)
    return None
