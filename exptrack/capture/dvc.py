"""DVC's own hashes of tracked data, read from ``.dvc`` files and ``dvc.lock`` without importing DVC."""

from __future__ import annotations

import os

from exptrack.capture.names import json_text, record_key

_DVC_MAX_BYTES = 10 << 20  # a dvc.lock larger than this is not read



class _DvcIndex:
    """DVC's own md5 for a path, from ``<path>.dvc`` or a ``dvc.lock`` in the cwd or repo root.

    DVC files are YAML, read here by a tolerant line parser (no YAML dependency): list items
    under ``outs:``/``deps:`` with ``path:`` and ``md5:`` keys. Anything odd is ignored.
    """

    def __init__(self, base_dir: str) -> None:
        self._base = base_dir
        self._parsed: dict[str, list[tuple[str, dict[str, str]]]] = {}
        root = base_dir
        while not any(os.path.isdir(os.path.join(root, m)) for m in (".dvc", ".git")):
            parent = os.path.dirname(root)
            if parent == root:
                root = base_dir
                break
            root = parent
        self._locks = list(dict.fromkeys(os.path.join(d, "dvc.lock") for d in (base_dir, root)))

    def lookup(self, abs_path: str) -> dict[str, object] | None:
        fallback: dict[str, object] | None = None
        for source in [abs_path.rstrip(os.sep) + ".dvc", *self._locks]:
            for section, fields in self._items(source):
                where = fields.get("path")
                md5 = fields.get("md5")
                if where is None or md5 is None:
                    continue
                if os.path.normpath(os.path.join(os.path.dirname(source), where)) != abs_path.rstrip(os.sep):
                    continue
                found: dict[str, object] = {"md5": md5, "source": json_text(record_key(source, self._base))}
                if section == "outs":
                    return found
                fallback = fallback or found  # a stage's dependency: DVC hashed it, but as an input
        return fallback

    def _items(self, source: str) -> list[tuple[str, dict[str, str]]]:
        if source not in self._parsed:
            try:
                with open(source, encoding="utf-8", errors="replace") as handle:
                    text = handle.read(_DVC_MAX_BYTES)
            except (OSError, ValueError):
                text = ""
            self._parsed[source] = parse_dvc_items(text)
        return self._parsed[source]


def parse_dvc_items(text: str) -> list[tuple[str, dict[str, str]]]:
    """(enclosing key, scalar fields) of every block-list item in a DVC YAML file.

    ``outs:\\n- md5: ab\\n  path: x`` gives ``[("outs", {"md5": "ab", "path": "x"})]``. Flow
    style, anchors and multi-line scalars are not understood and simply yield nothing.
    """
    items: list[tuple[str, dict[str, str]]] = []
    headers: list[tuple[int, str]] = []
    current: dict[str, str] | None = None
    item_indent = -1
    for raw in text.splitlines():
        body = raw.lstrip(" ")
        indent = len(raw) - len(body)
        if not body.strip() or body.startswith("#"):
            continue
        if body == "-" or body.startswith("- "):
            section = next((key for level, key in reversed(headers) if level <= indent), "")
            current, item_indent = {}, indent
            items.append((section, current))
            body = body[1:].lstrip(" ")
            indent += 2
            if not body:
                continue
        elif current is not None and indent <= item_indent:
            current = None
        key, colon, value = body.partition(":")
        key = key.strip()
        if not colon or not key or " " in key:
            continue
        value = value.strip()
        if not value:
            while headers and headers[-1][0] >= indent:
                headers.pop()
            headers.append((indent, key))
        elif current is not None:
            current[key] = _scalar(value)
    return items


def _scalar(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value.split(" #", 1)[0].strip()


