"""What differs between two runs: params, metrics, status, tags, code, data, system, packages, invocation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from exptrack.store.record import Run

if TYPE_CHECKING:
    from exptrack.tracker import ExperimentTracker

_SYSTEM_FIELDS = ("os", "os_release", "machine", "python_version", "python_implementation", "cpu_model",
                  "cpu_count", "memory_total_bytes", "hostname")


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []



@dataclass(frozen=True, slots=True)
class Difference:
    """One field that differs between two runs (``None`` means absent on that side)."""

    section: str
    key: str
    a: Any
    b: Any

    def to_dict(self) -> dict[str, Any]:
        return {"section": self.section, "key": self.key, "a": self.a, "b": self.b}


def diff_runs(tracker: ExperimentTracker, a: Run, b: Run) -> list[Difference]:
    """Only what differs: params, metrics, status/tags, code, data, system, packages, invocation."""
    out: list[Difference] = []
    out += _diff_maps("params", a.params, b.params)
    out += _diff_maps("metrics", a.metrics, b.metrics)
    if a.status != b.status:
        out.append(Difference("run", "status", a.status, b.status))
    if set(a.tags) != set(b.tags):
        out.append(Difference("run", "tags", sorted(a.tags), sorted(b.tags)))
    code_a, code_b = _section(a, "code"), _section(b, "code")
    for key in ("commit", "branch", "remote", "dirty", "patch_sha256", "error"):
        if code_a.get(key) != code_b.get(key):
            out.append(Difference("code", key, code_a.get(key), code_b.get(key)))
    untracked_a, untracked_b = sorted(_strings(code_a.get("untracked"))), sorted(_strings(code_b.get("untracked")))
    if untracked_a != untracked_b:
        out.append(Difference("code", "untracked", untracked_a, untracked_b))
    out += _diff_data(_section(a, "data"), _section(b, "data"))
    sys_a, sys_b = _section(a, "system"), _section(b, "system")
    for key in _SYSTEM_FIELDS:
        if sys_a.get(key) != sys_b.get(key):
            out.append(Difference("system", key, sys_a.get(key), sys_b.get(key)))
    if sys_a.get("packages_sha256") != sys_b.get("packages_sha256"):
        out += _diff_maps("packages", tracker.packages(a) or {}, tracker.packages(b) or {})
    inv_a, inv_b = _section(a, "invocation"), _section(b, "invocation")
    for key in ("argv", "script", "seed", "cwd"):
        if inv_a.get(key) != inv_b.get(key):
            out.append(Difference("invocation", key, inv_a.get(key), inv_b.get(key)))
    return out


def _section(run: Run, name: str) -> Mapping[str, Any]:
    value = run.extra.get(name)
    return value if isinstance(value, Mapping) else {}


def _diff_maps(section: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Difference]:
    keys = list(a) + [k for k in b if k not in a]
    return [Difference(section, k, a.get(k), b.get(k)) for k in keys if not _same(a.get(k), b.get(k))]


def _same(x: object, y: object) -> bool:
    # NaN == NaN for the purpose of "did this change"
    return x == y or (isinstance(x, float) and isinstance(y, float) and x != x and y != y)


def _diff_data(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Difference]:
    paths_a, paths_b = a.get("paths") or {}, b.get("paths") or {}
    out = []
    for path in list(paths_a) + [p for p in paths_b if p not in paths_a]:
        fa, fb = paths_a.get(path) or {}, paths_b.get(path) or {}
        ha, hb = fa.get("tree") or fa.get("error"), fb.get("tree") or fb.get("error")
        if ha != hb:
            out.append(Difference("data", path, ha, hb))
    return out


