"""Fault injection through the file-system seam, SQLite's way: fail the Nth call, for every N.

For each scenario (first append of a process, a warm append, an append after a torn tail, a batch)
a dry run counts the file-system calls one ``log_run`` makes; then, for every N, a fresh copy of
the store runs the same append with the Nth call failing (ENOSPC, EIO, a short write, a short
write followed by ENOSPC, or a crash that ends the "process" there).  After each one:

* the append either returned (acknowledged) or raised a ``StorageError`` naming errno and path;
* every acknowledged record is present and intact, in order;
* the failed record is either fully present or absent, never half present as a valid run;
* the log was only appended to, and holds at most one new corrupt fragment;
* the next ``log_run`` succeeds, and the record it acknowledges reads back intact.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exptrack import ExperimentTracker, LockTimeoutError, Run, StorageError
from exptrack.store.fsio import FileSystem, install
from exptrack.store.journal import DEFAULT_LOCK_TIMEOUT, Journal, lock_timeout_from_env
from exptrack.store.logs import detach_store_log
from exptrack.store.scan import CorruptLine

ROOT = Path(__file__).resolve().parent.parent


class Crash(BaseException):
    """The process died at this call: nothing after it runs; the kernel only closes and unlocks."""


@dataclass(frozen=True)
class Fault:
    name: str
    errno: int = 0  # raise OSError(errno) instead of doing the call
    short: bool = False  # a write writes half and reports it
    then_enospc: bool = False  # ... and every later write fails with ENOSPC (a disk filling up)
    crash: bool = False  # the process dies (a write first lands half of its bytes)

    def applies_to(self, call: str, size: int) -> bool:
        if self.short:
            return call in ("write", "pwrite") and size >= 2
        return True


FAULTS = [
    Fault("ENOSPC", errno=errno.ENOSPC),
    Fault("EIO", errno=errno.EIO),
    Fault("short-write", short=True),
    Fault("short-write-then-ENOSPC", short=True, then_enospc=True),
    Fault("crash", crash=True),
]


class FaultyFileSystem(FileSystem):
    """The real file system, with one fault injected at call number ``at`` (0-based)."""

    def __init__(self, fault: Fault | None = None, at: int = -1) -> None:
        self.fault = fault
        self.at = at
        self.calls = 0
        self.sites: list[str] = []
        self.injected: str | None = None
        self.crashed = False
        self.disk_full = False

    def _hit(self, call: str, data: bytes | memoryview | None = None) -> bool:
        if self.crashed:
            if call in ("unlock", "close"):
                return False  # what the kernel does for a dead process
            raise AssertionError(f"{call} after the process crashed")
        if self.disk_full and call in ("write", "pwrite"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        number, self.calls = self.calls, self.calls + 1
        site = f"{call}@{sys._getframe(2).f_code.co_name}"
        if data is not None and bytes(data) == b"\n":
            site += "(repair newline)"
        self.sites.append(site)
        fault = self.fault
        if number != self.at or fault is None or not fault.applies_to(call, len(data) if data is not None else 0):
            return False
        self.injected = site
        if fault.crash and data is None:
            self.crashed = True
            raise Crash(site)
        if fault.errno:
            raise OSError(fault.errno, os.strerror(fault.errno))
        return True

    def _torn(self, data: bytes | memoryview, write: Callable[[bytes | memoryview], int]) -> int:
        fault = self.fault
        assert fault is not None
        written = write(data[: len(data) // 2]) if len(data) >= 2 else 0
        if fault.crash:
            self.crashed = True
            raise Crash(self.injected)
        self.disk_full = fault.then_enospc
        return written

    def open(self, path: str, flags: int, mode: int = 0o666) -> int:
        self._hit("open")
        return super().open(path, flags, mode)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if self._hit("write", data):
            return self._torn(data, lambda part: super(FaultyFileSystem, self).write(fd, part))
        return super().write(fd, data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        if self._hit("pwrite", data):
            return self._torn(data, lambda part: super(FaultyFileSystem, self).pwrite(fd, bytes(part), offset))
        return super().pwrite(fd, data, offset)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        self._hit("pread")
        return super().pread(fd, size, offset)

    def read(self, fd: int, size: int) -> bytes:
        self._hit("read")
        return super().read(fd, size)

    def fsync(self, fd: int) -> None:
        self._hit("fsync")
        super().fsync(fd)

    def fstat(self, fd: int) -> os.stat_result:
        self._hit("fstat")
        return super().fstat(fd)

    def size(self, fd: int) -> int:
        self._hit("size")
        return super().size(fd)

    def stat(self, path: str) -> os.stat_result:
        self._hit("stat")
        return super().stat(path)

    def replace(self, src: str, dst: str) -> None:
        self._hit("replace")
        super().replace(src, dst)

    def close(self, fd: int) -> None:
        self._hit("close")
        super().close(fd)

    def unlink(self, path: str) -> None:
        self._hit("unlink")
        super().unlink(path)

    def try_lock(self, fd: int) -> bool:
        self._hit("try_lock")
        return super().try_lock(fd)

    def unlock(self, fd: int) -> None:
        self._hit("unlock")
        super().unlock(fd)


@pytest.fixture
def real_fs() -> Iterator[None]:
    """Whatever a test installs, the real file system is back afterwards."""
    previous = install(FileSystem())
    try:
        yield
    finally:
        install(previous)


# -- scenarios ------------------------------------------------------------------------------------

TORN = b'{"schema":1,"run_id":"torn-by-a-crash","params":{"lr":0.1'


def seed(path: Path, *, torn: bool) -> list[Run]:
    """A store with three acknowledged runs (and a crashed writer's fragment when ``torn``)."""
    with ExperimentTracker(path, durable=False) as tracker:
        acked = [tracker.log_run(params={"seed": i}, metrics={"accuracy": i / 10}) for i in range(3)]
    if torn:
        with (path / "runs.jsonl").open("ab") as handle:
            handle.write(TORN)
    detach_store_log(str(path))
    return acked


@dataclass(frozen=True)
class Scenario:
    name: str
    warm: bool  # the journal already appended in this process (descriptors open)
    torn: bool  # the log ends in a torn fragment the append must fence off
    batch: int  # 0: log_run; n: log_runs of n records


SCENARIOS = [
    Scenario("first-append", warm=False, torn=False, batch=0),
    Scenario("warm-append", warm=True, torn=False, batch=0),
    Scenario("after-torn-tail", warm=False, torn=True, batch=0),
    Scenario("batch", warm=True, torn=False, batch=3),
]


def attempt(tracker: ExperimentTracker, scenario: Scenario, tag: str) -> list[Run]:
    if scenario.batch:
        return tracker.log_runs(
            {"params": {"attempt": tag, "part": i, "pad": "x" * 300}, "metrics": {"accuracy": 0.5}}
            for i in range(scenario.batch)
        )
    return [tracker.log_run(params={"attempt": tag, "pad": "x" * 300}, metrics={"accuracy": 0.5})]


def open_tracker(path: Path, scenario: Scenario, acked: list[Run]) -> ExperimentTracker:
    tracker = ExperimentTracker(path)
    if scenario.warm:
        acked.extend(attempt(tracker, scenario, "warm-up"))
    return tracker


def reload(path: Path) -> tuple[list[Run], list[CorruptLine]]:
    with ExperimentTracker(path) as tracker:
        items = list(tracker.scan(final=True))
    return [i for i in items if isinstance(i, Run)], [i for i in items if isinstance(i, CorruptLine)]


def count_calls(base: Path, scenario: Scenario) -> int:
    path = base / "dry-run"
    acked = seed(path, torn=scenario.torn)
    tracker = open_tracker(path, scenario, acked)
    counting = FaultyFileSystem()
    previous = install(counting)
    try:
        attempt(tracker, scenario, "dry-run")
    finally:
        install(previous)
        tracker.close()
        detach_store_log(str(path))
    return counting.calls


INJECTED: Counter[str] = Counter()


@pytest.mark.usefixtures("real_fs")
@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_every_failing_call_of_an_append_keeps_the_log_consistent(
    tmp_path: Path, scenario: Scenario, fault: Fault
) -> None:
    total = count_calls(tmp_path, scenario)
    assert total >= 8, "the dry run should see the open/lock/write/sync calls"
    injected_sites: Counter[str] = Counter()
    for at in range(total + 1):  # the last round injects nothing: the baseline must pass too
        path = tmp_path / f"n{at}"
        acked = seed(path, torn=scenario.torn)
        tracker = open_tracker(path, scenario, acked)
        before = (path / "runs.jsonl").read_bytes()
        _, corrupt_before = reload(path)
        tag = f"{scenario.name}-{fault.name}-{at}"
        faulty = FaultyFileSystem(fault, at)
        previous = install(faulty)
        outcome: list[Run] | BaseException
        try:
            outcome = attempt(tracker, scenario, tag)
        except (StorageError, Crash) as exc:
            outcome = exc
        finally:
            install(previous)
        context = f"{fault.name} at call {at} ({faulty.injected}); outcome {outcome!r}"
        if faulty.injected:
            injected_sites[faulty.injected] += 1

        # The error, if any, is a clear exptrack error: an OSError with errno and path.
        if isinstance(outcome, StorageError):
            assert fault.errno or fault.then_enospc, context
            assert outcome.errno in (fault.errno, errno.ENOSPC), context
            assert outcome.filename in (str(path / "runs.jsonl"), str(path / "runs.jsonl.lock")), context
            assert outcome.filename in str(outcome)
            assert pickle.loads(pickle.dumps(outcome)).errno == outcome.errno  # noqa: S301 - our own bytes
        if fault.short and not fault.then_enospc:
            assert isinstance(outcome, list), f"a short write must be completed: {context}"
        if isinstance(outcome, list):
            acked.extend(outcome)

        # The log only grew; acknowledged runs are intact; the attempt is whole or absent.
        after = (path / "runs.jsonl").read_bytes()
        assert after.startswith(before), f"the log was rewritten: {context}"
        runs, corrupt = reload(path)
        by_id = {run.run_id: run for run in runs}
        assert [r.run_id for r in runs if r.params.get("attempt") != tag] == [r.run_id for r in acked if
                                                                               r.params.get("attempt") != tag]
        for run in acked:
            assert by_id.get(run.run_id) == run, f"acknowledged run {run.run_id} lost or changed: {context}"
        for run in runs:
            if run.params.get("attempt") == tag:
                assert run.metrics == {"accuracy": 0.5}, context
                assert run.params["pad"] == "x" * 300, context
        attempts = [r for r in runs if r.params.get("attempt") == tag]
        assert len({r.params.get("part") for r in attempts}) == len(attempts), context
        assert len(corrupt) <= len(corrupt_before) + 1, f"{corrupt}: {context}"

        # The next append (a new process after a crash) succeeds and reads back intact.
        if isinstance(outcome, Crash):
            tracker.close()
            tracker = ExperimentTracker(path)
        nxt = tracker.log_run(params={"next": tag}, metrics={"accuracy": 0.25})
        tracker.close()
        detach_store_log(str(path))
        runs_after, corrupt_after = reload(path)
        assert runs_after[-1] == nxt, context
        assert {r.run_id for r in acked} <= {r.run_id for r in runs_after}, context
        assert len(corrupt_after) <= len(corrupt_before) + 1, context
        assert (path / "runs.jsonl").read_bytes().startswith(after), context
        shutil.rmtree(path)

    INJECTED.update(injected_sites)
    injected_calls = {site.split("@")[0] for site in injected_sites}
    expected = {"write"} if fault.short else {"write", "try_lock", "size", "pread", "unlock"}
    if not fault.short:
        expected |= {"fsync", "pwrite"}
        if not scenario.warm:
            expected |= {"open", "fstat"}
    assert expected <= injected_calls, f"not exercised: {sorted(expected - injected_calls)}"
    if scenario.torn and not fault.short:  # a one-byte write cannot be short
        assert any("repair newline" in site for site in injected_sites)
    print(f"\n{scenario.name} / {fault.name}: {sum(injected_sites.values())} faults")
    for site, count in sorted(injected_sites.items()):
        print(f"  {count:3d}  {site}")


# -- the lock: finite, configurable, and it names who holds it -----------------------------------------


def test_lock_timeout_names_the_lock_file_and_the_holder(store: Path) -> None:
    holder = Journal(str(store / "runs.jsonl"))
    store.mkdir()
    holder._ensure_open()
    holder._acquire()  # another open file description: flock excludes it even in this process
    try:
        with ExperimentTracker(store, lock_timeout=0.2) as tracker, pytest.raises(LockTimeoutError) as caught:
            tracker.log_run(metrics={"accuracy": 0.5})
    finally:
        holder._release()
        holder.close()
    error = caught.value
    assert error.lock_path == str(store / "runs.jsonl.lock")
    assert error.holder == f"pid {os.getpid()} on {socket.gethostname()}"
    assert error.timeout == 0.2
    assert str(store / "runs.jsonl.lock") in str(error)
    assert f"held by pid {os.getpid()} on {socket.gethostname()}" in str(error)
    assert "EXPTRACK_LOCK_TIMEOUT" in str(error)
    assert isinstance(error, TimeoutError)
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert (clone.lock_path, clone.timeout, clone.holder, str(clone)) == (
        error.lock_path, error.timeout, error.holder, str(error)
    )
    assert not (store / "runs.jsonl").read_bytes()  # nothing was written


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0.25", 0.25), ("5", 5.0), ("", DEFAULT_LOCK_TIMEOUT), ("soon", DEFAULT_LOCK_TIMEOUT),
     ("0", DEFAULT_LOCK_TIMEOUT), ("-1", DEFAULT_LOCK_TIMEOUT), ("inf", DEFAULT_LOCK_TIMEOUT),
     ("nan", DEFAULT_LOCK_TIMEOUT)],
)
def test_lock_timeout_comes_from_the_environment_and_is_always_finite(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: float
) -> None:
    monkeypatch.setenv("EXPTRACK_LOCK_TIMEOUT", raw)
    assert lock_timeout_from_env() == expected
    assert Journal("unused.jsonl").lock_timeout == expected


