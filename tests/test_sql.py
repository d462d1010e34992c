"""``tracker.sql`` and ``exptrack sql``: a typed ``runs`` view on DuckDB that agrees with exptrack."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from exptrack import ExperimentTracker, QueryError
from exptrack.cli import cli

pytest.importorskip("duckdb")

HANG_GUARD = 120.0  # seconds; only stops a hung interpreter


@pytest.fixture
def filled(tracker: ExperimentTracker) -> ExperimentTracker:
    tracker.log_run({"model": "rf", "max_depth": 8, "lr": 0.1}, {"accuracy": 0.84, "loss": 0.5}, ["baseline"])
    tracker.log_run({"model": "rf", "max_depth": 12, "lr": 1}, {"accuracy": 0.88, "loss": math.nan})
    tracker.log_run({"model": "knn", "max_depth": None, "k": 5}, {"accuracy": 0.79, "loss": math.inf}, ["a", "b"])
    tracker.log_run({"model": "knn", "k": 9}, {"accuracy": 0.81}, status="failed")
    return tracker


def column_types(tracker: ExperimentTracker) -> dict[str, str]:
    return {row[0]: row[1] for row in tracker.sql("DESCRIBE runs")}


def test_runs_view_has_the_documented_typed_columns(filled: ExperimentTracker) -> None:
    types = column_types(filled)
    assert list(types) == ["run_id", "name", "experiment", "status", "timestamp", "params", "metrics", "tags"]
    assert types["timestamp"] == "TIMESTAMP"
    assert types["tags"] == "VARCHAR[]"
    assert types["metrics"] == "STRUCT(accuracy DOUBLE, loss DOUBLE)"
    # ints and floats mixed -> DOUBLE; int with None -> BIGINT; strings -> VARCHAR
    assert types["params"] == "STRUCT(model VARCHAR, max_depth BIGINT, lr DOUBLE, k BIGINT)"


def test_every_run_comes_back_with_its_values(filled: ExperimentTracker) -> None:
    stored = {run.run_id: run for run in filled.runs()}
    rows = filled.sql("SELECT run_id, status, timestamp, params, metrics, tags FROM runs")
    assert len(rows) == len(stored) == 4
    for run_id, status, timestamp, params, metrics, tags in rows:
        run = stored[run_id]
        assert status == run.status
        assert timestamp == dt.datetime.fromisoformat(run.timestamp.replace("Z", "+00:00")).replace(tzinfo=None)
        assert {k: v for k, v in params.items() if v is not None} == {
            k: v for k, v in run.params.items() if v is not None
        }
        for name, value in run.metrics.items():
            assert metrics[name] == value or (math.isnan(value) and math.isnan(metrics[name]))
        assert tags == list(run.tags)


def test_nonfinite_metrics_stay_nan_and_infinity_not_null(filled: ExperimentTracker) -> None:
    rows = filled.sql("SELECT metrics.loss FROM runs WHERE params.k = 5 OR params.max_depth = 12 ORDER BY 1")
    values = [row[0] for row in rows]
    assert math.isinf(values[0]) or math.isinf(values[1])
    assert any(math.isnan(v) for v in values)
    # a metric a run never logged is NULL, not NaN
    assert filled.sql("SELECT count(*) FROM runs WHERE metrics.loss IS NULL") == [(1,)]


def test_rows_are_tuples_that_also_answer_by_column_name(filled: ExperimentTracker) -> None:
    rows = filled.sql("SELECT params.model AS model, count(*) AS n FROM runs GROUP BY 1 ORDER BY 1")
    assert rows == [("knn", 2), ("rf", 2)]
    assert rows.columns == ("model", "n")
    assert rows[0]["model"] == "knn"
    assert rows[0][1] == rows[0]["n"] == 2
    assert dict(rows[1]) == {"model": "rf", "n": 2}
    model, count = rows[1]
    assert (model, count) == ("rf", 2)
    with pytest.raises(KeyError, match="no column 'nope'"):
        rows[0]["nope"]


def test_sql_best_and_mean_agree_with_exptracks_own_answers(filled: ExperimentTracker) -> None:
    best = filled.best_run("accuracy", "max")
    rows = filled.sql("SELECT run_id FROM runs ORDER BY metrics.accuracy DESC LIMIT 1")
    assert rows[0]["run_id"] == best.run_id
    finished = [r.metrics["accuracy"] for r in filled.runs() if r.status == "finished"]
    mean = filled.sql("SELECT avg(metrics.accuracy) FROM runs WHERE status = 'finished'")[0][0]
    assert mean == pytest.approx(sum(finished) / len(finished))


def test_mixed_nested_and_case_clashing_params_get_a_safe_type(tracker: ExperimentTracker) -> None:
    tracker.log_run({"depth": 8, "layers": [64, 32], "opt": {"name": "adam"}, "lr": 0.1, "flag": True})
    tracker.log_run({"depth": "auto", "LR": 3, "flag": False, "a.b": "dotted"})
    types = column_types(tracker)
    assert types["params"] == (
        'STRUCT("depth" VARCHAR, layers JSON, opt JSON, lr DOUBLE, flag BOOLEAN, "LR#2" BIGINT, "a.b" VARCHAR)'
        .replace('"depth"', "depth")
    )
    rows = tracker.sql(
        "SELECT params.depth, params.layers->>'$[0]', params.opt->>'$.name', params.\"a.b\" FROM runs ORDER BY 1"
    )
    assert rows == [("8", "64", "adam", None), ("auto", None, None, "dotted")]
    assert tracker.sql('SELECT params."LR#2" FROM runs WHERE params.lr IS NULL') == [(3,)]


def test_an_empty_store_still_has_a_runs_view(tracker: ExperimentTracker) -> None:
    assert tracker.sql("SELECT count(*) FROM runs") == [(0,)]


def test_a_bad_query_is_a_query_error_with_duckdbs_reason(filled: ExperimentTracker) -> None:
    with pytest.raises(QueryError, match=r"^SQL: Parser Error"):
        filled.sql("SELEC 1")
    with pytest.raises(QueryError, match="nope"):
        filled.sql("SELECT nope FROM runs")


def test_a_timestamp_with_an_offset_is_stored_in_utc(tracker: ExperimentTracker) -> None:
    from exptrack.query.sql import _utc_naive

    assert _utc_naive("2026-01-01T02:00:00+02:00") == "2026-01-01T00:00:00"
    assert _utc_naive("2026-01-01T00:00:00.5Z") == "2026-01-01T00:00:00.5"
    assert _utc_naive("yesterday") is None


# -- the command line ------------------------------------------------------------------------------


def invoke(store: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--store", str(store), *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_prints_an_aligned_table(filled: ExperimentTracker, store: Path) -> None:
    code, out, _ = invoke(store, "sql", "SELECT params.model AS model, max(metrics.accuracy) AS best "
                                        "FROM runs GROUP BY 1 ORDER BY 1")
    assert code == 0
    assert out.splitlines() == ["model  best", "knn    0.81", "rf     0.88"]


def test_cli_json_and_csv_are_exact(filled: ExperimentTracker, store: Path) -> None:
    query = "SELECT run_id, timestamp, metrics.loss AS loss, tags FROM runs ORDER BY run_id"
    code, out, _ = invoke(store, "sql", query, "--json")
    assert code == 0
    records = {r["run_id"]: r for r in json.loads(out)}
    runs = list(filled.runs())
    assert sorted(records) == sorted(r.run_id for r in runs)
    assert [records[r.run_id]["loss"] for r in runs] == [0.5, "NaN", "Infinity", None]
    assert [records[r.run_id]["timestamp"] for r in runs] == [r.timestamp[:-1] for r in runs]
    assert records[runs[2].run_id]["tags"] == ["a", "b"]
    code, out, _ = invoke(store, "sql", "SELECT metrics.accuracy AS a, tags FROM runs ORDER BY 1", "--csv")
    assert code == 0
    assert out.splitlines() == ["a,tags", "0.79,\"[\"\"a\"\",\"\"b\"\"]\"", "0.81,[]", "0.84,"
                                "\"[\"\"baseline\"\"]\"", "0.88,[]"]


def test_cli_sql_error_is_one_line_exit_1(filled: ExperimentTracker, store: Path) -> None:
    code, _, err = invoke(store, "sql", "SELECT FROM WHERE")
    assert code == 1
    assert err.startswith("Error: SQL: Parser Error")
    assert len(err.strip().splitlines()) == 1


def test_cli_control_characters_are_escaped_in_tables(tracker: ExperimentTracker, store: Path) -> None:
    tracker.log_run({"model": "\x1b[31mred"}, {"accuracy": 1.0})
    code, out, _ = invoke(store, "sql", "SELECT params.model FROM runs")
    assert code == 0
    assert "\x1b" not in out
    assert "\\x1b[31mred" in out


def test_without_duckdb_the_error_names_the_extra(filled: ExperimentTracker, store: Path) -> None:
    code = (
        "import sys; sys.modules['duckdb'] = None\n"
        "from exptrack.cli import main\n"
        f"main(['--store', {str(store)!r}, 'sql', 'SELECT 1'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD,
                            check=False)
    assert result.returncode == 1
    assert "pip install 'exptrack[sql]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_importing_exptrack_and_its_cli_does_not_load_duckdb() -> None:
    code = "import sys, exptrack, exptrack.cli; print('duckdb' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD,
                            check=True)
    assert result.stdout.strip() == "False"


def test_installed_script_answers_a_query(filled: ExperimentTracker, store: Path) -> None:
    result = subprocess.run(
        ["exptrack", "--store", str(store), "sql", "SELECT count(*) AS n FROM runs", "--json"],
        capture_output=True, text=True, timeout=HANG_GUARD, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"n": 4}]


def readme_sql_commands() -> list[list[str]]:
    """The ``exptrack sql`` commands of the README's SQL section, as argument lists."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## SQL over the store", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    text = "\n".join(line for line in block.splitlines() if not line.lstrip().startswith("#"))
    tokens = shlex.split(text)
    commands: list[list[str]] = []
    for word in tokens:
        if word == "exptrack":
            commands.append([])
        else:
            commands[-1].append(word)
    return commands


