"""Filters and rankings over the columnar index (``store.index.columns``) with NumPy.

A filter is evaluated in three values per run: true, false, or unknown.  A leaf is decided from
the columns only where the answer is exactly the closure's: for ``null``/``true``/``false``/
missing values and for each distinct string the leaf's own closure is asked once and its answer
is broadcast; numbers against a number literal are compared in NumPy (exact: integers beyond
2**53 are never in a number column); anything else (lists, mappings, tags, timestamps, names) is
unknown.  Unknown runs are decided by reading their line and calling the closure, and every run
that is returned is read and checked anyway, so a column can make a query slower, never wrong.

NumPy is optional (``exptrack[fast]``): without it, ``available()`` is false and the reader keeps
answering from the log.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from exptrack.query.evaluate import _as_number
from exptrack.query.plan import Always, Junction, Leaf, Negation, Plan
from exptrack.store.index.columns import (
    EXACT_INT,
    FALSE,
    FLOAT,
    INT,
    MISSING,
    NULL,
    OTHER,
    STR,
    TRUE,
    ColumnMeta,
    ColumnStore,
    FieldColumns,
)
from exptrack.store.names import DEFAULT_EXPERIMENT

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Mask = NDArray[np.bool_]

_NUMBER_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
_SYNTHETIC_KINDS = {MISSING: None, NULL: None, FALSE: False, TRUE: True}


def available() -> bool:
    """NumPy can be imported (the columnar paths need it)."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(slots=True)
class FieldView:
    """One field's loaded columns: kinds, numbers (NaN where none), string codes and dictionary."""

    kinds: Any
    numbers: Any | None
    codes: Any | None
    strings: list[str]


@dataclass(slots=True)
class ColumnView:
    """The columns of one store as NumPy arrays, for rows ``[0, rows)``.

    Loaded lazily per field and extended in place when later rows are committed, so a process
    that keeps a reader answers its next query without reading what it already has.
    """

    store: ColumnStore
    meta: ColumnMeta
    offsets: Any
    groups: Any
    dirs: Any
    fields: dict[tuple[str, str], FieldView] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.meta.rows)

    def field(self, section: str, name: str) -> FieldView | None:
        """The loaded columns of a param or metric, or None if the store has no such column."""
        view = self.fields.get((section, name))
        if view is not None:
            return view
        column = self.meta.fields.get((section, name))
        if column is None:
            return None
        view = self.fields[(section, name)] = _load_field(self.store, column, self.rows)
        return view

    def has_column(self, section: str, name: str) -> bool:
        return (section, name) in self.meta.fields


def load(store: ColumnStore, meta: ColumnMeta, previous: ColumnView | None) -> ColumnView:
    """The view of ``meta``'s rows: ``previous`` extended when it is a prefix of them."""
    import numpy as np

    rows = meta.rows
    if previous is not None and previous.meta.generation == meta.generation and previous.rows <= rows \
            and (previous.meta.dev, previous.meta.ino) == (meta.dev, meta.ino):
        if previous.rows == rows:
            previous.meta = meta
            return previous
        start = previous.rows
        return ColumnView(store, meta,
                          np.concatenate([previous.offsets, _read(store, "off", "<i8", rows, start)]),
                          np.concatenate([previous.groups, _read(store, "grp", "<i4", rows, start)]),
                          np.concatenate([previous.dirs, _read(store, "dir", "u1", rows, start)]))
    return ColumnView(store, meta, _read(store, "off", "<i8", rows), _read(store, "grp", "<i4", rows),
                      _read(store, "dir", "u1", rows))


def _read(store: ColumnStore, name: str, dtype: str, rows: int, start: int = 0) -> Any:
    """Rows ``[start, rows)`` of a column file, read into memory.  (Not mapped: a map keeps a
    descriptor open for as long as any view of it lives, and readers keep views between queries.)"""
    import numpy as np

    width = np.dtype(dtype).itemsize
    path = store.path(name)
    with open(path, "rb") as handle:
        handle.seek(start * width)
        data = np.fromfile(handle, dtype=dtype, count=rows - start)
    if len(data) != rows - start:
        raise OSError(f"column {name} holds {len(data)} of {rows - start} rows")
    return data


def _load_field(store: ColumnStore, column: FieldColumns, rows: int) -> FieldView:
    kinds = _read(store, f"{column.number}.k", "u1", rows)
    numbers = _read(store, f"{column.number}.f", "<f8", rows) if column.has_numbers else None
    codes = _read(store, f"{column.number}.s", "<i4", rows) if column.has_strings else None
    strings = store.read_strings(column) if column.has_strings else []
    if codes is not None and len(codes) and int(codes.max(initial=-1)) >= len(strings):
        raise OSError(f"the dictionary of column {column.number} is shorter than its codes")
    return FieldView(kinds, numbers, codes, strings)


# -- three-valued evaluation ------------------------------------------------------------------

Tri = tuple[Any, Any]
"""(true, false) masks; a run in neither is unknown."""


