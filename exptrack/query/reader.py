"""Reading a store: runs, lookups and best / top / summary, through the index where it can, the log where it must."""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Concatenate, NoReturn, ParamSpec, TypeVar

from exptrack.errors import (
    CorruptStoreError,
    InvalidRecordError,
    NoRunsError,
    RunNotFoundError,
    StorageError,
    UnknownMetricError,
)
from exptrack.query.directions import resolve_mode
from exptrack.query.ranking import (
    StatusScope,
    describe_scope,
    in_scope,
    status_scope,
    summarize,
    summary_dict,
    top_runs,
)
from exptrack.store import RUNS_FILE
from exptrack.store.edits import Edit, Overlay
from exptrack.store.index.groups import GroupKey, GroupSet
from exptrack.store.index.identity import IndexStats, StaleIndexError
from exptrack.store.index.reducers import Mode
from exptrack.store.names import DEFAULT_EXPERIMENT, check_name
from exptrack.store.record import CorruptLine, Run
from exptrack.store.segment import TOP_K

if TYPE_CHECKING:
    import pandas as pd

    from exptrack.query.column_answers import ColumnAnswers
    from exptrack.query.sort import SortKey
    from exptrack.query.sql import Rows
    from exptrack.store.index.log_index import LogIndex
    from exptrack.store.scan import LogScan

logger = logging.getLogger(__name__)


Where = str | Callable[[Mapping[str, Any]], bool] | None

_P = ParamSpec("_P")
_T = TypeVar("_T")
_R = TypeVar("_R", bound="StoreReader")


