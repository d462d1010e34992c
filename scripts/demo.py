"""A real hyperparameter search, logged by parallel workers into one exptrack store.

Four worker processes cross-validate models on scikit-learn's wine data (it ships inside the
package: nothing is downloaded) and log every trial at once into the same store: params, the
per-fold accuracy as metric history, the data file's fingerprint, git state, system info and the
trained model as an artifact.  Then the script prints the best run, the top 5 and the summary,
and the commands that take it from there.

The store is ``experiments`` (or ``$EXPTRACK_STORE``), the one ``exptrack`` reads by default, so
the printed commands run as shown from the same directory.  An existing store that the demo did
not make is never emptied: pass ``--store DIR`` (the printed commands then carry it too).

    python scripts/demo.py [--store DIR] [--workers 4] [--trials 32]
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import shlex
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from exptrack import ExperimentTracker
from exptrack.query.output import render, run_columns
from exptrack.repro.describe import describe_run

DEMO_MARK = ".exptrack-demo"


def search_space(trials: int, seed: int) -> list[dict[str, Any]]:
    """Random configurations over four model families (a seeded, repeatable search)."""
    rng = random.Random(seed)
    configs: list[dict[str, Any]] = []
    for i in range(trials):
        family = ("random_forest", "logistic_regression", "svm", "knn")[i % 4]
        if family == "random_forest":
            params = {"n_estimators": rng.choice([25, 50, 100]), "max_depth": rng.choice([2, 4, 8, None]),
                      "min_samples_leaf": rng.choice([1, 2, 4])}
        elif family == "logistic_regression":
            params = {"C": round(10 ** rng.uniform(-3, 2), 5), "scale": True}
        elif family == "svm":
            params = {"C": round(10 ** rng.uniform(-2, 2), 5), "gamma": rng.choice(["scale", "auto"]),
                      "scale": True}
        else:
            params = {"n_neighbors": rng.choice([1, 3, 5, 9, 15]), "scale": rng.choice([True, False])}
        configs.append({"model": family, "seed": seed + i, **params})
    return configs


def build_model(config: dict[str, Any]) -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    model = config["model"]
    if model == "random_forest":
        return RandomForestClassifier(n_estimators=config["n_estimators"], max_depth=config["max_depth"],
                                      min_samples_leaf=config["min_samples_leaf"], random_state=config["seed"],
                                      n_jobs=1)
    if model == "logistic_regression":
        estimator: Any = LogisticRegression(C=config["C"], max_iter=500)
    elif model == "svm":
        estimator = SVC(C=config["C"], gamma=config["gamma"])
    else:
        estimator = KNeighborsClassifier(n_neighbors=config["n_neighbors"])
    return make_pipeline(StandardScaler(), estimator) if config["scale"] else estimator


def trial(store: str, data_file: str, config: dict[str, Any]) -> str:
    """One trial in a worker process: cross-validate, log folds, store the fitted model."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold

    table = np.loadtxt(data_file, delimiter=",", skiprows=1)
    features, target = table[:, :-1], table[:, -1].astype(int)
    tracker = ExperimentTracker(store)
    with tracker.start_run(params=config, data=[data_file], seed=config["seed"],
                           tags=["demo", f"model={config['model']}"]) as run:
        folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=config["seed"])
        accuracies, f1s = [], []
        start = time.perf_counter()
        for step, (train, test) in enumerate(folds.split(features, target)):
            model = build_model(config).fit(features[train], target[train])
            predicted = model.predict(features[test])
            accuracies.append(accuracy_score(target[test], predicted))
            f1s.append(f1_score(target[test], predicted, average="macro"))
            run.log_metric("fold_accuracy", accuracies[-1], step=step)
        run.log_metric("accuracy", float(np.mean(accuracies)))
        run.log_metric("f1", float(np.mean(f1s)))
        run.log_metric("accuracy_sd", float(np.std(accuracies)))
        run.log_metric("fit_seconds", time.perf_counter() - start)
        final = build_model(config).fit(features, target)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.pkl"
            path.write_bytes(pickle.dumps(final))
            run.log_artifact(path)
    return run.run_id


