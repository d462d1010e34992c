"""``import_optuna``: bring the trials of Optuna studies (an RDB URL or a journal file) into exptrack.

Translation (README, "Importing from MLflow and Optuna"):

* one run per trial, named ``trial-<number>``, in an experiment named after its study (or
  ``experiment=``, or the tracker's own experiment); its id is derived from study name, trial
  number and start time, so the same trial always gets the same id and a re-import adds nothing;
* params as Optuna holds them (already typed); the objective value(s) as metrics named by the
  study's ``metric_names``, else ``value`` (``value_0``, ``value_1``... for several objectives),
  each with the study's direction; intermediate values (``trial.report``) as the history of the
  first metric;
* state: COMPLETE -> finished, PRUNED -> pruned (its value is the last reported one, kept but
  never ranked as best), FAIL -> failed; RUNNING and WAITING trials are skipped and reported;
* user attributes: scalars as ``key=value`` tags, all of them typed in ``source.user_attrs``;
* start time: Optuna records local wall-clock times without a zone; they are read as this
  machine's local time and stored in UTC.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exptrack.errors import ImportSourceError
from exptrack.importers._common import (
    HistoryPoint,
    ImportedRun,
    ImportResult,
    Skipped,
    clean_name,
    derived_run_id,
    iso_utc,
    plain_tree,
)
from exptrack.importers._write import write_runs

if TYPE_CHECKING:
    import optuna

    from exptrack.tracker import ExperimentTracker

__all__ = ["import_optuna"]

_STATUS = {"COMPLETE": "finished", "PRUNED": "pruned", "FAIL": "failed"}
_PASSWORD = re.compile(r"(://[^:/@]*:)[^/]*@")  # up to the last @ of the authority


def import_optuna(
    tracker: ExperimentTracker, storage: str, *, study: str | None = None, experiment: str | None = None
) -> ImportResult:
    """Import the finished, pruned and failed trials of one study (or of every study) in ``storage``.

    Args:
        tracker: the exptrack store to import into.
        storage: an RDB URL (``sqlite:///optuna.db``, ``postgresql://...``) or a journal file path.
        study: the study to import; all studies in the storage when None.
        experiment: put every run into this exptrack experiment instead of one per study; by
            default the tracker's own experiment when it was opened on one.

    Raises:
        ImportSourceError: the storage cannot be opened, or has no study ``study``.
        MissingDependencyError: optuna is not installed (``pip install 'exptrack[optuna]'``).
    """
    optuna = _optuna()
    opened = _open_storage(optuna, storage)
    names = sorted(s.study_name for s in opened.get_all_studies())
    if study is not None:
        if study not in names:
            known = ", ".join(names) or "none"
            raise ImportSourceError(storage, f"no study {study!r} in it (studies: {known})")
        names = [study]
    location = public_location(storage)
    target = experiment or getattr(tracker, "experiment", None)

    def runs() -> Iterator[ImportedRun | Skipped]:
        for name in names:
            loaded = optuna.load_study(study_name=name, storage=opened)
            yield from _translate(loaded, location, target or clean_name(name) or "default")

    return write_runs(tracker, runs(), source=storage, warnings=[])


def public_location(storage: str) -> str:
    """Where the storage is, as recorded in each run: a URL without its password, or a full path."""
    return _PASSWORD.sub(r"\1***@", storage) if "://" in storage else str(Path(storage).resolve())


def _optuna() -> Any:
    from exptrack.query.export import _require

    return _require("optuna", "importing Optuna studies", "optuna")


def _open_storage(optuna: Any, storage: str) -> Any:
    """The storage, opened without creating anything: a missing file is an error, not a new study."""
    try:
        if "://" in storage:
            if storage.startswith("sqlite:///"):
                path = Path(storage[len("sqlite:///"):].split("?", 1)[0])
                if not path.is_file():
                    raise ImportSourceError(storage, f"no database file at {path}")
            return optuna.storages.RDBStorage(storage, skip_table_creation=True)
        path = Path(storage)
        if not path.is_file():
            raise ImportSourceError(storage, "no such journal file (an RDB storage is given as a URL)")
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    except ImportSourceError:
        raise
    except Exception as exc:  # SQLAlchemy, driver and journal errors have no common base
        raise ImportSourceError(storage, f"not a readable Optuna storage ({type(exc).__name__}: {exc})") from None


def _translate(study: optuna.Study, location: str, experiment: str) -> Iterator[ImportedRun | Skipped]:
    directions = [d.name.lower()[:3] for d in study.directions]  # MINIMIZE -> "min"
    names = _metric_names(study.metric_names, len(directions))
    for trial in study.get_trials(deepcopy=False):
        source_id = f"{study.study_name}#{trial.number}"
        status = _STATUS.get(trial.state.name)
        if status is None or trial.datetime_start is None:
            yield Skipped(source_id, f"unfinished ({trial.state.name})")
            continue
        start = _utc(trial.datetime_start)
        values: Sequence[float] = trial.values or ()
        history: dict[str, list[HistoryPoint]] = {}
        if trial.intermediate_values:
            history[names[0]] = [(int(step), float(value), None) for step, value in
                                 sorted(trial.intermediate_values.items())]
        attrs = {str(k): plain_tree(v) for k, v in trial.user_attrs.items()}
        source: dict[str, object] = {
            "system": "optuna",
            "location": location,
            "study": study.study_name,
            "trial_number": trial.number,
            "trial_id": trial._trial_id,
            "state": trial.state.name,
        }
        if trial.datetime_complete is not None:
            source["datetime_complete"] = iso_utc(_utc(trial.datetime_complete).timestamp())
        if attrs:
            source["user_attrs"] = attrs
        yield ImportedRun(
            source_id=source_id,
            run_id=derived_run_id(int(start.timestamp() * 1000), "optuna", study.study_name, str(trial.number),
                                  trial.datetime_start.isoformat()),
            experiment=experiment,
            timestamp=iso_utc(start.timestamp()),
            status=status,
            name=f"trial-{trial.number}",
            params={str(k): plain_tree(v) for k, v in trial.params.items()},
            metrics={name: float(value) for name, value in zip(names, values) if value is not None},
            history=history,
            tags=tuple(f"{k}={v}" for k, v in sorted(attrs.items()) if not isinstance(v, (dict, list))),
            directions=dict(zip(names, directions)),
            source=source,
        )


def _metric_names(given: Sequence[str] | None, count: int) -> list[str]:
    if given and len(given) == count:
        return [str(name) for name in given]
    return ["value"] if count == 1 else [f"value_{i}" for i in range(count)]


def _utc(moment: _dt.datetime) -> _dt.datetime:
    # a naive datetime is local wall-clock time, as Optuna writes it (datetime.now())
    return moment.astimezone(_dt.timezone.utc)
