"""Fields a query names that no run in the store has: an error naming the closest known ones.

``metrics.acuracy > 0.9`` matching nothing looks like an answer ("no run is that good") when it
is a typo.  The store's field names come from the index (metric names from its groups; param
names, tag keys and sections from ``FieldNames``), so the check costs no read of the log.  Fields
tested with ``IS NULL`` / ``IS NOT NULL`` are not checked: absence is what they ask about.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from exptrack.errors import QueryError
from exptrack.query.prefixes import TOP_LEVEL
from exptrack.store.index.fields import FieldNames

ALWAYS = frozenset({"run_id", "timestamp", "status", "tags", "run_name", "start_time", "end_time"})
"""Fields every run has (or computes); ``name`` and ``experiment`` only where the store holds them."""


class KnownFields:
    """What a store's runs hold, to check the fields of a filter or a sort against."""

    def __init__(self, metrics: Iterable[str], names: FieldNames) -> None:
        self.metrics = set(metrics)
        self.params = names.params
        self.tags = names.tags
        self.sections = names.sections

    def has(self, segs: tuple[str, ...]) -> bool:
        first, rest = segs[0], segs[1:]
        if not rest:
            return first in ALWAYS or first in self.sections
        dotted = ".".join(rest)
        if first == "metrics":
            return dotted in self.metrics or rest[0] in self.metrics
        if first == "params":
            return dotted in self.params or rest[0] in self.params
        if first == "tags":
            return dotted in self.tags
        return first in self.sections

    def names(self) -> list[str]:
        """Every field a query may name, dotted."""
        return [*TOP_LEVEL, *(f"metrics.{m}" for m in sorted(self.metrics)),
                *(f"params.{p}" for p in sorted(self.params)), *(f"tags.{t}" for t in sorted(self.tags)),
                *sorted(self.sections - {"metrics", "params", "tags", "schema", "crc"})]

    def check(self, fields: Iterable[tuple[str, ...]]) -> None:
        """Raise for the first field no run has, listing the closest known names.

        Raises:
            QueryError: a field that no run in the store has.
        """
        for segs in sorted(fields):
            if not self.has(segs):
                raise QueryError(unknown_field_message(".".join(segs), self))


def unknown_field_message(field: str, known: KnownFields) -> str:
    names = known.names()
    section, dot, _ = field.partition(".")
    if dot and section not in ("metrics", "params", "tags") and section not in known.sections:
        sections = sorted(known.sections - {"metrics", "params", "tags", "schema", "crc"})
        close = difflib.get_close_matches(section, ["metrics", "params", "tags", "attributes", *sections], n=2)
        guess = f"; did you mean {' or '.join(close)}?" if close else ""
        return (f"unknown prefix {section!r} in {field}{guess} (prefixes: metrics., params., tags., attributes., "
                f"or a section the runs hold: {', '.join(sections) or 'none'})")
    close = difflib.get_close_matches(field, names, n=3, cutoff=0.6)
    if not close:  # compare the name alone: metrics.acuracy vs params.accuracy
        tail = field.rsplit(".", 1)[-1]
        by_tail = {name.rsplit(".", 1)[-1]: name for name in names}
        close = [by_tail[match] for match in difflib.get_close_matches(tail, list(by_tail), n=3, cutoff=0.6)]
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    section = field.split(".", 1)[0]
    listed = [name for name in names if name.startswith(section + ".")][:12] or names[:12]
    return f"no run in the store has {field}{hint} (known: {', '.join(listed)}{', ...' if len(names) > 12 else ''})"
