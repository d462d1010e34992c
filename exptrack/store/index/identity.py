"""Which log an index describes: file identity, the fingerprint that catches a rewrite, and the index's own errors."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from exptrack.store.fsio import fs

INDEX_DIR = ".index"


INDEX_FILE = "index.json"


_HEAD_BYTES = 64 << 10


_TAIL_BYTES = 4 << 10


_SAMPLES = 15


_SAMPLE_BYTES = 1 << 10


class StaleIndexError(Exception):
    """The index does not describe the log it sits beside; it must be rebuilt."""


@dataclass(frozen=True, slots=True)
class IndexStats:
    """What the index holds, for ``tracker.index_stats()`` and ``exptrack`` diagnostics."""

    path: str
    persistent: bool
    watermark: int
    lines: int
    runs: int
    corrupt: int
    metrics: int
    generation: str
    rebuilds: int


def fingerprint(fd: int, watermark: int) -> str:
    """CRC-32s of the log's head, of the bytes before ``watermark`` and of samples in between."""
    if watermark <= 0:
        return ""
    read = fs().pread
    spans = [(0, min(_HEAD_BYTES, watermark)), (max(0, watermark - _TAIL_BYTES), watermark)]
    crcs = []
    for start, stop in spans[:2]:
        data = read(fd, stop - start, start)
        crcs.append(zlib.crc32(data))
    if not data.endswith(b"\n"):  # the bytes just before the watermark: a line must end there
        return "mid-line"
    for i in range(1, _SAMPLES + 1):
        start = watermark * i // (_SAMPLES + 1)
        crcs.append(zlib.crc32(read(fd, min(_SAMPLE_BYTES, watermark - start), start)))
    return "".join(f"{crc:08x}" for crc in crcs)


def _why(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, StaleIndexError) else f"unreadable index ({type(exc).__name__}: {exc})"


