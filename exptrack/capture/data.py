"""Data fingerprints: content hashes of the files a run read, cheap to repeat on unchanged data.

Every file is hashed with sha256 in 1 MiB chunks (constant memory for multi-GB files). Each
named path and the whole call also get a *tree hash*, defined once here:

    tree = sha256 of the concatenation, in bytewise sorted order, of one line per file
           ``<relpath> NUL <sha256 hex> NUL <size in decimal> LF``

with ``relpath`` '/'-separated, in the file system's encoding. Inside a named directory it is
relative to that directory; a named file's line uses its base name. The overall tree takes every
file of every named path with ``relpath`` = the recorded key (without its trailing ``/``) joined
to the file's relpath; a named path that cannot be read contributes ``<key> NUL missing NUL -1 LF``
so that a missing input changes it. Identical lines count once.

Symlinks are followed (a link is fingerprinted as its target); broken links, special files (a
FIFO would block the read) and directories reached twice (link loops) are skipped and listed
under ``skipped``. Directories keep per-file ``entries`` however large, so ``compare_data`` can
name the files that changed; a million-file directory makes a correspondingly large record.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from typing import TYPE_CHECKING

from exptrack.capture.cache import FingerprintCache, _identity
from exptrack.capture.dvc import _DvcIndex
from exptrack.capture.names import json_text, record_key

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
# A file is cached as soon as it is hashed, so the second run after writing a data file already
# reads nothing.  The remaining window -- the same file rewritten at the same size within one tick
# of the file system's clock (a few ms) after being hashed -- is the one git and make accept too.
_RACY_NS = 0
_DIFF_CAP = 50

_FileLine = tuple[bytes, str, int]  # relpath, sha256, size: one line of a tree hash


def _hash_file(path: str) -> tuple[str, int]:
    """sha256 hex and byte count of one file; the only place file contents are read."""
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    size = 0
    with open(path, "rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            digest.update(view[:count])
            size += count
    return digest.hexdigest(), size








def fingerprint_data(
    paths: Sequence[str | os.PathLike[str]],
    *,
    cache: FingerprintCache | None = None,
    base: str | None = None,
) -> dict[str, object]:
    """Fingerprint the files and directories a run reads; never raises.

    Args:
        paths: files or directories (walked recursively).
        cache: skips re-reading files whose stat is unchanged since an earlier call.
        base: paths inside it are recorded relative to it, others absolute; default the cwd.

    Returns:
        ``{"tree": sha256, "paths": {key: entry}}`` where a file's entry is ``{"type": "file",
        "sha256", "size", "tree"}``, a directory's (key ending in ``/``) is ``{"type": "dir",
        "tree", "files", "size", "entries": {relpath: {"sha256", "size"}}}`` plus ``skipped``
        when some files could not be read, and an unreadable path's is ``{"error": reason}``.
        Any entry gains ``"dvc": {"md5", "source"}`` when a ``.dvc`` file or ``dvc.lock`` names it.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]  # one path passed bare: a str is a sequence, of characters
    try:
        base_dir = os.path.abspath(base if base is not None else os.getcwd())
    except OSError:  # the cwd was deleted under the process: record absolute paths
        base_dir = os.sep
    started_ns = time.time_ns()
    dvc = _DvcIndex(base_dir)
    results: dict[str, object] = {}
    overall: list[_FileLine] = []
    for named in paths:
        try:
            abs_path = os.path.abspath(os.fsdecode(named))
        except (TypeError, ValueError, OSError) as exc:
            results[str(named)] = {"error": f"not a usable path: {exc}"}
            continue
        entry, lines = _fingerprint_one(abs_path, cache, started_ns)
        key = record_key(abs_path, base_dir)
        if entry.get("type") == "dir":
            prefix = os.fsencode(key.rstrip("/")) + b"/"
            overall += [(prefix + rel, sha, size) for rel, sha, size in lines]
            key = key if key.endswith("/") else key + "/"
        elif entry.get("type") == "file":
            overall += [(os.fsencode(key), sha, size) for _, sha, size in lines]
        else:
            overall.append((os.fsencode(key), "missing", -1))
        found = dvc.lookup(abs_path)
        if found is not None:
            entry["dvc"] = found
        results[json_text(key)] = entry
    if cache is not None:
        cache.save()
    return {"tree": _tree(overall), "paths": results}


def _fingerprint_one(
    path: str, cache: FingerprintCache | None, started_ns: int
) -> tuple[dict[str, object], list[_FileLine]]:
    try:
        st = os.stat(path)
    except (OSError, ValueError) as exc:
        return {"error": _why(exc, path)}, []
    if stat.S_ISDIR(st.st_mode):
        return _fingerprint_dir(path, st, cache, started_ns)
    if not stat.S_ISREG(st.st_mode):
        return {"error": "not a regular file or directory"}, []
    try:
        sha, size = _digest(path, st, cache, started_ns)
    except OSError as exc:
        return {"error": _why(exc, path)}, []
    lines = [(os.fsencode(os.path.basename(path)), sha, size)]
    return {"type": "file", "sha256": sha, "size": size, "tree": _tree(lines)}, lines


def _fingerprint_dir(
    root: str, root_st: os.stat_result, cache: FingerprintCache | None, started_ns: int
) -> tuple[dict[str, object], list[_FileLine]]:
    files, skipped = _walk(root, root_st)
    entries: dict[str, object] = {}
    lines: list[_FileLine] = []
    for rel, full, st in files:
        try:
            sha, size = _digest(full, st, cache, started_ns)
        except OSError as exc:
            skipped.append({"path": json_text(rel), "reason": _why(exc, full)})
            continue
        entries[json_text(rel)] = {"sha256": sha, "size": size}
        lines.append((os.fsencode(rel), sha, size))
    entry: dict[str, object] = {
        "type": "dir",
        "tree": _tree(lines),
        "files": len(lines),
        "size": sum(size for _, _, size in lines),
        "entries": entries,
    }
    if skipped:
        entry["skipped"] = skipped
    return entry, lines


