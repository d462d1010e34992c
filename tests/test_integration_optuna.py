"""Optuna's callback against the real Optuna: threads, processes on one journal, pruned and failed
trials, multi-objective studies; ``exptrack best`` must agree with ``study.best_trial``."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import CliRunner
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from exptrack import ExperimentTracker, Run
from exptrack.cli import cli
from exptrack.errors import InvalidRecordError
from exptrack.integrations.optuna import ExptrackCallback

HANG_GUARD = 120.0  # seconds; only stops a hung worker
SPAWN = mp.get_context("spawn")
STATUS_OF = {TrialState.COMPLETE: "finished", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}


@pytest.fixture(autouse=True)
def _quiet_optuna() -> Iterator[None]:
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    yield
    optuna.logging.set_verbosity(verbosity)


def objective(trial: Any) -> float:
    """A bowl with a few steps reported on the way down; x > 8 fails, so some trials do."""
    x = trial.suggest_float("x", -10, 10)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    final = (x - 2) ** 2 + (0.0 if kind == "a" else 1.0)
    if x > 8:
        raise ValueError("x too large")
    for step in range(4):
        trial.report(final + (3 - step), step)
        if trial.should_prune():
            raise optuna.TrialPruned
    trial.set_user_attr("kind_note", f"kind {kind}")
    return final


def _pruner() -> Any:
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)


def trial_of(run: Run) -> int:
    return int(run["optuna"]["trial"])


def assert_one_run_per_trial(runs: list[Run], study: Any) -> None:
    numbers = Counter(trial_of(run) for run in runs)
    assert set(numbers) == {t.number for t in study.trials}
    assert set(numbers.values()) == {1}
    by_number = {trial_of(run): run for run in runs}
    for trial in study.trials:
        run = by_number[trial.number]
        assert run.status == STATUS_OF[trial.state]
        assert run.params == trial.params
        if trial.state is TrialState.FAIL:
            assert "value" not in run.metrics
        else:
            assert run.metrics["value"] == trial.value


def assert_best_agrees(store: Path, study: Any) -> Run:
    """``best_run`` and ``exptrack best`` (no --min/--max) both name ``study.best_trial``."""
    tracker = ExperimentTracker(store)
    best = tracker.best_run("value")
    assert trial_of(best) == study.best_trial.number
    assert best.metrics["value"] == study.best_value
    result = CliRunner().invoke(cli, ["--store", str(store), "best", "value", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run_id"] == best.run_id
    return best


def test_four_threads_log_one_run_per_trial_and_best_is_the_studys(store: Path) -> None:
    tracker = ExperimentTracker(store, durable=False)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1), pruner=_pruner())
    study.optimize(objective, n_trials=24, n_jobs=4, callbacks=[ExptrackCallback(tracker)], catch=(ValueError,))
    runs = list(tracker.runs())
    assert len(runs) == len(study.trials) == 24
    assert_one_run_per_trial(runs, study)
    states = Counter(t.state for t in study.trials)
    assert states[TrialState.COMPLETE] >= 1
    assert_best_agrees(store, study)


def _optimize_in_process(store: str, journal: str, study_name: str, trials: int, seed: int, barrier: Any,
                         results: Any, n_jobs: int = 1) -> None:
    try:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        storage = JournalStorage(JournalFileBackend(journal))
        study = optuna.load_study(study_name=study_name, storage=storage,
                                  sampler=optuna.samplers.RandomSampler(seed=seed), pruner=_pruner())
        tracker = ExperimentTracker(store, durable=False)
        barrier.wait(timeout=HANG_GUARD)
        study.optimize(objective, n_trials=trials, n_jobs=n_jobs, callbacks=[ExptrackCallback(tracker)],
                       catch=(ValueError,))
        tracker.close()
        results.put((seed, "ok"))
    except BaseException as exc:  # every worker reports, so a failure surfaces in the test
        results.put((seed, f"{type(exc).__name__}: {exc}"))


def _optimize_in_processes(store: Path, journal: str, workers: int, trials: int, n_jobs: int) -> Any:
    """``workers`` spawned processes optimise one study on one journal; returns the study."""
    storage = JournalStorage(JournalFileBackend(journal))
    optuna.create_study(study_name="shared", storage=storage)
    barrier, results = SPAWN.Barrier(workers), SPAWN.Queue()
    processes = [SPAWN.Process(target=_optimize_in_process,
                               args=(str(store), journal, "shared", trials, seed, barrier, results, n_jobs))
                 for seed in range(workers)]
    try:
        for process in processes:
            process.start()
        outcomes = dict(results.get(timeout=HANG_GUARD) for _ in processes)
    finally:
        for process in processes:
            process.join(timeout=HANG_GUARD)
            if process.is_alive():
                process.kill()
                process.join()
    assert outcomes == dict.fromkeys(range(workers), "ok")
    return optuna.load_study(study_name="shared", storage=storage)


def test_four_processes_sharing_one_journal_log_one_run_per_trial(store: Path, tmp_path: Path) -> None:
    workers, trials = 4, 6
    study = _optimize_in_processes(store, str(tmp_path / "journal.log"), workers, trials, n_jobs=1)
    assert len(study.trials) == workers * trials
    runs = list(ExperimentTracker(store).runs())
    assert len(runs) == workers * trials
    assert_one_run_per_trial(runs, study)
    best = assert_best_agrees(store, study)
    # and the installed script, as a person would type it
    script = shutil.which("exptrack")
    assert script is not None, "the exptrack console script is not installed (pip install -e .)"
    shown = subprocess.run([script, "--store", str(store), "best", "value", "--json"], capture_output=True,
                           text=True, timeout=HANG_GUARD, check=False, env=dict(os.environ))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["run_id"] == best.run_id


@pytest.mark.stress
def test_stress_four_processes_of_four_threads_on_one_journal(store: Path, tmp_path: Path) -> None:
    workers, trials = 4, 100
    study = _optimize_in_processes(store, str(tmp_path / "journal.log"), workers, trials, n_jobs=4)
    runs = list(ExperimentTracker(store).runs())
    assert len(study.trials) == len(runs) == workers * trials
    assert_one_run_per_trial(runs, study)
    assert_best_agrees(store, study)
    states = Counter(run.status for run in runs)
    print(f"\n{len(study.trials)} trials, {len(runs)} runs, statuses {dict(states)}, "  # the figures for the report
          f"best trial {study.best_trial.number} = {study.best_value:.6g} (exptrack agrees)")


def test_pruned_and_failed_trials_are_logged_but_never_best(tracker: ExperimentTracker, store: Path) -> None:
    def scripted(trial: Any) -> float:
        trial.suggest_float("x", 0, 1)
        if trial.number == 1:  # far better than the finished trial, then pruned
            trial.report(0.5, 0)
            trial.report(0.1, 3)
            raise optuna.TrialPruned
        if trial.number == 2:
            raise ValueError("diverged")
        return 5.0

    study = optuna.create_study()
    study.optimize(scripted, n_trials=3, callbacks=[ExptrackCallback(tracker)], catch=(ValueError,))
    runs = {trial_of(run): run for run in tracker.runs()}
    assert [runs[n].status for n in range(3)] == ["finished", "pruned", "failed"]
    assert runs[1].metrics == {"value": 0.1}
    assert runs[2].metrics == {}
    assert [(p["step"], p["value"]) for p in tracker.history(runs[1].run_id, "value")] == [(0, 0.5), (3, 0.1)]
    best = assert_best_agrees(store, study)
    assert trial_of(best) == 0


def test_a_run_carries_the_trials_identity_times_and_user_attrs(tracker: ExperimentTracker) -> None:
    def with_attrs(trial: Any) -> float:
        trial.set_user_attr("notes", {"tries": [1, 2]})
        trial.set_user_attr("spread", math.nan)
        return trial.suggest_int("depth", 1, 8)

    study = optuna.create_study(study_name="attrs", direction="maximize")
    study.optimize(with_attrs, n_trials=2, callbacks=[ExptrackCallback(tracker)])
    run = next(r for r in tracker.runs() if trial_of(r) == 1)
    trial = study.trials[1]
    section = run["optuna"]
    assert section["study"] == "attrs"
    assert section["user_attrs"] == {"notes": {"tries": [1, 2]}, "spread": "nan"}
    assert section["datetime_start"] <= section["datetime_complete"]
    assert section["duration_s"] == pytest.approx(trial.duration.total_seconds())
    assert run.timestamp == section["datetime_start"]
    assert run["name"] == "trial-1"
    assert tracker.best_run("value").metrics["value"] == study.best_value  # maximize, no mode given


def test_multi_objective_names_each_value_with_its_direction(tracker: ExperimentTracker) -> None:
    def two(trial: Any) -> tuple[float, float]:
        x = trial.suggest_float("x", 0, 1)
        return x, (1 - x) ** 2

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.optimize(two, n_trials=6, callbacks=[ExptrackCallback(tracker, metric_name=["acc", "cost"])])
    trials = study.trials
    assert tracker.best_run("acc").metrics["acc"] == max(t.values[0] for t in trials)
    assert tracker.best_run("cost").metrics["cost"] == min(t.values[1] for t in trials)


def test_one_name_for_several_objectives_is_numbered(tracker: ExperimentTracker) -> None:
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=1,
                   callbacks=[ExptrackCallback(tracker, metric_name="loss")])
    assert set(next(iter(tracker.runs())).metrics) == {"loss_0", "loss_1"}


def test_too_few_names_for_the_objectives_is_a_clear_error(tracker: ExperimentTracker) -> None:
    study = optuna.create_study(directions=["minimize", "minimize"])
    callback = ExptrackCallback(tracker, metric_name=["only"])
    with pytest.raises(InvalidRecordError, match="names 1 objective"):
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=1, callbacks=[callback])
    with pytest.raises(InvalidRecordError, match="metric_name"):
        ExptrackCallback(tracker, metric_name=[])


def test_runs_go_to_the_named_experiment(tracker: ExperimentTracker) -> None:
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2,
                   callbacks=[ExptrackCallback(tracker, experiment="search-1")])
    assert {run["experiment"] for run in tracker.runs()} == {"search-1"}
