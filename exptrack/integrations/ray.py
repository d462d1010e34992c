"""Ray Tune: one exptrack run per trial, written by a logger callback in the driver.

Tune runs trials on any node of a cluster and sends every result to the driver; this callback
lives in the driver and is the store's only writer, so trials need no shared filesystem and the
store no network access: the run log stays one local file.  Each trial becomes one run when it
ends, with its config as params, its last result's numbers as metrics, one history point per
reported iteration (step = ``training_iteration``), and its status from the way it ended
(``failed`` with the error when it raised, ``finished`` otherwise).
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import ray.cloudpickle
from ray.tune.logger import LoggerCallback

from exptrack import ExperimentTracker
from exptrack.errors import InvalidRecordError

from ._common import metric_value, storable, utc_timestamp

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

__all__ = ["ExptrackLoggerCallback"]

# Keys Tune adds to every result: bookkeeping, not the trial's metrics (a few are kept below).
_BOOKKEEPING = frozenset({
    "config", "date", "done", "timestamp", "trial_id", "experiment_tag", "hostname", "node_ip", "pid",
    "time_this_iter_s", "time_since_restore", "iterations_since_restore", "timesteps_since_restore",
    "checkpoint_dir_name", "should_checkpoint", "__duplicate__", "__trial_info__",
})
_WHERE = ("node_ip", "hostname", "pid")  # where the trial last ran: kept in the run's ray section


class _TrialLog:
    """What the driver has heard of one trial so far."""

    __slots__ = ("history", "last", "reported", "started")

    def __init__(self, started: str) -> None:
        self.started = started
        self.last: Mapping[str, Any] = {}
        self.reported = 0
        self.history: dict[str, list[tuple[int, float, float | None]]] = {}  # (step, value, time)


class ExptrackLoggerCallback(LoggerCallback):
    """Log every Tune trial as one exptrack run: ``tune.RunConfig(callbacks=[cb])``.

    Args:
        store: the exptrack store directory (on the driver's machine).
        experiment: the experiment the runs belong to; by default ``"default"``.
        directions: ``{"metric": "min" | "max"}`` stored with the runs so that
            ``exptrack best metric`` needs no ``--min``/``--max``; pass Tune's own
            ``TuneConfig(metric=..., mode=...)`` here (a callback is not told them).
    """

    def __init__(
        self,
        store: str | os.PathLike[str],
        *,
        experiment: str | None = None,
        directions: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        for metric, mode in (directions or {}).items():
            if mode not in ("min", "max"):
                raise InvalidRecordError(f"direction of {metric!r} must be 'min' or 'max', not {mode!r}",
                                         "directions")
        self.store = os.fspath(store)
        self.experiment = experiment
        self.directions = dict(directions or {})
        self._tracker: ExperimentTracker | None = None
        self._trials: dict[str, _TrialLog] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # Tune may copy its callbacks; the open tracker and the lock stay behind.
        state = self.__dict__.copy()
        state["_tracker"], state["_lock"], state["_trials"] = None, None, {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def tracker(self) -> ExperimentTracker:
        if self._tracker is None:
            self._tracker = ExperimentTracker(self.store)
        return self._tracker

    # -- Tune's hooks (all called in the driver) -------------------------------------------------

    def log_trial_start(self, trial: Trial) -> None:
        with self._lock:
            if trial.trial_id not in self._trials:  # a restart after a failure keeps what came before
                self._trials[trial.trial_id] = _TrialLog(utc_timestamp(_now()))

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        metrics = _metrics(result)
        step = result.get("training_iteration", iteration)
        moment = metric_value(result.get("timestamp"))  # when the trial reported it (seconds)
        with self._lock:
            log = self._trials.setdefault(trial.trial_id, _TrialLog(utc_timestamp(_now())))
            log.last = result
            log.reported += 1
            for name, value in metrics.items():
                if name == "training_iteration":
                    continue  # it is the step itself
                log.history.setdefault(name, []).append((int(step), value, moment))

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        with self._lock:
            log = self._trials.pop(trial.trial_id, None) or _TrialLog(utc_timestamp(_now()))
            self._log(trial, log, failed)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        if self._tracker is not None:
            self._tracker.close()

    # -- internals -------------------------------------------------------------------------------

    def _log(self, trial: Trial, log: _TrialLog, failed: bool) -> None:
        section: dict[str, Any] = {"trial_id": trial.trial_id, "trial_name": str(trial), "results": log.reported}
        tag = getattr(trial, "experiment_tag", None)
        if tag:
            section["experiment_tag"] = str(tag)
        section.update({key: storable(log.last[key]) for key in _WHERE if key in log.last})
        fields: dict[str, Any] = {
            "params": storable(trial.config),
            "metrics": _metrics(log.last),
            "status": "failed" if failed else "finished",
            "name": str(trial),
            "timestamp": log.started,
            "extra": {"ray": section},
        }
        if log.history:
            fields["history"] = log.history
        if failed:
            fields["extra"]["error"] = _error_of(trial)
        if self.directions:
            fields["directions"] = {m: d for m, d in self.directions.items() if m in fields["metrics"]}
        if self.experiment is not None:
            fields["experiment"] = self.experiment
        self.tracker.log_run(**fields)


def _metrics(result: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers a trial reported, nested dicts flattened with ``/`` as Tune's loggers do."""
    out: dict[str, float] = {}
    for key, value in result.items():
        if not prefix and key in _BOOKKEEPING:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_metrics(value, f"{name}/"))
            continue
        number = metric_value(value)
        if number is not None:
            out[name] = number
    return out


def _error_of(trial: Trial) -> dict[str, str]:
    """The trial's exception as a type and message.

    Tune has just written it into the trial's folder on the driver (the storage path is synced
    later, so ``trial.get_pickled_error()`` may not see it yet): read that local copy.
    """
    error: object = None
    path = getattr(trial, "pickled_error_file", None)
    if path and os.path.exists(path):
        try:
            with open(path, "rb") as f:
                error = ray.cloudpickle.load(f)  # Tune's own file, written by this driver just now
        except Exception:  # the error's detail must never cost the run
            error = None
    if not isinstance(error, BaseException):
        return {"type": "TrialError", "message": "the trial raised; see its error.txt in Tune's results"}
    cause = getattr(error, "cause", None) or error  # Tune wraps the trainable's error in RayTaskError
    return {"type": type(cause).__qualname__, "message": str(cause)[:2000]}


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)
