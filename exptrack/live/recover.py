"""Recovery of live runs whose process died without a word (SIGKILL, OOM killer, power loss).

A live run keeps a marker in ``<store>/active``; recovery turns the marker of a dead process into
a ``killed`` record once, with the history the run had written.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path

from exptrack.live.history import MetricHistory, read_history
from exptrack.live.markers import capture_file, process_alive, recovered_extra
from exptrack.store import codec
from exptrack.store.record import Run, is_safe_run_id


def recover_runs(store: Path, logged_ids: Callable[[], Mapping[str, int]], append: Callable[..., Run]) -> list[Run]:
    """Log as ``killed`` every live run whose process died without finishing (SIGKILL, power loss).

    A run leaves a marker in ``<store>/active`` while it lives; a marker whose pid no longer
    exists on this host is claimed (by an atomic rename, so two recovering processes never log
    it twice) and turned into a record with the params, tags, capture and artifacts the marker
    held and the metric history it had.  A run whose line is already in the log (its process
    died between the append and removing the marker) is not logged again.
    """
    recovered: list[Run] = []
    active = store / "active"
    host = socket.gethostname()
    logged: Mapping[str, int] | None = None  # run id -> times resumed, read only if a marker is claimed
    for marker in sorted(active.glob("*.json")) if active.is_dir() else ():
        try:
            info = codec.loads(marker.read_bytes())
        except (OSError, ValueError):
            continue
        if not isinstance(info, dict) or info.get("run_id") != marker.stem or not is_safe_run_id(marker.stem):
            continue  # not a marker exptrack wrote: its id must never name a file to read or delete
        if info.get("host") != host or process_alive(_int(info.get("pid")), info.get("process")):
            continue
        claimed = marker.with_suffix(f".recovering-{os.getpid()}")
        try:
            os.rename(marker, claimed)
        except OSError:
            continue  # another process claimed it
        run_id = marker.stem
        if logged is None:
            logged = logged_ids()
        resumed: int = info["resumed"] if type(info.get("resumed")) is int else 0
        if run_id in logged and logged[run_id] >= resumed:  # its (latest) record is in the log already
            claimed.unlink(missing_ok=True)
            capture_file(store, run_id).unlink(missing_ok=True)
            continue
        history: dict[str, MetricHistory] = {}
        metrics: dict[str, float] = {}
        for point in read_history(store / "history" / f"{run_id}.jsonl"):
            try:
                name, value, step = str(point["name"]), float(point["value"]), int(point["step"])
            except (KeyError, TypeError, ValueError):
                continue  # a line that parses but is not a point: keep the rest
            history.setdefault(name, MetricHistory()).add(value, step)
            metrics[name] = value
        extra = recovered_extra(store, info)
        died = f"pid {info.get('pid')} ended without finishing the run"
        extra["error"] = {"type": "ProcessDied", "message": died}
        if resumed:
            extra["resumed"] = resumed
        if history:
            extra["history"] = {name: h.to_dict() for name, h in history.items()}
        try:
            recovered.append(append(
                run_id=run_id, timestamp=str(info.get("timestamp") or ""), params=info.get("params") or {},
                metrics=metrics, tags=info.get("tags") or [], status="killed", extra=extra,
                **{key: info[key] for key in ("name", "experiment") if type(info.get(key)) is str},
            ))
        except BaseException:
            os.replace(claimed, marker)  # not logged: leave it for the next recover()
            raise
        claimed.unlink(missing_ok=True)
        capture_file(store, run_id).unlink(missing_ok=True)
    return recovered


def _int(value: object) -> int:
    return value if type(value) is int else 0
