"""The persistent index: stale or foreign indexes are detected and rebuilt, answers never change.

Every test compares the tracker's answers with a reference computed by a plain rescan of the log
(``LogScan`` plus a set of ids), the way exptrack answered before it had an index.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exptrack import CorruptLine, ExperimentTracker, NoRunsError, RunNotFoundError, UnknownMetricError
from exptrack.query.ranking import status_scope, summarize, summary_dict, top_runs
from exptrack.query.where import compile_where
from exptrack.store import codec, fastscan
from exptrack.store.edits import Edit, merge
from exptrack.store.fsio import FileSystem, install
from exptrack.store.index.identity import INDEX_DIR, INDEX_FILE, fingerprint
from exptrack.store.logs import detach_store_log
from exptrack.store.record import Run, build_run
from exptrack.store.scan import LogScan
from exptrack.store.segment import TOP_K

STAMP = "2026-01-01T00:00:00.000000Z"
METRICS = ("accuracy", "val_loss", "epochs")


def line_for(run_id: str, **fields: Any) -> bytes:
    return codec.encode(build_run(run_id=run_id, timestamp=STAMP, **fields))


def rescan(store: Path) -> tuple[list[Run], list[CorruptLine]]:
    """Valid runs (merged with their edits, deleted ones left out) and corrupt lines by a full
    scan: duplicates found with a dict of every id, a resumed run's later record replacing the
    earlier one, edits applied in log order (the merge rule of ``store.edits``, spelled out)."""
    runs: list[Run] = []
    corrupt: list[CorruptLine] = []
    seen: dict[str, int] = {}
    edits: list[Edit] = []
    reader = LogScan(str(store / "runs.jsonl"), final=True)  # no writer is busy: a tail is torn
    for item in reader:
        if isinstance(item, CorruptLine):
            corrupt.append(item)
            continue
        if isinstance(item, Edit):
            edits.append(item)
            continue
        first = seen.setdefault(item.run_id, reader.lines)
        if first == reader.lines:
            runs.append(item)
        elif "resumed" in item.extra:  # supersedes the run's earlier record, on purpose
            runs = [run for run in runs if run.run_id != item.run_id] + [item]
        else:
            length = (store / "runs.jsonl").read_bytes()[item.offset :].index(b"\n")
            corrupt.append(CorruptLine(reader.lines, item.offset, length,
                                       f"duplicate run_id {item.run_id} (first at line {first})"))
    corrupt.sort(key=lambda c: c.line)
    deleted: set[str] = set()
    merged = []
    for run in runs:
        tags, note, name = list(run.tags), None, None
        for edit in edits:
            if run.run_id not in edit.runs:
                continue
            if edit.kind == "tags":
                tags = [tag for tag in tags if tag not in edit.remove] + [t for t in edit.add if t not in tags]
            elif edit.kind == "delete":
                deleted.add(run.run_id)
            elif edit.kind == "restore":
                deleted.discard(run.run_id)
            elif edit.kind == "note":
                note = edit.text
            elif edit.kind == "rename":
                name = edit.text
        if run.run_id not in deleted:
            touched = tags != list(run.tags) or note is not None or name is not None
            # all tags off, then the merged ones on in order: exactly ``tags``
            merged.append(merge(run, [((), run.tags), (tuple(tags), ())], note, name, False) if touched else run)
    return merged, corrupt


# fields every store has: a filter on a field no run has is an error
WHERE = "status = 'killed' or run_id LIKE '%1%' or tags = 'hot'"


def expected_answers(store: Path) -> dict[str, Any]:
    runs, corrupt = rescan(store)
    answers: dict[str, Any] = {"corrupt": [(c.line, c.offset, c.length, c.reason) for c in corrupt]}
    for scope, chosen in (("", runs), ("where ", [run for run in runs if compile_where(WHERE)(run)])):
        summary = summarize(chosen)
        for status in STATUS_SCOPES:
            allowed = status_scope(status)
            answers[f"{scope}summary {status}"] = codec.dumps(summary_dict(summary.groups, allowed, len(corrupt)))
            ranked_from = [run for run in chosen if allowed is None or run.status in allowed]
            for metric in METRICS:
                for k in (1, 3, TOP_K + 20):
                    ranked = top_runs(ranked_from, metric, k, "min" if metric == "val_loss" else "max")
                    answers[f"{scope}top {metric} {k} {status}"] = [run.run_id for run in ranked] or "nothing"
    return answers


STATUS_SCOPES: tuple[Any, ...] = ("finished", None, ("failed", "killed"))
"""The status scopes every answer is compared in: the default, every run, and a list."""


def ranked_ids(tracker: ExperimentTracker, metric: str, k: int, where: str | None, status: Any) -> list[str] | str:
    try:
        ranked = tracker.top_runs(metric, k, mode="min" if metric == "val_loss" else "max", where=where,
                                  status=status)
    except (NoRunsError, UnknownMetricError):
        return "nothing"
    return [run.run_id for run in ranked]


def answers(tracker: ExperimentTracker) -> dict[str, Any]:
    result: dict[str, Any] = {
        "corrupt": [(c.line, c.offset, c.length, c.reason) for c in tracker.corrupt_lines()],
    }
    for scope, where in (("", None), ("where ", WHERE)):
        for status in STATUS_SCOPES:
            summary = tracker.summary(where=where, status=status)
            summary.pop("unchecked_runs")
            result[f"{scope}summary {status}"] = codec.dumps(summary)
            for metric in METRICS:
                for k in (1, 3, TOP_K + 20):
                    result[f"{scope}top {metric} {k} {status}"] = ranked_ids(tracker, metric, k, where, status)
    return result


def assert_answers_match_a_rescan(tracker: ExperimentTracker) -> None:
    assert answers(tracker) == expected_answers(tracker.store)
    runs, _ = rescan(tracker.store)
    for run in runs[:5] + runs[-5:]:
        assert tracker.get_run(run.run_id) == run
        assert tracker.get_run(run.run_id).offset == run.offset


@pytest.fixture
def tracker(store: Path) -> Iterator[ExperimentTracker]:
    with ExperimentTracker(store, durable=False) as tracker:
        yield tracker


def fill(tracker: ExperimentTracker, count: int, start: int = 0) -> list[Run]:
    items = []
    for i in range(start, start + count):
        metrics: dict[str, float] = {"accuracy": ((i * 37) % 101) / 100, "val_loss": ((i * 53) % 89) / 10}
        if i % 17 == 0:
            metrics["val_loss"] = math.nan
        if i % 5 == 0:
            metrics["epochs"] = i % 7
        items.append({"params": {"i": i, "model": "rf" if i % 2 else "svm"}, "metrics": metrics,
                      "status": "failed" if i % 9 == 0 else "finished"})
    return tracker.log_runs(items)


def append_raw(tracker: ExperimentTracker, data: bytes) -> int:
    with tracker.runs_path.open("ab") as handle:
        offset = handle.tell()
        handle.write(data)
    return offset


def index_file(tracker: ExperimentTracker) -> Path:
    return tracker.store / INDEX_DIR / INDEX_FILE


def edit_index(tracker: ExperimentTracker, change: Callable[[dict[str, Any]], None]) -> None:
    path = index_file(tracker)
    state = json.loads(path.read_bytes())
    change(state)
    path.write_text(json.dumps(state))


def fresh(tracker: ExperimentTracker) -> ExperimentTracker:
    """Another tracker on the same store, as another process would open it."""
    return ExperimentTracker(tracker.store, durable=False)


# -- building, refreshing, reading only the new bytes -------------------------------------------


def test_first_query_builds_the_index_and_later_queries_use_it(tracker: ExperimentTracker) -> None:
    fill(tracker, 60)
    assert_answers_match_a_rescan(tracker)
    stats = tracker.index_stats()
    assert (stats.runs, stats.lines, stats.watermark) == (60, 60, tracker.runs_path.stat().st_size)
    assert index_file(tracker).exists()
    assert_answers_match_a_rescan(fresh(tracker))
    assert fresh(tracker).refresh_index().rebuilds == 0


def test_refresh_reads_only_the_bytes_after_the_watermark(
    tracker: ExperimentTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(tracker, 40)
    watermark = tracker.refresh_index().watermark
    fill(tracker, 7, start=40)
    ranges: list[tuple[int, int]] = []
    reads: list[int] = []
    real_scan, real_pread = fastscan.scan_range, os.pread

    def scan_spy(path: str, start: int, end: int, **kwargs: Any) -> Any:
        ranges.append((start, end))
        monkeypatch.setattr(os, "pread", lambda fd, size, offset: reads.append(offset) or real_pread(fd, size, offset))
        try:
            return real_scan(path, start, end, **kwargs)
        finally:
            monkeypatch.setattr(os, "pread", real_pread)

    monkeypatch.setattr(fastscan, "scan_range", scan_spy)
    stats = tracker.refresh_index()
    assert stats.runs == 47
    assert ranges == [(watermark, tracker.runs_path.stat().st_size)]
    assert reads
    assert min(reads) == watermark
    assert_answers_match_a_rescan(tracker)


def test_best_and_top_read_only_the_lines_they_return(
    tracker: ExperimentTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(tracker, 80)
    tracker.refresh_index()
    from exptrack.store import scan as scan_module
    from exptrack.store.index import idmap

    read: list[int] = []
    real = idmap.read_run_at

    def spy(path: str, offset: int) -> Run:
        read.append(offset)
        return real(path, offset)

    monkeypatch.setattr(idmap, "read_run_at", spy)
    monkeypatch.setattr(scan_module, "LogScan", None)  # any scan would fail loudly
    top = tracker.top_runs("accuracy", 5)
    assert len(read) == 5
    assert [run.offset for run in top] == read
    tracker.summary()
    assert len(read) == 5


def test_unterminated_tail_is_pending_and_read_once_complete(tracker: ExperimentTracker) -> None:
    fill(tracker, 10)
    line = line_for("late", metrics={"accuracy": 2.0})
    append_raw(tracker, line[:30])
    assert tracker.refresh_index().watermark == tracker.runs_path.stat().st_size - 30
    append_raw(tracker, line[30:])
    assert tracker.best_run("accuracy").run_id == "late"
    assert_answers_match_a_rescan(tracker)


# -- stale, foreign and damaged indexes ------------------------------------------------------------


def test_deleting_the_index_rebuilds_it_with_identical_answers(tracker: ExperimentTracker) -> None:
    fill(tracker, 50)
    before = answers(tracker)
    shutil.rmtree(tracker.store / INDEX_DIR)
    assert answers(fresh(tracker)) == before
    assert answers(tracker) == before  # a tracker that had it loaded notices too


def test_truncated_log_is_detected_and_the_index_rebuilt(tracker: ExperimentTracker, caplog: Any) -> None:
    runs = fill(tracker, 30)
    tracker.refresh_index()
    with tracker.runs_path.open("r+b") as handle:
        handle.truncate(runs[20].offset)
    caplog.set_level(logging.INFO, logger="exptrack")
    assert_answers_match_a_rescan(fresh(tracker))
    assert "shrank below the index watermark" in caplog.text


def test_truncated_and_regrown_log_is_detected(tracker: ExperimentTracker) -> None:
    runs = fill(tracker, 30)
    tracker.refresh_index()
    with tracker.runs_path.open("r+b") as handle:
        handle.truncate(runs[10].offset)
    fill(tracker, 40, start=500)  # longer than before: only the fingerprint can tell
    assert_answers_match_a_rescan(fresh(tracker))


def test_replaced_log_with_a_new_inode_is_detected(tracker: ExperimentTracker, caplog: Any) -> None:
    fill(tracker, 30)
    tracker.refresh_index()
    data = tracker.runs_path.read_bytes()
    replacement = tracker.store / "new.jsonl"
    replacement.write_bytes(data[: len(data) // 2].rsplit(b"\n", 1)[0] + b"\n" + line_for("other"))
    os.replace(replacement, tracker.runs_path)
    caplog.set_level(logging.INFO, logger="exptrack")
    assert_answers_match_a_rescan(fresh(tracker))
    assert "the log was replaced" in caplog.text


def test_log_rewritten_in_place_is_detected(tracker: ExperimentTracker) -> None:
    fill(tracker, 30)
    tracker.refresh_index()
    data = bytearray(tracker.runs_path.read_bytes())
    first = data.index(b"\n") + 1
    data[:first] = line_for("rewritten", metrics={"accuracy": 9.0}).ljust(first - 1, b" ")[: first - 1] + b"\n"
    with tracker.runs_path.open("r+b") as handle:  # same inode, same size
        handle.write(bytes(data))
    assert_answers_match_a_rescan(fresh(tracker))


def test_index_copied_from_another_store_is_not_trusted(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    try:
        with ExperimentTracker(one, durable=False) as first, ExperimentTracker(two, durable=False) as second:
            fill(first, 40)
            first.refresh_index()
            fill(second, 40, start=1000)
            second.runs_path.write_bytes(first.runs_path.read_bytes()[:100] + second.runs_path.read_bytes()[100:])
            shutil.copytree(one / INDEX_DIR, two / INDEX_DIR)
            assert_answers_match_a_rescan(fresh(second))
    finally:
        detach_store_log(str(one))
        detach_store_log(str(two))


def test_index_pointing_mid_line_is_rebuilt(tracker: ExperimentTracker) -> None:
    runs = fill(tracker, 30)
    tracker.refresh_index()
    middle = runs[12].offset + 17
    with tracker.runs_path.open("rb") as handle:
        mark = fingerprint(handle.fileno(), middle)

    def point_mid_line(state: dict[str, Any]) -> None:
        state["log"]["watermark"] = middle
        state["log"]["fingerprint"] = mark

    edit_index(tracker, point_mid_line)
    assert_answers_match_a_rescan(fresh(tracker))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda path: path.write_bytes(b"\x00garbage{"), id="garbage"),
        pytest.param(lambda path: path.write_bytes(path.read_bytes()[:50]), id="truncated-json"),
        pytest.param(lambda path: path.write_text("[1, 2, 3]"), id="not-an-object"),
        pytest.param(lambda path: path.write_text('{"version": 2}'), id="missing-keys"),
        pytest.param(lambda path: path.write_text(path.read_text().replace('"version":2', '"version":0')),
                     id="older-version"),
        pytest.param(lambda path: path.write_text(path.read_text().replace('"top_k":100', '"top_k":7')),
                     id="other-settings"),
        pytest.param(lambda path: path.write_bytes(path.read_bytes().replace(b'"failed",4', b'"failed",5')),
                     id="a-number-changed"),
    ],
)
def test_corrupt_or_older_index_file_is_rebuilt(tracker: ExperimentTracker, damage: Callable[[Path], Any]) -> None:
    fill(tracker, 30)
    tracker.refresh_index()
    damage(index_file(tracker))
    other = fresh(tracker)
    assert_answers_match_a_rescan(other)
    assert json.loads(index_file(tracker).read_bytes())["version"] == 2  # saved again, whole


def test_index_deleted_under_a_process_that_keeps_appending_is_rebuilt_not_zero_filled(
    tracker: ExperimentTracker,
) -> None:
    runs = fill(tracker, 30)
    tracker.refresh_index()
    fill(tracker, 2, start=50)
    assert tracker.get_run(runs[0].run_id) == runs[0]  # the id columns are mapped in this process now
    shutil.rmtree(tracker.store / INDEX_DIR)  # as another process's rebuild would remove its files
    fill(tracker, 5, start=100)
    append_raw(tracker, line_for(tracker.get_run(rescan(tracker.store)[0][0].run_id).run_id))  # a duplicate
    assert_answers_match_a_rescan(tracker)
    assert_answers_match_a_rescan(fresh(tracker))


@pytest.mark.parametrize("column", ["hash", "off", "pos", "ids"])
def test_damaged_id_column_never_changes_what_show_finds(tracker: ExperimentTracker, column: str) -> None:
    runs = fill(tracker, 30)
    generation = tracker.refresh_index().generation
    path = tracker.store / INDEX_DIR / f"{generation}.{column}"
    data = bytearray(path.read_bytes())
    for at in (0, 1, 7, len(data) // 2):  # the first entries and one in the middle
        data[at] ^= 0x21
    path.write_bytes(bytes(data))
    for run in runs[:3] + runs[14:17]:
        other = fresh(tracker)
        assert other.get_run(run.run_id) == run
        assert other.get_run(run.run_id[:24]) == run
    with pytest.raises(RunNotFoundError):
        fresh(tracker).get_run("no-such-run")
    assert_answers_match_a_rescan(fresh(tracker))


def test_missing_id_column_is_rebuilt(tracker: ExperimentTracker) -> None:
    fill(tracker, 30)
    generation = tracker.refresh_index().generation
    (tracker.store / INDEX_DIR / f"{generation}.hash").unlink()
    other = fresh(tracker)
    fill(other, 5, start=100)  # the refresh needs the hashes to check for duplicates
    assert_answers_match_a_rescan(other)


def test_id_column_shorter_than_the_index_says_is_rebuilt(tracker: ExperimentTracker) -> None:
    fill(tracker, 30)
    generation = tracker.refresh_index().generation
    with (tracker.store / INDEX_DIR / f"{generation}.off").open("r+b") as handle:
        handle.truncate(16)
    assert_answers_match_a_rescan(fresh(tracker))


# -- duplicates: first wins, later copies are corrupt, never counted ------------------------------


def test_duplicates_in_one_refresh_and_across_refreshes_are_reported_not_counted(tracker: ExperimentTracker) -> None:
    runs = fill(tracker, 20)
    copy_line = codec.encode(runs[3])
    append_raw(tracker, copy_line)
    impostor = line_for(runs[5].run_id, metrics={"accuracy": 99.0})
    append_raw(tracker, impostor + impostor)
    assert tracker.summary()["total_runs"] == 20
    fill(tracker, 3, start=20)
    append_raw(tracker, line_for(runs[0].run_id, metrics={"accuracy": 98.0}))  # after the index was built
    assert tracker.best_run("accuracy").metrics["accuracy"] < 2
    reasons = [c.reason for c in tracker.corrupt_lines()]
    assert reasons == [f"duplicate run_id {runs[3].run_id} (first at line 4)"] + [
        f"duplicate run_id {runs[5].run_id} (first at line 6)"] * 2 + [
        f"duplicate run_id {runs[0].run_id} (first at line 1)"]
    assert tracker.get_run(runs[5].run_id).metrics == runs[5].metrics
    assert_answers_match_a_rescan(tracker)
    assert [item.run_id for item in tracker.runs()] == [run.run_id for run in rescan(tracker.store)[0]]


@pytest.mark.parametrize(("resort_after", "bisect_factor"), [(1 << 16, 64), (2, 0), (1, 1 << 30)],
                         ids=["delta-set", "resorted-and-bisected", "resorted-and-intersected"])
def test_duplicates_are_found_against_the_sorted_hashes_and_the_delta(
    tracker: ExperimentTracker, monkeypatch: pytest.MonkeyPatch, resort_after: int, bisect_factor: int
) -> None:
    from exptrack.store.index import idmap, log_index

    monkeypatch.setattr(log_index, "_RESORT_AFTER", resort_after)
    monkeypatch.setattr(idmap, "_BISECT_FACTOR", bisect_factor)
    runs = fill(tracker, 12)
    tracker.refresh_index()
    recent = fill(tracker, 3, start=100)
    for step in range(6):
        tracker.refresh_index()
        append_raw(tracker, line_for(runs[step * 2].run_id, metrics={"accuracy": 50.0 + step}))  # sorted
        append_raw(tracker, line_for(recent[0].run_id, metrics={"accuracy": 60.0 + step}))  # maybe not yet
        recent = fill(tracker, 3, start=200 + 3 * step)
    tracker.refresh_index()
    assert tracker.best_run("accuracy").metrics["accuracy"] < 2
    assert len([c for c in tracker.corrupt_lines() if "duplicate" in c.reason]) == 12
    assert_answers_match_a_rescan(tracker)
    assert_answers_match_a_rescan(fresh(tracker))


def test_show_by_full_id_unique_prefix_and_ambiguous_prefix(tracker: ExperimentTracker) -> None:
    for run_id in ("abc-1", "abc-2", "abd", "abc"):
        append_raw(tracker, codec.encode(Run(run_id=run_id, timestamp=STAMP, params={}, metrics={"a": 1})))
    tracker.refresh_index()
    assert tracker.get_run("abd").run_id == "abd"
    assert tracker.get_run("abc").run_id == "abc"  # an exact id wins over the ids it prefixes
    with pytest.raises(RunNotFoundError, match=r"ambiguous: abc-1, abc-2, abd, abc$"):
        tracker.get_run("ab")
    with pytest.raises(RunNotFoundError, match="no run with id 'zzz'"):
        tracker.get_run("zzz")


# -- a store the index cannot be saved in ------------------------------------------------------------


class ReadOnlyIndex(FileSystem):
    """Refuses every write under ``.index`` the way a read-only mount does."""

    def open(self, path: str, flags: int, mode: int = 0o666) -> int:
        if INDEX_DIR in path and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return super().open(path, flags, mode)


@pytest.mark.parametrize("existing", [False, True], ids=["no-index-yet", "index-on-disk"])
def test_read_only_store_keeps_the_index_in_memory(tracker: ExperimentTracker, caplog: Any, existing: bool) -> None:
    fill(tracker, 30)
    if existing:
        tracker.refresh_index()
    saved = index_file(tracker).read_bytes() if existing else None
    previous = install(ReadOnlyIndex())
    try:
        caplog.set_level(logging.INFO, logger="exptrack")
        reader = fresh(tracker)
        append_raw(tracker, line_for("appended", metrics={"accuracy": 5.0}))
        assert reader.best_run("accuracy").run_id == "appended"
        assert "keeping it in memory" in caplog.text
        assert not reader.index_stats().persistent
        fill(tracker, 4, start=200)
        assert_answers_match_a_rescan(reader)
    finally:
        install(previous)
    assert (index_file(tracker).read_bytes() if existing else None) == saved


# -- many writers and readers at once -------------------------------------------------------------


def _writer(store: str, worker: int, count: int, barrier: Any) -> int:
    barrier.wait()
    with ExperimentTracker(store, durable=False) as tracker:
        for i in range(count):
            tracker.log_run(params={"worker": worker, "i": i}, metrics={"accuracy": worker * 1000 + i})
    return count


def _reader(store: str, rounds: int, barrier: Any) -> list[tuple[int, float, int]]:
    """(runs counted, best accuracy, max accuracy) seen by each query while writers append."""
    barrier.wait()
    seen = []
    with ExperimentTracker(store, durable=False) as tracker:
        for _ in range(rounds):
            summary = tracker.summary()
            if summary["total_runs"]:
                accuracy = summary["metrics"]["accuracy"]
                seen.append((summary["total_runs"], accuracy["best_value"], accuracy["max"]))
    return seen


def test_concurrent_writers_and_readers_never_see_a_wrong_answer(store: Path) -> None:
    ExperimentTracker(store).close()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(5)
    with ctx.Pool(5) as pool:
        writers = [pool.apply_async(_writer, (str(store), w, 150, barrier)) for w in range(1, 4)]
        readers = [pool.apply_async(_reader, (str(store), 40, barrier)) for _ in range(2)]
        assert [w.get(timeout=120) for w in writers] == [150] * 3  # timeouts are only hang guards
        snapshots = [item for r in readers for item in r.get(timeout=120)]
    runs, _ = rescan(store)
    assert len(runs) == 450
    values = [run.metrics["accuracy"] for run in runs]
    for total, best, highest in snapshots:  # each answer is exactly that of a prefix of the log
        assert best == highest == max(values[:total])
    with ExperimentTracker(store, durable=False) as tracker:
        assert_answers_match_a_rescan(tracker)


# -- the command line: progress on a terminal, every query command filters and formats -----------


def test_cold_query_on_a_terminal_draws_a_progress_bar_on_stderr(
    tracker: ExperimentTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from exptrack.cli import cli
    from exptrack.cli import progress as progress_module

    fill(tracker, 30)
    monkeypatch.setattr(progress_module, "SHOW_FROM_BYTES", 0)
    runner = CliRunner()
    monkeypatch.setattr(progress_module, "_isatty", lambda stream: True)
    drawn = runner.invoke(cli, ["--store", str(tracker.store), "summary"])
    assert drawn.exit_code == 0, drawn.output
    assert "reading the run log" in drawn.stderr
    shutil.rmtree(tracker.store / INDEX_DIR)
    as_json = runner.invoke(cli, ["--store", str(tracker.store), "summary", "--json"])
    assert as_json.exit_code == 0
    assert "reading the run log" not in as_json.stderr
    assert json.loads(as_json.stdout)["total_runs"] == 30
    shutil.rmtree(tracker.store / INDEX_DIR)
    monkeypatch.setattr(progress_module, "_isatty", lambda stream: False)
    piped = runner.invoke(cli, ["--store", str(tracker.store), "best", "accuracy"])
    assert piped.exit_code == 0
    assert "reading the run log" not in piped.stderr


@pytest.mark.parametrize("fmt", ["table", "--json", "--csv", "--md"])
@pytest.mark.parametrize("command", [["runs"], ["best", "accuracy"], ["top", "accuracy", "-k", "3"], ["summary"],
                                     ["show", "RUN"]])
def test_every_query_command_filters_and_formats(tracker: ExperimentTracker, command: list[str], fmt: str) -> None:
    from click.testing import CliRunner

    from exptrack.cli import cli

    runs = fill(tracker, 20)
    wanted = max((run for run in runs if run.params["model"] == "rf"), key=lambda run: run.metrics["accuracy"])
    args = ["--store", str(tracker.store), *[wanted.run_id if part == "RUN" else part for part in command]]
    if command[0] != "show":
        args += ["--where", "params.model = 'rf'"]
    if fmt != "table":
        args.append(fmt)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    if command[0] != "summary":
        assert wanted.run_id in result.stdout
    svm = [run.run_id for run in runs if run.params["model"] == "svm"]
    assert not any(run_id in result.stdout for run_id in svm)
    if fmt == "--json":
        json.loads(result.stdout)
    elif fmt == "--csv":
        assert result.stdout.splitlines()[0].count(",") >= 2
    elif fmt == "--md":
        assert result.stdout.startswith("| ")
