"""``exptrack import optuna``: real Optuna studies (RDB and journal storages) come across trial by
trial, pruned trials never become best, and a re-import adds nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from exptrack import ExperimentTracker
from exptrack.cli import cli
from exptrack.errors import ImportSourceError
from exptrack.importers.optuna import import_optuna, public_location

optuna = pytest.importorskip("optuna")

HANG_GUARD = 300.0  # seconds; only stops a hung subprocess
STATUS = {"COMPLETE": "finished", "PRUNED": "pruned", "FAIL": "failed"}
N_TRIALS = 24


def objective(trial: Any) -> float:
    x = trial.suggest_float("x", -10, 10)
    trial.suggest_categorical("kind", ["a", "b", None])
    n = trial.suggest_int("n", 1, 5)
    trial.set_user_attr("fold", n)
    trial.set_user_attr("extra", {"nested": [1, 2]})
    if trial.number == 5:  # pruned with a value better than any finished trial: must never be best
        trial.report(-100.0, 0)
        raise optuna.TrialPruned
    if trial.number in (3, 7):
        raise ValueError("diverged")
    for step in range(4):
        trial.report((x - 2) ** 2 + 3 - step, step)
        if trial.should_prune():
            raise optuna.TrialPruned
    return float((x - 2) ** 2)


class Storage:
    """A storage holding study "search" (minimise; complete, pruned, failed, waiting and running
    trials) and study "multi" (two named objectives)."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / ("optuna.db" if kind == "rdb" else "journal.log")
        self.arg = f"sqlite:///{self.path}" if kind == "rdb" else str(self.path)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = self.open()
        search = optuna.create_study(
            study_name="search", storage=storage, direction="minimize",
            sampler=optuna.samplers.RandomSampler(seed=0), pruner=optuna.pruners.ThresholdPruner(upper=40.0),
        )
        search.optimize(objective, n_trials=N_TRIALS, catch=(ValueError,))
        self.running = search.ask()  # RUNNING: asked, never told (before the enqueue: ask takes a waiting trial)
        search.enqueue_trial({"x": 2.0, "kind": "a", "n": 1})  # WAITING
        multi = optuna.create_study(study_name="multi", storage=storage, directions=["minimize", "maximize"],
                                    sampler=optuna.samplers.RandomSampler(seed=1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # set_metric_names is marked experimental
            multi.set_metric_names(["loss", "accuracy"])
        multi.optimize(lambda t: (t.suggest_float("lr", 0.001, 0.1), 1 - t.suggest_float("d", 0, 0.5)), n_trials=6)
        self.dispose(storage)

    def copy(self, directory: Path) -> Storage:
        """The same storage in another directory (for a test that changes it)."""
        clone = object.__new__(Storage)
        clone.kind, clone.directory, clone.running = self.kind, directory, self.running
        directory.mkdir(parents=True, exist_ok=True)
        clone.path = directory / self.path.name
        clone.arg = f"sqlite:///{clone.path}" if self.kind == "rdb" else str(clone.path)
        shutil.copy2(self.path, clone.path)
        return clone

    def open(self) -> Any:
        if self.kind == "rdb":
            return optuna.storages.RDBStorage(self.arg)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(self.path)))

    @staticmethod
    def dispose(storage: Any) -> None:
        engine = getattr(storage, "engine", None)
        if engine is not None:
            engine.dispose()  # close SQLite connections: no ResourceWarning, no open file

    def study(self, name: str) -> Any:
        storage = self.open()
        try:
            return optuna.load_study(study_name=name, storage=storage)
        finally:
            self.dispose(storage)

    def finish_running(self) -> None:
        storage = self.open()
        study = optuna.load_study(study_name="search", storage=storage)
        study.tell(self.running.number, 1.5)
        self.dispose(storage)


@pytest.fixture(scope="module", params=["rdb", "journal"])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Storage:
    """Each kind of storage is built once per module: Optuna's RDB writes are slow."""
    return Storage(request.param, tmp_path_factory.mktemp(f"optuna-{request.param}"))


@pytest.fixture
def storage(built: Storage, tmp_path: Path) -> Storage:
    """A private copy of the built storage."""
    return built.copy(tmp_path / "source")


def field(run: Any, name: str) -> Any:
    value = getattr(run, name, None)
    return value if value is not None else run.get(name)


