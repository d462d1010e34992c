"""``ExperimentTracker``: owns one store directory and wires the log, reader and queries together.

The facade stays thin: validation lives in ``record``, bytes in ``codec``, the locked append in
``journal``, reading in ``scan`` and the answers in ``query``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from exptrack.errors import (
    InvalidRecordError,
    PartialBatchError,
    RunNotFoundError,
    StorageError,
)
from exptrack.live.artifacts import ArtifactStore
from exptrack.live.history import read_history
from exptrack.live.recover import recover_runs
from exptrack.live.run import ActiveRun
from exptrack.query.reader import StoreReader
from exptrack.store import codec
from exptrack.store.fsio import make_dirs
from exptrack.store.journal import AppendError, Journal
from exptrack.store.logs import attach_store_log
from exptrack.store.record import Run, build_run, short_repr

logger = logging.getLogger(__name__)

_LOG_RUN_KEYS = frozenset({"params", "metrics", "tags", "status", "extra", "directions"})


class ExperimentTracker(StoreReader):
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
        super().__init__(path, strict=strict)
        self.required_metrics = tuple(required_metrics)
        try:
            make_dirs(self.store)
        except OSError as exc:
            raise StorageError(exc.errno or 0, "create the store directory", self.store) from exc
        attach_store_log(str(self.store))
        self._journal = Journal(str(self.runs_path), durable=durable, lock_timeout=lock_timeout)
        self._run_log_level = logging.INFO if durable else logging.DEBUG
        self._artifacts: ArtifactStore | None = None

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
        directions: Mapping[str, str] | None = None,
    ) -> Run:
        """Validate, encode and append one run; return it as stored (with ``run_id``, ``timestamp``).

        ``status`` is ``finished`` (default), ``failed``, ``killed`` or ``pruned``.  ``directions``
        says which way is better for some metrics (``{"value": "min"}``): ``best_run("value")``
        then ranks without asking (see :meth:`best_run`).

        Raises:
            InvalidRecordError: a value cannot be stored (the message names its key path).
            MissingMetricError: a required metric is absent.  Nothing is written in either case.
            LockTimeoutError, StorageError: the append failed; the run is not acknowledged.
        """
        run, line = codec.build_line(
            params=params, metrics=metrics, tags=tags, status=status, extra=extra,
            required_metrics=self.required_metrics, directions=directions,
        )
        offset = self._journal.append((line,))
        # The per-run line costs ~17 µs, as much as the append itself: in flush-only (throughput)
        # mode it is DEBUG; in durable mode the fsync dwarfs it, so it is INFO.
        if logger.isEnabledFor(self._run_log_level):
            logger.log(self._run_log_level, "logged run %s (%s)", run.run_id, _brief(run), extra=self._log_extra)
        object.__setattr__(run, "offset", offset)  # fresh object, not shared yet
        return run

    def log_runs(self, items: Iterable[Mapping[str, Any]]) -> list[Run]:
        """Append many runs under one lock acquisition; all are validated before any is written.

        Each item is a mapping with ``log_run``'s keyword names (``params``, ``metrics``, ``tags``,
        ``status``, ``extra``, ``directions``).  Either every run is appended or (on a validation error) none.

        Raises:
            InvalidRecordError: an item cannot be stored; nothing was written.
            PartialBatchError: the file system failed part-way (a full disk); ``.appended`` holds
                the ids of the runs that are in the log (the first ones of the batch), so a retry
                of the others never duplicates a run.  Its fragment is fenced by the next append.
            LockTimeoutError, StorageError: nothing was appended.
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
                run, line = codec.build_line(**item, required_metrics=self.required_metrics)
            except InvalidRecordError as exc:
                exc.args = (f"item {i}: {exc}",)
                raise
            runs.append(run)
            lines.append(line)
        if not lines:
            return []
        try:
            offset = self._journal.append(lines)
        except AppendError as exc:
            if exc.written <= 0 or len(lines) == 1:
                raise
            landed, end = [], 0
            for run, line in zip(runs, lines):
                end += len(line)
                if end > exc.written:
                    break
                landed.append(run.run_id)
            raise PartialBatchError(exc.errno or 0, self.runs_path, landed, len(runs)) from exc
        logger.info("logged %d runs in one batch", len(runs), extra=self._log_extra)
        for run, line in zip(runs, lines):
            object.__setattr__(run, "offset", offset)  # fresh objects, not shared yet
            offset += len(line)
        return runs

    # -- reading -------------------------------------------------------------------------------

    # -- the index -----------------------------------------------------------------------------

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
        directions: Mapping[str, str] | None = None,
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
            directions: which way is better for some metrics (``{"loss": "min"}``), stored with
                the run as for :meth:`log_run`.

        The run ends ``finished``, ``failed`` (an exception), ``killed`` (Ctrl-C, SIGTERM) or
        ``pruned`` (``run.prune()`` or ``raise exptrack.Pruned`` in the block).
        """
        return ActiveRun(self, params=params, tags=tags, data=data, seed=seed, capture=capture, name=name,
                         directions=directions)

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
        text = os.fspath(dest)
        target = Path(os.path.abspath(text))  # a bare name ("model.pkl") is in the current directory
        # "dir/" names a directory (created if missing); an existing directory gets the artifact inside
        wants_dir = text.endswith(("/", os.sep)) or (os.altsep is not None and text.endswith(os.altsep))
        try:
            make_dirs(target if wants_dir else target.parent)
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
        return recover_runs(self.store, lambda: {run.run_id for run in self.runs()}, self._append_run)

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
            raise RunNotFoundError(run_id, f"run {run_id} has no artifact {short_repr(name)} (artifacts: {known})")
        return str(listed[name]["sha256"])

    # -- internals -----------------------------------------------------------------------------




def _brief(run: Run) -> str:
    metrics = ", ".join(f"{k}={v:.6g}" for k, v in list(run.metrics.items())[:4])
    return f"{run.status}; {metrics}" if metrics else run.status


