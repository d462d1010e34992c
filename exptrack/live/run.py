"""The live run: ``with tracker.start_run(...) as run`` collects what made a result, then appends once.

While the run is alive, its step metrics go to ``<store>/history/<run_id>.jsonl`` (one line per
``log_metric``, written through to the OS at once, so a crash keeps them) and a marker in
``<store>/active/`` names its pid.  When the block ends the run becomes one line in
``runs.jsonl`` -- principle 2: a run killed half-way leaves no half record in the log -- with
``status`` ``finished``, ``failed`` (exception type and message), ``killed``
(``KeyboardInterrupt``/``SIGTERM``) or ``pruned`` (``run.prune()``, ``raise exptrack.Pruned``, or a
framework's own pruning exception such as Optuna's ``TrialPruned``, which is re-raised for the
framework to see).  ``sys.exit(0)`` inside the block is a normal end, any
other ``SystemExit`` a failure.  A run whose process died without a word (SIGKILL, power loss) is
found by :meth:`ExperimentTracker.recover` through its marker and logged as ``killed``, with the
params, tags, capture and artifacts the marker held and the history file's points.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Protocol

from exptrack.errors import InvalidRecordError, Pruned, StorageError
from exptrack.live.artifacts import ArtifactStore, BlobRef
from exptrack.live.history import MetricHistory
from exptrack.live.markers import capture_file, process_token, without_store, write_whole
from exptrack.store import codec
from exptrack.store.fsio import FILE_MODE, fs, make_dirs
from exptrack.store.names import DEFAULT_EXPERIMENT, check_name, generated_name
from exptrack.store.record import (
    Run,
    new_run_id,
    normalize_directions,
    normalize_metrics,
    normalize_tags,
    normalize_value,
    short_repr,
    utc_timestamp,
)

logger = logging.getLogger(__name__)

CAPTURE_PARTS = ("code", "system", "packages", "invocation", "data")


class RunKilledError(KeyboardInterrupt):
    """Raised inside a run's block when the process receives SIGTERM, so the run ends as killed."""




class RunHost(Protocol):
    """What a live run needs from the store that owns it (``ExperimentTracker`` provides it).

    A protocol rather than the tracker class, so the live layer sits below the facade and the two
    modules do not import each other.
    """

    store: Path
    required_metrics: tuple[str, ...]
    _log_extra: dict[str, str]

    @property
    def durable(self) -> bool: ...

    @property
    def artifact_store(self) -> ArtifactStore: ...

    def _append_run(self, **fields: Any) -> Run: ...

    def _store_packages(self, packages: Mapping[str, str]) -> str: ...


