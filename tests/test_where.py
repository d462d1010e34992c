"""Filter expressions and sort specs: semantics table, error positions, fuzzing and properties."""

from __future__ import annotations

import math
import operator
import pickle
import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exptrack.errors import FilterSyntaxError, QueryError
from exptrack.query.where import MISSING, SortKey, compile_where, parse_sort, resolve_field, sort_records

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

NAN = float("nan")
RECORDS: tuple[dict[str, object], ...] = (
    {
        "run_id": "a1", "timestamp": "2026-11-01T10:00:00.000000Z", "status": "finished",
        "params": {"model": "rf", "lr": "0.01", "depth": 8, "optimizer": {"name": "adam"}, "layers.n": 3,
                   "name with space": "x"},
        "metrics": {"accuracy": 0.9, "loss": 0.3, "val-loss": 0.35},
        "tags": ["baseline", "team=vision"], "code": {"commit": "abc123"},
    },
    {
        "run_id": "b2", "timestamp": "2026-11-15T23:30:00+02:00", "status": "failed",
        "params": {"model": "svm", "lr": 0.1, "depth": None, "use_gpu": True},
        "metrics": {"accuracy": 0.7, "loss": NAN},
        "tags": ["team=nlp", "prod"], "code": {"commit": "def456"},
    },
    {
        "run_id": "c3", "timestamp": "2026-11-15T22:00:00.5Z", "status": "running",
        "params": {"model": "RF_large", "lr": "fast", "use_gpu": False, "quote": "it's", "path": "C:\\tmp"},
        "metrics": {"accuracy": 0.95},
        "tags": [],
    },
    {"run_id": "d4", "timestamp": "2026-12-01", "status": "killed", "params": {}, "metrics": {},
     "system": {"os": "linux"}},
)
ALL = "a1 b2 c3 d4"

