"""Index groups: the metric reducers kept apart per (experiment, status), merged per query.

Why groups: "best accuracy among finished runs of experiment wine" must stay an index answer
(milliseconds at a million runs), and the reducers cannot be un-merged after the fact.  So every
reducer (statistics fold, top-K heaps, declared directions) is kept per group key
``(experiment, status)`` -- ``experiment`` is the record's ``experiment`` field, or ``"default"``
-- and a query merges the groups in its scope:

* top-k of a union = the top-k of the merged top-k heaps of its parts (each part keeps ``TOP_K``);
* statistics merge exactly (Chan's merge), always in the sorted order of the group keys, so an
  answer is a function of the groups' folds alone: an index refreshed after every append, a
  rebuild and an index-free read (``query.ranking``) give bit-identical numbers.

The number of groups is small (experiments times a handful of statuses), so a merge per query costs
microseconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exptrack.store.index.reducers import MetricFold, MetricStats, Mode, TopK

GroupKey = tuple[str, str]
"""``(experiment, status)``."""

DEFAULT_EXPERIMENT = "default"
"""The experiment of a record without an ``experiment`` field (every record before issue 11)."""


def experiment_of(value: object) -> str:
    """The experiment a record's ``experiment`` field names (``"default"`` when absent or not text)."""
    return value if type(value) is str and value else DEFAULT_EXPERIMENT


def declared_modes(value: object) -> dict[str, Mode]:
    """The valid entries of a record's ``directions`` section (``{"metric": "min" | "max"}``)."""
    if type(value) is not dict:
        return {}
    return {name: mode for name, mode in value.items() if mode in ("max", "min")}


@dataclass(slots=True)
class Group:
    """The reducers of one group: its run count, per metric a statistics fold and top-K heaps in
    both directions, and how many runs declared each direction for a metric."""

    top_k: int
    runs: int = 0
    folds: dict[str, MetricFold] = field(default_factory=dict)
    tops: dict[str, tuple[TopK, TopK]] = field(default_factory=dict)
    directions: dict[str, Counter[str]] = field(default_factory=dict)
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Saved states not built yet: a query builds only the metrics and parts it reads (a store
    with many groups holds tens of thousands of heap entries; building them all would cost more
    than answering)."""

    def names(self) -> set[str]:
        return set(self.folds) | set(self.raw)

    def fold_of(self, name: str) -> MetricFold | None:
        entry = self.raw.get(name)
        if entry is not None and "fold" in entry:
            self.folds[name] = MetricFold.from_state(entry.pop("fold"))
            self._settle(name, entry)
        return self.folds.get(name)

    def tops_of(self, name: str) -> tuple[TopK, TopK] | None:
        entry = self.raw.get(name)
        if entry is not None and "max" in entry:
            self.tops[name] = (TopK.from_state(self.top_k, "max", entry.pop("max")),
                               TopK.from_state(self.top_k, "min", entry.pop("min")))
            self._settle(name, entry)
        return self.tops.get(name)

    def _settle(self, name: str, entry: dict[str, Any]) -> None:
        if not entry:
            del self.raw[name]

    def _built(self, name: str) -> None:
        self.fold_of(name)
        self.tops_of(name)

    def fold(self, name: str, blocks: Iterable[tuple[int, Any]], top_max: Sequence[tuple[float, int, str]],
             top_min: Sequence[tuple[float, int, str]]) -> None:
        """Feed one later segment's share of metric ``name`` (blocks in log order, heap entries)."""
        self._built(name)
        fold = self.folds.get(name)
        if fold is None:
            fold = self.folds[name] = MetricFold()
            self.tops[name] = (TopK(self.top_k, "max"), TopK(self.top_k, "min"))
        for block, part in blocks:
            fold.feed(block, part)
        high, low = self.tops[name]
        high.merge(TopK(self.top_k, "max", list(top_max)))
        low.merge(TopK(self.top_k, "min", list(top_min)))

    def add(self, name: str, value: float, block: int, seq: int, run_id: str) -> None:
        """One run's value of metric ``name`` (a run at log position ``seq`` in ``block``)."""
        self._built(name)
        fold = self.folds.get(name)
        if fold is None:
            fold = self.folds[name] = MetricFold()
            self.tops[name] = (TopK(self.top_k, "max"), TopK(self.top_k, "min"))
        fold.add(value, block)
        high, low = self.tops[name]
        high.add(value, seq, run_id)
        low.add(value, seq, run_id)

    def declare(self, directions: Mapping[str, Counter[str]]) -> None:
        for name, counts in directions.items():
            self.directions.setdefault(name, Counter()).update(counts)

    def to_state(self, key: GroupKey) -> list[object]:
        metrics: dict[str, dict[str, Any]] = {}
        for name in sorted(self.names()):
            entry = dict(self.raw.get(name, {}))  # parts never built are written back as read
            if name in self.folds:
                entry["fold"] = self.folds[name].to_state()
            if name in self.tops:
                entry["max"], entry["min"] = self.tops[name][0].to_state(), self.tops[name][1].to_state()
            metrics[name] = entry
        directions = {name: dict(counts) for name, counts in self.directions.items()}
        return [key[0], key[1], self.runs, metrics, directions]

    @classmethod
    def from_state(cls, top_k: int, state: Sequence[Any]) -> tuple[GroupKey, Group]:
        experiment, status, runs, metrics, directions = state
        group = cls(top_k, int(runs))
        for name, entry in metrics.items():
            if set(entry) != {"fold", "max", "min"}:
                raise ValueError(f"index group entry for {name!r} is incomplete")
            group.raw[str(name)] = dict(entry)
        group.directions = {str(name): Counter({str(m): int(n) for m, n in counts.items()})
                            for name, counts in directions.items()}
        return (str(experiment), str(status)), group


