"""The fast reader finds exactly what ``LogScan`` finds: same runs, same statistics, same heaps,
same corrupt-line report, on ordinary lines and on every kind of line that must leave its fast path."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import subprocess
import sys
import zlib
from collections import Counter, defaultdict
from itertools import accumulate, pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exptrack.store import codec, parallel, partial, scan
from exptrack.store import segment as segment_module
from exptrack.store.fastscan import scan_range
from exptrack.store.index.groups import declared_modes, experiment_of
from exptrack.store.index.reducers import BLOCK_SHIFT, MetricFold, TopK
from exptrack.store.record import Run, build_run
from exptrack.store.scan import CorruptLine, LogScan
from exptrack.store.segment import TOP_K, Segment, id_from_key, id_key

STAMP = "2026-01-01T00:00:00.000000Z"


def line(run_id: str = "", **fields: Any) -> bytes:
    """A checksummed line; an id outside the safe set is kept (both readers must refuse it alike)."""
    fields.setdefault("metrics", {"accuracy": 0.5})
    run = build_run(timestamp=STAMP, **fields)
    return codec.encode(dataclasses.replace(run, run_id=run_id) if run_id else run)


def forged(**fields: Any) -> bytes:
    """A checksummed line around a record that validation would refuse (``Run`` skips it)."""
    base: dict[str, Any] = {"run_id": "forged", "timestamp": STAMP, "params": {}, "metrics": {"accuracy": 0.5}}
    base.update(fields)
    return codec.encode(Run(**base))


def with_crc(payload: bytes) -> bytes:
    """``payload`` (a JSON object) checksummed the way ``codec.encode`` does it."""
    return b'%b,"crc":"%08x"}\n' % (payload[:-1], zlib.crc32(payload))


def reference(path: Path, start: int = 0, end: int | None = None) -> dict[str, Any]:
    """Everything a segment reports, computed from ``LogScan`` one run at a time."""
    reader = LogScan(str(path), start=start, end=end)
    statuses: Counter[str] = Counter()
    folds: dict[Any, MetricFold] = {}
    tops: dict[Any, tuple[TopK, TopK]] = {}
    directions: defaultdict[Any, Counter[str]] = defaultdict(Counter)
    corrupt: list[CorruptLine] = []
    ids: list[tuple[str, int]] = []
    for item in reader:
        if isinstance(item, CorruptLine):
            corrupt.append(CorruptLine(item.line, item.offset, item.length, item.reason))
            continue
        statuses[item.status] += 1
        ids.append((item.run_id, item.offset))
        group = (experiment_of(item.get("experiment")), item.status)
        for declared in declared_modes(item.get("directions")).items():
            directions[group, declared[0]][declared[1]] += 1
        for metric, value in item.metrics.items():
            name = (group, metric)
            folds.setdefault(name, MetricFold()).add(value, item.offset >> BLOCK_SHIFT)
            high, low = tops.setdefault(name, (TopK(TOP_K, "max"), TopK(TOP_K, "min")))
            high.add(value, item.offset, item.run_id)
            low.add(value, item.offset, item.run_id)
    return {
        "statuses": dict(statuses), "corrupt": corrupt, "unchecked": reader.unchecked, "lines": reader.lines,
        "end": reader.end_offset, "ids": ids,
        "stats": {name: fold.stats() for name, fold in folds.items()},
        "top": {name: (high.ranked(), low.ranked()) for name, (high, low) in tops.items()},
        "directions": dict(directions),
    }


def digest(segment: Segment) -> dict[str, Any]:
    folds: dict[Any, MetricFold] = {}
    tops = {}
    for group, parts in segment.metrics.items():
        for metric, part in parts.items():
            name = (group, metric)
            fold = folds[name] = MetricFold()
            for block, values in part.blocks:
                fold.feed(block, values)
            tops[name] = (TopK(TOP_K, "max", list(part.top_max)).ranked(),
                          TopK(TOP_K, "min", list(part.top_min)).ranked())
    directions = {(group, metric): counts for group, declared in segment.directions.items()
                  for metric, counts in declared.items()}
    keys = bytes(segment.ids).split(b"\n")[:-1]
    assert [segment_module.id_hash(key) for key in keys] == list(segment.hashes)
    assert list(segment.starts) == list(accumulate((len(key) + 1 for key in keys[:-1]), initial=0))[: len(keys)]
    assert list(segment.sorted_hashes) == sorted(segment.hashes)
    return {
        "statuses": {k: v for k, v in segment.statuses.items() if v}, "corrupt": segment.corrupt,
        "unchecked": segment.unchecked, "lines": segment.lines, "end": segment.end,
        "ids": [(id_from_key(key), offset) for key, offset in zip(keys, segment.offsets)],
        "stats": {name: fold.stats() for name, fold in folds.items()}, "top": tops, "directions": directions,
    }


def assert_same(expected: dict[str, Any], got: dict[str, Any]) -> None:
    for key, want in expected.items():
        left, right = want, got[key]
        if key == "stats":  # NaN-safe comparison of the dataclasses
            left = {name: repr(value) for name, value in want.items()}
            right = {name: repr(value) for name, value in got[key].items()}
        assert left == right, key


TRICKY = [
    line("plain", params={"model": "rf", "lr": 0.1}, metrics={"accuracy": 0.9, "loss": 0.2}, tags=["a", "b=c"]),
    line("nonfinite", metrics={"loss": math.nan, "gain": math.inf, "drop": -math.inf, "accuracy": 0.1}),
    line("ints", metrics={"epochs": 3, "accuracy": 1}, status="failed"),
    line("unicode-é", params={"modèle": "forêt"}, metrics={"précision": 0.7, "accuracy": 0.3}, tags=["ü"]),
    line("escaped-key", metrics={'odd"name\\': 0.25, "new\nline": 1.5}),
    line("metrics-in-params", params={"note": '},"metrics":{"accuracy":1.0},"tags":["x"]'},
         metrics={"accuracy": 0.2}),
    line("nested-params", params={"cfg": {"a": 1}, "metrics": {"accuracy": 1.0}, "tags": ["x"], "z": 1},
         metrics={"accuracy": 0.4}),
    line("brace-in-param", params={"fmt": "{x}"}, metrics={"accuracy": 0.45}),
    line("bracket-tag", tags=['a],"b', "plain"], metrics={"accuracy": 0.35}),
    line("sections", metrics={"accuracy": 0.6}, extra={"code": {"diff": 'a "quoted"\\path'}, "note": "x"}),
    line("empty", params={}, metrics={}),
    line("no-tags", metrics={"accuracy": 0.65}),
    line("backslash-id\\x", metrics={"accuracy": 0.66}),
    line("tab\tid", metrics={"accuracy": 0.67}),
    line("quote\"id", status="killed", metrics={"accuracy": 0.68}),
    b'{"run_id":"unchecked","params":{},"metrics":{"accuracy":0.99}}\n',
    b'{"schema":1,"run_id":"unchecked-2","timestamp":"t","status":"killed","params":{},"metrics":{"\\u00e9":2}}\n',
    line("crlf", metrics={"accuracy": 0.55})[:-1] + b"\r\n",
    line("bad-crc", metrics={"accuracy": 0.12345})[:-3] + b'0"}\n',
    b'{"run_id": "half\n',
    b"\n",
    b"   \n",
    b"\0\0\0\0\n",
    b"not json at all\n",
    b'{"schema":1,"run_id":"bad-utf8","params":{"x":"\xff"},"metrics":{}}\n',
    with_crc(b'{"schema":1,"run_id":"crc-utf8","timestamp":"t","status":"finished","params":{"x":"\xc3"},'
             b'"metrics":{"accuracy":0.1},"tags":[]}'),
    forged(metrics={"accuracy": "high"}),
    forged(metrics={"accuracy": "NaN", "loss": "Infinity"}),
    forged(tags=("ok", 1)),
    forged(run_id=""),
    forged(status=3),
    forged(params=[1, 2]),
    forged(extra={"schema": 9}),
    with_crc(b'{"schema":3,"run_id":"future","timestamp":"t","status":"finished","params":{},"metrics":{},'
             b'"tags":[]}'),
    line("sparse", metrics={"only_here": 7.0}),
    # schema 1 wrote non-finite metrics as strings, and "nonfinite" was an ordinary section then
    with_crc(b'{"schema":1,"run_id":"schema1-nan","timestamp":"t","status":"finished","params":{},'
             b'"metrics":{"loss":"NaN","gain":"Infinity","accuracy":0.2},"tags":[]}'),
    with_crc(b'{"schema":1,"run_id":"schema1-section","timestamp":"t","status":"finished","params":{},'
             b'"metrics":{"accuracy":0.3},"tags":[],"nonfinite":{"accuracy":"NaN"}}'),
    with_crc(b'{"schema":1,"run_id":"schema1-null","timestamp":"t","status":"finished","params":{},'
             b'"metrics":{"accuracy":null},"tags":[]}'),
    # schema 2: a null no section names reads as NaN; a section naming a number or a bad word is refused
    with_crc(b'{"schema":2,"run_id":"bare-null","timestamp":"t","status":"finished","params":{},'
             b'"metrics":{"accuracy":null,"loss":1.5},"tags":[]}'),
    with_crc(b'{"schema":2,"run_id":"names-a-number","timestamp":"t","status":"finished","params":{},'
             b'"metrics":{"accuracy":0.5},"tags":[],"nonfinite":{"accuracy":"NaN"}}'),
    with_crc(b'{"schema":2,"run_id":"bad-word","timestamp":"t","status":"finished","params":{},'
             b'"metrics":{"accuracy":null},"tags":[],"nonfinite":{"accuracy":"inf"}}'),
    line("param-named-nonfinite", params={"nonfinite": {"accuracy": "NaN"}}, metrics={"accuracy": 0.25}),
    line("nonfinite-and-param", params={"x": '"nonfinite":'}, metrics={"accuracy": -math.inf}),
    line("experiment", metrics={"accuracy": 0.71}, extra={"experiment": "wine"}),
    forged(run_id="experiment-not-text", metrics={"accuracy": 0.72}, extra={"experiment": 3}),  # hand-written
    line("pruned", metrics={"accuracy": 0.73}, status="pruned"),
    line("directions", metrics={"accuracy": 0.74, "value": 2}, directions={"value": "min", "accuracy": "max"}),
    forged(metrics={"value": 1}, extra={"directions": {"value": "sideways", "other": "min"}}),
    forged(metrics={"value": 1}, extra={"directions": ["min"]}),
    line("plain-2", params={"model": "svm"}, metrics={"accuracy": 0.9, "loss": 0.2}, tags=["a"]),
]


@pytest.fixture(autouse=True, params=["msgspec", "orjson"])
def line_decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with msgspec's decoder (``store.partial``) and with orjson alone."""
    if request.param == "msgspec":
        pytest.importorskip("msgspec")
    monkeypatch.setattr(partial, "_decoder", None)
    monkeypatch.setattr(partial, "_missing", request.param == "orjson")
    return str(request.param)


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


