"""The exception hierarchy: one base class, each error also the stdlib class a caller would catch.

Every error carries its data as attributes and survives pickling, because errors raised in a
worker process of a parallel search travel back to the parent through ``multiprocessing``.
"""

from __future__ import annotations

import errno as errno_codes
import os
from collections.abc import Sequence

_MAX_MESSAGE = 1000


class ExptrackError(Exception):
    """Base class of every error exptrack raises on purpose."""


class Pruned(Exception):
    """Raise inside ``with tracker.start_run() as run:`` to end the run as ``pruned``.

    A pruned run stopped early on purpose (a hyperparameter trial cut by a pruner, early
    stopping): it is recorded with its metrics so far and status ``pruned``, and the exception
    ends the block without propagating, as a normal end would.  ``run.prune()`` does the same
    without an exception.  The message, if any, is kept as ``pruned.reason`` in the record.
    """


class InvalidRecordError(ExptrackError, ValueError):
    """A run cannot be stored as given; nothing was written.

    Attributes:
        field: dotted key path of the offending value (``params.model``), or ``""``.
    """

    def __init__(self, message: str, field: str = "") -> None:
        if len(message) > _MAX_MESSAGE:  # a key path or value quoted in full could be megabytes
            message = message[: _MAX_MESSAGE - 3] + "..."
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[type[InvalidRecordError], tuple[str, str]]:
        return (type(self), (str(self), self.field))


class MissingMetricError(InvalidRecordError):
    """A run lacks a metric the tracker was told to require; nothing was written."""

    def __init__(self, missing: Sequence[str]) -> None:
        names = ", ".join(missing)
        super().__init__(
            f"run is missing required metric(s): {names}; log them or drop them from required_metrics",
            field="metrics." + missing[0] if missing else "metrics",
        )
        self.missing = tuple(missing)

    def __reduce__(self) -> tuple[type[MissingMetricError], tuple[tuple[str, ...]]]:  # type: ignore[override]
        return (type(self), (self.missing,))


class QueryError(ExptrackError, ValueError):
    """A query cannot be answered as asked (mode unknown, bad sort key...)."""


class FilterSyntaxError(QueryError):
    """A ``where`` expression does not parse; ``position`` is the 0-based offending offset."""

    def __init__(self, message: str, expression: str = "", position: int = 0) -> None:
        self.expression = expression
        self.position = position
        detail = message
        if expression:
            detail = f"{message} at position {position}\n  {expression}\n  {' ' * position}^"
        super().__init__(detail)
        self.reason = message

    def __reduce__(self) -> tuple[type[FilterSyntaxError], tuple[str, str, int]]:
        return (type(self), (self.reason, self.expression, self.position))


class CorruptStoreError(ExptrackError, ValueError):
    """Raised in strict mode when the log holds a line that is not a valid run."""


class ArtifactIntegrityError(ExptrackError, ValueError):
    """A stored artifact's bytes no longer match the sha256 recorded for them."""


class LockTimeoutError(ExptrackError, TimeoutError):
    """The store's lock was not acquired within the timeout; nothing was written.

    Attributes:
        lock_path: the lock file that could not be taken.
        timeout: seconds waited.
        holder: ``"pid 123 on host"`` as last recorded by the holder, or ``""``.
    """

    def __init__(self, lock_path: str, timeout: float, holder: str = "") -> None:
        held = f" (held by {holder})" if holder else ""
        super().__init__(
            f"could not acquire lock {lock_path} within {timeout:g} s{held}; another exptrack "
            "writer is still busy or hung. Raise EXPTRACK_LOCK_TIMEOUT or stop that process."
        )
        self.lock_path = lock_path
        self.timeout = timeout
        self.holder = holder

    def __reduce__(self) -> tuple[type[LockTimeoutError], tuple[str, float, str]]:
        return (type(self), (self.lock_path, self.timeout, self.holder))


class StorageError(ExptrackError, OSError):
    """The file system refused an operation (disk full, read-only, I/O error).

    It is an ``OSError`` with ``errno``, ``strerror`` and ``filename`` set, so callers that already
    handle ``OSError`` keep working; the message says what was being done when it failed.
    """

    def __init__(self, err: int, action: str, path: str | os.PathLike[str]) -> None:
        strerror = os.strerror(err) if err else "unknown error"
        super().__init__(err, strerror, os.fspath(path))
        self.action = action
        self.hint = _HINTS.get(err, "")

    def __str__(self) -> str:
        text = f"cannot {self.action} {self.filename}: {self.strerror} [errno {self.errno}]"
        return f"{text}; {self.hint}" if self.hint else text

    def __reduce__(self) -> tuple[type[StorageError], tuple[int, str, str]]:
        return (type(self), (self.errno or 0, self.action, self.filename))


