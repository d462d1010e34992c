"""Lock waits under contention: p50/p99/max time to take the store lock with 8 writer processes.

A baseline, not a gate.  Each case spawns ``--procs`` writers released together by a start
barrier; every writer appends ``--appends`` pre-encoded ~200-byte runs, timing each lock
acquisition (from the first attempt to holding the lock).  The cases:

* ``exptrack``: ``Journal.append`` as ``log_run`` uses it (a few ``sched_yield`` retries, then
  sleeps growing from 20 us to 2 ms), flush-only and durable (``fsync`` after the unlock);
* ``flock blocking (limit)``: a blocking ``flock`` -- the kernel queues the waiters and wakes
  one at each unlock, the best a lock on a local file can do; it has no timeout, which is why
  exptrack polls;
* ``filelock FileLock``: the ``filelock`` package's default (reopen per acquisition, 50 ms
  poll), with fewer appends because it is slow under contention.

Afterwards the log of every case is read back: each case must hold exactly one valid line per
append and no corrupt line ("correct" column); the script says whether all answers agree.

    python benchmarks/lock_contention.py              # 8 writers x 2000 appends
    python benchmarks/lock_contention.py --quick      # 8 writers x 100 appends, seconds
"""

from __future__ import annotations

import argparse
import fcntl
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _common import environment_line, print_table

from exptrack.store import codec
from exptrack.store.journal import Journal
from exptrack.store.record import build_run
from exptrack.store.scan import CorruptLine, LogScan

CASES = ("exptrack", "exptrack durable", "flock blocking (limit)", "filelock FileLock")
FILELOCK_APPENDS = 200  # 50 ms polls: more would take minutes


class _TimedJournal(Journal):
    """The real journal, with every lock acquisition timed."""

    waits: list[float]

    def _acquire(self, timeout: float | None = None) -> None:
        start = time.perf_counter()
        super()._acquire(timeout)
        self.waits.append(time.perf_counter() - start)


def _lines(worker: int, count: int) -> list[bytes]:
    return [
        codec.encode(build_run(params={"worker": worker, "seq": i, "pad": "p" * 40}, metrics={"loss": i / 7}))
        for i in range(count)
    ]


def _append_all(case: str, path: str, lines: list[bytes]) -> list[float]:
    if case.startswith("exptrack"):
        journal = _TimedJournal(path, durable=case.endswith("durable"), lock_timeout=60)
        journal.waits = []
        for line in lines:
            journal.append((line,))
        journal.close()
        return journal.waits
    waits: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if case.startswith("flock"):
            lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            for line in lines:
                start = time.perf_counter()
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                waits.append(time.perf_counter() - start)
                os.write(fd, line)
                fcntl.flock(lock_fd, fcntl.LOCK_UN)
            os.close(lock_fd)
        else:
            from filelock import FileLock

            lock = FileLock(path + ".flock")
            for line in lines:
                start = time.perf_counter()
                lock.acquire()
                waits.append(time.perf_counter() - start)
                os.write(fd, line)
                lock.release()
    finally:
        os.close(fd)
    return waits


def _worker(case: str, path: str, worker: int, count: int, barrier: Any, conn: Connection) -> None:
    try:
        lines = _lines(worker, count)  # encoded before the barrier: only the appends are timed
        barrier.wait(timeout=120)  # timeout: a hang guard
        start = time.perf_counter()
        waits = _append_all(case, path, lines)
        conn.send(("ok", waits, time.perf_counter() - start))
    except BaseException:  # every failure reaches the parent
        conn.send(("error", traceback.format_exc(), 0.0))
    finally:
        conn.close()


def run_case(case: str, directory: Path, procs: int, count: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    path = str(directory / f"{case.split(maxsplit=1)[0]}-{'d' if 'durable' in case else 'f'}.jsonl")
    barrier = ctx.Barrier(procs)
    pipes = [ctx.Pipe(duplex=False) for _ in range(procs)]
    workers = [
        ctx.Process(target=_worker, args=(case, path, i, count, barrier, send), daemon=True)
        for i, (_, send) in enumerate(pipes)
    ]
    waits: list[float] = []
    elapsed = 0.0
    errors: list[str] = []
    try:
        for process in workers:
            process.start()
        for (receive, send), process in zip(pipes, workers):
            send.close()
            if not receive.poll(600):  # hang guard
                errors.append(f"worker {process.pid} sent nothing")
                continue
            status, payload, seconds = receive.recv()
            if status == "ok":
                waits.extend(payload)
                elapsed = max(elapsed, seconds)
            else:
                errors.append(payload)
    finally:
        for process in workers:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
    if errors:
        raise RuntimeError(f"{case}: a worker failed:\n" + "\n".join(errors))
    valid, corrupt, ids = 0, 0, set()
    for item in LogScan(path, final=True):
        if isinstance(item, CorruptLine):
            corrupt += 1
        else:
            valid += 1
            ids.add(item.run_id)
    correct = valid == len(ids) == procs * count and corrupt == 0
    waits.sort()
    return {
        "case": case,
        "appends": len(waits),
        "waited": sum(1 for w in waits if w > 50e-6) / len(waits),
        "p50": _quantile(waits, 0.50),
        "p90": _quantile(waits, 0.90),
        "p99": _quantile(waits, 0.99),
        "max": waits[-1],
        "rate": len(waits) / elapsed if elapsed else 0.0,
        "correct": correct,
    }


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of an ascending list."""
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", type=int, default=8, help="writer processes (default 8)")
    parser.add_argument("--appends", type=int, default=2000, help="appends per writer (default 2000)")
    parser.add_argument("--quick", action="store_true", help="100 appends per writer: a smoke run")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of: " + ", ".join(CASES))
    args = parser.parse_args(argv)
    count = 100 if args.quick else args.appends
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    directory = Path(tempfile.mkdtemp(prefix="exptrack-lock-"))
    try:
        print(environment_line(directory))
        print(f"{args.procs} writer processes; ~200-byte records; wait = first lock attempt to holding the lock")
        results = []
        for case in cases:
            n = min(count, FILELOCK_APPENDS // (5 if args.quick else 1)) if case.startswith("filelock") else count
            results.append(run_case(case, directory, args.procs, n))
        print_table(
            ["case", "appends", "waited", "p50 ms", "p90 ms", "p99 ms", "max ms", "appends/s", "correct"],
            [
                [r["case"], r["appends"], f"{r['waited']:.0%}", r["p50"] * 1e3, r["p90"] * 1e3, r["p99"] * 1e3,
                 r["max"] * 1e3, r["rate"], "yes" if r["correct"] else "NO"]
                for r in results
            ],
            title="lock wait per append",
        )
        ok = all(r["correct"] for r in results)
        print("\nall answers agree: every case stored each append exactly once" if ok else "\nANSWERS DISAGREE")
        return 0 if ok else 1
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
