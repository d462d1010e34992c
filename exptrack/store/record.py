"""The in-memory run record and the rules that decide what may be stored in it.

Validation happens here, before a single byte is encoded, so a bad value never reaches the log.
Values are *normalised* to plain JSON types by a documented rule (README, "What is stored"), and
anything without a faithful JSON form is rejected with the dotted key path that holds it:

========================  =============================================================
value                     stored as
========================  =============================================================
str, bool, None, int      itself (ints must fit 64 bits: -2**63 .. 2**64-1)
float                     itself; NaN/±Infinity only inside ``metrics`` (see codec)
tuple, list               JSON list
numpy scalar / array      ``.item()`` / ``.tolist()``, then these same rules
Enum                      its ``.value``, then these same rules
pathlib path              ``str(path)``
datetime / date / time    ``isoformat()`` (a naive datetime stays naive: no zone is invented)
Decimal                   ``str(decimal)``, which ``Decimal()`` reads back exactly
set, bytes, objects       rejected: they have no faithful JSON form
========================  =============================================================
"""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import math
import os
import pathlib
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from exptrack.errors import InvalidRecordError, MissingMetricError
from exptrack.store.names import DEFAULT_EXPERIMENT, check_name, generated_name

SCHEMA_VERSION = 2
"""Version of the line format; a reader skips (and reports) lines from a newer version.

1: non-finite metrics as the strings "NaN"/"Infinity"/"-Infinity" inside ``metrics``.
2: ``metrics`` holds only numbers and null; a ``nonfinite`` section names each null's value.
"""

Status = Literal["running", "finished", "failed", "killed", "pruned"]
STATUSES: tuple[str, ...] = ("running", "finished", "failed", "killed", "pruned")
"""``pruned``: stopped early on purpose (an Optuna trial cut by its pruner, early stopping); the
run is information, not a failure, and is not ranked by default (ranking takes finished runs)."""

JSONValue = Any  # a JSON tree; precise recursive aliases cost more in mypy than they catch

CANONICAL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_CORE_KEYS = ("schema", "run_id", "timestamp", "status", "params", "metrics", "tags")
_RESERVED = ("crc", "nonfinite")  # written by the codec, never by a caller


@dataclass(frozen=True, slots=True, eq=True)
class Run(Mapping[str, Any]):
    """One experiment run as stored; read it as attributes or as the dict it was stored as.

    The mapping view (``run["metrics"]``, ``dict(run)``) is what ``--json`` prints and what
    filters see; ``extra`` holds the optional sections (code, data, system, history, artifacts...)
    so the core fields stay typed.  ``offset`` is where the line starts in ``runs.jsonl`` (``-1``
    before it is written) and takes no part in equality.
    """

    run_id: str
    timestamp: str
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    tags: tuple[str, ...] = ()
    status: str = "finished"
    extra: Mapping[str, Any] = field(default_factory=dict)
    offset: int = field(default=-1, compare=False)

    def __getitem__(self, key: str) -> Any:
        if key == "schema":
            return SCHEMA_VERSION
        if key in _CORE_KEYS:
            value = getattr(self, key)
            return list(value) if key == "tags" else value
        return self.extra[key]

    def __iter__(self) -> Iterator[str]:
        yield from _CORE_KEYS
        yield from self.extra

    def __len__(self) -> int:
        return len(_CORE_KEYS) + len(self.extra)

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict (non-finite metrics stay floats)."""
        return {key: self[key] for key in self}

    @property
    def name(self) -> str:
        """The run's readable name (the one generated from its id when none was stored)."""
        name = self.extra.get("name")
        return name if type(name) is str and name else generated_name(self.run_id)

    @property
    def experiment(self) -> str:
        """The experiment the run belongs to (``"default"`` when none was stored)."""
        experiment = self.extra.get("experiment")
        return experiment if type(experiment) is str and experiment else DEFAULT_EXPERIMENT


RUN_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
"""Every run id the log may hold: exptrack's own (32 hex digits, :func:`new_run_id`) or an imported
one within this safe set -- a letter or digit, then up to 127 letters, digits, ``.``, ``_`` or ``-``.
No ``/``, no leading ``.`` or ``-``, no control character: an id names files (history, markers,
patches) and appears in shell commands, so an id outside the set is a corrupt line."""

_SAFE_RUN_ID = re.compile(RUN_ID_PATTERN)
SAFE_RUN_IDS = re.compile(rf"{RUN_ID_PATTERN}(?:\n{RUN_ID_PATTERN})*")
"""Many ids joined by ``\n``, all safe (one C-level match for a block of the fast reader)."""


