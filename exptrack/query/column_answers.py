"""The reader's answers from the columnar index: filtered top-k, filtered summaries, matching runs.

Each answer is the one the log-reading path gives (the tests compare them on random stores), got
without decoding the log: the filter runs over the columns (``query.columnar``), and only the
runs it returns, or that the columns cannot decide, are read.  Every run returned is read from
its line (checksum verified), the edits applied, and the filter's closure checked on it again:
a run the columns call a match and the closure does not means the columns are wrong, and the
caller falls back to the log.  ``None`` from any method means "ask the log": no NumPy, no usable
columns, or a case these paths do not restate (declared directions, values of other kinds, too
many runs to decide one by one, nothing found, an error to word exactly).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from exptrack.errors import QueryError
from exptrack.query.directions import resolve_mode
from exptrack.store.index.columns import ColumnStore
from exptrack.store.index.groups import GroupSet
from exptrack.store.index.reducers import BLOCK_SHIFT, Mode
from exptrack.store.record import Run

if TYPE_CHECKING:
    from exptrack.query.columnar import ColumnView
    from exptrack.store.index.log_index import LogIndex

logger = logging.getLogger(__name__)

Predicate = Callable[[Mapping[str, Any]], bool]
Read = Callable[[int], Run]
"""The run whose line starts at an offset, with the edits applied."""

UNDECIDED_READS = 20_000
"""Runs the columns cannot decide that a query reads one by one; beyond, reading the log whole is faster."""
_RANK_READS = 4_096


def _columnar() -> Any:
    from exptrack.query import columnar

    return columnar


class ColumnAnswers:
    """One reader's columnar view, kept between queries and extended as the log grows."""

    def __init__(self, log_path: str) -> None:
        self.log_path = log_path
        self._view: ColumnView | None = None
        self._broken = False

    def view(self, index: LogIndex) -> ColumnView | None:
        """The columns of every run line before the index's watermark, or None."""
        if self._broken:
            return None
        columnar = _columnar() if _numpy() else None
        if columnar is None:
            return None
        cached = self._view
        if cached is not None and cached.meta.generation == index.generation \
                and cached.meta.watermark == index.watermark:
            return cached
        store = ColumnStore(index.dir)
        meta = store.sync(self.log_path, index.generation, index.watermark)
        if meta is None:
            return None
        try:
            view: ColumnView = columnar.load(store, meta, cached)
        except (OSError, ValueError) as exc:
            logger.info("cannot load the columnar index of %s: %s", self.log_path, exc)
            return None
        self._view = view
        return view

    def failed(self, index: LogIndex, why: str) -> None:
        """The columns disagree with the log: forget them (the next sync rebuilds from nothing)."""
        logger.warning("the columnar index of %s disagrees with the log (%s); rebuilding it", self.log_path, why)
        self._view = None
        store = ColumnStore(index.dir)
        try:
            store.write_whole("meta.json", b"{}")
        except OSError:
            self._broken = True  # cannot reset it: this reader stops using it

    # -- answers ----------------------------------------------------------------------------------

    def top(self, index: LogIndex, predicate: Predicate, metric: str, mode: str | None, k: int,
            statuses: frozenset[str] | None, experiment: str | None, read: Read) -> list[Run] | None:
        """The ``k`` best runs ``predicate`` accepts, as ``StoreReader.top_runs`` ranks them."""
        plan = getattr(predicate, "plan", None)
        view = self.view(index) if plan is not None else None
        if view is None:
            return None
        columnar = _columnar()
        base = columnar.rows_in_scope(view, index.watermark, _excluded(index), statuses, experiment)
        true, false = columnar.evaluate(plan, view)
        candidates = base & ~false
        if mode is None and columnar.declares_directions(view, candidates.nonzero()[0]):
            return None  # directions declared by runs in scope: the log path counts them
        try:
            chosen: Mode = resolve_mode(metric, mode, Counter())
        except QueryError:
            return None  # the log path words the error (an unknown metric comes first)
        limit, seen = k, dict[int, Run | None]()
        while True:
            ranked = columnar.ranking(view, base & true, candidates, metric, chosen, limit)
            if ranked is None:
                return None
            found: list[Run] = []
            for row, sure in zip(ranked.rows.tolist(), ranked.sure.tolist(), strict=True):
                if row not in seen:
                    run = read(int(view.offsets[row]))
                    accepted = predicate(run)
                    if sure and not accepted:
                        self.failed(index, f"run {run.run_id} does not match the filter")
                        return None
                    seen[row] = run if accepted else None
                run_or_none = seen[row]
                if run_or_none is not None:
                    found.append(run_or_none)
                    if len(found) == k:
                        return found
            if len(ranked.rows) < limit:
                return found or None  # every candidate seen; none at all: the log path says why
            limit *= 4
            if len(seen) > _RANK_READS:
                return None

    def summary_groups(self, index: LogIndex, predicate: Predicate, experiment: str | None,
                       read: Read) -> GroupSet | None:
        """The groups of the runs ``predicate`` accepts (every status), as a filtered read folds them."""
        rows = self.matching_rows(index, predicate, experiment, False, read)
        if rows is None:
            return None
        view = self._view
        assert view is not None
        columnar = _columnar()
        if columnar.declares_directions(view, rows):
            return None
        import numpy as np

        groups = GroupSet(1)  # a summary names one best run per metric and direction
        keys = [(columnar._experiment(raw), status) for raw, status in view.meta.groups]
        codes = view.groups[rows]
        metrics = [name for section, name in view.meta.fields if section == "metrics"]
        for key in sorted({keys[code] for code in np.unique(codes).tolist()}):
            wanted = [code for code, other in enumerate(keys) if other == key]
            chosen = rows[np.isin(codes, wanted)]
            group = groups.group(key)
            group.runs = len(chosen)
            for name in metrics:
                found = columnar.metric_values(view, chosen, name)
                if found is None:
                    return None
                values, holding, numbers = found
                if not values:
                    continue
                offsets = view.offsets[holding]
                blocks = (offsets >> BLOCK_SHIFT).tolist()
                parts: list[tuple[int, Any]] = []
                start = 0
                for i in range(1, len(blocks) + 1):
                    if i == len(blocks) or blocks[i] != blocks[start]:
                        parts.append((blocks[start], values[start:i]))
                        start = i
                usable = np.flatnonzero(np.isfinite(numbers))
                top_max: list[tuple[float, int, str]] = []
                top_min: list[tuple[float, int, str]] = []
                if len(usable):
                    high = int(usable[np.argmax(numbers[usable])])
                    low = int(usable[np.argmin(numbers[usable])])
                    top_max = [(values[high], -int(offsets[high]), read(int(offsets[high])).run_id)]
                    top_min = [(-values[low], -int(offsets[low]), read(int(offsets[low])).run_id)]
                group.fold(name, parts, top_max, top_min)
        return groups

    def matching_rows(self, index: LogIndex, predicate: Predicate, experiment: str | None,
                      include_deleted: bool, read: Read) -> Any | None:
        """Row numbers (log order) of the runs ``predicate`` accepts, or None."""
        plan = getattr(predicate, "plan", None)
        view = self.view(index) if plan is not None else None
        if view is None:
            return None
        columnar = _columnar()
        excluded = _excluded(index, include_deleted)
        base = columnar.rows_in_scope(view, index.watermark, excluded, None, experiment)
        true, false = columnar.evaluate(plan, view)
        matched = base & true
        undecided = (base & ~false & ~true).nonzero()[0]
        if len(undecided) > UNDECIDED_READS:
            return None
        for row in undecided.tolist():
            if predicate(read(int(view.offsets[row]))):
                matched[row] = True
        return matched.nonzero()[0]

    def sorted_rows(self, index: LogIndex, predicate: Predicate | None, keys: Any, experiment: str | None,
                    include_deleted: bool, read: Read) -> tuple[list[int], int] | None:
        """Offsets of the runs ``predicate`` accepts (all when None) in ``keys`` order (a sort spec
        as segments and directions), and how many there are; None when a key has no column."""
        if predicate is None:
            view = self.view(index)
            if view is None:
                return None
            rows = _columnar().rows_in_scope(view, index.watermark, _excluded(index, include_deleted), None,
                                              experiment).nonzero()[0]
        else:
            rows = self.matching_rows(index, predicate, experiment, include_deleted, read)
            view = self._view
        if rows is None or view is None:
            return None
        ordered = _columnar().sort_order(view, rows, keys)
        if ordered is None:
            return None
        offsets: list[int] = view.offsets[ordered].tolist()
        return offsets, len(offsets)

    def matching_offsets(self, index: LogIndex, predicate: Predicate, experiment: str | None,
                         include_deleted: bool, read: Read) -> list[int] | None:
        rows = self.matching_rows(index, predicate, experiment, include_deleted, read)
        if rows is None or self._view is None:
            return None
        offsets: list[int] = self._view.offsets[rows].tolist()
        return offsets


def _excluded(index: LogIndex, include_deleted: bool = False) -> list[int]:
    """Lines the index does not count: corrupt lines (duplicates of an earlier run id included;
    the columns take any line that parses as a record, see ``store.index.columns``), hidden records."""
    excluded = [c.offset for c in index.corrupt]
    excluded.extend(index.superseded if include_deleted else index.hidden)
    return excluded


def _numpy() -> bool:
    from exptrack.query.columnar import available

    return available()
