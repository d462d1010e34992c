"""The tracker's own log: ``<store>/log.txt`` through stdlib ``logging``, the pid on every line.

Many processes append to the same ``log.txt``; each record is one short ``write()`` on an
``O_APPEND`` file, which the kernel keeps whole.  The root logger is never touched: a handler is
attached to the ``exptrack`` logger once per store and process, and it only takes records that
belong to its store (or to no store in particular).
"""

from __future__ import annotations

import logging
import os
import threading

from exptrack.store.fsio import FILE_MODE

LOG_FORMAT = "%(asctime)s %(levelname)s pid=%(process)d %(name)s: %(message)s"

_package_logger = logging.getLogger("exptrack")
_handlers: dict[str, logging.Handler] = {}
_guard = threading.Lock()


class _StoreFilter(logging.Filter):
    def __init__(self, store: str) -> None:
        super().__init__()
        self.store = store

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "store", self.store) == self.store


def attach_store_log(store: str) -> bool:
    """Send exptrack's log records for ``store`` to ``store/log.txt``; False if it cannot be opened.

    A read-only store is still queryable, so failing to open the log is reported, never raised.
    """
    store = os.path.abspath(store)
    with _guard:
        if store in _handlers:
            return True
        try:
            # Created first with exptrack's mode: FileHandler would ask for 0666 (world-writable
            # under umask 000).
            os.close(os.open(os.path.join(store, "log.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                             FILE_MODE))
            handler: logging.Handler = logging.FileHandler(
                os.path.join(store, "log.txt"), encoding="utf-8", delay=False
            )
        except OSError as exc:
            _package_logger.debug("cannot open log.txt in %s: %s", store, exc)
            return False
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(_StoreFilter(store))
        _handlers[store] = handler
        _package_logger.addHandler(handler)
        if _package_logger.level == logging.NOTSET:
            level = os.environ.get("EXPTRACK_LOG_LEVEL", "INFO").upper()
            _package_logger.setLevel(level if isinstance(logging.getLevelName(level), int) else "INFO")
        return True


def detach_store_log(store: str) -> None:
    """Close the store's log handler (tests, long-lived processes switching stores)."""
    store = os.path.abspath(store)
    with _guard:
        handler = _handlers.pop(store, None)
    if handler is not None:
        _package_logger.removeHandler(handler)
        handler.close()
