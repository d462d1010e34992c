"""The columnar index answers exactly what reading the log answers.

Filtered ``top_runs`` / ``best_run`` / ``summary``, filtered listings (``runs``, ``recent_runs``)
are computed twice on the same store: through the columns (NumPy installed) and through the log
(the columnar path switched off), and must agree, errors included, for random stores (every kind
of value: strings, numeric strings, ints beyond 2**53, floats, NaN, booleans, null, lists, missing
fields; several statuses and experiments; edits and deletions) and random filters.  The
deterministic tests prove the columns are really used, and that they survive what a disposable
file must survive: appends, a crashed refresh, a forged column, a rewritten log, caps.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exptrack import ExperimentTracker
from exptrack.cli import cli
from exptrack.query import column_answers, columnar
from exptrack.store.index import columns
from exptrack.store.logs import detach_store_log

pytest.importorskip("numpy")

MODELS = ["rf", "svm", "RF", "10", "", "r_f", "1e3"]
DEPTHS: list[Any] = [1, 5, 10, 12, 10.0, 10.5, -3, 2**60, "10", "12", "abc", True, False, None, [1, 2]]
METRICS: list[Any] = [0.5, 0.9, 0.9, 1, 3, -0.0, 0.0, float("nan"), float("inf"), 2**60, 0.75]


@contextmanager
def log_only() -> Iterator[None]:
    """The reader's columnar paths switched off: every answer comes from the log."""
    with mock.patch.object(column_answers, "_numpy", return_value=False):
        yield


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return ("ok", call())
    except Exception as exc:  # the same error, worded the same, is part of the answer
        return ("error", type(exc).__name__, str(exc))


def answers(store: Path, where: str, metric: str, k: int, mode: str | None, status: Any, n: int,
            sort: str = "metrics.accuracy desc") -> dict[str, Any]:
    tracker = ExperimentTracker(store)
    try:
        return {
            "sorted": outcome(lambda: [(r.run_id, total) for r, total in zip(
                *_sorted(tracker, sort, where, n), strict=False)]),
            "sorted_all": outcome(lambda: [r.run_id for r in tracker.sorted_runs(sort)[0]]),
            "count": outcome(lambda: tracker.count_runs(where=where)),
            "top": outcome(lambda: [r.run_id for r in tracker.top_runs(metric, k, mode=mode, where=where,
                                                                       status=status)]),
            "summary": outcome(lambda: json.dumps(tracker.summary(where=where, status=status), sort_keys=True,
                                                  default=str)),
            "runs": outcome(lambda: [r.to_dict() for r in tracker.runs(where=where)]),
            "deleted": outcome(lambda: [r.run_id for r in tracker.runs(where=where, include_deleted=True)]),
            "recent": outcome(lambda: [r.to_dict() for r in tracker.recent_runs(n, where=where)]),
        }
    finally:
        detach_store_log(tracker.store)


def _sorted(tracker: ExperimentTracker, sort: str, where: str, n: int) -> tuple[list[Any], list[int]]:
    runs, total = tracker.sorted_runs(sort, where=where, limit=n, offset=1)
    return runs, [total] * len(runs)


