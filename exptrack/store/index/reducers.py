"""Mergeable reducers of metric values: exact block statistics and bounded top-k heaps.

Every reducer obeys ``merge(reduce(a), reduce(b)) == reduce(a + b)``: that law is what lets the
index fold in only the runs appended since its watermark and still answer exactly what a full
rescan would.  Ties are broken by position in the log (the earlier run wins), so answers are
deterministic across rescans and processes.
"""

from __future__ import annotations

import heapq
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Literal

Mode = Literal["max", "min"]


BLOCK_SHIFT = 18
"""Statistics are computed per 256 KiB block of the log (``offset >> BLOCK_SHIFT``), then folded
block after block in log order.  Floating-point sums depend on the order of additions, so a
statistic that is a function of *how* the log was read (one pass, two halves in two processes,
an index refreshed after every append) could differ in its last bits.  Fixing the grouping to
byte positions of the log makes every reader compute exactly the same numbers: a block is
reduced from its raw values with order-independent ``math.fsum``, and blocks are folded left to
right with Chan's merge.  A reader keeps the raw values of a block that may still grow."""
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1  # top-k keys outside this range are stored as text


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

    @classmethod
    def of(cls, values: Sequence[float]) -> MetricStats:
        """Statistics of one block, a function of the values alone (two passes, ``math.fsum``)."""
        finite: Sequence[float] = values
        try:
            total = math.fsum(values)
            exact = total - total == 0
        except OverflowError:  # a sum leaving the float range: there may be ±inf among the values too
            exact = False
            total = math.nan
        except ValueError:  # inf + -inf
            exact = False
            total = math.nan
        if not exact:
            finite = [value for value in values if value - value == 0]
            total = _fsum(finite)
        elif total != total:
            total = _fsum(finite)
        stats = cls(nonfinite=len(values) - len(finite))
        count = len(finite)
        if not count:
            return stats
        mean = total / count if total - total == 0 else _mean(finite)
        deviations = list(map(operator.sub, finite, repeat(mean)))
        stats.count, stats.mean, stats.min, stats.max = count, mean, min(finite), max(finite)
        stats.m2 = _fsum(list(map(operator.mul, deviations, deviations)))
        return stats

    def merge(self, other: MetricStats) -> None:
        """Fold ``other`` (the statistics of later runs) into these."""
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

    def copy(self) -> MetricStats:
        return MetricStats(self.count, self.mean, self.m2, self.min, self.max, self.nonfinite)

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

    def to_state(self) -> list[float]:
        return [self.count, self.mean, self.m2, self.min, self.max, self.nonfinite]

    @classmethod
    def from_state(cls, state: Sequence[float]) -> MetricStats:
        count, mean, m2, low, high, nonfinite = map(_number, state)
        return cls(int(count), float(mean), float(m2), low, high, int(nonfinite))


def _number(value: Any) -> Any:
    """A number from a JSON state: ``codec.dumps`` writes NaN and ±Infinity as strings."""
    return float(value) if type(value) is str else value


def _fsum(values: Sequence[float]) -> float:
    try:
        return math.fsum(values)
    except OverflowError:
        return math.nan  # the caller computes the mean by scaling instead


def _mean(values: Sequence[float]) -> float:
    """The mean of finite values whose sum leaves the float range (a function of the values alone)."""
    count = float(len(values))
    try:
        return math.fsum(map(operator.truediv, values, repeat(count)))
    except OverflowError:  # e.g. three values of 6e307: their quotients still add past the limit inside fsum
        scaled = math.fsum(map(operator.truediv, values, repeat(4.0 * count))) * 4.0
        return min(max(scaled, min(values)), max(values))  # a mean lies between them; rounding may not


Part = list[float] | MetricStats
"""One block's contribution: its raw values (a block that may be partial) or its statistics."""


@dataclass(slots=True)
class MetricFold:
    """A metric's statistics over the log so far: the fold of every finished block, plus the raw
    values of the last block, which later runs may still join.

    Feeding the same blocks in log order gives bit-identical statistics whichever way the log was
    cut into passes: that is the merge law the index relies on (``feed`` of a later segment's
    parts equals having read both segments in one pass).
    """

    done: MetricStats = field(default_factory=MetricStats)
    block: int = -1
    values: list[float] = field(default_factory=list)

    def add(self, value: float, block: int) -> None:
        """One value of a run whose line starts in ``block`` (blocks never decrease)."""
        if block != self.block:
            self._close(block)
        self.values.append(value)

    def feed(self, block: int, part: Part) -> None:
        """A later block's raw values (possibly continuing the open block) or complete statistics."""
        if type(part) is list:
            if block != self.block:
                self._close(block)
            self.values.extend(part)
        else:
            self._close(-1)
            self.done.merge(part)  # type: ignore[arg-type]

    def _close(self, block: int) -> None:
        if self.values:
            self.done.merge(MetricStats.of(self.values))
            self.values = []
        self.block = block

    def stats(self) -> MetricStats:
        """The statistics of every value fed so far (the open block included, without closing it)."""
        if not self.values:
            return self.done.copy()
        result = self.done.copy()
        result.merge(MetricStats.of(self.values))
        return result

    def to_state(self) -> dict[str, object]:
        return {"done": self.done.to_state(), "block": self.block, "values": self.values}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> MetricFold:
        values = state["values"]
        if str in set(map(type, values)):
            values = list(map(_number, values))
        return cls(MetricStats.from_state(state["done"]), int(state["block"]), list(values))


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
        ordered = sorted(self.heap, reverse=True)
        if self.mode == "max":
            return [(key, -neg_seq, run_id) for key, neg_seq, run_id in ordered]
        return [(-key, -neg_seq, run_id) for key, neg_seq, run_id in ordered]  # ints stay ints

    def to_state(self) -> list[list[object]]:
        # A "min" key is the negated value: -(2**64 - 1) fits no JSON integer type, so an integer
        # key outside the 64-bit range is written as its decimal text and read back exactly.
        return [
            [str(key) if type(key) is int and not _INT64_MIN <= key <= _UINT64_MAX else key, neg_seq, run_id]
            for key, neg_seq, run_id in self.heap
        ]

    @classmethod
    def from_state(cls, k: int, mode: Mode, state: Iterable[Sequence[Any]]) -> TopK:
        heap = [(int(key) if type(key) is str else key, int(neg_seq), str(run_id)) for key, neg_seq, run_id in state]
        heapq.heapify(heap)
        return cls(k, mode, heap)


