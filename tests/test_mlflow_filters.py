"""MLflow's filter strings against the same runs in exptrack and in MLflow's own search.

The strings are those MLflow's search tests use (its parser, in-memory filter, start/end time and
IS NULL tests) plus the ones a user of both trackers writes, on one set of four runs stored in
both.  MLflow's side is the real ``mlflow.utils.search_utils.SearchUtils.filter`` (what its file
store runs) on ``mlflow.entities.Run`` objects.  Each string must be one of:

* ``alike``: both accept it and select the same runs, or both refuse it;
* ``refused``: MLflow accepts it, exptrack refuses it with a message saying why and what to write
  (a feature exptrack does not have: dataset inputs, artifact URIs, users);
* ``extension``: MLflow refuses it, exptrack accepts it (OR, parentheses, typed values, ordering
  of strings, IS NULL on metrics);
* ``different``: both accept it and select different runs, each with its reason in ``DIFFERENT``.

``compatibility_table()`` prints the table the README's "Filters and MLflow" section summarises.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from exptrack import ExperimentTracker, ExptrackError

mlflow_search = pytest.importorskip("mlflow.utils.search_utils")
entities = pytest.importorskip("mlflow.entities")
MlflowException = pytest.importorskip("mlflow.exceptions").MlflowException

BASE = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

# name -> (status, seconds after BASE, duration s, metrics, params (exptrack's typed values), tags)
RUNS: dict[str, tuple[str, int, float, dict[str, float], dict[str, Any], dict[str, str]]] = {
    "alpha": ("failed", 0, 1.0,
              {"acc": 0.94, "rmse": 0.5, "legit name": 0.3, "X-Y-Z": 3, "accuracy.2.0": 6, "key1": 121,
               "spacey name": 6, "XYZ": 3, "X//Y#$$@&Z": 3},
              {"m": "tf", "model": "LinearRegression", "model_class": "LR", "my_param": "A", "cat dog": "pets",
               "p.a.r.a.m": "b", "lr": 0.01, "max_depth": 8},
              {"version": "commit-hash", "source_name": "a notebook", "t.a.g": "a", "env": "prod"}),
    "beta": ("finished", 1, 2.0,
             {"acc": 0.95, "key1": 123, "rmse": 2.0, "XYZ": 3, "a": 0.2},
             {"m": "sk", "my_param": "A", "model": "LR", "max_depth": 12, "lr": 0.1},
             {"tag1": "C"}),
    "gamma": ("killed", 2, 3.0,
              {"key1": 125, "acc": 0.5, "rmse": 1.0, "a": 0.05},
              {"my_param": "B", "m": "tf", "model": "L'Hosp"},
              {"tag1": "D", "version": "v2"}),
    "delta": ("finished", 3, 0.5,
              {"XYZ": 1},
              {},
              {"t.a.g": "b"}),
}

FILTERS = [
    # MLflow's parser tests (strings it accepts)
    "metric.acc >= 0.94", "metric.acc>=100", "params.m!='tf'", 'params."m"!="tf"', 'metric."legit name" >= 0.243',
    "metrics.XYZ = 3", 'params."cat dog" = "pets"', 'metrics."X-Y-Z" = 3', 'metrics."X//Y#$$@&Z" = 3',
    "params.model = 'LinearRegression'", "metrics.rmse < 1 and params.model_class = 'LR'", "",
    "`metric`.a >= 0.1", "`params`.model >= 'LR'", "tags.version = 'commit-hash'",
    "`tags`.source_name = 'a notebook'", 'metrics."accuracy.2.0" > 5', "metrics.`spacey name` > 5",
    'params."p.a.r.a.m" != "a"', 'tags."t.a.g" = "a"', "attribute.artifact_uri = '1/23/4'",
    "attribute.start_time >= 1234", "run.status = 'RUNNING'", "dataset.name = 'my_dataset'",
    "tags.version IS NULL", "tags.version IS NOT NULL", "params.lr IS NULL", "params.lr IS NOT NULL",
    "tags.a IS NULL AND params.m = 'tf'",
    "params.m = 'LR'", 'params.m = "LR"', 'params.model = "L\'Hosp"',
    # MLflow's error tests (strings it refuses)
    "metric.acc >= 0.94; metrics.rmse < 1", "m.acc >= 0.94", "acc >= 0.94", "p.model >= 'LR'", "attri.x != 1",
    "a.x != 1", "model >= 'LR'", "metrics.acc > 0.1 OR params.m = 'LR'", "metrics.acc > 0.1 NAND params.m = 'LR'",
    "metrics.acc > 0.1 AND (params.m = 'LR')", "`metrics.acc > 0.1", "param`.m > 0.1", "attribute.start != 1",
    "attribute.experiment_id != 1", "attribute.lifecycle_stage = 'ACTIVE'", "attribute.name != 1",
    "attribute.time != 1", "attribute._status != 'RUNNING'", "attribute.status = true",
    "dataset.status = 'true'", "metrics.acc IS NULL", "attribute.status IS NULL",
    "metric.model = 'LR'", "metric.model = '5'", "params.acc = 5", "tags.acc = 5", "metrics.acc != metrics.acc",
    "1.0 > metrics.acc", "attribute.status = 1", "params.acc = LR", "tags.acc = LR", "params.acc = `LR`",
    "params.'acc = LR", "params.acc = 'LR", "params.acc = LR'", "tags.acc = = 'LR'",
    "attribute.status IS 'RUNNING'", "params.acc LR !=", "params.acc LR", "metric.acc !=", "foo is null",
    "1=1", "1==2", "params.my_param > 'A'", "attributes.status LIKE 'FIN%'",
    # MLflow's in-memory filtering tests, on these runs
    "attributes.status = 'FAILED'", "metrics.key1 = 123", "metrics.key1 != 123", "metrics.key1 >= 123",
    "params.my_param = 'A'", "tags.tag1 = 'D'", "tags.tag1 != 'D'",
    "params.my_param = 'A' AND attributes.status = 'FAILED'", "datasets.name = 'name1'",
    "datasets.name IN ('name1', 'name2')", "attribute.start_time >= 0", "attribute.start_time > 1",
    "attribute.end_time >= 0", "attribute.end_time > 1", "tags.env IS NOT NULL", "tags.env IS NULL",
    "attribute.user_id = 'user-id2'",
    # what people write, the examples among them
    "attributes.status = 'FINISHED'", "status = 'FINISHED'", "status = 'finished'", "attributes.run_name = 'beta'",
    "run_name = 'gamma'", "attributes.run_name LIKE 'al%'", "attributes.run_name ILIKE 'AL%'",
    "attributes.run_id IN ('RUN_beta', 'RUN_delta')", "attribute.run_id = 'RUN_alpha'",
    "attributes.run_id NOT IN ('RUN_beta')", "params.model LIKE 'L%'", "params.model ILIKE 'l%'",
    "tags.version LIKE 'commit%'", "params.max_depth = '8'", "params.max_depth = 8", "params.lr = '0.01'",
    "params.max_depth > 9", "metrics.acc > 0.9 AND params.m = 'sk'", "attributes.status != 'KILLED'",
    "attributes.status IN ('FAILED', 'KILLED')", "attribute.start_time > START_1500",
    "attribute.end_time < START_2500", "created > START_500", "metrics.`legit name` < 1",
    "tags.`t.a.g` = 'b'", "params.`my_param` = 'B'", "metrics.acc >= 0.94",
]

EXTENSIONS = {
    "metrics.acc > 0.1 OR params.m = 'LR'": "exptrack has OR",
    "metrics.acc > 0.1 AND (params.m = 'LR')": "exptrack has parentheses",
    "metrics.acc IS NULL": "IS NULL works on metrics too",
    "params.max_depth = 8": "typed params: 8 matches a stored 8 (and a stored '8')",
    "params.max_depth > 9": "typed params compare as numbers (MLflow params are text, no < >)",
    "params.my_param > 'A'": "strings are ordered (MLflow has no < > on params)",
    "`params`.model >= 'LR'": "strings are ordered (MLflow parses it, then refuses >= on params)",
    "attribute.status IS NULL": "IS NULL works on every field",
    "attributes.status IN ('FAILED', 'KILLED')": "IN works on every field (MLflow: run_id only)",
    "attribute.name != 1": "exptrack runs have a name field (MLflow's run_name, which exptrack also takes)",
}

REFUSED = {  # MLflow accepts, exptrack refuses with a message naming the reason
    "attribute.artifact_uri = '1/23/4'": "artifacts",
    "dataset.name = 'my_dataset'": "dataset",
    "datasets.name = 'name1'": "dataset",
    "datasets.name IN ('name1', 'name2')": "dataset",
    "attribute.user_id = 'user-id2'": "no user",
}

DIFFERENT = {
    "status = 'finished'": "statuses compare case-insensitively: exptrack stores them in lower case, MLflow in "
                           "upper case and compares exactly, so 'finished' matches nothing there",
}


def _id(name: str) -> str:
    return f"{'abcd'[list(RUNS).index(name)] * 8}{name:0>24}"


def _substitute(text: str) -> str:
    for name in RUNS:
        text = text.replace(f"RUN_{name}", _id(name))
    for offset in (500, 1500, 2500):
        text = text.replace(f"START_{offset}", str(int(BASE.timestamp() * 1000) + offset))
    return text


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExperimentTracker, list[Any]]:
    store: Path = tmp_path_factory.mktemp("mlflow") / "store"
    tracker = ExperimentTracker(store, durable=False)
    mlflow_runs = []
    for name, (status, seconds, duration, metrics, params, tags) in RUNS.items():
        start = BASE + dt.timedelta(seconds=seconds)
        tracker._append_run(run_id=_id(name), timestamp=start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), params=params,
                            metrics=metrics, tags=[f"{k}={v}" for k, v in tags.items()], name=name,
                            status=status, extra={"duration_s": duration})
        start_ms = int(start.timestamp() * 1000)
        info = entities.RunInfo(run_id=_id(name), experiment_id="0", user_id="user-id", status=status.upper(),
                                start_time=start_ms, end_time=start_ms + int(duration * 1000),
                                lifecycle_stage="active", run_name=name)
        data = entities.RunData(metrics=[entities.Metric(k, v, 0, 0) for k, v in metrics.items()],
                                params=[entities.Param(k, str(v)) for k, v in params.items()],
                                tags=[entities.RunTag(k, v) for k, v in tags.items()])
        inputs = entities.RunInputs(dataset_inputs=[entities.DatasetInput(
            dataset=entities.Dataset(name="name1", digest="d1", source_type="local", source="data.csv"), tags=[])])
        mlflow_runs.append(entities.Run(run_info=info, run_data=data, run_inputs=inputs))
    return tracker, mlflow_runs


def mlflow_answer(runs: list[Any], text: str) -> set[str] | str:
    try:
        return {run.info.run_name for run in mlflow_search.SearchUtils.filter(runs, text)}
    except MlflowException as exc:
        return f"refused: {exc.message}"


def exptrack_answer(tracker: ExperimentTracker, text: str) -> set[str] | str:
    try:
        return {name for name in RUNS if _id(name) in {run.run_id for run in tracker.runs(where=text)}}
    except ExptrackError as exc:
        return f"refused: {exc}"


def classify(mlflow: set[str] | str, ours: set[str] | str) -> str:
    if isinstance(mlflow, str) and isinstance(ours, str):
        return "alike"
    if isinstance(mlflow, str):
        return "extension"
    if isinstance(ours, str):
        return "refused"
    return "alike" if mlflow == ours else "different"


@pytest.mark.parametrize("raw", FILTERS)
def test_each_mlflow_filter_selects_the_same_runs_or_is_refused_with_a_reason(
        stores: tuple[ExperimentTracker, list[Any]], raw: str) -> None:
    tracker, mlflow_runs = stores
    text = _substitute(raw)
    mlflow, ours = mlflow_answer(mlflow_runs, text), exptrack_answer(tracker, text)
    kind = classify(mlflow, ours)
    if raw in REFUSED:
        assert kind == "refused", (mlflow, ours)
        assert REFUSED[raw] in str(ours)
    elif raw in EXTENSIONS:
        assert kind == "extension", (mlflow, ours)
    elif raw in DIFFERENT:
        assert kind == "different", (mlflow, ours)
    else:
        assert kind == "alike", (mlflow, ours)
    if isinstance(ours, str):
        assert "\n" not in ours.split("\n  ")[0]  # one line, then the caret lines of a syntax error


def test_typed_params_match_a_number_and_its_text(stores: tuple[ExperimentTracker, list[Any]]) -> None:
    tracker, _ = stores
    assert exptrack_answer(tracker, "params.max_depth = 8") == exptrack_answer(tracker, "params.max_depth = '8'")
    assert exptrack_answer(tracker, "params.max_depth = '8'") == {"alpha"}
    assert exptrack_answer(tracker, "params.lr = 0.01") == {"alpha"}


def test_a_field_no_run_has_names_the_closest(stores: tuple[ExperimentTracker, list[Any]]) -> None:
    tracker, _ = stores
    message = exptrack_answer(tracker, "metrics.acuracy > 0.9")
    assert isinstance(message, str)
    assert "no run in the store has metrics.acuracy" in message
    assert "metrics.acc" in message or "accuracy.2.0" in message
    assert "params.max_dept" in str(exptrack_answer(tracker, "params.max_dept = 8"))
    assert "did you mean params.max_depth" in str(exptrack_answer(tracker, "params.max_dept = 8"))
    assert "tags.versoin" in str(exptrack_answer(tracker, "tags.versoin = 'v2'"))
    assert exptrack_answer(tracker, "tags.nothing IS NULL") == set(RUNS)  # absence is the question
    assert "unknown attribute 'runname'" in str(exptrack_answer(tracker, "attributes.runname = 'x'"))
    assert "unknown status 'done'" in str(exptrack_answer(tracker, "status = 'done'"))
    message = str(exptrack_answer(tracker, "metrix.acc > 0.5"))
    assert "unknown prefix 'metrix' in metrix.acc; did you mean metrics?" in message
    assert "duration_s" in message  # the sections these runs hold


def compatibility_table(stores: tuple[ExperimentTracker, list[Any]]) -> list[tuple[str, str, str]]:
    tracker, mlflow_runs = stores
    rows = []
    for raw in FILTERS:
        text = _substitute(raw)
        mlflow, ours = mlflow_answer(mlflow_runs, text), exptrack_answer(tracker, text)
        kind = classify(mlflow, ours)
        why = EXTENSIONS.get(raw) or DIFFERENT.get(raw) or (str(ours)[9:].split("\n")[0] if kind == "refused" else "")
        rows.append((raw, kind, why))
    return rows


if __name__ == "__main__":  # python tests/test_mlflow_filters.py: the table for the README
    import tempfile

    class _Factory:
        def mktemp(self, name: str) -> Path:
            return Path(tempfile.mkdtemp(prefix=name))

    for raw, kind, why in compatibility_table(stores.__wrapped__(_Factory())):  # type: ignore[attr-defined]
        print(f"| `{raw}` | {kind} | {why} |")
