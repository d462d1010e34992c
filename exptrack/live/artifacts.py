"""Content-addressed artifact store: blobs named by their sha256, written once, verified on read.

Layout ``<root>/<aa>/<sha256>``. A blob streams into ``<root>/.tmp-<pid>-<random>`` (its name is
unknown until the last byte is hashed; same file system, so the rename is atomic), is fsynced and
renamed into place. Writers of the same bytes race harmlessly: every rename installs a complete,
identical file. A writer killed mid-stream leaves only its temp file, for ``clean_temp``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from exptrack.errors import ArtifactIntegrityError, InvalidRecordError, StorageError
from exptrack.store.fsio import FILE_MODE, fs, make_dirs
from exptrack.store.record import short_repr

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TEMP_PREFIX = ".tmp-"
_BINARY = getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
# (pid, root) pairs already swept: sweeping lists every shard, so once per process is enough.
_swept: set[tuple[int, str]] = set()


@dataclass(frozen=True, slots=True)
class BlobRef:
    """What a run records about a stored artifact: enough to fetch and verify it later."""

    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class ArtifactProblem:
    """One finding of :meth:`ArtifactStore.verify`; a value, so one bad blob does not stop a scan."""

    path: str
    reason: str


def _check_sha(sha256: str) -> str:
    # The digest becomes a path component: anything but 64 lowercase hex could escape the store.
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise InvalidRecordError(
            f"not a sha256 digest: {short_repr(sha256)}; expected 64 lowercase hex characters", field="sha256"
        )
    return sha256


def _read_chunks(path: str, action: str) -> Iterator[bytes]:
    """Yield a file's bytes in 1 MiB chunks; read failures become ``StorageError(action)``."""
    try:
        with open(path, "rb", buffering=0) as source:
            while chunk := source.read(_CHUNK):
                yield chunk
    except OSError as exc:
        raise StorageError(exc.errno or errno.EIO, action, path) from exc


def _fsync_dir(path: str) -> None:
    """Persist a rename: the new directory entry is only durable once the directory is synced."""
    if os.name == "nt":  # Windows cannot open a directory; NTFS journals renames itself
        return
    fd = fs().open(path, os.O_RDONLY | _BINARY)
    try:
        fs().fsync(fd)
    finally:
        fs().close(fd)


def _spool(
    directory: str, chunks: Iterable[bytes], mode: int, action: str, place: Callable[[BlobRef], str | None]
) -> BlobRef:
    """Stream ``chunks`` into a new temp file while hashing, then publish or drop it.

    ``place`` sees the finished ref and returns the final path, or ``None`` to drop the temp
    (content already stored), or raises. Whatever happens, the temp file does not survive a
    failure, and an ``OSError`` is re-raised as ``StorageError(action)``.
    """
    tmp = os.path.join(directory, f"{_TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(8)}")
    digest, size, fd, published = hashlib.sha256(), 0, -1, False
    try:
        fd = fs().open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY, mode)
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            view = memoryview(chunk)
            while view:  # os.write may be short (signals, quotas): loop until all is written
                written = fs().write(fd, view)
                if written <= 0:
                    raise OSError(errno.EIO, "write made no progress")
                view = view[written:]
        ref = BlobRef(digest.hexdigest(), size)
        dest = place(ref)
        if dest is not None:
            fs().fsync(fd)
            fd, closing = -1, fd
            fs().close(closing)
            fs().replace(tmp, dest)
            published = True
            _fsync_dir(os.path.dirname(dest) or ".")  # a bare file name lives in the cwd
        return ref
    except OSError as exc:
        if isinstance(exc, StorageError):
            raise
        where = exc.filename if isinstance(exc.filename, str) else tmp
        raise StorageError(exc.errno or errno.EIO, action, where) from exc
    finally:
        if fd >= 0:
            with contextlib.suppress(OSError):
                fs().close(fd)
        if not published:
            try:
                fs().unlink(tmp)
            except OSError as exc:  # clean_temp() will get it; the original error matters more
                if exc.errno != errno.ENOENT:  # ENOENT: the open itself failed
                    logger.warning("could not remove temp file %s", tmp, exc_info=True)


