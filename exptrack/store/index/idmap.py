"""The index's run_id → offset map: append-only binary columns searched in C, written at fixed positions."""

from __future__ import annotations

import bisect
import contextlib
import mmap
import operator
import os
import re
import socket
import sys
import time
import zlib
from array import array
from collections.abc import Iterator
from itertools import compress, islice, repeat

from exptrack.store.codec import MAX_RECORD_BYTES
from exptrack.store.fsio import FILE_MODE, fs
from exptrack.store.index.identity import StaleIndexError
from exptrack.store.record import Run
from exptrack.store.scan import _parse
from exptrack.store.segment import Segment, id_from_key, id_hash, id_key

_COLUMNS = ("hash", "off", "pos", "ids")


_STALE_GENERATION_SECONDS = 600
# Who owns a file of the index directory: generations are "p<pid>h<host>r<random>", temporary
# files "<name>.<pid>.<random>.tmp".  Housekeeping deletes another process's files only when that
# process is dead on this host (a store on a shared file system may have owners elsewhere: those
# files go only when old).
_GENERATION = re.compile(r"p(\d+)h([0-9a-f]{8})r[0-9a-f]+")
_HOST = f"{zlib.crc32(socket.gethostname().encode()):08x}"


def new_generation() -> str:
    """A generation name that says which process on which host created it."""
    return f"p{os.getpid()}h{_HOST}r{os.urandom(6).hex()}"


def _dead_here(pid: int) -> bool:
    """Whether ``pid`` is no live process on this host (never true for this process)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it exists, under another user
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rpartition(b")")[2].split()[:1] == [b"Z"]
    except OSError:
        return False


_BISECT_FACTOR = 64




_WRITE_PIECE = 1 << 20
"""Bytes handed to one ``pwrite``: a column of a million runs is never copied whole."""


def _pwrite_all(fd: int, data: bytes | bytearray | memoryview, at: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = fs().pwrite(fd, bytes(view[:_WRITE_PIECE]), at)
        if written <= 0:
            raise OSError(5, "write returned no progress")
        view = view[written:]
        at += written


def _line_numbers(fd: int, offsets: list[int]) -> dict[int, int]:
    """1-based line numbers of the lines starting at ``offsets`` (sorted), by counting newlines."""
    numbers: dict[int, int] = {}
    pos = count = 0
    for offset in offsets:
        while pos < offset:
            chunk = os.pread(fd, min(1 << 22, offset - pos), pos)
            if not chunk:
                break
            count += chunk.count(b"\n")
            pos += len(chunk)
        numbers[offset] = count + 1
    return numbers


def read_run_at(path: str, offset: int) -> Run:
    """Decode the run whose line starts at ``offset`` (one ``pread`` for an ordinary line).

    Raises:
        StaleIndexError: there is no valid run there (the index does not match the log).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise StaleIndexError(f"cannot read {path}: {exc}") from None
    try:
        data = b""
        while len(data) <= MAX_RECORD_BYTES:
            try:
                chunk = os.pread(fd, 64 << 10 if not data else len(data), offset + len(data))
            except (OSError, OverflowError) as exc:  # an offset no log can have: a damaged id map
                raise StaleIndexError(f"cannot read a line at byte {offset}: {exc}") from None
            if not chunk:
                break
            end = chunk.find(b"\n")
            if end >= 0:
                data += chunk[:end]
                item = _parse(memoryview(data), offset, 0)
                if type(item) is tuple and type(item[0]) is Run:
                    return item[0]
                if type(item) is tuple:
                    raise StaleIndexError(f"the line at byte {offset} is an edit, not a run")
                raise StaleIndexError(f"the line at byte {offset} is not a run: {item.reason}")  # type: ignore[union-attr]
            data += chunk
    finally:
        os.close(fd)
    raise StaleIndexError(f"no complete line at byte {offset}")


