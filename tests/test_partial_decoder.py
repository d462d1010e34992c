"""The msgspec line decoder (``store.partial``) changes nothing the fast reader reports.

Every line here carries a valid checksum, so the fast reader trusts it: whatever msgspec accepts
where orjson refuses or reads otherwise (numbers that overflow, integers beyond 64 bits, invalid
UTF-8, lone surrogates, deep nesting, duplicate or escaped keys, unknown sections) would change
the runs or the corrupt-line report.  Each test reads the same file three ways -- the fast reader
with msgspec, the fast reader on orjson alone, and ``LogScan`` -- and requires the same answers.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fastscan import assert_same, digest, line, reference, with_crc, write

from exptrack.store import partial, scan
from exptrack.store.fastscan import scan_range
from exptrack.store.segment import Segment

msgspec = pytest.importorskip("msgspec")

HEAD = b'{"schema":2,"run_id":"%b","timestamp":"t","status":"finished",'


def forged(run_id: bytes, *, params: bytes = b"{}", metrics: bytes = b'{"accuracy":0.5}', tags: bytes = b"[]",
           tail: bytes = b"", head: bytes = HEAD) -> bytes:
    """A line written byte by byte (no encoder involved) with the checksum ``codec`` computes."""
    return with_crc(head % run_id + b'"params":%b,"metrics":%b,"tags":%b%b}' % (params, metrics, tags, tail))


@pytest.fixture
def fresh_decoder() -> Iterator[None]:
    """A decoder with nothing learned (learning is per process), restored afterwards."""
    saved = partial._decoder, partial._missing
    partial._decoder, partial._missing = None, False
    try:
        yield
    finally:
        partial._decoder, partial._missing = saved


def read_both(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Segment, Segment]:
    """The fast reader's segment with msgspec, then with orjson alone."""
    partial._decoder, partial._missing = None, False
    fast = scan_range(str(path), 0, path.stat().st_size)
    assert partial.decoder() is not None
    with monkeypatch.context() as patch:
        patch.setattr(partial, "_decoder", None)
        patch.setattr(partial, "_missing", True)
        plain = scan_range(str(path), 0, path.stat().st_size)
    return fast, plain


def assert_all_agree(path: Path, monkeypatch: pytest.MonkeyPatch) -> Segment:
    fast, plain = read_both(path, monkeypatch)
    expected = reference(path)
    assert_same(expected, digest(plain))
    assert_same(expected, digest(fast))
    assert fast.names == plain.names  # param names, tag keys and sections: what filters may name
    return fast


ORDINARY = [line(f"ordinary-{i}", params={"lr": i / 10}, metrics={"accuracy": i / 4}, tags=["t=1"],
                 extra={"code": {"commit": "9e3779b1"}, "duration_s": 1.5}) for i in range(3)]

