"""Every reader error path, one test each, with the exact line, byte offset and length reported.

Files are built byte by byte so each expectation is computed from the bytes, not from the code
under test.  ``exptrack check`` and ``--strict`` are exercised on the same damaged stores.
"""

from __future__ import annotations

import json
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from exptrack import CorruptLine, ExperimentTracker, Run
from exptrack.cli import cli
from exptrack.errors import InvalidRecordError
from exptrack.live.artifacts import ArtifactStore
from exptrack.repro.check import check_store
from exptrack.store import codec, scan
from exptrack.store.fsio import FileSystem, install
from exptrack.store.index.identity import INDEX_DIR, INDEX_FILE
from exptrack.store.record import build_run
from exptrack.store.scan import LogScan

STAMP = "2026-01-01T00:00:00.000000Z"


def line_for(run_id: str, accuracy: float = 0.5, **params: object) -> bytes:
    """A complete, checksummed line, byte-for-byte what ``log_run`` would append."""
    return codec.encode(build_run(params=params, metrics={"accuracy": accuracy}, run_id=run_id, timestamp=STAMP))


R1, R2, R3 = line_for("r1", 0.9), line_for("r2", 0.8), line_for("r3", 0.7)


def record_of_size(size: int) -> bytes:
    """A line of exactly ``size`` bytes, newline included."""
    base = line_for("flip", pad="")
    line = line_for("flip", pad="p" * (size - len(base)))
    assert len(line) == size
    return line


@pytest.fixture
def tracker(store: Path) -> Iterator[ExperimentTracker]:
    store.mkdir(parents=True)
    tracker = ExperimentTracker(store, durable=False)
    try:
        yield tracker
    finally:
        tracker.close()


def write_log(tracker: ExperimentTracker, data: bytes) -> None:
    tracker.runs_path.write_bytes(data)


def read_all(tracker: ExperimentTracker, *, final: bool = True) -> tuple[list[Run], list[CorruptLine]]:
    items = list(tracker.scan(final=final))
    return [i for i in items if isinstance(i, Run)], [i for i in items if isinstance(i, CorruptLine)]


def read_raw(tracker: ExperimentTracker) -> tuple[list[Run], list[CorruptLine]]:
    """The reader alone (no index, no duplicate policy): what a rewritten file's bytes say."""
    items = list(LogScan(str(tracker.runs_path), final=True))
    return [i for i in items if isinstance(i, Run)], [i for i in items if isinstance(i, CorruptLine)]


def where(corrupt: list[CorruptLine]) -> list[tuple[int, int, int]]:
    return [(c.line, c.offset, c.length) for c in corrupt]


