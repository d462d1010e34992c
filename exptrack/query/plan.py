"""The shape of a parsed filter: what the columnar index evaluates without calling a closure per run.

The parser compiles a filter into nested closures (``query.parser``) and, beside them, into this
tree.  Each ``Leaf`` keeps its own closure, so a column evaluator can get the exact answer for a
value by asking the closure itself (once per distinct value, not once per run) and only
vectorises the cases whose rules it restates (numbers against a number); everything else it
reports as unknown, and those runs are decided by the closure on the record.  The tree can
therefore never give an answer the closures would not give.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Test = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class Leaf:
    """One condition on one field.

    ``op`` is the positive operator (``=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``like``,
    ``ilike`` or ``null``); ``negated`` says the source wrote ``!=``, ``NOT IN``, ``NOT LIKE``,
    ``NOT ILIKE`` or ``IS NOT NULL``.  ``values`` are the literals after the parser's conversions.
    ``test`` is the compiled condition on a whole record.
    """

    segs: tuple[str, ...]
    op: str
    negated: bool
    values: tuple[object, ...]
    test: Test


@dataclass(frozen=True, slots=True)
class Junction:
    """``AND`` or ``OR`` of two or more parts."""

    word: str
    parts: tuple[Plan, ...]


@dataclass(frozen=True, slots=True)
class Negation:
    """``NOT part``: the plain boolean complement."""

    part: Plan


@dataclass(frozen=True, slots=True)
class Always:
    """The empty filter: every run."""


Plan = Leaf | Junction | Negation | Always
