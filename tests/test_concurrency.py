"""Many real processes on one store: no lost, torn or duplicated record, readers see only whole runs.

Workers are ``spawn`` processes (fresh interpreters, like separate jobs on a cluster) released
together by a barrier; every worker's result is collected so its exceptions surface, and every
process is reaped in ``finally``.  Timeouts below are hang guards only, never speed assertions.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from exptrack import ExperimentTracker, LockTimeoutError
from exptrack.store import codec
from exptrack.store.fsio import FileSystem, install

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext
    from multiprocessing.process import BaseProcess
    from multiprocessing.synchronize import Barrier, Event

HANG_GUARD = 120.0  # seconds; only stops a hung test on a slow shared machine, never a speed bound
ReadLines = Callable[[Path], list[bytes]]

SPAWN = mp.get_context("spawn")


def _guarded(results: Any, name: str, body: Callable[[], object]) -> None:
    """Run ``body`` in a worker and always report: ``(name, "ok", value)`` or ``(name, "error", tb)``."""
    try:
        results.put((name, "ok", body()))
    except BaseException:
        results.put((name, "error", traceback.format_exc()))


def _collect(results: Any, count: int) -> dict[str, object]:
    """Every worker's result; a worker's exception fails the test with its traceback."""
    collected: dict[str, object] = {}
    for _ in range(count):
        name, status, value = results.get(timeout=HANG_GUARD)
        assert status == "ok", f"worker {name} failed:\n{value}"
        collected[name] = value
    return collected


def _reap(processes: Sequence[BaseProcess]) -> None:
    for process in processes:
        process.join(timeout=HANG_GUARD)
        if process.is_alive():
            process.kill()
            process.join()


def _start(ctx: BaseContext, targets: Sequence[tuple[Callable[..., None], tuple[object, ...]]]) -> list[BaseProcess]:
    processes = [ctx.Process(target=target, args=args) for target, args in targets]  # type: ignore[attr-defined]
    for process in processes:
        process.start()
    return processes


# -- many writers -------------------------------------------------------------------------------


def _writer(
    store: str, worker: int, runs: int, durable: bool, batch: int, barrier: Barrier, results: Any,
    midway: Barrier | None = None,
) -> None:
    def body() -> list[str]:
        tracker = ExperimentTracker(store, durable=durable)
        barrier.wait(timeout=HANG_GUARD)
        ids: list[str] = []
        try:
            for start in range(0, runs, batch):
                if midway is not None and start == runs // 2:
                    midway.wait(timeout=HANG_GUARD)  # let the readers look at a half-written store
                if batch == 1:
                    ids.append(tracker.log_run(params={"worker": worker, "i": start}, metrics={"step": start}).run_id)
                else:
                    items = [{"params": {"worker": worker, "i": i, "batch": start}, "metrics": {"step": i}}
                             for i in range(start, min(start + batch, runs))]
                    ids.extend(run.run_id for run in tracker.log_runs(items))
        except BaseException:
            if midway is not None:
                midway.abort()  # the test has failed: release everyone waiting instead of hanging
            raise
        tracker.close()
        return ids

    _guarded(results, f"writer-{worker}", body)


def _run_writers(store: Path, workers: int, runs: int, *, durable: bool, batch: int = 1) -> dict[str, object]:
    results = SPAWN.Queue()
    barrier = SPAWN.Barrier(workers)
    processes: list[BaseProcess] = []
    try:
        processes = _start(SPAWN, [(_writer, (str(store), w, runs, durable, batch, barrier, results))
                                   for w in range(workers)])
        collected = _collect(results, workers)
    finally:
        _reap(processes)
    assert [process.exitcode for process in processes] == [0] * workers
    return collected


def _check_store(store: Path, workers: int, runs: int, collected: dict[str, object]) -> list[Any]:
    reader = ExperimentTracker(store)
    records = list(reader.runs())
    assert reader.last_corrupt == []
    assert len(records) == workers * runs
    ids = [run.run_id for run in records]
    assert len(set(ids)) == workers * runs
    acknowledged = {run_id for value in collected.values() for run_id in value}  # type: ignore[attr-defined]
    assert set(ids) == acknowledged
    for worker in range(workers):  # each worker's runs appear in the order it logged them
        assert [run.params["i"] for run in records if run.params["worker"] == worker] == list(range(runs))
    assert (store / "runs.jsonl").read_bytes().endswith(b"\n")
    return records


def test_eight_processes_two_thousand_runs_each(store: Path) -> None:
    workers, runs = 8, 2000
    collected = _run_writers(store, workers, runs, durable=False)
    records = _check_store(store, workers, runs, collected)
    assert Counter(run.params["worker"] for run in records) == dict.fromkeys(range(workers), runs)


def test_durable_writers_share_fsyncs_and_lose_nothing(store: Path) -> None:
    workers, runs = 4, 60
    collected = _run_writers(store, workers, runs, durable=True)
    _check_store(store, workers, runs, collected)


def test_batches_from_concurrent_writers_are_contiguous(store: Path, raw_lines: ReadLines) -> None:
    workers, runs, batch = 4, 600, 50
    collected = _run_writers(store, workers, runs, durable=False, batch=batch)
    records = _check_store(store, workers, runs, collected)
    # one lock and one write per batch: no other writer's run lands inside a batch
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        assert {(run.params["worker"], run.params["batch"]) for run in chunk} == {
            (chunk[0].params["worker"], chunk[0].params["batch"])
        }
    assert len(raw_lines(store)) == workers * runs


# -- readers while writers append ---------------------------------------------------------------


def _reader(store: str, writers: int, runs: int, barrier: Barrier, midway: Barrier, done: Event, results: Any) -> None:
    def body() -> dict[str, int]:
        tracker = ExperimentTracker(store)
        barrier.wait(timeout=HANG_GUARD)
        try:
            return poll(tracker)
        except BaseException:
            midway.abort()  # the test has failed: release the writers instead of letting them hang
            raise

    def poll(tracker: ExperimentTracker) -> dict[str, int]:
        polls = previous = 0
        waited_midway = False
        while True:
            finished = done.is_set()  # read before polling: the last poll then sees every run
            records = list(tracker.runs())
            polls += 1
            assert tracker.last_corrupt == [], [str(item) for item in tracker.last_corrupt]
            assert len(records) >= previous, f"count went down from {previous} to {len(records)}"
            previous = len(records)
            seen: dict[int, list[int]] = {}
            for run in records:
                assert run.metrics == {"step": run.params["i"]}
                seen.setdefault(run.params["worker"], []).append(run.params["i"])
            for steps in seen.values():  # a snapshot holds a prefix of each writer's runs
                assert steps == list(range(len(steps)))
            if not waited_midway and len(records) == writers * (runs // 2):
                midway.wait(timeout=HANG_GUARD)
                waited_midway = True
            if finished:
                assert waited_midway
                assert len(records) == writers * runs
                return {"polls": polls, "final": len(records)}

    _guarded(results, f"reader-{os.getpid()}", body)


def test_readers_polling_during_appends_see_only_whole_runs(store: Path) -> None:
    writers, readers, runs = 4, 2, 1500
    ExperimentTracker(store).close()
    (store / "runs.jsonl").touch()
    results = SPAWN.Queue()
    barrier = SPAWN.Barrier(writers + readers)
    midway = SPAWN.Barrier(writers + readers)  # every reader looks at the store while writers pause
    done = SPAWN.Event()
    processes: list[BaseProcess] = []
    try:
        processes = _start(
            SPAWN,
            [(_writer, (str(store), w, runs, False, 1, barrier, results, midway)) for w in range(writers)]
            + [(_reader, (str(store), writers, runs, barrier, midway, done, results)) for _ in range(readers)],
        )
        collected: dict[str, object] = {}
        for _ in range(writers):
            name, status, value = results.get(timeout=HANG_GUARD)
            assert status == "ok", f"{name} failed:\n{value}"
            collected[name] = value
        done.set()
        collected.update(_collect(results, readers))
    finally:
        done.set()
        _reap(processes)
    assert sorted(name for name in collected if name.startswith("writer")) == [f"writer-{w}" for w in range(writers)]
    assert [value["final"] for name, value in collected.items() if name.startswith("reader")] == [writers * runs] * 2  # type: ignore[index]
    _check_store(store, writers, runs, {k: v for k, v in collected.items() if k.startswith("writer")})


# -- the lock: a holder in another process, and a forked child ----------------------------------


def _hold_lock(store: str, held: Event, release: Event, results: Any) -> None:
    def body() -> int:
        tracker = ExperimentTracker(store)
        journal = tracker._journal
        journal._ensure_open()
        journal._acquire()
        held.set()
        release.wait(timeout=HANG_GUARD)
        journal._release()
        return os.getpid()

    _guarded(results, "holder", body)


def test_lock_timeout_names_the_lock_file_and_writes_nothing(store: Path) -> None:
    tracker = ExperimentTracker(store, lock_timeout=0.2)
    tracker.log_run(metrics={"accuracy": 0.5})
    before = tracker.runs_path.read_bytes()
    results = SPAWN.Queue()
    held, release = SPAWN.Event(), SPAWN.Event()
    processes: list[BaseProcess] = []
    try:
        processes = _start(SPAWN, [(_hold_lock, (str(store), held, release, results))])
        assert held.wait(timeout=HANG_GUARD)
        with pytest.raises(LockTimeoutError) as caught:
            tracker.log_run(metrics={"accuracy": 0.9})
        with pytest.raises(LockTimeoutError):
            tracker.log_runs([{"metrics": {"accuracy": 0.8}}])
        release.set()
        holder_pid = _collect(results, 1)["holder"]
    finally:
        release.set()
        _reap(processes)
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert error.lock_path == str(store / "runs.jsonl.lock")
    assert error.lock_path in str(error)
    assert error.timeout == 0.2
    assert f"pid {holder_pid}" in error.holder
    assert tracker.runs_path.read_bytes() == before
    assert tracker.log_run(metrics={"accuracy": 0.7}).offset == len(before)


def _forked_child(tracker: ExperimentTracker, conn: Connection) -> None:
    try:
        tracker._journal.lock_timeout = 0.3
        try:
            tracker.log_run(metrics={"who": 1})
            conn.send(("wrote while the parent held the lock", None))
        except LockTimeoutError as exc:
            conn.send(("timed out", exc.lock_path))
        tracker._journal.lock_timeout = HANG_GUARD
        conn.send(("waiting", None))
        conn.send(("logged", tracker.log_run(metrics={"who": 2}).run_id))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _recv(conn: Connection) -> tuple[str, Any]:
    assert conn.poll(HANG_GUARD), "forked child went silent"
    message: tuple[str, Any] = conn.recv()
    assert message[0] != "error", message[1]
    return message


def test_forked_child_does_not_share_the_parents_lock(store: Path) -> None:
    tracker = ExperimentTracker(store, durable=False)
    parent_run = tracker.log_run(metrics={"who": 0})  # the parent's descriptors are open now
    before = tracker.runs_path.read_bytes()
    journal = tracker._journal
    journal._acquire()  # the parent holds the lock through the descriptor the child inherits
    ctx = mp.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_forked_child, args=(tracker, sender))
    released = False
    try:
        with warnings.catch_warnings():
            # Python >= 3.12 warns that forking a threaded process may deadlock; that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            child.start()
        sender.close()
        assert _recv(receiver) == ("timed out", str(store / "runs.jsonl.lock"))
        assert _recv(receiver) == ("waiting", None)
        assert tracker.runs_path.read_bytes() == before  # the child waits: the lock is still held
        journal._release()
        released = True
        status, child_id = _recv(receiver)
        assert status == "logged"
    finally:
        if not released:
            journal._release()
        receiver.close()
        _reap([child])
    assert child.exitcode == 0
    records = list(tracker.runs())
    assert [run.run_id for run in records] == [parent_run.run_id, child_id]
    assert tracker.last_corrupt == []
    last = tracker.log_run(metrics={"who": 3})  # the parent still writes through its own descriptors
    assert [run.metrics["who"] for run in tracker.runs()] == [0, 2, 3]
    assert last.offset + len(codec.encode(last)) == tracker.runs_path.stat().st_size


# -- SIGKILL in the middle of a write -----------------------------------------------------------


class _HalfWriteThenHang(FileSystem):
    """Writes the first half of a record, tells the parent, then waits to be killed."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def write(self, fd: int, data: bytes | memoryview) -> int:
        data = bytes(data)
        written = os.write(fd, data[: len(data) // 2])
        self.conn.send(data)
        time.sleep(HANG_GUARD)
        return written


def _killed_writer(store: str, conn: Connection, before_crash: int) -> None:
    try:
        tracker = ExperimentTracker(store, durable=False)
        for i in range(before_crash):
            tracker.log_run(params={"child": i}, metrics={"accuracy": i / 100})
        install(_HalfWriteThenHang(conn))
        tracker.log_run(params={"child": "torn"}, metrics={"accuracy": 1.0})
        conn.send("the torn write returned")
    except BaseException:
        conn.send(traceback.format_exc())


def test_writer_killed_mid_write_loses_nothing_and_next_record_is_intact(store: Path, raw_lines: ReadLines) -> None:
    tracker = ExperimentTracker(store, durable=False, lock_timeout=HANG_GUARD)
    previous = [tracker.log_run(params={"parent": i}, metrics={"accuracy": i / 10}) for i in range(20)]
    receiver, sender = SPAWN.Pipe(duplex=False)
    child = SPAWN.Process(target=_killed_writer, args=(str(store), sender, 5))
    try:
        child.start()
        sender.close()
        assert receiver.poll(HANG_GUARD), "child never reached the write"
        line = receiver.recv()
        assert isinstance(line, bytes), line  # otherwise: the child's traceback
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(timeout=HANG_GUARD)
    finally:
        receiver.close()
        _reap([child])
    assert child.exitcode == -signal.SIGKILL
    fragment = line[: len(line) // 2]

    lines = raw_lines(store)
    assert len(lines) == 20 + 5 + 1
    assert lines[-1] == fragment  # the torn tail, no newline
    assert [codec.encode(run) for run in previous] == lines[:20]
    survivors = list(tracker.runs())
    assert [run.run_id for run in survivors[:20]] == [run.run_id for run in previous]
    assert [run.params for run in survivors[20:]] == [{"child": i} for i in range(5)]
    (torn,) = tracker.last_corrupt  # the dead writer left the lock free: the tail is torn, not pending
    assert (torn.line, torn.offset, torn.length) == (26, sum(map(len, lines[:-1])), len(fragment))

    after = tracker.log_run(params={"parent": "after"}, metrics={"accuracy": 0.5})
    lines = raw_lines(store)
    assert lines[-2] == fragment + b"\n"  # the fragment is fenced off on its own line
    assert lines[-1] == codec.encode(after)
    records = list(tracker.runs())
    assert len(records) == 20 + 5 + 1
    assert records[-1] == after
    (bad,) = tracker.last_corrupt
    assert (bad.line, bad.offset, bad.length) == (26, torn.offset, len(fragment))
    assert bad.reason.startswith("invalid JSON")


def _endless_writer(store: str, conn: Connection) -> None:
    tracker = ExperimentTracker(store, durable=False)
    i = 0
    while True:
        conn.send(tracker.log_run(params={"i": i}, metrics={"accuracy": 0.5}).run_id)
        i += 1


def test_writer_killed_at_any_moment_keeps_every_acknowledged_run(store: Path) -> None:
    tracker = ExperimentTracker(store, durable=False, lock_timeout=HANG_GUARD)
    receiver, sender = SPAWN.Pipe(duplex=False)
    child = SPAWN.Process(target=_endless_writer, args=(str(store), sender))
    acknowledged: list[str] = []
    try:
        child.start()
        sender.close()
        while len(acknowledged) < 300:
            assert receiver.poll(HANG_GUARD), "writer went silent"
            acknowledged.append(receiver.recv())
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(timeout=HANG_GUARD)
    finally:
        receiver.close()
        _reap([child])
    survivors = list(tracker.runs())
    assert [run.run_id for run in survivors[: len(acknowledged)]] == acknowledged
    # later runs were logged before the kill landed; none is missing between the survivors
    assert [run.params["i"] for run in survivors] == list(range(len(survivors)))
    assert len(tracker.last_corrupt) <= 1  # at most the one line being written
    after = tracker.log_run(metrics={"accuracy": 0.9})
    assert list(tracker.runs())[-1] == after
    assert len(tracker.last_corrupt) <= 1


# -- the append itself --------------------------------------------------------------------------


class _Recording(FileSystem):
    """The real file system, remembering the calls that matter for the append protocol."""

    def __init__(self) -> None:
        self.opened: dict[str, int] = {}
        self.writes: list[bytes] = []
        self.fsyncs = 0

    def open(self, path: str, flags: int, mode: int = 0o666) -> int:
        self.opened[os.path.basename(path)] = flags
        return super().open(path, flags, mode)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        self.writes.append(bytes(data))
        return super().write(fd, data)

    def fsync(self, fd: int) -> None:
        self.fsyncs += 1
        super().fsync(fd)


@pytest.fixture
def recording() -> Iterator[_Recording]:
    spy = _Recording()
    previous = install(spy)
    try:
        yield spy
    finally:
        install(previous)


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "flush-only"])
def test_each_append_is_one_write_on_an_append_descriptor(
    store: Path, recording: _Recording, raw_lines: ReadLines, durable: bool
) -> None:
    tracker = ExperimentTracker(store, durable=durable)
    run = tracker.log_run(params={"model": "rf"}, metrics={"accuracy": 0.5})
    assert recording.opened["runs.jsonl"] & os.O_APPEND
    assert recording.writes == [codec.encode(run)]
    batch = tracker.log_runs([{"metrics": {"accuracy": i / 10}} for i in range(50)])
    assert recording.writes[1:] == [b"".join(codec.encode(r) for r in batch)]  # one lock, one write
    assert recording.fsyncs == (2 if durable else 0)
    assert len(raw_lines(store)) == 51


def test_torn_tail_is_fenced_with_a_newline_before_the_record(
    store: Path, recording: _Recording, raw_lines: ReadLines
) -> None:
    tracker = ExperimentTracker(store, durable=False)
    tracker.log_run(metrics={"accuracy": 0.1})
    with tracker.runs_path.open("ab") as handle:
        handle.write(b'{"run_id": "cut sho')
    run = tracker.log_run(metrics={"accuracy": 0.2})
    assert recording.writes[1:] == [b"\n", codec.encode(run)]
    assert raw_lines(store)[1:] == [b'{"run_id": "cut sho\n', codec.encode(run)]
    log = (store / "log.txt").read_text(encoding="utf-8")
    assert "repaired torn tail" in log


def test_durable_runs_are_logged_with_the_pid(store: Path) -> None:
    tracker = ExperimentTracker(store)
    run = tracker.log_run(metrics={"accuracy": 0.5})
    (line,) = [line for line in (store / "log.txt").read_text(encoding="utf-8").splitlines() if run.run_id in line]
    assert f"pid={os.getpid()}" in line