def run_cli(store: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--store", str(store), *args])
    return result.exit_code, result.output


# -- empty and blank ------------------------------------------------------------------------------


def test_empty_log_has_no_runs_no_problems_and_checks_clean(tracker: ExperimentTracker) -> None:
    write_log(tracker, b"")
    assert read_all(tracker) == ([], [])
    report = check_store(tracker.store)
    assert report.ok
    assert (report.lines, report.runs, report.log_bytes) == (0, 0, 0)
    assert run_cli(tracker.store, "check")[0] == 0


def test_log_of_only_newlines_reports_each_blank_line(tracker: ExperimentTracker) -> None:
    write_log(tracker, b"\n\n\n")
    runs, corrupt = read_all(tracker)
    assert runs == []
    assert where(corrupt) == [(1, 0, 0), (2, 1, 0), (3, 2, 0)]
    assert {c.reason for c in corrupt} == {"blank line"}


# -- torn lines -----------------------------------------------------------------------------------


def test_torn_tail_is_pending_for_a_live_scan_and_torn_for_a_final_one(tracker: ExperimentTracker) -> None:
    write_log(tracker, R1 + R2[:57])
    live = LogScan(str(tracker.runs_path))
    assert [r.run_id for r in live if isinstance(r, Run)] == ["r1"]
    assert (live.end_offset, live.pending, live.lines) == (len(R1), 57, 1)
    runs, corrupt = read_all(tracker, final=True)
    assert [r.run_id for r in runs] == ["r1"]
    assert where(corrupt) == [(2, len(R1), 57)]
    assert corrupt[0].reason == "torn tail (unterminated last line)"


def test_a_tail_that_grows_during_the_scan_stays_pending(tracker: ExperimentTracker) -> None:
    write_log(tracker, R1 + R2[:57])
    items = tracker.scan()  # default: torn only if no writer holds the lock and the size is unchanged
    assert next(items).run_id == "r1"  # type: ignore[union-attr]
    with tracker.runs_path.open("ab") as handle:  # a writer is still writing the same line
        handle.write(R2[57:90])
    assert list(items) == []
    assert [type(i).__name__ for i in tracker.scan()] == ["Run", "CorruptLine"]  # now it is stable


def test_torn_prefix_then_newline_is_one_corrupt_line_and_the_next_record_survives(
    tracker: ExperimentTracker,
) -> None:
    write_log(tracker, R1 + R2[:30] + b"\n" + R3)
    runs, corrupt = read_all(tracker)
    assert [(r.run_id, r.offset) for r in runs] == [("r1", 0), ("r3", len(R1) + 31)]
    assert where(corrupt) == [(2, len(R1), 30)]
    assert corrupt[0].reason.startswith("invalid JSON")


def test_writer_fences_off_a_torn_tail_by_appending_a_newline(tracker: ExperimentTracker) -> None:
    before = R1 + R2[:57]
    write_log(tracker, before)
    new = tracker.log_run(params={"after": "repair"}, metrics={"accuracy": 0.1})
    data = tracker.runs_path.read_bytes()
    assert data.startswith(before + b"\n")  # appended, never truncated or rewritten
    assert new.offset == len(before) + 1
    runs, corrupt = read_all(tracker)
    assert [r.run_id for r in runs] == ["r1", new.run_id]
    assert where(corrupt) == [(2, len(R1), 57)]
    log = (tracker.store / "log.txt").read_text(encoding="utf-8")
    assert f"repaired torn tail of {tracker.runs_path}" in log
    assert f"at byte {len(before)}" in log


# -- garbage ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        pytest.param(b"hello, world", "invalid JSON", id="text"),
        pytest.param(b'{"run_id":"x\xff","params":{},"metrics":{}}', "invalid UTF-8", id="invalid-utf8"),
        pytest.param(b'{"note":"valid JSON, not a run"}', "not a run record (missing 'run_id')", id="json-object"),
        pytest.param(b"[1,2,3]", "not a run record (a JSON list, not an object)", id="json-list"),
        pytest.param(b"null", "not a run record (a JSON NoneType, not an object)", id="json-null"),
    ],
)
def test_garbage_line_is_reported_between_valid_records(
    tracker: ExperimentTracker, garbage: bytes, reason: str
) -> None:
    write_log(tracker, R1 + garbage + b"\n" + R2)
    runs, corrupt = read_all(tracker)
    assert [(r.run_id, r.offset) for r in runs] == [("r1", 0), ("r2", len(R1) + len(garbage) + 1)]
    assert where(corrupt) == [(2, len(R1), len(garbage))]
    assert corrupt[0].reason.startswith(reason)


def test_nul_run_line_is_reported_as_zero_filled(tracker: ExperimentTracker) -> None:
    write_log(tracker, R1 + b"\0" * 4096 + b"\n" + R2)
    runs, corrupt = read_all(tracker)
    assert [(r.run_id, r.offset) for r in runs] == [("r1", 0), ("r2", len(R1) + 4097)]
    assert where(corrupt) == [(2, len(R1), 4096)]
    assert corrupt[0].reason.startswith("only NUL bytes")


