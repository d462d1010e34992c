"""The columnar index: per run, the fields filters and sorts read, as binary columns beside the index.

A filtered ``top``/``best``/``summary`` or a sorted listing otherwise decodes every line of the
log.  These columns hold, one row per valid run line in log order, what those queries read: the
line's byte offset, its group (experiment, status), whether it declares directions, and every
param and metric as a kind, a number and a string code.  The query side (``query.columnar``)
loads them with NumPy; this module only writes and describes them, with the standard library.

Layout under ``<store>/.index/columns/``:

* ``meta.json``: the index generation and log identity the rows belong to, the watermark (the
  log byte the rows reach), the row count, the groups, and the fields with their file numbers;
* ``off`` (int64 offsets), ``grp`` (int32 group codes), ``dir`` (uint8: declares directions);
* per field N: ``N.k`` (uint8 kind), ``N.f`` (float64 number), ``N.s`` (int32 string code) and
  ``N.d`` (the strings, JSON).  Number and string files exist once the field has held one.

File names are numbers: a name stored in the log never becomes a path.  Rows are append-only and
``meta.json`` is replaced atomically after the columns grew, so a reader takes ``rows`` items of
each file and ignores anything a crashed refresh left after them (the next refresh truncates it).
Everything here is disposable: any doubt (another generation, a changed log, a short file) and
the columns are rebuilt from the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from exptrack.store import codec
from exptrack.store.fsio import FILE_MODE, fs, make_dirs
from exptrack.store.journal import io_write_all
from exptrack.store.record import Run

logger = logging.getLogger(__name__)

FORMAT_VERSION: Final = 1
COLUMNS_DIR: Final = "columns"

MISSING, NULL, FALSE, TRUE, INT, FLOAT, STR, OTHER = range(8)
"""Kinds of a field's value in a run.  ``OTHER`` (lists, mappings, integers beyond 2**53, strings
past a field's dictionary) is never decided from the columns: the record is read instead."""

EXACT_INT: Final = 2**53
MAX_FIELDS: Final = 512
"""Columns kept (params and metrics together); a store with more names answers the rest from the log."""
MAX_STRINGS: Final = 8192
"""Distinct strings kept per field; more are ``OTHER`` (an id-like param gains nothing from codes)."""
_FLUSH_ROWS: Final = 1 << 16  # rows buffered before they are appended: memory stays flat
_LOCK_WAIT: Final = 30.0
_NAN: Final = float("nan")
_LITTLE = sys.byteorder == "little"

SECTIONS: Final = ("params", "metrics")


@dataclass(slots=True)
class FieldColumns:
    """One param's or metric's files and dictionary; ``kinds``/``numbers``/``codes`` buffer new rows."""

    section: str
    name: str
    number: int
    strings: list[str] = field(default_factory=list)
    has_numbers: bool = False
    has_strings: bool = False
    codes_of: dict[str, int] = field(default_factory=dict)
    kinds: bytearray = field(default_factory=bytearray)
    numbers: array[float] = field(default_factory=lambda: array("d"))
    codes: array[int] = field(default_factory=lambda: array("i"))
    new_strings: bool = False

    def to_state(self) -> list[object]:
        return [self.section, self.name, self.number, self.has_numbers, self.has_strings, len(self.strings)]


