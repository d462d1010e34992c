"""What one read of a log range yields: counts, metric parts, top-k heaps, corrupt lines and id columns.

Also the id key and hash rules, shared by the scanner that computes them and the id map that stores them.
"""

from __future__ import annotations

import heapq
import operator
import re
import sys
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import compress, repeat

from exptrack.store.edits import Edit
from exptrack.store.index.fields import FieldNames
from exptrack.store.index.groups import GroupKey
from exptrack.store.index.reducers import Part
from exptrack.store.record import CorruptLine

TOP_K = 100
"""Entries kept per metric and direction: best / top-k for any k up to this need no scan."""

Progress = Callable[[int, int], None]
"""``progress(bytes_done, bytes_total)``, called from the process that asked for the scan."""

_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)



_SORT_RUN = 1 << 16
"""Most hashes sorted as one Python list (~10 MiB of int objects): a longer column is sorted in parts."""


def sort_words(words: array[int] | Iterable[int]) -> array[int]:
    """``words`` (u64) in ascending order, without a Python list of them all.

    ``sorted`` of a million 64-bit ints holds ~40 MiB of int objects at once, a cold build's
    largest single allocation.  The words are split by their top bits into parts of about
    ``_SORT_RUN`` (one C-level ``compress`` per part over a mask of their most significant bytes),
    each part sorted alone and appended: the same result, an eighth of the memory and less time.
    Concatenated sorted runs (a merge) stay runs within each part, which timsort merges linearly.
    """
    column = words if isinstance(words, array) else array("Q", words)
    masks = part_masks(len(column))
    if not masks:
        return array("Q", sorted(column))
    top = bytes(memoryview(column).cast("B")[7::8])  # the most significant byte of each word
    ordered = array("Q")
    for mask in masks:
        ordered.extend(sorted(compress(column, top.translate(mask))))
    return ordered