def test_nul_run_tail_is_torn_then_fenced_off_by_the_next_writer(tracker: ExperimentTracker) -> None:
    write_log(tracker, R1 + b"\0" * 512)  # the file grew but its last block never reached the disk
    assert where(read_all(tracker)[1]) == [(2, len(R1), 512)]
    new = tracker.log_run(metrics={"accuracy": 0.3})
    runs, corrupt = read_all(tracker)
    assert [r.run_id for r in runs] == ["r1", new.run_id]
    assert where(corrupt) == [(2, len(R1), 512)]
    assert corrupt[0].reason.startswith("only NUL bytes")


def test_record_after_a_nul_prefix_on_the_same_line_is_one_corrupt_line(tracker: ExperimentTracker) -> None:
    write_log(tracker, R1 + b"\0" * 8 + R2)
    runs, corrupt = read_all(tracker)
    assert [r.run_id for r in runs] == ["r1"]
    assert where(corrupt) == [(2, len(R1), 8 + len(R2) - 1)]
    assert corrupt[0].reason.startswith("NUL bytes")


# -- editors: BOM and CRLF -------------------------------------------------------------------------


def test_bom_at_the_start_of_the_file_is_tolerated(tracker: ExperimentTracker) -> None:
    write_log(tracker, b"\xef\xbb\xbf" + R1 + R2)
    runs, corrupt = read_all(tracker)
    assert [(r.run_id, r.offset) for r in runs] == [("r1", 0), ("r2", 3 + len(R1))]
    assert corrupt == []
    assert runs[0] == codec.decode(R1[:-1])[0]
    assert check_store(tracker.store).ok


def test_bom_anywhere_else_makes_its_line_corrupt(tracker: ExperimentTracker) -> None:
    write_log(tracker, R1 + b"\xef\xbb\xbf" + R2)
    runs, corrupt = read_all(tracker)
    assert [r.run_id for r in runs] == ["r1"]
    assert where(corrupt) == [(2, len(R1), 3 + len(R2) - 1)]


def test_crlf_line_ends_are_accepted(tracker: ExperimentTracker) -> None:
    first, second = R1[:-1] + b"\r\n", R2[:-1] + b"\r\n"
    write_log(tracker, first + second)
    runs, corrupt = read_all(tracker)
    assert [(r.run_id, r.offset) for r in runs] == [("r1", 0), ("r2", len(first))]
    assert corrupt == []
    assert tracker.last_unchecked == 0  # the checksum still verifies: it covers the record, not the line end


# -- bit flips and the checksum member --------------------------------------------------------------


def test_every_single_bit_flip_of_a_256_byte_record_is_detected(tracker: ExperimentTracker) -> None:
    record = record_of_size(256)
    undetected = []
    for at in range(len(record)):
        for bit in range(8):
            damaged = bytearray(record)
            damaged[at] ^= 1 << bit
            write_log(tracker, R1 + bytes(damaged) + R2)
            runs, corrupt = read_raw(tracker)
            if [r.run_id for r in runs if r.run_id != "r2"] != ["r1"] or not corrupt:
                undetected.append((at, bit))
            elif at < len(record) - 1:  # the newline intact: R2 must survive every flip
                assert [r.run_id for r in runs] == ["r1", "r2"], (at, bit)
    assert undetected == [], f"{len(undetected)} of {len(record) * 8} flips were not reported"


