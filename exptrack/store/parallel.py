"""Run the fast scan on both cores: cut the range at line starts on block boundaries, fork, merge exactly.

A forked child scans one part while the parent scans the other; the parts merge exactly because
statistics are folded by log block (``reducers.BLOCK_SHIFT``).  The child reports progress and its
result through a pipe.

A helper never outlives its reader: a reader killed mid-scan (``timeout 1 exptrack best``, Ctrl-C,
SIGKILL) would otherwise leave the helper blocked forever writing its result into a pipe whose
read end the helper itself inherited.  The helper closes that read end, and asks the kernel for
SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), checking once that the parent did not die
before the request was made.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from itertools import pairwise
from typing import Any

from exptrack.store import fastscan
from exptrack.store.fastscan import Predicate
from exptrack.store.index.reducers import BLOCK_SHIFT
from exptrack.store.segment import Progress, Segment
from exptrack.store.spill import COLUMNS, ColumnSink, piece_paths, remove_files

logger = logging.getLogger(__name__)

PARALLEL_MIN_BYTES = 32 << 20
Spill = tuple[str, str]
"""``(directory, generation)``: where a read writes its id columns instead of memory."""


def split_points(path: str, start: int, end: int, parts: int) -> list[int]:
    """Line starts that cut ``[start, end)`` into about ``parts`` pieces on block boundaries
    (so no statistics block spans two pieces)."""
    cuts = [start]
    with open(path, "rb", buffering=0) as handle:
        for i in range(1, parts):
            target = start + (end - start) * i // parts
            boundary = max(((target >> BLOCK_SHIFT) + 1) << BLOCK_SHIFT, cuts[-1] + 1)
            cut = _next_line_start(handle.fileno(), boundary, end)
            if cut < 0 or cut >= end:
                break
            cuts.append(cut)
    cuts.append(end)
    return cuts


def _next_line_start(fd: int, at: int, end: int) -> int:
    pos = at - 1
    while pos < end:
        chunk = os.pread(fd, min(1 << 20, end - pos), pos)
        if not chunk:
            return -1
        nl = chunk.find(b"\n")
        if nl >= 0:
            return pos + nl + 1
        pos += len(chunk)
    return -1


def _start_method() -> str | None:
    """``fork`` when the process has one thread (a forked child of a threaded parent may inherit
    a held lock) and may have children; ``None`` means: do not use a child process at all."""
    # macOS lists fork but system libraries there are not fork-safe; spawn would cost a fresh
    # interpreter and import per child (~0.1-0.2 s), more than it saves on all but huge logs.
    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        return None
    if multiprocessing.current_process().daemon:
        return None  # a multiprocessing.Pool worker is daemonic and may not start children
    return "fork"


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent exits (Linux); exit now if it already has."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the closed pipe end still ends a blocked send
        logger.debug("PR_SET_PDEATHSIG unavailable", exc_info=True)
    if os.getppid() != parent:  # the parent died before the request: nobody will read the result
        os._exit(1)


def _child(conn: Any, theirs: Any, parent: int, progress: Any, path: str, start: int, end: int,
           exclude: Mapping[int, str], predicate: Predicate | None, spill: Spill | None) -> None:
    die_with_parent(parent)
    theirs.close()  # the parent's read end: while this copy is open, a dead parent never shows

    def tick(done: int) -> None:
        progress.value = done

    result: object
    columns: tuple[Any, ...] = ()
    try:
        sink = ColumnSink(piece_paths(*spill, os.getpid())) if spill is not None else None
        try:
            result = fastscan.scan_range(path, start, end, exclude=exclude, tick=tick, predicate=predicate, sink=sink)
        finally:
            if sink is not None:
                sink.close()  # the parent appends the files, then deletes them
        # the id columns (most of a segment's bytes) follow one by one, as they are: pickling the
        # whole segment would hold a copy of every column in both processes at once
        columns = result.take_columns()
    except BaseException as exc:  # surfaces in the parent, which then reads the range itself
        result = exc
    try:
        conn.send(result)
        for column in columns:
            conn.send_bytes(column)
    except OSError:  # EPIPE: the reader is gone, nobody to tell -- and no traceback on its stderr
        pass
    finally:
        conn.close()


def _each_once(items: list[bytes]) -> Iterator[bytes]:
    """The items in order, each dropped from the list as it is handed out (freed once used)."""
    items.reverse()
    while items:
        yield items.pop()


def scan_parallel(path: str, start: int, end: int, *, exclude: Mapping[int, str] | None = None,
                  progress: Progress | None = None, workers: int | None = None,
                  predicate: Predicate | None = None, spill: Spill | None = None) -> Segment:
    """Read ``[start, end)`` with up to ``workers`` processes (default: one per core).

    The calling process reads the first piece itself while forked children read the others
    (a forked child inherits ``predicate``: nothing is pickled on the way in); results merge in
    log order.  Small ranges, platforms without ``fork`` and threaded callers read in one process.

    ``spill = (directory, generation)`` writes the id columns to ``<directory>/<generation>.<column>``
    instead of memory (``segment.spilled``, ``segment.spill_crcs``): each helper writes its piece
    to temporary files, appended here in log order.
    """
    sink = ColumnSink({c: os.path.join(spill[0], f"{spill[1]}.{c}") for c in COLUMNS}) if spill else None
    try:
        merged = _scan_pieces(path, start, end, exclude or {}, progress, workers, predicate, spill, sink)
    except BaseException:
        if sink is not None:
            sink.remove()
        raise
    if sink is not None:
        sink.close(sync=True)
        merged.spill_crcs = dict(sink.crcs)
    return merged


def _scan_pieces(path: str, start: int, end: int, exclude: Mapping[int, str], progress: Progress | None,
                 workers: int | None, predicate: Predicate | None, spill: Spill | None,
                 sink: ColumnSink | None) -> Segment:
    total = end - start
    count = workers if workers is not None else (os.cpu_count() or 1)
    method = _start_method()
    cuts = split_points(path, start, end, count) if count > 1 and total >= PARALLEL_MIN_BYTES and method else [
        start, end]
    if len(cuts) == 2:
        return fastscan.scan_range(path, start, end, exclude=exclude, predicate=predicate, sink=sink,
                                   tick=(lambda done: progress(done, total)) if progress else None)
    ctx: Any = multiprocessing.get_context(method)
    children = []
    counters = []
    for lo, hi in pairwise(cuts[1:]):
        counter = ctx.Value("q", 0, lock=False)
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_child, args=(send, receive, os.getpid(), counter, path, lo, hi, exclude,
                                                 predicate, spill), daemon=True)
        child.start()
        send.close()
        children.append((child, receive, lo, hi))
        counters.append(counter)

    def tick(done: int) -> None:
        if progress is not None:
            progress(done + sum(c.value for c in counters), total)

    try:
        merged = fastscan.scan_range(path, cuts[0], cuts[1], exclude=exclude, tick=tick, predicate=predicate,
                                     sink=sink)
        for child, receive, lo, hi in children:
            columns: list[bytes] | None = None
            try:
                result = receive.recv()
                if isinstance(result, Segment):
                    columns = [receive.recv_bytes() for _ in Segment.COLUMNS]
            except (EOFError, OSError):
                result = None
            if isinstance(result, Segment) and columns is not None and sink is not None and spill is not None:
                mark = sink.mark()
                try:
                    sink.append(piece_paths(*spill, child.pid), result.spilled, result.spilled_length)
                except OSError as exc:  # the piece is read again here, into the sink
                    sink.rewind(mark)
                    result = exc
            if not isinstance(result, Segment) or columns is None:
                logger.warning("parallel read of bytes %d-%d failed (%r); reading them here", lo, hi, result)
                result = fastscan.scan_range(path, lo, hi, exclude=exclude, predicate=predicate, sink=sink)
                columns = None
            merged.merge(result, None if columns is None else _each_once(columns))
            tick(0)
    finally:
        for child, receive, _, _ in children:
            receive.close()
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
                child.join()
            if spill is not None:
                remove_files(piece_paths(*spill, child.pid))
    return merged


