"""``import_mlflow``: bring the runs of an MLflow store (``mlruns/`` or SQLite) into exptrack.

Translation (README, "Importing from MLflow and Optuna"):

* run id: MLflow's own 32-hex id is kept as the exptrack run id (it already has exptrack's
  form); any other id gets a derived one, and the original is always in ``source.run_id``.
* experiment: the MLflow experiment's name, unless ``experiment=`` (or a tracker opened on an
  experiment) puts everything in one.
* params: typed back from MLflow's strings by :func:`~exptrack.importers._common.recover_param`.
* metrics: each metric's latest value by MLflow's rule (largest step, then time, then value);
  every logged point becomes the run's history.
* status: FINISHED -> finished, FAILED -> failed, KILLED -> killed.  RUNNING and SCHEDULED runs
  are not results yet: they are skipped and reported, and a later import picks them up once they
  ended.  Runs and experiments deleted in MLflow are skipped too.
* tags: user tags become ``key=value`` tags; MLflow's own ``mlflow.*`` tags are kept in
  ``source.tags`` (``mlflow.runName`` is the run's name, ``mlflow.note.content`` its note).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from exptrack.importers._common import (
    HistoryPoint,
    ImportedRun,
    ImportResult,
    Skipped,
    clean_name,
    derived_run_id,
    is_exptrack_id,
    iso_utc,
    recover_param,
)
from exptrack.importers._mlflow_source import MlflowRun, locate, read_runs
from exptrack.importers._write import write_runs

if TYPE_CHECKING:
    from exptrack.tracker import ExperimentTracker

__all__ = ["import_mlflow"]

_STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}
_SYSTEM_PREFIX = "mlflow."


def import_mlflow(tracker: ExperimentTracker, source: str, *, experiment: str | None = None) -> ImportResult:
    """Import every finished, failed or killed run of an MLflow store; re-running adds nothing new.

    Args:
        tracker: the exptrack store to import into.
        source: an ``mlruns/`` directory (or ``file:`` URI), an ``sqlite:///mlflow.db`` URI or the
            database file itself.  It is only read: a database is opened read-only.
        experiment: put every run into this exptrack experiment instead of one per MLflow
            experiment; by default the tracker's own experiment when it was opened on one.

    Returns:
        What was imported, what was already there and what was skipped (and why).

    Raises:
        ImportSourceError: ``source`` is not an MLflow store this importer can read.
    """
    where = locate(source)
    warnings: list[str] = []
    target = experiment or getattr(tracker, "experiment", None)
    runs = _translate(read_runs(where, warnings), str(where.path.resolve()), target)
    return write_runs(tracker, runs, source=source, warnings=warnings)


def _translate(runs: Iterator[MlflowRun], location: str, experiment: str | None) -> Iterator[ImportedRun | Skipped]:
    for run in runs:
        if run.lifecycle_stage != "active":
            yield Skipped(run.run_id, "deleted in MLflow")
            continue
        status = _STATUS.get(run.status)
        if status is None:
            yield Skipped(run.run_id, f"unfinished ({run.status})")
            continue
        yield _imported(run, status, location, experiment)


def _imported(run: MlflowRun, status: str, location: str, experiment: str | None) -> ImportedRun:
    user_tags = {k: v for k, v in run.tags.items() if not k.startswith(_SYSTEM_PREFIX)}
    system_tags = {k: v for k, v in run.tags.items() if k.startswith(_SYSTEM_PREFIX)}
    start = run.start_time if run.start_time is not None else run.end_time or 0
    source: dict[str, object] = {
        "system": "mlflow",
        "location": location,
        "run_id": run.run_id,
        "experiment_id": run.experiment_id,
        "experiment": run.experiment,
        "status": run.status,
    }
    if run.end_time is not None:
        source["end_time"] = iso_utc(run.end_time / 1000)
    if run.user:
        source["user"] = run.user
    if system_tags:
        source["tags"] = system_tags
    history: dict[str, list[HistoryPoint]] = {
        name: [(step, value, ts / 1000) for ts, step, value in sorted(points, key=lambda p: (p[1], p[0]))]
        for name, points in run.history.items()
    }
    return ImportedRun(
        source_id=run.run_id,
        run_id=run.run_id if is_exptrack_id(run.run_id) else derived_run_id(start, "mlflow", run.run_id),
        experiment=experiment or clean_name(run.experiment) or "default",
        timestamp=iso_utc(start / 1000),
        status=status,
        name=clean_name(run.name or system_tags.get("mlflow.runName")),
        params={key: recover_param(value) for key, value in run.params.items()},
        metrics=dict(run.latest),
        history=history,
        tags=tuple(f"{key}={value}" for key, value in sorted(user_tags.items())),
        note=system_tags.get("mlflow.note.content") or None,
        source=source,
    )