def test_readme_sql_questions_run_verbatim_and_agree(filled: ExperimentTracker, store: Path) -> None:
    commands = readme_sql_commands()
    assert len(commands) == 3
    outputs = []
    for args in commands:
        code, out, err = invoke(store, *args)
        assert code == 0, err
        outputs.append(out)
    finished = [r for r in filled.runs() if r.status == "finished"]
    mean_rf = sum(r.metrics["accuracy"] for r in finished if r.params["model"] == "rf") / 2
    assert outputs[0].splitlines()[1].split() == ["rf", "2", f"{mean_rf:.6g}"]
    best = filled.best_run("accuracy", "max")
    assert json.loads(outputs[1]) == [{"experiment": "default", "best_run": best.run_id, "accuracy": 0.88}]
    assert list(csv.reader(io.StringIO(outputs[2]))) == [
        ["tag", "runs", "failed", "best"], ["a", "1", "0", "0.79"], ["b", "1", "0", "0.79"],
        ["baseline", "1", "0", "0.84"],
    ]


def test_an_int_param_beyond_bigint_widens_the_field_not_the_query(tracker: ExperimentTracker) -> None:
    tracker.log_run({"seed": 1, "other": 2})
    tracker.log_run({"seed": 2**64 - 1, "other": 3})
    assert column_types(tracker)["params"] == "STRUCT(seed HUGEINT, other HUGEINT)"
    assert tracker.sql("SELECT max(params.seed), sum(params.other) FROM runs") == [(2**64 - 1, 5)]