@pytest.mark.parametrize("chunk", [1 << 20, 97], ids=["one-chunk", "lines-straddle-chunks"])
def test_tricky_lines_read_the_same_as_log_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(scan, "CHUNK_BYTES", chunk)
    path = write(tmp_path / "runs.jsonl", [*TRICKY, b'{"torn": tail'])
    expected = reference(path)
    assert len(expected["corrupt"]) >= 12  # the fixture covers both kinds
    assert len(expected["ids"]) >= 15
    assert_same(expected, digest(scan_range(str(path), 0, path.stat().st_size)))


@pytest.mark.parametrize("tricky", TRICKY, ids=range(len(TRICKY)))
def test_each_tricky_line_between_ordinary_ones_reads_the_same(tmp_path: Path, tricky: bytes) -> None:
    # one at a time: a line that sends a whole range to the careful reader must not hide another
    ordinary = [line(f"ordinary-{i}", metrics={"accuracy": i / 4}, tags=["t"]) for i in range(3)]
    path = write(tmp_path / "runs.jsonl", [ordinary[0], tricky, *ordinary[1:]])
    assert_same(reference(path), digest(scan_range(str(path), 0, path.stat().st_size)))


def test_unusual_metric_value_types_fall_back_to_line_by_line_reading(tmp_path: Path) -> None:
    ordinary = [line(f"r{i}", metrics={"accuracy": i / 10}) for i in range(5)]
    schema1_null = with_crc(b'{"schema":1,"run_id":"n","timestamp":"t","status":"finished","params":{},'
                            b'"metrics":{"accuracy":null},"tags":[]}')
    path = write(tmp_path / "runs.jsonl", [*ordinary[:2], forged(metrics={"accuracy": True}),
                                             schema1_null, *ordinary[2:]])
    expected = reference(path)
    assert [c.reason for c in expected["corrupt"]] == ["metric 'accuracy' is not a number"] * 2
    assert_same(expected, digest(scan_range(str(path), 0, path.stat().st_size)))


