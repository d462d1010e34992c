"""Field names in filters: exptrack's own, and MLflow's spellings mapped onto them.

MLflow's search syntax names a run's values ``metric.acc`` / ``metrics.acc``, ``param(s).x``,
``tag(s).x`` and ``attribute(s).status`` (also ``attr.`` and ``run.``); a bare name is an
attribute.  Each spelling maps to exptrack's canonical segments, so both syntaxes mean the same
runs.  What has no exptrack counterpart is refused with the reason and what to write instead:
never accepted and silently matching nothing.
"""

from __future__ import annotations

TOP_LEVEL = ("run_id", "timestamp", "status", "tags", "run_name", "start_time", "end_time", "name", "experiment",
             "note")
"""Fields a filter may name without a section (``run_name``, ``start_time`` and ``end_time`` are
computed: see ``evaluate.virtual_getter``)."""

SECTIONS = {
    "metrics": "metrics", "metric": "metrics",
    "params": "params", "param": "params", "parameter": "params", "parameters": "params",
    "tags": "tags", "tag": "tags",
}

ATTRIBUTE_PREFIXES = frozenset({"attribute", "attributes", "attr", "run"})

ATTRIBUTES = {
    "run_id": "run_id", "status": "status", "run_name": "run_name", "start_time": "start_time",
    "end_time": "end_time", "created": "start_time", "Created": "start_time", "timestamp": "timestamp",
    "name": "name", "experiment": "experiment",
}
"""MLflow's searchable run attributes (and exptrack's) that exptrack records."""

_REFUSED_ATTRIBUTES = {
    "artifact_uri": "exptrack keeps artifacts content-addressed per run: filter on artifacts.NAME.sha256 "
                    "or artifacts.NAME IS NOT NULL",
    "user_id": "exptrack records no user; tag runs with user=NAME and filter on tags.user",
    "lifecycle_stage": "exptrack lists only live runs (deleted runs are not searched)",
    "experiment_id": "exptrack names experiments: filter on experiment = 'NAME'",
}

_REFUSED_PREFIXES = {
    "dataset": "MLflow's dataset inputs (datasets.name/digest/context) have no exptrack counterpart: "
               "the files a run read are fingerprinted under data (see `exptrack show RUN`), filter on data.*",
}
_REFUSED_PREFIXES["datasets"] = _REFUSED_PREFIXES["dataset"]


def canonical(segs: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
    """``(segments, problem)``: exptrack's segments for a field, or why it cannot be searched."""
    first = segs[0]
    if len(segs) == 1:
        if first in ATTRIBUTES and first not in TOP_LEVEL:
            return (ATTRIBUTES[first],), ""  # MLflow's bare attribute spellings (created)
        if first in TOP_LEVEL:
            return segs, ""
        if first in SECTIONS:
            section = SECTIONS[first]
            return segs, f"{first} needs a name, e.g. {section}.{'accuracy' if section == 'metrics' else 'lr'}"
        if first in _REFUSED_ATTRIBUTES:
            return segs, f"attribute {first!r} cannot be searched: {_REFUSED_ATTRIBUTES[first]}"
        return segs, (f"unknown field {first!r}: did you mean metrics.{first} or params.{first}? "
                      f"(top-level fields are {', '.join(TOP_LEVEL)})")
    if first in SECTIONS:
        return (SECTIONS[first], *segs[1:]), ""
    if first in ATTRIBUTE_PREFIXES:
        key = ".".join(segs[1:])
        if key in ATTRIBUTES:
            return (ATTRIBUTES[key],), ""
        if key in _REFUSED_ATTRIBUTES:
            return segs, f"attribute {key!r} cannot be searched: {_REFUSED_ATTRIBUTES[key]}"
        return segs, f"unknown attribute {key!r}; attributes are {', '.join(sorted(set(ATTRIBUTES.values())))}"
    if first in _REFUSED_PREFIXES:
        return segs, _REFUSED_PREFIXES[first]
    return segs, ""  # another section of the record (code.commit, system.python): checked against the store
