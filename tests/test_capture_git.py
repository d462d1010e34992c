"""Code state capture against real git repositories made in a temporary directory."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from conftest import git, isolate_git

from exptrack import ExperimentTracker
from exptrack.capture import capture_code, code_restore_steps, compare_code
from exptrack.capture import git as git_capture
from exptrack.cli import cli
from exptrack.store import codec

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture(autouse=True)
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's git configuration out and make commits work on a machine without one."""
    isolate_git(tmp_path, monkeypatch)
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "train.py").write_text("print('train')\n")
    (root / "README.md").write_text("hello\n")
    (root / ".gitignore").write_text("*.log\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    return root


def head(root: Path) -> str:
    return git(root, "rev-parse", "HEAD")


def test_clean_repository_records_commit_branch_and_root(repo: Path) -> None:
    state = capture_code(repo)
    assert state.patch is None
    assert state.info == {
        "commit": head(repo),
        "branch": "main",
        "remote": None,
        "dirty": False,
        "untracked": [],
        "untracked_count": 0,
        "repo_root": os.path.realpath(repo),
    }
    json.dumps(state.info)


def test_subdirectory_reports_the_whole_repository(repo: Path) -> None:
    (repo / "README.md").write_text("changed\n")
    state = capture_code(repo / "src")
    assert state.info["repo_root"] == os.path.realpath(repo)
    assert state.info["commit"] == head(repo)
    assert state.patch is not None
    assert b"README.md" in state.patch  # outside the subdirectory, still part of the diff


def test_linked_worktree_reports_its_own_branch_and_root(repo: Path, tmp_path: Path) -> None:
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(worktree))
    git(repo, "remote", "add", "origin", "https://example.com/team/project.git")
    (worktree / "src" / "train.py").write_text("print('feature')\n")
    state = capture_code(worktree)
    assert state.info["branch"] == "feature"
    assert state.info["repo_root"] == os.path.realpath(worktree)
    assert state.info["commit"] == head(repo)
    assert state.info["remote"] == "https://example.com/team/project.git"
    assert state.info["dirty"] is True
    assert state.patch is not None
    assert b"+print('feature')" in state.patch


