"""Core commands: log a run, list runs, show one, best, top and summary."""

from __future__ import annotations

import click

from exptrack.cli._app import (
    _as_format,
    _echo_json,
    _emit_runs,
    _open,
    _open_for_query,
    cli,
    deleted_option,
    mode_option,
    output_options,
    render_runs,
    status_option,
    where_option,
)
from exptrack.cli.listing import choose_columns, columns_option


def _parse_assignment(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected KEY=VALUE, got {text!r}", param_hint=f"--{what}")
    return key, value


def _json_or_string(value: str) -> object:
    from exptrack.store import codec

    try:
        parsed = codec.loads(value)
    except ValueError:
        return value
    if type(parsed) is float and value.strip().lstrip("-").isdigit():
        return value  # an integer beyond 64 bits, which the parser would round to a float
    return parsed


@cli.command()
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
              help="A parameter; VALUE is parsed as JSON when it can be (lr=0.01 is a number, model=rf a string).")
@click.option("--metric", "-m", "metrics", multiple=True, metavar="NAME=NUMBER",
              help="A metric value (NaN and inf are accepted).")
@click.option("--tag", "-t", "tags", multiple=True, metavar="TAG", help="A tag (KEY=VALUE tags filter as tags.KEY).")
@click.option("--status", type=click.Choice(["finished", "failed", "killed", "pruned"]), default="finished",
              show_default=True, help="How the run ended (pruned: stopped early on purpose, e.g. an Optuna trial).")
@click.option("--no-fsync", is_flag=True, help="Flush only; skip the fsync (faster, survives crashes, not power loss).")
@click.pass_context
def log(ctx: click.Context, params: tuple[str, ...], metrics: tuple[str, ...], tags: tuple[str, ...],
        status: str, no_fsync: bool) -> None:
    """Log one run and print its run id (at least one --param, --metric or --tag)."""
    if not (params or metrics or tags):
        raise click.UsageError("nothing to log: give at least one --param, --metric or --tag")
    parsed_params = {k: _json_or_string(v) for k, v in (_parse_assignment(p, "param") for p in params)}
    parsed_metrics: dict[str, float] = {}
    for text in metrics:
        key, value = _parse_assignment(text, "metric")
        try:
            parsed_metrics[key] = float(value)
        except ValueError:
            raise click.BadParameter(f"{key}: {value!r} is not a number", param_hint="--metric") from None
    tracker = _open(ctx, create=True, durable=not no_fsync)
    run = tracker.log_run(params=parsed_params, metrics=parsed_metrics, tags=list(tags), status=status)
    click.echo(run.run_id)


@cli.command()
@click.argument("run_id")
@deleted_option
@output_options
@click.pass_context
def show(ctx: click.Context, run_id: str, include_deleted: bool, fmt: str) -> None:
    """Show one run (a unique id prefix or the run's name is enough)."""
    from exptrack.query.output import run_columns
    from exptrack.repro.describe import describe_run

    run = _open_for_query(ctx, fmt).get_run(run_id, include_deleted=include_deleted)
    if fmt == "json":
        _echo_json(run.to_dict())
    elif fmt == "table":
        click.echo(describe_run(run))
    else:
        _emit_runs([run], fmt, run_columns([run]))


@cli.command()
@click.argument("metric")
@mode_option
@where_option
@status_option("finished")
@output_options
@click.pass_context
def best(ctx: click.Context, metric: str, mode: str | None, where: str | None, status: str | list[str] | None,
         fmt: str) -> None:
    """The best finished run by METRIC (direction declared by the runs or inferred from the name:
    accuracy, loss, neg_log_loss, ...; else --max/--min)."""
    from exptrack.query.output import format_value, run_columns
    from exptrack.repro.describe import describe_run

    run = _open_for_query(ctx, fmt).best_run(metric, mode, where=where, status=status)
    if fmt == "json":
        _echo_json(run.to_dict())
    elif fmt == "table":
        click.echo(f"best {metric} = {format_value(run.metrics[metric])}\n{describe_run(run)}")
    else:
        _emit_runs([run], fmt, run_columns([run], metrics_first=[metric]))


@cli.command()
@click.argument("metric")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="How many runs.")
@mode_option
@where_option
@status_option("finished")
@columns_option
@output_options
@click.pass_context
def top(ctx: click.Context, metric: str, k: int, mode: str | None, where: str | None, status: str | list[str] | None,
        columns: tuple[str, ...], fmt: str) -> None:
    """The K best finished runs by METRIC, best first (--status to rank others)."""
    ranked = _open_for_query(ctx, fmt).top_runs(metric, k, mode=mode, where=where, status=status)
    if fmt == "json":
        _echo_json([run.to_dict() for run in ranked])
        return
    rows = [{"rank": i, **run.to_dict()} for i, run in enumerate(ranked, 1)]
    chosen = choose_columns(ranked, columns, metrics_first=[metric], extra=["rank"])
    click.echo(render_runs(rows, ["rank", *chosen] if not columns else chosen, fmt), nl=False)


@cli.command()
@where_option
@status_option("finished")
@output_options
@click.pass_context
def summary(ctx: click.Context, where: str | None, status: str | list[str] | None, fmt: str) -> None:
    """Totals, runs per status, then over the finished runs (--status for others) per-metric
    count/min/max/mean/std and the best run."""
    from exptrack.query.output import render

    tracker = _open_for_query(ctx, fmt)
    result = tracker.summary(where=where, status=status)
    if not result["total_runs"]:
        # "no runs" is an error the user can fix, as for best and top (exit 1)
        scope = " match the filter" if where else f" in {tracker.store}"
        raise click.ClickException(f"no runs{scope} ({result['corrupt_lines']} corrupt lines skipped)")
    if fmt == "json":
        _echo_json(result)
        return
    rows = [{"metric": name, **stats} for name, stats in result["metrics"].items()]
    columns = ["metric", "count", "nonfinite", "min", "max", "mean", "std", "mode", "best_value", "best_run_id"]
    if fmt == "table":
        statuses = ", ".join(f"{k}: {v}" for k, v in result["statuses"].items()) or "-"
        click.echo(f"runs: {result['total_runs']}   corrupt lines skipped: {result['corrupt_lines']}")
        from exptrack.query.output import terminal_safe

        click.echo(terminal_safe(f"status: {statuses}"))
        click.echo(terminal_safe(f"metrics over {result['ranked_runs']} run(s) of status {result['status_scope']}"))
        if rows:
            click.echo()
    if rows or fmt != "table":
        click.echo(render(rows, columns, fmt=_as_format(fmt)), nl=False)
    for warning in result["warnings"]:
        click.echo(f"warning: {warning}", err=True)
