"""Read a byte range of the run log fast, on every core, into the reducers the index keeps.

One pass builds everything the index needs, for *all* metrics at once: run and status counts,
per-metric statistics (by 256 KiB block, see ``query.BLOCK_SHIFT``) and top-K heaps in both
directions, the corrupt-line report and the id columns (hash, offset, id text of every run).

Why it is fast (numbers for a 650 MB, 1M-run log in the README of ``benchmarks/``):

* **No full parse of ordinary lines.**  A line that exptrack wrote has a fixed layout
  (``{"schema":1,"run_id":…,"timestamp":…,"status":…,"params":{…},"metrics":{…},"tags":[…],
  …,"crc":"…"}``), so the scanner checks the CRC-32 (a C loop), matches the head with one
  regular expression, locates the metrics and tags with ``bytes.find`` and keeps only that
  slice; a block's slices are parsed by one ``orjson.loads`` call.  Each Python-level call costs
  ~0.15 µs on the reference machine, about what orjson needs for 40 bytes, so the loop is
  written for few calls per line rather than few bytes scanned.
* **Bulk reduction.**  Metric values are gathered per block and reduced with C-level builtins
  (``math.fsum``, ``min``/``max``, ``map``/``itertools.compress`` for the top-K candidates)
  instead of a Python update per value.
* **Both cores.**  The range is cut at line starts on block boundaries; a forked child scans one
  part while the parent scans the other, and the parts merge exactly (``query.MetricFold``).

Exactness: a line takes the fast path only when every check below holds; anything else -- no
checksum, a mismatching one, a CRLF end, a byte-order mark, escapes (a backslash) before the end
of the metrics, nested params, string metric values (NaN), invalid UTF-8, a bad tags list --
goes through ``scan._parse``, the reader every other path uses, so the corrupt-line report and
the runs are identical to ``LogScan``'s.  What the fast path does *not* re-validate is the
JSON syntax of params and of the optional sections after the tags: it relies on the matching
CRC, which only ``codec.encode`` (of validated values) produces.  A line forged with a correct
CRC around invalid JSON there would be counted where ``LogScan`` reports it; reading such a run
back (``get_run``, a best run) still decodes it fully, and an index that finds a line it cannot
decode rebuilds itself through the slow path.
"""

from __future__ import annotations

import heapq
import logging
import multiprocessing
import operator
import os
import re
import sys
import threading
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, chain, compress, pairwise, repeat
from typing import Any

from . import codec, scan
from .query import BLOCK_SHIFT, MetricStats, Part
from .record import Run
from .scan import CorruptLine, _parse, _too_long

logger = logging.getLogger(__name__)

TOP_K = 100
"""Entries kept per metric and direction: best / top-k for any k up to this need no scan."""

PARALLEL_MIN_BYTES = 32 << 20
"""Below this a range is read in the calling process: forking and merging cost more than they
save (a fork plus the transfer of the results is ~10-30 ms)."""

Predicate = Callable[[Run], bool]
Progress = Callable[[int, int], None]
"""``progress(bytes_done, bytes_total)``, called from the process that asked for the scan."""

