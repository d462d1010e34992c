"""``codec.build_line`` (orjson validates plain values in C) agrees with the reference path.

The reference is ``record.build_run`` then ``codec.encode``: the Python walk that owns every
normalisation rule and error message.  For any input, both must accept it and produce the same
record and the same bytes, or both must refuse it with the same error type and message.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import math
import pathlib
import uuid
from collections import OrderedDict
from typing import Any
from unittest import mock

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exptrack.errors import ExptrackError
from exptrack.store import codec, record
from exptrack.store.record import build_run

RUN_ID = "0193a1b2c3d4e5f60718293a4b5c6d7e"
STAMP = "2026-12-03T17:00:00.000001Z"


class Color(enum.Enum):
    RED = "red"
    ONE = 1
    NAN = math.nan


class Level(enum.IntEnum):
    LOW = 1


class Text(str):
    pass


class Number(float):
    pass


def outcome(build: Any, **fields: Any) -> tuple[str, object]:
    """('ok', (run fields, line)) or ('error', (type, message)) for one way of building a line."""
    try:
        run, line = build(**fields)
    except ExptrackError as exc:
        return "error", (type(exc).__name__, str(exc))
    stored = (run.run_id, run.timestamp, run.status, run.params, run.metrics, run.tags, dict(run.extra))
    # repr tells NaN, -0.0, int/float and list/tuple apart where == would not
    return "ok", (repr(stored), line)


def reference(**fields: Any) -> tuple[Any, bytes]:
    run = build_run(run_id=RUN_ID, **fields)
    return run, codec.encode(run)


def fast(**fields: Any) -> tuple[Any, bytes]:
    # a new run's id is random: fix it so the two paths' records can be compared
    with mock.patch.object(codec, "new_run_id", return_value=RUN_ID), mock.patch.object(
        record, "new_run_id", return_value=RUN_ID
    ):
        return codec.build_line(**fields)


def assert_same(**fields: Any) -> None:
    fields = {"timestamp": STAMP, **fields}
    assert outcome(fast, **fields) == outcome(reference, **fields)


# Every kind of value the reference treats specially, next to the plain ones orjson takes as is.
special = st.sampled_from(
    [
        math.nan, math.inf, -math.inf, -0.0, 2**64, 2**64 - 1, -(2**63), -(2**63) - 1, True,
        "\ud800", "caf\xe9", Text("sub"), Number(1.5), Color.RED, Color.ONE, Color.NAN, Level.LOW,
        uuid.UUID(int=7), dt.datetime(2026, 1, 2, 3, 4, 5, 6), dt.date(2026, 1, 2), dt.time(1, 2),
        dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc), decimal.Decimal("1.10"), decimal.Decimal("NaN"),
        pathlib.PurePosixPath("/a/b"), {1, 2}, frozenset(), b"bytes", bytearray(b"x"), object(),
        np.float64(0.25), np.int64(3), np.bool_(True), np.array([1, 2]), np.float32(math.nan),
        orjson.Fragment(b"1"), (1, "a"), (), OrderedDict(a=1), [1, (2, 3)],
    ]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=6)
    | special
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=4) | st.sampled_from([1, Text("k"), "\udfff", None]), inner, max_size=3),
    max_leaves=8,
)
plain = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
metric_values = st.floats() | st.integers(min_value=-(2**64), max_value=2**65) | special | st.text(max_size=3)
tags = st.none() | st.lists(st.text(max_size=4) | special, max_size=4) | st.tuples(st.text(max_size=3)) | st.text(
    max_size=3
) | st.dictionaries(st.text(max_size=3), plain, max_size=2)
extra_keys = st.text(max_size=6) | st.sampled_from(["schema", "crc", "nonfinite", "params", "tags", "code"])


@settings(max_examples=400, deadline=None)
@given(
    params=st.none() | st.dictionaries(st.text(max_size=4), values, max_size=4) | values,
    metrics=st.none() | st.dictionaries(st.text(max_size=4) | st.sampled_from([1, ""]), metric_values, max_size=4),
    tags=tags,
    status=st.sampled_from(["finished", "failed", "running", "killed", "pruned", "done", ""]),
    extra=st.none() | st.dictionaries(extra_keys, values, max_size=3),
    required=st.lists(st.sampled_from(["a", "b", "accuracy"]), max_size=2),
)
def test_fast_path_accepts_refuses_and_encodes_exactly_like_the_reference(
    params: Any, metrics: Any, tags: Any, status: str, extra: Any, required: list[str]
) -> None:
    assert_same(params=params, metrics=metrics, tags=tags, status=status, extra=extra, required_metrics=required)


@settings(max_examples=300, deadline=None)
@given(
    params=st.dictionaries(st.text(max_size=4), values, max_size=4),
    metrics=st.dictionaries(st.text(min_size=1, max_size=4), st.floats() | st.integers(-(2**63), 2**64 - 1)),
    extra=st.dictionaries(st.sampled_from(["code", "system"]), values, max_size=2),
)
def test_records_valid_but_for_their_values_agree(
    params: dict[str, Any], metrics: dict[str, float], extra: dict[str, Any]
) -> None:
    # the shape is right, so only orjson and the round trip can send a record to the reference
    assert_same(params=params, metrics=metrics, tags=["t"], extra=extra)


@settings(max_examples=200, deadline=None)
@given(
    params=st.dictionaries(st.text(max_size=4), plain, max_size=6),
    metrics=st.dictionaries(st.text(min_size=1, max_size=4), st.floats(allow_nan=False, allow_infinity=False)),
    tags=st.lists(st.text(max_size=4), unique=True, max_size=3),
    extra=st.dictionaries(st.sampled_from(["code", "system", "note"]), plain, max_size=3),
)
def test_plain_records_take_the_fast_path_and_match(
    params: dict[str, Any], metrics: dict[str, float], tags: list[str], extra: dict[str, Any]
) -> None:
    fields: dict[str, Any] = {"params": params, "metrics": metrics, "tags": tags, "extra": extra}
    line = codec._fast_line(params, metrics, tags, "finished", extra, (), None, STAMP)
    assert line is not None  # plain values never need the Python walk
    assert_same(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"params": {"when": uuid.UUID(int=1)}},  # orjson writes a UUID as a string; the reference refuses it
        {"params": {"c": Color.RED}},  # orjson writes the value; the reference stores it too
        {"params": {"x": math.nan}},  # orjson would write null
        {"extra": {"code": {"x": -math.inf}}},
        {"params": {"t": (1, 2)}},  # stored as a list, and the record holds a list
        {"metrics": {"ok": True}},  # a bool is not a metric, though it survives the round trip
        {"metrics": {"loss": math.nan}},  # non-finite metrics are allowed, written as strings
        {"tags": ["a", "a", "b"]},  # repeats are dropped
        {"params": {Text("k"): 1}},
        {"params": {"big": 2**64}},
        {"extra": {"crc": "x"}},
        {"params": {"f": orjson.Fragment(b"[1]")}},
        {"extra": {"nonfinite": {}}},
        {"directions": {"loss": "min"}, "metrics": {"loss": 0.5}},
        {"extra": {"directions": {"loss": "minimize"}}},
        {"directions": {"loss": "sideways"}},
    ],
    ids=lambda fields: repr(fields)[:40],
)
def test_values_orjson_would_write_silently_take_the_reference_path(fields: dict[str, Any]) -> None:
    assert_same(**fields)


def test_a_given_run_id_takes_the_reference_path_and_its_rules() -> None:
    assert codec._fast_line({}, {}, None, "finished", None, (), RUN_ID, STAMP) is None
    assert outcome(codec.build_line, run_id="a\nb") == outcome(build_run, run_id="a\nb")


def test_the_returned_record_does_not_share_the_callers_containers() -> None:
    params: dict[str, Any] = {"layers": [64, 32], "opt": {"lr": 0.1}}
    run, _ = codec.build_line(params=params)
    params["layers"].append(16)
    params["opt"]["lr"] = 1.0
    assert run.params == {"layers": [64, 32], "opt": {"lr": 0.1}}


# -- the tracker's own calls: log_run and log_runs reach the fast path without build_line ----------


@pytest.fixture(scope="module")
def shared_tracker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from exptrack import ExperimentTracker
    from exptrack.store.logs import detach_store_log

    store = tmp_path_factory.mktemp("fast") / "store"
    tracker = ExperimentTracker(store, durable=False)
    yield tracker
    tracker.close()
    detach_store_log(str(store))


def appended(tracker: Any, via: str, **fields: Any) -> tuple[Any, bytes]:
    """What the tracker stored for one run: the returned record and its line read back from the log."""
    with mock.patch.object(codec, "new_run_id", return_value=RUN_ID), mock.patch.object(
        record, "new_run_id", return_value=RUN_ID
    ), mock.patch.object(codec, "utc_timestamp", return_value=STAMP), mock.patch.object(
        record, "utc_timestamp", return_value=STAMP
    ):
        run = tracker.log_run(**fields) if via == "log_run" else tracker.log_runs([fields])[0]
    with open(tracker.runs_path, "rb") as handle:
        handle.seek(run.offset)
        return run, handle.readline()


@settings(max_examples=300, deadline=None)
@given(
    params=st.none() | st.dictionaries(st.text(max_size=4), values, max_size=4) | values,
    metrics=st.none() | st.dictionaries(st.text(max_size=4) | st.sampled_from([1, ""]), metric_values, max_size=4),
    tags=tags,
    status=st.sampled_from(["finished", "failed", "pruned", "done"]),
    extra=st.none() | st.dictionaries(extra_keys, values, max_size=3),
    via=st.sampled_from(["log_run", "log_runs"]),
)
def test_log_run_and_log_runs_store_exactly_what_the_reference_builds(
    shared_tracker: Any, params: Any, metrics: Any, tags: Any, status: str, extra: Any, via: str
) -> None:
    fields = {"params": params, "metrics": metrics, "tags": tags, "status": status, "extra": extra}
    mine = outcome(lambda **f: appended(shared_tracker, via, **f), **fields)
    assert mine == outcome(reference, timestamp=STAMP, **fields)


def test_log_runs_items_take_the_fast_path_only_without_given_fields(shared_tracker: Any) -> None:
    calls: list[int] = []
    real = codec.new_line

    def counting(*args: Any) -> Any:
        made = real(*args)
        calls.append(made is not None)
        return made

    with mock.patch.object(codec, "new_line", counting):
        runs = shared_tracker.log_runs([
            {"metrics": {"accuracy": 0.5}},  # the fast path, from log_runs itself
            {"metrics": {"accuracy": 0.5}, "name": "given"},  # build_line checks the name, then its fast path
            {"metrics": {"accuracy": 0.5}, "timestamp": STAMP},  # build_line checks the time, then its fast path
            {"metrics": {"accuracy": 0.5}, "directions": {"accuracy": "max"}},  # the reference path only
            {"metrics": {"accuracy": math.nan}},  # refused twice (log_runs, build_line): the reference writes it
        ])
    assert calls == [True, True, True, False, False]
    assert [run.name for run in runs][1] == "given"
    assert runs[2].timestamp == STAMP
    assert runs[3].extra["directions"] == {"accuracy": "max"}
    assert math.isnan(runs[4].metrics["accuracy"])
