"""Shared helpers for the benchmark scripts: environment line, timing table, peak RSS.

Benchmarks are baselines, not gates: they print what they measured (median, min and max over
repetitions) next to the raw limit and the peers measured in the same run, on the same machine.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> str:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 2**20:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return "RAM unknown"


def filesystem_of(path: str | os.PathLike[str]) -> str:
    """The file system type holding ``path`` (from /proc/mounts; longest mount point wins)."""
    target = os.path.realpath(path)
    best, kind = "", "unknown fs"
    try:
        with open("/proc/mounts", encoding="utf-8") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mount = fields[1]
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, fields[2]
    except OSError:
        pass
    return kind


def _revision() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=False, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out.stdout.strip() or "?"


def load_average() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load ?"
    return f"load {one:.2f}/{five:.2f} (1/5 min)"


def environment_line(work_dir: str | os.PathLike[str]) -> str:
    """One line naming everything a reader needs to compare numbers between machines."""
    import exptrack

    return (
        f"exptrack {exptrack.__version__} @ {_revision()} | python {platform.python_version()} "
        f"({platform.python_implementation()}) | {platform.platform()} | {_cpu_model()} x{os.cpu_count()} | "
        f"{_memory_gb()} | work dir on {filesystem_of(work_dir)} | {load_average()}"
    )


def timed(fn: Callable[[], object], reps: int, before: Callable[[], object] | None = None) -> list[float]:
    """Seconds per call of ``fn`` over ``reps`` repetitions; ``before`` runs untimed each time."""
    times = []
    for _ in range(reps):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def summarize(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, title: str = "") -> None:
    """An aligned text table: the first column left-aligned, the others right-aligned."""
    text = [[_fmt(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}")

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))]).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in text:
        print(line(row))


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    ``VmHWM`` from ``/proc`` where it exists: ``ru_maxrss`` also counts the forked copy of the
    parent before ``exec`` (a spawned child of a 1 GB parent starts with a 1 GB "peak"), and
    :func:`reset_peak_rss` cannot lower it.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float:
    """Resident set size now, in MiB (``/proc``; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); False if unsupported.

    Lets one process measure the peak of a single phase (a query) rather than of its whole life.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def read_bytes(path: Path) -> int:
    """The raw read limit: every byte of the file through one reused 1 MiB buffer."""
    buffer = bytearray(1 << 20)
    total = 0
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            total += n
    return total


def generated_log(work: Path, n: int) -> Path:
    """``<work>/history-<n>/runs.jsonl``: ``n`` runs of ``scripts/generate_history.py`` (seed 11),
    generated on the first call for a work directory and reused after."""
    base = work / f"history-{n}"
    if not (base / "runs.jsonl").exists():
        if str(ROOT / "scripts") not in sys.path:
            sys.path.insert(0, str(ROOT / "scripts"))
        from generate_history import generate

        start = time.perf_counter()
        generate(base / "tmp", n, seed=11)
        (base / "tmp" / "runs.jsonl").rename(base / "runs.jsonl")
        shutil.rmtree(base / "tmp")
        print(f"generated {n:,} runs in {time.perf_counter() - start:.1f} s")
    return base / "runs.jsonl"

