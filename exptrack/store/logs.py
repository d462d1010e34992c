"""The tracker's own log: ``<store>/log.txt`` through stdlib ``logging``, the pid on every line.

Many processes append to the same ``log.txt``; each record is one short ``write()`` on an
``O_APPEND`` file, which the kernel keeps whole.  The root logger is never touched: a handler is
attached to the ``exptrack`` logger once per store and process, and it only takes records that
belong to its store (or to no store in particular).

``StoreLine`` writes the one line a durable run leaves (``logged run …``) without the logging
machinery when that machinery would only end in this file: a ``LogRecord``, ``findCaller`` and the
formatter cost 12 µs in a quiet process and 60-80 µs of CPU per run with 8 durable writers on a
busy machine (cold caches after every ``fsync``), more than the append itself.  The line is
byte-for-byte what the handler would write; whenever any other handler, filter or level could see
the record, it goes through ``logging`` as before.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from exptrack.store.fsio import FILE_MODE

LOG_FORMAT = "%(asctime)s %(levelname)s pid=%(process)d %(name)s: %(message)s"
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # logging.Formatter.default_time_format, which StoreLine writes too

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


class StoreLine:
    """Writes one logger's records for one store to its ``log.txt``, directly when that is all
    ``logging`` would do with them (see the module docstring), else through ``logging``."""

    def __init__(self, logger: logging.Logger, store: str) -> None:
        self.logger = logger
        self.store = os.path.abspath(store)
        self._extra = {"store": self.store}
        self._second = -1
        self._stamp = ""

    def log(self, level: int, message: str) -> None:
        """Log ``message`` at ``level`` (the caller formats it: no ``%`` arguments)."""
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        handler = _handlers.get(self.store)
        if handler is None or not self._only_destination(handler, level):
            logger.log(level, "%s", message, extra=self._extra)
            return
        now = time.time_ns()
        second = now // 1_000_000_000
        if second != self._second:  # logging's asctime, formatted once per second
            self._stamp = time.strftime(_TIME_FORMAT, time.localtime(second))
            self._second = second
        line = (f"{self._stamp},{now // 1_000_000 % 1000:03d} {logging.getLevelName(level)} "
                f"pid={os.getpid()} {logger.name}: {message}\n")
        handler.acquire()
        try:
            stream = getattr(handler, "stream", None)  # read under the lock: close() sets it to None
            if stream is not None:
                stream.write(line)
                stream.flush()
        except (OSError, ValueError):  # what FileHandler.emit reports instead of raising
            handler.handleError(logging.makeLogRecord({"msg": message, "levelno": level, "name": logger.name}))
        finally:
            handler.release()
        if stream is None:  # closed meanwhile (detach_store_log): let logging decide
            logger.log(level, "%s", message, extra=self._extra)

    def _only_destination(self, handler: logging.Handler, level: int) -> bool:
        """Whether ``logging`` would hand a record of ``logger`` for this store to ``handler`` alone,
        formatted by exptrack's own format."""
        logger = self.logger
        formatter = handler.formatter
        if handler.level > level or len(handler.filters) != 1 or type(formatter) is not logging.Formatter:
            return False
        if (formatter._fmt, formatter.datefmt, formatter.converter, formatter.default_time_format,
                formatter.default_msec_format) != (LOG_FORMAT, None, time.localtime, _TIME_FORMAT, "%s,%03d"):
            return False  # a format changed after attach_store_log: logging writes it
        node: logging.Logger | None = logger
        while node is not None:  # the loggers a record passes, as Logger.callHandlers walks them
            if node.filters:
                return False
            for other in node.handlers:
                if other is not handler and not isinstance(other.filters[0] if other.filters else None, _StoreFilter):
                    return False
            if not node.propagate:
                break
            node = node.parent
        return True
