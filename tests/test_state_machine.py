"""A hypothesis state machine over the run log: appends, crashes, garbage, power loss, full disks.

The model is the exact byte content the log must have, built from what the test itself wrote
(garbage, foreign lines) and from the bytes the file-system seam saw exptrack write -- plus the
list of acknowledged runs and the size the last ``fsync`` made durable.  After every step:

* the file holds exactly the model's bytes (exptrack only ever appends, and only what it said);
* a reload returns, in order, exactly the complete lines that are records exptrack wrote, and
  every acknowledged run among them, intact;
* every other line (garbage, foreign JSON, torn fragments, an unterminated tail) is reported as
  a corrupt line at its exact offset -- every fault is reported, none swallows a record;
* a strict tracker raises exactly when something is corrupt.

Rules: log, crash mid-write, garbage line, invalid UTF-8, valid JSON that is not a run,
power loss (truncate to the last fsync), ENOSPC once, reopen, and damage to one file of the
persistent index (a bit flip, same-length garbage, truncation, deletion, garbage for
``index.json``): the index is a cache, so every answer that goes through it (summary, best/top,
show, corrupt lines) must still equal what the log says.  Deterministic sweeps of the
shape-keeping damage close the module.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from exptrack import CorruptLine, CorruptStoreError, ExperimentTracker, InvalidRecordError, Run, StorageError
from exptrack.query.ranking import summarize, summary_dict, top_runs
from exptrack.store import codec
from exptrack.store.fsio import FileSystem, install
from exptrack.store.index.identity import INDEX_DIR, INDEX_FILE
from exptrack.store.logs import detach_store_log


class Crash(BaseException):  # the process died: nothing after this runs
    pass


class ModelFileSystem(FileSystem):
    """The real file system, recording what reaches the log and injecting one-shot faults."""

    def __init__(self, log_path: str) -> None:
        self.log_path = log_path
        self.log_fds: set[int] = set()
        self.written = bytearray()  # every byte exptrack wrote to the log, in order
        self.records: set[bytes] = set()  # complete record lines exptrack tried to write
        self.synced = 0
        self.fault: tuple[str, float] | None = None
        self.crashed = False

    def open(self, path: str, flags: int, mode: int = 0o666) -> int:
        fd = super().open(path, flags, mode)
        if path == self.log_path:
            self.log_fds.add(fd)
        return fd

    def close(self, fd: int) -> None:
        self.log_fds.discard(fd)
        super().close(fd)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if self.crashed:
            raise AssertionError("write after the process crashed")
        if fd not in self.log_fds:
            return super().write(fd, data)
        data = bytes(data)
        if len(data) > 1:
            self.records.update(line for line in data.split(b"\n") if line)
        if self.fault is not None:
            kind, fraction = self.fault
            self.fault = None
            part = data[: int(len(data) * fraction)]
            if part:
                self.written += part[: super().write(fd, part)]
            if kind == "crash":
                self.crashed = True
                raise Crash
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = super().write(fd, data)
        self.written += data[:written]
        return written

    def fsync(self, fd: int) -> None:
        # Durability is modelled, not needed: the power-loss rule truncates the log to the size
        # the last completed fsync covered.  (Real fsyncs would only slow the machine down.)
        if fd in self.log_fds:
            self.synced = os.fstat(fd).st_size


texts = st.text(max_size=20) | st.sampled_from(["line\nbreak", "tab\tcr\r", "nul\x00", "\u2028\u2029", "é—🙂"])
values = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False,
                                                                                  allow_infinity=False) | texts
metric_values = st.floats() | st.integers(-(2**53), 2**53)


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="exptrack-sm-"))
        self.store = self.dir / "store"
        self.log_path = self.store / "runs.jsonl"
        self.fs = ModelFileSystem(str(self.log_path))
        self.previous = install(self.fs)
        self.tracker = ExperimentTracker(self.store, lock_timeout=5)
        self.model = bytearray()  # what the log must hold
        self.acked: list[Run] = []

    def teardown(self) -> None:
        try:
            self.tracker.close()
        finally:
            install(self.previous)
            detach_store_log(str(self.store))
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ------------------------------------------------------------------------------

    def _append(self, params: dict[str, object], metrics: dict[str, object]) -> BaseException | None:
        start = len(self.fs.written)
        try:
            self.acked.append(self.tracker.log_run(params=params, metrics=metrics))
            error: BaseException | None = None
        except (Crash, StorageError, InvalidRecordError) as exc:
            error = exc
        self.model += self.fs.written[start:]
        return error

    def _reopen(self) -> None:
        self.fs.crashed = False
        self.tracker.close()
        self.tracker = ExperimentTracker(self.store, lock_timeout=5)

    def _foreign(self, data: bytes) -> None:
        """Bytes appended by something other than exptrack (an editor, another tool)."""
        with self.log_path.open("ab") as handle:
            handle.write(data)
        self.model += data

    # -- rules --------------------------------------------------------------------------------

    @rule(params=st.dictionaries(texts, values, max_size=4), metrics=st.dictionaries(
        st.text(min_size=1, max_size=8), metric_values, max_size=3))
    def log(self, params: dict[str, object], metrics: dict[str, object]) -> None:
        before = bytes(self.model)
        error = self._append({"n": len(self.acked), **params}, metrics)
        assert error is None or isinstance(error, InvalidRecordError), error
        if error is not None:
            assert bytes(self.model) == before

    @rule(text=texts)
    def log_unstorable(self, text: str) -> None:
        before = self.log_path.read_bytes() if self.log_path.exists() else b""
        error = self._append({"bad": text + "\ud800"}, {"x": 1.0})  # a lone surrogate has no UTF-8 form
        assert isinstance(error, InvalidRecordError)
        assert error.field == "params.bad"
        assert (self.log_path.read_bytes() if self.log_path.exists() else b"") == before  # byte-identical

    @rule(fraction=st.floats(0, 1, exclude_max=True))
    def crash_mid_write(self, fraction: float) -> None:
        self.fs.fault = ("crash", fraction)
        error = self._append({"crash": fraction}, {"x": 0.5})
        assert isinstance(error, Crash)
        self._reopen()  # a new process takes over

    @rule(fraction=st.floats(0, 1, exclude_max=True))
    def enospc_once(self, fraction: float) -> None:
        self.fs.fault = ("enospc", fraction)
        error = self._append({"enospc": fraction}, {"x": 0.25})
        assert isinstance(error, StorageError)
        assert error.errno == errno.ENOSPC
        assert error.filename == str(self.log_path)

    @rule(garbage=st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")))
    def garbage_line(self, garbage: bytes) -> None:
        self._foreign(garbage + b"\n")

    @rule()
    def invalid_utf8_line(self) -> None:
        self._foreign(b'{"run_id":"\xff\xfe","params":{},"metrics":{}}\n')

    @rule(line=st.sampled_from([b'{"hello":"world"}', b"[1,2,3]", b'"text"', b"null", b'{"run_id":7}']))
    def json_not_a_record(self, line: bytes) -> None:
        self._foreign(line + b"\n")

    @rule()
    def power_loss(self) -> None:
        self.tracker.close()
        if self.log_path.exists():
            os.truncate(self.log_path, self.fs.synced)
        del self.model[self.fs.synced :]
        self._reopen()

    @rule()
    def reopen(self) -> None:
        self._reopen()

    @rule(
        damage=st.sampled_from(["flip", "overwrite", "truncate", "delete", "garbage"]),
        pick=st.floats(0, 1, exclude_max=True),
        where=st.floats(0, 1, exclude_max=True),
        bit=st.integers(0, 7),
        garbage=st.binary(max_size=64),
    )
    def corrupt_index(self, damage: str, pick: float, where: float, bit: int, garbage: bytes) -> None:
        """Damage one file of the persistent index (a disposable cache): no answer may change.

        A bit flip, same-length garbage over part of it, truncation, deletion, or garbage
        replacing ``index.json``.
        """
        # Positions are drawn as fractions: file names and sizes vary between runs (random ids),
        # and hypothesis needs the same draws whatever the store looks like.
        files = sorted(p for p in (self.store / INDEX_DIR).glob("*") if p.is_file())
        if not files:
            return
        target = files[int(pick * len(files))]
        content = target.read_bytes()
        at = int(where * len(content))
        if damage == "flip" and content:
            target.write_bytes(content[:at] + bytes([content[at] ^ (1 << bit)]) + content[at + 1 :])
        elif damage == "overwrite":  # the file keeps its size: only a checksum can tell
            patch = garbage[: len(content) - at]
            target.write_bytes(content[:at] + patch + content[at + len(patch) :])
        elif damage == "truncate":
            target.write_bytes(content[:at])
        elif damage == "garbage":
            (self.store / INDEX_DIR / INDEX_FILE).write_bytes(garbage)
        else:
            target.unlink()
        self._reopen()  # a new process loads the damaged index

    # -- the invariant ------------------------------------------------------------------------

    @invariant()
    def reload_equals_the_model(self) -> None:
        actual = self.log_path.read_bytes() if self.log_path.exists() else b""
        assert actual == bytes(self.model), "the log holds bytes the model does not"

        expected_runs: list[int] = []  # offsets of lines that are records exptrack wrote
        expected_corrupt: list[tuple[int, int]] = []  # (offset, length) of every other line
        offset = 0
        for raw in bytes(self.model).split(b"\n")[:-1]:
            if raw in self.fs.records:
                expected_runs.append(offset)
            else:
                expected_corrupt.append((offset, len(raw)))
            offset += len(raw) + 1
        if offset < len(self.model):  # an unterminated tail: torn, since no writer is active
            expected_corrupt.append((offset, len(self.model) - offset))

        items = list(self.tracker.scan())
        runs = [item for item in items if isinstance(item, Run)]
        corrupt = [item for item in items if isinstance(item, CorruptLine)]
        assert [run.offset for run in runs] == expected_runs
        assert [(c.offset, c.length) for c in corrupt] == expected_corrupt
        stored = {run.run_id: codec.dumps(run.to_dict()) for run in runs}  # NaN-aware equality
        for run in self.acked:
            assert stored.get(run.run_id) == codec.dumps(run.to_dict()), f"acknowledged run {run.run_id} lost"

        self._answers_match(runs, corrupt)

        with ExperimentTracker(self.store, strict=True) as strict:
            if expected_corrupt:
                with pytest.raises(CorruptStoreError):
                    list(strict.runs())
            else:
                assert [run.run_id for run in strict.runs()] == [run.run_id for run in runs]


    def _answers_match(self, runs: list[Run], corrupt: list[CorruptLine]) -> None:
        """Index-backed answers (summary, best/top, show, corrupt lines) equal the log's."""
        tracker = self.tracker
        assert [(c.offset, c.length) for c in tracker.corrupt_lines()] == [(c.offset, c.length) for c in corrupt]
        summary = summarize(runs)
        expected = summary_dict(summary.groups, None, len(corrupt))
        actual = tracker.summary(status="any")
        actual.pop("unchecked_runs", None)
        assert codec.dumps(actual) == codec.dumps(expected), (actual, expected)
        for name in summary.groups.metric_names():
            for mode in ("max", "min"):
                want = [run.run_id for run in top_runs(runs, name, 3, mode)]
                if want:
                    got = [run.run_id for run in tracker.top_runs(name, 3, mode=mode, status="any")]
                    assert got == want, (name, mode, got, want)
        for run in runs:
            assert codec.dumps(tracker.get_run(run.run_id).to_dict()) == codec.dumps(run.to_dict())