def both(store: Path, *args: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    fast = answers(store, *args)
    with log_only():
        slow = answers(store, *args)
    return fast, slow


# -- random stores and filters ----------------------------------------------------------------------

run_spec = st.fixed_dictionaries(
    {
        "model": st.sampled_from([*MODELS, None, "missing"]),
        "depth": st.sampled_from([*DEPTHS, "missing"]),
        "accuracy": st.sampled_from([*METRICS, "missing"]),
        "loss": st.sampled_from([*METRICS, "missing"]),
        "status": st.sampled_from(["finished", "finished", "failed", "pruned"]),
        "experiment": st.sampled_from([None, "wine", "default"]),
        "tags": st.lists(st.sampled_from(["hot", "cold", "team=a"]), max_size=2, unique=True),
        "directions": st.sampled_from([None, None, None, {"loss": "max"}]),
    }
)

JUNK = [
    b"garbage\n",
    b'{"schema":2,"run_id":"forged","timestamp":"","status":"finished","params":{"model":"rf","depth":12},'
    b'"metrics":{"accuracy":99.0,"loss":99.0},"crc":"00000000"}\n',  # a checksum that does not match
    b'{"schema":2,"run_id":"../x","params":{"model":"rf"},"metrics":{"accuracy":98.0}}\n',  # an unsafe id
    b'{"kind":"resume","run_id":"nocount","params":{"model":"rf"},"metrics":{"accuracy":97.0}}\n',
    b'{"run_id":"textmetric","params":{"model":"rf"},"metrics":{"accuracy":"high"}}\n',
]

literal = st.one_of(
    st.sampled_from(["'rf'", "'RF'", "'10'", "'abc'", "'r%'", "'1e3'", "''", "true", "false"]),
    st.sampled_from(["10", "10.0", "0.9", "-0", "1152921504606846976", "1e400", "3"]),
)
field = st.sampled_from(["params.model", "params.depth", "metrics.accuracy", "metrics.loss", "status",
                         "tags", "name", "params.missing_everywhere"])


def leaf_text(draw: st.DrawFn) -> str:
    name = draw(field)
    if name == "params.missing_everywhere":
        return f"{name} IS {draw(st.sampled_from(['NULL', 'NOT NULL']))}"
    if name == "status":
        return f"status {draw(st.sampled_from(['=', '!='] ))} '{draw(st.sampled_from(['finished', 'failed']))}'"
    op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "IN", "NOT IN", "LIKE", "NOT LIKE", "ILIKE",
                               "IS NULL", "IS NOT NULL"]))
    if op.startswith("IS"):
        return f"{name} {op}"
    if op.endswith("IN"):
        items = draw(st.lists(literal, min_size=1, max_size=3))
        return f"{name} {op} ({', '.join(items)})"
    if op.endswith("LIKE"):
        return f"{name} {op} {draw(st.sampled_from(['%f', 'r_', 'RF', '1%', '%']))!r}"
    return f"{name} {op} {draw(literal)}"


@st.composite
def filters(draw: st.DrawFn, depth: int = 0) -> str:
    if depth >= 2 or draw(st.booleans()):
        return leaf_text(draw)
    word = draw(st.sampled_from(["and", "or", "not"]))
    if word == "not":
        return f"not ({draw(filters(depth + 1))})"
    return f"({draw(filters(depth + 1))}) {word} ({draw(filters(depth + 1))})"


def write_runs(tracker: ExperimentTracker, specs: list[dict[str, Any]]) -> list[str]:
    ids = []
    for spec in specs:
        params = {key: spec[key] for key in ("model", "depth") if spec[key] != "missing"}
        metrics = {key: spec[key] for key in ("accuracy", "loss") if spec[key] != "missing"}
        run = tracker.log_run(params=params, metrics=metrics, tags=spec["tags"], status=spec["status"],
                              experiment=spec["experiment"], directions=spec["directions"])
        ids.append(run.run_id)
    return ids


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=st.lists(run_spec, min_size=0, max_size=25),
    later=st.lists(run_spec, min_size=0, max_size=8),
    where=filters(),
    metric=st.sampled_from(["accuracy", "loss", "acuracy"]),
    k=st.sampled_from([1, 3, 10]),
    mode=st.sampled_from([None, "max", "min"]),
    status=st.sampled_from(["finished", "any", ["finished", "failed"]]),
    n=st.sampled_from([1, 4, 50]),
    sort=st.lists(st.tuples(st.sampled_from(["params.model", "params.depth", "metrics.accuracy", "metrics.loss",
                                             "timestamp"]), st.sampled_from(["", " desc", " asc"])),
                  min_size=1, max_size=2).map(lambda keys: ", ".join(f + d for f, d in keys)),
    edits=st.lists(st.tuples(st.sampled_from(["delete", "tag", "rename"]), st.integers(0, 40)), max_size=3),
    junk=st.lists(st.sampled_from(JUNK), max_size=3),
)
def test_columns_answer_what_the_log_answers(first: list[dict[str, Any]], later: list[dict[str, Any]], where: str,
                                             metric: str, k: int, mode: str | None, status: Any, n: int,
                                             sort: str, edits: list[tuple[str, int]], junk: list[bytes]) -> None:
    store = Path(tempfile.mkdtemp(prefix="exptrack-columnar-"))
    try:
        tracker = ExperimentTracker(store)
        ids = write_runs(tracker, first)
        assert answers(store, where, metric, k, mode, status, n) is not None  # columns built at this point
        with open(store / "runs.jsonl", "ab") as log:
            log.write(b"".join(junk))  # lines the index reports corrupt: never an answer
        ids += write_runs(tracker, later)  # ... and extended here
        for kind, which in edits:
            if ids:
                run_id = ids.pop(which % len(ids)) if kind == "delete" else ids[which % len(ids)]
                if kind == "delete":
                    tracker.delete_runs([run_id])
                elif kind == "tag":
                    tracker.set_tags(run_id, add=["hot"])
                else:
                    tracker.rename(run_id, "renamed")
        detach_store_log(store)
        tracker.close()  # the writer's descriptors: hundreds of examples run in one process
        fast, slow = both(store, where, metric, k, mode, status, n, sort)
        assert fast == slow
    finally:
        tracker.close()
        shutil.rmtree(store, ignore_errors=True)


