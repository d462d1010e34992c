"""best / top / summary / get_run answers, direction inference, and the error hierarchy."""

from __future__ import annotations

import errno
import math
import pickle
import random
import statistics
from collections.abc import Sequence
from pathlib import Path

import pytest

from exptrack import (
    ArtifactIntegrityError,
    CorruptStoreError,
    DuplicateRunError,
    ExperimentTracker,
    ExptrackError,
    FilterSyntaxError,
    ImportSourceError,
    InvalidRecordError,
    LockTimeoutError,
    MissingMetricError,
    NoRunsError,
    PartialBatchError,
    QueryError,
    RunNotFoundError,
    StorageError,
    UnknownMetricError,
    errors,
)
from exptrack.query.directions import infer_mode
from exptrack.store import fsio
from exptrack.store.record import Run

NAN, INF = math.nan, math.inf


def log_values(tracker: ExperimentTracker, metric: str, values: Sequence[float | None]) -> list[Run]:
    """One run per value (``None``: a run without the metric), each tagged with its index."""
    return tracker.log_runs(
        [{"params": {"i": i}, "metrics": {} if value is None else {metric: value}} for i, value in enumerate(values)]
    )


def indices(runs: Sequence[Run]) -> list[int]:
    return [run.params["i"] for run in runs]


# -- best and top -------------------------------------------------------------------------------


def test_best_run_maximises_accuracy_and_minimises_loss(tracker: ExperimentTracker) -> None:
    tracker.log_run(params={"i": 0}, metrics={"accuracy": 0.7, "loss": 0.5})
    tracker.log_run(params={"i": 1}, metrics={"accuracy": 0.9, "loss": 0.4})
    tracker.log_run(params={"i": 2}, metrics={"accuracy": 0.8, "loss": 0.2})
    assert tracker.best_run("accuracy").params["i"] == 1
    assert tracker.best_run("loss").params["i"] == 2
    assert tracker.best_run("accuracy", mode="min").params["i"] == 0
    assert tracker.best_run("loss", "max").params["i"] == 0
    assert indices(tracker.top_runs("accuracy", k=2)) == [1, 2]
    assert indices(tracker.top_runs("loss", k=10)) == [2, 1, 0]
    assert indices(tracker.top_runs("loss", 2, mode="max")) == [0, 1]


@pytest.mark.parametrize(
    ("metric", "values", "best", "top3"),
    [
        ("accuracy", [0.8, 0.9, 0.7, 0.9, 0.9], 1, [1, 3, 4]),
        ("loss", [0.3, 0.1, 0.1, 0.2, 0.1], 1, [1, 2, 4]),
        ("accuracy", [1, 1.0, 1, 0.5], 0, [0, 1, 2]),  # an int and a float that compare equal tie too
    ],
)
def test_ties_go_to_the_earliest_run(
    tracker: ExperimentTracker, metric: str, values: list[float], best: int, top3: list[int]
) -> None:
    log_values(tracker, metric, values)
    assert tracker.best_run(metric).params["i"] == best
    assert indices(tracker.top_runs(metric, k=3)) == top3


@pytest.mark.parametrize(
    ("metric", "values", "best", "ranked"),
    [
        ("accuracy", [0.5, NAN, INF, 0.7, -INF, None], 3, [3, 0]),
        ("loss", [INF, -INF, NAN, 0.3, None, 0.4], 3, [3, 5]),
    ],
)
def test_non_finite_and_missing_values_are_never_ranked(
    tracker: ExperimentTracker, metric: str, values: list[float | None], best: int, ranked: list[int]
) -> None:
    log_values(tracker, metric, values)
    assert tracker.best_run(metric).params["i"] == best
    assert indices(tracker.top_runs(metric, k=10)) == ranked
    assert indices(tracker.top_runs(metric, k=10, mode="min" if metric == "accuracy" else "max")) == ranked[::-1]


def test_metric_with_only_non_finite_values_has_no_best(tracker: ExperimentTracker) -> None:
    log_values(tracker, "loss", [NAN, INF, -INF])
    with pytest.raises(NoRunsError, match="no finished run has a finite value for metric 'loss'") as caught:
        tracker.best_run("loss")
    assert not isinstance(caught.value, UnknownMetricError)  # the metric exists: it is not a typo