_HEAD = re.compile(rb'\{"schema":1,"run_id":"([^"\\]+)","timestamp":"[^"\\]*","status":"([^"\\]*)","params":\{')
_METRICS = b'},"metrics":{'
_NUMBERS = frozenset({int, float})
_NOT_NUMBER = (b":t", b":f", b":n")
_REVERSE = slice(None, None, -1)
_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)


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
    statuses: Counter[str] = field(default_factory=Counter)
    corrupt: list[CorruptLine] = field(default_factory=list)
    metrics: dict[str, MetricPart] = field(default_factory=dict)
    hashes: array[int] = field(default_factory=lambda: array("Q"))
    offsets: array[int] = field(default_factory=lambda: array("Q"))
    ids: bytearray = field(default_factory=bytearray)
    starts: array[int] = field(default_factory=lambda: array("Q"))
    """Where each key starts in ``ids``."""
    sorted_hashes: array[int] = field(default_factory=lambda: array("Q"))
    """``hashes`` in ascending order: each process sorts its own part, merging is linear."""
    unmapped: int = 0
    """Runs counted without id columns (a filtered read needs no id map: memory stays flat)."""

    @property
    def runs(self) -> int:
        return len(self.offsets) + self.unmapped


    def merge(self, other: Segment) -> None:
        """Append ``other``, which starts where this segment ends (line numbers are shifted)."""
        shift = self.lines
        self.corrupt.extend(
            CorruptLine(c.line + shift, c.offset, c.length, c.reason) for c in other.corrupt
        )
        self.end = other.end
        self.lines += other.lines
        self.unchecked += other.unchecked
        self.unmapped += other.unmapped
        self.statuses.update(other.statuses)
        for name, part in other.metrics.items():
            mine = self.metrics.get(name)
            if mine is None:
                self.metrics[name] = part
                continue
            mine.blocks.extend(part.blocks)
            _merge_heap(mine.top_max, part.top_max)
            _merge_heap(mine.top_min, part.top_min)
        self.hashes.extend(other.hashes)
        self.offsets.extend(other.offsets)
        self.starts.extend(map(operator.add, other.starts, repeat(len(self.ids))))
        self.ids.extend(other.ids)
        # two ascending runs: timsort merges them in one linear pass
        self.sorted_hashes = array("Q", sorted(chain(self.sorted_hashes, other.sorted_hashes)))


def _merge_heap(heap: list[tuple[float, int, str]], other: list[tuple[float, int, str]]) -> None:
    for entry in other:
        if len(heap) < TOP_K:
            heapq.heappush(heap, entry)
        elif entry[:2] > heap[0][:2]:
            heapq.heapreplace(heap, entry)


class _Careful(Exception):
    """A block held something the bulk path does not handle: read the range line by line."""


