"""exptrack: a file-based experiment tracker that many processes can write to at once.

Every run is one checksummed JSON line appended to ``<store>/runs.jsonl`` under a lock; the file
is the only source of truth, readable by jq, DuckDB or pandas as it is.
"""

from .errors import (
    ArtifactIntegrityError,
    CorruptStoreError,
    ExptrackError,
    FilterSyntaxError,
    InvalidRecordError,
    LockTimeoutError,
    MissingMetricError,
    NoRunsError,
    QueryError,
    RunNotFoundError,
    StorageError,
    UnknownMetricError,
)
from .index import IndexStats
from .record import Run
from .scan import CorruptLine
from .tracker import ExperimentTracker

__all__ = [
    "ArtifactIntegrityError",
    "CorruptLine",
    "CorruptStoreError",
    "ExperimentTracker",
    "ExptrackError",
    "FilterSyntaxError",
    "IndexStats",
    "InvalidRecordError",
    "LockTimeoutError",
    "MissingMetricError",
    "NoRunsError",
    "QueryError",
    "Run",
    "RunNotFoundError",
    "StorageError",
    "UnknownMetricError",
]

__version__ = "0.1.0"
