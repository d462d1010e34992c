"""Filter expressions and sort specs over run records: parse once, then test records cheaply.

``metrics.accuracy > 0.9 and params.model in ('rf', 'svm')`` is tokenised and parsed by recursive
descent straight into nested closures; nothing ever reaches ``eval``. The rules aim to stay
predictable on schemaless runs:

* A missing field, a JSON ``null`` and a float NaN make every comparison false, ``!=``, ``NOT IN``
  and ``NOT LIKE`` included (like SQL NULL). ``IS [NOT] NULL`` tests missing-or-null; NaN is not
  null. ``NOT <condition>`` is the plain boolean complement: ``not metrics.x = 1`` holds for a run
  without ``metrics.x``.
* Numbers compare numerically, and a string that parses as a float compares as that number
  against a number (params are often stored as text). Booleans equal only booleans. Values of
  different kinds are never equal (``!=`` holds) and never ordered.
* ``timestamp`` compares as a UTC instant (``Z``, offsets, date-only; naive means UTC).
* ``tags`` is a list: ``=``, ``<``..., ``IN`` and ``LIKE`` hold when any tag matches, their
  negations when none does; ``tags.team`` stands for the values of the ``team=...`` tags.
* ``LIKE`` is case-sensitive SQL LIKE (``%``, ``_``, backslash escapes); ``ILIKE`` ignores case.
"""

from __future__ import annotations

from exptrack.query.evaluate import MISSING
from exptrack.query.parser import Predicate, compile_where, resolve_field
from exptrack.query.sort import SortKey, parse_sort, sort_records

__all__ = ["MISSING", "Predicate", "SortKey", "compile_where", "parse_sort", "resolve_field", "sort_records"]
