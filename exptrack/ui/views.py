"""What the web view shows, asked of the query layer: pages of runs, chart points, histories.

The server and the report renderer are thin adapters over this module, and this module is a
thin adapter over the tracker: filters are the ``where`` language compiled by the tracker,
orderings come from :func:`exptrack.where.sort_records`, summaries from ``tracker.summary``.
Nothing here re-implements a filter or a ranking.

A long-running server sees the same questions again and again (every poll, every page), so the
answers are cached per *store version*: the index's generation and watermark, which change when
any record (a run or an edit) is appended.  A version change empties nothing by itself: each
cached answer just stops matching and is recomputed on demand, once, under one lock.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from exptrack.errors import ExptrackError, QueryError
from exptrack.query.ranking import StatusScope, status_scope
from exptrack.store.index.identity import IndexStats
from exptrack.store.record import Run
from exptrack.tracker import ExperimentTracker
from exptrack.ui.selection import NEWEST, Selection, columns_payload, points_payload, select

MAX_PAGE = 1000
"""Largest ``limit`` of one page of runs: the table pages on the server, it never loads a store."""
DEFAULT_POINTS = 2000
"""Runs drawn by the run charts by default; more are sampled, and the page says so."""
MAX_POINTS = 20000
DEFAULT_CURVE_POINTS = 1000
"""Points of one metric's history sent to the page; longer histories are downsampled."""
_CACHED = 16  # answers kept per store view: a few filters x sorts, the current version only
_SELECTIONS = 8  # filters whose selections are kept and extended as the log grows

T = TypeVar("T")


