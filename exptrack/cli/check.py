"""``exptrack check``: verify the whole store and list every problem; exit 1 if there is any."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from exptrack.cli._app import _echo_json, _open, cli

if TYPE_CHECKING:
    from exptrack.repro.check import CheckReport


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@click.option("--no-artifacts", is_flag=True, help="Skip re-hashing the artifact blobs.")
@click.pass_context
def check(ctx: click.Context, as_json: bool, no_artifacts: bool) -> None:
    """Verify every log line and checksum, the index and the artifacts; exit 1 if anything is wrong.

    Each problem is printed with its line number, byte offset, length and reason.  A fragment
    that a crash or a full disk left (the cut-off start of a line, fenced by the next append, or
    an unterminated last line) is a note, not a problem: nothing acknowledged was lost.  With
    --strict a note fails the check too.  The index (a cache) must give the same answers as an
    index-free read of the log.
    """
    tracker = _open(ctx)  # refuses a directory that holds no store
    tracker.close()
    from exptrack.repro.check import check_store  # reads the index: imported when used

    report = check_store(tracker.store, artifacts=not no_artifacts)
    if as_json:
        _echo_json(report.to_dict())
    else:
        click.echo(_describe(report))
    if not report.ok or (report.notes and ctx.meta.get("exptrack.strict")):
        ctx.exit(1)


def _describe(report: CheckReport) -> str:
    log_problems = [p for p in report.problems if p.kind == "log"]
    blob_problems = [p for p in report.problems if p.kind == "artifact"]
    index_problems = [p for p in report.problems if p.kind == "index"]
    unchecked = f", {report.unchecked} without checksum" if report.unchecked else ""
    lines = [
        f"store: {report.store}",
        f"log: {report.log_bytes} bytes, {report.lines} lines, {report.runs} runs{unchecked}, "
        f"{len(log_problems)} problem(s)",
    ]
    lines.extend(
        f"  line {p.line} (byte {p.offset}, {p.length} bytes): {p.reason}" for p in log_problems
    )
    lines.extend(
        f"  note: line {p.line} (byte {p.offset}, {p.length} bytes): {p.reason}" for p in report.notes
    )
    lines.append(f"artifacts: {report.artifacts} file(s), {len(blob_problems)} problem(s)")
    lines.extend(f"  {p.path}: {p.reason}" for p in blob_problems)
    lines.append(f"index: {report.index}")
    lines.extend(f"  {p.path}: {p.reason}" for p in index_problems)
    total = len(report.problems)
    notes = f" ({len(report.notes)} note(s))" if report.notes else ""
    lines.append(f"ok: no problems found{notes}" if report.ok else f"{total} problem(s) found{notes}")
    return "\n".join(lines)
