"""Compaction: what gc keeps and removes, writers that notice the swap, concurrency, and a crash at any I/O call."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from exptrack import ExperimentTracker
from exptrack.cli import cli
from exptrack.repro.check import check_store
from exptrack.store.fsio import FileSystem, install
from exptrack.store.logs import detach_store_log


def filled(store: Path) -> tuple[ExperimentTracker, list[str]]:
    tracker = ExperimentTracker(store, durable=False)
    for i in range(6):
        with tracker.start_run({"i": i}, capture=False, name=f"run-{i}") as run:
            run.log_metric("accuracy", i / 10, step=0)
            run.log_metric("accuracy", i / 10 + 0.01, step=1)
            run.log_artifact_bytes(f"model {i}".encode(), "model.bin")
    return tracker, [run.run_id for run in tracker.runs()]


def test_gc_drops_deleted_runs_folds_edits_and_removes_unused_files(store: Path) -> None:
    tracker, ids = filled(store)
    tracker.set_tags(ids[0], add=["keep"])
    tracker.rename(ids[1], "renamed")
    tracker.delete_runs(ids[4:])
    before = [run.to_dict() for run in tracker.runs()]
    report = tracker.compact()
    assert (report["runs_removed"], report["edits_folded"]) == (2, 3)
    assert sorted(report["removed_ids"]) == sorted(ids[4:])
    assert (report["blobs_removed"], report["history_removed"]) == (2, 2)
    assert [run.to_dict() for run in tracker.runs()] == before  # the merged view is unchanged
    lines = [json.loads(line) for line in tracker.runs_path.read_bytes().splitlines()]
    assert [line["run_id"] for line in lines] == ids[:4]
    assert all("kind" not in line for line in lines)  # edits are folded into plain run lines
    assert lines[0]["tags"] == ["keep"]
    assert lines[1]["name"] == "renamed"
    assert not (store / "history" / f"{ids[4]}.jsonl").exists()
    assert tracker.load_artifact(ids[0], "model.bin") == b"model 0"
    assert report["bytes_after"] == tracker.runs_path.stat().st_size < report["bytes_before"]
    assert check_store(store).ok


def test_gc_dry_run_changes_nothing(store: Path) -> None:
    tracker, ids = filled(store)
    tracker.delete_runs(ids[:2])
    log = tracker.runs_path.read_bytes()
    files = sorted(str(p) for p in store.rglob("*") if ".index" not in p.parts)
    result = CliRunner().invoke(cli, ["--store", str(store), "gc", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would remove 2 deleted run(s)" in result.stdout
    assert ids[0] in result.stdout
    assert tracker.runs_path.read_bytes() == log
    assert sorted(str(p) for p in store.rglob("*") if ".index" not in p.parts) == files
    result = CliRunner().invoke(cli, ["--store", str(store), "gc", "--json"])
    assert json.loads(result.stdout)["runs_removed"] == 2
    assert len(list(tracker.runs(include_deleted=True))) == 4


def test_gc_keeps_lines_it_cannot_read_and_drops_duplicates(store: Path) -> None:
    tracker, _ids = filled(store)
    with tracker.runs_path.open("ab") as handle:
        handle.write(b'{"schema":99,"run_id":"from-the-future","params":{},"metrics":{}}\n')
        handle.write(tracker.runs_path.read_bytes().splitlines(keepends=True)[0])  # a duplicate line
    assert len(tracker.corrupt_lines()) == 2
    report = tracker.compact()
    assert report["lines_dropped"] == 1
    assert b"from-the-future" in tracker.runs_path.read_bytes()
    assert [c.reason for c in tracker.corrupt_lines()] == ["record schema 99 is newer than this exptrack reads (2)"]


def test_a_writer_that_had_the_old_log_open_appends_to_the_new_one(store: Path) -> None:
    tracker, ids = filled(store)
    writer = ExperimentTracker(store, durable=True)
    writer.log_run(metrics={"accuracy": 0.5})  # its descriptor is open on the old file now
    tracker.delete_runs(ids[:1])
    tracker.compact()
    late = writer.log_run(metrics={"accuracy": 0.6})
    fresh = ExperimentTracker(store)
    assert fresh.get_run(late.run_id).metrics == {"accuracy": 0.6}
    assert len(list(fresh.runs())) == 7
    writer.close()


def test_a_writer_whose_log_was_deleted_appends_to_a_new_one(store: Path) -> None:
    writer = ExperimentTracker(store, durable=False)
    writer.log_run(metrics={"accuracy": 0.5})  # its descriptor is open on the file deleted next
    (store / "runs.jsonl").unlink()
    late = writer.log_run(metrics={"accuracy": 0.6})
    assert [run.run_id for run in ExperimentTracker(store).runs()] == [late.run_id]
    assert late.offset == 0
    writer.close()


# -- concurrency --------------------------------------------------------------------------------


def _writer(store: str, n: int, barrier: Any, out: Any) -> None:
    tracker = ExperimentTracker(store, durable=False)
    barrier.wait()
    out.put([tracker.log_run({"w": os.getpid(), "i": i}, {"accuracy": i / n}).run_id for i in range(n)])


def _reader(store: str, stop: Any, barrier: Any, out: Any) -> None:
    tracker = ExperimentTracker(store)
    barrier.wait()
    problems = []
    answers = 0
    while not stop.is_set():
        runs = list(tracker.runs())
        ids = [run.run_id for run in runs]
        if len(ids) != len(set(ids)):
            problems.append("a run listed twice")
        if tracker.corrupt_lines():
            problems.append(f"corrupt lines: {tracker.corrupt_lines()[:2]}")
        if runs:
            best = tracker.best_run("accuracy")
            if best.run_id not in set(ids) and best.run_id not in {r.run_id for r in tracker.runs()}:
                problems.append(f"best {best.run_id} is not a listed run")
        answers += 1
    out.put((answers, problems))


def concurrent_gc(store: Path, writers: int, runs_each: int, readers: int, collections: int) -> None:
    seed = ExperimentTracker(store, durable=False)
    doomed = [seed.log_run({"doomed": i}, {"accuracy": 2.0}).run_id for i in range(collections)]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(writers + readers + 1)
    stop, acks, reports = ctx.Event(), ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(store), runs_each, barrier, acks)) for _ in range(writers)]
    procs += [ctx.Process(target=_reader, args=(str(store), stop, barrier, reports)) for _ in range(readers)]
    for proc in procs:
        proc.start()
    try:
        barrier.wait(timeout=120)  # a hang guard only
        for i in range(collections):
            seed.delete_runs([doomed[i]])
            seed.compact()
        acked = [run_id for _ in range(writers) for run_id in acks.get(timeout=300)]
        stop.set()
        results = [reports.get(timeout=120) for _ in range(readers)]
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
    assert all(proc.exitcode == 0 for proc in procs)
    assert all(answers > 0 for answers, _ in results)
    assert [problem for _, problems in results for problem in problems] == []
    final = ExperimentTracker(store)
    ids = [run.run_id for run in final.runs()]
    assert sorted(ids) == sorted(acked)  # every acknowledged run exactly once, every deleted one gone
    assert final.corrupt_lines() == []
    assert check_store(store).ok
    detach_store_log(str(store))


def test_gc_while_writers_and_readers_run(store: Path) -> None:
    concurrent_gc(store, writers=4, runs_each=60, readers=2, collections=4)


@pytest.mark.stress
def test_gc_twenty_times_under_eight_writers_and_four_readers(store: Path) -> None:
    concurrent_gc(store, writers=8, runs_each=400, readers=4, collections=20)


# -- a crash at any point -----------------------------------------------------------------------


class Crash(Exception):
    """The process died at this call (nothing after it runs)."""


class FailAt(FileSystem):
    """Fails the ``n``-th file-system call (counted from installation) with a crash."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls = 0

    def _tick(self) -> None:
        self.calls += 1
        if self.calls == self.n:
            raise Crash(f"call {self.n}")

    def open(self, path: str, flags: int, mode: int = 0o666) -> int:
        self._tick()
        return super().open(path, flags, mode)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        self._tick()
        return super().write(fd, data)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        self._tick()
        return super().pread(fd, size, offset)

    def fsync(self, fd: int) -> None:
        self._tick()
        super().fsync(fd)

    def replace(self, src: str, dst: str) -> None:
        self._tick()
        super().replace(src, dst)

    def unlink(self, path: str) -> None:
        self._tick()
        super().unlink(path)

    def close(self, fd: int) -> None:
        self._tick()
        super().close(fd)