# -- the columns are used, and survive what a disposable file must ----------------------------------


@pytest.fixture
def sweep(tmp_path: Path) -> Iterator[Path]:
    tracker = ExperimentTracker(tmp_path)
    for i in range(300):
        tracker.log_run(params={"model": ["rf", "svm", "knn"][i % 3], "max_depth": i % 17, "lr": 1 / (i + 1)},
                        metrics={"accuracy": (i * 37 % 101) / 100, "val_loss": 1 - i / 300},
                        status="failed" if i % 11 == 0 else "finished")
    tracker.close()
    detach_store_log(tmp_path)
    return tmp_path


WHERE = "params.model = 'rf' and params.max_depth > 10"


@pytest.fixture
def counted() -> Iterator[dict[str, int]]:
    """How many filtered answers the columns gave (not None) and how many lines they read."""
    calls = {"answers": 0, "reads": 0}
    real_top, real_groups, real_rows = (column_answers.ColumnAnswers.top, column_answers.ColumnAnswers.summary_groups,
                                        column_answers.ColumnAnswers.matching_rows)

    def wrap(real: Callable[..., Any]) -> Callable[..., Any]:
        def spy(self: Any, *args: Any) -> Any:
            read = args[-1]

            def counting(offset: int) -> Any:
                calls["reads"] += 1
                return read(offset)

            result = real(self, *args[:-1], counting)
            calls["answers"] += result is not None
            return result
        return spy

    with mock.patch.object(column_answers.ColumnAnswers, "top", wrap(real_top)), \
            mock.patch.object(column_answers.ColumnAnswers, "summary_groups", wrap(real_groups)), \
            mock.patch.object(column_answers.ColumnAnswers, "matching_rows", wrap(real_rows)):
        yield calls


def test_filtered_top_reads_only_the_runs_it_returns(sweep: Path, counted: dict[str, int]) -> None:
    top = ExperimentTracker(sweep).top_runs("accuracy", 5, where=WHERE)
    assert counted == {"answers": 1, "reads": 5}
    with log_only():
        assert [r.run_id for r in ExperimentTracker(sweep).top_runs("accuracy", 5, where=WHERE)] == \
            [r.run_id for r in top]
    assert (sweep / ".index" / "columns" / "meta.json").exists()


def test_undecided_runs_are_read_and_decided_by_the_filter(sweep: Path, counted: dict[str, int]) -> None:
    where = "params.model = 'rf' and tags = 'hot'"  # tags have no column: every rf run is read
    tracker = ExperimentTracker(sweep)
    some = tracker.runs(where="params.model = 'rf'")
    chosen = [run.run_id for run in some][:7]
    for run_id in chosen:
        tracker.set_tags(run_id, add=["hot"])
    found = [r.run_id for r in tracker.runs(where=where)]
    assert found == chosen
    assert counted["answers"] >= 1
    assert counted["reads"] >= 100


