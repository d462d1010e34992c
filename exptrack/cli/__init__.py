"""The ``exptrack`` command line (click): the only package that imports click."""

from exptrack.cli import (
    check,  # noqa: F401
    core,  # noqa: F401 - registers the commands on the group
    export,  # noqa: F401
    imports,  # noqa: F401
    listing,  # noqa: F401
    manage,  # noqa: F401
    repro,  # noqa: F401
    sql,  # noqa: F401
    ui,  # noqa: F401
)
from exptrack.cli._app import cli, main

__all__ = ["cli", "main"]
