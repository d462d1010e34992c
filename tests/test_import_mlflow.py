"""``exptrack import mlflow``: real MLflow stores (file and SQLite, written by mlflow-skinny) come
across run by run, exactly as MLflow's own client reads them, and only once."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from exptrack import ExperimentTracker
from exptrack.cli import cli
from exptrack.errors import ImportSourceError
from exptrack.importers._common import recover_param
from exptrack.importers.mlflow import import_mlflow

pytest.importorskip("mlflow", reason="the test extra installs mlflow-skinny")

SCRIPT = Path(__file__).parent / "mlflow_source.py"
HANG_GUARD = 300.0  # seconds; only stops a hung MLflow subprocess
DBL_MAX = 1.7976931348623157e308
STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}


def mlflow_script(*args: str, cwd: Path) -> Any:
    result = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True,
                            timeout=HANG_GUARD, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout) if result.stdout.strip() else None


class Source:
    """A built MLflow store: its URI (relative to ``cwd``), the running run's id, and its dump."""

    def __init__(self, kind: str, cwd: Path) -> None:
        self.kind = kind
        self.cwd = cwd
        self.uri = "file:./mlruns" if kind == "files" else "sqlite:///mlflow.db"
        self.running = mlflow_script("build", self.uri, cwd=cwd)["running"]

    @property
    def path(self) -> Path:
        return self.cwd / ("mlruns" if self.kind == "files" else "mlflow.db")

    @property
    def arg(self) -> str:
        """What a user passes: the directory path, or the SQLite URI with an absolute path."""
        return str(self.path) if self.kind == "files" else f"sqlite:///{self.path}"

    def dump(self) -> list[dict[str, Any]]:
        return mlflow_script("dump", self.uri, cwd=self.cwd)  # type: ignore[no-any-return]

    def copy(self, dest: Path) -> Source:
        clone = object.__new__(Source)
        clone.kind, clone.cwd, clone.uri, clone.running = self.kind, dest, self.uri, self.running
        dest.mkdir(parents=True)
        if self.kind == "files":
            shutil.copytree(self.path, clone.path)
        else:
            shutil.copy2(self.path, clone.path)
        return clone


@pytest.fixture(scope="module", params=["files", "sqlite"])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Source:
    return Source(request.param, tmp_path_factory.mktemp(f"mlflow-{request.param}"))


@pytest.fixture(scope="module")
def dumped(built: Source) -> list[dict[str, Any]]:
    return built.dump()


@pytest.fixture
def source(built: Source, tmp_path: Path) -> Source:
    """A private copy of the built store, for tests that change it."""
    return built.copy(tmp_path / "source")


def field(run: Any, name: str) -> Any:
    value = getattr(run, name, None)
    return value if value is not None else run.get(name)


def expected_value(value: float, kind: str) -> float:
    # MLflow's SQL store clamps ±Infinity to ±DBL_MAX; the importer gives back what was logged
    if kind == "sqlite" and abs(value) == DBL_MAX:
        return math.copysign(math.inf, value)
    return value


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def imported_expected(dump: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        r["run_id"]: r for r in dump
        if not r["experiment_deleted"] and r["lifecycle_stage"] == "active" and r["status"] in STATUS
    }


# -- the rule for params -------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("8", 8), ("-3", -3), ("0", 0), ("0.05", 0.05), ("1e-05", 1e-05), ("1.0", 1.0), ("True", True),
    ("False", False), ("None", None), ("[64, 32]", [64, 32]),
    ("{'a': 1, 'b': [True, None]}", {"a": 1, "b": [True, None]}),
    ("[]", []), ("rf", "rf"), ("007", "007"), ("1E-5", "1E-5"), ("-0", "-0"), ("+1", "+1"), ("1_000", "1_000"),
    (".5", ".5"), ("nan", "nan"), ("inf", "inf"), ("-inf", "-inf"), ("1e999", "1e999"), ("(1, 2)", "(1, 2)"),
    ("{1, 2}", "{1, 2}"), ("[64,32]", "[64,32]"), ("true", "true"), ("", ""), ("2" * 30, "2" * 30),
    ("[1, [2, [3]]]", [1, [2, [3]]]), ("['a', \"b'\"]", ["a", "b'"]), ("[__import__('os')]", "[__import__('os')]"),
    ("[" * 200 + "]" * 200, "[" * 200 + "]" * 200), (" 8", " 8"), ("8 ", "8 "),
])
def test_params_are_typed_back_only_when_str_of_the_value_is_the_stored_text(text: str, value: object) -> None:
    recovered = recover_param(text)
    assert recovered == value
    assert type(recovered) is type(value)
    assert str(recovered) == text or (recovered is None and text == "None")


