"""Read a byte range of the run log fast, on every core, into the reducers the index keeps.

One pass builds everything the index needs, for *all* metrics at once: run and status counts,
per-metric statistics (by 256 KiB block, see ``query.BLOCK_SHIFT``) and top-K heaps in both
directions, the corrupt-line report and the id columns (hash, offset, id text of every run).

Why it is fast:

* **C-level loops over a whole chunk.**  A chunk's complete lines are cut with one ``split``;
  the checksum test (CRC-32 of each line without its ``,"crc":"…"}`` end, compared with that end
  for all lines at once), ``loads`` of each line and the lookup of the fields the index needs run
  as ``map`` calls, so the interpreter executes no bytecode per line: what is left per line is
  the CRC, one ``orjson.loads`` and a few C calls.
* **Bulk reduction.**  Runs are gathered per block; the checks ``codec.from_object`` makes, the id
  columns and the metric values are done per block with C-level builtins (``str.join``,
  ``set(map(type, …))``, ``zip``, ``math.fsum``, ``min``/``max``, ``map``/``itertools.compress``
  for the top-K candidates) instead of Python code per run or per value.
* **Both cores.**  The range is cut at line starts on block boundaries; a forked child scans one
  part while the parent scans the other, and the parts merge exactly (``query.MetricFold``).

Exactness: a line takes the fast path only when it ends with a matching checksum in exactly the
form ``codec.encode`` writes, ``loads`` accepts the whole line (orjson validates the JSON and the
UTF-8 in full) and it holds all of schema, run_id, timestamp, status, params, metrics and tags;
the block then checks their types as ``codec.from_object`` does (the ``null`` metrics a
schema-2 ``nonfinite`` section names, and schema-1 strings, are read back as floats).  Any other
line -- no checksum, a mismatching one, a CRLF end, a byte-order mark, a missing field -- goes
through ``scan._parse``, the reader every other path uses, and a block whose fields fail the
checks (only a line forged with a valid checksum does) sends the whole range to that reader, so
the corrupt-line report and the runs are identical to ``LogScan``'s.
"""

from __future__ import annotations

import bisect
import gc
import heapq
import logging
import operator
import os
import sys
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from itertools import accumulate, chain, compress, repeat
from typing import Any

from exptrack.store import codec, partial, scan
from exptrack.store.edits import Edit
from exptrack.store.index.groups import DEFAULT_EXPERIMENT, GroupKey, declared_modes, experiment_of
from exptrack.store.index.reducers import BLOCK_SHIFT, MetricStats
from exptrack.store.record import SAFE_RUN_IDS, SCHEMA_VERSION, CorruptLine, Run
from exptrack.store.scan import _parse, _too_long
from exptrack.store.segment import TOP_K, MetricPart, Segment, id_key, sort_words
from exptrack.store.spill import ColumnSink

logger = logging.getLogger(__name__)


"""Below this a range is read in the calling process: forking and merging cost more than they
save (a fork plus the transfer of the results is ~10-30 ms)."""

Predicate = Callable[[Run], bool]

_FIELDS = operator.itemgetter("run_id", "status", "metrics", "schema", "params", "tags", "timestamp")
"""What a fast-path line contributes (all seven are present in every line ``codec.encode`` writes)."""
_NUMBERS = frozenset({int, float})
_NOT_SECTIONS = frozenset({"crc"})
"""The checksum is the codec's, not a section of the run (``Run`` has none, as the careful reader sees it)."""
_INT_MIN, _UINT_MAX = -(1 << 63), (1 << 64) - 1
"""The integers orjson reads as ints; it reads any other integer literal as a float."""
_DICT, _LIST, _INT, _STR = {dict}, {list}, {int}, {str}
_UINT32 = array("I").itemsize == 4
_PAIRS = sys.byteorder == "little" and _UINT32 and array("Q").itemsize == 8
_SUFFIX = slice(-18, None)
_PAYLOAD = slice(None, -18)
_CRC_FORMAT = b',"crc":"%08x"}'
"""How ``codec.encode`` ends a line: the CRC-32 of the line without it (closed by ``}``)."""
_CRC_TEMPLATE = _CRC_FORMAT % 0
_loads: Callable[[bytes], Any] = codec.loads
_NONFINITE = codec.NONFINITE_IN
_MARK = b'"%b":' % codec.NONFINITE_KEY.encode()
_RESUME = b'"kind":"resume"'
"""A resumed run's record (it supersedes an earlier line of the run): read by the careful reader."""
"""Bytes every line with a ``nonfinite`` section holds (a param key can hold them too: a superset)."""














