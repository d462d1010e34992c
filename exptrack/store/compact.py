"""Compaction (``exptrack gc``): a new log without deleted runs, edits folded in, swapped in atomically.

The only rewrite of ``runs.jsonl``.  The caller holds the log's lock for the whole of
:func:`rewrite`, so no append can fall between the read and the swap, and writers notice the new
file (``Journal._follow_swap``) on their next append.  The new log is written beside the old one
(``runs.jsonl.gc-<pid>.tmp``), synced, renamed over it and the directory synced: a crash at any
point leaves either the old log or the new one, each complete.  Every file-system call goes
through ``fsio.fs()`` so that a test can fail each in turn.

What the new log holds, in the old order: every visible run as the merged view shows it (a run
no edit touched is copied byte for byte; an edited or resumed one is re-encoded with its edits
folded in), and every line exptrack cannot read (corrupt, torn, from a newer schema) copied
verbatim, so compaction never destroys bytes it does not understand.  Left out: deleted runs,
superseded records of resumed runs, duplicate lines, and the edit lines themselves.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field

from exptrack.store import codec
from exptrack.store.edits import Edit, Overlay
from exptrack.store.fsio import FILE_MODE, fs
from exptrack.store.journal import io_write_all
from exptrack.store.record import Run
from exptrack.store.scan import CHUNK_BYTES, _parse

_BATCH = 4 << 20  # bytes of new log gathered before one write


@dataclass(slots=True)
class Plan:
    """What a compaction keeps and drops (``--dry-run`` prints it; the rewrite fills it in)."""

    bytes_before: int = 0
    bytes_after: int = 0
    runs_kept: int = 0
    runs_removed: int = 0
    edits_folded: int = 0
    lines_dropped: int = 0  # superseded records and duplicate lines
    kept_ids: set[str] = field(default_factory=set)
    removed_ids: list[str] = field(default_factory=list)
    references: set[str] = field(default_factory=set)  # blobs the kept runs point to


def compacted_lines(path: str, end: int, overlay: Overlay, skip: Collection[int], plan: Plan,
                    blob_refs: Callable[[Run], Iterator[str]]) -> Iterator[bytes]:
    """The new log's lines for ``[0, end)`` of the log at ``path`` (read through ``fs()``).

    ``skip`` holds the offsets of lines to leave out whatever they hold: superseded records and
    duplicates (the index knows them).
    """
    io = fs()
    fd = io.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        pos, carry, base = 0, b"", 0
        while pos < end:
            chunk = io.pread(fd, min(CHUNK_BYTES, end - pos), pos)
            if not chunk:
                break
            pos += len(chunk)
            buf = carry + chunk if carry else chunk
            lines = buf.split(b"\n")
            carry = lines.pop()
            for line in lines:
                offset = base
                base += len(line) + 1
                yield from _one(line, offset, overlay, skip, plan, blob_refs)
        if carry:  # an unterminated tail: kept, terminated (the journal would fence it anyway)
            yield carry + b"\n"
    finally:
        io.close(fd)


def _one(line: bytes, offset: int, overlay: Overlay, skip: Collection[int], plan: Plan,
         blob_refs: Callable[[Run], Iterator[str]]) -> Iterator[bytes]:
    if offset in skip:
        plan.lines_dropped += 1
        return
    item = _parse(memoryview(line), offset, 0)
    if type(item) is not tuple:
        yield line + b"\n"  # not readable by this version: never ours to destroy
        return
    record = item[0]
    if isinstance(record, Edit):
        plan.edits_folded += 1
        return
    if overlay.is_deleted(record.run_id):
        plan.runs_removed += 1
        plan.removed_ids.append(record.run_id)
        return
    merged = overlay.apply(record)
    plan.runs_kept += 1
    plan.kept_ids.add(record.run_id)
    plan.references.update(blob_refs(merged))
    if merged is record and "resumed" not in record.extra:
        yield line + b"\n"
        return
    extra = {key: value for key, value in merged.extra.items() if key not in ("resumed", "deleted")}
    yield codec.encode(Run(merged.run_id, merged.timestamp, merged.params, merged.metrics, merged.tags,
                           merged.status, extra))


def rewrite(path: str, lines: Iterator[bytes], plan: Plan, *, dry_run: bool) -> None:
    """Write ``lines`` to a temporary file beside ``path``, sync it and rename it over ``path``.

    On any failure the temporary file is removed (best effort) and the old log is untouched.
    """
    if dry_run:
        for line in lines:
            plan.bytes_after += len(line)
        return
    io = fs()
    folder, base = os.path.split(path)
    for name in os.listdir(folder or "."):  # left by a gc that died: the lock is ours, so it is no one's
        if name.startswith(f"{base}.gc-") and name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                io.unlink(os.path.join(folder, name))
    tmp = f"{path}.gc-{os.getpid()}.tmp"
    fd = io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        try:
            batch: list[bytes] = []
            size = 0
            for line in lines:
                batch.append(line)
                size += len(line)
                if size >= _BATCH:
                    io_write_all(fd, b"".join(batch))
                    plan.bytes_after += size
                    batch, size = [], 0
            if batch:
                io_write_all(fd, b"".join(batch))
                plan.bytes_after += size
            io.fsync(fd)
        finally:
            io.close(fd)
        io.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            io.unlink(tmp)
        raise
    _sync_dir(os.path.dirname(path) or ".")


def _sync_dir(directory: str) -> None:
    """Make the rename durable; a file system that cannot sync a directory is left as it is."""
    io = fs()
    try:
        fd = io.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    with contextlib.suppress(OSError):
        try:
            io.fsync(fd)
        finally:
            io.close(fd)
