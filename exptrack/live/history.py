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


