"""What differs between two runs, and between a run and the checkout in front of the user.

This is the answer to "round 3 was good: why, and how do I get it back?".  Everything here works
on plain records and returns plain data; the CLI only renders it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exptrack.capture.shell import shell_comment, shell_word
from exptrack.repro.diff import _section
from exptrack.store import codec
from exptrack.store.record import Run

if TYPE_CHECKING:
    from exptrack.tracker import ExperimentTracker

# Packages reported one by one by `reproduce` even when equal: the usual suspects for a changed
# result.  Everything else is summarised as counts of added/removed/changed packages.
KEY_PACKAGES = ("numpy", "scipy", "pandas", "scikit-learn", "torch", "tensorflow", "jax", "xgboost",
                "lightgbm", "catboost", "polars")














# -- reproduce -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Check:
    """One item of a reproduce report: what was compared, the verdict and why."""

    item: str
    verdict: str  # "match" | "mismatch" | "unknown"
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"item": self.item, "verdict": self.verdict, "detail": self.detail}


@dataclass(slots=True)
class ReproduceReport:
    """Verdicts per item and the exact steps that restore what differs."""

    run: Run
    checks: list[Check] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    params_json: str = ""
    params_flags: str = ""
    command: str = ""
    directory: str = ""  # where the code and data were checked

    @property
    def matches(self) -> bool:
        return all(check.verdict == "match" for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run.run_id,
            "matches": self.matches,
            "directory": self.directory,
            "checks": [c.to_dict() for c in self.checks],
            "steps": self.steps,
            "params": self.run.params,
            "params_flags": self.params_flags,
            "command": self.command,
        }


def reproduce(tracker: ExperimentTracker, run: Run, *, patch_file: str | None = None,
              cwd: str | None = None) -> ReproduceReport:
    """Compare the current checkout, data and environment with ``run`` and say how to restore it.

    ``patch_file`` is where the run's saved diff was written for the user (the ``git apply``
    step names it); ``cwd`` is the checkout to inspect: the user's own (``--repo DIR``), by
    default the current directory.  Never a directory the stored run names: a store may come
    from someone else, and git run in a crafted repository executes what its config says.
    """
    from exptrack.capture import (
        FingerprintCache,
        capture_code,
        capture_system,
        command_line,
        compare_code,
        compare_data,
        compare_system,
        fingerprint_data,
    )
    from exptrack.live.markers import without_store

    report = ReproduceReport(run)
    here = os.path.abspath(cwd) if cwd else os.getcwd()
    report.directory = here
    code = _section(run, "code")
    if code:
        current_code = without_store(capture_code(here).info, tracker.store)
        verdict = compare_code(code, current_code)
        report.checks.append(Check("code", str(verdict["verdict"]), str(verdict["reason"])))
        report.steps += _code_steps(tracker, code, current_code, patch_file)
    data = _section(run, "data")
    if data.get("paths"):
        base = str(_section(run, "invocation").get("cwd") or here)
        names = [p if os.path.isabs(p) else os.path.join(base, p) for p in data["paths"]]
        cache = FingerprintCache(tracker.store / ".cache" / "fingerprints.json")
        current = fingerprint_data(names, base=base, cache=cache)
        for item in compare_data(data, current):
            changed = [str(name) for key in ("changed", "added", "removed")
                       for name in _as_list(item.get(key))]
            detail = str(item.get("reason", ""))
            report.checks.append(Check(f"data {item['path']}", str(item["verdict"]), detail))
            if item["verdict"] != "match":
                report.steps += _data_steps(data, str(item["path"]), changed, base)
    system = _section(run, "system")
    if system:
        # A run captured without its package list has none to compare: no check, rather than
        # an "unknown" that no restore step could ever turn into a match.
        packages_recorded = system.get("packages_sha256") is not None
        now = capture_system(packages=packages_recorded)
        recorded_packages = tracker.packages(run)
        for item in compare_system(system, now.info, recorded_packages,
                                   now.packages if packages_recorded else None, KEY_PACKAGES):
            name = str(item["name"])
            if name in ("python_version", "os", "machine") or (
                    packages_recorded and (name == "packages" or name in KEY_PACKAGES)):
                if name in KEY_PACKAGES and item.get("recorded") is None and item.get("current") is None:
                    continue
                report.checks.append(Check(name, str(item["verdict"]), _system_detail(item)))
                if name == "python_version" and item["verdict"] == "mismatch":
                    report.steps.append(f"# the run used Python {shell_comment(item.get('recorded'))}; "
                                        f"this is {shell_comment(item.get('current'))}: re-run with that interpreter")
        if recorded_packages and any(c.item == "packages" and c.verdict == "mismatch" for c in report.checks):
            store = shell_word(os.path.abspath(tracker.store))
            report.steps.append(f"exptrack --store {store} reproduce {shell_word(run.run_id)} --requirements-out "
                                "requirements.txt; python -m pip install -r requirements.txt")
    report.params_json = codec.dumps(run.params).decode()
    report.params_flags = " ".join(shell_word(f"--{k}={_flag(v)}") for k, v in run.params.items())
    invocation = _section(run, "invocation")
    report.command = command_line(invocation) if invocation.get("argv") else ""
    return report


def _code_steps(tracker: ExperimentTracker, recorded: Mapping[str, Any], current: Mapping[str, Any],
                patch_file: str | None) -> list[str]:
    """``code_restore_steps`` that also keep a store inside the repository out of the stash."""
    from exptrack.capture import code_restore_steps
    from exptrack.live.markers import store_prefix

    prefix = store_prefix(current, tracker.store)
    return code_restore_steps(recorded, current, patch_file, keep=[prefix] if prefix is not None else [])


def _data_steps(data: Mapping[str, Any], path: str, changed: Sequence[str], base: str) -> list[str]:
    files = f" ({', '.join(changed[:5])}{', ...' if len(changed) > 5 else ''})" if changed else ""
    steps = [shell_comment(f"# restore data {path} to sha256 tree {_tree_of(data, path)}{files}")]
    entry = (data.get("paths") or {}).get(path) or (data.get("paths") or {}).get(path + "/") or {}
    dvc = entry.get("dvc") if isinstance(entry, Mapping) else None
    if isinstance(dvc, Mapping) and dvc.get("md5"):
        # after the git steps the .dvc file / dvc.lock names the run's version again
        steps.append(f"dvc checkout -- {shell_word(os.path.join(base, path.rstrip('/')))}")
    return steps



def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _tree_of(data: Mapping[str, Any], path: str) -> str:
    paths = data.get("paths") or {}
    entry = paths.get(path) or paths.get(path + "/") or {}
    return str(entry.get("tree", "?"))[:16]


def _flag(value: object) -> str:
    return value if isinstance(value, str) else codec.dumps(value).decode()


def _system_detail(item: Mapping[str, Any]) -> str:
    if item["name"] == "packages":
        counts = item.get("counts") or {}
        if item["verdict"] == "match":
            return "same installed packages"
        parts = [f"{len(item.get(k) or [])} {k}" for k in ("changed", "added", "removed") if item.get(k)]
        detail = ", ".join(parts) or str(counts)
        changed = item.get("changed") or []
        return f"{detail}; e.g. {', '.join(map(str, changed[:3]))}" if changed else detail
    return f"recorded {item.get('recorded')}, now {item.get('current')}"


def write_patch(tracker: ExperimentTracker, run: Run, directory: str | os.PathLike[str]) -> str | None:
    """Write the run's saved diff to ``directory/<run_id>.patch`` for ``git apply``; None if clean."""
    listed = run.extra.get("artifacts") or {}
    if "code.patch" not in listed:
        return None
    target = Path(directory).resolve() / f"{run.run_id}.patch"
    tracker.fetch_artifact(run.run_id, "code.patch", target, overwrite=True)
    return str(target.resolve())


