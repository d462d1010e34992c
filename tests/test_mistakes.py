"""Mistakes get named: a misspelt metric, contradicting flags, an empty log, a sort on no field."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from exptrack import ExperimentTracker, QueryError, UnknownMetricError
from exptrack.cli import cli

HANG_GUARD = 120.0  # seconds; a subprocess that takes longer is hung, not slow


def invoke(store: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--store", str(store), *args], catch_exceptions=False)


@pytest.fixture
def logged(tracker: ExperimentTracker) -> ExperimentTracker:
    tracker.log_run(params={"model": "rf", "max_depth": 8}, metrics={"accuracy": 0.84, "throughput": 10.0},
                    tags=["team=vision"])
    tracker.log_run(params={"model": "svm"}, metrics={"accuracy": 0.91, "throughput": 30.0})
    return tracker


def one_line_error(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.stderr.strip()


@pytest.mark.parametrize(("typo", "meant"), [("acuracy", "accuracy"), ("througput", "throughput"),
                                             ("Accuracy", "accuracy")])
def test_a_misspelt_metric_is_named_unknown_with_a_suggestion(logged: ExperimentTracker, typo: str,
                                                              meant: str) -> None:
    # "throughput" has no inferable direction: the typo is named before any direction is asked
    with pytest.raises(UnknownMetricError, match=f"unknown metric '{typo}'; did you mean '{meant}'") as caught:
        logged.best_run(typo)
    assert caught.value.suggestions[0] == meant
    message = one_line_error(invoke(logged.store, "best", typo))
    assert f"unknown metric '{typo}'; did you mean '{meant}'?" in message
    assert "higher or lower" not in message


def test_an_unknown_metric_through_the_log_path_says_the_same(logged: ExperimentTracker) -> None:
    logged._indexed = lambda progress=None: None  # type: ignore[method-assign]
    with pytest.raises(UnknownMetricError, match="did you mean 'accuracy'"):
        logged.top_runs("acuracy", 3)


def test_max_and_min_together_is_a_usage_error(logged: ExperimentTracker) -> None:
    for command in (["best", "accuracy"], ["top", "accuracy"]):
        result = invoke(logged.store, *command, "--max", "--min")
        assert "--max and --min contradict each other" in one_line_error(result, 2).splitlines()[-1]
        assert result.stdout == ""


def test_log_without_param_metric_or_tag_is_a_usage_error(store: Path) -> None:
    result = invoke(store, "log")
    assert "nothing to log" in one_line_error(result, 2)
    assert not (store / "runs.jsonl").exists() or (store / "runs.jsonl").read_bytes() == b""
    result = invoke(store, "log", "--status", "failed")
    assert "nothing to log" in one_line_error(result, 2)
    assert invoke(store, "log", "-t", "baseline").exit_code == 0


def test_a_sort_on_a_field_no_run_has_is_an_error(logged: ExperimentTracker) -> None:
    message = one_line_error(invoke(logged.store, "runs", "--sort", "metrics.acuracy desc"))
    assert "no run in the store has metrics.acuracy; did you mean metrics.accuracy?" in message
    message = one_line_error(invoke(logged.store, "runs", "--sort", "params.max_dept"))
    assert "did you mean params.max_depth" in message
    result = invoke(logged.store, "runs", "--sort", "metrics.accuracy desc, params.max_depth", "--json")
    assert result.exit_code == 0, result.output
    with pytest.raises(QueryError, match=r"no run in the store has metrics\.acuracy"):
        logged.check_fields(["metrics.acuracy"])
    logged.check_fields(["metrics.accuracy", "params.model", "tags.team", "status", "start_time"])


def test_a_filter_on_a_field_no_run_has_is_an_error_not_an_empty_answer(logged: ExperimentTracker) -> None:
    with pytest.raises(QueryError, match=r"no run in the store has metrics\.acuracy; did you mean metrics\.accuracy"):
        list(logged.runs(where="metrics.acuracy > 0.5"))
    with pytest.raises(QueryError, match=r"no run in the store has params\.mdoel"):
        logged.best_run("accuracy", where="params.mdoel = 'rf'")
    with pytest.raises(QueryError, match=r"no run in the store has tags\.taem"):
        logged.summary(where="tags.taem = 'vision'")
    message = one_line_error(invoke(logged.store, "runs", "--where", "metrics.acuracy > 0.5"))
    assert "did you mean metrics.accuracy" in message
    assert [r.params["model"] for r in logged.runs(where="tags.team IS NULL")] == ["svm"]


def test_the_installed_script_names_the_typo(logged: ExperimentTracker) -> None:
    script = shutil.which("exptrack")
    if script is None:
        pytest.skip("the exptrack console script is not installed")
    done = subprocess.run([script, "--store", str(logged.store), "best", "acuracy"], capture_output=True,
                          text=True, timeout=HANG_GUARD, check=False)
    assert done.returncode == 1
    assert "did you mean 'accuracy'" in done.stderr