# -- whole stores ----------------------------------------------------------------------------------


def test_every_run_arrives_as_mlflow_reads_it(built: Source, dumped: list[dict[str, Any]],
                                              tracker: ExperimentTracker) -> None:
    result = import_mlflow(tracker, built.arg)
    expected = imported_expected(dumped)
    assert len(expected) == 5
    assert sorted(result.imported) == sorted(expected)
    assert sorted(result.skipped) == sorted([(built.running, "unfinished (RUNNING)"),
                                             *[(r["run_id"], "deleted in MLflow") for r in dumped
                                               if r["lifecycle_stage"] == "deleted" and not r["experiment_deleted"]]])
    assert result.experiments == ("Default", "digits", "wine")
    runs = {run.run_id: run for run in tracker.runs()}
    assert sorted(runs) == sorted(expected)
    for run_id, mine in runs.items():
        theirs = expected[run_id]
        assert field(mine, "experiment") == theirs["experiment"]
        assert field(mine, "name") == theirs["name"]
        assert mine.status == STATUS[theirs["status"]]
        start = dt.datetime.fromtimestamp(theirs["start_time"] / 1000, dt.timezone.utc)
        assert dt.datetime.fromisoformat(mine.timestamp.replace("Z", "+00:00")) == start
        # every param reads back as exactly MLflow's text
        assert {k: str(v) for k, v in mine.params.items()} == theirs["params"]
        assert set(mine.metrics) == set(theirs["metrics"])
        for name, value in theirs["metrics"].items():
            assert same(mine.metrics[name], expected_value(value, built.kind)), name
        for name, logged in theirs["history"].items():
            points = sorted(logged, key=lambda p: (p[0], p[2]))  # exptrack keeps a history in step order
            mine_points = tracker.history(run_id, name)
            assert [p["step"] for p in mine_points] == [step for step, _, _ in points]
            for point, (_, value, stamp) in zip(mine_points, points):
                assert same(point["value"], expected_value(value, built.kind))
                assert point["time"] == pytest.approx(stamp / 1000)
        user_tags = {k: v for k, v in theirs["tags"].items() if not k.startswith("mlflow.")}
        assert sorted(mine.tags) == sorted(f"{k}={v}" for k, v in user_tags.items())
        assert mine.get("note") == theirs["tags"].get("mlflow.note.content")
        src = mine["source"]
        assert (src["system"], src["run_id"], src["experiment"]) == ("mlflow", run_id, theirs["experiment"])
        assert src.get("tags", {}) == {k: v for k, v in theirs["tags"].items() if k.startswith("mlflow.")}


def test_param_types_come_back(built: Source, tracker: ExperimentTracker) -> None:
    import_mlflow(tracker, built.arg)
    params = next(run for run in tracker.runs() if field(run, "name") == "rf-1").params
    assert params == {
        "max_depth": 8, "lr": 0.05, "model": "rf", "use_scaler": True, "class_weight": None, "layers": [64, 32],
        "opt": {"name": "adam", "betas": [0.9, 0.999]}, "zip": "007", "tiny": 1e-05, "neg": -3,
        "big": str(2**70), "sci": "1E-5", "text": "hello, world", "tuple": "(1, 2)", "nan": "nan",
    }


def test_importing_again_adds_nothing(built: Source, tracker: ExperimentTracker, store: Path) -> None:
    first = import_mlflow(tracker, built.arg)
    before = (store / "runs.jsonl").read_bytes()
    again = import_mlflow(tracker, built.arg)
    assert again.imported == ()
    assert sorted(again.existing) == sorted(first.imported)
    assert (store / "runs.jsonl").read_bytes() == before


def test_a_run_still_running_is_imported_once_it_has_ended(source: Source, tracker: ExperimentTracker) -> None:
    first = import_mlflow(tracker, source.arg)
    assert source.running not in first.imported
    mlflow_script("finish", source.uri, source.running, cwd=source.cwd)
    second = import_mlflow(tracker, source.arg)
    assert second.imported == (source.running,)
    assert tracker.get_run(source.running).status == "finished"
    assert import_mlflow(tracker, source.arg).imported == ()


