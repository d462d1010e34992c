"""Ray Tune across two nodes (``ray.cluster_utils.Cluster``): trials run on both nodes, the one
writer is the driver's callback, and the store gets one run per trial whose best is Tune's."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray import tune
from ray.cluster_utils import Cluster
from ray_helpers import signal_handlers_kept

from exptrack import ExperimentTracker
from exptrack.integrations.ray import ExptrackLoggerCallback

pytestmark = pytest.mark.xdist_group("ray")  # one Ray instance at a time on a small machine


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Cluster]:
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    with signal_handlers_kept():
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        try:
            cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


def where_am_i(config: dict[str, Any]) -> None:
    """Report which node runs the trial (as a number, so it is a metric) and a loss to rank by."""
    nodes = sorted(node["NodeID"] for node in ray.nodes() if node["Alive"])
    rank = nodes.index(ray.get_runtime_context().get_node_id())
    for i in range(2):
        time.sleep(0.3)  # overlap with the other node's trial, so both nodes get work
        tune.report({"loss": abs(config["x"] - 0.7) + (1 - i), "node_rank": rank})


def test_trials_on_two_nodes_become_one_run_each(two_nodes: Cluster, store: Path, tmp_path: Path) -> None:
    assert len([node for node in ray.nodes() if node["Alive"]]) == 2
    tuner = tune.Tuner(
        tune.with_resources(where_am_i, {"cpu": 1}),
        param_space={"x": tune.grid_search([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])},
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "ray_results"), verbose=0,
                                  callbacks=[ExptrackLoggerCallback(store, directions={"loss": "min"})]),
    )
    results = tuner.fit()
    assert not results.errors
    tracker = ExperimentTracker(store)
    runs = list(tracker.runs())
    assert len(runs) == len(results) == 6
    assert sorted(run.params["x"] for run in runs) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert {run.metrics["node_rank"] for run in runs} == {0.0, 1.0}  # both nodes ran trials
    assert all(run.status == "finished" for run in runs)
    assert tracker.best_run("loss").params == results.get_best_result().config