def evaluate(plan: Plan, view: ColumnView) -> Tri:
    """Where ``plan`` certainly holds and where it certainly does not, per row."""
    import numpy as np

    rows = view.rows
    if isinstance(plan, Always):
        return np.ones(rows, bool), np.zeros(rows, bool)
    if isinstance(plan, Negation):
        true, false = evaluate(plan.part, view)
        return false, true
    if isinstance(plan, Junction):
        parts = [evaluate(part, view) for part in plan.parts]
        true, false = parts[0]
        for t, f in parts[1:]:
            if plan.word == "and":
                true, false = true & t, false | f
            else:
                true, false = true | t, false & f
        return true, false
    return _leaf(plan, view)


def _unknown(rows: int) -> Tri:
    import numpy as np

    return np.zeros(rows, bool), np.zeros(rows, bool)


def _leaf(leaf: Leaf, view: ColumnView) -> Tri:
    import numpy as np

    segs, rows = leaf.segs, view.rows
    if segs == ("status",):
        table = np.array([bool(leaf.test({"status": status})) for _, status in view.meta.groups] or [False])
        true = table[view.groups]
        return true, ~true
    if len(segs) != 2 or segs[0] not in ("params", "metrics"):
        return _unknown(rows)
    section, name = segs
    column = view.field(section, name)
    if column is None:
        if view.meta.capped:
            return _unknown(rows)
        answer = bool(leaf.test({section: {}}))
        return np.full(rows, answer), np.full(rows, not answer)
    kinds = column.kinds
    by_kind = np.zeros(8, bool)
    decided = np.zeros(8, bool)
    for kind, value in _SYNTHETIC_KINDS.items():
        by_kind[kind] = bool(leaf.test({section: {} if kind == MISSING else {name: value}}))
        decided[kind] = True
    if leaf.op == "null":  # every stored value other than null is "not null", whatever its kind
        for kind in (INT, FLOAT, STR, OTHER):
            by_kind[kind] = leaf.negated
            decided[kind] = True
        true = by_kind[kinds]
        return true, ~true
    true = by_kind[kinds]
    known = decided[kinds]
    if column.numbers is not None:
        numeric = (kinds == INT) | (kinds == FLOAT)
        compared = _numbers(leaf, column.numbers)
        if compared is not None:
            true = np.where(numeric, compared, true)
            known = known | numeric
    if column.codes is not None:
        strings = kinds == STR
        table = np.array([bool(leaf.test({section: {name: s}})) for s in column.strings] + [False])
        true = np.where(strings, table[column.codes], true)  # code -1 (no string) reads the pad
        known = known | strings
    return true & known, ~true & known


def _numbers(leaf: Leaf, numbers: Any) -> Any | None:
    """The leaf on every row's number (valid where the row's kind is a number), or None if this
    leaf is not restated here (the closure decides those runs)."""
    import numpy as np

    positive: Any
    if leaf.op in ("like", "ilike"):
        positive = np.zeros(len(numbers), bool)  # LIKE matches strings only
    elif leaf.op == "in":
        positive = np.zeros(len(numbers), bool)
        for value in leaf.values:
            one = _compare(operator.eq, value, numbers)
            if one is None:
                return None
            positive |= one
    elif leaf.op in _NUMBER_OPS and len(leaf.values) == 1:
        positive = _compare(_NUMBER_OPS[leaf.op], leaf.values[0], numbers)
        if positive is None:
            return None
    else:
        return None
    if leaf.negated:  # != and NOT IN: a NaN is like NULL, never different
        with np.errstate(invalid="ignore"):
            return (numbers == numbers) & ~positive
    return positive


def _compare(op: Callable[[Any, Any], Any], value: object, numbers: Any) -> Any | None:
    import numpy as np

    if isinstance(value, bool):
        return np.zeros(len(numbers), bool)  # booleans equal only booleans
    if isinstance(value, str):
        number = _as_number(value, strings=True)  # a numeric string compares as that number
        if number is None:
            return np.zeros(len(numbers), bool)
        literal: float = float(number)
    elif type(value) is int:
        if not -EXACT_INT <= value <= EXACT_INT:
            return None
        literal = float(value)
    elif type(value) is float:
        literal = value
    else:
        return None
    with np.errstate(invalid="ignore"):
        return np.asarray(op(numbers, literal), bool)


# -- scope -------------------------------------------------------------------------------------


def rows_in_scope(view: ColumnView, watermark: int, exclude: Sequence[int], statuses: frozenset[str] | None,
                  experiment: str | None) -> Any:
    """Rows the index counts: lines before its watermark, not excluded (hidden or duplicate), of
    a status in ``statuses`` (any when None) and of ``experiment`` (any when None)."""
    import numpy as np

    offsets = view.offsets
    keep = np.zeros(view.rows, bool)
    keep[: int(np.searchsorted(offsets, watermark))] = True
    if exclude:
        keep[_exact_hits(offsets, exclude)] = False
    if statuses is not None or experiment is not None:
        table = np.array([
            (statuses is None or status in statuses)
            and (experiment is None or _experiment(raw) == experiment)
            for raw, status in view.meta.groups] or [False])
        keep &= table[view.groups]
    return keep


