"""The field names a store's runs hold: param names, tag keys and top-level sections.

The index keeps them so that a filter or a sort naming a field no run has is an error that lists
the closest known names (``metrics.acuracy`` is a typo, not a question whose answer is "none"),
without reading the log.  Metric names come from the index groups; these are the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

_TAG_KEY = re.compile(r"^([^=\n]+)=", re.MULTILINE)


@dataclass(slots=True)
class FieldNames:
    """Top-level param names, ``KEY`` of ``KEY=value`` tags, and top-level record sections."""

    params: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    sections: set[str] = field(default_factory=set)

    def add_block(self, params: Sequence[Mapping[str, Any]], tags: Sequence[Sequence[str]]) -> None:
        """A block's params and tags, with C-level loops (one regex pass over the distinct tags)."""
        self.params.update(chain.from_iterable(params))
        distinct = set(chain.from_iterable(tags))
        if distinct:
            self.tags.update(_TAG_KEY.findall("\n".join(distinct)))

    def merge(self, other: FieldNames) -> None:
        self.params |= other.params
        self.tags |= other.tags
        self.sections |= other.sections

    def to_state(self) -> dict[str, list[str]]:
        return {"params": sorted(self.params), "tags": sorted(self.tags), "sections": sorted(self.sections)}

    @classmethod
    def from_state(cls, state: Mapping[str, Iterable[str]]) -> FieldNames:
        return cls(set(map(str, state["params"])), set(map(str, state["tags"])), set(map(str, state["sections"])))
