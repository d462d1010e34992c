"""Query latency over long histories: best / top-10 / summary / filtered top-10 at 100k and 1M runs.

A baseline, not a gate.  For each history size the script generates a realistic ``runs.jsonl``
(``scripts/generate_history.py``, ~690 bytes a run) and times, through the public API only
(``ExperimentTracker.best_run`` / ``top_runs`` / ``summary``, a new tracker object per call, as a
CLI invocation would make):

* cold: the disposable index (``<store>/.index``) deleted before every call;
* warm: the index built by an earlier call;
* +1000: 1,000 runs appended (``log_runs``) before every call, so the index must catch up;

against, in the same run, the raw read limit (reading the file's bytes, and reading plus one
``orjson.loads`` per line) and the peers that are installed: DuckDB ``read_json`` (schema
auto-detected, and with the columns given), Polars ``scan_ndjson``, pandas ``read_json`` and a
plain stdlib ``json`` loop.  Peers have no index: each query reads the file.  Every answer must
agree (run ids, summary counts, min/max, mean/std to 1e-6) before the table is printed.  Peak RSS
is measured in a fresh process per query, to show it stays flat from 100k to 1M runs.

The file stays in the page cache: "cold" means without the index, not a cold disk.

    python benchmarks/query_history.py                       # 100k and 1M runs, ~10 min
    python benchmarks/query_history.py --quick               # 2k and 10k runs, seconds
    python benchmarks/query_history.py --sizes 1000000 --workdir /var/tmp/eh --peers duckdb
"""

from __future__ import annotations

import argparse
import heapq
import importlib.util
import json
import math
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _common import (
    ROOT,
    current_rss_mb,
    environment_line,
    generated_log,
    load_average,
    peak_rss_mb,
    print_table,
    read_bytes,
    reset_peak_rss,
    summarize,
)

sys.path.insert(0, str(ROOT / "scripts"))

import orjson
from generate_history import log_items

from exptrack import ExperimentTracker

QUERIES = ("best", "top10", "summary", "filtered")
METRICS = ("accuracy", "val_loss", "f1", "auc", "train_time_s")
FILTER = "params.model = 'xgb' and params.lr < 0.01"
_LABELS = {"best": "best accuracy", "top10": "top-10 val_loss", "summary": "summary",
           "filtered": "filtered top-10"}
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
PEERS = ("duckdb", "duckdb-columns", "polars", "pandas", "json")
_PEER_LABELS = {
    "duckdb": "duckdb read_json (auto schema)",
    "duckdb-columns": "duckdb read_json (columns given)",
    "polars": "polars scan_ndjson",
    "pandas": "pandas read_json",
    "json": "stdlib json loop",
}
_PEER_MODULE = {"duckdb": "duckdb", "duckdb-columns": "duckdb", "polars": "polars", "pandas": "pandas", "json": "json"}

Answer = Any  # str | tuple[str, ...] | summary tuple


# -- exptrack ---------------------------------------------------------------------------------------


def reset_index(store: Path) -> None:
    """Delete the disposable index so the next query is cold."""
    target = store / ".index"
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()


def exptrack_answer(store: Path, query: str) -> Answer:
    tracker = ExperimentTracker(store)
    if query == "best":
        return tracker.best_run("accuracy", status="any").run_id
    if query == "top10":
        return tuple(run.run_id for run in tracker.top_runs("val_loss", 10, status="any"))
    if query == "filtered":
        return tuple(run.run_id for run in tracker.top_runs("accuracy", 10, where=FILTER, status="any"))
    result = tracker.summary(status="any")
    metrics = {
        name: (s["count"], s["nonfinite"], s["min"], s["max"], s["mean"], s["std"])
        for name, s in result["metrics"].items()
    }
    return (result["total_runs"], tuple(sorted(result["statuses"].items())), metrics)


