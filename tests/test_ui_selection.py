"""The server's selections grow with the log: an extension answers exactly what a fresh read does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exptrack import ExperimentTracker
from exptrack.ui.views import StoreView

WHERES = [None, "params.model = 'rf'", "metrics.accuracy > 0.5"]


def batch(start: int, count: int) -> list[dict[str, Any]]:
    return [{"params": {"model": ["rf", "svm"][i % 2], "lr": 0.01 * (i % 7 + 1)},
             "metrics": {"accuracy": (i * 37 % 100) / 100, "loss": float("nan") if i % 11 == 0 else i / 1000}}
            for i in range(start, start + count)]


def answers(view: StoreView, where: str | None) -> list[Any]:
    return [view.runs_page(where, None, 20, 0)[1], view.runs_page(where, None, 20, 37)[1],
            view.points(where, 16)[1], view.columns(where)[1]]


def duplicate_line(store: Path) -> None:
    with open(store / "runs.jsonl", "rb") as log:
        first = log.readline()
    with open(store / "runs.jsonl", "ab") as log:
        log.write(first)


def corrupt_line(store: Path) -> None:
    with open(store / "runs.jsonl", "ab") as log:
        log.write(b'{"schema": 1, "run_id": "broken\n')


def no_change(store: Path) -> None:
    pass


@pytest.mark.parametrize("where", WHERES)
@pytest.mark.parametrize("damage", [no_change, duplicate_line, corrupt_line], ids=lambda f: f.__name__)
def test_extended_selection_equals_a_fresh_read(tracker: ExperimentTracker, store: Path, where: str | None,
                                                damage: Callable[[Path], None]) -> None:
    tracker.log_runs(batch(0, 60))
    view = StoreView(tracker)
    answers(view, where)
    kept = dict(view._selections)
    for start in (60, 61, 90):
        tracker.log_runs(batch(start, 1 if start == 60 else 29))
        if start == 61:
            damage(store)
        assert answers(view, where) == answers(StoreView(ExperimentTracker(store)), where)
    if damage is no_change:  # only runs were appended: the same selections grew in place
        assert all(view._selections[key] is selection for key, selection in kept.items())


def test_a_run_appended_is_in_the_next_page_and_chart(tracker: ExperimentTracker) -> None:
    tracker.log_runs(batch(0, 10))
    view = StoreView(tracker)
    before = view.points(None, 100)[1]
    run = tracker.log_run(params={"model": "rf"}, metrics={"accuracy": 2.0})
    page = view.runs_page(None, None, 5, 0)[1]
    assert page["runs"][0]["run_id"] == run.run_id
    assert page["total"] == 11
    after = view.points(None, 100)[1]
    assert after["total"] == before["total"] + 1
    assert after["best"]["accuracy"]["max"][-1] == [10, 2.0, run.run_id]


def test_edits_are_folded_by_a_fresh_read(tracker: ExperimentTracker, store: Path) -> None:
    runs = tracker.log_runs(batch(0, 10))
    view = StoreView(tracker)
    view.runs_page(None, None, 20, 0)
    set_note = getattr(tracker, "set_note", None)
    if not callable(set_note):
        pytest.skip("this tracker has no notes yet")
    set_note(runs[3].run_id, "the one to ship")
    page = view.runs_page(None, None, 20, 0)[1]["runs"]
    assert page == StoreView(ExperimentTracker(store)).runs_page(None, None, 20, 0)[1]["runs"]


def test_runs_appended_while_a_selection_is_built_are_not_counted_twice(tracker: ExperimentTracker,
                                                                        store: Path) -> None:
    tracker.log_runs(batch(0, 10))
    view = StoreView(tracker)
    stale = tracker.refresh_index()
    tracker.log_runs(batch(10, 5))  # lands after the version was taken, before the scan reads
    real = view._stats
    view._stats = lambda: stale  # type: ignore[method-assign]
    assert view.runs_page(None, None, 50, 0)[1]["total"] == 15
    view._stats = real  # type: ignore[method-assign]
    tracker.log_runs(batch(15, 1))
    assert view.runs_page(None, None, 50, 0)[1] == StoreView(ExperimentTracker(store)).runs_page(None, None, 50, 0)[1]


def test_a_cold_first_page_reads_only_the_newest_runs(tracker: ExperimentTracker, store: Path) -> None:
    runs = tracker.log_runs(batch(0, 30))
    view = StoreView(tracker)
    page = view.runs_page(None, None, 10, 5)[1]
    assert [r["run_id"] for r in page["runs"]] == [r.run_id for r in runs[::-1][5:15]]
    assert page["total"] == 30
    filtered = view.runs_page("params.model = 'rf'", None, 4, 0)[1]
    assert [r["run_id"] for r in filtered["runs"]] == [r.run_id for r in runs if r.params["model"] == "rf"][::-1][:4]
    assert filtered["total"] == 15  # counted by the columnar index ...
    assert list(view._selections) == []  # ... so no selection of the whole filter was read
    columns = view.columns(None)[1]
    assert columns["partial"]  # from the newest runs, until the selection exists
    assert "metrics.accuracy" in columns["columns"]
    view.points(None, 2000)
    assert "partial" not in view.columns(None)[1]
