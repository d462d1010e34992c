"""Build a real MLflow store with mlflow-skinny, and dump it as MLflow's own client reads it.

Run as a script (MLflow and SQLAlchemy emit deprecation warnings the suite turns into errors, and
MLflow keeps global state), by ``tests/test_import_mlflow.py``:

    python tests/mlflow_source.py build URI     # prints {"running": RUN_ID}
    python tests/mlflow_source.py finish URI RUN_ID
    python tests/mlflow_source.py dump URI      # prints every run as JSON (NaN/Infinity allowed)
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 refuses the file store without it

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient


def build(uri: str) -> None:
    client = MlflowClient(tracking_uri=uri)
    wine = client.create_experiment("wine")
    digits = client.create_experiment("digits")
    now = int(time.time() * 1000)

    def run(experiment: str, name: str, params: dict[str, object], metrics: list[tuple[str, float, int, int]],
            tags: dict[str, str], status: str | None) -> str:
        created = client.create_run(experiment, run_name=name, tags=tags, start_time=now + len(name))
        run_id = created.info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric(key, value, now + ts, step) for key, value, ts, step in metrics],
            params=[Param(key, str(value)) for key, value in params.items()],  # MLflow stores str(value)
        )
        if status is not None:
            client.set_terminated(run_id, status, end_time=now + 5000)
        return run_id

    run(wine, "rf-1", {
        "max_depth": 8, "lr": 0.05, "model": "rf", "use_scaler": True, "class_weight": None,
        "layers": [64, 32], "opt": {"name": "adam", "betas": [0.9, 0.999]}, "zip": "007", "tiny": 1e-05,
        "neg": -3, "big": 2**70, "sci": "1E-5", "text": "hello, world", "tuple": (1, 2), "nan": float("nan"),
    }, [
        *[("loss", 1.0 / (step + 1), step * 10, step) for step in range(5)],
        ("accuracy", 0.84, 60, 0),
        ("val/f1", 0.8, 61, 0),
    ], {"team": "vision", "mlflow.note.content": "first try", "stage": ""}, "FINISHED")
    run(wine, "diverged", {"max_depth": 12, "lr": 1}, [
        ("loss", 0.9, 0, 0), ("loss", float("nan"), 1, 1), ("loss", float("inf"), 2, 2),
        ("accuracy", float("-inf"), 3, 0),
    ], {}, "FAILED")
    run(wine, "stopped", {"max_depth": 4}, [("accuracy", 0.5, 0, 0)], {"team": "vision"}, "KILLED")
    # two points at one step: MLflow's value is the later one
    run(digits, "knn", {"k": 5}, [("accuracy", 0.7, 0, 3), ("accuracy", 0.75, 1, 3), ("accuracy", 0.6, 2, 2)],
        {}, "FINISHED")
    running = run(digits, "still-going", {"k": 9}, [("accuracy", 0.1, 0, 0)], {}, None)
    deleted = run(digits, "deleted", {"k": 1}, [("accuracy", 0.99, 0, 0)], {}, "FINISHED")
    client.delete_run(deleted)
    run("0", "in-default", {"seed": 1}, [("accuracy", 0.5, 0, 0)], {}, "FINISHED")
    gone = client.create_experiment("gone")
    run(gone, "in-deleted-experiment", {"k": 2}, [("accuracy", 0.98, 0, 0)], {}, "FINISHED")
    client.delete_experiment(gone)
    client.set_tag(running, "late", "tag")
    _ = RunTag
    print(json.dumps({"running": running}))


def finish(uri: str, run_id: str) -> None:
    MlflowClient(tracking_uri=uri).set_terminated(run_id, "FINISHED")


def dump(uri: str) -> None:
    client = MlflowClient(tracking_uri=uri)
    runs = []
    for experiment in client.search_experiments(view_type=3):  # ALL: active and deleted
        for found in client.search_runs([experiment.experiment_id], run_view_type=3):
            info, data = found.info, found.data
            runs.append({
                "run_id": info.run_id,
                "experiment": experiment.name,
                "experiment_deleted": experiment.lifecycle_stage != "active",
                "name": info.run_name,
                "status": info.status,
                "lifecycle_stage": info.lifecycle_stage,
                "start_time": info.start_time,
                "params": data.params,
                "metrics": data.metrics,
                "tags": data.tags,
                "history": {
                    key: [[m.step, m.value, m.timestamp] for m in client.get_metric_history(info.run_id, key)]
                    for key in data.metrics
                },
            })
    print(json.dumps(runs))


if __name__ == "__main__":
    command, target, *rest = sys.argv[1:]
    {"build": lambda: build(target), "finish": lambda: finish(target, rest[0]), "dump": lambda: dump(target)}[command]()
