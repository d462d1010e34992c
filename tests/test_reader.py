"""Reading the run log: corrupt lines are skipped and reported, never cost a valid record."""

from __future__ import annotations

import os
import re
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exptrack import CorruptLine, CorruptStoreError, ExperimentTracker
from exptrack.store import codec, scan
from exptrack.store.fsio import fs
from exptrack.store.logs import detach_store_log
from exptrack.store.record import Run, build_run
from exptrack.store.scan import LogScan

ReadLines = Callable[[Path], list[bytes]]


def line_for(**kwargs: object) -> bytes:
    return codec.encode(build_run(**kwargs))  # type: ignore[arg-type]


def flip_digit(line: bytes) -> bytes:
    """The line with one digit of its metric changed: still valid JSON, wrong checksum."""
    at = line.index(b'"accuracy":0.') + len(b'"accuracy":0.')
    digit = line[at : at + 1]
    return line[:at] + (b"1" if digit != b"1" else b"2") + line[at + 1 :]


GOOD = line_for(params={"model": "rf"}, metrics={"accuracy": 0.5})

CORRUPT_KINDS = [
    pytest.param(b"this is not json", "invalid JSON", id="garbage"),
    pytest.param(GOOD[: len(GOOD) // 2], "invalid JSON", id="truncated-record"),
    pytest.param(b'{"run_id": "a", "params": {}, "metrics": {"x": 1}', "invalid JSON", id="unclosed-object"),
    pytest.param(b'{"run_id": "\xff\xfe", "params": {}, "metrics": {}}', "invalid UTF-8", id="invalid-utf8"),
    pytest.param(b'{"run_id": "\xed\xa0\x80", "params": {}, "metrics": {}}', "invalid UTF-8", id="encoded-surrogate"),
    pytest.param(b"\x80\x81\x82 binary", "invalid UTF-8", id="binary"),
    pytest.param(b'{"params": {}, "metrics": {}}', "missing 'run_id'", id="no-run_id"),
    pytest.param(b'{"run_id": "a", "metrics": {}}', "missing 'params'", id="no-params"),
    pytest.param(b'{"run_id": "a", "params": {}}', "missing 'metrics'", id="no-metrics"),
    pytest.param(b'{"run_id": "a", "params": [], "metrics": {}}', "params is not an object", id="params-list"),
    pytest.param(b'{"run_id": "a", "params": {}, "metrics": {"x": "high"}}', "not a number", id="metric-str"),
    pytest.param(b'{"run_id": "a", "params": {}, "metrics": {"x": true}}', "not a number", id="metric-bool"),
    pytest.param(b'{"run_id": "", "params": {}, "metrics": {}}', "run_id", id="empty-run_id"),
    pytest.param(b'{"schema": 3, "run_id": "a", "params": {}, "metrics": {}}', "newer", id="newer-schema"),
    pytest.param(b"[1, 2, 3]", "not a run record", id="json-array"),
    pytest.param(b"42", "not a run record", id="json-number"),
    pytest.param(b"", "blank line", id="empty"),
    pytest.param(b"   \t ", "blank line", id="whitespace"),
    pytest.param(flip_digit(GOOD)[:-1], "checksum mismatch", id="bit-flip"),
]


def append_raw(tracker: ExperimentTracker, data: bytes) -> int:
    """Append bytes behind exptrack's back (another tool, a crash, an editor); return their offset."""
    with tracker.runs_path.open("ab") as handle:
        offset = handle.tell()
        handle.write(data)
    return offset


@pytest.mark.parametrize(("garbage", "reason"), CORRUPT_KINDS)
def test_corrupt_line_in_the_middle_is_skipped_and_reported(
    tracker: ExperimentTracker, garbage: bytes, reason: str
) -> None:
    first = tracker.log_run(params={"i": 1}, metrics={"accuracy": 0.1})
    second = tracker.log_run(params={"i": 2}, metrics={"accuracy": 0.2})
    offset = append_raw(tracker, garbage + b"\n")
    third = tracker.log_run(params={"i": 3}, metrics={"accuracy": 0.3})

    runs = list(tracker.runs())
    assert [run.run_id for run in runs] == [first.run_id, second.run_id, third.run_id]
    assert [run.params["i"] for run in runs] == [1, 2, 3]
    (bad,) = tracker.last_corrupt
    assert (bad.line, bad.offset, bad.length) == (3, offset, len(garbage))
    assert reason in bad.reason
    assert tracker.corrupt_lines() == [bad]
    assert tracker.summary()["corrupt_lines"] == 1

    log = (tracker.store / "log.txt").read_text(encoding="utf-8")
    (entry,) = [line for line in log.splitlines() if f"line 3 (byte {offset}," in line]
    assert reason in entry
    assert "WARNING" in entry
    assert f"pid={os.getpid()}" in entry


def test_several_corrupt_lines_are_each_reported_with_line_and_offset(tracker: ExperimentTracker) -> None:
    good = [line_for(metrics={"accuracy": i / 10}) for i in range(4)]
    bad = [b"garbage", b"", b'{"params": {}, "metrics": {}}', b"\xff"]
    data = good[0] + bad[0] + b"\n" + bad[1] + b"\n" + good[1] + good[2] + bad[2] + b"\n" + bad[3] + b"\n" + good[3]
    append_raw(tracker, data)
    runs = list(tracker.runs())
    assert [run.metrics["accuracy"] for run in runs] == [0.0, 0.1, 0.2, 0.3]
    expected_lines = [2, 3, 6, 7]
    at_garbage, at_missing = data.index(b"garbage"), data.index(bad[2])
    offsets = [at_garbage, at_garbage + 8, at_missing, at_missing + len(bad[2]) + 1]
    assert [(c.line, c.offset, c.length) for c in tracker.last_corrupt] == [
        (line, offset, len(raw)) for line, offset, raw in zip(expected_lines, offsets, bad)
    ]
    assert [c.reason.split(":")[0] for c in tracker.last_corrupt] == [
        "invalid JSON", "blank line", "not a run record (missing 'run_id')", "invalid UTF-8",
    ]
    # runs report offsets too, so a reader can seek straight to a record
    assert [run.offset for run in runs] == [0, data.index(good[1]), data.index(good[2]), data.index(good[3])]


def test_corrupt_line_report_reads_as_a_sentence() -> None:
    item = CorruptLine(line=7, offset=1234, length=9, reason="invalid JSON: unexpected character")
    assert str(item) == "line 7 (byte 1234, 9 bytes): invalid JSON: unexpected character"
    assert item.to_dict() == {"line": 7, "offset": 1234, "length": 9, "reason": "invalid JSON: unexpected character"}


def test_strict_tracker_raises_on_the_first_corrupt_line(store: Path) -> None:
    tracker = ExperimentTracker(store, durable=False, strict=True)
    tracker.log_run(metrics={"accuracy": 0.5})
    append_raw(tracker, b"garbage\n")
    with pytest.raises(CorruptStoreError, match="line 2") as caught:
        list(tracker.runs())
    assert isinstance(caught.value, ValueError)


# -- random interleavings -----------------------------------------------------------------------

garbage_lines = st.binary(max_size=40).filter(lambda raw: b"\n" not in raw)
valid_runs = st.builds(
    lambda i, value: line_for(params={"i": i}, metrics={"accuracy": value}),
    st.integers(0, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    items=st.lists(st.tuples(st.booleans(), valid_runs, garbage_lines), max_size=25),
    chunk=st.sampled_from([1, 7, 64, 4096, 1 << 20]),
)
def test_any_mix_of_lines_yields_every_valid_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, items: list[tuple[bool, bytes, bytes]], chunk: int
) -> None:
    monkeypatch.setattr(scan, "CHUNK_BYTES", chunk)  # small chunks: lines straddle every boundary
    lines = [valid if is_valid else garbage + b"\n" for is_valid, valid, garbage in items]
    path = tmp_path / "runs.jsonl"
    path.write_bytes(b"".join(lines))
    got = list(LogScan(str(path)))
    offsets = [sum(map(len, lines[:i])) for i in range(len(lines))]
    expected_runs = [(offsets[i], lines[i]) for i, (is_valid, _, _) in enumerate(items) if is_valid]
    assert [(item.offset, codec.encode(item)) for item in got if isinstance(item, Run)] == expected_runs
    corrupt = [item for item in got if isinstance(item, CorruptLine)]
    assert [(c.line, c.offset, c.length) for c in corrupt] == [
        (i + 1, offsets[i], len(lines[i]) - 1) for i, (is_valid, _, _) in enumerate(items) if not is_valid
    ]


def test_reader_streams_in_constant_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan, "CHUNK_BYTES", 64 * 1024)
    line = line_for(params={"pad": "p" * 200}, metrics={"accuracy": 0.5})
    path = tmp_path / "runs.jsonl"
    copies = 4 * 1024 * 1024 // len(line)
    path.write_bytes(line * copies)  # 4 MiB of runs
    tracemalloc.start()
    try:
        count = sum(1 for _ in LogScan(str(path)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == copies
    assert peak < 1024 * 1024, f"peak {peak} bytes while reading a 4 MiB log"


# -- the unterminated tail: pending while a writer may be busy, torn once none is ---------------


def test_torn_tail_is_reported_when_no_writer_holds_the_lock(tracker: ExperimentTracker) -> None:
    kept = tracker.log_run(metrics={"accuracy": 0.9})
    fragment = GOOD[:40]
    offset = append_raw(tracker, fragment)
    assert [run.run_id for run in tracker.runs()] == [kept.run_id]
    (torn,) = tracker.last_corrupt
    assert (torn.line, torn.offset, torn.length) == (2, offset, len(fragment))
    assert "torn tail" in torn.reason
    log = (tracker.store / "log.txt").read_text(encoding="utf-8")
    assert f"line 2 (byte {offset}, {len(fragment)} bytes): torn tail" in log


def test_unterminated_tail_is_pending_while_the_lock_is_held(tracker: ExperimentTracker) -> None:
    kept = tracker.log_run(metrics={"accuracy": 0.9})
    append_raw(tracker, GOOD[:40])
    # another writer holds the lock: its line may still be arriving
    fd = os.open(str(tracker.runs_path) + ".lock", os.O_RDWR)
    try:
        assert fs().try_lock(fd)
        assert [run.run_id for run in tracker.runs()] == [kept.run_id]
        assert tracker.last_corrupt == []
        assert tracker.summary()["corrupt_lines"] == 0
        assert [type(item) for item in tracker.scan(final=True)] == [Run, CorruptLine]
    finally:
        fs().unlock(fd)
        os.close(fd)
    assert len(tracker.corrupt_lines()) == 1


def test_unterminated_tail_is_never_corrupt_for_an_explicit_non_final_scan(tracker: ExperimentTracker) -> None:
    tracker.log_run(metrics={"accuracy": 0.9})
    append_raw(tracker, b'{"run_id": "half')
    assert [type(item) for item in tracker.scan(final=False)] == [Run]
    scan_ = LogScan(str(tracker.runs_path))
    assert [type(item) for item in scan_] == [Run]
    assert scan_.pending == len(b'{"run_id": "half')
    assert scan_.end_offset == tracker.runs_path.stat().st_size - scan_.pending
    assert scan_.lines == 1


def test_complete_tail_line_is_a_record_not_pending(tracker: ExperimentTracker) -> None:
    # the writer's single write() ends with the newline, so a terminated last line is complete
    append_raw(tracker, GOOD)
    scan_ = LogScan(str(tracker.runs_path), final=True)
    assert [type(item) for item in scan_] == [Run]
    assert scan_.pending == 0


def test_torn_tail_does_not_swallow_next_record(tracker: ExperimentTracker, raw_lines: ReadLines) -> None:
    first = tracker.log_run(metrics={"accuracy": 0.1})
    offset = append_raw(tracker, GOOD[:50])  # a writer died mid-line
    after = tracker.log_run(metrics={"accuracy": 0.2})
    lines = raw_lines(tracker.store)
    assert lines[1] == GOOD[:50] + b"\n"
    assert lines[2].endswith(b"\n")
    assert [run.run_id for run in tracker.runs()] == [first.run_id, after.run_id]
    (bad,) = tracker.last_corrupt
    assert (bad.line, bad.offset, bad.length) == (2, offset, 50)
    assert bad.reason.startswith("invalid JSON")
    assert after.offset == offset + 51


def test_missing_log_reads_as_empty(store: Path) -> None:
    nested = store / "nested" / "deeper"
    ExperimentTracker(nested)
    assert (nested / "log.txt").is_file()  # the store is created with its parents
    detach_store_log(str(nested))
    tracker = ExperimentTracker(store)
    assert list(tracker.runs()) == []
    assert tracker.last_corrupt == []
    assert tracker.summary()["total_runs"] == 0


# -- duplicate run ids --------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1 << 20, 64], ids=["same-chunk", "across-chunks"])
def test_duplicate_run_id_first_wins_later_reported(
    tracker: ExperimentTracker, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(scan, "CHUNK_BYTES", chunk)
    original = tracker.log_run(params={"copy": 0}, metrics={"accuracy": 0.5})
    other = tracker.log_run(metrics={"accuracy": 0.1})
    copy = codec.encode(original)
    impostor = line_for(params={"copy": 1}, metrics={"accuracy": 0.99}, run_id=original.run_id)
    first_copy = append_raw(tracker, copy)
    second = append_raw(tracker, impostor)

    runs = list(tracker.runs())
    assert [run.run_id for run in runs] == [original.run_id, other.run_id]
    assert runs[0].params == {"copy": 0}
    assert [(c.line, c.offset) for c in tracker.last_corrupt] == [(3, first_copy), (4, second)]
    for item in tracker.last_corrupt:
        assert f"duplicate run_id {original.run_id}" in item.reason
        assert "first at line 1" in item.reason
    assert tracker.get_run(original.run_id).params == {"copy": 0}
    assert tracker.best_run("accuracy").run_id == original.run_id  # the impostor's 0.99 is not counted
    assert tracker.summary()["total_runs"] == 2
    log = (tracker.store / "log.txt").read_text(encoding="utf-8")
    assert re.search(rf"line 4 \(byte {second},.*duplicate run_id {original.run_id}", log)
