"""``log.txt``: the per-run line written without ``logging`` is the line ``logging`` would write,
and whenever anything else could see the record, ``logging`` writes it."""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from exptrack import ExperimentTracker
from exptrack.store import logs
from exptrack.store.logs import LOG_FORMAT, StoreLine

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO pid=(\d+) exptrack\.tracker: logged run (\w+) \((.*)\)")


def no_root_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Take pytest's capture handlers off the root logger (they are added after the fixtures run),
    as in a program that configured no logging: exptrack's handler is then the only destination."""
    monkeypatch.setattr(logging.getLogger(), "handlers", [])


def run_lines(store: Path) -> list[str]:
    return [line for line in (store / "log.txt").read_text(encoding="utf-8").splitlines() if "logged run" in line]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The messages that went through ``logging`` (``Logger.log``) instead of the direct write."""
    seen: list[str] = []
    original = logging.Logger.log

    def log(self: logging.Logger, level: int, msg: object, *args: object, **kwargs: object) -> None:
        seen.append(str(msg) % args if args else str(msg))
        original(self, level, msg, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(logging.Logger, "log", log)
    return seen


def test_durable_run_line_is_written_directly_in_the_handlers_format(
    store: Path, spy: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    no_root_handlers(monkeypatch)
    tracker = ExperimentTracker(store)
    runs = [tracker.log_run(metrics={"accuracy": 0.5, "loss": 1 / 3}), tracker.log_runs([{"metrics": {"f1": 0.25}}])[0]]
    assert spy == []  # nothing else listens: no LogRecord was made
    lines = run_lines(store)
    assert [LINE.fullmatch(line).groups() for line in lines] == [  # type: ignore[union-attr]
        (str(os.getpid()), runs[0].run_id, "finished; accuracy=0.5, loss=0.333333"),
        (str(os.getpid()), runs[1].run_id, "finished; f1=0.25"),
    ]
    # the same line logging itself writes through the store's handler, but for the time stamp
    record = logging.LogRecord("exptrack.tracker", logging.INFO, __file__, 1, "logged run %s (%s)",
                               (runs[0].run_id, "finished; accuracy=0.5, loss=0.333333"), None)
    expected = logging.Formatter(LOG_FORMAT).format(record)
    assert lines[0][23:] == expected[23:]


def test_a_root_handler_still_receives_the_run_line_through_logging(
    store: Path, spy: list[str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_root_handlers(monkeypatch)
    tracker = ExperimentTracker(store)
    logging.getLogger().addHandler(caplog.handler)
    try:
        run = tracker.log_run(metrics={"accuracy": 0.5})
    finally:
        logging.getLogger().removeHandler(caplog.handler)
    assert spy == [f"logged run {run.run_id} (finished; accuracy=0.5)"]
    assert [r.getMessage() for r in caplog.records if "logged run" in r.getMessage()] == spy
    (line,) = run_lines(store)  # and log.txt has it once, from the handler
    assert LINE.fullmatch(line)


def test_a_filter_or_another_format_sends_the_line_through_logging(
    store: Path, spy: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    no_root_handlers(monkeypatch)
    tracker = ExperimentTracker(store)
    handler = logs._handlers[os.path.abspath(store)]
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    first = tracker.log_run(metrics={"accuracy": 0.1})
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    refuse = logging.Filter("nothing")  # a filter on the tracker's logger refuses every record
    logging.getLogger("exptrack.tracker").addFilter(refuse)
    try:
        tracker.log_run(metrics={"accuracy": 0.2})
    finally:
        logging.getLogger("exptrack.tracker").removeFilter(refuse)
    assert len(spy) == 2
    assert run_lines(store) == [f"INFO logged run {first.run_id} (finished; accuracy=0.1)"]


def test_a_level_above_info_writes_no_run_line(store: Path, spy: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    no_root_handlers(monkeypatch)
    package = logging.getLogger("exptrack")
    level = package.level
    package.setLevel(logging.WARNING)  # setLevel: it also clears isEnabledFor's cache
    try:
        ExperimentTracker(store).log_run(metrics={"accuracy": 0.5})
    finally:
        package.setLevel(level)
    assert spy == []
    assert run_lines(store) == []


def test_flush_only_runs_write_no_line_at_the_default_level(store: Path) -> None:
    ExperimentTracker(store, durable=False).log_run(metrics={"accuracy": 0.5})
    assert run_lines(store) == []


def test_a_closed_handler_falls_back_to_logging(store: Path, spy: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    no_root_handlers(monkeypatch)
    tracker = ExperimentTracker(store)
    line = StoreLine(logging.getLogger("exptrack.tracker"), str(store))
    logs.detach_store_log(str(store))
    line.log(logging.INFO, "after detach")
    assert spy == ["after detach"]
    tracker.close()


def test_processes_sharing_a_store_write_whole_lines_with_their_pids(store: Path) -> None:
    script = (
        "import sys; from exptrack import ExperimentTracker\n"
        "t = ExperimentTracker(sys.argv[1])\n"
        "for i in range(200): t.log_run(params={'w': sys.argv[2]}, metrics={'accuracy': i / 200})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(store), str(w)], env=env) for w in range(3)]
    try:
        codes = [proc.wait(timeout=300) for proc in procs]  # a hang guard only
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert codes == [0, 0, 0]
    lines = run_lines(store)
    assert len(lines) == 600
    assert all(LINE.fullmatch(line) for line in lines)
    assert {LINE.fullmatch(line).group(1) for line in lines} == {str(p.pid) for p in procs}  # type: ignore[union-attr]
    ids = {run.run_id for run in ExperimentTracker(store).runs()}
    assert {LINE.fullmatch(line).group(2) for line in lines} == ids  # type: ignore[union-attr]


class _FullDisk(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_log_txt_that_cannot_be_written_never_fails_the_run(
    store: Path, spy: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_root_handlers(monkeypatch)
    tracker = ExperimentTracker(store)
    handler = logs._handlers[os.path.abspath(store)]
    monkeypatch.setattr(handler, "stream", _FullDisk())
    run = tracker.log_run(metrics={"accuracy": 0.5})  # acknowledged: log.txt is a diagnostic, not the record
    assert spy == []  # the direct path took it, and reported the failure the way logging does
    assert "Logging error" in capsys.readouterr().err
    assert [r.run_id for r in ExperimentTracker(store).runs()] == [run.run_id]


def test_a_handler_closed_under_the_tracker_falls_back_to_logging(
    store: Path, spy: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    no_root_handlers(monkeypatch)
    tracker = ExperimentTracker(store)
    logs._handlers[os.path.abspath(store)].close()  # its stream is None now; logging reopens it on emit
    run = tracker.log_run(metrics={"accuracy": 0.5})
    assert spy == [f"logged run {run.run_id} (finished; accuracy=0.5)"]
    assert [LINE.fullmatch(line).group(2) for line in run_lines(store)] == [run.run_id]  # type: ignore[union-attr]
