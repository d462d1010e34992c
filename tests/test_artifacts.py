"""Artifact store: round trip, dedupe, corruption, concurrent writers, crashes, injected failures."""

from __future__ import annotations

import errno
import hashlib
import multiprocessing as mp
import os
import random
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from exptrack.errors import ArtifactIntegrityError, InvalidRecordError, StorageError
from exptrack.live.artifacts import ArtifactProblem, ArtifactStore, BlobRef
from exptrack.store import fsio

if TYPE_CHECKING:
    from collections.abc import Iterator
    from multiprocessing.synchronize import Barrier, Event

HANG_GUARD = 120.0  # seconds; only stops a hung test, never a speed assertion


def _random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _temps(root: Path) -> list[Path]:
    return [p for p in _files(root) if p.name.startswith(".tmp-")]


def _corrupt(path: Path) -> None:
    """Flip one byte in place (blobs are 0o444; chmod first so this also works without root)."""
    path.chmod(0o644)
    with path.open("r+b") as handle:
        handle.seek(12345)
        byte = handle.read(1)
        handle.seek(12345)
        handle.write(bytes([byte[0] ^ 0xFF]))


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.pkl"
    path.write_bytes(_random_bytes(3 * 1024 * 1024 + 17))
    return path


@pytest.fixture
def restore_fs() -> Iterator[None]:
    """Let a test install a faulty file system; the real one is restored whatever happens."""
    previous = fsio.fs()
    try:
        yield
    finally:
        fsio.install(previous)


def test_put_file_round_trips_bytes_exactly(store: ArtifactStore, big_file: Path, tmp_path: Path) -> None:
    data = big_file.read_bytes()
    ref = store.put_file(big_file)
    assert ref == BlobRef(hashlib.sha256(data).hexdigest(), len(data))
    assert store.path_of(ref.sha256) == store.root / ref.sha256[:2] / ref.sha256
    assert store.exists(ref.sha256)
    assert store.read_bytes(ref.sha256) == data
    out = tmp_path / "out"
    out.mkdir()
    assert store.fetch(ref.sha256, out).read_bytes() == data
    assert store.fetch(ref.sha256, out, name="model.pkl") == out / "model.pkl"
    assert (out / "model.pkl").read_bytes() == data
    assert store.put_bytes(data) == ref
    assert _temps(store.root) == []
    assert _temps(out) == []


def test_blobs_are_read_only(store: ArtifactStore) -> None:
    ref = store.put_bytes(b"weights")
    assert stat.S_IMODE(store.path_of(ref.sha256).stat().st_mode) & 0o222 == 0


@pytest.mark.parametrize("data", [b"", b"x", _random_bytes(2 * 1024 * 1024 + 1, seed=3)], ids=len)
def test_same_content_twice_is_stored_once(store: ArtifactStore, tmp_path: Path, data: bytes) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(data)
    first = store.put_file(source)
    assert store.put_file(source) == first
    assert store.put_bytes(data) == first
    assert _files(store.root) == [store.path_of(first.sha256)]
    assert store.verify() == []


def test_wrong_size_blob_is_replaced_by_next_put(store: ArtifactStore) -> None:
    ref = store.put_bytes(b"a" * 1000)
    path = store.path_of(ref.sha256)
    path.chmod(0o644)
    path.write_bytes(b"a" * 10)
    assert store.put_bytes(b"a" * 1000) == ref
    assert store.read_bytes(ref.sha256) == b"a" * 1000


def test_flipped_byte_is_detected_and_never_copied(
    store: ArtifactStore, big_file: Path, tmp_path: Path
) -> None:
    ref = store.put_file(big_file)
    blob = store.path_of(ref.sha256)
    _corrupt(blob)
    with pytest.raises(ArtifactIntegrityError) as caught:
        store.read_bytes(ref.sha256)
    message = str(caught.value)
    assert str(blob) in message
    assert ref.sha256 in message
    assert hashlib.sha256(blob.read_bytes()).hexdigest() in message
    assert store.read_bytes(ref.sha256, verify=False) == blob.read_bytes()

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArtifactIntegrityError):
        store.fetch(ref.sha256, out / "model.pkl")
    with pytest.raises(ArtifactIntegrityError):
        store.fetch(ref.sha256, out)
    assert list(out.iterdir()) == []

    (problem,) = store.verify()
    assert problem.path == str(blob)
    assert "does not match" in problem.reason


