"""Listing latency: ``runs -n 20``, ``runs --sort X -n 5`` and the columns of a 100,000-param run.

A baseline, not a gate.  For each history size (``scripts/generate_history.py``, ~690 bytes a
run) with a warm index, the script times, median [min-max] over ``--reps`` (>= 5) repetitions:

* ``recent_runs(20)`` through the public API (a new tracker per call, as a CLI invocation makes),
  and ``exptrack runs -n 20`` as a process (Python's start-up included; ``exptrack --version``
  is that floor);
* the way listing worked before: a forward pass over the whole log keeping the last 20 (deque);
* the raw limit, ``tail -n 20`` (coreutils reads the file backwards too);
* ``runs --sort "metrics.accuracy desc" -n 5`` (a heap of 5 over the streamed runs) against the
  full sort it replaces, and DuckDB ``ORDER BY ... LIMIT 5`` on the file, with the peak RSS of
  a fresh process for each;
* the columns of one run with 100,000 params (``run_columns``) against ``dict.fromkeys`` of its
  names (the limit) and the quadratic list scan used before (at 10,000 params: 100,000 take
  minutes).

Every answer is checked: the same 20 run ids from every reader, the same sorted 5, the same
column count, before the table is printed.

    python benchmarks/listing.py                   # 100k and 1M runs (~1.3 GB of logs, minutes)
    python benchmarks/listing.py --quick           # 2k and 10k runs, seconds
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from _common import ROOT, environment_line, peak_rss_mb, print_table, summarize, timed

sys.path.insert(0, str(ROOT / "scripts"))

from generate_history import generate

from exptrack import ExperimentTracker, Run
from exptrack.query.output import run_columns
from exptrack.query.sort import first_sorted, parse_sort, sort_records

SORT = "metrics.accuracy desc"


def recent_api(store: Path) -> list[str]:
    with ExperimentTracker(store, durable=False) as tracker:
        return [run.run_id for run in tracker.recent_runs(20)]


def recent_cli(store: Path) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "exptrack", "--store", str(store), "runs", "-n", "20", "--csv",
                           "-c", "run_id"], capture_output=True, text=True, check=True, env=_env())
    return done.stdout.split()[1:]


def startup_floor() -> list[str]:
    subprocess.run([sys.executable, "-m", "exptrack", "--version"], capture_output=True, check=True, env=_env())
    return []


def forward_deque(store: Path) -> list[str]:
    """How ``runs -n 20`` worked before: every run decoded, the last 20 kept."""
    with ExperimentTracker(store, durable=False) as tracker:
        return [run.run_id for run in collections.deque(tracker.runs(), maxlen=20)]


def tail_limit(store: Path) -> list[str]:
    done = subprocess.run(["tail", "-n", "20", str(store / "runs.jsonl")], capture_output=True, check=True)
    return [json.loads(line)["run_id"] for line in done.stdout.splitlines()]


def sorted_heap(store: Path) -> list[str]:
    with ExperimentTracker(store, durable=False) as tracker:
        return [run.run_id for run in first_sorted(tracker.runs(), parse_sort(SORT), 5)]


def sorted_full(store: Path) -> list[str]:
    """How ``runs --sort X -n 5`` worked before: every run held, all sorted."""
    with ExperimentTracker(store, durable=False) as tracker:
        return [run.run_id for run in sort_records(tracker.runs(), parse_sort(SORT))[:5]]


def sorted_duckdb(store: Path) -> list[str]:
    import duckdb

    con = duckdb.connect()
    try:
        rows = con.execute(
            "SELECT run_id FROM read_json_auto(?) ORDER BY metrics.accuracy DESC NULLS LAST LIMIT 5",
            [str(store / "runs.jsonl")],
        ).fetchall()
    finally:
        con.close()
    return [row[0] for row in rows]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _in_child(fn: Callable[[Path], list[str]], store: Path, conn: Connection) -> None:
    answer = fn(store)
    conn.send((answer, peak_rss_mb()))
    conn.close()


def peak_of(fn: Callable[[Path], list[str]], store: Path) -> tuple[list[str], float]:
    """The answer and the peak RSS (MiB) of ``fn`` run in a fresh process."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_in_child, args=(fn, store, child))
    proc.start()
    child.close()
    try:
        answer, peak = parent.recv()
    finally:
        proc.join()
    return answer, peak