def _exact_hits(offsets: Any, exclude: Sequence[int]) -> Any:
    import numpy as np

    wanted = np.asarray(sorted(exclude), dtype=np.int64)
    where = np.searchsorted(offsets, wanted)
    inside = where < len(offsets)
    where, wanted = where[inside], wanted[inside]
    return where[offsets[where] == wanted]


def _experiment(raw: object) -> str:
    return raw if type(raw) is str and raw else DEFAULT_EXPERIMENT


def declares_directions(view: ColumnView, rows: Any) -> bool:
    return bool((view.dirs[rows] != 0).any()) if len(rows) else False


# -- ranking -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Ranked:
    """Candidates for a top-k, best first: row numbers, and whether the filter surely holds."""

    rows: Any
    sure: Any


def ranking(view: ColumnView, true: Any, candidates: Any, metric: str, mode: str, limit: int) -> Ranked | None:
    """At most ``limit`` candidate rows with a finite ``metric``, best first (earlier line wins a
    tie); None when the columns cannot rank it exactly (a value of another kind in scope)."""
    import numpy as np

    column = view.field("metrics", metric)
    if column is None or column.numbers is None:
        return Ranked(np.zeros(0, np.int64), np.zeros(0, bool)) if column is not None and \
            not bool((candidates & (column.kinds == OTHER)).any()) else None
    kinds, numbers = column.kinds, column.numbers
    if bool((candidates & (kinds == OTHER)).any()):
        return None
    with np.errstate(invalid="ignore"):
        usable = candidates & ((kinds == INT) | (kinds == FLOAT)) & np.isfinite(numbers)
    rows = np.flatnonzero(usable)
    values = numbers[rows]
    keys = -values if mode == "max" else values
    if len(rows) > limit:
        cut = np.partition(keys, limit - 1)[limit - 1]
        inside = keys <= cut  # every tie of the limit-th key stays: the offsets decide among them
        rows, keys = rows[inside], keys[inside]
    order = np.lexsort((view.offsets[rows], keys))[:limit]
    rows = rows[order]
    return Ranked(rows, true[rows])


# -- group statistics ----------------------------------------------------------------------------


def metric_values(view: ColumnView, rows: Any, metric: str) -> tuple[list[Any], Any, Any] | None:
    """The values of ``metric`` in ``rows`` (ints as ints, floats as floats), the rows that hold
    one and their values as float64; None when a value of another kind is among them."""
    import numpy as np

    column = view.field("metrics", metric)
    if column is None:
        return [], np.zeros(0, np.int64), np.zeros(0)
    kinds = column.kinds[rows]
    if bool((kinds == OTHER).any()):
        return None
    holding = rows[(kinds == INT) | (kinds == FLOAT)]
    if column.numbers is None or not len(holding):
        return [], holding, np.zeros(0)
    numbers = column.numbers[holding]
    values = numbers.tolist()
    for i in np.flatnonzero(column.kinds[holding] == INT).tolist():
        values[i] = int(values[i])
    return values, holding, numbers


# -- sorting -----------------------------------------------------------------------------------------


def sort_order(view: ColumnView, rows: Any, keys: Sequence[tuple[tuple[str, ...], bool]]) -> Any | None:
    """``rows`` ordered as ``query.sort.sort_records`` orders their runs (``keys``: each field's
    segments and whether it is descending; ties keep log order), or None when a key is not a
    param or metric column or a value of another kind is among the rows."""
    import numpy as np

    from exptrack.query.sort import _rank

    columns: list[Any] = []
    for segs, descending in keys:
        if len(segs) != 2 or segs[0] not in ("params", "metrics"):
            return None
        column = view.field(segs[0], segs[1])
        group = np.full(len(rows), 4, np.int8)  # missing, null and NaN last
        number = np.zeros(len(rows))
        text = np.zeros(len(rows), np.int64)
        if column is not None:
            kinds = column.kinds[rows]
            if bool((kinds == OTHER).any()):
                return None
            numeric = (kinds == INT) | (kinds == FLOAT)
            if column.numbers is not None:
                values = column.numbers[rows]
                finite = numeric & (values == values)
                group[finite] = 0
                number[finite] = values[finite]
            group[kinds == TRUE] = 2
            number[kinds == TRUE] = 1.0
            group[kinds == FALSE] = 2
            if column.codes is not None:
                ranks = [_rank(s, segs[0] == "params", False) for s in column.strings]
                order = {t: i for i, t in enumerate(sorted({r[2] for r in ranks}))}
                table_group = np.array([r[0] for r in ranks] + [4], np.int8)
                table_number = np.array([r[1] for r in ranks] + [0.0])
                table_text = np.array([order[r[2]] for r in ranks] + [0], np.int64)
                strings = kinds == STR
                codes = column.codes[rows]
                group = np.where(strings, table_group[codes], group)
                number = np.where(strings, table_number[codes], number)
                text = np.where(strings, table_text[codes], text)
        if descending:
            number, text = -number, -text
        columns.append((group, number, text))
    lexkeys: list[Any] = [np.arange(len(rows))]  # the last resort: log order
    for group, number, text in reversed(columns):
        lexkeys.extend((text, number, group))
    return rows[np.lexsort(lexkeys)]
