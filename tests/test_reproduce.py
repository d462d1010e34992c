"""Getting a run back: ``diff``, ``reproduce`` and ``artifacts`` against a real git repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import git, isolate_git

import exptrack.capture
from exptrack import ExperimentTracker, Run
from exptrack.capture import SystemInfo
from exptrack.capture import data as data_capture
from exptrack.cli import cli
from exptrack.store.logs import detach_store_log

ROOT = Path(__file__).resolve().parent.parent
HANG_GUARD = 120.0  # seconds; only stops a hung command from hanging the suite

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def age(*paths: Path, seconds: int = 3600) -> None:
    """Date files back: files written within the last 2 s are never served from the cache."""
    past = time.time_ns() - seconds * 10**9
    for path in paths:
        os.utime(path, ns=(past, past))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed project with ignored data as the current directory; git isolated from the machine."""
    isolate_git(tmp_path, monkeypatch)
    root = tmp_path / "project"
    (root / "data" / "images").mkdir(parents=True)
    (root / "train.py").write_text("LEARNING_RATE = 0.1\n")
    (root / ".gitignore").write_text("data/\n")  # data is versioned by its fingerprints, not by git
    (root / "data" / "train.csv").write_text("x,y\n1,2\n3,4\n")
    (root / "data" / "images" / "a.png").write_bytes(b"\x89PNG a")
    (root / "data" / "images" / "b.png").write_bytes(b"\x89PNG b")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    age(root / "data" / "train.csv", root / "data" / "images" / "a.png", root / "data" / "images" / "b.png")
    monkeypatch.chdir(root)
    return root


StorePlace = Callable[[Path, Path], Path]


def outside(tmp_path: Path, repo: Path) -> Path:
    return tmp_path / "store"


def inside(tmp_path: Path, repo: Path) -> Path:
    return repo / "experiments"


@pytest.fixture(params=[outside, inside], ids=["store-outside-repo", "store-inside-repo"])
def store_at(request: pytest.FixtureRequest, tmp_path: Path, repo: Path) -> Iterator[Path]:
    place: StorePlace = request.param
    path = place(tmp_path, repo)
    try:
        yield path
    finally:
        detach_store_log(str(path))


@pytest.fixture
def store(tmp_path: Path, repo: Path) -> Iterator[Path]:
    path = tmp_path / "store"
    try:
        yield path
    finally:
        detach_store_log(str(path))


def log_run(store: Path, lr: float, *, model: bytes = b"", **options: object) -> Run:
    with ExperimentTracker(store) as tracker:
        with tracker.start_run({"lr": lr, "model": "rf"}, data=["data/train.csv", "data/images/"],
                               seed=42, **options) as run:  # type: ignore[arg-type]
            run.log_metric("accuracy", 0.8 + lr)
            if model:
                run.log_artifact_bytes(model, "model.pkl")
        return tracker.get_run(run.run_id)