def test_any_byte_value_in_the_checksum_member_is_detected() -> None:
    record = record_of_size(256)
    member = len(record) - len(b',"crc":"01234567"}\n')
    undetected = []
    for at in range(member, len(record) - 1):
        for value in range(256):
            if value == record[at]:
                continue
            damaged = bytearray(record)
            damaged[at] = value
            # the line parser alone, in memory: 4,590 files would only measure the disk
            parsed = [scan._parse(memoryview(line), 0, 1) for line in bytes(damaged[:-1]).split(b"\n")]
            if any(type(item) is tuple for item in parsed):
                undetected.append((at - member, value))
    assert undetected == []


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b'{"crc":"00000000","run_id":"a","params":{},"metrics":{}}', id="crc-first"),
        pytest.param(b'{"run_id":"a","params":{},"metrics":{},"crc":12345678}', id="crc-number"),
        pytest.param(R1[:-12] + R1[-12:-4].upper() + b'"}', id="crc-uppercase"),
        pytest.param(R1[:-21] + b',"crC":' + R1[-12:-1], id="crc-key-case"),
    ],
)
def test_a_checksum_member_not_in_the_written_form_is_corrupt_not_unchecked(
    tracker: ExperimentTracker, line: bytes
) -> None:
    write_log(tracker, line + b"\n")
    runs, corrupt = read_all(tracker)
    assert runs == []
    assert where(corrupt) == [(1, 0, len(line))]
    assert "checksum" in corrupt[0].reason


def test_lines_without_checksum_are_accepted_and_counted(tracker: ExperimentTracker) -> None:
    hand_written = b'{"run_id":"by-hand","params":{"lr":0.1},"metrics":{"accuracy":0.42}}\n'
    write_log(tracker, R1 + hand_written + R2)
    runs, corrupt = read_all(tracker)
    assert [r.run_id for r in runs] == ["r1", "by-hand", "r2"]
    assert corrupt == []
    assert tracker.last_unchecked == 1
    assert tracker.summary()["unchecked_runs"] == 1
    report = check_store(tracker.store)
    assert report.ok
    assert report.unchecked == 1
    code, out = run_cli(tracker.store, "check")
    assert code == 0
    assert "1 without checksum" in out


# -- size cap: never write above it, never hold more than it -----------------------------------------


class CountingFileSystem(FileSystem):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattribute__(self, name: str) -> object:
        attr = object.__getattribute__(self, name)
        if not name.startswith("_") and name != "calls" and callable(attr):
            object.__getattribute__(self, "calls").append(name)
        return attr


def test_record_above_the_cap_is_rejected_before_any_file_system_call(tracker: ExperimentTracker) -> None:
    tracker.log_run(metrics={"accuracy": 0.5})
    before = tracker.runs_path.read_bytes()
    counting = CountingFileSystem()
    previous = install(counting)
    try:
        with pytest.raises(InvalidRecordError, match=r"(record|line) cap"):
            tracker.log_run(params={"blob": "x" * codec.MAX_RECORD_BYTES}, metrics={"accuracy": 0.1})
    finally:
        install(previous)
    assert counting.calls == []  # no open, no lock, no write
    assert tracker.runs_path.read_bytes() == before


def test_over_long_line_is_skipped_in_bounded_memory_with_its_exact_extent(
    tracker: ExperimentTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan, "MAX_RECORD_BYTES", 64 * 1024)
    monkeypatch.setattr(scan, "CHUNK_BYTES", 16 * 1024)
    long_line = b'{"run_id":"huge","pad":"' + b"x" * (8 * 1024 * 1024) + b'"}'
    write_log(tracker, R1 + long_line + b"\n" + R2)
    tracemalloc.start()
    try:
        runs, corrupt = read_all(tracker)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(r.run_id, r.offset) for r in runs] == [("r1", 0), ("r2", len(R1) + len(long_line) + 1)]
    assert where(corrupt) == [(2, len(R1), len(long_line))]
    assert corrupt[0].reason == "line longer than the 65536 byte record cap"
    assert peak < 1024 * 1024, f"held {peak} bytes reading an 8 MiB line with a 64 KiB cap"