class _Careful(Exception):
    """A block held a checksummed line that validation refuses: read the range line by line."""


class _Reader:
    """The state of one pass; ``run`` fills a :class:`Segment`."""

    def __init__(self, path: str, start: int, end: int, exclude: Mapping[int, str], careful: bool,
                 tick: Callable[[int], None] | None, predicate: Predicate | None = None,
                 sink: ColumnSink | None = None) -> None:
        self.path, self.start, self.end = path, start, end
        self.sink = sink
        self.exclude, self.careful, self.tick = exclude, careful or predicate is not None, tick
        self.predicate = predicate
        self.seg = Segment(start, start)
        self.first_block = start >> BLOCK_SHIFT
        self.block = -1
        self.next_block = 0  # where the block after ``block`` starts
        self.offs: list[int] = []
        self.rows: list[tuple[Any, ...]] = []  # _FIELDS of each run, in log order
        self.marked = False  # the current chunk may hold a ``nonfinite`` section
        self.exps: list[Any] = []  # each run's "experiment" field (None when absent)
        self.dirs: list[Any] = []  # each run's "directions" section (None when absent)
        self.resumed = False  # the current chunk may hold a resumed run's record
        self.decoder = None if self.careful else partial.decoder()  # None: orjson alone
        self.plain = True  # the current chunk is read with orjson alone

    # -- one block of runs ----------------------------------------------------------------------

    def flush(self, raw: bool) -> None:
        """Reduce the runs gathered for the current block into the segment."""
        offs, rows = self.offs, self.rows
        if not offs:
            return
        exps, dirs = self.exps, self.dirs
        self.offs, self.rows, self.exps, self.dirs = [], [], [], []
        seg = self.seg
        run_ids, statuses, dicts, schemas, params, tags, stamps = zip(*rows)
        # what ``codec.from_object`` checks, for the whole block at once (a join refuses any
        # non-string); only a forged line (with a valid checksum) fails here
        try:
            "".join(chain(run_ids, statuses, stamps, chain.from_iterable(tags)))
        except TypeError:
            raise _Careful from None
        if set(map(type, dicts)) != _DICT or set(map(type, params)) != _DICT or set(map(type, tags)) != _LIST \
                or set(map(type, schemas)) != _INT or max(schemas) > SCHEMA_VERSION or min(schemas) < _INT_MIN \
                or "" in run_ids:
            raise _Careful
        joined = "\n".join(run_ids)
        if SAFE_RUN_IDS.fullmatch(joined) is None:  # an id that could name a path: a corrupt line
            raise _Careful
        if self.predicate is not None:
            seg.unmapped += len(offs)
        else:
            self._ids(run_ids, joined, offs)
        seg.names.add_block(params, tags)
        experiments: list[str]
        if not any(exps):
            experiments = [DEFAULT_EXPERIMENT] * len(offs)
        elif set(map(type, exps)) == _STR and "" not in exps:  # every run names its experiment
            experiments = exps
        else:
            experiments = list(map(experiment_of, exps))
        if any(dirs):
            self._declare(experiments, statuses, dirs)
        if len(set(statuses)) == 1 and len(set(experiments)) == 1:  # the usual block: one group
            key = (experiments[0], statuses[0])
            seg.groups[key] += len(offs)
            self._reduce(raw, offs, run_ids, dicts, key)
            return
        group_keys = list(zip(experiments, statuses))
        seg.groups.update(group_keys)
        for key in sorted(set(group_keys)):
            chosen = list(map(key.__eq__, group_keys))
            self._reduce(raw, list(compress(offs, chosen)), list(compress(run_ids, chosen)),
                         list(compress(dicts, chosen)), key)

    def _ids(self, run_ids: Sequence[str], joined: str, offs: list[int]) -> None:
        """Append the block's id columns: to the sink's files, or to the segment."""
        seg = self.seg
        if "\\" in joined or joined.count("\n") != len(run_ids) - 1:
            ids = b"\n".join(map(id_key, run_ids))
        else:
            ids = joined.encode()
        keys = ids.split(b"\n")
        backwards = ids[::-1].split(b"\n")  # each key reversed, in reverse order
        backwards.reverse()
        starts = accumulate(map(operator.add, map(len, keys[:-1]), repeat(1)), initial=0 if self.sink else len(seg.ids))
        if self.sink is not None:  # a long read: the columns go to files, block by block
            self.sink.write(_hashes(keys, backwards), array("Q", offs), array("Q", starts), ids + b"\n")
            seg.spilled += len(offs)
            seg.spilled_length += len(ids) + 1
            return
        seg.hashes.extend(_hashes(keys, backwards))
        seg.offsets.extend(offs)
        seg.starts.extend(starts)
        seg.ids += ids
        seg.ids += b"\n"

    def _declare(self, experiments: list[str], statuses: Sequence[str], dirs: list[Any]) -> None:
        """Count the directions runs declare for their metrics, per group."""
        for experiment, status, section in zip(experiments, statuses, dirs):
            if section:
                declared = self.seg.directions.setdefault((experiment, status), {})
                for name, mode in declared_modes(section).items():
                    declared.setdefault(name, Counter())[mode] += 1

    def _reduce(self, raw: bool, offs: list[int], run_ids: Sequence[str], dicts: Sequence[dict[str, Any]],
                key: GroupKey) -> None:
        parts = self.seg.metrics.setdefault(key, {})
        block = self.block
        names: Any = dicts[0].keys()
        columns: Any
        if names and all(map(names.__eq__, map(dict.keys, dicts))):
            # every run has the same metrics: one C-level transpose
            names = list(names)
            if len(names) == 1:
                columns = [list(map(operator.itemgetter(names[0]), dicts))]
            else:
                columns = list(map(list, zip(*map(operator.itemgetter(*names), dicts))))
            complete = True
        else:
            names = list(set().union(*dicts))
            columns = None
            complete = False
        everywhere = range(len(offs))
        for i, name in enumerate(names):
            where: Sequence[int]
            if complete:
                values, where = _numbers(columns[i]), everywhere
            else:
                chosen = list(map(dict.__contains__, dicts, repeat(name)))
                if all(chosen):
                    values, where = _numbers(list(map(operator.getitem, dicts, repeat(name)))), everywhere
                else:
                    values = _numbers(list(map(operator.getitem, compress(dicts, chosen), repeat(name))))
                    where = list(compress(everywhere, chosen))
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
                _top(high, values, where, offs, run_ids, operator.lt, 1)
            if len(low) < TOP_K or stats.min < -low[0][0]:
                _top(low, values, where, offs, run_ids, operator.gt, -1)

    def _slow(self, line: memoryview, offset: int, line_no: int) -> None:
        item = _parse(line, offset, line_no)
        if type(item) is tuple:
            record = item[0]
            if isinstance(record, Edit):
                self.seg.edits.append(record)
                return
            if "resumed" in record.extra:
                self.seg.resumes.append(offset)
            if self.predicate is None or self.predicate(record):
                self.add_run(record, item[1])
        else:
            self.seg.corrupt.append(item)  # type: ignore[arg-type]

    def add_run(self, run: Run, checked: bool) -> None:
        if not checked:
            self.seg.unchecked += 1
        self.offs.append(run.offset)
        self.rows.append((run.run_id, run.status, dict(run.metrics), SCHEMA_VERSION, run.params, list(run.tags),
                          run.timestamp))
        self.exps.append(run.get("experiment"))
        self.seg.names.sections.update(run)
        self.dirs.append(run.get("directions"))

    # -- the pass -------------------------------------------------------------------------------

    def run(self) -> Segment:
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._lines(fd)
        finally:
            os.close(fd)
        self.flush(raw=True)
        return self.seg

    def _lines(self, fd: int) -> None:
        seg = self.seg
        # read from ``scan`` at call time, so that tests shrinking them cover this reader too
        chunk_bytes, max_record = scan.CHUNK_BYTES, vars(scan)["MAX_RECORD_BYTES"]
        pos, end = self.start, self.end
        carry = b""
        skipping = False
        skip_from = pos
        line_no = 0
        while pos < end:
            chunk = os.pread(fd, min(chunk_bytes, end - pos), pos)
            if not chunk:
                break
            base = pos - len(carry)
            buf = carry + chunk if carry else chunk
            pos += len(chunk)
            lines = buf.split(b"\n")
            rest = lines.pop()  # after the last newline: the start of a line, or all of ``buf``
            cut = len(buf) - len(rest)
            if lines:
                self.marked = _MARK in buf
                # msgspec reads a 309-digit integer that orjson refuses: orjson reads such a chunk
                self.plain = self.decoder is None or partial.may_hold_long_integer(buf)
                self.resumed = _RESUME in buf
                first = base
                if skipping:  # the first line ends the over-long one
                    skipped = lines.pop(0)
                    line_no += 1
                    skipping = False
                    seg.corrupt.append(CorruptLine(line_no, skip_from, base + len(skipped) - skip_from, _too_long()))
                    first += len(skipped) + 1
                if lines:
                    self._chunk(lines, first, line_no)
                    line_no += len(lines)
            seg.lines = line_no
            if not skipping:
                seg.end = base + cut
            if skipping or len(rest) > max_record:
                if not skipping:
                    skipping, skip_from = True, base + cut
                carry = b""
            else:
                carry = rest
            if self.tick is not None:
                self.tick(pos - self.start)

    def _chunk(self, lines: list[bytes], base: int, line_no: int) -> None:
        """Read consecutive complete ``lines`` (without newlines); the first starts at ``base``.

        Each step is a C-level ``map`` over all lines: the checksum test, then (per run of lines
        that pass it, within one block) ``loads`` and the field lookup.
        """
        count = len(lines)
        starts = list(accumulate(map(operator.add, map(len, lines), repeat(1)), initial=base))
        ok: list[bool] | None = [False] * count if self.careful else _checksummed(lines)
        if self.exclude:
            excluded = list(compress(range(count), map(self.exclude.__contains__, starts[:count])))
            if excluded:
                ok = [True] * count if ok is None else ok
                for i in excluded:
                    ok[i] = False
        i = 0
        while i < count:
            if starts[i] >= self.next_block:
                self.flush(raw=self.block == self.first_block)
                self.block = starts[i] >> BLOCK_SHIFT
                self.next_block = (self.block + 1) << BLOCK_SHIFT
            j = bisect.bisect_left(starts, self.next_block, i, count)
            k = i
            for bad in () if ok is None else compress(range(i, j), map(operator.not_, ok[i:j])):
                if k < bad:
                    self._fast(lines, starts, line_no, k, bad)
                self._one(lines[bad], starts[bad], line_no + bad + 1)
                k = bad + 1
            if k < j:
                self._fast(lines, starts, line_no, k, j)
            i = j

    def _fast(self, lines: list[bytes], starts: list[int], line_no: int, lo: int, hi: int) -> None:
        """Lines ``lo:hi`` carry a matching checksum: parse each, keep the fields ``flush`` checks."""
        part = lines[lo:hi]
        if self.resumed and any(map(operator.contains, part, repeat(_RESUME))):
            self._each(lines, starts, line_no, lo, hi)  # rare: a resumed record must be seen as one
            return
        decoder = self.decoder
        structs = None if decoder is None or self.plain else decoder.decode(part)
        if structs is not None and decoder is not None:
            if any(map(operator.is_not, map(decoder.kind, structs), repeat(decoder.unset))):
                self._each(lines, starts, line_no, lo, hi)  # an edit: a record of its own kind
                return
            rows = list(map(decoder.row, structs))
            exps = list(map(decoder.experiment, structs))
            dirs = list(map(decoder.directions, structs))
            if self.marked:  # rare: runs with a NaN or an infinity (schema 2 writes them as null)
                for i in compress(range(hi - lo), map(operator.contains, part, repeat(_MARK))):
                    named = structs[i].nonfinite
                    if named is not decoder.unset:
                        _name_nonfinite(named, structs[i].schema, structs[i].metrics)
            self.seg.names.sections.update(decoder.sections(structs, self.seg.names.sections) - _NOT_SECTIONS)
        else:
            try:
                objs = list(map(_loads, part))
                if any(map(operator.contains, objs, repeat("kind"))):
                    raise KeyError("kind")  # an edit (or a forged run with a kind): the careful reader decides
                rows = list(map(_FIELDS, objs))
                exps = list(map(dict.get, objs, repeat("experiment")))
                dirs = list(map(dict.get, objs, repeat("directions")))
            except (ValueError, KeyError, TypeError):  # one line is unusual: each goes its own way
                self._each(lines, starts, line_no, lo, hi)
                return
            if self.marked:
                for i in compress(range(hi - lo), map(operator.contains, part, repeat(_MARK))):
                    obj = objs[i]
                    _name_nonfinite(obj.get(codec.NONFINITE_KEY), obj["schema"], obj["metrics"])
            self.seg.names.sections.update(set().union(*objs) - _NOT_SECTIONS)  # C-level: every line's keys
        self.offs.extend(starts[lo:hi])
        self.rows.extend(rows)
        self.exps.extend(exps)
        self.dirs.extend(dirs)

    def _each(self, lines: list[bytes], starts: list[int], line_no: int, lo: int, hi: int) -> None:
        for i in range(lo, hi):
            self._one(lines[i], starts[i], line_no + i + 1)

    def _one(self, line: bytes, offset: int, line_no: int) -> None:
        reason = self.exclude.get(offset)
        if reason is not None:
            if reason:  # "" leaves a record out of the answers without a report (a hidden record)
                self.seg.corrupt.append(CorruptLine(line_no, offset, len(line), reason))
        else:
            self._slow(memoryview(line), offset, line_no)