_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_REQUIREMENT_VERSION = re.compile(r"[A-Za-z0-9!+._-]+")


def requirements_text(packages: Mapping[str, str], local: Collection[str] = ()) -> str:
    """The recorded environment as a pip requirements file that ``pip install -r`` accepts.

    ``name==version`` per package, except a package installed from a local path (``local``:
    exptrack itself in a development checkout, the user's own project), which no index serves:
    it is a comment saying to install it from the checkout.  A stored name or version that is not
    one (a crafted ``"1.0\n--index-url ..."``) is a comment too, so it never becomes an option.
    """
    from exptrack.capture.system import normalize_name

    local_names = {normalize_name(name) for name in local}
    lines = []
    for name, version in sorted(packages.items()):
        if not (_REQUIREMENT_NAME.fullmatch(name) and _REQUIREMENT_VERSION.fullmatch(version)):
            lines.append(f"# not a requirement: {shell_comment(name)}=={shell_comment(version)}")
        elif normalize_name(name) in local_names:
            lines.append(f"# {name}=={version} was installed from a local path: install it from your checkout "
                         "(pip install -e <path>)")
        else:
            lines.append(f"{name}=={version}")
    return "".join(line + "\n" for line in lines)


def local_packages_of(run: Run) -> set[str]:
    """Packages the run had from a local path, plus those installed from one here now (a run
    recorded before exptrack noted them still gets exptrack and the user's project right)."""
    from exptrack.capture.system import local_packages

    recorded = _section(run, "system").get("local_packages")
    names = {str(n) for n in recorded} if isinstance(recorded, list) else set()
    with contextlib.suppress(Exception):  # a broken distribution's metadata can raise anything
        names.update(local_packages())
    return names












def format_checks(checks: Sequence[Check]) -> list[str]:
    marks = {"match": "ok  ", "mismatch": "DIFF", "unknown": "??  "}
    width = max((len(c.item) for c in checks), default=0)
    return [f"  [{marks.get(c.verdict, c.verdict)}] {c.item.ljust(width)}  {c.detail}" for c in checks]