CASES = [
    # every operator on a float metric; d4 lacks the metric, so it never matches
    ("metrics.accuracy > 0.8", "a1 c3"),
    ("metrics.accuracy >= 0.9", "a1 c3"),
    ("metrics.accuracy < 0.9", "b2"),
    ("metrics.accuracy <= 0.7", "b2"),
    ("metrics.accuracy = 0.7", "b2"),
    ("metrics.accuracy == 0.7", "b2"),
    ("metrics.accuracy != 0.7", "a1 c3"),
    ("metrics.accuracy <> 0.7", "a1 c3"),
    ("metrics.accuracy > 1e-3", "a1 b2 c3"),
    ("metrics.accuracy>-0.5", "a1 b2 c3"),
    ("metrics.accuracy > .92", "c3"),
    # strings
    ("params.model = 'rf'", "a1"),
    ('params.model = "rf"', "a1"),
    ("params.model != 'rf'", "b2 c3"),
    ("params.model < 's'", "a1 c3"),
    ("run_id >= 'b' and run_id < 'd'", "b2 c3"),
    ("status = 'failed' or status = 'killed'", "b2 d4"),
    # numbers stored as strings compare numerically against numbers
    ("params.lr = 0.01", "a1"),
    ("params.lr < 0.05", "a1"),
    ("params.lr > 0.05", "b2"),
    ("params.lr != 0.01", "b2 c3"),
    ("params.lr = '0.01'", "a1"),
    ("params.lr = '0.1'", "b2"),
    ("params.depth = 8", "a1"),
    ("params.depth = 8.0", "a1"),
    ("params.depth = '8'", "a1"),
    ("params.depth != 8", ""),
    # booleans equal only booleans
    ("params.use_gpu = true", "b2"),
    ("params.use_gpu = FALSE", "c3"),
    ("params.use_gpu != true", "c3"),
    ("params.use_gpu = 1", ""),
    ("params.depth = true", ""),
    ("params.use_gpu in (true, 'x')", "b2"),
    # null and missing
    ("params.depth is null", "b2 c3 d4"),
    ("params.depth IS NOT NULL", "a1"),
    ("system.os = 'linux'", "d4"),
    ("system.os is null", "a1 b2 c3"),
    ("code.commit != 'abc123'", "b2"),
    ("not code.commit = 'abc123'", "b2 c3 d4"),
    # NaN compares false under every operator but is not null
    ("metrics.loss < 1", "a1"),
    ("metrics.loss >= 0", "a1"),
    ("metrics.loss = 0.3", "a1"),
    ("metrics.loss != 0.3", ""),
    ("metrics.loss not in (1, 2)", "a1"),
    ("metrics.loss is not null", "a1 b2"),
    ("not metrics.loss < 1", "b2 c3 d4"),
    # IN
    ("params.model in ('rf', 'svm')", "a1 b2"),
    ("params.model not in ('rf', 'svm')", "c3"),
    ("params.lr in (0.01, 0.1)", "a1 b2"),
    ("params.lr not in (0.01)", "b2 c3"),
    ("run_id IN ('a1','d4')", "a1 d4"),
    # LIKE / ILIKE
    ("params.model like 'r%'", "a1"),
    ("params.model like 'R%'", "c3"),
    ("params.model ilike 'r%'", "a1 c3"),
    ("params.model not like 'r%'", "b2 c3"),
    ("params.model not ilike 'r%'", "b2"),
    ("params.model like 'r_'", "a1"),
    ("params.model like 's_m'", "b2"),
    ("params.model like '_'", ""),
    ("params.model like '%'", "a1 b2 c3"),
    ("params.model like '%a%e'", "c3"),
    (r"params.model like 'RF\_%'", "c3"),
    (r"params.model like 'RF\%'", ""),
    ("code.commit like 'abc%'", "a1"),
    (r"code.commit like 'abc\%'", ""),
    ("params.depth like '8'", ""),
    # tags: the list matches when any tag does, negations when none does
    ("tags = 'baseline'", "a1"),
    ("tags != 'baseline'", "b2 c3"),
    ("tags like 'team=%'", "a1 b2"),
    ("tags not like 'team=%'", "c3"),
    ("tags in ('prod', 'baseline')", "a1 b2"),
    ("tags not in ('prod', 'baseline')", "c3"),
    ("tags is null", "d4"),
    ("tags is not null", "a1 b2 c3"),
    ("tags.team = 'vision'", "a1"),
    ("tags.team != 'vision'", "b2"),
    ("tags.team in ('nlp', 'x')", "b2"),
    ("tags.team like 'v%'", "a1"),
    ("tags.team is null", "c3 d4"),
    ("tags.team is not null", "a1 b2"),
    # timestamps compare as UTC instants: b2 is 21:30Z although its text sorts after c3's
    ("timestamp < '2026-11-15T22:00:00Z'", "a1 b2"),
    ("timestamp >= '2026-12-01'", "d4"),
    ("timestamp > '2026-11-15T23:00:00+01:00'", "c3 d4"),
    ("timestamp = '2026-11-15T21:30:00Z'", "b2"),
    ("timestamp = '2026-11-15T21:30Z'", "b2"),
    ("timestamp = '2026-11-15 21:30:00z'", "b2"),
    ("timestamp = '2026-11-15T16:30:00-0500'", "b2"),
    ("timestamp != '2026-11-01T10:00:00Z'", "b2 c3 d4"),
    ("timestamp > '2026-11-15T21:59:59.9999999Z'", "c3 d4"),
    ("timestamp in ('2026-11-01T10:00:00Z', '2026-12-01T00:00:00+00:00')", "a1 d4"),
    ("timestamp like '2026-11-15%'", "b2 c3"),
    ("timestamp >= '2026-11-15' and timestamp < '2026-11-16'", "b2 c3"),
    # odd names, nesting and dotted keys
    ("params.optimizer.name = 'adam'", "a1"),
    ("params.layers.n = 3", "a1"),
    ("params.`layers.n` = 3", "a1"),
    ('metrics."val-loss" < 0.4', "a1"),
    ("metrics.`val-loss` < 0.4", "a1"),
    ("params.`name with space` = 'x'", "a1"),
    # string escapes
    ("params.quote = 'it''s'", "c3"),
    (r"params.quote = 'it\'s'", "c3"),
    ("params.quote = \"it's\"", "c3"),
    (r"params.path = 'C:\\tmp'", "c3"),
    (r"params.path = 'C:\tmp'", "c3"),
    # precedence: NOT binds tightest, then AND, then OR
    ("params.model = 'svm' or params.model = 'rf' and metrics.accuracy > 0.95", "b2"),
    ("(params.model = 'svm' or params.model = 'rf') and metrics.accuracy > 0.8", "a1"),
    ("not params.model = 'rf' and status = 'failed'", "b2"),
    ("not (params.model = 'rf' or status = 'failed')", "c3 d4"),
    ("NOT NOT status = 'killed'", "d4"),
    ("status = 'pruned' or status = 'scheduled' Or status = 'killed'", "d4"),
    ("status != 'pruned' and status != 'scheduled' AND run_id != 'a1'", "b2 c3 d4"),
    ("((status = 'killed'))", "d4"),
    ("params.model NOT IN ('rf') and params.model is not null", "b2 c3"),
]