def old_run_columns(runs: list[Run], max_params: int = 8) -> list[str]:
    """The column listing before: a ``not in`` scan of a list per name (quadratic)."""
    metric_names: list[str] = []
    param_names: list[str] = []
    for run in runs:
        for name in run.metrics:
            if name not in metric_names:
                metric_names.append(name)
        for name in run.params:
            if name not in param_names:
                param_names.append(name)
    return ["run_id", "timestamp", "status", *(f"metrics.{m}" for m in metric_names),
            *(f"params.{p}" for p in param_names[:max_params])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2k and 10k runs, 5 reps (seconds)")
    parser.add_argument("--sizes", default=None, help="comma-separated run counts (default 100000,1000000)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--workdir", default=None, help="keep generated histories here and reuse them")
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or ("2000,10000" if args.quick else "100000,1000000")).split(",")]
    reps = max(args.reps, 5)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="exptrack-listing-"))
    work.mkdir(parents=True, exist_ok=True)
    print(environment_line(work))
    print(f"{reps} repetitions per measurement; sizes {sizes}")
    have_duckdb = importlib.util.find_spec("duckdb") is not None
    have_tail = shutil.which("tail") is not None
    rows: list[list[object]] = []
    problems: list[str] = []

    def measure(label: str, n: int, fn: Callable[[], list[str]], want: list[str] | None,
                count: int = reps, note: str = "") -> list[str]:
        answer: list[str] = []

        def call() -> None:
            nonlocal answer
            answer = fn()

        median, low, high = summarize([t * 1000 for t in timed(call, count)])
        if want is not None and answer != want:
            problems.append(f"{n:,} runs: {label} disagrees: {answer[:3]}... != {want[:3]}...")
        rows.append([f"{n:,} runs" if n else "-", label, count, median, low, high, note])
        return answer

    try:
        for n in sizes:
            store = work / f"store-{n}"
            if not (store / "runs.jsonl").exists():
                start = time.perf_counter()
                generate(store, n, seed=5)
                print(f"generated {n:,} runs in {time.perf_counter() - start:.1f} s")
            want = forward_deque(store)  # also builds the index: every measurement below is warm
            measure("runs -n 20: recent_runs (API)", n, lambda s=store: recent_api(s), want)
            measure("runs -n 20: exptrack runs (process)", n, lambda s=store: recent_cli(s), want)
            measure("  python + exptrack start-up floor", n, startup_floor, None)
            measure("  before: forward pass + deque", n, lambda s=store: forward_deque(s), want)
            if have_tail:
                measure("  raw limit: tail -n 20", n, lambda s=store: tail_limit(s), want)
            best, full_peak = peak_of(sorted_full, store)
            heap_answer, heap_peak = peak_of(sorted_heap, store)
            if heap_answer != best:
                problems.append(f"{n:,} runs: the heap's top 5 differ from the full sort's")
            measure("--sort -n 5: heap of 5", n, lambda s=store: sorted_heap(s), best,
                    note=f"peak {heap_peak:.0f} MiB")
            measure("  before: full sort", n, lambda s=store: sorted_full(s), best, note=f"peak {full_peak:.0f} MiB")
            if have_duckdb:
                measure("  duckdb ORDER BY LIMIT 5", n, lambda s=store: sorted_duckdb(s), best,
                        note=f"peak {peak_of(sorted_duckdb, store)[1]:.0f} MiB")
            if not args.workdir:
                shutil.rmtree(store, ignore_errors=True)
        wide = Run(run_id="wide", timestamp="t", params={f"p{i}": i for i in range(100_000)}, metrics={"m": 1.0})
        narrower = Run(run_id="w", timestamp="t", params={f"p{i}": i for i in range(10_000)}, metrics={"m": 1.0})
        count = 4 + 1 + 100_000  # run_id, name, timestamp, status; the metric; the params
        measure("columns of a 100,000-param run", 0, lambda: [str(len(run_columns([wide, wide])))], [str(count)])
        measure("  limit: dict.fromkeys of the names", 0, lambda: [str(len(dict.fromkeys(wide.params)) + 5)],
                [str(count)])
        measure("  before, at 10,000 params (quadratic)", 0, lambda: [str(len(old_run_columns([narrower] * 2)))],
                None, note="100,000 params: ~100x this")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    if problems:
        print("\nANSWERS DISAGREE:")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print_table(["history", "listing", "reps", "median ms", "min ms", "max ms", "note"], rows,
                title="Listing latency, warm index (answers checked: every reader gives the same runs)")
    print("answers agree: yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