def tree_digest(path: Path) -> dict[str, str]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_the_source_is_only_read(source: Source, tracker: ExperimentTracker) -> None:
    before = tree_digest(source.path)
    listing = sorted(os.listdir(source.cwd))
    import_mlflow(tracker, source.arg)
    assert tree_digest(source.path) == before
    assert sorted(os.listdir(source.cwd)) == listing  # no -journal / -wal beside the database


def test_experiment_option_puts_every_run_in_one(built: Source, tracker: ExperimentTracker) -> None:
    result = import_mlflow(tracker, built.arg, experiment="from-mlflow")
    assert result.experiments == ("from-mlflow",)
    assert {field(run, "experiment") for run in tracker.runs()} == {"from-mlflow"}
    assert {run["source"]["experiment"] for run in tracker.runs()} == {"Default", "digits", "wine"}


def test_sql_sees_imported_runs_with_their_experiments(built: Source, dumped: list[dict[str, Any]],
                                                      tracker: ExperimentTracker) -> None:
    pytest.importorskip("duckdb")
    import_mlflow(tracker, built.arg)
    rows = tracker.sql("SELECT experiment, count(*) FROM runs GROUP BY 1 ORDER BY 1")
    counts: dict[str, int] = {}
    for run in imported_expected(dumped).values():
        counts[run["experiment"]] = counts.get(run["experiment"], 0) + 1
    assert rows == sorted(counts.items())


# -- damaged and wrong sources -----------------------------------------------------------------------


def test_an_unreadable_metric_point_is_a_warning(tmp_path: Path, built: Source, tracker: ExperimentTracker) -> None:
    copy = built.copy(tmp_path / "damaged")
    if built.kind == "files":
        loss = next(copy.path.rglob("metrics/loss"))
        loss.write_text(loss.read_text() + "not a metric line\n")
    else:
        import sqlite3

        db = sqlite3.connect(copy.path)
        db.execute("UPDATE metrics SET value = 'garbage' WHERE key = 'loss' AND step = 1 "
                   "AND run_uuid = (SELECT run_uuid FROM runs WHERE name = 'rf-1')")
        db.commit()
        db.close()
    result = import_mlflow(tracker, copy.arg)
    assert len(result.imported) == 5
    assert len(result.warnings) == 1
    assert "loss" in result.warnings[0]


@pytest.mark.parametrize("make", [
    lambda tmp: str(tmp / "missing"),
    lambda tmp: f"sqlite:///{tmp / 'missing.db'}",
    lambda tmp: str(_write(tmp / "notes.txt", b"hello")),
    lambda tmp: str((tmp / "empty").mkdir() or tmp / "empty"),
    lambda tmp: f"sqlite:///{_write(tmp / 'other.db', _sqlite_bytes(tmp))}",
    lambda tmp: "sqlite:/relative.db",
])
def test_a_wrong_source_is_an_import_source_error(make: Callable[[Path], str], tmp_path: Path,
                                                  tracker: ExperimentTracker) -> None:
    with pytest.raises(ImportSourceError, match=r"^cannot import "):
        import_mlflow(tracker, make(tmp_path))
    assert not tracker.runs_path.exists() or tracker.runs_path.stat().st_size == 0
    assert not (tmp_path / "missing.db").exists()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _sqlite_bytes(tmp: Path) -> bytes:
    import sqlite3

    db_path = tmp / "scratch.db"
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    return db_path.read_bytes()


# -- the command line --------------------------------------------------------------------------------


def test_cli_imports_and_reports(built: Source, store: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["import", "mlflow", built.arg, "--store", str(store)])  # --store after the name
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"imported 5 run(s) from {built.arg} into experiment(s) Default, digits, wine")
    assert "1 unfinished (RUNNING)" in result.stdout
    again = runner.invoke(cli, ["--store", str(store), "import", "mlflow", built.arg, "--json"])
    assert again.exit_code == 0
    report = json.loads(again.stdout)
    assert report["imported"] == []
    assert len(report["existing"]) == 5


def test_cli_wrong_source_exits_1_with_one_line(tmp_path: Path, store: Path) -> None:
    result = CliRunner().invoke(cli, ["--store", str(store), "import", "mlflow", str(tmp_path / "nope")])
    assert result.exit_code == 1
    expected = f"Error: cannot import {tmp_path / 'nope'}: no such file or directory"
    assert result.stderr.strip().splitlines() == [expected]


def test_installed_script_imports(built: Source, store: Path) -> None:
    result = subprocess.run(["exptrack", "--store", str(store), "import", "mlflow", built.arg, "--json"],
                            capture_output=True, text=True, timeout=HANG_GUARD, check=False)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["imported"]) == 5