FORGED = {
    # numbers orjson refuses (infinity when parsed as a double) in every place msgspec reads
    "overflow-in-params": forged(b"o1", params=b'{"lr":1e999}'),
    "overflow-in-metrics": forged(b"o2", metrics=b'{"accuracy":-1E+400}'),
    "overflow-long-integer": forged(b"o3", params=b'{"x":1' + b"0" * 400 + b"}"),
    "overflow-in-section": forged(b"o4", tail=b',"code":{"x":[1,2e308]}'),
    "overflow-in-unknown-section": forged(b"o5", tail=b',"mine":1e999'),
    "underflow-is-zero": forged(b"u1", metrics=b'{"accuracy":1e-400}', tail=b',"mine":-1e-999'),
    # integers beyond 64 bits: orjson reads them as floats, msgspec as ints
    "big-int-metric": forged(b"b1", metrics=b'{"accuracy":18446744073709551616}'),
    "big-negative-metric": forged(b"b2", metrics=b'{"accuracy":-9223372036854775809,"loss":1.5}'),
    "big-int-with-strings": forged(b"b3", metrics=b'{"accuracy":"NaN","loss":99999999999999999999}'),
    "largest-64-bit-ints": forged(b"b4", metrics=b'{"a":18446744073709551615,"b":-9223372036854775808}'),
    "big-int-in-params": forged(b"b5", params=b'{"seed":123456789012345678901234567890}'),
    "big-negative-schema": forged(b"b6", head=HEAD.replace(b"2", b"-9223372036854775809", 1)),
    # strings: invalid UTF-8 and lone surrogate escapes, in values and in keys
    "bad-utf8-in-section": forged(b"s1", tail=b',"system":{"host":"\xff\xfe"}'),
    "bad-utf8-in-params": forged(b"s2", params=b'{"x":"\xc3"}'),
    "bad-utf8-key": forged(b"s3", tail=b',"\xe9":1'),
    "utf8-surrogate-bytes": forged(b"s4", params=b'{"x":"\xed\xa0\x80"}'),
    "lone-high-surrogate": forged(b"s5", params=b'{"x":"\\ud800"}'),
    "lone-low-surrogate": forged(b"s6", tail=b',"code":"\\udc00"'),
    "high-then-letter": forged(b"s7", tail=b',"mine":["\\ud83d\\u0041"]'),
    "surrogate-pair": forged(b"s8", params=b'{"x":"\\ud83d\\ude00"}'),
    "control-character": forged(b"s9", params=b'{"x":"a\x01b"}'),
    "good-utf8": forged(b"s10", params=b'{"mod\xc3\xa8le":"f\xc3\xb4ret"}', tail=b',"n\xc3\xb6te":"\xe2\x82\xac"'),
    # structure
    "deep-1024": forged(b"d1", tail=b',"mine":' + b"[" * 1023 + b"]" * 1023),
    "deep-1025": forged(b"d2", tail=b',"mine":' + b"[" * 1025 + b"]" * 1025),
    "deep-in-params": forged(b"d3", params=b'{"x":' + b"{\"a\":" * 1100 + b"1" + b"}" * 1100 + b"}"),
    "duplicate-run-id": forged(b"first", tail=b',"run_id":"second"'),
    "duplicate-metrics": forged(b"m1", tail=b',"metrics":{"loss":2.5}'),
    "duplicate-metric-name": forged(b"m2", metrics=b'{"accuracy":0.1,"accuracy":0.9}'),
    "escaped-core-key": with_crc(b'{"schema":2,"r\\u0075n_id":"esc","timestamp":"t","status":"finished",'
                                 b'"params":{},"metrics":{"accuracy":0.3},"tags":[]}'),
    "escaped-section-key": forged(b"k2", tail=b',"\\u0063ode":{"a":1}'),
    "empty-key": forged(b"k3", tail=b',"":1'),
    "backtick-key": forged(b"k4", tail=b',"we`ird` - at `$":1'),
    "unnameable-key": forged(b"k5", tail=b',"a\\n\\"b\\u0001":1'),
    "whitespace": with_crc(b'{ "schema" : 2 ,\t"run_id":"ws", "timestamp":"t","status":"finished","params":{ },'
                           b'"metrics":{"accuracy" : 0.25 },"tags":[ ]\r }'),
    "form-feed": forged(b"ff", params=b'{\x0c"x":1}'),
    "trailing-comma": forged(b"tc", params=b'{"x":1,}'),
    "leading-zero": forged(b"lz", params=b'{"x":01}'),
    "nan-literal": forged(b"nl", params=b'{"x":NaN}'),
    # what the reader itself checks
    "null-metric": forged(b"n1", metrics=b'{"accuracy":null}', tail=b',"nonfinite":{"accuracy":"Infinity"}'),
    "bool-metric": forged(b"n2", metrics=b'{"accuracy":true}'),
    "nested-metric": forged(b"n3", metrics=b'{"accuracy":{"x":1}}'),
    "experiment-null": forged(b"e1", tail=b',"experiment":null'),
    "directions": forged(b"e2", tail=b',"directions":{"accuracy":"min","x":18446744073709551616}'),
    "edit-shaped": forged(b"e3", tail=b',"kind":"tag","add":["x"]'),
    "missing-tags": with_crc(b'{"schema":2,"run_id":"mt","timestamp":"t","status":"finished","params":{},'
                             b'"metrics":{}}'),
}


