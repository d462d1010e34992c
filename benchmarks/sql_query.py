"""``tracker.sql`` over long histories: three ad-hoc questions at 100k and 1M runs.

A baseline, not a gate.  For each history size the script generates a realistic ``runs.jsonl``
(``scripts/generate_history.py``) and answers, in the same run:

* mean accuracy per model over finished runs;
* the best run (by accuracy) of every model;
* runs per status;

with ``exptrack sql`` (``ExperimentTracker.sql``: the reader's merged runs streamed into DuckDB,
then the query), the same three answers from a Python loop over ``tracker.runs()`` (what a user
writes without SQL), the reader alone (``tracker.runs()`` consumed, no answer: the floor of any
path that honours edits and checksums), and DuckDB's ``read_json_auto`` pointed straight at the
file (the raw limit: no checksum, no edit merged, so not an answer exptrack may give).  Every
answer must agree before the table is printed.

    python benchmarks/sql_query.py              # 100k and 1M runs
    python benchmarks/sql_query.py --quick      # 2k runs, one repetition
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import ROOT, environment_line, print_table, summarize, timed

sys.path.insert(0, str(ROOT / "scripts"))

from generate_history import generate

from exptrack import ExperimentTracker

MEAN = ("SELECT params.model AS model, avg(metrics.accuracy) AS mean FROM runs "
        "WHERE status = 'finished' AND isfinite(metrics.accuracy) GROUP BY model ORDER BY model")
BEST = ("SELECT params.model AS model, arg_max(run_id, metrics.accuracy) AS run_id FROM runs "
        "WHERE status = 'finished' AND isfinite(metrics.accuracy) GROUP BY model ORDER BY model")
STATUS = "SELECT status, count(*) AS n FROM runs GROUP BY status ORDER BY status"
QUESTIONS = {"mean accuracy per model": MEAN, "best run per model": BEST, "runs per status": STATUS}

Answer = list[tuple[Any, ...]]


def exptrack_sql(store: Path, query: str) -> Answer:
    return [tuple(row) for row in ExperimentTracker(store).sql(query)]


def python_loop(store: Path, question: str) -> Answer:
    """The answer a user computes from ``tracker.runs()`` without SQL."""
    runs = ExperimentTracker(store).runs()
    if question == "runs per status":
        counts: dict[str, int] = {}
        for run in runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        return sorted(counts.items())
    sums: dict[str, list[float]] = {}
    best: dict[str, tuple[float, str]] = {}
    for run in runs:
        value = run.metrics.get("accuracy")
        if run.status != "finished" or not isinstance(value, float) or value - value != 0:
            continue
        model = run.params["model"]
        sums.setdefault(model, []).append(value)
        if model not in best or value > best[model][0]:
            best[model] = (value, run.run_id)
    if question == "mean accuracy per model":
        return [(m, sum(v) / len(v)) for m, v in sorted(sums.items())]
    return [(m, best[m][1]) for m in sorted(best)]


def reader_only(store: Path) -> None:
    for _ in ExperimentTracker(store).runs():
        pass


def duckdb_raw(store: Path, query: str) -> Answer:
    import duckdb

    con = duckdb.connect()
    raw = con.read_json(str(store / "runs.jsonl"), format="newline_delimited")
    con.register("runs", raw)
    rows = con.execute(query).fetchall()
    con.close()
    return rows


def agree(a: Answer, b: Answer) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            if isinstance(u, float) or isinstance(v, float):
                if abs(float(u) - float(v)) > 1e-9:
                    return False
            elif u != v:
                return False
    return True


def bench(n: int, workdir: Path, reps: int) -> list[list[object]]:
    store = workdir / f"store-{n}"
    generate(store, n)
    ExperimentTracker(store).refresh_index()
    rows: list[list[object]] = []

    def add(question: str, system: str, fn: Callable[[], object]) -> object:
        answers: list[object] = []
        times = timed(lambda: answers.append(fn()), reps)
        median, low, high = summarize(times)
        rows.append([f"{n:,} runs", question, system, median, low, high])
        return answers[-1]

    for question, query in QUESTIONS.items():
        mine = add(question, "exptrack sql", lambda q=query: exptrack_sql(store, q))  # type: ignore[misc]
        loop = add(question, "python loop over tracker.runs()", lambda q=question: python_loop(store, q))  # type: ignore[misc]
        raw = add(question, "duckdb on the raw file (limit)", lambda q=query: duckdb_raw(store, q))  # type: ignore[misc]
        for name, other in (("python loop", loop), ("duckdb raw", raw)):
            if not agree(mine, other):  # type: ignore[arg-type]
                raise SystemExit(f"answers differ for {question!r} at {n} runs: sql {mine} vs {name} {other}")
    add("-", "reader alone (tracker.runs())", lambda: reader_only(store))
    shutil.rmtree(store)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k runs, one repetition")
    parser.add_argument("--sizes", default=None, help="comma list of history sizes (default 100000,1000000)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per measurement (default 5; quick 1)")
    parser.add_argument("--workdir", default=None, help="where the stores are generated (default: a temp dir)")
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or ("2000" if args.quick else "100000,1000000")).split(",")]
    reps = args.reps or (1 if args.quick else 5)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="exptrack-sql-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(environment_line(workdir))
    rows: list[list[object]] = []
    for n in sizes:
        rows.extend(bench(n, workdir, reps))
    print_table(["history", "question", "system", "median s", "min s", "max s"], rows,
                title=f"SQL questions ({reps} reps each)")
    print("\nanswers agree: yes (exptrack sql = python loop = duckdb on the raw file)")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
