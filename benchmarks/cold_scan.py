"""Cold scan: the first ``best`` on a store without an index, against DuckDB and the read limits, and its peak memory.

A baseline, not a gate (issue 13, goal 2).  For each history size (``scripts/generate_history.py``,
the same seed and layout as ``query_history.py``, so ``--workdir`` can share histories), every
repetition of an exptrack measurement is a fresh process -- as a CLI invocation is -- that
deletes ``<store>/.index`` and asks ``best_run("accuracy", status="any")``: the index is built
from the whole log, every line's checksum verified.  Timed inside that process (interpreter
start-up excluded, as for DuckDB, which runs in this process); its peak RSS (``VmHWM``, imports
included) and the largest helper's (``RUSAGE_CHILDREN``: the forked reader of the second half,
whose count starts from the RSS it shares with the process that forked it) are recorded.

Variants: the default (msgspec line decoder when the ``fast`` extra is installed, both cores),
orjson alone (the decoder disabled), one core.  Peers and limits in the same run: DuckDB
``read_json`` (the same query as ``query_history.py``), reading the file's bytes, reading plus a
CRC-32 per line (the checksum floor) and reading plus msgspec decoding only ``run_id`` and
``metrics`` (a decoder floor).  Every answer must equal a stdlib ``json`` loop's.

    python benchmarks/cold_scan.py                                   # 100k and 1M runs
    python benchmarks/cold_scan.py --quick                           # 2k and 10k runs, seconds
    python benchmarks/cold_scan.py --sizes 1000000 --workdir /var/tmp/eh
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from functools import partial as bind
from pathlib import Path
from typing import Any

from _common import ROOT, environment_line, generated_log, load_average, print_table, read_bytes, summarize

sys.path.insert(0, str(ROOT / "scripts"))

from query_history import duckdb_answer, json_answers

HANG_GUARD = 900.0  # seconds for one fresh-process query: longer is a hang, not a slow run
VARIANTS = {
    "exptrack cold best (default: msgspec if installed, 2 cores)": "",
    "exptrack cold best (orjson only)": "partial._missing = True\n",
    "exptrack cold best (one core)": "parallel.PARALLEL_MIN_BYTES = 1 << 62\n",
}
_PROBE = """
import json, resource, shutil, sys, time
from pathlib import Path
from exptrack import ExperimentTracker
from exptrack.store import parallel, partial
{setup}
store = Path(sys.argv[1])
shutil.rmtree(store / ".index", ignore_errors=True)
tracker = ExperimentTracker(store)
start = time.perf_counter()
best = tracker.best_run("accuracy", status="any").run_id
seconds = time.perf_counter() - start
# VmHWM, not ru_maxrss: that one starts at the RSS of the process that ran this one (exec keeps it)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"seconds": seconds, "answer": best, "decoder": partial.decoder() is not None,
                  "self_mib": peak / 1024,
                  "helper_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""


