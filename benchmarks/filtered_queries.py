"""Filtered and sorted queries from the columnar index, against DuckDB and NumPy, at 100k and 1M runs.

A baseline, not a gate.  For each history size (``scripts/generate_history.py``, ~740 bytes a
run) the script asks, through the public API with a new ``ExperimentTracker`` per call (as a CLI
invocation makes), median [min-max] over ``--reps`` (>= 5) repetitions:

* the filtered top-10 by accuracy (finished runs, the default status) for two predicates: the
  issue's ``params.model = 'rf' and params.max_depth > 10`` (~6% of runs) and one on a continuous
  param, ``params.model = 'xgb' and params.lr < 0.01`` (~14%);
* in three states: the first query on a store whose index exists but whose columns do not (the
  one-time column build), warm, and after 1,000 runs appended (``log_runs``) before every call;
* the filtered summary, the last 20 matches (``recent_runs(20, where=...)``), every match
  (``list(runs(where=...))``) and the unfiltered ``runs -n 20`` (``recent_runs(20)``);
* once through the installed ``exptrack`` script (a process: interpreter start-up included).

Against, in the same invocation: DuckDB ``read_json`` on the JSONL (schema auto-detected), DuckDB
on a Parquet copy of the same runs (written once, not timed), the same questions over NumPy
arrays already in memory (the machine's limit), reading the file's bytes, and exptrack's own log
path (the columns switched off; at 1M only if ``--budget`` allows).  The "path" column says
whether exptrack answered from the columns or fell back to the log.  Every answer is checked:
the same run ids (top-10, listings), the same counts, min/max/mean/std to 1e-9 (summaries); the
script exits 1 on a disagreement.  Peers return run ids only, exptrack whole runs.

    python benchmarks/filtered_queries.py --workdir /var/tmp/fq   # 100k and 1M runs, ~15 min
    python benchmarks/filtered_queries.py --quick                 # 2k and 10k runs, 1 rep, seconds
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from unittest import mock

from _common import (
    ROOT,
    current_rss_mb,
    environment_line,
    generated_log,
    load_average,
    peak_rss_mb,
    print_table,
    read_bytes,
    summarize,
)
from _filtered_peers import (
    METRICS,
    Arrays,
    DuckPeer,
    Filter,
    has_nonfinite,
    jsonl_source,
    parquet_source,
    write_parquet,
)

sys.path.insert(0, str(ROOT / "scripts"))

from generate_history import log_items

import exptrack.query.column_answers
from exptrack import ExperimentTracker
from exptrack.query.reader import StoreReader

FILTERS = (
    Filter("rf, max_depth > 10", "params.model = 'rf' and params.max_depth > 10",
           "params.model = 'rf' AND params.max_depth > 10", "rf", "max_depth", above=10),
    Filter("xgb, lr < 0.01", "params.model = 'xgb' and params.lr < 0.01",
           "params.model = 'xgb' AND params.lr < 0.01", "xgb", "lr", below=0.01),
)
TOP, SUMMARY, LAST, ALL, RECENT = "filtered top-10", "filtered summary", "last 20 matches", "all matches", \
    "runs -n 20 (no filter)"
Question = tuple[str, Filter | None]
QUESTIONS: list[Question] = [
    *((kind, flt) for kind in (TOP, SUMMARY, LAST, ALL) for flt in FILTERS), (RECENT, None)]
LOG_SYSTEM = "exptrack log path (columns off)"
_COLUMN_PATHS = ("_columns_top", "_columns_groups", "_columns_runs")


def label(question: Question) -> str:
    kind, flt = question
    return f"{kind}: {flt.label}" if flt else kind


# -- exptrack ---------------------------------------------------------------------------------------


def exptrack_answer(store: Path, question: Question) -> Any:
    """One question through the public API, on a new tracker (as a CLI invocation makes one)."""
    kind, flt = question
    with ExperimentTracker(store, durable=False) as tracker:
        if kind == RECENT:
            return tuple(run.run_id for run in tracker.recent_runs(20))
        assert flt is not None
        if kind == TOP:
            return tuple(run.run_id for run in tracker.top_runs("accuracy", 10, where=flt.where))
        if kind == LAST:
            return tuple(run.run_id for run in tracker.recent_runs(20, where=flt.where))
        if kind == ALL:
            return tuple(run.run_id for run in tracker.runs(where=flt.where))
        result = tracker.summary(where=flt.where)
    metrics = result["metrics"]
    stats = {m: tuple(metrics[m][k] for k in ("count", "nonfinite", "min", "max", "mean", "std")) if m in metrics
             else None for m in METRICS}
    return (result["total_runs"], tuple(sorted(result["statuses"].items())), stats)


@contextmanager
def log_only() -> Iterator[None]:
    """exptrack with the columnar paths switched off: every answer comes from the log."""
    with mock.patch.object(exptrack.query.column_answers, "_numpy", return_value=False):
        yield


def path_taken(store: Path, question: Question) -> str:
    """Whether exptrack answers ``question`` from the columns, or falls back to the log (untimed)."""
    if question[0] == RECENT:
        return "index + tail"
    used: list[bool] = []

    def spy(original: Callable[..., Any]) -> Callable[..., Any]:
        def call(self: StoreReader, *args: Any, **kwargs: Any) -> Any:
            result = original(self, *args, **kwargs)
            used.append(result is not None)
            return result
        return call

    with ExitStack() as stack:
        for name in _COLUMN_PATHS:
            stack.enter_context(mock.patch.object(StoreReader, name, spy(getattr(StoreReader, name))))
        exptrack_answer(store, question)
    return "columns" if used and all(used) else "LOG (fallback)"


def cli_top10(script: str, store: Path, flt: Filter) -> tuple[str, ...]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([script, "--store", str(store), "top", "accuracy", "-k", "10", "-w", flt.where, "--csv",
                           "-c", "run_id"], capture_output=True, text=True, check=True, env=env)
    return tuple(done.stdout.split()[1:])


def reset_columns(store: Path) -> None:
    shutil.rmtree(store / ".index" / "columns", ignore_errors=True)


def disk_mib(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def _rss_probe(conn: Connection, store: str, flt: Filter) -> None:
    """In a fresh process: (RSS after imports, VmHWM, ru_maxrss) around a warm filtered top-10, MiB."""
    with ExperimentTracker(store, durable=False):
        pass  # imports and the log handler are not the query's memory
    baseline = current_rss_mb()
    exptrack_answer(Path(store), (TOP, flt))
    conn.send((baseline, peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    conn.close()


def rss(store: Path, flt: Filter) -> tuple[float, float, float]:
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_rss_probe, args=(send, str(store), flt))
    process.start()
    send.close()
    try:
        result: tuple[float, float, float] = receive.recv()
    finally:
        receive.close()
        process.join()
    return result


# -- measuring and checking -------------------------------------------------------------------------


def measure(fn: Callable[[], Any], reps: int, before: Callable[[], object] | None = None) -> tuple[list[float], Any]:
    """``reps`` timed calls (ms); ``before`` runs untimed before each.  Returns the last answer."""
    times: list[float] = []
    answer: Any = None
    for _ in range(reps):
        if before is not None:
            before()
        start = time.perf_counter()
        answer = fn()
        times.append((time.perf_counter() - start) * 1000)
    return times, answer


def same(a: Any, b: Any) -> bool:
    """Equal ids, or summaries with equal counts and statistics within 1e-9 relative."""
    if not (isinstance(a, tuple) and len(a) == 3 and isinstance(a[2], dict)):
        return bool(a == b)
    if a[0] != b[0] or a[1] != b[1]:
        return False
    for name in METRICS:
        left, right = a[2].get(name), b[2].get(name)
        if left is None or right is None:
            return False
        if tuple(left[:2]) != tuple(int(v) for v in right[:2]):
            return False
        for x, y in zip(left[2:], right[2:]):
            if (x is None) != (y is None) or (x is not None and not math.isclose(x, y, rel_tol=1e-9)):
                return False
    return True


def describe(a: Any, b: Any) -> str:
    text_a, text_b = repr(a), repr(b)
    return f"{text_a[:300]} != {text_b[:300]}"


# -- one history size -------------------------------------------------------------------------------


class Bench:
    """Measurements of one store, gathered into table rows; disagreements into ``problems``."""

    def __init__(self, n: int, store: Path, reps: int, log_at_1m: bool, script: str | None) -> None:
        self.n, self.store, self.reps, self.script = n, store, reps, script
        self.log_path = log_at_1m or n < 1_000_000
        self.tag = f"{n:,} runs"
        self.rows: list[list[object]] = []
        self.problems: list[str] = []
        self.duck_ms: dict[str, float] = {}
        self.reference: dict[str, Any] = {}
        self.log_seconds = 0.0  # what the log-path rows took, to estimate the next size's

    def row(self, question: str, system: str, path: str, times: list[float], target: tuple[str, float] | None = None,
            duck: str | None = None) -> float:
        med, low, high = summarize(times)
        if system == LOG_SYSTEM:
            self.log_seconds += sum(times) / 1000
        base = self.duck_ms.get(duck or question)
        ratio = med / base if base else None
        mark = "-"
        if target is not None:
            kind, limit = target
            value = ratio if kind == "x" else med
            mark = f"{'met' if value is not None and value <= limit else 'MISSED'} (<= {limit:g}{kind})"
        self.rows.append([self.tag, question, system, path, len(times), med, low, high, ratio, mark])
        return med

    def check(self, who: str, question: str, answer: Any, expected: Any) -> None:
        if not same(answer, expected):
            self.problems.append(f"{self.tag}: {question} from {who} disagrees with DuckDB on the JSONL: "
                                 f"{describe(answer, expected)}")

    def peers(self, jsonl: Path, parquet: Path) -> Arrays:
        nonfinite = has_nonfinite(jsonl)
        write_parquet(jsonl, parquet)
        duck_json, duck_parquet = DuckPeer(jsonl_source(jsonl), nonfinite), DuckPeer(parquet_source(parquet), nonfinite)
        arrays = Arrays(jsonl, nonfinite)
        for question in QUESTIONS:
            name = label(question)
            results = []
            for system, ask in (("duckdb read_json (JSONL)", duck_json), ("duckdb read_parquet (copy)", duck_parquet),
                                ("numpy arrays in memory (limit)", arrays)):
                times, answer = measure(partial(ask_peer, ask, question), self.reps)
                results.append((system, times, answer))
            self.reference[name] = results[0][2]
            self.duck_ms[name] = summarize(results[0][1])[0]
            for system, times, answer in results:
                self.check(system, name, answer, self.reference[name])
                self.row(name, system, "-", times)
        times, _ = measure(partial(read_bytes, jsonl), self.reps)
        self.row("-", "read the file's bytes (raw limit)", "-", times)
        return arrays

    def exptrack(self) -> None:
        store, reps = self.store, self.reps
        paths = {label(q): path_taken(store, q) for q in QUESTIONS}  # also builds index and columns
        first = (TOP, FILTERS[0])
        times, answer = measure(partial(exptrack_answer, store, first), reps, before=partial(reset_columns, store))
        self.check("exptrack (columns built)", label(first), answer, self.reference[label(first)])
        self.row(label(first), "exptrack: first query (builds the columns)", paths[label(first)], times)
        for question in QUESTIONS:
            name = label(question)
            times, answer = measure(partial(exptrack_answer, store, question), reps)
            self.check("exptrack warm", name, answer, self.reference[name])
            target: tuple[str, float] | None = ("x", 0.1) if question[0] == TOP else None
            if question[0] == RECENT:
                target = ("ms", 50.0)
            self.row(name, "exptrack warm (API)", paths[name], times, target)
            if self.log_path and question[0] != RECENT:
                with log_only():
                    times, answer = measure(partial(exptrack_answer, store, question), reps)
                self.check("exptrack's log path", name, answer, self.reference[name])
                self.row(name, LOG_SYSTEM, "log", times)
        if self.script is not None:
            for flt in FILTERS:
                name = label((TOP, flt))
                times, answer = measure(partial(cli_top10, self.script, store, flt), reps)
                self.check("exptrack top (process)", name, answer, self.reference[name])
                self.row(name, "exptrack top -w (process)", paths[name], times)

    def appended(self, jsonl: Path) -> None:
        """+1,000 runs before every call; then every answer checked again on the grown log."""
        store, writer, appended = self.store, ExperimentTracker(self.store, durable=False), 0

        def append() -> None:
            nonlocal appended
            writer.log_runs(log_items(self.n + appended, 1000, seed=3))
            appended += 1000

        chosen = [(TOP, FILTERS[0]), (TOP, FILTERS[1]), (SUMMARY, FILTERS[0]), (RECENT, None)]
        try:
            for question in chosen:
                name = label(question)
                times, _ = measure(partial(exptrack_answer, store, question), self.reps, before=append)
                append()  # the path it takes in that state, asked once more, untimed
                path = path_taken(store, question)
                target = ("x", 0.2) if question[0] == TOP else ("ms", 50.0) if question[0] == RECENT else None
                self.row(name, "exptrack after +1,000 runs", path, times, target)
        finally:
            writer.close()
        grown = DuckPeer(jsonl_source(jsonl), has_nonfinite(jsonl))
        for question in QUESTIONS:
            name = f"{label(question)} (+{appended:,} runs)"
            expected = ask_peer(grown, question)
            self.check("exptrack", name, exptrack_answer(store, question), expected)
            if self.log_path and question[0] != RECENT:
                with log_only():
                    self.check("exptrack's log path", name, exptrack_answer(store, question), expected)


def ask_peer(peer: DuckPeer | Arrays, question: Question) -> Any:
    kind, flt = question
    if kind == RECENT:
        return peer.last20(None)
    assert flt is not None
    if kind == TOP:
        return peer.top10(flt)
    if kind == LAST:
        return peer.last20(flt)
    if kind == ALL:
        return peer.matches(flt)
    return peer.summary(flt)


# -- main -------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k and 10k runs, one repetition (seconds)")
    parser.add_argument("--sizes", default=None, help="comma list of history sizes (default 100000,1000000)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per measurement (default 5; quick 1)")
    parser.add_argument("--budget", type=float, default=60.0,
                        help="seconds the log path may take at 1M (estimated as 10x its 100k time); default 60")
    parser.add_argument("--workdir", default=None, help="keep generated histories here and reuse them")
    args = parser.parse_args()
    missing = [m for m in ("numpy", "duckdb") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"needs {' and '.join(missing)}: pip install 'exptrack[fast,bench]'", file=sys.stderr)
        return 2
    sizes = [int(s) for s in (args.sizes or ("2000,10000" if args.quick else "100000,1000000")).split(",")]
    reps = args.reps or (1 if args.quick else 5)
    beside = Path(sys.executable).parent / "exptrack"  # this interpreter's console script, not a shim
    script = str(beside) if beside.exists() else shutil.which("exptrack")
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="exptrack-filtered-"))
    work.mkdir(parents=True, exist_ok=True)
    print(environment_line(work))
    print(f"{reps} repetitions per measurement; sizes {sizes}; top-10 ranks finished runs (the default status)")
    print(f"exptrack script: {script or 'not found (no process row)'}")
    rows: list[list[object]] = []
    problems: list[str] = []
    disk: list[list[object]] = []
    measured_log: tuple[float, int] | None = None  # (seconds the log-path rows took, at this size)
    try:
        for n in sizes:
            log = generated_log(work, n)
            store = work / f"store-{n}"
            shutil.rmtree(store, ignore_errors=True)
            store.mkdir()
            shutil.copyfile(log, store / "runs.jsonl")
            ExperimentTracker(store, durable=False).refresh_index()  # the index exists; the columns do not
            estimate = math.inf if measured_log is None else measured_log[0] * n / measured_log[1]
            bench = Bench(n, store, reps, estimate <= args.budget, script)
            if not bench.log_path:
                print(f"{n:,} runs: exptrack's log path skipped (~{estimate:.0f} s estimated from the smaller "
                      f"store > --budget {args.budget:g} s)")
            jsonl = store / "runs.jsonl"
            bench.peers(jsonl, work / f"runs-{n}.parquet")
            bench.exptrack()
            if bench.log_path:
                measured_log = (bench.log_seconds, n)
            baseline, hwm, maxrss = rss(store, FILTERS[0])
            disk.append([bench.tag, disk_mib(jsonl), disk_mib(work / f"runs-{n}.parquet"),
                         disk_mib(store / ".index"), disk_mib(store / ".index" / "columns"),
                         disk_mib(store / ".index" / "columns") / disk_mib(jsonl), baseline, hwm, maxrss])
            bench.appended(jsonl)
            rows += bench.rows
            problems += bench.problems
            shutil.rmtree(store, ignore_errors=True)
            (work / f"runs-{n}.parquet").unlink(missing_ok=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print_table(["history", "question", "system", "path", "reps", "median ms", "min ms", "max ms", "x duckdb jsonl",
                 "target"], rows,
                title="Filtered queries (x duckdb jsonl: median over DuckDB read_json's median, same question)")
    print_table(["history", "runs.jsonl MiB", "parquet copy MiB", ".index MiB", ".index/columns MiB",
                 "columns / jsonl", "RSS after imports MiB", "peak RSS (VmHWM) MiB", "ru_maxrss MiB"], disk,
                title="On disk, and a fresh process answering the warm filtered top-10 (rf, max_depth > 10)")
    if problems:
        print("\nANSWERS DISAGREE:")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print(f"answers agree: yes (exptrack's columns and log paths, DuckDB on JSONL and Parquet, NumPy); "
          f"{load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