def downsample(points: list[dict[str, Any]], max_points: int) -> list[dict[str, Any]]:
    """At most ``max_points`` of a curve: the lowest and highest point of each bucket, in order.

    Keeping both extremes of every bucket keeps spikes and divergences visible, which an even
    stride would drop.
    """
    if len(points) <= max_points:
        return points
    buckets = max(1, max_points // 2)
    size = math.ceil(len(points) / buckets)
    kept: list[dict[str, Any]] = []
    for start in range(0, len(points), size):
        chunk = points[start:start + size]
        finite = [p for p in chunk if isinstance(p.get("value"), float | int) and p["value"] - p["value"] == 0]
        if not finite:
            kept.append(chunk[0])
            continue
        low = min(finite, key=lambda p: p["value"])
        high = max(finite, key=lambda p: p["value"])
        kept.extend(sorted({id(low): low, id(high): high}.values(), key=chunk.index))
    return kept


def reproduce_steps(run: Mapping[str, Any], store: str) -> list[str]:
    """Shell lines that bring a run's code back and re-run it, from the record alone.

    ``exptrack reproduce`` compares the current checkout too; the page cannot (the server must
    not write a fingerprint cache into the store), so it shows the recorded state only.
    """
    import shlex

    from exptrack.capture.invocation import command_line

    run_id = str(run["run_id"])
    steps = [f"exptrack --store {shlex.quote(store)} reproduce {shlex.quote(run_id)}"]
    code = run.get("code")
    if isinstance(code, Mapping) and isinstance(code.get("commit"), str):
        root = code.get("repo_root")
        if isinstance(root, str):
            steps.append(f"cd {shlex.quote(root)}")
        steps.append(f"git checkout {shlex.quote(code['commit'])}")
        if "code.patch" in (run.get("artifacts") or {}):
            steps.append(f"exptrack --store {shlex.quote(store)} reproduce {shlex.quote(run_id)} --patch-dir . "
                         f"; git apply {shlex.quote(run_id)}.patch")
    invocation = run.get("invocation")
    if isinstance(invocation, Mapping) and invocation.get("argv"):
        steps.append(command_line(invocation))
    return steps


class StoreView:
    """The store as the web view sees it: cached, read-only, safe to share between threads.

    Args:
        tracker: the store's tracker; this class only reads through it.
    """

    def __init__(self, tracker: ExperimentTracker) -> None:
        self.tracker = tracker
        self._lock = threading.Lock()  # the answer cache; the tracker serializes its own reads
        # Selections are built or extended one at a time (a build may take a whole pass over a
        # million runs): answers that do not need one never wait behind it.
        self._select_lock = threading.RLock()
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._selections: OrderedDict[tuple[str | None, int, frozenset[str] | None], Selection] = OrderedDict()

    # -- versions and caching -------------------------------------------------------------------

    def _stats(self) -> IndexStats | None:
        try:
            return self.tracker.refresh_index()
        except ExptrackError:  # no usable index (queries scan the log)
            return None

    def version(self, stats: IndexStats | None = None) -> str:
        """A tag that changes whenever a record is appended (the ETag of every answer)."""
        stats = stats or self._stats()
        if stats is None:  # the log file's identity and size still tell
            try:
                info = os.stat(self.tracker.runs_path)
            except FileNotFoundError:
                return "empty"
            return f"s{info.st_ino:x}-{info.st_size:x}-{info.st_mtime_ns:x}"
        return f"{stats.generation or 'g'}-{stats.watermark:x}-{stats.lines:x}"

    def _cached(self, key: tuple[Any, ...], compute: Callable[[], T]) -> tuple[str, T]:
        version = self.version()
        full = (version, *key)
        with self._lock:
            if full in self._cache:
                self._cache.move_to_end(full)
                return version, self._cache[full]
        value = compute()  # outside the lock: two threads may compute it once each, never wrongly
        with self._lock:
            self._cache[full] = value
            for stale in [k for k in self._cache if k[0] != version]:
                del self._cache[stale]
            while len(self._cache) > _CACHED:
                self._cache.popitem(last=False)
            return version, value

    def selection(self, where: str | None, max_points: int = DEFAULT_POINTS,
                  status: StatusScope = "finished") -> tuple[str, Selection]:
        """The runs matching ``where`` now: the last selection extended by the runs appended since
        (when the index only grew and only runs were appended), else one read through the tracker.
        ``status`` is the scope of the selection's ``best`` traces (``best_any`` ranks all).

        Call it, and read what it returns, under ``self._select_lock``: an extension changes it in place.
        """
        with self._select_lock:
            stats = self._stats()
            version = self.version(stats)
            ranked = status_scope(status) or frozenset({"finished"})  # "any": best_any of the default
            key = (where, max_points, ranked)
            sel = self._selections.get(key)
            if sel is not None and stats is not None and sel.generation == stats.generation and (
                    sel.watermark == stats.watermark
                    or (sel.watermark < stats.watermark and self._extend(sel, where, stats.watermark))):
                self._selections.move_to_end(key)
                return version, sel
            sel = Selection(max_points, ranked=ranked)
            if stats is not None:
                sel.generation, sel.watermark = stats.generation, stats.watermark
            sel.add_all(self.tracker.runs(where=where))
            self._selections[key] = sel
            while len(self._selections) > _SELECTIONS:
                self._selections.popitem(last=False)
            return version, sel

    def _extend(self, sel: Selection, where: str | None, watermark: int) -> bool:
        """Feed ``sel`` the runs logged in ``[sel.watermark, watermark)``; False when that range
        holds anything but new valid runs (an edit, a corrupt or repeated line): then the caller
        reads everything again through the tracker, which knows how to fold those.
        """
        from exptrack.query.parser import compile_where
        from exptrack.store.scan import LogScan

        predicate = compile_where(where) if where else None
        corrupt = {line.offset for line in self.tracker.corrupt_lines()}
        new: list[Run] = []
        for item in LogScan(str(self.tracker.runs_path), start=sel.watermark, end=watermark):
            if type(item) is not Run or item.offset in corrupt:
                return False
            if item.offset > sel.last_offset and (predicate is None or predicate(item)):
                new.append(item)
        sel.add_all(new)
        sel.watermark = watermark
        return True

    def _fresh(self, where: str | None) -> bool:
        """Whether the default selection for ``where`` covers the store as it is now."""
        sel = self._selections.get((where, DEFAULT_POINTS, frozenset({"finished"})))
        if sel is None:
            return False
        stats = self._stats()
        return stats is not None and sel.generation == stats.generation and sel.watermark == stats.watermark

    def warm(self) -> None:
        """Answer the first page's questions ahead of time (errors are left for the requests)."""
        try:
            self.runs_page(None, None, 50, 0)
            self.points(None, DEFAULT_POINTS)
        except ExptrackError:
            pass

    # -- answers --------------------------------------------------------------------------------

    def runs_page(self, where: str | None, sort: str | None, limit: int, offset: int) -> tuple[str, dict[str, Any]]:
        """``{"runs", "total", "limit", "offset"}``: newest first, or in ``sort`` order.

        Raises:
            FilterSyntaxError / QueryError: the filter or the sort spec is invalid.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise QueryError(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
        if offset < 0:
            raise QueryError(f"offset must be 0 or more, not {offset}")
        if sort:
            def ordered() -> tuple[list[dict[str, Any]], int]:
                # from the columnar index when it holds the keys: only the page's runs are read
                page, total = self.tracker.sorted_runs(sort, where=where, limit=limit, offset=offset)
                return [run.to_dict() for run in page], total

            version, (runs, total) = self._cached(("sorted", where, sort, limit, offset), ordered)
            return version, {"runs": runs, "total": total, "limit": limit, "offset": offset}
        if offset + limit <= NEWEST and not self._fresh(where):
            # No selection of this version yet (the server just started, or runs were appended):
            # the newest runs are read backwards from the end of the log, whatever its size.
            version = self.version()
            recent = self.tracker.recent_runs(offset + limit, where=where)[::-1]
            total = len(recent)
            if where is None or len(recent) == offset + limit:
                total = self.tracker.count_runs(where=where)  # the columnar index counts a filter's runs
            runs = [run.to_dict() for run in recent[offset:offset + limit]]
            return version, {"runs": runs, "total": total, "limit": limit, "offset": offset}
        with self._select_lock:
            version, sel = self.selection(where)
            total = len(sel.ids)
            stop = max(0, total - offset)
            page = sel.ids[max(0, stop - limit):stop][::-1]  # newest first
            known = sel.newest
        runs = [known.get(run_id) or self.tracker.get_run(run_id).to_dict() for run_id in page]
        return version, {"runs": runs, "total": total, "limit": limit, "offset": offset}

    def columns(self, where: str | None) -> tuple[str, dict[str, Any]]:
        """The table's columns for the runs matching ``where`` (params and metrics seen in any)."""
        if not self._fresh(where):
            # Until the selection is read: the columns of the newest runs, marked partial (the
            # page asks again; the server does not cache it).
            payload = columns_payload(select(self.tracker.recent_runs(NEWEST, where=where), 1))
            payload["partial"] = True
            return self.version(), payload
        with self._select_lock:
            version, sel = self.selection(where)
            return version, columns_payload(sel)

    def points(self, where: str | None, max_points: int,
               status: StatusScope = "finished") -> tuple[str, dict[str, Any]]:
        """Chart rows (a sample when there are more runs than ``max_points``) and best-so-far traces."""
        if not 1 <= max_points <= MAX_POINTS:
            raise QueryError(f"max_points must be between 1 and {MAX_POINTS}, not {max_points}")
        with self._select_lock:
            version, sel = self.selection(where, max_points, status)
            return version, points_payload(sel, any_status=status_scope(status) is None)

    def summary(self, where: str | None, status: StatusScope = "finished") -> tuple[str, dict[str, Any]]:
        return self._cached(("summary", where, status), lambda: self.tracker.summary(where=where, status=status))

    def run(self, run_id: str) -> tuple[str, dict[str, Any]]:
        """The run as stored.  Raises RunNotFoundError."""
        return self._cached(("run", run_id), lambda: self.tracker.get_run(run_id).to_dict())

    def history(self, run_id: str, max_points: int) -> tuple[str, dict[str, Any]]:
        """Each metric's step history, downsampled to ``max_points`` per metric.

        Only the metrics the run records a history of: a final value logged once without a step
        is in the history file too, but it is a point, not a curve.
        """
        if not 2 <= max_points <= MAX_POINTS:
            raise QueryError(f"max_points must be between 2 and {MAX_POINTS}, not {max_points}")

        def compute() -> dict[str, Any]:
            run = self.tracker.get_run(run_id)
            by_metric: dict[str, list[dict[str, Any]]] = {}
            for point in self.tracker.history(run.run_id):
                by_metric.setdefault(str(point.get("name")), []).append(point)
            curves = run.extra.get("history")
            if isinstance(curves, Mapping):
                by_metric = {name: points for name, points in by_metric.items() if name in curves}
            metrics = {}
            for name, points in by_metric.items():
                kept = downsample(points, max_points)
                metrics[name] = {
                    "steps": [p.get("step") for p in kept], "values": [p.get("value") for p in kept],
                    "times": [p.get("time") for p in kept], "total": len(points), "sampled": len(kept) < len(points),
                }
            return {"run_id": run.run_id, "metrics": metrics}

        return self._cached(("history", run_id, max_points), compute)

    def reproduce(self, run_id: str) -> tuple[str, dict[str, Any]]:
        def compute() -> dict[str, Any]:
            run = self.tracker.get_run(run_id)
            return {"run_id": run.run_id, "steps": reproduce_steps(run, os.path.abspath(self.tracker.store))}

        return self._cached(("reproduce", run_id), compute)

    def artifact(self, run_id: str, name: str) -> bytes:
        """An artifact's bytes through the artifact store's verified lookup (sha256 checked)."""
        return self.tracker.load_artifact(run_id, name)

    def experiments(self) -> tuple[str, list[Any]] | None:
        """The store's experiments, or None while the tracker has no notion of them."""
        lister = getattr(self.tracker, "experiments", None)
        if not callable(lister):
            return None
        return self._cached(("experiments",), lambda: _plain(lister()))


def _plain(value: Any) -> list[Any]:
    """Experiments as JSON-ready values (dataclasses through ``to_dict`` when they have one)."""
    out = []
    for item in value:
        to_dict = getattr(item, "to_dict", None)
        out.append(to_dict() if callable(to_dict) else item)
    return out
