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

from exptrack.errors import ExptrackError
from exptrack.live.artifacts import ArtifactStore
from exptrack.query.ranking import Summary
from exptrack.store import RUNS_FILE, codec
from exptrack.store.edits import Edit
from exptrack.store.index.identity import INDEX_DIR, INDEX_FILE
from exptrack.store.index.reducers import TopK
from exptrack.store.record import CorruptLine, Run
from exptrack.store.scan import LogScan, line_length, merge_state
from exptrack.tracker import ExperimentTracker

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
        notes: fragments fenced off after a crash or a full disk (a cut-off line exptrack wrote,
            or an unterminated last line): nothing acknowledged was lost, so they are not
            problems unless the check is strict.
    """

    store: str
    log_bytes: int = 0
    lines: int = 0
    runs: int = 0
    unchecked: int = 0
    artifacts: int = 0
    index: str = "absent"
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)

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
            "notes": [note.to_dict() for note in self.notes],
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
    referenced: dict[str, tuple[Run, str]] = {}
    summary = Summary()
    tops: dict[str, tuple[TopK, TopK]] = {}
    log_name = os.fspath(log_path)
    # The log is read here without the index: the check must not trust the cache it verifies.
    overlay, superseded = merge_state(log_name)  # edits come after their runs: fold them first
    scan = LogScan(log_name, final=True)
    first_line: dict[str, int] = {}
    sample = _Sample()
    for item in scan:
        report.lines += 1
        if type(item) is Edit:
            continue
        if type(item) is Run:
            first = first_line.setdefault(item.run_id, scan.lines)
            if first == scan.lines or "resumed" in item.extra:
                if item.offset in superseded:
                    continue
                if overlay.is_deleted(item.run_id):
                    if artifacts:  # a deleted run keeps its blobs until gc removes it
                        for name, sha in _blob_refs(item):
                            referenced.setdefault(sha, (item, name))
                    continue
                report.runs += 1
                sample.add(item.run_id, item.offset)
                summary.add(item)
                for name, value in item.metrics.items():
                    if name not in tops:
                        tops[name] = (TopK(1, "max"), TopK(1, "min"))
                    for top in tops[name]:
                        top.add(value, item.offset, item.run_id)
                if artifacts:
                    for name, sha in _blob_refs(item):
                        referenced.setdefault(sha, (item, name))
                continue
            # the duplicate policy: the first line with an id wins, later ones are corrupt
            found = CorruptLine(scan.lines, item.offset, line_length(log_name, item.offset),
                                f"duplicate run_id {item.run_id} (first at line {first})")
        else:
            found = item  # type: ignore[assignment]
            if _is_fenced_fragment(log_name, found):
                report.notes.append(Problem("log", log_name, f"{found.reason}: a fragment left by a crash or a full "
                                            "disk, fenced off; nothing acknowledged was lost",
                                            found.line, found.offset, found.length))
                continue
        report.problems.append(Problem("log", log_name, found.reason, found.line, found.offset, found.length))
    report.unchecked = scan.unchecked
    if artifacts:
        _check_artifacts(root, referenced, report)
    report.index = _check_index(root, report, summary, tops, sample.items)
    return report


_RECORD_START = b'{"schema":'


def _is_fenced_fragment(log_name: str, found: CorruptLine) -> bool:
    """A cut-off start of a line exptrack writes, not damage: an append that died (SIGKILL,
    ENOSPC, a file-size limit) leaves the first bytes of its line, and the next append fences
    them with a newline.  A torn last line is the same thing not yet fenced.  A line that is
    complete (ends in ``}``) but wrong -- a checksum mismatch, a bit flip -- is damage."""
    if found.reason.startswith("torn tail"):
        return True
    if not found.reason.startswith("invalid JSON") or found.length <= 0:
        return False
    try:
        with open(log_name, "rb") as handle:
            handle.seek(found.offset)
            line = handle.read(min(found.length, codec.MAX_RECORD_BYTES)).rstrip(b"\n")
    except OSError:
        return False
    if len(line) <= len(_RECORD_START):
        return bool(line) and _RECORD_START.startswith(line)
    return line.startswith(_RECORD_START) and not line.endswith(b"}")


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


class _Sample:
    """Evenly spaced (run_id, offset) pairs of a stream of unknown length, at most 2 * ``size``."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.stride = 1
        self.seen = 0
        self.items: list[tuple[str, int]] = []

    def add(self, run_id: str, offset: int) -> None:
        if self.seen % self.stride == 0:
            self.items.append((run_id, offset))
            if len(self.items) >= 2 * self.size:
                del self.items[1::2]
                self.stride *= 2
        self.seen += 1


