"""Resuming a killed or failed run: its history continues, its new record supersedes the old one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from exptrack import ExperimentTracker, InvalidRecordError
from exptrack.repro.check import check_store


def preempted(tracker: ExperimentTracker, steps: int = 5) -> str:
    run = tracker.start_run({"lr": 0.1}, tags=["a"], capture=False, name="long")
    try:
        with run:
            for step in range(steps):
                run.log_metric("loss", 1.0 / (step + 1), step=step)
            run.log_artifact_bytes(b"ckpt", "ckpt.bin")
            raise RuntimeError("preempted")
    except RuntimeError:
        pass
    assert tracker.get_run(run.run_id).status == "failed"
    return run.run_id


def test_resume_continues_after_the_last_step_and_supersedes(tracker: ExperimentTracker) -> None:
    run_id = preempted(tracker)
    tracker.set_tags(run_id, add=["restarted"])
    with tracker.start_run(resume="long", capture=False) as run:
        run.log_metric("loss", 0.1)  # no step: the one after the last
    merged = tracker.get_run(run_id)
    assert (merged.status, merged.extra["resumed"], merged.name) == ("finished", 1, "long")
    assert merged.params == {"lr": 0.1}
    assert merged.tags == ("a", "restarted")
    assert [p["step"] for p in tracker.history(run_id)] == [0, 1, 2, 3, 4, 5]
    assert tracker.load_artifact(run_id, "ckpt.bin") == b"ckpt"
    assert [run.run_id for run in tracker.runs()] == [run_id]  # once, with its latest record
    assert tracker.summary()["total_runs"] == 1
    assert tracker.corrupt_lines() == []
    assert tracker.best_run("loss").extra["resumed"] == 1
    assert check_store(tracker.store).ok


def test_resume_from_an_earlier_step_drops_the_later_points(tracker: ExperimentTracker) -> None:
    run_id = preempted(tracker)
    with tracker.start_run(resume=run_id, step=2, capture=False) as run:
        for step in (2, 3):
            run.log_metric("loss", 0.01 * step, step=step)
    points = [(p["step"], p["value"]) for p in tracker.history(run_id)]
    assert points == [(0, 1.0), (1, 0.5), (2, 0.02), (3, 0.03)]
    stored = tracker.get_run(run_id)
    assert stored.metrics == {"loss": 0.03}
    assert stored.extra["history"]["loss"]["count"] == 4


def test_resumed_twice_and_compacted(tracker: ExperimentTracker) -> None:
    run_id = preempted(tracker)
    for _ in range(2):
        with tracker.start_run(resume=run_id, capture=False) as run:
            run.log_metric("loss", 0.05)
    assert tracker.get_run(run_id).extra["resumed"] == 2
    report = tracker.compact()
    assert report["lines_dropped"] == 2  # the superseded records
    lines = [json.loads(line) for line in tracker.runs_path.read_bytes().splitlines()]
    assert len(lines) == 1
    assert "kind" not in lines[0]
    assert "resumed" not in lines[0]
    assert tracker.get_run(run_id).status == "finished"


def test_an_accidental_duplicate_is_still_first_wins_and_reported(tracker: ExperimentTracker) -> None:
    run = tracker.log_run(metrics={"accuracy": 0.5})
    with tracker.runs_path.open("ab") as handle:
        handle.write(tracker.runs_path.read_bytes())  # the file concatenated with itself
    assert tracker.get_run(run.run_id).offset == 0
    assert [c.reason.split(" (")[0] for c in tracker.corrupt_lines()] == [f"duplicate run_id {run.run_id}"]


def test_step_without_resume_is_refused(tracker: ExperimentTracker) -> None:
    with pytest.raises(InvalidRecordError, match="resume"):
        tracker.start_run(step=3)


CHILD = """
import sys, time
from exptrack import ExperimentTracker
tracker = ExperimentTracker(sys.argv[1], durable=False)
with tracker.start_run(resume=sys.argv[2], capture=False) as run:
    run.log_metric("loss", 0.2)
    print("in", flush=True)
    time.sleep(60)
"""


def test_a_resumed_run_killed_again_is_recovered_as_killed(tracker: ExperimentTracker) -> None:
    run_id = preempted(tracker)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tracker.store), run_id], stdout=subprocess.PIPE,
                             env=env)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"in"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    recovered = tracker.recover()
    assert [run.run_id for run in recovered] == [run_id]
    stored = tracker.get_run(run_id)
    assert (stored.status, stored.extra["resumed"]) == ("killed", 1)
    assert [p["step"] for p in tracker.history(run_id)] == [0, 1, 2, 3, 4, 5]
    assert tracker.recover() == []


def test_resume_in_another_experiment_keeps_the_runs(store: Path) -> None:
    ExperimentTracker(store, durable=False, experiment="wine").log_run(name="w1")
    with ExperimentTracker(store, durable=False, experiment="wine").start_run(resume="w1", capture=False):
        pass
    assert ExperimentTracker(store).get_run("w1").experiment == "wine"