def test_columns_follow_appends_edits_and_deletions(sweep: Path, counted: dict[str, int]) -> None:
    tracker = ExperimentTracker(sweep)
    before = tracker.top_runs("accuracy", 3, where=WHERE)
    best = tracker.log_run(params={"model": "rf", "max_depth": 16}, metrics={"accuracy": 2.0})
    assert tracker.best_run("accuracy", where=WHERE).run_id == best.run_id
    tracker.delete_runs([best.run_id])
    assert [r.run_id for r in tracker.top_runs("accuracy", 3, where=WHERE)] == [r.run_id for r in before]
    tracker.set_tags(before[0].run_id, add=["winner"])
    assert tracker.best_run("accuracy", where=WHERE).tags == ("winner",)
    assert counted["answers"] == 4
    fresh = ExperimentTracker(sweep)
    assert [r.run_id for r in fresh.runs(where=WHERE, include_deleted=True)][-1] == best.run_id


def test_a_param_first_seen_late_is_missing_in_earlier_rows(sweep: Path) -> None:
    tracker = ExperimentTracker(sweep)
    tracker.top_runs("accuracy", 1, where=WHERE)  # columns built without `optimizer`
    late = tracker.log_run(params={"model": "rf", "optimizer": "adam"}, metrics={"accuracy": 0.1})
    assert [r.run_id for r in tracker.runs(where="params.optimizer = 'adam'")] == [late.run_id]
    assert len(list(tracker.runs(where="params.optimizer IS NULL"))) == 300


def test_a_crashed_refresh_leaves_nothing_that_is_read(sweep: Path) -> None:
    tracker = ExperimentTracker(sweep)
    expected = [r.run_id for r in tracker.top_runs("accuracy", 10, where=WHERE)]
    folder = sweep / ".index" / "columns"
    for name in os.listdir(folder):
        if name.endswith((".k", ".f", ".s")) or name in ("off", "grp", "dir"):
            with open(folder / name, "ab") as handle:
                handle.write(b"\xff" * 24)  # rows a refresh appended but never committed
    assert [r.run_id for r in ExperimentTracker(sweep).top_runs("accuracy", 10, where=WHERE)] == expected
    extra = tracker.log_run(params={"model": "rf", "max_depth": 11}, metrics={"accuracy": 5.0})
    assert ExperimentTracker(sweep).best_run("accuracy", where=WHERE).run_id == extra.run_id


