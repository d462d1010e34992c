"""The README's demo: a parallel search that records everything needed to get its best run back."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from exptrack import ExperimentTracker
from exptrack.cli import cli
from exptrack.store.logs import detach_store_log

ROOT = Path(__file__).resolve().parent.parent
HANG_GUARD = 600.0  # seconds; a hung worker pool must not hang the suite (not a speed check)


def test_demo_records_capture_and_ends_with_how_to_reproduce(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    # run as a person does: no --store, in a directory of their own; the printed commands must
    # then work as shown from that same directory
    store = tmp_path / "experiments"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("EXPTRACK_STORE", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--trials", "8", "--workers", "4"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for heading in ("== best run (accuracy) ==", "== top 5 by accuracy ==", "== summary ==",
                    "== get the best run back (run these from this directory) =="):
        assert heading in out
    summary_block = out.split("== summary ==", 1)[1]
    assert "runs: 8" in summary_block
    assert "accuracy" in summary_block
    assert "best model loaded back from the store (sha256 verified)" in out
    browser = out.split("== see and compare the runs in a browser", 1)[1].split("== get the best run back", 1)[0]
    assert "exptrack ui" in browser
    assert "http://127.0.0.1:5177" in browser
    assert "exptrack report -o report.html" in browser

    try:
        check_store_and_instructions(store, out, tmp_path, env)
    finally:
        detach_store_log(str(store))  # the tracker here and the one the CLI opened


def check_store_and_instructions(store: Path, out: str, tmp_path: Path, env: dict[str, str]) -> None:
    tracker = ExperimentTracker(store)
    runs = list(tracker.runs())
    best = tracker.best_run("accuracy")
    top = tracker.top_runs("accuracy", k=5)
    assert len(runs) == 8
    assert {run.status for run in runs} == {"finished"}
    best_block = out.split("== best run (accuracy) ==", 1)[1].split("== top 5", 1)[0]
    assert f"run        {best.run_id}" in best_block
    top_block = out.split("== top 5 by accuracy ==", 1)[1].split("== summary ==", 1)[0]
    positions = [top_block.find(run.run_id) for run in top]
    assert -1 not in positions
    assert positions == sorted(positions)  # best first

    # the output ends with the commands that take it from there, exactly as a person types them
    tail = out.rstrip("\n").split("== get the best run back (run these from this directory) ==", 1)[1]
    commands = [line.strip() for line in tail.strip("\n").splitlines()]
    assert commands == [
        "exptrack best accuracy",
        "exptrack top accuracy -k 5",
        f"exptrack show {best.run_id}",
        f"exptrack reproduce {best.run_id} --artifact model.pkl --out best_model.pkl",
        f"exptrack diff {best.run_id} {top[-1].run_id}",
    ]
    script = shutil.which("exptrack")
    assert script is not None, "the exptrack console script is not installed (pip install -e .)"
    for command in commands:
        done = subprocess.run([script, *shlex.split(command)[1:]], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=HANG_GUARD, check=False)
        # reproduce exits 3 when this checkout has moved on since the demo's runs
        assert done.returncode in ((0, 3) if "reproduce" in command else (0,)), (command, done.stderr)
        assert "no exptrack store" not in done.stderr
        if command.startswith(("exptrack best", "exptrack show", "exptrack reproduce")):
            assert best.run_id[:8] in done.stdout, command
    fetched = (tmp_path / "best_model.pkl").read_bytes()
    assert fetched == tracker.load_artifact(best.run_id, "model.pkl")

    # the same commands with the store named after the subcommand, from anywhere
    result = CliRunner().invoke(cli, ["best", "accuracy", "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert best.run_id[:8] in result.stdout

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
