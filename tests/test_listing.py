"""Listing at any size: the most recent runs read backwards from the end of the log (skipping what
the index knows is corrupt or a duplicate), sorted listings through a heap of N, same answers as
the full pass."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from exptrack import ExperimentTracker
from exptrack.cli import cli
from exptrack.query.sort import first_sorted, parse_sort, sort_records
from exptrack.store import scan, tail
from exptrack.store.tail import lines_before


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    st.integers(1, 50),
    st.integers(8, 60),
)
def test_lines_before_gives_every_line_last_first_with_its_offset(lines: list[bytes], chunk: int, cap: int) -> None:
    import tempfile

    data = b"".join(line + b"\n" for line in lines)
    with tempfile.NamedTemporaryFile() as handle:
        handle.write(data + b"half a line")  # a pending tail after the end is never read
        handle.flush()
        tail.MAX_RECORD_BYTES, saved = cap, tail.MAX_RECORD_BYTES
        try:
            got = list(lines_before(handle.name, len(data), chunk=chunk))
        finally:
            tail.MAX_RECORD_BYTES = saved
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    want = [(offset, line if len(line) < cap else None) for offset, line in zip(offsets, lines)]
    assert got == want[::-1]


@pytest.fixture
def damaged(tracker: ExperimentTracker, store: Path) -> list[str]:
    """A log with corrupt lines, a duplicated run and runs of two models; the valid ids in order."""
    ids = [tracker.log_run(params={"model": ("rf", "knn")[i % 2]}, metrics={"accuracy": i / 40}).run_id
           for i in range(30)]
    log = store / "runs.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    lines.insert(25, b"not json at all\n")
    lines.insert(27, lines[3])  # the same run again: the first line wins, this one is corrupt
    lines.insert(28, lines[28][:-20] + b'0000000"}\n')  # a bit flip: the checksum says so
    log.write_bytes(b"".join(lines))
    return ids


@pytest.mark.parametrize("n", [1, 3, 5, 20, 40])
def test_recent_runs_are_the_last_n_valid_runs(damaged: list[str], store: Path, n: int) -> None:
    with ExperimentTracker(store, durable=False) as reader:
        expected = [run.run_id for run in reader.runs()][-n:]
        assert [run.run_id for run in reader.recent_runs(n)] == expected
        assert reader.count_runs() == len(list(reader.runs()))
        where = "params.model = 'knn'"
        assert [r.run_id for r in reader.recent_runs(n, where=where)] == \
            [r.run_id for r in reader.runs(where=where)][-n:]


def test_recent_runs_read_only_the_end_of_a_warm_store(tracker: ExperimentTracker, store: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    tracker.log_runs([{"metrics": {"accuracy": i / 3000}} for i in range(3000)])
    tracker.count_runs()  # the index is built
    read: list[int] = []

    def counting(fd: int, size: int, offset: int) -> bytes:
        read.append(size)
        return os.pread(fd, size, offset)

    monkeypatch.setattr(tail, "_pread", counting)
    monkeypatch.setattr(scan.LogScan, "__iter__", lambda self: pytest.fail("a full pass over the log"))
    appended = tracker.log_run(metrics={"accuracy": 2.0})  # the index catches up with the new bytes only
    recent = tracker.recent_runs(20)
    assert recent[-1].run_id == appended.run_id
    assert len(recent) == 20
    assert sum(read) <= 2 * tail.CHUNK_BYTES < (store / "runs.jsonl").stat().st_size


def test_runs_command_lists_the_last_runs_and_says_how_many_there_are(damaged: list[str], store: Path) -> None:
    result = CliRunner().invoke(cli, ["--store", str(store), "runs", "-n", "4", "-c", "run_id"])
    assert result.exit_code == 0, result.output
    with ExperimentTracker(store, durable=False) as reader:
        valid = [run.run_id for run in reader.runs()]
    assert result.stdout.split()[1:] == valid[-4:]
    assert f"(showing 4 of {len(valid)} runs" in result.stderr


values = st.one_of(st.none(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True, width=16),
                   st.sampled_from(["a", "b", "10", "x"]), st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["x", "y"]), values), max_size=25),
       st.sampled_from(["params.x", "params.x desc", "params.x, params.y desc", "params.y desc, params.x",
                        "run_id desc"]),
       st.integers(1, 30))
def test_first_sorted_is_the_head_of_the_full_sort(params: list[dict[str, object]], spec: str, n: int) -> None:
    records = [{"run_id": f"r{i:02d}", "params": p} for i, p in enumerate(params)]
    keys = parse_sort(spec)
    head = first_sorted(iter(records), keys, n)
    assert [r["run_id"] for r in head] == [r["run_id"] for r in sort_records(records, keys)[:n]]


def test_sorted_listing_matches_the_full_sort(tracker: ExperimentTracker, store: Path) -> None:
    for i in range(40):
        accuracy = math.nan if i % 7 == 0 else (i * 37 % 40) / 40
        tracker.log_run(params={"lr": i % 5}, metrics={"accuracy": accuracy} if i % 9 else {})
    spec = "metrics.accuracy desc, params.lr"
    want = [r.run_id for r in sort_records(tracker.runs(), parse_sort(spec))[:5]]
    result = CliRunner().invoke(cli, ["--store", str(store), "runs", "--sort", spec, "-n", "5", "-c", "run_id"])
    assert result.exit_code == 0, result.output
    assert result.stdout.split()[1:] == want
    assert "(showing 5 of 40 runs" in result.stderr


def test_recent_runs_without_a_usable_index_reads_forwards(tracker: ExperimentTracker, store: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [tracker.log_run(metrics={"accuracy": i / 10}).run_id for i in range(10)]
    monkeypatch.setattr(type(tracker), "_indexed", lambda self, progress=None: None)
    assert [run.run_id for run in tracker.recent_runs(3)] == ids[-3:]
    shutil.rmtree(store / ".index", ignore_errors=True)