def test_over_long_lines_are_skipped_exactly_as_log_scan_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan, "MAX_RECORD_BYTES", 4096)
    monkeypatch.setattr(scan, "CHUNK_BYTES", 1024)
    long_line = b'{"run_id":"huge","pad":"' + b"x" * 20_000 + b'"}\n'
    path = write(tmp_path / "runs.jsonl", [line("a"), long_line, line("b"), long_line, line("c")])
    expected = reference(path)
    assert len(expected["corrupt"]) == 2
    assert_same(expected, digest(scan_range(str(path), 0, path.stat().st_size)))


def many_lines(count: int, seed: int = 0) -> list[bytes]:
    lines = []
    for i in range(count):
        value = ((i * 7919 + seed) % 1000) / 1000
        metrics: dict[str, float] = {"accuracy": value, "loss": 1 - value}
        if i % 97 == 0:
            metrics["loss"] = math.nan
        if i % 13 == 0:
            metrics = {"epochs": i % 5}
        lines.append(line(f"run-{seed}-{i:06d}", params={"i": i, "pad": "p" * 300}, metrics=metrics,
                          tags=["sweep"], status="failed" if i % 11 == 0 else "finished"))
        if i % 501 == 0:
            lines.append(b"garbage line\n")
    return lines


def test_segments_cut_at_block_boundaries_merge_to_the_single_pass_answer(tmp_path: Path) -> None:
    path = write(tmp_path / "runs.jsonl", many_lines(3000))  # ~1.3 MB: several statistics blocks
    size = path.stat().st_size
    cuts = parallel.split_points(str(path), 0, size, 4)
    assert len(cuts) == 5
    assert all(cut % (1 << BLOCK_SHIFT) < 1000 for cut in cuts[1:-1])  # just after a block boundary
    merged = scan_range(str(path), cuts[0], cuts[1])
    for lo, hi in pairwise(cuts[1:]):
        merged.merge(scan_range(str(path), lo, hi))
    expected = reference(path)
    assert_same(expected, digest(merged))
    assert_same(expected, digest(scan_range(str(path), 0, size)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(st.sampled_from(TRICKY), max_size=25), chunk=st.sampled_from([64, 333, 1 << 20]))
def test_any_mix_of_tricky_lines_reads_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, items: list[bytes], chunk: int
) -> None:
    monkeypatch.setattr(scan, "CHUNK_BYTES", chunk)
    path = write(tmp_path / "mix.jsonl", items)
    assert_same(reference(path), digest(scan_range(str(path), 0, path.stat().st_size)))