# -- peers ------------------------------------------------------------------------------------------


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def duckdb_answer(path: Path, query: str, *, columns: bool = False) -> Answer:
    import duckdb

    source = f"read_json({_sql_path(path)}, format = 'newline_delimited')"
    if columns:  # the schema as documented: metrics are DOUBLE, ``nonfinite`` names each null's value
        metric_types = ", ".join(f"{m} DOUBLE" for m in METRICS)
        source = (
            f"read_json({_sql_path(path)}, format = 'newline_delimited', columns = {{"
            f"'run_id': 'VARCHAR', 'status': 'VARCHAR', 'params': 'STRUCT(model VARCHAR, lr DOUBLE)', "
            f"'metrics': 'STRUCT({metric_types})', 'nonfinite': 'MAP(VARCHAR, VARCHAR)'}})"
        )
    con = duckdb.connect()
    try:
        # Metrics are numbers or null; a null is a NaN or an infinity when ``nonfinite`` names it.
        def metric(m: str) -> str:
            named = f"nonfinite['{m}']" if columns else f"json_extract_string(nonfinite::JSON, '$.{m}')"
            return f"coalesce(metrics.{m}, CAST({named} AS DOUBLE))"

        if query == "best":
            sql = (f"SELECT run_id FROM {source} WHERE isfinite({metric('accuracy')}) "  # noqa: S608 - constants
                   f"ORDER BY {metric('accuracy')} DESC LIMIT 1")
            return con.execute(sql).fetchone()[0]  # type: ignore[index]
        if query == "top10":
            sql = (f"SELECT run_id FROM {source} WHERE isfinite({metric('val_loss')}) "  # noqa: S608 - constants
                   f"ORDER BY {metric('val_loss')} ASC LIMIT 10")
            return tuple(row[0] for row in con.execute(sql).fetchall())
        if query == "filtered":
            sql = (f"SELECT run_id FROM {source} WHERE params.model = 'xgb' AND params.lr < 0.01 "  # noqa: S608
                   f"AND isfinite({metric('accuracy')}) ORDER BY {metric('accuracy')} DESC LIMIT 10")
            return tuple(row[0] for row in con.execute(sql).fetchall())
        parts = ["count(*)", "histogram(status)"]
        for m in METRICS:
            x = metric(m)
            fin = f"FILTER (WHERE isfinite({x}))"
            parts += [f"count({x}) {fin}", f"count({x}) FILTER (WHERE NOT isfinite({x}))",
                      f"min({x}) {fin}", f"max({x}) {fin}", f"avg({x}) {fin}", f"stddev_samp({x}) {fin}"]
        row = con.execute(f"SELECT {', '.join(parts)} FROM {source}").fetchone()  # noqa: S608 - constants
        assert row is not None
        statuses = tuple(sorted((str(k), int(v)) for k, v in dict(row[1]).items()))
        metrics = {m: tuple(row[2 + 6 * i : 8 + 6 * i]) for i, m in enumerate(METRICS)}
        return (row[0], statuses, metrics)
    finally:
        con.close()


def polars_answer(path: Path, query: str) -> Answer:
    import polars as pl

    # Metrics are numbers or null; a null is a NaN or an infinity when ``nonfinite`` names it.
    schema = {
        "run_id": pl.String,
        "status": pl.String,
        "params": pl.Struct({"model": pl.String, "lr": pl.Float64}),
        "metrics": pl.Struct(dict.fromkeys(METRICS, pl.Float64)),
        "nonfinite": pl.Struct(dict.fromkeys(METRICS, pl.String)),
    }
    frame = pl.scan_ndjson(path, schema=schema)

    def metric(m: str) -> pl.Expr:
        named = pl.col("nonfinite").struct.field(m).cast(pl.Float64)
        return pl.coalesce(pl.col("metrics").struct.field(m), named)

    if query in ("best", "top10", "filtered"):
        name, descending = ("val_loss", False) if query == "top10" else ("accuracy", True)
        rows = frame.select(pl.col("run_id"), metric(name).alias("v"), pl.col("params"))
        if query == "filtered":
            rows = rows.filter((pl.col("params").struct.field("model") == "xgb")
                               & (pl.col("params").struct.field("lr") < 0.01))
        rows = rows.filter(pl.col("v").is_finite()).sort("v", descending=descending, maintain_order=True)
        ids = rows.head(1 if query == "best" else 10).select("run_id").collect()["run_id"].to_list()
        return ids[0] if query == "best" else tuple(ids)
    aggs: list[pl.Expr] = [pl.len().alias("total")]
    for m in METRICS:
        x = metric(m)
        finite = x.filter(x.is_finite())
        aggs += [x.is_finite().sum().alias(f"{m}.count"), (x.is_not_null() & ~x.is_finite()).sum().alias(f"{m}.nf"),
                 finite.min().alias(f"{m}.min"), finite.max().alias(f"{m}.max"),
                 finite.mean().alias(f"{m}.mean"), finite.std().alias(f"{m}.std")]
    stats, statuses = pl.collect_all([frame.select(aggs), frame.group_by("status").len()])
    row = stats.row(0, named=True)
    metrics = {
        m: tuple(row[f"{m}.{k}"] for k in ("count", "nf", "min", "max", "mean", "std")) for m in METRICS
    }
    return (row["total"], tuple(sorted(statuses.iter_rows())), metrics)


