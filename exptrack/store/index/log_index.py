"""The persistent index: a disposable cache beside the log that makes best / top / summary / show fast.

Layout of ``<store>/.index/`` (everything here can be deleted at any time):

``index.json`` (orjson through ``codec``, replaced atomically: temp file, fsync, rename)
    format version; the log's identity (device, inode, fingerprint); the watermark (byte just
    after the last line folded in) and line count; run and status counts, unchecked runs, the
    corrupt-line report (duplicates included); per group (experiment, status: ``groups.py``) its
    run count, per metric its statistics fold (``MetricFold``) and top-``TOP_K`` heaps in both
    directions, entries holding the value, the run's offset and its id, and the directions its
    runs declared; the generation name and lengths of the id columns.
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

import contextlib
import logging
import mmap
import os
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable
from itertools import chain
from typing import Any

from exptrack.store import codec, parallel
from exptrack.store.edits import VISIBILITY_KINDS, Overlay
from exptrack.store.fsio import FILE_MODE, fs, make_dirs
from exptrack.store.index.fields import FieldNames
from exptrack.store.index.groups import GroupKey, GroupSet
from exptrack.store.index.identity import INDEX_DIR, INDEX_FILE, IndexStats, StaleIndexError, _why, fingerprint
from exptrack.store.index.idmap import _COLUMNS, IdColumns, new_generation
from exptrack.store.index.reducers import BLOCK_SHIFT, MetricStats, Mode
from exptrack.store.journal import io_write_all
from exptrack.store.record import CorruptLine
from exptrack.store.segment import TOP_K, Progress, Segment, id_from_key
from exptrack.store.spill import sorted_hashes

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
"""2: reducers kept per group (experiment, status); the edit overlay, hidden and resumed records."""
SPILL_MIN_BYTES = 16 << 20
"""From this log size a build from byte 0 writes its id columns to files as it reads (``store.spill``):
its memory then stays flat as the log grows."""
_RESORT_AFTER = 1 << 16
"""Runs appended since the sorted hash column was written that are checked against a set, not by
binary search; beyond this (or a quarter of the history) the column is rewritten."""








class LogIndex(IdColumns):
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
        self._swept = False  # this process has swept the dead's leftovers from the directory
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
        self.corrupt: list[CorruptLine] = []
        self.groups = GroupSet(TOP_K)
        self.names = FieldNames()  # param names, tag keys, sections: what filters may name
        self.overlay = Overlay()  # every edit folded so far (tags, notes, names, deletions)
        self.hidden: set[int] = set()  # records left out of the answers: deleted runs', superseded ones
        self.superseded: set[int] = set()  # earlier records of resumed runs
        self.resumes: set[int] = set()  # offsets of resumed runs' records (not duplicates)
        self.recompute = False  # saved mid-way: the answers still hold records now hidden
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
        """Runs the answers cover: records in the id map, less the hidden ones."""
        return self.count - len(self.hidden)

    def stats(self) -> IndexStats:
        return IndexStats(self.path, self.persistent, self.watermark, self.lines, self.count, len(self.corrupt),
                          len(self.groups.metric_names()), self.generation, self.rebuilds)

    def _state(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "block_shift": BLOCK_SHIFT,
            "top_k": TOP_K,
            "log": {"dev": self.dev, "ino": self.ino, "watermark": self.watermark, "lines": self.lines,
                    "fingerprint": self._fingerprint},
            "unchecked": self.unchecked,
            "corrupt": [[c.line, c.offset, c.length, c.reason] for c in self.corrupt],
            "groups": self.groups.to_state(),
            "fields": self.names.to_state(),
            "overlay": self.overlay.to_state(),
            "hidden": sorted(self.hidden),
            "superseded": sorted(self.superseded),
            "resumes": sorted(self.resumes),
            "recompute": self.recompute,
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
        self.corrupt = [CorruptLine(int(a), int(b), int(c), str(d)) for a, b, c, d in state["corrupt"]]
        self.groups.load_state(state["groups"])
        self.names = FieldNames.from_state(state["fields"])
        self.overlay = Overlay.from_state(state["overlay"])
        self.hidden = set(map(int, state["hidden"]))
        self.superseded = set(map(int, state["superseded"]))
        self.resumes = set(map(int, state["resumes"]))
        self.recompute = bool(state["recompute"])
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
        make_dirs(self.dir)
        if segment is not None and segment.runs:
            self._write_columns(segment)
        replaced = self._write_sorted(self._new_sorted) if self._new_sorted is not None else ""
        self._write_state()
        if replaced or not self._swept:
            # every process sweeps once, and after a rebuild: the leftovers of dead processes
            # (orphaned generations, temporary files) go; a live process's files never do
            self._swept = True
            self._forget_generation("")

    def _write_state(self) -> None:
        io = fs()
        tmp = f"{self.path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        fd = io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        try:
            try:
                body = codec.dumps(self._state())
                # the same CRC-32 suffix as a run line: a damaged index.json reads as stale
                io_write_all(fd, b'%b,"crc":"%08x"}' % (body[:-1], zlib.crc32(body)))
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
        if segment is not None and segment.spilled:
            raise StaleIndexError("the id columns were written as the log was read")  # the caller rebuilds
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
                found = self._refresh(fd, progress)
            except StaleIndexError as exc:  # a column file vanished or the index could not be kept
                self._rebuild_from_nothing(str(exc))
                found = self._refresh(fd, progress)
            if self.recompute:  # loaded from a process that saved before it recomputed
                self._reaggregate()
                self.recompute = False
                self._save(None)
            return found
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
        self.generation = new_generation()
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
            self.generation = new_generation()
        self.dev, self.ino = info.st_dev, info.st_ino
        self.size_seen = size
        if size <= self.watermark:
            return []
        start = self.watermark
        spill = self._spill_to(start, size)
        try:
            segment = parallel.scan_parallel(self.log_path, start, size, progress=progress, spill=spill)
        except OSError as exc:
            if spill is None:
                raise
            logger.info("cannot write the id columns of %s as it is read (%s); reading them into memory",
                        self.log_path, exc)
            segment = parallel.scan_parallel(self.log_path, start, size, progress=progress)
        if segment.end == start:
            return []
        if segment.spilled and not self._sort_spilled(segment):
            # a run id may repeat: the duplicate check compares ids, which a read keeps in memory
            segment = parallel.scan_parallel(self.log_path, start, size, progress=progress)
        exclude = self._duplicates(fd, segment)
        if exclude:
            segment = parallel.scan_parallel(self.log_path, start, segment.end, exclude=exclude, progress=progress)
        new_corrupt = self._fold(segment)
        self._fingerprint = fingerprint(fd, self.watermark)
        if segment.resumes or any(edit.kind in VISIBILITY_KINDS for edit in segment.edits) or (
                segment.runs and self._logs_a_deleted_id(segment)):
            # saved as "to recompute" first: a process that loads this state before the answers
            # are recomputed must recompute them itself, never answer with a deleted run
            self.recompute = True
            self._save(segment)
            self._reaggregate()
            self.recompute = False
            self._save(None)
        else:
            self._save(segment)
        return new_corrupt

    def _spill_to(self, start: int, size: int) -> parallel.Spill | None:
        """Where a build from byte 0 of a long log writes its id columns as it reads (``store.spill``):
        the new generation's own column files.  ``None``: the read keeps them in memory."""
        if not self.persistent or start or self.count or size < SPILL_MIN_BYTES:
            return None
        try:
            make_dirs(self.dir)
        except OSError:
            return None
        return self.dir, self.generation

    def _sort_spilled(self, segment: Segment) -> bool:
        """Sort the hash column a spilled read wrote; False when two hashes are equal (then the ids
        must be compared, and the read is done again in memory)."""
        ordered = sorted_hashes(self._column_path("hash"), segment.spilled)
        if ordered is None:
            return False
        segment.sorted_hashes = ordered
        return True

    def _logs_a_deleted_id(self, segment: Segment) -> bool:
        """Whether the segment holds a run whose id an earlier edit deleted (an edit naming a run
        before its line: the merge rule applies it all the same)."""
        deleted = self.overlay.deleted()
        if not deleted:
            return False
        if segment.spilled:
            return True  # its ids are on disk: recomputing the answers is always right, only slower
        keys = bytes(segment.ids).split(b"\n")
        return any(id_from_key(key) in deleted for key in keys if key)

    _AGGREGATES = ("groups",)
    """What a rescan without the hidden records replaces (the id map and corrupt lines stay)."""

    def _reaggregate(self) -> None:
        """Recompute the answers without hidden records, after a deletion, restore or resume.

        A deleted run must leave every top list and statistic, and a superseded record must give
        way to its run's newer one; the exact statistics of what remains are those of a rescan
        that skips them (the reducers cannot subtract bit-exactly), so that is what this is.
        """
        hidden: set[int] = set()
        deleted = self.overlay.deleted()
        if deleted:
            hidden.update(self.suspect_offsets(sorted(deleted)))
        if self.resumes:
            from exptrack.store.index.idmap import read_run_at

            resumed = {read_run_at(self.log_path, offset).run_id for offset in self.resumes}
            latest: dict[str, int] = {}
            records: list[tuple[str, int]] = []
            for offset in self.suspect_offsets(sorted(resumed)):
                run_id = read_run_at(self.log_path, offset).run_id
                if run_id in resumed:
                    records.append((run_id, offset))
                    latest[run_id] = max(latest.get(run_id, -1), offset)
            self.superseded = {offset for run_id, offset in records if offset != latest[run_id]}
            hidden.update(self.superseded)
        self.hidden = hidden
        exclude = {c.offset: c.reason for c in self.corrupt if c.reason.startswith("duplicate run_id")}
        exclude.update(dict.fromkeys(hidden, ""))  # "": leave out without reporting
        fresh = LogIndex.of_segment(parallel.scan_parallel(self.log_path, 0, self.watermark, exclude=exclude))
        for name in self._AGGREGATES:
            setattr(self, name, getattr(fresh, name))

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
        self.names.merge(segment.names)
        self.overlay.extend(segment.edits)
        self.resumes.update(segment.resumes)
        for key, runs in segment.groups.items():
            self.groups.group(key).runs += runs
        for key, parts in segment.metrics.items():
            group = self.groups.group(key)
            for name, part in parts.items():
                group.fold(name, part.blocks, part.top_max, part.top_min)
        for key, declared in segment.directions.items():
            self.groups.group(key).declare(declared)
        self._new_sorted = None
        if segment.runs and (not self.sorted_count or self.count + segment.runs - self.sorted_count > max(
                _RESORT_AFTER, self.sorted_count // 4)):
            if not self.count:
                self._new_sorted = segment.sorted_hashes
            else:  # ascending runs and a short unsorted delta: timsort merges them nearly linearly
                self._new_sorted = array("Q", sorted(chain(self._words("sorted"), self._words("hash")[
                    self.sorted_count :], segment.sorted_hashes)))
        self.count += segment.runs  # only now: the columns on disk do not hold the segment yet
        self.ids_length += len(segment.ids) + segment.spilled_length
        return new_corrupt

    # -- answers ---------------------------------------------------------------------------------

    # Every answer takes ``keys``, the group keys in scope (None: every run); ``select`` names
    # them by experiment and status.  See ``groups.py``.

    @property
    def statuses(self) -> Counter[str]:
        """Runs per status, over every experiment."""
        return self.groups.statuses()

    def select(self, *, experiments: Iterable[str] | None = None,
               statuses: Iterable[str] | None = None) -> list[GroupKey]:
        """The keys of the groups of these experiments and statuses (None: any)."""
        return self.groups.select(experiments=experiments, statuses=statuses)

    def top(self, metric: str, mode: Mode, k: int, keys: Iterable[GroupKey] | None = None,
            ) -> list[tuple[float, int, str]] | None:
        """Up to ``k`` best (value, offset, run_id) entries, or None when ``k`` exceeds ``TOP_K``."""
        return self.groups.top(metric, mode, k, keys)

    def metric_stats(self, keys: Iterable[GroupKey] | None = None) -> dict[str, MetricStats]:
        return self.groups.stats(keys)

    def metric_names(self, keys: Iterable[GroupKey] | None = None) -> set[str]:
        return self.groups.metric_names(keys)










