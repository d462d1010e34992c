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
import shutil
import sys
import time
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from exptrack.store import codec
from exptrack.store.fsio import FILE_MODE, fs, make_dirs
from exptrack.store.journal import io_write_all

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
_LOCK_WAIT: Final = 30.0
_LITTLE = sys.byteorder == "little"

SECTIONS: Final = ("params", "metrics")


@dataclass(slots=True)
class FieldColumns:
    """One param's or metric's files and string dictionary."""

    section: str
    name: str
    number: int
    strings: list[str] = field(default_factory=list)
    has_numbers: bool = False
    has_strings: bool = False
    codes_of: dict[str, int] = field(default_factory=dict)
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

    def __init__(self, index_dir: str, *, folder: str | None = None) -> None:
        self.dir = folder if folder is not None else os.path.join(index_dir, COLUMNS_DIR)

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
        except OSError as exc:  # a read-only store: columns someone else built may still cover it
            meta = self.read_meta()
            if meta is not None and self._usable(meta, log_path, generation, repair=False) \
                    and meta.watermark >= watermark:
                return meta
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
        if meta is not None and not self._usable(meta, log_path, generation, repair=True):
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
        from exptrack.store.index.columns_build import build

        build(self, meta, log_path, meta.watermark, watermark)
        meta.watermark = watermark
        self._write_meta(meta)
        return meta

    def _usable(self, meta: ColumnMeta, log_path: str, generation: str, *, repair: bool) -> bool:
        """The columns describe this log (the index's generation, the same file) and every file
        holds the committed rows; with ``repair``, rows a crashed refresh left after them are cut."""
        info = os.stat(log_path)
        if meta.generation != generation or (meta.dev, meta.ino) != (info.st_dev, info.st_ino) \
                or meta.watermark > info.st_size:
            return False
        for name, size in self._files(meta):
            path = self.path(name)
            actual = os.stat(path).st_size if os.path.exists(path) else -1
            if actual < size:
                return False
            if actual > size and repair:
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
                    fs().unlink(self.path(name))
        self.clear_parts()

    def clear_parts(self) -> None:
        """Remove the part folders of parallel builds (under the lock: none is in progress)."""
        for name in os.listdir(self.dir):
            if name.startswith("part."):
                shutil.rmtree(self.path(name), ignore_errors=True)

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
