"""Export: ``exptrack export`` as CSV / JSON Lines / Parquet, ``runs --json`` and ``to_pandas``."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import pickle
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from exptrack import ExperimentTracker, ExptrackError, Run
from exptrack.cli import cli
from exptrack.cli import export as export_cli
from exptrack.query.export import FIXED_COLUMNS, MissingDependencyError, export_runs

HANG_GUARD = 120.0  # seconds; a subprocess that takes longer is hung, not slow


def invoke(store: Path, args: Sequence[str]) -> Result:
    return CliRunner().invoke(cli, ["--store", str(store), *args], catch_exceptions=False)


def ok(store: Path, args: Sequence[str]) -> Result:
    result = invoke(store, args)
    assert result.exit_code == 0, result.output
    return result


def assert_user_error(result: Result, *fragments: str, one_line: bool = True) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    message = result.stderr.strip()
    assert message.startswith("Error: "), message
    assert not one_line or "\n" not in message
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in message


@pytest.fixture
def runs(store: Path) -> list[Run]:
    """Four runs with heterogeneous params, missing and non-finite metrics, tags and statuses."""
    tracker = ExperimentTracker(store, durable=False)
    logged = [
        tracker.log_run(params={"model": "rf", "max_depth": 8, "opt": {"name": "adam", "lr": 0.1}},
                        metrics={"accuracy": 0.84, "loss": 0.4}, tags=["base", "team=a"]),
        tracker.log_run(params={"model": "svm", "C": 1.5, "layers": [64, 32], "flag": True},
                        metrics={"accuracy": 0.1 + 0.2, "loss": math.nan}, tags={"team": "b"}),
        tracker.log_run(params={"model": "rf", "max_depth": None, "big": 2**64 - 1},
                        metrics={"loss": math.inf, "f1": -math.inf}, status="failed"),
        tracker.log_run(params={"model": "knn, \"quoted\"\nline"}, metrics={"accuracy": 0.91}),
    ]
    tracker.close()
    return logged


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


# -- CSV -------------------------------------------------------------------------------------------


def test_csv_export_is_flat_with_one_row_per_run_in_log_order(store: Path, runs: list[Run]) -> None:
    result = ok(store, ["export"])
    header = next(csv.reader(io.StringIO(result.stdout)))
    assert header[: len(FIXED_COLUMNS)] == list(FIXED_COLUMNS)
    first = len(FIXED_COLUMNS)
    assert header[first : first + 4] == ["metrics.accuracy", "metrics.loss", "metrics.f1", "params.model"]
    assert {"params.opt.name", "params.opt.lr", "params.layers", "params.flag", "params.big"} <= set(header)
    rows = read_csv(result.stdout)
    assert [row["run_id"] for row in rows] == [run.run_id for run in runs]
    assert json.loads(rows[0]["tags"]) == ["base", "team=a"]  # a JSON list: a comma in a tag stays in it
    assert rows[0]["params.opt.name"] == "adam"  # nested params flatten to the names filters use
    assert rows[1]["params.layers"] == "[64,32]"
    assert rows[1]["params.flag"] == "true"
    assert rows[2]["status"] == "failed"
    assert rows[2]["params.max_depth"] == ""  # JSON null and absent both leave the cell empty
    assert rows[2]["params.big"] == str(2**64 - 1)
    assert rows[3]["params.model"] == "knn, \"quoted\"\nline"
    assert rows[2]["metrics.accuracy"] == ""


def test_csv_floats_read_back_exactly_and_nonfinite_are_spelled(store: Path, runs: list[Run]) -> None:
    rows = read_csv(ok(store, ["export", "--format", "csv"]).stdout)
    assert float(rows[1]["metrics.accuracy"]) == 0.1 + 0.2
    assert rows[1]["metrics.loss"] == "NaN"
    assert rows[2]["metrics.loss"] == "Infinity"
    assert rows[2]["metrics.f1"] == "-Infinity"


def test_export_where_keeps_only_matching_runs(store: Path, runs: list[Run]) -> None:
    rows = read_csv(ok(store, ["export", "--where", "params.model = 'rf'"]).stdout)
    assert [row["run_id"] for row in rows] == [runs[0].run_id, runs[2].run_id]
    lines = ok(store, ["export", "-f", "jsonl", "-w", "metrics.accuracy > 0.5"]).stdout.splitlines()
    assert [json.loads(line)["run_id"] for line in lines] == [runs[0].run_id, runs[3].run_id]


def test_export_of_a_store_without_runs_is_just_the_header(store: Path) -> None:
    ExperimentTracker(store).close()
    (store / "runs.jsonl").touch()
    assert ok(store, ["export"]).stdout == ",".join(FIXED_COLUMNS) + "\n"
    assert ok(store, ["export", "-f", "jsonl"]).stdout == ""


def test_second_pass_ignores_runs_appended_during_the_export(store: Path, runs: list[Run]) -> None:
    tracker = ExperimentTracker(store, durable=False)
    calls = 0

    def source() -> Iterator[Run]:
        nonlocal calls
        calls += 1
        if calls == 2:  # between the column pass and the writing pass
            tracker.log_run(params={"late": 1}, metrics={"new_metric": 1.0})
        return tracker.runs()

    out = io.BytesIO()
    assert export_runs(source, "csv", out) == len(runs)
    rows = read_csv(out.getvalue().decode())
    assert len(rows) == len(runs)
    assert "metrics.new_metric" not in rows[0]
    tracker.close()


# -- JSON ------------------------------------------------------------------------------------------


def test_jsonl_export_holds_the_records_as_runs_json_prints_them(store: Path, runs: list[Run]) -> None:
    lines = ok(store, ["export", "--format", "jsonl"]).stdout.splitlines()
    listed = json.loads(ok(store, ["runs", "--json"]).stdout)
    assert [json.loads(line) for line in lines] == listed
    assert listed[1]["metrics"]["loss"] == "NaN"
    assert listed[1]["params"]["layers"] == [64, 32]


def test_runs_json_prints_a_json_list_of_every_record(store: Path, runs: list[Run]) -> None:
    listed = json.loads(ok(store, ["runs", "--json"]).stdout)
    assert isinstance(listed, list)
    assert [record["run_id"] for record in listed] == [run.run_id for run in runs]
    assert listed[0]["params"]["opt"] == {"name": "adam", "lr": 0.1}
    assert listed[2]["metrics"] == {"loss": "Infinity", "f1": "-Infinity"}


# -- files, formats and errors -----------------------------------------------------------------------


def test_output_file_receives_the_export_and_stdout_stays_empty(store: Path, runs: list[Run], tmp_path: Path) -> None:
    target = tmp_path / "out" / "runs.csv"
    target.parent.mkdir()
    result = ok(store, ["export", "-o", str(target)])
    assert result.stdout == ""
    assert len(read_csv(target.read_text(encoding="utf-8"))) == len(runs)
    assert sorted(p.name for p in target.parent.iterdir()) == ["runs.csv"]  # no temporary left


@pytest.mark.parametrize(("name", "check"), [("runs.jsonl", "jsonl"), ("runs.csv", "csv"), ("runs.txt", "csv")])
def test_format_follows_the_output_suffix(store: Path, runs: list[Run], tmp_path: Path, name: str,
                                          check: str) -> None:
    target = tmp_path / name
    ok(store, ["export", "-o", str(target)])
    first = target.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("{") if check == "jsonl" else first.startswith("run_id,")


def test_dash_means_stdout(store: Path, runs: list[Run]) -> None:
    assert len(read_csv(ok(store, ["export", "-o", "-"]).stdout)) == len(runs)


def test_unknown_format_is_a_usage_error(store: Path, runs: list[Run]) -> None:
    result = invoke(store, ["export", "--format", "xlsx"])
    assert result.exit_code == 2
    assert "Usage:" in result.stderr


def test_bad_where_exits_1_before_creating_the_file(store: Path, runs: list[Run], tmp_path: Path) -> None:
    target = tmp_path / "runs.csv"
    result = invoke(store, ["export", "-w", "params.model = ", "-o", str(target)])
    assert_user_error(result, "expected a value", one_line=False)  # the message points at the error
    assert not target.exists()


def test_export_without_a_store_exits_1(tmp_path: Path) -> None:
    assert_user_error(invoke(tmp_path / "nowhere", ["export"]), "no exptrack store")


def test_export_has_help(store: Path) -> None:
    result = CliRunner().invoke(cli, ["export", "--help"])
    assert result.exit_code == 0
    assert "--format" in result.output
    assert "--where" in result.output


# -- Parquet ---------------------------------------------------------------------------------------


def test_parquet_export_reads_back_with_types(store: Path, runs: list[Run], tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "runs.parquet"
    ok(store, ["export", "-o", str(target)])
    table = pq.read_table(target)
    assert table.column_names[: len(FIXED_COLUMNS)] == list(FIXED_COLUMNS)
    rows = table.to_pylist()
    assert [row["run_id"] for row in rows] == [run.run_id for run in runs]
    assert str(table.schema.field("metrics.accuracy").type) == "double"
    assert math.isnan(rows[1]["metrics.loss"])
    assert rows[2]["metrics.loss"] == math.inf
    assert rows[0]["tags"] == ["base", "team=a"]
    assert rows[0]["params.opt.lr"] == 0.1
    assert rows[1]["params.layers"] == [64, 32]  # a list of ints is a list<int64> column
    assert str(table.schema.field("params.layers").type).startswith("list<")
    assert str(table.schema.field("params.layers").type.value_type) == "int64"
    assert str(table.schema.field("params.C").type) == "double"
    assert str(table.schema.field("timestamp").type) == "timestamp[us, tz=UTC]"
    assert rows[0]["timestamp"] == dt.datetime.fromisoformat(runs[0].timestamp.replace("Z", "+00:00"))


def test_parquet_to_stdout_is_a_complete_file(store: Path, runs: list[Run]) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    result = CliRunner().invoke(cli, ["--store", str(store), "export", "-f", "parquet"], catch_exceptions=False)
    assert result.exit_code == 0
    assert pq.read_table(io.BytesIO(result.stdout_bytes)).num_rows == len(runs)


def test_parquet_without_pyarrow_exits_1_and_keeps_the_old_file(
    store: Path, runs: list[Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` raise ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    target = tmp_path / "runs.parquet"
    target.write_bytes(b"previous export")
    assert_user_error(invoke(store, ["export", "-f", "parquet", "-o", str(target)]), "pyarrow", "exptrack[parquet]")
    assert target.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".runs")) == []


# -- pandas ----------------------------------------------------------------------------------------


def test_to_pandas_has_the_csv_columns_and_float_metrics(store: Path, runs: list[Run]) -> None:
    pytest.importorskip("pandas")
    tracker = ExperimentTracker(store)
    frame = tracker.to_pandas()
    header = next(csv.reader(io.StringIO(ok(store, ["export"]).stdout)))
    assert list(frame.columns) == header
    assert list(frame["run_id"]) == [run.run_id for run in runs]
    assert str(frame["metrics.accuracy"].dtype) == "float64"
    assert math.isnan(frame["metrics.accuracy"][2])  # absent
    assert math.isnan(frame["metrics.loss"][1])  # stored NaN
    assert frame["tags"][0] == ["base", "team=a"]
    assert frame["params.opt.name"][0] == "adam"
    filtered = tracker.to_pandas(where="params.model = 'rf'")
    assert list(filtered["run_id"]) == [runs[0].run_id, runs[2].run_id]
    tracker.close()


def test_to_pandas_without_pandas_raises_a_clear_import_error(
    store: Path, runs: list[Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    tracker = ExperimentTracker(store)
    with pytest.raises(ImportError, match=r"pip install 'exptrack\[pandas\]'") as caught:
        tracker.to_pandas()
    assert isinstance(caught.value, ExptrackError)
    tracker.close()


def test_missing_dependency_error_survives_pickling() -> None:
    error = MissingDependencyError("pyarrow", "Parquet export", "parquet")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - bytes made by this test
    assert type(copy) is MissingDependencyError
    assert (copy.package, copy.extra, str(copy)) == ("pyarrow", "parquet", str(error))


# -- progress --------------------------------------------------------------------------------------


def test_no_progress_output_when_not_on_a_terminal(store: Path, runs: list[Run], tmp_path: Path) -> None:
    result = ok(store, ["export", "-o", str(tmp_path / "runs.csv")])
    assert result.stderr == ""


def test_progress_is_reported_on_a_terminal(
    store: Path, runs: list[Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_cli, "_isatty", lambda stream: True)
    result = ok(store, ["export", "-o", str(tmp_path / "runs.csv")])
    assert "exporting" in result.stderr
    assert f"exported {len(runs)} run(s)" in result.stderr


def test_reader_closing_the_pipe_early_is_not_an_error(store: Path) -> None:
    tracker = ExperimentTracker(store, durable=False)
    tracker.log_runs([{"params": {"i": i, "pad": "x" * 200}, "metrics": {"m": float(i)}} for i in range(2000)])
    tracker.close()
    with subprocess.Popen(
        [sys.executable, "-m", "exptrack", "--store", str(store), "export"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stderr is not None
            assert process.stdout.readline().startswith(b"run_id,")
            process.stdout.close()  # like `| head -1`
            stderr = process.stderr.read()
            process.wait(timeout=HANG_GUARD)
        finally:
            if process.poll() is None:
                process.kill()
    assert b"Error" not in stderr
    assert b"Traceback" not in stderr
