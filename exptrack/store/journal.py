"""The locked append to ``runs.jsonl``: the one place where bytes are added to the log.

Protocol for one append (one or many pre-encoded lines):

1. take the exclusive lock on ``runs.jsonl.lock`` through a descriptor kept open for the life of
   the process (filelock's ``lock_descriptor``: ~1 µs, where ``FileLock`` reopens the file each
   time for ~70 µs), polling with exponential backoff up to a finite timeout;
2. record the holder (``pid@host``) in the lock file so a timeout can name it;
3. if the log does not end in ``\\n`` (a writer died mid-line), write ``\\n`` first, so the torn
   fragment becomes one corrupt line instead of swallowing this record -- the repair appends and
   never truncates, so a reader holding offsets never sees a byte change;
4. one ``write()`` of all lines on an ``O_APPEND`` descriptor, looping only on a short write;
5. release the lock, then ``fsync`` when durable (outside the lock so concurrent writers' syncs
   overlap and share the kernel's journal commit; the record is acknowledged only when a sync
   that started after its write returned).

The lock file is never deleted: deleting it races a waiter that already opened it.

Threads and forks.  ``flock`` excludes open file descriptions, not threads: two threads of one
process appending through the same descriptor would both "hold" it.  So a ``threading.Lock``
serialises the threads of a process around open + lock + write, and the descriptors are opened
once under it.  A forked child inherits the descriptors -- and with them the parent's lock, which
would then outlive a parent killed mid-append for as long as the child lives (a DataLoader
worker, a pool process).  An ``os.register_at_fork`` hook therefore closes the child's copies
of every journal's descriptors at once (closing a copy never releases the parent's lock; the
lock is released when the last copy goes) and gives the child fresh thread locks; a child that
writes reopens its own.  ``O_CLOEXEC`` covers ``exec`` (subprocesses).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence

from exptrack.errors import LockTimeoutError, StorageError
from exptrack.store.fsio import FILE_MODE, fs

logger = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT = 60.0
_HOLDER_BYTES = 128
# Poll schedule while the lock is busy: start at 20 µs and double up to 2 ms.  filelock's fixed
# 50 ms poll measured a 2.1 s worst-case wait under 8-way contention; a short capped backoff keeps
# the tail low without burning a core.
_POLL_START = 20e-6
_POLL_MAX = 2e-3
# Before sleeping, yield the CPU a few times: with more writers than cores the holder is usually
# just descheduled, and a sleep costs ~100 µs here while a yield costs ~2 µs.
_SPIN_YIELDS = 16
# The lock file also holds a watermark, 8 bytes plus a check word so a torn read is recognised:
# "synced_to", a completed fsync covered the log up to here (see ``Journal._sync``).
_SYNCED_AT = 144  # bytes 128..143 held a "syncing_to" mark that nothing reads any more
_CHECK = 0x5EC0_FFEE_D00D_CAFE


def lock_timeout_from_env(default: float = DEFAULT_LOCK_TIMEOUT) -> float:
    """``EXPTRACK_LOCK_TIMEOUT`` in seconds when set to a positive number, else ``default``."""
    raw = os.environ.get("EXPTRACK_LOCK_TIMEOUT")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        logger.warning("ignoring EXPTRACK_LOCK_TIMEOUT=%r: not a number", raw)
        return default
    if not 0 < value < float("inf"):
        logger.warning("ignoring EXPTRACK_LOCK_TIMEOUT=%r: must be a positive finite number", raw)
        return default
    return value


class Journal:
    """Appends encoded lines to one log file under its lock; one instance per process and store."""

    def __init__(self, path: str, *, durable: bool = True, lock_timeout: float | None = None) -> None:
        self.path = path
        self.lock_path = path + ".lock"
        self.durable = durable
        self.lock_timeout = lock_timeout_from_env() if lock_timeout is None else float(lock_timeout)
        if not 0 < self.lock_timeout < float("inf"):
            raise ValueError(f"lock_timeout must be a positive finite number of seconds, not {lock_timeout!r}")
        self.last_lock_wait = 0.0
        self._fd = -1
        self._retired: list[int] = []  # descriptors of logs gc replaced (closed by close())
        self._lock_fd = -1
        self._pid = -1
        self._mark_key = _CHECK
        self._holder = b""
        # Serialises this process's threads: flock cannot tell them apart (one description).
        self._thread_lock = threading.Lock()
        _JOURNALS.add(self)

    # -- descriptors ---------------------------------------------------------------------------

    def _ensure_open(self) -> None:
        """Open the descriptors (called with the thread lock held).

        A forked child never reaches here with its parent's descriptors: the at-fork hook closed
        them (``_after_fork_in_child``), so the child opens descriptions of its own and its
        ``flock`` excludes the parent as it should.
        """
        pid = os.getpid()
        if self._pid == pid:
            return
        if self._pid != -1:  # a fork the hook did not see (os.fork from C): never close, forget
            self._fd = self._lock_fd = -1
        io = fs()
        try:
            self._fd = io.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            raise StorageError(exc.errno or 0, "open the run log", self.path) from exc
        try:
            self._lock_fd = io.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            self._forget_descriptors()
            raise StorageError(exc.errno or 0, "open the lock file", self.lock_path) from exc
        try:
            identity = io.fstat(self._fd)
        except OSError as exc:
            self._forget_descriptors()
            raise StorageError(exc.errno or 0, "open the run log", self.path) from exc
        self._pid = pid  # only now: a half-opened journal must retry the whole open next time
        self._mark_key = (_CHECK ^ identity.st_ino ^ (identity.st_dev << 40)) & 0xFFFF_FFFF_FFFF_FFFF
        self._holder = f"pid {pid} on {socket.gethostname()}".encode().ljust(_HOLDER_BYTES)[:_HOLDER_BYTES]

    def _forget_descriptors(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):  # the error that brought us here matters more
                    fs().close(fd)
        self._fd = self._lock_fd = -1

    def close(self) -> None:
        """Close the descriptors; the next append reopens them."""
        with self._thread_lock:
            self._close_descriptors()

    def _close_descriptors(self) -> None:
        if self._pid == os.getpid():
            for fd in (self._fd, self._lock_fd, *self._retired):
                if fd >= 0:
                    try:
                        os.close(fd)  # not through fs(): a fault injected here would leak the lock
                    except OSError:
                        logger.debug("closing descriptor %d failed", fd, exc_info=True)
        self._fd = self._lock_fd = -1
        self._retired = []
        self._pid = -1

    def _after_fork_in_child(self) -> None:
        """In a freshly forked child: drop the copies of the parent's descriptors.

        Closing the lock descriptor's copy is what matters: while any copy of the parent's open
        file description is open, its ``flock`` stays held, so a child that outlives a parent
        killed mid-append would block every writer.  The parent's own copy keeps its lock.
        """
        self._thread_lock = threading.Lock()  # another thread may have held it at the fork
        for fd in (self._fd, self._lock_fd, *self._retired):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = -1
        self._retired = []
        self._pid = -1

    # -- the lock ------------------------------------------------------------------------------

    def _acquire(self, timeout: float | None = None) -> None:
        if timeout is None:
            timeout = self.lock_timeout
        io = fs()
        fd = self._lock_fd
        try:
            if io.try_lock(fd):
                self.last_lock_wait = 0.0
                self._write_holder(fd)
                return
            for _ in range(_SPIN_YIELDS):
                os.sched_yield()
                if io.try_lock(fd):
                    self.last_lock_wait = 0.0
                    self._write_holder(fd)
                    return
            start = time.monotonic()
            deadline = start + max(timeout, 0.0)
            delay = _POLL_START
            while True:
                time.sleep(delay)
                if io.try_lock(fd):
                    self.last_lock_wait = time.monotonic() - start
                    self._write_holder(fd)
                    return
                now = time.monotonic()
                if now >= deadline:
                    raise LockTimeoutError(self.lock_path, self.lock_timeout, self._read_holder(fd))
                delay = min(delay * 2, _POLL_MAX, max(deadline - now, 1e-6))
        except LockTimeoutError:
            raise  # a TimeoutError is an OSError: it must not be rewrapped as a storage failure
        except OSError as exc:
            raise StorageError(exc.errno or 0, "lock", self.lock_path) from exc

    def _write_holder(self, fd: int) -> None:
        # Best effort: the name only enriches a timeout message, so a failure here is not fatal.
        # (not contextlib.suppress: building one costs more than this pwrite, on every append)
        try:  # noqa: SIM105
            fs().pwrite(fd, self._holder, 0)
        except OSError:
            pass

    def _read_holder(self, fd: int) -> str:
        try:
            return os.pread(fd, _HOLDER_BYTES, 0).decode("utf-8", "replace").strip(" \0")
        except OSError:
            return ""

    def _release(self) -> None:
        try:
            fs().unlock(self._lock_fd)
        except OSError as exc:
            raise StorageError(exc.errno or 0, "unlock", self.lock_path) from exc

    # -- append --------------------------------------------------------------------------------

    def append(self, lines: Sequence[bytes], *, check: Callable[[], None] | None = None) -> int:
        """Append complete, newline-terminated lines; return the offset where the first starts.

        ``check`` runs under the lock before anything is written (e.g. "none of these run ids is
        in the log yet"): an exception from it releases the lock and writes nothing.

        Raises:
            LockTimeoutError: the lock stayed busy for ``lock_timeout`` seconds.
            StorageError: the file system refused (ENOSPC, EROFS, EIO...); the log stays
                consistent: at worst it ends in a partial line that the next append fences off.
        """
        data = lines[0] if len(lines) == 1 else b"".join(lines)
        thread_lock = self._thread_lock
        remaining = self.lock_timeout
        if not thread_lock.acquire(False):  # uncontended: no clock reads
            started = time.monotonic()
            if not thread_lock.acquire(timeout=remaining):
                raise LockTimeoutError(self.lock_path, self.lock_timeout, f"another thread of pid {os.getpid()}")
            remaining -= time.monotonic() - started
        try:
            self._ensure_open()
            self._acquire(remaining)
            try:
                if check is not None:
                    check()
                self._follow_swap()
                start = self._write_locked(data)
            finally:
                self._release()
            lock_fd, fd = self._lock_fd, self._fd
        finally:
            thread_lock.release()
        if self.durable:
            try:
                self._sync(start + len(data), fd, lock_fd)
            except OSError as exc:
                raise StorageError(exc.errno or 0, "sync the run log", self.path) from exc
        return start

    def _sync(self, end: int, fd: int, lock_fd: int) -> None:
        """Make the log durable up to ``end``, skipping the ``fsync`` when another one covered it.

        The lock file keeps a watermark, "synced_to": a completed fsync covered the log up to
        here.  When it already covers ``end`` the run is durable and no call is needed; otherwise
        this process syncs at once.  It does not wait for an fsync in flight: concurrent ``fsync``
        calls on one file share the file system's journal commit in the kernel, which costs no
        CPU, where polling a watermark cost ~400 µs of CPU per run with 8 writers on 2 cores
        (half the durable throughput).  A run is acknowledged only after a completed fsync whose
        start followed its write.
        """
        io = fs()
        key = self._mark_key
        seen = _read_mark(lock_fd, _SYNCED_AT, key)
        if seen >= end:
            return
        target = io.size(fd)  # everything written so far: this fsync covers it all
        io.fsync(fd)
        if target > seen:
            _write_mark(lock_fd, _SYNCED_AT, target, key)

    def _follow_swap(self) -> None:
        """Append to the file the log's path names now, not to one ``gc`` replaced.

        Compaction swaps a new log in by ``rename`` while holding the lock; a descriptor opened
        before it still points at the old file, which the rename left with no name (``st_nlink``
        0), and an append there would be lost.  So under the lock, before each append, one
        ``fstat`` of the descriptor (~0.4 µs; comparing it with a ``stat`` of the path cost ~1.4)
        tells whether the file still has a name, and the log is reopened by path when it has
        none (a log deleted by hand is recreated the same way).  The old descriptor is kept open
        until ``close``: another thread may still be syncing through it.
        """
        io = fs()
        try:
            if io.fstat(self._fd).st_nlink:
                return
        except OSError as exc:
            raise StorageError(exc.errno or 0, "append to the run log", self.path) from exc
        try:
            fd = io.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            identity = io.fstat(fd)
        except OSError as exc:
            raise StorageError(exc.errno or 0, "reopen the run log", self.path) from exc
        logger.info("%s was replaced (compacted); appending to the new file", self.path)
        self._retired.append(self._fd)
        self._fd = fd
        self._mark_key = (_CHECK ^ identity.st_ino ^ (identity.st_dev << 40)) & 0xFFFF_FFFF_FFFF_FFFF

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the log's lock (both the thread and the file lock) for a whole operation: what
        ``gc`` does while it writes the compacted log, so that no append can slip between."""
        started = time.monotonic()
        if not self._thread_lock.acquire(timeout=self.lock_timeout):
            raise LockTimeoutError(self.lock_path, self.lock_timeout, f"another thread of pid {os.getpid()}")
        try:
            self._ensure_open()
            self._acquire(self.lock_timeout - (time.monotonic() - started))
            try:
                yield
            finally:
                self._release()
        finally:
            self._thread_lock.release()

    def _write_locked(self, data: bytes) -> int:
        io = fs()
        fd = self._fd
        try:
            size = io.size(fd)
            if size and io.pread(fd, 1, size - 1) != b"\n":
                io_write_all(fd, b"\n")
                logger.warning(
                    "repaired torn tail of %s: appended a newline after an unterminated line at byte %d",
                    self.path,
                    size,
                )
                size += 1
        except OSError as exc:
            raise StorageError(exc.errno or 0, "append to the run log", self.path) from exc
        written = 0
        try:
            n = io.write(fd, data)  # one write() in practice
            if n <= 0:  # a file system that reports 0 bytes written would loop forever
                raise OSError(5, "write returned no progress")
            written = n
            if written != len(data):  # a loop only if the kernel writes less
                view = memoryview(data)[written:]
                while view:
                    n = io.write(fd, view)
                    if n <= 0:
                        raise OSError(5, "write returned no progress")
                    written += n
                    view = view[n:]
        except OSError as exc:
            error = AppendError(exc.errno or 0, "append to the run log", self.path)
            error.written = written  # the caller tells which of its lines landed whole
            raise error from exc
        return size


_JOURNALS: weakref.WeakSet[Journal] = weakref.WeakSet()


def _forget_in_child() -> None:
    for journal in list(_JOURNALS):
        journal._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_forget_in_child)