def pandas_answer(path: Path, query: str) -> Answer:
    import numpy as np
    import pandas as pd

    frame = pd.read_json(path, lines=True, precise_float=True, dtype=False)
    metrics = pd.DataFrame(frame["metrics"].tolist())
    # a null metric is a NaN or an infinity when the run's ``nonfinite`` section names it
    sections = frame["nonfinite"] if "nonfinite" in frame else pd.Series([None] * len(frame))
    named = pd.DataFrame([s if isinstance(s, dict) else {} for s in sections], index=metrics.index)

    def metric(m: str) -> Any:
        values = pd.to_numeric(metrics[m])
        if m in named:
            values = values.fillna(pd.to_numeric(named[m].map(_NONFINITE.get)))
        return values

    if query in ("best", "top10", "filtered"):
        name = "val_loss" if query == "top10" else "accuracy"
        values = metric(name)
        keep = np.isfinite(values)
        if query == "filtered":
            params = pd.DataFrame(frame["params"].tolist())
            keep &= (params["model"] == "xgb") & (pd.to_numeric(params["lr"]) < 0.01)
        values = values[keep]
        if query == "best":
            return frame["run_id"][values.idxmax()]
        chosen = values.nsmallest(10, keep="first") if query == "top10" else values.nlargest(10, keep="first")
        return tuple(frame["run_id"][chosen.index])
    stats = {}
    for m in METRICS:
        values = metric(m)
        present = values.notna() | (named[m].notna() if m in named else False)
        finite_mask = np.isfinite(values)
        finite = values[finite_mask]
        stats[m] = (int(finite_mask.sum()), int((present & ~finite_mask).sum()), finite.min(), finite.max(),
                    finite.mean(), finite.std())
    statuses = tuple(sorted((str(k), int(v)) for k, v in frame["status"].value_counts().items()))
    return (len(frame), statuses, stats)


class _Welford:
    __slots__ = ("count", "m2", "max", "mean", "min", "nonfinite")

    def __init__(self) -> None:
        self.count = self.nonfinite = 0
        self.mean = self.m2 = 0.0
        self.min, self.max = math.inf, -math.inf

    def add(self, value: float) -> None:
        if not math.isfinite(value):
            self.nonfinite += 1
            return
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def answer(self) -> tuple[object, ...]:
        if not self.count:
            return (0, self.nonfinite, None, None, None, None)
        std = math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else None
        return (self.count, self.nonfinite, self.min, self.max, self.mean, std)


