"""What a live run leaves in ``<store>/active`` for :meth:`ExperimentTracker.recover`.

``<run_id>.json`` is the marker: pid, host, a token naming the process, params, tags and the
artifacts so far; it is small because every ``log_param`` rewrites it.  ``<run_id>.capture``
holds the run's capture, written once.  Both are replaced whole, never edited in place, so
``recover()`` never reads half a file; and a marker counts as dead only when its process is gone
for good: exited, a zombie, or its pid reused by another process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from exptrack.store import codec
from exptrack.store.fsio import FILE_MODE, fs, make_dirs


def write_whole(path: Path, data: bytes) -> None:
    """Replace ``path`` by a complete new file: a reader never sees it half-written."""
    # The temporary name does not end in .json: recover() must not take it for a marker.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    make_dirs(path.parent)
    try:
        fd = fs().open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            from exptrack.store.journal import io_write_all

            io_write_all(fd, data)
        finally:
            fs().close(fd)
        fs().replace(str(tmp), str(path))
    except BaseException:
        with contextlib.suppress(OSError):
            fs().unlink(str(tmp))
        raise


def process_token(pid: int) -> str | None:
    """Boot id and start time of a process: tells it from a later one given the same pid (Linux)."""
    stat = _proc_stat(pid)
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as handle:
            boot = handle.read().strip().decode("ascii", "replace")
    except OSError:
        return None
    return f"{boot}:{stat[1]}" if stat is not None else None


def process_alive(pid: int, token: object = None) -> bool:
    """Whether the process that wrote a marker may still finish its run.

    Gone, a zombie (killed, not yet reaped by its parent) or a pid now used by another process
    (containers restart with the same small pids) all count as dead.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc: the pid is all there is to go by
    if stat[0] == "Z":
        return False
    return not isinstance(token, str) or token == process_token(pid)


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """State and start time (clock ticks since boot) from ``/proc/<pid>/stat``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ")"
    fields = data.rpartition(b")")[2].split()
    if len(fields) < 20:
        return None
    return fields[0].decode("ascii", "replace"), fields[19].decode("ascii", "replace")


def capture_file(store: Path, run_id: str) -> Path:
    """Where a live run keeps its capture for :meth:`ExperimentTracker.recover`."""
    return store / "active" / f"{run_id}.capture"


def recovered_extra(store: Path, marker: Mapping[str, Any]) -> dict[str, Any]:
    """The capture and artifacts a dead run had saved, as ``extra`` sections of its record."""
    extra: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):  # missing or unreadable: recover without it
        saved = codec.loads(capture_file(store, str(marker.get("run_id"))).read_bytes())
        if isinstance(saved, dict):
            extra.update(saved)
    artifacts = marker.get("artifacts")
    if isinstance(artifacts, Mapping) and artifacts:
        extra["artifacts"] = dict(artifacts)
    return extra


def without_store(info: dict[str, object], store: Path) -> dict[str, object]:
    """A code state without the store's own files among the untracked ones.

    A store kept inside the repository (the default ``experiments/`` in the project) would
    otherwise make every run look dirty -- its marker is written before capture -- and no run
    could ever be reproduced to a match.
    """
    untracked = info.get("untracked")
    prefix = store_prefix(info, store)
    if prefix is None or not isinstance(untracked, list) or not untracked:
        return info
    kept = [p for p in untracked if not (isinstance(p, str) and (p + "/").startswith(prefix))]
    if len(kept) == len(untracked):
        return info
    count = info.get("untracked_count")
    fewer = count - (len(untracked) - len(kept)) if type(count) is int else len(kept)
    return {**info, "untracked": kept, "untracked_count": fewer}


def store_prefix(info: Mapping[str, object], store: Path) -> str | None:
    """``"experiments/"``: the store's path inside the code state's repository, or ``None``."""
    root = info.get("repo_root")
    if not isinstance(root, str):
        return None
    try:
        rel = os.path.relpath(os.path.realpath(store), os.path.realpath(root))
    except ValueError:  # another drive on Windows
        return None
    if rel in (os.curdir, os.pardir) or rel.startswith(os.pardir + os.sep):
        return None
    return rel.replace(os.sep, "/") + "/"