def test_detached_head_has_no_branch(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach", "HEAD")
    state = capture_code(repo)
    assert state.info["branch"] is None
    assert state.info["commit"] == head(repo)


def test_outside_a_repository_records_why(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    state = capture_code(plain)
    assert state.info["error"] == "not a git repository"
    assert state.info["commit"] is None
    assert state.patch is None


def test_missing_directory_records_why(tmp_path: Path) -> None:
    assert capture_code(tmp_path / "gone").info["error"] == "directory not found"


def test_git_missing_from_path_records_why(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    state = capture_code(repo)
    assert state.info["error"] == "git is not installed"
    assert state.info["commit"] is None


@pytest.mark.skipif(sys.platform == "win32", reason="fake git is a shell script")
def test_hung_git_is_abandoned_after_the_timeout(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    fake = fake_bin / "git"
    fake.write_text(f"#!/bin/sh\nexec {shutil.which('sleep')} 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    state = capture_code(repo, timeout=0.3)
    assert state.info["error"] == "git timed out"


def test_repository_without_commits(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q")
    (root / "notes.txt").write_text("draft\n")
    state = capture_code(root)
    assert state.info["error"] == "repository has no commits yet"
    assert state.info["commit"] is None
    assert state.info["branch"] == "main"
    assert state.info["untracked"] == ["notes.txt"]
    assert state.info["repo_root"] == os.path.realpath(root)
    assert state.patch is None


def test_staged_unstaged_and_untracked_changes_are_all_seen(repo: Path) -> None:
    (repo / "README.md").write_text("staged\n")
    git(repo, "add", "README.md")
    (repo / "src" / "train.py").write_text("print('unstaged')\n")
    (repo / "new dir").mkdir()
    (repo / "new dir" / "a file.txt").write_text("x\n")
    (repo / "héllo.txt").write_text("unicode\n")
    (repo / "run.log").write_text("ignored\n")
    state = capture_code(repo)
    assert state.info["dirty"] is True
    assert state.info["untracked"] == ["héllo.txt", "new dir/a file.txt"]
    patch = state.patch
    assert patch is not None
    assert b"+staged" in patch
    assert b"+print('unstaged')" in patch
    assert b"a file.txt" not in patch  # untracked content is listed, not saved
    assert state.info["patch_sha256"] == hashlib.sha256(patch).hexdigest()
    assert state.info["patch_bytes"] == len(patch)


def test_untracked_files_are_listed_apart_and_do_not_make_the_tree_dirty(repo: Path) -> None:
    (repo / "scratch.py").write_text("pass\n")
    state = capture_code(repo)
    assert state.info["dirty"] is False
    assert state.info["untracked"] == ["scratch.py"]
    assert state.info["untracked_count"] == 1
    assert state.patch is None
    assert "patch_sha256" not in state.info


def test_untracked_list_is_capped(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(git_capture, "_UNTRACKED_CAP", 3)
    for i in range(5):
        (repo / f"u{i}.txt").write_text("u\n")
    state = capture_code(repo)
    assert state.info["untracked"] == ["u0.txt", "u1.txt", "u2.txt"]
    assert state.info["untracked_truncated"] is True
    assert state.info["untracked_count"] == 5


def test_capture_works_while_another_git_command_holds_the_index_lock(repo: Path) -> None:
    (repo / "README.md").write_text("edited\n")
    lock = repo / ".git" / "index.lock"
    lock.write_text("")
    state = capture_code(repo)
    assert "error" not in state.info
    assert state.info["dirty"] is True
    assert lock.exists()


def test_captured_patch_applies_onto_a_clean_checkout(repo: Path, tmp_path: Path) -> None:
    binary = bytes(range(256)) * 4
    (repo / "weights.bin").write_bytes(binary)
    (repo / "old name.txt").write_text("to be renamed\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "second")
    (repo / "README.md").write_text("hello\nworld\n")  # unstaged edit
    (repo / "weights.bin").write_bytes(binary[::-1])  # binary edit
    (repo / "src" / "train.py").unlink()  # deletion
    git(repo, "mv", "old name.txt", "new name.txt")  # staged rename
    (repo / "added.py").write_text("x = 1\n")
    git(repo, "add", "added.py")  # staged new file
    state = capture_code(repo)
    assert state.patch is not None

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(clone, "checkout", "-q", "--detach", str(state.info["commit"]))
    patch_file = tmp_path / "run.patch"
    patch_file.write_bytes(state.patch)
    git(clone, "apply", str(patch_file))

    for name in ("README.md", "weights.bin", "new name.txt", "added.py", ".gitignore"):
        assert (clone / name).read_bytes() == (repo / name).read_bytes(), name
    assert not (clone / "src" / "train.py").exists()
    assert not (clone / "old name.txt").exists()


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("https://user:s3cret@example.com/team/p.git", "https://example.com/team/p.git"),
        ("https://ghp_token@github.com/team/p.git", "https://github.com/team/p.git"),
        ("ssh://git:pw@example.com/team/p.git", "ssh://git@example.com/team/p.git"),
        ("ssh://git@example.com/team/p.git", "ssh://git@example.com/team/p.git"),
        ("git@github.com:team/p.git", "git@github.com:team/p.git"),
        ("/srv/git/p.git", "/srv/git/p.git"),
    ],
)
def test_remote_url_is_stored_without_credentials(repo: Path, url: str, stored: str) -> None:
    git(repo, "remote", "add", "origin", url)
    assert capture_code(repo).info["remote"] == stored


def test_origin_is_preferred_over_other_remotes(repo: Path) -> None:
    git(repo, "remote", "add", "upstream", "https://example.com/upstream.git")
    assert capture_code(repo).info["remote"] == "https://example.com/upstream.git"
    git(repo, "remote", "add", "origin", "https://example.com/origin.git")
    assert capture_code(repo).info["remote"] == "https://example.com/origin.git"


def info(
    commit: str | None = "a" * 40, patch: str | None = None, untracked: tuple[str, ...] = ()
) -> dict[str, object]:
    state: dict[str, object] = {
        "commit": commit,
        "dirty": bool(patch or untracked),
        "untracked": list(untracked),
    }
    if patch:
        state["patch_sha256"] = patch
    if commit is None:
        state["error"] = "not a git repository"
    return state


@pytest.mark.parametrize(
    ("recorded", "current", "verdict", "reason_part"),
    [
        (info(), info(), "match", "clean"),
        (info(patch="p1"), info(patch="p1"), "match", "same uncommitted changes"),
        (info(), info(commit="b" * 40), "mismatch", "commit differs"),
        (info(patch="p1"), info(), "mismatch", "the run had uncommitted changes"),
        (info(), info(patch="p2"), "mismatch", "did not have"),
        (info(patch="p1"), info(patch="p2"), "mismatch", "differ"),
        (info(untracked=("a.py",)), info(), "unknown", "-a.py"),
        (info(commit=None), info(), "unknown", "recorded code state unknown: not a git repository"),
        (info(), info(commit=None), "unknown", "current code state unknown"),
    ],
)
def test_compare_code_verdicts(
    recorded: dict[str, object], current: dict[str, object], verdict: str, reason_part: str
) -> None:
    result = compare_code(recorded, current)
    assert result["verdict"] == verdict
    assert reason_part in str(result["reason"])


def test_compare_code_takes_a_patch_hash_kept_elsewhere() -> None:
    recorded = info()
    assert compare_code(recorded, info(patch="p1"), "p1")["verdict"] == "match"


def test_restore_steps_bring_back_the_recorded_code(repo: Path, tmp_path: Path) -> None:
    (repo / "src" / "train.py").write_text("print('experiment 7')\n")
    recorded = capture_code(repo)
    assert recorded.patch is not None
    patch_file = tmp_path / "saved run.patch"
    patch_file.write_bytes(recorded.patch)
    git(repo, "commit", "-q", "-am", "later work")
    (repo / "README.md").write_text("work in progress\n")
    (repo / "wip.txt").write_text("wip\n")
    current = capture_code(repo)
    assert compare_code(recorded.info, current.info)["verdict"] == "mismatch"

    steps = code_restore_steps(recorded.info, current.info, str(patch_file))
    assert f"git checkout --detach {recorded.info['commit']}" in steps
    subprocess.run(["sh", "-ec", "\n".join(steps)], cwd=tmp_path, check=True, capture_output=True)

    restored = capture_code(repo)
    assert (repo / "src" / "train.py").read_text() == "print('experiment 7')\n"
    assert compare_code(recorded.info, restored.info) == {
        "verdict": "match",
        "reason": f"same commit {str(recorded.info['commit'])[:12]}, with the same uncommitted changes",
    }
    assert "wip.txt" in git(repo, "stash", "show", "--include-untracked", "--name-only")


def test_restore_steps_are_empty_when_the_code_matches(repo: Path) -> None:
    state = capture_code(repo).info
    assert code_restore_steps(state, state) == []


def test_restore_steps_without_the_patch_say_how_to_apply_it() -> None:
    steps = code_restore_steps(info(patch="f" * 64), info(commit="b" * 40) | {"repo_root": "/src/p"})
    assert steps[0] == "cd -- /src/p"
    assert steps[1] == f"git checkout --detach {'a' * 40}"
    assert steps[2].startswith("# the run had uncommitted changes (patch sha256 ffffffffffff)")


def test_restore_steps_clone_the_remote_when_there_is_no_repository() -> None:
    recorded = info() | {"remote": "https://example.com/p.git", "repo_root": "/home/u/project"}
    steps = code_restore_steps(recorded, info(commit=None))
    assert steps == [
        "git clone -- https://example.com/p.git project",
        "cd -- project",
        f"git checkout --detach {'a' * 40}",
    ]


def test_capture_never_rewrites_the_index(repo: Path) -> None:
    """A plain `git status` refreshes a stale index in place, racing the user's own git commands."""
    past = 1_600_000_000
    os.utime(repo / "README.md", (past, past))  # same content, new stat: the index is stale
    index = repo / ".git" / "index"
    before = index.read_bytes()
    state = capture_code(repo)
    assert state.info["dirty"] is False
    assert index.read_bytes() == before


def test_renamed_file_named_like_a_status_entry_is_not_taken_for_untracked(repo: Path) -> None:
    (repo / "? trap.txt").write_text("odd name\n")
    git(repo, "add", "? trap.txt")
    git(repo, "commit", "-q", "-m", "odd")
    git(repo, "mv", "? trap.txt", "plain.txt")
    state = capture_code(repo)
    assert state.info["untracked"] == []
    assert state.info["dirty"] is True


def test_user_diff_config_does_not_change_the_patch(repo: Path) -> None:
    (repo / "HEAD").write_text("a file named like the revision\n")
    git(repo, "add", "HEAD")
    git(repo, "commit", "-q", "-m", "tricky name")
    (repo / "README.md").write_text("changed\n")
    plain = capture_code(repo).patch
    for key, value in [("diff.noprefix", "true"), ("color.diff", "always"), ("diff.mnemonicPrefix", "true")]:
        git(repo, "config", key, value)
    assert capture_code(repo).patch == plain
    assert plain is not None
    assert plain.startswith(b"diff --git a/README.md b/README.md\n")


def test_virtual_environment_and_bytecode_in_the_clone_are_not_untracked_noise(
    repo: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    venv = repo / ".venv"
    (venv / "lib" / "site-packages" / "pkg").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    for i in range(1000):
        (venv / "lib" / "site-packages" / "pkg" / f"m{i}.py").write_text("")
    (repo / "__pycache__").mkdir()
    (repo / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    (repo / "notes.txt").write_text("mine\n")
    state = capture_code(repo)
    assert state.info["untracked"] == ["notes.txt"]
    assert state.info["dirty"] is False
    tracker = ExperimentTracker(store, durable=False)
    with tracker.start_run(capture=["code"]) as run:
        pass
    assert run.record is not None
    assert len(codec.encode(run.record)) < 4096  # not 1,000 venv paths per line
    (venv / "lib" / "site-packages" / "pkg" / "new.py").write_text("")  # pip installed something
    result = CliRunner().invoke(cli, ["--store", str(store), "reproduce", run.run_id, "--repo", str(repo)])
    assert result.exit_code == 0, result.output