class AppendError(StorageError):
    """An append failed after ``written`` bytes of it reached the log (0 when none did).

    Internal: it crosses processes (and reads) as the plain ``StorageError`` it is."""

    written = 0

    def __reduce__(self) -> tuple[type[StorageError], tuple[int, str, str]]:
        return (StorageError, (self.errno or 0, self.action, self.filename))


def _read_mark(fd: int, at: int, key: int) -> int:
    raw = fs().pread(fd, 16, at)
    if len(raw) != 16:
        return 0
    value, check = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")
    return value if value ^ key == check else 0


def _write_mark(fd: int, at: int, value: int, key: int) -> None:
    # Unlocked and unread: a process whose fsync started earlier may write a lower mark than
    # another's, which costs an extra fsync later and never lets a run be acknowledged before a
    # completed fsync covered it (reading the mark first only narrowed that window, for one more
    # pread per sync).  ``key`` mixes the log's inode into the check word, so marks left by a
    # replaced log read as absent.
    fs().pwrite(fd, value.to_bytes(8, "little") + (value ^ key).to_bytes(8, "little"), at)


def io_write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``: one ``write()`` in practice, a loop only if the kernel writes less."""
    io = fs()
    view = memoryview(data)
    while view:
        written = io.write(fd, view)
        if written <= 0:  # a file system that reports 0 bytes written would loop forever
            raise OSError(5, "write returned no progress")
        view = view[written:]