def _checksummed(lines: list[bytes]) -> list[bool] | None:
    """Whether each line ends with the checksum ``codec.encode`` writes, matching the rest of the
    line; ``None`` when all do.  The common case is one comparison of all the line ends with
    the checksums formatted in bulk (``array.tobytes().hex()``)."""
    crc: Callable[..., int] = zlib.crc32
    cut: Callable[..., bytes] = operator.getitem
    sums = array("I", map(crc, repeat(b"}"), map(crc, map(cut, lines, repeat(_PAYLOAD)))))
    ends = list(map(cut, lines, repeat(_SUFFIX)))
    if _UINT32:
        big = array("I", sums)
        if sys.byteorder == "little":
            big.byteswap()
        digits = big.tobytes().hex().encode()
        expected = bytearray(_CRC_TEMPLATE * len(lines))
        for k in range(8):
            expected[8 + k :: 18] = digits[k::8]
        if expected == b"".join(ends):
            return None
    return list(map(operator.eq, ends, map(operator.mod, repeat(_CRC_FORMAT), sums)))


def _name_nonfinite(named: Any, schema: Any, metrics: Any) -> None:
    """Put the values a schema-2 ``nonfinite`` section names in place of their ``null`` metrics,
    as ``codec.from_object`` does; a section it would refuse sends the range to the careful reader.
    ``named`` is the section (``None`` when absent)."""
    if type(schema) is not int or schema < 2 or named is None:
        return  # in a schema-1 line ``nonfinite`` is an ordinary section
    if type(named) is not dict or type(metrics) is not dict:
        raise _Careful
    for name, text in named.items():
        if metrics.get(name, 0) is not None or type(text) is not str or text not in _NONFINITE:
            raise _Careful
        metrics[name] = _NONFINITE[text]


