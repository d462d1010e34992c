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

from exptrack.query.columns import MISSING, column_name, flat_params, lookup

Format = Literal["table", "csv", "md"]
MISSING_TEXT = "-"
"""How a table shows a field a run does not have."""


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
    if value is None or value is MISSING:
        return MISSING_TEXT
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


def run_columns(runs: Sequence[Mapping[str, Any]], *, metrics_first: Sequence[str] = (),
                tags: bool = True) -> list[str]:
    """Every column for a table of runs: id, time, status, tags, then metrics, then params.

    Params whose value differs among ``runs`` (or that some lack) come before those every run
    shares: in a listing of mixed models the hyperparameters that tell the rows apart lead.
    Nothing is dropped here; :func:`render` summarizes what does not fit the width.  Linear in
    the number of names (dicts, not list scans: a run may hold 100,000 params).
    """
    metric_names: dict[str, None] = dict.fromkeys(metrics_first)
    first: dict[str, Any] = {}
    varying: set[str] = set()
    counts: dict[str, int] = {}
    for run in runs:
        metric_names.update(dict.fromkeys(run["metrics"]))
        for name, value in flat_params(run["params"]).items():
            if name not in first:
                first[name] = value
                counts[name] = 1
                continue
            counts[name] += 1
            if name not in varying and not _same(first[name], value):
                varying.add(name)
    total = len(runs)
    varying.update(name for name, count in counts.items() if count != total)
    params = [name for name in first if name in varying] + [name for name in first if name not in varying]
    fixed = ["run_id", "name", "timestamp", "status", *(["tags"] if tags and any(run["tags"] for run in runs) else [])]
    return fixed + [column_name("metrics", m) for m in metric_names] + params


def _same(a: object, b: object) -> bool:
    return type(a) is type(b) and (a == b or (a != a and b != b))  # NaN equals NaN here


def cell(record: Mapping[str, Any], column: str) -> object:
    """The value of a column (``metrics.accuracy``, ``params.`a.b```) in a record, or None when absent."""
    value = lookup(record, column)
    return None if value is MISSING else value


def render(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], fmt: Format = "table", *,
           width: int | None = None, null: str = MISSING_TEXT) -> str:
    """The rows in the chosen format; table columns are aligned, numbers right-aligned.

    Args:
        width: fit a table to this many characters: long cells are cut with ``…`` and the
            columns that still do not fit are named in a last line (``+3 more columns: ...``),
            never dropped silently.  ``None``: no limit.
        null: how a table shows a stored ``null`` (a missing field is always ``-``).

    CSV is exact: floats as ``repr`` (they read back bit for bit), non-finite numbers spelled
    ``NaN``/``Infinity``/``-Infinity``, tags and other lists as JSON, empty for missing/null.
    """
    table = [[lookup(row, col) for col in columns] for row in rows]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for values in table:
            writer.writerow([_csv_value(v) for v in values])
        return buf.getvalue()
    text: list[list[str]] = [[terminal_safe(_table_value(v, col, null)) for v, col in zip(values, columns)]
                             for values in table]
    columns = [terminal_safe(col) for col in columns]
    if fmt == "md":
        def esc(s: str) -> str:
            return s.replace("|", "\\|").replace("\n", " ")
        lines = ["| " + " | ".join(esc(c) for c in columns) + " |",
                 "| " + " | ".join("---:" if _numeric(table, i) else "---" for i in range(len(columns))) + " |"]
        lines += ["| " + " | ".join(esc(c) for c in values) + " |" for values in text]
        return "\n".join(lines) + "\n"
    numeric = [_numeric(table, i) for i in range(len(columns))]
    return fit_table(list(columns), text, numeric, width, table)