@pytest.mark.parametrize(("expression", "expected"), CASES, ids=[c[0] for c in CASES])
def test_expression_selects_expected_runs(expression: str, expected: str) -> None:
    predicate = compile_where(expression)
    results = [predicate(r) for r in RECORDS]
    assert all(type(x) is bool for x in results)
    assert {r["run_id"] for r, hit in zip(RECORDS, results, strict=True) if hit} == set(expected.split())


ERRORS = [
    ("metrics.acc > ", 14, "expected a value"),
    ("params.model = 'rf", 15, "unterminated string"),
    ("metrics.`val loss > 1", 8, "unterminated name"),
    ("metrics.acc => 3", 12, "did you mean >="),
    ("metrics.acc ~ 3", 12, "unexpected character '~'"),
    ("metrics.a > 1 && metrics.b > 2", 14, "use AND"),
    ("(metrics.acc > 1", 0, "missing ')'"),
    ("(metrics.acc > 1 status = 'x'", 17, "expected ')', AND or OR"),
    ("metrics.acc > 1)", 15, "unmatched ')'"),
    ("metrics.acc > 1 params.x = 2", 16, "after a complete condition"),
    ("accuracy > 0.5", 0, "did you mean metrics.accuracy or params.accuracy?"),
    ("metrics > 0.5", 0, "metrics needs a name"),
    ("metrics.acc > 1 and", 19, "expected a field name"),
    ("metrics.acc between 1", 12, "expected an operator"),
    ("params.x = abc", 11, "quote text values: 'abc'"),
    ("metrics.acc < true", 14, "booleans support only"),
    ("timestamp > 'yesterday'", 12, "ISO 8601"),
    ("timestamp < 5", 12, "ISO 8601"),
    ("params.x = null", 11, "IS NULL"),
    ("params.x in ('a', null)", 18, "IS NULL"),
    ("params.x like 3", 14, "quoted pattern"),
    ("metrics.x > 1e", 12, "malformed number"),
    ("metrics.x > 1.2.3", 12, "malformed number"),
    ("params.x in 1", 12, "expected '(' after IN"),
    ("params.x in ()", 13, "expected a value"),
    ("params.x in (1,", 15, "expected a value"),
    ("params.x in (1 2)", 15, "expected ',' or ')'"),
    ("params.x is 3", 12, "expected NULL after IS"),
    ("params.x is not 3", 16, "expected NULL after IS NOT"),
    ("params.x not between 1", 13, "expected IN, LIKE or ILIKE after NOT"),
    ("'rf' = params.model", 0, "put the field on the left"),
    ("metrics. = 1", 9, "expected a name after '.'"),
    ("metrics.`` = 1", 8, "empty field name"),
    ("and = 1", 0, "expected a field name but found the keyword AND"),
    ("__import__('os').system('true')", 0, "unknown field"),
    ("metrics.x > 1 and 'a'.b", 18, "expected a field name"),
]


@pytest.mark.parametrize(("expression", "position", "fragment"), ERRORS, ids=[e[0] or "-" for e in ERRORS])
def test_malformed_expression_points_at_the_offending_token(
    expression: str, position: int, fragment: str
) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        compile_where(expression)
    assert caught.value.position == position
    assert fragment in caught.value.reason
    assert caught.value.expression == expression
    assert isinstance(caught.value, QueryError)


