"""Writing with given identities: run_id=, timestamp=, name=, experiment=, history= on log_run / log_runs."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import pickle
from pathlib import Path

import pytest

from exptrack import DuplicateRunError, ExperimentTracker, InvalidRecordError
from exptrack.store.names import generated_name


def test_given_identity_is_kept_as_stored(tracker: ExperimentTracker) -> None:
    run = tracker.log_run({"lr": 0.1}, {"acc": 0.9}, run_id="mlflow-abc.1", timestamp="2024-01-02T03:04:05+02:00",
                          name="baseline", experiment="wine")
    stored = tracker.get_run("mlflow-abc.1")
    assert stored == run
    assert stored.timestamp == "2024-01-02T01:04:05.000000Z"
    assert (stored.name, stored.experiment) == ("baseline", "wine")


def test_aware_datetime_is_converted_to_utc(tracker: ExperimentTracker) -> None:
    moment = dt.datetime(2025, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert tracker.log_run(timestamp=moment).timestamp == "2025-05-06T12:08:09.123456Z"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"run_id": "../escape"}, "run_id"),
        ({"run_id": "a/b"}, "run_id"),
        ({"run_id": ""}, "run_id"),
        ({"run_id": "x" * 129}, "run_id"),
        ({"timestamp": "2024-01-02T03:04:05"}, "timestamp"),  # naive: the zone is unknown
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": 12}, "timestamp"),
        ({"name": ""}, "name"),
        ({"name": "two\nlines"}, "name"),
        ({"experiment": " "}, "experiment"),
        ({"history": {"loss": [(-1, 0.5)]}}, "history.loss[0]"),
        ({"history": {"loss": "abc"}}, "history.loss"),
        ({"history": [{"name": "loss", "value": 1.0}]}, "history[0]"),
        ({"history": 3}, "history"),
    ],
)
def test_bad_identity_is_refused_before_writing(tracker: ExperimentTracker, kwargs: dict[str, object],
                                                field: str) -> None:
    with pytest.raises(InvalidRecordError) as info:
        tracker.log_run({"a": 1}, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert not tracker.runs_path.exists() or not list(tracker.runs())


def test_duplicate_given_id_is_refused_and_nothing_written(tracker: ExperimentTracker) -> None:
    tracker.log_run({"a": 1}, run_id="r1", history={"loss": [3.0, 2.0]})
    before = tracker.runs_path.read_bytes()
    history = (tracker.store / "history" / "r1.jsonl").read_bytes()
    with pytest.raises(DuplicateRunError) as info:
        tracker.log_run({"a": 2}, run_id="r1", history={"loss": [9.0]})
    assert info.value.run_ids == ("r1",)
    assert tracker.runs_path.read_bytes() == before
    assert (tracker.store / "history" / "r1.jsonl").read_bytes() == history  # not overwritten
    with pytest.raises(DuplicateRunError, match="r1"):
        tracker.log_runs([{"run_id": "r2"}, {"run_id": "r1"}])
    with pytest.raises(DuplicateRunError, match="r3"):
        tracker.log_runs([{"run_id": "r3"}, {"run_id": "r3"}])
    assert [run.run_id for run in tracker.runs()] == ["r1"]


def test_duplicate_error_pickles() -> None:
    error = pickle.loads(pickle.dumps(DuplicateRunError(["a", "b"])))  # noqa: S301 - our own bytes
    assert error.run_ids == ("a", "b")
    assert "a, b" in str(error)


def _import(store: str, barrier: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue[str]) -> None:
    tracker = ExperimentTracker(store, durable=False)
    barrier.wait()
    try:
        tracker.log_runs([{"run_id": f"src-{i}", "metrics": {"m": i}} for i in range(50)])
        results.put("ok")
    except DuplicateRunError:
        results.put("duplicate")


def test_concurrent_imports_of_one_source_write_each_run_once(store: Path) -> None:
    ExperimentTracker(store, durable=False).log_run()  # the store exists
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    workers = [ctx.Process(target=_import, args=(str(store), barrier, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        outcomes = sorted(results.get(timeout=60) for _ in workers)  # timeout: a hang guard only
    finally:
        for worker in workers:
            worker.join(timeout=30)
    assert outcomes == ["duplicate"] * 3 + ["ok"]
    reader = ExperimentTracker(store)
    ids = [run.run_id for run in reader.runs()]
    assert sorted(ids[1:]) == sorted(f"src-{i}" for i in range(50))
    assert reader.corrupt_lines() == []


def test_reimport_skipping_known_ids_is_idempotent(tracker: ExperimentTracker) -> None:
    source = [{"run_id": f"s{i}", "name": f"trial-{i}", "metrics": {"m": float(i)}} for i in range(5)]
    tracker.log_runs(source[:3])
    with pytest.raises(DuplicateRunError) as info:
        tracker.log_runs(source)
    known = set(info.value.run_ids)
    assert known == {"s0", "s1", "s2"}
    tracker.log_runs([item for item in source if item["run_id"] not in known])
    assert [run.name for run in tracker.runs()] == [f"trial-{i}" for i in range(5)]


@pytest.mark.parametrize(
    "history",
    [
        {"loss": [1.0, 0.5, 0.25]},
        {"loss": [(0, 1.0), (1, 0.5), (2, 0.25)]},
        {"loss": [(2, 0.25, 30.0), (0, 1.0, 10.0), (1, 0.5, 20.0)]},  # sorted by step
        [{"name": "loss", "step": 0, "value": 1.0}, {"name": "loss", "step": 1, "value": 0.5},
         {"name": "loss", "step": 2, "value": 0.25, "time": None}],
    ],
)
def test_given_history_is_written_and_summarised(tracker: ExperimentTracker, history: object) -> None:
    run = tracker.log_run({"lr": 0.1}, history=history)
    assert [(p["step"], p["value"]) for p in tracker.history(run.run_id)] == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert run.metrics == {"loss": 0.25}  # the last point, when metrics do not say otherwise
    assert run.extra["history"]["loss"]["min"] == 0.25
    assert run.extra["history"]["loss"]["max_step"] == 0


def test_history_round_trips_between_stores(tracker: ExperimentTracker, tmp_path: Path) -> None:
    with tracker.start_run(capture=False) as live:
        for step, value in enumerate([0.9, 0.4, float("nan")]):
            live.log_metric("loss", value, step=step)
    copy = ExperimentTracker(tmp_path / "copy", durable=False)
    original = tracker.get_run(live.run_id)
    copied = copy.log_run(original.params, original.metrics, run_id=original.run_id, timestamp=original.timestamp,
                          name=original.name, history=tracker.history(original.run_id))
    assert repr(copy.history(copied.run_id)) == repr(tracker.history(original.run_id))  # NaN != NaN
    assert copied.extra["history"] == original.extra["history"]


def test_a_name_is_generated_when_none_is_given(tracker: ExperimentTracker) -> None:
    run = tracker.log_run()
    assert run.name == generated_name(run.run_id) == run.extra["name"]
    assert len(run.name.split("-")) == 3
    assert run.experiment == "default"


def test_tracker_experiment_is_the_default_for_its_runs(store: Path) -> None:
    wine = ExperimentTracker(store, durable=False, experiment="wine")
    assert wine.log_run().experiment == "wine"
    assert wine.log_run(experiment="iris").experiment == "iris"
    with wine.start_run(capture=False, name="live") as live:
        pass
    assert live.record is not None
    assert (live.record.experiment, live.record.name) == ("wine", "live")
