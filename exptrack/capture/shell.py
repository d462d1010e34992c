"""Stored values as POSIX shell words and comments: restore steps are pasted into a shell.

A run's values (param keys, file names, commits, versions) may come from someone else's store,
so every one that reaches a printed command is quoted here.  ``shell_word`` gives the value back
byte for byte when the shell reads it -- ``$(...)``, backticks, quotes and newlines included --
while no raw terminal control byte (ESC, BEL) is ever printed: those are produced by ``printf``
inside the command instead.  ``shell_comment`` makes text safe after a ``#``: a newline in a
value would otherwise end the comment and run the rest as a command.
"""

from __future__ import annotations

import re
import shlex

# C0 controls but tab and newline (safe inside single quotes), DEL, and C1 controls.
_RAW_CONTROL = re.compile(r"([\x00-\x08\x0b-\x1f\x7f-\x9f]+)")
_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def shell_word(value: str) -> str:
    """``value`` as one POSIX shell word that the shell reads back exactly."""
    if not value:
        return "''"
    out: list[str] = []
    for i, part in enumerate(_RAW_CONTROL.split(value)):
        if not part:
            continue
        if i % 2:  # control characters: their UTF-8 bytes as printf octal escapes
            octal = "".join(f"\\{byte:03o}" for byte in part.encode("utf-8", "surrogateescape"))
            out.append(f"\"$(printf '{octal}')\"")
        else:
            out.append(shlex.quote(part))
    return "".join(out)


def shell_words(values: list[str]) -> str:
    return " ".join(shell_word(value) for value in values)


def shell_comment(text: object) -> str:
    """``text`` safe to print after ``#``: every control character shown escaped, on one line."""
    return _ANY_CONTROL.sub(lambda m: _NAMED.get(m[0], f"\\x{ord(m[0]):02x}"), str(text))