def _walk(root: str, root_st: os.stat_result) -> tuple[list[tuple[str, str, os.stat_result]], list[object]]:
    """Regular files under ``root`` as (relpath, path, stat), in a creation-order-free order."""
    files: list[tuple[str, str, os.stat_result]] = []
    skipped: list[object] = []
    seen = {(root_st.st_dev, root_st.st_ino)}
    pending = [("", root)]
    while pending:
        rel_dir, directory = pending.pop()
        try:
            with os.scandir(directory) as scan:
                children = sorted(scan, key=lambda e: e.name)
        except OSError as exc:
            skipped.append({"path": json_text(rel_dir or "."), "reason": _why(exc, directory)})
            continue
        for child in children:
            rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
            try:
                st = os.stat(child.path)
            except OSError as exc:
                skipped.append({"path": json_text(rel), "reason": _why(exc, child.path)})
                continue
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) in seen:
                    skipped.append({"path": json_text(rel), "reason": "directory already included (symlink)"})
                else:
                    seen.add((st.st_dev, st.st_ino))
                    pending.append((rel, child.path))
            elif stat.S_ISREG(st.st_mode):
                files.append((rel, child.path, st))
            else:
                skipped.append({"path": json_text(rel), "reason": "not a regular file"})
    files.sort(key=lambda f: os.fsencode(f[0]))
    return files, skipped


def _digest(
    path: str, st: os.stat_result, cache: FingerprintCache | None, started_ns: int
) -> tuple[str, int]:
    if cache is not None and (hit := cache.lookup(path, st)) is not None:
        return hit, st.st_size
    sha, size = _hash_file(path)
    if cache is not None and size == st.st_size and started_ns - st.st_mtime_ns >= _RACY_NS:
        try:
            unchanged = _identity(os.stat(path)) == _identity(st)
        except OSError:
            unchanged = False
        if unchanged:  # a file being written while hashed is not trusted for next time
            cache.store(path, st, sha)
    return sha, size


def _tree(lines: list[_FileLine]) -> str:
    digest = hashlib.sha256()
    for line in sorted({rel + b"\0" + sha.encode() + b"\0" + b"%d\n" % size for rel, sha, size in lines}):
        digest.update(line)
    return digest.hexdigest()


def _why(exc: BaseException, path: str) -> str:
    if isinstance(exc, FileNotFoundError) and os.path.islink(path):
        return "broken symlink"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__








def compare_data(recorded: Mapping[str, object], current: Mapping[str, object]) -> list[dict[str, object]]:
    """Per named path, whether the data now is the data a run read.

    Args:
        recorded: the run's ``fingerprint_data`` result.
        current: ``fingerprint_data`` of the same paths now.

    Returns:
        One item per path (recorded ones first): ``{"path", "verdict": "match" | "mismatch" |
        "missing", "reason", "added", "removed", "changed", "truncated"}``; the three lists are
        relpaths inside a directory, at most 50 each (``truncated`` says when more differ).
    """
    rec_paths, cur_paths = _paths(recorded), _paths(current)
    names = [*rec_paths, *(p for p in cur_paths if p not in rec_paths)]
    return [_compare_one(name, rec_paths.get(name), cur_paths.get(name)) for name in names]


def _compare_one(
    name: str, rec: dict[str, object] | None, cur: dict[str, object] | None
) -> dict[str, object]:
    item: dict[str, object] = {"path": name, "added": [], "removed": [], "changed": [], "truncated": False}
    if cur is None or "error" in cur:
        why = cur.get("error") if cur is not None else "not fingerprinted now"
        was = " (also missing when recorded)" if rec is not None and "error" in rec else ""
        return {**item, "verdict": "missing", "reason": f"{why}{was}"}
    if rec is None or "error" in rec:
        why = "not named by the run" if rec is None else f"missing when recorded: {rec.get('error')}"
        return {**item, "verdict": "mismatch", "reason": why}
    if rec.get("type") != cur.get("type"):
        return {**item, "verdict": "mismatch", "reason": f"was a {rec.get('type')}, now a {cur.get('type')}"}
    if rec.get("tree") == cur.get("tree"):
        return {**item, "verdict": "match", "reason": "same content"}
    rec_entries, cur_entries = rec.get("entries"), cur.get("entries")
    if not isinstance(rec_entries, dict) or not isinstance(cur_entries, dict):
        return {**item, "verdict": "mismatch", "reason": "content differs"}
    added = sorted(set(cur_entries) - set(rec_entries))
    removed = sorted(set(rec_entries) - set(cur_entries))
    changed = sorted(k for k in set(rec_entries) & set(cur_entries) if rec_entries[k] != cur_entries[k])
    counts = f"{len(added)} added, {len(removed)} removed, {len(changed)} changed"
    return {
        **item,
        "verdict": "mismatch",
        "reason": f"files differ: {counts}",
        "added": added[:_DIFF_CAP],
        "removed": removed[:_DIFF_CAP],
        "changed": changed[:_DIFF_CAP],
        "truncated": max(len(added), len(removed), len(changed)) > _DIFF_CAP,
    }


def _paths(fingerprint: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """Named paths keyed without a trailing '/', since a missing directory loses its slash."""
    paths = fingerprint.get("paths")
    if not isinstance(paths, dict):
        return {}
    return {(k.rstrip("/") or k): v for k, v in paths.items() if isinstance(k, str) and isinstance(v, dict)}