class GroupSet:
    """The groups of one read (the whole log, or the runs a filter accepted) and their merges.

    Every answer takes ``keys``: the group keys in scope (``None``: all groups).  Use
    :meth:`select` to name them by experiment and status.
    """

    def __init__(self, top_k: int) -> None:
        self.top_k = top_k
        self.groups: dict[GroupKey, Group] = {}

    def group(self, key: GroupKey) -> Group:
        found = self.groups.get(key)
        if found is None:
            found = self.groups[key] = Group(self.top_k)
        return found

    # -- scope -----------------------------------------------------------------------------------

    def keys(self) -> list[GroupKey]:
        """Every group key, sorted (the order merges use)."""
        return sorted(self.groups)

    def select(self, *, experiments: Iterable[str] | None = None,
               statuses: Iterable[str] | None = None) -> list[GroupKey]:
        """The sorted keys of the groups of these experiments and statuses (None: any)."""
        wanted_e = None if experiments is None else frozenset(experiments)
        wanted_s = None if statuses is None else frozenset(statuses)
        return [key for key in sorted(self.groups)
                if (wanted_e is None or key[0] in wanted_e) and (wanted_s is None or key[1] in wanted_s)]

    def _scope(self, keys: Iterable[GroupKey] | None) -> list[Group]:
        chosen = sorted(self.groups) if keys is None else sorted(set(keys))
        return [self.groups[key] for key in chosen if key in self.groups]

    # -- merged answers --------------------------------------------------------------------------

    def runs(self, keys: Iterable[GroupKey] | None = None) -> int:
        return sum(group.runs for group in self._scope(keys))

    def statuses(self, keys: Iterable[GroupKey] | None = None) -> Counter[str]:
        """Runs per status in scope."""
        counts: Counter[str] = Counter()
        for key in sorted(self.groups) if keys is None else sorted(set(keys)):
            if key in self.groups and self.groups[key].runs:
                counts[key[1]] += self.groups[key].runs
        return counts

    def metric_names(self, keys: Iterable[GroupKey] | None = None) -> set[str]:
        names: set[str] = set()
        for group in self._scope(keys):
            names.update(group.names())
        return names

    def stats(self, keys: Iterable[GroupKey] | None = None) -> dict[str, MetricStats]:
        """Per metric, the statistics of the groups in scope, merged in key order (exact)."""
        merged: dict[str, MetricStats] = {}
        for group in self._scope(keys):
            for name in sorted(group.names()):
                fold = group.fold_of(name)
                if fold is None:
                    continue
                stats = fold.stats()
                if name in merged:
                    merged[name].merge(stats)
                else:
                    merged[name] = stats
        return merged

    def top(self, metric: str, mode: Mode, k: int, keys: Iterable[GroupKey] | None = None,
            ) -> list[tuple[float, int, str]] | None:
        """Up to ``k`` best (value, offset, run_id) of the union, or None when ``k`` exceeds ``top_k``."""
        if k > self.top_k:
            return None
        merged = TopK(k, mode)
        side = 0 if mode == "max" else 1
        for group in self._scope(keys):
            tops = group.tops_of(metric)
            if tops is not None:
                merged.merge(tops[side])
        return merged.ranked()

    def directions(self, metric: str, keys: Iterable[GroupKey] | None = None) -> Counter[str]:
        """How many runs in scope declared each direction for ``metric``."""
        counts: Counter[str] = Counter()
        for group in self._scope(keys):
            found = group.directions.get(metric)
            if found:
                counts.update(found)
        return counts

    # -- state -----------------------------------------------------------------------------------

    def to_state(self) -> list[list[object]]:
        return [self.groups[key].to_state(key) for key in sorted(self.groups)]

    def load_state(self, state: Iterable[Sequence[Any]]) -> None:
        self.groups = {}
        for entry in state:
            key, group = Group.from_state(self.top_k, entry)
            self.groups[key] = group