def json_answers(path: Path, wanted: tuple[str, ...] = QUERIES) -> dict[str, Answer]:
    """The plain way: ``json.loads`` every line and keep what the queries need (one pass)."""
    best: tuple[float, str] | None = None
    top: list[tuple[float, int, str]] = []  # heap of (-val_loss, -line, id): the worst kept on top
    filtered: list[tuple[float, int, str]] = []  # heap of (accuracy, -line, id)
    stats = {m: _Welford() for m in METRICS}
    statuses: Counter[str] = Counter()
    total = 0

    def number(value: object, name: str) -> float | None:
        if value is None:  # schema 2: the ``nonfinite`` section names what a null metric stands for
            return _NONFINITE.get(record.get("nonfinite", {}).get(name, ""))
        return float(value) if isinstance(value, (int, float)) else None

    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle):
            record = json.loads(line)
            metrics = record["metrics"]
            total += 1
            if "summary" in wanted:
                statuses[record.get("status", "finished")] += 1
                for m in METRICS:
                    if m in metrics:
                        value = number(metrics[m], m)
                        if value is not None:
                            stats[m].add(value)
            accuracy = number(metrics.get("accuracy"), "accuracy")
            if accuracy is not None and math.isfinite(accuracy):
                if "best" in wanted and (best is None or accuracy > best[0]):
                    best = (accuracy, record["run_id"])
                params = record["params"]
                if "filtered" in wanted and params.get("model") == "xgb" and params.get("lr", 1) < 0.01:
                    entry = (accuracy, -line_no, record["run_id"])
                    if len(filtered) < 10:
                        heapq.heappush(filtered, entry)
                    elif entry > filtered[0]:
                        heapq.heapreplace(filtered, entry)
            if "top10" in wanted:
                loss = number(metrics.get("val_loss"), "val_loss")
                if loss is not None and math.isfinite(loss):
                    entry = (-loss, -line_no, record["run_id"])
                    if len(top) < 10:
                        heapq.heappush(top, entry)
                    elif entry > top[0]:
                        heapq.heapreplace(top, entry)
    answers: dict[str, Answer] = {}
    if best is not None:
        answers["best"] = best[1]
    answers["top10"] = tuple(entry[2] for entry in sorted(top, reverse=True))
    answers["filtered"] = tuple(entry[2] for entry in sorted(filtered, reverse=True))
    answers["summary"] = (total, tuple(sorted(statuses.items())), {m: stats[m].answer() for m in METRICS})
    return {q: answers[q] for q in wanted}


def peer_answer(peer: str, path: Path, query: str) -> Answer:
    if peer == "duckdb":
        return duckdb_answer(path, query)
    if peer == "duckdb-columns":
        return duckdb_answer(path, query, columns=True)
    if peer == "polars":
        return polars_answer(path, query)
    if peer == "pandas":
        return pandas_answer(path, query)
    return json_answers(path, (query,))[query]


# -- floors -----------------------------------------------------------------------------------------


def read_and_parse(path: Path) -> int:
    """Read plus one ``orjson.loads`` per line: the floor for anything that parses every run."""
    count = 0
    loads = orjson.loads
    with open(path, "rb", buffering=1 << 20) as handle:
        for line in handle:
            loads(line)
            count += 1
    return count


# -- measuring --------------------------------------------------------------------------------------


def measure(fn: Callable[[], Answer], reps: int, budget: float,
            before: Callable[[], object] | None = None) -> tuple[list[float], Answer]:
    """Up to ``reps`` timed calls (at least one), stopping once ``budget`` seconds were spent."""
    times: list[float] = []
    answer: Answer = None
    spent = 0.0
    while len(times) < reps and (not times or spent < budget):
        if before is not None:
            before()
        start = time.perf_counter()
        answer = fn()
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        spent += elapsed
    return times, answer


def same(query: str, a: Answer, b: Answer) -> bool:
    if query != "summary":
        return bool(a == b)
    (total_a, statuses_a, metrics_a), (total_b, statuses_b, metrics_b) = a, b
    if total_a != total_b or statuses_a != statuses_b or set(metrics_a) != set(metrics_b):
        return False
    for name, left in metrics_a.items():
        right = metrics_b[name]
        if tuple(left[:2]) != tuple(int(v) for v in right[:2]):
            return False
        for x, y in zip(left[2:], right[2:]):
            if (x is None) != (y is None) or (x is not None and not math.isclose(x, y, rel_tol=1e-6)):
                return False
    return True


def describe_difference(query: str, got: Answer, expected: Answer) -> str:
    if query != "summary":
        return f"{got!r} != {expected!r}"
    parts = []
    if got[:2] != expected[:2]:
        parts.append(f"totals/statuses {got[:2]!r} != {expected[:2]!r}")
    for name in sorted(set(got[2]) | set(expected[2])):
        left, right = got[2].get(name), expected[2].get(name)
        if left is None or right is None or not same("summary", (0, (), {name: left}), (0, (), {name: right})):
            parts.append(f"{name}: {left!r} != {right!r}")
    return "; ".join(parts)


