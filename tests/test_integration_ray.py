"""Ray Tune's logger callback on a real local Ray instance (started once for the module): one run
per trial with config, last result, per-iteration history and status; best agrees with Tune's."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from click.testing import CliRunner
from ray import tune
from ray_helpers import signal_handlers_kept

from exptrack import ExperimentTracker, Run
from exptrack.cli import cli
from exptrack.errors import InvalidRecordError
from exptrack.integrations.ray import ExptrackLoggerCallback

pytestmark = pytest.mark.xdist_group("ray")  # one Ray instance at a time on a small machine

ITERATIONS = 3


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    # Ray's workers cannot import a test module: ship its trainables by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with signal_handlers_kept():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            yield
        finally:
            ray.shutdown()


def bowl(config: dict[str, Any]) -> None:
    """Loss falls with each iteration towards (x - 3)^2; x == 5 fails before reporting anything."""
    if config["x"] == 5:
        raise ValueError("x = 5 is not allowed")
    for i in range(ITERATIONS):
        tune.report({"loss": (config["x"] - 3) ** 2 + (ITERATIONS - 1 - i), "nested": {"x2": config["x"] * 2}})


def run_tuner(store: Path, tmp_path: Path, trainable: Any, space: dict[str, Any], **callback: Any) -> Any:
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "ray_results"), verbose=0,
                                  callbacks=[ExptrackLoggerCallback(store, **callback)]),
    )
    return tuner.fit()


def by_x(runs: list[Run]) -> dict[int, Run]:
    return {int(run.params["x"]): run for run in runs}


def test_one_run_per_trial_and_best_is_tunes(local_ray: None, store: Path, tmp_path: Path) -> None:
    space = {"x": tune.grid_search([0, 1, 2, 3, 4, 5]), "optimizer": {"name": "sgd", "lr": 0.1}}
    results = run_tuner(store, tmp_path, bowl, space, directions={"loss": "min"}, experiment="tune-bowl")
    tracker = ExperimentTracker(store)
    runs = list(tracker.runs())
    assert len(runs) == len(results) == 6
    assert len({run["ray"]["trial_id"] for run in runs}) == 6
    assert {run["experiment"] for run in runs} == {"tune-bowl"}
    logged = by_x(runs)
    for result in results:
        run = logged[result.config["x"]]
        assert run.params == result.config
        if result.error is None:
            assert run.status == "finished"
            assert run.metrics["loss"] == result.metrics["loss"]
            assert run.metrics["nested/x2"] == result.config["x"] * 2
            assert run.metrics["training_iteration"] == ITERATIONS
            points = tracker.history(run.run_id, "loss")
            assert [p["step"] for p in points] == [1, 2, 3]
            assert all(p["time"] > 0 for p in points)  # when the trial reported it
            assert [p["value"] for p in points] == [(result.config["x"] - 3) ** 2 + k for k in (2, 1, 0)]
        else:
            assert run.status == "failed"
            assert run["error"] == {"type": "ValueError", "message": "x = 5 is not allowed"}
    tune_best = results.get_best_result()
    best = tracker.best_run("loss")  # the stored direction: no mode needed
    assert best.params == tune_best.config
    cli_best = CliRunner().invoke(cli, ["--store", str(store), "best", "loss", "--json"])
    assert cli_best.exit_code == 0, cli_best.output
    assert json.loads(cli_best.stdout)["run_id"] == best.run_id
    assert all(run["ray"]["hostname"] for run in runs if run.status == "finished")


def test_a_bad_direction_is_a_clear_error(store: Path) -> None:
    with pytest.raises(InvalidRecordError, match="'min' or 'max'"):
        ExptrackLoggerCallback(store, directions={"loss": "lowest"})
