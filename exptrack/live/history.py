"""A run's metric history: per-step points appended to ``history/<id>.jsonl`` as they come, and their summary."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from exptrack.store import codec


class MetricHistory:
    """Last / min / max (with their steps) and count of one metric's steps: enough to rank runs
    by the best value of their history without reading the history file."""

    __slots__ = ("count", "last", "last_step", "max", "max_step", "min", "min_step", "nonfinite")

    def __init__(self) -> None:
        self.count = 0
        self.nonfinite = 0
        self.last: float = math.nan
        self.last_step: int | None = None
        self.min: float | None = None
        self.min_step: int | None = None
        self.max: float | None = None
        self.max_step: int | None = None

    def add(self, value: float, step: int) -> None:
        self.count += 1
        self.last, self.last_step = value, step
        if not math.isfinite(value):
            self.nonfinite += 1
            return
        if self.min is None or value < self.min:
            self.min, self.min_step = value, step
        if self.max is None or value > self.max:
            self.max, self.max_step = value, step

    def to_dict(self) -> dict[str, object]:
        # A non-finite last value stays in the run's ``metrics``; ``extra`` only holds finite numbers.
        return {
            "count": self.count,
            "last": self.last if math.isfinite(self.last) else None,
            "last_step": self.last_step,
            "min": self.min,
            "min_step": self.min_step,
            "max": self.max,
            "max_step": self.max_step,
            "nonfinite": self.nonfinite,
        }


def read_history(path: Path) -> Iterator[dict[str, Any]]:
    """Points of one run's history file; a torn last line (crash mid-write) is skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    for line in data.split(b"\n"):
        if line:
            try:
                point = codec.loads(line)
            except ValueError:
                continue
            if isinstance(point.get("value"), str):
                point["value"] = float(point["value"])
            yield point




Point = tuple[int, float, float | None]
"""One given point: ``(step, value, time in seconds since the epoch or None)``."""


def normalize_history(history: object) -> dict[str, list[Point]]:
    """Given history (``log_run(history=...)``) as validated points per metric, in step order.

    Two forms are accepted: what :meth:`ExperimentTracker.history` returns (an iterable of
    ``{"name", "step", "value", "time"}`` mappings, ``time`` optional), so a history can be copied
    from one store to another; or a mapping ``metric -> points``, each point a number (its position
    is its step), a ``(step, value)`` or a ``(step, value, time)``.
    """
    from collections.abc import Mapping, Sequence

    from exptrack.errors import InvalidRecordError
    from exptrack.store.record import normalize_metrics

    out: dict[str, list[Point]] = {}

    def add(name: object, step: object, value: object, moment: object, where: str) -> None:
        if type(name) is not str or not name:
            raise InvalidRecordError(f"{where}: metric name {name!r} must be a non-empty string", where)
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise InvalidRecordError(f"{where}: step must be a non-negative int, not {step!r}", where)
        number = normalize_metrics({name: value})[name]
        if moment is not None and (isinstance(moment, bool) or not isinstance(moment, (int, float))
                                   or not math.isfinite(moment)):
            raise InvalidRecordError(f"{where}: time must be seconds since the epoch or None, not {moment!r}", where)
        out.setdefault(name, []).append((int(step), number, None if moment is None else float(moment)))

    if isinstance(history, Mapping):
        for name, points in history.items():
            if isinstance(points, (str, bytes)) or not isinstance(points, Sequence):
                raise InvalidRecordError(f"history.{name}: expected a list of points", f"history.{name}")
            for i, point in enumerate(points):
                where = f"history.{name}[{i}]"
                if isinstance(point, (list, tuple)):
                    if len(point) not in (2, 3):
                        raise InvalidRecordError(f"{where}: a point is (step, value) or (step, value, time)", where)
                    add(name, point[0], point[1], point[2] if len(point) == 3 else None, where)
                else:
                    add(name, i, point, None, where)
    elif isinstance(history, (str, bytes)) or not hasattr(history, "__iter__"):
        raise InvalidRecordError("history must be a mapping of metric to points or a list of points", "history")
    else:
        for i, point in enumerate(history):
            where = f"history[{i}]"
            if not isinstance(point, Mapping) or "name" not in point or "step" not in point or "value" not in point:
                raise InvalidRecordError(f"{where}: a point is a mapping with name, step and value", where)
            add(point["name"], point["step"], point["value"], point.get("time"), where)
    for points in out.values():
        points.sort(key=lambda p: p[0])  # stable: points of one step keep their given order
    return out


def history_summary(points: dict[str, list[Point]]) -> tuple[dict[str, object], dict[str, float]]:
    """The ``history`` section a run line keeps, and each metric's last value (for ``metrics``)."""
    summary: dict[str, object] = {}
    last: dict[str, float] = {}
    for name, series in points.items():
        folded = MetricHistory()
        for step, value, _ in series:
            folded.add(value, step)
        summary[name] = folded.to_dict()
        if series:
            last[name] = series[-1][1]
    return summary, last


def history_bytes(points: dict[str, list[Point]]) -> bytes:
    """The history file for ``points``: one line per point, as a live run writes them."""
    lines = [
        codec.dumps({"name": name, "step": step, "value": value, "time": moment})
        for name, series in points.items()
        for step, value, moment in series
    ]
    return b"\n".join(lines) + b"\n" if lines else b""
