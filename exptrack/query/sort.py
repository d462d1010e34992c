"""Sort specs (metrics.accuracy desc, params.lr) and a stable multi-key sort over schemaless records."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from exptrack.errors import QueryError
from exptrack.query.evaluate import MISSING, Record, _as_number, _ts_key
from exptrack.query.parser import _field_segments, _resolve

_R = TypeVar("_R", bound=Mapping[str, object])


@dataclass(frozen=True, slots=True)
class SortKey:
    """One key of a sort spec: a dotted field and its direction."""

    field: str
    descending: bool = False


def parse_sort(spec: str) -> list[SortKey]:
    """Parse ``"metrics.accuracy desc, params.lr"``; the direction defaults to ascending.

    Raises:
        QueryError: an empty spec or key, or a key that is not ``<field> [asc|desc]``.
    """
    if not spec.strip():
        raise QueryError("empty sort spec; expected e.g. 'metrics.accuracy desc, params.lr asc'")
    keys = []
    for number, item in enumerate(spec.split(","), 1):
        m = re.fullmatch(r"(.*?)\s+(asc|desc)", item.strip(), re.IGNORECASE | re.DOTALL)
        field, descending = (m[1].strip(), m[2].lower() == "desc") if m else (item.strip(), False)
        if not field or field.lower() in ("asc", "desc"):
            raise QueryError(f"sort key {number} of {spec!r} has no field; expected '<field> [asc|desc]'")
        _field_segments(field)
        keys.append(SortKey(field, descending))
    return keys


def _rank(value: object, numeric_strings: bool, timestamp: bool) -> tuple[int, float, str]:
    """Numbers, then strings, then booleans, then other values; missing and NaN last."""
    if isinstance(value, str):
        number = _as_number(value, strings=True) if numeric_strings else None
        if number is None:
            return (1, 0.0, (_ts_key(value) or value) if timestamp else value)
        value = number
    if isinstance(value, bool):
        return (2, float(value), "")
    number = _as_number(value, strings=False)
    if number is not None and number == number:
        return (0, number, "")
    return (4 if value is MISSING or value is None or number is not None else 3, 0.0, "")


def _ranker(key: SortKey) -> Callable[[Record], tuple[int, float, str]]:
    segs = _field_segments(key.field)
    numeric, timestamp = segs[0] in ("params", "tags") and len(segs) > 1, segs == ("timestamp",)
    sign = -1 if key.descending else 1

    def rank(record: Record) -> tuple[int, float, str]:
        group, number, text = _rank(_resolve(record, segs), numeric, timestamp)
        return (sign * group, number, text)  # negated group: reverse=True keeps missing last

    return rank


class _Reversed:
    """Orders its text in reverse: a descending key inside one ascending comparison."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __lt__(self, other: _Reversed) -> bool:
        return other.text < self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and other.text == self.text

    __hash__ = None  # type: ignore[assignment]


def sort_key(keys: Sequence[SortKey]) -> Callable[[Record], tuple[object, ...]]:
    """One key for the whole spec, ordering records as :func:`sort_records` does (missing last)."""
    rankers = [(_ranker(SortKey(key.field)), key.descending) for key in keys]

    def combined(record: Record) -> tuple[object, ...]:
        out: list[object] = []
        for rank, descending in rankers:
            group, number, text = rank(record)
            out += (group, -number, _Reversed(text)) if descending else (group, number, text)
        return tuple(out)

    return combined


def first_sorted(records: Iterable[_R], keys: Sequence[SortKey], n: int) -> list[_R]:
    """The first ``n`` of ``sort_records(records, keys)``, holding only ``n`` records at a time."""
    import heapq

    return heapq.nsmallest(n, records, key=sort_key(keys))  # stable: ties keep their order


def sort_records(records: Iterable[_R], keys: Sequence[SortKey]) -> list[_R]:
    """Sort records by several keys, stably; missing values and NaN go last in either direction.

    Strings in ``params.*`` and ``tags.*`` that parse as numbers sort as numbers, as in filters;
    ``timestamp`` sorts by UTC instant.
    """
    ordered = list(records)
    for key in reversed(keys):  # stable sorts, least significant key first
        ordered.sort(key=_ranker(key), reverse=key.descending)
    return ordered


