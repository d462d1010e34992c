"""Id columns written to files while a long read goes, instead of kept in memory (the cold build).

A million runs make 57 MB of id columns (hash, offset, id position: 8 bytes each; the id text),
the bulk of a cold build's memory, which would otherwise grow with the log.  A read that rebuilds
the index from byte 0 writes each block's columns straight into the new generation's column files
(the first piece) or into temporary files of its own (the pieces forked helpers read), which the
reader then appends in log order, rebasing the id positions.  What stays in memory is one block's
columns and one 1 MiB copy buffer; the CRC-32 of each column is kept as it is written, exactly as
``idmap`` computes it over a saved column.
"""

from __future__ import annotations

import contextlib
import operator
import os
import zlib
from array import array
from collections.abc import Mapping
from itertools import compress, islice, repeat

from exptrack.store.fsio import FILE_MODE, fs
from exptrack.store.segment import part_masks

COLUMNS = ("hash", "off", "pos", "ids")
"""The id columns, as ``idmap`` names their files."""
_COPY = 1 << 20


class ColumnSink:
    """Four files the id columns of a read are appended to, block by block.

    Args:
        paths: the file of each column; created (or truncated) here.
    """

    def __init__(self, paths: Mapping[str, str]) -> None:
        self.paths = dict(paths)
        self.count = 0  # runs written
        self.length = 0  # bytes of id text written
        self.crcs = dict.fromkeys(COLUMNS, 0)
        self._fds: dict[str, int] = {}
        try:
            for column in COLUMNS:
                self._fds[column] = fs().open(self.paths[column], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                                              FILE_MODE)
        except OSError:
            self.close()
            raise

    def write(self, hashes: array[int], offsets: array[int], starts: array[int], ids: bytes | bytearray) -> None:
        """Append one block: ``starts`` count from the start of this block's ``ids``."""
        if self.length:
            starts = array("Q", map(operator.add, starts, repeat(self.length)))
        for column, data in (("hash", memoryview(hashes).cast("B")), ("off", memoryview(offsets).cast("B")),
                             ("pos", memoryview(starts).cast("B")), ("ids", memoryview(ids))):
            self.crcs[column] = zlib.crc32(data, self.crcs[column])
            _write_all(self._fds[column], data)
        self.count += len(hashes)
        self.length += len(ids)

    def append(self, paths: Mapping[str, str], count: int, length: int) -> None:
        """Append another sink's closed files (the next piece of the log), rebasing its positions."""
        base = self.length
        for column in COLUMNS:
            with open(paths[column], "rb", buffering=0) as source:
                while chunk := source.read(_COPY):
                    if column == "pos" and base:
                        chunk = array("Q", map(operator.add, _words(chunk), repeat(base))).tobytes()
                    self.crcs[column] = zlib.crc32(chunk, self.crcs[column])
                    _write_all(self._fds[column], chunk)
        self.count += count
        self.length += length

    def mark(self) -> tuple[int, int, dict[str, int], dict[str, int]]:
        """Where the sink is now: :meth:`rewind` goes back here (a read that starts over)."""
        sizes = {column: os.lseek(fd, 0, os.SEEK_CUR) for column, fd in self._fds.items()}
        return self.count, self.length, dict(self.crcs), sizes

    def rewind(self, mark: tuple[int, int, dict[str, int], dict[str, int]]) -> None:
        self.count, self.length, crcs, sizes = mark
        self.crcs = dict(crcs)
        for column, fd in self._fds.items():
            os.ftruncate(fd, sizes[column])
            os.lseek(fd, sizes[column], os.SEEK_SET)

    def close(self, *, sync: bool = False) -> None:
        """Close the files (after ``fsync`` when ``sync``: they are the index's own columns)."""
        fds, self._fds = self._fds, {}
        try:
            if sync:
                for fd in fds.values():
                    fs().fsync(fd)
        finally:
            for fd in fds.values():
                with contextlib.suppress(OSError):
                    fs().close(fd)

    def remove(self) -> None:
        """Close and delete the files (a helper's pieces, once appended; or an abandoned read)."""
        self.close()
        remove_files(self.paths)


def sorted_hashes(path: str, count: int) -> array[int] | None:
    """The first ``count`` words of a hash column file, ascending; ``None`` when two are equal.

    Read part by part (``segment.part_masks``) from the file, so that only the sorted column and
    one part's list are in memory; equal words fall in the same part.
    """
    ordered = array("Q")
    with open(path, "rb", buffering=0) as handle:
        for mask in part_masks(count) or [bytes([1]) * 256]:
            handle.seek(0)
            left = 8 * count
            chosen: list[int] = []
            while left > 0 and (chunk := handle.read(min(_COPY, left))):
                left -= len(chunk)
                chosen.extend(compress(_words(chunk), chunk[7::8].translate(mask)))
            chosen.sort()
            if any(map(operator.eq, chosen, islice(chosen, 1, None))):
                return None
            ordered.extend(chosen)
    if len(ordered) != count:
        raise OSError(5, f"the hash column {path} is shorter than the {count} runs written")
    return ordered


def remove_files(paths: Mapping[str, str]) -> None:
    for path in paths.values():
        with contextlib.suppress(OSError):
            os.unlink(path)


def piece_paths(directory: str, generation: str, pid: int) -> dict[str, str]:
    """Temporary files of a helper's piece: the pid names their owner (``idmap`` sweeps the dead's)."""
    return {column: os.path.join(directory, f"{generation}-{column}.{pid}.piece.tmp") for column in COLUMNS}


def _words(chunk: bytes) -> array[int]:
    words = array("Q")
    words.frombytes(chunk)
    return words


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = fs().write(fd, view[:_COPY])
        if written <= 0:
            raise OSError(5, "write returned no progress")
        view = view[written:]
