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

import numbers
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Final, NamedTuple, NoReturn, TypeVar

from exptrack.errors import FilterSyntaxError, QueryError

__all__ = ["MISSING", "Predicate", "SortKey", "compile_where", "parse_sort", "resolve_field", "sort_records"]

Record = Mapping[str, object]
_Test = Callable[[object], bool]
_Pred = Callable[[Record], bool]
_R = TypeVar("_R", bound=Mapping[str, object])


class _Missing:
    """Type of ``MISSING``: a field absent from a record, unlike a stored JSON null."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"  # unpickles as the module singleton, so `is MISSING` still holds


MISSING: Final = _Missing()
_TOP_LEVEL = ("run_id", "timestamp", "status", "tags")
_KEYWORDS = frozenset({"and", "or", "not", "in", "like", "ilike", "is", "null", "true", "false"})
_OPERATORS = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
_OPERATOR_HINTS = {"&&": "; use AND", "||": "; use OR", "!": "; use NOT or !=", "=>": "; did you mean >=?",
                   "=<": "; did you mean <=?"}
_NEGATED = {"!=": "=", "not in": "in", "not like": "like", "not ilike": "ilike"}
_MAX_DEPTH = 100  # nested parentheses/NOT; keeps parsing and evaluation far from the recursion limit
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NAME = re.compile(r"[^\W\d]\w*")
_SEGMENT = re.compile(r"\w+")  # after a dot a name may start with a digit: params.0
_OPCHARS = re.compile(r"[=!<>&|]+")
_TS = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
                 r"\s*(?:[Zz]|([+-])(\d{2}):?(\d{2}))?", re.ASCII)


class _Tok(NamedTuple):
    kind: str  # name, num, sq / dq / bq (quoted by ' " `), op, ( ) , . or eof
    text: str
    value: object
    pos: int
    end: int


def _lex(text: str) -> Iterator[_Tok]:
    """Tokens on demand, so the leftmost error is reported whether the lexer or parser finds it."""
    i, n, prev = 0, len(text), None
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "(),":
            tok = _Tok(ch, ch, None, i, i + 1)
        elif ch == "." and prev is not None and prev.kind in ("name", "bq", "dq") and prev.end == i:
            tok = _Tok(".", ".", None, i, i + 1)
        elif ch in "'\"`":
            value, end = _read_quoted(text, i)
            tok = _Tok({"'": "sq", '"': "dq", "`": "bq"}[ch], text[i:end], value, i, end)
        elif prev is not None and prev.kind == "." and (m := _SEGMENT.match(text, i)):
            tok = _Tok("name", m[0], m[0], i, m.end())
        elif m := _NUMBER.match(text, i):
            if m.end() < n and (text[m.end()].isalnum() or text[m.end()] in "._"):
                raise FilterSyntaxError("malformed number", text, i)
            try:  # int() refuses more digits than sys.get_int_max_str_digits()
                number: float = float(m[0]) if any(c in m[0] for c in ".eE") else int(m[0])
            except ValueError:
                raise FilterSyntaxError("number too long", text, i) from None
            tok = _Tok("num", m[0], number, i, m.end())
        elif m := _NAME.match(text, i):
            tok = _Tok("name", m[0], m[0], i, m.end())
        elif m := _OPCHARS.match(text, i):
            if m[0] not in _OPERATORS:
                hint = _OPERATOR_HINTS.get(m[0], "; operators are = == != <> < <= > >=")
                raise FilterSyntaxError(f"unknown operator {m[0]!r}{hint}", text, i)
            tok = _Tok("op", m[0], None, i, m.end())
        else:
            raise FilterSyntaxError(f"unexpected character {ch!r}", text, i)
        yield tok
        i, prev = tok.end, tok
    yield _Tok("eof", "", None, n, n)


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    r"""A doubled quote or a backslash escapes the quote; other backslashes stay (LIKE's ``\%``)."""
    quote, out, j = text[start], [], start + 1
    while j < len(text):
        c = text[j]
        if c == "\\" and quote != "`" and j + 1 < len(text):
            out.append(text[j + 1] if text[j + 1] in (quote, "\\") else text[j : j + 2])
            j += 2
        elif c == quote and text[j + 1 : j + 2] == quote:
            out.append(quote)
            j += 2
        elif c == quote:
            return "".join(out), j + 1
        else:
            out.append(c)
            j += 1
    raise FilterSyntaxError(f"unterminated {'name' if quote == '`' else 'string'}: no closing {quote}",
                            text, start)


def _describe(tok: _Tok) -> str:
    if tok.kind == "eof":
        return "the end of the expression"
    if tok.kind in ("sq", "dq", "num"):
        return f"{'the number' if tok.kind == 'num' else 'the string'} {tok.text}"
    return f"the keyword {tok.text.upper()}" if tok.text.lower() in _KEYWORDS else repr(tok.text)


def _format_field(segs: Sequence[str]) -> str:
    """Dotted spelling that parses back to the same segments (odd names backquoted)."""
    return ".".join(s if _SEGMENT.fullmatch(s) else "`" + s.replace("`", "``") + "`" for s in segs)


def _top_level_problem(segs: tuple[str, ...]) -> str:
    if len(segs) > 1 or segs[0] in _TOP_LEVEL:
        return ""
    if segs[0] in ("params", "metrics"):
        return f"{segs[0]} needs a name, e.g. {segs[0]}.lr"
    shown = _format_field(segs)
    return (f"unknown field {segs[0]!r}: did you mean metrics.{shown} or params.{shown}? "
            f"(top-level fields are {', '.join(_TOP_LEVEL)})")


class _Parser:
    """Recursive descent that returns closures directly and records the fields it meets."""

    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.toks, self.i, self.depth = text, _lex(text), list[_Tok](), 0, 0
        self.fields: set[str] = set()
        self.metrics: set[str] = set()

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

    def parse(self) -> _Pred:
        if self.peek().kind == "eof":
            raise FilterSyntaxError("empty expression; write e.g. metrics.accuracy > 0.9", self.text, 0)
        test, tok = self.junction("or"), self.peek()
        if tok.kind == ")":
            self.fail("unmatched ')'", tok)
        if tok.kind != "eof":
            self.fail(f"unexpected {_describe(tok)} after a complete condition; join with AND or OR", tok)
        return test

    def junction(self, word: str) -> _Pred:
        """OR of ANDs: AND binds tighter because it is parsed one level deeper."""
        parts = [self.junction("and") if word == "or" else self.negation()]
        while self.keyword() == word:
            self.take()
            parts.append(self.junction("and") if word == "or" else self.negation())
        if len(parts) == 1:
            return parts[0]
        if len(parts) == 2:
            a, b = parts
            return (lambda r: a(r) or b(r)) if word == "or" else (lambda r: a(r) and b(r))
        if word == "or":
            return lambda r: any(p(r) for p in parts)
        return lambda r: all(p(r) for p in parts)

    def negation(self) -> _Pred:
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
            negated = self.negation()
            inner = lambda r: not negated(r)  # noqa: E731 -- closures are the compiled form
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
        if problem := _top_level_problem(tuple(segs)):
            self.fail(problem, first)
        return tuple(segs)

    def value(self) -> tuple[object, _Tok]:
        tok, word = self.peek(), self.keyword()
        if tok.kind not in ("num", "sq", "dq") and word not in ("true", "false", "null"):
            hint = f"; quote text values: '{tok.text}'" if tok.kind == "name" else ""
            self.fail(f"expected a value but found {_describe(tok)}{hint}", tok)
        self.take()
        return ({"true": True, "false": False, "null": None}[word] if word else tok.value), tok

    def comparison(self) -> _Pred:
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

    def null_test(self, segs: tuple[str, ...]) -> _Pred:
        negate = self.keyword() == "not"
        if negate:
            self.take()
        if self.keyword() != "null":
            after = "IS NOT" if negate else "IS"
            self.fail(f"expected NULL after {after} but found {_describe(self.peek())}", self.peek())
        self.take()
        self.note(segs)
        get = _tags_getter(segs) if segs[0] == "tags" else _getter(segs)
        if negate:
            return lambda r: (v := get(r)) is not None and v is not MISSING
        return lambda r: (v := get(r)) is None or v is MISSING

    def note(self, segs: tuple[str, ...]) -> None:
        self.fields.add(_format_field(segs))
        if segs[0] == "metrics":
            self.metrics.add(".".join(segs[1:]))

    def build(self, segs: tuple[str, ...], op: str, items: list[tuple[object, _Tok]]) -> _Pred:
        self.note(segs)
        timestamp = segs == ("timestamp",) and not op.endswith("like")
        values: list[object] = []
        for value, tok in items:
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
        if segs[0] == "tags":
            many = _tags_getter(segs)
            if op in _NEGATED:
                return lambda r: (vs := many(r)) is not None and not any(map(test, vs))
            return lambda r: (vs := many(r)) is not None and any(map(test, vs))
        get = _getter(segs)
        if op in _NEGATED:  # v == v is false only for NaN
            return lambda r: (v := get(r)) is not None and v is not MISSING and v == v and not test(v)
        return lambda r: test(get(r))


def _getter(segs: tuple[str, ...]) -> Callable[[Record], object]:
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


class Predicate:
    """A compiled ``where`` expression; call it with a run record to test that record.

    Attributes:
        expression: the source text.
        fields: the fields it reads, dotted (``{"metrics.accuracy", "params.model"}``), so a caller
            can skip decoding sections a filter never looks at; each is valid for resolve_field.
        metric_names: the metric names among them (``{"accuracy"}``).
    """

    __slots__ = ("_test", "expression", "fields", "metric_names")

    def __init__(self, expression: str, test: _Pred, fields: frozenset[str], metrics: frozenset[str]) -> None:
        self._test, self.expression, self.fields, self.metric_names = test, expression, fields, metrics

    def __call__(self, record: Record) -> bool:
        return self._test(record)

    def __repr__(self) -> str:
        return f"compile_where({self.expression!r})"

    def __reduce__(self) -> tuple[Callable[[str], Predicate], tuple[str]]:
        return (compile_where, (self.expression,))  # closures do not pickle; the source does


@lru_cache(maxsize=256)
def _compile(expression: str) -> Predicate:
    parser = _Parser(expression)
    test = parser.parse()
    return Predicate(expression, test, frozenset(parser.fields), frozenset(parser.metrics))


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
    if problem := _top_level_problem(segs):
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
    return _walk(record, segs)


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


def sort_records(records: Iterable[_R], keys: Sequence[SortKey]) -> list[_R]:
    """Sort records by several keys, stably; missing values and NaN go last in either direction.

    Strings in ``params.*`` and ``tags.*`` that parse as numbers sort as numbers, as in filters;
    ``timestamp`` sorts by UTC instant.
    """
    ordered = list(records)
    for key in reversed(keys):  # stable sorts, least significant key first
        ordered.sort(key=_ranker(key), reverse=key.descending)
    return ordered
