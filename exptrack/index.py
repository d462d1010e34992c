"""The persistent index: a disposable cache beside the log that makes best / top / summary / show fast.

Layout of ``<store>/.index/`` (everything here can be deleted at any time):

``index.json`` (orjson through ``codec``, replaced atomically: temp file, fsync, rename)
    format version; the log's identity (device, inode, fingerprint); the watermark (byte just
    after the last line folded in) and line count; run and status counts, unchecked runs, the
    corrupt-line report (duplicates included); per metric its statistics fold
    (``query.MetricFold``) and top-``TOP_K`` heaps in both directions, entries holding the value,
    the run's offset and its id; the generation name and lengths of the id columns.
``<generation>.hash / .off / .pos / .ids`` (the run_id → offset map)
    one entry per valid run in log order: a stable 64-bit hash of the id (u64), the line's
    offset (u64), where the id starts in ``.ids`` (u64), and ``.ids`` itself, every id followed
    by a newline.  Exact lookups ``find`` the hash in ``.hash`` (a C scan of 8 bytes a run, a few
    ms for a million runs, no Python dict of a million ids); prefix lookups ``find``
    ``\\n<prefix>`` in ``.ids``.  Duplicate detection for new runs is one C pass
    (``set.isdisjoint``) over ``.hash``.  The columns are append-only and written with ``pwrite``
    at the position the JSON's lengths say: two processes refreshing at once write the same bytes
    to the same place, and a reader only trusts what a saved ``index.json`` counts.  A rebuild
    starts a new generation, so it never touches files another process may still be reading.

Why the fingerprint: device and inode catch a replaced log (``mv``, an editor that writes a new
file, an index copied from another store).  ``size < watermark`` catches truncation.  CRC-32s of
the first 64 KiB, of the 4 KiB before the watermark and of 15 1-KiB samples spread over the
folded range catch a log rewritten in place (same inode) at its start, near its end or in most
of its body, and the byte before the watermark must be a newline (an index pointing mid-line).
A rewrite confined to bytes between the samples is not detected: the log is append-only, and
``exptrack check`` verifies every line.  Any mismatch, an unreadable or older-format index, or a
missing column file means a silent (logged) rebuild from byte 0, with identical answers.

No lock is needed: every saved state is complete and valid for the log prefix it names, so a
reader that loads an older state than another process just saved still answers correctly (it
refreshes from its own watermark), and concurrent saves race only to install equally valid
states.  A store that cannot be written keeps its index in memory for the life of the process.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import mmap
import operator
import os
import sys
import time
import zlib
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain, compress, islice, repeat
from typing import Any

from . import codec, fastscan
from ._fs import fs
from .codec import MAX_RECORD_BYTES
from .fastscan import TOP_K, Progress, Segment, id_from_key, id_hash, id_key
from .query import BLOCK_SHIFT, MetricFold, MetricStats, Mode, TopK
from .record import Run
from .scan import CorruptLine, _parse

logger = logging.getLogger(__name__)

INDEX_DIR = ".index"
INDEX_FILE = "index.json"
FORMAT_VERSION = 1
_HEAD_BYTES = 64 << 10
_TAIL_BYTES = 4 << 10
_SAMPLES = 15
_SAMPLE_BYTES = 1 << 10
_COLUMNS = ("hash", "off", "pos", "ids")
_STALE_GENERATION_SECONDS = 600
_BISECT_FACTOR = 64
_RESORT_AFTER = 1 << 16
"""Runs appended since the sorted hash column was written that are checked against a set, not by
binary search; beyond this (or a quarter of the history) the column is rewritten."""


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


class LogIndex:
    """The index of one store's log; ``refresh`` brings it up to date, queries read from it.

    Args:
        store: the store directory (the index lives in ``store/.index``).
        log_path: the run log.
    """

    def __init__(self, store: str | os.PathLike[str], log_path: str | os.PathLike[str]) -> None:
        self.dir = os.path.join(os.fspath(store), INDEX_DIR)
        self.path = os.path.join(self.dir, INDEX_FILE)
        self.log_path = os.fspath(log_path)
        self.persistent = True
        self.rebuilds = 0
        self._warned = False
        self._reset()

    # -- state ---------------------------------------------------------------------------------

    def _reset(self) -> None:
        self.loaded = False
        self._fingerprint = ""
        self.dev = self.ino = -1
        self.watermark = 0
        self.size_seen = 0  # log size when the index was last refreshed (the tail is pending)
        self.lines = 0
        self.unchecked = 0
        self.statuses: Counter[str] = Counter()
        self.corrupt: list[CorruptLine] = []
        self.folds: dict[str, MetricFold] = {}
        self.tops: dict[str, tuple[TopK, TopK]] = {}
        self.generation = ""
        self.count = 0  # entries in the id columns (= valid runs)
        self.ids_length = 0
        self.sorted_count = 0  # the first entries of .hash, in ascending order in the .sorted file
        self.sorted_name = ""
        self._new_sorted: array[int] | None = None  # a sorted column to write with the next save
        self._maps: dict[str, mmap.mmap | bytes | bytearray] = {}
        self.crcs: dict[str, int] = {}  # running CRC-32 of each id column, as saved
        self._verified: set[str] = set()  # columns whose CRC this process has checked
        self._memory: dict[str, bytearray] = {}  # the id columns of an index kept in memory

    @classmethod
    def of_segment(cls, segment: Segment) -> LogIndex:
        """An in-memory index of one read alone (a filtered scan), answering like the real one."""
        view = cls("", "")
        view.persistent = False
        view._fold(segment)
        return view

    def invalidate(self) -> None:
        """Forget everything: the next refresh rebuilds from byte 0 (a new generation)."""
        self._rebuild_from_nothing("asked to rebuild")

    @property
    def runs(self) -> int:
        return self.count

    def stats(self) -> IndexStats:
        return IndexStats(self.path, self.persistent, self.watermark, self.lines, self.count, len(self.corrupt),
                          len(self.folds), self.generation, self.rebuilds)

    def _state(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "block_shift": BLOCK_SHIFT,
            "top_k": TOP_K,
            "log": {"dev": self.dev, "ino": self.ino, "watermark": self.watermark, "lines": self.lines,
                    "fingerprint": self._fingerprint},
            "unchecked": self.unchecked,
            "statuses": dict(self.statuses),
            "corrupt": [[c.line, c.offset, c.length, c.reason] for c in self.corrupt],
            "metrics": {
                name: {"fold": fold.to_state(), "max": self.tops[name][0].to_state(),
                       "min": self.tops[name][1].to_state()}
                for name, fold in self.folds.items()
            },
            "ids": {"generation": self.generation, "count": self.count, "length": self.ids_length,
                    "sorted": [self.sorted_name, self.sorted_count, self.crcs.get("sorted", 0)],
                    "crc": {column: self.crcs.get(column, 0) for column in _COLUMNS}},
        }

    def _load_state(self, state: Any) -> None:
        if type(state) is not dict or state.get("version") != FORMAT_VERSION:
            raise StaleIndexError(f"index format {state.get('version') if type(state) is dict else '?'} "
                                  f"is not {FORMAT_VERSION}")
        if state["block_shift"] != BLOCK_SHIFT or state["top_k"] != TOP_K:
            raise StaleIndexError("index built with other block or top-k settings")
        log = state["log"]
        self.dev, self.ino = int(log["dev"]), int(log["ino"])
        self.watermark, self.lines = int(log["watermark"]), int(log["lines"])
        self._fingerprint = str(log["fingerprint"])
        self.unchecked = int(state["unchecked"])
        self.statuses = Counter({str(k): int(v) for k, v in state["statuses"].items()})
        self.corrupt = [CorruptLine(int(a), int(b), int(c), str(d)) for a, b, c, d in state["corrupt"]]
        self.folds, self.tops = {}, {}
        for name, entry in state["metrics"].items():
            self.folds[name] = MetricFold.from_state(entry["fold"])
            self.tops[name] = (TopK.from_state(TOP_K, "max", entry["max"]), TopK.from_state(TOP_K, "min", entry["min"]))
        ids = state["ids"]
        self.generation, self.count, self.ids_length = str(ids["generation"]), int(ids["count"]), int(ids["length"])
        self.sorted_name, self.sorted_count = str(ids["sorted"][0]), int(ids["sorted"][1])
        self.crcs = {column: int(ids["crc"][column]) for column in _COLUMNS}
        self.crcs["sorted"] = int(ids["sorted"][2])

    # -- loading and saving ----------------------------------------------------------------------

    def _load(self) -> None:
        """Read ``index.json`` if there is one; a missing file leaves an empty index."""
        self._reset()
        self.loaded = True
        if not self.persistent:
            return
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            if os.path.exists(self.log_path):
                logger.info("building the index of %s (no %s yet)", self.log_path, self.path)
            return
        except OSError as exc:
            logger.warning("cannot read the index %s (%s); rebuilding it", self.path, exc)
            return
        try:
            if codec.checksum_state(raw) is not True:
                raise StaleIndexError("index.json is damaged (its checksum does not match)")
            self._load_state(codec.loads(raw))
        except (ValueError, KeyError, TypeError, StaleIndexError) as exc:
            logger.info("rebuilding the index of %s: %s", self.log_path, _why(exc))
            self._reset()
            self.loaded = True

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

    def _save(self, segment: Segment | None) -> None:
        """Append ``segment``'s id columns, then install the new ``index.json`` atomically."""
        if not self.persistent:
            self._remember(segment)
            return
        try:
            self._write(segment)
        except OSError as exc:
            self.persistent = False
            if not self._warned:
                self._warned = True
                logger.warning("cannot save the index in %s (%s); keeping it in memory for this process",
                               self.dir, exc)
            self._to_memory(segment)

    def _write(self, segment: Segment | None) -> None:
        os.makedirs(self.dir, exist_ok=True)
        if segment is not None and segment.runs:
            self._write_columns(segment)
        replaced = self._write_sorted(self._new_sorted) if self._new_sorted is not None else ""
        self._write_state()
        if replaced:
            self._forget_generation("")

    def _write_columns(self, segment: Segment) -> None:
        """Append the segment's entries to the id columns (``pwrite`` at the saved lengths)."""
        io = fs()
        base = self.ids_length - len(segment.ids)
        starts = array("Q", map(operator.add, segment.starts, repeat(base))) if base else segment.starts
        at = 8 * (self.count - segment.runs)
        columns = {"hash": (segment.hashes.tobytes(), at), "off": (segment.offsets.tobytes(), at),
                   "pos": (starts.tobytes(), at), "ids": (bytes(segment.ids), base)}
        for column, (data, position) in columns.items():
            self.crcs[column] = zlib.crc32(data, self.crcs.get(column, 0) if position else 0)
            # Only a new generation creates its files: one that vanished (another process rebuilt
            # the index and deleted it) must not come back as zeros followed by a tail.
            flags = os.O_WRONLY | os.O_CLOEXEC | (os.O_CREAT if not position else 0)
            try:
                fd = io.open(self._column_path(column), flags, 0o644)
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
        fd = io.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            try:
                _pwrite_all(fd, ordered.tobytes(), 0)
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

    def _write_state(self) -> None:
        io = fs()
        tmp = f"{self.path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        fd = io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            try:
                body = codec.dumps(self._state())
                # the same CRC-32 suffix as a run line: a damaged index.json reads as stale
                _write_all(fd, b'%b,"crc":"%08x"}' % (body[:-1], zlib.crc32(body)))
                io.fsync(fd)
            finally:
                io.close(fd)
            io.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                io.unlink(tmp)
            raise

    def _to_memory(self, segment: Segment | None) -> None:
        """Keep the id columns in memory from now on (the saved part, if readable, plus ``segment``)."""
        old = self.count - (segment.runs if segment else 0)
        old_length = self.ids_length - (len(segment.ids) if segment else 0)
        for column in _COLUMNS:
            try:
                saved = bytes(self._column_prefix(column, old, old_length))
            except StaleIndexError:
                saved = b""
            self._memory[column] = bytearray(saved)
        try:
            self._memory["sorted"] = bytearray(bytes(self._column("sorted")))
        except StaleIndexError:
            self._memory["sorted"] = bytearray()
            self.sorted_count = 0
        if len(self._memory["hash"]) != 8 * old or len(self._memory["ids"]) != old_length:
            raise StaleIndexError("the saved id columns are incomplete")  # the caller rebuilds in memory
        self._remember(segment)

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
        """Delete the column files of ``generation`` and of generations abandoned long ago."""
        now = time.time()
        try:
            names = os.listdir(self.dir)
        except OSError:
            return
        for name in names:
            stem, _, column = name.partition(".")
            owner = stem.partition("-")[0]
            if column.endswith(".tmp"):  # left by a process that died while writing it
                owner, column = "", "sorted"
            if column not in (*_COLUMNS, "sorted") or stem == self.generation or name == self.sorted_name:
                continue
            path = os.path.join(self.dir, name)
            with contextlib.suppress(OSError):
                # a sorted column replaced by a newer one may still be opened by a reader that
                # loaded the previous index.json: it goes only once it is old
                if owner == generation or now - os.stat(path).st_mtime > _STALE_GENERATION_SECONDS:
                    fs().unlink(path)

    # -- refresh ---------------------------------------------------------------------------------

    def refresh(self, progress: Progress | None = None) -> list[CorruptLine]:
        """Fold the lines appended since the watermark in; return the newly found corrupt lines.

        A log that no longer matches the index (truncated, replaced, rewritten, or an unreadable
        index) is re-read from byte 0.
        """
        try:
            fd = os.open(self.log_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if self.watermark or self.corrupt or self.count:
                self._rebuild_from_nothing("the log is gone")
            self.size_seen = 0
            return []
        try:
            try:
                return self._refresh(fd, progress)
            except StaleIndexError as exc:  # a column file vanished or the index could not be kept
                self._rebuild_from_nothing(str(exc))
                return self._refresh(fd, progress)
        finally:
            os.close(fd)

    def _rebuild_from_nothing(self, reason: str) -> None:
        logger.info("rebuilding the index of %s: %s", self.log_path, reason)
        persistent = self.persistent
        old_generation = self.generation
        self._reset()
        self.persistent = persistent
        self.loaded = True
        self.rebuilds += 1
        self.generation = os.urandom(8).hex()
        if old_generation:
            self._forget_generation(old_generation)

    def _refresh(self, fd: int, progress: Progress | None) -> list[CorruptLine]:
        if not self.loaded:
            self._load()
        info = os.fstat(fd)
        size = info.st_size
        problem = self._mismatch(fd, info)
        if problem:
            self._rebuild_from_nothing(problem)
        if not self.generation:
            self.generation = os.urandom(8).hex()
        self.dev, self.ino = info.st_dev, info.st_ino
        self.size_seen = size
        if size <= self.watermark:
            return []
        start = self.watermark
        segment = fastscan.scan_parallel(self.log_path, start, size, progress=progress)
        if segment.end == start:
            return []
        exclude = self._duplicates(fd, segment)
        if exclude:
            segment = fastscan.scan_parallel(self.log_path, start, segment.end, exclude=exclude, progress=progress)
        new_corrupt = self._fold(segment)
        self._fingerprint = fingerprint(fd, self.watermark)
        self._save(segment)
        return new_corrupt

    def _mismatch(self, fd: int, info: os.stat_result) -> str:
        """Why the loaded state does not describe this log ('' when it does)."""
        if not self.watermark and not self.lines:
            return ""
        if (info.st_dev, info.st_ino) != (self.dev, self.ino):
            return "the log was replaced (device/inode changed) or the index belongs to another store"
        if info.st_size < self.watermark:
            return f"the log shrank below the index watermark ({info.st_size} < {self.watermark})"
        actual = fingerprint(fd, self.watermark)
        if actual != self._fingerprint or actual == "mid-line":
            return "the index points mid-line" if actual == "mid-line" else "the log was rewritten before the watermark"
        return ""

    def _fold(self, segment: Segment) -> list[CorruptLine]:
        shift = self.lines
        new_corrupt = [CorruptLine(c.line + shift, c.offset, c.length, c.reason) for c in segment.corrupt]
        self.corrupt.extend(new_corrupt)
        self.lines += segment.lines
        self.watermark = segment.end
        self.unchecked += segment.unchecked
        self.statuses.update(segment.statuses)
        for name, part in segment.metrics.items():
            fold = self.folds.get(name)
            if fold is None:
                fold = self.folds[name] = MetricFold()
                self.tops[name] = (TopK(TOP_K, "max"), TopK(TOP_K, "min"))
            for block, values in part.blocks:
                fold.feed(block, values)
            high, low = self.tops[name]
            high.merge(TopK(TOP_K, "max", part.top_max))
            low.merge(TopK(TOP_K, "min", part.top_min))
        self._new_sorted = None
        if segment.runs and (not self.sorted_count or self.count + segment.runs - self.sorted_count > max(
                _RESORT_AFTER, self.sorted_count // 4)):
            if not self.count:
                self._new_sorted = segment.sorted_hashes
            else:  # ascending runs and a short unsorted delta: timsort merges them nearly linearly
                self._new_sorted = array("Q", sorted(chain(self._words("sorted"), self._words("hash")[
                    self.sorted_count :], segment.sorted_hashes)))
        self.count += segment.runs  # only now: the columns on disk do not hold the segment yet
        self.ids_length += len(segment.ids)
        return new_corrupt

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
        firsts = {run_id: min(found) for run_id, found in places.items() if len(found) > 1}
        if not firsts:
            return {}
        numbers = _line_numbers(fd, sorted(set(firsts.values())))
        return {
            offset: f"duplicate run_id {run_id} (first at line {numbers[first]})"
            for run_id, first in firsts.items()
            for offset in places[run_id]
            if offset != first
        }

    # -- answers ---------------------------------------------------------------------------------

    def top(self, metric: str, mode: Mode, k: int) -> list[tuple[float, int, str]] | None:
        """Up to ``k`` best (value, offset, run_id) entries, or None when ``k`` exceeds ``TOP_K``."""
        if k > TOP_K:
            return None
        tops = self.tops.get(metric)
        if tops is None:
            return []
        return (tops[0] if mode == "max" else tops[1]).ranked()[:k]

    def metric_stats(self) -> dict[str, MetricStats]:
        return {name: fold.stats() for name, fold in self.folds.items()}

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
                if type(item) is tuple:
                    return item[0]
                raise StaleIndexError(f"the line at byte {offset} is not a run: {item.reason}")  # type: ignore[union-attr]
            data += chunk
    finally:
        os.close(fd)
    raise StaleIndexError(f"no complete line at byte {offset}")


def _why(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, StaleIndexError) else f"unreadable index ({type(exc).__name__}: {exc})"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = fs().write(fd, view)
        if written <= 0:
            raise OSError(5, "write returned no progress")
        view = view[written:]


def _pwrite_all(fd: int, data: bytes, at: int) -> None:
    view = memoryview(data)
    while view:
        written = fs().pwrite(fd, bytes(view), at)
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
