"""Run record ⇄ bytes on disk: the only module that knows the line format (and imports orjson).

A line is one JSON object terminated by ``\\n``::

    {"schema":1,"run_id":"…","timestamp":"…Z","status":"finished","params":{…},
     "metrics":{…},"tags":[…], …optional sections…,"crc":"1a2b3c4d"}

* ``crc`` is always the last key: CRC-32 (``zlib.crc32``) of the line's bytes with the
  ``,"crc":"…"`` member removed, i.e. of the object as it was before the checksum was added.  It
  catches what JSON parsing lets through: a bit flip inside a number, or a record spliced from two
  writers that still parses.  Lines without it (hand-written, other tools) are accepted when
  otherwise valid and counted as unchecked.
* ``metrics`` holds only JSON numbers and ``null`` (schema 2), so DuckDB, polars, pandas and
  pyarrow type every metric column as a number.  A non-finite metric is written as ``null`` and
  named in a ``nonfinite`` section, ``{"loss": "NaN", "grad": "Infinity"}``, which reads it back
  exactly.  A ``null`` the section does not name reads as NaN (a foreign tool such as pandas
  writes NaN as ``null``).  Schema-1 lines, which wrote the strings ``"NaN"``, ``"Infinity"`` and
  ``"-Infinity"`` in ``metrics`` itself, still read exactly; in them ``nonfinite`` is an ordinary
  section.
* Lines above ``MAX_RECORD_BYTES`` are refused before any write, and readers never buffer more.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from exptrack.errors import InvalidRecordError
from exptrack.store.edits import EDIT_KINDS, Edit, EditError, edit_from_object
from exptrack.store.names import DEFAULT_EXPERIMENT, check_name, generated_name
from exptrack.store.record import (
    CANONICAL_TIME,
    SCHEMA_VERSION,
    STATUSES,
    Run,
    build_run,
    is_safe_run_id,
    new_run_id,
    short_repr,
    utc_timestamp,
)

MAX_RECORD_BYTES = 16 * 1024 * 1024
"""Largest line (including ``\\n``) written or read: 16 MiB.  Bigger payloads are artifacts."""

_NONFINITE_OUT = {math.inf: "Infinity", -math.inf: "-Infinity"}
NONFINITE_IN = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
"""How a ``nonfinite`` entry (schema 2) or a metric string (schema 1) names a value."""
NONFINITE_KEY = "nonfinite"
"""The record section (schema >= 2) that names the value each ``null`` metric stands for."""
_CRC_HEAD = b',"crc":"'
_CRC_SUFFIX_LEN = len(_CRC_HEAD) + 8 + 2  # ,"crc":"xxxxxxxx"}
_HEX_DIGITS = b"0123456789abcdef"
_REQUIRED = ("run_id", "params", "metrics")


class LineError(Exception):
    """Why one line is not a run; the scanner turns it into a ``CorruptLine`` report."""


def _nonfinite(metrics: Mapping[str, float]) -> dict[str, str] | None:
    """The ``nonfinite`` section for ``metrics``, or ``None`` when every value is finite."""
    for value in metrics.values():
        if type(value) is float and value - value != 0:  # NaN and ±Infinity give NaN; others 0
            return {
                name: ("NaN" if v != v else _NONFINITE_OUT[v])
                for name, v in metrics.items()
                if type(v) is float and v - v != 0
            }
    return None


def encode(run: Run) -> bytes:
    """One complete line for ``run``, checksum and newline included."""
    body: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "run_id": run.run_id,
        "timestamp": run.timestamp,
        "status": run.status,
        "params": run.params,
        "metrics": run.metrics,  # orjson writes NaN and ±Infinity as null
        "tags": run.tags,
    }
    if run.extra:
        if "resumed" in run.extra:  # a resumed run's new ending: it supersedes the earlier line
            body["kind"] = "resume"
        if NONFINITE_KEY in run.extra:  # only a schema-1 record can hold one; rewriting it would misread
            raise InvalidRecordError(f"{NONFINITE_KEY!r} is a reserved record field since schema 2")
        body.update(run.extra)
    nonfinite = _nonfinite(run.metrics)
    if nonfinite is not None:
        body[NONFINITE_KEY] = nonfinite
    try:
        payload = orjson.dumps(body)
    except (TypeError, orjson.JSONEncodeError) as exc:  # values are normalised first; belt and braces
        raise InvalidRecordError(f"run cannot be encoded as JSON: {exc}") from None
    if len(payload) + _CRC_SUFFIX_LEN + 1 > MAX_RECORD_BYTES:
        raise InvalidRecordError(
            f"run is {len(payload)} bytes encoded, above the {MAX_RECORD_BYTES >> 20} MiB line cap; "
            "store large values as artifacts",
        )
    crc = zlib.crc32(payload)
    return b"%b,\"crc\":\"%08x\"}\n" % (payload[:-1], crc)


# orjson hands every value it has no *plain* JSON form for to ``default`` (subclasses of str/int/
# dict/list, datetimes, dataclasses, numpy, sets, bytes...), and ``_refuse`` gives up on it: the
# record then takes the Python walk of ``record.normalize_value``, which owns every such rule.
_FAST_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_RESERVED = frozenset(
    ("schema", "run_id", "timestamp", "status", "params", "metrics", "tags", "crc", "directions", NONFINITE_KEY,
     "kind", "resumed")
)


class _NotPlain(Exception):
    """A value the fast path leaves to the Python walk (never escapes this module)."""


def _refuse(value: object) -> object:
    raise _NotPlain


def build_line(
    *,
    params: Mapping[str, object] | None = None,
    metrics: Mapping[str, object] | None = None,
    tags: object = None,
    status: str = "finished",
    extra: Mapping[str, object] | None = None,
    required_metrics: Sequence[str] = (),
    run_id: str | None = None,
    timestamp: str | datetime | None = None,
    directions: Mapping[str, object] | None = None,
    name: str | None = None,
    experiment: str | None = None,
) -> tuple[Run, bytes]:
    """Validate, normalise and encode a new run: ``build_run`` + ``encode`` with the same result.

    The common record holds only plain JSON values, and then orjson can do the validating in C:
    it encodes the record (refusing, through ``default``, anything but plain str/int/float/bool/
    None/list/dict, ints beyond 64 bits, lone surrogates, non-string keys), and decoding the bytes
    back must give a record *equal* to the input -- which also catches what orjson would write
    without asking (NaN/Infinity as ``null``, a UUID or an Enum as its string or value, a tuple).
    Anything else takes the reference path, ``record.build_run`` then :func:`encode`, so the
    accepted values, their stored form and every error message are exactly the reference's
    (tests/test_fast_encode.py checks both paths agree on generated values).

    Raises:
        InvalidRecordError, MissingMetricError: as ``record.build_run``.
    """
    # Declared directions are validated by the record's rules: that rarer record takes the reference path.
    fast = None if directions else _fast_line(params, metrics, tags, status, extra, required_metrics, run_id, timestamp,
                                              name, experiment)
    if fast is not None:
        return fast
    run = build_run(
        params=params, metrics=metrics, tags=tags,  # type: ignore[arg-type]  # build_run checks it
        status=status, extra=extra, required_metrics=required_metrics, run_id=run_id, timestamp=timestamp,
        directions=directions, name=name, experiment=experiment,
    )
    return run, encode(run)


def _fast_line(
    params: object,
    metrics: object,
    tags: object,
    status: str,
    extra: object,
    required: Sequence[str],
    run_id: object,
    timestamp: object,
    name: str | None = None,
    experiment: str | None = None,
) -> tuple[Run, bytes] | None:
    """The run and its line when every value is plain, else ``None`` (the reference path decides)."""
    if run_id is not None:
        return None  # a given id (imports, resume) follows record's rules for ids; rare, so not here
    if not timestamp:
        timestamp = utc_timestamp()  # canonical by construction
    elif type(timestamp) is not str or not CANONICAL_TIME.fullmatch(timestamp):
        return None  # a given time is normalised to UTC by the reference path
    return new_line(params, metrics, tags, status, extra, required, experiment, timestamp, name)


_NUMBERS = frozenset((int, float))  # exact types: bool is an int subclass, and not a metric


def new_line(
    params: object,
    metrics: object,
    tags: object,
    status: str,
    extra: object,
    required: Sequence[str],
    experiment: str | None,
    timestamp: str | None = None,
    name: str | None = None,
) -> tuple[Run, bytes] | None:
    """A new run (fresh id, ``timestamp`` or now) and its line when every value is plain, else ``None``.

    The fast path of :func:`build_line`, called by ``log_run`` and ``log_runs`` directly: positional
    arguments, no keyword dict, checks done by C calls where a loop would cost more.  Metric names
    are not checked one by one: orjson refuses any key that is not exactly ``str``.
    """
    if params is None:
        params = {}
    elif type(params) is not dict:
        return None
    if metrics is None:
        metrics = {}
    elif type(metrics) is not dict or (metrics and (not _NUMBERS.issuperset(map(type, metrics.values()))
                                                     or "" in metrics)):
        return None
    if status not in STATUSES:
        return None
    for needed in required:
        if needed not in metrics:
            return None
    if tags is None:
        tag_list: list[str] = []
    elif type(tags) is list or type(tags) is tuple:
        tag_list = list(tags)  # checked item by item below
        for tag in tag_list:
            if type(tag) is not str:
                return None
        if len(set(tag_list)) != len(tag_list):  # the reference drops repeats
            return None
    else:
        return None
    run_id = new_run_id()
    body: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "run_id": run_id,
        "timestamp": timestamp or utc_timestamp(),
        "status": status,
        "params": params,
        "metrics": metrics,
        "tags": tag_list,
    }
    if extra:
        if type(extra) is not dict or not _RESERVED.isdisjoint(extra) or "name" in extra or "experiment" in extra:
            return None
        body.update(extra)
    body["name"] = generated_name(run_id) if name is None else check_name(name)
    body["experiment"] = DEFAULT_EXPERIMENT if experiment is None else check_name(experiment, "experiment")
    try:
        payload = orjson.dumps(body, default=_refuse, option=_FAST_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        return None
    # Decoding the bytes back is both the check and the copy: a value orjson wrote in another form
    # than it came in (NaN, UUID, Enum, tuple...) compares unequal, and the run gets containers of
    # its own.  (A Python walk proving the values plain and copying them measured no cheaper.)
    stored = orjson.loads(payload)
    if stored != body:
        return None
    if len(payload) + _CRC_SUFFIX_LEN + 1 > MAX_RECORD_BYTES:
        return None  # the reference path raises the size error
    del stored["schema"], stored["run_id"]
    run = Run(run_id, stored.pop("timestamp"), stored.pop("params"), stored.pop("metrics"),
              tuple(stored.pop("tags")), stored.pop("status"), stored)
    return run, b"%b,\"crc\":\"%08x\"}\n" % (payload[:-1], zlib.crc32(payload))


def checksum_state(line: bytes | memoryview) -> bool | None:
    """``True``/``False`` when the line carries a checksum that does / does not match; ``None``
    when it carries none.  ``line`` excludes the trailing newline."""
    n = len(line)
    if n <= _CRC_SUFFIX_LEN or line[n - 2 : n] != b'"}':
        return None
    head = line[n - _CRC_SUFFIX_LEN : n - 10]
    if head != _CRC_HEAD:
        # One byte off ``,"crc":"`` is a damaged checksum, not a line without one: a bit flip in
        # the key name still parses, and would otherwise pass as an unchecked record.
        return False if sum(a != b for a, b in zip(bytes(head), _CRC_HEAD)) == 1 else None
    digits = bytes(line[n - 10 : n - 2])
    if digits.strip(_HEX_DIGITS):  # exactly what encode writes: int() would also take "A", " ", "_"
        return False
    return zlib.crc32(b"}", zlib.crc32(line[: n - _CRC_SUFFIX_LEN])) == int(digits, 16)


def decode(line: bytes | memoryview, offset: int = -1) -> tuple[Run | Edit, bool]:
    """Parse one line (without its newline) into a run and whether it carried a checksum.

    Raises:
        LineError: the line is not a valid run; the message is the reason shown to users.
    """
    checked = checksum_state(line)
    if checked is False:
        raise LineError("checksum mismatch (bit flip or interleaved write)")
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
        if "utf-8" in reason.lower() or "surrogate" in reason.lower():
            raise LineError("invalid UTF-8") from None
        raise LineError(f"invalid JSON: {reason.split(':', 1)[0]}") from None
    if checked is None and type(obj) is dict and "crc" in obj:
        # encode always writes the checksum last, in a fixed form: one elsewhere was altered
        raise LineError("checksum damaged (the crc member is not in the form exptrack writes)")
    if type(obj) is dict and "kind" in obj:
        return record_from_object(obj, offset), checked is True
    return from_object(obj, offset), checked is True


def record_from_object(obj: dict[str, Any], offset: int = -1) -> Run | Edit:
    """A line of any kind: a run (plain or resumed) or an edit (see ``store.edits``)."""
    kind = obj.get("kind")
    if kind in EDIT_KINDS:
        schema = obj.get("schema", SCHEMA_VERSION)
        if type(schema) is not int or schema > SCHEMA_VERSION:
            raise LineError(f"record schema {schema!r} is newer than this exptrack reads ({SCHEMA_VERSION})")
        try:
            return edit_from_object(obj, offset)
        except EditError as exc:
            raise LineError(str(exc)) from None
    if kind != "resume":
        raise LineError(f"unknown record kind {kind!r}")
    del obj["kind"]
    if type(obj.get("resumed")) is not int:
        raise LineError("resume record without a resume count")
    return from_object(obj, offset)


def encode_edit(edit: Edit) -> bytes:
    """One complete line for an edit, checksum and newline included."""
    payload = orjson.dumps({"schema": SCHEMA_VERSION, **edit.to_object()})
    if len(payload) + _CRC_SUFFIX_LEN + 1 > MAX_RECORD_BYTES:
        raise InvalidRecordError(f"edit is {len(payload)} bytes encoded, above the line cap")
    return b"%b,\"crc\":\"%08x\"}\n" % (payload[:-1], zlib.crc32(payload))


def from_object(obj: object, offset: int = -1) -> Run:
    """Validate a parsed JSON object as a run record (used for lines and for imports)."""
    if type(obj) is not dict:
        raise LineError(f"not a run record (a JSON {type(obj).__name__}, not an object)")
    schema = obj.pop("schema", SCHEMA_VERSION)
    if type(schema) is not int or schema > SCHEMA_VERSION:
        raise LineError(f"record schema {short_repr(schema)} is newer than this exptrack reads ({SCHEMA_VERSION})")
    for key in _REQUIRED:
        if key not in obj:
            raise LineError(f"not a run record (missing {key!r})")
    run_id = obj.pop("run_id")
    params = obj.pop("params")
    metrics = obj.pop("metrics")
    if type(run_id) is not str or not run_id:
        raise LineError("run_id is not a non-empty string")
    if not is_safe_run_id(run_id):
        # the id would name files (history, markers, patches): never a path, never a shell word
        raise LineError("run_id is not a safe id (1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit)")
    if type(params) is not dict:
        raise LineError("params is not an object")
    if type(metrics) is not dict:
        raise LineError("metrics is not an object")
    named = obj.pop(NONFINITE_KEY, None) if schema >= 2 else None
    if named is not None and (
        type(named) is not dict
        or any(type(v) is not str or v not in NONFINITE_IN for v in named.values())
        or any(metrics.get(name, 0) is not None for name in named)
    ):
        raise LineError('nonfinite does not name null metrics as "NaN", "Infinity" or "-Infinity"')
    for name, value in metrics.items():
        kind = type(value)
        if value is None and schema >= 2:
            metrics[name] = NONFINITE_IN[named.get(name, "NaN")] if named else math.nan
        elif kind is str:  # schema 1's form (and a hand-written line's), unambiguous in any schema
            try:
                metrics[name] = NONFINITE_IN[value]
            except KeyError:
                raise LineError(f"metric {short_repr(name)} is not a number") from None
        elif kind is not float and kind is not int:
            raise LineError(f"metric {short_repr(name)} is not a number")
    tags = obj.pop("tags", ())
    if (type(tags) is not list or any(type(t) is not str for t in tags)) and tags != ():
        raise LineError("tags is not a list of strings")
    status = obj.pop("status", "finished")
    timestamp = obj.pop("timestamp", "")
    if type(status) is not str or type(timestamp) is not str:
        raise LineError("status/timestamp is not a string")
    obj.pop("crc", None)
    return Run(
        run_id=run_id,
        timestamp=timestamp,
        params=params,
        metrics=metrics,
        tags=tuple(tags),
        status=status,
        extra=obj,
        offset=offset,
    )


def dumps(obj: object, *, pretty: bool = False, finite: bool = False) -> bytes:
    """JSON for output (CLI ``--json``, side files); non-finite floats become NaN/Infinity strings.

    ``finite=True`` is the caller's promise that ``obj`` holds plain JSON values and no
    non-finite float: the conversion pass (most of the cost for bulk output) is skipped.
    """
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(obj if finite else _json_safe(obj), option=option | orjson.OPT_NON_STR_KEYS)


def loads(data: bytes | str) -> Any:
    """Parse JSON written by :func:`dumps` (side files, index); raises ``ValueError`` if invalid."""
    return orjson.loads(data)


def _json_safe(obj: object) -> object:
    if isinstance(obj, float):
        if obj != obj:
            return "NaN"
        return _NONFINITE_OUT.get(obj, obj)
    if isinstance(obj, Run):
        obj = obj.to_dict()
    if isinstance(obj, Mapping):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
