"""System facts: the machine, interpreter, GPUs and installed packages a run executed with.

Each fact is probed on its own and a failing probe only records why under ``errors``, because a
run must never fail for the sake of its metadata. Facts that cannot change while a process lives
(installed distributions, CPU model, the GPU query) are computed once per process: scanning
distributions costs milliseconds and ``nvidia-smi`` tens of them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import logging
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

logger = logging.getLogger(__name__)

_GPU_QUERY = ("--query-gpu=name,driver_version", "--format=csv,noheader")
_CPU_KEYS = ("model name", "Processor", "Hardware", "Model")  # x86 first, then ARM spellings
_DIFF_CAP = 50
_GpuResult = tuple[tuple[str, ...], str, str]  # names, driver, error ("" when fine)


@dataclass(frozen=True, slots=True)
class SystemInfo:
    """What ``capture_system`` saw.

    Attributes:
        info: JSON-able facts; ``packages_sha256`` identifies the package list so a store can
            keep one copy per distinct environment; ``errors`` maps a fact to why it is ``None``.
        packages: normalized distribution name -> version (empty when not asked for).
    """

    info: dict[str, object]
    packages: dict[str, str]


def capture_system(*, packages: bool = True, gpu_timeout: float = 2.0) -> SystemInfo:
    """Record the machine and environment; never raises.

    Args:
        packages: also list installed distributions (cached per process after the first call).
        gpu_timeout: seconds ``nvidia-smi`` may take; a hung driver must not hang the run.

    Returns:
        A ``SystemInfo``. ``info["gpu"]`` is ``{"name": [...], "count", "driver"}`` or
        ``{"error": reason}``, e.g. ``"nvidia-smi not found"``.
    """
    info: dict[str, object] = {}
    errors: dict[str, str] = {}
    for name, probe in _probes():
        info[name], error = _attempt(probe)
        if error:
            errors[name] = error
    gpu, error = _attempt(lambda: _gpu(gpu_timeout))
    info["gpu"] = gpu if not error else {"error": error}
    found: dict[str, str] = {}
    info["packages_sha256"] = None
    if packages:
        try:
            pairs, digest = _installed_packages()
            found, info["packages_sha256"] = dict(pairs), digest
            # installed from a directory (editable or not): no index serves that version
            info["local_packages"] = list(local_packages())
        except Exception as exc:  # a broken distribution's metadata can raise anything
            errors["packages"] = f"{type(exc).__name__}: {exc}"
    if errors:
        info["errors"] = errors
    return SystemInfo(info, found)


def _attempt(probe: Callable[[], object]) -> tuple[object, str]:
    try:
        return probe(), ""
    except Exception as exc:  # a probe may fail in any way; the run must go on
        return None, f"{type(exc).__name__}: {exc}"


def _probes() -> list[tuple[str, Callable[[], object]]]:
    return [
        ("os", platform.system),
        ("os_release", platform.release),
        ("os_version", platform.version),
        ("platform", platform.platform),
        ("machine", platform.machine),
        ("python_version", platform.python_version),
        ("python_implementation", platform.python_implementation),
        ("python_executable", lambda: sys.executable),
        ("hostname", socket.gethostname),
        ("cpu_model", _cpu_model),
        ("cpu_count", os.cpu_count),
        ("cpu_usable", _usable_cpus),
        ("memory_total_bytes", _memory_total),
    ]


@functools.lru_cache(maxsize=1)
def _cpu_model() -> str | None:
    if sys.platform.startswith("linux"):
        found: dict[str, str] = {}
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                found.setdefault(key.strip(), value.strip())
        for key in _CPU_KEYS:
            if found.get(key):
                return found[key]
    elif sys.platform == "darwin":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                timeout=2.0,
                check=True,
                stdin=subprocess.DEVNULL,
            ).stdout
            return out.decode("utf-8", "replace").strip() or None
    return platform.processor() or None


def _usable_cpus() -> int | None:
    """CPUs this process may run on (taskset, cgroup cpusets), which can be fewer than exist."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def _memory_total() -> int | None:
    if sys.platform.startswith("linux"):
        with open("/proc/meminfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024  # the kernel's "kB" means KiB
    if sys.platform == "win32":
        return None
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _gpu(timeout: float) -> dict[str, object]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"error": "nvidia-smi not found"}
    names, driver, error = _query_gpus(exe, timeout)
    if error:
        return _with_visible_devices({"error": error})
    return _with_visible_devices({"name": list(names), "count": len(names), "driver": driver})