def probe(store: Path, setup: str) -> dict[str, Any]:
    """One cold ``best`` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", _PROBE.format(setup=setup), str(store)], capture_output=True,
                          text=True, timeout=HANG_GUARD, check=False, env=env)
    if done.returncode:
        raise RuntimeError(f"probe failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def read_and_crc(path: Path) -> int:
    """Read plus one CRC-32 per line: the floor of any reader that verifies every checksum."""
    count = 0
    crc = zlib.crc32
    with open(path, "rb", buffering=1 << 20) as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            count += len(list(map(crc, chunk.split(b"\n"))))
    return count


def read_and_decode_floor(path: Path) -> str:
    """Read plus msgspec decoding only ``run_id`` and ``metrics`` per line, keeping the best accuracy."""
    import msgspec

    class Line(msgspec.Struct, gc=False):
        run_id: str
        metrics: dict[str, Any]

    decode = msgspec.json.Decoder(Line).decode
    best = (-float("inf"), "")
    carry = b""
    with open(path, "rb", buffering=0) as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            lines = (carry + chunk).split(b"\n")
            carry = lines.pop()
            for line in map(decode, lines):
                value = line.metrics.get("accuracy")
                if type(value) is float and value > best[0]:
                    best = (value, line.run_id)
    return best[1]


def measured(fn: Any, reps: int, budget: float) -> tuple[list[float], Any]:
    times: list[float] = []
    answer = None
    while len(times) < reps and (not times or sum(times) < budget):
        start = time.perf_counter()
        answer = fn()
        times.append(time.perf_counter() - start)
    return times, answer


def history(work: Path, n: int) -> Path:
    """A store holding ``n`` generated runs (generated once per work directory)."""
    log = generated_log(work, n)
    store = work / f"cold-store-{n}"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir()
    os.link(log, store / "runs.jsonl")  # the same bytes; the index goes in this store
    return store


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k and 10k runs, two repetitions")
    parser.add_argument("--sizes", default=None, help="comma list of history sizes (default 100000,1000000)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per measurement (default 5; quick 2)")
    parser.add_argument("--budget", type=float, default=120.0,
                        help="stop repeating a measurement after this many seconds (default 120)")
    parser.add_argument("--workdir", default=None,
                        help="keep generated histories here and reuse them (default: a temp dir)")
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or ("2000,10000" if args.quick else "100000,1000000")).split(",")]
    reps = args.reps or (2 if args.quick else 5)
    have_duckdb = importlib.util.find_spec("duckdb") is not None
    have_msgspec = importlib.util.find_spec("msgspec") is not None
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="exptrack-cold-"))
    work.mkdir(parents=True, exist_ok=True)
    print(environment_line(work))
    print(f"{reps} repetitions per measurement (fewer past {args.budget:g} s); sizes {sizes}; "
          f"duckdb {'installed' if have_duckdb else 'not installed'}; "
          f"msgspec {'installed' if have_msgspec else 'not installed (the default is orjson only)'}")

    rows: list[list[object]] = []
    memory: list[list[object]] = []
    ratios: list[str] = []
    peaks: dict[int, tuple[float, float]] = {}
    problems: list[str] = []
    try:
        for n in sizes:
            store = history(work, n)
            path = store / "runs.jsonl"
            tag = f"{n:,} runs"
            expected = json_answers(path, ("best",))["best"]
            timings: dict[str, list[float]] = {}
            answers: dict[str, Any] = {}
            if have_duckdb:
                timings["duckdb read_json (peer)"], answers["duckdb"] = measured(
                    bind(duckdb_answer, path, "best"), reps, args.budget)
            timings["read the file's bytes (raw limit)"], _ = measured(bind(read_bytes, path), reps, args.budget)
            timings["read + CRC-32 per line (checksum floor)"], _ = measured(
                bind(read_and_crc, path), reps, args.budget)
            if have_msgspec:
                timings["read + msgspec run_id/metrics (decoder floor)"], answers["floor"] = measured(
                    bind(read_and_decode_floor, path), reps, args.budget)
            for label, setup in VARIANTS.items():
                results: list[dict[str, Any]] = []
                while len(results) < reps and (not results or sum(r["seconds"] for r in results) < args.budget):
                    results.append(probe(store, setup))
                timings[label] = [r["seconds"] for r in results]
                answers[label] = {r["answer"] for r in results}
                self_peak = summarize([r["self_mib"] for r in results])
                helper_peak = summarize([r["helper_mib"] for r in results])
                memory.append([tag, label, len(results), *self_peak, *helper_peak])
                if setup == "":
                    peaks[n] = (self_peak[0], helper_peak[0])
            for who, answer in answers.items():
                got = answer if isinstance(answer, set) else {answer}
                if got != {expected}:
                    problems.append(f"{tag}: {who} answered {sorted(got)}, the json loop {expected!r}")
            duck = summarize(timings["duckdb read_json (peer)"])[0] if have_duckdb else None
            raw = summarize(timings["read the file's bytes (raw limit)"])[0]
            for label, times in timings.items():
                med, low, high = summarize(times)
                rows.append([tag, label, len(times), med * 1000, low * 1000, high * 1000, med / raw,
                             med / duck if duck else None])
            if duck:
                cold = summarize(timings[next(iter(VARIANTS))])[0]
                ratios.append(f"{tag}: cold best {cold:.2f} s vs DuckDB {duck:.2f} s = {cold / duck:.2f}x "
                              f"(target <= 1.5x)")
            shutil.rmtree(store, ignore_errors=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    if problems:
        print("\nANSWERS DISAGREE:")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print_table(["history", "system", "reps", "median ms", "min ms", "max ms", "x raw read", "x duckdb"], rows,
                title="Cold best (no index; every line's checksum verified), answers checked")
    print_table(["history", "variant", "reps", "peak RSS MiB", "min", "max", "helper peak MiB", "min", "max"],
                memory, title="Peak RSS of the cold build, fresh process (helper: the forked reader)")
    if len(peaks) > 1:
        small, large = min(peaks), max(peaks)
        (self_small, helper_small), (self_large, helper_large) = peaks[small], peaks[large]
        ratios.append(f"peak RSS {large:,} vs {small:,} runs: {self_large:.0f} / {self_small:.0f} MiB = "
                      f"{self_large / self_small:.2f}x; helper {helper_large:.0f} / {helper_small:.0f} MiB "
                      f"(target <= 1.5x)")
    for line in ratios:
        print(line)
    print(f"answers agree: yes; {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
