"""The filter language's tokenizer: names, numbers, quoted strings and operators, with positions for error carets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

from exptrack.errors import FilterSyntaxError

_KEYWORDS = frozenset({"and", "or", "not", "in", "like", "ilike", "is", "null", "true", "false"})


_OPERATORS = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


_OPERATOR_HINTS = {"&&": "; use AND", "||": "; use OR", "!": "; use NOT or !=", "=>": "; did you mean >=?",
                   "=<": "; did you mean <=?"}


_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


_NAME = re.compile(r"[^\W\d]\w*")


_SEGMENT = re.compile(r"\w+")  # after a dot a name may start with a digit: params.0


_OPCHARS = re.compile(r"[=!<>&|]+")


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


