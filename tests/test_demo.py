"""The README's demo: a parallel search that records everything needed to get its best run back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exptrack import ExperimentTracker
from exptrack.logs import detach_store_log

ROOT = Path(__file__).resolve().parent.parent
HANG_GUARD = 600.0  # seconds; a hung worker pool must not hang the suite (not a speed check)


def test_demo_records_capture_and_ends_with_how_to_reproduce(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    store = tmp_path / "demo-store"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--store", str(store), "--trials", "8", "--workers", "4"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for heading in ("== best run (accuracy) ==", "== top 5 by accuracy ==", "== summary ==",
                    "== get the best run back =="):
        assert heading in out
    assert "runs: 8   corrupt lines skipped: 0" in out
    assert "best model loaded back from the store (sha256 verified)" in out

    try:
        tracker = ExperimentTracker(store)
        runs = list(tracker.runs())
        best = tracker.best_run("accuracy")
        top = tracker.top_runs("accuracy", k=5)
    finally:
        detach_store_log(str(store))
    assert len(runs) == 8
    assert {run.status for run in runs} == {"finished"}
    best_block = out.split("== best run (accuracy) ==", 1)[1].split("== top 5", 1)[0]
    assert f"run        {best.run_id}" in best_block
    top_block = out.split("== top 5 by accuracy ==", 1)[1].split("== summary ==", 1)[0]
    assert [line.split()[0] for line in top_block.strip().splitlines()[1:]] == [run.run_id for run in top]

    # the output ends by showing how to get the best run back
    tail = out.rstrip("\n").splitlines()[-3:]
    assert tail == [
        f"  exptrack --store {store} show {best.run_id}",
        f"  exptrack --store {store} reproduce {best.run_id} --artifact model.pkl --out best_model.pkl",
        f"  exptrack --store {store} diff {best.run_id} {top[-1].run_id}",
    ]

    data_file = str(store / "data" / "wine.csv")
    for run in runs:
        assert {"code", "system", "invocation", "data", "history", "artifacts"} <= set(run.extra)
        data = run.extra["data"]["paths"]
        (entry,) = data.values()
        assert entry["type"] == "file"
        assert len(entry["sha256"]) == 64
        assert "commit" in run.extra["code"]  # a commit, or the reason there is none
        assert run.extra["system"]["python_version"]
        assert run.extra["system"]["packages_sha256"]
        assert run.extra["invocation"]["seed"] == run.params["seed"]
        assert run.extra["history"]["fold_accuracy"]["count"] == 5
        model = run.extra["artifacts"]["model.pkl"]
        assert model["size"] > 0
        assert tracker.artifact_store.exists(model["sha256"])
    fingerprints = {next(iter(run.extra["data"]["paths"].values()))["sha256"] for run in runs}
    assert len(fingerprints) == 1  # every worker saw the same data
    assert Path(data_file).exists()