def part_masks(count: int) -> list[bytes]:
    """For sorting ``count`` u64 words in parts: per part, a ``bytes.translate`` table that maps a
    word's most significant byte to 1 when the word belongs to the part (none: sort them whole)."""
    bits = min((count // _SORT_RUN).bit_length(), 8)
    if not bits or sys.byteorder != "little" or array("Q").itemsize != 8:
        return []
    shift = 8 - bits
    return [bytes(1 if byte >> shift == part else 0 for byte in range(256)) for part in range(1 << bits)]


def id_key(run_id: str) -> bytes:
    """The bytes that stand for ``run_id`` in the index's id columns (one line of the id text):
    its UTF-8 with backslash and newline escaped, so that keys never contain a newline."""
    key = run_id.encode("utf-8")
    if b"\\" in key or b"\n" in key:
        key = key.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
    return key


def id_from_key(key: bytes) -> str:
    """The run id an id key stands for (the inverse of :func:`id_key`)."""
    if b"\\" not in key:
        return key.decode("utf-8")
    return _ESCAPE.sub(lambda m: b"\n" if m[1] == b"n" else m[1], key).decode("utf-8")


def id_hash(key: bytes) -> int:
    """A stable 64-bit hash of an id key: CRC-32 of the key and of the reversed key.

    Stable across processes and versions (``hash()`` is salted per process).  It only narrows
    candidates: every match is confirmed by comparing the run ids themselves.
    """
    return zlib.crc32(key) << 32 | zlib.crc32(key[::-1])


@dataclass(slots=True)
class MetricPart:
    """One metric's share of a segment: block statistics in log order and its top-K heaps."""

    blocks: list[tuple[int, Part]] = field(default_factory=list)
    top_max: list[tuple[float, int, str]] = field(default_factory=list)
    top_min: list[tuple[float, int, str]] = field(default_factory=list)


@dataclass(slots=True)
class Segment:
    """What one read of ``[start, end)`` found; ``merge`` appends the next segment exactly.

    ``corrupt`` line numbers count from 1 at ``start``; the id columns hold one entry per valid
    run in log order (``ids`` is the keys, each followed by a newline).
    """

    start: int
    end: int
    lines: int = 0
    unchecked: int = 0
    groups: Counter[GroupKey] = field(default_factory=Counter)
    """Runs per group key (experiment, status): see ``index.groups``."""
    corrupt: list[CorruptLine] = field(default_factory=list)
    metrics: dict[GroupKey, dict[str, MetricPart]] = field(default_factory=dict)
    """Per group key, per metric: that group's share of the metric."""
    directions: dict[GroupKey, dict[str, Counter[str]]] = field(default_factory=dict)
    """Per group key, per metric: how many runs declared ``max`` / ``min`` in their ``directions``."""
    names: FieldNames = field(default_factory=FieldNames)
    """Param names, tag keys and sections seen (what filters and sorts may name)."""
    hashes: array[int] = field(default_factory=lambda: array("Q"))
    offsets: array[int] = field(default_factory=lambda: array("Q"))
    ids: bytearray = field(default_factory=bytearray)
    starts: array[int] = field(default_factory=lambda: array("Q"))
    """Where each key starts in ``ids``."""
    sorted_hashes: array[int] = field(default_factory=lambda: array("Q"))
    """``hashes`` in ascending order: each process sorts its own part, merging is linear."""
    unmapped: int = 0
    spilled: int = 0
    """Runs whose id columns went to a ``spill.ColumnSink`` (files) instead of these arrays."""
    spilled_length: int = 0
    """Bytes of id text those runs wrote to the sink."""
    spill_crcs: dict[str, int] = field(default_factory=dict)
    """The CRC-32 of each spilled column file, once the read is complete."""
    edits: list[Edit] = field(default_factory=list)
    """Edit lines, in log order (see ``store.edits``)."""
    resumes: list[int] = field(default_factory=list)
    """Offsets of resumed runs' new records (a run id seen before, on purpose)."""
    """Runs counted without id columns (a filtered read needs no id map: memory stays flat)."""

    @property
    def runs(self) -> int:
        return len(self.offsets) + self.unmapped + self.spilled

    @property
    def statuses(self) -> Counter[str]:
        """Runs per status (over every experiment)."""
        counts: Counter[str] = Counter()
        for (_, status), runs in self.groups.items():
            counts[status] += runs
        return counts

    def merge(self, other: Segment, columns: Iterable[array[int] | bytes | bytearray] | None = None) -> None:
        """Append ``other``, which starts where this segment ends (line numbers are shifted);
        ``columns``, when given, are its id columns (``other`` came without them)."""
        shift = self.lines
        self.corrupt.extend(
            CorruptLine(c.line + shift, c.offset, c.length, c.reason) for c in other.corrupt
        )
        self.end = other.end
        self.lines += other.lines
        self.unchecked += other.unchecked
        self.unmapped += other.unmapped
        self.spilled += other.spilled
        self.spilled_length += other.spilled_length
        self.edits.extend(other.edits)
        self.resumes.extend(other.resumes)
        self.groups.update(other.groups)
        self.names.merge(other.names)
        for key, parts in other.metrics.items():
            mine_parts = self.metrics.setdefault(key, {})
            for name, part in parts.items():
                mine = mine_parts.get(name)
                if mine is None:
                    mine_parts[name] = part
                    continue
                mine.blocks.extend(part.blocks)
                _merge_heap(mine.top_max, part.top_max)
                _merge_heap(mine.top_min, part.top_min)
        for key, declared in other.directions.items():
            mine_declared = self.directions.setdefault(key, {})
            for name, counts in declared.items():
                mine_declared.setdefault(name, Counter()).update(counts)
        self.append_columns(other.columns() if columns is None else columns)

    COLUMNS = ("hashes", "offsets", "starts", "ids", "sorted_hashes")
    """The id columns, in the order :meth:`columns` gives them and :meth:`append_columns` takes them."""

    def columns(self) -> tuple[array[int], array[int], array[int], bytearray, array[int]]:
        return self.hashes, self.offsets, self.starts, self.ids, self.sorted_hashes

    def take_columns(self) -> tuple[array[int], array[int], array[int], bytearray, array[int]]:
        """The id columns, leaving this segment empty ones (to send them apart from the rest)."""
        columns = self.columns()
        self.hashes, self.offsets, self.starts = array("Q"), array("Q"), array("Q")
        self.ids, self.sorted_hashes = bytearray(), array("Q")
        return columns

    def append_columns(self, columns: Iterable[array[int] | bytes | bytearray]) -> None:
        """Append the next segment's id columns (``COLUMNS`` order, as arrays or their bytes).

        Taken one at a time (an iterator may receive each from a pipe), so that a merge never
        holds more than one of the other segment's columns beside these.
        """
        column = map(_raw, columns)
        self.hashes.frombytes(next(column))
        self.offsets.frombytes(next(column))
        base = len(self.ids)
        starts = array("Q")
        starts.frombytes(next(column))
        self.starts.extend(map(operator.add, starts, repeat(base)))
        del starts
        self.ids += next(column)
        # two ascending runs: timsort merges them in one linear pass (per part)
        self.sorted_hashes.frombytes(next(column))
        self.sorted_hashes = sort_words(self.sorted_hashes)


def _raw(column: array[int] | bytes | bytearray) -> bytes | bytearray | memoryview:
    """A column as bytes (``array.frombytes`` takes no array)."""
    return memoryview(column).cast("B") if isinstance(column, array) else column


def _merge_heap(heap: list[tuple[float, int, str]], other: list[tuple[float, int, str]]) -> None:
    for entry in other:
        if len(heap) < TOP_K:
            heapq.heappush(heap, entry)
        elif entry[:2] > heap[0][:2]:
            heapq.heapreplace(heap, entry)