def test_a_crash_at_any_call_of_gc_leaves_the_old_or_the_new_log_whole(tmp_path: Path) -> None:
    template = tmp_path / "template"
    tracker, ids = filled(template)
    tracker.set_note(ids[0], "kept")
    tracker.delete_runs(ids[3:])
    old = tracker.runs_path.read_bytes()
    old_view = [run.to_dict() for run in tracker.runs()]
    tracker.close()
    n = 1
    while True:
        store = tmp_path / f"store-{n}"
        store.mkdir()
        os.system(f"cp -a {template}/. {store}/")  # noqa: S605 - test paths only
        victim = ExperimentTracker(store, durable=False)
        victim.summary()  # the index is warm: gc's own calls are what is counted
        faulty = FailAt(n)
        previous = install(faulty)
        try:
            victim.compact()
            crashed = False
        except Crash:
            crashed = True
        except OSError:
            crashed = True
        finally:
            install(previous)
        victim.close()
        data = (store / "runs.jsonl").read_bytes()
        reader = ExperimentTracker(store)
        assert [run.to_dict() for run in reader.runs()] == old_view, f"call {n}"
        assert data == old or b'"kind"' not in data, f"call {n}: neither the old nor a whole new log"
        assert reader.corrupt_lines() == [], f"call {n}"
        assert not list(store.glob("runs.jsonl.gc-*")), f"call {n}: a temporary file was left"
        detach_store_log(str(store))
        if not crashed:
            break
        n += 1
    assert n > 5  # the sweep reached past the swap: every call failed once