def test_id_keys_round_trip_and_never_hold_a_newline() -> None:
    for run_id in ["plain", "with\nnewline", "back\\slash", "\\n", "é", "a\\\nb"]:
        key = id_key(run_id)
        assert b"\n" not in key
        assert id_from_key(key) == run_id


_CHILD = """
import sys
from exptrack.store import parallel
parallel.PARALLEL_MIN_BYTES = 0
segment = parallel.scan_parallel(sys.argv[1], 0, int(sys.argv[2]), workers=3)
print(segment.runs, segment.lines, len(segment.corrupt), segment.hashes.tobytes().hex()[:64])
"""


def test_parallel_read_in_forked_children_merges_to_the_same_segment(tmp_path: Path) -> None:
    # a fresh interpreter: the test process may have threads, and then fastscan does not fork
    path = write(tmp_path / "runs.jsonl", many_lines(2500, seed=3))
    size = path.stat().st_size
    single = scan_range(str(path), 0, size)
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(size)], capture_output=True, text=True,
                          timeout=120, check=True)  # the timeout is only a hang guard
    runs, lines, corrupt, head = done.stdout.split()
    assert (int(runs), int(lines), int(corrupt)) == (single.runs, single.lines, len(single.corrupt))
    assert head == single.hashes.tobytes().hex()[:64]


def _best_in_daemon(store: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from exptrack import ExperimentTracker

    try:
        queue.put(ExperimentTracker(store).best_run("accuracy", mode="max").run_id)
    except BaseException as exc:  # report, do not hang the parent
        queue.put(f"error: {type(exc).__name__}: {exc}")


def test_a_daemonic_worker_reads_a_large_log_in_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A multiprocessing.Pool worker is daemonic: the parallel reader must not try to fork there."""
    from exptrack import ExperimentTracker

    store = tmp_path / "store"
    tracker = ExperimentTracker(store, durable=False)
    # more than two 256 KiB blocks, so the reader would split the log between two processes
    tracker.log_runs([{"params": {"i": i, "pad": "x" * 200}, "metrics": {"accuracy": i / 4000}} for i in range(4000)])
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 1)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_best_in_daemon, args=(str(store), queue), daemon=True)
    child.start()
    try:
        answer = queue.get(timeout=60)  # a hang guard, not a timing assertion
    finally:
        child.join(timeout=10)
    assert answer == tracker.best_run("accuracy").run_id
