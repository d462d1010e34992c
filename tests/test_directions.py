"""Which way is better: scikit-learn's names, a direction stored with the runs, and summaries that
do not guess."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from exptrack import ExperimentTracker, InvalidRecordError, QueryError
from exptrack.cli import cli
from exptrack.query.directions import infer_mode


@pytest.mark.parametrize(
    ("metric", "mode"),
    [
        ("neg_log_loss", "max"), ("neg_mean_squared_error", "max"), ("neg_root_mean_squared_error", "max"),
        ("neg_mean_absolute_error", "max"), ("neg_brier_score", "max"), ("neg_anything", "max"),
        ("rank_test_score", "min"), ("rank_test_neg_log_loss", "min"), ("rank_test_accuracy", "min"),
        ("mean_test_neg_log_loss", "max"), ("mean_test_accuracy", "max"), ("mean_train_rmse", "min"),
        ("split0_test_neg_mean_squared_error", "max"), ("split12_test_f1", "max"), ("split3_train_loss", "min"),
        ("mean_test_score", "max"), ("split4_test_score", "max"),
        ("std_test_score", None), ("std_test_neg_log_loss", None), ("std_fit_time", None),
        ("mean_fit_time", None), ("mean_score_time", None), ("score", None),
    ],
)
def test_scikit_learn_names(metric: str, mode: str | None) -> None:
    assert infer_mode(metric) == mode


def test_best_neg_log_loss_is_the_least_negative(tracker: ExperimentTracker) -> None:
    worst = tracker.log_run(metrics={"neg_log_loss": -2.3})
    best = tracker.log_run(metrics={"neg_log_loss": -0.21})
    assert tracker.best_run("neg_log_loss").run_id == best.run_id
    metric = tracker.summary()["metrics"]["neg_log_loss"]
    assert (metric["mode"], metric["best_run_id"]) == ("max", best.run_id)
    assert tracker.top_runs("neg_log_loss", 2)[-1].run_id == worst.run_id


def test_a_real_grid_search_ranks_like_scikit_learn(tracker: ExperimentTracker) -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    linear = pytest.importorskip("sklearn.linear_model")
    selection = pytest.importorskip("sklearn.model_selection")
    x, y = datasets.load_iris(return_X_y=True)
    search = selection.GridSearchCV(linear.LogisticRegression(max_iter=500), {"C": [0.001, 0.01, 0.1, 1.0, 10.0]},
                                    scoring="neg_log_loss", cv=3)
    search.fit(x, y)
    results = search.cv_results_
    names = [name for name in results if name.startswith(("mean_", "std_", "rank_", "split"))]
    for i, params in enumerate(results["params"]):
        tracker.log_run(params=params, metrics={name: float(results[name][i]) for name in names})
    assert tracker.best_run("mean_test_score").params == search.best_params_
    assert tracker.best_run("rank_test_score").params == search.best_params_
    summary = tracker.summary()
    assert summary["metrics"]["mean_test_score"]["best_value"] == pytest.approx(search.best_score_)
    assert summary["metrics"]["std_test_score"]["best_run_id"] is None
    assert any(line.startswith("std_test_score: no best shown") for line in summary["warnings"])
    with pytest.raises(QueryError, match="cannot tell whether a higher or lower 'std_test_score' is better"):
        tracker.best_run("std_test_score")


# -- directions stored with the runs ----------------------------------------------------------------


def test_a_stored_direction_ranks_a_name_that_says_nothing(tracker: ExperimentTracker) -> None:
    low = tracker.log_run(metrics={"value": 1.0}, directions={"value": "min"})
    tracker.log_run(metrics={"value": 5.0}, directions={"value": "min"})
    assert tracker.get_run(low.run_id).extra["directions"] == {"value": "min"}
    assert tracker.best_run("value").run_id == low.run_id
    assert tracker.summary()["metrics"]["value"]["best_run_id"] == low.run_id
    assert tracker.best_run("value", "max").metrics["value"] == 5.0  # an explicit mode wins


def test_a_stored_direction_beats_the_name(tracker: ExperimentTracker) -> None:
    # an Optuna study minimising "accuracy_gap" named like a score: the study knows best
    tracker.log_run(metrics={"accuracy": 0.2}, directions={"accuracy": "min"})
    tracker.log_run(metrics={"accuracy": 0.9}, directions={"accuracy": "min"})
    assert tracker.best_run("accuracy").metrics["accuracy"] == 0.2


def test_log_runs_and_start_run_write_the_section(tracker: ExperimentTracker) -> None:
    first, second = tracker.log_runs([
        {"metrics": {"value": 3.0}, "directions": {"value": "max"}},
        {"metrics": {"value": 4.0}, "directions": {"value": "max"}},
    ])
    with tracker.start_run(capture=False, directions={"value": "max"}) as run:
        run.log_metric("value", 2.0)
    assert tracker.get_run(run.run_id).extra["directions"] == {"value": "max"}
    assert tracker.best_run("value").run_id == second.run_id
    assert first.extra["directions"] == {"value": "max"}


def test_conflicting_declarations_ask_for_a_mode(tracker: ExperimentTracker) -> None:
    tracker.log_run(metrics={"value": 3.0}, directions={"value": "max"})
    tracker.log_run(metrics={"value": 4.0}, directions={"value": "min"})
    tracker.log_run(metrics={"value": 4.5}, directions={"value": "min"}, status="failed")
    with pytest.raises(QueryError, match=r"declare both directions for 'value' \(1 max, 1 min\).*mode="):
        tracker.best_run("value")
    assert tracker.best_run("value", "min").metrics["value"] == 3.0
    result = tracker.summary()
    assert result["metrics"]["value"]["best_run_id"] is None
    assert any("both directions" in line for line in result["warnings"])
    # the scope decides: only the failed runs' declarations count for status="failed"
    assert tracker.best_run("value", status="failed").metrics["value"] == 4.5


def test_declarations_survive_a_rebuild_and_the_index_free_path(tracker: ExperimentTracker) -> None:
    import shutil

    from exptrack.store.index.identity import INDEX_DIR

    tracker.log_run(metrics={"value": 1.0}, directions={"value": "min"})
    tracker.log_run(metrics={"value": 0.5})
    assert tracker.best_run("value").metrics["value"] == 0.5
    shutil.rmtree(tracker.store / INDEX_DIR)
    fresh = ExperimentTracker(tracker.store, durable=False)
    assert fresh.best_run("value").metrics["value"] == 0.5
    fresh._indexed = lambda progress=None: None  # type: ignore[method-assign]
    assert fresh.best_run("value").metrics["value"] == 0.5


@pytest.mark.parametrize(
    "directions",
    [{"value": "maximize"}, {"value": None}, {"": "min"}, {1: "min"}, ["min"], "min"],
)
def test_a_bad_direction_is_refused_before_anything_is_written(tracker: ExperimentTracker,
                                                               directions: object) -> None:
    with pytest.raises(InvalidRecordError, match="directions"):
        tracker.log_run(metrics={"value": 1.0}, directions=directions)  # type: ignore[arg-type]
    with pytest.raises(InvalidRecordError, match="directions"):
        tracker.start_run(capture=False, directions=directions)  # type: ignore[arg-type]
    assert not tracker.runs_path.exists() or tracker.runs_path.read_bytes() == b""


def test_cli_best_uses_the_stored_direction_and_summary_warns(store: Path) -> None:
    tracker = ExperimentTracker(store, durable=False)
    low = tracker.log_run(metrics={"value": 1.0, "throughput": 10.0}, directions={"value": "min"})
    tracker.log_run(metrics={"value": 2.0, "throughput": 30.0}, directions={"value": "min"})
    runner = CliRunner()
    result = runner.invoke(cli, ["--store", str(store), "best", "value", "--json"])
    assert result.exit_code == 0, result.output
    assert low.run_id in result.stdout
    result = runner.invoke(cli, ["--store", str(store), "summary"])
    assert result.exit_code == 0, result.output
    assert "warning: throughput: no best shown, the direction is unknown" in result.stderr
    assert "warning: value" not in result.stderr