def test_the_view_holds_merged_runs_and_leaves_deleted_ones_out(filled: ExperimentTracker) -> None:
    first, second, third, _ = list(filled.runs())
    filled.rename(first.run_id, "renamed-later")
    filled.set_tags(second.run_id, add=("late-tag",))
    filled.delete_runs([third.run_id])
    rows = {row["run_id"]: row for row in filled.sql("SELECT run_id, name, tags FROM runs")}
    assert sorted(rows) == sorted(r.run_id for r in filled.runs())
    assert third.run_id not in rows
    assert rows[first.run_id]["name"] == "renamed-later"
    assert "late-tag" in rows[second.run_id]["tags"]
    assert filled.sql("SELECT count(*) FROM runs WHERE name = 'renamed-later'") == [(1,)]


def test_a_tracker_opened_on_an_experiment_sees_only_its_runs(store: Path) -> None:
    with ExperimentTracker(store, durable=False, experiment="wine") as wine:
        wine.log_run({"k": 1}, {"accuracy": 0.5}, name="w1")
    with ExperimentTracker(store, durable=False, experiment="digits") as digits:
        digits.log_run({"k": 2}, {"accuracy": 0.7})
        assert digits.sql("SELECT experiment, params.k FROM runs") == [("digits", 2)]
    with ExperimentTracker(store, durable=False) as every:
        assert every.sql("SELECT experiment, name FROM runs ORDER BY experiment")[1] == ("wine", "w1")
        assert every.sql("SELECT count(*) FROM runs") == [(2,)]
