"""Reproducibility commands: ``diff`` two runs, ``reproduce`` one, list its ``artifacts``."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click

from exptrack.cli._app import _echo_json, _open, cli
from exptrack.errors import ArtifactIntegrityError

if TYPE_CHECKING:
    from exptrack.repro.reproduce import ReproduceReport
    from exptrack.store.record import Run

EXIT_DIFFERS = 3
"""``reproduce`` exit code when the checkout, data or environment differs from the run."""


@cli.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--json", "as_json", is_flag=True, help="The differences as a JSON list.")
@click.pass_context
def diff(ctx: click.Context, run_a: str, run_b: str, as_json: bool) -> None:
    """What differs between two runs: params, metrics, code, data, system, packages."""
    from exptrack.query.output import format_value, render
    from exptrack.repro.diff import diff_runs

    tracker = _open(ctx)
    a, b = tracker.get_run(run_a), tracker.get_run(run_b)
    differences = diff_runs(tracker, a, b)
    if as_json:
        _echo_json({"a": a.run_id, "b": b.run_id, "differences": [d.to_dict() for d in differences]})
        return
    if not differences:
        click.echo(f"runs {a.run_id[:12]} and {b.run_id[:12]} do not differ")
        return
    rows = [{"section": d.section, "key": d.key, "a": format_value(d.a), "b": format_value(d.b)}
            for d in differences]
    click.echo(f"a = {a.run_id}\nb = {b.run_id}")
    click.echo(render(rows, ["section", "key", "a", "b"]), nl=False)


@cli.command(name="reproduce")
@click.argument("run_id")
@click.option("--params-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the run's params as JSON to this file.")
@click.option("--artifact", "artifact", default=None, metavar="NAME", help="Fetch this stored artifact ...")
@click.option("--out", "out", type=click.Path(), default=None,
              help="... to this path: a file, or a directory (existing, or ending in /) to put it in.")
@click.option("--requirements-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the run's installed packages as a pip requirements file.")
@click.option("--patch-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the run's uncommitted diff, when it had one [default: STORE/patches].")
@click.option("--repo", "repo", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The checkout to compare [default: the current directory].")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@click.pass_context
def reproduce_command(ctx: click.Context, run_id: str, params_out: Path | None, artifact: str | None,
                      out: str | None, requirements_out: Path | None, patch_dir: Path | None,
                      repo: Path | None, as_json: bool) -> None:
    """Check the checkout, data and environment against RUN_ID and say how to restore it.

    The checkout checked is yours: the current directory, or --repo DIR -- never a directory
    the stored run names.  Exit code 0 when everything matches, 3 when something differs or
    cannot be confirmed (1 on errors).
    """
    from exptrack.repro.reproduce import local_packages_of, reproduce, requirements_text, write_patch

    if (artifact is None) != (out is None):
        raise click.UsageError("--artifact and --out go together")
    tracker = _open(ctx)
    run = tracker.get_run(run_id)
    if params_out is not None:
        from exptrack.store import codec

        params_out.write_bytes(codec.dumps(run.params, pretty=True) + b"\n")
    if artifact is not None and out is not None:
        fetched = tracker.fetch_artifact(run.run_id, artifact, out, overwrite=True)
        click.echo(f"fetched {artifact} -> {fetched} (sha256 verified)", err=as_json)
    if requirements_out is not None:
        packages = tracker.packages(run)
        if packages is None:
            raise click.ClickException(f"run {run.run_id} recorded no package list")
        requirements_out.write_text(requirements_text(packages, local_packages_of(run)))
    patch = None
    if (run.extra.get("artifacts") or {}).get("code.patch"):
        # Not the working tree: a new untracked file there would itself make the checkout "dirty".
        directory = patch_dir if patch_dir is not None else tracker.store / "patches"
        try:
            directory.mkdir(mode=0o775, parents=True, exist_ok=True)
            patch = write_patch(tracker, run, directory)
        except OSError:
            if patch_dir is not None:
                raise  # the place the user asked for
            # a store that can be read but not written (a colleague's, a read-only mount)
            try:
                patch = write_patch(tracker, run, tempfile.mkdtemp(prefix="exptrack-patch-"))
            except (OSError, ArtifactIntegrityError) as exc:
                click.echo(f"warning: the run's saved patch cannot be written: {exc}", err=True)
        except ArtifactIntegrityError as exc:
            # the checks still tell what differs; the restore steps say the patch is missing
            click.echo(f"warning: the run's saved patch is unusable: {exc}", err=True)
    report = reproduce(tracker, run, patch_file=patch, cwd=str(repo) if repo is not None else None)
    if as_json:
        _echo_json(report.to_dict())
    else:
        _echo_report(run, report)
    if not report.matches:
        ctx.exit(EXIT_DIFFERS)


def _echo_report(run: Run, report: ReproduceReport) -> None:
    from exptrack.query.output import terminal_safe
    from exptrack.repro.reproduce import format_checks

    # Stored text is shown escaped; the restore steps are already shell words without raw
    # control bytes (a newline inside quotes stays: the pasted command needs it).
    click.echo(terminal_safe(f"run {run.run_id} ({run.timestamp}, {run.status})"))
    code = run.extra.get("code")
    if isinstance(code, Mapping) and code.get("commit"):
        state = "with uncommitted changes" if code.get("patch_sha256") else "clean"
        branch = f" on {code['branch']}" if code.get("branch") else ""
        click.echo(terminal_safe(f"recorded commit {code['commit']}{branch} ({state})"))
    click.echo(terminal_safe(f"checked in {report.directory}"))
    click.echo("checks:")
    for line in format_checks(report.checks) or ["  (nothing recorded to check)"]:
        click.echo(terminal_safe(line))
    unknown = sum(check.verdict == "unknown" for check in report.checks)
    if report.matches:
        verdict = "everything matches"
    elif unknown == len([c for c in report.checks if c.verdict != "match"]):
        verdict = f"cannot be confirmed ({unknown} unknown)"
    else:
        verdict = "the current state differs from the run"
    click.echo(f"verdict: {verdict}")
    if report.steps:
        click.echo("to restore:")
        for step in report.steps:
            click.echo(f"  {step}")
    click.echo(f"params (JSON): {report.params_json}")
    if report.params_flags:
        click.echo(f"params (flags): {report.params_flags}")
    if report.command:
        click.echo(f"re-run: {report.command}")  # shell words: no raw control byte


@cli.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="name -> {sha256, size} as JSON.")
@click.pass_context
def artifacts(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """List a run's stored artifacts."""
    from exptrack.query.output import render

    tracker = _open(ctx)
    run = tracker.get_run(run_id)
    listed = tracker.artifacts(run.run_id)
    if as_json:
        _echo_json(listed)
        return
    if not listed:
        click.echo(f"run {run.run_id} has no artifacts", err=True)
        return
    rows = [{"name": name, "size": meta.get("size"), "sha256": meta.get("sha256")} for name, meta in listed.items()]
    click.echo(render(rows, ["name", "size", "sha256"]), nl=False)