def test_top_runs_matches_a_sorted_reference_on_many_runs(tracker: ExperimentTracker) -> None:
    rng = random.Random(7)
    values: list[float | None] = [
        rng.choice([None, NAN, INF, round(rng.random(), 2), round(rng.random(), 2)]) for _ in range(400)
    ]
    log_values(tracker, "val_loss", values)
    finite = [(v, i) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    for k in (1, 5, 37, 1000):
        assert indices(tracker.top_runs("val_loss", k=k)) == [i for _, i in sorted(finite)[:k]]
        by_max = sorted(finite, key=lambda pair: (-pair[0], pair[1]))
        assert indices(tracker.top_runs("val_loss", k=k, mode="max")) == [i for _, i in by_max[:k]]


def test_integer_metrics_at_the_64_bit_bounds_are_ranked_exactly(tracker: ExperimentTracker) -> None:
    log_values(tracker, "loss", [2**64 - 1, -(2**63), 2**64 - 2, 0])
    assert indices(tracker.top_runs("loss", k=4)) == [1, 3, 2, 0]
    assert indices(tracker.top_runs("loss", k=4, mode="max")) == [0, 2, 3, 1]
    assert tracker.best_run("loss").metrics["loss"] == -(2**63)
    stats = tracker.summary()["metrics"]["loss"]
    assert (stats["count"], stats["min"], stats["max"]) == (4, -(2**63), 2**64 - 1)
    assert stats["best_value"] == -(2**63)
    reopened = ExperimentTracker(tracker.store, durable=False)  # answers from what was saved
    assert indices(reopened.top_runs("loss", k=4)) == [1, 3, 2, 0]
    assert reopened.summary()["metrics"]["loss"]["best_value"] == -(2**63)


def test_top_runs_refuses_k_below_one(tracker: ExperimentTracker) -> None:
    log_values(tracker, "accuracy", [0.5])
    with pytest.raises(ValueError, match="k"):
        tracker.top_runs("accuracy", k=0)


# -- direction inference ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metric",
    ["accuracy", "val_accuracy", "test_acc", "f1", "f1_macro", "auc", "roc_auc", "precision", "recall", "r2",
     "Val-Accuracy", "top5_accuracy"],
)
def test_higher_is_better_for_score_names(metric: str) -> None:
    assert infer_mode(metric) == "max"


@pytest.mark.parametrize(
    "metric", ["loss", "val_loss", "error", "test_rmse", "rmse", "mse", "mae", "train-mse", "log_loss", "TEST_MAE"]
)
def test_lower_is_better_for_loss_names(metric: str) -> None:
    assert infer_mode(metric) == "min"


@pytest.mark.parametrize("metric", ["throughput", "score", "epochs", "accuracy_loss"])
def test_unknown_direction_asks_for_a_mode(tracker: ExperimentTracker, metric: str) -> None:
    log_values(tracker, metric, [1.0, 2.0])
    assert infer_mode(metric) is None
    with pytest.raises(QueryError) as caught:
        tracker.best_run(metric)
    assert isinstance(caught.value, ValueError)
    assert metric in str(caught.value)
    assert "max" in str(caught.value)
    assert "min" in str(caught.value)
    with pytest.raises(QueryError):
        tracker.top_runs(metric)
    assert tracker.best_run(metric, mode="max").params["i"] == 1
    assert tracker.best_run(metric, mode="min").params["i"] == 0


def test_invalid_mode_is_refused(tracker: ExperimentTracker) -> None:
    log_values(tracker, "accuracy", [0.5])
    with pytest.raises(QueryError, match="mode"):
        tracker.best_run("accuracy", mode="highest")


# -- nothing to rank ----------------------------------------------------------------------------


def test_no_runs_is_a_lookup_error(tracker: ExperimentTracker) -> None:
    for query in (lambda: tracker.best_run("accuracy"), lambda: tracker.top_runs("loss", k=3)):
        with pytest.raises(NoRunsError) as caught:
            query()
        assert isinstance(caught.value, LookupError)
        assert not isinstance(caught.value, UnknownMetricError)


def test_unknown_metric_is_a_lookup_error_naming_the_known_ones(tracker: ExperimentTracker) -> None:
    tracker.log_run(metrics={"accuracy": 0.5, "loss": 0.1})
    tracker.log_run(params={"no": "metrics"})
    with pytest.raises(UnknownMetricError) as caught:
        tracker.best_run("f1")
    error = caught.value
    assert isinstance(error, NoRunsError)
    assert isinstance(error, LookupError)
    assert error.metric == "f1"
    assert error.known == ("accuracy", "loss")
    assert "'f1'" in str(error)
    assert "accuracy, loss" in str(error)