def _rss_probe(conn: Connection, store: str, query: str, cold: bool) -> None:
    """In a fresh process: send (RSS before the query, its peak, the largest helper's peak), MiB."""
    path = Path(store)
    if cold:
        reset_index(path)
    ExperimentTracker(path)  # imports and the log handler are not the query's memory
    baseline = current_rss_mb()
    reset = reset_peak_rss()
    exptrack_answer(path, query)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    conn.send((baseline, peak_rss_mb() if reset else math.nan, children))
    conn.close()


def rss(store: Path, query: str, cold: bool) -> tuple[float, float, float]:
    # A plain (non-daemon) process: exptrack may read a long log with helper processes of its own.
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_rss_probe, args=(send, str(store), query, cold))
    process.start()
    send.close()
    try:
        result: tuple[float, float, float] = receive.recv()
    finally:
        receive.close()
        process.join()
    return result


# -- main -------------------------------------------------------------------------------------------


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def bench_size(n: int, store: Path, peers: list[str], reps: int, budget: float, quick: bool,
               rows: list[list[object]], matrix: dict[tuple[str, str, int], float],
               memory: list[list[object]], problems: list[str]) -> None:
    path = store / "runs.jsonl"
    size_mb = path.stat().st_size / 2**20
    raw_times, _ = measure(lambda: read_bytes(path), reps, budget)
    parse_times, _ = measure(lambda: read_and_parse(path), reps, budget)
    raw_ms = summarize(raw_times)[0] * 1000
    tag = f"{n:,} runs"

    def add(query: str, system: str, times: list[float], base: float | None = None) -> None:
        med, low, high = (t * 1000 for t in summarize(times))
        rows.append([tag, _LABELS[query], system, len(times), med, low, high, med / raw_ms,
                     med / base if base else None])
        matrix[(system, query, n)] = med

    answers: dict[tuple[str, str], Answer] = {}
    peer_ms: dict[tuple[str, str], float] = {}
    for peer in peers:
        for query in QUERIES:
            times, answer = measure(lambda p=peer, q=query: peer_answer(p, path, q), reps, budget)
            answers[(peer, query)] = answer
            peer_ms[(peer, query)] = summarize(times)[0] * 1000
    reference = json_answers(path)

    cold: dict[str, list[float]] = {}
    warm: dict[str, list[float]] = {}
    for query in QUERIES:
        cold[query], answers[("cold", query)] = measure(
            lambda q=query: exptrack_answer(store, q), reps, budget, before=lambda: reset_index(store))
    for query in QUERIES:
        exptrack_answer(store, query)  # builds the index if this query uses one
        warm[query], answers[("warm", query)] = measure(lambda q=query: exptrack_answer(store, q), reps, budget)

    problems.extend(
        f"{tag}: {_LABELS[query]} from {who} disagrees with the stdlib json loop: "
        f"{describe_difference(query, answers[(who, query)], reference[query])}"
        for query in QUERIES
        for who in ("cold", "warm", *peers)
        if not same(query, answers[(who, query)], reference[query])
    )

    memory.append([tag, "before the queries", "-", f"{size_mb:,.0f} MiB file", None, None, None])
    probes = (("filtered top-10 (streaming)", "filtered", False),
              ("cold best (no index)", "best", True),
              ("warm summary", "summary", False))
    for label, query, is_cold in probes[:1] if quick else probes:
        baseline, peak, helper = rss(store, query, is_cold)
        memory.append([tag, label, "exptrack", "", peak, peak - baseline, helper or None])

    appended = 0
    added: dict[str, list[float]] = {}
    writer = ExperimentTracker(store, durable=False)

    def append_1000() -> None:
        nonlocal appended
        writer.log_runs(log_items(n + appended, 1000, seed=3))
        appended += 1000

    for query in QUERIES:
        added[query], answers[("+1000", query)] = measure(
            lambda q=query: exptrack_answer(store, q), reps, budget, before=append_1000)
    writer.close()
    grown = json_answers(path)
    for query in QUERIES:
        answer = exptrack_answer(store, query)
        if not same(query, answer, grown[query]):
            problems.append(f"{tag} +{appended} runs: {_LABELS[query]} disagrees with the stdlib json loop: "
                            f"{describe_difference(query, answer, grown[query])}")

    for query in QUERIES:
        duck = peer_ms.get(("duckdb", query))
        add(query, "exptrack cold (no index)", cold[query], duck)
        add(query, "exptrack warm (index)", warm[query], duck)
        add(query, "exptrack after +1000 runs", added[query], duck)
        for peer in peers:
            rows.append([tag, _LABELS[query], _PEER_LABELS[peer], "", peer_ms[(peer, query)], None, None,
                         peer_ms[(peer, query)] / raw_ms, peer_ms[(peer, query)] / duck if duck else None])
            matrix[(_PEER_LABELS[peer], query, n)] = peer_ms[(peer, query)]
    for label, times in (("read the file's bytes (raw limit)", raw_times),
                         ("read + orjson.loads per line (parse floor)", parse_times)):
        med, low, high = (t * 1000 for t in summarize(times))
        rows.append([tag, "-", label, len(times), med, low, high, med / raw_ms, None])
        for query in QUERIES:
            matrix[(label, query, n)] = med


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k and 10k runs, one repetition")
    parser.add_argument("--sizes", default=None, help="comma list of history sizes (default 100000,1000000)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per measurement (default 5; quick 1)")
    parser.add_argument("--budget", type=float, default=20.0,
                        help="stop repeating a measurement after this many seconds (default 20)")
    parser.add_argument("--peers", default=None,
                        help=f"comma list of {','.join(PEERS)} or 'none' (default: those installed)")
    parser.add_argument("--workdir", default=None,
                        help="keep generated histories here and reuse them on the next run (default: a temp dir)")
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or ("2000,10000" if args.quick else "100000,1000000")).split(",")]
    reps = args.reps or (1 if args.quick else 5)
    wanted = list(PEERS) if args.peers is None else [] if args.peers == "none" else args.peers.split(",")
    unknown = set(wanted) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}; choose from {', '.join(PEERS)}")
    peers = [p for p in PEERS if p in wanted and installed(_PEER_MODULE[p])]

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="exptrack-query-"))
    work.mkdir(parents=True, exist_ok=True)
    print(environment_line(work))
    print(f"up to {reps} repetitions per measurement (fewer past {args.budget:g} s); sizes {sizes}")
    for peer in PEERS:
        if peer not in peers:
            reason = "not installed" if not installed(_PEER_MODULE[peer]) else "not selected"
            print(f"peer {_PEER_LABELS[peer]}: {reason}")

    rows: list[list[object]] = []
    matrix: dict[tuple[str, str, int], float] = {}
    memory: list[list[object]] = []
    problems: list[str] = []
    try:
        for n in sizes:
            log = generated_log(work, n)
            store = work / f"store-{n}"
            shutil.rmtree(store, ignore_errors=True)
            store.mkdir()
            shutil.copyfile(log, store / "runs.jsonl")
            bench_size(n, store, peers, reps, args.budget, args.quick, rows, matrix, memory, problems)
            shutil.rmtree(store, ignore_errors=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    if problems:
        print("\nANSWERS DISAGREE:")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print_table(["history", "query", "system", "reps", "median ms", "min ms", "max ms", "x raw read", "x duckdb"],
                rows, title="Query latency (answers checked: every system agrees with the stdlib json loop)")
    systems = list(dict.fromkeys(system for system, _, _ in matrix))
    print_table(
        ["median ms", *(f"{_LABELS[q]} {n // 1000}k" for n in sizes for q in QUERIES)],
        [[s, *(matrix.get((s, q, n)) for n in sizes for q in QUERIES)] for s in systems],
        title="Summary (median ms; the floors are per pass over the file)",
    )
    print_table(["history", "query", "system", "note", "peak RSS MiB", "above baseline MiB", "helper peak MiB"],
                memory, title="Peak RSS, fresh process per query (helper: the largest process it started, if any)")
    print(f"answers agree: yes; {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
