"""Locks under ordinary use: forked workers that never write, threads sharing one tracker, and
readers killed while their scan helpers run (issue 9, items 1-3)."""

from __future__ import annotations

import contextlib
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from exptrack import ExperimentTracker
from exptrack.errors import LockTimeoutError

HANG_GUARD = 60.0  # seconds; only turns a hang into a failure, never a speed assertion
EXE = Path(sys.executable).parent / "exptrack"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    env.update(extra)
    return env


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (a dead child nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# -- item 1: a forked child never keeps the parent's lock --------------------------------------

# The parent logs once (its descriptors are open), forks a child that only sleeps (a DataLoader
# worker), then is stopped inside the write() of its next append, holding the lock.
_PARENT = textwrap.dedent(
    """
    import os, sys, time
    from exptrack import ExperimentTracker
    from exptrack.store.fsio import FileSystem, install

    class StopInWrite(FileSystem):
        def write(self, fd, data):
            if len(data) > 1:
                sys.stdout.write("in-write\\n"); sys.stdout.flush()
                time.sleep(3600)
            return super().write(fd, data)

    tracker = ExperimentTracker(sys.argv[1], durable=False)
    tracker.log_run(metrics={"acc": 0.1})
    child = os.fork()
    if child == 0:
        time.sleep(3600)
        os._exit(0)
    sys.stdout.write(f"child {child}\\n"); sys.stdout.flush()
    install(StopInWrite())
    tracker.log_run(metrics={"acc": 0.2})
    """
)


def test_forked_child_does_not_keep_a_killed_parents_lock(store: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", _PARENT, str(store)], stdout=subprocess.PIPE, text=True,
                          env=_env()) as parent:
        _kill_parent_in_append_then_log(parent, store)
    runs = list(ExperimentTracker(store).runs())
    assert [run.metrics["acc"] for run in runs] == [0.1, 0.3]


def _kill_parent_in_append_then_log(parent: subprocess.Popen[str], store: Path) -> None:
    child_pid = -1
    try:
        assert parent.stdout is not None
        child_line = parent.stdout.readline()
        assert child_line.startswith("child "), child_line
        child_pid = int(child_line.split()[1])
        assert parent.stdout.readline() == "in-write\n"
        parent.kill()  # SIGKILL while holding the lock inside the append
        parent.wait(timeout=HANG_GUARD)
        assert _alive(child_pid)  # the sleeping worker outlives its parent
        done = subprocess.run(
            [str(EXE), "--store", str(store), "log", "-m", "acc=0.3", "--no-fsync"], check=False, capture_output=True,
            text=True, env=_env(EXPTRACK_LOCK_TIMEOUT="10"), timeout=HANG_GUARD,
        )
        assert done.returncode == 0, done.stderr
        assert _alive(child_pid)  # the writer did not wait for the child to go
    finally:
        parent.kill()
        parent.wait()
        if child_pid > 0:
            _kill_quietly(child_pid)


def test_forked_child_holds_no_descriptor_of_the_lock_file(store: Path) -> None:
    tracker = ExperimentTracker(store, durable=False)
    tracker.log_run(metrics={"acc": 0.1})
    lock_file = os.path.realpath(store / "runs.jsonl.lock")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read)
        held = [fd for fd in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{fd}") == lock_file]
        os.write(write, str(len(held)).encode())
        os._exit(0)
    os.close(write)
    try:
        answer = os.read(read, 16)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert answer == b"0"
    tracker.log_run(metrics={"acc": 0.2})  # the parent's own descriptors still work
    assert len(list(tracker.runs())) == 2


# -- item 2: one tracker shared by threads ------------------------------------------------------


def _threads_log(store: Path, threads: int, runs: int) -> int:
    # a deadlock shows as LockTimeoutError after 10 s (the race leaves one locked copy behind)
    tracker = ExperimentTracker(store, durable=False, lock_timeout=10)
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(timeout=HANG_GUARD)
            for i in range(runs):
                tracker.log_run(metrics={"i": i})
        except BaseException as exc:  # collected: a thread's failure must fail the test
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=HANG_GUARD)
    assert not any(worker.is_alive() for worker in workers), "a writer thread hung"
    assert errors == []
    tracker.close()
    return sum(1 for _ in ExperimentTracker(store).runs())


def test_fresh_tracker_shared_by_threads_logs_every_run(tmp_path: Path) -> None:
    for repetition in range(30):
        assert _threads_log(tmp_path / f"s{repetition}", 8, 100) == 800


@pytest.mark.stress
def test_fresh_tracker_shared_by_threads_logs_every_run_stress(tmp_path: Path) -> None:
    started = time.monotonic()
    for repetition in range(50):
        assert _threads_log(tmp_path / f"s{repetition}", 8, 2000) == 16000
    print(f"8 threads x 2000 runs x 50 repetitions: {time.monotonic() - started:.1f} s")