@pytest.mark.parametrize(
    "expression", ["(" * 500 + "status = 'pruned'" + ")" * 500, "not " * 500 + "status = 'pruned'"], ids=["()", "not"]
)
def test_deep_nesting_is_a_syntax_error_not_a_recursion_error(expression: str) -> None:
    with pytest.raises(FilterSyntaxError, match="nested too deeply"):
        compile_where(expression)


def test_long_flat_chains_evaluate_without_recursion() -> None:
    conjunction = " and ".join(["status != 'pruned'"] * 5000)
    predicate = compile_where(conjunction + " or " + " or ".join(["run_id = 'q'"] * 5000))
    assert [predicate(r) for r in RECORDS] == [True, True, True, True]


def test_predicate_reports_fields_and_metric_names_that_resolve_back() -> None:
    predicate = compile_where(
        "metrics.accuracy > 0.9 and params.model = 'rf' or metrics.`val loss` is null or tags.team = 'a'"
    )
    assert predicate.fields == {"metrics.accuracy", "params.model", "metrics.`val loss`", "tags.team"}
    assert predicate.metric_names == {"accuracy", "val loss"}
    assert predicate.expression.startswith("metrics.accuracy")
    for field in predicate.fields:
        resolve_field(RECORDS[0], field)


def test_predicate_pickles_by_its_source() -> None:
    predicate = compile_where("metrics.accuracy > 0.8 and tags != 'prod'")
    clone = pickle.loads(pickle.dumps(predicate))  # noqa: S301 -- our own bytes
    assert [clone(r) for r in RECORDS] == [predicate(r) for r in RECORDS] == [True, False, True, False]
    assert pickle.loads(pickle.dumps(MISSING)) is MISSING  # noqa: S301 -- our own bytes


def test_non_string_expression_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        compile_where(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("metrics.accuracy", 0.9),
        ("metrics.val-loss", 0.35),
        ("metrics.`val-loss`", 0.35),
        ("params.optimizer.name", "adam"),
        ("params.layers.n", 3),
        ("params.`name with space`", "x"),
        ("tags.team", "vision"),
        ("tags", ["baseline", "team=vision"]),
        ("code.commit", "abc123"),
        ("metrics.missing", MISSING),
        ("tags.owner", MISSING),
        ("system.os", MISSING),
    ],
)
def test_resolve_field_reads_dotted_paths(field: str, expected: object) -> None:
    assert resolve_field(RECORDS[0], field) == expected


def test_resolve_field_tells_stored_null_from_missing() -> None:
    assert resolve_field(RECORDS[1], "params.depth") is None
    assert resolve_field(RECORDS[2], "params.depth") is MISSING


@pytest.mark.parametrize("field", ["accuracy", "metrics..x", "metrics.val loss", "params", "metrics.`x", ""])
def test_resolve_field_rejects_bad_names(field: str) -> None:
    with pytest.raises(QueryError):
        resolve_field(RECORDS[0], field)


@pytest.mark.parametrize(
    ("spec", "keys"),
    [
        ("metrics.accuracy desc", [SortKey("metrics.accuracy", descending=True)]),
        ("metrics.loss", [SortKey("metrics.loss")]),
        ("params.lr asc, timestamp DESC", [SortKey("params.lr"), SortKey("timestamp", descending=True)]),
        ("  metrics.`val loss`  desc ", [SortKey("metrics.`val loss`", descending=True)]),
        ("metrics.val-loss", [SortKey("metrics.val-loss")]),
    ],
)
def test_parse_sort_reads_fields_and_directions(spec: str, keys: list[SortKey]) -> None:
    assert parse_sort(spec) == keys


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "empty sort spec"),
        ("metrics.acc desc,", "has no field"),
        ("desc", "has no field"),
        ("accuracy desc", "did you mean metrics.accuracy"),
        ("metrics.acc descending", "invalid field"),
        ("metrics.`acc desc", "unterminated"),
    ],
)
def test_parse_sort_rejects_bad_specs(spec: str, fragment: str) -> None:
    with pytest.raises(QueryError, match=re.escape(fragment)):
        parse_sort(spec)