class ActiveRun:
    """A run in progress; created by :meth:`ExperimentTracker.start_run`, used as a context manager."""

    def __init__(
        self,
        tracker: RunHost,
        *,
        params: Mapping[str, object] | None,
        tags: Sequence[str] | Mapping[str, object] | None,
        data: Sequence[str | os.PathLike[str]] | str | os.PathLike[str] | None,
        seed: object,
        capture: bool | Sequence[str],
        name: str | None,
        directions: Mapping[str, str] | None = None,
        experiment: str | None = None,
        resume: Run | None = None,
        step: int | None = None,
    ) -> None:
        self.tracker = tracker
        self.run_id = new_run_id()
        self.timestamp = utc_timestamp()
        self.params: dict[str, Any] = normalize_value(dict(params or {}), "params")
        self.tags: list[str] = list(normalize_tags(tags))
        self.name = check_name(name) if name is not None else generated_name(self.run_id)
        self.experiment: str = check_name(experiment, "experiment") if experiment is not None else (
            getattr(tracker, "experiment", None) or DEFAULT_EXPERIMENT)
        self._resumed = 0  # how many times this run was resumed (its new record says so)
        self.metrics: dict[str, float] = {}
        self.history: dict[str, MetricHistory] = {}
        self.artifacts: dict[str, dict[str, object]] = {}
        self.record: Run | None = None
        self._data = [data] if isinstance(data, (str, os.PathLike)) else list(data or [])
        self._seed = normalize_value(seed, "seed") if seed is not None else None
        parts = CAPTURE_PARTS if capture is True else () if capture is False else tuple(capture)
        unknown = set(parts) - set(CAPTURE_PARTS)
        if unknown:
            raise InvalidRecordError(f"unknown capture part(s) {sorted(unknown)}; choose from {CAPTURE_PARTS}")
        self._parts = frozenset(parts)
        self._extra: dict[str, Any] = {}
        if directions:
            self._extra["directions"] = normalize_directions(directions)  # checked now, at the call site
        self._started = time.monotonic()
        self._history_fd = -1
        self._history_torn = False
        self._history_path = tracker.store / "history" / f"{self.run_id}.jsonl"
        self._marker = tracker.store / "active" / f"{self.run_id}.json"
        self._capture_file = capture_file(tracker.store, self.run_id)
        self._previous_sigterm: Any = None
        self._steps: dict[str, int] = {}
        self._stepped: set[str] = set()
        # Every public method holds it: one run may be fed by a training thread and a callback
        # thread at once, and its params, tags, history and marker must stay consistent.
        self._lock = threading.RLock()
        # The process that owns the run: a forked worker that logs a param must not put its own
        # pid in the marker, or recover() would log the run as killed once the worker exits.
        self._pid = os.getpid()
        self._process = process_token(self._pid)
        self._live = False  # capture done and saved: later changes are copied into the marker
        if resume is not None:
            self._resume(resume, step, params, tags, name)

    def _resume(self, run: Run, step: int | None, params: Mapping[str, object] | None,
                tags: Sequence[str] | Mapping[str, object] | None, name: str | None) -> None:
        """Continue ``run``: same id, params, tags, name, experiment and artifacts; its history
        continues after its last step, or from ``step`` (later points are dropped: a restart from
        an earlier checkpoint gives the curve it will actually follow)."""
        from exptrack.live.history import read_history
        from exptrack.live.markers import write_whole

        self.run_id, self.timestamp = run.run_id, run.timestamp
        self.params = {**run.params, **self.params}
        self.tags = list(dict.fromkeys([*run.tags, *normalize_tags(tags)]))
        self.name = check_name(name) if name is not None else run.name
        self.experiment = run.experiment
        self.metrics = dict(run.metrics)
        self.artifacts = {str(k): dict(v) for k, v in (run.extra.get("artifacts") or {}).items()}
        if isinstance(run.extra.get("directions"), Mapping):
            self._extra.setdefault("directions", dict(run.extra["directions"]))
        previous = run.extra.get("resumed")
        self._resumed = (previous if type(previous) is int else 0) + 1
        self._history_path = self.tracker.store / "history" / f"{self.run_id}.jsonl"
        self._marker = self.tracker.store / "active" / f"{self.run_id}.json"
        self._capture_file = capture_file(self.tracker.store, self.run_id)
        first = None if step is None else _step(step, "resume")
        points = list(read_history(self._history_path))
        kept = [p for p in points if first is None or int(p.get("step", 0)) < first]
        if len(kept) != len(points):
            write_whole(self._history_path, b"".join(codec.dumps(p) + b"\n" for p in kept))
            for gone in {str(p.get("name")) for p in points} - {str(p.get("name")) for p in kept}:
                self.metrics.pop(gone, None)  # every point of it came after the restart step
        for point in kept:
            metric, value, at = str(point["name"]), float(point["value"]), int(point["step"])
            self.history.setdefault(metric, MetricHistory()).add(value, at)
            self._steps[metric] = at
            self._stepped.add(metric)
            self.metrics[metric] = value

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> ActiveRun:
        self._write_marker()
        # Before capture, which can take seconds on new data: a SIGTERM then still ends as killed.
        self._install_sigterm()
        try:
            self._capture()
        except BaseException as exc:  # Ctrl-C or SIGTERM during capture: the block never runs
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._save_capture()
        self._live = True
        self._update_marker()
        logger.info("started run %s", self.run_id, extra=self.tracker._log_extra)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        self._restore_sigterm()
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (None, 0)):
            self.finish("finished")
        elif isinstance(exc, Pruned):
            self.prune(str(exc) or None)
            return True  # a planned end: the block is over, nothing to propagate
        elif type(exc).__name__ == "TrialPruned":  # Optuna's (and look-alikes'): the framework needs it back
            self.prune(str(exc) or None)
        elif isinstance(exc, KeyboardInterrupt):
            self.finish("killed", error=exc)
        else:
            self.finish("failed", error=exc)
        return False

    def prune(self, reason: str | None = None) -> Run:
        """End the run now as ``pruned`` (stopped early on purpose), keeping its metrics so far.

        Calling it inside the ``with`` block is enough: the block's end then records nothing more.
        """
        if reason is not None and self.record is None:
            self._extra["pruned"] = {"reason": str(reason)[:2000]}
        return self.finish("pruned")

    def finish(self, status: str = "finished", *, error: BaseException | None = None) -> Run:
        """Append the run's single line with this ``status`` (finished, failed, killed or pruned);
        idempotent: a second call returns the same record."""
        with self._lock:
            return self._finish(status, error)

    def _finish(self, status: str, error: BaseException | None) -> Run:
        if self.record is not None:
            return self.record
        extra = dict(self._extra)
        extra["duration_s"] = round(time.monotonic() - self._started, 6)
        # A metric logged once without a step is a final value, not a history.
        history = {name: h.to_dict() for name, h in self.history.items() if h.count > 1 or name in self._stepped}
        if history:
            extra["history"] = history
        if self.artifacts:
            extra["artifacts"] = dict(self.artifacts)
        if error is not None:
            extra["error"] = {"type": type(error).__qualname__, "message": str(error)[:2000]}
        if self._resumed:
            extra["resumed"] = self._resumed  # the record supersedes the run's earlier one
        self._close_history()
        required = self.tracker.required_metrics if status == "finished" else ()
        try:
            record = self.tracker._append_run(
                run_id=self.run_id, timestamp=self.timestamp, params=self.params, metrics=self.metrics,
                tags=self.tags, status=status, extra=extra, required_metrics=required,
                name=self.name, experiment=self.experiment,
            )
        except InvalidRecordError:
            self._drop_marker()  # refused on purpose: not a run for recover() to resurrect
            raise
        self.record = record
        self._drop_marker()
        return record

    def _drop_marker(self) -> None:
        for path in (self._marker, self._capture_file):  # the marker first: it is what recover() looks for
            with contextlib.suppress(OSError):
                fs().unlink(str(path))

    # -- what the user logs --------------------------------------------------------------------

    def log_param(self, name: str, value: object) -> None:
        """Add or change one parameter (validated now, so a bad value fails at the call site)."""
        clean = normalize_value({name: value}, "params")
        with self._lock:
            self.params.update(clean)
            self._update_marker()

    def log_params(self, params: Mapping[str, object]) -> None:
        clean = normalize_value(dict(params), "params")
        with self._lock:
            self.params.update(clean)
            self._update_marker()

    def set_tag(self, tag: str) -> None:
        clean = normalize_tags(tag)
        with self._lock:
            for item in clean:
                if item not in self.tags:
                    self.tags.append(item)
            self._update_marker()

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Record a metric value; with ``step`` it is one point of the metric's history.

        Each call is appended to the run's history file before returning, so the points survive
        a crash of the process.  The run's line keeps the last value (``metrics``) plus min, max
        and their steps (``history``).
        """
        clean = normalize_metrics({name: value})[name]
        given = None if step is None else _step(step, name)
        with self._lock:
            if given is None:
                given = self._steps.get(name, -1) + 1
            else:
                self._stepped.add(name)
            self._steps[name] = given
            self.metrics[name] = clean
            self.history.setdefault(name, MetricHistory()).add(clean, given)
            self._append_history({"name": name, "step": given, "value": clean, "time": time.time()})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for name, value in metrics.items():
            self.log_metric(name, value, step)

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None) -> BlobRef:
        """Store a file (a trained model, a plot) content-addressed in the store and list it on the run."""
        source = Path(path)
        label = _artifact_name(name or source.name)
        ref = self.tracker.artifact_store.put_file(source)
        self._list_artifact(label, ref)
        return ref

    def log_artifact_bytes(self, data: bytes, name: str) -> BlobRef:
        """Store ``data`` as an artifact called ``name`` (see :meth:`log_artifact`)."""
        label = _artifact_name(name)
        ref = self.tracker.artifact_store.put_bytes(data)
        self._list_artifact(label, ref)
        return ref

    def _list_artifact(self, label: str, ref: BlobRef) -> None:
        with self._lock:
            self.artifacts[label] = {"sha256": ref.sha256, "size": ref.size}
            self._update_marker()
        logger.info("run %s stored artifact %s (%d bytes, sha256 %s)", self.run_id, label, ref.size,
                    ref.sha256[:12], extra=self.tracker._log_extra)

    # -- internals -----------------------------------------------------------------------------

    def _capture(self) -> None:
        """Record code, data, system and invocation; each part fails softly into an ``error``."""
        from exptrack import capture

        parts = self._parts
        if "invocation" in parts:
            self._extra["invocation"] = _softly(lambda: capture.capture_invocation(self._seed))
        elif self._seed is not None:
            self._extra["invocation"] = {"seed": self._seed}
        if "code" in parts:
            self._extra["code"] = _softly(self._capture_code)
        if "system" in parts:
            self._extra["system"] = _softly(self._capture_system)
        if self._data and "data" in parts:
            self._extra["data"] = _softly(lambda: capture.fingerprint_data(
                self._data, cache=capture.FingerprintCache(self.tracker.store / ".cache" / "fingerprints.json")))

    def _capture_code(self) -> dict[str, object]:
        from exptrack.capture import capture_code

        state = capture_code()
        info = without_store(dict(state.info), self.tracker.store)
        if state.patch:
            self.log_artifact_bytes(state.patch, "code.patch")
        return info

    def _capture_system(self) -> dict[str, object]:
        from exptrack.capture import capture_system

        system = capture_system(packages="packages" in self._parts)
        info = dict(system.info)
        if system.packages:
            # One blob per distinct environment, named by the same sha256 as packages_sha256.
            self.tracker._store_packages(system.packages)
        return info

    def _append_history(self, point: dict[str, object]) -> None:
        line = codec.dumps(point) + b"\n"
        if self._history_torn:
            # The last write failed part-way (a full disk): fence its fragment off, as the log does,
            # so this point is a line of its own instead of the tail of a broken one.
            line = b"\n" + line
        try:
            if self._history_fd < 0:  # called with self._lock held: opened once
                make_dirs(self._history_path.parent)
                self._history_fd = fs().open(
                    str(self._history_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE
                )
            from exptrack.store.journal import io_write_all

            self._history_torn = True  # until the write below completes
            io_write_all(self._history_fd, line)
            self._history_torn = False
        except OSError as exc:
            raise StorageError(exc.errno or 0, "append to the metric history", self._history_path) from exc

    def _close_history(self) -> None:
        if self._history_fd >= 0:
            with contextlib.suppress(OSError):
                if self.tracker.durable:
                    fs().fsync(self._history_fd)
                fs().close(self._history_fd)
            self._history_fd = -1

    def _write_marker(self) -> None:
        """Write the marker ``recover()`` reads: small, since params and artifacts rewrite it."""
        marker: dict[str, object] = {
            "run_id": self.run_id, "timestamp": self.timestamp, "pid": self._pid, "process": self._process,
            "host": socket.gethostname(), "params": self.params, "tags": self.tags,
            "name": self.name, "experiment": self.experiment,
        }
        if self._resumed:
            marker["resumed"] = self._resumed
        if self.artifacts:
            marker["artifacts"] = self.artifacts
        try:
            write_whole(self._marker, codec.dumps(marker))
        except OSError as exc:
            raise StorageError(exc.errno or 0, "start a run in", self._marker.parent) from exc

    def _save_capture(self) -> None:
        """Keep the capture beside the marker, written once: a data record can be megabytes."""
        captured = {k: v for k, v in self._extra.items() if k in CAPTURE_PARTS}
        if not captured:
            return
        try:
            write_whole(self._capture_file, codec.dumps(captured))
        except OSError as exc:  # only recover() would miss it
            logger.warning("run %s: cannot save its capture for recovery: %s", self.run_id, exc)

    def _update_marker(self) -> None:
        """Copy params, tags and artifacts into the marker; a failure only costs recovery detail."""
        if not self._live or self.record is not None:
            return
        try:
            self._write_marker()
        except StorageError as exc:
            logger.warning("run %s: cannot update its marker: %s", self.run_id, exc)

    def _install_sigterm(self) -> None:
        # Only from the main thread, and only over the default action: a handler the program
        # installed itself is its business.
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        owner = self._pid

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            if os.getpid() != owner:  # a forked worker inherited the handler: die as it would have
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            raise RunKilledError(f"received signal {signum} (SIGTERM)")

        self._previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None


def _step(step: object, name: str) -> int:
    """A step as an int: numpy integers are accepted, bools and negatives are not."""
    try:
        index = operator.index(step)  # type: ignore[arg-type]
    except TypeError:
        index = -1
    if isinstance(step, bool) or index < 0:
        raise InvalidRecordError(f"step must be a non-negative int, not {short_repr(step)}", f"history.{name}")
    return index


def _artifact_name(label: str) -> str:
    if not isinstance(label, str) or not label or "\n" in label:
        raise InvalidRecordError(f"artifact name must be a non-empty single line, not {short_repr(label)}")
    return label






def _softly(func: Any) -> dict[str, object]:
    try:
        result: dict[str, object] = func()
    except Exception as exc:  # capture must never cost the run
        logger.warning("capture failed: %s: %s", type(exc).__name__, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
    return result



