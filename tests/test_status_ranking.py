"""Only finished runs compete by default; a status name or a list narrows, "any" ranks all; pruned runs.

The scenarios are the ones real clients hit: a pruned (early-stopped) Optuna trial whose partial
value beat the study's best, and a failed run's 0.99 beating a finished 0.90.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import exptrack
from exptrack import ExperimentTracker, NoRunsError, QueryError
from exptrack.cli import cli
from exptrack.store.index.identity import INDEX_DIR

HANG_GUARD = 120.0  # seconds; a subprocess that takes longer is hung, not slow


def invoke(store: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--store", str(store), *args], catch_exceptions=False)


@pytest.fixture
def mixed(tracker: ExperimentTracker) -> dict[str, str]:
    """A study: two finished runs, a failed 0.99, a killed 0.95, a pruned 0.97 (accuracy)."""
    ids = {}
    for label, value, status in [("finished_low", 0.85, "finished"), ("failed", 0.99, "failed"),
                                 ("finished_best", 0.90, "finished"), ("killed", 0.95, "killed"),
                                 ("pruned", 0.97, "pruned")]:
        ids[label] = tracker.log_run(params={"label": label}, metrics={"accuracy": value, "loss": 1 - value},
                                     status=status).run_id
    return ids


def both_paths(tracker: ExperimentTracker) -> list[ExperimentTracker]:
    """The same store answered through the index and, with the index made unusable, from the log."""
    no_index = ExperimentTracker(tracker.store, durable=False)
    no_index._indexed = lambda progress=None: None  # type: ignore[method-assign]
    return [tracker, no_index]


def test_a_failed_run_does_not_beat_a_finished_one_by_default(tracker: ExperimentTracker,
                                                              mixed: dict[str, str]) -> None:
    for reader in both_paths(tracker):
        assert reader.best_run("accuracy").run_id == mixed["finished_best"]
        assert [r.run_id for r in reader.top_runs("accuracy", 5)] == [mixed["finished_best"], mixed["finished_low"]]
        assert reader.best_run("loss").run_id == mixed["finished_best"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, "failed"), ("any", "failed"), ("failed", "failed"), ("killed", "killed"), ("pruned", "pruned"),
        (["killed", "pruned"], "pruned"), (("finished", "killed"), "killed"), (["any"], "failed"),
    ],
)
def test_status_names_or_lists_narrow_and_any_ranks_every_run(tracker: ExperimentTracker, mixed: dict[str, str],
                                                             status: object, expected: str) -> None:
    for reader in both_paths(tracker):
        assert reader.best_run("accuracy", status=status).run_id == mixed[expected]  # type: ignore[arg-type]


def test_top_k_of_a_union_of_groups_is_the_merge_of_their_tops(tracker: ExperimentTracker) -> None:
    values = {"finished": [0.1, 0.5, 0.9], "failed": [0.95, 0.2], "pruned": [0.6, 0.7]}
    logged = {(s, v): tracker.log_run(metrics={"accuracy": v}, status=s).run_id
              for s, vs in values.items() for v in vs}
    ranked = tracker.top_runs("accuracy", 4, status=["finished", "pruned"])
    assert [r.run_id for r in ranked] == [logged["finished", 0.9], logged["pruned", 0.7],
                                          logged["pruned", 0.6], logged["finished", 0.5]]


def test_an_experiment_field_splits_groups_without_changing_the_answers(tracker: ExperimentTracker) -> None:
    a = tracker.log_run(metrics={"accuracy": 0.7}, extra={"experiment": "wine"})
    b = tracker.log_run(metrics={"accuracy": 0.8})
    tracker.log_run(metrics={"accuracy": 0.9}, extra={"experiment": "wine"}, status="failed")
    index = tracker._indexed()
    assert index is not None
    assert index.select() == [("default", "finished"), ("wine", "failed"), ("wine", "finished")]
    assert index.select(experiments=["wine"], statuses=["finished"]) == [("wine", "finished")]
    top = index.top("accuracy", "max", 3, index.select(experiments=["wine"], statuses=["finished"]))
    assert [entry[2] for entry in top or []] == [a.run_id]
    assert tracker.best_run("accuracy").run_id == b.run_id
    assert tracker.summary()["metrics"]["accuracy"]["count"] == 2


def test_nothing_of_the_status_asked_for_says_what_to_pass(tracker: ExperimentTracker) -> None:
    tracker.log_run(metrics={"value": 3.0}, status="killed")
    tracker.log_run(metrics={"value": 2.0}, status="pruned")
    for reader in both_paths(tracker):
        with pytest.raises(NoRunsError, match=r"no finished runs .*1 killed, 1 pruned.*status='any'"):
            reader.best_run("value", "min")
    assert tracker.best_run("value", "min", status="any").metrics["value"] == 2.0


def test_a_metric_only_other_statuses_have_is_not_an_unknown_metric(tracker: ExperimentTracker) -> None:
    tracker.log_run(metrics={"accuracy": 0.5})
    tracker.log_run(metrics={"accuracy": 0.6, "f1": 0.4}, status="failed")
    with pytest.raises(NoRunsError, match=r"no finished run has a finite value for metric 'f1'.*1 failed"):
        tracker.best_run("f1")


def test_an_unknown_status_is_a_query_error(tracker: ExperimentTracker, mixed: dict[str, str]) -> None:
    with pytest.raises(QueryError, match=r"unknown status 'done'.*pruned"):
        tracker.best_run("accuracy", status="done")
    with pytest.raises(QueryError, match="unknown status"):
        tracker.summary(status=["finished", "ok"])


def test_summary_keeps_every_status_count_and_describes_the_runs_in_scope(tracker: ExperimentTracker,
                                                                          mixed: dict[str, str]) -> None:
    for reader in both_paths(tracker):
        result = reader.summary()
        assert result["total_runs"] == 5
        assert result["statuses"] == {"failed": 1, "finished": 2, "killed": 1, "pruned": 1}
        assert result["status_scope"] == "finished"
        assert result["ranked_runs"] == 2
        accuracy = result["metrics"]["accuracy"]
        assert (accuracy["count"], accuracy["max"], accuracy["best_run_id"]) == (2, 0.90, mixed["finished_best"])
        every = reader.summary(status="any")["metrics"]["accuracy"]
        assert (every["count"], every["best_run_id"]) == (5, mixed["failed"])
        narrowed = reader.summary(status=["killed", "pruned"])
        assert (narrowed["ranked_runs"], narrowed["status_scope"]) == (2, "killed or pruned")


def test_merged_statistics_are_identical_through_the_index_a_rebuild_and_the_log(tracker: ExperimentTracker) -> None:
    for i in range(60):
        tracker.log_run(metrics={"x": (i * 0.1) ** 1.5}, status=["finished", "failed", "pruned"][i % 3],
                        extra={"experiment": ["a", "b"][i % 2]})
    incremental = tracker.summary(status="any")
    shutil.rmtree(tracker.store / INDEX_DIR)
    rebuilt = ExperimentTracker(tracker.store, durable=False).summary(status="any")
    from_log = both_paths(tracker)[1].summary(status="any")
    assert incremental == rebuilt
    incremental.pop("unchecked_runs")
    from_log.pop("unchecked_runs")
    assert incremental == from_log


# -- the pruned status -------------------------------------------------------------------------------


def test_pruned_is_a_valid_status_for_log_run_and_log_runs(tracker: ExperimentTracker) -> None:
    run = tracker.log_run(metrics={"value": 1.0}, status="pruned")
    [other] = tracker.log_runs([{"metrics": {"value": 2.0}, "status": "pruned"}])
    assert tracker.get_run(run.run_id).status == tracker.get_run(other.run_id).status == "pruned"


def test_run_prune_ends_a_live_run_as_pruned_with_its_metrics(tracker: ExperimentTracker) -> None:
    with tracker.start_run(params={"lr": 0.1}, capture=False) as run:
        run.log_metric("value", 0.5, step=0)
        run.log_metric("value", 0.4, step=1)
        record = run.prune("no better than the median at step 1")
        run.log_metric("value", 0.3, step=2)  # after the end: not in the record
    stored = tracker.get_run(run.run_id)
    assert stored == record
    assert (stored.status, stored.metrics["value"]) == ("pruned", 0.4)
    assert stored.extra["pruned"] == {"reason": "no better than the median at step 1"}


def test_raising_pruned_inside_the_block_records_pruned_and_does_not_propagate(tracker: ExperimentTracker) -> None:
    reached = False
    with tracker.start_run(capture=False) as run:
        run.log_metric("value", 2.0)
        raise exptrack.Pruned("pruned at step 3")
    reached = True
    stored = tracker.get_run(run.run_id)
    assert reached
    assert stored.status == "pruned"
    assert stored.extra["pruned"] == {"reason": "pruned at step 3"}
    assert "error" not in stored.extra


def test_finish_pruned_and_a_frameworks_trial_pruned_exception(tracker: ExperimentTracker) -> None:
    class TrialPruned(Exception):
        pass

    with tracker.start_run(capture=False) as run:
        run.finish("pruned")
    assert tracker.get_run(run.run_id).status == "pruned"
    with pytest.raises(TrialPruned), tracker.start_run(capture=False) as trial:
        raise TrialPruned("trial 4 pruned")
    assert tracker.get_run(trial.run_id).status == "pruned"  # recorded, and re-raised for the framework


def test_a_real_optuna_study_with_pruned_trials_ranks_like_the_study(tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = tmp_path / "store"
    tracker = ExperimentTracker(store, durable=False)

    def objective(trial: object) -> float:
        x = trial.suggest_float("x", -10, 10)  # type: ignore[attr-defined]
        with tracker.start_run(params={"x": x}, capture=False, directions={"value": "max"}) as run:
            value = 0.0
            for step in range(5):
                value = -((x - 2) ** 2) + step  # partial values are lower than the final one
                run.log_metric("value", value, step=step)
                trial.report(value, step)  # type: ignore[attr-defined]
                if trial.should_prune():  # type: ignore[attr-defined]
                    raise optuna.TrialPruned()
        return value

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=3),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0))
    study.optimize(objective, n_trials=25)
    statuses = {run.status for run in tracker.runs()}
    assert "pruned" in statuses
    assert tracker.best_run("value").metrics["value"] == pytest.approx(study.best_value)
    assert tracker.best_run("value").params["x"] == pytest.approx(study.best_params["x"])
    tracker.close()


# -- the command line --------------------------------------------------------------------------------


def test_cli_best_top_summary_runs_take_status(tracker: ExperimentTracker, mixed: dict[str, str]) -> None:
    store = tracker.store
    result = invoke(store, "best", "accuracy", "--json")
    assert result.exit_code == 0, result.output
    assert mixed["finished_best"] in result.output
    result = invoke(store, "best", "accuracy", "--status", "any", "--json")
    assert mixed["failed"] in result.output
    result = invoke(store, "top", "accuracy", "--status", "killed,pruned", "--json")
    assert result.output.index(mixed["pruned"]) < result.output.index(mixed["killed"])
    assert mixed["finished_best"] not in result.output
    result = invoke(store, "top", "accuracy", "--status", "killed", "--status", "failed", "--json")
    assert mixed["failed"] in result.output
    assert mixed["pruned"] not in result.output
    result = invoke(store, "summary")
    assert "pruned: 1" in result.output
    assert "metrics over 2 run(s) of status finished" in result.output
    result = invoke(store, "runs", "--status", "pruned", "--json")
    assert mixed["pruned"] in result.output
    assert mixed["finished_best"] not in result.output
    result = invoke(store, "best", "accuracy", "--status", "done")
    assert result.exit_code == 2
    assert "unknown status 'done'" in result.output


def test_cli_log_accepts_pruned(store: Path) -> None:
    result = invoke(store, "log", "-m", "value=0.5", "--status", "pruned")
    assert result.exit_code == 0, result.output
    assert ExperimentTracker(store).get_run(result.output.strip()).status == "pruned"


def test_installed_script_ranks_finished_runs_only(tracker: ExperimentTracker, mixed: dict[str, str]) -> None:
    script = shutil.which("exptrack")
    if script is None:
        pytest.skip("the exptrack console script is not installed")
    done = subprocess.run([script, "--store", str(tracker.store), "best", "accuracy", "--json"],
                          capture_output=True, text=True, timeout=HANG_GUARD, check=False)
    assert done.returncode == 0, done.stderr
    assert mixed["finished_best"] in done.stdout
    assert mixed["failed"] not in done.stdout
