"""SQL over the store on DuckDB: a ``runs`` view of the merged, non-deleted runs with typed columns.

DuckDB is not pointed at ``runs.jsonl``: the file holds edits as separate lines (tags, notes,
renames, deletions) that only exptrack's reader folds into runs.  The runs the reader yields are
streamed once into a temporary newline-delimited JSON file while the type of every param is
noted, and DuckDB's parallel JSON reader loads that file with those exact column types:

=============  ===============================================================================
column         type
=============  ===============================================================================
run_id         VARCHAR
name           VARCHAR
experiment     VARCHAR
status         VARCHAR
timestamp      TIMESTAMP (UTC)
params         STRUCT, one field per param name: BOOLEAN, BIGINT (HUGEINT if one is beyond 2**63-1),
               DOUBLE (ints and floats mixed), VARCHAR (strings; or scalars of mixed types,
               as their JSON text), JSON (lists and nested mappings)
metrics        STRUCT of DOUBLE, one field per metric name (NaN and ±Infinity kept)
tags           VARCHAR[]
=============  ===============================================================================

A run without a param or metric has NULL in that field.  SQL names are case-insensitive, so a
name that differs from an earlier one only by case (``lr`` and ``LR``) gets a ``#2`` suffix.
DuckDB is imported only when a query runs (``pip install 'exptrack[sql]'``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from exptrack.errors import QueryError
from exptrack.store import codec
from exptrack.store.record import Run

if TYPE_CHECKING:
    import duckdb

__all__ = ["Row", "Rows", "connect", "run_sql"]

class Row(tuple):  # type: ignore[type-arg]  # a tuple of any values, like DB-API rows
    """One result row: a tuple (``row[0]``, unpacking, ``==`` with a tuple) that also answers
    ``row["column"]``, ``row.keys()`` and ``dict(row)``, like ``sqlite3.Row``."""

    __slots__ = ()
    columns: tuple[str, ...] = ()
    _positions: Mapping[str, int] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                key = self._positions[key]
            except KeyError:
                raise KeyError(f"no column {key!r}; columns: {', '.join(self.columns)}") from None
        return super().__getitem__(key)

    def keys(self) -> tuple[str, ...]:
        return self.columns

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(self.columns, self))


class Rows(list[Row]):
    """The rows of one result, in order; ``columns`` names them even when there are none."""

    def __init__(self, columns: Sequence[str], rows: Iterable[Row] = ()) -> None:
        super().__init__(rows)
        self.columns = tuple(columns)


def row_type(columns: Sequence[str]) -> type[Row]:
    """A ``Row`` subclass for one result's columns (the first of a repeated name wins by name)."""
    positions: dict[str, int] = {}
    for i, name in enumerate(columns):
        positions.setdefault(name, i)
    return type("Row", (Row,), {"__slots__": (), "columns": tuple(columns), "_positions": positions})


def run_sql(runs: Iterable[Run], query: str) -> Rows:
    """Answer ``query`` over a ``runs`` view of ``runs``: :class:`Row` tuples in a :class:`Rows` list.

    Raises:
        QueryError: the SQL does not parse or cannot run (DuckDB's message, first line).
        MissingDependencyError: DuckDB is not installed.
    """
    con = connect(runs)
    try:
        try:
            result = con.execute(query)
        except _duckdb().Error as exc:
            raise QueryError(f"SQL: {_first_line(exc)}") from None
        if not result.description:  # a statement without a result (SET, CREATE ...)
            return Rows(())
        columns = [str(d[0]) for d in result.description]
        cls = row_type(columns)
        return Rows(columns, (cls(values) for values in result.fetchall()))
    finally:
        con.close()


