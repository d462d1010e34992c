"""Conversions every integration needs: framework values made storable, datetimes made timestamps.

Frameworks hand over values exptrack would refuse on purpose (an estimator inside a param grid,
a NaN in a user attribute, a ``float32``): an adapter must log the run anyway, so these become
the closest faithful plain value, or their ``repr`` when there is none.
"""

from __future__ import annotations

import datetime as _dt
import enum
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exptrack import ExperimentTracker
    from exptrack.live.run import ActiveRun

_REPR_LIMIT = 500  # a repr is a hint for a person, not data: keep records small


def storable(value: object) -> Any:
    """``value`` as plain JSON types; what has no JSON form becomes its (shortened) ``repr``."""
    if isinstance(value, enum.Enum):
        return storable(value.value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)  # a str subclass (an Enum mixin) as the plain string
    if isinstance(value, int):
        whole = int(value)
        return whole if -(2**63) <= whole < 2**64 else str(whole)
    if isinstance(value, float):
        number = float(value)
        return number if math.isfinite(number) else repr(number)  # 'nan', 'inf' stay readable
    if isinstance(value, Mapping):
        return {str(key): storable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(item) for item in value]
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    convert = getattr(value, "tolist", None) if type(value).__module__.startswith("numpy") else None
    if callable(convert):  # numpy scalars and small arrays
        return storable(convert())
    text = repr(value)
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


def metric_value(value: object) -> float | None:
    """A number a run can rank by (NaN and infinities included), or None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    item = getattr(value, "item", None) if type(value).__module__.startswith(("numpy", "jax", "torch")) else None
    if callable(item):
        try:
            scalar = item()
        except (TypeError, ValueError, RuntimeError):  # an array of several values: not a metric
            return None
        return metric_value(scalar)
    return None


def numeric_metrics(values: Mapping[str, object]) -> dict[str, float]:
    """The entries of ``values`` that are single numbers, as floats."""
    out: dict[str, float] = {}
    for name, value in values.items():
        number = metric_value(value)
        if number is not None:
            out[str(name)] = number
    return out


def utc_timestamp(moment: _dt.datetime) -> str:
    """``moment`` in exptrack's timestamp form; a naive datetime is taken as local time."""
    if moment.tzinfo is None:
        moment = moment.astimezone()  # naive means local, as datetime.now() gives it
    utc = moment.astimezone(_dt.timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}Z"


def start_run_in(tracker: ExperimentTracker, experiment: str | None, **options: Any) -> ActiveRun:
    """``tracker.start_run(**options)``, logging into ``experiment`` (None: the tracker's own).

    A live run belongs to its tracker's experiment; an adapter asked for another one sets it on
    the run before the run starts, rather than opening a second tracker on the same store.
    """
    run = tracker.start_run(**options)
    if experiment is not None:
        run.experiment = experiment
    return run
