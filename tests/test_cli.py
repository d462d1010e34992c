"""The command line: every core command through CliRunner, exit codes, and the installed script."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from exptrack import ExperimentTracker
from exptrack.cli import cli
from exptrack.store.logs import detach_store_log
from exptrack.store.names import generated_name

HANG_GUARD = 120.0  # seconds; a subprocess that takes longer is hung, not slow
COMMANDS = ["log", "runs", "show", "best", "top", "summary"]
RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def invoke(args: Sequence[str], store: Path | None = None, env: dict[str, str] | None = None) -> Result:
    prefix = ["--store", str(store)] if store is not None else []
    return CliRunner().invoke(cli, [*prefix, *args], env=env, catch_exceptions=False)


def ok(args: Sequence[str], store: Path) -> Result:
    result = invoke(args, store)
    assert result.exit_code == 0, result.output
    return result


def assert_user_error(result: Result, *fragments: str) -> None:
    """Exit 1, one line on stderr naming the problem, nothing on stdout, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    message = result.stderr.strip()
    assert "\n" not in message, message
    assert message.startswith("Error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in message


def assert_usage_error(result: Result) -> None:
    assert result.exit_code == 2, result.output
    assert "Usage:" in result.stderr
    assert "Traceback" not in result.output


@pytest.fixture
def filled(store: Path) -> list[str]:
    """Three runs logged through the CLI: their ids in order."""
    ids = [
        ok(["log", "-p", "model=rf", "-p", "max_depth=8", "-m", "accuracy=0.84", "-m", "loss=0.40", "-t", "base"],
           store).stdout.strip(),
        ok(["log", "--param", "model=lr", "--metric", "accuracy=0.91", "--metric", "loss=0.25", "--tag", "best"],
           store).stdout.strip(),
        ok(["log", "-p", "model=mlp", "-m", "accuracy=NaN", "-m", "loss=inf", "--status", "failed"],
           store).stdout.strip(),
    ]
    assert all(RUN_ID.match(run_id) for run_id in ids), ids
    return ids


# -- log ----------------------------------------------------------------------------------------


def test_log_prints_the_new_run_id_and_parses_values_as_json(store: Path) -> None:
    result = ok(
        ["log", "-p", "lr=0.01", "-p", "model=rf", "-p", "layers=[64, 32]", "-p", "flag=true", "-p", "seed=7",
         "-p", "code=007", "-p", "opts={\"a\": null}", "-p", "empty=", "-m", "accuracy=0.9", "-m", "loss=NaN",
         "-m", "gain=-inf", "-m", "epochs=3", "-t", "baseline", "-t", "team=vision"],
        store,
    )
    run_id = result.stdout.strip()
    assert RUN_ID.match(run_id)
    assert result.stdout == run_id + "\n"
    (run,) = ExperimentTracker(store).runs()
    assert run.run_id == run_id
    assert run.params == {"lr": 0.01, "model": "rf", "layers": [64, 32], "flag": True, "seed": 7,
                          "code": "007", "opts": {"a": None}, "empty": ""}
    assert run.metrics["accuracy"] == 0.9
    assert math.isnan(run.metrics["loss"])
    assert run.metrics["gain"] == -math.inf
    assert run.metrics["epochs"] == 3
    assert run.tags == ("baseline", "team=vision")
    assert run.status == "finished"


@pytest.mark.parametrize(
    "args",
    [["-m", "accuracy=high"], ["-m", "accuracy"], ["-p", "no_equals_sign"], ["-m", "=0.5"], ["--status", "bogus"],
     ["--no-such-option"]],
    ids=["metric-not-number", "metric-no-value", "param-no-value", "metric-no-name", "bad-status", "unknown-option"],
)
def test_log_usage_errors_exit_2_and_write_nothing(store: Path, args: list[str]) -> None:
    assert_usage_error(invoke(["log", *args], store))
    assert not (store / "runs.jsonl").exists() or (store / "runs.jsonl").read_bytes() == b""


def test_log_keeps_integers_exact(store: Path) -> None:
    ok(["log", "-p", "seed=18446744073709551615", "-p", "big=18446744073709551616", "-p", "low=-9223372036854775809"],
       store)
    (run,) = ExperimentTracker(store).runs()
    # within 64 bits an int; beyond, the text itself rather than a rounded float
    assert run.params == {"seed": 2**64 - 1, "big": "18446744073709551616", "low": "-9223372036854775809"}


def test_log_of_a_value_that_cannot_be_stored_is_a_user_error(store: Path) -> None:
    ok(["log", "-m", "accuracy=0.5"], store)
    before = (store / "runs.jsonl").read_bytes()
    # a byte that is not UTF-8 on the command line arrives as a lone surrogate (surrogateescape)
    assert_user_error(invoke(["log", "-p", "name=\udcff"], store), "params.name")
    assert (store / "runs.jsonl").read_bytes() == before


def test_store_comes_from_the_environment(tmp_path: Path) -> None:
    store = tmp_path / "from-env"
    env = {"EXPTRACK_STORE": str(store)}
    result = invoke(["log", "-m", "accuracy=0.5"], env=env)
    assert result.exit_code == 0, result.output
    assert (store / "runs.jsonl").exists()
    listed = invoke(["runs", "--json"], env=env)
    assert [run["run_id"] for run in json.loads(listed.stdout)] == [result.stdout.strip()]
    # --store wins over the environment
    other = tmp_path / "explicit"
    assert invoke(["--store", str(other), "log", "-m", "accuracy=0.1"], env=env).exit_code == 0
    assert len(json.loads(invoke(["runs", "--json"], env=env).stdout)) == 1


def test_default_store_is_experiments_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EXPTRACK_STORE", raising=False)
    try:
        result = invoke(["log", "-m", "accuracy=0.5"])
        assert result.exit_code == 0, result.output
        assert (tmp_path / "experiments" / "runs.jsonl").is_file()
        assert json.loads(invoke(["runs", "--json"]).stdout)[0]["run_id"] == result.stdout.strip()
    finally:
        detach_store_log(str(tmp_path / "experiments"))


# -- queries ------------------------------------------------------------------------------------


def test_runs_lists_every_run(store: Path, filled: list[str]) -> None:
    table = ok(["runs"], store).stdout
    for run_id in filled:
        assert run_id in table
    records = json.loads(ok(["runs", "--json"], store).stdout)
    assert [record["run_id"] for record in records] == filled
    assert records[0].pop("experiment") == "default"
    assert records[0].pop("name") == generated_name(filled[0])
    assert records[0] == {
        "schema": 2,
        "run_id": filled[0],
        "timestamp": records[0]["timestamp"],
        "status": "finished",
        "params": {"model": "rf", "max_depth": 8},
        "metrics": {"accuracy": 0.84, "loss": 0.40},
        "tags": ["base"],
    }
    assert records[2]["metrics"] == {"accuracy": "NaN", "loss": "Infinity"}  # --json spells them out
    assert records[2]["status"] == "failed"


def test_runs_table_says_when_it_shows_only_the_latest(store: Path) -> None:
    tracker = ExperimentTracker(store, durable=False)
    ids = [run.run_id for run in tracker.log_runs([{"metrics": {"accuracy": i / 100}} for i in range(23)])]
    table = ok(["runs"], store)
    assert [run_id for run_id in ids if run_id in table.stdout] == ids[3:]
    assert "20 of 23" in table.stderr
    full = ok(["runs", "--limit", "0"], store)
    assert [run_id for run_id in ids if run_id in full.stdout] == ids
    assert full.stderr == ""
    assert [record["run_id"] for record in json.loads(ok(["runs", "--json"], store).stdout)] == ids


def test_show_prints_one_run_by_id_or_unique_prefix(store: Path, filled: list[str]) -> None:
    text = ok(["show", filled[1]], store).stdout
    assert filled[1] in text
    assert "lr" in text
    assert "0.91" in text
    record = json.loads(ok(["show", filled[1], "--json"], store).stdout)
    stored = json.loads((store / "runs.jsonl").read_bytes().splitlines()[1])
    stored.pop("crc")
    assert record == stored
    ids = filled
    prefix = next(ids[1][:n] for n in range(1, 33) if sum(i.startswith(ids[1][:n]) for i in ids) == 1)
    assert json.loads(ok(["show", prefix, "--json"], store).stdout)["run_id"] == filled[1]


def test_show_unknown_or_ambiguous_id_exits_1(store: Path, filled: list[str]) -> None:
    assert_user_error(invoke(["show", "ffffffffffff"], store), "ffffffffffff")
    shared = filled[0][:6]  # the millisecond clock prefix: the same for runs logged in one test
    assert all(run_id.startswith(shared) for run_id in filled)
    assert_user_error(invoke(["show", shared], store), "ambiguous")


def test_best_uses_the_inferred_or_given_direction(store: Path, filled: list[str]) -> None:
    assert json.loads(ok(["best", "accuracy", "--json"], store).stdout)["run_id"] == filled[1]
    assert json.loads(ok(["best", "loss", "--json"], store).stdout)["run_id"] == filled[1]
    assert json.loads(ok(["best", "accuracy", "--min", "--json"], store).stdout)["run_id"] == filled[0]
    assert json.loads(ok(["best", "loss", "--max", "--json"], store).stdout)["run_id"] == filled[0]
    text = ok(["best", "accuracy"], store).stdout
    assert filled[1] in text
    assert "0.91" in text


def test_best_record_is_the_record_as_stored(store: Path, filled: list[str]) -> None:
    record = json.loads(ok(["best", "accuracy", "--json"], store).stdout)
    assert record == json.loads(ok(["show", filled[1], "--json"], store).stdout)
    assert set(record) >= {"schema", "run_id", "timestamp", "status", "params", "metrics", "tags"}


def test_top_ranks_k_runs_best_first(store: Path, filled: list[str]) -> None:
    ranked = json.loads(ok(["top", "accuracy", "--json"], store).stdout)
    assert isinstance(ranked, list)
    assert [record["run_id"] for record in ranked] == [filled[1], filled[0]]  # NaN is never ranked
    assert [r["run_id"] for r in json.loads(ok(["top", "loss", "-k", "1", "--json"], store).stdout)] == [filled[1]]
    assert [r["run_id"] for r in json.loads(ok(["top", "loss", "--max", "--json"], store).stdout)] == filled[:2]
    table = ok(["top", "accuracy", "-k", "2"], store).stdout
    assert table.index(filled[1]) < table.index(filled[0])


def test_summary_reports_totals_statuses_and_metrics(store: Path, filled: list[str]) -> None:
    with (store / "runs.jsonl").open("ab") as handle:
        handle.write(b"garbage\n")
    result = json.loads(ok(["summary", "--json"], store).stdout)
    assert isinstance(result, dict)
    assert result["total_runs"] == 3
    assert result["corrupt_lines"] == 1
    assert result["statuses"] == {"failed": 1, "finished": 2}
    accuracy = result["metrics"]["accuracy"]
    assert (accuracy["count"], accuracy["min"], accuracy["max"]) == (2, 0.84, 0.91)
    assert math.isclose(accuracy["mean"], 0.875)
    assert math.isclose(accuracy["std"], math.sqrt(2 * 0.035**2))
    assert (accuracy["best_run_id"], accuracy["best_value"]) == (filled[1], 0.91)
    assert result["metrics"]["loss"]["best_run_id"] == filled[1]
    text = ok(["summary"], store).stdout
    assert "runs: 3" in text
    assert "corrupt lines skipped: 1" in text
    assert "accuracy" in text
    assert filled[1] in text


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["best", "f1"], "'f1'"),
        (["best", "f1", "--json"], "'f1'"),
        (["top", "rmse"], "'rmse'"),
        (["best", "throughput"], "unknown metric 'throughput'"),
        (["top", "throughput", "--json"], "unknown metric"),
        (["best", "throughput", "--max"], "'throughput'"),
    ],
)
def test_unknown_metric_or_direction_exits_1(store: Path, filled: list[str], args: list[str], fragment: str) -> None:
    assert_user_error(invoke(args, store), fragment)


