"""Optuna: one exptrack run per trial, written by a ``study.optimize`` callback.

Optuna calls callbacks from its worker threads (``n_jobs > 1``) in completion order, and for
pruned and failed trials too.  Each call becomes exactly one ``log_run``: the trial's params, its
value(s), its state as the run's status, its intermediate values as the run's history and the
study's direction(s) stored with the run, so ``exptrack best value`` needs no ``--min``/``--max``
and never ranks a pruned or failed trial (only finished runs compete).  Several processes
sharing one Optuna storage each log the trials they ran: still one run per trial.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

from exptrack import ExperimentTracker
from exptrack.errors import InvalidRecordError

from ._common import storable, utc_timestamp

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = ["ExptrackCallback"]

# Optuna's final trial states; RUNNING and WAITING never reach a callback.
_STATUS = {TrialState.COMPLETE: "finished", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}


class ExptrackCallback:
    """Log every trial of a study as one exptrack run: ``study.optimize(f, callbacks=[cb])``.

    Args:
        tracker: where the runs go; one tracker may serve every thread of ``n_jobs``.
        metric_name: the name of the objective's value, or one name per objective of a
            multi-objective study (a single name ``m`` then becomes ``m_0``, ``m_1``, ...).
        experiment: the experiment the runs belong to; by default the tracker's.

    A completed trial is ``finished``; a pruned one is ``pruned`` and keeps the last intermediate
    value Optuna gives it; a failed one is ``failed`` with no value.  The run is named
    ``trial-<number>`` and its ``optuna`` section holds the study name, trial number, start and
    completion times and user attributes.
    """

    def __init__(
        self,
        tracker: ExperimentTracker,
        *,
        metric_name: str | Sequence[str] = "value",
        experiment: str | None = None,
    ) -> None:
        if not isinstance(metric_name, str) and (
            not metric_name or not all(isinstance(name, str) and name for name in metric_name)
        ):
            raise InvalidRecordError(f"metric_name must be a name or a list of names, not {metric_name!r}",
                                     "metric_name")
        self.tracker = tracker
        self.metric_name = metric_name
        self.experiment = experiment
        # Optuna calls back from n_jobs threads at once; one run per call, one call at a time.
        self._lock = threading.Lock()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        fields = self._fields(study, trial)
        with self._lock:
            self.tracker.log_run(**fields)

    def _fields(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        """The ``log_run`` keyword arguments that describe ``trial``."""
        names = self._names(len(study.directions))
        values = trial.values if trial.state is not TrialState.FAIL else None
        metrics = dict(zip(names, values)) if values is not None else {}
        directions = {
            name: "max" if direction is StudyDirection.MAXIMIZE else "min"
            for name, direction in zip(names, study.directions)
        }
        history = {
            names[0]: sorted(trial.intermediate_values.items())  # (step, value) points
        } if trial.intermediate_values else None
        section: dict[str, Any] = {"study": study.study_name, "trial": trial.number}
        if trial.datetime_start is not None:
            section["datetime_start"] = utc_timestamp(trial.datetime_start)
        if trial.datetime_complete is not None:
            section["datetime_complete"] = utc_timestamp(trial.datetime_complete)
        if trial.duration is not None:
            section["duration_s"] = trial.duration.total_seconds()
        if trial.user_attrs:
            section["user_attrs"] = storable(trial.user_attrs)
        fields: dict[str, Any] = {
            "params": storable(trial.params),
            "metrics": metrics,
            "status": _STATUS.get(trial.state, "failed"),
            "name": f"trial-{trial.number}",
            "directions": directions,
            "extra": {"optuna": section},
        }
        if trial.datetime_start is not None:
            fields["timestamp"] = utc_timestamp(trial.datetime_start)
        if history is not None:
            fields["history"] = history
        if self.experiment is not None:
            fields["experiment"] = self.experiment
        return fields

    def _names(self, objectives: int) -> list[str]:
        if isinstance(self.metric_name, str):
            return [self.metric_name] if objectives == 1 else [f"{self.metric_name}_{i}" for i in range(objectives)]
        names = list(self.metric_name)
        if len(names) != objectives:
            raise InvalidRecordError(
                f"metric_name names {len(names)} objective(s) but the study has {objectives}", "metric_name"
            )
        return names

