"""Tables fit the terminal: width from COLUMNS / the terminal, --columns picks, params that tell
runs apart first, nothing dropped without saying so, tags shown, None apart from missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from exptrack import ExperimentTracker, Run
from exptrack.cli import cli
from exptrack.query.output import render, run_columns

RF = {"model": "rf", "n_estimators": 100, "max_depth": None, "min_samples_leaf": 2, "max_features": "sqrt",
      "criterion": "gini", "bootstrap": True, "oob_score": False, "warm_start": False, "seed": 1}


def table(store: Path, args: Sequence[str], columns: int) -> Result:
    result = CliRunner().invoke(cli, ["--store", str(store), *args], env={"COLUMNS": str(columns)},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def mixed(tracker: ExperimentTracker) -> list[Run]:
    return [
        tracker.log_run(params=RF, metrics={"accuracy": 0.91}, tags=["baseline"]),
        tracker.log_run(params={"model": "knn", "n_neighbors": 5, "seed": 1}, metrics={"accuracy": 0.87},
                        tags=["a,b", "c"]),
        tracker.log_run(params={**RF, "max_depth": 8}, metrics={"accuracy": 0.93}),
    ]


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_every_line_fits_the_width_and_what_is_left_out_is_named(store: Path, mixed: list[Run], width: int) -> None:
    out = table(store, ["runs"], width).stdout
    lines = out.splitlines()
    assert all(len(line) <= max(width, 34) for line in lines), [len(line) for line in lines]
    header = lines[0].split()
    every = run_columns(mixed)
    hidden = [name for name in every if name not in header]
    if hidden:
        assert f"+{len(hidden)} more columns" in out
        for name in hidden:
            assert name in out  # named below the table, never dropped silently
    for run in mixed:
        assert run.run_id in out


def test_a_wider_terminal_shows_more_columns(store: Path, mixed: list[Run]) -> None:
    narrow = table(store, ["runs"], 80).stdout.splitlines()[0].split()
    wide = table(store, ["runs"], 200).stdout.splitlines()[0].split()
    assert len(wide) > len(narrow)
    assert set(narrow) < set(wide)


def test_params_that_differ_come_first_so_a_knn_row_shows_its_hyperparameter(store: Path, mixed: list[Run]) -> None:
    columns = run_columns(mixed)
    params = [c for c in columns if c.startswith("params.")]
    differing = {"params.model", "params.n_estimators", "params.max_depth", "params.min_samples_leaf",
                 "params.max_features", "params.criterion", "params.bootstrap", "params.oob_score",
                 "params.warm_start", "params.n_neighbors"}
    assert set(params[: len(differing)]) == differing
    assert params[-1] == "params.seed"  # the same in every run: last
    out = table(store, ["runs"], 100).stdout
    assert "params.n_neighbors" in out


def test_columns_option_chooses_the_columns(store: Path, mixed: list[Run]) -> None:
    out = table(store, ["runs", "-c", "run_id,metrics.accuracy", "--columns", "params.n_neighbors"], 200).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["run_id", "metrics.accuracy", "params.n_neighbors"]
    assert len(lines) == 4
    csv_out = table(store, ["runs", "--csv", "-c", "run_id,params.model*"], 80).stdout
    assert csv_out.splitlines()[0] == "run_id,params.model"


def test_an_unknown_column_is_a_usage_error_that_suggests_the_name(store: Path, mixed: list[Run]) -> None:
    result = CliRunner().invoke(cli, ["--store", str(store), "runs", "-c", "params.n_neighbours"])
    assert result.exit_code == 2
    assert "params.n_neighbors" in result.stderr
    assert "Traceback" not in result.output


def test_tags_are_shown_and_none_differs_from_missing(store: Path, mixed: list[Run]) -> None:
    out = table(store, ["runs", "-c", "run_id,tags,params.max_depth"], 200).stdout
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "baseline" in rows[mixed[0].run_id]
    assert '["a,b","c"]' in rows[mixed[1].run_id]  # a comma inside a tag stays visible as such
    assert rows[mixed[0].run_id].split()[-1] == "None"  # logged as None
    assert rows[mixed[1].run_id].split()[-1] == "-"  # never logged
    assert rows[mixed[2].run_id].split()[-1] == "8"
    default = table(store, ["runs"], 200).stdout
    assert "tags" in default.splitlines()[0].split()


def test_columns_of_a_run_with_100000_params_are_all_listed() -> None:
    run = Run(run_id="wide", timestamp="t", params={f"p{i}": i for i in range(100_000)}, metrics={"m": 1.0})
    columns = run_columns([run, run])
    assert len(columns) == 4 + 1 + 100_000  # run_id, name, timestamp, status; one metric; every param
    out = render([run], columns, width=100)
    assert len(out.splitlines()[0]) <= 100
    assert "+99,9" in out  # the count of what did not fit


def test_the_installed_script_follows_the_columns_variable(store: Path, mixed: list[Run]) -> None:
    script = shutil.which("exptrack")
    assert script is not None, "the exptrack console script is not installed (pip install -e .)"
    outs = {}
    for width in (80, 200):
        env = {**os.environ, "COLUMNS": str(width)}
        done = subprocess.run([script, "--store", str(store), "runs"], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert max(map(len, done.stdout.splitlines())) <= width
        outs[width] = done.stdout
    assert outs[80] != outs[200]


def test_top_takes_columns_too(store: Path, mixed: list[Run]) -> None:
    out = table(store, ["top", "accuracy", "-c", "rank,run_id,params.max_depth"], 200).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["rank", "run_id", "params.max_depth"]
    assert lines[1].split() == ["1", mixed[2].run_id, "8"]