# -- get_run ------------------------------------------------------------------------------------


def test_get_run_by_id_and_unique_prefix(tracker: ExperimentTracker) -> None:
    runs = log_values(tracker, "accuracy", [0.1, 0.2, 0.3])
    for run in runs:
        assert tracker.get_run(run.run_id) == run
    ids = [run.run_id for run in runs]
    target = runs[1]
    length = next(n for n in range(1, 33) if sum(i.startswith(target.run_id[:n]) for i in ids) == 1)
    assert tracker.get_run(target.run_id[:length]) == target


def test_ambiguous_or_unknown_id_is_a_lookup_error(store: Path) -> None:
    tracker = ExperimentTracker(store, durable=False)
    with tracker.runs_path.open("wb") as handle:
        for run_id in ("abc1", "abc2", "abd"):
            handle.write(b'{"run_id":"%s","params":{},"metrics":{}}\n' % run_id.encode())
    assert tracker.get_run("abd").run_id == "abd"
    assert tracker.get_run("abc2").run_id == "abc2"
    with pytest.raises(RunNotFoundError, match="ambiguous") as caught:
        tracker.get_run("abc")
    assert "abc1" in str(caught.value)
    assert "abc2" in str(caught.value)
    assert caught.value.run_id == "abc"
    for missing in ("zzz", "abc3", ""):
        with pytest.raises(RunNotFoundError) as unknown:
            tracker.get_run(missing)
        assert isinstance(unknown.value, LookupError)
        assert unknown.value.run_id == missing


# -- summary ------------------------------------------------------------------------------------


def test_summary_counts_statuses_and_describes_each_metric(tracker: ExperimentTracker) -> None:
    accuracy = [0.5, 0.75, 0.75, 0.6]
    first = tracker.log_run(metrics={"accuracy": accuracy[0], "throughput": 10})
    best = tracker.log_run(metrics={"accuracy": accuracy[1], "loss": NAN})
    tracker.log_run(metrics={"accuracy": accuracy[2], "loss": 0.4}, status="failed")
    tracker.log_run(metrics={"accuracy": accuracy[3], "loss": 0.2, "throughput": 30}, status="killed")
    tracker.log_run(params={"empty": True})
    with tracker.runs_path.open("ab") as handle:
        handle.write(b"not json\n")

    result = tracker.summary(status="any")
    assert result["total_runs"] == 5
    assert result["corrupt_lines"] == 1
    assert result["statuses"] == {"failed": 1, "finished": 3, "killed": 1}
    stats = result["metrics"]
    assert list(stats) == ["accuracy", "loss", "throughput"]
    acc = stats["accuracy"]
    assert (acc["count"], acc["nonfinite"], acc["min"], acc["max"]) == (4, 0, 0.5, 0.75)
    assert math.isclose(acc["mean"], statistics.mean(accuracy))
    assert math.isclose(acc["std"], statistics.stdev(accuracy))
    assert (acc["mode"], acc["best_run_id"], acc["best_value"]) == ("max", best.run_id, 0.75)
    loss = stats["loss"]
    assert (loss["count"], loss["nonfinite"], loss["min"], loss["max"], loss["std"]) == (2, 1, 0.2, 0.4, loss["std"])
    assert math.isclose(loss["mean"], 0.3)
    assert math.isclose(loss["std"], statistics.stdev([0.4, 0.2]))
    assert loss["mode"] == "min"
    assert loss["best_value"] == 0.2
    assert loss["best_run_id"] != first.run_id
    throughput = stats["throughput"]
    assert (throughput["count"], throughput["min"], throughput["max"], throughput["mean"]) == (2, 10, 30, 20)
    assert (throughput["mode"], throughput["best_run_id"], throughput["best_value"]) == (None, None, None)


def test_summary_of_one_value_has_no_std(tracker: ExperimentTracker) -> None:
    tracker.log_run(metrics={"accuracy": 0.5})
    assert tracker.summary()["metrics"]["accuracy"]["std"] is None


def test_summary_of_an_empty_store(tracker: ExperimentTracker) -> None:
    result = tracker.summary()
    assert (result["total_runs"], result["corrupt_lines"], result["statuses"], result["metrics"]) == (0, 0, {}, {})


