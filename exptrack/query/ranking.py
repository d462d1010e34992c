"""The best / top-k / summary answers over any stream of runs, built from the mergeable reducers.

Every reducer obeys ``merge(reduce(a), reduce(b)) == reduce(a + b)``: that law is what lets the
index fold in only the runs appended since its watermark and still answer exactly what a full
rescan would.  Ties are broken by position in the log (the earlier run wins), so answers are
deterministic across rescans and processes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from exptrack.query.directions import infer_mode
from exptrack.store.index.reducers import BLOCK_SHIFT, MetricFold, MetricStats, Mode, TopK
from exptrack.store.record import Run


@dataclass(slots=True)
class Summary:
    """Run counts per status and per-metric statistics (see :class:`MetricFold`)."""

    total: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    metrics: dict[str, MetricFold] = field(default_factory=dict)

    def add(self, run: Run, position: int = -1) -> None:
        """Count ``run``; ``position`` stands in for the offset of a run that was never written."""
        self.total += 1
        self.statuses[run.status] += 1
        block = (run.offset if run.offset >= 0 else max(position, 0)) >> BLOCK_SHIFT
        folds = self.metrics
        for name, value in run.metrics.items():
            fold = folds.get(name)
            if fold is None:
                fold = folds[name] = MetricFold()
            fold.add(value, block)


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


Best = Mapping[str, tuple[Mode, str, float]]
"""Per metric: (mode, run_id, value) of the best run, for metrics whose direction is known."""


def summarize(runs: Iterable[Run]) -> tuple[Summary, dict[str, tuple[Mode, str, float]]]:
    """Fold a stream of runs into a :class:`Summary` plus the best run of every metric whose
    direction can be inferred from its name."""
    summary = Summary()
    modes: dict[str, Mode | None] = {}
    tops: dict[str, TopK] = {}
    for seq, run in enumerate(runs):
        summary.add(run, seq)
        position = run.offset if run.offset >= 0 else seq
        for name, value in run.metrics.items():
            top = tops.get(name)
            if top is None:
                mode = modes[name] = modes[name] if name in modes else infer_mode(name)
                if mode is None:
                    continue
                top = tops[name] = TopK(1, mode)
            top.add(value, position, run.run_id)
    best: dict[str, tuple[Mode, str, float]] = {}
    for name, top in tops.items():
        if top.heap:
            value, _, run_id = top.ranked()[0]
            best[name] = (top.mode, run_id, value)
    return summary, best


def summary_dict(
    total: int,
    statuses: Mapping[str, int],
    stats: Mapping[str, MetricStats],
    best: Best,
    corrupt: int,
) -> dict[str, object]:
    """The public shape of a summary (what ``--json`` prints)."""
    metrics: dict[str, object] = {}
    for name in sorted(stats):
        entry = stats[name].to_dict()
        chosen = best.get(name)
        entry["mode"] = chosen[0] if chosen else None
        entry["best_run_id"] = chosen[1] if chosen else None
        entry["best_value"] = chosen[2] if chosen else None
        metrics[name] = entry
    return {
        "total_runs": total,
        "corrupt_lines": corrupt,
        "statuses": dict(sorted((k, v) for k, v in statuses.items() if v)),
        "metrics": metrics,
    }
