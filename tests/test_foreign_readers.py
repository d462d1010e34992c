"""``runs.jsonl`` is plain JSON Lines that DuckDB, polars, pandas and pyarrow read with numeric
metric columns, on a store with NaN, ±Infinity, missing metrics and params of mixed types, and
their best run and mean per model agree with exptrack's (finite values rank; NaN/±Inf are null)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from exptrack import ExperimentTracker

duckdb = pytest.importorskip("duckdb")
pl = pytest.importorskip("polars")
pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pj = pytest.importorskip("pyarrow.json")

MODELS = ("rf", "knn")


@pytest.fixture
def log(tracker: ExperimentTracker, store: Path) -> Path:
    # the first runs all carry a non-finite loss: a reader that samples the head still sees numbers
    tracker.log_run(params={"model": "rf", "max_depth": 8}, metrics={"loss": math.nan, "accuracy": 0.5})
    tracker.log_run(params={"model": "rf", "max_depth": "auto"}, metrics={"loss": math.inf, "accuracy": 0.7})
    tracker.log_run(params={"model": "knn", "k": 3, "max_depth": None}, metrics={"loss": -math.inf})
    tracker.log_run(params={"model": "knn", "k": "5", "max_depth": [1, 2]}, metrics={"loss": 0.75, "epochs": 3})
    tracker.log_run(params={"model": "rf", "max_depth": {"a": 1}, "lr": 0.1}, metrics={"loss": 0.125})
    tracker.log_run(params={"model": "rf", "lr": 1}, metrics={"loss": 0.1, "accuracy": 0.9}, tags=["a,b", "c"])
    tracker.log_run(params={"model": "knn", "k": 7.5}, metrics={"loss": 0.3})
    tracker.log_run(params={"model": "svm"}, metrics={"accuracy": 0.95})  # no loss at all
    tracker.log_run(params={"model": "knn", "k": 9}, metrics={"loss": 0.01}, status="failed")
    for i in range(40):  # enough rows that every reader infers from a sample, not the whole file
        tracker.log_run(params={"model": MODELS[i % 2], "k": i}, metrics={"loss": 0.2 + i / 100, "accuracy": i / 50})
    return store / "runs.jsonl"


def exptrack_answers(tracker: ExperimentTracker) -> dict[str, tuple[str, float]]:
    """Per model: the finished run with the lowest finite loss, and the mean of the finite losses."""
    answers = {}
    for model in MODELS:
        where = f"status = 'finished' and params.model = '{model}'"
        best = tracker.best_run("loss", "min", where=where)
        mean = tracker.summary(where=where)["metrics"]["loss"]["mean"]
        answers[model] = (best.run_id, mean)
    return answers


def assert_agree(got: dict[str, tuple[str, float]], tracker: ExperimentTracker) -> None:
    want = exptrack_answers(tracker)
    assert set(got) == set(want)
    for model, (run_id, mean) in want.items():
        assert got[model][0] == run_id
        assert got[model][1] == pytest.approx(mean, rel=1e-12)


def test_duckdb_read_json_auto_types_metrics_as_double(log: Path, tracker: ExperimentTracker) -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE runs AS SELECT * FROM read_json_auto(?)", [str(log)])
    described = con.execute("DESCRIBE SELECT metrics.* FROM runs").fetchall()
    types = {row[0]: row[1] for row in described}
    assert types["loss"] == "DOUBLE"
    assert types["accuracy"] == "DOUBLE"
    rows = con.execute(
        "SELECT params.model, arg_min(run_id, metrics.loss), avg(metrics.loss), max(metrics.loss) FROM runs "
        "WHERE status = 'finished' AND params.model IN ('rf', 'knn') GROUP BY 1"
    ).fetchall()
    assert_agree({model: (run_id, mean) for model, run_id, mean, _ in rows}, tracker)
    assert max(row[3] for row in rows) == 0.75
    # the nonfinite section says which null is which
    named = con.execute("SELECT nonfinite.loss FROM runs WHERE nonfinite IS NOT NULL").fetchall()
    assert [row[0] for row in named] == ["NaN", "Infinity", "-Infinity"]


def test_polars_read_ndjson_types_metrics_as_float(log: Path, tracker: ExperimentTracker) -> None:
    frame = pl.read_ndjson(log).unnest("metrics")
    assert frame.schema["loss"] == pl.Float64
    finished = frame.filter((pl.col("status") == "finished") & pl.col("loss").is_not_null())
    finished = finished.with_columns(pl.col("params").struct.field("model").alias("model"))
    best = finished.sort("loss").group_by("model", maintain_order=True).agg(
        pl.col("run_id").first(), pl.col("loss").mean()
    )
    got = {row["model"]: (row["run_id"], row["loss"]) for row in best.iter_rows(named=True)}
    got.pop("svm", None)  # no finished svm run has a loss
    assert_agree(got, tracker)


def test_pandas_read_json_lines_gives_a_float_column(log: Path, tracker: ExperimentTracker) -> None:
    frame = pd.read_json(log, lines=True, precise_float=True)
    runs = frame.join(pd.json_normalize(frame["metrics"].tolist()).add_prefix("metrics."))
    runs["model"] = [params["model"] for params in frame["params"]]
    assert runs["metrics.loss"].dtype == "float64"
    finished = runs[(runs["status"] == "finished") & runs["model"].isin(MODELS)].dropna(subset=["metrics.loss"])
    best = finished.loc[finished.groupby("model")["metrics.loss"].idxmin()]
    means = finished.groupby("model")["metrics.loss"].mean()
    assert_agree({row.model: (row.run_id, means[row.model]) for row in best.itertuples()}, tracker)


def test_pyarrow_json_reads_metrics_as_double(log: Path, tracker: ExperimentTracker) -> None:
    # params of mixed types need an explicit schema for the columns you want (pyarrow refuses a
    # column that changes type); metrics need nothing special: they are numbers or null
    schema = pa.schema([("run_id", pa.string()), ("status", pa.string()),
                        ("params", pa.struct([("model", pa.string())])),
                        ("metrics", pa.struct([("loss", pa.float64())]))])
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    table = pj.read_json(log, parse_options=options).flatten()
    assert table.schema.field("metrics.loss").type == pa.float64()
    rows = table.to_pylist()
    got: dict[str, tuple[str, float]] = {}
    for model in MODELS:
        values = [(r["metrics.loss"], r["run_id"]) for r in rows if r["params.model"] == model
                  and r["status"] == "finished" and r["metrics.loss"] is not None]
        got[model] = (min(values)[1], sum(v for v, _ in values) / len(values))
    assert_agree(got, tracker)


def test_pyarrow_infers_metric_columns_as_double_without_a_schema(tmp_path: Path) -> None:
    with ExperimentTracker(tmp_path / "plain", durable=False) as tracker:
        tracker.log_run(params={"model": "rf"}, metrics={"loss": math.nan})
        tracker.log_run(params={"model": "rf"}, metrics={"loss": 0.5})
        tracker.log_run(params={"model": "rf"}, metrics={"loss": -math.inf, "f1": 0.25})
    table = pj.read_json(tmp_path / "plain" / "runs.jsonl").flatten()
    assert table.schema.field("metrics.loss").type == pa.float64()
    assert table.column("metrics.loss").to_pylist() == [None, 0.5, None]
