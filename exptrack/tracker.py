"""``ExperimentTracker``: owns one store directory and wires the log, reader and queries together.

The facade stays thin: validation lives in ``record``, bytes in ``codec``, the locked append in
``journal``, reading in ``scan`` and the answers in ``query``.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from exptrack.errors import (
    DuplicateRunError,
    InvalidRecordError,
    PartialBatchError,
    RunNotFoundError,
    StorageError,
)
from exptrack.live.artifacts import ArtifactStore
from exptrack.live.history import history_bytes, history_summary, normalize_history, read_history
from exptrack.live.markers import write_whole
from exptrack.live.recover import recover_runs
from exptrack.live.run import ActiveRun
from exptrack.query.reader import StoreReader, Where
from exptrack.store import codec
from exptrack.store.edits import MAX_RUNS_PER_EDIT, Edit
from exptrack.store.fsio import make_dirs
from exptrack.store.journal import AppendError, Journal
from exptrack.store.logs import StoreLine, attach_store_log
from exptrack.store.names import check_name
from exptrack.store.record import Run, build_run, normalize_tags, normalize_value, short_repr, utc_timestamp

logger = logging.getLogger(__name__)

_LOG_RUN_KEYS = frozenset({"params", "metrics", "tags", "status", "extra", "directions", "run_id", "timestamp",
                           "name", "experiment", "history"})


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
        experiment: log into this experiment and answer queries about its runs only; without
            it runs go to ``"default"`` and queries see every experiment.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "experiments",
        *,
        durable: bool = True,
        required_metrics: Sequence[str] = (),
        lock_timeout: float | None = None,
        strict: bool = False,
        experiment: str | None = None,
    ) -> None:
        if isinstance(required_metrics, str):
            required_metrics = (required_metrics,)
        super().__init__(path, strict=strict, experiment=experiment)
        self.required_metrics = tuple(required_metrics)
        try:
            make_dirs(self.store)
        except OSError as exc:
            raise StorageError(exc.errno or 0, "create the store directory", self.store) from exc
        attach_store_log(str(self.store))
        self._journal = Journal(str(self.runs_path), durable=durable, lock_timeout=lock_timeout)
        # A durable run leaves an INFO line in log.txt (the fsync dwarfs its cost); a flush-only
        # one, logged for throughput, a DEBUG line.
        self._run_log_level = logging.INFO if durable else logging.DEBUG
        self._run_lines = StoreLine(logger, str(self.store))
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
        scope = f", experiment={self.experiment!r}" if self.experiment else ""
        return f"ExperimentTracker({str(self.store)!r}, durable={self.durable}{scope})"

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
        run_id: str | None = None,
        timestamp: str | datetime.datetime | None = None,
        name: str | None = None,
        experiment: str | None = None,
        history: object = None,
    ) -> Run:
        """Validate, encode and append one run; return it as stored (with ``run_id``, ``timestamp``).

        ``status`` is ``finished`` (default), ``failed``, ``killed`` or ``pruned``.  ``directions``
        says which way is better for some metrics (``{"value": "min"}``): ``best_run("value")``
        then ranks without asking (see :meth:`best_run`).

        Args:
            run_id: keep an identity from elsewhere (an importer's source run); letters, digits,
                ``.``, ``_``, ``-``.  An id already in the store (deleted runs included) is refused.
            timestamp: when the run happened (an aware ``datetime`` or ISO 8601 text with a zone).
            name: the run's readable name; one is generated from its id when none is given.
            experiment: the experiment to log into (default: the tracker's, else ``"default"``).
            history: per-step metric points (see :func:`exptrack.live.history.normalize_history`);
                written to the run's history file, summarised on its line, and a metric's last
                point is its value when ``metrics`` does not give one.

        Raises:
            InvalidRecordError: a value cannot be stored (the message names its key path).
            DuplicateRunError: ``run_id`` is already in the store.
            MissingMetricError: a required metric is absent.  Nothing is written in any of these cases.
            LockTimeoutError, StorageError: the append failed; the run is not acknowledged.
        """
        if run_id is None and timestamp is None and name is None and history is None:
            # The common record: codec's C-validated fast path, else its reference walk.
            made = None if directions else codec.new_line(params, metrics, tags, status, extra, self.required_metrics,
                                                          experiment or self.experiment)
            if made is None:
                made = codec.build_line(
                    params=params, metrics=metrics, tags=tags, status=status, extra=extra,
                    required_metrics=self.required_metrics, directions=directions,
                    experiment=experiment or self.experiment,
                )
            run, line = made
            offset = self._journal.append((line,))
        else:
            return self._log_given([{
                "params": params, "metrics": metrics, "tags": tags, "status": status, "extra": extra,
                "directions": directions, "run_id": run_id, "timestamp": timestamp, "name": name,
                "experiment": experiment, "history": history}])[0]
        if logger.isEnabledFor(self._run_log_level):
            self._run_lines.log(self._run_log_level, f"logged run {run.run_id} ({_brief(run)})")
        object.__setattr__(run, "offset", offset)  # fresh object, not shared yet
        return run

    def log_runs(self, items: Iterable[Mapping[str, Any]]) -> list[Run]:
        """Append many runs under one lock acquisition; all are validated before any is written.

        Each item is a mapping with ``log_run``'s keyword names (``params``, ``metrics``, ``tags``,
        ``status``, ``extra``, ``directions``, ``run_id``, ``timestamp``, ``name``, ``experiment``,
        ``history``).
        Either every run is appended or (on a validation error or a run id already in the store,
        ``DuplicateRunError``) none.  Re-importing a source whose runs keep their ids therefore
        never duplicates a run: skip the ids already present (``DuplicateRunError.run_ids``).

        Raises:
            InvalidRecordError: an item cannot be stored; nothing was written.
            PartialBatchError: the file system failed part-way (a full disk); ``.appended`` holds
                the ids of the runs that are in the log (the first ones of the batch), so a retry
                of the others never duplicates a run.  Its fragment is fenced by the next append.
            LockTimeoutError, StorageError: nothing was appended.
        """
        checked: list[Mapping[str, Any]] = []
        for i, item in enumerate(items):
            if type(item) is not dict and not isinstance(item, Mapping):
                raise InvalidRecordError(f"item {i} is a {type(item).__name__}, not a mapping", f"[{i}]")
            if not _LOG_RUN_KEYS.issuperset(item):
                unknown = set(item) - _LOG_RUN_KEYS
                raise InvalidRecordError(
                    f"item {i} has unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                    f"expected {', '.join(sorted(_LOG_RUN_KEYS))}",
                    f"[{i}]",
                )
            checked.append(item)
        if not checked:
            return []
        return self._log_given(checked)

    def _log_given(self, items: Sequence[Mapping[str, Any]]) -> list[Run]:
        """Validate every item, write the histories, then append all lines at once."""
        runs: list[Run] = []
        lines: list[bytes] = []
        histories: list[tuple[str, bytes]] = []
        given: list[str] = []
        for i, item in enumerate(items):
            try:
                run, line, history = self._build(item)
            except InvalidRecordError as exc:
                if len(items) > 1:
                    exc.args = (f"item {i}: {exc}",)
                raise
            if item.get("run_id") is not None:
                given.append(run.run_id)
            if history:
                histories.append((run.run_id, history))
            runs.append(run)
            lines.append(line)
        repeated = sorted({run_id for run_id in given if given.count(run_id) > 1}) if len(given) > 1 else []
        if repeated:
            raise DuplicateRunError(repeated)
        check = None
        if given:
            self._refuse_known(given)  # before the history files: never overwrite a stored run's
            check = lambda: self._refuse_known(given)  # noqa: E731 - and again under the lock
        for run_id, data in histories:
            path = self.store / "history" / f"{run_id}.jsonl"
            try:
                write_whole(path, data)
            except OSError as exc:
                raise StorageError(exc.errno or 0, "write the metric history", path) from exc
        try:
            offset = self._journal.append(lines, check=check)
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
        if len(runs) == 1:
            if logger.isEnabledFor(self._run_log_level):
                self._run_lines.log(self._run_log_level, f"logged run {runs[0].run_id} ({_brief(runs[0])})")
        else:
            logger.info("logged %d runs in one batch", len(runs), extra=self._log_extra)
        for run, line in zip(runs, lines):
            object.__setattr__(run, "offset", offset)  # fresh objects, not shared yet
            offset += len(line)
        return runs

    def _build(self, item: Mapping[str, Any]) -> tuple[Run, bytes, bytes]:
        """One validated run, its line and its history file's bytes (empty without a history)."""
        if (type(item) is dict and item.get("history") is None and item.get("run_id") is None
                and item.get("timestamp") is None and item.get("name") is None and not item.get("directions")):
            made = codec.new_line(item.get("params"), item.get("metrics"), item.get("tags"),
                                  item.get("status", "finished"), item.get("extra"), self.required_metrics,
                                  item.get("experiment") or self.experiment)
            if made is not None:
                return made[0], made[1], b""
        fields = dict(item)
        history = fields.pop("history", None)
        fields["experiment"] = fields.get("experiment") or self.experiment
        extra = dict(fields.pop("extra", None) or {})
        data = b""
        if history is not None:
            points = normalize_history(history)
            if points:
                summary, last = history_summary(points)
                extra["history"] = summary
                metrics = dict(fields.get("metrics") or {})
                for metric, value in last.items():
                    metrics.setdefault(metric, value)
                fields["metrics"] = metrics
                data = history_bytes(points)
        run, line = codec.build_line(**fields, extra=extra, required_metrics=self.required_metrics)
        return run, line, data

    def _refuse_known(self, run_ids: Sequence[str]) -> None:
        known = self._known_ids(run_ids)
        if known:
            raise DuplicateRunError(sorted(known))

    # -- edits after the fact (append-only: see store.edits) ------------------------------------

    def set_tags(self, run: str, add: Sequence[str] = (), remove: Sequence[str] = ()) -> Run:
        """Add and remove tags of a logged run (an id, unique id prefix or name); returns it merged."""
        target = self.get_run(run)
        edit = Edit("tags", (target.run_id,), utc_timestamp(), normalize_tags(add), normalize_tags(remove))
        self._append_edits([edit])
        return self.get_run(target.run_id)

    def set_note(self, run: str, text: str) -> Run:
        """Set a run's note (free text; an empty text clears it); returns the run merged."""
        if type(text) is not str:
            raise InvalidRecordError(f"a note is text, not {type(text).__name__}", "note")
        record = normalize_value(text, "note")
        target = self.get_run(run)
        self._append_edits([Edit("note", (target.run_id,), utc_timestamp(), text=record)])
        return self.get_run(target.run_id)

    def rename(self, run: str, name: str) -> Run:
        """Give a run a new name (what tables show and ``show NAME`` finds); returns it merged."""
        new = check_name(name)
        target = self.get_run(run)
        self._append_edits([Edit("rename", (target.run_id,), utc_timestamp(), text=new)])
        return self.get_run(target.run_id)

    def delete_runs(self, runs: Sequence[str] | str | None = None, *, where: Where = None) -> int:
        """Soft-delete runs (ids, prefixes or names) and/or every run ``where`` matches.

        Deleted runs leave every query, export and table (``include_deleted=True`` /
        ``--deleted`` shows them); ``restore_runs`` brings them back, ``compact`` removes them.

        Returns:
            How many runs this call deleted (runs already deleted are not counted again).
        """
        if runs is None and where is None:
            raise InvalidRecordError("delete_runs needs runs or where= (nothing is deleted by default)", "runs")
        ids = self._resolve(runs, include_deleted=False)
        if where is not None:
            ids.extend(run.run_id for run in self.runs(where=where))
        chosen = list(dict.fromkeys(ids))
        self._append_edits(_chunked("delete", chosen))
        return len(chosen)

    def restore_runs(self, runs: Sequence[str] | str) -> int:
        """Bring deleted runs back; returns how many were deleted (others are left alone)."""
        chosen = [run.run_id for run in self._resolved_runs(runs) if run.extra.get("deleted") is True]
        chosen = list(dict.fromkeys(chosen))
        self._append_edits(_chunked("restore", chosen))
        return len(chosen)

    def _resolved_runs(self, runs: Sequence[str] | str) -> list[Run]:
        names = [runs] if isinstance(runs, str) else list(runs)
        return [self.get_run(name, include_deleted=True) for name in names]

    def _resolve(self, runs: Sequence[str] | str | None, *, include_deleted: bool) -> list[str]:
        if runs is None:
            return []
        return [run.run_id for run in self._resolved_runs(runs)
                if include_deleted or run.extra.get("deleted") is not True]

    def _append_edits(self, edits: Sequence[Edit]) -> None:
        if not edits:
            return
        self._journal.append([codec.encode_edit(edit) for edit in edits])
        for edit in edits:
            logger.info("%s %s", edit.kind, ", ".join(edit.runs[:5]) + (" ..." if len(edit.runs) > 5 else ""),
                        extra=self._log_extra)

    # -- compaction ----------------------------------------------------------------------------

    def compact(self, *, dry_run: bool = False) -> dict[str, Any]:
        """Rewrite the log without deleted runs and with edits folded in; remove what no run uses.

        Safe while other processes write and read: the log's lock is held while the new log is
        written and renamed over the old one (writers wait, then append to the new file; readers
        see the old file or the new one, each complete).  Afterwards the artifacts and history
        files that no remaining run references are removed (those of live runs are kept).

        Returns:
            What was (or, with ``dry_run``, would be) removed: ``runs_removed``, ``removed_ids``,
            ``edits_folded``, ``lines_dropped``, ``bytes_before``, ``bytes_after``,
            ``blobs_removed``, ``blob_bytes``, ``history_removed``.
        """
        from exptrack.store import compact

        plan = compact.Plan()
        with self._journal.locked():
            index = self._indexed()
            if index is None:
                raise StorageError(0, "read the log to compact it", self.runs_path)
            skip = set(index.superseded)
            skip.update(c.offset for c in index.corrupt if c.reason.startswith("duplicate run_id"))
            end = index.size_seen
            plan.bytes_before = end
            lines = compact.compacted_lines(str(self.runs_path), end, index.overlay, skip, plan, _blob_refs)
            compact.rewrite(str(self.runs_path), lines, plan, dry_run=dry_run)
        blobs, blob_bytes, histories = self._unreferenced(plan, dry_run=dry_run)
        result = {
            "runs_removed": plan.runs_removed, "removed_ids": plan.removed_ids, "runs_kept": plan.runs_kept,
            "edits_folded": plan.edits_folded, "lines_dropped": plan.lines_dropped,
            "bytes_before": plan.bytes_before, "bytes_after": plan.bytes_after,
            "blobs_removed": blobs, "blob_bytes": blob_bytes, "history_removed": histories, "dry_run": dry_run,
        }
        logger.info("compacted %s: %s", self.runs_path, {k: v for k, v in result.items() if k != "removed_ids"},
                    extra=self._log_extra)
        return result

    def _unreferenced(self, plan: Any, *, dry_run: bool) -> tuple[int, int, int]:
        """Remove (or count) blobs and history files no kept run references; live runs' are kept."""
        from exptrack.store.fsio import fs

        live_ids: set[str] = set()
        live_blobs: set[str] = set()
        active = self.store / "active"
        if active.is_dir():
            for marker in active.glob("*.json"):
                live_ids.add(marker.stem)
                try:
                    info = codec.loads(marker.read_bytes())
                except (OSError, ValueError):
                    continue
                for ref in (info.get("artifacts") or {}).values() if isinstance(info, dict) else ():
                    if isinstance(ref, dict) and isinstance(ref.get("sha256"), str):
                        live_blobs.add(ref["sha256"])
        blobs = blob_bytes = histories = 0
        root = self.store / "artifacts"
        for top in sorted(root.iterdir()) if root.is_dir() else ():
            if not top.is_dir() or len(top.name) != 2:
                continue
            for blob in top.iterdir():
                name = blob.name
                if len(name) != 64 or name in plan.references or name in live_blobs or (
                        live_ids and _younger_than(blob, 60.0)):  # a live run may not have listed it yet
                    continue
                with contextlib.suppress(OSError):
                    size = blob.stat().st_size
                    if not dry_run:
                        fs().unlink(str(blob))
                    blobs += 1
                    blob_bytes += size
        history = self.store / "history"
        for path in sorted(history.glob("*.jsonl")) if history.is_dir() else ():
            run_id = path.name[: -len(".jsonl")]
            if run_id in plan.kept_ids or run_id in live_ids:
                continue
            with contextlib.suppress(OSError):
                if not dry_run:
                    fs().unlink(str(path))
                histories += 1
        return blobs, blob_bytes, histories

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
        experiment: str | None = None,
        resume: str | None = None,
        step: int | None = None,
    ) -> ActiveRun:
        """A run that records what made its result; use it as ``with tracker.start_run(...) as run``.

        Args:
            params: the run's parameters (more with ``run.log_param``).
            tags: tags, as for :meth:`log_run`.
            name: the run's readable name (generated from its id when not given).
            data: files or directories the run reads; their content fingerprints are recorded
                (sha256 per file, one tree hash, DVC's md5 when a ``.dvc``/``dvc.lock`` names them).
            seed: the random seed(s) the run uses (an int or a mapping of named seeds).
            capture: ``True`` for everything, ``False`` for nothing, or a subset of
                ``("code", "system", "packages", "invocation", "data")``.  No part can fail the run.
            directions: which way is better for some metrics (``{"loss": "min"}``), stored with
                the run as for :meth:`log_run`.
            experiment: the experiment to log into (default: the tracker's, else ``"default"``).
            resume: continue this run (an id, prefix or name): a killed or failed run restarted
                from a checkpoint.  It keeps its id, params, tags, name and artifacts; its history
                continues after its last step, or from ``step`` (points at or after ``step`` are
                dropped).  Its end appends a record that supersedes the earlier one.

        The run ends ``finished``, ``failed`` (an exception), ``killed`` (Ctrl-C, SIGTERM) or
        ``pruned`` (``run.prune()`` or ``raise exptrack.Pruned`` in the block).
        """
        if step is not None and resume is None:
            raise InvalidRecordError("step= continues a resumed run: pass resume=RUN too", "step")
        previous = self.get_run(resume) if resume is not None else None
        return ActiveRun(self, params=params, tags=tags, data=data, seed=seed, capture=capture, name=name,
                         directions=directions, experiment=experiment, resume=previous, step=step)

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
        return recover_runs(self.store, self._times_resumed, self._append_run)

    def _times_resumed(self) -> dict[str, int]:
        """Every run id in the log (deleted ones too) and how many times its latest record was resumed."""
        return {run.run_id: run.extra.get("resumed", 0) if type(run.extra.get("resumed")) is int else 0
                for run in self.runs(include_deleted=True)}

    def _append_run(self, **fields: Any) -> Run:
        run = build_run(**fields)
        offset = self._journal.append((codec.encode(run),))
        self._run_lines.log(logging.INFO, f"logged run {run.run_id} ({_brief(run)})")
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




def _blob_refs(run: Run) -> Iterator[str]:
    """The blobs a run points to: its artifacts and its package list."""
    listed = run.extra.get("artifacts")
    if isinstance(listed, Mapping):
        for ref in listed.values():
            if isinstance(ref, Mapping) and isinstance(ref.get("sha256"), str):
                yield ref["sha256"]
    system = run.extra.get("system")
    if isinstance(system, Mapping) and isinstance(system.get("packages_sha256"), str):
        yield system["packages_sha256"]


def _younger_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return True


def _chunked(kind: str, run_ids: Sequence[str]) -> list[Edit]:
    stamp = utc_timestamp()
    return [Edit(kind, tuple(run_ids[i : i + MAX_RUNS_PER_EDIT]), stamp)
            for i in range(0, len(run_ids), MAX_RUNS_PER_EDIT)]


def _brief(run: Run) -> str:
    metrics = ", ".join(f"{k}={v:.6g}" for k, v in list(run.metrics.items())[:4])
    return f"{run.status}; {metrics}" if metrics else run.status


