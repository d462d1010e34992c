"""The Keras 3 callback against real Keras on the JAX backend (CPU): params, epoch history,
throttled batch metrics, and the run's end when fit finishes, raises, diverges or the process
exits mid-fit."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # the lighter backend to install; set before keras loads

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from exptrack import ExperimentTracker, Run
from exptrack.errors import InvalidRecordError
from exptrack.integrations.keras import ExptrackCallback

HANG_GUARD = 300.0  # seconds; only stops a hung interpreter
RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 4)).astype("float32")
Y = (X[:, 0] + X[:, 1] > 0).astype("int32")


def small_model(learning_rate: float = 0.01) -> Any:
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, activation="softmax")],
        name="tiny",
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class RaiseAtEpoch(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if epoch == self.epoch:
            raise RuntimeError(f"stopped at epoch {epoch} by the test")


def only_run(tracker: ExperimentTracker) -> Run:
    runs = list(tracker.runs())
    assert len(runs) == 1
    return runs[0]


def test_a_fit_is_one_finished_run_with_params_and_epoch_history(tracker: ExperimentTracker) -> None:
    model = small_model(learning_rate=0.02)
    callback = ExptrackCallback(tracker, params={"dataset": "xor-ish"}, capture=False)
    history = model.fit(X, Y, epochs=3, batch_size=16, validation_split=0.25, verbose=0, callbacks=[callback])
    run = only_run(tracker)
    assert run.status == "finished"
    assert run["name"] == "tiny"
    assert run.params["dataset"] == "xor-ish"
    assert run.params["model"]["class"] == "Sequential"
    assert run.params["model"]["params"] == model.count_params()
    assert run.params["model"]["loss"] == "sparse_categorical_crossentropy"
    assert run.params["optimizer"]["class"] == "Adam"
    assert run.params["optimizer"]["learning_rate"] == pytest.approx(0.02)
    assert run.params["fit"]["epochs"] == 3
    assert set(run.metrics) == set(history.history)
    for name, values in history.history.items():
        assert run.metrics[name] == pytest.approx(values[-1])
        points = tracker.history(run.run_id, name)
        assert [p["step"] for p in points] == [0, 1, 2]
        assert [p["value"] for p in points] == pytest.approx(values)
    assert tracker.best_run("val_loss").run_id == run.run_id  # Keras' loss is minimised: no mode needed


def test_batch_metrics_are_optional_and_throttled(tracker: ExperimentTracker) -> None:
    callback = ExptrackCallback(tracker, log_batches=3, capture=False)
    small_model().fit(X, Y, epochs=2, batch_size=8, verbose=0, callbacks=[callback])  # 8 batches an epoch
    run = only_run(tracker)
    points = tracker.history(run.run_id, "batch_loss")
    assert [p["step"] for p in points] == [0, 3, 6, 9, 12, 15]
    assert all(np.isfinite(p["value"]) for p in points)
    with pytest.raises(InvalidRecordError, match="log_batches"):
        ExptrackCallback(tracker, log_batches=-1)


def test_a_fit_that_raises_inside_with_is_failed_with_its_error(tracker: ExperimentTracker) -> None:
    callback = ExptrackCallback(tracker, capture=False)
    with pytest.raises(RuntimeError, match="epoch 1"), callback:
        small_model().fit(X, Y, epochs=4, verbose=0, callbacks=[callback, RaiseAtEpoch(1)])
    run = only_run(tracker)
    assert run.status == "failed"
    assert run["error"] == {"type": "RuntimeError", "message": "stopped at epoch 1 by the test"}
    assert [p["step"] for p in tracker.history(run.run_id, "loss")] == [0, 1]


def test_the_next_fit_ends_a_raised_fit_as_failed(tracker: ExperimentTracker) -> None:
    callback = ExptrackCallback(tracker, capture=False)
    model = small_model()
    with pytest.raises(RuntimeError):
        model.fit(X, Y, epochs=3, verbose=0, callbacks=[callback, RaiseAtEpoch(0)])
    model.fit(X, Y, epochs=1, verbose=0, callbacks=[callback])
    first, second = list(tracker.runs())
    assert first.status == "failed"
    assert first["error"]["type"] == "FitAbandonedError"
    assert second.status == "finished"


def test_a_diverged_fit_is_failed_and_early_stopping_is_finished(tracker: ExperimentTracker) -> None:
    poisoned = X.copy()
    poisoned[3, 0] = np.nan
    callback = ExptrackCallback(tracker, capture=False)
    small_model().fit(poisoned, Y, epochs=3, verbose=0, callbacks=[callback, keras.callbacks.TerminateOnNaN()])
    stopper = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    small_model().fit(X, Y, epochs=5, verbose=0, callbacks=[callback, stopper])
    diverged, stopped = list(tracker.runs())
    assert diverged.status == "failed"
    assert diverged["error"]["type"] == "FloatingPointError"
    assert stopped.status == "finished"
    assert len(tracker.history(stopped.run_id, "loss")) == 2  # stopped after the second epoch


def test_a_process_that_exits_mid_fit_leaves_a_failed_run(store: Path) -> None:
    script = textwrap.dedent(f"""
        import os
        os.environ.setdefault("KERAS_BACKEND", "jax")
        import keras, numpy as np
        from exptrack import ExperimentTracker
        from exptrack.integrations.keras import ExptrackCallback

        class Boom(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                raise SystemExit(3)

        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        callback = ExptrackCallback(ExperimentTracker({str(store)!r}), capture=False)
        model.fit(np.ones((8, 2)), np.ones(8), epochs=2, verbose=0, callbacks=[callback, Boom()])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=HANG_GUARD,
                          check=False, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert done.returncode == 3, done.stderr
    run = only_run(ExperimentTracker(store))
    assert run.status == "failed"
    assert run["error"] == {"type": "FitAbandonedError", "message": "the process exited while fit was running"}
    assert [p["step"] for p in ExperimentTracker(store).history(run.run_id, "loss")] == [0]
