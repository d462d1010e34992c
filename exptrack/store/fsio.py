"""The one seam between exptrack and the file system calls whose failure matters.

Every write path (journal, index, artifacts, history) goes through ``fs()`` instead of calling
``os`` directly, so a test can swap in a file system that fails the Nth call with ENOSPC, EIO, a
short write or a crash -- SQLite's way of proving that every failure point is handled.  In
production this is a thin veneer: one attribute lookup per call.  It is also the only importer
of ``filelock``: the lock is one more call that a test must be able to fail.
"""

from __future__ import annotations

import os

from filelock import lock_descriptor, unlock_descriptor


class FileSystem:
    """The real file system; subclasses override calls to inject faults."""

    def open(self, path: str, flags: int, mode: int = 0o666) -> int:
        return os.open(path, flags, mode)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return os.pread(fd, size, offset)

    def read(self, fd: int, size: int) -> bytes:
        return os.read(fd, size)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fstat(self, fd: int) -> os.stat_result:
        return os.fstat(fd)

    def size(self, fd: int) -> int:
        """Current size of the file behind ``fd`` (``lseek`` to the end: cheaper than ``fstat``;
        on an ``O_APPEND`` descriptor the position does not decide where writes land)."""
        return os.lseek(fd, 0, os.SEEK_END)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def stat(self, path: str) -> os.stat_result:
        return os.stat(path)

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def close(self, fd: int) -> None:
        os.close(fd)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def try_lock(self, fd: int) -> bool:
        """One non-blocking attempt at the exclusive lock on ``fd``."""
        return lock_descriptor(fd, blocking=False)

    def unlock(self, fd: int) -> None:
        unlock_descriptor(fd)


FILE_MODE = 0o664
"""Mode asked for every file exptrack creates; the process umask applies on top (0644 under the
common 022, 0664 under a shared group's 002).  The usual 0666 minus "others may write": nothing
is ever created world-writable, even under umask 000."""
DIR_MODE = 0o775
"""Mode asked for every directory exptrack creates (0777 minus "others may write"; umask on top)."""


def make_dirs(path: str | os.PathLike[str]) -> None:
    """``os.makedirs(path, exist_ok=True)`` with ``DIR_MODE`` for every directory it creates
    (``os.makedirs`` gives the intermediate ones 0777 minus the umask)."""
    path = os.path.abspath(path)
    missing: list[str] = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for directory in reversed(missing):
        _mkdir(directory)


def _mkdir(directory: str) -> None:
    try:
        os.mkdir(directory, DIR_MODE)
    except FileExistsError:  # another process made it meanwhile
        if not os.path.isdir(directory):
            raise


_current: FileSystem = FileSystem()


def fs() -> FileSystem:
    """The file system in force (the real one unless a test installed another)."""
    return _current


def install(filesystem: FileSystem) -> FileSystem:
    """Make ``filesystem`` the one in force and return the previous one (for tests)."""
    global _current
    previous, _current = _current, filesystem
    return previous
