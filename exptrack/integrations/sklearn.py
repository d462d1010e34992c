"""scikit-learn: a fitted hyperparameter search as one run per candidate plus a parent run.

``log_search`` reads ``cv_results_`` after the fit (the search has already run: nothing is
re-fitted) and writes each candidate's params, mean/std test and train score per scorer,
fit/score times and rank in one locked batch, then a parent run with the best params, the best
score and the refitted best estimator as an artifact.  Every scikit-learn scorer is "greater is
better" (``neg_log_loss`` is the negated loss), so the scores are stored as maximised whatever
their name, and ranks as minimised: ``exptrack best mean_test_neg_log_loss`` needs no mode and
agrees with ``search.best_index_``.

A successive-halving search evaluates a candidate once per iteration on more resources: its
rows become one run whose metrics are its last evaluation, whose history holds every iteration,
and whose status is ``pruned`` when it was eliminated before the last iteration -- so only the
candidates of the last iteration, among which scikit-learn picks its best, compete.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

from sklearn.model_selection._search import BaseSearchCV

from exptrack import ExperimentTracker, Run
from exptrack.errors import InvalidRecordError

from ._common import metric_value, start_run_in, storable

__all__ = ["log_search"]

_SCORE_PREFIXES = ("mean_test_", "std_test_", "mean_train_", "std_train_", "rank_test_")
_TIMES = ("mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time")
MODEL_ARTIFACT = "model.pkl"


def log_search(
    tracker: ExperimentTracker,
    search: BaseSearchCV,
    *,
    experiment: str | None = None,
    log_best_model: bool = True,
) -> list[Run]:
    """Log a fitted ``GridSearchCV`` / ``RandomizedSearchCV`` / ``HalvingGridSearchCV``.

    Args:
        tracker: where the runs go.
        search: a fitted search (any ``BaseSearchCV``: halving searches included).
        experiment: the experiment the runs belong to; by default the tracker's.
        log_best_model: pickle ``search.best_estimator_`` into the parent run as ``model.pkl``
            (load it with ``pickle.loads(tracker.load_artifact(parent.run_id, "model.pkl"))``).

    Returns:
        The runs as logged: one per candidate (in the order scikit-learn last evaluated them),
        then the parent run.

    Raises:
        InvalidRecordError: ``search`` is not a fitted scikit-learn search.
    """
    results = _cv_results(search)
    scorers = sorted(key[len("mean_test_"):] for key in results if key.startswith("mean_test_"))
    candidates = _candidates(results, scorers, _primary_scorer(search, scorers))
    directions = {
        **{f"{part}_{scorer}": "max" for scorer in scorers for part in ("mean_test", "mean_train")},
        **{f"rank_test_{scorer}": "min" for scorer in scorers},
    }
    search_name, estimator_name = type(search).__name__, type(search.estimator).__name__
    section = {"search": search_name, "estimator": estimator_name}
    parent_params: dict[str, Any] = {"search": search_name, "estimator": estimator_name}
    if hasattr(search, "best_params_"):
        parent_params["best_params"] = storable(search.best_params_)
    scope = {"experiment": experiment} if experiment is not None else {}
    with start_run_in(tracker, experiment, params=parent_params, name=f"{search_name}({estimator_name})",
                      directions={"best_score": "max"}) as parent:
        items = []
        for number, candidate in enumerate(candidates):
            metrics = {name: value for name in candidate.metric_names(scorers)
                       if (value := candidate.value(name)) is not None}
            item: dict[str, Any] = {
                "params": storable(candidate.params),
                "metrics": metrics,
                "status": candidate.status,
                "name": f"candidate-{number}",
                "directions": {name: mode for name, mode in directions.items() if name in metrics},
                "extra": {"sklearn": {**section, "parent": parent.run_id, "index": candidate.rows[-1],
                                      **candidate.halving()}},
                **scope,
            }
            history = candidate.history(scorers)
            if history:
                item["history"] = history
            items.append(item)
        children = tracker.log_runs(items)
        parent.log_params({"n_candidates": len(candidates), "n_splits": int(search.n_splits_)})
        best_score = metric_value(getattr(search, "best_score_", None))  # absent when refit is a callable
        if best_score is not None:
            parent.log_metric("best_score", best_score)
        if hasattr(search, "refit_time_"):
            parent.log_metric("refit_time", float(search.refit_time_))
        if hasattr(search, "best_index_"):
            best_row = int(search.best_index_)
            best = next(i for i, c in enumerate(candidates) if best_row in c.rows)
            parent.log_params({"best_candidate": best})
            parent.set_tag(f"best_run={children[best].run_id}")
        if log_best_model and hasattr(search, "best_estimator_"):
            parent.log_artifact_bytes(pickle.dumps(search.best_estimator_), MODEL_ARTIFACT)
    return [*children, parent.finish()]  # finish() again returns the record the block appended


def _cv_results(search: object) -> Mapping[str, Any]:
    if not isinstance(search, BaseSearchCV):
        raise InvalidRecordError(
            f"log_search needs a scikit-learn search (GridSearchCV, RandomizedSearchCV, HalvingGridSearchCV...), "
            f"not {type(search).__name__}", "search")
    results = getattr(search, "cv_results_", None)
    if not isinstance(results, Mapping) or "params" not in results:
        raise InvalidRecordError(f"this {type(search).__name__} is not fitted yet; call .fit(X, y) first", "search")
    return results


def _primary_scorer(search: BaseSearchCV, scorers: Sequence[str]) -> str | None:
    """The scorer scikit-learn ranks by (``refit``), or the only one there is."""
    if isinstance(search.refit, str) and search.refit in scorers:
        return search.refit
    return scorers[0] if len(scorers) == 1 else None


class _Candidate:
    """One parameter setting and the ``cv_results_`` rows that evaluated it (several when halving)."""

    def __init__(self, results: Mapping[str, Any], params: Mapping[str, Any], row: int) -> None:
        self.results = results
        self.params = params
        self.rows = [row]
        self.status = "finished"

    def value(self, key: str, row: int | None = None) -> float | None:
        column = self.results.get(key)
        return None if column is None else metric_value(column[self.rows[-1] if row is None else row])

    def metric_names(self, scorers: Sequence[str]) -> list[str]:
        names = [f"{prefix}{scorer}" for scorer in scorers for prefix in _SCORE_PREFIXES]
        return [name for name in (*names, *_TIMES) if name in self.results]

    def halving(self) -> dict[str, Any]:
        if "iter" not in self.results:
            return {}
        return {"iter": int(self.results["iter"][self.rows[-1]]),
                "n_resources": int(self.results["n_resources"][self.rows[-1]]),
                "resources": [int(self.results["n_resources"][row]) for row in self.rows]}  # per iteration

    def history(self, scorers: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
        """One ``(iteration, score)`` point per halving iteration of each mean test score."""
        if "iter" not in self.results:
            return {}
        history: dict[str, list[tuple[int, float]]] = {}
        for scorer in scorers:
            points = [(int(self.results["iter"][row]), value) for row in self.rows
                      if (value := self.value(f"mean_test_{scorer}", row)) is not None]
            if points:
                history[f"mean_test_{scorer}"] = points
        return history


def _candidates(results: Mapping[str, Any], scorers: Sequence[str], primary: str | None) -> list[_Candidate]:
    """The candidates, ordered by the row that last evaluated them, with their status.

    That order is scikit-learn's own: ``best_index_`` is the first of equal best rows (of the
    last iteration when halving), and exptrack's best is the earliest of equal best runs.
    """
    rows: Sequence[Mapping[str, Any]] = results["params"]
    iterations = results.get("iter")
    candidates: list[_Candidate] = []
    if iterations is None:
        candidates = [_Candidate(results, params, row) for row, params in enumerate(rows)]
    else:
        waiting: dict[str, list[_Candidate]] = {}  # evaluated in the previous iteration, by params
        current: dict[str, list[_Candidate]] = {}
        iteration = 0
        for row, params in enumerate(rows):
            if int(iterations[row]) != iteration:
                iteration, waiting, current = int(iterations[row]), current, {}
            key = repr(sorted((str(k), repr(v)) for k, v in params.items()))
            earlier = waiting.get(key)
            candidate = earlier.pop(0) if earlier else None
            if candidate is None:
                candidate = _Candidate(results, params, row)
                candidates.append(candidate)
            else:
                candidate.rows.append(row)
            current.setdefault(key, []).append(candidate)
        last = max((int(i) for i in iterations), default=0)
        for candidate in candidates:
            if int(iterations[candidate.rows[-1]]) < last:
                candidate.status = "pruned"  # eliminated by successive halving
        candidates.sort(key=lambda c: c.rows[-1])
    for candidate in candidates:
        scores = [candidate.value(f"mean_test_{s}") for s in ([primary] if primary else scorers)]
        if all(score is None or math.isnan(score) for score in scores):
            candidate.status = "failed"  # every fit of it raised (error_score=nan)
    return candidates

