"""A fingerprint cache keyed by file identity, so unchanged data is not hashed again on the next run."""

from __future__ import annotations

import contextlib
import json
import logging
import os

logger = logging.getLogger(__name__)

_CACHE_FORMAT = "exptrack-fingerprint-cache"


_CACHE_MAX_ENTRIES = 100_000


class FingerprintCache:
    """sha256 of files by stat identity, kept in a JSON file so unchanged data is not re-read.

    The key is (absolute path, size, mtime_ns, ctime_ns, inode, device), the trust git and make
    place in stat data.  ctime is in the key because nothing but the kernel sets it: content
    rewritten at the same size with its mtime forced back (``os.utime``) still changes ctime.

    Loaded on first use. ``save`` overlays this process's new entries on the file as it is now
    and replaces it atomically (temporary file in the same directory, fsync, ``os.replace``), so
    concurrent processes never see a torn file; the last writer wins and entries lost in a race
    are recomputed next time. An unreadable or corrupt file counts as empty and is rewritten.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._entries: dict[str, list[object]] | None = None
        self._new: dict[str, list[object]] = {}

    def lookup(self, path: str, st: os.stat_result) -> str | None:
        """The cached sha256 of ``path`` if its stat still matches, else ``None``."""
        if self._entries is None:
            self._entries = self._read()
        entry = self._entries.get(path)
        if entry is None or len(entry) != 6 or entry[:5] != _identity(st):
            return None
        sha = entry[5]
        return sha if isinstance(sha, str) else None

    def store(self, path: str, st: os.stat_result, sha256: str) -> None:
        if self._entries is None:
            self._entries = self._read()
        entry: list[object] = [*_identity(st), sha256]
        self._entries[path] = self._new[path] = entry

    def save(self) -> bool:
        """Write new entries to disk; ``False`` (logged) when the file system refuses."""
        if not self._new:
            return True
        merged = self._read()
        for path, entry in self._new.items():
            merged.pop(path, None)  # re-insert at the end: the oldest entries are dropped first
            merged[path] = entry
        for path in list(merged)[: max(len(merged) - _CACHE_MAX_ENTRIES, 0)]:
            del merged[path]
        payload = {"format": _CACHE_FORMAT, "version": 1, "entries": merged}
        try:
            _write_atomic(self.path, json.dumps(payload, separators=(",", ":")).encode())
        except OSError as exc:
            logger.warning("cannot save fingerprint cache %s: %s", self.path, exc)
            return False
        self._entries, self._new = merged, {}
        return True

    def _read(self) -> dict[str, list[object]]:
        try:
            with open(self.path, "rb") as handle:
                payload = json.loads(handle.read())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.info("ignoring unreadable fingerprint cache %s: %s", self.path, exc)
            return {}
        if not isinstance(payload, dict) or payload.get("format") != _CACHE_FORMAT:
            logger.info("ignoring fingerprint cache %s: not in the expected format", self.path)
            return {}
        entries = payload.get("entries")
        if not isinstance(entries, dict):
            return {}
        return {k: v for k, v in entries.items() if isinstance(k, str) and isinstance(v, list)}


def _identity(st: os.stat_result) -> list[object]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _write_atomic(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o775, exist_ok=True)
    # Not mkstemp (always 0600): 0664 minus the umask, so a store shared by a group stays shared.
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o664)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