@pytest.mark.usefixtures("fresh_decoder")
@pytest.mark.parametrize("tricky", FORGED.values(), ids=FORGED.keys())
def test_a_forged_line_reads_the_same_with_msgspec_and_with_orjson(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tricky: bytes) -> None:
    path = write(tmp_path / "runs.jsonl", [ORDINARY[0], tricky, *ORDINARY[1:]])
    assert_all_agree(path, monkeypatch)


@pytest.mark.usefixtures("fresh_decoder")
@pytest.mark.parametrize("chunk", [1 << 20, 211], ids=["one-chunk", "small-chunks"])
def test_all_forged_lines_together_read_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(scan, "CHUNK_BYTES", chunk)
    path = write(tmp_path / "runs.jsonl", [*ORDINARY, *FORGED.values(), *ORDINARY])
    segment = assert_all_agree(path, monkeypatch)
    assert len(segment.corrupt) >= 15  # the fixture covers refused lines...
    assert segment.runs >= 20  # ...and accepted ones


@pytest.mark.usefixtures("fresh_decoder")
def test_deep_nesting_under_a_raised_recursion_limit_is_still_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # msgspec's depth limit is Python's recursion limit; orjson's is 1024 levels whatever it is
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        path = write(tmp_path / "runs.jsonl", [ORDINARY[0], FORGED["deep-1025"], FORGED["deep-in-params"]])
        segment = assert_all_agree(path, monkeypatch)
    finally:
        sys.setrecursionlimit(limit)
    assert [c.line for c in segment.corrupt] == [2, 3]


@pytest.mark.usefixtures("fresh_decoder")
def test_sections_are_learned_and_named_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    many = [forged(b"sec%d" % i, tail=b',"section_%d":{"v":%d}' % (i, i)) for i in range(partial.MAX_LEARNED + 5)]
    path = write(tmp_path / "runs.jsonl", [*ORDINARY, *many])
    segment = assert_all_agree(path, monkeypatch)
    assert {f"section_{i}" for i in range(partial.MAX_LEARNED + 5)} <= segment.names.sections
    decoder = partial.decoder()
    assert decoder is not None
    assert {"code", "duration_s", "name", "crc"} <= decoder.learned.keys()
    assert len(decoder.learned) <= partial.MAX_LEARNED  # the rest took the orjson path


@pytest.mark.usefixtures("fresh_decoder")
def test_structs_decoded_before_a_section_was_learned_still_name_their_sections() -> None:
    # another thread may learn a section (a new struct class) between a decode and its sections
    decoder = partial.decoder()
    assert decoder is not None
    before = decoder.decode([ORDINARY[0].rstrip(b"\n")])
    assert before is not None
    after = decoder.decode([FORGED["overflow-in-unknown-section"].replace(b"1e999", b"1").rstrip(b"\n")])
    assert after is not None
    assert "mine" in decoder.learned
    assert type(before[0]) is not type(after[0])
    assert {"code", "duration_s", "name"} <= decoder.sections(before, set())
    assert "mine" in decoder.sections(after, set())


def test_without_msgspec_the_reader_uses_orjson(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partial, "_decoder", None)
    monkeypatch.setattr(partial, "_missing", False)
    monkeypatch.setitem(sys.modules, "msgspec", None)  # ``import msgspec`` now raises ImportError
    assert partial.decoder() is None
    path = write(tmp_path / "runs.jsonl", [*ORDINARY, FORGED["overflow-in-params"]])
    assert_same(reference(path), digest(scan_range(str(path), 0, path.stat().st_size)))


