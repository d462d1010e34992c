"""How a captured file is named in a record: relative to the working directory when inside it, as JSON-safe text."""

from __future__ import annotations

import os


def record_key(abs_path: str, base_dir: str) -> str:
    """The path as recorded: relative (with ``/``) when it is under ``base_dir``, else absolute."""
    try:
        rel = os.path.relpath(abs_path, base_dir)
    except ValueError:  # another drive on Windows
        return abs_path
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return abs_path
    return rel.replace(os.sep, "/")


def json_text(name: str) -> str:
    """A file name as JSON-safe text: undecodable bytes become ``\\xNN`` escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
