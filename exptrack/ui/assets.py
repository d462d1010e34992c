"""Where the page's files are: our plain front-end files, and Plotly's bundle inside its package.

The chart library is the ``plotly.min.js`` that the ``plotly`` Python package ships (its
``package_data``), found at run time: never a CDN, never a copy in this repository.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from exptrack.query.export import MissingDependencyError

STATIC_DIR = Path(__file__).resolve().parent / "static"
SCRIPTS = ("source.js", "table.js", "pcoords.js", "charts.js", "compare.js", "runpage.js", "app.js")
"""The page's own scripts, in load order (the report inlines them in this order)."""


def plotly_js_path() -> Path:
    """The Plotly.js bundle shipped inside the installed ``plotly`` package.

    Raises:
        MissingDependencyError: plotly is not installed (``pip install 'exptrack[ui]'``).
    """
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise MissingDependencyError("plotly", "the web view", "ui")
    path = Path(spec.origin).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise MissingDependencyError("plotly", "the web view (its package has no plotly.min.js)", "ui")
    return path


def static_text(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")
