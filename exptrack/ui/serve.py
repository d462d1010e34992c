"""Run the web view under uvicorn on a socket bound before the URL is announced."""

from __future__ import annotations

import socket
import threading
import webbrowser
from collections.abc import Callable

from exptrack.query.export import MissingDependencyError
from exptrack.tracker import ExperimentTracker


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    return sock


def serve(tracker: ExperimentTracker, *, host: str, port: int, open_browser: bool,
          announce: Callable[[str], None]) -> None:
    """Serve until interrupted.  ``port=0`` picks a free port; the announced URL has the real one.

    Raises:
        MissingDependencyError: the ``ui`` extra (uvicorn, starlette, plotly) is not installed.
        OSError: the address cannot be bound (in use, not local...).
    """
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError("uvicorn", "exptrack ui", "ui") from None
    try:
        from exptrack.ui.server import LOCAL_HOSTS, create_app
    except ImportError:
        raise MissingDependencyError("starlette", "exptrack ui", "ui") from None
    from exptrack.ui.assets import plotly_js_path

    plotly_js_path()  # fail now, with the install hint, rather than on the page's first request
    app = create_app(tracker, allowed_hosts=LOCAL_HOSTS if host in LOCAL_HOSTS else ("*",))
    sock = _bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}/"
    # Compute the first page's answer while the server starts and the browser opens: at a million
    # runs that is one scan, better begun before anyone asks.
    threading.Thread(target=app.state.view.warm, name="exptrack-ui-warm", daemon=True).start()
    announce(url)
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    server.run(sockets=[sock])
