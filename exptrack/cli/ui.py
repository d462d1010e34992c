"""``exptrack ui`` (the live web view) and ``exptrack report`` (the same views frozen in one file)."""

from __future__ import annotations

from pathlib import Path

import click

from exptrack.cli._app import _open, _open_for_query, cli, where_option

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback exposes the store to the network (there is no auth).")
@click.option("--port", type=click.IntRange(0, 65535), default=5177, show_default=True, help="Port (0: any free port).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser tab.")
@click.pass_context
def ui(ctx: click.Context, host: str, port: int, no_browser: bool) -> None:
    """Serve a read-only web view of the store: runs table, charts, compare, run pages."""
    from exptrack.ui.serve import serve

    tracker = _open(ctx)
    if host not in _LOOPBACK:
        click.echo(f"warning: serving on {host}: exptrack ui has no authentication; anyone who can reach "
                   "this address can read every run and artifact in the store", err=True)
    serve(tracker, host=host, port=port, open_browser=not no_browser,
          announce=lambda url: click.echo(f"exptrack ui: serving {tracker.store} at {url} (Ctrl-C stops)", err=True))


@cli.command()
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The HTML file to write.")
@where_option
@click.option("--experiment", default=None, metavar="NAME", help="Only the runs of this experiment.")
@click.pass_context
def report(ctx: click.Context, output: Path, where: str | None, experiment: str | None) -> None:
    """Write one self-contained HTML file with the web view's views and the data embedded (opens offline)."""
    from exptrack.ui.render import write_report

    tracker = _open_for_query(ctx, "table")
    written = write_report(tracker, output, where=where, experiment=experiment)
    click.echo(f"wrote {output} ({written.runs} of {written.total} runs, {written.size / 1e6:.1f} MB)", err=True)