def _with_visible_devices(result: dict[str, object]) -> dict[str, object]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:  # nvidia-smi lists every GPU; the run may have seen fewer
        result["cuda_visible_devices"] = visible
    return result


@functools.lru_cache(maxsize=8)
def _query_gpus(exe: str, timeout: float) -> _GpuResult:
    """One ``nvidia-smi`` query per process, failures included: a wedged driver stays wedged."""
    try:
        proc = subprocess.Popen(
            [exe, *_GPU_QUERY], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        return (), "", f"nvidia-smi could not start: {exc.strerror or exc}"
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        # a process stuck in the kernel may ignore SIGKILL: give up on it rather than wait
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=1.0)
        return (), "", f"nvidia-smi timed out after {timeout:g} s"
    if proc.returncode != 0:
        text = (err or out).decode("utf-8", "replace").strip()
        first = text.splitlines()[0][:200] if text else f"exit status {proc.returncode}"
        return (), "", f"nvidia-smi failed: {first}"
    names: list[str] = []
    drivers: list[str] = []
    for line in out.decode("utf-8", "replace").splitlines():
        if line.strip():
            name, _, driver = line.rpartition(",")
            names.append(name.strip())
            drivers.append(driver.strip())
    return tuple(names), ", ".join(dict.fromkeys(drivers)), ""