class _Reader:
    """The state of one pass; ``run`` fills a :class:`Segment`."""

    def __init__(self, path: str, start: int, end: int, exclude: Mapping[int, str], careful: bool,
                 tick: Callable[[int], None] | None, predicate: Predicate | None = None) -> None:
        self.path, self.start, self.end = path, start, end
        self.exclude, self.careful, self.tick = exclude, careful or predicate is not None, tick
        self.predicate = predicate
        self.seg = Segment(start, start)
        self.first_block = start >> BLOCK_SHIFT
        self.block = -1
        self.offs: list[int] = []
        self.keys: list[bytes] = []
        self.status: list[bytes] = []
        self.slices: list[bytes] = []  # "metrics":{…},"tags":[…] of fast-path lines, parsed at flush
        self.careful_rows: list[tuple[int, dict[str, Any]]] = []  # (row, metrics) of other runs

    # -- one block of runs ----------------------------------------------------------------------

    def flush(self, raw: bool) -> None:
        """Reduce the runs gathered for the current block into the segment."""
        offs, keys = self.offs, self.keys
        if not offs:
            return
        seg = self.seg
        dicts = self._metrics()
        if self.predicate is not None:
            seg.unmapped += len(offs)
        else:
            crc: Callable[[bytes], int] = zlib.crc32
            seg.hashes.extend(map(operator.or_, map(operator.lshift, map(crc, keys), repeat(32)),
                                  map(crc, map(operator.getitem, keys, repeat(_REVERSE)))))  # type: ignore[arg-type]
            seg.offsets.extend(offs)
            seg.starts.extend(accumulate(map(len, keys[:-1]), _next_start, initial=len(seg.ids)))
            seg.ids += b"\n".join(keys)
            seg.ids += b"\n"
        for status, count in Counter(self.status).items():
            seg.statuses[status.decode()] += count
        names = set().union(*dicts)
        parts = seg.metrics
        block = self.block
        for name in names:
            column: list[Any] = list(map(dict.get, dicts, repeat(name)))
            where: Sequence[int]
            if None in column:
                chosen = list(map(operator.is_not, column, repeat(None)))
                values = list(compress(column, chosen))
                where = list(compress(range(len(offs)), chosen))
            else:
                values, where = column, range(len(offs))
            part = parts.get(name)
            if part is None:
                part = parts[name] = MetricPart()
            stats = MetricStats.of(values)
            part.blocks.append((block, values if raw else stats))
            if not stats.count:
                continue
            # most blocks hold no value that beats the K-th best kept so far: skip them whole
            high, low = part.top_max, part.top_min
            if len(high) < TOP_K or stats.max > high[0][0]:
                _top(high, values, where, offs, keys, operator.lt, 1)
            if len(low) < TOP_K or stats.min < -low[0][0]:
                _top(low, values, where, offs, keys, operator.gt, -1)
        self.offs, self.keys, self.status, self.slices, self.careful_rows = [], [], [], [], []

    def _metrics(self) -> list[dict[str, Any]]:
        """The block's metrics objects, in log order.

        Fast-path lines left ``"metrics":{…},"tags":[…]`` slices: all of a block's are parsed in
        one ``loads`` call and checked in bulk; any surprise sends the whole range to the careful
        path.  Runs read by the careful path sit in ``careful`` at their row.
        """
        slices, careful = self.slices, self.careful_rows
        if not slices:
            return [row for _, row in careful]
        joined = b'[{' + b'},{'.join(slices) + b'}]'
        try:
            items = codec.loads(joined)
        except ValueError:
            raise _Careful from None
        # Each slice holds no string value in its metrics (no ``:"``): a value that is not a
        # number starts with t, f, n, [ or { right after a colon (each slice has one ``:{`` and
        # one ``:[`` of its own, for "metrics" and "tags").
        if len(items) != len(slices) or set(map(len, items)) != {2}:
            raise _Careful
        try:
            parsed = list(map(operator.itemgetter("metrics"), items))
            tags = list(map(operator.itemgetter("tags"), items))
        except KeyError:
            raise _Careful from None
        if set(map(type, parsed)) != {dict} or not set(map(type, tags)) <= {list} \
                or not set(map(type, chain.from_iterable(tags))) <= {str} \
                or ((any(map(joined.__contains__, _NOT_NUMBER)) or joined.count(b":[") != len(slices)
                     or joined.count(b":{") != len(slices))
                    and not set(map(type, chain.from_iterable(map(dict.values, parsed)))) <= _NUMBERS):
            raise _Careful
        for row, metrics in careful:
            parsed.insert(row, metrics)
        return parsed

    def _slow(self, line: memoryview, offset: int, line_no: int) -> None:
        item = _parse(line, offset, line_no)
        if type(item) is tuple:
            if self.predicate is None or self.predicate(item[0]):
                self.add_run(*item)
        else:
            self.seg.corrupt.append(item)  # type: ignore[arg-type]

    def add_run(self, run: Run, checked: bool) -> None:
        if not checked:
            self.seg.unchecked += 1
        self.careful_rows.append((len(self.offs), dict(run.metrics)))
        self.offs.append(run.offset)
        self.keys.append(id_key(run.run_id))
        self.status.append(run.status.encode())

    # -- the pass -------------------------------------------------------------------------------

    def run(self) -> Segment:
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._lines(fd)
        finally:
            os.close(fd)
        self.flush(raw=True)
        return self.seg

    def _lines(self, fd: int) -> None:  # noqa: PLR0915 - one hot loop, kept flat for speed
        seg, exclude, careful = self.seg, self.exclude, self.careful
        offs, keys, status, slices = self.offs, self.keys, self.status, self.slices
        crc32, match = zlib.crc32, _HEAD.match
        # read from ``scan`` at call time, so that tests shrinking them cover this reader too
        chunk_bytes, max_record = scan.CHUNK_BYTES, vars(scan)["MAX_RECORD_BYTES"]
        pos, end = self.start, self.end
        carry = b""
        skipping = False
        skip_from = pos
        line_no = 0
        block = self.block
        while pos < end:
            chunk = os.pread(fd, min(chunk_bytes, end - pos), pos)
            if not chunk:
                break
            base = pos - len(carry)
            buf = carry + chunk if carry else chunk
            pos += len(chunk)
            ascii_buf = buf.isascii()
            backslash = -1  # the next backslash at or after the current line (len(buf): none)
            view = memoryview(buf)
            find, startswith = buf.find, buf.startswith
            cut = 0
            while True:
                nl = find(b"\n", cut)
                if nl < 0:
                    break
                line_no += 1
                lo = cut
                cut = nl + 1
                off = base + lo
                if skipping:
                    skipping = False
                    seg.corrupt.append(CorruptLine(line_no, skip_from, base + nl - skip_from, _too_long()))
                    continue
                if off >> BLOCK_SHIFT != block:
                    self.flush(raw=block == self.first_block)
                    offs, keys, status, slices = self.offs, self.keys, self.status, self.slices
                    block = self.block = off >> BLOCK_SHIFT
                if exclude and off in exclude:
                    seg.corrupt.append(CorruptLine(line_no, off, nl - lo, exclude[off]))
                    continue
                if careful or nl - lo < 90 \
                        or not startswith(b',"crc":"%08x"}' % crc32(b"}", crc32(view[lo : nl - 18])), nl - 18):
                    self._slow(view[lo:nl], off, line_no)
                    continue
                head = match(buf, lo, nl)  # schema, id, timestamp and status, without escapes
                if head is not None:
                    p = head.end()
                    m = find(_METRICS, p - 1, nl)
                    close = find(b'],"', m + 12, nl)  # the end of the tags list that follows
                    if backslash < close:
                        backslash = find(b"\\", lo)
                        if backslash < 0:
                            backslash = len(buf)
                    if m > 0 and close > 0 and backslash >= close and find(b"{", p, m) < 0 \
                            and find(b':"', m + 12, close) < 0 and (ascii_buf or _utf8(buf, lo, nl)):
                        offs.append(off)
                        slices.append(buf[m + 2 : close + 1])  # "metrics":{…},"tags":[…]
                        key, state = head.group(1, 2)
                        keys.append(key)
                        status.append(state)
                        continue
                self._slow(view[lo:nl], off, line_no)
            seg.lines = line_no
            if not skipping:
                seg.end = base + cut
            rest = len(buf) - cut
            if skipping or rest > max_record:
                if not skipping:
                    skipping, skip_from = True, base + cut
                carry = b""
            else:
                carry = buf[cut:]
            if self.tick is not None:
                self.tick(pos - self.start)


