"""Full disks, crash fragments, destinations and deep values (issue 9, items 11-13, 15-16).

A full disk is simulated at the one syscall seam (``store.fsio``): a ``write`` that puts only
part of its bytes down and then fails with ENOSPC, which is what a filling disk does."""

from __future__ import annotations

import errno
import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from exptrack import ExperimentTracker, PartialBatchError, StorageError
from exptrack.cli import cli
from exptrack.errors import InvalidRecordError
from exptrack.store.fsio import FileSystem, install
from exptrack.store.record import MAX_DEPTH


class DiskFills(FileSystem):
    """Lets ``budget`` bytes through, then writes what fits and fails with ENOSPC once."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.tripped = False

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if self.tripped or len(data) <= self.budget:
            self.budget -= len(data)
            return super().write(fd, data)
        if self.budget > 0:
            written = super().write(fd, bytes(data[: self.budget]))
            self.budget = 0
            return written
        self.tripped = True
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(autouse=True)
def _real_disk_after() -> Iterator[None]:
    """Every test ends on the real file system, whatever it installed."""
    try:
        yield
    finally:
        install(FileSystem())


# -- item 11: metric history survives a temporary full disk ------------------------------------


def test_history_point_after_a_full_disk_is_not_glued_to_the_fragment(tracker: ExperimentTracker) -> None:
    with tracker.start_run(capture=False) as run:
        for step in range(205):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        install(DiskFills(20))  # step 205 gets 20 bytes down, then the disk is full
        with pytest.raises(StorageError) as caught:
            run.log_metric("loss", 0.5, step=205)
        assert caught.value.errno == errno.ENOSPC
        install(FileSystem())  # space is back
        run.log_metric("loss", 0.25, step=206)
    steps = [point["step"] for point in tracker.history(run.run_id, "loss")]
    assert steps == [*range(205), 206]


# -- item 12: a failed batch says what landed ------------------------------------------------


def test_failed_batch_names_the_runs_that_were_appended(tracker: ExperimentTracker) -> None:
    tracker.log_run(metrics={"acc": 0.0})
    items = [{"params": {"i": i, "pad": "p" * 100}, "metrics": {"acc": i / 10}} for i in range(10)]
    install(DiskFills(4 * 180 + 50))  # room for about four lines, then ENOSPC mid-line
    try:
        with pytest.raises(PartialBatchError) as caught:
            tracker.log_runs(items)
    finally:
        install(FileSystem())
    error = caught.value
    assert error.errno == errno.ENOSPC
    assert error.total == 10
    assert 0 < len(error.appended) < 10
    assert isinstance(error, StorageError)
    assert f"{len(error.appended)} of 10 runs" in str(error)
    in_log = [run.run_id for run in tracker.runs()][1:]
    assert in_log == list(error.appended)
    assert pickle.loads(pickle.dumps(error)).appended == error.appended  # noqa: S301 -- our own bytes
    tracker.log_runs(items[len(error.appended):])  # the retry of the rest: nothing twice
    assert sorted(run.params["i"] for run in tracker.runs() if "i" in run.params) == list(range(10))


# -- item 13: check tells a crash fragment from damage -----------------------------------------


def _check(store: Path, *args: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(cli, ["--store", str(store), "check", "--json", *args])
    return result.exit_code, json.loads(result.stdout)


def test_check_reports_a_fenced_crash_fragment_as_a_note(tracker: ExperimentTracker, store: Path) -> None:
    tracker.log_run(metrics={"acc": 0.5})
    install(DiskFills(40))
    try:
        with pytest.raises(StorageError):
            tracker.log_run(metrics={"acc": 0.6})
    finally:
        install(FileSystem())
    code, report = _check(store)
    assert (code, report["problems"]) == (0, []), report  # a torn tail: a note
    assert len(report["notes"]) == 1  # type: ignore[arg-type]
    tracker.log_run(metrics={"acc": 0.7})  # fences the fragment
    code, report = _check(store)
    assert code == 0, report
    assert len(report["notes"]) == 1  # type: ignore[arg-type]
    assert "fragment" in report["notes"][0]["reason"]  # type: ignore[index]
    assert _check(store, "--strict")[0] == 1
    text = CliRunner().invoke(cli, ["--store", str(store), "check"])
    assert text.exit_code == 0
    assert "note: line 2" in text.stdout


def test_check_still_fails_on_a_checksum_mismatch(tracker: ExperimentTracker, store: Path) -> None:
    tracker.log_run(metrics={"acc": 0.5})
    data = (store / "runs.jsonl").read_bytes()
    (store / "runs.jsonl").write_bytes(data.replace(b"0.5", b"0.9"))
    code, report = _check(store, "--no-artifacts")
    assert code == 1
    assert report["notes"] == []
    assert "checksum" in report["problems"][0]["reason"]  # type: ignore[index]


# -- item 15: fetch_artifact / reproduce --out take any destination ----------------------------


@pytest.fixture
def stored(tracker: ExperimentTracker) -> str:
    with tracker.start_run(capture=False) as run:
        run.log_artifact_bytes(b"weights", "model.pkl")
    return run.run_id


@pytest.mark.parametrize(("dest", "expected"), [
    ("model.pkl", "model.pkl"),
    ("./x.bin", "x.bin"),
    ("out/", "out/model.pkl"),
    ("deep/er/", "deep/er/model.pkl"),
    ("existing", "existing/model.pkl"),
    ("new/copy.pkl", "new/copy.pkl"),
])
def test_fetch_artifact_accepts_every_destination_a_user_types(
    tracker: ExperimentTracker, stored: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dest: str,
    expected: str
) -> None:
    work = tmp_path / "work"
    (work / "existing").mkdir(parents=True)
    monkeypatch.chdir(work)
    written = tracker.fetch_artifact(stored, "model.pkl", dest)
    assert written == work / expected
    assert (work / expected).read_bytes() == b"weights"
    result = CliRunner().invoke(cli, ["--store", str(tracker.store), "reproduce", stored, "--artifact",
                                      "model.pkl", "--out", dest])
    assert "fetched model.pkl" in result.output, result.output
    assert not (work / dest.rstrip("/")).is_file() or not dest.endswith("/")


def test_fetch_artifact_to_a_directory_path_that_is_a_file_is_a_clear_error(
    tracker: ExperimentTracker, stored: str, tmp_path: Path
) -> None:
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(StorageError, match="cannot fetch artifact to"):
        tracker.fetch_artifact(stored, "model.pkl", f"{tmp_path / 'taken'}/")


# -- item 16: deeply nested values ------------------------------------------------------------


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"k": [value]}
    return value


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000])
def test_deeply_nested_value_is_refused_with_its_key_path(tracker: ExperimentTracker, depth: int) -> None:
    with pytest.raises(InvalidRecordError, match=f"nest deeper than {MAX_DEPTH}") as caught:
        tracker.log_run(params={"cfg": _nested(depth)})
    assert caught.value.field.startswith("params.cfg.k[0].k[0]")
    assert not isinstance(caught.value.__context__, RecursionError)


def _lists(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def test_value_at_the_depth_limit_is_stored_and_one_deeper_is_not(tracker: ExperimentTracker) -> None:
    run = tracker.log_run(params={"cfg": _lists(MAX_DEPTH - 1)})  # params itself is the first level
    assert tracker.get_run(run.run_id).params == run.params
    with pytest.raises(InvalidRecordError, match=f"nest deeper than {MAX_DEPTH}"):
        tracker.log_run(params={"cfg": _lists(MAX_DEPTH)})
    tracker.log_run(extra={"cfg": _lists(MAX_DEPTH)})  # a section of its own: the list is the first level
    with pytest.raises(InvalidRecordError, match=f"nest deeper than {MAX_DEPTH}"):
        tracker.log_run(extra={"cfg": _lists(MAX_DEPTH + 1)})
