"""A store the process cannot write, and a disk that refuses: clear errors, queries still answer.

CI runs as root, where ``chmod`` denies nothing, so a read-only or full file system is simulated
at the file-system seam (``exptrack.store.fsio``): every call that would modify the store fails with
the errno a read-only mount, a full disk or a failing device returns.  The file size limit is
real: ``RLIMIT_FSIZE`` in a child process makes the kernel cut a write short and then refuse.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import pickle
import resource
import signal
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
from click.testing import CliRunner

from exptrack import ExperimentTracker, Run, StorageError
from exptrack.cli import cli
from exptrack.live.artifacts import ArtifactStore
from exptrack.repro.check import check_store
from exptrack.store.fsio import FileSystem, install
from exptrack.store.logs import detach_store_log
from exptrack.store.scan import CorruptLine

_MODIFYING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class RefusingFileSystem(FileSystem):
    """Every call that would change the store fails with ``err``; reads work.

    ``attempts`` records what was tried, so a test can say a query never tried to write the log.
    """

    def __init__(self, err: int) -> None:
        self.err = err
        self.attempts: list[tuple[str, str]] = []

    def _refuse(self, call: str, target: str = "") -> None:
        self.attempts.append((call, target))
        raise OSError(self.err, os.strerror(self.err), target or None)

    def open(self, path: str, flags: int, mode: int = 0o666) -> int:
        if flags & _MODIFYING:
            self._refuse("open", path)
        return super().open(path, flags, mode)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        self._refuse("write")
        return 0

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        self._refuse("pwrite")
        return 0

    def fsync(self, fd: int) -> None:
        self._refuse("fsync")

    def replace(self, src: str, dst: str) -> None:
        self._refuse("replace", dst)

    def unlink(self, path: str) -> None:
        self._refuse("unlink", path)


def _unwritable_log_file(*args: object, **kwargs: object) -> logging.FileHandler:
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), "log.txt")


@pytest.fixture
def seeded(store: Path) -> tuple[Path, list[Run]]:
    """A store with runs, a blob and a torn tail, written while the disk was still writable."""
    with ExperimentTracker(store) as tracker:
        blob = ArtifactStore(store / "artifacts").put_bytes(b"weights")
        runs = [
            tracker.log_run(params={"lr": lr}, metrics={"accuracy": acc, "loss": 1 - acc},
                            extra={"artifacts": {"m.bin": {"sha256": blob.sha256, "size": blob.size}}})
            for lr, acc in ((0.1, 0.7), (0.01, 0.9), (0.001, 0.8))
        ]
    detach_store_log(str(store))
    return store, runs


@pytest.fixture
def read_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[RefusingFileSystem]:
    refusing = RefusingFileSystem(errno.EROFS)
    monkeypatch.setattr("exptrack.store.logs.logging.FileHandler", _unwritable_log_file)
    previous = install(refusing)
    try:
        yield refusing
    finally:
        install(previous)


def snapshot(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def test_a_read_only_store_answers_every_query(seeded: tuple[Path, list[Run]], read_only: RefusingFileSystem) -> None:
    store, runs = seeded
    before = snapshot(store)
    tracker = ExperimentTracker(store)  # log.txt cannot be opened: reported, never raised
    assert [run.run_id for run in tracker.runs()] == [run.run_id for run in runs]
    assert tracker.best_run("accuracy").run_id == runs[1].run_id
    assert [run.run_id for run in tracker.top_runs("loss", k=2)] == [runs[1].run_id, runs[2].run_id]
    assert tracker.summary()["total_runs"] == 3
    assert tracker.get_run(runs[0].run_id[:12]) == runs[0]
    assert tracker.corrupt_lines() == []
    assert check_store(store).ok
    tracker.close()
    log_writes = [a for a in read_only.attempts if os.path.basename(a[1]).startswith("runs.jsonl")]
    assert log_writes == []  # no lock taken, no log opened for writing
    assert snapshot(store) == before


@pytest.mark.parametrize(
    "args",
    [["runs"], ["best", "accuracy"], ["top", "loss", "-k", "2"], ["summary", "--json"], ["check"]],
)
def test_the_cli_queries_a_read_only_store(
    seeded: tuple[Path, list[Run]], read_only: RefusingFileSystem, args: list[str]
) -> None:
    store, _ = seeded
    before = snapshot(store)
    result = CliRunner().invoke(cli, ["--store", str(store), *args])
    assert result.exit_code == 0, result.output
    assert snapshot(store) == before


def test_writing_a_read_only_store_fails_clearly_and_changes_nothing(
    seeded: tuple[Path, list[Run]], read_only: RefusingFileSystem
) -> None:
    store, _ = seeded
    before = snapshot(store)
    with ExperimentTracker(store) as tracker, pytest.raises(StorageError) as caught:
        tracker.log_run(metrics={"accuracy": 0.5})
    error = caught.value
    assert isinstance(error, OSError)
    assert error.errno == errno.EROFS
    assert error.filename == str(store / "runs.jsonl")
    assert "read-only file system" in str(error)
    assert str(store / "runs.jsonl") in str(error)
    assert snapshot(store) == before
    result = CliRunner().invoke(cli, ["--store", str(store), "log", "-m", "accuracy=0.5"])
    assert result.exit_code == 1
    assert "read-only" in result.output
    assert "Traceback" not in result.output


class FailingAt(FileSystem):
    """Fails one kind of call on the run log with ``err``, after ``partial`` bytes of a write."""

    def __init__(self, call: str, err: int, partial: int = 0) -> None:
        self.call = call
        self.err = err
        self.partial = partial
        self.log_fds: set[int] = set()

    def open(self, path: str, flags: int, mode: int = 0o666) -> int:
        if self.call == "open" and path.endswith("runs.jsonl"):
            raise OSError(self.err, os.strerror(self.err), path)
        fd = super().open(path, flags, mode)
        if path.endswith("runs.jsonl"):
            self.log_fds.add(fd)
        return fd

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if self.call == "write" and fd in self.log_fds and len(data) > 1:
            if self.partial:
                self.partial, written = 0, super().write(fd, data[: self.partial])
                return written  # the kernel cut it short; the next write reports the error
            raise OSError(self.err, os.strerror(self.err))
        return super().write(fd, data)

    def fsync(self, fd: int) -> None:
        if self.call == "fsync" and fd in self.log_fds:
            raise OSError(self.err, os.strerror(self.err))
        super().fsync(fd)


@pytest.mark.parametrize(
    ("call", "err", "hint"),
    [
        ("write", errno.ENOSPC, "the disk is full"),
        ("write", errno.EFBIG, "file size limit"),
        ("open", errno.EROFS, "read-only file system"),
        ("open", errno.EACCES, "permission denied"),
        ("fsync", errno.EIO, "I/O error"),
    ],
)
def test_refusals_raise_a_storage_error_with_errno_and_path_and_the_next_append_heals(
    seeded: tuple[Path, list[Run]], call: str, err: int, hint: str
) -> None:
    store, acked = seeded
    previous = install(FailingAt(call, err, partial=37 if call == "write" else 0))
    try:
        with ExperimentTracker(store) as tracker, pytest.raises(StorageError) as caught:
            tracker.log_run(params={"doomed": True}, metrics={"accuracy": 0.1})
    finally:
        install(previous)
    error = caught.value
    assert (error.errno, error.filename) == (err, str(store / "runs.jsonl"))
    assert hint in str(error)
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes: errors cross processes
    assert (type(clone), clone.errno, clone.filename, str(clone)) == (StorageError, err, error.filename, str(error))

    # space freed / device back: the next append fences off any fragment and nothing is lost
    with ExperimentTracker(store) as tracker:
        new = tracker.log_run(metrics={"accuracy": 0.2})
        items = list(tracker.scan(final=True))
    runs = [item for item in items if isinstance(item, Run)]
    corrupt = [item for item in items if isinstance(item, CorruptLine)]
    assert [r.run_id for r in runs if "doomed" not in r.params] == [*(r.run_id for r in acked), new.run_id]
    assert all(r.params == {"doomed": True} for r in runs if "doomed" in r.params)  # fsync failed: present
    assert len(corrupt) == (1 if call == "write" else 0)
    detach_store_log(str(store))


# -- a real file size limit ------------------------------------------------------------------------


def _append_past_the_size_limit(store: str, conn: Connection) -> None:
    """Child: hit RLIMIT_FSIZE in the middle of a record, then lift the limit and append again."""
    try:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the error, not the signal, must report it
        logging.getLogger("exptrack").propagate = False
        tracker = ExperimentTracker(store)
        size = os.path.getsize(os.path.join(store, "runs.jsonl"))
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 300, hard))
        try:
            tracker.log_run(params={"doomed": "x" * 2000}, metrics={"accuracy": 0.1})
            result: dict[str, object] = {"error": None}
        except StorageError as exc:
            result = {"error": exc.errno, "message": str(exc), "filename": exc.filename}
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        result["after"] = tracker.log_run(metrics={"accuracy": 0.3}).run_id
        conn.send(("ok", result))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def test_file_size_limit_is_a_clear_error_and_the_next_append_heals(seeded: tuple[Path, list[Run]]) -> None:
    store, acked = seeded
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_append_past_the_size_limit, args=(str(store), send))
    child.start()
    try:
        send.close()
        assert receive.poll(120), "child sent nothing (hang guard)"
        status, result = receive.recv()
    finally:
        child.join(timeout=120)
        if child.is_alive():
            child.kill()
            child.join()
    assert status == "ok", result
    assert result["error"] == errno.EFBIG, result
    assert result["filename"] == str(store / "runs.jsonl")
    assert "file size limit" in result["message"]
    with ExperimentTracker(store) as tracker:
        items = list(tracker.scan(final=True))
    runs = [item.run_id for item in items if isinstance(item, Run)]
    corrupt = [item for item in items if isinstance(item, CorruptLine)]
    assert runs == [*(r.run_id for r in acked), result["after"]]
    assert len(corrupt) == 1  # the part of the record the kernel let through, fenced off
    assert corrupt[0].length == 300
    detach_store_log(str(store))
