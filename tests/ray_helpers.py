"""What the Ray test modules share: Tune leaves its own SIGINT handler installed after
``Tuner.fit``; the tests put the previous handlers back so later tests in the same worker see
Ctrl-C as a ``KeyboardInterrupt`` again."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def signal_handlers_kept() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
