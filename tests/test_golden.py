"""A store written by schema 1 (``golden/schema1``, made by ``golden/make_schema1.py`` with the
schema-1 code) reads exactly as that code read it, through every reader: the line scanner, the
fast reader behind the index, id lookups and the queries."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from exptrack import ExperimentTracker
from exptrack.store import codec
from exptrack.store.fastscan import scan_range
from exptrack.store.scan import LogScan

GOLDEN = Path(__file__).parent / "golden" / "schema1"


def floats_as_repr(value: object) -> object:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {k: floats_as_repr(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [floats_as_repr(v) for v in value]
    return value


@pytest.fixture
def golden(store: Path) -> Path:
    shutil.copytree(GOLDEN, store)
    return store


def expected() -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = json.loads((GOLDEN / "expected.json").read_text())
    for run in runs:
        run["schema"] = 2  # the mapping view reports the version of the reader, as schema 1 did
    return runs


def test_golden_file_is_still_schema_1() -> None:
    lines = (GOLDEN / "runs.jsonl").read_bytes().splitlines()
    assert {json.loads(line)["schema"] for line in lines} == {1}
    assert b'"loss":"NaN"' in b"".join(lines)  # the old form of a non-finite metric is covered


def test_schema_1_store_reads_exactly_as_schema_1_read_it(golden: Path) -> None:
    with ExperimentTracker(golden, durable=False) as tracker:
        got = [floats_as_repr(run.to_dict()) for run in tracker.runs()]
        assert got == expected()
        assert tracker.corrupt_lines() == []
        for want in expected():
            assert floats_as_repr(tracker.get_run(want["run_id"]).to_dict()) == want
    scanned = [floats_as_repr(run.to_dict()) for run in LogScan(str(golden / "runs.jsonl"))]
    assert scanned == expected()
    # in schema 1 "nonfinite" is an ordinary section, never read as metric names
    section = next(run for run in expected() if "nonfinite" in run)
    assert section["metrics"] == {"accuracy": "0.9"}


def test_schema_1_store_answers_queries_through_the_index(golden: Path) -> None:
    with ExperimentTracker(golden, durable=False) as tracker:
        assert tracker.best_run("accuracy", "max").run_id == "golden-05"
        assert tracker.best_run("loss", "min").run_id == "golden-07"
        stats = tracker.summary(status="any")["metrics"]["loss"]  # every status, as written
        assert stats["count"] == 3  # the finite values
        assert stats["nonfinite"] == 3
    path = golden / "runs.jsonl"
    segment = scan_range(str(path), 0, path.stat().st_size)
    assert segment.corrupt == []
    assert segment.unchecked == 0
    assert sum(segment.statuses.values()) == len(expected())


def test_schema_1_run_rewritten_today_reads_back_the_same(golden: Path) -> None:
    # compaction and exports re-encode old runs with today's codec: the values survive the new form
    for run in LogScan(str(golden / "runs.jsonl")):
        if "nonfinite" in run.extra:
            continue  # a section name schema 2 reserves: re-encoding it is refused, not misread
        again, _ = codec.decode(codec.encode(run)[:-1])
        assert floats_as_repr(again.to_dict()) == floats_as_repr(run.to_dict())
        assert json.loads(codec.encode(run))["schema"] == 2
        losses = run.metrics.get("loss")
        if losses is not None and not math.isfinite(losses):
            assert json.loads(codec.encode(run))["metrics"]["loss"] is None