class IdColumns:
    """The id-map half of LogIndex: the hash / offset / position / id-text columns and their sorted copy.

    Kept apart from the metric answers because it has its own file format and its own checks (a CRC per
    column, verified once per process before a lookup trusts an absence); LogIndex owns the state."""

    # State owned and reset by LogIndex; declared here for the type checker.
    dir: str
    generation: str
    count: int
    ids_length: int
    sorted_count: int
    sorted_name: str
    crcs: dict[str, int]
    _new_sorted: array[int] | None
    _maps: dict[str, mmap.mmap | bytes | bytearray]
    _verified: set[str]
    _memory: dict[str, bytearray]
    resumes: set[int]


    def _column_path(self, column: str, generation: str | None = None) -> str:
        return os.path.join(self.dir, f"{generation or self.generation}.{column}")

    def _column(self, column: str) -> mmap.mmap | bytes | bytearray:
        """The saved part of one id column (memory-mapped; empty when there is none)."""
        length = self.ids_length if column == "ids" else 8 * (self.sorted_count if column == "sorted" else self.count)
        if not length:
            return b""
        if column in self._memory:
            return self._memory[column]
        cached = self._maps.get(column)
        if cached is not None and len(cached) >= length:
            return cached
        name = self._column_path(column) if column != "sorted" else os.path.join(self.dir, self.sorted_name)
        try:
            with open(name, "rb") as handle:
                mapped = mmap.mmap(handle.fileno(), length, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:  # missing, or shorter than the index says
            raise StaleIndexError(f"id column {column} is unreadable ({exc})") from None
        self._maps[column] = mapped
        return mapped

    def verify(self, *columns: str) -> None:
        """Check the CRC-32 of id columns, once per process: a lookup that finds nothing, or a
        duplicate check, must not trust a column that was damaged on disk.

        Raises:
            StaleIndexError: a column's bytes no longer match the CRC saved for them.
        """
        for column in columns:
            if column in self._verified:
                continue
            data = self._column(column)
            length = self.ids_length if column == "ids" else 8 * (
                self.sorted_count if column == "sorted" else self.count)
            if zlib.crc32(memoryview(data)[:length]) != self.crcs.get(column, 0):
                raise StaleIndexError(f"id column {column} is damaged (its checksum does not match)")
            self._verified.add(column)

    def _words(self, column: str) -> memoryview:
        data = self._column(column)
        count = self.sorted_count if column == "sorted" else self.count
        return memoryview(data)[: 8 * count].cast("Q") if data else memoryview(array("Q"))

    def _write_columns(self, segment: Segment) -> None:
        """Append the segment's entries to the id columns (``pwrite`` at the saved lengths)."""
        if segment.spilled:  # written (and synced) into this generation's files as the log was read
            self.crcs.update(segment.spill_crcs)
            return
        io = fs()
        base = self.ids_length - len(segment.ids)
        starts = array("Q", map(operator.add, segment.starts, repeat(base))) if base else segment.starts
        at = 8 * (self.count - segment.runs)
        # written from the segment's own buffers: copies of every column at once were the
        # largest allocation of a cold build
        columns: dict[str, tuple[memoryview, int]] = {
            "hash": (memoryview(segment.hashes).cast("B"), at), "off": (memoryview(segment.offsets).cast("B"), at),
            "pos": (memoryview(starts).cast("B"), at), "ids": (memoryview(segment.ids), base)}
        for column, (data, position) in columns.items():
            self.crcs[column] = zlib.crc32(data, self.crcs.get(column, 0) if position else 0)
            # Only a new generation creates its files: one that vanished (another process rebuilt
            # the index and deleted it) must not come back as zeros followed by a tail.
            flags = os.O_WRONLY | os.O_CLOEXEC | (os.O_CREAT if not position else 0)
            try:
                fd = io.open(self._column_path(column), flags, FILE_MODE)
            except FileNotFoundError:
                raise StaleIndexError(f"id column {column} was deleted by another process") from None
            try:
                if io.fstat(fd).st_size < position:
                    raise StaleIndexError(f"id column {column} is shorter than the index says")
                _pwrite_all(fd, data, position)
                io.fsync(fd)
            finally:
                io.close(fd)

    def _write_sorted(self, ordered: array[int]) -> str:
        """Install a new sorted hash column; return the name of the one it replaces.

        Written whole under a temporary name, then renamed: a process compacting at the same
        moment writes the same bytes, and a reader never maps a half-written file.
        """
        io = fs()
        name = f"{self.generation}-{self.count}.sorted"
        partial = os.path.join(self.dir, f"{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        fd = io.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        try:
            try:
                _pwrite_all(fd, memoryview(ordered), 0)
                io.fsync(fd)
            finally:
                io.close(fd)
            io.replace(partial, os.path.join(self.dir, name))
        except BaseException:
            with contextlib.suppress(OSError):
                io.unlink(partial)
            raise
        replaced, self.sorted_name, self.sorted_count = self.sorted_name, name, self.count
        self.crcs["sorted"] = zlib.crc32(ordered)
        self._verified.discard("sorted")
        self._new_sorted = None
        return replaced

    def _column_prefix(self, column: str, count: int, length: int) -> bytes | mmap.mmap | bytearray:
        saved_count, saved_length = self.count, self.ids_length
        self.count, self.ids_length = count, length
        try:
            data = self._column(column)
            return data[: length if column == "ids" else 8 * count]
        finally:
            self.count, self.ids_length = saved_count, saved_length

    def _remember(self, segment: Segment | None) -> None:
        if not self._memory:
            self._memory = {column: bytearray() for column in (*_COLUMNS, "sorted")}
        if segment is None or not segment.runs:
            return
        if segment.spilled:
            raise StaleIndexError("the id columns were written as the log was read")  # the caller rebuilds
        memory = self._memory
        base = len(memory["ids"])
        starts = array("Q", map(operator.add, segment.starts, repeat(base)))
        memory["hash"] += segment.hashes.tobytes()
        memory["off"] += segment.offsets.tobytes()
        memory["pos"] += starts.tobytes()
        memory["ids"] += segment.ids
        for column in _COLUMNS:
            self.crcs[column] = zlib.crc32(memory[column])
        if self._new_sorted is not None:
            memory["sorted"] = bytearray(self._new_sorted.tobytes())
            self.crcs["sorted"] = zlib.crc32(memory["sorted"])
            self.sorted_name, self.sorted_count = "memory", self.count
            self._new_sorted = None

    def _forget_generation(self, generation: str) -> None:
        """Delete the files of ``generation`` (this process's own, abandoned) and the leftovers of
        dead processes; never a file another live process may be writing or reading.

        A temporary file belongs to the process named in it: deleting one that a live process is
        still writing made its save fail ("cannot save the index").  A generation that no
        ``index.json`` names is an orphan once its owner is dead (simultaneous first builds: the
        last ``index.json`` wins and the others' copies would stay forever).  Files whose owner
        cannot be told (another host, an older format) go only when they are old.
        """
        now = time.time()
        try:
            names = os.listdir(self.dir)
        except OSError:
            return
        live = {self.generation, self.sorted_name.partition("-")[0], *self._generations_on_disk()}
        for name in names:
            path = os.path.join(self.dir, name)
            if name.endswith(".tmp"):
                parts = name.split(".")
                owner_pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else -1
                if owner_pid == os.getpid():
                    continue  # our own: a save in progress in another thread, or removed by it
                if owner_pid > 0 and _dead_here(owner_pid):
                    _unlink_quietly(path)
                else:
                    _unlink_if_older(path, now)
                continue
            stem, _, column = name.partition(".")
            owner = stem.partition("-")[0]
            if column not in (*_COLUMNS, "sorted") or stem == self.generation or name == self.sorted_name:
                continue
            if generation and owner == generation:
                _unlink_quietly(path)  # ours, abandoned by a rebuild; a reader that mapped it keeps its copy
                continue
            if owner in live:
                # a sorted column replaced by a newer one may still be opened by a reader that
                # loaded the previous index.json: it goes only once it is old
                if column == "sorted":
                    _unlink_if_older(path, now)
                continue
            match = _GENERATION.fullmatch(owner)
            if match is not None and match[2] == _HOST and _dead_here(int(match[1])):
                _unlink_quietly(path)  # an orphan of a dead process
            else:
                _unlink_if_older(path, now)

    def _generations_on_disk(self) -> set[str]:
        """The generation (and sorted column's) that the saved ``index.json`` names now."""
        try:
            with open(os.path.join(self.dir, "index.json"), "rb") as handle:
                raw = handle.read()
            from exptrack.store import codec

            ids = codec.loads(raw)["ids"]
            return {str(ids["generation"]), str(ids["sorted"][0]).partition("-")[0]}
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return set()

    def _duplicates(self, fd: int, segment: Segment) -> dict[int, str]:
        """Offsets of new lines whose run id an earlier valid line already has ("first wins").

        Hashes only nominate suspects; ids are compared before anything is excluded.
        """
        new = segment.hashes
        if not new:
            return {}
        ordered = segment.sorted_hashes
        suspects = set(compress(ordered, map(operator.eq, ordered, islice(ordered, 1, None))))
        if self.count:
            self.verify("hash", "sorted")
        prior = self._words("hash")
        if len(prior):
            known = self._words("sorted")
            delta = prior[self.sorted_count :]
            if len(new) * _BISECT_FACTOR < len(known):  # a few new runs: binary searches, not a pass
                for value in set(new):
                    at = bisect.bisect_left(known, value)
                    if at < len(known) and known[at] == value:
                        suspects.add(value)
            else:
                suspects.update(set(new).intersection(known))
            if len(delta):
                suspects.update(set(delta).intersection(new))
        if not suspects:
            return {}
        places: dict[str, list[int]] = {}
        positions = self._words("pos")
        ids = self._column("ids")
        offsets = self._words("off")
        for i, value in enumerate(prior):
            if value in suspects:
                start = positions[i]
                key = bytes(ids[start : ids.find(b"\n", start)])
                places.setdefault(id_from_key(key), []).append(offsets[i])
        keys = bytes(segment.ids).split(b"\n")
        for i, value in enumerate(new):
            if value in suspects:
                places.setdefault(id_from_key(keys[i]), []).append(segment.offsets[i])
        resumes = self.resumes.union(segment.resumes)
        firsts = {run_id: min(found) for run_id, found in places.items()
                  if len(found) > 1 and any(offset not in resumes for offset in found if offset != min(found))}
        if not firsts:
            return {}
        numbers = _line_numbers(fd, sorted(set(firsts.values())))
        return {
            offset: f"duplicate run_id {run_id} (first at line {numbers[first]})"
            for run_id, first in firsts.items()
            for offset in places[run_id]
            if offset != first and offset not in resumes  # a resumed run's record supersedes, on purpose
        }

    def suspect_offsets(self, run_ids: list[str]) -> list[int]:
        """Offsets of the runs whose id hash equals one of ``run_ids``' (one C pass over the
        hash column; the caller reads the lines and compares ids)."""
        if not self.count or not run_ids:
            return []
        wanted = {id_hash(id_key(run_id)) for run_id in run_ids}
        hashes = self._words("hash")
        if not wanted.intersection(hashes):
            return []
        offsets = self._words("off")
        return [offsets[i] for i in compress(range(self.count), map(wanted.__contains__, hashes))]

    def offsets_of(self, run_id: str) -> Iterator[int]:
        """Offsets of the runs whose id hashes like ``run_id`` (the caller compares ids)."""
        needle = id_hash(id_key(run_id)).to_bytes(8, sys.byteorder)
        hashes = self._column("hash")
        if not hashes:
            return
        offsets = self._words("off")
        at = hashes.find(needle)
        while at >= 0:
            if at % 8 == 0:
                yield offsets[at // 8]
            at = hashes.find(needle, at + 1)

    def prefix_offsets(self, prefix: str, limit: int) -> list[int]:
        """Offsets of up to ``limit`` runs whose id starts with ``prefix``, in log order."""
        ids = self._column("ids")
        if not ids:
            return []
        key = id_key(prefix)
        positions = self._words("pos")
        offsets = self._words("off")
        found: list[int] = []
        if ids[: len(key)] == key:
            found.append(offsets[0])
        at = ids.find(b"\n" + key)
        while at >= 0 and len(found) < limit and at + 1 < len(ids):
            index = bisect.bisect_left(positions, at + 1)
            if index < self.count and positions[index] == at + 1:
                found.append(offsets[index])
            at = ids.find(b"\n" + key, at + 1)
        return found


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):  # gone already: another process swept it
        fs().unlink(path)


def _unlink_if_older(path: str, now: float) -> None:
    with contextlib.suppress(OSError):
        if now - os.stat(path).st_mtime > _STALE_GENERATION_SECONDS:
            fs().unlink(path)
