"""Evaluation of filter conditions on schemaless records: field access, SQL-NULL-like comparisons, LIKE, instants."""

from __future__ import annotations

import numbers
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Final

Record = Mapping[str, object]


_Test = Callable[[object], bool]


_Pred = Callable[[Record], bool]


class _Missing:
    """Type of ``MISSING``: a field absent from a record, unlike a stored JSON null."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"  # unpickles as the module singleton, so `is MISSING` still holds


MISSING: Final = _Missing()


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


_TS = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
                 r"\s*(?:[Zz]|([+-])(\d{2}):?(\d{2}))?", re.ASCII)


def virtual_getter(segs: tuple[str, ...]) -> Callable[[Record], object] | None:
    """Getters of the computed fields: ``status`` (lower case: MLflow writes ``'FINISHED'``),
    ``run_name`` (the run's ``name``, else its ``name=`` tag), ``start_time`` / ``end_time``
    (milliseconds since the epoch, as MLflow counts them: the timestamp, plus ``duration_s`` for
    the end of a live run)."""
    if len(segs) != 1:
        return None
    name = segs[0]
    if name == "status":
        return lambda r: v.lower() if isinstance(v := r.get("status", MISSING), str) else v
    if name == "run_name":
        return _run_name
    if name == "start_time":
        return lambda r: _epoch_ms(r.get("timestamp"))
    if name == "end_time":
        return _end_time
    return None


def _run_name(record: Record) -> object:
    name = record.get("name", MISSING)
    if name is not MISSING:
        return name
    tags = record.get("tags")
    if isinstance(tags, (list, tuple)):
        for tag in tags:
            if isinstance(tag, str) and tag.startswith("name="):
                return tag[5:]
    return MISSING


def _epoch_ms(text: object) -> object:
    key = _ts_key(text) if isinstance(text, str) else None
    if key is None:
        return MISSING
    moment = datetime.fromisoformat(key).replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def iso_to_epoch_ms(text: str) -> int | None:
    """An ISO 8601 instant as milliseconds since the epoch (None if it is not one)."""
    value = _epoch_ms(text)
    return value if isinstance(value, int) else None


def _end_time(record: Record) -> object:
    start = _epoch_ms(record.get("timestamp"))
    duration = record.get("duration_s")
    if isinstance(start, int) and isinstance(duration, (int, float)) and not isinstance(duration, bool):
        return start + round(duration * 1000)
    return start


def _getter(segs: tuple[str, ...]) -> Callable[[Record], object]:
    virtual = virtual_getter(segs)
    if virtual is not None:
        return virtual
    if len(segs) != 2:
        return (lambda r: r.get(segs[0], MISSING)) if len(segs) == 1 else (lambda r: _walk(r, segs))
    section, name = segs

    def get(record: Record) -> object:
        found = record.get(section)
        if type(found) is dict:  # the common case in two dict lookups
            value = found.get(name, MISSING)
            if value is not MISSING:
                return value
        return _walk(record, segs)

    return get


def _walk(node: object, segs: tuple[str, ...]) -> object:
    """Follow nested mappings; where that fails, try the rest as one dotted key ("optimizer.lr")."""
    if not segs:
        return node
    if not isinstance(node, Mapping):
        return MISSING
    found = _walk(node[segs[0]], segs[1:]) if segs[0] in node else MISSING
    return node.get(".".join(segs), MISSING) if found is MISSING and len(segs) > 1 else found


def _tags_getter(segs: tuple[str, ...]) -> Callable[[Record], Sequence[object] | None]:
    """All tags for ``tags``; the values of the ``KEY=value`` tags for ``tags.KEY`` (None if none)."""
    prefix = ".".join(segs[1:]) + "="

    def values(record: Record) -> Sequence[object] | None:
        tags = record.get("tags")
        if not isinstance(tags, (list, tuple)) or len(segs) == 1:
            return tags if isinstance(tags, (list, tuple)) else None
        return [t[len(prefix) :] for t in tags if isinstance(t, str) and t.startswith(prefix)] or None

    return values


def _as_number(value: object, strings: bool) -> float | None:
    """The number a value stands for: bools are not numbers, numeric strings are if ``strings``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and strings:
        try:
            return float(value)
        except ValueError:
            return None
    if isinstance(value, numbers.Integral):  # numpy scalars
        return int(value)
    return float(value) if isinstance(value, numbers.Real) else None


def _ts_parse(text: str) -> str | None:
    """A sortable UTC key ``YYYY-MM-DDTHH:MM:SS.ffffff`` for an ISO 8601 date or time, or None."""
    m = _TS.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = m.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                          int(second or 0), int((fraction or "")[:6].ljust(6, "0")))
        if sign and int(off_m) >= 60:
            return None
        if sign:
            moment -= timedelta(hours=int(off_h), minutes=int(off_m)) * (1 if sign == "+" else -1)
    except (ValueError, OverflowError):
        return None
    return moment.isoformat(timespec="microseconds")


def _ts_key(text: str) -> str | None:
    if len(text) == 27 and text[26] == "Z" and text[19] == "." and text[10] == "T":
        return text[:26]  # the UTC microsecond form records are written in is its own key
    return _ts_parse(text)


def _compare_test(op: Callable[[Any, Any], bool], literal: object, timestamp: bool) -> _Test:
    if timestamp:
        return lambda v: isinstance(v, str) and (key := _ts_key(v)) is not None and op(key, literal)
    if isinstance(literal, bool):
        return lambda v: v is literal  # only = gets here, and bools are singletons
    if isinstance(literal, str):
        number = _as_number(literal, strings=True)

        def string_test(v: object) -> bool:
            if isinstance(v, str):
                return op(v, literal)
            x = None if number is None else _as_number(v, strings=False)
            return x is not None and op(x, number)

        return string_test

    def number_test(v: object) -> bool:
        kind = type(v)
        if kind is float or kind is int:
            return op(v, literal)
        x = _as_number(v, strings=True)
        return x is not None and op(x, literal)

    return number_test


def _in_test(values: list[object], timestamp: bool) -> _Test:
    if not timestamp and all(isinstance(v, str) and _as_number(v, strings=True) is None for v in values):
        texts = frozenset(values)  # plain names, the usual case: one set lookup
        return lambda v: isinstance(v, str) and v in texts
    tests = [_compare_test(operator.eq, value, timestamp) for value in values]
    return lambda v: any(t(v) for t in tests)


def _like_test(pattern: str, ignore_case: bool) -> _Test:
    """Split at each ``%`` into fixed-width pieces matched left to right: linear, no backtracking."""
    pieces: list[list[str]] = [[]]
    escaped = False
    for c in pattern:
        if c == "\\" and not escaped:
            escaped = True
            continue
        if c == "%" and not escaped:
            pieces.append([])
        else:
            pieces[-1].append("." if c == "_" and not escaped else re.escape(c))
        escaped = False
    if escaped:
        pieces[-1].append(re.escape("\\"))  # a trailing backslash is literal
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    head, *middle = compiled = [re.compile("".join(p), flags) for p in pieces]
    if not middle:
        return lambda v: isinstance(v, str) and head.fullmatch(v) is not None
    tail, tail_width = compiled[-1], len(pieces[-1])

    def test(v: object) -> bool:
        if not isinstance(v, str) or (m := head.match(v)) is None:
            return False
        for piece in middle[:-1]:
            if (m := piece.search(v, m.end())) is None:
                return False
        start = len(v) - tail_width
        return start >= m.end() and tail.fullmatch(v, start) is not None

    return test


