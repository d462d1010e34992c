"""A build from byte 0 that writes its id columns to files as it reads (``store.spill``) makes the
same index as one that keeps them in memory: the same columns byte for byte, the same state, the
same answers -- with helpers reading pieces, with a piece that has to be read again line by line,
with duplicate ids, and when the files cannot be written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_fastscan import forged, line, many_lines, write

from exptrack.store import codec
from exptrack.store.index import log_index
from exptrack.store.index.log_index import LogIndex
from exptrack.store.spill import ColumnSink

HANG_GUARD = 300.0  # seconds; only a hang guard


def build(store: Path, *, spill: bool) -> LogIndex:
    index = LogIndex(store, store / "runs.jsonl")
    saved = log_index.SPILL_MIN_BYTES
    log_index.SPILL_MIN_BYTES = 0 if spill else 1 << 62
    try:
        index.refresh()
    finally:
        log_index.SPILL_MIN_BYTES = saved
    return index


def saved_state(store: Path, *, exact: bool = False) -> tuple[dict[str, Any], dict[str, bytes]]:
    """index.json without the generation names, and each id column's counted bytes (``exact``: the
    files hold nothing else, as when the spilled columns were not read again into memory)."""
    raw = (store / ".index" / "index.json").read_bytes()
    state = codec.loads(raw)
    ids = state["ids"]
    generation, sorted_name = ids.pop("generation"), ids["sorted"].pop(0)
    lengths = {"hash": 8 * ids["count"], "off": 8 * ids["count"], "pos": 8 * ids["count"], "ids": ids["length"]}
    columns = {column: (store / ".index" / f"{generation}.{column}").read_bytes() for column in lengths}
    if not exact:
        columns = {column: data[: lengths[column]] for column, data in columns.items()}
    columns["sorted"] = (store / ".index" / sorted_name).read_bytes()
    for column, data in columns.items():
        assert len(data) == (lengths.get(column) or 8 * ids["sorted"][0]), column
    state["log"].pop("ino")
    state.pop("crc")  # of the text, which names the generation
    return state, columns


def two_stores(tmp_path: Path, lines: list[bytes]) -> tuple[Path, Path]:
    stores = []
    for name in ("spilled", "in-memory"):
        store = tmp_path / name
        store.mkdir()
        write(store / "runs.jsonl", lines)
        stores.append(store)
    return stores[0], stores[1]


def assert_same_index(spilled: Path, in_memory: Path, *, exact: bool = True) -> None:
    assert saved_state(spilled, exact=exact) == saved_state(in_memory)


LINES = many_lines(2500, seed=5)  # ~1 MB: several statistics blocks; garbage lines and NaNs among them


def test_a_spilled_build_saves_the_same_index(tmp_path: Path) -> None:
    spilled, in_memory = two_stores(tmp_path, LINES)
    index = build(spilled, spill=True)
    build(in_memory, spill=False)
    assert index.count == 2500
    assert not list((spilled / ".index").glob("*.tmp"))
    assert_same_index(spilled, in_memory)


def test_a_piece_read_again_line_by_line_starts_its_columns_over(tmp_path: Path) -> None:
    # the forged metric sends its range to the careful reader, which rewinds the sink first
    lines = [*LINES[:1200], forged(metrics={"accuracy": True}), *LINES[1200:]]
    spilled, in_memory = two_stores(tmp_path, lines)
    build(spilled, spill=True)
    build(in_memory, spill=False)
    assert_same_index(spilled, in_memory)


def test_duplicate_ids_in_a_spilled_build_are_reported_as_in_memory(tmp_path: Path) -> None:
    lines = [*LINES[:700], line("run-5-000003", metrics={"accuracy": 0.99}), *LINES[700:]]
    spilled, in_memory = two_stores(tmp_path, lines)
    index = build(spilled, spill=True)
    build(in_memory, spill=False)
    assert [c.reason for c in index.corrupt if c.reason.startswith("duplicate")] == [
        "duplicate run_id run-5-000003 (first at line 5)"]  # a garbage line is line 2
    assert_same_index(spilled, in_memory, exact=False)  # read again into memory: the ids were compared


def test_columns_that_cannot_be_written_are_read_into_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ColumnSink, "write", no_space)
    spilled, in_memory = two_stores(tmp_path, LINES)
    build(spilled, spill=True)
    build(in_memory, spill=False)
    assert_same_index(spilled, in_memory, exact=False)


_HELPERS = """
import json, os, sys
sys.path.insert(0, sys.argv[2])
os.cpu_count = lambda: 3  # three pieces: two helpers' files appended in order
from exptrack.store import parallel
from exptrack.store.index import log_index
from test_spill import build, saved_state
from pathlib import Path
parallel.PARALLEL_MIN_BYTES = 0
spilled, in_memory = Path(sys.argv[1]) / "spilled", Path(sys.argv[1]) / "in-memory"
index = build(spilled, spill=True)
build(in_memory, spill=False)
left, right = saved_state(spilled, exact=True), saved_state(in_memory)
print(json.dumps({"same": left == right, "runs": index.count,
                  "leftovers": sorted(p.name for p in (spilled / ".index").glob("*.tmp"))}))
"""


def test_helpers_write_their_pieces_and_the_reader_appends_them_in_order(tmp_path: Path) -> None:
    # a fresh interpreter: the test process may have threads, and then the reader does not fork
    lines = [*LINES[:1800], forged(metrics={"accuracy": "high"}), *LINES[1800:]]  # the last piece rewinds
    two_stores(tmp_path, lines)
    done = subprocess.run([sys.executable, "-c", _HELPERS, str(tmp_path), str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=HANG_GUARD, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"same": True, "runs": 2500, "leftovers": []}
