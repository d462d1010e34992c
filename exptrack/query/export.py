"""Export runs as CSV, JSON Lines or Parquet in constant memory, or as a pandas DataFrame.

JSON Lines keeps each record as stored (one object per line, ``NaN``/``Infinity`` as strings, as
``runs --json`` prints them).  CSV, Parquet and pandas are *flat*: one row per run, with the columns
``run_id``, ``timestamp``, ``status``, ``tags``, ``name``, ``experiment``, ``note``, then
``metrics.<name>`` and ``params.<name>``
(nested params flatten to dotted names, ``params.optimizer.lr``, and a key holding a dot is
backquoted, ``params.`a.b```, so no two values share a column: see ``query.columns``).

Nothing is rounded or merged: CSV writes floats with ``repr`` (they read back exactly), non-finite
metrics as ``NaN``/``Infinity``/``-Infinity``, tags as a JSON list (``["a,b","c"]``) and lists
and mappings as JSON.  Parquet types each column: ``timestamp`` is a UTC timestamp (microseconds)
when every run's timestamp parses, tags are ``list<string>``, a param column of lists of one
scalar kind is a list type, one kind of scalar keeps its type, anything else is JSON text.

A flat file needs its header before the first row, but a run's columns are only known once every
run was seen.  So CSV and Parquet read the log twice -- once for the columns, once to write --
instead of holding the runs in memory; the second pass stops after as many runs as the first saw,
so runs appended meanwhile cannot add rows without columns.  pandas and pyarrow are optional and
imported only here, when used.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, Literal

from exptrack.errors import ExptrackError
from exptrack.query.columns import column_name
from exptrack.query.columns import flat_params as _flat

if TYPE_CHECKING:
    import pandas as pd

    from exptrack.store.record import Run

ExportFormat = Literal["csv", "jsonl", "parquet"]
FORMATS: tuple[ExportFormat, ...] = ("csv", "jsonl", "parquet")
Progress = Callable[[int, int], None]
"""``progress(bytes_done, bytes_total)``: how far through the log (all passes) the export is."""
RunSource = Callable[[], Iterable["Run"]]
"""Returns a fresh iterator over the runs to export each time it is called (one per pass)."""

FIXED_COLUMNS = ("run_id", "timestamp", "status", "tags", "name", "experiment", "note")
ROW_GROUP = 16_384  # Parquet rows per row group: bounds the memory of one batch of columns
_PROGRESS_EVERY = 2048  # runs between progress reports: a bar redraw costs more than a run


class MissingDependencyError(ExptrackError, ImportError):
    """An optional package this feature needs is not installed.

    Attributes:
        package: the import name that is missing (``pyarrow``, ``pandas``).
        extra: the ``pip install 'exptrack[extra]'`` that provides it.
    """

    def __init__(self, package: str, feature: str, extra: str) -> None:
        super().__init__(f"{feature} needs {package}, which is not installed; "
                         f"pip install 'exptrack[{extra}]' (or pip install {package})")
        self.package = package
        self.feature = feature
        self.extra = extra

    def __reduce__(self) -> tuple[type[MissingDependencyError], tuple[str, str, str]]:
        return (type(self), (self.package, self.feature, self.extra))


def _require(package: str, feature: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        raise MissingDependencyError(package, feature, extra) from None


# -- flattening ---------------------------------------------------------------------------------


def flat_params(run: Run) -> dict[str, Any]:
    """``params`` as ``{"params.name": value}``, nested mappings flattened (``query.columns``)."""
    return _flat(run.params)


def _kind(value: object) -> object:
    """What Parquet needs to know of a param value: its type, or for a list its element types."""
    if type(value) is list:
        return ("list", frozenset(map(type, value)))
    return type(value)


class _Columns:
    """Column names in first-seen order, and for Parquet the kinds of value each one holds."""

    def __init__(self, *, kinds: bool = False) -> None:
        self.metrics: dict[str, None] = {}
        self.params: dict[str, set[object]] = {}
        self.runs = 0
        self.kinds = kinds  # Parquet only: CSV needs just the names
        self.timestamps_parse = True

    def add(self, run: Run) -> None:
        self.runs += 1
        metrics = self.metrics
        for name in run.metrics:
            if name not in metrics:
                metrics[name] = None
        params = self.params
        for name, value in flat_params(run).items():
            kinds = params.get(name)
            if kinds is None:
                kinds = params[name] = set()
            if self.kinds:
                kinds.add(_kind(value))
        if self.kinds and self.timestamps_parse and _utc(run.timestamp) is None:
            self.timestamps_parse = False

    def metric_columns(self) -> list[str]:
        return [column_name("metrics", m) for m in self.metrics]

    def names(self) -> list[str]:
        return [*FIXED_COLUMNS, *self.metric_columns(), *self.params]


def _utc(stamp: str) -> _dt.datetime | None:
    """``stamp`` as an aware UTC datetime (a naive one is taken as UTC), or None if it is not ISO 8601."""
    text = stamp[:-1] + "+00:00" if stamp.endswith(("Z", "z")) else stamp
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=_dt.timezone.utc)
    return moment.astimezone(_dt.timezone.utc)


def _progress_runs(runs: Iterable[Run], progress: Progress | None, size: int, passes: tuple[int, int],
                   ) -> Iterator[Run]:
    """Pass the runs through, reporting the position in pass ``passes[0]`` of ``passes[1]``."""
    if progress is None or size <= 0:
        yield from runs
        return
    done, total = passes[0] * size, passes[1] * size
    for count, run in enumerate(runs, 1):
        if count % _PROGRESS_EVERY == 0 and run.offset >= 0:
            progress(done + min(run.offset, size), total)
        yield run
    progress(done + size, total)


def _discover(source: RunSource, progress: Progress | None, size: int, *, kinds: bool = False) -> _Columns:
    columns = _Columns(kinds=kinds)
    for run in _progress_runs(source(), progress, size, (0, 2)):
        columns.add(run)
    return columns


def _second_pass(source: RunSource, columns: _Columns, progress: Progress | None, size: int) -> Iterator[Run]:
    return _progress_runs(itertools.islice(source(), columns.runs), progress, size, (1, 2))


# -- writers ------------------------------------------------------------------------------------


def write_jsonl(runs: Iterable[Run], out: IO[bytes], *, progress: Progress | None = None, size: int = 0) -> int:
    """Write each run as stored, one JSON object per line; return how many runs were written."""
    count = 0
    from exptrack.store import codec  # imported when used: the CLI loads this module for FORMATS

    dumps = codec.dumps
    for run in _progress_runs(runs, progress, size, (0, 1)):
        out.write(dumps(run.to_dict()) + b"\n")
        count += 1
    return count


def _csv_cell(value: object) -> object:
    kind = type(value)
    if kind is str or kind is int:
        return value
    if kind is float:
        if value - value == 0:  # type: ignore[operator]
            return value  # the csv module writes repr(): the shortest text that reads back exactly
        if value != value:
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"  # type: ignore[operator]
    if value is None:
        return ""
    if kind is bool:
        return "true" if value else "false"
    return _json_text(value)  # lists, empty mappings: JSON text


def _json_text(value: object) -> str:
    from exptrack.store import codec  # imported when used: the CLI loads this module for FORMATS

    return codec.dumps(value).decode()


def csv_tags(tags: Iterable[str]) -> str:
    """Tags as one CSV cell: a JSON list, so ``["a,b","c"]`` and ``["a","b,c"]`` stay apart."""
    return _json_text(list(tags))


def write_csv(source: RunSource, out: IO[str], *, progress: Progress | None = None, size: int = 0) -> int:
    """Write a header and one flat row per run (two passes over ``source``); return the row count."""
    columns = _discover(source, progress, size)
    names = columns.names()
    metric_names = list(columns.metrics)
    param_names = list(columns.params)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    count = 0
    cell = _csv_cell
    for run in _second_pass(source, columns, progress, size):
        metrics = run.metrics
        params = flat_params(run)
        writer.writerow([
            run.run_id, run.timestamp, run.status, csv_tags(run.tags), run.name, run.experiment,
            _note(run) or "",
            *(cell(metrics.get(m)) for m in metric_names),
            *(cell(params.get(p)) for p in param_names),
        ])
        count += 1
    return count


def _scalar_kind(kinds: set[object] | frozenset[object]) -> str:
    """The Arrow type of scalars of these Python types ("" when they share none)."""
    kinds = kinds - {type(None)}
    if not kinds:
        return "string"
    if kinds == {bool}:
        return "bool"
    if kinds <= {int, float}:
        return "float64" if float in kinds else "int64"
    if kinds == {str}:
        return "string"
    return ""


def _parquet_kind(kinds: set[object]) -> str:
    """The Arrow type of a param column: one kind of scalar keeps its type, lists of one kind of
    scalar are a list type, anything else is text (JSON for lists and mappings)."""
    lists = [k for k in kinds if type(k) is tuple]
    if lists and len(lists) == len(kinds - {type(None)}):
        element = _scalar_kind(frozenset().union(*(k[1] for k in lists)))
        return f"list<{element}>" if element else "string"
    if lists:
        return "string"
    return _scalar_kind(kinds) or "string"


def _parquet_value(value: object, kind: str) -> object:
    if value is None:
        return None
    if kind == "int64" and not -(2**63) <= value < 2**63:  # type: ignore[operator]
        return None  # params may hold up to 2**64 - 1; beyond int64 there is no faithful cell
    if kind == "list<int64>" and not all(-(2**63) <= v < 2**63 for v in value if v is not None):  # type: ignore[attr-defined]
        return None
    if kind == "string" and type(value) is not str:
        return str(_csv_cell(value))  # numbers and booleans as CSV spells them, the rest as JSON
    return value


def write_parquet(source: RunSource, out: str | IO[bytes], *, progress: Progress | None = None,
                  size: int = 0) -> int:
    """Write one flat row per run to a Parquet file (two passes); return the row count.

    Metrics are ``float64`` (NaN and infinities kept), tags a list of strings, a param column keeps
    its type when every run stores the same kind of scalar and is text (JSON for lists) otherwise.

    Raises:
        MissingDependencyError: pyarrow is not installed (``pip install 'exptrack[parquet]'``).
    """
    pa = _require("pyarrow", "Parquet export", "parquet")
    pq = _require("pyarrow.parquet", "Parquet export", "parquet")
    columns = _discover(source, progress, size, kinds=True)
    metric_names = list(columns.metrics)
    metric_columns = columns.metric_columns()
    param_kinds = {name: _parquet_kind(kinds) for name, kinds in columns.params.items()}
    arrow_types = {"bool": pa.bool_(), "int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}
    arrow_types.update({f"list<{k}>": pa.list_(t) for k, t in list(arrow_types.items())})
    # a store written by exptrack always has UTC timestamps; a hand-made one may not parse: text then
    stamps = columns.timestamps_parse
    fields = [
        pa.field("run_id", pa.string()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC") if stamps else pa.string()),
        pa.field("status", pa.string()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("name", pa.string()),
        pa.field("experiment", pa.string()),
        pa.field("note", pa.string()),
        *(pa.field(c, pa.float64()) for c in metric_columns),
        *(pa.field(name, arrow_types[kind]) for name, kind in param_kinds.items()),
    ]
    schema = pa.schema(fields)
    count = 0
    with pq.ParquetWriter(out, schema) as writer:
        batch: list[Run] = []

        def flush() -> None:
            data: dict[str, list[object]] = {
                "run_id": [r.run_id for r in batch],
                "timestamp": [_utc(r.timestamp) if stamps else r.timestamp for r in batch],
                "status": [r.status for r in batch],
                "tags": [list(r.tags) for r in batch],
                "name": [r.name for r in batch],
                "experiment": [r.experiment for r in batch],
                "note": [_note(r) for r in batch],
            }
            for m, c in zip(metric_names, metric_columns):
                data[c] = [_float_or_none(r.metrics.get(m)) for r in batch]
            flat = [flat_params(r) for r in batch]
            for name, kind in param_kinds.items():
                data[name] = [_parquet_value(p.get(name), kind) for p in flat]
            writer.write_table(pa.Table.from_pydict(data, schema=schema))
            batch.clear()

        for run in _second_pass(source, columns, progress, size):
            batch.append(run)
            count += 1
            if len(batch) >= ROW_GROUP:
                flush()
        if batch or not count:
            flush()
    return count


def _float_or_none(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def export_runs(source: RunSource, fmt: ExportFormat, out: IO[bytes], *, progress: Progress | None = None,
                size: int = 0) -> int:
    """Write the runs of ``source`` to the binary stream ``out`` in ``fmt``; return the run count.

    Args:
        source: called once per pass; each call returns the runs to export, in log order.
        fmt: ``csv``, ``jsonl`` or ``parquet``.
        out: a binary stream (a file, ``sys.stdout.buffer``).
        progress: called now and then with ``(bytes_done, bytes_total)``.
        size: the log's size in bytes, for ``progress``.

    Raises:
        MissingDependencyError: Parquet was asked for and pyarrow is not installed.
        ValueError: an unknown format.
    """
    if fmt == "jsonl":
        return write_jsonl(source(), out, progress=progress, size=size)
    if fmt == "csv":
        text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=False)
        try:
            return write_csv(source, text, progress=progress, size=size)
        finally:
            text.flush()
            text.detach()  # the caller owns ``out``
    if fmt == "parquet":
        return write_parquet(source, out, progress=progress, size=size)
    raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _note(run: Run) -> str | None:
    """The run's note (set by ``set_note``; merged by the reader), or None."""
    note = run.extra.get("note")
    return note if type(note) is str else None