def _ids(records: Sequence[Mapping[str, object]]) -> list[object]:
    return [r["run_id"] for r in records]


def test_sort_puts_missing_and_nan_last_in_both_directions() -> None:
    records = [{"run_id": i, "metrics": m} for i, m in
               enumerate([{"loss": 0.3}, {"loss": NAN}, {}, {"loss": 0.1}, {"loss": 0.2}, {"loss": None}])]
    assert _ids(sort_records(records, parse_sort("metrics.loss"))) == [3, 4, 0, 1, 2, 5]
    assert _ids(sort_records(records, parse_sort("metrics.loss desc"))) == [0, 4, 3, 1, 2, 5]


def test_sort_orders_numbers_before_strings_and_numeric_param_strings_as_numbers() -> None:
    values = ["b", 2, "a", "10", True, None, "9", 1.5]
    records = [{"run_id": v, "params": {"x": v}} for v in values]
    assert _ids(sort_records(records, parse_sort("params.x"))) == [1.5, 2, "9", "10", "a", "b", True, None]
    expected_desc = ["10", "9", 2, 1.5, "b", "a", True, None]
    assert _ids(sort_records(records, parse_sort("params.x desc"))) == expected_desc


def test_sort_is_stable_across_several_keys() -> None:
    records = [
        {"run_id": "p", "params": {"model": "rf"}, "metrics": {"acc": 0.5}},
        {"run_id": "q", "params": {"model": "svm"}, "metrics": {"acc": 0.9}},
        {"run_id": "r", "params": {"model": "rf"}, "metrics": {"acc": 0.7}},
        {"run_id": "s", "params": {"model": "rf"}, "metrics": {"acc": 0.7}},
        {"run_id": "t", "params": {}, "metrics": {"acc": 1.0}},
    ]
    ordered = sort_records(iter(records), parse_sort("params.model, metrics.acc desc"))
    assert _ids(ordered) == ["r", "s", "p", "q", "t"]
    assert ordered[0] is records[2]
    assert _ids(records) == ["p", "q", "r", "s", "t"]


def test_sort_by_timestamp_uses_the_instant_not_the_text() -> None:
    assert _ids(sort_records(RECORDS, parse_sort("timestamp"))) == ["a1", "b2", "c3", "d4"]
    assert _ids(sort_records(RECORDS, parse_sort("timestamp desc"))) == ["d4", "c3", "b2", "a1"]


# --- fuzzing: any text either compiles or raises FilterSyntaxError, and evaluation never raises

FRAGMENTS = [
    "metrics.accuracy", "params.model", "params.lr", "tags", "tags.team", "timestamp", "status",
    "code.commit", "accuracy", "(", ")", ",", ".", "and", "or", "not", "in", "like", "ilike", "is", "null",
    "true", "false",
    "=", "==", "!=", "<>", "<", "<=", ">", ">=", "'rf'", "'2026-11-01'", "'r%'", "'0.5'", "0.5", "-3", "1e-3",
    "`odd name`", '"x"', "'", "`", "\\", "%",
]


def _check_any_text(text: str) -> None:
    try:
        predicate = compile_where(text)
    except FilterSyntaxError as exc:
        position: int | None = exc.position
    else:
        position = None
        assert all(type(predicate(r)) is bool for r in RECORDS)
    assert position is None or 0 <= position <= len(text)


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_arbitrary_text_compiles_or_raises_filter_syntax_error(text: str) -> None:
    _check_any_text(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=12), st.sampled_from([" ", ""]))
def test_token_soup_compiles_or_raises_filter_syntax_error(parts: list[str], glue: str) -> None:
    _check_any_text(glue.join(parts))


# --- properties: compiled predicates agree with a direct reading of the documented rules

_REFERENCE_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def _reference(value: object, op: str, literal: object) -> bool:
    op = {"==": "=", "<>": "!="}.get(op, op)
    if value is MISSING or value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if op == "!=":
        return not _reference(value, "=", literal)
    if isinstance(value, bool) or isinstance(literal, bool):
        return op == "=" and type(value) is type(literal) and value == literal
    left, right = value, literal
    if isinstance(left, str) != isinstance(right, str):
        try:
            left, right = float(left), float(right)  # type: ignore[arg-type]
        except ValueError:
            return False
    return bool(_REFERENCE_OPS[op](left, right))


