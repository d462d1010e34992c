"""The best / top-k / summary answers over any stream of runs, built from the mergeable reducers.

Every reducer obeys ``merge(reduce(a), reduce(b)) == reduce(a + b)``: that law is what lets the
index fold in only the runs appended since its watermark and still answer exactly what a full
rescan would.  Ties are broken by position in the log (the earlier run wins), so answers are
deterministic across rescans and processes.

Only runs of the statuses in scope compete (``finished`` by default: a failed run's 0.99 must not
beat a finished 0.90).  The reducers are kept per group (experiment, status) on this path too,
and merged in the same order as the index merges them, so both paths give bit-identical numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from exptrack.errors import QueryError
from exptrack.query.directions import declared_mode, infer_mode
from exptrack.store.index.groups import GroupKey, GroupSet, declared_modes, experiment_of
from exptrack.store.index.reducers import BLOCK_SHIFT, Mode, TopK
from exptrack.store.record import STATUSES, Run

StatusScope = str | Sequence[str] | None
"""``"finished"`` (the default of every ranking question), a status name, a list of them, or
``None`` / ``"any"`` for every run."""

RANKED_STATUSES = tuple(status for status in STATUSES if status != "running")


def status_scope(status: StatusScope) -> frozenset[str] | None:
    """The statuses a ``status=`` argument names (None: any).

    Raises:
        QueryError: an unknown status name.
    """
    if status is None or status == "any":
        return None
    names = [status] if isinstance(status, str) else list(status)
    if not names:
        raise QueryError(f"status needs at least one name; choose from {', '.join(STATUSES)} or 'any'")
    for name in names:
        if name == "any":
            return None
        if name not in STATUSES:
            raise QueryError(f"unknown status {name!r}; choose from {', '.join(STATUSES)} or 'any'")
    return frozenset(names)


def describe_scope(scope: frozenset[str] | None) -> str:
    """``"finished"``, ``"failed or killed"``, or ``"any"``."""
    return "any" if scope is None else " or ".join(sorted(scope))


def group_key(run: Run) -> GroupKey:
    return (experiment_of(run.get("experiment")), run.status)


def in_scope(runs: Iterable[Run], scope: frozenset[str] | None) -> Iterable[Run]:
    return runs if scope is None else (run for run in runs if run.status in scope)


@dataclass(slots=True)
class Summary:
    """Run counts and per-group reducers of a stream of runs (the index-free path)."""

    total: int = 0
    groups: GroupSet = field(default_factory=lambda: GroupSet(1))

    def add(self, run: Run, position: int = -1) -> None:
        """Count ``run``; ``position`` stands in for the offset of a run that was never written."""
        self.total += 1
        group = self.groups.group(group_key(run))
        group.runs += 1
        seq = run.offset if run.offset >= 0 else max(position, 0)
        block = seq >> BLOCK_SHIFT
        for name, value in run.metrics.items():
            group.add(name, value, block, seq, run.run_id)
        declared = declared_modes(run.get("directions"))
        for name, mode in declared.items():
            group.directions.setdefault(name, Counter())[mode] += 1

    @property
    def statuses(self) -> dict[str, int]:
        return dict(self.groups.statuses())


def summarize(runs: Iterable[Run]) -> Summary:
    """Fold a stream of runs into a :class:`Summary`."""
    summary = Summary()
    for seq, run in enumerate(runs):
        summary.add(run, seq)
    return summary


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


def summary_dict(groups: GroupSet, scope: frozenset[str] | None, corrupt: int) -> dict[str, object]:
    """The public shape of a summary (what ``--json`` prints), from any read's groups.

    ``total_runs`` and ``statuses`` count every run; the metric statistics and best runs cover
    the runs whose status is in ``scope``.  A metric whose direction is unknown (or declared
    both ways) gets no best run and a line in ``warnings``: a guessed best would mislead.
    """
    keys = groups.select(statuses=scope)
    stats = groups.stats(keys)
    metrics: dict[str, object] = {}
    warnings: list[str] = []
    for name in sorted(stats):
        entry = stats[name].to_dict()
        try:
            mode = declared_mode(name, groups.directions(name, keys)) or infer_mode(name)
        except QueryError as exc:
            mode = None
            warnings.append(f"{name}: {exc}")
        else:
            if mode is None and entry["count"]:
                warnings.append(f"{name}: no best shown, the direction is unknown; "
                                f"ask with `exptrack best {name} --max` or `--min`")
        ranked = groups.top(name, mode, 1, keys) if mode is not None else None
        entry["mode"] = mode
        entry["best_run_id"] = ranked[0][2] if ranked else None
        entry["best_value"] = ranked[0][0] if ranked else None
        metrics[name] = entry
    return {
        "total_runs": groups.runs(),
        "corrupt_lines": corrupt,
        "statuses": dict(sorted((k, v) for k, v in groups.statuses().items() if v)),
        "status_scope": describe_scope(scope),
        "ranked_runs": groups.runs(keys),
        "metrics": metrics,
        "warnings": warnings,
    }
