"""The ``exptrack`` command group, its shared options and the single error boundary.

The ``cli`` package is the only part of exptrack that imports click; command modules register
themselves on the group when ``exptrack.cli`` is imported.

One error boundary (``_Group.invoke``) turns every ``ExptrackError`` -- and any ``OSError`` from
the file system -- into a one-line message on stderr and exit code 1.  Usage errors exit 2, as
click does.  No traceback ever reaches a user for a mistake they can fix.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from exptrack.errors import ExptrackError

if TYPE_CHECKING:
    from exptrack.query.output import Format
    from exptrack.store.record import Run
    from exptrack.tracker import ExperimentTracker

F = TypeVar("F", bound=Callable[..., Any])


def _set_strict(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta["exptrack.strict"] = True  # meta is shared by the group's and command's contexts


def _set_store(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.meta["exptrack.store"] = value  # after the command name it wins over the group's


class _Group(click.Group):
    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        # ``--strict`` and ``--store`` work before or after the command name: `exptrack --store d
        # best acc` and `exptrack best acc --store d` mean the same (people type both).
        if not any(param.name == "strict" for param in cmd.params):
            cmd.params.append(click.Option(
                ["--strict"], is_flag=True, expose_value=False, callback=_set_strict,
                help="Fail (exit 1) on a corrupt log line instead of skipping it.",
            ))
        if not any(param.name == "store" for param in cmd.params):
            cmd.params.append(click.Option(
                ["--store"], type=click.Path(file_okay=False, path_type=Path), default=None,
                expose_value=False, callback=_set_store, metavar="DIR",
                help="Store directory (as `exptrack --store DIR ...`).",
            ))
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ExptrackError as exc:
            raise click.ClickException(_safe(str(exc))) from exc
        except OSError as exc:  # e.g. a store directory that cannot be read
            raise click.ClickException(_safe(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))) from exc


def _safe(message: str) -> str:
    """An error message with stored control characters escaped (it may quote a run's values)."""
    from exptrack.query.output import terminal_safe

    return terminal_safe(message, keep_newlines=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="EXPTRACK_STORE",
    default="experiments",
    show_default=True,
    help="Store directory (also EXPTRACK_STORE).",
)
@click.option(
    "--strict",
    is_flag=True,
    envvar="EXPTRACK_STRICT",
    help="Fail (exit 1) on the first corrupt log line instead of skipping it (also EXPTRACK_STRICT=1).",
)
@click.option(
    "--experiment",
    "-e",
    envvar="EXPTRACK_EXPERIMENT",
    default=None,
    metavar="NAME",
    help="Log into experiment NAME and answer about its runs only (also EXPTRACK_EXPERIMENT); "
    "default: log into \"default\", query every experiment.",
)
@click.version_option(package_name="exptrack")
@click.pass_context
def cli(ctx: click.Context, store: Path, strict: bool, experiment: str | None) -> None:
    """exptrack: record experiment runs in a local JSONL store, find the best, get it back."""
    ctx.obj = store
    ctx.meta["exptrack.strict"] = strict
    ctx.meta["exptrack.experiment"] = experiment or None


def store_path(ctx: click.Context) -> Path:
    """The store directory: ``--store`` after the command name, else the group's option."""
    chosen: Path | None = ctx.meta.get("exptrack.store")
    return chosen if chosen is not None else ctx.find_root().obj


def _open(ctx: click.Context, *, create: bool = False, **kwargs: Any) -> ExperimentTracker:
    from exptrack.store import RUNS_FILE

    store: Path = store_path(ctx)
    if not create and not (store / RUNS_FILE).exists():
        raise click.ClickException(f"no exptrack store at {store} (no {RUNS_FILE}); log a run first or pass --store")
    kwargs.setdefault("strict", ctx.meta.get("exptrack.strict", False))
    kwargs.setdefault("experiment", ctx.meta.get("exptrack.experiment"))
    from exptrack.tracker import ExperimentTracker  # on first use: `exptrack --help` stays light

    return ExperimentTracker(store, **kwargs)


def _open_for_query(ctx: click.Context, fmt: str) -> ExperimentTracker:
    """The store's tracker with its index brought up to date (a progress bar if that takes long)."""
    from exptrack.cli.progress import refresh_with_progress

    tracker = _open(ctx)
    refresh_with_progress(tracker, fmt)
    return tracker


def output_options(func: F) -> F:
    """``--json`` / ``--csv`` / ``--md``: one machine or report format instead of the table."""
    for flag, fmt, text in (
        ("--md", "md", "Markdown table (reports, CI summaries)."),
        ("--csv", "csv", "CSV with a header row."),
        ("--json", "json", "JSON: the records as stored."),
    ):
        func = click.option(flag, "fmt", flag_value=fmt, help=text)(func)
    return click.option("--table", "fmt", flag_value="table", default=True, hidden=True)(func)


def where_option(func: F) -> F:
    return click.option(
        "--where", "-w", default=None, metavar="EXPR",
        help="Filter, e.g. \"metrics.accuracy > 0.8 and params.model = 'rf'\".",
    )(func)


def deleted_option(func: F) -> F:
    return click.option("--deleted", "include_deleted", is_flag=True,
                        help="Include deleted runs (they are left out by default).")(func)


def mode_option(func: F) -> F:
    """``--max`` / ``--min``, passed on as ``mode``; both together are a usage error (exit 2)."""

    @functools.wraps(func)
    def command(*args: Any, mode_max: bool, mode_min: bool, **kwargs: Any) -> Any:
        if mode_max and mode_min:
            raise click.UsageError("--max and --min contradict each other; pass one of them")
        return func(*args, mode="max" if mode_max else "min" if mode_min else None, **kwargs)

    wrapped = click.option("--min", "mode_min", is_flag=True, help="Lower is better.")(command)
    return click.option("--max", "mode_max", is_flag=True, help="Higher is better.")(wrapped)  # type: ignore[return-value]


STATUS_CHOICES = ("finished", "failed", "killed", "pruned", "running", "any")


def _statuses(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> str | list[str] | None:
    names = [name.strip() for item in value for name in item.split(",") if name.strip()]
    unknown = [name for name in names if name not in STATUS_CHOICES]
    if unknown:
        raise click.BadParameter(f"unknown status {unknown[0]!r}; choose from {', '.join(STATUS_CHOICES)}",
                                 ctx=ctx, param=param)
    if not names:
        return None
    return "any" if "any" in names else names


def status_option(default: str | None) -> Callable[[F], F]:
    """``--status NAME[,NAME]`` (repeatable; ``any`` for every run), passed on as ``status``."""
    text = ("Only runs of this status (comma-separated or repeated; 'any' for all)"
            + (f". Default: {default}." if default else "; default: all."))
    return click.option("--status", "status", multiple=True, default=(default,) if default else (),
                        metavar="STATUS", callback=_statuses, help=text)


def _echo_json(obj: object) -> None:
    from exptrack.store import codec

    click.echo(codec.dumps(obj, pretty=True).decode())


def _emit_runs(runs: Sequence[Run], fmt: str, columns: Sequence[str]) -> None:
    if fmt == "json":
        _echo_json([run.to_dict() for run in runs])
    else:
        click.echo(render_runs(runs, columns, fmt), nl=False)


def render_runs(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], fmt: str) -> str:
    """Runs as a table that fits the terminal (``COLUMNS`` or its width), exact CSV, or Markdown."""
    import shutil

    from exptrack.query.output import render

    width = shutil.get_terminal_size().columns if fmt == "table" else None
    return render(rows, columns, fmt=_as_format(fmt), width=width, null="None")


def _as_format(fmt: str) -> Format:
    return "csv" if fmt == "csv" else "md" if fmt == "md" else "table"


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="exptrack")

