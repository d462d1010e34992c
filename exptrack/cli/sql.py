"""``exptrack sql "SELECT ..."``: ad-hoc SQL over the store's ``runs`` view, on DuckDB."""

from __future__ import annotations

import csv
import datetime as _dt
import decimal
import io
import math
import uuid
from collections.abc import Sequence
from typing import Any

import click

from exptrack.cli._app import _open, cli


@cli.command("sql")
@click.argument("query")
@click.option("--json", "fmt", flag_value="json", help="JSON: a list of objects, one per row.")
@click.option("--csv", "fmt", flag_value="csv", help="CSV with a header row (floats exact).")
@click.option("--table", "fmt", flag_value="table", default=True, hidden=True)
@click.pass_context
def sql_command(ctx: click.Context, query: str, fmt: str) -> None:
    """Run a DuckDB SQL QUERY over a `runs` view of the store (needs `pip install 'exptrack[sql]'`).

    Columns: run_id, name, experiment, status, timestamp (TIMESTAMP, UTC), params and metrics
    (structs: params.max_depth, metrics.accuracy) and tags (a list).  Deleted runs are left out.

    \b
    exptrack sql "SELECT params.model, avg(metrics.accuracy) FROM runs GROUP BY 1"
    """
    from exptrack.store import codec

    tracker = _open(ctx)
    rows = tracker.sql(query)
    columns = list(rows.columns)
    if fmt == "json":
        click.echo(codec.dumps([{c: _plain(v) for c, v in zip(columns, row)} for row in rows], pretty=True).decode())
    elif fmt == "csv":
        click.echo(_csv(columns, rows), nl=False)
    else:
        click.echo(_table(columns, rows), nl=False)


def _plain(value: object) -> Any:
    """A value DuckDB returned, as JSON can hold it (times as ISO text, decimals as numbers)."""
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (uuid.UUID, _dt.timedelta)):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _csv(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(v) for v in row])
    return buf.getvalue()


def _csv_cell(value: object) -> str:
    from exptrack.query.output import format_value
    from exptrack.store import codec

    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else format_value(value)  # exact, reads back
    if isinstance(value, (dict, list, tuple)):
        return codec.dumps(_plain(value)).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    plain = _plain(value)
    return plain if isinstance(plain, str) else str(plain)


def _table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    from exptrack.query.output import format_value

    if not columns:
        return "(no rows)\n"
    text = [[_escape(format_value(_plain(v))) for v in row] for row in rows]
    header = [_escape(c) for c in columns]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(header)]
    numeric = [
        all(isinstance(row[i], (int, float, decimal.Decimal)) and not isinstance(row[i], bool)
            for row in rows if row[i] is not None)
        for i in range(len(columns))
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += [
        "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)).rstrip()
        for r in text
    ]
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    """Control characters shown escaped: a stored ESC sequence must not drive the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
