"""Verify a whole store (``exptrack check``): every log line, every checksum, the artifacts, the index.

The check only reads.  Unlike a live query it treats an unterminated last line as a torn tail
even if a writer might still be busy, because the question it answers is "is this store
intact right now?".  Every finding is a :class:`Problem` value carrying the exact place (line
number, byte offset, length) and the reason, so a report lists all of them instead of stopping
at the first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .artifacts import ArtifactStore
from .record import Run
from .scan import CorruptLine
from .tracker import RUNS_FILE, ExperimentTracker

ProblemKind = Literal["log", "artifact", "index"]
_SHA256_LEN = 64


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the store.

    ``line``, ``offset`` and ``length`` locate it in ``runs.jsonl`` (1-based line, byte offset,
    byte length); they are ``-1`` for problems that are not about a log line (a corrupt blob).
    """

    kind: ProblemKind
    path: str
    reason: str
    line: int = -1
    offset: int = -1
    length: int = -1

    def __str__(self) -> str:
        if self.line >= 0:
            return f"{self.path}: line {self.line} (byte {self.offset}, {self.length} bytes): {self.reason}"
        return f"{self.path}: {self.reason}"

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "path": self.path,
            "line": self.line,
            "offset": self.offset,
            "length": self.length,
            "reason": self.reason,
        }


@dataclass(slots=True)
class CheckReport:
    """What :func:`check_store` found.  ``ok`` is true only when ``problems`` is empty.

    Attributes:
        store: the store directory checked.
        log_bytes: size of ``runs.jsonl`` when the check started.
        lines: lines in the log (complete ones plus an unterminated tail, if any).
        runs: valid runs (first of each run id).
        unchecked: valid runs whose line carries no checksum (written by hand or another tool).
        artifacts: blobs hashed.
        index: ``"absent"``, ``"ok"`` or a short description of what was found.
        problems: every finding, log lines first in file order.
    """

    store: str
    log_bytes: int = 0
    lines: int = 0
    runs: int = 0
    unchecked: int = 0
    artifacts: int = 0
    index: str = "absent"
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "ok": self.ok,
            "log_bytes": self.log_bytes,
            "lines": self.lines,
            "runs": self.runs,
            "unchecked": self.unchecked,
            "artifacts": self.artifacts,
            "index": self.index,
            "problems": [problem.to_dict() for problem in self.problems],
        }


def check_store(store: str | os.PathLike[str], *, artifacts: bool = True) -> CheckReport:
    """Check ``store`` and return every problem found; never raises for corrupt content.

    Args:
        store: the store directory.
        artifacts: re-hash every blob under ``<store>/artifacts`` (reads all of them).

    Raises:
        StorageError / OSError: the log exists but cannot be read at all.
    """
    root = Path(store)
    report = CheckReport(store=os.fspath(root))
    log_path = root / RUNS_FILE
    try:
        report.log_bytes = log_path.stat().st_size
    except FileNotFoundError:
        report.log_bytes = 0
    tracker = ExperimentTracker(root)
    referenced: dict[str, tuple[Run, str]] = {}
    log_name = os.fspath(log_path)
    for item in tracker.scan(final=True):
        report.lines += 1
        if type(item) is Run:
            report.runs += 1
            if artifacts:
                for name, sha in _blob_refs(item):
                    referenced.setdefault(sha, (item, name))
        else:
            corrupt: CorruptLine = item  # type: ignore[assignment]
            report.problems.append(
                Problem("log", log_name, corrupt.reason, corrupt.line, corrupt.offset, corrupt.length)
            )
    report.unchecked = tracker.last_unchecked
    tracker.close()
    if artifacts:
        _check_artifacts(root, referenced, report)
    report.index = _check_index(root, report)
    return report


def _blob_refs(run: Run) -> Iterator[tuple[str, str]]:
    """``(name, sha256)`` of every blob a run points to: its artifacts and its package list."""
    listed = run.extra.get("artifacts")
    if isinstance(listed, Mapping):
        for name, ref in listed.items():
            sha = ref.get("sha256") if isinstance(ref, Mapping) else None
            if isinstance(sha, str) and len(sha) == _SHA256_LEN:
                yield str(name), sha
    system = run.extra.get("system")
    if isinstance(system, Mapping):
        sha = system.get("packages_sha256")
        if isinstance(sha, str) and len(sha) == _SHA256_LEN:
            yield "package list", sha


def _check_artifacts(root: Path, referenced: Mapping[str, tuple[Run, str]], report: CheckReport) -> None:
    blobs = ArtifactStore(root / "artifacts")
    if blobs.root.is_dir():
        for _dirpath, _dirs, files in os.walk(blobs.root):
            report.artifacts += len(files)
        report.problems.extend(Problem("artifact", found.path, found.reason) for found in blobs.verify())
    for sha, (run, name) in referenced.items():
        try:
            present = blobs.exists(sha)
        except ValueError:  # not a digest: the record itself says so, nothing to look up
            continue
        if not present:
            report.problems.append(
                Problem(
                    "artifact",
                    os.fspath(blobs.path_of(sha)),
                    f"missing: run {run.run_id} (line at byte {run.offset}) records {name!r} with this sha256",
                )
            )


def _check_index(root: Path, report: CheckReport) -> str:
    """The index is a disposable cache: report whether it exists and agrees with the log."""
    index_dir = root / ".index"
    if not index_dir.exists():
        return "absent"
    return "present (not verified)"