def _next_start(start: int, length: int) -> int:
    return start + length + 1  # the key and its newline


def _utf8(buf: bytes, lo: int, hi: int) -> bool:
    try:
        buf[lo:hi].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _top(heap: list[tuple[float, int, str]], values: list[Any], where: Any, offs: list[int],
         keys: list[bytes], better: Callable[[Any, Any], bool], sign: int) -> None:
    """Fold one block into a top-K heap of (sign * value, -offset, run_id) keys.

    Later blocks have larger offsets, so a value equal to the worst kept one never enters: only
    strictly better values are candidates, found with C-level ``map``/``compress``.
    """
    if len(heap) < TOP_K:
        candidates: Any = range(len(values))
    else:
        worst = heap[0][0] if sign > 0 else -heap[0][0]
        candidates = compress(range(len(values)), map(better, repeat(worst), values))
    for i in candidates:
        value = values[i]
        if value - value != 0:
            continue
        row = where[i]
        entry = (value if sign > 0 else -value, -offs[row], id_from_key(keys[row]))
        if len(heap) < TOP_K:
            heapq.heappush(heap, entry)
        elif entry[:2] > heap[0][:2]:
            heapq.heapreplace(heap, entry)


def scan_range(path: str, start: int, end: int, *, exclude: Mapping[int, str] | None = None,
               tick: Callable[[int], None] | None = None, predicate: Predicate | None = None) -> Segment:
    """Read the complete lines of ``[start, end)`` in this process (``start`` is a line start).

    ``exclude`` maps offsets of lines to report as corrupt with the given reason (duplicates).
    With a ``predicate`` every line is decoded in full (a filter may read any field) and only
    the runs it accepts are counted.
    """
    try:
        segment = _Reader(path, start, end, exclude or {}, False, tick, predicate).run()
    except _Careful:
        logger.debug("unusual metric values in %s [%d, %d): reading line by line", path, start, end)
        segment = _Reader(path, start, end, exclude or {}, True, tick, predicate).run()
    segment.sorted_hashes = array("Q", sorted(segment.hashes))
    return segment