TestLogMachine = LogMachine.TestCase
TestLogMachine.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    database=None,  # its fsyncs cost more than the machine itself; failures print their reproduction
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.stress
class TestLogMachineStress(LogMachine.TestCase):  # type: ignore[name-defined]
    """The same machine, ten times longer: ``pytest -m stress``."""

    settings = settings(
        max_examples=600,
        stateful_step_count=50,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# -- damage that keeps the index's shape -------------------------------------------------------------


def _answers(tracker: ExperimentTracker) -> bytes:
    """Everything a user can ask, as bytes; the index must never change any of it."""
    out: dict[str, object] = {"summary": tracker.summary(), "corrupt": [c.to_dict() for c in tracker.corrupt_lines()]}
    for name in ("accuracy", "loss"):
        for mode in ("max", "min"):
            out[f"{name}-{mode}"] = [run.run_id for run in tracker.top_runs(name, 5, mode=mode)]
    return codec.dumps(out)


def _indexed_store(root: Path) -> tuple[Path, bytes, list[str]]:
    store = root / "store"
    with ExperimentTracker(store, durable=False) as tracker:
        ids = [tracker.log_run(params={"i": i}, metrics={"accuracy": i / 10, "loss": 1 - i / 10}).run_id
               for i in range(6)]
        with (store / "runs.jsonl").open("ab") as handle:
            handle.write(b"garbage\n")
        tracker.log_run(metrics={"accuracy": 0.05})
        expected = _answers(tracker)  # builds and saves the index
    detach_store_log(str(store))
    return store, expected, ids


class _NoSync(FileSystem):
    def fsync(self, fd: int) -> None:  # the index's saves only need to be correct here, not durable
        pass


def _damaged_answers(store: Path, ids: list[str]) -> bytes | str:
    previous = install(_NoSync())
    try:
        return _answers_of(store, ids)
    finally:
        install(previous)


def _answers_of(store: Path, ids: list[str]) -> bytes | str:
    with ExperimentTracker(store) as tracker:
        try:
            for run_id in ids:
                tracker.get_run(run_id)
            return _answers(tracker)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"


def _restore(store: Path, saved: Path) -> None:
    """Put the whole index back: a rebuild replaces its generation, not just the damaged file."""
    shutil.rmtree(store / INDEX_DIR)
    shutil.copytree(saved, store / INDEX_DIR)
    detach_store_log(str(store))


def test_a_bit_flip_anywhere_in_index_json_never_changes_an_answer(tmp_path: Path) -> None:
    store, expected, ids = _indexed_store(tmp_path)
    saved = shutil.copytree(store / INDEX_DIR, tmp_path / "saved")
    pristine = (saved / INDEX_FILE).read_bytes()
    wrong = []
    for at in range(0, len(pristine), 7):  # every 7th byte, cycling through the 8 bits
        (store / INDEX_DIR / INDEX_FILE).write_bytes(
            pristine[:at] + bytes([pristine[at] ^ (1 << (at % 8))]) + pristine[at + 1 :]
        )
        got = _damaged_answers(store, ids)
        if got != expected:
            wrong.append((at, pristine[at - 8 : at + 8], got if isinstance(got, str) else "different answers"))
        _restore(store, saved)
    assert wrong == [], f"{len(wrong)} flips changed answers, e.g. {wrong[:3]}"


def test_same_length_damage_to_an_id_column_never_changes_an_answer(tmp_path: Path) -> None:
    store, expected, ids = _indexed_store(tmp_path)
    saved = shutil.copytree(store / INDEX_DIR, tmp_path / "saved")
    columns = sorted(p.name for p in saved.iterdir() if p.is_file() and p.name != INDEX_FILE)
    assert columns
    wrong = []
    for name in columns:
        pristine = (saved / name).read_bytes()
        for at in range(0, len(pristine), 3):
            for value in (pristine[at] ^ 0x01, pristine[at] ^ 0x80):
                (store / INDEX_DIR / name).write_bytes(pristine[:at] + bytes([value]) + pristine[at + 1 :])
                got = _damaged_answers(store, ids)
                if got != expected:
                    wrong.append((name, at, value, got if isinstance(got, str) else "different answers"))
                _restore(store, saved)
    assert wrong == [], f"{len(wrong)} damaged bytes changed answers, e.g. {wrong[:3]}"
