"""Files, permissions and the working directory (issue 9, items 9-10, 14-16)."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from exptrack import ExperimentTracker
from exptrack.cli import cli
from exptrack.store.fsio import DIR_MODE, FILE_MODE

# -- item 9: the store path is fixed at construction ------------------------------------------


def test_store_stays_where_it_was_opened_after_chdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    tracker = ExperimentTracker("experiments", durable=False)
    first = tracker.log_run(metrics={"acc": 0.5})
    elsewhere = tmp_path / "outputs" / "2026-01-01"  # what Hydra does to the working directory
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    second = tracker.log_run(metrics={"acc": 0.7})
    assert tracker.best_run("acc").run_id == second.run_id
    assert tracker.get_run(first.run_id).run_id == first.run_id
    (elsewhere / "model.pkl").write_bytes(b"weights")
    with tracker.start_run(capture=False) as run:
        run.log_metric("loss", 0.5, step=0)
        run.log_artifact("model.pkl")
    assert [p["value"] for p in tracker.history(run.run_id, "loss")] == [0.5]
    assert tracker.load_artifact(run.run_id, "model.pkl") == b"weights"
    assert not (elsewhere / "experiments").exists()
    assert {"artifacts", "history", "runs.jsonl"} <= {p.name for p in (tmp_path / "experiments").iterdir()}


# -- item 10: a store shared by a Unix group ---------------------------------------------------


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077, 0o000])
def test_created_files_follow_the_umask_and_are_never_world_writable(tmp_path: Path, umask: int) -> None:
    store = tmp_path / "store"
    code = f"""
import os, sys
os.umask({umask})
from exptrack import ExperimentTracker
t = ExperimentTracker(sys.argv[1], durable=False)
t.log_run(metrics={{"acc": 0.5}})
with t.start_run(capture=False) as run:
    run.log_metric("loss", 1.0, step=0)
    run.log_artifact_bytes(b"m", "model.bin")
