"""``exptrack import mlflow|optuna``: bring another tool's runs into the store, once each."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from exptrack.cli._app import _Group, _open, cli

if TYPE_CHECKING:
    from exptrack.importers import ImportResult


@cli.group("import", cls=_Group)  # its commands take --store/--strict after their name too
def import_group() -> None:
    """Import runs from MLflow or Optuna; importing the same source again adds nothing new."""


_JSON = click.option("--json", "as_json", is_flag=True, help="Print what was imported as JSON.")
_EXPERIMENT = click.option(
    "--experiment", "experiment", default=None, metavar="NAME",
    help="Put every run into this experiment (default: one per MLflow experiment / Optuna study).",
)


@import_group.command("mlflow")
@click.argument("source")
@_EXPERIMENT
@_JSON
@click.pass_context
def import_mlflow_command(ctx: click.Context, source: str, experiment: str | None, as_json: bool) -> None:
    """Import the runs of an MLflow store: an mlruns/ directory or sqlite:///mlflow.db.

    Params, metrics with their full history, tags, status, start time and MLflow's run id come
    along; running and deleted runs are skipped.  The source is only read.
    """
    from exptrack.importers.mlflow import import_mlflow

    _report(import_mlflow(_open(ctx, create=True), source, experiment=experiment), as_json)


@import_group.command("optuna")
@click.argument("storage")
@click.option("--study", default=None, metavar="NAME", help="The study to import (default: every study).")
@_EXPERIMENT
@_JSON
@click.pass_context
def import_optuna_command(
    ctx: click.Context, storage: str, study: str | None, experiment: str | None, as_json: bool
) -> None:
    """Import the trials of Optuna studies: an RDB URL (sqlite:///optuna.db) or a journal file.

    One run per finished, pruned or failed trial, with params, value(s) and the study's
    direction, intermediate values as history, and the trial number; needs optuna installed.
    """
    from exptrack.importers.optuna import import_optuna

    _report(import_optuna(_open(ctx, create=True), storage, study=study, experiment=experiment), as_json)


def _report(result: ImportResult, as_json: bool) -> None:
    import dataclasses

    from exptrack.store import codec

    if as_json:
        click.echo(codec.dumps(dataclasses.asdict(result), pretty=True).decode())
        return
    click.echo(result.summary())
    for warning in result.warnings[:20]:
        click.echo(f"warning: {warning}", err=True)
