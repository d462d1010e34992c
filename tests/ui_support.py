"""Helpers for the web view's tests: a live ``exptrack ui`` subprocess and a store with hostile data."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from exptrack import ExperimentTracker

HANG_GUARD = 60.0  # seconds; only stops a server that never came up
XSS_PARAM = "<img src=x onerror=alert(1)>"
XSS_TAG = "</script><script>alert(2)</script>"
XSS_METRIC = "acc<svg onload=alert(3)>"
XSS_NOTE = "<!-- </script><img src=x onerror=alert(4)> \u2028\u2029"
XSS_RUN_ID = "<img src=x onerror=alert(5)>"
MODEL_BYTES = b"\x80\x04 not really a pickle " * 10


def hostile_store(store: Path, n: int = 40) -> tuple[ExperimentTracker, list[str]]:
    """A store whose params, tags, metric names, sections, notes and a run id carry script payloads.

    Returns the tracker and the ids of its valid runs in log order.  The hostile run id is a line
    written by hand (no checksum); a reader that refuses such ids reports it as corrupt instead,
    and then it is simply not among the runs.
    """
    tracker = ExperimentTracker(store, durable=False)
    items = []
    for i in range(n):
        params: dict[str, object] = {"model": ["rf", "svm", XSS_PARAM][i % 3], "lr": 0.001 * (i + 1)}
        if i % 4:
            params["depth"] = [2, 4, 8][i % 3]
        items.append({"params": params, "metrics": {"accuracy": 0.5 + i / 100, XSS_METRIC: i / 10},
                      "tags": [XSS_TAG, f"batch={i // 10}"], "extra": {"note_text": XSS_NOTE}})
    ids = [run.run_id for run in tracker.log_runs(items)]
    with tracker.start_run(params={"lr": 0.05, "model": XSS_PARAM}, capture=False) as run:
        for step in range(60):
            run.log_metric("val_loss", 1.0 / (step + 1), step=step)
        run.log_metric("accuracy", 0.97)
        model = store.parent / "model.pkl"
        model.write_bytes(MODEL_BYTES)
        run.log_artifact(model)
    ids.append(run.run_id)
    line = {"schema": 1, "run_id": XSS_RUN_ID, "timestamp": "2026-01-01T00:00:00Z", "status": "finished",
            "params": {"model": XSS_PARAM, "lr": 0.5}, "metrics": {"accuracy": 0.01}, "tags": [XSS_TAG]}
    with open(store / "runs.jsonl", "ab") as log:
        log.write(json.dumps(line).encode() + b"\n")
    set_note = getattr(tracker, "set_note", None)
    if callable(set_note):  # notes, once runs have them
        set_note(ids[0], XSS_NOTE)
    return tracker, [r.run_id for r in tracker.runs()]


def exptrack_command() -> list[str]:
    script = shutil.which("exptrack")
    return [script] if script else [sys.executable, "-m", "exptrack"]


@contextmanager
def live_ui(store: Path, *extra: str) -> Iterator[str]:
    """``exptrack ui --port 0 --no-browser`` in a subprocess; yields its announced URL."""
    with subprocess.Popen(
        [*exptrack_command(), "--store", str(store), "ui", "--port", "0", "--no-browser", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        yield from _announced(process)


def _announced(process: subprocess.Popen[str]) -> Iterator[str]:
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + HANG_GUARD
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"(http://\S+/)", line)
            if match:
                yield match[1]
                return
        raise AssertionError("exptrack ui did not announce its URL: " + "".join(lines))
    finally:
        process.terminate()
        try:
            process.wait(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
