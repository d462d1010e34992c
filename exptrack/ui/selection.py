"""The runs matching one filter, reduced to what the views draw, and grown as the log grows.

A :class:`Selection` is fed runs in log order (``add``) and keeps: every matching run id (the
table pages through them), an even sample of chart rows, the best-so-far change points of every
metric over *all* of them, the newest runs whole, and the param / metric names seen.  Feeding is
incremental, so the server can extend a selection with the runs appended since it was built
instead of reading a million runs again.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from exptrack.query.directions import infer_mode
from exptrack.store.record import Run

NEWEST = 1000
"""Newest runs kept whole per selection, so the table's first pages need no lookup by id."""

# Top-level record fields shown as table columns when runs carry them (the experiment a run
# belongs to, its name and note from the run lifecycle).
EXTRA_COLUMNS = ("experiment", "name", "note")


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted scalar columns (``optimizer.lr``); lists become their JSON text."""
    from exptrack.store import codec

    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, name + "."))
        elif isinstance(value, (list, tuple)):
            out[name] = codec.dumps(list(value)).decode()
        else:
            out[name] = value
    return out


def _chart_row(position: int, run: Run) -> dict[str, Any]:
    row: dict[str, Any] = {
        "n": position, "run_id": run.run_id, "timestamp": run.timestamp, "status": run.status,
        "params": flatten_params(run.params), "metrics": dict(run.metrics), "tags": list(run.tags),
    }
    for key in EXTRA_COLUMNS:
        if key in run.extra:
            row[key] = run.extra[key]
    return row


class Selection:
    """Matching runs in log order (time order), reduced for the views; see the module docstring.

    Args:
        max_points: chart rows to draw at most; more runs are sampled evenly.
        newest: how many of the newest runs to keep whole.
        ranked: the statuses whose runs make the ``best`` traces, as ``best_run``'s ``status=``
            (``best_any`` ranks every run); every run is drawn either way.

    Attributes:
        generation, watermark: the index generation and log offset this selection covers.
        last_offset: the largest log offset of a run it was fed (a later extension skips up to it).
    """

    def __init__(self, max_points: int, newest: int = NEWEST,
                 ranked: frozenset[str] | None = frozenset({"finished"})) -> None:
        self.max_points = max_points
        self.ranked = ranked
        self.directions: dict[str, str] = {}
        self.ids: list[str] = []
        self.params: set[str] = set()
        self.metrics: set[str] = set()
        self.extras: set[str] = set()
        self.best: dict[str, dict[str, list[list[Any]]]] = {}
        self._best_max: dict[str, float] = {}
        self._best_min: dict[str, float] = {}
        self.best_any: dict[str, dict[str, list[list[Any]]]] = {}
        self._any_max: dict[str, float] = {}
        self._any_min: dict[str, float] = {}
        self._rows: list[dict[str, Any]] = []
        self._stride = 1
        self._kept: deque[Run] = deque(maxlen=newest)
        self._newest: tuple[int, dict[str, dict[str, Any]]] = (-1, {})
        self.generation = ""
        self.watermark = 0
        self.last_offset = -1

    def add(self, run: Run) -> None:
        n = len(self.ids)
        self.ids.append(run.run_id)
        self._kept.append(run)
        self.last_offset = max(self.last_offset, run.offset)
        self.params.update(run.params)
        if run.extra:
            self.extras.update(key for key in EXTRA_COLUMNS if key in run.extra)
            declared = run.extra.get("directions")
            if isinstance(declared, Mapping):
                self.directions.update((str(k), v) for k, v in declared.items() if v in ("max", "min"))
        self.metrics.update(run.metrics)
        self._rank(n, run, self.best_any, self._any_max, self._any_min)
        if self.ranked is not None and run.status in self.ranked:  # best-so-far as best_run ranks
            self._rank(n, run, self.best, self._best_max, self._best_min)
        if n % self._stride == 0:
            self._rows.append(_chart_row(n, run))
            if len(self._rows) >= 2 * self.max_points:  # halve the rows, double the stride: still even
                self._stride *= 2
                self._rows = [row for row in self._rows if row["n"] % self._stride == 0]

    @staticmethod
    def _rank(n: int, run: Run, best: dict[str, dict[str, list[list[Any]]]], highest: dict[str, float],
              lowest: dict[str, float]) -> None:
        for name, value in run.metrics.items():
            if value - value != 0:  # NaN and ±inf are never ranked
                continue
            traces = best.get(name)
            if traces is None:
                traces = best[name] = {"max": [], "min": []}
                highest[name], lowest[name] = -math.inf, math.inf
            if value > highest[name]:
                highest[name] = value
                traces["max"].append([n, value, run.run_id])
            if value < lowest[name]:
                lowest[name] = value
                traces["min"].append([n, value, run.run_id])

    def add_all(self, runs: Iterable[Run]) -> None:
        for run in runs:
            self.add(run)

    @property
    def sample(self) -> list[dict[str, Any]]:
        """At most ``max_points`` chart rows, evenly spaced over the matching runs, in log order."""
        rows = self._rows
        if len(rows) <= self.max_points:
            return rows
        step = len(rows) / self.max_points
        return [rows[int(i * step)] for i in range(self.max_points)]

    @property
    def stride(self) -> int:
        """One chart row per ``stride`` matching runs (about)."""
        if len(self._rows) <= self.max_points:
            return self._stride
        return max(1, round(len(self.ids) / self.max_points))

    @property
    def newest(self) -> dict[str, dict[str, Any]]:
        """``run_id -> record`` of the newest runs, in log order."""
        count, records = self._newest
        if count != len(self.ids):
            records = {run.run_id: run.to_dict() for run in self._kept}
            self._newest = (len(self.ids), records)
        return records


def select(runs: Iterable[Run], max_points: int, newest: int | None = None,
           ranked: frozenset[str] | None = frozenset({"finished"})) -> Selection:
    """A selection fed ``runs`` (one pass)."""
    selection = Selection(max_points, NEWEST if newest is None else newest, ranked)
    selection.add_all(runs)
    return selection


def points_payload(sel: Selection, *, any_status: bool = False) -> dict[str, Any]:
    """``/api/points``: the chart rows, whether they are a sample, best-so-far traces (over the
    selection's ranked statuses, or over every run), directions (declared, else inferred)."""
    sample = sel.sample
    ranked = None if any_status else sel.ranked
    return {
        "rows": sample, "total": len(sel.ids), "sampled": len(sample) < len(sel.ids),
        "stride": sel.stride, "best": sel.best_any if ranked is None else sel.best, "metrics": sorted(sel.metrics),
        "modes": {name: sel.directions.get(name) or infer_mode(name) for name in sorted(sel.metrics)},
        "ranked": "any" if ranked is None else sorted(ranked),
    }


def columns_payload(sel: Selection) -> dict[str, Any]:
    """``/api/columns``: run fields, then every metric and param seen in any matching run."""
    base = ["run_id", *sorted(sel.extras, key=EXTRA_COLUMNS.index), "timestamp", "status", "tags"]
    return {
        "columns": [*base, *(f"metrics.{m}" for m in sorted(sel.metrics)),
                    *(f"params.{p}" for p in sorted(sel.params))],
        "metrics": sorted(sel.metrics), "params": sorted(sel.params), "total": len(sel.ids),
    }
