"""Read MLflow's two local stores -- the ``mlruns/`` directory and an SQLite database -- as data.

The importer reads the files itself instead of going through MLflow's client: MLflow 3 refuses
to open a file store unless ``MLFLOW_ALLOW_FILE_STORE`` is set, and opening an SQLite store with
it runs schema migrations, i.e. *writes* to the database being migrated away from.  The SQLite
file is opened read-only; nothing in the source is ever modified.

Both readers yield :class:`MlflowRun` values holding what MLflow holds, still as MLflow's types
(params and tags as strings, status names, milliseconds); ``mlflow.py`` translates them.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from exptrack.errors import ImportSourceError

# RunStatus as the file store writes it into meta.yaml (an int enum)
_FILE_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
# MLflow's SQL store clamps ±Infinity to ±DBL_MAX (it cannot store them); this undoes it
_DBL_MAX = 1.7976931348623157e308
_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(slots=True)
class MlflowRun:
    """One MLflow run as its store keeps it.  ``history`` holds ``(timestamp ms, step, value)``."""

    run_id: str
    experiment_id: str
    experiment: str
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    name: str | None = None
    user: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    latest: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[tuple[int, int, float]]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MlflowSource:
    """Where the runs are: ``kind`` is ``"files"`` (an ``mlruns/`` directory) or ``"sqlite"``."""

    kind: str
    path: Path


def locate(source: str) -> MlflowSource:
    """Decide what ``source`` names: ``sqlite:///x.db``, ``file:...``, a directory or a database file.

    Raises:
        ImportSourceError: it names nothing readable as an MLflow store.
    """
    if source.startswith("sqlite:"):
        # SQLAlchemy form: sqlite:///relative.db, sqlite:////absolute.db
        rest = source[len("sqlite:"):]
        if not rest.startswith("///"):
            raise ImportSourceError(source, "an SQLite URI looks like sqlite:///mlflow.db (three slashes)")
        path = Path(unquote(rest[3:].split("?", 1)[0]))
        if not path.is_file():
            raise ImportSourceError(source, f"no database file at {path}")
        return MlflowSource("sqlite", path)
    if source.startswith("file:"):
        parsed = urlparse(source)
        path = Path(unquote(parsed.path if parsed.netloc in ("", "localhost") else source[5:]))
    else:
        path = Path(source)
    if path.is_dir():
        if not any(child.name == "meta.yaml" for child in path.glob("*/meta.yaml")):
            raise ImportSourceError(source, "not an MLflow file store (no <experiment>/meta.yaml inside)")
        return MlflowSource("files", path)
    if path.is_file():
        with path.open("rb") as handle:
            if handle.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC:
                return MlflowSource("sqlite", path)
        raise ImportSourceError(source, "neither an mlruns/ directory nor an SQLite database")
    raise ImportSourceError(source, "no such file or directory")


def read_runs(where: MlflowSource, warnings: list[str]) -> Iterator[MlflowRun]:
    """Every run of the store's active experiments; unreadable bits are reported in ``warnings``."""
    if where.kind == "sqlite":
        yield from _sqlite_runs(where.path, warnings)
    else:
        yield from _file_runs(where.path, warnings)


# -- the file store -------------------------------------------------------------------------------


def _yaml(path: Path) -> dict[str, Any]:
    import yaml  # PyYAML comes with every MLflow install; only this reader needs it

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: not a mapping")
    return loaded


def _file_runs(root: Path, warnings: list[str]) -> Iterator[MlflowRun]:
    for exp_meta in sorted(root.glob("*/meta.yaml")):
        try:
            experiment = _yaml(exp_meta)
        except ValueError as exc:
            warnings.append(f"experiment skipped: {exc}")
            continue
        if experiment.get("lifecycle_stage", "active") != "active":
            continue
        exp_name = str(experiment.get("name") or exp_meta.parent.name)
        for run_meta in sorted(exp_meta.parent.glob("*/meta.yaml")):
            try:
                meta = _yaml(run_meta)
            except ValueError as exc:
                warnings.append(f"run skipped: {exc}")
                continue
            run_id = meta.get("run_id") or meta.get("run_uuid")
            if not run_id:
                continue  # a logged-model or trace folder, not a run
            yield _file_run(run_meta.parent, meta, str(run_id), exp_name, warnings)