def test_over_long_unterminated_tail_keeps_the_watermark_at_its_start(
    tracker: ExperimentTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan, "MAX_RECORD_BYTES", 4096)
    monkeypatch.setattr(scan, "CHUNK_BYTES", 1024)
    write_log(tracker, R1 + b"y" * 50_000)
    live = LogScan(str(tracker.runs_path))
    assert [r.run_id for r in live if isinstance(r, Run)] == ["r1"]
    assert (live.end_offset, live.pending) == (len(R1), 50_000)  # a resumed scan restarts at the line
    assert where(read_all(tracker)[1]) == [(2, len(R1), 50_000)]


def test_line_above_the_real_16_mib_cap_is_reported_and_the_next_record_read(tracker: ExperimentTracker) -> None:
    size = codec.MAX_RECORD_BYTES + 10
    write_log(tracker, R1 + b"z" * size + b"\n" + R2)
    runs, corrupt = read_all(tracker)
    assert [r.run_id for r in runs] == ["r1", "r2"]
    assert where(corrupt) == [(2, len(R1), size)]
    assert corrupt[0].reason == "line longer than the 16 MiB record cap"


# -- duplicate run ids ---------------------------------------------------------------------------------


def test_duplicates_are_reported_with_their_length_and_never_ranked_twice(tracker: ExperimentTracker) -> None:
    impostor = line_for("r1", 0.99, copy=True)
    write_log(tracker, R1 + R2 + R1 + impostor)
    runs, corrupt = read_all(tracker)
    assert [r.run_id for r in runs] == ["r1", "r2"]
    offset = 2 * len(R1) + len(R2)
    assert where(corrupt) == [(3, len(R1) + len(R2), len(R1) - 1), (4, offset, len(impostor) - 1)]
    assert all(c.reason == "duplicate run_id r1 (first at line 1)" for c in corrupt)
    assert [r.run_id for r in tracker.top_runs("accuracy", k=10)] == ["r1", "r2"]
    assert tracker.best_run("accuracy").metrics["accuracy"] == 0.9
    summary = tracker.summary()
    assert summary["total_runs"] == 2
    assert summary["corrupt_lines"] == 2
    assert summary["metrics"]["accuracy"]["count"] == 2


# -- exptrack check and --strict ------------------------------------------------------------------