@pytest.mark.parametrize("args", [["best", "accuracy"], ["top", "loss", "--json"], ["show", "abc"]])
def test_empty_store_is_a_user_error(store: Path, args: list[str]) -> None:
    ExperimentTracker(store).close()
    (store / "runs.jsonl").touch()
    assert_user_error(invoke(args, store))


@pytest.mark.parametrize("command", ["runs", "best accuracy", "top loss", "summary", "show abc"])
def test_missing_store_is_a_user_error(tmp_path: Path, command: str) -> None:
    assert_user_error(invoke(command.split(), tmp_path / "nowhere"), "nowhere")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(
    "args",
    [["best"], ["top"], ["show"], ["top", "loss", "-k", "0"], ["top", "loss", "-k", "many"], ["frobnicate"],
     ["runs", "--bogus"], ["summary", "extra"]],
)
def test_usage_errors_exit_2(store: Path, filled: list[str], args: list[str]) -> None:
    assert_usage_error(invoke(args, store))


@pytest.mark.parametrize("command", [[], *[[name] for name in COMMANDS]], ids=["group", *COMMANDS])
def test_every_command_has_help(command: list[str]) -> None:
    result = invoke([*command, "--help"])
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ")
    if not command:
        for name in COMMANDS:
            assert name in result.stdout


