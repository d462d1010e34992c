"""Stream complete lines of the run log in constant memory; yield runs or ``CorruptLine`` reports.

A scan takes a size snapshot first and reads only up to the last ``\\n`` before it: bytes after
that may belong to a writer that is mid-``write()``, so they are *pending*, not corrupt.  Only a
caller that knows no writer is active (it holds the lock, or ``exptrack check``) passes
``final=True`` to report an unterminated tail as torn.

Lines are cut from large chunks and parsed from ``memoryview`` slices, so the cost per line is
one ``find`` and one ``orjson.loads``; a line longer than the record cap is skipped in pieces
without ever being held whole in memory.

Policies for bytes that editors and crashes leave behind (each has a test in
``tests/test_reader_paths.py``):

* CRLF line ends are accepted: the ``\\r`` is dropped before parsing (the checksum covers the
  record, not its line end).
* A UTF-8 byte-order mark (``EF BB BF``) is tolerated only at byte 0 of the file, where an editor
  puts it when it saves the log; the record after it is read as usual.  Anywhere else it is part
  of a corrupt line.
* A line holding NUL bytes is corrupt and says so: file systems zero-fill blocks whose data had
  not reached the disk at a crash.
* Empty lines are reported as ``blank line``; nothing is ever skipped silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from exptrack.store.codec import MAX_RECORD_BYTES, LineError, decode
from exptrack.store.edits import Edit, Overlay
from exptrack.store.record import CorruptLine, Run

CHUNK_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"


class LogScan:
    """One pass over ``[start, end)`` of the log; iterate it, then read the counters.

    Attributes (complete once iteration ends):
        end_offset: byte just after the last complete line read (the next watermark).
        lines: number of the last complete line read (1-based numbering continues from
            ``first_line``); during iteration, the number of the line just yielded.
        pending: bytes after the last newline that were not read as a line.
        unchecked: valid runs that carried no checksum.
    """

    def __init__(
        self,
        path: str,
        *,
        start: int = 0,
        end: int | None = None,
        first_line: int = 1,
        final: bool = False,
    ) -> None:
        self.path = path
        self.start = start
        self.end = end
        self.final = final
        self.end_offset = start
        self.lines = first_line - 1
        self.pending = 0
        self.unchecked = 0

    def __iter__(self) -> Iterator[Run | Edit | CorruptLine]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            end = os.fstat(fd).st_size if self.end is None else self.end
            yield from self._lines(fd, end)
        finally:
            os.close(fd)

    def _lines(self, fd: int, end: int) -> Iterator[Run | Edit | CorruptLine]:
        pos = self.start
        carry = b""  # the start of a line that continues into the next chunk
        skipping = False  # inside an over-long line: drop bytes until its newline
        skip_from = pos
        line_no = self.lines
        while pos < end:
            chunk = os.pread(fd, min(CHUNK_BYTES, end - pos), pos)
            if not chunk:
                break  # the file shrank under us; what was read stays valid
            base = pos - len(carry)
            buf = carry + chunk if carry else chunk
            pos += len(chunk)
            view = memoryview(buf)
            cut = 0
            while True:
                nl = buf.find(b"\n", cut)
                if nl < 0:
                    break
                line_no += 1
                self.lines = line_no  # current while iterating: callers number what they are handed
                if skipping:
                    skipping = False
                    yield CorruptLine(line_no, skip_from, base + nl - skip_from, _too_long())
                elif nl - cut >= MAX_RECORD_BYTES:  # no writer makes it: the cap counts the newline
                    yield CorruptLine(line_no, base + cut, nl - cut, _too_long())
                else:
                    item = _parse(view[cut:nl], base + cut, line_no)
                    if type(item) is tuple:
                        run, checked = item
                        if not checked:
                            self.unchecked += 1
                        yield run
                    else:
                        yield item  # type: ignore[misc]
                cut = nl + 1
            self.lines = line_no
            if not skipping:  # still inside an over-long line: the watermark stays at its start
                self.end_offset = base + cut
            rest = len(buf) - cut
            if skipping or rest >= MAX_RECORD_BYTES:
                if not skipping:
                    skipping, skip_from = True, base + cut
                carry = b""
            else:
                carry = buf[cut:]
            view.release()
        tail_start = self.end_offset
        self.pending = end - tail_start
        if self.pending and self.final:
            yield CorruptLine(line_no + 1, tail_start, self.pending, "torn tail (unterminated last line)")


def line_length(path: str, offset: int) -> int:
    """Bytes from ``offset`` to the next ``\\n`` (for reports on rare lines, e.g. duplicates);
    ``-1`` if the file cannot be read there.  Reads at most the record cap."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1
    try:
        pos = offset
        while pos - offset <= MAX_RECORD_BYTES:
            chunk = os.pread(fd, 1 << 16, pos)
            if not chunk:
                break
            nl = chunk.find(b"\n")
            if nl >= 0:
                return pos + nl - offset
            pos += len(chunk)
        return -1
    except OSError:
        return -1
    finally:
        os.close(fd)


def _too_long() -> str:
    cap = MAX_RECORD_BYTES
    size = f"{cap >> 20} MiB" if cap >= 1 << 20 else f"{cap} byte"
    return f"line longer than the {size} record cap"


def _parse(line: memoryview, offset: int, line_no: int) -> tuple[Run | Edit, bool] | CorruptLine:
    length = len(line)
    if length == 0 or (length == 1 and line[0] == 13):
        return CorruptLine(line_no, offset, length, "blank line")
    if line[length - 1] == 13:  # CRLF: an editor converted the file; the record itself is fine
        line = line[: length - 1]
    if offset == 0 and line[:3] == _BOM:  # an editor's byte-order mark; see the module docstring
        line = line[3:]
    try:
        return decode(line, offset)
    except LineError as exc:
        raw = line.tobytes()
        if not raw.strip():
            return CorruptLine(line_no, offset, length, "blank line")
        if b"\0" in raw:  # JSON never holds a raw NUL: a zero-filled block from a crash or power loss
            nuls = "only NUL bytes" if not raw.strip(b"\0") else "NUL bytes"
            return CorruptLine(line_no, offset, length, f"{nuls} (zero-filled block left by a crash)")
        return CorruptLine(line_no, offset, length, str(exc))


def merge_state(path: str) -> tuple[Overlay, frozenset[int]]:
    """The edits of a log folded (``store.edits``) and the offsets of superseded records (earlier
    records of resumed runs), from one pass that holds one offset per run id."""
    overlay = Overlay()
    latest: dict[str, int] = {}
    superseded: set[int] = set()
    for item in LogScan(path):
        if type(item) is Run:
            if item.run_id not in latest:
                latest[item.run_id] = item.offset
            elif "resumed" in item.extra:
                superseded.add(latest[item.run_id])
                latest[item.run_id] = item.offset
        elif type(item) is Edit:
            overlay.add(item)
    return overlay, frozenset(superseded)