def fit_table(columns: list[str], text: list[list[str]], numeric: list[bool], width: int | None,
              table: Sequence[Sequence[object]] = ()) -> str:
    """Align ``text`` under ``columns`` within ``width`` characters (see :func:`render`).

    When not every column fits, the most telling ones are kept (:func:`_importance`) and shown in
    their usual order; the others are named below the table.
    """
    widths = [max([len(col)] + [len(values[i]) for values in text]) for i, col in enumerate(columns)]
    keep = list(range(len(columns)))
    first_metric = next((i for i, col in enumerate(columns) if col.startswith("metrics.")), 0)

    def rank(i: int) -> tuple[int, int]:
        return (_importance(columns[i], i, table, first_metric), i)

    if width is not None:
        # a cell longer than a third of the width is cut (run ids stay whole: `show` takes them)
        cap = max(12, width // 3)
        widths = [w if col == "run_id" else min(w, cap) for w, col in zip(widths, columns)]
        if sum(widths) + 2 * (len(widths) - 1) > width:
            keep, used = [], -2
            for i in sorted(range(len(columns)), key=rank):
                if keep and used + 2 + widths[i] > width:
                    continue  # a narrower column further down the list may still fit
                keep.append(i)
                used += 2 + widths[i]
            keep.sort()
    out = ["  ".join(_cut(columns[i], widths[i]).ljust(widths[i]) for i in keep).rstrip()]
    out.extend(
        "  ".join(_cut(values[i], widths[i]).rjust(widths[i]) if numeric[i] else
                  _cut(values[i], widths[i]).ljust(widths[i]) for i in keep).rstrip()
        for values in text
    )
    if len(keep) < len(columns):
        kept = set(keep)
        hidden = sorted((i for i in range(len(columns)) if i not in kept), key=rank)
        out += _overflow([columns[i] for i in hidden], width or 80)
    return "\n".join(out) + "\n"


def _importance(column: str, index: int, table: Sequence[Sequence[object]], first_metric: int) -> int:
    """Which columns a narrow table keeps first (lower first): the id, the first metrics, the
    params that tell the rows apart, other metrics, then status/tags, time, and constants."""
    if column in ("run_id", "rank"):
        return 0
    values = [row[index] for row in table]
    constant = len(table) > 1 and all(_same(v, values[0]) for v in values)
    if column.startswith("metrics."):
        return 1 if index < first_metric + 3 else 3
    if constant:
        return 6
    if column.startswith("params."):
        return 2
    if column == "timestamp":
        return 5
    return 4


def _overflow(hidden: Sequence[str], width: int) -> list[str]:
    """Lines naming the columns a table left out, wrapped to ``width`` (ten lines at most, then ...)."""
    import textwrap

    width = max(width, 40)
    head = textwrap.wrap(f"+{len(hidden):,} more column{'s' if len(hidden) != 1 else ''} "
                         "(pick with -c/--columns; --csv or --json show all):", width=width)
    names = textwrap.wrap(", ".join(hidden), width=width, initial_indent="  ", subsequent_indent="  ",
                          break_long_words=False, break_on_hyphens=False, max_lines=10, placeholder=" ...")
    return [*head, *names]


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "\u2026"


def _table_value(value: object, column: str, null: str) -> str:
    if value is MISSING:
        return MISSING_TEXT
    if value is None:
        return null
    if column == "tags" and isinstance(value, list):
        if any("," in str(tag) for tag in value):
            return format_value(value)  # a JSON list: a comma inside a tag stays readable as such
        return ",".join(map(str, value))
    if column == "timestamp" and isinstance(value, str) and len(value) > 19 and value[10:11] == "T":
        return value[:10] + " " + value[11:19]  # to the second: the table is for reading, --json is exact
    return format_value(value)


def _csv_value(value: object) -> object:
    if value is MISSING or value is None:
        return ""
    kind = type(value)
    if kind is str or kind is int:
        return value
    if kind is float:
        if value - value == 0:  # type: ignore[operator]
            return value  # the csv module writes repr(): the shortest text that reads back exactly
        return format_value(value)
    if kind is bool:
        return "true" if value else "false"
    from exptrack.store.codec import dumps

    return dumps(value).decode()  # tags and other lists, mappings: JSON text


def _numeric(table: Sequence[Sequence[object]], i: int) -> bool:
    seen = False
    for values in table:
        value = values[i]
        if value is None or value is MISSING:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        seen = True
    return seen
