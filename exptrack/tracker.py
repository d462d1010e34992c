"""``ExperimentTracker``: owns one store directory and wires the log, reader and queries together.

The facade stays thin: validation lives in ``record``, bytes in ``codec``, the locked append in
``journal``, reading in ``scan`` and the answers in ``query``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import codec, fastscan
from ._markers import capture_file, process_alive, recovered_extra
from .artifacts import ArtifactStore
from .errors import (
    CorruptStoreError,
    InvalidRecordError,
    NoRunsError,
    RunNotFoundError,
    StorageError,
    UnknownMetricError,
)
from .fastscan import TOP_K
from .index import IndexStats, LogIndex, StaleIndexError, read_run_at
from .journal import Journal
from .logs import attach_store_log
from .query import Mode, infer_mode, resolve_mode, summarize, summary_dict, top_runs
from .record import Run, build_run
from .run import ActiveRun, MetricHistory, read_history
from .scan import CorruptLine, LogScan, line_length

if TYPE_CHECKING:
    import pandas as pd

    from .sql import Rows

logger = logging.getLogger(__name__)

RUNS_FILE = "runs.jsonl"
Where = str | Callable[[Mapping[str, Any]], bool] | None
_LOG_RUN_KEYS = frozenset({"params", "metrics", "tags", "status", "extra"})


class ExperimentTracker:
    """A store of experiment runs in one directory, safe to share between processes.

    Args:
        path: the store directory; created (with parents) if missing.
        durable: ``fsync`` after every append (default).  ``False`` only flushes to the OS:
            a power loss may drop the last runs, a process crash never does.
        required_metrics: metrics every logged run must have; a run lacking one is refused.
        lock_timeout: seconds to wait for the store's lock before ``LockTimeoutError``;
            default ``EXPTRACK_LOCK_TIMEOUT`` or 60.
        strict: raise ``CorruptStoreError`` on the first corrupt line instead of skipping it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "experiments",
        *,
        durable: bool = True,
        required_metrics: Sequence[str] = (),
        lock_timeout: float | None = None,
        strict: bool = False,
    ) -> None:
        if isinstance(required_metrics, str):
            required_metrics = (required_metrics,)
        self.store = Path(path)
        self.runs_path = self.store / RUNS_FILE
        self.required_metrics = tuple(required_metrics)
        self.strict = strict
        try:
            self.store.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(exc.errno or 0, "create the store directory", self.store) from exc
        attach_store_log(str(self.store))
        self._log_extra = {"store": os.path.abspath(self.store)}
        self._journal = Journal(str(self.runs_path), durable=durable, lock_timeout=lock_timeout)
        self._run_log_level = logging.INFO if durable else logging.DEBUG
        self._artifacts: ArtifactStore | None = None
        self._reported: set[int] = set()
        self.last_corrupt: list[CorruptLine] = []
        self._index: LogIndex | None = None
        self.last_unchecked = 0  # valid runs without a checksum seen by the last complete scan

    @property
    def durable(self) -> bool:
        return self._journal.durable

    def close(self) -> None:
        """Release the log's descriptors (they are reopened on the next write)."""
        self._journal.close()

    def __enter__(self) -> ExperimentTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ExperimentTracker({str(self.store)!r}, durable={self.durable})"

    # -- writing -------------------------------------------------------------------------------

    def log_run(
        self,
        params: Mapping[str, object] | None = None,
        metrics: Mapping[str, object] | None = None,
        tags: Sequence[str] | Mapping[str, object] | None = None,
        *,
        status: str = "finished",
        extra: Mapping[str, object] | None = None,
    ) -> Run:
        """Validate, encode and append one run; return it as stored (with ``run_id``, ``timestamp``).

        Raises:
            InvalidRecordError: a value cannot be stored (the message names its key path).
            MissingMetricError: a required metric is absent.  Nothing is written in either case.
            LockTimeoutError, StorageError: the append failed; the run is not acknowledged.
        """
        run = build_run(
            params=params, metrics=metrics, tags=tags, status=status, extra=extra,
            required_metrics=self.required_metrics,
        )
        offset = self._journal.append((codec.encode(run),))
        # The per-run line costs ~17 µs, as much as the append itself: in flush-only (throughput)
        # mode it is DEBUG; in durable mode the fsync dwarfs it, so it is INFO.
        if logger.isEnabledFor(self._run_log_level):
            logger.log(self._run_log_level, "logged run %s (%s)", run.run_id, _brief(run), extra=self._log_extra)
        object.__setattr__(run, "offset", offset)  # fresh object, not shared yet
        return run

    def log_runs(self, items: Iterable[Mapping[str, Any]]) -> list[Run]:
        """Append many runs under one lock acquisition; all are validated before any is written.

        Each item is a mapping with ``log_run``'s keyword names (``params``, ``metrics``, ``tags``,
        ``status``, ``extra``).  Either every run is appended or (on a validation error) none.
        """
        runs: list[Run] = []
        lines: list[bytes] = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise InvalidRecordError(f"item {i} is a {type(item).__name__}, not a mapping", f"[{i}]")
            unknown = set(item) - _LOG_RUN_KEYS
            if unknown:
                raise InvalidRecordError(
                    f"item {i} has unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                    f"expected {', '.join(sorted(_LOG_RUN_KEYS))}",
                    f"[{i}]",
                )
            try:
                run = build_run(**item, required_metrics=self.required_metrics)
            except InvalidRecordError as exc:
                exc.args = (f"item {i}: {exc}",)
                raise
            runs.append(run)
            lines.append(codec.encode(run))
        if not lines:
            return []
        offset = self._journal.append(lines)
        logger.info("logged %d runs in one batch", len(runs), extra=self._log_extra)
        for run, line in zip(runs, lines):
            object.__setattr__(run, "offset", offset)  # fresh objects, not shared yet
            offset += len(line)
        return runs

    # -- reading -------------------------------------------------------------------------------

    def scan(self, *, final: bool | None = None) -> Iterator[Run | CorruptLine]:
        """Every line of the log as a run or a ``CorruptLine``, duplicates reported (first wins).

        ``final`` decides whether an unterminated last line is reported as torn (True) or left
        pending (False); by default it is torn only when no writer holds the lock.
        """
        index = self._indexed()
        if index is None:
            yield from self._scan_without_index(final)
            return
        # The index already knows which lines repeat an earlier run id: the scan needs no set of
        # every id (memory stays constant), and it reads the same snapshot the index describes.
        duplicates = {c.offset: c for c in index.corrupt if c.reason.startswith("duplicate run_id")}
        scan = LogScan(str(self.runs_path), end=index.size_seen)
        for item in scan:
            if duplicates and type(item) is Run and item.offset in duplicates:
                yield duplicates[item.offset]
            else:
                yield item
        self.last_unchecked = index.unchecked
        if scan.pending and (final if final is not None else self._tail_is_stable(scan)):
            yield CorruptLine(scan.lines + 1, scan.end_offset, scan.pending, "torn tail (unterminated last line)")

    def _scan_without_index(self, final: bool | None) -> Iterator[Run | CorruptLine]:
        """The reader of last resort (the index failed): duplicates found with a set of ids."""
        scan = LogScan(str(self.runs_path))
        seen: dict[str, int] = {}
        for item in scan:
            if type(item) is Run:
                first = seen.setdefault(item.run_id, scan.lines)
                if first == scan.lines:
                    yield item
                    continue
                yield CorruptLine(
                    scan.lines,
                    item.offset,
                    line_length(scan.path, item.offset),
                    f"duplicate run_id {item.run_id} (first at line {first})",
                )
                continue
            yield item
        self.last_unchecked = scan.unchecked
        if scan.pending and (final if final is not None else self._tail_is_stable(scan)):
            yield CorruptLine(scan.lines + 1, scan.end_offset, scan.pending, "torn tail (unterminated last line)")

    def runs(self, *, where: Where = None) -> Iterator[Run]:
        """Valid runs in log order; corrupt lines are skipped, logged and kept in ``last_corrupt``."""
        predicate = _compile(where)
        corrupt: list[CorruptLine] = []
        self.last_corrupt = corrupt
        for item in self.scan():
            if type(item) is Run:
                if predicate is None or predicate(item):
                    yield item
            else:
                self._report(item)  # type: ignore[arg-type]
                corrupt.append(item)  # type: ignore[arg-type]

    def get_run(self, run_id: str) -> Run:
        """The run with this id, or the only run whose id starts with it.

        Raises:
            RunNotFoundError: no run matches, or a prefix matches several.
        """
        if not run_id:
            raise RunNotFoundError(run_id, "an empty run id matches nothing")
        index = self._indexed()
        if index is not None:
            try:
                return self._get_indexed(index, run_id)
            except StaleIndexError as exc:
                self._index_failed(exc)
        matches: list[Run] = []
        for run in self.runs():
            if run.run_id == run_id:
                return run
            if run.run_id.startswith(run_id):
                matches.append(run)
        return _only_match(run_id, matches)

    def best_run(self, metric: str, mode: str | None = None, *, where: Where = None) -> Run:
        """The run with the best finite value of ``metric`` (earliest run wins a tie).

        Raises:
            QueryError: ``mode`` is neither given nor inferable from the metric's name.
            NoRunsError / UnknownMetricError (both ``LookupError``): nothing to rank.
        """
        return self.top_runs(metric, 1, mode=mode, where=where)[0]

    def top_runs(self, metric: str, k: int = 10, *, mode: str | None = None, where: Where = None) -> list[Run]:
        """The ``k`` best runs by ``metric``, best first; see :meth:`best_run`."""
        chosen = resolve_mode(metric, mode)
        if k < 1:
            raise InvalidRecordError(f"k must be at least 1, not {k}", "k")
        if where is not None and k <= TOP_K:
            index = self._filtered(where)  # the filtered runs' own index: one parallel scan
        elif where is None:
            index = self._indexed()
        else:
            index = None
        if index is not None:
            entries = index.top(metric, chosen, k)
            if entries is not None:
                try:
                    ranked = [self._read_indexed(offset, run_id) for _, offset, run_id in entries]
                except StaleIndexError as exc:
                    self._index_failed(exc)
                else:
                    if not ranked:
                        if not index.runs:
                            raise NoRunsError(f"no runs{' matching the filter' if where else ''} in {self.store}")
                        raise UnknownMetricError(metric, sorted(index.folds))
                    return ranked
        result = top_runs(self.runs(where=where), metric, k, chosen)
        if not result:
            self._raise_nothing_to_rank(metric, where)
        return result

    def summary(self, *, where: Where = None) -> dict[str, Any]:
        """Total runs, corrupt lines, runs per status and per-metric count/min/max/mean/std/best."""
        full = self._indexed()
        index = full if where is None else self._filtered(where)
        if full is not None and index is not None:
            corrupt = self._indexed_corrupt(full)
            self.last_corrupt = corrupt
            best: dict[str, tuple[Mode, str, float]] = {}
            for name in index.folds:
                mode = infer_mode(name)
                entries = index.top(name, mode, 1) if mode is not None else None
                if mode is not None and entries:
                    value, _, run_id = entries[0]
                    best[name] = (mode, run_id, value)
            result = summary_dict(index.runs, index.statuses, index.metric_stats(), best, len(corrupt))
            result["unchecked_runs"] = full.unchecked
            return result
        summary, best = summarize(self.runs(where=where))
        stats = {name: fold.stats() for name, fold in summary.metrics.items()}
        result = summary_dict(summary.total, summary.statuses, stats, best, len(self.last_corrupt))
        result["unchecked_runs"] = self.last_unchecked
        return result

    def corrupt_lines(self) -> list[CorruptLine]:
        """Every line of the log that is not a valid run, with line number, offset and reason."""
        index = self._indexed()
        if index is not None:
            return self._indexed_corrupt(index)
        return [item for item in self.scan() if type(item) is CorruptLine]

    def to_pandas(self, where: Where = None) -> pd.DataFrame:
        """The runs (those matching ``where``) as a pandas DataFrame, one row per run.

        Columns: ``run_id``, ``timestamp``, ``status``, ``tags``, then ``metrics.<name>``
        (``float64``; NaN where a run lacks the metric) and ``params.<name>`` (nested params
        flattened to dotted names), as ``exptrack export --format csv`` writes them.

        Raises:
            MissingDependencyError (an ``ImportError``): pandas is not installed.
        """
        from .export import to_pandas

        return to_pandas(self.runs(where=where))

    def sql(self, query: str) -> Rows:
        """Answer a DuckDB SQL ``query`` over a ``runs`` view of this tracker's runs.

        The view holds the merged, non-deleted runs with typed columns (``run_id``, ``name``,
        ``experiment``, ``status``, ``timestamp``, ``params`` and ``metrics`` structs, ``tags``);
        see :mod:`exptrack.sql`.  Rows are tuples that also answer ``row["column"]``.

        Raises:
            QueryError: the SQL does not parse or cannot run.
            MissingDependencyError (an ``ImportError``): DuckDB is not installed (``exptrack[sql]``).
        """
        from .sql import run_sql

        return run_sql(self.runs(), query)

    # -- the index -----------------------------------------------------------------------------

    def refresh_index(self, progress: Callable[[int, int], None] | None = None) -> IndexStats:
        """Bring the index (``<store>/.index``) up to date with the log and describe it.

        Queries do this themselves; calling it first lets a caller show progress for a long
        first read: ``progress(bytes_done, bytes_total)`` is called as the log is read.
        """
        index = self._indexed(progress)
        if index is None:
            raise StorageError(0, "index", self.store / ".index")
        return index.stats()

    def index_stats(self) -> IndexStats:
        """What the index holds now (watermark, runs, corrupt lines...), without refreshing it."""
        if self._index is None:
            self._index = LogIndex(self.store, self.runs_path)
        return self._index.stats()

    def _indexed(self, progress: Callable[[int, int], None] | None = None) -> LogIndex | None:
        """The index, refreshed; None if it cannot be used (queries then scan the log)."""
        index = self._index
        if index is None:
            index = self._index = LogIndex(self.store, self.runs_path)
        try:
            new = index.refresh(progress)
        except (OSError, StaleIndexError) as exc:
            logger.warning("cannot use the index of %s (%s); scanning the log", self.runs_path, exc,
                           extra=self._log_extra)
            self._index = None
            return None
        for item in new:
            self._report(item)
        if self.strict and index.corrupt:
            raise CorruptStoreError(f"{self.runs_path}: {index.corrupt[0]}")
        return index

    def _filtered(self, where: Where) -> LogIndex | None:
        """best / top / summary of the runs ``where`` accepts, read on every core.

        Every line up to the index's watermark is decoded and tested (a filter may read any
        field); duplicates are the index's.  None when the index is unusable.
        """
        index = self._indexed()
        predicate = _compile(where)
        if index is None or predicate is None:
            return index
        exclude = {c.offset: c.reason for c in index.corrupt if c.reason.startswith("duplicate run_id")}
        segment = fastscan.scan_parallel(str(self.runs_path), 0, index.watermark, exclude=exclude,
                                         predicate=predicate)
        return LogIndex.of_segment(segment)

    def _index_failed(self, exc: Exception) -> None:
        logger.warning("the index of %s disagrees with the log (%s); rebuilding it", self.runs_path, exc,
                       extra=self._log_extra)
        if self._index is not None:
            self._index.invalidate()

    def _indexed_corrupt(self, index: LogIndex) -> list[CorruptLine]:
        corrupt = list(index.corrupt)
        pending = index.size_seen - index.watermark
        if pending > 0 and self._tail_is_stable_at(index.watermark, pending):
            corrupt.append(CorruptLine(index.lines + 1, index.watermark, pending, "torn tail (unterminated last line)"))
            self._report(corrupt[-1])
        return corrupt

    def _read_indexed(self, offset: int, run_id: str) -> Run:
        run = read_run_at(str(self.runs_path), offset)
        if run.run_id != run_id:
            raise StaleIndexError(f"the line at byte {offset} holds run {run.run_id}, not {run_id}")
        return run

    def _get_indexed(self, index: LogIndex, run_id: str) -> Run:
        for offset in index.offsets_of(run_id):
            run = read_run_at(str(self.runs_path), offset)
            if run.run_id == run_id:
                return run  # the line itself says so: no need to trust the id map
        # "not found" or a prefix answer rests on the id map being whole: check it once
        index.verify("hash", "off", "pos", "ids")
        matches = [read_run_at(str(self.runs_path), offset) for offset in index.prefix_offsets(run_id, 6)]
        if any(not run.run_id.startswith(run_id) for run in matches):
            raise StaleIndexError(f"the id map disagrees with the log for prefix {run_id!r}")
        return _only_match(run_id, matches)

    # -- live runs, artifacts and recovery ------------------------------------------------------

    @property
    def artifact_store(self) -> ArtifactStore:
        """The store's content-addressed blobs (``<store>/artifacts``)."""
        if self._artifacts is None:
            self._artifacts = ArtifactStore(self.store / "artifacts")
        return self._artifacts

    def start_run(
        self,
        params: Mapping[str, object] | None = None,
        *,
        tags: Sequence[str] | Mapping[str, object] | None = None,
        data: Sequence[str | os.PathLike[str]] | str | os.PathLike[str] | None = None,
        seed: object = None,
        capture: bool | Sequence[str] = True,
        name: str | None = None,
    ) -> ActiveRun:
        """A run that records what made its result; use it as ``with tracker.start_run(...) as run``.

        Args:
            params: the run's parameters (more with ``run.log_param``).
            tags: tags, as for :meth:`log_run`; ``name`` adds a ``name=...`` tag.
            data: files or directories the run reads; their content fingerprints are recorded
                (sha256 per file, one tree hash, DVC's md5 when a ``.dvc``/``dvc.lock`` names them).
            seed: the random seed(s) the run uses (an int or a mapping of named seeds).
            capture: ``True`` for everything, ``False`` for nothing, or a subset of
                ``("code", "system", "packages", "invocation", "data")``.  No part can fail the run.
        """
        return ActiveRun(self, params=params, tags=tags, data=data, seed=seed, capture=capture, name=name)

    def load_artifact(self, run_id: str, name: str) -> bytes:
        """An artifact's bytes, verified against its sha256 (``pickle.loads`` them for a model).

        Raises:
            RunNotFoundError: no such run, or the run has no artifact ``name``.
            ArtifactIntegrityError: the stored bytes no longer match the recorded hash.
        """
        return self.artifact_store.read_bytes(self._artifact_ref(run_id, name))

    def fetch_artifact(
        self, run_id: str, name: str, dest: str | os.PathLike[str], *, overwrite: bool = False
    ) -> Path:
        """Copy a run's artifact to ``dest`` (a file, or a directory to put ``name`` in), verified.

        Missing parent directories of ``dest`` are created.

        Raises:
            RunNotFoundError: no such run, or the run has no artifact ``name``.
            ArtifactIntegrityError: the stored bytes no longer match the recorded hash; ``dest``
                is left untouched.
            StorageError: ``dest`` exists and ``overwrite`` is false, or it cannot be written.
        """
        sha256 = self._artifact_ref(run_id, name)
        target = Path(dest)
        if not target.is_dir():
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(exc.errno or 0, "fetch artifact to", target) from exc
        return self.artifact_store.fetch(sha256, target, overwrite=overwrite, name=name)

    def artifacts(self, run_id: str) -> dict[str, dict[str, Any]]:
        """``name -> {"sha256", "size"}`` for a run's artifacts."""
        listed = self.get_run(run_id).extra.get("artifacts") or {}
        return {str(k): dict(v) for k, v in listed.items()}

    def history(self, run_id: str, metric: str | None = None) -> list[dict[str, Any]]:
        """The step points a live run logged (``name``, ``step``, ``value``, ``time``), in order."""
        run = self.get_run(run_id)
        points = read_history(self.store / "history" / f"{run.run_id}.jsonl")
        return [p for p in points if metric is None or p.get("name") == metric]

    def packages(self, run: Run) -> dict[str, str] | None:
        """The installed packages recorded with a run (kept once per distinct environment)."""
        system = run.extra.get("system") or {}
        blob = system.get("packages_sha256") if isinstance(system, Mapping) else None
        if not isinstance(blob, str) or not self.artifact_store.exists(blob):
            return None
        text = self.artifact_store.read_bytes(blob).decode("utf-8")
        return dict(line.split("==", 1) for line in text.splitlines() if "==" in line)

    def recover(self) -> list[Run]:
        """Log as ``killed`` every live run whose process died without finishing (SIGKILL, power loss).

        A run leaves a marker in ``<store>/active`` while it lives; a marker whose pid no longer
        exists on this host is claimed (by an atomic rename, so two recovering processes never log
        it twice) and turned into a record with the params, tags, capture and artifacts the marker
        held and the metric history it had.  A run whose line is already in the log (its process
        died between the append and removing the marker) is not logged again.
        """
        recovered: list[Run] = []
        active = self.store / "active"
        host = socket.gethostname()
        logged: set[str] | None = None  # run ids in the log, read only if a marker is claimed
        for marker in sorted(active.glob("*.json")) if active.is_dir() else ():
            try:
                info = codec.loads(marker.read_bytes())
            except (OSError, ValueError):
                continue
            if info.get("host") != host or process_alive(int(info.get("pid", 0)), info.get("process")):
                continue
            claimed = marker.with_suffix(f".recovering-{os.getpid()}")
            try:
                os.rename(marker, claimed)
            except OSError:
                continue  # another process claimed it
            run_id = str(info["run_id"])
            if logged is None:
                logged = {run.run_id for run in self.runs()}
            if run_id in logged:
                claimed.unlink(missing_ok=True)
                capture_file(self.store, run_id).unlink(missing_ok=True)
                continue
            history: dict[str, MetricHistory] = {}
            metrics: dict[str, float] = {}
            for point in read_history(self.store / "history" / f"{run_id}.jsonl"):
                try:
                    name, value, step = str(point["name"]), float(point["value"]), int(point["step"])
                except (KeyError, TypeError, ValueError):
                    continue  # a line that parses but is not a point: keep the rest
                history.setdefault(name, MetricHistory()).add(value, step)
                metrics[name] = value
            extra = recovered_extra(self.store, info)
            died = f"pid {info.get('pid')} ended without finishing the run"
            extra["error"] = {"type": "ProcessDied", "message": died}
            if history:
                extra["history"] = {name: h.to_dict() for name, h in history.items()}
            try:
                recovered.append(self._append_run(
                    run_id=run_id, timestamp=str(info.get("timestamp") or ""), params=info.get("params") or {},
                    metrics=metrics, tags=info.get("tags") or [], status="killed", extra=extra,
                ))
            except BaseException:
                os.replace(claimed, marker)  # not logged: leave it for the next recover()
                raise
            claimed.unlink(missing_ok=True)
            capture_file(self.store, run_id).unlink(missing_ok=True)
        return recovered

    def _append_run(self, **fields: Any) -> Run:
        run = build_run(**fields)
        offset = self._journal.append((codec.encode(run),))
        logger.info("logged run %s (%s)", run.run_id, _brief(run), extra=self._log_extra)
        object.__setattr__(run, "offset", offset)
        return run

    def _store_packages(self, packages: Mapping[str, str]) -> str:
        text = "".join(f"{name}=={version}\n" for name, version in sorted(packages.items()))
        return self.artifact_store.put_bytes(text.encode("utf-8")).sha256

    def _artifact_ref(self, run_id: str, name: str) -> str:
        listed = self.artifacts(run_id)
        if name not in listed:
            known = ", ".join(sorted(listed)) or "none"
            raise RunNotFoundError(run_id, f"run {run_id} has no artifact {name!r} (artifacts: {known})")
        return str(listed[name]["sha256"])

    # -- internals -----------------------------------------------------------------------------

    def _report(self, item: CorruptLine) -> None:
        if self.strict:
            raise CorruptStoreError(f"{self.runs_path}: {item}")
        if item.offset not in self._reported:
            self._reported.add(item.offset)
            logger.warning("skipped corrupt %s in %s", item, self.runs_path, extra=self._log_extra)

    def _tail_is_stable(self, scan: LogScan) -> bool:
        """An unterminated tail is torn, not pending, when no writer holds the lock right now."""
        return self._tail_is_stable_at(scan.end_offset, scan.pending)

    def _tail_is_stable_at(self, end_offset: int, pending: int) -> bool:
        from ._fs import fs

        try:
            fd = os.open(str(self.runs_path) + ".lock", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # no lock file: no exptrack writer yet, but another tool may be writing
            try:
                return os.stat(self.runs_path).st_size == end_offset + pending
            except OSError:
                return False
        try:
            if not fs().try_lock(fd):
                return False
            fs().unlock(fd)
            return os.stat(self.runs_path).st_size == end_offset + pending
        except OSError:
            return False
        finally:
            os.close(fd)

    def _raise_nothing_to_rank(self, metric: str, where: Where) -> None:
        from .errors import UnknownMetricError

        known: set[str] = set()
        any_run = False
        for run in self.runs(where=where):
            any_run = True
            known.update(run.metrics)
        if not any_run:
            scope = " matching the filter" if where else ""
            raise NoRunsError(f"no runs{scope} in {self.store}")
        raise UnknownMetricError(metric, sorted(known))


def _compile(where: Where) -> Callable[[Mapping[str, Any]], bool] | None:
    if where is None or callable(where):
        return where
    from .where import compile_where

    return compile_where(where)


def _brief(run: Run) -> str:
    metrics = ", ".join(f"{k}={v:.6g}" for k, v in list(run.metrics.items())[:4])
    return f"{run.status}; {metrics}" if metrics else run.status


def _only_match(run_id: str, matches: Sequence[Run]) -> Run:
    """The one run a prefix names, or the error that says none or several do."""
    if len(matches) == 1:
        return matches[0]
    if matches:
        ids = ", ".join(r.run_id for r in matches[:5])
        raise RunNotFoundError(run_id, f"run id prefix {run_id!r} is ambiguous: {ids}")
    raise RunNotFoundError(run_id)