def test_environment_lock_timeout_applies_to_a_tracker(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPTRACK_LOCK_TIMEOUT", "0.1")
    store.mkdir()
    holder = Journal(str(store / "runs.jsonl"))
    holder._ensure_open()
    holder._acquire()
    try:
        with ExperimentTracker(store) as tracker, pytest.raises(LockTimeoutError) as caught:
            tracker.log_run(metrics={"accuracy": 0.5})
    finally:
        holder._release()
        holder.close()
    assert caught.value.timeout == 0.1


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan")])
def test_an_infinite_or_non_positive_lock_timeout_is_refused(store: Path, bad: float) -> None:
    with pytest.raises(ValueError, match="lock_timeout"):
        ExperimentTracker(store, lock_timeout=bad)


def test_a_lock_that_cannot_be_taken_is_a_storage_error_not_a_hang(store: Path) -> None:
    class BrokenLock(FileSystem):
        def try_lock(self, fd: int) -> bool:
            raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    previous = install(BrokenLock())
    try:
        with ExperimentTracker(store) as tracker, pytest.raises(StorageError) as caught:
            tracker.log_run(metrics={"accuracy": 0.5})
    finally:
        install(previous)
    assert caught.value.errno == errno.ENOLCK
    assert caught.value.filename == str(store / "runs.jsonl.lock")


def test_lock_contention_benchmark_runs_in_quick_mode() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "lock_contention.py"), "--quick"],
        capture_output=True, text=True, timeout=300, check=False,  # timeout: a hang guard only
    )
    assert done.returncode == 0, done.stderr
    assert "p99" in done.stdout
    assert "all answers agree" in done.stdout
