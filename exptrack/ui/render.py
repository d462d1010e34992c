"""``exptrack report``: the web view's page frozen into one self-contained HTML file.

The file holds the page's own scripts and styles, Plotly's bundle from the installed ``plotly``
package, and the data, all inline.  A Content-Security-Policy in the file forbids every network
request, so it opens offline from disk and cannot phone home even by mistake.

The data is what the server would answer, computed by the same code (:mod:`exptrack.ui.views`):
chart rows and best-so-far traces, the runs (the newest ``MAX_REPORT_RUNS`` when more match),
every table order precomputed by :func:`exptrack.where.sort_records`, histories, reproduce steps.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exptrack.errors import QueryError
from exptrack.query.sort import parse_sort, sort_records
from exptrack.store import codec
from exptrack.store.record import utc_timestamp
from exptrack.tracker import ExperimentTracker
from exptrack.ui.assets import SCRIPTS, plotly_js_path, static_text
from exptrack.ui.selection import columns_payload, points_payload, select
from exptrack.ui.views import StoreView, reproduce_steps

MAX_REPORT_RUNS = 5000
"""Runs embedded whole in a report; beyond it the newest are kept and the page says so."""
REPORT_CURVE_POINTS = 500
"""Points per metric history in a report (downsampled like the server does)."""

_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "img-src data: blob:; font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'")
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_ASCII_WORD = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True, slots=True)
class Written:
    """What a report holds: embedded runs, matching runs, and the file's size in bytes."""

    runs: int
    total: int
    size: int


def embed_json(value: object) -> str:
    """JSON that is inert inside ``<script type="application/json">``.

    ``<``, ``>`` and ``&`` become ``\\u`` escapes, so no ``</script>`` or ``<!--`` can end or
    bend the element whatever a stored string holds; U+2028/U+2029 are escaped for old parsers.
    ``JSON.parse`` reads every escape back to the original character.
    """
    text = codec.dumps(value).decode("utf-8")
    return re.sub("[<>&\u2028\u2029]", lambda m: _JSON_ESCAPES[m[0]], text)


def inline_script(code: str) -> str:
    """Script text that cannot close its element early (``</script`` written ``<\\/script``)."""
    return re.sub(r"</(script)", r"<\\/\1", code, flags=re.IGNORECASE).replace("<!--", "<\\!--")


def quote_field(field: str) -> str:
    """A column as the page spells it in a sort spec (source.js ``quoteField``): odd segments backquoted."""
    return ".".join(s if _ASCII_WORD.fullmatch(s) else "`" + s.replace("`", "``") + "`" for s in field.split("."))


def report_data(tracker: ExperimentTracker, where: str | None) -> dict[str, Any]:
    """Everything the page asks the API, answered once, for the runs matching ``where``."""
    view = StoreView(tracker)
    version = view.version()
    # One scan: chart rows, best-so-far traces, and the newest runs whole (no lookup by id).
    selection = select(tracker.runs(where=where), MAX_REPORT_RUNS, newest=MAX_REPORT_RUNS)
    records = list(selection.newest.values())
    columns = columns_payload(selection)
    orders: dict[str, list[int]] = {}
    positions = {id(record): i for i, record in enumerate(records)}
    for column in columns["columns"]:
        for direction in ("asc", "desc"):
            spec = f"{quote_field(column)} {direction}"
            orders[spec] = [positions[id(r)] for r in sort_records(records, parse_sort(spec))]
    store = os.path.abspath(tracker.store)
    histories = {}
    for record in records:
        if record.get("history"):
            histories[record["run_id"]] = view.history(record["run_id"], REPORT_CURVE_POINTS)[1]
    experiments = view.experiments()
    return {
        "version": version, "generated": utc_timestamp(), "store": store, "where": where or "",
        "total": len(selection.ids), "truncated": len(records) < len(selection.ids),
        "runs": records, "newest_first": list(range(len(records) - 1, -1, -1)), "orders": orders,
        "columns": columns, "points": points_payload(selection),
        "points_any": points_payload(selection, any_status=True),
        "summary": view.summary(where)[1],
        "histories": histories, "reproduce": {record["run_id"]: reproduce_steps(record, store) for record in records},
        "experiments": {"experiments": experiments[1]} if experiments else None,
    }


def render_report(data: dict[str, Any]) -> str:
    """The page with its styles, scripts, Plotly and ``data`` inline: one file, no request."""
    page = static_text("index.html")
    style = f"<style>\n{static_text('style.css')}\n</style>"
    page = page.replace('<link rel="stylesheet" href="/static/style.css">', style)
    plotly = plotly_js_path().read_text(encoding="utf-8")
    page = page.replace('<script src="/vendor/plotly.min.js" id="plotly-js" async></script>',
                        f'<script id="plotly-js">{inline_script(plotly)}</script>')
    for name in SCRIPTS:
        code = inline_script(static_text(name))
        page = page.replace(f'<script src="/static/{name}"></script>', f"<script>\n{code}\n</script>")
    head = (f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            f'<script type="application/json" id="exptrack-data">{embed_json(data)}</script>\n')
    if "/static/" in page or "/vendor/" in page:  # a script or style the page gained but the report missed
        raise RuntimeError("the report would reference a file it does not inline")
    return page.replace('<meta charset="utf-8">', '<meta charset="utf-8">\n' + head, 1).replace(
        "<title>exptrack</title>", "<title>exptrack report</title>", 1)


def write_report(tracker: ExperimentTracker, output: str | os.PathLike[str], *, where: str | None = None,
                 experiment: str | None = None) -> Written:
    """Write the report of the runs matching ``where`` (and ``experiment``) to ``output``.

    Raises:
        FilterSyntaxError / QueryError: the filter is invalid, or experiments are not supported.
        MissingDependencyError: plotly is not installed (``pip install 'exptrack[ui]'``).
    """
    if experiment is not None:
        if not callable(getattr(tracker, "experiments", None)):
            raise QueryError("this version of exptrack has no experiments; select runs with --where")
        clause = "experiment = '" + experiment.replace("'", "''") + "'"
        where = f"({where}) and {clause}" if where else clause
    data = report_data(tracker, where)
    html = render_report(data)
    target = Path(output)
    target.write_text(html, encoding="utf-8")
    return Written(len(data["runs"]), data["total"], len(html.encode("utf-8")))