def is_safe_run_id(run_id: object) -> bool:
    """Whether ``run_id`` may name a file and be printed unquoted (see ``RUN_ID_PATTERN``)."""
    return type(run_id) is str and _SAFE_RUN_ID.fullmatch(run_id) is not None


def new_run_id() -> str:
    """A 32-hex-digit id: 48 bits of milliseconds, then 80 random bits (like UUIDv7).

    Random bits from ``os.urandom`` make ids unique across processes and machines without any
    coordination (and across ``fork``, unlike a seeded PRNG); the time prefix makes them sort in
    creation order, which keeps ``runs`` output and id prefixes readable.
    """
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


_second_cache: tuple[int, str] = (-1, "")


def utc_timestamp() -> str:
    """Now, as ISO 8601 UTC with microseconds and a ``Z`` (``2026-11-22T07:53:25.123456Z``).

    The date-and-second prefix is formatted once per second: ``strftime`` alone would be a
    quarter of the cost of logging a run.
    """
    global _second_cache  # noqa: PLW0603 - a one-entry cache
    micros = time.time_ns() // 1000
    second, micro = divmod(micros, 1_000_000)
    cached_second, prefix = _second_cache
    if second != cached_second:
        prefix = _dt.datetime.fromtimestamp(second, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _second_cache = (second, prefix)
    return f"{prefix}.{micro:06d}Z"


MAX_DEPTH = 253
"""Most lists and objects nested in a stored value, the section itself (``params``) included.

orjson writes at most 254 nested containers and the record is one of them: the limit is the
same whichever encoder a run takes (``codec.build_line`` tries orjson first)."""


def normalize_timestamp(value: object) -> str:
    """A given timestamp as exptrack writes them (ISO 8601 UTC, microseconds, ``Z``).

    Accepts an aware ``datetime`` or an ISO 8601 string with a zone (``Z`` or ``+hh:mm``); a naive
    one is refused, since the zone it meant cannot be known.
    """
    if isinstance(value, str):
        try:
            moment = _dt.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
        except ValueError:
            raise InvalidRecordError(f"timestamp {value!r} is not an ISO 8601 date and time", "timestamp") from None
    elif isinstance(value, _dt.datetime):
        moment = value
    else:
        raise InvalidRecordError(f"timestamp must be an ISO 8601 string or a datetime, not {value!r}", "timestamp")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidRecordError(f"timestamp {value!r} has no time zone; give one (e.g. a trailing Z for UTC)",
                                 "timestamp")
    moment = moment.astimezone(_dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}Z"


def _timestamp(value: object) -> str:
    if not value:
        return utc_timestamp()
    if type(value) is str and CANONICAL_TIME.fullmatch(value):
        return value  # already in the written form (a live run's own): no parse
    return normalize_timestamp(value)


def normalize_value(value: object, path: str, *, allow_nonfinite: bool = False, depth: int = 0) -> JSONValue:
    """Map ``value`` to plain JSON types by the module's table, or raise naming ``path``.

    ``depth`` counts the containers above ``value``: past ``MAX_DEPTH`` the value is refused
    with its key path, well before Python's recursion limit or the JSON parser's nesting cap.
    """
    kind = type(value)
    if kind is str:
        if not value.isascii():  # type: ignore[attr-defined]
            _check_text(value, path)  # type: ignore[arg-type]
        return value
    if value is None or kind is bool:
        return value
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            raise InvalidRecordError(
                f"{path}: integer {value} does not fit in 64 bits; store it as a string", path
            )
        return value
    if kind is float:
        if not allow_nonfinite and not math.isfinite(value):  # type: ignore[arg-type]
            raise InvalidRecordError(
                f"{path}: {value} is not a finite number; NaN and Infinity are stored only as metrics",
                path,
            )
        return value
    if depth >= MAX_DEPTH and (kind is dict or isinstance(value, (Mapping, list, tuple))):
        raise InvalidRecordError(f"{path}: values nest deeper than {MAX_DEPTH} levels", path)
    if kind is dict or isinstance(value, Mapping):
        out: dict[str, JSONValue] = {}
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise InvalidRecordError(
                    f"{path}: key {short_repr(key)} is a {type(key).__name__}; JSON object keys must be strings",
                    path,
                )
            if not key.isascii():
                _check_text(key, f"{path}.{key}")
            item_kind = type(item)
            if item_kind is str:
                if not item.isascii():
                    _check_text(item, f"{path}.{key}")
                out[key] = item
            elif (item_kind is int and _INT_MIN <= item <= _INT_MAX) or item_kind is bool or item is None or (
                item_kind is float and item - item == 0  # finite: NaN and ±Inf give NaN here
            ):
                out[key] = item  # the common flat case, without a recursive call
            else:
                out[key] = normalize_value(item, f"{path}.{key}", allow_nonfinite=allow_nonfinite, depth=depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [
            normalize_value(item, f"{path}[{i}]", allow_nonfinite=allow_nonfinite, depth=depth + 1)
            for i, item in enumerate(value)
        ]
    return _normalize_rare(value, path, allow_nonfinite, depth)


def _normalize_rare(value: object, path: str, allow_nonfinite: bool, depth: int = 0) -> JSONValue:
    # Subclasses of the builtins (IntEnum, numpy.float64 is a float subclass) land here too.
    if isinstance(value, enum.Enum):
        return normalize_value(value.value, path, allow_nonfinite=allow_nonfinite, depth=depth)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return normalize_value(int(value), path, allow_nonfinite=allow_nonfinite)
    if isinstance(value, float):
        return normalize_value(float(value), path, allow_nonfinite=allow_nonfinite)
    if isinstance(value, str):
        return normalize_value(str(value), path)
    if isinstance(value, pathlib.PurePath):
        return normalize_value(str(value), path)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise InvalidRecordError(f"{path}: Decimal {value} is not finite", path)
        return str(value)
    converted = _from_numpy(value, path)
    if converted is not _NOT_NUMPY:
        return normalize_value(converted, path, allow_nonfinite=allow_nonfinite, depth=depth)
    if isinstance(value, (set, frozenset)):
        raise InvalidRecordError(
            f"{path}: a {type(value).__name__} has no order and no JSON form; pass sorted(...) as a list",
            path,
        )
    raise InvalidRecordError(
        f"{path}: cannot store a value of type {type(value).__module__}.{type(value).__qualname__}; "
        "log plain numbers/strings (e.g. estimator.get_params()) and store the object as an artifact",
        path,
    )


_NOT_NUMPY = object()


def _from_numpy(value: object, path: str) -> object:
    """``value`` as Python objects if it is a numpy scalar or array, without importing numpy."""
    module = type(value).__module__
    if module != "numpy" and not module.startswith("numpy."):
        return _NOT_NUMPY
    if hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "OVSUMm":
        kind = value.dtype.kind
        if kind not in "SU":  # str/bytes arrays are handled by the element rules
            raise InvalidRecordError(f"{path}: numpy dtype {value.dtype} has no faithful JSON form", path)
    for method in ("tolist", "item"):
        convert = getattr(value, method, None)
        if callable(convert):
            return convert()
    return _NOT_NUMPY


def _check_text(text: str, path: str) -> None:
    # A lone surrogate cannot be encoded as UTF-8, so it would make the line unwritable.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRecordError(
            f"{path}: string contains a lone surrogate at index {exc.start} and cannot be stored as UTF-8",
            path,
        ) from None


def normalize_metrics(metrics: Mapping[str, object] | None) -> dict[str, float]:
    """Metrics are a flat name → number mapping; NaN and ±Infinity are kept (a diverged run)."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise InvalidRecordError(
            f"metrics must be a mapping of name to number, not {type(metrics).__name__}", "metrics"
        )
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if type(name) is not str or not name:
            raise InvalidRecordError(f"metrics: metric name {short_repr(name)} must be a non-empty string", "metrics")
        path = f"metrics.{name}"
        if not name.isascii():
            _check_text(name, path)
        if type(value) is float or type(value) is int:
            number = value
        elif isinstance(value, bool) or (
            not isinstance(value, (int, float)) and _from_numpy(value, path) is _NOT_NUMPY
        ):
            raise InvalidRecordError(f"{path}: {short_repr(value)} is not a number", path)
        else:
            number = normalize_value(value, path, allow_nonfinite=True)
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise InvalidRecordError(f"{path}: {short_repr(value)} is not a scalar number", path)
        if type(number) is int and not _INT_MIN <= number <= _INT_MAX:
            raise InvalidRecordError(f"{path}: integer {number} does not fit in 64 bits", path)
        out[name] = number
    return out


def normalize_tags(tags: Sequence[str] | Mapping[str, object] | str | None) -> tuple[str, ...]:
    """Tags are strings; a mapping becomes ``key=value`` tags so filters can say ``tags.key``."""
    if tags is None:
        return ()
    if isinstance(tags, str):
        tags = (tags,)
    items: list[str]
    items = [f"{key}={value}" for key, value in tags.items()] if isinstance(tags, Mapping) else list(tags)
    out: list[str] = []
    for i, tag in enumerate(items):
        if type(tag) is not str:
            raise InvalidRecordError(f"tags[{i}]: {short_repr(tag)} is not a string", f"tags[{i}]")
        _check_text(tag, f"tags[{i}]")
        if tag not in out:
            out.append(tag)
    return tuple(out)


def normalize_directions(directions: Mapping[str, object] | None) -> dict[str, str]:
    """A ``directions`` section: metric name → ``"max"`` or ``"min"`` (which way is better).

    Stored with the run so that ``best_run(metric)`` ranks it the way its producer meant
    (an Optuna study's direction, a scikit-learn scorer's sign) instead of guessing from the name.
    """
    if directions is None:
        return {}
    if not isinstance(directions, Mapping):
        raise InvalidRecordError(
            f"directions must be a mapping of metric name to 'max' or 'min', not {type(directions).__name__}",
            "directions")
    out: dict[str, str] = {}
    for name, mode in directions.items():
        if type(name) is not str or not name:
            raise InvalidRecordError(f"directions: metric name {name!r} must be a non-empty string", "directions")
        if mode not in ("max", "min"):
            raise InvalidRecordError(f"directions.{name}: {mode!r} is not 'max' or 'min'", f"directions.{name}")
        _check_text(name, f"directions.{name}")
        out[name] = str(mode)
    return out


def build_run(
    *,
    params: Mapping[str, object] | None = None,
    metrics: Mapping[str, object] | None = None,
    tags: Sequence[str] | Mapping[str, object] | str | None = None,
    status: str = "finished",
    extra: Mapping[str, object] | None = None,
    required_metrics: Sequence[str] = (),
    run_id: str | None = None,
    timestamp: str | _dt.datetime | None = None,
    directions: Mapping[str, object] | None = None,
    name: str | None = None,
    experiment: str | None = None,
) -> Run:
    """Validate and normalise one run; raises ``InvalidRecordError`` before anything is written.

    ``directions`` (metric name → ``"max"``/``"min"``) is stored as the record's ``directions``
    section (also accepted inside ``extra``).
    """
    if params is None:
        params = {}
    elif type(params) is not dict and not isinstance(params, Mapping):
        raise InvalidRecordError(f"params must be a mapping, not {type(params).__name__}", "params")
    clean_params = normalize_value(params, "params")
    clean_metrics = normalize_metrics(metrics)
    missing = [name for name in required_metrics if name not in clean_metrics]
    if missing:
        raise MissingMetricError(missing)
    if status not in STATUSES:
        raise InvalidRecordError(f"status must be one of {', '.join(STATUSES)}, not {short_repr(status)}", "status")
    clean_extra: dict[str, Any] = {}
    if extra:
        for key, value in extra.items():
            if key in _CORE_KEYS or key in _RESERVED or key == "kind":
                raise InvalidRecordError(f"{short_repr(key)} is a reserved record field", key)
            clean_extra[key] = normalize_value(value, key, allow_nonfinite=False)
    if directions is not None or "directions" in clean_extra:
        declared = normalize_directions(clean_extra.get("directions"))
        declared.update(normalize_directions(directions))
        if declared:
            clean_extra["directions"] = declared
        else:
            clean_extra.pop("directions", None)
    if run_id is not None and not is_safe_run_id(run_id):
        raise InvalidRecordError(
            f"run_id must be 1-128 letters, digits, '.', '_' or '-' starting with a letter or digit, "
            f"not {short_repr(run_id)}", "run_id")
    run_id = run_id or new_run_id()
    clean_extra["name"] = check_name(name) if name is not None else (
        check_name(clean_extra["name"]) if "name" in clean_extra else generated_name(run_id))
    clean_extra["experiment"] = check_name(experiment, "experiment") if experiment is not None else (
        check_name(clean_extra["experiment"], "experiment") if "experiment" in clean_extra else DEFAULT_EXPERIMENT)
    return Run(
        run_id=run_id,
        timestamp=_timestamp(timestamp),
        params=clean_params,
        metrics=clean_metrics,
        tags=normalize_tags(tags),
        status=status,
        extra=clean_extra,
    )


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error message never embeds a caller's blob."""
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) > limit:
        return f"<{type(value).__name__} of {len(value)} bytes>"
    text = repr(value) if not isinstance(value, (str, bytes)) or len(value) <= limit * 2 else repr(value[: limit * 2])
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


@dataclass(frozen=True, slots=True)
class CorruptLine:
    """A line that is not a valid run: where it is, how long, and why."""

    line: int
    offset: int
    length: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line} (byte {self.offset}, {self.length} bytes): {self.reason}"

    def to_dict(self) -> dict[str, object]:
        return {"line": self.line, "offset": self.offset, "length": self.length, "reason": self.reason}
