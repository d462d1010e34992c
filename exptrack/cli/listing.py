"""``exptrack runs``: list runs, the most recent from the end of the log, in a table that fits.

Without ``--sort``, ``-n N`` reads the last N runs backwards from the end of the log (the index
says which lines to skip), so listing costs the same at ten runs and at a million.  With
``--sort``, only the N first runs of the order are kept while the log streams by (a heap of N).
``--columns/-c`` picks the columns; otherwise every column is a candidate, the params that tell
the listed runs apart first, and what does not fit the terminal is named below the table.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from exptrack.cli._app import (
    _emit_runs,
    _open_for_query,
    cli,
    deleted_option,
    output_options,
    status_option,
    where_option,
)

if TYPE_CHECKING:
    from exptrack.store.record import Run


def columns_option(func: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--columns", "-c", "columns", multiple=True, metavar="NAMES",
        help="Columns to show, comma-separated or repeated; * matches (e.g. -c run_id,metrics.accuracy,'params.*').",
    )(func)


def choose_columns(runs: Sequence[Run], wanted: Sequence[str], metrics_first: Sequence[str] = (),
                   extra: Sequence[str] = ()) -> list[str]:
    """The columns for ``runs``: all of them (params that differ first), or those ``wanted`` names.

    Raises:
        click.BadParameter: a wanted name (or pattern) matches no column of the listed runs.
    """
    from exptrack.query.output import run_columns

    available = run_columns(runs, metrics_first=metrics_first, tags=not wanted)
    names = [name.strip() for item in wanted for name in item.split(",") if name.strip()]
    if not names:
        return available
    known = dict.fromkeys([*extra, *available, "tags"])
    chosen: dict[str, None] = {}
    for name in names:
        if name in known:
            chosen[name] = None
            continue
        matched = fnmatch.filter(known, name) if any(ch in name for ch in "*?[") else []
        if not matched and runs:
            import difflib

            close = difflib.get_close_matches(name, list(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; columns here: {', '.join(list(known)[:12])}"
            raise click.BadParameter(f"no listed run has a column {name!r}{hint}", param_hint="--columns")
        chosen.update(dict.fromkeys(matched or [name]))
    return list(chosen)


@cli.command()
@click.option("--limit", "-n", type=click.IntRange(min=0), default=None,
              help="Show the last N runs (0: all). Default: 20 for the table, all otherwise.")
@click.option("--sort", "sort", default=None, metavar="SPEC", help="e.g. \"metrics.accuracy desc, params.lr\".")
@where_option
@status_option(None)
@deleted_option
@columns_option
@output_options
@click.pass_context
def runs(ctx: click.Context, limit: int | None, sort: str | None, where: str | None,
         status: str | list[str] | None, include_deleted: bool, columns: tuple[str, ...], fmt: str) -> None:
    """List runs (oldest first, the most recent last; with --sort, in that order)."""
    from exptrack.query.ranking import status_scope

    tracker = _open_for_query(ctx, fmt)
    scope = status_scope(status)
    chosen = _with_status(where, scope)
    if limit is None:
        limit = 20 if fmt == "table" else 0
    total: int | None = None
    selected: Sequence[Run]
    if sort:
        # a typo in a key is an error, not an unsorted listing (sorted_runs checks the fields)
        selected, total = tracker.sorted_runs(sort, where=chosen, limit=limit or None,
                                              include_deleted=include_deleted)
    elif limit:
        selected = tracker.recent_runs(limit, where=chosen, include_deleted=include_deleted)
        if chosen is None and not include_deleted:
            total = tracker.count_runs()
    else:
        selected = list(tracker.runs(where=chosen, include_deleted=include_deleted))
        total = len(selected)
    _emit_runs(selected, fmt, choose_columns(selected, columns))
    if fmt != "table":
        return
    if not selected:
        click.echo("no runs" + (" match the filter" if chosen is not None else ""), err=True)
    elif total is not None and total > len(selected):  # never cut a listing silently
        click.echo(f"(showing {len(selected)} of {total:,} runs; --limit 0 shows all)", err=True)
    elif total is None and len(selected) == limit:
        click.echo(f"(showing the last {len(selected)} matching runs; --limit 0 shows all)", err=True)


def _with_status(where: str | None, scope: frozenset[str] | None) -> str | None:
    """The ``--where`` filter narrowed to the ``--status`` scope: one filter for every path (the
    columnar index reads it like any other)."""
    if scope is None:
        return where
    if where:
        from exptrack.query.where import compile_where

        compile_where(where)  # a complete expression alone (errors point into it), so safe to parenthesise
    statuses = "status IN (" + ", ".join(f"'{status}'" for status in sorted(scope)) + ")"
    return statuses if not where else f"{statuses} AND ({where})"