def _numbers(column: list[Any]) -> list[Any]:
    """A metric column with the strings "NaN", "Infinity" and "-Infinity" read back as floats, as
    ``codec`` does; anything else that is not a number (a ``null`` no ``nonfinite`` section
    named) sends the range to the careful reader."""
    kinds = set(map(type, column))
    if kinds <= _NUMBERS:
        # an integer beyond 64 bits: orjson reads it as a float, msgspec (``partial``) as an int
        if int in kinds:
            ints = list(compress(column, map(operator.is_, map(type, column), repeat(int)))) if float in kinds \
                else column
            if min(ints) < _INT_MIN or max(ints) > _UINT_MAX:
                raise _Careful
        return column
    fixed = []
    for value in column:
        number = _NONFINITE.get(value, value) if type(value) is str else value
        if type(number) is not float and (type(number) is not int or not _INT_MIN <= number <= _UINT_MAX):
            raise _Careful  # a forged line (with a valid checksum): the careful reader reports it
        fixed.append(number)
    return fixed


def _hashes(keys: list[bytes], backwards: list[bytes]) -> array[int]:
    """``id_hash`` of each key (``backwards`` holds the reversed keys), with C-level loops."""
    crc: Callable[[bytes], int] = zlib.crc32
    if _PAIRS:  # the two 32-bit halves of each 64-bit hash, written side by side
        halves = array("I", bytes(8 * len(keys)))
        halves[0::2] = array("I", map(crc, backwards))
        halves[1::2] = array("I", map(crc, keys))
        return array("Q", halves.tobytes())
    return array("Q", map(operator.or_, map(operator.lshift, map(crc, keys), repeat(32)), map(crc, backwards)))


