"""Render query results as an aligned table, CSV or Markdown (JSON goes through ``codec.dumps``).

Kept apart from the CLI so the formats can be tested, and reused, without click.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from exptrack.store.record import Run

Format = Literal["table", "csv", "md"]
MISSING = "-"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def terminal_safe(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character shown escaped (``\\x1b``, ``\\n``): a stored ESC or
    BEL must not drive the user's terminal.  JSON and CSV output stay exact; only text for people
    goes through here."""
    pattern = _CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL
    if pattern.search(text) is None:
        return text
    return pattern.sub(lambda m: _NAMED.get(m[0], f"\\x{ord(m[0]):02x}"), text)


def format_value(value: object) -> str:
    """A compact human form: 6 significant digits for floats, ``-`` for missing, NaN/inf spelled."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return f"{value:.6g}"
    if isinstance(value, (dict, list, tuple)):
        from exptrack.store.codec import dumps

        return dumps(value).decode()
    return str(value)


def run_columns(runs: Sequence[Run], *, metrics_first: Sequence[str] = (), max_params: int = 8) -> list[str]:
    """Columns for a table of runs: id, time, status, then metrics and params seen in the runs."""
    metric_names: list[str] = list(metrics_first)
    param_names: list[str] = []
    for run in runs:
        for name in run.metrics:
            if name not in metric_names:
                metric_names.append(name)
        for name in run.params:
            if name not in param_names:
                param_names.append(name)
    return (
        ["run_id", "timestamp", "status"]
        + [f"metrics.{m}" for m in metric_names]
        + [f"params.{p}" for p in param_names[:max_params]]
    )


def cell(record: Mapping[str, Any], column: str) -> object:
    """The value of a dotted column (``metrics.accuracy``) in a record, or None when absent."""
    head, _, rest = column.partition(".")
    value: Any = record.get(head) if head in record else None
    if rest and isinstance(value, Mapping):
        value = value.get(rest)
    elif rest:
        value = None
    if head == "tags" and not rest and isinstance(value, (list, tuple)):
        return ",".join(value)
    return value


def render(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], fmt: Format = "table") -> str:
    """The rows in the chosen format; table columns are aligned, numbers right-aligned."""
    table = [[cell(row, col) for col in columns] for row in rows]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for values in table:
            writer.writerow(["" if v is None else format_value(v) if not isinstance(v, str) else v
                             for v in values])
        return buf.getvalue()
    text: list[list[str]] = [[terminal_safe(format_value(v)) for v in values] for values in table]
    columns = [terminal_safe(col) for col in columns]
    if fmt == "md":
        def esc(s: str) -> str:
            return s.replace("|", "\\|").replace("\n", " ")
        lines = ["| " + " | ".join(esc(c) for c in columns) + " |",
                 "| " + " | ".join("---:" if _numeric(table, i) else "---" for i in range(len(columns))) + " |"]
        lines += ["| " + " | ".join(esc(c) for c in values) + " |" for values in text]
        return "\n".join(lines) + "\n"
    widths = [max([len(col)] + [len(values[i]) for values in text]) for i, col in enumerate(columns)]
    numeric = [_numeric(table, i) for i in range(len(columns))]
    out = ["  ".join(col.ljust(w) for col, w in zip(columns, widths)).rstrip()]
    out.extend(
        "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()
        for values in text
    )
    return "\n".join(out) + "\n"


def _numeric(table: Sequence[Sequence[object]], i: int) -> bool:
    seen = False
    for values in table:
        value = values[i]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        seen = True
    return seen
