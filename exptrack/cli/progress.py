"""A progress bar on stderr while a query first reads a big log (a cold index build).

Only on a terminal and never with ``--json``: piped output and machine formats stay clean.  The
core knows nothing of click; it calls ``progress(bytes_done, bytes_total)`` as it reads
(``ExperimentTracker.refresh_index``) and this module draws.
"""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING, Any

import click

from exptrack.errors import ExptrackError

if TYPE_CHECKING:
    from exptrack.tracker import ExperimentTracker

SHOW_FROM_BYTES = 8 << 20
"""Smaller reads finish in about a second or less: a bar would only flicker."""


def _isatty(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def refresh_with_progress(tracker: ExperimentTracker, fmt: str) -> None:
    """Bring the index up to date, drawing a bar on stderr when that means reading a lot."""
    if fmt == "json" or not _isatty(sys.stderr):
        return  # the query refreshes the index itself, silently
    bar: Any = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if total < SHOW_FROM_BYTES:
            return
        if bar is None:
            bar = click.progressbar(length=total, label="reading the run log", file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        tracker.refresh_index(progress=progress)
    except ExptrackError:
        pass  # the query falls back to scanning and reports real errors itself
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
