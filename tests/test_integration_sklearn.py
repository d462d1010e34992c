"""``log_search`` against real scikit-learn searches: one run per candidate, a parent with the
refitted model, directions from the scoring (``neg_log_loss`` is maximised), halving as pruning."""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_iris
from sklearn.exceptions import FitFailedWarning
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV, RandomizedSearchCV
from sklearn.neighbors import KNeighborsClassifier

from exptrack import ExperimentTracker, Run
from exptrack.cli import cli
from exptrack.errors import InvalidRecordError
from exptrack.integrations.sklearn import log_search

X, Y = load_iris(return_X_y=True)
GRID = {"n_neighbors": [1, 3, 5, 9, 15, 25], "weights": ["uniform", "distance"]}

SEARCHES: dict[str, Callable[[str | list[str], str | bool], Any]] = {
    "grid": lambda scoring, refit: GridSearchCV(
        KNeighborsClassifier(), GRID, cv=3, scoring=scoring, refit=refit, return_train_score=True),
    "randomized": lambda scoring, refit: RandomizedSearchCV(
        KNeighborsClassifier(), GRID, n_iter=7, cv=3, scoring=scoring, refit=refit, random_state=0),
    "halving": lambda scoring, refit: HalvingGridSearchCV(
        KNeighborsClassifier(), GRID, cv=3, scoring=scoring, refit=refit, factor=2, min_resources=40,
        random_state=0),
}


@pytest.fixture(scope="module", params=sorted(SEARCHES))
def fitted(request: pytest.FixtureRequest) -> Any:
    """Each kind of search, fitted once for the module on iris with ``neg_log_loss``."""
    return SEARCHES[request.param]("neg_log_loss", True).fit(X, Y)


def candidates_of(runs: list[Run]) -> list[Run]:
    return [run for run in runs if "sklearn" in run]


def best_candidate_row(search: Any) -> int:
    return int(search.best_index_)


