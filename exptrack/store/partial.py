"""Decode log lines into the fields the index folds, with msgspec (the ``fast`` extra); the only msgspec importer.

The fast reader (``fastscan``) needs, per run line, only the core fields, ``experiment``,
``directions``, ``nonfinite`` and the names of the other top-level sections.  ``msgspec`` decodes a
line straight into a slotted struct in C, about twice as fast as ``orjson.loads`` into a dict, so
the cold build of the index takes this path whenever msgspec is installed; without it (or when it
refuses a line) the reader keeps the ``orjson`` path, which it was built on.

Why the answers cannot change -- the two parsers must agree on every line that carries a valid
checksum, forged ones included (``tests/test_partial_decoder.py`` compares them, generated and
hand-picked):

* **Every value is decoded**, none skipped: msgspec validates what orjson validates in a value it
  skips only loosely (UTF-8 and escapes in strings, numbers that overflow to infinity), so every
  field is typed ``Any``.  Unknown top-level keys are refused (``forbid_unknown_fields``) and then
  *learned*: the struct gains a field of that name and the lines are decoded again, so the set of
  top-level sections is exact and a store's usual sections cost one retry each, once per process.
* **Where they differ, orjson decides.**  Anything msgspec refuses -- malformed JSON, invalid
  UTF-8, a lone surrogate escape, an unknown key it cannot learn, nesting deeper than Python's
  recursion limit -- makes :meth:`PartialDecoder.decode` return ``None`` and the caller reads those
  lines with orjson.  What msgspec *accepts* and orjson refuses or reads differently is guarded:
  nesting deeper than orjson's 1024 levels (only a line with more than 1024 ``{``/``[`` can, and
  only a line of at least 2 KiB holds that many); integers beyond 64 bits, which orjson reads as
  floats -- the reader checks the metric and schema values, the only numbers it folds; and
  integers of 309 digits or more, which orjson refuses (infinity as a double) wherever they are:
  :func:`may_hold_long_integer` sends a chunk that may hold one to orjson.
* Duplicate keys: both keep the last one.
"""

from __future__ import annotations

import logging
import operator
import re
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

logger = logging.getLogger(__name__)