def _render(literal: object, double: bool) -> str:
    if isinstance(literal, bool):
        return "TRUE" if literal else "false"
    if isinstance(literal, str):
        quote = '"' if double else "'"
        return quote + literal.replace("\\", "\\\\").replace(quote, quote * 2) + quote
    return repr(literal)


VALUES = st.one_of(
    st.just(MISSING), st.none(), st.booleans(), st.integers(-5, 5), st.floats(),
    st.sampled_from(["0.5", "1", "-2e3", "nan", "inf", "abc", "", "rf", " 2 "]), st.text(max_size=4),
)
LITERALS = st.one_of(
    st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["0.5", "1", "abc", "rf", "2"]), st.text(max_size=4),
)


def _record(value: object) -> dict[str, object]:
    return {"params": {} if value is MISSING else {"x": value}}


@settings(max_examples=600, deadline=None)
@given(VALUES, st.sampled_from(["=", "==", "!=", "<>", "<", "<=", ">", ">="]), LITERALS, st.booleans())
def test_comparison_matches_reference(value: object, op: str, literal: object, double: bool) -> None:
    expression = f"params.x {op} {_render(literal, double)}"
    if isinstance(literal, bool) and op not in ("=", "==", "!=", "<>"):
        with pytest.raises(FilterSyntaxError):
            compile_where(expression)
        return
    assert compile_where(expression)(_record(value)) is _reference(value, op, literal)


@settings(max_examples=300, deadline=None)
@given(VALUES, st.lists(LITERALS, min_size=1, max_size=4), st.booleans())
def test_in_list_matches_reference(value: object, literals: list[object], negate: bool) -> None:
    expression = f"params.x {'not in' if negate else 'in'} ({', '.join(_render(v, False) for v in literals)})"
    hit = any(_reference(value, "=", v) for v in literals)
    nan = isinstance(value, float) and math.isnan(value)
    present = value is not MISSING and value is not None and not nan
    assert compile_where(expression)(_record(value)) is (present and not hit if negate else hit)


def _like_regex(pattern: str) -> str:
    out, chars = [], iter(pattern)
    for c in chars:
        if c == "\\":
            out.append(re.escape(next(chars, "\\")))
        else:
            out.append({"%": ".*", "_": "."}.get(c, re.escape(c)))
    return "".join(out)


@settings(max_examples=600, deadline=None)
@given(st.text(alphabet="ab%_\\", max_size=8), st.text(alphabet="abAB%_\\", max_size=8), st.booleans())
def test_like_matches_a_regex_translation(pattern: str, value: str, ignore_case: bool) -> None:
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    expected = re.fullmatch(_like_regex(pattern), value, flags) is not None
    keyword = "ilike" if ignore_case else "like"
    assert compile_where(f"params.x {keyword} {_render(pattern, False)}")(_record(value)) is expected


OFFSETS = st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
MOMENTS = st.builds(
    lambda naive, tz: naive.replace(tzinfo=tz),
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)), OFFSETS,
)


def _iso(moment: datetime, style: int) -> str:
    if style == 0:  # the form records are written in
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if style == 1:
        return moment.isoformat().replace("+00:00", "Z")
    return moment.isoformat(sep=" ", timespec="seconds")


@settings(max_examples=400, deadline=None)
@given(MOMENTS, MOMENTS, st.sampled_from(sorted(_REFERENCE_OPS)), st.integers(0, 2), st.integers(0, 2))
def test_timestamp_comparison_matches_datetime_comparison(
    stored: datetime, literal: datetime, op: str, stored_style: int, literal_style: int
) -> None:
    if literal_style == 2:
        literal = literal.replace(microsecond=0)
    if stored_style == 2:
        stored = stored.replace(microsecond=0)
    predicate = compile_where(f"timestamp {op} '{_iso(literal, literal_style)}'")
    assert predicate({"timestamp": _iso(stored, stored_style)}) is _REFERENCE_OPS[op](stored, literal)
