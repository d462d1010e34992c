"""What a run may hold and how it is stored: normalisation, rejection, line format, round trips."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import math
import pathlib
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exptrack import ExperimentTracker, InvalidRecordError, MissingMetricError, Run
from exptrack.store import codec
from exptrack.store.codec import MAX_RECORD_BYTES
from exptrack.store.logs import detach_store_log
from exptrack.store.record import SCHEMA_VERSION, build_run

ReadLines = Callable[[Path], list[bytes]]

INT_MIN, INT_MAX = -(2**63), 2**64 - 1
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")


def assert_same_json(stored: object, expected: object) -> None:
    """Deep equality that also checks types and tells NaN and -0.0 apart (``repr`` of floats)."""
    assert type(stored) is type(expected), (stored, expected)
    if isinstance(expected, float):
        assert repr(stored) == repr(expected)
    elif isinstance(expected, dict):
        assert isinstance(stored, dict)
        assert list(stored) == list(expected)
        for key in expected:
            assert_same_json(stored[key], expected[key])
    elif isinstance(expected, list):
        assert isinstance(stored, list)
        assert len(stored) == len(expected)
        for got, want in zip(stored, expected):
            assert_same_json(got, want)
    else:
        assert stored == expected


# -- hypothesis round trips ----------------------------------------------------------------------

# Default text includes control characters, newlines, quotes, backslashes and any non-surrogate
# code point: exactly the strings that could break a line-oriented format.
texts = st.text(max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=INT_MIN, max_value=INT_MAX)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
params_strategy = st.dictionaries(texts, json_values, max_size=6)
metric_values = st.floats(allow_nan=True, allow_infinity=True) | st.integers(min_value=INT_MIN, max_value=INT_MAX)
metrics_strategy = st.dictionaries(st.text(min_size=1, max_size=12), metric_values, max_size=6)
tags_strategy = st.lists(texts, max_size=4, unique=True)


@settings(max_examples=150, deadline=None)
@given(params=params_strategy, metrics=metrics_strategy, tags=tags_strategy)
def test_codec_round_trips_params_metrics_and_tags_exactly(
    params: dict[str, object], metrics: dict[str, float], tags: list[str]
) -> None:
    run = build_run(params=params, metrics=metrics, tags=tags)
    line = codec.encode(run)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1  # newlines inside strings and keys are escaped
    decoded, checked = codec.decode(line[:-1])
    assert checked is True
    assert (decoded.run_id, decoded.timestamp, decoded.status) == (run.run_id, run.timestamp, "finished")
    assert decoded.tags == tuple(tags)
    assert_same_json(dict(decoded.params), params)
    assert_same_json(dict(decoded.metrics), metrics)
    assert codec.encode(decoded) == line  # decode . encode is the identity on bytes too


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=params_strategy, metrics=metrics_strategy)
@example(params={"big": INT_MAX, "small": INT_MIN}, metrics={"high": INT_MAX, "low": INT_MIN, "nan": math.nan})
def test_tracker_round_trips_through_the_log(
    tmp_path: Path, params: dict[str, object], metrics: dict[str, float]
) -> None:
    store = Path(tempfile.mkdtemp(dir=tmp_path))  # a fresh store per example: failures shrink
    try:
        tracker = ExperimentTracker(store, durable=False)
        logged = tracker.log_run(params=params, metrics=metrics)
        again = tracker.get_run(logged.run_id)
        assert_same_json(dict(again.params), params)
        assert_same_json(dict(again.metrics), metrics)
        assert tracker.last_corrupt == []
        assert tracker.summary()["total_runs"] == 1
        tracker.close()
    finally:
        detach_store_log(str(store))


@pytest.mark.parametrize(
    ("value", "text"),
    [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity")],
    ids=["nan", "inf", "-inf"],
)
def test_non_finite_metric_is_written_as_null_named_in_nonfinite_and_read_back_as_the_float(
    store: Path, raw_lines: ReadLines, value: float, text: str
) -> None:
    tracker = ExperimentTracker(store, durable=False)
    tracker.log_run(metrics={"loss": value, "accuracy": 0.5})
    (line,) = raw_lines(store)
    obj = json.loads(line)
    # only numbers and null in metrics, so foreign readers type the column as a number
    assert obj["metrics"] == {"loss": None, "accuracy": 0.5}
    assert obj["nonfinite"] == {"loss": text}
    assert obj["schema"] == 2
    (run,) = tracker.runs()
    assert repr(run.metrics["loss"]) == repr(value)
    assert run.metrics["accuracy"] == 0.5


# -- the stored line ----------------------------------------------------------------------------


def test_stored_line_has_stable_keys_readable_by_any_json_parser(store: Path, raw_lines: ReadLines) -> None:
    tracker = ExperimentTracker(store, durable=False)
    before = dt.datetime.now(dt.timezone.utc)
    first = tracker.log_run(params={"model": "rf", "max_depth": 8}, metrics={"accuracy": 0.84}, tags=["base"])
    after = dt.datetime.now(dt.timezone.utc)
    tracker.log_run(params={}, metrics={})
    lines = raw_lines(store)
    assert len(lines) == 2
    objects = [json.loads(line) for line in lines]  # the stdlib parser, as jq/pandas would read it
    for obj in objects:
        assert list(obj)[:7] == ["schema", "run_id", "timestamp", "status", "params", "metrics", "tags"]
        assert obj["schema"] == SCHEMA_VERSION
    assert objects[0]["run_id"] == first.run_id
    assert objects[0]["params"] == {"model": "rf", "max_depth": 8}
    assert objects[0]["metrics"] == {"accuracy": 0.84}
    assert objects[0]["tags"] == ["base"]
    assert objects[0]["status"] == "finished"
    assert (objects[1]["params"], objects[1]["metrics"], objects[1]["tags"]) == ({}, {}, [])

    assert TIMESTAMP.match(first.timestamp), first.timestamp
    stamp = dt.datetime.fromisoformat(first.timestamp.replace("Z", "+00:00"))
    assert stamp.utcoffset() == dt.timedelta(0)
    slack = dt.timedelta(seconds=1)  # clock granularity, not a speed bound
    assert before - slack <= stamp <= after + slack


def test_run_ids_are_unique_opaque_and_not_a_counter(store: Path) -> None:
    tracker = ExperimentTracker(store, durable=False)
    runs = tracker.log_runs([{"metrics": {"i": i}} for i in range(500)])
    ids = [run.run_id for run in runs]
    assert len(set(ids)) == 500
    assert all(re.fullmatch(r"[0-9a-f]{32}", run_id) for run_id in ids)
    assert not any(run_id.isdigit() and len(run_id) < 10 for run_id in ids)
    # ids made in the same millisecond share a time prefix; the random rest must differ
    assert len({run_id[12:] for run_id in ids}) == 500


def test_log_run_returns_the_record_as_stored(store: Path) -> None:
    tracker = ExperimentTracker(store, durable=False)
    run = tracker.log_run(params={"p": (1, 2)}, metrics={"accuracy": np.float64(0.5)}, tags=("a", "b", "a"))
    assert isinstance(run, Run)
    assert run.params == {"p": [1, 2]}
    assert run.metrics == {"accuracy": 0.5}
    assert run.tags == ("a", "b")
    assert run.offset == 0
    assert tracker.get_run(run.run_id) == run
    assert run["run_id"] == run.run_id
    assert dict(run)["schema"] == SCHEMA_VERSION


# -- normalisation table ------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Pair(enum.Enum):
    AB = (1, "b")


class Mode(str, enum.Enum):
    FAST = "fast"


NAIVE = dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
NORMALISED = [
    pytest.param(np.float64(0.1), 0.1, id="np.float64"),
    pytest.param(np.float32(0.25), 0.25, id="np.float32"),
    pytest.param(np.float16(1.5), 1.5, id="np.float16"),
    pytest.param(np.int64(-7), -7, id="np.int64"),
    pytest.param(np.int8(5), 5, id="np.int8"),
    pytest.param(np.uint64(INT_MAX), INT_MAX, id="np.uint64-max"),
    pytest.param(np.bool_(True), True, id="np.bool_"),
    pytest.param(np.str_("gini"), "gini", id="np.str_"),
    pytest.param(np.array([[1, 2], [3, 4]]), [[1, 2], [3, 4]], id="np.int-matrix"),
    pytest.param(np.array([0.5, 1.5]), [0.5, 1.5], id="np.float-array"),
    pytest.param(np.array(["a", "b"]), ["a", "b"], id="np.str-array"),
    pytest.param(np.array(2.5), 2.5, id="np.0d-array"),
    pytest.param(pathlib.Path("data/wine.csv"), "data/wine.csv", id="Path"),
    pytest.param(pathlib.PurePosixPath("/abs/x"), "/abs/x", id="PurePosixPath"),
    pytest.param(NAIVE, "2024-05-06T07:08:09.123456", id="datetime-naive"),
    pytest.param(NAIVE.replace(tzinfo=dt.timezone.utc), "2024-05-06T07:08:09.123456+00:00", id="datetime-utc"),
    pytest.param(
        NAIVE.replace(tzinfo=dt.timezone(dt.timedelta(hours=2))), "2024-05-06T07:08:09.123456+02:00", id="datetime-+2"
    ),
    pytest.param(dt.date(2024, 5, 6), "2024-05-06", id="date"),
    pytest.param(dt.time(7, 8, 9), "07:08:09", id="time"),
    pytest.param(Color.RED, "red", id="Enum"),
    pytest.param(Level.HIGH, 3, id="IntEnum"),
    pytest.param(Pair.AB, [1, "b"], id="Enum-tuple-value"),
    pytest.param(Mode.FAST, "fast", id="str-Enum"),
    pytest.param(decimal.Decimal("1.10"), "1.10", id="Decimal"),
    pytest.param((1, "a", (2.5, None)), [1, "a", [2.5, None]], id="tuple"),
    pytest.param({"inner": (np.int32(1),)}, {"inner": [1]}, id="nested"),
    pytest.param("tab\there\nnewline \"quote\" \\ \x00 ü 🎯", "tab\there\nnewline \"quote\" \\ \x00 ü 🎯", id="str"),
    pytest.param(INT_MIN, INT_MIN, id="int-min"),
    pytest.param(-0.0, -0.0, id="negative-zero"),
    pytest.param(None, None, id="None"),
]


@pytest.mark.parametrize(("value", "expected"), NORMALISED)
def test_param_values_are_stored_faithfully(store: Path, value: object, expected: object) -> None:
    tracker = ExperimentTracker(store, durable=False)
    logged = tracker.log_run(params={"v": value})
    assert_same_json(logged.params["v"], expected)
    (stored,) = tracker.runs()
    assert_same_json(stored.params["v"], expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(np.float64(0.75), 0.75, id="np.float64"),
        pytest.param(np.float32(0.5), 0.5, id="np.float32"),
        pytest.param(np.int64(12), 12, id="np.int64"),
        pytest.param(np.float64("nan"), math.nan, id="np.nan"),
        pytest.param(np.float64("-inf"), -math.inf, id="np.-inf"),
        pytest.param(np.array(0.25), 0.25, id="np.0d-array"),
        pytest.param(3, 3, id="int"),
    ],
)
def test_numpy_metric_scalars_become_plain_numbers(store: Path, value: object, expected: float) -> None:
    tracker = ExperimentTracker(store, durable=False)
    tracker.log_run(metrics={"m": value})
    (stored,) = tracker.runs()
    assert_same_json(stored.metrics["m"], expected)


def test_tags_mapping_becomes_key_value_tags() -> None:
    assert build_run(tags={"team": "vision", "seed": 1}).tags == ("team=vision", "seed=1")
    assert build_run(tags="solo").tags == ("solo",)


# -- rejections ---------------------------------------------------------------------------------


class RandomForestClassifier:
    """Stands in for an estimator object: something with no JSON form."""

    def get_params(self) -> dict[str, object]:
        return {"n_estimators": 100}


REJECTED: list[object] = [
    pytest.param({"params": {"model": RandomForestClassifier()}}, "params.model", id="estimator"),
    pytest.param({"params": {"classes": {1, 2}}}, "params.classes", id="set"),
    pytest.param({"params": {"frozen": frozenset({"a"})}}, "params.frozen", id="frozenset"),
    pytest.param({"params": {1: "one"}}, "params", id="int-key"),
    pytest.param({"params": {"grid": {"depth": {(1, 2): 3}}}}, "params.grid.depth", id="nested-tuple-key"),
    pytest.param({"params": {"raw": b"bytes"}}, "params.raw", id="bytes"),
    pytest.param({"params": {"layers": [64, {32}]}}, "params.layers[1]", id="set-in-list"),
    pytest.param({"params": {"lr": math.nan}}, "params.lr", id="nan-param"),
    pytest.param({"params": {"lr": np.float64("inf")}}, "params.lr", id="np-inf-param"),
    pytest.param({"params": {"big": INT_MAX + 1}}, "params.big", id="int-too-big"),
    pytest.param({"params": {"small": INT_MIN - 1}}, "params.small", id="int-too-small"),
    pytest.param({"params": {"name": "bad \ud800"}}, "params.name", id="lone-surrogate"),
    pytest.param({"params": {"bad \udfff key": 1}}, "params.bad \udfff key", id="surrogate-key"),
    pytest.param({"params": {"when": np.datetime64("2024-01-01")}}, "params.when", id="np.datetime64"),
    pytest.param({"params": {"objs": np.array([1, "x"], dtype=object)}}, "params.objs", id="np.object-array"),
    pytest.param({"params": {"z": complex(1, 2)}}, "params.z", id="complex"),
    pytest.param({"params": {"d": decimal.Decimal("NaN")}}, "params.d", id="Decimal-NaN"),
    pytest.param({"params": {"fn": len}}, "params.fn", id="function"),
    pytest.param({"params": [("a", 1)]}, "params", id="params-not-mapping"),
    pytest.param({"metrics": {"accuracy": "high"}}, "metrics.accuracy", id="metric-str"),
    pytest.param({"metrics": {"accuracy": True}}, "metrics.accuracy", id="metric-bool"),
    pytest.param({"metrics": {"accuracy": None}}, "metrics.accuracy", id="metric-None"),
    pytest.param({"metrics": {"accuracy": [0.5]}}, "metrics.accuracy", id="metric-list"),
    pytest.param({"metrics": {"accuracy": np.array([0.5, 0.6])}}, "metrics.accuracy", id="metric-array"),
    pytest.param({"metrics": {"accuracy": np.datetime64("2024")}}, "metrics.accuracy", id="metric-datetime64"),
    pytest.param({"metrics": {"accuracy": INT_MAX + 1}}, "metrics.accuracy", id="metric-int-too-big"),
    pytest.param({"metrics": {1: 0.5}}, "metrics", id="metric-int-name"),
    pytest.param({"metrics": {"": 0.5}}, "metrics", id="metric-empty-name"),
    pytest.param({"metrics": [("accuracy", 0.5)]}, "metrics", id="metrics-not-mapping"),
    pytest.param({"tags": ["ok", 3]}, "tags[1]", id="tag-int"),
    pytest.param({"status": "exploded"}, "status", id="status"),
]


@pytest.fixture
def seeded(store: Path, raw_lines: ReadLines) -> tuple[ExperimentTracker, bytes]:
    """A store holding one run, and the exact bytes of its log."""
    tracker = ExperimentTracker(store)
    tracker.log_run(params={"model": "rf"}, metrics={"accuracy": 0.9})
    return tracker, (store / "runs.jsonl").read_bytes()


@pytest.mark.parametrize(("kwargs", "field"), REJECTED)
def test_unstorable_run_is_rejected_naming_the_field_and_nothing_is_written(
    seeded: tuple[ExperimentTracker, bytes], kwargs: dict[str, object], field: str
) -> None:
    tracker, before = seeded
    with pytest.raises(InvalidRecordError) as caught:
        tracker.log_run(**kwargs)  # type: ignore[arg-type]
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.field == field
    assert field in str(error)
    assert tracker.runs_path.read_bytes() == before


@pytest.mark.parametrize(("kwargs", "field"), REJECTED)
def test_one_bad_item_rejects_the_whole_batch(
    seeded: tuple[ExperimentTracker, bytes], kwargs: dict[str, object], field: str
) -> None:
    tracker, before = seeded
    good = {"params": {"model": "lr"}, "metrics": {"accuracy": 0.8}}
    with pytest.raises(InvalidRecordError) as caught:
        tracker.log_runs([good, good, kwargs])
    assert caught.value.field == field
    assert "item 2" in str(caught.value)
    assert tracker.runs_path.read_bytes() == before


def test_rejected_first_run_creates_no_log(store: Path) -> None:
    tracker = ExperimentTracker(store)
    assert store.is_dir()
    with pytest.raises(InvalidRecordError):
        tracker.log_run(params={"model": RandomForestClassifier()})
    assert not (store / "runs.jsonl").exists() or (store / "runs.jsonl").read_bytes() == b""


@pytest.mark.parametrize("item", [("not", "a", "mapping"), {"params": {}, "metric": {}}], ids=["tuple", "typo-key"])
def test_log_runs_refuses_items_that_are_not_log_run_keywords(
    seeded: tuple[ExperimentTracker, bytes], item: object
) -> None:
    tracker, before = seeded
    with pytest.raises(InvalidRecordError, match="item 1"):
        tracker.log_runs([{"metrics": {"accuracy": 0.1}}, item])  # type: ignore[list-item]
    assert tracker.runs_path.read_bytes() == before


def test_required_metric_missing_refuses_the_run(store: Path, raw_lines: ReadLines) -> None:
    tracker = ExperimentTracker(store, required_metrics=("accuracy",))
    tracker.log_run(params={"a": 1}, metrics={"accuracy": 0.7})
    before = tracker.runs_path.read_bytes()
    with pytest.raises(MissingMetricError) as caught:
        tracker.log_run(params={"a": 2}, metrics={"loss": 0.1})
    error = caught.value
    assert isinstance(error, InvalidRecordError)
    assert isinstance(error, ValueError)
    assert error.missing == ("accuracy",)
    assert error.field == "metrics.accuracy"
    assert "accuracy" in str(error)
    with pytest.raises(MissingMetricError):
        tracker.log_runs([{"metrics": {"accuracy": 0.1}}, {"metrics": {}}])
    assert tracker.runs_path.read_bytes() == before
    # present but NaN is not missing: a diverged run is still a run
    tracker.log_run(metrics={"accuracy": math.nan})
    assert len(raw_lines(store)) == 2


def test_required_metrics_accepts_a_single_name(store: Path) -> None:
    tracker = ExperimentTracker(store, required_metrics="accuracy")
    with pytest.raises(MissingMetricError, match="accuracy"):
        tracker.log_run(metrics={"f1": 0.5})


# -- size cap -----------------------------------------------------------------------------------


def _line_for_blob(size: int) -> bytes:
    # the same id and timestamp widths as a logged run, so the line length matches
    run = build_run(params={"blob": "x" * size}, run_id="0" * 32, timestamp="2024-01-01T00:00:00.000000Z")
    return codec.encode(run)


def test_largest_line_the_writer_accepts_is_read_back(store: Path) -> None:
    overhead = len(_line_for_blob(0))
    # the writer accepts lines shorter than the cap (newline included) and refuses the rest
    largest = MAX_RECORD_BYTES - 1 - overhead
    assert len(_line_for_blob(largest)) == MAX_RECORD_BYTES - 1
    with pytest.raises(InvalidRecordError):
        _line_for_blob(largest + 1)

    tracker = ExperimentTracker(store, durable=False)
    small = tracker.log_run(metrics={"accuracy": 0.1})
    big = tracker.log_run(params={"blob": "y" * largest})
    after = tracker.log_run(metrics={"accuracy": 0.2})
    runs = list(tracker.runs())
    assert [run.run_id for run in runs] == [small.run_id, big.run_id, after.run_id]
    assert runs[1].params["blob"] == "y" * largest
    assert tracker.last_corrupt == []


def test_oversized_run_is_rejected_before_anything_is_written(seeded: tuple[ExperimentTracker, bytes]) -> None:
    tracker, before = seeded
    with pytest.raises(InvalidRecordError, match="MiB"):
        tracker.log_run(params={"blob": "x" * MAX_RECORD_BYTES})
    with pytest.raises(InvalidRecordError, match="MiB"):
        tracker.log_runs([{"metrics": {"a": 1}}, {"params": {"blob": "x" * MAX_RECORD_BYTES}}])
    assert tracker.runs_path.read_bytes() == before
