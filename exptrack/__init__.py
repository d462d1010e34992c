"""exptrack: a file-based experiment tracker that many processes can write to at once.

Every run is one checksummed JSON line appended to ``<store>/runs.jsonl`` under a lock; the file
is the only source of truth, readable by jq, DuckDB or pandas as it is.
"""

from typing import TYPE_CHECKING, Any

from exptrack.errors import (
    ArtifactIntegrityError,
    CorruptStoreError,
    DuplicateRunError,
    ExptrackError,
    FilterSyntaxError,
    ImportSourceError,
    InvalidRecordError,
    LockTimeoutError,
    MissingMetricError,
    NoRunsError,
    PartialBatchError,
    Pruned,
    QueryError,
    RunNotFoundError,
    StorageError,
    UnknownMetricError,
)

if TYPE_CHECKING:
    from exptrack.store.index.identity import IndexStats
    from exptrack.store.record import CorruptLine, Run
    from exptrack.tracker import ExperimentTracker

# The facade and the record types are imported on first use (PEP 562): `exptrack --help` and
# tools that only need the errors do not pay for the store, the lock library or the reader.
_LAZY = {
    "ExperimentTracker": "exptrack.tracker",
    "Run": "exptrack.store.record",
    "CorruptLine": "exptrack.store.record",
    "IndexStats": "exptrack.store.index.identity",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'exptrack' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ArtifactIntegrityError",
    "CorruptLine",
    "CorruptStoreError",
    "DuplicateRunError",
    "ExperimentTracker",
    "ExptrackError",
    "FilterSyntaxError",
    "ImportSourceError",
    "IndexStats",
    "InvalidRecordError",
    "LockTimeoutError",
    "MissingMetricError",
    "NoRunsError",
    "PartialBatchError",
    "Pruned",
    "QueryError",
    "Run",
    "RunNotFoundError",
    "StorageError",
    "UnknownMetricError",
]

__version__ = "0.1.0"