def to_pandas(runs: Iterable[Run]) -> pd.DataFrame:
    """One row per run with the flat columns of :func:`write_csv`; metrics are ``float64``.

    Raises:
        MissingDependencyError: pandas is not installed (``pip install 'exptrack[pandas]'``).
    """
    pandas = _require("pandas", "to_pandas()", "pandas")
    fixed: dict[str, list[object]] = {name: [] for name in FIXED_COLUMNS}
    metrics: dict[str, list[float]] = {}
    params: dict[str, list[object]] = {}
    nan = math.nan
    for count, run in enumerate(runs):
        fixed["run_id"].append(run.run_id)
        fixed["timestamp"].append(run.timestamp)
        fixed["status"].append(run.status)
        fixed["tags"].append(list(run.tags))
        fixed["name"].append(run.name)
        fixed["experiment"].append(run.experiment)
        fixed["note"].append(_note(run))
        for name, value in run.metrics.items():
            column = metrics.get(name)
            if column is None:
                column = metrics[name] = [nan] * count  # a metric first seen now: absent before
            column.append(float(value))
        for name, value in flat_params(run).items():
            column_p = params.get(name)
            if column_p is None:
                column_p = params[name] = [None] * count
            column_p.append(value)
        for column in metrics.values():
            if len(column) <= count:
                column.append(nan)
        for column_p in params.values():
            if len(column_p) <= count:
                column_p.append(None)
    data: dict[str, object] = dict(fixed)
    names = [column_name("metrics", m) for m in metrics]
    data.update((c, pandas.Series(values, dtype="float64")) for c, values in zip(names, metrics.values()))
    data.update(params)
    return pandas.DataFrame(data, columns=[*FIXED_COLUMNS, *names, *params])