CORE = ("schema", "run_id", "timestamp", "status", "params", "metrics", "tags")
"""The fields every run line ``codec.encode`` writes holds (the struct requires them)."""
OPTIONAL = ("experiment", "directions", "nonfinite", "kind")
"""Sections the reader folds or checks when present (absent: ``UNSET``, which is falsy)."""
MAX_LEARNED = 64
"""Top-level sections learned per process; a log with more takes the orjson path for the rest."""
_RETRIES = 8
"""Sections learned per call before the lines go to orjson (each learning decodes them again)."""
_ORJSON_DEPTH = 1024
_DEEP_LINE = 2 * (_ORJSON_DEPTH + 1)
"""Shortest line that can nest deeper than orjson allows (every opening bracket is closed)."""
_UNKNOWN = re.compile(r"Object contains unknown field `(.*)`", re.DOTALL)
_LONGEST_FINITE_INT = 309
"""Digits of the shortest integer literal orjson refuses (it parses integers beyond 64 bits as
doubles, and 10**309 is past the largest); msgspec reads any integer literal as a Python int."""
_STEP = 20
_RUN = b"1" * (_LONGEST_FINITE_INT // _STEP)
_DIGIT_MAP = bytes.maketrans(b"0123456789" + bytes(b for b in range(256) if not 48 <= b <= 57),
                             b"1" * 10 + b"0" * 246)

_decoder: PartialDecoder | None = None
_missing = False


class PartialDecoder:
    """Lines → structs holding :data:`CORE`, :data:`OPTIONAL` and every learned section.

    ``rows``, ``experiments`` and ``directions`` read the fields the reader folds from a list of
    structs with C-level ``map`` calls; ``sections`` names the top-level keys they hold.
    """

    def __init__(self, msgspec: Any) -> None:
        self._msgspec = msgspec
        self._errors = (msgspec.MsgspecError, ValueError, RecursionError)
        self.unset: object = msgspec.UNSET
        self.learned: dict[str, str] = {}  # top-level key -> struct field name
        self._optional: dict[type, dict[str, Callable[[Any], Any]]] = {}
        self.row: Callable[[Any], tuple[Any, ...]] = operator.attrgetter(
            "run_id", "status", "metrics", "schema", "params", "tags", "timestamp")
        self.experiment: Callable[[Any], Any] = operator.attrgetter("experiment")
        self.directions: Callable[[Any], Any] = operator.attrgetter("directions")
        self.kind: Callable[[Any], Any] = operator.attrgetter("kind")
        self._build()

    def _build(self) -> None:
        msgspec = self._msgspec
        fields: list[Any] = [(name, Any) for name in CORE]
        fields += [(name, Any, msgspec.UNSET) for name in OPTIONAL]
        fields += [(field, Any, msgspec.UNSET) for field in self.learned.values()]
        # the field names are generated (f0, f1...): a key need not be an identifier
        rename = {field: key for key, field in self.learned.items()}
        struct = msgspec.defstruct("Line", fields, forbid_unknown_fields=True, gc=False, rename=rename or None)
        # presence of each optional section: a struct field's value is UNSET when its key is absent.
        # Kept per struct class: a thread may still hold structs of the class before a learning.
        optional: dict[str, Callable[[Any], Any]] = {key: operator.attrgetter(key) for key in OPTIONAL}
        optional.update({key: operator.attrgetter(field) for key, field in self.learned.items()})
        self._optional[struct] = optional
        self._decode: Callable[[bytes], Any] = msgspec.json.Decoder(struct).decode

    def decode(self, lines: Sequence[bytes]) -> list[Any] | None:
        """One struct per line, or ``None`` when any line needs orjson's verdict."""
        if max(map(len, lines), default=0) >= _DEEP_LINE and any(
                line.count(b"[") + line.count(b"{") > _ORJSON_DEPTH for line in lines if len(line) >= _DEEP_LINE):
            return None
        for _ in range(_RETRIES):
            try:
                return list(map(self._decode, lines))
            except self._errors as exc:  # noqa: PERF203 - a retry per section learned, a few per process
                if not self._learn(exc):
                    return None
        return None

    def _learn(self, exc: BaseException) -> bool:
        """Add the unknown top-level key ``exc`` names; False when there is none to add."""
        found = _UNKNOWN.fullmatch(str(exc)) if isinstance(exc, self._msgspec.ValidationError) else None
        if found is None or len(self.learned) >= MAX_LEARNED:
            return False
        key = found[1]
        if key in self.learned or key in CORE or key in OPTIONAL:
            return False  # a key msgspec reads another way than it names it: orjson decides
        self.learned[key] = f"f{len(self.learned)}"
        try:
            self._build()
        except ValueError:  # msgspec names no field with a quote, a backslash or a control character
            del self.learned[key]
            self._build()
            return False
        logger.debug("learned the top-level section %r", key)
        return True

    def sections(self, objs: list[Any], known: set[str]) -> set[str]:
        """The top-level keys ``objs`` hold that ``known`` lacks."""
        found = set(CORE) - known
        unset = self.unset
        if not objs:
            return found
        for key, getter in self._optional[type(objs[0])].items():
            if key not in known and any(map(operator.is_not, map(getter, objs), repeat(unset))):
                found.add(key)
        return found


def may_hold_long_integer(chunk: bytes) -> bool:
    """Whether ``chunk`` may hold a run of 309 digits (an integer literal orjson refuses).

    Such a run covers at least 15 consecutive bytes of every 20th byte; ordinary lines never
    put 15 digits there (floats have 17 significant digits, not 300), so the test costs one
    strided copy of 1/20 of the chunk and a ``find``."""
    return _RUN in chunk[::_STEP].translate(_DIGIT_MAP)


def decoder() -> PartialDecoder | None:
    """This process's decoder, or ``None`` without msgspec (the reader then uses orjson alone)."""
    global _decoder, _missing  # noqa: PLW0603 - one decoder per process: what it learned is reused
    if _decoder is None and not _missing:
        try:
            import msgspec
        except ImportError:
            _missing = True
            return None
        _decoder = PartialDecoder(msgspec)
    return _decoder
