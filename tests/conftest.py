"""Fixtures shared by the whole suite: a store directory, a raw view of its run log, and git
isolated from the machine's configuration."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exptrack import ExperimentTracker
from exptrack.store.logs import detach_store_log

RUNS_FILE = "runs.jsonl"


def split_raw_lines(data: bytes) -> list[bytes]:
    """``data`` cut after every ``\\n`` (kept); an unterminated tail is the last item."""
    lines = [line + b"\n" for line in data.split(b"\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    """A store directory that does not exist yet; its log handler is closed afterwards."""
    path = tmp_path / "store"
    try:
        yield path
    finally:
        # each tracker attaches a log.txt handler per store and process; do not accumulate them
        detach_store_log(str(path))


@pytest.fixture
def tracker(store: Path) -> Iterator[ExperimentTracker]:
    """A flush-only tracker on ``store``, closed afterwards."""
    tracker = ExperimentTracker(store, durable=False)
    try:
        yield tracker
    finally:
        tracker.close()


@pytest.fixture
def raw_lines() -> Callable[[Path], list[bytes]]:
    """Read a store's ``runs.jsonl`` (or any file) as raw lines, each keeping its ``\\n``."""

    def read(path: Path) -> list[bytes]:
        target = path / RUNS_FILE if path.is_dir() else path
        return split_raw_lines(target.read_bytes()) if target.exists() else []

    return read


def isolate_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's git configuration out and make commits work on a machine without one."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test Author")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "test@example.com")


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` with settings that work on a machine with no git configuration."""
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )
    return done.stdout.decode().strip()