def _check_index(
    root: Path,
    report: CheckReport,
    summary: Summary,
    tops: Mapping[str, tuple[TopK, TopK]],
    sample: list[tuple[str, int]],
) -> str:
    """The index is a disposable cache: if there is one, its answers must equal the log's.

    ``index.json`` carries the same CRC-32 suffix as a run line: a damaged one is a problem
    (bytes changed on disk), although the query that follows rebuilds it.  Then the tracker
    refreshes the index as any query does, and its counts, corrupt lines, statistics, best runs
    and id lookups (a sample) must equal this index-free read; a disagreement is a problem
    (``.index`` can always be deleted: it is rebuilt from the log).
    """
    index_dir = root / INDEX_DIR
    index_file = index_dir / INDEX_FILE
    if not index_file.exists():
        return "absent"
    where = os.fspath(index_dir)
    wrong: list[str] = []
    try:
        damaged = codec.checksum_state(index_file.read_bytes().rstrip(b"\n")) is not True
    except OSError as exc:
        damaged, wrong = False, [f"{INDEX_FILE} cannot be read ({exc.strerror})"]
    if damaged:
        report.problems.append(Problem("index", os.fspath(index_file),
                                       "damaged (its checksum does not match); rebuilt from the log"))
    tracker = ExperimentTracker(root)
    try:
        indexed = tracker.summary(status="any")
        corrupt = tracker.corrupt_lines()
        wrong += _disagreements(tracker, report, summary, tops, indexed, corrupt)
        for run_id, offset in sample:
            found = tracker.get_run(run_id).offset
            if found != offset:
                wrong.append(f"it finds run {run_id} at byte {found}, the log has it at byte {offset}")
                break
    except ExptrackError as exc:
        wrong.append(f"a query through it failed: {exc}")
    finally:
        stats = tracker.index_stats()
        tracker.close()
    for what in wrong:
        report.problems.append(Problem("index", where, f"{what}; delete {where} to rebuild it from the log"))
    if wrong:
        return "disagrees with the log"
    state = f"ok ({stats.runs} runs up to byte {stats.watermark})"
    if damaged or stats.rebuilds:
        state += ", rebuilt"
    if not stats.persistent:
        state += ", kept in memory: the store cannot be written"
    return state


def _disagreements(
    tracker: ExperimentTracker,
    report: CheckReport,
    summary: Summary,
    tops: Mapping[str, tuple[TopK, TopK]],
    indexed: Mapping[str, Any],
    corrupt: list[CorruptLine],
) -> list[str]:
    torn = "torn tail"
    wrong = []
    if indexed["total_runs"] != report.runs:
        wrong.append(f"it counts {indexed['total_runs']} runs, the log holds {report.runs}")
    expected = sorted(p.offset for p in report.problems if p.kind == "log" and not p.reason.startswith(torn))
    actual = sorted(c.offset for c in corrupt if not c.reason.startswith(torn))
    if actual != expected:
        wrong.append(f"it reports corrupt lines at bytes {actual[:5]}, the log has them at {expected[:5]}")
    if indexed.get("unchecked_runs", report.unchecked) != report.unchecked:
        wrong.append(f"it counts {indexed['unchecked_runs']} unchecked runs, the log {report.unchecked}")
    if dict(indexed["statuses"]) != {k: v for k, v in summary.statuses.items() if v}:
        wrong.append(f"its status counts {indexed['statuses']} differ from the log's")
    metrics: Mapping[str, Mapping[str, Any]] = indexed["metrics"]
    every = summary.groups.stats()
    if sorted(metrics) != sorted(every):
        wrong.append("it lists other metrics than the log holds")
        return wrong
    for name, stats in every.items():
        want, got = stats.to_dict(), metrics[name]
        wrong.extend(
            f"metric {name!r}: {key} is {got[key]}, the log says {want[key]}"
            for key in ("count", "nonfinite", "min", "max")
            if got[key] != want[key]
        )
        for top in tops[name]:
            entries = top.ranked()
            if not entries:
                continue
            try:
                best = tracker.top_runs(name, 1, mode=top.mode, status="any")[0]
            except ExptrackError as exc:
                wrong.append(f"metric {name!r}: best ({top.mode}) failed: {exc}")
                continue
            if best.run_id != entries[0][2]:
                wrong.append(f"metric {name!r}: best ({top.mode}) is {best.run_id}, the log says {entries[0][2]}")
    return wrong
