"""Keras 3: one exptrack run per ``model.fit``, with epoch metrics as the run's history.

The callback opens a live run (``tracker.start_run``) when training begins, so the run's params
(model and optimizer config, the fit's epochs and steps) and its code, system and invocation are
recorded like any other run's, and each epoch's metrics are appended to the run's history as
they come: a process killed mid-fit leaves a run that ``tracker.recover()`` logs as killed.

Keras calls no callback when ``fit`` raises, so a raised fit is caught three ways: use the
callback as a context manager (``with cb: model.fit(..., callbacks=[cb])``, the exact error is
recorded); or the next ``fit`` with the same callback ends the open run as failed; or, at the
latest, the interpreter's exit does.  A fit that ends with a non-finite loss (``TerminateOnNaN``)
is failed too; ``EarlyStopping`` is a normal end.
"""

from __future__ import annotations

import atexit
import math
import threading
import warnings
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import keras

from exptrack import ExperimentTracker
from exptrack.errors import InvalidRecordError

from ._common import numeric_metrics, start_run_in, storable

if TYPE_CHECKING:
    from exptrack.live.run import ActiveRun

__all__ = ["ExptrackCallback"]


class FitAbandonedError(RuntimeError):
    """Why a run ended failed when Keras never said: its fit raised and nothing else was heard."""


class ExptrackCallback(keras.callbacks.Callback):  # type: ignore[misc]  # keras ships no type hints
    """Record each ``model.fit`` as one exptrack run.

    Args:
        tracker: where the runs go.
        experiment: the experiment the runs belong to; by default the tracker's.
        name: the run's name; by default the model's name.
        params: more params to record beside the model's and the optimizer's.
        tags: tags for the run, as for ``log_run``.
        log_batches: also record the training metrics of every N-th batch (``batch_<metric>``,
            step = batch number counted over the whole fit); 0 (default) records epochs only.
            Batch logging costs one history line per call: keep N large for long epochs.
        capture: what the run captures (code, system...), as for ``start_run``.
    """

    def __init__(
        self,
        tracker: ExperimentTracker,
        *,
        experiment: str | None = None,
        name: str | None = None,
        params: Mapping[str, object] | None = None,
        tags: Sequence[str] | Mapping[str, object] | None = None,
        log_batches: int = 0,
        capture: bool | Sequence[str] = True,
    ) -> None:
        super().__init__()
        if isinstance(log_batches, bool) or not isinstance(log_batches, int) or log_batches < 0:
            raise InvalidRecordError(f"log_batches must be a non-negative int, not {log_batches!r}", "log_batches")
        self.tracker = tracker
        self.experiment = experiment
        self.run_name = name
        self.extra_params = dict(params or {})
        self.tags = tags
        self.log_batches = log_batches
        self.capture = capture
        self.run: ActiveRun | None = None  # the fit in progress
        self._batches = 0
        self._last_loss: float | None = None
        self._lock = threading.Lock()

    # -- the context manager that sees fit's exception -------------------------------------------

    def __enter__(self) -> ExptrackCallback:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self._end(kind, exc, tb)
        elif self.run is not None:
            self._end(FitAbandonedError, FitAbandonedError("fit did not finish"), None)

    # -- Keras' hooks ----------------------------------------------------------------------------

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.run is not None:  # the previous fit raised: nothing else told us
            self._end(FitAbandonedError, FitAbandonedError("fit raised before it ended"), None)
        params = {**self._model_params(), **self.extra_params}
        run = start_run_in(
            self.tracker, self.experiment, params=params, tags=self.tags, capture=self.capture,
            name=self.run_name or self.model.name,
            directions={"loss": "min", "val_loss": "min"},  # Keras minimises its loss, whatever its name
        )
        run.__enter__()
        self.run = run
        self._batches = 0
        self._last_loss = None
        atexit.register(self._at_exit)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._batches += 1
        if self.run is None or not self.log_batches or (self._batches - 1) % self.log_batches:
            return
        metrics = numeric_metrics(logs or {})
        with self._lock:
            self.run.log_metrics({f"batch_{name}": value for name, value in metrics.items()}, step=self._batches - 1)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.run is None:
            return
        metrics = numeric_metrics(logs or {})
        self._last_loss = metrics.get("loss", self._last_loss)
        with self._lock:
            self.run.log_metrics(metrics, step=epoch)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.run is None:
            return
        if self._last_loss is not None and not math.isfinite(self._last_loss):
            error = FloatingPointError(f"the training loss became {self._last_loss}")
            self._end(FloatingPointError, error, None)
        else:
            self._end(None, None, None)

    # -- internals -------------------------------------------------------------------------------

    def _end(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        run, self.run = self.run, None
        atexit.unregister(self._at_exit)
        if run is not None:
            run.__exit__(kind, exc, tb)

    def _at_exit(self) -> None:
        if self.run is not None:
            self._end(FitAbandonedError, FitAbandonedError("the process exited while fit was running"), None)

    def _model_params(self) -> dict[str, Any]:
        model = self.model
        described: dict[str, Any] = {"name": model.name, "class": type(model).__name__, "layers": len(model.layers)}
        if model.built:
            described["params"] = int(model.count_params())
            described["trainable_params"] = int(sum(math.prod(w.shape) for w in model.trainable_weights))
        loss = getattr(model, "loss", None)
        if loss is not None:
            described["loss"] = loss if isinstance(loss, str) else getattr(loss, "name", type(loss).__name__)
        params: dict[str, Any] = {"model": described, "fit": storable(dict(self.params or {}))}
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None:
            with warnings.catch_warnings():
                # Keras' own get_config trips NumPy deprecations; they are not the user's to see.
                warnings.simplefilter("ignore", DeprecationWarning)
                config = optimizer.get_config()
            params["optimizer"] = {"class": type(optimizer).__name__, **storable(config)}
        return params