class PartialBatchError(StorageError):
    """``log_runs`` failed part-way (a full disk): the runs in ``appended`` are in the log, the
    others are not, so a retry of the rest never duplicates a run.

    Attributes:
        appended: run ids written completely, in batch order (a prefix of the batch).
        total: how many runs the batch held.
    """

    def __init__(self, err: int, path: str | os.PathLike[str], appended: Sequence[str], total: int) -> None:
        super().__init__(err, "append to the run log", path)
        self.appended = tuple(appended)
        self.total = total

    def __str__(self) -> str:
        return (f"{super().__str__()}; {len(self.appended)} of {self.total} runs of the batch were appended "
                "(their ids are in .appended): retry only the others")

    def __reduce__(self) -> tuple[type[PartialBatchError], tuple[int, str, tuple[str, ...], int]]:  # type: ignore[override]
        return (type(self), (self.errno or 0, self.filename, self.appended, self.total))


_HINTS = {
    errno_codes.ENOSPC: "the disk is full: free space and retry, nothing acknowledged was lost",
    errno_codes.EDQUOT: "the disk quota is exhausted: free space and retry",
    errno_codes.EFBIG: "the file size limit (ulimit -f) was reached",
    errno_codes.EROFS: "the store is on a read-only file system: it can be queried, not written",
    errno_codes.EACCES: "permission denied: check the store directory's owner and mode",
    errno_codes.EPERM: "permission denied: check the store directory's owner and mode",
    errno_codes.EIO: "the device reported an I/O error: check the disk before trusting new writes",
}


class RunNotFoundError(ExptrackError, LookupError):
    """No run matches the given id (or id prefix)."""

    def __init__(self, run_id: str, message: str = "") -> None:
        super().__init__(message or f"no run with id {run_id!r}")
        self.run_id = run_id

    def __reduce__(self) -> tuple[type[RunNotFoundError], tuple[str, str]]:
        return (type(self), (self.run_id, str(self)))


class NoRunsError(ExptrackError, LookupError):
    """The question needs runs (or runs with a given metric) and there are none."""


class UnknownMetricError(NoRunsError):
    """No run has the requested metric; ``suggestions`` holds the closest known names."""

    def __init__(self, metric: str, known: Sequence[str] = ()) -> None:
        import difflib

        close = difflib.get_close_matches(metric, list(known), n=3, cutoff=0.6)
        guess = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        shown = ", ".join(list(known)[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "")
        listed = f" (known metrics: {shown})" if known else " (no run has any metric)"
        super().__init__(f"unknown metric {metric!r}{guess}{listed}")
        self.metric = metric
        self.known = tuple(known)
        self.suggestions = tuple(close)

    def __reduce__(self) -> tuple[type[UnknownMetricError], tuple[str, tuple[str, ...]]]:
        return (type(self), (self.metric, self.known))


class DuplicateRunError(InvalidRecordError):
    """A run id given to ``log_run`` / ``log_runs`` is already in the store; nothing was written."""

    def __init__(self, run_ids: Sequence[str]) -> None:
        self.run_ids = tuple(run_ids)
        shown = ", ".join(self.run_ids[:5]) + (f" and {len(self.run_ids) - 5} more" if len(self.run_ids) > 5 else "")
        super().__init__(f"run id(s) already in the store: {shown}; nothing was written", "run_id")

    def __reduce__(self) -> tuple[type[DuplicateRunError], tuple[tuple[str, ...]]]:  # type: ignore[override]
        return (type(self), (self.run_ids,))


class ImportSourceError(ExptrackError, ValueError):
    """A source given to an importer cannot be read as that tool's store; nothing was imported.

    Attributes:
        source: the source as given (path, URI or storage URL).
        reason: why it cannot be read, and what to pass instead where that helps.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"cannot import {source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self) -> tuple[type[ImportSourceError], tuple[str, str]]:
        return (type(self), (self.source, self.reason))
