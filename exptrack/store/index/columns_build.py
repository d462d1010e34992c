"""Building the columnar index: the log's new lines parsed and encoded a chunk at a time, on every core.

``columns`` says what the files hold; this module fills them.  A long range is cut at line starts
and read by forked helpers as well as by the calling process (parsing JSON is most of the cost);
each helper writes its rows into a part folder of its own, and the caller appends the parts in
log order, renumbering groups and string codes into the store's.  A helper that fails leaves its
range to the caller.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import sys
from array import array
from collections.abc import Iterable, Iterator, Mapping
from itertools import pairwise
from typing import Any, Final

from exptrack.store import codec
from exptrack.store.index.columns import (
    EXACT_INT,
    FALSE,
    FLOAT,
    INT,
    MAX_FIELDS,
    MAX_STRINGS,
    MISSING,
    NULL,
    OTHER,
    SECTIONS,
    STR,
    TRUE,
    ColumnMeta,
    ColumnStore,
    FieldColumns,
)

logger = logging.getLogger(__name__)

_FLUSH_ROWS: Final = 1 << 16  # rows buffered before they are appended: memory stays flat
_NAN: Final = float("nan")
_LITTLE: Final = sys.byteorder == "little"
PARALLEL_MIN_BYTES: Final = 32 << 20
"""Below this, one process reads the range (a helper costs a fork and a merge)."""

_CHUNK: Final = 8 << 20


class _Absent:
    """A field a run does not have (``MISSING`` in the kinds)."""


_ABSENT: Final = _Absent()
_NUMBERS: Final = frozenset((float, int))
_TYPE_KIND: Final[dict[type, int]] = {float: FLOAT, int: INT, str: STR, type(None): NULL, _Absent: MISSING}


def _records(log_path: str, start: int, end: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(offset, object)`` of each line of ``[start, end)`` that parses as a run record.

    Lighter than the log reader: no checksum and no ``Run``.  That is enough because the index
    already judged every line: queries leave out the lines it reports corrupt (a forged or torn
    line may be a row here, never an answer), and every run an answer names is read again in
    full.  Metrics the codec rewrites (non-finite values stored as null or text) are taken from
    the codec itself.
    """
    fd = os.open(log_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        pos = start
        while pos < end:
            chunk = os.pread(fd, min(_CHUNK, end - pos), pos)
            if not chunk:
                return
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:
                if len(chunk) < end - pos:  # one line longer than a chunk: read it whole
                    chunk = os.pread(fd, end - pos, pos)
                    cut = chunk.rfind(b"\n") + 1
                if cut == 0:
                    return
            at = pos
            for line in chunk[:cut].split(b"\n")[:-1]:
                offset, at = at, at + len(line) + 1
                try:
                    obj = codec.loads(line)
                except ValueError:
                    continue
                if type(obj) is not dict or "run_id" not in obj or obj.get("kind", "resume") != "resume":
                    continue  # an edit, or not a record: never a row
                metrics = obj.get("metrics")
                if type(metrics) is not dict or type(obj.get("params")) is not dict:
                    continue
                if not _NUMBERS.issuperset(map(type, metrics.values())):
                    try:
                        obj["metrics"] = codec.from_object(dict(obj)).metrics
                    except codec.LineError:
                        continue
                yield offset, obj
            pos += cut
    finally:
        os.close(fd)


class _Builder:
    """Appends rows a chunk at a time: each column's share of a chunk is encoded in one go."""

    def __init__(self, store: ColumnStore, meta: ColumnMeta) -> None:
        self.store, self.meta = store, meta
        self.group_codes = {(g[0], g[1]): i for i, g in enumerate(meta.groups)}
        self._reset()

    def _reset(self) -> None:
        self.offsets = array("q")
        self.objects: list[Mapping[str, Any]] = []

    def fold(self, records: Iterable[tuple[int, dict[str, Any]]]) -> None:
        offsets, objects = self.offsets, self.objects
        for offset, obj in records:
            offsets.append(offset)
            objects.append(obj)
            if len(objects) >= _FLUSH_ROWS:
                self.flush()
                offsets, objects = self.offsets, self.objects
        self.flush()

    def _group_codes(self) -> array[int]:
        codes = self.group_codes
        keys = [(e if type(e := obj.get("experiment")) is str else None,
                 s if type(s := obj.get("status", "finished")) is str else "") for obj in self.objects]
        for key in dict.fromkeys(keys):
            if key not in codes:
                codes[key] = len(self.meta.groups)
                self.meta.groups.append(key)
        return array("i", map(codes.__getitem__, keys))

    def flush(self) -> None:
        rows = len(self.offsets)
        if not rows:
            return
        store, meta, objects = self.store, self.meta, self.objects
        for section in SECTIONS:
            records = [obj[section] for obj in objects]
            names: dict[str, None] = {}
            for record in records:
                names.update(dict.fromkeys(record))
            for name in names:
                if (section, name) not in meta.fields and self._new_field(section, name) is None:
                    break
            for column in meta.fields.values():
                if column.section == section:
                    self._encode(column, [record.get(column.name, _ABSENT) for record in records])
        store.append("off", self.offsets)
        store.append("grp", self._group_codes())
        store.append("dir", bytes([1 if obj.get("directions") else 0 for obj in objects]))
        meta.rows += rows
        self._reset()

    def _encode(self, column: FieldColumns, values: list[Any]) -> None:
        """Append one chunk of a field: kinds, numbers and string codes, per value type."""
        count = len(values)
        types = set(map(type, values))
        numbers: array[float] | None = None
        codes: array[int] | None = None
        if types == {float}:  # the common cases in one C loop each
            kinds = bytearray([FLOAT]) * count
            numbers = array("d", values)
        elif types == {int} and min(values) >= -EXACT_INT and max(values) <= EXACT_INT:
            kinds = bytearray([INT]) * count
            numbers = array("d", values)
        else:
            kinds = bytearray(map(_TYPE_KIND.get, map(type, values), [OTHER] * count))
            if float in types or int in types:
                if int in types:
                    for i, value in enumerate(values):
                        if type(value) is int and not -EXACT_INT <= value <= EXACT_INT:
                            kinds[i] = OTHER  # beyond float64's exact integers: decided from the record
                numbers = array("d", [float(v) if k in (INT, FLOAT) else _NAN for v, k in zip(values, kinds)])
            if bool in types:
                for i, value in enumerate(values):
                    if value is True or value is False:
                        kinds[i] = TRUE if value else FALSE
            if str in types:
                codes = self._strings(column, values, kinds)
        self.store.append(f"{column.number}.k", kinds)
        self._extend(column, "f", numbers, count)
        self._extend(column, "s", codes, count)

    def _strings(self, column: FieldColumns, values: list[Any], kinds: bytearray) -> array[int] | None:
        """String codes of a chunk (new strings join the dictionary); strings past the
        dictionary, and text in a metric (which the codec refuses), are ``OTHER``."""
        codes_of, strings = column.codes_of, column.strings
        if column.section == "params":
            for text in dict.fromkeys(v for v in values if type(v) is str):
                if text not in codes_of and len(strings) < MAX_STRINGS:
                    codes_of[text] = len(strings)
                    strings.append(text)
                    column.new_strings = True
            if column.new_strings:
                self.store.write_whole(f"{column.number}.d", codec.dumps(strings))
                column.new_strings = False
            codes = array("i", [codes_of.get(v, -1) if type(v) is str else -1 for v in values])
            if len(strings) < MAX_STRINGS:
                return codes  # every string of the chunk has its code
        else:
            codes = None
        for i, value in enumerate(values):
            if type(value) is str and (codes is None or codes[i] < 0):
                kinds[i] = OTHER
        return codes

    def _extend(self, column: FieldColumns, part: str, data: array[Any] | None, count: int) -> None:
        """Append numbers (``f``) or codes (``s``) of a chunk (None: it has none); a field's
        first ones start its file, the committed rows before them filled with NaN / -1."""
        has = column.has_numbers if part == "f" else column.has_strings
        if data is None:
            if has:
                filler = array("d", [_NAN]) if part == "f" else array("i", [-1])
                self.store.append(f"{column.number}.{part}", filler * count)
            return
        _ensure(self.store, column, part, self.meta.rows)
        self.store.append(f"{column.number}.{part}", data)

    def _new_field(self, section: str, name: str) -> FieldColumns | None:
        meta = self.meta
        if len(meta.fields) >= MAX_FIELDS:
            meta.capped = True
            return None
        column = FieldColumns(section, name, len(meta.fields))
        meta.fields[(section, name)] = column
        self.store.append(f"{column.number}.k", bytes(meta.rows), new=True)  # MISSING for every committed row
        return column


# -- the whole build: both cores, parts merged in log order ------------------------------------------


def build(store: ColumnStore, meta: ColumnMeta, log_path: str, start: int, end: int) -> None:
    """Append the rows of ``[start, end)`` to ``store`` (``meta`` is updated; the caller commits it)."""
    from exptrack.store.parallel import _start_method, split_points

    method = _start_method()
    count = os.cpu_count() or 1
    cuts = split_points(log_path, start, end, count) if (
        method and count > 1 and end - start >= PARALLEL_MIN_BYTES) else [start, end]
    if len(cuts) == 2:
        _Builder(store, meta).fold(_records(log_path, start, end))
        return
    store.clear_parts()
    ctx: Any = multiprocessing.get_context(method)
    helpers = []
    for number, (lo, hi) in enumerate(pairwise(cuts[1:]), 1):
        folder = store.path(f"part.{os.getpid()}.{number}")
        receive, send = ctx.Pipe(duplex=False)
        helper = ctx.Process(target=_helper, args=(send, receive, os.getpid(), folder, log_path, lo, hi), daemon=True)
        helper.start()
        send.close()
        helpers.append((helper, receive, folder, lo, hi))
    try:
        _Builder(store, meta).fold(_records(log_path, cuts[0], cuts[1]))
        for _, receive, folder, lo, hi in helpers:
            try:
                state = receive.recv()
            except EOFError:
                state = None
            if not isinstance(state, dict):
                logger.info("parallel column build of bytes %d-%d failed (%r); reading them here", lo, hi, state)
                _Builder(store, meta).fold(_records(log_path, lo, hi))
                continue
            part_meta = ColumnMeta.from_state(state)
            part = ColumnStore("", folder=folder)
            for column in part_meta.fields.values():
                if column.has_strings:
                    column.strings = part.read_strings(column)
            _merge(store, meta, part, part_meta)
    finally:
        for helper, receive, folder, _, _ in helpers:
            receive.close()
            helper.join(timeout=5)
            if helper.is_alive():
                helper.kill()
                helper.join()
            shutil.rmtree(folder, ignore_errors=True)


def _helper(conn: Any, theirs: Any, parent: int, folder: str, log_path: str, start: int, end: int) -> None:
    from exptrack.store.parallel import die_with_parent

    die_with_parent(parent)
    theirs.close()  # the parent's read end: while this copy is open, a dead parent never shows
    result: object
    try:
        os.makedirs(folder, exist_ok=True)
        meta = ColumnMeta()
        _Builder(ColumnStore("", folder=folder), meta).fold(_records(log_path, start, end))
        result = meta.to_state()
    except BaseException as exc:  # surfaces in the parent, which then reads the range itself
        result = repr(exc)
    try:
        conn.send(result)
    except OSError:  # the reader is gone
        pass
    finally:
        conn.close()


def _merge(store: ColumnStore, meta: ColumnMeta, part: ColumnStore, part_meta: ColumnMeta) -> None:
    """Append a part's rows to the store: groups and string codes renumbered, fields aligned."""
    rows, added = meta.rows, part_meta.rows
    if not added:
        return
    codes = {(g[0], g[1]): i for i, g in enumerate(meta.groups)}
    renumber = []
    for key in part_meta.groups:
        if key not in codes:
            codes[key] = len(meta.groups)
            meta.groups.append(key)
        renumber.append(codes[key])
    store.append("off", _read(part, "off"))
    store.append("grp", array("i", map(renumber.__getitem__, _array(part, "grp", "i"))))
    store.append("dir", _read(part, "dir"))
    merged = set()
    for key, theirs in part_meta.fields.items():
        ours = meta.fields.get(key)
        if ours is None:
            if len(meta.fields) >= MAX_FIELDS:
                meta.capped = True
                continue
            ours = meta.fields[key] = FieldColumns(key[0], key[1], len(meta.fields))
            store.append(f"{ours.number}.k", bytes(rows), new=True)
        merged.add(key)
        kinds = bytearray(_read(part, f"{theirs.number}.k"))
        if theirs.has_numbers:
            _ensure(store, ours, "f", rows)
            store.append(f"{ours.number}.f", _read(part, f"{theirs.number}.f"))
        elif ours.has_numbers:
            store.append(f"{ours.number}.f", array("d", [_NAN]) * added)
        if theirs.has_strings:
            store.append(f"{ours.number}.s", _renumbered(store, ours, theirs, part, kinds, rows))
        elif ours.has_strings:
            store.append(f"{ours.number}.s", array("i", [-1]) * added)
        store.append(f"{ours.number}.k", kinds)
    for key, ours in meta.fields.items():
        if key not in merged:  # a field this part's runs never had
            store.append(f"{ours.number}.k", bytes(added))
            if ours.has_numbers:
                store.append(f"{ours.number}.f", array("d", [_NAN]) * added)
            if ours.has_strings:
                store.append(f"{ours.number}.s", array("i", [-1]) * added)
    meta.capped = meta.capped or part_meta.capped
    meta.rows += added


def _renumbered(store: ColumnStore, ours: FieldColumns, theirs: FieldColumns, part: ColumnStore,
                kinds: bytearray, rows: int) -> array[int]:
    """A part's string codes in the store's dictionary (strings past it become ``OTHER``)."""
    _ensure(store, ours, "s", rows)
    if not ours.codes_of and ours.strings:
        ours.codes_of = {text: i for i, text in enumerate(ours.strings)}
    renumber = []
    for text in theirs.strings:
        code = ours.codes_of.get(text)
        if code is None and len(ours.strings) < MAX_STRINGS:
            code = ours.codes_of[text] = len(ours.strings)
            ours.strings.append(text)
            ours.new_strings = True
        renumber.append(-1 if code is None else code)
    if ours.new_strings:
        store.write_whole(f"{ours.number}.d", codec.dumps(ours.strings))
        ours.new_strings = False
    codes = array("i", [renumber[c] if c >= 0 else -1 for c in _array(part, f"{theirs.number}.s", "i")])
    if -1 in renumber:
        for i, code in enumerate(codes):
            if code < 0 and kinds[i] == STR:
                kinds[i] = OTHER
    return codes


def _ensure(store: ColumnStore, column: FieldColumns, part: str, rows: int) -> None:
    """Start a field's number (``f``) or code (``s``) file, its ``rows`` earlier rows filled."""
    if part == "f" and not column.has_numbers:
        store.append(f"{column.number}.f", array("d", [_NAN]) * rows, new=True)
        column.has_numbers = True
    elif part == "s" and not column.has_strings:
        store.append(f"{column.number}.s", array("i", [-1]) * rows, new=True)
        column.has_strings = True


def _read(part: ColumnStore, name: str) -> bytes:
    with open(part.path(name), "rb") as handle:
        return handle.read()


def _array(part: ColumnStore, name: str, typecode: str) -> array[int]:
    data = array(typecode)
    data.frombytes(_read(part, name))
    if not _LITTLE:
        data.byteswap()
    return data