def test_fetch_to_a_bare_file_name_writes_it_in_the_working_directory(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = store.put_bytes(b"model")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert store.fetch(ref.sha256, "best_model.pkl") == Path("best_model.pkl")  # `--out best_model.pkl`
    assert (work / "best_model.pkl").read_bytes() == b"model"


def test_fetch_keeps_an_existing_file_unless_told_to_overwrite(store: ArtifactStore, tmp_path: Path) -> None:
    ref = store.put_bytes(b"new")
    dest = tmp_path / "model.pkl"
    dest.write_bytes(b"old")
    with pytest.raises(StorageError) as caught:
        store.fetch(ref.sha256, dest)
    assert caught.value.errno == errno.EEXIST
    assert dest.read_bytes() == b"old"
    assert store.fetch(ref.sha256, dest, overwrite=True) == dest
    assert dest.read_bytes() == b"new"
    with pytest.raises(InvalidRecordError):
        store.fetch(ref.sha256, tmp_path, name="../escape")


@pytest.mark.parametrize(
    "bad",
    ["", "abc", "A" * 64, "g" * 64, "0" * 63, "0" * 65, "../" + "0" * 61, "00/" + "0" * 61, "0" * 62 + "\n"],
)
def test_malformed_digest_is_rejected_before_touching_disk(store: ArtifactStore, bad: str) -> None:
    for call in (store.path_of, store.exists, store.read_bytes, lambda s: store.fetch(s, "x")):
        with pytest.raises(InvalidRecordError, match="sha256"):
            call(bad)
    assert not store.root.exists()


def test_missing_blob_is_a_storage_error_with_enoent(store: ArtifactStore, tmp_path: Path) -> None:
    sha = "ab" * 32
    assert not store.exists(sha)
    with pytest.raises(StorageError) as caught:
        store.read_bytes(sha)
    assert caught.value.errno == errno.ENOENT
    assert caught.value.filename == str(store.path_of(sha))
    with pytest.raises(StorageError) as caught:
        store.fetch(sha, tmp_path / "out.pkl")
    assert caught.value.errno == errno.ENOENT
    assert list(tmp_path.iterdir()) == []


def test_missing_source_file_is_a_storage_error(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(StorageError) as caught:
        store.put_file(tmp_path / "nope.pkl")
    assert caught.value.errno == errno.ENOENT
    assert _files(store.root) == []


class _GrowingSource(fsio.FileSystem):
    """Appends to the source file while its first chunk is being written."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if self.source.stat().st_size < 3 * 1024 * 1024:
            with self.source.open("ab") as handle:
                handle.write(b"z" * 2 * 1024 * 1024)
        return super().write(fd, data)


@pytest.mark.usefixtures("restore_fs")
def test_source_growing_during_put_is_stored_consistently(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "log.txt"
    source.write_bytes(b"a" * (1024 * 1024 + 5))
    fsio.install(_GrowingSource(source))
    ref = store.put_file(source)
    stored = store.read_bytes(ref.sha256)
    assert ref.size == len(stored) > 1024 * 1024 + 5
    assert hashlib.sha256(stored).hexdigest() == ref.sha256


class _ShortWrites(fsio.FileSystem):
    """Accepts at most ``limit`` bytes per write, as a signal-interrupted or quota-bound write may."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return super().write(fd, memoryview(data)[: self.limit]) if self.limit else 0


@pytest.mark.usefixtures("restore_fs")
def test_short_writes_are_completed(store: ArtifactStore, tmp_path: Path) -> None:
    data = _random_bytes(300_001, seed=5)
    fsio.install(_ShortWrites(4096))
    ref = store.put_bytes(data)
    assert store.fetch(ref.sha256, tmp_path / "copy").read_bytes() == data
    assert store.read_bytes(ref.sha256) == data


@pytest.mark.usefixtures("restore_fs")
def test_write_making_no_progress_fails_instead_of_spinning(store: ArtifactStore) -> None:
    fsio.install(_ShortWrites(0))
    with pytest.raises(StorageError) as caught:
        store.put_bytes(b"data")
    assert caught.value.errno == errno.EIO
    assert _files(store.root) == []


class _FailingCall(fsio.FileSystem):
    """Fails every call named ``call`` with ``code``; other calls reach the real file system."""

    def __init__(self, call: str, code: int) -> None:
        self.call = call
        self.code = code

    def _fail(self) -> None:
        raise OSError(self.code, os.strerror(self.code))

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if self.call == "write":
            self._fail()
        return super().write(fd, data)

    def fsync(self, fd: int) -> None:
        if self.call == "fsync":
            self._fail()
        super().fsync(fd)

    def replace(self, src: str, dst: str) -> None:
        if self.call == "replace":
            self._fail()
        super().replace(src, dst)

    def __repr__(self) -> str:
        return f"{self.call}-{errno.errorcode[self.code]}"


FAILURES = [
    _FailingCall("write", errno.ENOSPC),
    _FailingCall("fsync", errno.EIO),
    _FailingCall("replace", errno.EDQUOT),
]


@pytest.mark.parametrize("failing", FAILURES, ids=repr)
@pytest.mark.usefixtures("restore_fs")
def test_failed_put_leaves_neither_temp_nor_blob(
    store: ArtifactStore, big_file: Path, failing: _FailingCall
) -> None:
    fsio.install(failing)
    for source in (big_file, b"payload"):
        with pytest.raises(StorageError) as caught:
            store.put_file(source) if isinstance(source, Path) else store.put_bytes(source)
        assert caught.value.errno == failing.code
        assert str(caught.value.filename).startswith(str(store.root))
        assert isinstance(caught.value.__cause__, OSError)
        assert _files(store.root) == []


@pytest.mark.parametrize("failing", FAILURES, ids=repr)
@pytest.mark.usefixtures("restore_fs")
def test_failed_fetch_leaves_no_partial_file(
    store: ArtifactStore, big_file: Path, tmp_path: Path, failing: _FailingCall
) -> None:
    ref = store.put_file(big_file)
    out = tmp_path / "out"
    out.mkdir()
    fsio.install(failing)
    with pytest.raises(StorageError) as caught:
        store.fetch(ref.sha256, out)
    assert caught.value.errno == failing.code
    assert list(out.iterdir()) == []


def _run_worker(root: str, source: str, barrier: Barrier, results: mp.Queue[object]) -> None:
    try:
        barrier.wait(HANG_GUARD)
        ref = ArtifactStore(root).put_file(source)
        results.put((ref.sha256, ref.size))
    except BaseException as exc:  # surface every failure to the parent
        results.put(f"{type(exc).__name__}: {exc}")


def test_concurrent_puts_of_same_content_store_one_blob(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "shared.pkl"
    data = _random_bytes(5 * 1024 * 1024, seed=7)
    source.write_bytes(data)
    ctx = mp.get_context("spawn")
    workers = 8
    barrier = ctx.Barrier(workers)
    results: mp.Queue[object] = ctx.Queue()
    procs = [
        ctx.Process(target=_run_worker, args=(str(store.root), str(source), barrier, results))
        for _ in range(workers)
    ]
    try:
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=HANG_GUARD) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=HANG_GUARD)
            if proc.is_alive():
                proc.kill()
                proc.join()
    expected = (hashlib.sha256(data).hexdigest(), len(data))
    assert outcomes == [expected] * workers
    assert _files(store.root) == [store.path_of(expected[0])]
    assert store.read_bytes(expected[0]) == data
    assert store.verify() == []


class _StallInWrite(fsio.FileSystem):
    """Writes the first chunk, then tells the parent it is mid-write and waits to be killed."""

    def __init__(self, inside: Event) -> None:
        self.inside = inside

    def write(self, fd: int, data: bytes | memoryview) -> int:
        written = super().write(fd, data)
        self.inside.set()
        time.sleep(HANG_GUARD)
        return written


def _crashing_put(root: str, source: str, inside: Event) -> None:
    fsio.install(_StallInWrite(inside))
    ArtifactStore(root).put_file(source)


def test_writer_killed_mid_stream_leaves_only_a_removable_temp(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "huge.pkl"
    source.write_bytes(_random_bytes(8 * 1024 * 1024, seed=11))
    ctx = mp.get_context("spawn")
    inside = ctx.Event()
    proc = ctx.Process(target=_crashing_put, args=(str(store.root), str(source), inside))
    try:
        proc.start()
        assert inside.wait(HANG_GUARD), "child never reached the write loop"
        proc.kill()
        proc.join(HANG_GUARD)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
    assert proc.exitcode == -9 if os.name == "posix" else proc.exitcode != 0
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    assert not store.exists(sha)
    leftovers = _files(store.root)
    assert len(leftovers) == 1
    assert leftovers == _temps(store.root)
    assert store.verify() == []  # a fresh temp may be a live writer's: not reported
    assert store.clean_temp() == 0  # ...and not removed by the default threshold
    assert store.clean_temp(older_than=0) == 1
    assert _files(store.root) == []


def test_stale_temp_and_stray_files_are_reported(store: ArtifactStore) -> None:
    ref = store.put_bytes(b"ok")
    stale = store.root / ".tmp-1-dead"
    stale.write_bytes(b"partial")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    stray = store.root / "notes.txt"
    stray.write_bytes(b"x")
    misplaced = store.root / "00" / ref.sha256
    misplaced.parent.mkdir()
    misplaced.write_bytes(b"ok")
    assert {p.path for p in store.verify()} == {str(stale), str(stray), str(misplaced)}
    assert all(isinstance(p, ArtifactProblem) and p.reason for p in store.verify())
    assert store.clean_temp() == 1
    assert not stale.exists()


def test_first_put_in_a_process_sweeps_stale_temps_once(store: ArtifactStore) -> None:
    store.root.mkdir()
    old = time.time() - 7200
    first, second = store.root / ".tmp-1-first", store.root / ".tmp-1-second"
    first.write_bytes(b"partial")
    os.utime(first, (old, old))
    store.put_bytes(b"one")
    assert not first.exists()
    second.write_bytes(b"partial")
    os.utime(second, (old, old))
    store.put_bytes(b"two")
    assert second.exists()  # the sweep lists every shard, so it runs once per process and store
