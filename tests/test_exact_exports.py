"""Exports never lose or blur a value: tags with commas, a param "a.b" beside a nested a.b,
floats to the last bit in every --csv, typed Parquet (timestamps, lists)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from exptrack import ExperimentTracker, Run
from exptrack.cli import cli
from exptrack.query.columns import flat_params, lookup, quote_key, split_column

THIRD = 1 / 3
SUM = 0.1 + 0.2  # 0.30000000000000004: six significant digits would write 0.3


def rows(store: Path, args: Sequence[str]) -> list[dict[str, str]]:
    result = CliRunner().invoke(cli, ["--store", str(store), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout, newline="")))


@pytest.fixture
def logged(tracker: ExperimentTracker) -> list[Run]:
    return [
        tracker.log_run(params={"a.b": 1, "a": {"b": 2}, "lr": THIRD, "layers": [64, 32]},
                        metrics={"accuracy": SUM, "loss": 1e-17}, tags=["a,b", "c"]),
        tracker.log_run(params={"a.b": 3, "lr": 2.5e-300, "names": ["x", "y"]},
                        metrics={"accuracy": 0.25, "loss": math.inf}, tags=["a", "b,c"]),
    ]


@pytest.mark.parametrize("command", [["export"], ["runs", "--csv"], ["top", "accuracy", "--csv"]])
def test_csv_tags_are_a_json_list_so_commas_inside_tags_stay_apart(store: Path, logged: list[Run],
                                                                   command: list[str]) -> None:
    got = {row["run_id"]: json.loads(row["tags"]) for row in rows(store, command)}
    assert got == {run.run_id: list(run.tags) for run in logged}


@pytest.mark.parametrize("command", [["export"], ["runs", "--csv"], ["show", "ID", "--csv"],
                                     ["best", "accuracy", "--csv"], ["top", "accuracy", "--csv"]])
def test_csv_floats_are_exact_and_dotted_param_names_never_collapse(store: Path, logged: list[Run],
                                                                     command: list[str]) -> None:
    command = [logged[0].run_id if arg == "ID" else arg for arg in command]
    first = next(row for row in rows(store, command) if row["run_id"] == logged[0].run_id)
    assert float(first["metrics.accuracy"]) == SUM  # read back bit for bit
    assert first["metrics.accuracy"] == repr(SUM)
    assert float(first["params.lr"]) == THIRD
    assert float(first["metrics.loss"]) == 1e-17
    # the flat key "a.b" and the nested a -> b each keep their own column
    assert first["params.`a.b`"] == "1"
    assert first["params.a.b"] == "2"


def test_parquet_keeps_both_columns_a_timestamp_type_and_list_types(store: Path, logged: list[Run],
                                                                     tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "runs.parquet"
    result = CliRunner().invoke(cli, ["--store", str(store), "export", "-o", str(target)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(target)
    schema = table.schema
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("tags").type == pa.list_(pa.string())
    assert schema.field("params.layers").type.value_type == pa.int64()
    assert schema.field("params.names").type.value_type == pa.string()
    data = table.to_pylist()
    assert [row["params.`a.b`"] for row in data] == [1, 3]
    assert [row["params.a.b"] for row in data] == [2, None]
    assert data[0]["params.lr"] == THIRD
    assert data[1]["params.names"] == ["x", "y"]
    assert data[0]["timestamp"].isoformat().replace("+00:00", "Z") == logged[0].timestamp


def test_parquet_timestamps_that_do_not_parse_stay_text(store: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    store.mkdir()
    (store / "runs.jsonl").write_text('{"run_id":"hand-made","timestamp":"last tuesday","params":{},"metrics":{}}\n')
    target = tmp_path / "runs.parquet"
    assert CliRunner().invoke(cli, ["--store", str(store), "export", "-o", str(target)]).exit_code == 0
    assert pq.read_table(target).column("timestamp").to_pylist() == ["last tuesday"]  # kept, not nulled


def test_to_pandas_keeps_both_columns(tracker: ExperimentTracker, logged: list[Run]) -> None:
    pytest.importorskip("pandas")
    frame = tracker.to_pandas()
    assert frame["params.`a.b`"].tolist() == [1, 3]
    assert frame["params.a.b"].tolist()[0] == 2
    assert frame["metrics.accuracy"].tolist()[0] == SUM


keys = st.text(alphabet=st.sampled_from("ab.`_ é"), max_size=4)
trees = st.recursive(
    st.integers(0, 9),
    lambda children: st.dictionaries(keys, children, min_size=1, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(keys, trees, max_size=4))
def test_flat_column_names_are_unique_and_lead_back_to_their_value(params: dict[str, object]) -> None:
    flat = flat_params(params)
    leaves: list[tuple[list[str], object]] = []

    def walk(path: list[str], node: object) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk([*path, key], value)
        else:
            leaves.append((path, node))

    for key, value in params.items():
        walk([key], value)
    assert len(flat) == len(leaves)  # one column per value: nothing collapsed
    for name, value in flat.items():
        keys_ = split_column(name)
        assert keys_[0] == "params"
        assert lookup({"params": params}, name) == value
        assert ".".join([keys_[0], *map(quote_key, keys_[1:])]) == name
