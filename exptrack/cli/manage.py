"""Managing runs after the fact: tag, note, rename, delete, restore, experiments (and gc, resume's helpers)."""

from __future__ import annotations

import sys

import click

from exptrack.cli._app import _echo_json, _open, cli, where_option


def _interactive() -> bool:
    """Whether a person can answer a question (stdin is a terminal)."""
    return sys.stdin.isatty()


@cli.command(context_settings={"ignore_unknown_options": True})  # -TAG is a change, not an option
@click.argument("run")
@click.argument("changes", nargs=-1, required=True, metavar="+TAG|-TAG...")
@click.pass_context
def tag(ctx: click.Context, run: str, changes: tuple[str, ...]) -> None:
    """Add (+TAG) and remove (-TAG) tags of RUN (an id, unique id prefix or name): `exptrack tag RUN +best -draft`."""
    add: list[str] = []
    remove: list[str] = []
    for change in changes:
        if len(change) < 2 or change[0] not in "+-":
            raise click.BadParameter(f"{change!r}: write +TAG to add a tag, -TAG to remove one", param_hint="changes")
        (add if change[0] == "+" else remove).append(change[1:])
    merged = _open(ctx).set_tags(run, add=add, remove=remove)
    click.echo(f"{merged.run_id} ({merged.name}): tags {', '.join(merged.tags) or '(none)'}")


@cli.command()
@click.argument("run")
@click.argument("text")
@click.pass_context
def note(ctx: click.Context, run: str, text: str) -> None:
    """Set the note of RUN (an empty TEXT clears it)."""
    merged = _open(ctx).set_note(run, text)
    click.echo(f"{merged.run_id} ({merged.name}): note {'set' if text else 'cleared'}")


@cli.command()
@click.argument("run")
@click.argument("name")
@click.pass_context
def rename(ctx: click.Context, run: str, name: str) -> None:
    """Give RUN a new NAME."""
    merged = _open(ctx).rename(run, name)
    click.echo(f"{merged.run_id}: renamed to {merged.name}")


@cli.command()
@click.argument("runs", nargs=-1)
@where_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def delete(ctx: click.Context, runs: tuple[str, ...], where: str | None, yes: bool) -> None:
    """Delete RUNS (ids, prefixes or names) and/or every run --where matches (soft: `exptrack restore` undoes it).

    On a terminal it asks for confirmation first unless --yes; it prints each run it deleted.
    `exptrack gc` removes deleted runs for good.
    """
    if not runs and where is None:
        raise click.UsageError("name the runs to delete, or pass --where EXPR")
    tracker = _open(ctx)
    chosen = {run.run_id: run for run in (tracker.get_run(name) for name in runs)}
    if where is not None:
        chosen.update((run.run_id, run) for run in tracker.runs(where=where))
    if not chosen:
        click.echo("no runs match: nothing deleted", err=True)
        return
    if not yes and _interactive():
        click.confirm(f"delete {len(chosen)} run(s)?", abort=True, err=True)
    count = tracker.delete_runs(list(chosen))
    for run in chosen.values():
        click.echo(f"deleted {run.run_id} ({run.name})")
    click.echo(f"{count} run(s) deleted; `exptrack restore RUN` brings one back, `exptrack gc` removes them",
               err=True)


@cli.command()
@click.argument("runs", nargs=-1, required=True)
@click.pass_context
def restore(ctx: click.Context, runs: tuple[str, ...]) -> None:
    """Bring deleted RUNS back (ids, prefixes or names)."""
    tracker = _open(ctx)
    targets = [tracker.get_run(name, include_deleted=True) for name in runs]
    count = tracker.restore_runs([run.run_id for run in targets])
    for run in targets:
        state = "restored" if run.extra.get("deleted") is True else "was not deleted:"
        click.echo(f"{state} {run.run_id} ({run.name})")
    click.echo(f"{count} run(s) restored", err=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON: a list of {experiment, runs, finished, last_activity}.")
@click.pass_context
def experiments(ctx: click.Context, as_json: bool) -> None:
    """List the store's experiments: runs, finished runs and last activity."""
    from exptrack.query.output import render

    found = _open(ctx).experiments()
    if as_json:
        _echo_json(found)
        return
    if not found:
        click.echo("no experiments (no runs)", err=True)
        return
    columns = ["experiment", "runs", "finished", "last_activity"]
    click.echo(render(found, columns), nl=False)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Print what would be removed; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@click.pass_context
def gc(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Compact the store: drop deleted runs, fold edits into their runs, remove unused artifacts.

    Safe while other processes log and query: the new log is swapped in atomically and writers
    move to it.  Deleted runs are gone for good afterwards (`restore` cannot bring them back).
    """
    report = _open(ctx).compact(dry_run=dry_run)
    if as_json:
        _echo_json(report)
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {report['runs_removed']} deleted run(s), folded {report['edits_folded']} edit(s), "
               f"dropped {report['lines_dropped']} superseded/duplicate line(s)")
    click.echo(f"log: {report['bytes_before']:,} -> {report['bytes_after']:,} bytes")
    click.echo(f"{verb} {report['blobs_removed']} artifact blob(s) ({report['blob_bytes']:,} bytes) and "
               f"{report['history_removed']} history file(s)")
    for run_id in report["removed_ids"][:20] if dry_run else ():
        click.echo(f"  {run_id}")
