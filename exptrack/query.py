"""Mergeable reducers and the best / top-k / summary answers over any stream of runs.

Every reducer obeys ``merge(reduce(a), reduce(b)) == reduce(a + b)``: that law is what lets the
index fold in only the runs appended since its watermark and still answer exactly what a full
rescan would.  Ties are broken by position in the log (the earlier run wins), so answers are
deterministic across rescans and processes.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .errors import QueryError
from .record import Run

Mode = Literal["max", "min"]

_MAX_WORDS = frozenset({"accuracy", "acc", "f1", "auc", "roc", "auroc", "precision", "recall", "r2",
                        "map", "ndcg", "iou", "dice", "bleu", "rouge"})
_MIN_WORDS = frozenset({"loss", "error", "err", "rmse", "mse", "mae", "mape", "perplexity", "wer", "cer"})
# Qualifiers that make a name a statistic *about* a metric, not the metric: `accuracy_std`,
# `loss_time` have no obvious better direction.
_NEUTRAL_WORDS = frozenset({"std", "sd", "stddev", "var", "variance", "sem", "time", "seconds", "secs", "sec",
                            "duration", "count", "n", "size", "step", "steps", "epoch", "lr"})
_WORD = re.compile(r"[a-z0-9]+")


def infer_mode(metric: str) -> Mode | None:
    """``"max"`` / ``"min"`` for well-known metric names (``val_accuracy``, ``test-rmse``), else None."""
    words = set(_WORD.findall(metric.lower()))
    words |= {w.rstrip("0123456789") for w in words}  # f1 stays f1 (matched first), top5 → top
    is_max, is_min = bool(words & _MAX_WORDS), bool(words & _MIN_WORDS)
    if is_max == is_min or words & _NEUTRAL_WORDS:
        return None
    return "max" if is_max else "min"


def resolve_mode(metric: str, mode: str | None) -> Mode:
    """The explicit mode, or the inferred one, or a clear error asking for it."""
    if mode is None:
        inferred = infer_mode(metric)
        if inferred is None:
            raise QueryError(
                f"cannot tell whether a higher or lower {metric!r} is better; "
                "pass mode='max' or mode='min' (CLI: --max or --min)"
            )
        return inferred
    if mode not in ("max", "min"):
        raise QueryError(f"mode must be 'max' or 'min', not {mode!r}")
    return mode  # type: ignore[return-value]


@dataclass(slots=True)
class MetricStats:
    """Count, min, max, mean and variance (Chan et al.'s parallel merge) of one metric's finite
    values, plus how many values were NaN/±Inf."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    nonfinite: int = 0

    def add(self, value: float) -> None:
        if value - value != 0:  # NaN or ±Inf: information, never a candidate for stats or best
            self.nonfinite += 1
            return
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def merge(self, other: MetricStats) -> None:
        self.nonfinite += other.nonfinite
        if not other.count:
            return
        if not self.count:
            self.count, self.mean, self.m2 = other.count, other.mean, other.m2
            self.min, self.max = other.min, other.max
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / total
        self.m2 += other.m2 + delta * delta * self.count * other.count / total
        self.count = total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n - 1), as pandas reports it; None below two values."""
        return math.sqrt(max(self.m2, 0.0) / (self.count - 1)) if self.count > 1 else None

    def to_dict(self) -> dict[str, object]:
        finite = self.count > 0
        return {
            "count": self.count,
            "nonfinite": self.nonfinite,
            "min": self.min if finite else None,
            "max": self.max if finite else None,
            "mean": self.mean if finite else None,
            "std": self.std,
        }


@dataclass(slots=True)
class TopK:
    """The k best (value, sequence) pairs of one metric in one direction.

    ``sequence`` is the run's position in the log (its byte offset), so the earlier run wins ties
    and the answer does not depend on the order in which partial results are merged.
    """

    k: int
    mode: Mode
    heap: list[tuple[float, int, str]] = field(default_factory=list)

    def _key(self, value: float, seq: int) -> tuple[float, int]:
        # heap[0] is the worst kept entry: for max keep (value, -seq), for min keep (-value, -seq).
        return (value, -seq) if self.mode == "max" else (-value, -seq)

    def add(self, value: float, seq: int, run_id: str) -> None:
        if value - value != 0:
            return
        key = self._key(value, seq)
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, (*key, run_id))
        elif key > self.heap[0][:2]:
            heapq.heapreplace(self.heap, (*key, run_id))

    def merge(self, other: TopK) -> None:
        for entry in other.heap:
            if len(self.heap) < self.k:
                heapq.heappush(self.heap, entry)
            elif entry[:2] > self.heap[0][:2]:
                heapq.heapreplace(self.heap, entry)

    def ranked(self) -> list[tuple[float, int, str]]:
        """Best first, as (value, sequence, run_id)."""
        sign = 1.0 if self.mode == "max" else -1.0
        return [(sign * key, -neg_seq, run_id) for key, neg_seq, run_id in sorted(self.heap, reverse=True)]


@dataclass(slots=True)
class Summary:
    """Run counts per status and per-metric statistics; mergeable like the reducers it holds."""

    total: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    metrics: dict[str, MetricStats] = field(default_factory=dict)

    def add(self, run: Run) -> None:
        self.total += 1
        self.statuses[run.status] += 1
        stats = self.metrics
        for name, value in run.metrics.items():
            entry = stats.get(name)
            if entry is None:
                entry = stats[name] = MetricStats()
            entry.add(value)

    def merge(self, other: Summary) -> None:
        self.total += other.total
        self.statuses.update(other.statuses)
        for name, entry in other.metrics.items():
            self.metrics.setdefault(name, MetricStats()).merge(entry)


def top_runs(runs: Iterable[Run], metric: str, k: int, mode: Mode) -> list[Run]:
    """The ``k`` best runs by ``metric``; runs without a finite value are skipped."""
    if k < 1:
        return []
    top = TopK(k, mode)
    by_id: dict[str, Run] = {}
    for seq, run in enumerate(runs):
        value = run.metrics.get(metric)
        if value is None or type(value) is bool:
            continue
        position = run.offset if run.offset >= 0 else seq
        if top.heap and len(top.heap) >= k and top._key(value, position) <= top.heap[0][:2]:
            continue
        top.add(float(value), position, run.run_id)
        by_id[run.run_id] = run
        if len(by_id) > 4 * k + 64:  # forget runs that fell out of the heap
            keep = {entry[2] for entry in top.heap}
            by_id = {rid: r for rid, r in by_id.items() if rid in keep}
    return [by_id[run_id] for _, _, run_id in top.ranked()]


def summarize(runs: Iterable[Run]) -> tuple[Summary, dict[str, tuple[Mode, Run]]]:
    """Fold a stream of runs into a :class:`Summary` plus the best run of every metric whose
    direction can be inferred from its name."""
    summary = Summary()
    modes: dict[str, Mode | None] = {}
    tops: dict[str, TopK] = {}
    winners: dict[str, Run] = {}
    for seq, run in enumerate(runs):
        summary.add(run)
        position = run.offset if run.offset >= 0 else seq
        for name, value in run.metrics.items():
            top = tops.get(name)
            if top is None:
                mode = modes[name] = modes[name] if name in modes else infer_mode(name)
                if mode is None:
                    continue
                top = tops[name] = TopK(1, mode)
            top.add(value, position, run.run_id)
            if top.heap and top.heap[0][1] == -position:
                winners[name] = run
    return summary, {name: (tops[name].mode, run) for name, run in winners.items()}


def summary_dict(
    summary: Summary,
    best: Mapping[str, tuple[Mode, Run]],
    corrupt: int,
) -> dict[str, object]:
    """The public shape of a summary (what ``--json`` prints)."""
    metrics: dict[str, object] = {}
    for name in sorted(summary.metrics):
        entry = summary.metrics[name].to_dict()
        chosen = best.get(name)
        entry["mode"] = chosen[0] if chosen else None
        entry["best_run_id"] = chosen[1].run_id if chosen else None
        entry["best_value"] = chosen[1].metrics[name] if chosen else None
        metrics[name] = entry
    return {
        "total_runs": summary.total,
        "corrupt_lines": corrupt,
        "statuses": dict(sorted(summary.statuses.items())),
        "metrics": metrics,
    }
