"""SIGKILL loop with a Jepsen-style check of the acknowledged set.

Eight writer processes append runs of 100 B to 2 MiB (half of them durable) while the parent
kills one at a random moment -- or, every other time, right while it is inside ``write()`` --
and starts a replacement.  A writer notes each attempt in its own side file *before* calling
``log_run`` and the returned run id *after* it returned: a line the side file holds is a claim
the store must honour.  At the end:

* lost acknowledged runs = 0: every run a writer saw acknowledged is in the log, intact;
* unexpected runs = 0: every valid record was attempted by some writer;
* duplicates = 0: no attempt and no run id appears twice;
* corrupt lines <= kills that landed inside a write (each can leave one torn fragment);
* after each kill the lock is free again at once: the kernel drops a dead holder's ``flock``.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import shutil
import signal
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from exptrack import CorruptLine, ExperimentTracker, Run
from exptrack.store.fsio import FileSystem, install
from exptrack.store.journal import Journal
from exptrack.store.logs import detach_store_log

WRITERS = 8
MIN_SIZE, MAX_SIZE = 100, 2 * 1024 * 1024
THROUGHPUT = 4 * 1024 * 1024  # bytes/s per writer: keeps the log to a few hundred MB in a stress run
HANG_GUARD = 120.0  # seconds; only to turn a deadlock into a failure, never a speed assertion


def payload(attempt: str, size: int) -> str:
    """The deterministic blob of an attempt, so a reader can tell an intact record."""
    seed = hashlib.sha256(attempt.encode()).hexdigest()
    return (seed * (size // len(seed) + 1))[:size]


class FlagWrites(FileSystem):
    """Raises a shared flag around every record ``write()``, so the parent can aim a kill at it."""

    def __init__(self, flags: Any, slot: int) -> None:
        self.flags = flags
        self.slot = slot

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if len(data) <= 1:  # the torn-tail repair newline
            return super().write(fd, data)
        self.flags[self.slot] = 1
        try:
            return super().write(fd, data)
        finally:
            self.flags[self.slot] = 0


def writer(store: str, slot: int, generation: int, side: str, barrier: Any, shared: dict[str, Any]) -> None:
    """One writer process: log runs until told to stop, noting attempts and acknowledgements."""
    note = os.open(side, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        install(FlagWrites(shared["in_write"], slot))
        rng = random.Random(f"{slot}-{generation}")
        tracker = ExperimentTracker(store, durable=slot % 2 == 0, lock_timeout=60)
        if barrier is not None:
            barrier.wait(timeout=HANG_GUARD)
        seq = 0
        while not shared["stop"].value:
            size = int(MIN_SIZE * (MAX_SIZE / MIN_SIZE) ** rng.random())
            attempt = f"{slot}-{generation}-{seq}"
            os.write(note, f"A {attempt}\n".encode())
            run = tracker.log_run(params={"attempt": attempt, "blob": payload(attempt, size)},
                                  metrics={"size": size})
            os.write(note, f"K {attempt} {run.run_id}\n".encode())
            shared["progress"][slot] += 1
            seq += 1
            time.sleep(size / THROUGHPUT)
        os.write(note, b"D\n")
    except BaseException:
        os.write(note, ("E " + traceback.format_exc().replace("\n", " | ") + "\n").encode())
        raise
    finally:
        os.close(note)


@dataclass
class Outcome:
    kills: int = 0
    kills_in_write: int = 0
    lock_reacquire: list[float] = field(default_factory=list)
    attempted: set[str] = field(default_factory=set)
    acked: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    corrupt: list[CorruptLine] = field(default_factory=list)


def read_side_files(directory: Path, outcome: Outcome) -> None:
    for side in sorted(directory.glob("side-*.log")):
        for raw in side.read_bytes().split(b"\n")[:-1]:  # an unterminated last note was never made
            kind, _, rest = raw.decode().partition(" ")
            if kind == "A":
                outcome.attempted.add(rest)
            elif kind == "K":
                attempt, run_id = rest.split(" ")
                outcome.acked[attempt] = run_id
            elif kind == "E":
                outcome.errors.append(f"{side.name}: {rest}")


def kill_loop(tmp_path: Path, kills: int, seed: int) -> Outcome:
    ctx = multiprocessing.get_context("spawn")
    store = tmp_path / "store"
    store.mkdir()
    shared = {
        "stop": ctx.RawValue("i", 0),
        "progress": ctx.RawArray("i", WRITERS),
        "in_write": ctx.RawArray("i", WRITERS),
    }
    barrier = ctx.Barrier(WRITERS + 1)
    rng = random.Random(seed)
    outcome = Outcome()
    generations = [0] * WRITERS
    everyone: list[Any] = []

    def start(slot: int, start_barrier: Any) -> Any:
        side = str(tmp_path / f"side-{slot}-{generations[slot]}.log")
        process = ctx.Process(
            target=writer, args=(str(store), slot, generations[slot], side, start_barrier, shared), daemon=True
        )
        process.start()
        everyone.append(process)
        return process

    prober = Journal(str(store / "runs.jsonl"), durable=False, lock_timeout=5)
    try:
        procs = [start(slot, barrier) for slot in range(WRITERS)]
        barrier.wait(timeout=HANG_GUARD)
        deadline = time.monotonic() + HANG_GUARD * 4
        while outcome.kills < kills:
            assert time.monotonic() < deadline, "hang guard: the kill loop made no progress"
            slot = rng.randrange(WRITERS)
            victim = procs[slot]
            if victim.exitcode is not None:  # died on its own: fail now, not at the hang guard
                read_side_files(tmp_path, outcome)
                pytest.fail(f"writer {slot} exited with {victim.exitcode} before any kill: {outcome.errors}")
            if shared["progress"][slot] < 1:  # not writing yet (still starting): pick another
                time.sleep(0.001)
                continue
            if outcome.kills % 2:  # aim: kill while the record's write() is in progress
                aim_until = time.monotonic() + 2.0
                while not shared["in_write"][slot] and time.monotonic() < aim_until:
                    pass
            else:
                time.sleep(rng.uniform(0, 0.02))
            os.kill(victim.pid, signal.SIGKILL)
            victim.join(timeout=HANG_GUARD)
            assert victim.exitcode == -signal.SIGKILL, f"writer {slot} ended with {victim.exitcode} before the kill"
            outcome.kills += 1
            outcome.kills_in_write += shared["in_write"][slot]
            shared["in_write"][slot] = 0
            # the dead writer may have held the lock: the kernel released it with its descriptors
            prober._ensure_open()
            began = time.monotonic()
            prober._acquire()
            outcome.lock_reacquire.append(time.monotonic() - began)
            prober._release()
            shared["progress"][slot] = 0
            generations[slot] += 1
            procs[slot] = start(slot, None)
        shared["stop"].value = 1
        for process in procs:
            process.join(timeout=HANG_GUARD)
            assert process.exitcode == 0, f"writer {process.pid} ended with {process.exitcode}"
    finally:
        shared["stop"].value = 1
        prober.close()
        for process in everyone:
            if process.is_alive():
                process.kill()
            process.join(timeout=HANG_GUARD)
            process.close()
    read_side_files(tmp_path, outcome)
    with ExperimentTracker(store) as tracker:
        for item in tracker.scan(final=True):
            (outcome.runs if isinstance(item, Run) else outcome.corrupt).append(item)  # type: ignore[arg-type]
    detach_store_log(str(store))
    return outcome


def check_invariants(outcome: Outcome) -> dict[str, int | float]:
    assert outcome.errors == []
    by_attempt: dict[str, Run] = {}
    duplicates = 0
    for run in outcome.runs:
        attempt = run.params["attempt"]
        duplicates += attempt in by_attempt
        by_attempt[attempt] = run
        size = int(run.metrics["size"])
        assert run.params["blob"] == payload(attempt, size), f"record {attempt} altered"
    unexpected = sorted(set(by_attempt) - outcome.attempted)
    lost = sorted(a for a, run_id in outcome.acked.items() if a not in by_attempt or by_attempt[a].run_id != run_id)
    ids = [run.run_id for run in outcome.runs]
    figures = {
        "kills": outcome.kills,
        "kills_in_write": outcome.kills_in_write,
        "acknowledged": len(outcome.acked),
        "records": len(outcome.runs),
        "lost": len(lost),
        "unexpected": len(unexpected),
        "duplicates": duplicates + len(ids) - len(set(ids)),
        "corrupt": len(outcome.corrupt),
        "lock_reacquire_max_ms": max(outcome.lock_reacquire) * 1e3,
    }
    print(f"\nSIGKILL loop: {figures}")  # shown with -s; the report quotes it
    assert lost == [], f"acknowledged runs lost: {lost[:5]}"
    assert unexpected == [], f"records nobody attempted: {unexpected[:5]}"
    assert figures["duplicates"] == 0
    assert len(outcome.corrupt) <= outcome.kills_in_write, outcome.corrupt
    assert all(c.reason.startswith(("invalid JSON", "torn tail")) for c in outcome.corrupt), outcome.corrupt
    assert max(outcome.lock_reacquire) < 1.0  # generous: the kernel frees a dead holder's lock at once
    assert len(outcome.acked) > outcome.kills  # the writers did make progress between kills
    return figures


@pytest.fixture
def loop_dir(tmp_path: Path) -> Iterator[Path]:
    """The loop's directory, removed afterwards: a stress run leaves hundreds of MB."""
    try:
        yield tmp_path
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_sigkilled_writers_never_lose_an_acknowledged_run(loop_dir: Path) -> None:
    check_invariants(kill_loop(loop_dir, kills=20, seed=1))


@pytest.mark.stress
def test_sigkill_stress_200_kills(loop_dir: Path) -> None:
    check_invariants(kill_loop(loop_dir, kills=200, seed=2))