def test_a_forged_column_is_caught_and_the_answer_still_comes_from_the_log(sweep: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    tracker = ExperimentTracker(sweep)
    expected = [r.run_id for r in tracker.top_runs("accuracy", 5, where=WHERE)]
    meta = json.loads((sweep / ".index" / "columns" / "meta.json").read_text())
    number = next(f[2] for f in meta["fields"] if f[:2] == ["params", "model"])
    codes = sweep / ".index" / "columns" / f"{number}.s"
    rf = json.loads((sweep / ".index" / "columns" / f"{number}.d").read_text()).index("rf")
    codes.write_bytes(rf.to_bytes(4, "little") * meta["rows"])  # every run now looks like an rf run
    assert [r.run_id for r in ExperimentTracker(sweep).top_runs("accuracy", 5, where=WHERE)] == expected
    assert "columnar index" in caplog.text
    assert "disagrees" in caplog.text


def test_a_rewritten_log_rebuilds_the_columns(sweep: Path) -> None:
    tracker = ExperimentTracker(sweep)
    tracker.top_runs("accuracy", 1, where=WHERE)
    victims = [r.run_id for r in tracker.runs(where="params.model = 'rf'")][:50]
    tracker.delete_runs(victims)
    tracker.compact()  # a new log file: another identity, another index generation
    fast = [r.run_id for r in ExperimentTracker(sweep).runs(where=WHERE)]
    with log_only():
        slow = [r.run_id for r in ExperimentTracker(sweep).runs(where=WHERE)]
    assert fast == slow
    assert not set(fast) & set(victims)


def test_capped_dictionaries_and_fields_give_the_same_answers(sweep: Path) -> None:
    from exptrack.store.index import columns_build

    with mock.patch.object(columns_build, "MAX_STRINGS", 2), mock.patch.object(columns_build, "MAX_FIELDS", 3):
        fast = [r.run_id for r in ExperimentTracker(sweep).runs(where="params.model = 'knn' or params.lr < 0.01")]
        meta = json.loads((sweep / ".index" / "columns" / "meta.json").read_text())
    assert meta["capped"] is True
    assert len(meta["fields"]) == 3
    with log_only():
        slow = [r.run_id for r in ExperimentTracker(sweep).runs(where="params.model = 'knn' or params.lr < 0.01")]
    assert fast == slow
    assert len(fast) > 90


def test_without_numpy_the_log_answers(sweep: Path, counted: dict[str, int]) -> None:
    with mock.patch.object(columnar, "available", return_value=False):
        top = ExperimentTracker(sweep).top_runs("accuracy", 3, where=WHERE)
    assert counted["answers"] == 0
    assert len(top) == 3
    assert not (sweep / ".index" / "columns").exists()


def test_scoped_reader_uses_the_columns_of_its_experiment(tmp_path: Path, counted: dict[str, int]) -> None:
    tracker = ExperimentTracker(tmp_path)
    for i in range(40):
        tracker.log_run(params={"model": "rf"}, metrics={"accuracy": i / 40}, experiment="a" if i % 2 else "b")
    scoped = ExperimentTracker(tmp_path, experiment="b")
    best = scoped.best_run("accuracy", where="params.model = 'rf'")
    assert best.experiment == "b"
    assert best.metrics["accuracy"] == 38 / 40
    assert counted["answers"] == 1


def test_cli_and_installed_script_agree_with_the_log(sweep: Path) -> None:
    args = ["--store", str(sweep), "top", "accuracy", "-k", "4", "--where", WHERE, "--json"]
    via_runner = CliRunner().invoke(cli, args)
    assert via_runner.exit_code == 0, via_runner.output
    script = shutil.which("exptrack")
    assert script is not None, "the exptrack console script is not installed (pip install -e .)"
    via_script = subprocess.run([script, *args], capture_output=True, text=True, check=True)
    with log_only():
        slow = [r.run_id for r in ExperimentTracker(sweep).top_runs("accuracy", 4, where=WHERE)]
    for output in (via_runner.output, via_script.stdout):
        assert [run["run_id"] for run in json.loads(output)] == slow


def test_sorted_page_comes_from_the_columns(sweep: Path) -> None:
    results: list[Any] = []
    real = column_answers.ColumnAnswers.sorted_rows

    def spy(self: Any, *args: Any) -> Any:
        results.append(real(self, *args))
        return results[-1]

    spec = "params.max_depth desc, metrics.accuracy"
    with mock.patch.object(column_answers.ColumnAnswers, "sorted_rows", spy):
        page, total = ExperimentTracker(sweep).sorted_runs(spec, where=WHERE, limit=5, offset=3)
    assert len(results) == 1
    assert results[0] is not None
    with log_only():
        slow, slow_total = ExperimentTracker(sweep).sorted_runs(spec, where=WHERE, limit=5, offset=3)
    assert [r.run_id for r in page] == [r.run_id for r in slow]
    assert total == slow_total == sum(1 for i in range(300) if i % 3 == 0 and i % 17 > 10)
    assert [r.params["max_depth"] for r in page] == [16, 16, 16, 15, 15]  # six rf runs at 16; page from the 4th


@pytest.mark.parametrize("built", [True, False], ids=["columns built before", "no columns"])
def test_a_read_only_store_answers_filters_with_the_columns_it_has(sweep: Path, counted: dict[str, int],
                                                                   built: bool) -> None:
    from test_readonly import RefusingFileSystem

    from exptrack.store.fsio import install

    with log_only():
        expected = [r.run_id for r in ExperimentTracker(sweep).top_runs("accuracy", 5, where=WHERE)]
    if built:
        ExperimentTracker(sweep).count_runs(where=WHERE)
    counted["answers"] = 0
    refusing = RefusingFileSystem(30)  # EROFS
    previous = install(refusing)
    try:
        tracker = ExperimentTracker(sweep)
        assert [r.run_id for r in tracker.top_runs("accuracy", 5, where=WHERE)] == expected
    finally:
        install(previous)
    assert counted["answers"] == (1 if built else 0)


def _decoded(store: Path) -> dict[str, Any]:
    """The columns as values per row (kinds, numbers, strings), whatever the file numbering."""
    import numpy as np

    view = columnar.load(columns.ColumnStore(str(store / ".index")),
                         columns.ColumnStore(str(store / ".index")).read_meta(), None)  # type: ignore[arg-type]
    decoded: dict[str, Any] = {"off": view.offsets.tolist(),
                               "grp": [view.meta.groups[g] for g in view.groups.tolist()],
                               "dir": view.dirs.tolist()}
    for section, name in view.meta.fields:
        column = view.field(section, name)
        assert column is not None
        strings = [column.strings[c] if c >= 0 else None for c in column.codes.tolist()] \
            if column.codes is not None else None
        numbers = np.nan_to_num(column.numbers, nan=-12345.0).tolist() if column.numbers is not None else None
        decoded[f"{section}.{name}"] = (column.kinds.tolist(), numbers, strings)
    return decoded


def test_a_build_on_every_core_equals_one_in_one_process(tmp_path: Path) -> None:
    from exptrack.store.index import columns_build

    stores = [tmp_path / "one", tmp_path / "many"]
    for store in stores:
        tracker = ExperimentTracker(store)
        for i in range(3000):  # late fields, mixed kinds, a param past its dictionary
            params: dict[str, Any] = {"model": ["rf", "svm"][i % 2], "depth": [3, "4", None, True][i % 4],
                                      "id": f"id-{i % 50}"}
            if i > 2000:
                params["late"] = i
            tracker.log_run(params=params, metrics={"accuracy": i / 3000, **({"loss": i} if i % 3 else {})},
                            status="failed" if i % 7 == 0 else "finished", experiment="a" if i % 5 else None)
        tracker.close()
        detach_store_log(store)
    with mock.patch.object(columns_build, "MAX_STRINGS", 30):
        ExperimentTracker(stores[0]).count_runs(where="params.model = 'rf'")
        with mock.patch.object(columns_build, "PARALLEL_MIN_BYTES", 0), \
                mock.patch("os.cpu_count", return_value=3), \
                mock.patch.object(columns_build, "_merge", wraps=columns_build._merge) as merged:
            ExperimentTracker(stores[1]).count_runs(where="params.model = 'rf'")
    assert merged.call_count == 2  # two helpers' parts, after the caller's own
    assert not [name for name in os.listdir(stores[1] / ".index" / "columns") if name.startswith("part.")]
    one, many = _decoded(stores[0]), _decoded(stores[1])
    assert one["off"] != many["off"]  # two stores, two logs: compare everything but the offsets
    one.pop("off"), many.pop("off")
    capped_one, capped_many = one.pop("params.id"), many.pop("params.id")
    assert one == many
    # past a capped dictionary, which strings keep a code depends on the order they were met;
    # a string without one is OTHER (read from its line), so the parts may differ only so
    for kind_a, kind_b, text_a, text_b in zip(capped_one[0], capped_many[0], capped_one[2], capped_many[2],
                                              strict=True):
        assert (kind_a, text_a) == (kind_b, text_b) or columns.OTHER in (kind_a, kind_b)
    assert capped_many[0].count(columns.STR) >= 1000


def test_readers_kept_alive_hold_no_descriptor_of_the_columns(sweep: Path) -> None:
    ExperimentTracker(sweep).count_runs(where=WHERE)  # columns built
    before = len(os.listdir("/proc/self/fd"))
    kept = []
    for _ in range(20):
        tracker = ExperimentTracker(sweep)
        tracker.top_runs("accuracy", 3, where=WHERE)
        kept.append(tracker)
    opened = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the descriptor listdir itself used is gone
            opened.append(os.readlink(f"/proc/self/fd/{fd}"))
    assert not [path for path in opened if "/.index/columns/" in path]
    assert len(opened) - before < 20