def prepare_store(store: Path, fresh: bool) -> Path:
    """The demo's store (emptied first when it is the demo's own) and the wine data as CSV."""
    if fresh and store.exists():
        if not (store / DEMO_MARK).exists():
            sys.exit(f"{store} exists and was not made by this demo; pass another --store (or --keep to add to it)")
        shutil.rmtree(store)
    store.mkdir(parents=True, exist_ok=True)
    (store / DEMO_MARK).touch()
    from sklearn.datasets import load_wine

    wine = load_wine()
    data_file = store / "data" / "wine.csv"
    data_file.parent.mkdir(exist_ok=True)
    header = ",".join([*wine.feature_names, "target"])
    rows = [",".join(f"{v:g}" for v in [*x, y]) for x, y in zip(wine.data, wine.target)]
    data_file.write_text("\n".join([header, *rows]) + "\n")
    return data_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path(default_store()),
                        help="store directory (default: exptrack's own default, so its commands find it)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="add to the store instead of starting fresh")
    args = parser.parse_args()
    try:
        import sklearn  # noqa: F401
    except ImportError:
        sys.exit("the demo needs scikit-learn: python -m pip install -e '.[demo]'")

    data_file = prepare_store(args.store, fresh=not args.keep)
    configs = search_space(args.trials, args.seed)
    print(f"searching {len(configs)} configurations with {args.workers} worker processes "
          f"into {args.store}/runs.jsonl ...")
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(trial, str(args.store), str(data_file), config) for config in configs]
        run_ids = [future.result() for future in futures]
    print(f"{len(run_ids)} runs logged in {time.perf_counter() - started:.1f} s\n")

    tracker = ExperimentTracker(args.store)
    best = tracker.best_run("accuracy")
    print("== best run (accuracy) ==")
    print(describe_run(best))
    top = tracker.top_runs("accuracy", k=5)
    print("\n== top 5 by accuracy ==")
    columns = ["run_id", "metrics.accuracy", "metrics.f1", "params.model", "params.C", "params.n_estimators",
               "params.max_depth", "params.n_neighbors", "params.scale"]
    print(render(top, [c for c in columns if c in run_columns(top)]), end="")
    summary = tracker.summary()
    print("\n== summary ==")
    print(f"runs: {summary['total_runs']}   corrupt lines skipped: {summary['corrupt_lines']}   "
          f"status: {summary['statuses']}")
    rows = [{"metric": name, **stats} for name, stats in summary["metrics"].items()]
    print(render(rows, ["metric", "count", "min", "max", "mean", "std", "mode", "best_value"]), end="")

    model = pickle.loads(tracker.load_artifact(best.run_id, "model.pkl"))  # noqa: S301 - our store, sha256 checked
    print(f"\nbest model loaded back from the store (sha256 verified): {model!r}"[:200])
    where_ui = "" if args.store == Path(default_store()) else f" --store {shlex.quote(str(args.store))}"
    print("\n== see and compare the runs in a browser (python -m pip install -e '.[ui]') ==")
    print(f"  exptrack ui{where_ui}                      then open http://127.0.0.1:5177")
    print(f"  exptrack report -o report.html{where_ui}   one self-contained file that opens offline")
    print("\n== get the best run back (run these from this directory) ==")
    where = "" if args.store == Path(default_store()) else f" --store {shlex.quote(str(args.store))}"
    for command in (
        "best accuracy",
        "top accuracy -k 5",
        f"show {best.run_id}",
        f"reproduce {best.run_id} --artifact model.pkl --out best_model.pkl",
        f"diff {best.run_id} {top[-1].run_id}",
    ):
        print(f"  exptrack {command}{where}")


def default_store() -> str:
    """The store ``exptrack`` opens without ``--store``: the printed commands need no option."""
    return os.environ.get("EXPTRACK_STORE") or "experiments"


if __name__ == "__main__":
    main()
