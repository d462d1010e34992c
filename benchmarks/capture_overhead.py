"""What reproducibility capture adds to a run: code, system, invocation and data fingerprints.

The last rows time a whole ``with tracker.start_run(...)`` block in a clean repository with the
data fingerprint and system facts already cached, next to the same block without capture and a
plain ``log_run``: what a user pays per run.

A baseline, not a gate. Raw floors are measured in the same run (one ``git status`` process,
``hashlib`` over the file) and the script checks that capture agrees with them.

    python benchmarks/capture_overhead.py            # 100 MB data file, 20 repetitions
    python benchmarks/capture_overhead.py --quick    # 10 MB, 3 repetitions

The data file is freshly written, so "first hash" reads from the page cache: it measures
hashing, not the disk.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import timed

from exptrack.capture import (
    FingerprintCache,
    capture_code,
    capture_invocation,
    capture_system,
    fingerprint_data,
)
from exptrack.capture import system as system_capture
from exptrack.store.logs import detach_store_log
from exptrack.tracker import ExperimentTracker

if TYPE_CHECKING:
    from collections.abc import Callable

GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def make_repo(root: Path) -> None:
    env = {**os.environ, **GIT_ENV, "HOME": str(root.parent)}

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args],
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
        )

    root.mkdir()
    for i in range(50):
        (root / f"module_{i}.py").write_text(f"VALUE = {i}\n" * 20)
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "bench")
    (root / "module_0.py").write_text("VALUE = 'edited'\n")  # a typical dirty tree: one edit


def raw_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def clear_system_caches() -> None:
    system_capture._installed_packages.cache_clear()
    system_capture._cpu_model.cache_clear()
    system_capture._query_gpus.cache_clear()


def environment_line() -> str:
    git = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    cpu = system_capture._cpu_model() or platform.machine()
    return (
        f"python {platform.python_version()} ({platform.python_implementation()}) | {platform.platform()} | "
        f"{cpu} x{os.cpu_count()} | {git or 'git missing'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 MB file, 3 repetitions")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per measurement")
    args = parser.parse_args()
    reps = args.reps or (3 if args.quick else 20)
    size_mb = 10 if args.quick else 100

    print(environment_line())
    rows: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="exptrack-bench-") as tmp:
        work = Path(tmp)
        repo = work / "repo"
        make_repo(repo)
        data = work / "train.bin"
        with open(data, "wb") as handle:
            for _ in range(size_mb):
                handle.write(os.urandom(1 << 20))
        past = time.time_ns() - 3600 * 10**9  # an hour old: files written seconds ago are never cached
        os.utime(data, ns=(past, past))
        cache = FingerprintCache(work / "fingerprints.json")
        fingerprint_data([data], cache=cache)  # warm the cache

        status = ["git", "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all"]
        rows.append(
            (
                "git status process (floor)",
                timed(lambda: subprocess.run(status, cwd=repo, capture_output=True, check=True), reps),
            )
        )
        rows.append(("capture_code (temp repo, dirty)", timed(lambda: capture_code(repo), reps)))
        here = Path(__file__).resolve().parent.parent
        checkout = capture_code(here).info.get("error") or "ok"
        rows.append((f"capture_code (this checkout: {checkout})", timed(lambda: capture_code(here), reps)))
        rows.append(("capture_system (first call)", timed(capture_system, reps, before=clear_system_caches)))
        rows.append(("capture_system (cached)", timed(capture_system, reps)))
        rows.append(("capture_invocation", timed(capture_invocation, reps)))
        hash_reps = max(3, reps // 4)
        rows.append((f"hashlib over {size_mb} MB (floor)", timed(lambda: raw_sha256(data), hash_reps)))
        rows.append(
            (f"fingerprint_data {size_mb} MB, first hash", timed(lambda: fingerprint_data([data]), hash_reps))
        )
        rows.append(
            (
                f"fingerprint_data {size_mb} MB, cached",
                timed(lambda: fingerprint_data([data], cache=cache), reps),
            )
        )

        def typical() -> None:
            capture_code(repo)
            capture_system()
            capture_invocation(seed=42)
            fingerprint_data([data], cache=FingerprintCache(work / "fingerprints.json"))

        rows.append(("typical run capture (code+system+invocation+data)", timed(typical, reps)))

        clean = work / "clean"
        make_repo(clean)
        subprocess.run(["git", "checkout", "-q", "--", "."], cwd=clean, check=True, capture_output=True)
        store = work / "store"
        tracker = ExperimentTracker(store)

        def run_block(capture: bool) -> Callable[[], None]:
            def block() -> None:
                with tracker.start_run({"lr": 0.1}, data=[data], seed=42, capture=capture) as run:
                    run.log_metric("accuracy", 0.9)

            return block

        previous = os.getcwd()
        os.chdir(clean)  # code capture records the current directory's repository
        try:
            rows.append(("log_run, no capture (floor)", timed(lambda: tracker.log_run({"lr": 0.1}, {"a": 0.9}), reps)))
            rows.append(("start_run block, capture=False", timed(run_block(False), reps)))
            run_block(True)()  # the first run stores the package list
            rows.append(("start_run block end to end (clean repo, cached)", timed(run_block(True), reps)))
        finally:
            os.chdir(previous)
        last = list(tracker.runs())[-1]
        clean_head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=clean, capture_output=True, text=True, check=True
        ).stdout.strip()
        tracker.close()
        detach_store_log(str(store))

        # answers must agree with the floors, or the timings mean nothing
        fingerprint = fingerprint_data([data], cache=cache)
        expected = raw_sha256(data)
        paths = fingerprint["paths"]
        agree = isinstance(paths, dict) and paths[str(data)]["sha256"] == expected
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        )
        agree = agree and capture_code(repo).info["commit"] == head.stdout.strip()
        agree = agree and capture_system().packages == capture_system().packages
        agree = agree and last.extra["code"]["commit"] == clean_head and last.extra["code"]["dirty"] is False
        agree = agree and last.extra["data"]["paths"][str(data)]["sha256"] == expected

    width = max(len(name) for name, _ in rows)
    print(f"{'measurement':<{width}}  {'reps':>4}  {'median ms':>10}  {'min ms':>9}  {'max ms':>9}")
    for name, times in rows:
        ms = [t * 1000 for t in times]
        print(
            f"{name:<{width}}  {len(ms):>4}  {statistics.median(ms):>10.2f}  {min(ms):>9.2f}  {max(ms):>9.2f}"
        )
    print(f"answers agree with the floors: {'yes' if agree else 'NO'}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