@pytest.mark.parametrize("command", ["runs", "show", "best", "top", "summary"])
def test_every_query_command_has_json(command: str) -> None:
    assert "--json" in invoke([command, "--help"]).stdout


# -- the installed script and python -m ---------------------------------------------------------


def run(argv: list[str], store: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EXPTRACK_STORE": str(store)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=HANG_GUARD, check=False)


def test_installed_console_script(store: Path) -> None:
    script = shutil.which("exptrack")
    assert script is not None, "the exptrack console script is not installed (pip install -e .)"
    logged = run([script, "log", "-p", "model=rf", "-m", "accuracy=0.75"], store)
    assert logged.returncode == 0, logged.stderr
    run_id = logged.stdout.strip()
    assert RUN_ID.match(run_id)
    best = run([script, "best", "accuracy", "--json"], store)
    assert best.returncode == 0, best.stderr
    assert json.loads(best.stdout)["run_id"] == run_id
    missing = run([script, "show", "nope"], store)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr.count("\n") == 1
    assert "Traceback" not in missing.stderr
    assert run([script, "best"], store).returncode == 2


def test_python_dash_m(store: Path) -> None:
    logged = run([sys.executable, "-m", "exptrack", "log", "-m", "loss=0.5"], store)
    assert logged.returncode == 0, logged.stderr
    summary = run([sys.executable, "-m", "exptrack", "summary", "--json"], store)
    assert summary.returncode == 0, summary.stderr
    result = json.loads(summary.stdout)
    assert result["total_runs"] == 1
    assert result["metrics"]["loss"]["best_run_id"] == logged.stdout.strip()


# -- --store before or after the command ----------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["best", "accuracy"], ["top", "accuracy", "-k", "2"], ["runs"], ["summary"], ["check"], ["export"]],
    ids=lambda args: args[0],
)
def test_store_is_accepted_after_the_command_name(filled: list[str], store: Path, tmp_path: Path,
                                                  args: list[str]) -> None:
    elsewhere = tmp_path / "elsewhere"  # the group's default store does not exist
    before = CliRunner().invoke(cli, ["--store", str(store), *args])
    after = CliRunner().invoke(cli, ["--store", str(elsewhere), *args, "--store", str(store)])
    assert before.exit_code == 0, before.output
    assert after.exit_code == 0, after.output
    assert after.stdout == before.stdout


def test_store_after_the_command_with_the_installed_script(filled: list[str], store: Path, tmp_path: Path) -> None:
    script = shutil.which("exptrack")
    assert script is not None, "the exptrack console script is not installed (pip install -e .)"
    env = {k: v for k, v in os.environ.items() if k != "EXPTRACK_STORE"}
    done = subprocess.run([script, "best", "accuracy", "--store", str(store)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=HANG_GUARD, check=False)
    assert done.returncode == 0, done.stderr
    with ExperimentTracker(store) as tracker:
        assert tracker.best_run("accuracy").run_id in done.stdout
    logged = subprocess.run([script, "log", "-m", "accuracy=0.5", "--store", str(tmp_path / "new")], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=HANG_GUARD, check=False)
    assert logged.returncode == 0, logged.stderr
    assert (tmp_path / "new" / "runs.jsonl").exists()
    assert not (tmp_path / "experiments").exists()