@dataclass(slots=True)
class ColumnMeta:
    """What ``meta.json`` says: which rows exist and what they describe."""

    generation: str = ""
    dev: int = -1
    ino: int = -1
    watermark: int = 0
    rows: int = 0
    groups: list[tuple[object, str]] = field(default_factory=list)
    fields: dict[tuple[str, str], FieldColumns] = field(default_factory=dict)
    capped: bool = False

    def to_state(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION, "generation": self.generation, "dev": self.dev, "ino": self.ino,
            "watermark": self.watermark, "rows": self.rows, "groups": [list(g) for g in self.groups],
            "fields": [f.to_state() for f in self.fields.values()], "capped": self.capped,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ColumnMeta:
        if state.get("version") != FORMAT_VERSION:
            raise ValueError(f"columns format {state.get('version')!r}")
        meta = cls(str(state["generation"]), int(state["dev"]), int(state["ino"]), int(state["watermark"]),
                   int(state["rows"]), [(g[0], str(g[1])) for g in state["groups"]], {}, bool(state["capped"]))
        for section, name, number, has_numbers, has_strings, _ in state["fields"]:
            meta.fields[(str(section), str(name))] = FieldColumns(
                str(section), str(name), int(number), has_numbers=bool(has_numbers), has_strings=bool(has_strings))
        return meta


class ColumnStore:
    """The column files of one store: ``sync`` appends the rows the index has and the columns lack."""

    def __init__(self, index_dir: str) -> None:
        self.dir = os.path.join(index_dir, COLUMNS_DIR)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def read_meta(self) -> ColumnMeta | None:
        try:
            with open(self.path("meta.json"), "rb") as handle:
                return ColumnMeta.from_state(codec.loads(handle.read()))
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None

    def read_strings(self, column: FieldColumns) -> list[str]:
        """The field's dictionary as committed (at least as long as any code in its rows)."""
        try:
            with open(self.path(f"{column.number}.d"), "rb") as handle:
                strings = codec.loads(handle.read())
        except (OSError, ValueError):
            return []
        return [str(s) for s in strings] if isinstance(strings, list) else []

    def sync(self, log_path: str, generation: str, watermark: int) -> ColumnMeta | None:
        """Columns for every run line before ``watermark`` of the log the index (``generation``)
        describes; None when the columns cannot be kept (another process holds them for too
        long, or the directory is not writable): queries then read the log."""
        try:
            make_dirs(self.dir)
            fd = fs().open(self.path("lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            logger.info("no columnar index for %s: %s", log_path, exc)
            return None
        try:
            deadline = time.monotonic() + _LOCK_WAIT
            while not fs().try_lock(fd):
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.002)
            try:
                return self._sync_locked(log_path, generation, watermark)
            finally:
                fs().unlock(fd)
        except OSError as exc:
            logger.info("cannot update the columnar index of %s: %s", log_path, exc)
            return None
        finally:
            fs().close(fd)

    def _sync_locked(self, log_path: str, generation: str, watermark: int) -> ColumnMeta:
        info = os.stat(log_path)
        meta = self.read_meta()
        if meta is not None and (meta.generation != generation or (meta.dev, meta.ino) != (info.st_dev, info.st_ino)
                                 or meta.watermark > info.st_size or not self._files_hold(meta)):
            meta = None
        if meta is None:
            self._clear()
            meta = ColumnMeta(generation, info.st_dev, info.st_ino)
        if meta.watermark >= watermark:
            return meta
        for column in meta.fields.values():
            if column.has_strings:
                column.strings = self.read_strings(column)
                column.codes_of = {s: i for i, s in enumerate(column.strings)}
        _Builder(self, meta).fold(_runs(log_path, meta.watermark, watermark))
        meta.watermark = watermark
        self._write_meta(meta)
        return meta

    def _files_hold(self, meta: ColumnMeta) -> bool:
        """Every file holds at least the committed rows; longer ones are cut back to them."""
        for name, size in self._files(meta):
            path = self.path(name)
            actual = os.stat(path).st_size if os.path.exists(path) else -1
            if actual < size:
                return False
            if actual > size:
                os.truncate(path, size)
        return True

    def _files(self, meta: ColumnMeta) -> Iterable[tuple[str, int]]:
        rows = meta.rows
        yield "off", 8 * rows
        yield "grp", 4 * rows
        yield "dir", rows
        for column in meta.fields.values():
            yield f"{column.number}.k", rows
            if column.has_numbers:
                yield f"{column.number}.f", 8 * rows
            if column.has_strings:
                yield f"{column.number}.s", 4 * rows

    def _clear(self) -> None:
        for name in os.listdir(self.dir):
            if name != "lock":
                with contextlib.suppress(OSError):
                    os.unlink(self.path(name))

    def append(self, name: str, data: bytes | bytearray | array[Any], *, new: bool = False) -> None:
        """Append ``data`` (little-endian) to a column; ``new`` starts the file afresh (a crashed
        refresh may have left one that ``meta.json`` does not list)."""
        raw = data.tobytes() if isinstance(data, array) else bytes(data)
        if isinstance(data, array) and not _LITTLE:
            swapped = array(data.typecode, data)
            swapped.byteswap()
            raw = swapped.tobytes()
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if new else os.O_APPEND)
        fd = fs().open(self.path(name), flags, FILE_MODE)
        try:
            io_write_all(fd, raw)
        finally:
            fs().close(fd)

    def write_whole(self, name: str, body: bytes) -> None:
        """Replace a small file atomically (a reader sees the old body or the new one)."""
        tmp = self.path(f"{name}.{os.getpid()}.{os.urandom(4).hex()}.part")
        fd = fs().open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        try:
            io_write_all(fd, body)
        finally:
            fs().close(fd)
        fs().replace(tmp, self.path(name))

    def _write_meta(self, meta: ColumnMeta) -> None:
        self.write_whole("meta.json", codec.dumps(meta.to_state()))


def _runs(log_path: str, start: int, end: int) -> Iterable[Run]:
    """The run lines of ``[start, end)``, checked as every reader checks them (edits and corrupt
    lines are not rows; duplicates are, and queries leave them out as the index says)."""
    from exptrack.store.scan import LogScan

    for item in LogScan(log_path, start=start, end=end):
        if type(item) is Run:
            yield item


class _Builder:
    """Appends rows: buffers a chunk, then writes each column's share of it."""

    def __init__(self, store: ColumnStore, meta: ColumnMeta) -> None:
        self.store, self.meta = store, meta
        self.group_codes = {(g[0], g[1]): i for i, g in enumerate(meta.groups)}
        self.offsets = array("q")
        self.groups = array("i")
        self.dirs = bytearray()
        self.new_groups = False

    def fold(self, runs: Iterable[Run]) -> None:
        for run in runs:
            self.add(run)
            if len(self.offsets) >= _FLUSH_ROWS:
                self.flush()
        self.flush()

    def add(self, run: Run) -> None:
        extra = run.extra
        experiment = extra.get("experiment")
        key = (experiment if type(experiment) is str else None, run.status)
        code = self.group_codes.get(key)
        if code is None:
            code = self.group_codes[key] = len(self.meta.groups)
            self.meta.groups.append(key)
        row = len(self.offsets)
        self.offsets.append(run.offset)
        self.groups.append(code)
        self.dirs.append(1 if extra.get("directions") else 0)
        self._values("params", run.params, row)
        self._values("metrics", run.metrics, row)

    def _values(self, section: str, values: Mapping[str, Any], row: int) -> None:
        fields = self.meta.fields
        for name, value in values.items():
            column = fields.get((section, name))
            if column is None:
                column = self._new_field(section, name, row)
                if column is None:
                    continue
            kinds = column.kinds
            if len(kinds) < row:
                _pad(column, row)
            kind = type(value)
            if kind is float:
                kinds.append(FLOAT)
                self._number(column, value, row)
            elif kind is int:
                if -EXACT_INT <= value <= EXACT_INT:
                    kinds.append(INT)
                    self._number(column, float(value), row)
                else:
                    kinds.append(OTHER)
            elif kind is str and section == "params":
                code = column.codes_of.get(value)
                if code is None and len(column.strings) < MAX_STRINGS:
                    code = column.codes_of[value] = len(column.strings)
                    column.strings.append(value)
                    column.new_strings = True
                if code is None:
                    kinds.append(OTHER)
                else:
                    kinds.append(STR)
                    self._string(column, code, row)
            elif value is None:
                kinds.append(NULL)
            elif value is True:
                kinds.append(TRUE)
            elif value is False:
                kinds.append(FALSE)
            else:
                kinds.append(OTHER)

    def _number(self, column: FieldColumns, value: float, row: int) -> None:
        if not column.has_numbers:
            column.has_numbers = True
            self.store.append(f"{column.number}.f", array("d", [_NAN]) * self.meta.rows, new=True)
        numbers = column.numbers
        if len(numbers) < row:
            numbers.extend(array("d", [_NAN]) * (row - len(numbers)))
        numbers.append(value)

    def _string(self, column: FieldColumns, code: int, row: int) -> None:
        if not column.has_strings:
            column.has_strings = True
            self.store.append(f"{column.number}.s", array("i", [-1]) * self.meta.rows, new=True)
        codes = column.codes
        if len(codes) < row:
            codes.extend(array("i", [-1]) * (row - len(codes)))
        codes.append(code)

    def _new_field(self, section: str, name: str, row: int) -> FieldColumns | None:
        meta = self.meta
        if len(meta.fields) >= MAX_FIELDS:
            meta.capped = True
            return None
        column = FieldColumns(section, name, len(meta.fields))
        meta.fields[(section, name)] = column
        self.store.append(f"{column.number}.k", bytes(meta.rows), new=True)  # MISSING for every committed row
        return column

    def flush(self) -> None:
        rows = len(self.offsets)
        if not rows:
            return
        store = self.store
        for column in self.meta.fields.values():
            _pad(column, rows)
            store.append(f"{column.number}.k", column.kinds)
            column.kinds = bytearray()
            if column.has_numbers:
                store.append(f"{column.number}.f", column.numbers)
                column.numbers = array("d")
            if column.has_strings:
                store.append(f"{column.number}.s", column.codes)
                column.codes = array("i")
            if column.new_strings:
                store.write_whole(f"{column.number}.d", codec.dumps(column.strings))
                column.new_strings = False
        store.append("off", self.offsets)
        store.append("grp", self.groups)
        store.append("dir", self.dirs)
        self.meta.rows += rows
        self.offsets, self.groups, self.dirs = array("q"), array("i"), bytearray()


def _pad(column: FieldColumns, rows: int) -> None:
    """Fill the buffered rows a field had no value for (MISSING, NaN, no string)."""
    missing = rows - len(column.kinds)
    if missing > 0:
        column.kinds.extend(bytes(missing))
    if column.has_numbers and len(column.numbers) < rows:
        column.numbers.extend(array("d", [_NAN]) * (rows - len(column.numbers)))
    if column.has_strings and len(column.codes) < rows:
        column.codes.extend(array("i", [-1]) * (rows - len(column.codes)))
