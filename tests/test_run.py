"""Live runs: statuses, metric history, capture switches, artifacts, recovery of killed processes."""

from __future__ import annotations

import json
import math
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import git, isolate_git

import exptrack.capture
from exptrack import ArtifactIntegrityError, ExperimentTracker, InvalidRecordError, MissingMetricError, RunNotFoundError
from exptrack.live.run import ActiveRun, process_token

ROOT = Path(__file__).resolve().parent.parent
HANG_GUARD = 60.0  # seconds; only stops a hung child from hanging the suite, never a speed check

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

# A child that starts a run, logs three points, a late param and an artifact, says its run id
# and then waits to be signalled inside the block.
CHILD = textwrap.dedent(
    """
    import sys, time
    from exptrack import ExperimentTracker

    tracker = ExperimentTracker(sys.argv[1])
    with tracker.start_run({"lr": 0.5}, tags=["child"], capture=["invocation"], seed=7) as run:
        for step, loss in enumerate([0.9, 0.4, 0.6]):
            run.log_metric("loss", loss, step=step)
        run.log_param("late", "yes")
        run.log_artifact_bytes(b"weights", "model.bin")
        print(run.run_id, flush=True)
        time.sleep(120)
    """
)


# A child whose run forks a worker: the worker updates the marker, then is sent SIGTERM.
FORKING_CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from exptrack import ExperimentTracker

    tracker = ExperimentTracker(sys.argv[1])
    with tracker.start_run({"lr": 0.5}, capture=False) as run:
        marker = tracker.store / "active" / f"{run.run_id}.json"
        worker = os.fork()
        if worker == 0:
            run.log_param("worker", 1)
            time.sleep(60)
            os._exit(0)
        deadline = time.monotonic() + 30  # hang guard
        while "worker" not in json.loads(marker.read_bytes())["params"] and time.monotonic() < deadline:
            time.sleep(0.01)
        owner = json.loads(marker.read_bytes())["pid"]
        os.kill(worker, signal.SIGTERM)
        _, status = os.waitpid(worker, 0)
        died_by = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        print(json.dumps({"run_id": run.run_id, "owner": owner, "me": os.getpid(), "died_by": died_by}))
    """
)


@pytest.fixture
def tracker(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ExperimentTracker]:
    """A tracker whose runs start in an empty directory outside any repository."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    with ExperimentTracker(store) as tracker:
        yield tracker


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def start_child(store: Path) -> tuple[subprocess.Popen[str], str]:
    env = child_env()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], HANG_GUARD)
    run_id = proc.stdout.readline().strip() if ready else ""
    if not run_id:
        proc.kill()
        _, err = proc.communicate(timeout=HANG_GUARD)
        pytest.fail(f"child never entered its run: {err}")
    return proc, run_id


