"""``exptrack export``: every run (or those matching ``--where``) as CSV, JSON Lines or Parquet."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

import click

from exptrack.cli._app import _open, cli, deleted_option, where_option
from exptrack.query.export import FORMATS

if TYPE_CHECKING:
    from exptrack.query.export import ExportFormat, Progress, RunSource
    from exptrack.store.record import Run
    from exptrack.tracker import ExperimentTracker


@cli.command()
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default=None,
              help="csv (flat, default), jsonl (records as stored) or parquet (flat; needs pyarrow). "
                   "Default: from the -o file's extension, else csv.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default=None,
              help="File to write (replaced atomically when complete). Default: stdout.")
@where_option
@deleted_option
@click.pass_context
def export(ctx: click.Context, fmt: str | None, output: Path | None, where: str | None,
           include_deleted: bool) -> None:
    """Export runs as CSV, JSON Lines or Parquet, streaming in constant memory.

    CSV and Parquet have one row per run: run_id, timestamp, status, tags, name, experiment, note,
    then metrics.NAME and params.NAME columns.  A progress bar is shown on a terminal (never when the output is piped).
    """
    from exptrack.query.where import compile_where

    to_stdout = output is None or str(output) == "-"
    chosen = cast("ExportFormat", fmt or _format_from_suffix(None if to_stdout else output))
    tracker = _open(ctx)
    if chosen == "parquet" and to_stdout and _isatty(sys.stdout):
        raise click.UsageError("Parquet is binary: pass -o FILE or redirect stdout to a file")
    if where:
        compile_where(where)  # a FilterSyntaxError exits 1 here, before any file is created

    def source() -> Iterator[Run]:
        return tracker.runs(where=where, include_deleted=include_deleted)

    size = _log_size(tracker)
    show = _isatty(sys.stderr) and (not to_stdout or _isatty(sys.stdout))
    with click.progressbar(length=max(size, 1), label="exporting", file=sys.stderr, hidden=not show) as bar:
        done = 0

        def progress(position: int, total: int) -> None:
            nonlocal done
            if bar.length != total:
                bar.length = max(total, 1)
            bar.update(position - done)
            done = position

        report: Progress | None = progress if show else None
        if to_stdout:
            try:
                count = _export_to_stdout(source, chosen, report, size)
            except BrokenPipeError:
                _quiet_stdout()  # the reader stopped early (| head): not an error worth a message
                ctx.exit(1)
        else:
            assert output is not None
            count = _export_to_file(source, chosen, output, report, size)
    if show:
        target = "stdout" if to_stdout else str(output)
        click.echo(f"exported {count} run(s) to {target}", err=True)


def _quiet_stdout() -> None:
    # Point stdout at /dev/null so the interpreter's final flush cannot raise BrokenPipeError again.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _format_from_suffix(output: Path | None) -> ExportFormat:
    suffix = output.suffix.lower().lstrip(".") if output is not None else ""
    aliases: dict[str, ExportFormat] = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl",
                                        "parquet": "parquet", "pq": "parquet"}
    return aliases.get(suffix, "csv")


def _isatty(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def _log_size(tracker: ExperimentTracker) -> int:
    try:
        return os.stat(tracker.runs_path).st_size
    except OSError:
        return 0


def _export_to_stdout(source: RunSource, fmt: ExportFormat, progress: Progress | None, size: int) -> int:
    from exptrack.query.export import export_runs

    sys.stdout.flush()
    out: IO[bytes] = sys.stdout.buffer
    if fmt != "parquet":
        count = export_runs(source, fmt, out, progress=progress, size=size)
        out.flush()
        return count
    # A Parquet footer points back into the file, so it is written to a real file, then copied.
    import shutil
    import tempfile  # with shutil, pulls in the compression modules: only when exporting

    with tempfile.TemporaryFile() as spool:
        count = export_runs(source, fmt, spool, progress=progress, size=size)
        spool.seek(0)
        shutil.copyfileobj(spool, out, 1 << 20)
    out.flush()
    return count


def _export_to_file(source: RunSource, fmt: ExportFormat, output: Path, progress: Progress | None, size: int) -> int:
    # Write beside the target and rename when complete: a failed export never leaves half a file
    # where a complete one is expected, and never destroys the previous export.
    from exptrack.errors import StorageError
    from exptrack.query.export import export_runs

    directory = output.parent if str(output.parent) else Path(".")
    # Not NamedTemporaryFile (always 0600): the export gets 0664 minus the umask, or keeps the
    # mode of the file it replaces.
    temp = directory / f".{output.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o664)
    except OSError as exc:
        raise StorageError(exc.errno or 0, "write the export to", temp) from exc
    with contextlib.suppress(FileNotFoundError):
        os.fchmod(fd, stat.S_IMODE(os.stat(output).st_mode))
    handle = os.fdopen(fd, "wb")
    try:
        with handle:
            count = export_runs(source, fmt, handle, progress=progress, size=size)
        os.replace(temp, output)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return count
