"""The benchmarks' plain-text tables."""


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