# -- generated lines --------------------------------------------------------------------------------

_DIGITS = st.text("0123456789", min_size=1, max_size=25)


@st.composite
def number_text(draw: Any) -> bytes:
    """A JSON number as text, often at the edges: long mantissas, 3-digit exponents, 64-bit limits."""
    kind = draw(st.sampled_from(["int", "float", "exp", "edge"]))
    sign = draw(st.sampled_from(["", "-"]))
    if kind == "edge":
        return draw(st.sampled_from([b"18446744073709551615", b"18446744073709551616", b"-9223372036854775808",
                                     b"-9223372036854775809", b"1.7976931348623157e308", b"1.8e308",
                                     b"4.9e-324", b"2.4e-324", b"-0", b"-0.0", b"0e0"]))
    whole = draw(_DIGITS).lstrip("0") or "0"
    text = sign + whole
    if kind in ("float", "exp"):
        text += "." + draw(_DIGITS)
    if kind == "exp":
        text += draw(st.sampled_from(["e", "E", "e+", "e-", "E-"])) + draw(st.text("0123456789", min_size=1,
                                                                                      max_size=4))
    return text.encode()


@st.composite
def string_text(draw: Any) -> bytes:
    """A JSON string as text: plain, escaped, with raw non-ASCII or invalid bytes, or lone surrogates."""
    pieces = draw(st.lists(st.one_of(
        st.text(st.characters(exclude_characters='"\\', min_codepoint=32, exclude_categories=("Cs",)),
                max_size=6).map(str.encode),
        st.sampled_from([b"\\n", b"\\\"", b"\\\\", b"\\u00e9", b"\\ud83d\\ude00", b"\\ud800", b"\\udfff",
                         b"\\ud800\\u0041", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x82\xac", b"`", b"\x01"]),
    ), max_size=4))
    return b'"' + b"".join(pieces) + b'"'


def value_text(depth: int) -> Any:
    scalar = st.one_of(number_text(), string_text(), st.sampled_from([b"true", b"false", b"null"]))
    if depth == 0:
        return scalar
    inner = value_text(depth - 1)
    return st.one_of(
        scalar,
        st.lists(inner, max_size=3).map(lambda items: b"[" + b",".join(items) + b"]"),
        st.lists(st.tuples(string_text(), inner), max_size=3).map(
            lambda pairs: b"{" + b",".join(k + b":" + v for k, v in pairs) + b"}"),
    )


@st.composite
def generated_line(draw: Any, index: int = 0) -> bytes:
    params = draw(st.lists(st.tuples(string_text(), value_text(2)), max_size=3))
    metrics = draw(st.lists(st.tuples(st.sampled_from([b'"accuracy"', b'"loss"', b'"f\\u0031"']),
                                      st.one_of(number_text(), st.sampled_from([b"null", b'"NaN"', b"true"]))),
                            max_size=3))
    names = st.one_of(st.sampled_from([b'"code"', b'"system"', b'"mine"', b'"experiment"', b'"directions"',
                                       b'"nonfinite"', b'"kind"']), string_text())
    sections = draw(st.lists(st.tuples(names, value_text(2)), max_size=3))
    tail = b"".join(b"," + k + b":" + v for k, v in sections)
    return forged(b"gen-%d" % draw(st.integers(0, 10**6)),
                  params=b"{" + b",".join(k + b":" + v for k, v in params) + b"}",
                  metrics=b"{" + b",".join(k + b":" + v for k, v in metrics) + b"}", tail=tail)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(generated_line(), min_size=1, max_size=8))
def test_generated_lines_read_the_same_with_msgspec_and_with_orjson(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[bytes]) -> None:
    saved = partial._decoder, partial._missing
    try:
        path = write(tmp_path / "gen.jsonl", [ORDINARY[0], *lines, ORDINARY[1]])
        assert_all_agree(path, monkeypatch)
    finally:
        partial._decoder, partial._missing = saved
