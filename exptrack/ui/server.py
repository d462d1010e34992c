"""The read-only JSON API and the static page, as one Starlette application.

Every route is a GET that parses its query string, asks :class:`~exptrack.ui.views.StoreView`
and serializes the answer with the codec the CLI's ``--json`` uses (runs as stored: NaN metrics
are the strings ``"NaN"``, ``"Infinity"``).  Every answer carries the store version as its ETag;
a request whose ``If-None-Match`` still matches gets ``304`` without a body, which is how the
polling page fetches only what changed.

    GET /api/version                        {"version", "runs", "experiments"}: polled by the page
    GET /api/runs?where=&sort=&limit=&offset=   {"runs": [...], "total": N, "limit", "offset"}
    GET /api/columns?where=                 table columns: run fields, metrics.*, params.*
    GET /api/points?where=&max_points=&status=  chart rows (sampled beyond max_points) + best-so-far
                                            over the runs of ``status`` (default finished, as best)
    GET /api/summary?where=&status=         tracker.summary()
    GET /api/runs/{run}                     the run as stored
    GET /api/runs/{run}/history?max_points= step histories, downsampled per metric
    GET /api/runs/{run}/reproduce           shell steps rebuilt from the record
    GET /api/runs/{run}/artifacts           name -> {sha256, size}
    GET /api/runs/{run}/artifacts/{name}    the bytes, verified against their sha256
    GET /api/experiments                    the store's experiments (404 before they exist)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from exptrack.errors import (
    ArtifactIntegrityError,
    ExptrackError,
    FilterSyntaxError,
    QueryError,
    RunNotFoundError,
)
from exptrack.store import codec
from exptrack.tracker import ExperimentTracker
from exptrack.ui.assets import STATIC_DIR, plotly_js_path
from exptrack.ui.views import DEFAULT_CURVE_POINTS, DEFAULT_POINTS, StoreView

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_RENDERED = 64  # serialized answers kept (pages, filters, runs viewed) for the current version

# The page loads only its own files; user data is never markup, and this makes an injected
# script inert even if a bug put one in the DOM.  Plotly sets inline styles, hence 'unsafe-inline'
# for styles only.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

Handler = Callable[[Request], Awaitable[Response]]


class BadRequest(ExptrackError, ValueError):
    """A query-string parameter the API cannot use (not a number, say)."""


def _json(body: Any, status: int = 200, version: str | None = None) -> Response:
    return _bytes(codec.dumps(body), status, version)


def _bytes(data: bytes, status: int = 200, version: str | None = None) -> Response:
    headers = dict(_SECURITY_HEADERS)
    if version is not None:
        headers["ETag"] = f'"{version}"'
    return Response(data, status_code=status, media_type="application/json", headers=headers)


def _error(exc: Exception, status: int) -> Response:
    body: dict[str, Any] = {"error": str(exc), "type": type(exc).__name__}
    if isinstance(exc, FilterSyntaxError):
        body.update(reason=exc.reason, position=exc.position, expression=exc.expression)
    return _json(body, status)


def _int(request: Request, name: str, default: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {text!r}") from None


def _text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    return value if value and value.strip() else None


def _not_modified(request: Request, version: str) -> bool:
    return request.headers.get("if-none-match", "").strip() == f'"{version}"'


class _Renderer:
    """Serialized answers of the current store version, and the handler around each query.

    Encoding (NaN as ``"NaN"`` needs a walk in Python) costs more than the cached query behind
    it, so a repeated request reuses the bytes; a request whose ETag matches the store version
    gets ``304`` before any query runs.
    """

    def __init__(self, view: StoreView) -> None:
        self.view = view
        self.rendered: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self.lock = threading.Lock()

    def render(self, answer: Callable[[Request], tuple[str, Any]],
               request: Request) -> tuple[str | None, bytes | None]:
        key = (request.url.path, str(request.query_params))
        version = self.view.version()
        if _not_modified(request, version):
            return version, None  # the page already has it: no query, no body
        with self.lock:
            hit = self.rendered.get((key[0], key[1], version))
        if hit is not None:
            return version, hit
        version, body = answer(request)
        data = codec.dumps(body)
        if isinstance(body, dict) and body.get("partial"):
            return None, data  # a stand-in until the full answer exists: neither cached nor tagged
        with self.lock:
            self.rendered[(key[0], key[1], version)] = data
            for stale in [k for k in self.rendered if k[2] != version]:
                del self.rendered[stale]
            while len(self.rendered) > _RENDERED:
                self.rendered.popitem(last=False)
        return version, data

    def endpoint(self, answer: Callable[[Request], tuple[str, Any]]) -> Handler:
        """Run a blocking query in the thread pool and turn exptrack errors into JSON errors."""

        async def handle(request: Request) -> Response:
            try:
                version, data = await run_in_threadpool(self.render, answer, request)
            except (FilterSyntaxError, QueryError, BadRequest) as exc:
                return _error(exc, 400)
            except (RunNotFoundError, LookupError) as exc:
                return _error(exc, 404)
            except ArtifactIntegrityError as exc:
                return _error(exc, 409)
            except ExptrackError as exc:
                return _error(exc, 500)
            if data is None:
                return Response(status_code=304, headers={"ETag": f'"{version}"', **_SECURITY_HEADERS})
            return _bytes(data, version=version)  # version None: no ETag

        return handle


def create_app(tracker: ExperimentTracker, *, allowed_hosts: tuple[str, ...] = LOCAL_HOSTS) -> Starlette:
    """The web view of ``tracker``'s store.

    Args:
        tracker: the store to show; the app only reads through it.
        allowed_hosts: ``Host`` headers accepted; the default (loopback names) refuses requests
            that reach a local server under another name (DNS rebinding).
    """
    view = StoreView(tracker)
    endpoint = _Renderer(view).endpoint

    def version(_request: Request) -> tuple[str, Any]:
        tag = view.version()
        has_experiments = callable(getattr(tracker, "experiments", None))
        return tag, {"version": tag, "runs": tracker.index_stats().runs, "experiments": has_experiments}

    def runs(request: Request) -> tuple[str, Any]:
        return view.runs_page(_text(request, "where"), _text(request, "sort"),
                              _int(request, "limit", 50), _int(request, "offset", 0))

    def columns(request: Request) -> tuple[str, Any]:
        return view.columns(_text(request, "where"))

    def points(request: Request) -> tuple[str, Any]:
        return view.points(_text(request, "where"), _int(request, "max_points", DEFAULT_POINTS),
                           _text(request, "status") or "finished")

    def summary(request: Request) -> tuple[str, Any]:
        return view.summary(_text(request, "where"), _text(request, "status") or "finished")

    def run(request: Request) -> tuple[str, Any]:
        return view.run(request.path_params["run"])

    def history(request: Request) -> tuple[str, Any]:
        return view.history(request.path_params["run"], _int(request, "max_points", DEFAULT_CURVE_POINTS))

    def reproduce(request: Request) -> tuple[str, Any]:
        return view.reproduce(request.path_params["run"])

    def artifacts(request: Request) -> tuple[str, Any]:
        tag, record = view.run(request.path_params["run"])
        listed = record.get("artifacts") or {}
        return tag, {name: {"sha256": item.get("sha256"), "size": item.get("size")} for name, item in listed.items()}

    def experiments(_request: Request) -> tuple[str, Any]:
        answer = view.experiments()
        if answer is None:
            raise LookupError("this store has no experiments (the tracker does not support them yet)")
        tag, listed = answer
        return tag, {"experiments": listed}

    async def artifact(request: Request) -> Response:
        run_id, name = request.path_params["run"], request.path_params["name"]
        try:
            data = await run_in_threadpool(view.artifact, run_id, name)
        except RunNotFoundError as exc:
            return _error(exc, 404)
        except ArtifactIntegrityError as exc:
            return _error(exc, 409)
        except ExptrackError as exc:
            return _error(exc, 500)
        filename = Path(name).name or "artifact"
        headers = {**_SECURITY_HEADERS, "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"}
        return Response(data, media_type="application/octet-stream", headers=headers)

    async def page(_request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers=_SECURITY_HEADERS)

    async def plotly(_request: Request) -> Response:
        return FileResponse(plotly_js_path(), media_type="text/javascript",
                            headers={**_SECURITY_HEADERS, "Cache-Control": "max-age=86400"})

    routes = [
        Route("/", page),
        Route("/vendor/plotly.min.js", plotly),
        Route("/api/version", endpoint(version)),
        Route("/api/runs", endpoint(runs)),
        Route("/api/columns", endpoint(columns)),
        Route("/api/points", endpoint(points)),
        Route("/api/summary", endpoint(summary)),
        Route("/api/experiments", endpoint(experiments)),
        Route("/api/runs/{run}", endpoint(run)),
        Route("/api/runs/{run}/history", endpoint(history)),
        Route("/api/runs/{run}/reproduce", endpoint(reproduce)),
        Route("/api/runs/{run}/artifacts", endpoint(artifacts)),
        Route("/api/runs/{run}/artifacts/{name:path}", artifact),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.view = view
    return app
