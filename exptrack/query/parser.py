"""The filter language's recursive-descent parser: tokens become nested closures, never code for eval."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import NoReturn

from exptrack.errors import FilterSyntaxError, QueryError
from exptrack.query.evaluate import (
    _OPS,
    MISSING,
    Record,
    _compare_test,
    _getter,
    _in_test,
    _like_test,
    _Pred,
    _tags_getter,
    _ts_parse,
    _walk,
    iso_to_epoch_ms,
    virtual_getter,
)
from exptrack.query.plan import Always, Junction, Leaf, Negation, Plan
from exptrack.query.prefixes import TOP_LEVEL, canonical
from exptrack.query.tokens import _KEYWORDS, _OPERATORS, _SEGMENT, _describe, _lex, _Tok

_TOP_LEVEL = TOP_LEVEL
_STATUS_VALUES = ("running", "finished", "failed", "killed", "pruned", "scheduled")
"""exptrack's statuses and MLflow's (``SCHEDULED`` exists there only): a filter naming another is a typo."""
_EPOCH_FIELDS = (("start_time",), ("end_time",))


_NEGATED = {"!=": "=", "not in": "in", "not like": "like", "not ilike": "ilike"}


_Node = tuple[_Pred, Plan]
"""A parsed condition: its closure and its shape (``query.plan``), built side by side."""

_MAX_DEPTH = 100  # nested parentheses/NOT; keeps parsing and evaluation far from the recursion limit


def _format_field(segs: Sequence[str]) -> str:
    """Dotted spelling that parses back to the same segments (odd names backquoted)."""
    return ".".join(s if _SEGMENT.fullmatch(s) else "`" + s.replace("`", "``") + "`" for s in segs)


def _top_level_problem(segs: tuple[str, ...]) -> str:
    return canonical(segs)[1]


class _Parser:
    """Recursive descent that returns closures directly and records the fields it meets."""

    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.toks, self.i, self.depth = text, _lex(text), list[_Tok](), 0, 0
        self.fields: set[str] = set()
        self.metrics: set[str] = set()
        self.compared: set[tuple[str, ...]] = set()  # fields compared with a value (not IS NULL)

    def peek(self) -> _Tok:
        if self.i == len(self.toks):
            self.toks.append(next(self.tokens))
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.peek()
        self.i += tok.kind != "eof"
        return tok

    def keyword(self) -> str:
        tok = self.peek()
        return tok.text.lower() if tok.kind == "name" and tok.text.lower() in _KEYWORDS else ""

    def fail(self, message: str, tok: _Tok) -> NoReturn:
        raise FilterSyntaxError(message, self.text, tok.pos)

    def parse(self) -> _Node:
        if self.peek().kind == "eof":
            return (lambda r: True), Always()  # MLflow's "" (and whitespace): no condition, every run
        test, tok = self.junction("or"), self.peek()
        if tok.kind == ")":
            self.fail("unmatched ')'", tok)
        if tok.kind != "eof":
            self.fail(f"unexpected {_describe(tok)} after a complete condition; join with AND or OR", tok)
        return test

    def junction(self, word: str) -> _Node:
        """OR of ANDs: AND binds tighter because it is parsed one level deeper."""
        nodes = [self.junction("and") if word == "or" else self.negation()]
        while self.keyword() == word:
            self.take()
            nodes.append(self.junction("and") if word == "or" else self.negation())
        if len(nodes) == 1:
            return nodes[0]
        parts = [test for test, _ in nodes]
        plan = Junction(word, tuple(plan for _, plan in nodes))
        if len(parts) == 2:
            a, b = parts
            return ((lambda r: a(r) or b(r)) if word == "or" else (lambda r: a(r) and b(r))), plan
        if word == "or":
            return (lambda r: any(p(r) for p in parts)), plan
        return (lambda r: all(p(r) for p in parts)), plan

    def negation(self) -> _Node:
        tok = self.peek()
        if self.keyword() != "not" and tok.kind != "(":
            return self.comparison()
        self.take()
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            self.fail("expression nested too deeply", tok)
        if tok.kind == "(":
            inner, close = self.junction("or"), self.peek()
            if close.kind == "eof":
                self.fail("missing ')': this '(' is never closed", tok)
            if close.kind != ")":
                self.fail(f"expected ')', AND or OR but found {_describe(close)}", close)
            self.take()
        else:
            negated, plan = self.negation()
            inner = (lambda r: not negated(r)), Negation(plan)
        self.depth -= 1
        return inner

    def field(self) -> tuple[str, ...]:
        first, segs = self.peek(), list[str]()
        while not segs or self.peek().kind == ".":
            if segs:
                self.take()
            tok = self.take()
            if tok.kind not in ("name", "bq", "dq") or (not segs and tok.text.lower() in _KEYWORDS):
                where = "a field name" if not segs else "a name after '.'"
                hint = "; put the field on the left: params.model = 'rf'" if tok.kind in ("sq", "num") else ""
                self.fail(f"expected {where} but found {_describe(tok)}{hint}", tok)
            if not tok.value:
                self.fail("empty field name", tok)
            segs.append(str(tok.value))
        found, problem = canonical(tuple(segs))
        if problem:
            self.fail(problem, first)
        return found

    def value(self) -> tuple[object, _Tok]:
        tok, word = self.peek(), self.keyword()
        if tok.kind not in ("num", "sq", "dq") and word not in ("true", "false", "null"):
            hint = f"; quote text values: '{tok.text}'" if tok.kind == "name" else ""
            self.fail(f"expected a value but found {_describe(tok)}{hint}", tok)
        self.take()
        return ({"true": True, "false": False, "null": None}[word] if word else tok.value), tok

    def comparison(self) -> _Node:
        segs = self.field()
        tok, word = self.peek(), self.keyword()
        if tok.kind != "op" and word not in ("not", "is", "in", "like", "ilike"):
            self.fail("expected an operator (= != < <= > >= IN LIKE ILIKE IS) after "
                      f"{_format_field(segs)} but found {_describe(tok)}", tok)
        self.take()
        if tok.kind == "op":
            return self.build(segs, _OPERATORS[tok.text], [self.value()])
        if word == "is":
            return self.null_test(segs)
        if word == "not":
            word = "not " + self.keyword()
            if word not in _NEGATED:
                self.fail(f"expected IN, LIKE or ILIKE after NOT but found {_describe(self.peek())}",
                          self.peek())
            self.take()
        if not word.endswith("in"):
            return self.build(segs, word, [self.value()])
        items: list[tuple[object, _Tok]] = []
        while not items or self.peek().kind == ",":
            if self.peek().kind != ("," if items else "("):
                self.fail(f"expected '(' after IN but found {_describe(self.peek())}", self.peek())
            self.take()
            items.append(self.value())
        if self.peek().kind != ")":
            self.fail(f"expected ',' or ')' but found {_describe(self.peek())}", self.peek())
        self.take()
        return self.build(segs, word, items)

    def null_test(self, segs: tuple[str, ...]) -> _Node:
        negate = self.keyword() == "not"
        if negate:
            self.take()
        if self.keyword() != "null":
            after = "IS NOT" if negate else "IS"
            self.fail(f"expected NULL after {after} but found {_describe(self.peek())}", self.peek())
        self.take()
        self.note(segs)
        get = _tags_getter(segs) if segs == ("tags",) or segs[0] == "tags" else _getter(segs)
        if negate:
            test: _Pred = lambda r: (v := get(r)) is not None and v is not MISSING  # noqa: E731
        else:
            test = lambda r: (v := get(r)) is None or v is MISSING  # noqa: E731
        return test, Leaf(segs, "null", negate, (), test)

    def status_value(self, value: object, tok: _Tok, op: str) -> object:
        """Statuses compare case-insensitively (MLflow writes 'FINISHED'); an unknown one is a typo."""
        if not isinstance(value, str):
            self.fail(f"status compares with a quoted name: {', '.join(_STATUS_VALUES[:5])}", tok)
        if op.endswith("like"):
            return value.lower()
        if value.lower() not in _STATUS_VALUES:
            self.fail(f"unknown status {value!r}; statuses are {', '.join(_STATUS_VALUES[:5])}", tok)
        return value.lower()

    def epoch_value(self, segs: tuple[str, ...], value: object, tok: _Tok, op: str) -> object:
        """start_time / end_time are milliseconds since the epoch; an ISO 8601 string converts."""
        if op.endswith("like") or isinstance(value, bool):
            self.fail(f"{segs[0]} is a number of milliseconds since the epoch: compare with < <= = >= >", tok)
        if isinstance(value, str):
            epoch = iso_to_epoch_ms(value)
            if epoch is None:
                self.fail(f"{segs[0]} compares with milliseconds since the epoch or an ISO 8601 string", tok)
            return epoch
        return value

    def note(self, segs: tuple[str, ...]) -> None:
        self.fields.add(_format_field(segs))
        if segs[0] == "metrics":
            self.metrics.add(".".join(segs[1:]))

    def build(self, segs: tuple[str, ...], op: str, items: list[tuple[object, _Tok]]) -> _Node:
        self.note(segs)
        self.compared.add(segs)
        timestamp = segs == ("timestamp",) and not op.endswith("like")
        values: list[object] = []
        for raw, tok in items:
            value = raw
            if segs == ("status",) and raw is not None:
                value = self.status_value(raw, tok, op)
            elif segs in _EPOCH_FIELDS and raw is not None:
                value = self.epoch_value(segs, raw, tok, op)
            if value is None:
                self.fail("compare with null using IS NULL or IS NOT NULL", tok)
            if isinstance(value, bool) and op not in ("=", "!=", "in", "not in"):
                self.fail(f"booleans support only =, != and IN, not {op.upper()}", tok)
            if op.endswith("like") and not isinstance(value, str):
                self.fail(f"{op.upper()} needs a quoted pattern such as 'rf%'", tok)
            key = _ts_parse(value) if timestamp and isinstance(value, str) else None
            if timestamp and key is None:
                self.fail("timestamp compares with an ISO 8601 string such as '2026-11-01T12:00:00Z'", tok)
            values.append(key if timestamp else value)
        positive = _NEGATED.get(op, op)
        if positive.endswith("like"):
            test = _like_test(str(values[0]), ignore_case=positive == "ilike")
        elif positive == "in":
            test = _in_test(values, timestamp)
        else:
            test = _compare_test(_OPS[positive], values[0], timestamp)
        negated = op in _NEGATED
        whole: _Pred
        if segs[0] == "tags":
            many = _tags_getter(segs)
            if negated:
                whole = lambda r: (vs := many(r)) is not None and not any(map(test, vs))  # noqa: E731
            else:
                whole = lambda r: (vs := many(r)) is not None and any(map(test, vs))  # noqa: E731
        else:
            get = _getter(segs)
            if negated:  # v == v is false only for NaN
                whole = lambda r: (v := get(r)) is not None and v is not MISSING and v == v and not test(v)  # noqa: E731
            else:
                whole = lambda r: test(get(r))  # noqa: E731
        return whole, Leaf(segs, positive, negated, tuple(values), whole)


class Predicate:
    """A compiled ``where`` expression; call it with a run record to test that record.

    Attributes:
        expression: the source text.
        fields: the fields it reads, dotted (``{"metrics.accuracy", "params.model"}``), so a caller
            can skip decoding sections a filter never looks at; each is valid for resolve_field.
        metric_names: the metric names among them (``{"accuracy"}``).
    """

    __slots__ = ("_test", "compared", "expression", "fields", "metric_names", "plan")

    def __init__(self, expression: str, test: _Pred, fields: frozenset[str], metrics: frozenset[str],
                 compared: frozenset[tuple[str, ...]] = frozenset(), plan: Plan | None = None) -> None:
        self._test, self.expression, self.fields, self.metric_names = test, expression, fields, metrics
        self.compared = compared  # canonical segments of the fields compared with a value
        self.plan = plan  # the condition's shape, for the columnar index (``query.plan``)

    def __call__(self, record: Record) -> bool:
        return self._test(record)

    def __repr__(self) -> str:
        return f"compile_where({self.expression!r})"

    def __reduce__(self) -> tuple[Callable[[str], Predicate], tuple[str]]:
        return (compile_where, (self.expression,))  # closures do not pickle; the source does


@lru_cache(maxsize=256)
def _compile(expression: str) -> Predicate:
    parser = _Parser(expression)
    test, plan = parser.parse()
    return Predicate(expression, test, frozenset(parser.fields), frozenset(parser.metrics),
                     frozenset(parser.compared), plan)


def compile_where(expression: str) -> Predicate:
    """Compile a filter expression once, to apply it to many records.

    Args:
        expression: e.g. ``"metrics.accuracy >= 0.9 and (params.model = 'rf' or tags = 'prod')"``.

    Returns:
        A ``Predicate``: ``predicate(record) -> bool``.

    Raises:
        FilterSyntaxError: the expression does not parse; ``position`` points at the culprit.
    """
    if not isinstance(expression, str):
        raise TypeError(f"a where expression is a str, not {type(expression).__name__}")
    return _compile(expression)


@lru_cache(maxsize=1024)
def _field_segments(field: str) -> tuple[str, ...]:
    """Unquoted fields split at dots and may hold any non-space character (``metrics.val-loss``)."""
    if any(q in field for q in "`\"'"):
        parser = _Parser(field)
        segs = parser.field()
        if parser.peek().kind != "eof":
            parser.fail(f"unexpected {_describe(parser.peek())} after the field name", parser.peek())
    else:
        segs = tuple(field.strip().split("."))
        if "" in segs or re.search(r"\s", field.strip()):
            raise QueryError(f"invalid field {field!r}: expected a dotted name such as metrics.accuracy; "
                             "quote odd names with backquotes: metrics.`val loss`")
    segs, problem = canonical(segs)
    if problem:
        raise QueryError(problem)
    return segs


def resolve_field(record: Record, field: str) -> object:
    """The value of a dotted field in a record, or ``MISSING``; ``tags.KEY`` gives the first value.

    Raises:
        QueryError: ``field`` is not a valid field name.
    """
    return _resolve(record, _field_segments(field))


def _resolve(record: Record, segs: tuple[str, ...]) -> object:
    if segs[0] == "tags" and len(segs) > 1:
        values = _tags_getter(segs)(record)
        return values[0] if values else MISSING
    virtual = virtual_getter(segs)
    return virtual(record) if virtual is not None else _walk(record, segs)