def _serialized(method: Callable[Concatenate[_R, _P], _T]) -> Callable[Concatenate[_R, _P], _T]:
    """Run ``method`` holding the reader's lock: the index is refreshed in place, so two threads
    sharing one tracker must not refresh it (or read it mid-refresh) at the same time."""

    def locked(self: _R, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        with self._lock:
            return method(self, *args, **kwargs)

    functools.update_wrapper(locked, method)
    return locked


def _compile(where: Where) -> Callable[[Mapping[str, Any]], bool] | None:
    if where is None or callable(where):
        return where
    from exptrack.query.where import compile_where

    return compile_where(where)


def _only_match(run_id: str, matches: Sequence[Run]) -> Run:
    """The one run a prefix names, or the error that says none or several do."""
    if len(matches) == 1:
        return matches[0]
    if matches:
        ids = ", ".join(r.run_id for r in matches[:5])
        raise RunNotFoundError(run_id, f"run id prefix {run_id!r} is ambiguous: {ids}")
    raise RunNotFoundError(run_id)


# The index and the parallel scanner pull in multiprocessing, mmap and the fast reader: they are
# imported on the first query, so `import exptrack` and `exptrack log` stay cheap.
def _log_index() -> type[LogIndex]:
    from exptrack.store.index.log_index import LogIndex

    return LogIndex


def _parallel() -> ModuleType:
    from exptrack.store import parallel

    return parallel


def _name_offsets(path: str, name: str) -> list[int]:
    """Starts of the lines holding ``"name":<name>`` (as the codec writes it), by a C search."""
    import mmap

    from exptrack.store import codec

    needle = b'"name":' + codec.dumps(name)
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                return []
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
                found: list[int] = []
                at = view.find(needle)
                while at >= 0 and len(found) < 1000:
                    found.append(view.rfind(b"\n", 0, at) + 1)
                    at = view.find(needle, at + 1)
                return found
    except (OSError, ValueError):
        return []


def _read_run_at(path: str, offset: int) -> Run:
    from exptrack.store.index.idmap import read_run_at

    return read_run_at(path, offset)


class StoreReader:
    """The read side of a store: every query, answered from the index when it is usable and from the log otherwise.

    Reading never takes the writers' lock and never writes the log; the only files it may write are
    the disposable index under ``.index/`` and the store's ``log.txt``.  ``ExperimentTracker`` adds the
    write side (appends, live runs, artifacts) on top."""

    def __init__(self, path: str | os.PathLike[str] = "experiments", *, strict: bool = False,
                 experiment: str | None = None) -> None:
        # Absolute now: a program that changes directory later (Hydra does) keeps its store.
        self.store = Path(os.path.abspath(path))
        self.runs_path = self.store / RUNS_FILE
        self.strict = strict
        self.experiment = check_name(experiment, "experiment") if experiment is not None else None
        self._log_extra = {"store": os.path.abspath(self.store)}
        self._reported: set[int] = set()
        self.last_corrupt: list[CorruptLine] = []
        self._index: LogIndex | None = None
        self._lock = threading.RLock()
        self._merge: tuple[Overlay, frozenset[int]] = (Overlay(), frozenset())
        self._columns: ColumnAnswers | None = None
        self.last_unchecked = 0  # valid runs without a checksum seen by the last complete scan

    def scan(self, *, final: bool | None = None) -> Iterator[Run | Edit | CorruptLine]:
        """Every line of the log as a run or a ``CorruptLine``, duplicates reported (first wins).

        ``final`` decides whether an unterminated last line is reported as torn (True) or left
        pending (False); by default it is torn only when no writer holds the lock.
        """
        with self._lock:  # a snapshot of the index: another thread may refresh it meanwhile
            index = self._indexed()
            if index is not None:
                # The index already knows which lines repeat an earlier run id: the scan needs no
                # set of every id (memory stays constant), and it reads the snapshot the index saw.
                duplicates = {c.offset: c for c in index.corrupt if c.reason.startswith("duplicate run_id")}
                size_seen, unchecked = index.size_seen, index.unchecked
                self._merge = (index.overlay, frozenset(index.superseded))
        if index is None:
            yield from self._scan_without_index(final)
            return
        from exptrack.store.scan import LogScan

        scan = LogScan(str(self.runs_path), end=size_seen)
        for item in scan:
            if duplicates and type(item) is Run and item.offset in duplicates:
                yield duplicates[item.offset]
            else:
                yield item
        self.last_unchecked = unchecked
        if scan.pending and (final if final is not None else self._tail_is_stable(scan)):
            yield CorruptLine(scan.lines + 1, scan.end_offset, scan.pending, "torn tail (unterminated last line)")

    def _scan_without_index(self, final: bool | None) -> Iterator[Run | Edit | CorruptLine]:
        """The reader of last resort (the index failed): duplicates found with a set of ids.

        It also folds the edits and resumes it passes into ``self._merge`` as it goes; ``runs``
        reads them from a first pass (``_merge_state``) when there is no index.
        """
        from exptrack.store.edits import Overlay
        from exptrack.store.scan import LogScan, line_length

        scan = LogScan(str(self.runs_path))
        seen: dict[str, int] = {}
        latest: dict[str, int] = {}
        overlay, superseded = Overlay(), set()
        for item in scan:
            if type(item) is Run:
                first = seen.setdefault(item.run_id, scan.lines)
                if first == scan.lines or "resumed" in item.extra:
                    if item.run_id in latest:
                        superseded.add(latest[item.run_id])
                    latest[item.run_id] = item.offset
                    yield item
                    continue
                yield CorruptLine(
                    scan.lines,
                    item.offset,
                    line_length(scan.path, item.offset),
                    f"duplicate run_id {item.run_id} (first at line {first})",
                )
                continue
            if type(item) is Edit:
                overlay.add(item)
            yield item
        self.last_unchecked = scan.unchecked
        self._merge = (overlay, frozenset(superseded))
        if scan.pending and (final if final is not None else self._tail_is_stable(scan)):
            yield CorruptLine(scan.lines + 1, scan.end_offset, scan.pending, "torn tail (unterminated last line)")

    def _merge_state(self) -> tuple[Overlay, frozenset[int]]:
        """The edits and superseded records of the log as the index (or, without one, a pass) sees it."""
        with self._lock:
            index = self._indexed()
            if index is not None:
                return index.overlay, frozenset(index.superseded)
        for _ in self._scan_without_index(False):
            pass
        return self._merge

    def _scoped_groups(self, groups: GroupSet) -> GroupSet:
        """The index's groups of the reader's experiment (all of them when it has none): per
        experiment answers come from the same per-group reducers, as fast as the whole store's."""
        if self.experiment is None:
            return groups
        view = GroupSet(groups.top_k)
        view.groups = {key: group for key, group in groups.groups.items() if key[0] == self.experiment}
        return view

    def _scope(self, where: Where) -> Where:
        """``where`` limited to the reader's experiment (when it has one)."""
        experiment = self.experiment
        if experiment is None:
            return where
        predicate = _compile(where)
        if predicate is None:
            return lambda run: (run.get("experiment") or DEFAULT_EXPERIMENT) == experiment
        return lambda run: (run.get("experiment") or DEFAULT_EXPERIMENT) == experiment and predicate(run)

    def runs(self, *, where: Where = None, include_deleted: bool = False) -> Iterator[Run]:
        """Valid runs in log order, as the edits left them (see ``store.edits``); corrupt lines are
        skipped, logged and kept in ``last_corrupt``.  Deleted runs only with ``include_deleted``;
        a resumed run appears once, with its latest record, where that record is.

        Raises:
            FilterSyntaxError: ``where`` does not parse.
            QueryError: ``where`` compares a field that no run in the store has.
        """
        return self._runs(where, include_deleted, scoped=True)

    def _runs(self, where: Where, include_deleted: bool, *, scoped: bool) -> Iterator[Run]:
        predicate = self._predicate(where)
        if predicate is not None:
            fast = self._columns_runs(predicate, include_deleted, scoped)
            if fast is not None:
                yield from fast
                return
        if scoped:
            predicate = _compile(self._scope(predicate))
        corrupt: list[CorruptLine] = []
        self.last_corrupt = corrupt
        overlay, superseded = self._merge_state()
        for item in self.scan():
            if isinstance(item, Run):
                if superseded and item.offset in superseded:
                    continue
                run = overlay.apply(item) if overlay else item
                if not include_deleted and overlay and overlay.is_deleted(run.run_id):
                    continue
                if predicate is None or predicate(run):
                    yield run
            elif isinstance(item, CorruptLine):
                self._report(item)
                corrupt.append(item)

    def recent_runs(self, n: int, *, where: Where = None, include_deleted: bool = False) -> list[Run]:
        """The last ``n`` runs (of those ``where`` accepts), oldest first, read from the END of the log.

        The index says which lines are corrupt or repeat an earlier run id (first wins), so the
        lines are read backwards only until ``n`` runs are found: the cost follows ``n``, not the
        store's size.  Each line is checked (checksum, record) as every reader checks it.  Without
        a usable index, the whole log is read forwards.

        Raises:
            InvalidRecordError: ``n`` is below 1.
        """
        if n < 1:
            raise InvalidRecordError(f"n must be at least 1, not {n}", "n")
        filtered = self._predicate(where)
        if filtered is not None:
            fast = self._columns_runs(filtered, include_deleted, True, last=n)
            if fast is not None:
                return fast
        predicate = _compile(self._scope(filtered))
        with self._lock:
            index = self._indexed()
            if index is not None:
                skip = {c.offset for c in index.corrupt}
                skip.update(index.superseded if include_deleted else index.hidden)
                watermark = index.watermark
                overlay = index.overlay
        if index is None:
            return self._last_forward(n, where, include_deleted)
        from exptrack.store.scan import _parse
        from exptrack.store.tail import lines_before

        found: list[Run] = []
        for offset, line in lines_before(str(self.runs_path), watermark):
            if offset in skip:
                continue
            item = None if line is None else _parse(memoryview(line), offset, 0)
            if type(item) is not tuple:
                # the index took this line for a run: the log changed under it (rewritten)
                self._index_failed(StaleIndexError(f"no valid run at byte {offset}"))
                return self._last_forward(n, where, include_deleted)
            if isinstance(item[0], Edit):
                continue
            run = overlay.apply(item[0])
            if predicate is None or predicate(run):
                found.append(run)
                if len(found) == n:
                    break
        found.reverse()
        return found

    def _last_forward(self, n: int, where: Where, include_deleted: bool = False) -> list[Run]:
        """The last ``n`` runs by a pass over the whole log (no usable index)."""
        import collections

        return list(collections.deque(self.runs(where=where, include_deleted=include_deleted), maxlen=n))

    def count_runs(self, *, where: Where = None) -> int:
        """How many valid runs the store holds, or match ``where`` (from the index and its columns:
        no pass over the log when warm)."""
        with self._lock:
            index = self._indexed()
            if index is not None and where is None:
                return self._scoped_groups(index.groups).runs()
        predicate = self._predicate(where)
        if predicate is not None:
            with self._lock:
                found = self._column_answers()
                if found is not None:
                    index, columns, read = found
                    try:
                        offsets = columns.matching_offsets(index, predicate, self.experiment, False, read)
                    except StaleIndexError as exc:
                        self._index_failed(exc)
                        offsets = None
                    if offsets is not None:
                        return len(offsets)
        return sum(1 for _ in self.runs(where=where))

    def sorted_runs(self, sort: str | Sequence[SortKey], *, where: Where = None, limit: int | None = None,
                    offset: int = 0, include_deleted: bool = False) -> tuple[list[Run], int]:
        """The runs ``where`` accepts in ``sort`` order (``"metrics.accuracy desc, params.lr"``:
        missing values and NaN last, ties in log order), ``offset`` and ``limit`` applied, and how
        many runs matched.  Sorted from the columnar index when its columns hold every key.

        Raises:
            QueryError: the sort spec is invalid or names a field no run has; a bad filter.
        """
        from exptrack.query.parser import _field_segments
        from exptrack.query.sort import first_sorted, parse_sort, sort_records

        keys = parse_sort(sort) if isinstance(sort, str) else list(sort)
        self.check_fields(key.field for key in keys)
        predicate = self._predicate(where)
        stop = None if limit is None else offset + limit
        with self._lock:
            found = self._column_answers()
            if found is not None:
                index, columns, read = found
                specs = [(_field_segments(key.field), key.descending) for key in keys]
                try:
                    ordered = columns.sorted_rows(index, predicate, specs, self.experiment, include_deleted, read)
                    if ordered is not None:
                        chosen = ordered[0][offset:stop]
                        self.last_corrupt = self._indexed_corrupt(index)
                        return [read(at) for at in chosen], ordered[1]
                except StaleIndexError as exc:
                    self._index_failed(exc)
        total = 0

        def counted() -> Iterator[Run]:
            nonlocal total
            for run in self.runs(where=predicate, include_deleted=include_deleted):
                total += 1
                yield run

        selected = first_sorted(counted(), keys, stop) if stop is not None else sort_records(counted(), keys)
        return selected[offset:], total

    @_serialized
    def get_run(self, run_id: str, *, include_deleted: bool = False) -> Run:
        """The run with this id, the only run whose id starts with it, or the only run with this name.

        Raises:
            RunNotFoundError: no run matches, a prefix or name matches several, or the run is
                deleted (unless ``include_deleted``) or in another experiment than the reader's.
        """
        if not run_id:
            raise RunNotFoundError(run_id, "an empty run id matches nothing")
        try:
            run = self._by_id(run_id)
        except RunNotFoundError as exc:
            if "ambiguous" in str(exc):
                raise
            named = self._by_name(run_id, include_deleted)
            if not named:
                raise
            if len(named) > 1:
                ids = ", ".join(r.run_id for r in named[:5])
                raise RunNotFoundError(run_id, f"run name {run_id!r} is ambiguous: {ids}; use an id") from None
            return named[0]
        if not include_deleted and run.extra.get("deleted") is True:
            raise RunNotFoundError(run_id, f"run {run.run_id} is deleted (`exptrack restore {run.run_id}` "
                                           "brings it back)")
        if self.experiment is not None and run.experiment != self.experiment:
            raise RunNotFoundError(run_id, f"run {run.run_id} is in experiment {run.experiment!r}, "
                                           f"not {self.experiment!r}")
        return run

    def _by_id(self, run_id: str) -> Run:
        overlay = self._merge_state()[0]
        index = self._indexed()
        if index is not None:
            try:
                return overlay.apply(self._get_indexed(index, run_id))
            except StaleIndexError as exc:
                self._index_failed(exc)
        matches: list[Run] = []
        for run in self.runs(include_deleted=True):
            if run.run_id == run_id:
                return run
            if run.run_id.startswith(run_id):
                matches.append(run)
        return _only_match(run_id, matches)

    def _by_name(self, name: str, include_deleted: bool) -> list[Run]:
        """Runs (in scope) whose merged name is ``name``: a C search of the log for the name's
        bytes, plus the runs a rename named so; every candidate is read and checked."""
        from exptrack.store.names import check_name as valid

        try:
            valid(name)
        except InvalidRecordError:
            return []
        overlay, superseded = self._merge_state()
        candidates: dict[str, Run] = {}
        ids = set(overlay.renamed(name))
        for offset in _name_offsets(str(self.runs_path), name):
            try:
                record = _read_run_at(str(self.runs_path), offset)
            except StaleIndexError:
                continue
            if offset not in superseded:
                ids.add(record.run_id)
        for run_id in ids:
            try:
                run = self._by_id(run_id)
            except RunNotFoundError:
                continue
            if run.run_id != run_id or run.name != name:
                continue
            if not include_deleted and run.extra.get("deleted") is True:
                continue
            if self.experiment is not None and run.experiment != self.experiment:
                continue
            candidates[run.run_id] = run
        return sorted(candidates.values(), key=lambda run: run.offset)

    def experiments(self) -> list[dict[str, Any]]:
        """Every experiment of the store (whatever the reader's own), oldest first: ``experiment``,
        ``runs``, ``finished`` (runs with that status) and ``last_activity`` (latest run timestamp).
        Deleted runs do not count; an experiment whose runs are all deleted is not listed."""
        found: dict[str, dict[str, Any]] = {}
        for run in self._runs(None, False, scoped=False):
            entry = found.get(run.experiment)
            if entry is None:
                entry = found[run.experiment] = {"experiment": run.experiment, "runs": 0, "finished": 0,
                                                 "last_activity": run.timestamp}
            entry["runs"] += 1
            entry["finished"] += run.status == "finished"
            entry["last_activity"] = max(entry["last_activity"], run.timestamp)
        return list(found.values())

    def _known_ids(self, run_ids: Sequence[str]) -> set[str]:
        """Which of ``run_ids`` are in the log (as a run record, deleted or not)."""
        wanted = set(run_ids)
        index = self._indexed()
        if index is not None:
            try:
                index.verify("hash", "off")  # an absence is only as good as the column
                found = set()
                for offset in index.suspect_offsets(list(wanted)):
                    run = _read_run_at(str(self.runs_path), offset)
                    if run.run_id in wanted:
                        found.add(run.run_id)
                return found
            except StaleIndexError as exc:
                self._index_failed(exc)
        return {item.run_id for item in self.scan() if type(item) is Run and item.run_id in wanted}

    def best_run(self, metric: str, mode: str | None = None, *, where: Where = None,
                 status: StatusScope = "finished") -> Run:
        """The run with the best finite value of ``metric`` (earliest run wins a tie).

        Args:
            metric: the metric to rank by.
            mode: ``"max"`` or ``"min"``; by default the direction the runs in scope declared
                (``log_run(..., directions={metric: "min"})``), else the one its name implies.
            where: a filter expression (or a predicate on records).
            status: only runs of this status compete: ``"finished"`` (default), a status name, a
                list of them, or ``None`` / ``"any"`` for every run.

        Raises:
            QueryError: ``mode`` is neither given, declared nor inferable; the runs in scope
                declare both directions; an unknown status.
            NoRunsError / UnknownMetricError (both ``LookupError``): nothing to rank; an unknown
                metric names the closest known ones.
        """
        return self.top_runs(metric, 1, mode=mode, where=where, status=status)[0]

    @_serialized
    def top_runs(self, metric: str, k: int = 10, *, mode: str | None = None, where: Where = None,
                 status: StatusScope = "finished") -> list[Run]:
        """The ``k`` best runs by ``metric``, best first; see :meth:`best_run`."""
        scope = status_scope(status)
        if k < 1:
            raise InvalidRecordError(f"k must be at least 1, not {k}", "k")
        if where is not None:
            fast = self._columns_top(metric, k, mode, where, scope)
            if fast is not None:
                return fast
        if where is not None and k <= TOP_K:
            index = self._filtered(where)  # the filtered runs' own index: one parallel scan
        elif where is None:
            index = self._indexed()
        else:
            index = None
        chosen: Mode | None = None
        if index is not None:
            groups = self._scoped_groups(index.groups)
            keys = groups.select(statuses=scope)
            chosen = self._ranking_mode(groups, keys, metric, mode, where)
            entries = index.top(metric, chosen, k, keys)
            if entries is not None:
                try:
                    ranked = [index.overlay.apply(self._read_indexed(offset, run_id)) for _, offset, run_id in entries]
                except StaleIndexError as exc:
                    self._index_failed(exc)
                else:
                    if not ranked:
                        self._raise_nothing_to_rank(groups, keys, metric, scope, where)
                    return ranked
        if chosen is None:  # no usable index: one pass for the names and directions
            summary = summarize(self.runs(where=where))
            keys = summary.groups.select(statuses=scope)
            chosen = self._ranking_mode(summary.groups, keys, metric, mode, where)
        result = top_runs(in_scope(self.runs(where=where), scope), metric, k, chosen)
        if not result:
            summary = summarize(self.runs(where=where))
            self._raise_nothing_to_rank(summary.groups, summary.groups.select(statuses=scope), metric, scope, where)
        return result

    @_serialized
    def summary(self, *, where: Where = None, status: StatusScope = "finished") -> dict[str, Any]:
        """Total runs, corrupt lines, runs per status (every run) and, over the runs of ``status``
        (``"finished"`` by default; ``None`` / ``"any"`` for all), per-metric
        count/min/max/mean/std and the best run; ``warnings`` names the metrics whose best is not
        shown because their direction is unknown."""
        scope = status_scope(status)
        full = self._indexed()
        groups = self._columns_groups(where) if where is not None and full is not None else None
        if full is not None and groups is not None:
            corrupt = self._indexed_corrupt(full)
            self.last_corrupt = corrupt
            result = summary_dict(groups, scope, len(corrupt))
            result["unchecked_runs"] = full.unchecked
            return result
        index = full if where is None else self._filtered(where)
        if full is not None and index is not None:
            corrupt = self._indexed_corrupt(full)
            self.last_corrupt = corrupt
            result = summary_dict(self._scoped_groups(index.groups), scope, len(corrupt))
            result["unchecked_runs"] = full.unchecked
            return result
        summary = summarize(self.runs(where=where))
        result = summary_dict(summary.groups, scope, len(self.last_corrupt))
        result["unchecked_runs"] = self.last_unchecked
        return result

    @_serialized
    def corrupt_lines(self) -> list[CorruptLine]:
        """Every line of the log that is not a valid run, with line number, offset and reason."""
        index = self._indexed()
        if index is not None:
            return self._indexed_corrupt(index)
        return [item for item in self.scan() if type(item) is CorruptLine]

    def to_pandas(self, where: Where = None) -> pd.DataFrame:
        """The runs (those matching ``where``) as a pandas DataFrame, one row per run.

        Columns: ``run_id``, ``timestamp``, ``status``, ``tags``, ``name``, ``experiment``,
        ``note``, then ``metrics.<name>``
        (``float64``; NaN where a run lacks the metric) and ``params.<name>`` (nested params
        flattened to dotted names), as ``exptrack export --format csv`` writes them.

        Raises:
            MissingDependencyError (an ``ImportError``): pandas is not installed.
        """
        from exptrack.query.export import to_pandas

        return to_pandas(self.runs(where=where))

    def sql(self, query: str) -> Rows:
        """Answer a DuckDB SQL ``query`` over a ``runs`` view of this store's runs.

        The view holds the merged, non-deleted runs with typed columns (``run_id``, ``name``,
        ``experiment``, ``status``, ``timestamp``, ``params`` and ``metrics`` structs, ``tags``);
        see :mod:`exptrack.query.sql`.  Rows are tuples that also answer ``row["column"]``.

        Raises:
            QueryError: the SQL does not parse or cannot run.
            MissingDependencyError (an ``ImportError``): DuckDB is not installed (``exptrack[sql]``).
        """
        from exptrack.query.sql import run_sql

        return run_sql(self.runs(), query)

    @_serialized
    def refresh_index(self, progress: Callable[[int, int], None] | None = None) -> IndexStats:
        """Bring the index (``<store>/.index``) up to date with the log and describe it.

        Queries do this themselves; calling it first lets a caller show progress for a long
        first read: ``progress(bytes_done, bytes_total)`` is called as the log is read.
        """
        index = self._indexed(progress)
        if index is None:
            raise StorageError(0, "index", self.store / ".index")
        return index.stats()

    @_serialized
    def index_stats(self) -> IndexStats:
        """What the index holds now (watermark, runs, corrupt lines...), without refreshing it."""
        if self._index is None:
            self._index = _log_index()(self.store, self.runs_path)
        return self._index.stats()

    def _indexed(self, progress: Callable[[int, int], None] | None = None) -> LogIndex | None:
        """The index, refreshed; None if it cannot be used (queries then scan the log)."""
        index = self._index
        if index is None:
            index = self._index = _log_index()(self.store, self.runs_path)
        try:
            new = index.refresh(progress)
        except (OSError, StaleIndexError) as exc:
            logger.warning("cannot use the index of %s (%s); scanning the log", self.runs_path, exc,
                           extra=self._log_extra)
            self._index = None
            return None
        for item in new:
            self._report(item)
        if self.strict and index.corrupt:
            raise CorruptStoreError(f"{self.runs_path}: {index.corrupt[0]}")
        return index

    def _filtered(self, where: Where) -> LogIndex | None:
        """best / top / summary of the runs ``where`` accepts, read on every core.

        Every line up to the index's watermark is decoded and tested (a filter may read any
        field); duplicates are the index's.  None when the index is unusable.
        """
        predicate = self._predicate(where)
        index = self._indexed()
        if index is None or predicate is None:
            return index
        exclude = {c.offset: c.reason for c in index.corrupt if c.reason.startswith("duplicate run_id")}
        exclude.update(dict.fromkeys(index.hidden, ""))  # deleted runs and superseded records: silently out
        overlay = index.overlay
        if overlay:  # the filter sees each run as the edits left it
            raw = predicate
            predicate = lambda run: raw(overlay.apply(run))  # type: ignore[arg-type]  # noqa: E731 - a Run here
        segment = _parallel().scan_parallel(str(self.runs_path), 0, index.watermark, exclude=exclude,
                                         predicate=predicate)
        view = _log_index().of_segment(segment)
        view.overlay = overlay
        return view

    # -- the columnar index (query.column_answers): None from these means "read the log" ----------

    def _column_answers(self) -> tuple[LogIndex, ColumnAnswers, Callable[[int], Run]] | None:
        index = self._indexed()
        if index is None:
            return None
        if self._columns is None:
            from exptrack.query.column_answers import ColumnAnswers

            self._columns = ColumnAnswers(str(self.runs_path))
        overlay, path = index.overlay, str(self.runs_path)
        return index, self._columns, lambda offset: overlay.apply(_read_run_at(path, offset))

    def _columns_top(self, metric: str, k: int, mode: str | None, where: Where,
                     scope: frozenset[str] | None) -> list[Run] | None:
        predicate = self._predicate(where)
        found = self._column_answers() if predicate is not None else None
        if found is None or predicate is None:
            return None
        index, columns, read = found
        try:
            return columns.top(index, predicate, metric, mode, k, scope, self.experiment, read)
        except StaleIndexError as exc:
            self._index_failed(exc)
            return None

    def _columns_groups(self, where: Where) -> GroupSet | None:
        predicate = self._predicate(where)
        found = self._column_answers() if predicate is not None else None
        if found is None or predicate is None:
            return None
        index, columns, read = found
        try:
            return columns.summary_groups(index, predicate, self.experiment, read)
        except StaleIndexError as exc:
            self._index_failed(exc)
            return None

    def _columns_runs(self, predicate: Callable[[Mapping[str, Any]], bool], include_deleted: bool,
                      scoped: bool, last: int | None = None) -> list[Run] | None:
        """The runs ``predicate`` accepts (the ``last`` of them), read by offset, when the columns
        decide the filter and the matches are few enough that reading them one by one beats
        reading the log."""
        found = self._column_answers()
        if found is None:
            return None
        index, columns, read = found
        try:
            offsets = columns.matching_offsets(index, predicate, self.experiment if scoped else None,
                                               include_deleted, read)
            if offsets is None or (last is None and len(offsets) > max(1000, index.count // 3)):
                return None
            runs = [read(offset) for offset in (offsets[-last:] if last else offsets)]
        except StaleIndexError as exc:
            self._index_failed(exc)
            return None
        self.last_corrupt = self._indexed_corrupt(index)
        return runs

    def check_fields(self, fields: Iterable[str | tuple[str, ...]]) -> None:
        """Refuse fields (``"metrics.acc"`` or segments) that no run in the store has.

        Answered from the index; a store without runs, or without a usable index, accepts any.

        Raises:
            QueryError: naming the field and the closest known ones.
        """
        index = self._indexed()
        if index is None or not index.runs:
            return
        from exptrack.query.fields import KnownFields
        from exptrack.query.parser import _field_segments

        segs = [field if isinstance(field, tuple) else _field_segments(field) for field in fields]
        KnownFields(index.metric_names(), index.names).check(segs)

    def _predicate(self, where: Where) -> Callable[[Mapping[str, Any]], bool] | None:
        """The compiled filter, its compared fields checked against the store."""
        predicate = _compile(where)
        compared = getattr(predicate, "compared", None)
        if compared:
            self.check_fields(compared)
        return predicate

    def _index_failed(self, exc: Exception) -> None:
        logger.warning("the index of %s disagrees with the log (%s); rebuilding it", self.runs_path, exc,
                       extra=self._log_extra)
        if self._index is not None:
            self._index.invalidate()

    def _indexed_corrupt(self, index: LogIndex) -> list[CorruptLine]:
        corrupt = list(index.corrupt)
        pending = index.size_seen - index.watermark
        if pending > 0 and self._tail_is_stable_at(index.watermark, pending):
            corrupt.append(CorruptLine(index.lines + 1, index.watermark, pending, "torn tail (unterminated last line)"))
            self._report(corrupt[-1])
        return corrupt

    def _read_indexed(self, offset: int, run_id: str) -> Run:
        run = _read_run_at(str(self.runs_path), offset)
        if run.run_id != run_id:
            raise StaleIndexError(f"the line at byte {offset} holds run {run.run_id}, not {run_id}")
        return run

    def _get_indexed(self, index: LogIndex, run_id: str) -> Run:
        found: Run | None = None
        for offset in index.offsets_of(run_id):
            run = _read_run_at(str(self.runs_path), offset)
            if run.run_id == run_id and (found is None or run.offset > found.offset):
                found = run  # the line itself says so; the latest record of a resumed run wins
        if found is not None:
            return found
        # "not found" or a prefix answer rests on the id map being whole: check it once
        index.verify("hash", "off", "pos", "ids")
        latest: dict[str, Run] = {}
        for offset in index.prefix_offsets(run_id, 12):
            run = _read_run_at(str(self.runs_path), offset)
            if not run.run_id.startswith(run_id):
                raise StaleIndexError(f"the id map disagrees with the log for prefix {run_id!r}")
            if run.run_id not in latest or run.offset > latest[run.run_id].offset:
                latest[run.run_id] = run
        return _only_match(run_id, list(latest.values()))

    def _report(self, item: CorruptLine) -> None:
        if self.strict:
            raise CorruptStoreError(f"{self.runs_path}: {item}")
        if item.offset not in self._reported:
            self._reported.add(item.offset)
            logger.warning("skipped corrupt %s in %s", item, self.runs_path, extra=self._log_extra)

    def _tail_is_stable(self, scan: LogScan) -> bool:
        """An unterminated tail is torn, not pending, when no writer holds the lock right now."""
        return self._tail_is_stable_at(scan.end_offset, scan.pending)

    def _tail_is_stable_at(self, end_offset: int, pending: int) -> bool:
        from exptrack.store.fsio import fs

        try:
            fd = os.open(str(self.runs_path) + ".lock", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # no lock file: no exptrack writer yet, but another tool may be writing
            try:
                return os.stat(self.runs_path).st_size == end_offset + pending
            except OSError:
                return False
        try:
            if not fs().try_lock(fd):
                return False
            fs().unlock(fd)
            return os.stat(self.runs_path).st_size == end_offset + pending
        except OSError:
            return False
        finally:
            os.close(fd)

    def _ranking_mode(self, groups: GroupSet, keys: Sequence[GroupKey], metric: str, mode: str | None,
                      where: Where) -> Mode:
        """The direction to rank ``metric`` in; an unknown metric is named before any direction is asked."""
        if metric not in groups.metric_names():
            if not groups.runs():
                raise NoRunsError(f"no runs{' matching the filter' if where else ''} in {self.store}")
            raise UnknownMetricError(metric, sorted(groups.metric_names()))
        return resolve_mode(metric, mode, groups.directions(metric, keys))

    def _raise_nothing_to_rank(self, groups: GroupSet, keys: Sequence[GroupKey], metric: str,
                               scope: frozenset[str] | None, where: Where) -> NoReturn:
        """Why there is no answer: no run of the statuses asked for, or none with a finite value."""
        filtered = " matching the filter" if where else ""
        others = {k: v for k, v in sorted(groups.statuses().items()) if scope is not None and k not in scope}
        hint = ""
        if others:
            counts = ", ".join(f"{v} {k}" for k, v in others.items())
            hint = f" ({counts} run(s) not ranked: pass status='any' or --status any to rank them)"
        if not groups.runs(keys):
            raise NoRunsError(f"no {describe_scope(scope)} runs{filtered} in {self.store}{hint}".replace(
                "no any runs", "no runs"))
        raise NoRunsError(f"no {describe_scope(scope)} run{filtered} has a finite value for metric "
                          f"{metric!r}{hint}".replace("no any run", "no run"))