def _sha256_of(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


class ArtifactStore:
    """Immutable, deduplicated blobs under one directory, created on the first put."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path_of(self, sha256: str) -> Path:
        """Where the blob with this digest lives; raises ``InvalidRecordError`` for a bad digest."""
        return self.root / _check_sha(sha256)[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def put_bytes(self, data: bytes) -> BlobRef:
        """Store ``data``; nothing is written if the same bytes are already stored."""
        ref = BlobRef(hashlib.sha256(data).hexdigest(), len(data))
        if self._holds(ref):
            return ref
        return self._store(data[i : i + _CHUNK] for i in range(0, len(data), _CHUNK))

    def put_file(self, path: str | os.PathLike[str]) -> BlobRef:
        """Store a file's content, hashing while streaming (one read of the source).

        A source that changes while being read is stored as read: the digest always describes
        the stored bytes. Raises ``StorageError`` if the source is unreadable or the store refuses.
        """
        return self._store(_read_chunks(os.fspath(path), "read artifact source"))

    def _store(self, chunks: Iterable[bytes]) -> BlobRef:
        try:
            make_dirs(self.root)
        except OSError as exc:
            raise StorageError(exc.errno or errno.EIO, "store artifact", self.root) from exc
        key = (os.getpid(), os.path.abspath(self.root))
        if key not in _swept:  # a crashed writer's leftovers; a failed sweep must not fail the put
            _swept.add(key)
            with contextlib.suppress(OSError):
                self.clean_temp()

        def place(ref: BlobRef) -> str | None:
            if self._holds(ref):  # stored earlier or by a concurrent writer: drop the temp
                return None
            shard = self.path_of(ref.sha256).parent
            if not shard.is_dir():
                make_dirs(shard)
                _fsync_dir(os.fspath(self.root))
            return os.fspath(shard / ref.sha256)

        return _spool(os.fspath(self.root), chunks, 0o444, "store artifact", place)

    def _holds(self, ref: BlobRef) -> bool:
        # The size check is cheap; a wrong-size blob (truncated by hand, disk trouble) is healed
        # by letting the caller's good copy replace it.
        try:
            return self.path_of(ref.sha256).stat().st_size == ref.size
        except OSError:
            return False

    def read_bytes(self, sha256: str, *, verify: bool = True) -> bytes:
        """Return a blob's bytes.

        Raises:
            StorageError: the blob is missing (``errno.ENOENT``) or unreadable.
            ArtifactIntegrityError: ``verify`` is on and the bytes do not match the digest.
        """
        path = self.path_of(sha256)
        chunks = list(_read_chunks(os.fspath(path), "read artifact"))
        if verify:
            _check_digest(path, sha256, _sha256_of(chunks))
        return b"".join(chunks)

    def fetch(
        self, sha256: str, dest: str | os.PathLike[str], *, overwrite: bool = False, name: str | None = None
    ) -> Path:
        """Copy a blob to ``dest`` (a file path, or a directory to put ``name`` or the digest in).

        The copy is verified while streaming and published by rename, so ``dest`` either holds
        the exact bytes or is untouched. Returns the path written.

        Raises:
            StorageError: blob missing (``ENOENT``), ``dest`` exists without ``overwrite``
                (``EEXIST``), or the copy could not be written.
            ArtifactIntegrityError: the blob's bytes no longer match the digest.
        """
        blob = self.path_of(sha256)
        target = Path(dest)
        if target.is_dir():
            if name is not None and (name in ("", ".", "..") or Path(name).name != name):
                raise InvalidRecordError(f"artifact file name must be a plain name, got {short_repr(name)}")
            target = target / (name or sha256)
        if not overwrite and target.exists():
            raise StorageError(errno.EEXIST, "fetch artifact to", target)

        def place(ref: BlobRef) -> str:
            _check_digest(blob, sha256, ref.sha256)
            return os.fspath(target)

        chunks = _read_chunks(os.fspath(blob), "read artifact")
        _spool(os.fspath(target.parent), chunks, FILE_MODE, "fetch artifact to", place)
        return target

    def verify(self) -> list[ArtifactProblem]:
        """Re-hash every blob and report corrupt or misplaced files and stale temp files.

        Temp files younger than an hour are skipped: they may belong to a live writer.
        """
        problems: list[ArtifactProblem] = []
        stale_before = time.time() - 3600.0
        for path, shard in self._entries():
            name = path.name
            if name.startswith(_TEMP_PREFIX):
                if _mtime(path) <= stale_before:
                    problems.append(ArtifactProblem(str(path), "stale temp file of a crashed writer"))
            elif shard is None or not _SHA256.fullmatch(name) or name[:2] != shard:
                problems.append(ArtifactProblem(str(path), "not a blob: wrong name or place"))
            else:
                try:
                    actual = _sha256_of(_read_chunks(os.fspath(path), "read artifact"))
                except StorageError as exc:
                    actual = f"unreadable ({exc.strerror})"
                if actual != name:
                    problems.append(ArtifactProblem(str(path), f"content does not match its name: {actual}"))
        return problems

    def clean_temp(self, older_than: float = 3600.0) -> int:
        """Remove temp files not modified for ``older_than`` seconds; return how many were removed.

        A live writer touches its temp file on every chunk, so an old one is a crashed writer's.
        ``older_than=0`` removes all of them, including a live writer's (its put then fails).
        """
        cutoff = time.time() - older_than
        removed = 0
        for path, _ in self._entries():
            if path.name.startswith(_TEMP_PREFIX) and (older_than <= 0 or _mtime(path) <= cutoff):
                try:
                    fs().unlink(os.fspath(path))
                except FileNotFoundError:  # another cleaner was first
                    continue
                except OSError as exc:
                    raise StorageError(exc.errno or errno.EIO, "remove temp file", path) from exc
                removed += 1
        if removed:
            logger.info("removed %d stale temp file(s) under %s", removed, self.root)
        return removed

    def _entries(self) -> Iterator[tuple[Path, str | None]]:
        """Every file under the root with its shard name (``None`` for files at the top)."""
        if not self.root.is_dir():
            return
        for top in sorted(self.root.iterdir()):
            if top.is_dir():
                for path in sorted(top.iterdir()):
                    yield path, top.name
            else:
                yield top, None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # renamed or cleaned meanwhile: treat as fresh, i.e. leave it
        return time.time()


def _check_digest(path: Path, expected: str, actual: str) -> None:
    if actual != expected:
        raise ArtifactIntegrityError(
            f"artifact {path} is corrupt: expected sha256 {expected}, got {actual}; "
            "restore it from a backup or log the artifact again"
        )