def by_trial(tracker: ExperimentTracker, study: str) -> dict[int, Any]:
    return {run["source"]["trial_number"]: run for run in tracker.runs() if run["source"]["study"] == study}


def test_every_trial_arrives_as_optuna_holds_it(storage: Storage, tracker: ExperimentTracker) -> None:
    result = import_optuna(tracker, storage.arg, study="search")
    study = storage.study("search")
    trials = {t.number: t for t in study.trials}
    states = {t.state.name for t in trials.values()}
    assert states == {"COMPLETE", "PRUNED", "FAIL", "WAITING", "RUNNING"}
    ended = {n: t for n, t in trials.items() if t.state.name in STATUS}
    assert sorted(result.skipped) == sorted((f"search#{n}", f"unfinished ({t.state.name})")
                                            for n, t in trials.items() if n not in ended)
    assert result.experiments == ("search",)
    runs = by_trial(tracker, "search")
    assert sorted(runs) == sorted(ended)
    assert len(result.imported) == len(ended) == N_TRIALS
    for number, trial in ended.items():
        run = runs[number]
        assert run.status == STATUS[trial.state.name]
        assert field(run, "name") == f"trial-{number}"
        assert field(run, "experiment") == "search"
        assert dict(run.params) == trial.params
        assert dict(run.metrics) == ({} if trial.value is None else {"value": trial.value})
        start = trial.datetime_start.astimezone(dt.timezone.utc)
        assert dt.datetime.fromisoformat(run.timestamp.replace("Z", "+00:00")) == start
        history = tracker.history(run.run_id, "value")
        assert [(p["step"], p["value"]) for p in history] == sorted(trial.intermediate_values.items())
        assert run["source"]["user_attrs"] == trial.user_attrs
        assert f"fold={trial.user_attrs['fold']}" in run.tags
        assert run["source"]["state"] == trial.state.name
    assert runs[5].status == "pruned"
    assert runs[5].metrics == {"value": -100.0}  # Optuna keeps the last reported value of a pruned trial


def test_best_equals_optunas_best_trial_and_needs_no_direction(storage: Storage, tracker: ExperimentTracker) -> None:
    import_optuna(tracker, storage.arg, study="search")
    best = tracker.best_run("value")  # the study's direction was stored: no mode to give
    assert best["source"]["trial_number"] == storage.study("search").best_trial.number
    assert best.status == "finished"


def test_every_study_by_default_with_named_objectives(storage: Storage, tracker: ExperimentTracker) -> None:
    result = import_optuna(tracker, storage.arg)
    assert result.experiments == ("multi", "search")
    multi = storage.study("multi")
    runs = by_trial(tracker, "multi")
    assert len(runs) == 6
    for trial in multi.trials:
        assert dict(runs[trial.number].metrics) == {"loss": trial.values[0], "accuracy": trial.values[1]}
    best_loss = tracker.best_run("loss", where="params.lr > 0")
    assert best_loss.metrics["loss"] == min(t.values[0] for t in multi.trials)
    best_accuracy = tracker.best_run("accuracy", where="params.lr > 0")
    assert best_accuracy.metrics["accuracy"] == max(t.values[1] for t in multi.trials)


def test_importing_again_adds_nothing_until_a_trial_ends(storage: Storage, tracker: ExperimentTracker,
                                                         store: Path) -> None:
    first = import_optuna(tracker, storage.arg)
    before = (store / "runs.jsonl").read_bytes()
    again = import_optuna(tracker, storage.arg)
    assert again.imported == ()
    assert sorted(again.existing) == sorted(first.imported)
    assert (store / "runs.jsonl").read_bytes() == before
    storage.finish_running()
    third = import_optuna(tracker, storage.arg)
    assert len(third.imported) == 1
    assert tracker.get_run(third.imported[0])["source"]["trial_number"] == storage.running.number