def test_summary_agrees_with_best_run(tracker: ExperimentTracker) -> None:
    rng = random.Random(3)
    log_values(tracker, "val_accuracy", [rng.choice([NAN, 0.5, 0.25, 0.75, 0.125]) for _ in range(200)])
    result = tracker.summary()["metrics"]["val_accuracy"]
    best = tracker.best_run("val_accuracy")
    assert (result["best_run_id"], result["best_value"]) == (best.run_id, 0.75)


# -- the error hierarchy ------------------------------------------------------------------------

ERRORS: list[tuple[ExptrackError, tuple[type[BaseException], ...]]] = [
    (ExptrackError("base"), (Exception,)),
    (InvalidRecordError("params.model: cannot store", "params.model"), (ValueError,)),
    (MissingMetricError(["accuracy", "f1"]), (InvalidRecordError, ValueError)),
    (DuplicateRunError(["r1", "r2"]), (InvalidRecordError, ValueError)),
    (QueryError("mode?"), (ValueError,)),
    (FilterSyntaxError("unexpected token", "a >", 2), (QueryError, ValueError)),
    (CorruptStoreError("line 3: invalid JSON"), (ValueError,)),
    (ArtifactIntegrityError("sha256 mismatch"), (ValueError,)),
    (LockTimeoutError("/s/runs.jsonl.lock", 1.5, "pid 12 on host"), (TimeoutError,)),
    (StorageError(errno.ENOSPC, "append to the run log", "/s/runs.jsonl"), (OSError,)),
    (PartialBatchError(errno.ENOSPC, "/s/runs.jsonl", ("a1", "b2"), 5), (StorageError, OSError)),
    (RunNotFoundError("abc"), (LookupError,)),
    (NoRunsError("no runs in /s"), (LookupError,)),
    (UnknownMetricError("f1", ["accuracy", "loss"]), (NoRunsError, LookupError)),
    (ImportSourceError("sqlite:///m.db", "no database file at m.db"), (ValueError,)),
]


def test_every_error_class_is_covered_here() -> None:
    defined = {value for value in vars(errors).values() if isinstance(value, type) and issubclass(value, ExptrackError)}
    assert defined == {type(error) for error, _ in ERRORS}


@pytest.mark.parametrize(("error", "bases"), ERRORS, ids=lambda value: type(value).__name__)
def test_error_is_its_stdlib_class_and_survives_pickling(
    error: ExptrackError, bases: tuple[type[BaseException], ...]
) -> None:
    assert isinstance(error, ExptrackError)
    for base in bases:
        assert isinstance(error, base)
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - bytes this test just made
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert vars(copy) == vars(error)
    if isinstance(error, OSError):
        assert (copy.errno, copy.strerror, copy.filename) == (error.errno, error.strerror, error.filename)


def test_lock_timeout_message_names_the_lock_and_the_holder() -> None:
    error = LockTimeoutError("/s/runs.jsonl.lock", 1.5, "pid 12 on host")
    assert (error.lock_path, error.timeout, error.holder) == ("/s/runs.jsonl.lock", 1.5, "pid 12 on host")
    assert "/s/runs.jsonl.lock" in str(error)
    assert "pid 12 on host" in str(error)


def test_storage_error_carries_errno_and_path() -> None:
    error = StorageError(errno.ENOSPC, "append to the run log", "/s/runs.jsonl")
    assert (error.errno, error.filename) == (errno.ENOSPC, "/s/runs.jsonl")
    assert "/s/runs.jsonl" in str(error)
    assert "disk is full" in str(error)


class _DiskFull(fsio.FileSystem):
    def write(self, fd: int, data: bytes | memoryview) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_failed_append_raises_storage_error_and_leaves_the_log_readable(tracker: ExperimentTracker) -> None:
    kept = tracker.log_run(metrics={"accuracy": 0.5})
    before = tracker.runs_path.read_bytes()
    previous = fsio.install(_DiskFull())
    try:
        with pytest.raises(StorageError) as caught:
            tracker.log_run(metrics={"accuracy": 0.9})
    finally:
        fsio.install(previous)
    error = caught.value
    assert isinstance(error, OSError)
    assert error.errno == errno.ENOSPC
    assert error.filename == str(tracker.runs_path)
    assert tracker.runs_path.read_bytes() == before
    assert [run.run_id for run in tracker.runs()] == [kept.run_id]
    assert tracker.log_run(metrics={"accuracy": 0.7}).offset == len(before)
