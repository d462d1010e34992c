"""What every importer shares: the source-neutral run, the result, ids, times and type recovery.

An importer reads another tool's store into :class:`ImportedRun` values (or :class:`Skipped`
notes for runs that are not results yet); :func:`write_runs` appends them through the tracker's
ordinary ``log_runs`` so they are validated, checksummed and indexed like any other run.
"""

from __future__ import annotations

import ast
import datetime as _dt
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HistoryPoint = tuple[int, float, float | None]
"""One point of a metric's history: ``(step, value, time in seconds since the epoch or None)``."""

_HEX_ID = re.compile(r"[0-9a-f]{32}")
_INT_TEXT = re.compile(r"-?(0|[1-9][0-9]*)")
_LITERALS: dict[str, object] = {"True": True, "False": False, "None": None}
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_MAX_DEPTH = 32  # a literal nested deeper than this stays a string: no real hyperparameter is


@dataclass(frozen=True, slots=True)
class ImportedRun:
    """One run of a foreign store, translated into exptrack's terms but not written yet."""

    source_id: str
    run_id: str
    experiment: str
    timestamp: str
    status: str
    name: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    history: Mapping[str, list[HistoryPoint]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    directions: Mapping[str, str] = field(default_factory=dict)
    note: str | None = None
    source: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A run of the source that is deliberately not imported (still running, deleted...)."""

    source_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What one import did; importing the same source again moves runs from ``imported`` to ``existing``.

    Attributes:
        source: the source as given (a path, a URI or a storage URL).
        imported: exptrack run ids appended by this import, in source order.
        existing: run ids that were already in the store (from an earlier import), left alone.
        skipped: ``(source id, reason)`` for runs not imported (unfinished, deleted in the source).
        experiments: the exptrack experiments the runs went to, sorted.
        warnings: source data that could not be read faithfully (e.g. an unparsable metric line).
    """

    source: str
    imported: tuple[str, ...] = ()
    existing: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    experiments: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for people: how many runs went where, and what was left out and why."""
        where = ", ".join(self.experiments) or "-"
        text = f"imported {len(self.imported)} run(s) from {self.source} into experiment(s) {where}"
        if self.existing:
            text += f"; {len(self.existing)} already imported"
        if self.skipped:
            reasons: dict[str, int] = {}
            for _, reason in self.skipped:
                reasons[reason] = reasons.get(reason, 0) + 1
            text += "; skipped " + ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
        if self.warnings:
            text += f"; {len(self.warnings)} warning(s)"
        return text


def recover_param(text: str) -> object:
    """The typed value MLflow turned into ``text`` with ``str()``, or ``text`` itself.

    The rule (README, "Importing"): a string becomes a bool, ``None``, an int, a float, or a
    list/dict of those, exactly when Python's ``str()`` of that value gives back ``text``
    character for character.  So ``"8"`` is 8, ``"0.05"`` is 0.05, ``"True"`` is True and
    ``"[64, 32]"`` is ``[64, 32]``, while ``"007"``, ``"1E-5"``, ``"nan"`` and ``"(1, 2)"`` stay
    strings.  Nothing is lost: the original text is always ``str(value)``.
    """
    if not text:
        return text
    if text in _LITERALS:
        return _LITERALS[text]
    if _INT_TEXT.fullmatch(text):
        number = int(text)
        return number if _INT_MIN <= number <= _INT_MAX and str(number) == text else text  # "-0" stays
    first = text[:1]
    if first.isdigit() or (first in "-." and len(text) > 1):
        try:
            value = float(text)
        except ValueError:
            return text
        return value if math.isfinite(value) and repr(value) == text else text
    if first in "[{" and text[-1:] in "]}":
        try:
            literal = ast.literal_eval(text)  # parses literals only: never runs code
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return text
        return literal if _plain(literal, 0) and str(literal) == text else text
    return text


def _plain(value: object, depth: int) -> bool:
    """Whether ``value`` is made of JSON-like Python values exptrack stores as they are."""
    if depth > _MAX_DEPTH:
        return False
    kind = type(value)
    if value is None or kind in (str, bool):
        return True
    if kind is int:
        return _INT_MIN <= value <= _INT_MAX  # type: ignore[operator]
    if kind is float:
        return math.isfinite(value)  # type: ignore[arg-type]
    if kind is list:
        return all(_plain(item, depth + 1) for item in value)  # type: ignore[attr-defined]
    if kind is dict:
        return all(type(k) is str and _plain(v, depth + 1) for k, v in value.items())  # type: ignore[attr-defined]
    return False


def clean_name(text: object, limit: int = 200) -> str | None:
    """A foreign run or experiment name as exptrack stores names: one line, at most ``limit``
    characters (MLflow allows 250 and any character); None when nothing printable is left."""
    if not isinstance(text, str):
        return None
    line = " ".join(text.split())
    return line[:limit] or None


def iso_utc(seconds: float) -> str:
    """Epoch seconds as exptrack writes timestamps: ISO 8601 UTC, microseconds, ``Z``."""
    moment = _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def derived_run_id(millis: int, *key: str) -> str:
    """A valid exptrack run id that is the same every time the same source run is imported.

    Like exptrack's own ids it is 32 hex digits starting with 12 of milliseconds (so imported
    runs sort by start time); the other 20 are a SHA-256 of ``key``, which names the source run.
    """
    digest = hashlib.sha256("\0".join(key).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{millis % 2**48:012x}{digest[:20]}"


def is_exptrack_id(text: str) -> bool:
    """Whether ``text`` already has exptrack's run id form (32 lowercase hex digits)."""
    return _HEX_ID.fullmatch(text) is not None


def plain_tree(value: object) -> object:
    """``value`` with anything exptrack cannot store (NaN, huge ints, sets...) turned into text.

    Used for free-form foreign data (Optuna user attributes) that belongs in the record but
    whose exact type does not matter more than having the run at all.
    """
    if isinstance(value, Mapping):
        return {str(k): plain_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_tree(v) for v in value]
    return value if _plain(value, 0) else str(value)
