"""Property: whatever is appended (runs, duplicates, corrupt lines, torn tails, edits: tags, deletes
and restores, resumed runs' records) and whenever the index is refreshed, its answers equal a full
rescan and a rebuild from a deleted index; a deleted run never comes back as best."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_index import answers, expected_answers, rescan

from exptrack import ExperimentTracker
from exptrack.store import codec
from exptrack.store.edits import Edit
from exptrack.store.index.identity import INDEX_DIR
from exptrack.store.index.reducers import MetricFold, MetricStats
from exptrack.store.logs import detach_store_log
from exptrack.store.record import build_run

STAMP = "2026-01-01T00:00:00.000000Z"
IDS = [f"run-{i}" for i in range(12)]  # few ids: duplicates are common

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from([0.0, -0.0, 1.0, 0.5, 0.5]),
)
metric_maps = st.dictionaries(st.sampled_from(["accuracy", "val_loss", "epochs"]), values, max_size=3)

run_line = st.builds(
    lambda run_id, metrics, status, note, experiment: codec.encode(build_run(
        run_id=run_id, timestamp=STAMP, metrics=metrics, status=status, params={"note": note},
        extra={"experiment": experiment} if experiment else None)),
    st.sampled_from(IDS) | st.text(alphabet="abcdef0123456789", min_size=32, max_size=32),
    metric_maps,
    st.sampled_from(["finished", "failed", "killed", "pruned"]),
    st.sampled_from(["", "x", '},"metrics":{"accuracy":1e9}', "é"]),
    st.sampled_from(["", "wine", "default"]),  # index groups: (experiment, status)
)
corrupt_line = st.sampled_from([
    b"garbage\n",
    b"\n",
    b'{"run_id":"nocrc","params":{},"metrics":{"accuracy":0.3}}\n',
    b'{"run_id":"run-1","params":{},"metrics":{"accuracy":1e300}}\n',
    b'{"schema":1,"run_id":"broken-crc","params":{},"metrics":{},"crc":"00000000"}\n',
])
resume_line = st.builds(
    lambda run_id, metrics: codec.encode(build_run(run_id=run_id, timestamp=STAMP, metrics=metrics,
                                                   extra={"resumed": 1})),
    st.sampled_from(IDS), metric_maps,
)
def edit_bytes(kind: str, ids: list[str], tag: str) -> bytes:
    if kind == "tag":
        return codec.encode_edit(Edit("tags", tuple(ids), STAMP, add=(tag,)))
    if kind == "untag":
        return codec.encode_edit(Edit("tags", tuple(ids), STAMP, remove=(tag,)))
    return codec.encode_edit(Edit(kind, tuple(ids), STAMP))


edit_line = st.builds(
    edit_bytes,
    st.sampled_from(["delete", "restore", "tag", "untag"]),
    st.lists(st.sampled_from(IDS), min_size=1, max_size=4, unique=True),
    st.sampled_from(["hot", "cold"]),
)
action = st.one_of(
    st.tuples(st.just("runs"), st.lists(run_line, min_size=1, max_size=6)),
    st.tuples(st.just("runs"), st.lists(edit_line | resume_line, min_size=1, max_size=4)),  # edits, resumes
    st.tuples(st.just("corrupt"), st.lists(corrupt_line, min_size=1, max_size=2)),
    st.tuples(st.just("torn"), run_line),  # a writer mid-line: pending, then completed
    st.tuples(st.just("query"), st.none()),
)


def apply(store: Path, kind: str, payload: Any, torn: list[bytes]) -> None:
    with (store / "runs.jsonl").open("ab") as handle:
        if torn:  # complete the line a writer left half-written
            handle.write(torn.pop())
        if kind in {"runs", "corrupt"}:
            handle.write(b"".join(payload))
        elif kind == "torn":
            cut = len(payload) // 2
            handle.write(payload[:cut])
            torn.append(payload[cut:])


@settings(max_examples=60, deadline=None)
@given(actions=st.lists(action, min_size=1, max_size=10))
def test_incremental_answers_equal_a_rescan_and_a_rebuild(actions: list[tuple[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        store = Path(directory) / "store"
        tracker = ExperimentTracker(store, durable=False)
        try:
            torn: list[bytes] = []
            (store / "runs.jsonl").touch()
            for kind, payload in actions:
                apply(store, kind, payload, torn)
                if kind == "query" or torn:
                    assert answers(tracker) == expected_answers(store)
            incremental = answers(tracker)
            assert incremental == expected_answers(store)
            shutil.rmtree(store / INDEX_DIR, ignore_errors=True)
            with ExperimentTracker(store, durable=False) as rebuilt:
                assert answers(rebuilt) == incremental
            for run in rescan(store)[0][:6]:
                assert tracker.get_run(run.run_id) == run
        finally:
            tracker.close()
            detach_store_log(str(store))


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-1000, 1000), max_size=60),
    blocks=st.lists(st.integers(0, 3), max_size=60),
    cut=st.integers(0, 60),
)
def test_metric_fold_is_the_same_however_the_blocks_are_split(values: list[float], blocks: list[int], cut: int) -> None:
    # blocks are non-decreasing, as offsets in a log are
    placed = sorted(zip(sorted(blocks + [0] * len(values))[: len(values)], values), key=lambda item: item[0])
    whole = MetricFold()
    for block, value in placed:
        whole.add(value, block)
    first, second = placed[:cut], placed[cut:]
    split = MetricFold()
    for block, value in first:
        split.add(value, block)
    state = codec.loads(codec.dumps(split.to_state()))  # saved and loaded between the halves
    resumed = MetricFold.from_state(state)
    for block, value in second:
        resumed.feed(block, [value])
    assert repr(resumed.stats()) == repr(whole.stats())
    finite = [v for v in values if not (isinstance(v, float) and not math.isfinite(v))]
    stats = whole.stats()
    assert (stats.count, stats.nonfinite) == (len(finite), len(values) - len(finite))
    if finite:
        assert stats.min == min(finite)
        assert stats.max == max(finite)
        # no overflow near the float limit (quarters: fsum's partial sums of the quotients may still overflow)
        mean = math.fsum(value / (4 * len(finite)) for value in finite) * 4
        assert math.isclose(stats.mean, mean, rel_tol=1e-9, abs_tol=1e-9)


def test_block_statistics_of_values_near_the_float_limit() -> None:
    stats = MetricStats.of([1.7976931348623157e308] * 3)
    assert (stats.count, stats.mean, stats.min, stats.max) == (3, 1.7976931348623157e308, 1.7976931348623157e308,
                                                              1.7976931348623157e308)


def test_block_statistics_ignore_non_finite_values() -> None:
    stats = MetricStats.of([1.0, math.nan, 3.0, math.inf, -math.inf])
    assert (stats.count, stats.nonfinite, stats.min, stats.max, stats.mean) == (2, 3, 1.0, 3.0, 2.0)
    assert stats.std == math.sqrt(2.0)