def invoke(store: Path, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--store", str(store), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def restore(steps: list[str]) -> None:
    """Run the printed restore steps as a user would paste them into a shell."""
    commands = [step for step in steps if not step.startswith("#")]
    assert commands, steps
    done = subprocess.run(["sh", "-c", " && ".join(commands)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, (commands, done.stderr)


def report(store: Path, run_id: str, *args: str) -> tuple[int, dict[str, object]]:
    result = invoke(store, "reproduce", run_id, "--json", *args)
    return result.exit_code, json.loads(result.stdout)


# -- the acceptance scenario ------------------------------------------------------------------


def test_changed_tracked_file_is_diffed_reported_and_restored(repo: Path, store_at: Path) -> None:
    store = store_at
    clean = log_run(store, 0.1)
    assert clean.extra["code"]["dirty"] is False
    (repo / "train.py").write_text("LEARNING_RATE = 0.2\n")
    dirty = log_run(store, 0.2)
    assert dirty.extra["code"]["dirty"] is True
    assert dirty.extra["code"]["commit"] == clean.extra["code"]["commit"]

    result = invoke(store, "diff", clean.run_id, dirty.run_id)
    assert result.exit_code == 0
    table = result.stdout
    assert "dirty" in table
    assert "patch_sha256" in table
    assert "0.2" in table
    assert "data" not in table  # same data: only the differences are shown
    differences = json.loads(invoke(store, "diff", clean.run_id, dirty.run_id, "--json").stdout)["differences"]
    by_key = {(d["section"], d["key"]): (d["a"], d["b"]) for d in differences}
    assert by_key[("code", "dirty")] == (False, True)
    assert by_key[("code", "patch_sha256")] == (None, dirty.extra["code"]["patch_sha256"])
    assert by_key[("params", "lr")] == (0.1, 0.2)
    assert not any(section in ("data", "system", "packages") for section, _ in by_key)

    result = invoke(store, "reproduce", clean.run_id)
    assert result.exit_code == 3
    assert f"recorded commit {clean.extra['code']['commit']} on main (clean)" in result.stdout
    assert "[DIFF] code" in result.stdout
    assert "the working tree has uncommitted changes the run did not have" in result.stdout
    assert "[ok  ] data data/train.csv" in result.stdout
    assert "to restore:" in result.stdout
    assert f"cd -- {repo}" in result.stdout
    assert "git stash push" in result.stdout
    assert 'params (JSON): {"lr":0.1,"model":"rf"}' in result.stdout
    assert "params (flags): --lr=0.1 --model=rf" in result.stdout
    assert "re-run: " in result.stdout

    code, before = report(store, clean.run_id)
    assert code == 3
    restore(before["steps"])  # type: ignore[arg-type]
    assert (repo / "train.py").read_text() == "LEARNING_RATE = 0.1\n"
    result = invoke(store, "reproduce", clean.run_id)
    assert result.exit_code == 0, result.stdout
    assert "verdict: everything matches" in result.stdout
    assert "to restore:" not in result.stdout

    # and back to the dirty run: its saved patch is applied on the same commit
    code, before = report(store, dirty.run_id)
    assert code == 3
    assert any(step.startswith("git apply -- ") for step in before["steps"])  # type: ignore[union-attr]
    restore(before["steps"])  # type: ignore[arg-type]
    assert (repo / "train.py").read_text() == "LEARNING_RATE = 0.2\n"
    assert invoke(store, "reproduce", dirty.run_id).exit_code == 0
    assert git(repo, "stash", "list") != ""  # nothing was thrown away: it was stashed


def test_patch_goes_to_a_temporary_directory_when_the_store_cannot_take_it(repo: Path, store: Path) -> None:
    (repo / "train.py").write_text("LEARNING_RATE = 0.6\n")
    run = log_run(store, 0.6)
    git(repo, "checkout", "--", "train.py")
    (store / "patches").write_text("a file where the directory would go\n")
    code, data = report(store, run.run_id)
    assert code == 3
    (apply,) = [step for step in data["steps"] if step.startswith("git apply -- ")]  # type: ignore[union-attr]
    patch = Path(apply.removeprefix("git apply -- "))
    assert store not in patch.parents
    assert patch.read_bytes() == ExperimentTracker(store).load_artifact(run.run_id, "code.patch")
    try:
        restore(data["steps"])  # type: ignore[arg-type]
    finally:
        shutil.rmtree(patch.parent)
    assert (repo / "train.py").read_text() == "LEARNING_RATE = 0.6\n"


def test_corrupt_saved_patch_is_reported_and_the_checks_still_run(repo: Path, store: Path) -> None:
    (repo / "train.py").write_text("LEARNING_RATE = 0.6\n")
    run = log_run(store, 0.6)
    git(repo, "checkout", "--", "train.py")
    blob = ExperimentTracker(store).artifact_store.path_of(run.extra["artifacts"]["code.patch"]["sha256"])
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:-1])
    result = invoke(store, "reproduce", run.run_id)
    assert result.exit_code == 3
    assert "warning: the run's saved patch is unusable" in result.stderr
    assert "corrupt" in result.stderr
    assert "[DIFF] code" in result.stdout
    assert "apply its saved patch with: git apply <patch file>" in result.stdout
    assert not list((store / "patches").glob("*.patch"))


def test_new_commit_is_reported_and_restored_by_checkout(repo: Path, store: Path) -> None:
    first = log_run(store, 0.1)
    (repo / "train.py").write_text("LEARNING_RATE = 0.3\n")
    git(repo, "commit", "-q", "-am", "faster")
    second = log_run(store, 0.3)
    by_key = {(d["section"], d["key"]) for d in
              json.loads(invoke(store, "diff", first.run_id, second.run_id, "--json").stdout)["differences"]}
    assert ("code", "commit") in by_key
    assert ("code", "dirty") not in by_key
    code, before = report(store, first.run_id)
    assert code == 3
    assert f"git checkout --detach {first.extra['code']['commit']}" in before["steps"]  # type: ignore[operator]
    restore(before["steps"])  # type: ignore[arg-type]
    assert report(store, first.run_id)[0] == 0
    assert report(store, second.run_id)[0] == 3


def test_untracked_files_of_the_run_survive_the_restore(repo: Path, store: Path) -> None:
    (repo / "notebook.py").write_text("# scratch the run was started from\n")
    run = log_run(store, 0.1)
    assert run.extra["code"]["untracked"] == ["notebook.py"]
    (repo / "train.py").write_text("LEARNING_RATE = 0.5\n")
    (repo / "later.txt").write_text("not there when the run ran\n")
    code, before = report(store, run.run_id)
    assert code == 3
    restore(before["steps"])  # type: ignore[arg-type]
    assert (repo / "notebook.py").exists()
    assert not (repo / "later.txt").exists()
    assert report(store, run.run_id)[0] == 0


# -- data fingerprints --------------------------------------------------------------------------


def test_data_fingerprints_change_with_one_byte_and_are_cached_otherwise(
    repo: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    hash_file = data_capture._hash_file

    def counting(path: str) -> tuple[str, int]:
        reads.append(os.path.relpath(path, repo))
        return hash_file(path)

    monkeypatch.setattr(data_capture, "_hash_file", counting)
    first = log_run(store, 0.1)
    assert sorted(reads) == ["data/images/a.png", "data/images/b.png", "data/train.csv"]
    reads.clear()
    again = log_run(store, 0.1)
    assert reads == []  # unchanged files: served from the cache, not read
    assert again.extra["data"] == first.extra["data"]

    csv = repo / "data" / "train.csv"
    content = bytearray(csv.read_bytes())
    content[-2] ^= 0x01  # one byte, same size
    csv.write_bytes(bytes(content))
    age(csv, seconds=1800)
    changed = log_run(store, 0.1)
    assert reads == ["data/train.csv"]
    old, new = first.extra["data"]["paths"], changed.extra["data"]["paths"]
    assert new["data/train.csv"]["sha256"] != old["data/train.csv"]["sha256"]
    assert new["data/train.csv"]["size"] == old["data/train.csv"]["size"]
    assert new["data/images/"] == old["data/images/"]
    assert changed.extra["data"]["tree"] != first.extra["data"]["tree"]

    differences = json.loads(invoke(store, "diff", first.run_id, changed.run_id, "--json").stdout)["differences"]
    assert [(d["section"], d["key"]) for d in differences] == [("data", "data/train.csv")]

    reads.clear()
    code, before = report(store, first.run_id)
    assert reads == []  # reproduce uses the same cache
    assert code == 3
    verdicts = {c["item"]: c["verdict"] for c in before["checks"]}  # type: ignore[union-attr]
    assert verdicts["data data/train.csv"] == "mismatch"
    assert verdicts["data data/images"] == "match"
    assert verdicts["code"] == "match"
    assert any(s.startswith("# restore data data/train.csv to sha256 tree") for s in before["steps"])  # type: ignore[union-attr]


def test_changed_file_in_a_data_directory_is_named(repo: Path, store: Path) -> None:
    run = log_run(store, 0.1)
    (repo / "data" / "images" / "b.png").write_bytes(b"\x89PNG B")
    (repo / "data" / "images" / "c.png").write_bytes(b"\x89PNG c")
    code, before = report(store, run.run_id)
    assert code == 3
    checks = {c["item"]: c for c in before["checks"]}  # type: ignore[union-attr]
    assert checks["data data/images"]["detail"] == "files differ: 1 added, 0 removed, 1 changed"
    tree = run.extra["data"]["paths"]["data/images/"]["tree"][:16]
    assert f"# restore data data/images to sha256 tree {tree} (b.png, c.png)" in before["steps"]  # type: ignore[operator]


def test_dvc_tracked_data_gets_a_dvc_checkout_step(repo: Path, store: Path) -> None:
    md5 = "0123456789abcdef0123456789abcdef"
    (repo / "data" / "train.csv.dvc").write_text(f"outs:\n- md5: {md5}\n  size: 12\n  path: train.csv\n")
    run = log_run(store, 0.1)
    assert run.extra["data"]["paths"]["data/train.csv"]["dvc"] == {"md5": md5, "source": "data/train.csv.dvc"}
    (repo / "data" / "train.csv").write_text("x,y\n9,9\n")
    code, data = report(store, run.run_id)
    assert code == 3
    assert f"dvc checkout -- {repo / 'data' / 'train.csv'}" in data["steps"]  # type: ignore[operator]


# -- the rest of the commands ---------------------------------------------------------------------


def test_params_out_and_artifact_out(repo: Path, store: Path, tmp_path: Path) -> None:
    model = os.urandom(100_000)
    run = log_run(store, 0.1, model=model)
    params_file = tmp_path / "params.json"
    out = tmp_path / "restored" / "model.pkl"
    result = invoke(store, "reproduce", run.run_id, "--params-out", str(params_file),
                    "--artifact", "model.pkl", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(params_file.read_text()) == {"lr": 0.1, "model": "rf"}
    assert out.read_bytes() == model
    assert "sha256 verified" in result.output

    result = invoke(store, "reproduce", run.run_id, "--artifact", "model.pkl")
    assert result.exit_code == 2  # a usage error: --artifact needs --out
    result = invoke(store, "reproduce", run.run_id, "--artifact", "weights.bin", "--out", str(out))
    assert result.exit_code == 1
    assert "no artifact 'weights.bin'" in result.output


def test_corrupt_artifact_fails_the_fetch_loudly(repo: Path, store: Path, tmp_path: Path) -> None:
    run = log_run(store, 0.1, model=b"weights" * 1000)
    blob = ExperimentTracker(store).artifact_store.path_of(run.extra["artifacts"]["model.pkl"]["sha256"])
    data = bytearray(blob.read_bytes())
    data[0] ^= 0xFF
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    out = tmp_path / "model.pkl"
    result = invoke(store, "reproduce", run.run_id, "--artifact", "model.pkl", "--out", str(out))
    assert result.exit_code == 1
    assert "corrupt" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_changed_package_is_reported_with_the_install_step(
    repo: Path, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = log_run(store, 0.1)
    recorded = ExperimentTracker(store).packages(run)
    assert recorded is not None
    capture_system = exptrack.capture.capture_system

    def upgraded(**options: Any) -> SystemInfo:
        now = capture_system(**options)
        return SystemInfo(now.info, {**now.packages, "pytest": "0.0.1"})

    monkeypatch.setattr(exptrack.capture, "capture_system", upgraded)
    code, data = report(store, run.run_id)
    assert code == 3
    checks = {c["item"]: c for c in data["checks"]}  # type: ignore[union-attr]
    assert checks["packages"]["verdict"] == "mismatch"
    assert checks["packages"]["detail"] == f"1 changed; e.g. pytest: {recorded['pytest']} -> 0.0.1"
    install = (f"exptrack --store {store} reproduce {run.run_id} --requirements-out requirements.txt; "
               "python -m pip install -r requirements.txt")
    assert install in data["steps"]  # type: ignore[operator]
    requirements = tmp_path / "requirements.txt"
    invoke(store, "reproduce", run.run_id, "--requirements-out", str(requirements))
    lines = requirements.read_text().splitlines()
    assert f"pytest=={recorded['pytest']}" in lines
    assert len(lines) == len(recorded)


def test_reproduce_json_shape(repo: Path, store: Path) -> None:
    run = log_run(store, 0.1)
    code, data = report(store, run.run_id)
    assert code == 0
    assert set(data) == {"run_id", "matches", "directory", "checks", "steps", "params", "params_flags", "command"}
    assert data["run_id"] == run.run_id
    assert data["directory"] == str(repo)
    assert data["matches"] is True
    assert data["steps"] == []
    assert data["params"] == {"lr": 0.1, "model": "rf"}
    checks = data["checks"]
    assert isinstance(checks, list)
    assert all(set(c) == {"item", "verdict", "detail"} and c["verdict"] == "match" for c in checks)
    items = [c["item"] for c in checks]
    assert items[:3] == ["code", "data data/train.csv", "data data/images"]
    assert {"python_version", "packages"} <= set(items)


def test_reproduce_checks_the_users_checkout_never_where_the_run_says_it_ran(
    repo: Path, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = log_run(store, 0.1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = invoke(store, "reproduce", run.run_id)
    assert result.exit_code == 3, result.stdout  # not a checkout: the code cannot be confirmed
    assert f"checked in {elsewhere}" in result.stdout
    result = invoke(store, "reproduce", run.run_id, "--repo", str(repo))
    assert result.exit_code == 0, result.stdout
    assert f"checked in {repo}" in result.stdout
    (repo / "train.py").write_text("LEARNING_RATE = 0.4\n")
    code, data = report(store, run.run_id, "--repo", str(repo))
    assert code == 3
    restore(data["steps"])  # type: ignore[arg-type]
    assert report(store, run.run_id, "--repo", str(repo))[0] == 0


def test_diff_json_shape_and_identical_runs(repo: Path, store: Path) -> None:
    a, b = log_run(store, 0.1), log_run(store, 0.1)
    data = json.loads(invoke(store, "diff", a.run_id, b.run_id, "--json").stdout)
    assert data == {"a": a.run_id, "b": b.run_id, "differences": []}
    result = invoke(store, "diff", a.run_id[:20], b.run_id)
    assert result.exit_code == 0
    assert "do not differ" in result.stdout


def test_artifacts_command_lists_name_size_and_hash(repo: Path, store: Path) -> None:
    (repo / "train.py").write_text("LEARNING_RATE = 0.7\n")
    run = log_run(store, 0.1, model=b"m" * 1234)
    result = invoke(store, "artifacts", run.run_id)
    assert result.exit_code == 0
    sha = run.extra["artifacts"]["model.pkl"]["sha256"]
    assert "model.pkl" in result.stdout
    assert "1234" in result.stdout
    assert sha in result.stdout
    assert "code.patch" in result.stdout  # the uncommitted diff is an artifact too
    listed = json.loads(invoke(store, "artifacts", run.run_id, "--json").stdout)
    assert listed == dict(run.extra["artifacts"])
    assert listed["model.pkl"] == {"sha256": sha, "size": 1234}


def test_show_describes_what_made_the_run(repo: Path, store: Path) -> None:
    run = log_run(store, 0.1)
    result = invoke(store, "show", run.run_id)
    assert result.exit_code == 0
    text = result.stdout
    assert f"commit  {run.extra['code']['commit']} (clean)" in text
    assert "data/train.csv  sha256 " in text
    assert "python  " in text
    assert "seed     42" in text


def test_unknown_run_is_a_one_line_error(repo: Path, store: Path) -> None:
    log_run(store, 0.1)
    for command in (["reproduce", "nope"], ["diff", "nope", "nada"], ["artifacts", "nope"]):
        result = invoke(store, *command)
        assert result.exit_code == 1
        assert "no run with id 'nope'" in result.output


def test_run_without_git_is_logged_and_reported_unknown(
    repo: Path, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "no-git-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    run = log_run(store, 0.1)
    assert run.status == "finished"
    assert run.extra["code"]["error"] == "git is not installed"
    assert run.extra["code"]["commit"] is None
    assert run.extra["data"]["paths"]["data/train.csv"]["size"] == 12
    code, data = report(store, run.run_id)
    assert code == 3  # cannot confirm the code: not a match
    checks = {c["item"]: c for c in data["checks"]}  # type: ignore[union-attr]
    assert checks["code"]["verdict"] == "unknown"
    assert "git is not installed" in checks["code"]["detail"]
    result = invoke(store, "reproduce", run.run_id)
    assert "verdict: cannot be confirmed (1 unknown)" in result.stdout


def test_run_outside_a_repository_records_why(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.chdir(plain)
    with ExperimentTracker(store) as tracker, tracker.start_run(capture=["code"]) as run:
        pass
    assert tracker.get_run(run.run_id).extra["code"]["error"] == "not a git repository"


def test_run_without_package_list_reproduces_on_what_it_recorded(repo: Path, store: Path) -> None:
    run = log_run(store, 0.1, capture=["code", "data", "system", "invocation"])
    assert run.extra["system"]["packages_sha256"] is None
    code, data = report(store, run.run_id)
    assert code == 0, data
    assert "packages" not in {c["item"] for c in data["checks"]}  # type: ignore[union-attr]


def test_console_script_exit_codes(repo: Path, store: Path) -> None:
    """One real process: the exit code a shell or CI sees."""
    run = log_run(store, 0.1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "exptrack", "--store", str(store), "reproduce", run.run_id]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=HANG_GUARD, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (repo / "train.py").write_text("LEARNING_RATE = 0.9\n")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=HANG_GUARD, check=False)
    assert done.returncode == 3
    assert "to restore:" in done.stdout
