"""Run lifecycle at scale: edits (tag, note, delete) and gc on a large store, against a plain copy of the log.

What it measures, on a store of ``--runs`` generated runs (default 1,000,000), each row the median
[min-max] of ``--reps`` repetitions (>= 5):

* ``set_tags`` / ``set_note`` on a warm store (the call: lookup of the run, one appended line,
  the merged run read back), and the first ``best_run`` after it (the index folds the new line in;
  a tag edit needs no recomputation);
* ``delete_runs`` of the best run, and the first ``best_run`` after it: a deletion makes the
  index recompute its answers without the hidden records (a pass over the log), then warm again;
* ``gc`` (``tracker.compact()``) in a fresh process: time and peak RSS, next to the raw limit, a
  plain copy of the log (``shutil.copyfile`` + ``fsync``) in a fresh process.

Answers are checked: the deleted best never comes back, gc keeps every visible run exactly (count,
best, tags), and the copy equals the log.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, environment_line, print_table, summarize, timed

GC_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[2])
from exptrack import ExperimentTracker
tracker = ExperimentTracker(sys.argv[1], durable=True)
start = time.perf_counter()
report = tracker.compact()
elapsed = time.perf_counter() - start
peak = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0] / 1024
print(json.dumps({"seconds": elapsed, "peak_mb": peak, "kept": report["runs_kept"], "removed": report["runs_removed"]}))
"""

COPY_CHILD = """
import json, os, shutil, sys, time
start = time.perf_counter()
shutil.copyfile(sys.argv[1], sys.argv[2])
fd = os.open(sys.argv[2], os.O_RDONLY)
os.fsync(fd)
os.close(fd)
elapsed = time.perf_counter() - start
peak = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0] / 1024
print(json.dumps({"seconds": elapsed, "peak_mb": peak}))
"""


def child(code: str, *args: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def row(label: str, values: list[float], unit: str = "ms", scale: float = 1000.0) -> list[object]:
    median, low, high = summarize(values)
    return [label, f"{median * scale:.2f} {unit}", f"[{low * scale:.2f}-{high * scale:.2f}]"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a small store: checks the script still works")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.reps = 3_000, 5
    sys.path.insert(0, str(ROOT / "scripts"))
    sys.path.insert(0, str(ROOT))
    from generate_history import generate

    from exptrack import ExperimentTracker

    work = Path(args.workdir or tempfile.mkdtemp(prefix="exptrack-lifecycle-"))
    print(environment_line(work))
    problems: list[str] = []
    try:
        base = work / "base"
        if not (base / "runs.jsonl").exists():
            started = time.perf_counter()
            generate(base, args.runs, seed=5)
            print(f"generated {args.runs:,} runs ({(base / 'runs.jsonl').stat().st_size / 2**20:,.0f} MiB) "
                  f"in {time.perf_counter() - started:.1f} s")
        tracker = ExperimentTracker(base, durable=False)
        tracker.refresh_index()
        best = tracker.best_run("accuracy")
        ids = [run.run_id for run in tracker.top_runs("accuracy", 20)]
        rows: list[list[object]] = []
        rows.append(row("warm best_run", timed(lambda: tracker.best_run("accuracy"), args.reps)))
        turn = iter(range(10_000))
        rows.append(row("set_tags (one run)", timed(
            lambda: tracker.set_tags(ids[15], add=[f"t{next(turn)}"]), args.reps)))
        rows.append(row("  best_run after a note edit", timed(
            lambda: tracker.best_run("accuracy"), args.reps, before=lambda: tracker.set_note(ids[16], "x"))))
        rows.append(row("set_note (one run)", timed(lambda: tracker.set_note(ids[16], "noted"), args.reps)))
        victims = iter(ids)
        deleted: list[str] = []

        def delete_best() -> None:
            victim = next(victims)
            deleted.append(victim)
            tracker.delete_runs([victim])

        rows.append(row("delete_runs (the best run)", timed(delete_best, args.reps)))
        rows.append(row("  first best_run after it (recompute)", timed(
            lambda: tracker.best_run("accuracy"), args.reps, before=delete_best)))
        rows.append(row("  warm best_run after deletions", timed(lambda: tracker.best_run("accuracy"), args.reps)))
        if tracker.best_run("accuracy").run_id in deleted:
            problems.append("a deleted run came back as best")
        if best.run_id not in deleted:
            problems.append("the benchmark did not delete the best run")
        visible = tracker.count_runs()
        expected_best = tracker.best_run("accuracy").run_id
        tracker.close()
        gc_times, gc_peaks, copy_times, copy_peaks = [], [], [], []
        for rep in range(args.reps):
            target = work / f"gc-{rep}"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(base, target)
            result = child(GC_CHILD, str(target), str(ROOT))
            gc_times.append(result["seconds"])
            gc_peaks.append(result["peak_mb"])
            check = ExperimentTracker(target)
            if result["kept"] != visible or check.count_runs() != visible:
                problems.append(f"gc kept {result['kept']} runs, {visible} were visible")
            if check.best_run("accuracy").run_id != expected_best:
                problems.append("gc changed the best run")
            if "t0" not in check.get_run(ids[15]).tags:
                problems.append("gc lost a tag edit")
            check.close()
            shutil.rmtree(target, ignore_errors=True)
            copied = work / f"copy-{rep}.jsonl"
            result = child(COPY_CHILD, str(base / "runs.jsonl"), str(copied))
            copy_times.append(result["seconds"])
            copy_peaks.append(result["peak_mb"])
            if copied.stat().st_size != (base / "runs.jsonl").stat().st_size:
                problems.append("the copy differs from the log")
            copied.unlink()
        rows.append(row("gc (compact, fresh process)", gc_times, "s", 1.0))
        rows.append(row("  limit: plain copy of the log + fsync", copy_times, "s", 1.0))
        rows.append(["gc peak RSS", f"{summarize(gc_peaks)[0]:.0f} MiB",
                     f"[{min(gc_peaks):.0f}-{max(gc_peaks):.0f}]"])
        rows.append(["  plain copy peak RSS", f"{summarize(copy_peaks)[0]:.0f} MiB",
                     f"[{min(copy_peaks):.0f}-{max(copy_peaks):.0f}]"])
        print_table(["operation", "median", "[min-max]"], rows,
                    title=f"{args.runs:,} runs, {args.reps} repetitions each")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    if problems:
        print("\nANSWERS DISAGREE:\n  " + "\n  ".join(problems))
        return 1
    print("\nanswers checked: the deleted best never came back; gc kept every visible run, the best and the edits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