t.best_run("acc")
t.fetch_artifact(run.run_id, "model.bin", os.path.join(sys.argv[1], "..", "fetched.bin"))
"""
    subprocess.run([sys.executable, "-c", code, str(store)], check=True, env=_env())
    for name, mode in _modes(store).items():
        is_dir = (store / name).is_dir()
        blob = name.startswith("artifacts/") and not is_dir  # artifacts are read-only on purpose
        expected = (DIR_MODE if is_dir else 0o444 if blob else FILE_MODE) & ~umask
        assert mode == expected, (name, oct(mode), oct(expected))
        assert not mode & 0o002, name
    assert stat.S_IMODE((tmp_path / "fetched.bin").stat().st_mode) == FILE_MODE & ~umask


def test_export_honours_the_umask_and_keeps_an_existing_files_mode(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ExperimentTracker(store, durable=False).log_run(metrics={"acc": 0.5})
    old = os.umask(0o002)
    try:
        out = tmp_path / "runs.csv"
        assert CliRunner().invoke(cli, ["--store", str(store), "export", "-o", str(out)]).exit_code == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o664
        out.chmod(0o640)
        assert CliRunner().invoke(cli, ["--store", str(store), "export", "-o", str(out)]).exit_code == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o640
    finally:
        os.umask(old)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


@pytest.fixture
def two_users() -> Iterator[tuple[int, int, int]]:
    """Two fresh users in one fresh group (uid, uid, gid); needs root (CI runs as root)."""
    if os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("groupadd") is None:
        pytest.skip("creating two real users needs root and useradd/groupadd")
    suffix = os.urandom(3).hex()
    group, users = f"xtg{suffix}", [f"xta{suffix}", f"xtb{suffix}"]
    subprocess.run(["groupadd", group], check=True)
    try:
        for user in users:
            subprocess.run(["useradd", "-M", "-N", "-g", group, user], check=True)
        yield pwd.getpwnam(users[0]).pw_uid, pwd.getpwnam(users[1]).pw_uid, grp.getgrnam(group).gr_gid
    finally:
        for user in users:
            subprocess.run(["userdel", user], check=False)
        subprocess.run(["groupdel", group], check=False)


def _as_user(uid: int, gid: int, store: str, value: float) -> int:
    """Fork; in the child become ``uid`` with umask 002 and log one run and query; the exit code.

    A fork, not a new interpreter: this interpreter may live where the new user cannot read."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups([gid])
            os.setgid(gid)
            os.setuid(uid)
            os.umask(0o002)
            tracker = ExperimentTracker(store, durable=False)
            tracker.log_run(metrics={"acc": value})
            with tracker.start_run(capture=False) as run:
                run.log_metric("loss", value, step=0)
                run.log_artifact_bytes(str(value).encode(), "note.txt")
            tracker.best_run("acc")
            code = 0
        except BaseException as exc:
            os.write(2, f"user {uid}: {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_two_users_of_one_group_share_a_setgid_store(two_users: tuple[int, int, int]) -> None:
    first, second, gid = two_users
    # Warm every lazy import while still root: the children may not read this interpreter's tree.
    with tempfile.TemporaryDirectory() as warm:
        tracker = ExperimentTracker(warm, durable=False)
        tracker.log_run(metrics={"acc": 0.1})
        with tracker.start_run(capture=False) as run:
            run.log_metric("loss", 0.1, step=0)
            run.log_artifact_bytes(b"x", "note.txt")
        tracker.best_run("acc")
        tracker.close()
    shared = Path(tempfile.mkdtemp(prefix="exptrack-group-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        project = shared / "project"
        project.mkdir()
        os.chown(project, 0, gid)
        project.chmod(0o2775)  # setgid: new files belong to the group
        store = str(project / "experiments")
        assert _as_user(first, gid, store, 0.5) == 0
        assert _as_user(second, gid, store, 0.9) == 0
        assert _as_user(first, gid, store, 0.7) == 0
        runs = list(ExperimentTracker(store).runs())
        assert sorted(run.metrics.get("acc", -1) for run in runs) == [-1, -1, -1, 0.5, 0.7, 0.9]
    finally:
        shutil.rmtree(shared)


# -- item 14: index housekeeping is per process -----------------------------------------------

_BUILD = """
import sys, time
from exptrack import ExperimentTracker
tracker = ExperimentTracker(sys.argv[1], durable=False)
while time.time() < float(sys.argv[2]):  # a start line shared by every builder
    pass
tracker.best_run("acc")
"""


def _generations(store: Path) -> set[str]:
    return {p.name.partition(".")[0] for p in (store / ".index").iterdir() if p.name.endswith(".hash")}


def test_simultaneous_first_builds_leave_no_orphaned_copies(tmp_path: Path) -> None:
    store = tmp_path / "store"
    tracker = ExperimentTracker(store, durable=False)
    tracker.log_runs({"params": {"i": i}, "metrics": {"acc": i / 100_000}} for i in range(100_000))
    start = f"{__import__('time').time() + 1.5}"
    builders = [subprocess.Popen([sys.executable, "-c", _BUILD, str(store), start], env=_env()) for _ in range(4)]
    for builder in builders:
        assert builder.wait(timeout=120) == 0
    # the next process that saves sweeps the copies of the builders (all dead now)
    later = ExperimentTracker(store, durable=False)
    later.log_run(metrics={"acc": 2.0})
    assert later.best_run("acc").metrics["acc"] == 2.0
    assert len(_generations(store)) == 1
    assert not [p.name for p in (store / ".index").iterdir() if p.name.endswith(".tmp")]


def test_a_save_never_deletes_a_live_processs_temporary_file(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ExperimentTracker(store, durable=False).log_run(metrics={"acc": 0.1})
    ExperimentTracker(store).best_run("acc")  # the index exists
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as sleeper:
        try:
            theirs = store / ".index" / f"index.json.{sleeper.pid}.0123abcd.tmp"
            theirs.write_bytes(b"a save in progress")
            for i in range(3):  # fresh processes' first saves sweep the directory
                tracker = ExperimentTracker(store, durable=False)
                tracker.log_run(metrics={"acc": 0.2 + i})
                tracker.best_run("acc")
                tracker._indexed()._forget_generation("")  # type: ignore[union-attr]
            assert theirs.exists()
        finally:
            sleeper.kill()
            sleeper.wait()
    tracker = ExperimentTracker(store, durable=False)
    tracker.log_run(metrics={"acc": 9.0})
    tracker.best_run("acc")
    assert not theirs.exists()  # its owner is dead: the next sweep takes it


_READ_LOOP = """
import sys, time
from exptrack import ExperimentTracker
store, until = sys.argv[1], float(sys.argv[2])
while time.time() < until:
    tracker = ExperimentTracker(store, durable=False)  # a fresh process view: loads, refreshes, saves
    tracker.log_run(metrics={"acc": time.time() % 1})
    tracker.best_run("acc")
    tracker.close()
"""


def _readers_save_without_failing(store: Path, readers: int, seconds: float) -> str:
    ExperimentTracker(store, durable=False).log_runs({"metrics": {"acc": i / 50_000}} for i in range(50_000))
    until = f"{__import__('time').time() + seconds}"
    procs = [subprocess.Popen([sys.executable, "-c", _READ_LOOP, str(store), until], env=_env())
             for _ in range(readers)]
    for proc in procs:
        assert proc.wait(timeout=seconds + 120) == 0
    return (store / "log.txt").read_text()


def test_concurrent_readers_never_delete_each_others_index_files(tmp_path: Path) -> None:
    log = _readers_save_without_failing(tmp_path / "store", 4, 5.0)
    assert "cannot save the index" not in log


@pytest.mark.stress
def test_concurrent_readers_never_delete_each_others_index_files_stress(tmp_path: Path) -> None:
    log = _readers_save_without_failing(tmp_path / "store", 8, 60.0)
    runs = sum(1 for _ in ExperimentTracker(tmp_path / "store").runs())
    print(f"8 readers x 60 s: {runs - 50_000} runs logged and queried by fresh trackers, "
          f"{log.count('cannot save the index')} failed saves")
    assert "cannot save the index" not in log