def test_active_run_shared_by_threads_keeps_every_point(tracker: ExperimentTracker) -> None:
    with tracker.start_run(capture=False) as run:
        barrier = threading.Barrier(8)

        def work(t: int) -> None:
            barrier.wait(timeout=HANG_GUARD)
            for step in range(200):
                run.log_metric(f"m{t}", float(step), step=step)
                run.log_param(f"p{t}", step)
                run.set_tag(f"t{t}")

        workers = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=HANG_GUARD)
    record = run.record
    assert record is not None
    assert {name: record.extra["history"][name]["count"] for name in record.extra["history"]} == {
        f"m{t}": 200 for t in range(8)}
    assert dict(record.params) == {f"p{t}": 199 for t in range(8)}
    points = tracker.history(record.run_id)
    assert len(points) == 1600


def test_thread_waiting_for_the_lock_times_out_with_lock_timeout_error(store: Path) -> None:
    tracker = ExperimentTracker(store, durable=False, lock_timeout=0.2)
    tracker.log_run(metrics={"acc": 0.1})
    tracker._journal._thread_lock.acquire()  # another thread of this process is mid-append
    try:
        with pytest.raises(LockTimeoutError, match="another thread"):
            tracker.log_run(metrics={"acc": 0.2})
    finally:
        tracker._journal._thread_lock.release()
    tracker.log_run(metrics={"acc": 0.3})


# -- item 3: a killed reader leaves no helper behind --------------------------------------------

_READER = textwrap.dedent(
    """
    import sys
    from exptrack.store import parallel
    parallel.PARALLEL_MIN_BYTES = 1 << 16
    sys.stdout.write("go\\n"); sys.stdout.flush()
    while True:
        parallel.scan_parallel(sys.argv[1], 0, int(sys.argv[2]), workers=2)
    """
)


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{task}/children") as handle:
            found.update(int(p) for p in handle.read().split())
    return found


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("big") / "store"
    tracker = ExperimentTracker(store, durable=False)
    blob = "x" * 300
    for start in range(0, 40_000, 2000):
        tracker.log_runs({"params": {"blob": blob, "i": i}, "metrics": {"acc": i / 40_000}}
                         for i in range(start, start + 2000))
    tracker.close()
    return store / "runs.jsonl"


def _kill_reader_at_random(log: Path, rng: random.Random) -> set[int]:
    helpers: set[int] = set()
    with subprocess.Popen([sys.executable, "-c", _READER, str(log), str(log.stat().st_size)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()) as reader:
        _watch_then_kill(reader, rng, helpers)
        # The caller's stderr reaches EOF only when no helper holds it any more (`timeout 1
        # exptrack best` used to leave one stuck there), and a helper dies without a traceback.
        assert reader.stderr is not None
        stderr = _read_until_eof(reader.stderr.fileno(), HANG_GUARD)
        assert b"Traceback" not in stderr, stderr.decode(errors="replace")
    return helpers


def _read_until_eof(fd: int, guard: float) -> bytes:
    data = b""
    deadline = time.monotonic() + guard
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"a helper still holds the reader's stderr after {guard} s")


def _watch_then_kill(reader: subprocess.Popen[bytes], rng: random.Random, helpers: set[int]) -> None:
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline() == b"go\n"
        deadline = time.monotonic() + rng.uniform(0.05, 1.0)
        while time.monotonic() < deadline or not helpers:
            helpers |= _children(reader.pid)
            if time.monotonic() > deadline + HANG_GUARD:
                break
        reader.kill()
        reader.wait(timeout=HANG_GUARD)
    finally:
        reader.kill()
        reader.wait()


def _survivors(helpers: set[int]) -> set[int]:
    time.sleep(2.0)  # the bound: no helper is alive 2 s after its reader died
    alive = {pid for pid in helpers if _alive(pid)}
    for pid in alive:
        _kill_quietly(pid)
    return alive


def test_killed_reader_leaves_no_scan_helper(big_log: Path) -> None:
    rng = random.Random(9)
    helpers: set[int] = set()
    for _ in range(4):
        helpers |= _kill_reader_at_random(big_log, rng)
    assert helpers, "the reader never forked a helper: the test would prove nothing"
    assert _survivors(helpers) == set()


@pytest.mark.stress
def test_killed_reader_leaves_no_scan_helper_stress(big_log: Path) -> None:
    rng = random.Random(99)
    helpers: set[int] = set()
    for _ in range(200):
        helpers |= _kill_reader_at_random(big_log, rng)
    print(f"{len(helpers)} helpers seen across 200 kills")
    assert _survivors(helpers) == set()
