"""Append imported runs through ``log_runs``, once each: the part every importer shares.

Idempotence rests on identity, not on remembering imports: each source run maps to one fixed
exptrack run id, and the store refuses an id it already holds (deleted runs included: a user who
deleted an imported run does not want it back) with ``DuplicateRunError`` naming every such id of
a batch, checked again under the lock.  The batch is then appended without them, so a re-import
and two imports of one source running at once both write each run exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from exptrack.errors import DuplicateRunError
from exptrack.importers._common import ImportedRun, ImportResult, Skipped

if TYPE_CHECKING:
    from exptrack.tracker import ExperimentTracker

logger = logging.getLogger(__name__)

BATCH = 256  # runs per log_runs call: one lock acquisition each, bounded memory for big sources


def write_runs(
    tracker: ExperimentTracker, runs: Iterable[ImportedRun | Skipped], *, source: str, warnings: list[str]
) -> ImportResult:
    """Append the runs not yet in the store, in batches; return what happened to each."""
    seen: set[str] = set()
    imported: list[str] = []
    existing: list[str] = []
    skipped: list[tuple[str, str]] = []
    experiments: set[str] = set()
    batch: list[ImportedRun] = []
    for item in runs:
        if isinstance(item, Skipped):
            skipped.append((item.source_id, item.reason))
            continue
        if item.run_id in seen:
            continue  # a source listing one run twice imports it once
        seen.add(item.run_id)
        experiments.add(item.experiment)
        batch.append(item)
        if len(batch) >= BATCH:
            _flush(tracker, batch, imported, existing)
    _flush(tracker, batch, imported, existing)
    for warning in warnings:
        logger.warning("import of %s: %s", source, warning)
    return ImportResult(
        source=source,
        imported=tuple(imported),
        existing=tuple(existing),
        skipped=tuple(skipped),
        experiments=tuple(sorted(experiments)),
        warnings=tuple(warnings),
    )


def _flush(tracker: ExperimentTracker, batch: list[ImportedRun], imported: list[str], existing: list[str]) -> None:
    while batch:
        try:
            tracker.log_runs([_item(run) for run in batch])
        except DuplicateRunError as exc:
            # imported before, or by an import of the same source running now: those stay as they are
            taken = set(exc.run_ids) & {run.run_id for run in batch}
            if not taken:
                raise
            existing.extend(run.run_id for run in batch if run.run_id in taken)
            batch[:] = [run for run in batch if run.run_id not in taken]
            continue
        imported.extend(run.run_id for run in batch)
        batch.clear()


def _item(run: ImportedRun) -> dict[str, Any]:
    """The ``log_runs`` item for one imported run."""
    item: dict[str, Any] = {
        "run_id": run.run_id,
        "timestamp": run.timestamp,
        "status": run.status,
        "name": run.name,
        "experiment": run.experiment,
        "params": run.params,
        "metrics": run.metrics,
        "tags": run.tags,
        "extra": {"source": run.source, **({"note": run.note} if run.note else {})},
    }
    if run.history:
        item["history"] = run.history
    if run.directions:
        item["directions"] = run.directions
    return item