def test_check_lists_every_problem_with_line_offset_length_and_exits_1(tracker: ExperimentTracker) -> None:
    garbage = b"not json"
    write_log(tracker, R1 + garbage + b"\n" + R2 + R1 + R3[:20])
    code, out = run_cli(tracker.store, "check")
    assert code == 1
    dup_at = len(R1) + len(garbage) + 1 + len(R2)
    assert f"line 2 (byte {len(R1)}, {len(garbage)} bytes): invalid JSON" in out
    assert f"line 4 (byte {dup_at}, {len(R1) - 1} bytes): duplicate run_id r1" in out
    assert f"note: line 5 (byte {dup_at + len(R1)}, 20 bytes): torn tail" in out  # a crash fragment
    assert "2 problem(s) found (1 note(s))" in out

    code, out = run_cli(tracker.store, "check", "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    assert (report["runs"], report["lines"]) == (2, 5)
    assert [(p["line"], p["offset"], p["length"]) for p in report["problems"]] == [
        (2, len(R1), len(garbage)),
        (4, dup_at, len(R1) - 1),
    ]
    assert [(p["line"], p["offset"], p["length"]) for p in report["notes"]] == [(5, dup_at + len(R1), 20)]


def test_check_passes_a_clean_store_and_exits_0(tracker: ExperimentTracker) -> None:
    for i in range(3):
        tracker.log_run(params={"i": i}, metrics={"accuracy": i / 10})
    code, out = run_cli(tracker.store, "check")
    assert code == 0, out
    assert "ok: no problems found" in out
    code, out = run_cli(tracker.store, "check", "--json")
    assert code == 0
    assert json.loads(out)["ok"] is True


def test_check_finds_an_altered_blob_and_a_missing_one(tracker: ExperimentTracker) -> None:
    blobs = ArtifactStore(tracker.store / "artifacts")
    kept, lost = blobs.put_bytes(b"model weights"), blobs.put_bytes(b"other weights")
    tracker.log_run(
        metrics={"accuracy": 0.5},
        extra={"artifacts": {"model.pkl": {"sha256": kept.sha256, "size": kept.size},
                             "other.pkl": {"sha256": lost.sha256, "size": lost.size}}},
    )
    altered = blobs.path_of(kept.sha256)
    altered.chmod(0o644)
    altered.write_bytes(b"model weightz")
    blobs.path_of(lost.sha256).unlink()
    report = check_store(tracker.store)
    reasons = {Path(p.path).name: p.reason.split(":")[0] for p in report.problems}
    assert reasons == {kept.sha256: "content does not match its name", lost.sha256: "missing"}
    assert all(p.kind == "artifact" for p in report.problems)
    assert run_cli(tracker.store, "check")[0] == 1
    assert run_cli(tracker.store, "check", "--no-artifacts")[0] == 0


@pytest.mark.parametrize(
    "args",
    [
        ["--strict", "runs"],
        ["runs", "--strict"],
        ["--strict", "best", "accuracy"],
        ["top", "accuracy", "--strict"],
        ["--strict", "summary"],
        ["--strict", "show", "r2"],
    ],
)
def test_strict_cli_fails_with_exit_1_on_corruption(tracker: ExperimentTracker, args: list[str]) -> None:
    write_log(tracker, R1 + b"garbage\n" + R2)
    code, out = run_cli(tracker.store, *[a for a in args if a != "--strict"])
    assert code == 0, out
    code, out = run_cli(tracker.store, *args)
    assert code == 1
    assert f"line 2 (byte {len(R1)}, 7 bytes)" in out


def test_strict_cli_passes_a_clean_store(tracker: ExperimentTracker) -> None:
    write_log(tracker, R1 + R2)
    code, out = run_cli(tracker.store, "--strict", "best", "accuracy")
    assert code == 0, out
    assert "r1" in out


def test_check_verifies_the_index_against_the_log(tracker: ExperimentTracker) -> None:
    for i in range(4):
        tracker.log_run(params={"i": i}, metrics={"accuracy": i / 10})
    assert check_store(tracker.store).index == "absent"
    tracker.summary()  # builds the index
    report = check_store(tracker.store)
    assert report.ok
    assert report.index.startswith("ok (4 runs")
    index_file = tracker.store / INDEX_DIR / INDEX_FILE
    pristine = index_file.read_bytes()

    # bytes of the index changed on disk: reported (exit 1), and the index is rebuilt meanwhile
    index_file.write_bytes(pristine.replace(b"0.3", b"0.9"))
    code, out = run_cli(tracker.store, "check")
    assert code == 1
    assert f"{index_file}: damaged (its checksum does not match); rebuilt from the log" in out
    assert "index: ok (4 runs" in out
    assert ExperimentTracker(tracker.store).summary()["metrics"]["accuracy"]["max"] == 0.3
    assert check_store(tracker.store).ok

    # an index whose checksum matches but whose answers are wrong (a bug, or a forged file)
    suffix = len(b',"crc":"00000000"}')
    body = pristine.rstrip(b"\n")[:-suffix] + b"}"
    assert codec.checksum_state(pristine.rstrip(b"\n")) is True, "index.json no longer uses the line checksum"
    forged = body.replace(b"0.3", b"0.9")
    index_file.write_bytes(forged[:-1] + b',"crc":"%08x"}' % zlib.crc32(forged))
    report = check_store(tracker.store)
    assert report.index == "disagrees with the log"
    assert {p.kind for p in report.problems} == {"index"}
    assert any("metric 'accuracy': max is 0.9, the log says 0.3" in p.reason for p in report.problems)
    assert all(f"delete {tracker.store / INDEX_DIR}" in p.reason for p in report.problems)