def normalize_name(name: str) -> str:
    """PEP 503 normal form, so ``Foo_Bar`` and ``foo-bar`` are the same package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _search_path() -> list[str]:
    """``sys.path`` without the directories nested inside a site directory.

    Ray, for one, puts its vendored copies (``ray/thirdparty_files``) on ``sys.path`` when it is
    imported: those are not installed packages, and the fresh interpreter that ``reproduce`` runs
    in does not see them, so recording them would report them as removed."""
    import site

    sites = [*getattr(site, "getsitepackages", list)(), site.getusersitepackages()]
    inside = [os.path.join(os.path.abspath(s), "") for s in sites if s]
    return [p for p in sys.path if not any(os.path.abspath(p or ".").startswith(s) for s in inside)]


@functools.lru_cache(maxsize=1)
def _installed_packages() -> tuple[tuple[tuple[str, str], ...], str]:
    """Sorted (name, version) pairs and the sha256 of their ``name==version\\n`` lines.

    When a distribution is installed twice on ``sys.path`` the first wins, as it would on import.
    """
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions(path=_search_path()):
        pair = _name_version(dist)
        if pair is not None:
            found.setdefault(normalize_name(pair[0]), pair[1])
    pairs = tuple(sorted(found.items()))
    digest = hashlib.sha256("".join(f"{n}=={v}\n" for n, v in pairs).encode()).hexdigest()
    return pairs, digest


@functools.lru_cache(maxsize=1)
def local_packages() -> tuple[str, ...]:
    """Normalized names of the distributions installed from a local path (``pip install .`` or
    ``-e .``: PEP 610's ``direct_url.json`` names a ``file:`` URL).  Their ``name==version``
    would resolve to an unrelated package of the same name on the index, or to nothing."""
    local: set[str] = set()
    for dist in importlib.metadata.distributions(path=_search_path()):
        try:
            direct = dist.read_text("direct_url.json")
        except OSError:
            continue
        if direct and '"file:' in direct:
            pair = _name_version(dist)
            if pair is not None:
                local.add(normalize_name(pair[0]))
    return tuple(sorted(local))


def _name_version(dist: importlib.metadata.Distribution) -> tuple[str, str] | None:
    """Name and version from the metadata's header lines.

    ``dist.metadata`` parses the whole file (long descriptions included) as e-mail, about eight
    times slower over a typical environment; the two fields always sit in the header.
    """
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line:
            break  # end of the header
        key, colon, value = line.partition(":")
        if colon and key in ("Name", "Version"):
            fields.setdefault(key, value.strip())
    name = fields.get("Name")
    return (name, fields.get("Version", "")) if name else None  # a broken install may lack both


def compare_system(
    recorded: Mapping[str, object],
    current: Mapping[str, object],
    recorded_packages: Mapping[str, str] | None,
    current_packages: Mapping[str, str] | None,
    key_packages: Sequence[str] = (),
) -> list[dict[str, object]]:
    """What differs between the environment a run had and the current one.

    Args:
        recorded: the run's ``SystemInfo.info``.
        current: ``capture_system().info`` now.
        recorded_packages: the run's package list, ``None`` when it was not kept.
        current_packages: the current package list, ``None`` when unknown.
        key_packages: packages the caller knows matter (what the code imports); reported
            one by one even when equal, before the summary of all packages.

    Returns:
        Items ``{"name", "recorded", "current", "verdict": "match" | "mismatch" | "unknown"}``:
        interpreter and OS facts, each key package, then ``"packages"`` whose recorded/current
        are counts and which adds ``added``/``removed``/``changed`` (at most 50 names each) and
        ``counts``.
    """
    items = [
        _item(field, recorded.get(field), current.get(field))
        for field in ("python_version", "python_implementation", "os", "os_release", "machine")
    ]
    items.append(_item("gpu", _gpu_names(recorded), _gpu_names(current)))
    rec = {normalize_name(k): v for k, v in (recorded_packages or {}).items()}
    cur = {normalize_name(k): v for k, v in (current_packages or {}).items()}
    known = recorded_packages is not None and current_packages is not None
    for name in dict.fromkeys(normalize_name(k) for k in key_packages):
        item = _item(name, rec.get(name), cur.get(name))
        if known and item["verdict"] == "unknown" and (name in rec or name in cur):
            item["verdict"] = "mismatch"  # installed on one side only
        elif not known:
            item["verdict"] = "unknown"
        items.append(item)
    if not known:
        items.append({"name": "packages", "recorded": None, "current": None, "verdict": "unknown"})
        return items
    added = sorted(set(cur) - set(rec))
    removed = sorted(set(rec) - set(cur))
    changed = sorted(n for n in set(rec) & set(cur) if rec[n] != cur[n])
    items.append(
        {
            "name": "packages",
            "recorded": len(rec),
            "current": len(cur),
            "verdict": "mismatch" if added or removed or changed else "match",
            "added": [f"{n}=={cur[n]}" for n in added[:_DIFF_CAP]],
            "removed": [f"{n}=={rec[n]}" for n in removed[:_DIFF_CAP]],
            "changed": [f"{n}: {rec[n]} -> {cur[n]}" for n in changed[:_DIFF_CAP]],
            "counts": {"added": len(added), "removed": len(removed), "changed": len(changed)},
        }
    )
    return items


def _item(name: str, recorded: object, current: object) -> dict[str, object]:
    verdict = "unknown" if recorded is None or current is None else "match" if recorded == current else "mismatch"
    return {"name": name, "recorded": recorded, "current": current, "verdict": verdict}


def _gpu_names(info: Mapping[str, object]) -> list[str] | None:
    gpu = info.get("gpu")
    if isinstance(gpu, dict) and isinstance(gpu.get("name"), list):
        return [str(n) for n in gpu["name"]]
    if isinstance(gpu, dict) and gpu.get("error") == "nvidia-smi not found":
        return []  # no NVIDIA tooling: as far as can be told, no GPU
    return None