def connect(runs: Iterable[Run]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection holding a ``runs`` view of ``runs`` (see the module doc)."""
    engine = _duckdb()
    fd, path = tempfile.mkstemp(prefix="exptrack-sql-", suffix=".ndjson")
    try:
        with os.fdopen(fd, "wb") as out:
            shape = _write_rows(runs, out)
        con: duckdb.DuckDBPyConnection = engine.connect(":memory:")
        try:
            try:
                con.execute(_load_statement(path, shape, wide_ints=False))
            except engine.Error:
                # an int param beyond BIGINT (exptrack stores up to 2**64-1) fails the cast: rare,
                # so DuckDB finds it rather than a check of every value in Python
                if not any("int" in kinds for kinds in shape.param_kinds().values()):
                    raise
                con.execute("DROP TABLE IF EXISTS _runs")
                con.execute(_load_statement(path, shape, wide_ints=True))
            con.execute("CREATE VIEW runs AS SELECT * FROM _runs")
        except BaseException:
            con.close()
            raise
        return con
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


class _Names:
    """SQL field names for keys: the first spelling of a case-insensitive name keeps it."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.order: list[str] = []  # field names in first-seen order
        self.renamed: dict[str, str] = {}  # only keys that clash with an earlier spelling
        self._folded: dict[str, int] = {}

    def add(self, keys: Iterable[str]) -> None:
        for key in keys:
            if key in self.seen:
                continue
            self.seen.add(key)
            folded = key.casefold()
            count = self._folded.get(folded, 0) + 1
            self._folded[folded] = count
            name = key if count == 1 else f"{key}#{count}"
            if name != key:
                self.renamed[key] = name
            self.order.append(name)

    def apply(self, mapping: Mapping[str, Any]) -> Mapping[str, Any]:
        if not self.seen.issuperset(mapping):
            self.add(mapping)
        if self.renamed and not self.renamed.keys().isdisjoint(mapping):
            return {self.renamed.get(k, k): v for k, v in mapping.items()}
        return mapping


class _Shape:
    """What the rows hold: param and metric field names, and the Python types of each param."""

    def __init__(self) -> None:
        self.params = _Names()
        self.metrics = _Names()
        self.param_types: set[tuple[str, type]] = set()

    def param_kinds(self) -> dict[str, set[str]]:
        kinds: dict[str, set[str]] = {name: set() for name in self.params.order}
        for name, kind in self.param_types:
            if kind is not type(None):
                kinds[name].add(_KINDS.get(kind, "json"))
        return kinds


_KINDS = {bool: "bool", int: "int", float: "float", str: "str"}


def _write_rows(runs: Iterable[Run], out: Any) -> _Shape:
    """Write one JSON line per run to ``out``; the loop is the cost of a query, so it stays lean."""
    shape = _Shape()
    lines: list[bytes] = []
    dumps = codec.dumps
    for run in runs:
        params = shape.params.apply(run.params)
        shape.param_types.update(zip(params, map(type, params.values())))
        metrics = shape.metrics.apply(run.metrics)
        total = sum(metrics.values())  # finite exactly when every value is (NaN and ±inf propagate)
        if total - total != 0:
            metrics = {k: v if v - v == 0 else _NONFINITE_TEXT.get(v, "NaN") for k, v in metrics.items()}
        # the merged view's name and experiment (a generated name, "default", when none was stored)
        name, experiment, stamp = getattr(run, "name", None), getattr(run, "experiment", None), run.timestamp
        row = {
            "run_id": run.run_id,
            "name": name if type(name) is str else None,
            "experiment": experiment if type(experiment) is str and experiment else "default",
            "status": run.status,
            # exptrack's own "...Z" form is read as it is; anything else is converted
            "timestamp": stamp[:-1] if stamp[-1:] == "Z" and stamp[10:11] == "T" else _utc_naive(stamp),
            "params": params,
            "metrics": metrics,
            "tags": run.tags,
        }
        # params hold no non-finite float (validated on write) and metrics were spelled above
        lines.append(dumps(row, finite=True))
        if len(lines) >= 4096:
            out.write(b"\n".join(lines) + b"\n")
            lines.clear()
    if lines:
        out.write(b"\n".join(lines) + b"\n")
    return shape


# DuckDB casts these strings to DOUBLE NaN / ±Infinity; JSON has no spelling for the values
_NONFINITE_TEXT = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _param_type(kinds: set[str], wide_ints: bool) -> str:
    if not kinds or kinds == {"str"}:
        return "VARCHAR"
    if "json" in kinds:
        return "JSON"
    if kinds == {"bool"}:
        return "BOOLEAN"
    if kinds == {"int"}:
        return "HUGEINT" if wide_ints else "BIGINT"
    if kinds <= {"int", "float"}:
        return "DOUBLE"
    return "VARCHAR"  # mixed scalars: their JSON text


def _struct(fields: Mapping[str, str]) -> str:
    if not fields:
        return "JSON"  # DuckDB has no empty STRUCT; a store without params has nothing to select
    return "STRUCT(" + ", ".join(f"{_ident(name)} {kind}" for name, kind in fields.items()) + ")"


def _load_statement(path: str, shape: _Shape, *, wide_ints: bool) -> str:
    columns = {
        "run_id": "VARCHAR",
        "name": "VARCHAR",
        "experiment": "VARCHAR",
        "status": "VARCHAR",
        "timestamp": "TIMESTAMP",
        "params": _struct({name: _param_type(kinds, wide_ints) for name, kinds in shape.param_kinds().items()}),
        "metrics": _struct(dict.fromkeys(shape.metrics.order, "DOUBLE")),
        "tags": "VARCHAR[]",
    }
    spec = ", ".join(f"{_literal(name)}: {_literal(kind)}" for name, kind in columns.items())
    return (  # every name and path in it is quoted by _literal: no injection
        f"CREATE TABLE _runs AS SELECT * FROM read_json({_literal(path)}, format='newline_delimited', "  # noqa: S608
        f"columns={{{spec}}}, maximum_object_size={codec.MAX_RECORD_BYTES * 4})"
    )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _utc_naive(stamp: str) -> str | None:
    """The run's time as a zone-less UTC text DuckDB reads as TIMESTAMP; None if unreadable."""
    if stamp.endswith("Z") and len(stamp) > 19 and stamp[10] == "T":
        return stamp[:-1]  # exptrack's own form: the fast path
    try:
        moment = _dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return moment.isoformat()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _duckdb() -> Any:
    from exptrack.query.export import _require

    return _require("duckdb", "SQL queries", "sql")
