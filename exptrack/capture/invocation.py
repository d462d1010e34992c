"""Invocation: how the run's process was started, so the same command can be typed again."""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from exptrack.capture.shell import shell_comment, shell_word

if TYPE_CHECKING:
    from collections.abc import Sequence

# Launchers whose argv does not describe the user's program.
_INTERACTIVE_MODULES = frozenset({"ipykernel_launcher", "ipykernel", "IPython", "code", "idlelib"})
_INTERACTIVE_PROGRAMS = frozenset({"ipython", "ipython3", "jupyter", "jupyter-lab", "jupyter-notebook"})


def capture_invocation(seed: object = None) -> dict[str, object]:
    """Record argv, cwd, entry point and interpreter of this process; never raises.

    Args:
        seed: the run's random seed: an int, a dict of named seeds (``{"numpy": 1, "torch": 2}``)
            or any JSON-able value. Values that are not JSON-able are stored as their ``repr``.

    Returns:
        ``{"argv", "cwd", "script", "module", "python", "pid"}`` plus ``"seed"`` when given.
        ``script`` is the absolute path of the entry file, ``"-c"``, or ``"interactive"``;
        ``module`` is the name passed to ``python -m`` (else ``None``).
    """
    argv = [str(a) for a in sys.argv]
    try:
        cwd: str | None = os.getcwd()
    except OSError:  # the directory was deleted under the process
        cwd = None
    script, module = _entry_point(argv)
    info: dict[str, object] = {
        "argv": argv,
        "cwd": cwd,
        "script": script,
        "module": module,
        "python": sys.executable,
        "pid": os.getpid(),
    }
    if seed is not None:
        info["seed"] = _jsonable(seed)
    return info


def _entry_point(argv: Sequence[str]) -> tuple[str, str | None]:
    """(script, module): ``python -m pkg`` sets ``__main__.__spec__``, a plain script does not."""
    first = argv[0] if argv else ""
    spec_name = getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", None)
    module = spec_name.removesuffix(".__main__") if isinstance(spec_name, str) and spec_name else None
    if (
        not first
        or hasattr(sys, "ps1")
        or os.path.basename(first) in _INTERACTIVE_PROGRAMS
        or (module is not None and module.split(".")[0] in _INTERACTIVE_MODULES)
    ):
        return "interactive", None
    if first == "-c":
        return "-c", None
    return (os.path.abspath(first) if os.path.isfile(first) else first), module


_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def command_line(info: Mapping[str, object]) -> str:
    """A shell command that re-runs a recorded invocation, starting in its recorded cwd.

    Returns ``"# ..."`` (a shell comment) when the run cannot be repeated from a command line:
    an interactive session, or ``python -c`` whose code is not in argv.
    """
    argv = info.get("argv")
    args = [str(a) for a in argv[1:]] if isinstance(argv, list) else []
    script = info.get("script")
    module = info.get("module")
    cwd = info.get("cwd")
    if isinstance(module, str) and module:
        if not _MODULE.fullmatch(module):  # a stored value: "-m" must not take "-c..." or "; x"
            return f"# the recorded module is not a module name: {shell_comment(module[:80])}"
        command = ["python", "-m", module, *args]
    elif script == "interactive" or not isinstance(script, str):
        return "# interactive session: there is no command to re-run"
    elif script == "-c":
        return "# started with python -c: the code is not recorded in argv"
    else:
        if isinstance(cwd, str) and os.path.isabs(script):
            relative = os.path.relpath(script, cwd)
            script = script if relative.startswith(os.pardir) else relative
        # "--": a script named "-c..." is a file to run, never an option of python
        command = ["python", "--", script, *args] if script.startswith("-") else ["python", script, *args]
    line = " ".join(shell_word(word) for word in command)
    return f"cd -- {shell_word(cwd)} && {line}" if isinstance(cwd, str) else line


def _jsonable(value: object) -> object:
    """The value with JSON's types only: numpy scalars become numbers, unknowns their repr."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "__index__"):  # numpy integers
        return int(value.__index__())
    if hasattr(value, "item"):  # numpy floating scalars
        try:
            return _jsonable(value.item())
        except Exception:  # not a scalar after all; keep its repr
            return repr(value)
    return repr(value)
