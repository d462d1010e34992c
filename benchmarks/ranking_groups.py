"""Warm best / top-10 / summary by status scope and by number of index groups.

A baseline, not a gate.  The index keeps its reducers per group (experiment, status) and merges
the groups a query's scope names, so a status-scoped answer stays an index answer.  This script
measures what the merge costs: warm queries (index built) with ``status="finished"`` (the
default), ``"any"`` and ``["failed", "killed"]``, on a store of N runs in one experiment (3
groups: finished / failed / killed) and on one spread over 50 experiments and 4 statuses (200
groups).  The raw limit in the same run is one ``os.stat`` + open + read of the index file, which
every warm answer pays.  Every answer is checked against an index-free scan of the log before
the table is printed.

    python benchmarks/ranking_groups.py                  # 1,000,000 runs
    python benchmarks/ranking_groups.py --quick          # 5,000 runs, one repetition
    python benchmarks/ranking_groups.py --runs 200000 --reps 7
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, environment_line, load_average, print_table, summarize

sys.path.insert(0, str(ROOT))

from exptrack import ExperimentTracker
from exptrack.query.ranking import in_scope, status_scope, top_runs
from exptrack.query.ranking import summarize as summarize_runs
from exptrack.store.logs import detach_store_log

SCOPES: tuple[tuple[str, Any], ...] = (("finished", "finished"), ("any", None), ("failed+killed", ["failed", "killed"]))
STATUSES = ("finished", "failed", "killed", "pruned")


def fill(store: Path, runs: int, experiments: int, seed: int = 7) -> None:
    """``runs`` runs in batches of 5,000 (one lock each), statuses and experiments mixed."""
    rng = random.Random(seed)
    tracker = ExperimentTracker(store, durable=False)
    try:
        for first in range(0, runs, 5000):
            items = []
            for _ in range(first, min(first + 5000, runs)):
                status = rng.choices(STATUSES if experiments > 1 else STATUSES[:3], weights=[85, 7, 3, 5][
                    : 4 if experiments > 1 else 3])[0]
                extra = {"experiment": f"exp-{rng.randrange(experiments)}"} if experiments > 1 else None
                items.append({"params": {"lr": rng.random(), "model": rng.choice(["rf", "xgb", "svm"])},
                              "metrics": {"accuracy": rng.random(), "val_loss": rng.random() * 3},
                              "status": status, "extra": extra})
            tracker.log_runs(items)
    finally:
        tracker.close()


def answer(store: Path, query: str, status: Any) -> Any:
    tracker = ExperimentTracker(store, durable=False)  # a new object per call, as a CLI invocation makes
    try:
        if query == "best":
            return tracker.best_run("accuracy", status=status).run_id
        if query == "top10":
            return [run.run_id for run in tracker.top_runs("val_loss", 10, status=status)]
        result = tracker.summary(status=status)
        stats = result["metrics"]["accuracy"]
        return (result["ranked_runs"], stats["count"], stats["min"], stats["max"], stats["best_run_id"])
    finally:
        tracker.close()


def expected(store: Path, query: str, status: Any) -> Any:
    """The same answer without the index: a scan of every run."""
    tracker = ExperimentTracker(store, durable=False)
    try:
        scope = status_scope(status)
        if query == "best":  # streamed: memory stays flat at a million runs
            return top_runs(in_scope(tracker.runs(), scope), "accuracy", 1, "max")[0].run_id
        if query == "top10":
            return [run.run_id for run in top_runs(in_scope(tracker.runs(), scope), "val_loss", 10, "min")]
        groups = summarize_runs(tracker.runs()).groups
        keys = groups.select(statuses=scope)
        stats = groups.stats(keys)["accuracy"]
        best = groups.top("accuracy", "max", 1, keys)
        return (groups.runs(keys), stats.count, stats.min, stats.max, best[0][2] if best else None)
    finally:
        tracker.close()


def timed_ms(fn: Any, reps: int) -> tuple[list[float], list[float]]:
    wall, cpu = [], []
    for _ in range(reps):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 runs, one repetition")
    parser.add_argument("--runs", type=int, default=None, help="runs per store (default 1,000,000)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 5; quick 1)")
    parser.add_argument("--workdir", default=None, help="where the stores go (default a temp dir)")
    args = parser.parse_args()
    runs = args.runs or (5000 if args.quick else 1_000_000)
    reps = args.reps or (1 if args.quick else 5)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="exptrack-groups-"))
    print(environment_line(work))
    print(f"load average: {load_average()}")
    rows = []
    agree = True
    for label, experiments in (("1 experiment, 3 groups", 1), ("50 experiments, 200 groups", 50)):
        store = work / f"groups-{experiments}-{runs}"
        if not (store / "runs.jsonl").exists():
            fill(store, runs, experiments)
        ExperimentTracker(store, durable=False).refresh_index()  # warm: every call below reuses it
        index_file = store / ".index" / "index.json"
        raw_wall, raw_cpu = timed_ms(lambda path=index_file: (os.stat(path), path.read_bytes()), reps)
        rows.append([f"{label}: read index.json (raw limit)", *_cells(raw_wall, raw_cpu), "-"])
        for query in ("best", "top10", "summary"):
            for scope_label, status in SCOPES:
                want = expected(store, query, status)
                got = answer(store, query, status)
                same = want is None or got == want
                agree = agree and same
                wall, cpu = timed_ms(lambda q=query, s=status, st=store: answer(st, q, s), reps)
                rows.append([f"{label}: {query} status={scope_label}", *_cells(wall, cpu),
                             "yes" if same else "NO"])
        detach_store_log(str(store))
    print_table(["query (warm index)", "ms median [min-max]", "CPU ms median", "answer checked"], rows,
                title=f"{runs:,} runs, {reps} repetitions, a new tracker per call")
    print(f"answers agree with an index-free scan: {'yes' if agree else 'NO'}")
    if not agree:
        sys.exit(1)


def _cells(wall: list[float], cpu: list[float]) -> list[str]:
    median, low, high = summarize(wall)
    return [f"{median:.2f} [{low:.2f}-{high:.2f}]", f"{summarize(cpu)[0]:.2f}"]


if __name__ == "__main__":
    main()