def _file_run(run_dir: Path, meta: dict[str, Any], run_id: str, exp_name: str, warnings: list[str]) -> MlflowRun:
    status = meta.get("status", 1)
    run = MlflowRun(
        run_id=run_id,
        experiment_id=str(meta.get("experiment_id", run_dir.parent.name)),
        experiment=exp_name,
        status=_FILE_STATUS.get(status, str(status)) if isinstance(status, int) else str(status),
        start_time=_int_or_none(meta.get("start_time")),
        end_time=_int_or_none(meta.get("end_time")),
        lifecycle_stage=str(meta.get("lifecycle_stage") or "active"),
        name=str(meta["run_name"]) if meta.get("run_name") else None,
        user=str(meta["user_id"]) if meta.get("user_id") else None,
        params=_text_files(run_dir / "params", warnings),
        tags=_text_files(run_dir / "tags", warnings),
    )
    for name, path in _key_files(run_dir / "metrics"):
        points: list[tuple[int, int, float]] = []
        text = _read_text(path, warnings)
        for lineno, line in enumerate((text or "").splitlines(), 1):
            fields = line.split()
            try:
                # "timestamp value step"; files from MLflow < 1.0 have no step
                point = (int(fields[0]), int(fields[2]) if len(fields) > 2 else 0, float(fields[1]))
            except (IndexError, ValueError):
                warnings.append(f"run {run_id}: metric {name} line {lineno} is not 'timestamp value step'")
                continue
            points.append(point)
        if points:
            run.history[name] = points
            # MLflow's rule for a run's metric value: the point with the largest (step, timestamp, value)
            run.latest[name] = max(points, key=lambda p: (p[1], p[0], p[2]))[2]
    return run


def _key_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """``(key, file)`` under ``folder``; a key with ``/`` in it is a nested path in the file store."""
    if not folder.is_dir():
        return
    for dirpath, _dirs, files in os.walk(folder):
        for filename in sorted(files):
            path = Path(dirpath, filename)
            yield path.relative_to(folder).as_posix(), path


def _text_files(folder: Path, warnings: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, path in _key_files(folder):
        text = _read_text(path, warnings)
        if text is not None:
            values[key] = text
    return values


def _read_text(path: Path, warnings: list[str]) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        warnings.append(f"{path} unreadable ({exc})")
        return None


def _int_or_none(value: object) -> int | None:
    try:
        return int(value) if value is not None else None  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


# -- the SQLite store -----------------------------------------------------------------------------


def _sqlite_runs(path: Path, warnings: list[str]) -> Iterator[MlflowRun]:
    try:
        # read-only by URI: the source is never written (no journal, no migration)
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ImportSourceError(str(path), f"cannot open the database ({exc})") from None
    db.row_factory = sqlite3.Row
    try:
        try:
            experiments = {
                str(row["experiment_id"]): str(row["name"])
                for row in db.execute("SELECT * FROM experiments")
                if (row["lifecycle_stage"] or "active") == "active"
            }
            runs = db.execute("SELECT * FROM runs ORDER BY start_time, run_uuid").fetchall()
        except sqlite3.Error as exc:
            raise ImportSourceError(str(path), f"not an MLflow tracking database ({exc})") from None
        for row in runs:
            exp_id = str(row["experiment_id"])
            if exp_id not in experiments:
                continue
            yield _sqlite_run(db, row, experiments[exp_id], warnings)
    finally:
        db.close()


def _sqlite_run(db: sqlite3.Connection, row: sqlite3.Row, exp_name: str, warnings: list[str]) -> MlflowRun:
    run_id = str(row["run_uuid"])
    run = MlflowRun(
        run_id=run_id,
        experiment_id=str(row["experiment_id"]),
        experiment=exp_name,
        status=str(row["status"] or "RUNNING"),
        start_time=row["start_time"],
        end_time=row["end_time"],
        lifecycle_stage=str(row["lifecycle_stage"] or "active"),
        name=row["name"] or None,
        user=row["user_id"] or None,
    )
    run.params = {str(k): str(v) for k, v in db.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run_id,))}
    run.tags = {
        str(k): "" if v is None else str(v)
        for k, v in db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,))
    }
    points = db.execute(
        "SELECT key, timestamp, step, value, is_nan FROM metrics WHERE run_uuid = ? ORDER BY key, step, timestamp",
        (run_id,),
    )
    for key, timestamp, step, value, is_nan in points:
        if not isinstance(value, (int, float)):
            warnings.append(f"run {run_id}: metric {key} has a non-numeric value {value!r}")
            continue
        run.history.setdefault(str(key), []).append((int(timestamp), int(step), _sql_float(value, is_nan)))
    latest = db.execute("SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = ?", (run_id,))
    run.latest = {str(key): _sql_float(value, is_nan) for key, value, is_nan in latest}
    for key, history in run.history.items():
        if key not in run.latest:  # latest_metrics is derived data: recompute if it is missing
            run.latest[key] = max(history, key=lambda p: (p[1], p[0], p[2]))[2]
    return run


def _sql_float(value: float, is_nan: object) -> float:
    if is_nan:
        return math.nan
    value = float(value)
    if abs(value) == _DBL_MAX:
        return math.copysign(math.inf, value)
    return value