def stop_child(proc: subprocess.Popen[str], sig: signal.Signals) -> str:
    try:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=HANG_GUARD)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    return err


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed repository, with git isolated from the machine's configuration."""
    isolate_git(tmp_path, monkeypatch)
    root = tmp_path / "repo"
    (root / "src" / "models").mkdir(parents=True)
    (root / "src" / "models" / "train.py").write_text("print('train')\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    return root


# -- statuses --------------------------------------------------------------------------------


def test_block_that_ends_normally_is_recorded_finished(tracker: ExperimentTracker) -> None:
    with tracker.start_run({"lr": 0.1}, tags=["baseline"], name="first", capture=False) as run:
        run.log_metric("accuracy", 0.75)
        run.log_param("epochs", 3)
    stored = tracker.get_run(run.run_id)
    assert stored == run.record
    assert stored.status == "finished"
    assert stored.params == {"lr": 0.1, "epochs": 3}
    assert stored.metrics == {"accuracy": 0.75}
    assert set(stored.tags) == {"baseline"}
    assert stored.name == "first"
    assert "error" not in stored.extra
    assert stored.extra["duration_s"] >= 0
    assert not list((tracker.store / "active").glob("*"))  # the marker is gone


def diverge(run: ActiveRun) -> None:
    run.log_metric("loss", 1e6, step=0)
    raise ValueError("diverged at epoch 3")


def test_exception_is_recorded_failed_with_type_and_message_and_reraised(tracker: ExperimentTracker) -> None:
    with pytest.raises(ValueError, match="diverged at epoch 3"), tracker.start_run({"lr": 9.0}, capture=False) as run:
        diverge(run)
    stored = tracker.get_run(run.run_id)
    assert stored.status == "failed"
    assert stored.extra["error"] == {"type": "ValueError", "message": "diverged at epoch 3"}
    assert stored.metrics == {"loss": 1e6}


def test_keyboard_interrupt_is_recorded_killed_and_reraised(tracker: ExperimentTracker) -> None:
    with pytest.raises(KeyboardInterrupt), tracker.start_run({"lr": 0.1}, capture=False) as run:
        raise KeyboardInterrupt
    stored = tracker.get_run(run.run_id)
    assert stored.status == "killed"
    assert stored.extra["error"]["type"] == "KeyboardInterrupt"


@pytest.mark.parametrize(("code", "status"), [(0, "finished"), (None, "finished"), (2, "failed")])
def test_sys_exit_inside_the_block_is_an_end_not_a_kill(
    tracker: ExperimentTracker, code: int | None, status: str
) -> None:
    with pytest.raises(SystemExit), tracker.start_run(capture=False) as run:
        sys.exit(code)
    assert tracker.get_run(run.run_id).status == status


def test_sigterm_to_a_child_inside_a_block_records_it_killed(store: Path) -> None:
    proc, run_id = start_child(store)
    err = stop_child(proc, signal.SIGTERM)
    assert proc.returncode != 0
    with ExperimentTracker(store) as tracker:
        stored = tracker.get_run(run_id)
        assert stored.status == "killed", err
        assert stored.extra["error"]["type"] == "RunKilledError"
        assert "SIGTERM" in stored.extra["error"]["message"]
        assert stored.params == {"lr": 0.5, "late": "yes"}
        assert stored.metrics == {"loss": 0.6}
        assert "model.bin" in stored.extra["artifacts"]
        assert tracker.recover() == []  # the child logged it itself: nothing left to recover
    assert not list((store / "active").glob("*.json"))


def test_required_metrics_are_enforced_only_for_finished_runs(
    tracker: ExperimentTracker, store: Path
) -> None:
    strict = ExperimentTracker(store, required_metrics=["accuracy"])
    with pytest.raises(MissingMetricError), strict.start_run({"lr": 0.1}, capture=False):
        pass
    with pytest.raises(RuntimeError, match="out of memory"), strict.start_run({"lr": 0.2}, capture=False):
        raise RuntimeError("out of memory")
    with pytest.raises(KeyboardInterrupt), strict.start_run({"lr": 0.3}, capture=False):
        raise KeyboardInterrupt
    with strict.start_run({"lr": 0.4}, capture=False) as run:
        run.log_metric("accuracy", 0.9)
    assert [(r.params["lr"], r.status) for r in tracker.runs()] == [(0.2, "failed"), (0.3, "killed"), (0.4, "finished")]
    assert not list((store / "active").glob("*.json"))  # the refused run left no marker to resurrect
    assert tracker.recover() == []


# -- metric history ----------------------------------------------------------------------------


def test_history_points_go_to_the_side_file_and_the_record_keeps_last_min_max(tracker: ExperimentTracker) -> None:
    losses = [0.9, 0.3, 0.5, 0.7]
    with tracker.start_run(capture=False) as run:
        for step, loss in zip([0, 10, 20, 30], losses):
            run.log_metric("loss", loss, step=step)
        run.log_metric("accuracy", 0.8)  # once, without a step: a final value, not a history
        history_file = tracker.store / "history" / f"{run.run_id}.jsonl"
        # written through before the block ends: a crash now would keep them
        assert [json.loads(line)["value"] for line in history_file.read_text().splitlines()] == [*losses, 0.8]
    points = tracker.history(run.run_id, "loss")
    assert [(p["step"], p["value"]) for p in points] == [(0, 0.9), (10, 0.3), (20, 0.5), (30, 0.7)]
    stored = tracker.get_run(run.run_id)
    assert stored.metrics == {"loss": 0.7, "accuracy": 0.8}
    assert stored.extra["history"] == {
        "loss": {"count": 4, "last": 0.7, "last_step": 30, "min": 0.3, "min_step": 10, "max": 0.9,
                 "max_step": 0, "nonfinite": 0},
    }


def test_steps_default_to_counting_and_accept_numpy_integers(tracker: ExperimentTracker) -> None:
    np = pytest.importorskip("numpy")
    with tracker.start_run(capture=False) as run:
        run.log_metric("a", 1.0)
        run.log_metric("a", 2.0)
        run.log_metric("b", 5.0, step=np.int64(4))
    stored = tracker.get_run(run.run_id)
    assert stored.extra["history"]["a"]["last_step"] == 1
    assert stored.extra["history"]["b"]["last_step"] == 4
    assert [p["step"] for p in tracker.history(run.run_id, "b")] == [4]


@pytest.mark.parametrize("step", [-1, 1.5, True, "3"])
def test_bad_steps_are_rejected_at_the_call(tracker: ExperimentTracker, step: object) -> None:
    with tracker.start_run(capture=False) as run, pytest.raises(InvalidRecordError, match="step"):
        run.log_metric("loss", 0.1, step=step)  # type: ignore[arg-type]


def test_nonfinite_last_value_stays_in_metrics_and_history_counts_it(tracker: ExperimentTracker) -> None:
    with tracker.start_run(capture=False) as run:
        run.log_metric("loss", 0.5, step=0)
        run.log_metric("loss", math.nan, step=1)
    stored = tracker.get_run(run.run_id)
    assert math.isnan(stored.metrics["loss"])
    history = stored.extra["history"]["loss"]
    assert (history["count"], history["nonfinite"], history["last"], history["min"]) == (2, 1, None, 0.5)


# -- recovery -----------------------------------------------------------------------------------


def test_sigkilled_child_keeps_its_history_and_recover_logs_it_once(store: Path) -> None:
    proc, run_id = start_child(store)
    stop_child(proc, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    history_file = store / "history" / f"{run_id}.jsonl"
    assert [json.loads(line)["value"] for line in history_file.read_text().splitlines()] == [0.9, 0.4, 0.6]
    active = store / "active"
    assert sorted(p.name for p in active.iterdir()) == [f"{run_id}.capture", f"{run_id}.json"]
    with ExperimentTracker(store) as tracker:
        assert list(tracker.runs()) == []  # no half record: the run is not in the log yet
        (recovered,) = tracker.recover()
        assert list(active.iterdir()) == []
        assert recovered.run_id == run_id
        stored = tracker.get_run(run_id)
        assert stored == recovered
        assert stored.status == "killed"
        assert stored.extra["error"]["type"] == "ProcessDied"
        assert stored.params == {"lr": 0.5, "late": "yes"}  # the late param reached the marker
        assert stored.tags == ("child",)
        assert stored.metrics == {"loss": 0.6}
        assert stored.extra["history"]["loss"]["min"] == 0.4
        assert stored.extra["history"]["loss"]["min_step"] == 1
        assert stored.extra["invocation"]["seed"] == 7
        assert tracker.load_artifact(run_id, "model.bin") == b"weights"
        assert [p["value"] for p in tracker.history(run_id, "loss")] == [0.9, 0.4, 0.6]
        assert tracker.recover() == []
        assert ExperimentTracker(store).recover() == []
        assert [r.run_id for r in tracker.runs()] == [run_id]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_worker_neither_claims_the_run_nor_catches_its_sigterm(store: Path) -> None:
    done = subprocess.run([sys.executable, "-c", FORKING_CHILD, str(store)], capture_output=True, text=True,
                          env=child_env(), timeout=HANG_GUARD, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["owner"] == result["me"]  # the marker still names the run's own process
    assert result["died_by"] == signal.SIGTERM  # the worker died by the signal, no exception
    with ExperimentTracker(store) as tracker:
        assert tracker.recover() == []
        assert tracker.get_run(result["run_id"]).status == "finished"


@pytest.mark.skipif(not hasattr(os, "WNOWAIT"), reason="needs waitid(WNOWAIT)")
def test_killed_child_not_yet_reaped_is_recovered(store: Path) -> None:
    proc, run_id = start_child(store)
    try:
        proc.kill()
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # dead, but left a zombie
        with ExperimentTracker(store) as tracker:
            assert [run.run_id for run in tracker.recover()] == [run_id]
    finally:
        proc.kill()
        proc.communicate(timeout=HANG_GUARD)


@pytest.mark.skipif(process_token(os.getpid()) is None, reason="needs /proc")
def test_marker_of_a_reused_pid_is_recovered(tracker: ExperimentTracker) -> None:
    """A restarted container gives the next process the same pid: the marker's token tells them apart."""
    active = tracker.store / "active"
    active.mkdir(parents=True)
    base = {"timestamp": "2024-01-01T00:00:00Z", "pid": os.getpid(), "host": socket.gethostname(),
            "params": {"lr": 0.1}, "tags": []}
    earlier = {**base, "run_id": "a" * 32, "process": "another-boot:12345"}
    mine = {**base, "run_id": "b" * 32, "process": process_token(os.getpid())}
    for marker in (earlier, mine):
        (active / f"{marker['run_id']}.json").write_text(json.dumps(marker))
    (recovered,) = tracker.recover()
    assert (recovered.run_id, recovered.status, recovered.params) == ("a" * 32, "killed", {"lr": 0.1})
    assert sorted(p.name for p in active.iterdir()) == [f"{'b' * 32}.json"]  # this process: alive


def test_recover_leaves_a_live_run_alone(tracker: ExperimentTracker) -> None:
    with tracker.start_run({"lr": 0.1}, capture=False) as run:
        assert tracker.recover() == []
        assert (tracker.store / "active" / f"{run.run_id}.json").exists()
    assert tracker.get_run(run.run_id).status == "finished"


def test_recover_does_not_log_again_a_run_that_died_after_its_append(
    tracker: ExperimentTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process died between appending its line and removing its marker."""
    marker_dir = tracker.store / "active"
    with tracker.start_run({"lr": 0.1}, capture=False) as run:
        marker = marker_dir / f"{run.run_id}.json"
        saved = json.loads(marker.read_bytes())
    saved["pid"] = dead_pid()
    marker.write_text(json.dumps(saved))
    assert tracker.recover() == []
    assert not marker.exists()
    assert [r.run_id for r in tracker.runs()] == [run.run_id]


def test_half_written_marker_update_is_never_read_as_a_marker(tracker: ExperimentTracker) -> None:
    with tracker.start_run({"lr": 0.1}, capture=False) as run:
        for i in range(5):
            run.log_param(f"p{i}", i)
        names = sorted(p.name for p in (tracker.store / "active").iterdir())
        assert names == [f"{run.run_id}.json"]  # updates replace the marker, no temp file left
        marker = json.loads((tracker.store / "active" / names[0]).read_bytes())
        assert marker["params"] == {"lr": 0.1, "p0": 0, "p1": 1, "p2": 2, "p3": 3, "p4": 4}


def test_capture_is_saved_once_beside_the_marker_not_in_it(tracker: ExperimentTracker) -> None:
    Path("data").mkdir()
    for i in range(50):
        Path("data", f"part-{i}.csv").write_text(f"{i}\n")
    with tracker.start_run({"lr": 0.1}, data=["data/"], capture=["data"]) as run:
        run.log_param("epochs", 2)
        run.log_artifact_bytes(b"w", "model.bin")
        active = tracker.store / "active"
        marker = json.loads((active / f"{run.run_id}.json").read_bytes())
        assert set(marker) == {"run_id", "timestamp", "pid", "process", "host", "params", "tags", "artifacts", "name",
                               "experiment"}
        assert marker["params"] == {"lr": 0.1, "epochs": 2}
        saved = json.loads((active / f"{run.run_id}.capture").read_bytes())
        assert len(saved["data"]["paths"]["data/"]["entries"]) == 50
    assert list((tracker.store / "active").iterdir()) == []


# -- capture switches ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capture", "sections"),
    [
        (True, {"code", "system", "invocation", "data"}),
        (False, set()),
        (["invocation"], {"invocation"}),
        (["system"], {"system"}),
        (["system", "packages"], {"system"}),
        (["data", "code"], {"data", "code"}),
    ],
)
def test_capture_switches_choose_the_recorded_sections(
    tracker: ExperimentTracker, capture: bool | list[str], sections: set[str]
) -> None:
    Path("train.csv").write_text("x,y\n1,2\n")
    with tracker.start_run(data=["train.csv"], capture=capture) as run:
        pass
    stored = tracker.get_run(run.run_id)
    assert {"code", "system", "invocation", "data"} & set(stored.extra) == sections
    if "system" in sections:
        wants_packages = capture is True or "packages" in capture  # type: ignore[operator]
        assert (stored.extra["system"]["packages_sha256"] is not None) == wants_packages
    if "code" in sections:
        assert stored.extra["code"]["error"] == "not a git repository"


def test_seed_is_kept_even_without_invocation_capture(tracker: ExperimentTracker) -> None:
    with tracker.start_run(seed={"numpy": 1, "torch": 2}, capture=False) as run:
        pass
    assert tracker.get_run(run.run_id).extra["invocation"] == {"seed": {"numpy": 1, "torch": 2}}


def test_unknown_capture_part_is_refused(tracker: ExperimentTracker) -> None:
    with pytest.raises(InvalidRecordError, match="gpu"):
        tracker.start_run(capture=["code", "gpu"])


def test_failing_capture_parts_never_crash_the_run(
    tracker: ExperimentTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("probe exploded")

    for name in ("capture_code", "capture_system", "capture_invocation", "fingerprint_data"):
        monkeypatch.setattr(exptrack.capture, name, broken)
    with tracker.start_run({"lr": 0.1}, data=["missing.csv"], seed=3) as run:
        run.log_metric("accuracy", 0.5)
    stored = tracker.get_run(run.run_id)
    assert stored.status == "finished"
    assert stored.metrics == {"accuracy": 0.5}
    for section in ("code", "system", "invocation", "data"):
        assert stored.extra[section] == {"error": "RuntimeError: probe exploded"}


def test_missing_data_path_is_recorded_not_raised(tracker: ExperimentTracker) -> None:
    with tracker.start_run(data="nowhere/train.csv", capture=["data"]) as run:
        pass
    entry = tracker.get_run(run.run_id).extra["data"]["paths"]["nowhere/train.csv"]
    assert entry == {"error": "no such file or directory"}


@needs_git
def test_run_in_a_subdirectory_records_the_whole_repository(
    repo: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo / "src" / "models")
    with ExperimentTracker(store) as tracker:
        with tracker.start_run(capture=["code"]) as clean:
            pass
        (repo / "src" / "models" / "train.py").write_text("print('changed')\n")
        with tracker.start_run(capture=["code"]) as dirty:
            pass
        code = tracker.get_run(clean.run_id).extra["code"]
        assert code["commit"] == git(repo, "rev-parse", "HEAD")
        assert code["branch"] == "main"
        assert code["repo_root"] == os.path.realpath(repo)
        assert (code["dirty"], code["untracked"]) == (False, [])
        changed = tracker.get_run(dirty.run_id)
        assert changed.extra["code"]["dirty"] is True
        patch = tracker.load_artifact(dirty.run_id, "code.patch")
        assert b"+print('changed')" in patch
        assert changed.extra["artifacts"]["code.patch"]["size"] == len(patch)


@needs_git
def test_store_inside_the_repository_does_not_make_the_tree_dirty(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    store = repo / "experiments"
    try:
        with ExperimentTracker(store) as tracker:
            for _ in range(2):  # the second run also sees the first one's history and artifacts
                with tracker.start_run(capture=["code"]) as run:
                    run.log_metric("loss", 0.1, step=0)
                code = tracker.get_run(run.run_id).extra["code"]
                assert (code["dirty"], code["untracked"]) == (False, [])
            (repo / "notes.txt").write_text("mine\n")
            with tracker.start_run(capture=["code"]) as run:
                pass
            assert tracker.get_run(run.run_id).extra["code"]["untracked"] == ["notes.txt"]
    finally:
        from exptrack.store.logs import detach_store_log

        detach_store_log(str(store))


# -- artifacts ------------------------------------------------------------------------------------


def test_artifact_round_trips_byte_identically(tracker: ExperimentTracker, tmp_path: Path) -> None:
    payload = os.urandom(3 << 20) + b"\x00\xff tail"  # several chunks, binary
    source = tmp_path / "model.pkl"
    source.write_bytes(payload)
    with tracker.start_run(capture=False) as run:
        ref = run.log_artifact(source)
        run.log_artifact(source, name="best.pkl")
    assert tracker.artifacts(run.run_id) == {
        "model.pkl": {"sha256": ref.sha256, "size": len(payload)},
        "best.pkl": {"sha256": ref.sha256, "size": len(payload)},
    }
    assert tracker.load_artifact(run.run_id, "model.pkl") == payload
    out = tracker.fetch_artifact(run.run_id, "model.pkl", tmp_path / "out" / "copy.pkl")
    assert out.read_bytes() == payload
    into_dir = tracker.fetch_artifact(run.run_id, "best.pkl", tmp_path / "out")
    assert into_dir == tmp_path / "out" / "best.pkl"
    assert into_dir.read_bytes() == payload
    blobs = [p for p in tracker.artifact_store.root.rglob("*") if p.is_file()]
    assert blobs == [tracker.artifact_store.path_of(ref.sha256)]  # one blob for both names


def test_corrupted_blob_is_detected_on_load_and_fetch(tracker: ExperimentTracker, tmp_path: Path) -> None:
    with tracker.start_run(capture=False) as run:
        ref = run.log_artifact_bytes(b"trained weights " * 1000, "model.bin")
    blob = tracker.artifact_store.path_of(ref.sha256)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.chmod(0o644)  # blobs are read-only; the test runs as root, but not everywhere
    blob.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match=ref.sha256):
        tracker.load_artifact(run.run_id, "model.bin")
    dest = tmp_path / "model.bin"
    with pytest.raises(ArtifactIntegrityError):
        tracker.fetch_artifact(run.run_id, "model.bin", dest)
    assert not dest.exists()  # nothing half-copied
    assert list(tmp_path.glob(".tmp-*")) == []


def test_unknown_artifact_name_lists_the_known_ones(tracker: ExperimentTracker) -> None:
    with tracker.start_run(capture=False) as run:
        run.log_artifact_bytes(b"x", "model.bin")
    with pytest.raises(RunNotFoundError, match=r"no artifact 'weights'.*model\.bin"):
        tracker.load_artifact(run.run_id, "weights")


@pytest.mark.parametrize("name", ["", "two\nlines"])
def test_bad_artifact_names_are_refused(tracker: ExperimentTracker, name: str) -> None:
    with tracker.start_run(capture=False) as run, pytest.raises(InvalidRecordError, match="artifact name"):
        run.log_artifact_bytes(b"x", name)


def test_packages_are_stored_once_per_environment(tracker: ExperimentTracker) -> None:
    runs = []
    for _ in range(2):
        with tracker.start_run(capture=["system", "packages"]) as run:
            pass
        runs.append(tracker.get_run(run.run_id))
    digests = {r.extra["system"]["packages_sha256"] for r in runs}
    assert len(digests) == 1
    blobs = [p for p in tracker.artifact_store.root.rglob("*") if p.is_file()]
    assert [p.name for p in blobs] == list(digests)
    packages = tracker.packages(runs[0])
    assert packages is not None
    assert "pytest" in packages
    assert packages == tracker.packages(runs[1])
