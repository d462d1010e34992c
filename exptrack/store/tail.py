"""Read the run log backwards: the complete lines before a byte offset, the last one first.

``runs -n 20`` wants the most recent runs; reading the log from the start to keep its last 20
lines costs a pass over the whole file (seconds at a million runs).  Lines are cut from chunks
read from the end, so the cost is that of the lines returned.  Each line is handed to the same
parser as every other reader (``scan._parse``: checksum, JSON, record checks), so a line reads
the same whichever direction it was found in.  A line longer than the record cap is reported
as ``None`` (it is corrupt) without ever being held whole in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from exptrack.store.codec import MAX_RECORD_BYTES

_pread = os.pread  # module-level, so a test can count what a listing reads

CHUNK_BYTES = 1 << 16
"""Bytes read per step: a few dozen typical runs, so ``-n 20`` is usually one read."""


def lines_before(path: str, end: int, *, chunk: int = CHUNK_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """``(offset, line)`` for every line of ``[0, end)``, from the last to the first.

    ``end`` must be 0 or just after a ``\\n`` (an index watermark is); the line excludes its
    newline; ``None`` stands for a line above ``MAX_RECORD_BYTES``.
    """
    if end <= 0:
        return
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield from _backwards(fd, end, chunk)
    finally:
        os.close(fd)


def _backwards(fd: int, end: int, chunk: int) -> Iterator[tuple[int, bytes | None]]:
    pos = end
    carry = b""  # the start of the line that ends where the bytes already handled begin
    skipping = -1  # inside an over-long line: where it ends (its start is still to be found)
    while pos > 0:
        size = min(chunk, pos)
        pos -= size
        data = _pread(fd, size, pos)
        if len(data) != size:
            raise OSError(f"{size} bytes expected at {pos}, {len(data)} read: the log shrank")
        if skipping >= 0:
            cut = data.rfind(b"\n")
            if cut < 0:
                continue  # still inside the over-long line
            yield pos + cut + 1, None
            skipping = -1
            data = data[: cut + 1]
        else:
            data += carry
        lines = data.split(b"\n")
        lines.pop()  # after the last newline: nothing (data ends with one)
        first = lines[0]
        starts = [pos]
        for line in lines[:-1]:
            starts.append(starts[-1] + len(line) + 1)
        for i in range(len(lines) - 1, 0, -1):
            yield starts[i], (lines[i] if len(lines[i]) < MAX_RECORD_BYTES else None)
        if pos == 0:
            yield 0, (first if len(first) < MAX_RECORD_BYTES else None)
        elif len(first) >= MAX_RECORD_BYTES:
            skipping, carry = pos + len(first), b""
        else:
            carry = first + b"\n"
    if skipping >= 0:  # the over-long line is the file's first
        yield 0, None