def test_the_same_trials_through_another_path_are_the_same_runs(storage: Storage, tracker: ExperimentTracker,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    first = import_optuna(tracker, storage.arg)
    monkeypatch.chdir(storage.directory)
    relative = f"sqlite:///{storage.path.name}" if storage.kind == "rdb" else storage.path.name
    again = import_optuna(tracker, relative)
    assert again.imported == ()
    assert sorted(again.existing) == sorted(first.imported)


def test_a_tracker_opened_on_an_experiment_imports_into_it(storage: Storage, store: Path) -> None:
    with ExperimentTracker(store, durable=False, experiment="legacy") as scoped:
        result = import_optuna(scoped, storage.arg, study="search")
        assert result.experiments == ("legacy",)
        assert {field(run, "experiment") for run in scoped.runs()} == {"legacy"}
        assert len(list(scoped.runs())) == N_TRIALS


def test_unknown_study_names_the_studies(storage: Storage, tracker: ExperimentTracker) -> None:
    with pytest.raises(ImportSourceError, match=r"no study 'serch' in it \(studies: multi, search\)"):
        import_optuna(tracker, storage.arg, study="serch")


@pytest.mark.parametrize("kind", ["rdb", "journal"])
def test_a_missing_storage_is_an_error_and_creates_nothing(kind: str, tmp_path: Path,
                                                           tracker: ExperimentTracker) -> None:
    path = tmp_path / ("missing.db" if kind == "rdb" else "missing.log")
    with pytest.raises(ImportSourceError, match=r"^cannot import "):
        import_optuna(tracker, f"sqlite:///{path}" if kind == "rdb" else str(path))
    assert not path.exists()


def test_a_storage_that_is_not_optunas_is_an_error(tmp_path: Path, tracker: ExperimentTracker) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    with pytest.raises(ImportSourceError, match="not a readable Optuna storage"):
        import_optuna(tracker, f"sqlite:///{junk}")


def test_a_password_never_reaches_the_store() -> None:
    assert public_location("postgresql://alice:s3cr@t@db.example/optuna") == "postgresql://alice:***@db.example/optuna"
    assert public_location("mysql://bob@db/optuna") == "mysql://bob@db/optuna"
    assert public_location("sqlite:///x.db") == "sqlite:///x.db"


# -- the command line --------------------------------------------------------------------------------


def test_cli_imports_one_study(storage: Storage, store: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--store", str(store), "import", "optuna", storage.arg, "--study", "search"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"imported {N_TRIALS} run(s) from {storage.arg} into experiment(s) search")
    assert "1 unfinished (RUNNING), 1 unfinished (WAITING)" in result.stdout
    best = runner.invoke(cli, ["--store", str(store), "best", "value", "--json"])
    assert best.exit_code == 0, best.output
    assert json.loads(best.stdout)["source"]["trial_number"] == storage.study("search").best_trial.number


def test_cli_experiment_option_names_the_target(storage: Storage, store: Path) -> None:
    result = CliRunner().invoke(cli, ["--store", str(store), "-e", "legacy", "import", "optuna", storage.arg,
                                      "--study", "search", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["experiments"] == ["legacy"]
    again = CliRunner().invoke(cli, ["--store", str(store), "import", "optuna", storage.arg, "--experiment", "other"])
    assert again.exit_code == 0, again.output
    assert "into experiment(s) other" in again.stdout  # the multi study's runs; search's are already there


def test_cli_unknown_study_exits_1(storage: Storage, store: Path) -> None:
    result = CliRunner().invoke(cli, ["--store", str(store), "import", "optuna", storage.arg, "--study", "x"])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1


def test_installed_script_imports(storage: Storage, store: Path) -> None:
    result = subprocess.run(["exptrack", "--store", str(store), "import", "optuna", storage.arg, "--json"],
                            capture_output=True, text=True, timeout=HANG_GUARD, check=False,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["imported"]) == N_TRIALS + 6


def _import_in_child(store: str, storage: str, barrier: Any, out: Any) -> None:
    from exptrack import ExperimentTracker
    from exptrack.importers.optuna import import_optuna

    barrier.wait()
    result = import_optuna(ExperimentTracker(store, durable=False), storage)
    out.put(result.imported)


def test_two_imports_at_once_write_each_trial_once(storage: Storage, store: Path) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    out = context.Queue()
    workers = [context.Process(target=_import_in_child, args=(str(store), storage.arg, barrier, out))
               for _ in range(2)]
    try:
        for worker in workers:
            worker.start()
        results = [out.get(timeout=HANG_GUARD) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=HANG_GUARD)
            if worker.is_alive():
                worker.kill()
    assert all(worker.exitcode == 0 for worker in workers)
    first, second = (set(r) for r in results)
    assert not first & second
    ids = [run.run_id for run in ExperimentTracker(store).runs()]
    assert len(ids) == len(set(ids)) == N_TRIALS + 6
    assert first | second == set(ids)