def _top(heap: list[tuple[float, int, str]], values: list[Any], where: Any, offs: list[int],
         run_ids: Sequence[str], better: Callable[[Any, Any], bool], sign: int) -> None:
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
        entry = (value if sign > 0 else -value, -offs[row], run_ids[row])
        if len(heap) < TOP_K:
            heapq.heappush(heap, entry)
        elif entry[:2] > heap[0][:2]:
            heapq.heapreplace(heap, entry)


def scan_range(path: str, start: int, end: int, *, exclude: Mapping[int, str] | None = None,
               tick: Callable[[int], None] | None = None, predicate: Predicate | None = None,
               sink: ColumnSink | None = None) -> Segment:
    """Read the complete lines of ``[start, end)`` in this process (``start`` is a line start).

    ``exclude`` maps offsets of lines to report as corrupt with the given reason (duplicates).
    With a ``predicate`` every line is decoded in full (a filter may read any field) and only
    the runs it accepts are counted.  With a ``sink`` the id columns are appended to its files
    (``segment.spilled`` counts them) instead of kept in the segment.
    """
    mark = sink.mark() if sink is not None else None
    # The pass allocates ~10 containers a line and drops them chunk by chunk, none in a reference
    # cycle: the collector's passes over them are pure cost (~10% of a cold build).
    collecting = gc.isenabled()
    gc.disable()
    try:
        try:
            segment = _Reader(path, start, end, exclude or {}, False, tick, predicate, sink).run()
        except _Careful:
            logger.debug("unusual metric values in %s [%d, %d): reading line by line", path, start, end)
            if sink is not None and mark is not None:
                sink.rewind(mark)
            segment = _Reader(path, start, end, exclude or {}, True, tick, predicate, sink).run()
    finally:
        if collecting:
            gc.enable()
    segment.sorted_hashes = sort_words(segment.hashes)
    return segment


# -- parallel ---------------------------------------------------------------------------------------