def test_one_run_per_candidate_and_best_is_the_searchs(fitted: Any, store: Path) -> None:
    tracker = ExperimentTracker(store, durable=False)
    logged = log_search(tracker, fitted)
    runs = list(tracker.runs())
    assert [run.run_id for run in runs] == [run.run_id for run in logged]
    children, parent = runs[:-1], runs[-1]
    n_candidates = fitted.n_candidates_[0] if hasattr(fitted, "n_candidates_") else len(fitted.cv_results_["params"])
    assert len(children) == n_candidates
    assert all(child["sklearn"]["parent"] == parent.run_id for child in children)
    results = fitted.cv_results_
    for child in children:
        row = child["sklearn"]["index"]
        assert child.params == results["params"][row]
        assert child.metrics["mean_test_score"] == results["mean_test_score"][row]
        assert child.metrics["std_test_score"] == results["std_test_score"][row]
        assert child.metrics["rank_test_score"] == results["rank_test_score"][row]
        assert child.metrics["mean_fit_time"] == results["mean_fit_time"][row]
    # the scores are negated log losses: the best is the highest, with no mode given
    best = tracker.best_run("mean_test_score")
    assert best["sklearn"]["index"] == fitted.best_index_
    assert best.params == fitted.best_params_
    assert best.metrics["mean_test_score"] == fitted.best_score_
    result = CliRunner().invoke(cli, ["--store", str(store), "best", "mean_test_score", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run_id"] == best.run_id
    assert parent.metrics["best_score"] == fitted.best_score_
    assert f"best_run={best.run_id}" in parent.tags


def test_the_parent_holds_the_refitted_best_estimator(fitted: Any, tracker: ExperimentTracker) -> None:
    parent = log_search(tracker, fitted)[-1]
    model = pickle.loads(tracker.load_artifact(parent.run_id, "model.pkl"))  # noqa: S301 - our own artifact
    assert model.get_params() == fitted.best_estimator_.get_params()
    assert np.array_equal(model.predict_proba(X), fitted.predict_proba(X))
    assert parent.params["best_params"] == fitted.best_params_
    assert parent.metrics["refit_time"] == fitted.refit_time_


def test_halving_keeps_one_run_per_candidate_and_prunes_the_eliminated(tracker: ExperimentTracker) -> None:
    search = SEARCHES["halving"]("neg_log_loss", True).fit(X, Y)
    children = candidates_of(log_search(tracker, search))
    results = search.cv_results_
    last = int(max(results["iter"]))
    assert len(children) == search.n_candidates_[0]
    finished = [c for c in children if c.status == "finished"]
    assert len(finished) == search.n_candidates_[-1]
    assert all(c["sklearn"]["iter"] == last for c in finished)
    assert all(c["sklearn"]["iter"] < last for c in children if c.status == "pruned")
    best = tracker.best_run("mean_test_score")
    assert best["sklearn"]["index"] == search.best_index_
    points = tracker.history(best.run_id, "mean_test_score")
    assert [p["step"] for p in points] == list(range(last + 1))
    assert best["sklearn"]["resources"] == sorted(set(results["n_resources"].tolist()))
    assert points[-1]["value"] == best.metrics["mean_test_score"]


@pytest.mark.parametrize("kind", ["grid", "randomized"])  # halving takes one scorer
def test_several_scorers_each_keep_greater_is_better(kind: str, tracker: ExperimentTracker) -> None:
    search = SEARCHES[kind](["accuracy", "neg_log_loss"], "neg_log_loss").fit(X, Y)
    log_search(tracker, search, log_best_model=False)
    results = search.cv_results_
    best = tracker.best_run("mean_test_neg_log_loss")
    assert best["sklearn"]["index"] == search.best_index_
    assert tracker.best_run("rank_test_neg_log_loss")["sklearn"]["index"] == search.best_index_
    finished = [r for r in candidates_of(list(tracker.runs())) if r.status == "finished"]
    top_accuracy = max(results["mean_test_accuracy"][r["sklearn"]["index"]] for r in finished)
    assert tracker.best_run("mean_test_accuracy").metrics["mean_test_accuracy"] == top_accuracy
    parent = next(r for r in tracker.runs() if "sklearn" not in r)
    assert "model.pkl" not in tracker.artifacts(parent.run_id)


class Fragile(BaseEstimator, ClassifierMixin):  # type: ignore[misc]
    """A classifier whose fit raises for one setting, as a bad hyperparameter would."""

    def __init__(self, breaks: bool = False) -> None:
        self.breaks = breaks

    def fit(self, x: Any, y: Any) -> Fragile:
        if self.breaks:
            raise ValueError("this setting cannot be fitted")
        self.classes_ = np.unique(y)
        return self

    def predict(self, x: Any) -> Any:
        return np.full(len(x), self.classes_[0])


def test_a_candidate_whose_every_fit_failed_is_failed(tracker: ExperimentTracker) -> None:
    search = GridSearchCV(Fragile(), {"breaks": [False, True]}, cv=3, error_score=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitFailedWarning)
        warnings.simplefilter("ignore", UserWarning)  # "one or more of the test scores are non-finite"
        search.fit(X, Y)
    children = candidates_of(log_search(tracker, search))
    assert [(c.params["breaks"], c.status) for c in children] == [(False, "finished"), (True, "failed")]
    assert tracker.best_run("mean_test_score").params == {"breaks": False}


def test_runs_go_to_the_named_experiment(fitted: Any, tracker: ExperimentTracker) -> None:
    runs = log_search(tracker, fitted, experiment="knn-search", log_best_model=False)
    assert {run["experiment"] for run in runs} == {"knn-search"}


def test_an_unfitted_search_or_an_estimator_is_a_clear_error(tracker: ExperimentTracker) -> None:
    with pytest.raises(InvalidRecordError, match=r"not fitted yet; call \.fit"):
        log_search(tracker, GridSearchCV(KNeighborsClassifier(), GRID))
    with pytest.raises(InvalidRecordError, match="needs a scikit-learn search"):
        log_search(tracker, KNeighborsClassifier().fit(X, Y))  # type: ignore[arg-type]
    assert list(tracker.runs()) == []


def test_a_search_without_refit_logs_its_candidates_and_a_parent_without_a_model(tracker: ExperimentTracker) -> None:
    search = GridSearchCV(KNeighborsClassifier(), GRID, cv=3, scoring=["accuracy", "neg_log_loss"], refit=False)
    runs = log_search(tracker, search.fit(X, Y))
    children, parent = runs[:-1], runs[-1]
    assert len(children) == len(search.cv_results_["params"])
    assert "best_score" not in parent.metrics
    assert tracker.artifacts(parent.run_id).keys() <= {"code.patch"}  # no model.pkl: nothing was refitted
    ranks = search.cv_results_["rank_test_neg_log_loss"]
    first = int(ranks.argmin())
    assert tracker.best_run("mean_test_neg_log_loss")["sklearn"]["index"] == first
