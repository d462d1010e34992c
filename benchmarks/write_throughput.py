"""Write throughput: runs/s for 1-8 writer processes appending to one store, against the raw limit.

A baseline, not a gate.  Every case is a set of ``spawn`` worker processes released together by a
start barrier; each appends for ``--seconds`` through the real public API
(``ExperimentTracker.log_run`` / ``log_runs``), then the script checks the log: one line per
acknowledged run, and every line decodes.  In the same run it measures

* the raw limit: unlocked ``O_APPEND`` ``write()`` calls of the same pre-encoded bytes (plus an
  ``fsync`` per write when durable) -- what the disk and kernel allow with no lock, no validation
  and no encoding;
* peers when installed: Optuna's ``JournalFileBackend.append_logs`` (it always fsyncs, so it only
  appears in the durable rows) and MLflow on a SQLite store (``create_run`` + ``log_batch`` +
  ``set_terminated`` per run; durable, no multi-run batch API).

Runs are the same realistic records as ``scripts/generate_history.py`` (~690 bytes a line).

    python benchmarks/write_throughput.py                 # 1, 2, 4, 8 writers, 3 x 2 s per case
    python benchmarks/write_throughput.py --quick         # short cases, one repetition, no MLflow
    python benchmarks/write_throughput.py --procs 8 --peers none
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import multiprocessing
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _common import ROOT, environment_line, load_average, print_table, summarize

sys.path.insert(0, str(ROOT / "scripts"))

from generate_history import log_items

from exptrack import ExperimentTracker
from exptrack.store import codec
from exptrack.store.logs import detach_store_log
from exptrack.store.record import build_run
from exptrack.store.scan import CorruptLine, LogScan

ITEMS_PER_WORKER = 512
Result = tuple[int, float, float, float]  # runs, start, end (monotonic, shared by all processes), CPU s
WRITERS = ("exptrack", "raw", "optuna", "mlflow")
_LABELS = {
    "exptrack": "exptrack",
    "raw": "raw O_APPEND (limit)",
    "optuna": "optuna JournalFile",
    "mlflow": "mlflow sqlite",
}


@dataclass(frozen=True)
class Case:
    writer: str
    durable: bool
    batched: bool
    procs: int

    @property
    def mode(self) -> str:
        return "durable" if self.durable else "flush-only"

    @property
    def appends(self) -> str:
        return "batched" if self.batched else "single"


# -- worker side ----------------------------------------------------------------------------------

_prepared: dict[tuple[str, int], Any] = {}


def _items(index: int) -> list[dict[str, Any]]:
    key = ("items", index)
    if key not in _prepared:
        _prepared[key] = log_items(index * ITEMS_PER_WORKER, ITEMS_PER_WORKER, seed=7)
    return _prepared[key]  # type: ignore[no-any-return]


def _lines(index: int) -> list[bytes]:
    key = ("lines", index)
    if key not in _prepared:
        _prepared[key] = [codec.encode(build_run(**item)) for item in _items(index)]
    return _prepared[key]  # type: ignore[no-any-return]


def _batches(values: Sequence[Any], size: int) -> list[list[Any]]:
    """Batches of exactly ``size`` values, cycling through ``values``."""
    n = len(values)
    return [[values[(start + k) % n] for k in range(size)] for start in range(0, n, size)]


def _loop(append: Any, payloads: Sequence[Any], per_call: int, seconds: float, cap: int) -> Result:
    """Call ``append`` on the payloads in turn for ``seconds`` or ``cap`` runs.

    Returns (runs, start, end, CPU seconds this process used meanwhile): the CPU time does not
    depend on what else the machine runs, so it shows the cost per run even on a busy host.
    """
    n = len(payloads)
    calls = 0
    max_calls = max(1, cap // per_call)
    now = time.monotonic
    cpu = time.process_time()
    start = now()
    deadline = start + seconds
    while True:
        append(payloads[calls % n])
        calls += 1
        if calls >= max_calls or now() >= deadline:
            break
    end = now()
    return calls * per_call, start, end, time.process_time() - cpu


def _run_task(index: int, task: dict[str, Any], barrier: Any) -> Result:
    writer, path, durable, batch, seconds = (
        task["writer"], task["path"], task["durable"], task["batch"], task["seconds"],
    )
    cap = task["cap"]
    per_call = batch
    if writer == "exptrack":
        tracker = ExperimentTracker(path, durable=durable)
        items = _items(index)
        if batch > 1:
            barrier.wait()
            result = _loop(tracker.log_runs, _batches(items, batch), per_call, seconds, cap)
        else:
            barrier.wait()
            result = _loop(lambda item: tracker.log_run(**item), items, 1, seconds, cap)
        tracker.close()
        detach_store_log(path)  # one handler per store would pile up over the cases
        return result
    if writer == "raw":
        fd = os.open(os.path.join(path, "runs.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        lines = _lines(index)
        payloads = [b"".join(chunk) for chunk in _batches(lines, batch)] if batch > 1 else lines

        def raw_append(data: bytes) -> None:
            os.write(fd, data)
            if durable:
                os.fsync(fd)

        try:
            barrier.wait()
            return _loop(raw_append, payloads, per_call, seconds, cap)
        finally:
            os.close(fd)
    if writer == "optuna":
        from optuna.storages.journal import JournalFileBackend

        backend = JournalFileBackend(os.path.join(path, "journal.log"))
        records = [json.loads(line) for line in _lines(index)]
        payloads = _batches(records, batch) if batch > 1 else [[record] for record in records]
        barrier.wait()
        return _loop(backend.append_logs, payloads, per_call, seconds, cap)
    if writer == "mlflow":
        return _mlflow_task(index, path, barrier, seconds, cap)
    raise ValueError(f"unknown writer {writer!r}")


def _mlflow_task(index: int, path: str, barrier: Any, seconds: float, cap: int) -> Result:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    _quiet_mlflow()

    client = MlflowClient(tracking_uri=f"sqlite:///{path}/mlflow.db")
    experiment = client.get_experiment_by_name("bench")
    assert experiment is not None
    items = _items(index)[:64]
    payloads = []
    for item in items:
        params = [Param(k, str(v)) for k, v in item["params"].items()]
        tags = [RunTag(t.partition("=")[0], t.partition("=")[2] or "1") for t in item["tags"]]
        payloads.append((params, list(item["metrics"].items()), tags))

    def append(payload: Any) -> None:
        params, metrics, tags = payload
        run = client.create_run(experiment.experiment_id)
        stamp = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, float(v), stamp, 0) for k, v in metrics],
            params=params,
            tags=tags,
        )
        client.set_terminated(run.info.run_id)

    barrier.wait()
    return _loop(append, payloads, 1, seconds, cap)


def worker_main(index: int, conn: Connection, barriers: dict[int, Any]) -> None:
    """Serve tasks from the parent until it sends ``None``; every result (or error) goes back."""
    conn.send("ready")
    while True:
        task = conn.recv()
        if task is None:
            return
        barrier = barriers[task["procs"]]
        try:
            result: object = ("ok", _run_task(index, task, barrier))
        except BaseException:
            barrier.abort()  # release the other writers of this case instead of leaving them waiting
            result = ("error", traceback.format_exc(limit=6))
        conn.send(result)


# -- parent side ----------------------------------------------------------------------------------


class Workers:
    """``n`` spawned writer processes kept for all cases (spawning 8 per case would dominate)."""

    def __init__(self, n: int, procs: Sequence[int]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.barriers = {p: ctx.Barrier(p) for p in procs}
        self.conns: list[Connection] = []
        self.processes = []
        for index in range(n):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=worker_main, args=(index, child, self.barriers), daemon=True)
            process.start()
            child.close()
            self.conns.append(parent)
            self.processes.append(process)
        for conn in self.conns:  # started and imported: a case never overlaps a start-up
            if conn.recv() != "ready":
                raise RuntimeError("a writer process failed to start")

    def run(self, case: Case, path: str, seconds: float, batch: int, cap: int) -> list[Result]:
        task = {
            "writer": case.writer, "path": path, "durable": case.durable, "batch": batch if case.batched else 1,
            "seconds": seconds, "cap": -(-cap // case.procs), "procs": case.procs,
        }
        for conn in self.conns[: case.procs]:
            conn.send(task)
        results, errors = [], []
        for conn in self.conns[: case.procs]:
            status, value = conn.recv()
            (results if status == "ok" else errors).append(value)
        if errors:
            self.barriers[case.procs].reset()
            raise RuntimeError("writer failed:\n" + errors[0])
        return results

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):  # a writer that died already
                conn.send(None)
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()


def verify(case: Case, path: str, expected: int) -> str:
    """'ok' when the store holds exactly ``expected`` runs and every line decodes, else why not."""
    if case.writer == "mlflow":
        with sqlite3.connect(os.path.join(path, "mlflow.db")) as db:
            (found,) = db.execute("SELECT count(*) FROM runs WHERE status = 'FINISHED'").fetchone()
        return "ok" if found == expected else f"NO: {found} runs, expected {expected}"
    if case.writer == "optuna":
        lines = bad = 0
        with open(os.path.join(path, "journal.log"), "rb") as handle:
            for line in handle:
                lines += 1
                try:
                    json.loads(line)
                except ValueError:
                    bad += 1
        return "ok" if lines == expected and not bad else f"NO: {lines} lines ({bad} bad), expected {expected}"
    runs = corrupt = 0
    ids: set[str] = set()
    for item in LogScan(os.path.join(path, "runs.jsonl"), final=True):
        if type(item) is CorruptLine:
            corrupt += 1
        else:
            runs += 1
            ids.add(item.run_id)
    # exptrack's runs must also be distinct; the raw writer repeats the same lines on purpose
    distinct = case.writer != "exptrack" or len(ids) == runs
    if runs == expected and not corrupt and distinct:
        return "ok"
    return f"NO: {runs} runs ({len(ids)} distinct), {corrupt} corrupt lines, expected {expected}"


def _quiet_mlflow() -> None:
    import logging

    # after the import: mlflow configures its loggers when it is imported
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _prepare_mlflow(template: Path) -> None:
    from mlflow.tracking import MlflowClient

    _quiet_mlflow()

    template.mkdir(parents=True)
    client = MlflowClient(tracking_uri=f"sqlite:///{template}/mlflow.db")
    client.create_experiment("bench", artifact_location=str(template / "artifacts"))


GOALS = (
    # (label, exptrack case, limit case, goal): issue 13's write goals, each a ratio of medians
    ("flush-only log_run / raw O_APPEND, one run", Case("exptrack", False, False, 0), Case("raw", False, False, 0),
     0.2),
    ("flush-only log_runs(100) / raw O_APPEND, one run", Case("exptrack", False, True, 0), Case("raw", False, False, 0),
     0.35),
    ("durable log_run / raw write+fsync, one run", Case("exptrack", True, False, 0), Case("raw", True, False, 0), 0.85),
)


def _print_goals(measured: dict[Case, list[float]], procs: Sequence[int]) -> None:
    """Each goal's ratio of medians, at the most writer processes measured."""
    most = max(procs)
    rows = []
    for label, mine, limit, goal in GOALS:
        ours = measured.get(Case(mine.writer, mine.durable, mine.batched, most))
        theirs = measured.get(Case(limit.writer, limit.durable, limit.batched, most))
        if ours and theirs:
            ratio = summarize(ours)[0] / summarize(theirs)[0]
            rows.append([label, most, ratio, goal, "met" if ratio >= goal else "missed"])
    print_table(["ratio of medians", "procs", "ratio", "goal", "verdict"], rows, title="Against the goals")


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.05 s cases, one repetition, no MLflow by default")
    parser.add_argument("--procs", default="1,2,4,8", help="writer process counts (default 1,2,4,8)")
    parser.add_argument("--seconds", type=float, default=None, help="append time per case (default 2; quick 0.05)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per case (default 5; quick 1)")
    parser.add_argument("--max-runs", type=int, default=None,
                        help="stop a case early after this many runs in all (default 500000, ~350 MB; quick 2000)")
    parser.add_argument("--batch", type=int, default=100, help="runs per log_runs call when batched (default 100)")
    parser.add_argument("--peers", default=None,
                        help="comma list of optuna,mlflow or 'none' (default: those installed; quick: optuna)")
    parser.add_argument("--cases", default=None,
                        help="comma list of flush-only-single, flush-only-batched, durable-single, durable-batched "
                             "(default: all four)")
    parser.add_argument("--dir", default=None, help="where the stores go (default: the temp dir); fsync cost "
                        "depends on this file system")
    args = parser.parse_args()
    procs = sorted({int(p) for p in args.procs.split(",")})
    seconds = args.seconds or (0.05 if args.quick else 2.0)
    reps = args.reps or (1 if args.quick else 5)
    max_runs = args.max_runs or (2_000 if args.quick else 500_000)
    if args.peers is None:
        wanted = ["optuna"] if args.quick else ["optuna", "mlflow"]
    else:
        wanted = [] if args.peers == "none" else [p.strip() for p in args.peers.split(",") if p.strip()]
    peers = [p for p in wanted if installed(p)]

    work = Path(tempfile.mkdtemp(prefix="exptrack-write-", dir=args.dir))
    print(environment_line(work))
    print(f"{reps} x {seconds:g} s (or {max_runs:,} runs) per case; batched = {args.batch} runs per call; "
          f"procs {procs}")
    for peer in ("optuna", "mlflow"):
        if peer not in peers:
            reason = "not installed" if not installed(peer) else "not selected" + (" (--quick)" if args.quick else "")
            print(f"peer {peer}: {reason}")

    kinds = ("flush-only-single", "flush-only-batched", "durable-single", "durable-batched")
    chosen = set(kinds) if args.cases is None else {c.strip() for c in args.cases.split(",") if c.strip()}
    if not chosen <= set(kinds):
        parser.error(f"--cases takes {', '.join(kinds)}; not {', '.join(sorted(chosen - set(kinds)))}")
    cases = []
    for durable in (False, True):
        for batched in (False, True):
            if f"{'durable' if durable else 'flush-only'}-{'batched' if batched else 'single'}" not in chosen:
                continue
            for writer in WRITERS:
                if writer in ("optuna", "mlflow") and writer not in peers:
                    continue
                if writer in ("optuna", "mlflow") and not durable:
                    continue  # both always sync: they have no flush-only mode
                if writer == "mlflow" and batched:
                    continue  # no API to create several runs in one call
                cases.extend(Case(writer, durable, batched, p) for p in procs)

    workers = Workers(max(procs), procs)
    measured: dict[Case, list[float]] = {}
    checks: dict[Case, str] = {}
    cpu_per_run: dict[Case, float] = {}
    failed = False
    try:
        template = work / "mlflow-template"
        if "mlflow" in peers:
            _prepare_mlflow(template)
        for case in cases:
            rates, cpu = [], []
            for rep in range(reps):
                path = work / f"{case.writer}-{case.mode}-{case.appends}-{case.procs}-{rep}"
                if case.writer == "mlflow":
                    shutil.copytree(template, path)
                else:
                    path.mkdir()
                try:
                    results = workers.run(case, str(path), seconds, args.batch, max_runs)
                except RuntimeError as exc:
                    print(f"{case}: {exc}", file=sys.stderr)
                    checks[case] = "error"
                    failed = True
                    break
                total = sum(r[0] for r in results)
                wall = max(r[2] for r in results) - min(r[1] for r in results)
                rates.append(total / wall)
                cpu.append(sum(r[3] for r in results) / total * 1e6)
                check = verify(case, str(path), total)
                if check != "ok":
                    failed = True
                    checks[case] = check
                checks.setdefault(case, "ok")
                shutil.rmtree(path, ignore_errors=True)
            if rates:
                measured[case] = rates
                cpu_per_run[case] = summarize(cpu)[0]
    finally:
        workers.close()
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for case, rates in measured.items():
        med, low, high = summarize(rates)
        raw = measured.get(Case("raw", case.durable, case.batched, case.procs))
        share = f"{100 * med / summarize(raw)[0]:.0f}%" if raw and case.writer != "raw" else "-"
        rows.append([case.mode, case.appends, _LABELS[case.writer], case.procs, med, low, high, share,
                     cpu_per_run[case], checks[case]])
    print_table(
        ["mode", "appends", "writer", "procs", "runs/s median", "min", "max", "of raw", "CPU us/run", "verified"],
        rows,
        title="Write throughput (runs/s; wall time from the start barrier to the last writer's end)",
    )
    matrix = []
    for durable in (False, True):
        for batched in (False, True):
            for writer in WRITERS:
                cells = [measured.get(Case(writer, durable, batched, p)) for p in procs]
                if any(cells):
                    label = f"{'durable' if durable else 'flush-only'} {'batched' if batched else 'single'}"
                    matrix.append([f"{label} {_LABELS[writer]}", *(summarize(c)[0] if c else None for c in cells)])
    print_table(["median runs/s", *(f"{p} procs" for p in procs)], matrix, title="Summary (medians)")
    _print_goals(measured, procs)
    print("CPU us/run: CPU time of the writer processes per run (all processes together): unlike runs/s it "
          "does not depend on the machine's other load")
    print(f"every case verified (line count, every line decodes): {'NO' if failed else 'yes'}; {load_average()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