# -- parallel ---------------------------------------------------------------------------------------


def split_points(path: str, start: int, end: int, parts: int) -> list[int]:
    """Line starts that cut ``[start, end)`` into about ``parts`` pieces on block boundaries
    (so no statistics block spans two pieces)."""
    cuts = [start]
    with open(path, "rb", buffering=0) as handle:
        for i in range(1, parts):
            target = start + (end - start) * i // parts
            boundary = max(((target >> BLOCK_SHIFT) + 1) << BLOCK_SHIFT, cuts[-1] + 1)
            cut = _next_line_start(handle.fileno(), boundary, end)
            if cut < 0 or cut >= end:
                break
            cuts.append(cut)
    cuts.append(end)
    return cuts


def _next_line_start(fd: int, at: int, end: int) -> int:
    pos = at - 1
    while pos < end:
        chunk = os.pread(fd, min(1 << 20, end - pos), pos)
        if not chunk:
            return -1
        nl = chunk.find(b"\n")
        if nl >= 0:
            return pos + nl + 1
        pos += len(chunk)
    return -1


def _start_method() -> str | None:
    """``fork`` when the process has one thread (a forked child of a threaded parent may inherit
    a held lock); ``None`` means: do not use a child process at all."""
    # macOS lists fork but system libraries there are not fork-safe; spawn would cost a fresh
    # interpreter and import per child (~0.1-0.2 s), more than it saves on all but huge logs.
    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        return None
    return "fork"


def _child(conn: Any, progress: Any, path: str, start: int, end: int, exclude: Mapping[int, str],
           predicate: Predicate | None) -> None:
    def tick(done: int) -> None:
        progress.value = done

    try:
        conn.send(scan_range(path, start, end, exclude=exclude, tick=tick, predicate=predicate))
    except BaseException as exc:  # surfaces in the parent, which then reads the range itself
        conn.send(exc)
    finally:
        conn.close()


def scan_parallel(path: str, start: int, end: int, *, exclude: Mapping[int, str] | None = None,
                  progress: Progress | None = None, workers: int | None = None,
                  predicate: Predicate | None = None) -> Segment:
    """Read ``[start, end)`` with up to ``workers`` processes (default: one per core).

    The calling process reads the first piece itself while forked children read the others
    (a forked child inherits ``predicate``: nothing is pickled on the way in); results merge in
    log order.  Small ranges, platforms without ``fork`` and threaded callers read in one process.
    """
    total = end - start
    count = workers if workers is not None else (os.cpu_count() or 1)
    method = _start_method()
    cuts = split_points(path, start, end, count) if count > 1 and total >= PARALLEL_MIN_BYTES and method else [
        start, end]
    exclude = exclude or {}
    if len(cuts) == 2:
        return scan_range(path, start, end, exclude=exclude, predicate=predicate,
                          tick=(lambda done: progress(done, total)) if progress else None)
    ctx: Any = multiprocessing.get_context(method)
    children = []
    counters = []
    for lo, hi in pairwise(cuts[1:]):
        counter = ctx.Value("q", 0, lock=False)
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_child, args=(send, counter, path, lo, hi, exclude, predicate), daemon=True)
        child.start()
        send.close()
        children.append((child, receive, lo, hi))
        counters.append(counter)

    def tick(done: int) -> None:
        if progress is not None:
            progress(done + sum(c.value for c in counters), total)

    try:
        merged = scan_range(path, cuts[0], cuts[1], exclude=exclude, tick=tick, predicate=predicate)
        for _, receive, lo, hi in children:
            try:
                result = receive.recv()
            except EOFError:
                result = None
            if not isinstance(result, Segment):
                logger.warning("parallel read of bytes %d-%d failed (%r); reading them here", lo, hi, result)
                result = scan_range(path, lo, hi, exclude=exclude, predicate=predicate)
            merged.merge(result)
            tick(0)
    finally:
        for child, receive, _, _ in children:
            receive.close()
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
                child.join()
    return merged
