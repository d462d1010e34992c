"""Flat column names for runs (``metrics.loss``, ``params.optimizer.lr``) that never collide.

Tables, CSV, Parquet and ``to_pandas`` show one column per metric and per param, nested params
flattened.  A param named ``"a.b"`` and a nested ``{"a": {"b": ...}}`` would both flatten to
``params.a.b`` and one value would be lost, so each key is *quoted* when it needs to be:

* a key is written as is unless it is empty or holds a ``.`` or a backquote;
* such a key is wrapped in backquotes, a backquote inside it doubled:
  ``{"a.b": 1}`` -> ``params.`a.b```, ``{"a": {"b": 2}}`` -> ``params.a.b``.

The rule is the filter language's own quoting, so a column name is also the filter field that
selects it (``--where "params.`a.b` = 1"``), and :func:`split_column` reads a name back into keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MISSING", "column_name", "flat_params", "lookup", "quote_key", "split_column"]


class _Missing:
    """A field the run does not have (distinct from a stored ``null``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


def quote_key(key: str) -> str:
    """``key`` as one segment of a column name (see the module docstring)."""
    if key and "." not in key and "`" not in key:
        return key
    return "`" + key.replace("`", "``") + "`"


def column_name(section: str, *keys: str) -> str:
    """``column_name("params", "a.b")`` -> ``params.`a.b```."""
    return ".".join([section, *map(quote_key, keys)])


def split_column(name: str) -> list[str]:
    """The keys of a column name, unquoted: ``params.`a.b`.c`` -> ``["params", "a.b", "c"]``."""
    keys: list[str] = []
    i, n = 0, len(name)
    while True:
        if i < n and name[i] == "`":
            j, chars = i + 1, []
            while j < n:
                if name[j] == "`":
                    if j + 1 < n and name[j + 1] == "`":
                        chars.append("`")
                        j += 2
                        continue
                    break
                chars.append(name[j])
                j += 1
            keys.append("".join(chars))
            i = j + 1
        else:
            j = name.find(".", i)
            j = n if j < 0 else j
            keys.append(name[i:j])
            i = j
        if i >= n:
            return keys
        i += 1  # the dot between keys


def _flatten(prefix: str, mapping: Mapping[str, Any], out: dict[str, Any]) -> None:
    for key, value in mapping.items():
        name = f"{prefix}.{quote_key(key)}"
        if type(value) is dict and value:
            _flatten(name, value, out)
        else:
            out[name] = value  # an empty mapping stays a value: it has no keys to make columns of


def flat_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` as ``{"params.<quoted keys>": value}``, nested mappings flattened."""
    out: dict[str, Any] = {}
    _flatten("params", params, out)
    return out


def lookup(record: Mapping[str, Any], column: str) -> Any:
    """The value under a column name in a record (a run's mapping view), or :data:`MISSING`.

    ``tags`` gives the list itself; a value that is ``None`` in the record stays ``None``.
    """
    keys = split_column(column)
    node: Any = record
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return MISSING
        node = node[key]
    if isinstance(node, tuple):
        return list(node)
    return node
