"""The peers and the limit of ``filtered_queries.py``: DuckDB on the JSONL and on a Parquet copy,
and the same questions over NumPy arrays already in memory.

Every function answers one question in the shape ``filtered_queries`` compares: a tuple of run
ids (top-10, listings) or a summary tuple ``(total, statuses, {metric: (count, nonfinite, min,
max, mean, std)})``.  Line order is the tie-break everywhere (the earlier run wins, as exptrack
ranks): DuckDB numbers the lines with ``WITH ORDINALITY``, NumPy uses the row position.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

METRICS = ("accuracy", "val_loss", "f1", "auc", "train_time_s")
STATUS = "coalesce(status, 'finished')"


@dataclass(frozen=True)
class Filter:
    """One predicate, written for exptrack (``where``), for DuckDB (``sql``) and for NumPy."""

    label: str
    where: str
    sql: str
    model: str
    field: str  # the numeric param compared with ``below``/``above``
    above: float | None = None
    below: float | None = None


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def jsonl_source(path: Path) -> str:
    """The runs of a JSONL file, schema auto-detected (what a user types), numbered by line."""
    reader = f"read_json({_quote(path)}, format = 'newline_delimited')"
    return f"(SELECT *, ordinality AS line FROM {reader} WITH ORDINALITY)"  # noqa: S608 - a quoted path


def parquet_source(path: Path) -> str:
    return f"read_parquet({_quote(path)})"


def write_parquet(jsonl: Path, target: Path) -> None:
    """The same runs (every field, plus the line number) as Parquet, written once, not timed."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute(f"COPY (SELECT * FROM {jsonl_source(jsonl)}) TO {_quote(target)} (FORMAT parquet)")  # noqa: S608
    finally:
        con.close()


class DuckPeer:
    """DuckDB answering the benchmark's questions from one source (a new connection per call)."""

    def __init__(self, source: str, has_nonfinite: bool) -> None:
        self.source = source
        # a null metric is a NaN or an infinity when the run's ``nonfinite`` section names it
        self.named = "json_extract_string(to_json(nonfinite), '$.{m}')" if has_nonfinite else "NULL"

    def metric(self, name: str) -> str:
        return f"coalesce(metrics.{name}, CAST({self.named.format(m=name)} AS DOUBLE))"

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        import duckdb

        con = duckdb.connect()
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def top10(self, flt: Filter) -> tuple[str, ...]:
        acc = self.metric("accuracy")
        sql = (f"SELECT run_id FROM {self.source} WHERE {flt.sql} AND {STATUS} = 'finished' "  # noqa: S608
               f"AND isfinite({acc}) ORDER BY {acc} DESC, line LIMIT 10")
        return tuple(row[0] for row in self.rows(sql))

    def last20(self, flt: Filter | None) -> tuple[str, ...]:
        where = f"WHERE {flt.sql}" if flt else ""
        sql = f"SELECT run_id FROM {self.source} {where} ORDER BY line DESC LIMIT 20"  # noqa: S608
        return tuple(reversed([row[0] for row in self.rows(sql)]))

    def matches(self, flt: Filter) -> tuple[str, ...]:
        sql = f"SELECT run_id FROM {self.source} WHERE {flt.sql} ORDER BY line"  # noqa: S608
        return tuple(row[0] for row in self.rows(sql))

    def summary(self, flt: Filter) -> tuple[Any, ...]:
        parts = ["count(*)", f"histogram({STATUS})"]
        for name in METRICS:
            x = self.metric(name)
            fin = f"{STATUS} = 'finished'"
            good = f"FILTER (WHERE {fin} AND isfinite({x}))"
            parts += [f"count({x}) {good}", f"count({x}) FILTER (WHERE {fin} AND NOT isfinite({x}))",
                      f"min({x}) {good}", f"max({x}) {good}", f"avg({x}) {good}", f"stddev_samp({x}) {good}"]
        row = self.rows(f"SELECT {', '.join(parts)} FROM {self.source} WHERE {flt.sql}")[0]  # noqa: S608
        statuses = tuple(sorted((str(k), int(v)) for k, v in dict(row[1] or {}).items()))
        stats = {m: tuple(row[2 + 6 * i: 8 + 6 * i]) for i, m in enumerate(METRICS)}
        return (int(row[0]), statuses, stats)


def has_nonfinite(jsonl: Path) -> bool:
    """Whether DuckDB's detected schema has a ``nonfinite`` column (no run in its sample: none)."""
    import duckdb

    con = duckdb.connect()
    try:
        names = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {jsonl_source(jsonl)}").fetchall()]  # noqa: S608
    finally:
        con.close()
    return "nonfinite" in names


class Arrays:
    """The columns the questions read, as NumPy arrays in memory (loaded once, not timed): the
    machine's limit for a filter and a ranking, with no file read and no decoding at all."""

    def __init__(self, jsonl: Path, nonfinite: bool) -> None:
        import duckdb
        import numpy as np

        peer = DuckPeer(jsonl_source(jsonl), nonfinite)
        metrics = ", ".join(f"{peer.metric(m)} AS {m}" for m in METRICS)
        sql = (f"SELECT run_id, {STATUS} AS status, params.model AS model, "  # noqa: S608
               f"CAST(params.max_depth AS DOUBLE) AS max_depth, CAST(params.lr AS DOUBLE) AS lr, {metrics} "
               f"FROM {peer.source} ORDER BY line")
        con = duckdb.connect()
        try:
            data = con.execute(sql).fetchnumpy()
        finally:
            con.close()
        self.run_ids = np.asarray(data["run_id"], dtype=object)
        self.status_names, self.status = np.unique(np.asarray(data["status"], dtype=object).astype(str),
                                                   return_inverse=True)
        models = np.ma.filled(np.ma.asarray(data["model"], dtype=object), "").astype(str)
        self.model_names, self.model = np.unique(models, return_inverse=True)
        self.params: dict[str, Any] = {
            p: np.ma.filled(np.ma.asarray(data[p], dtype=float), np.nan) for p in ("max_depth", "lr")}
        self.present: dict[str, Any] = {m: ~np.ma.getmaskarray(np.ma.asarray(data[m])) for m in METRICS}
        self.metrics: dict[str, Any] = {m: np.ma.filled(np.ma.asarray(data[m], dtype=float), np.nan) for m in METRICS}
        finished = np.flatnonzero(self.status_names == "finished")
        self.finished = self.status == (finished[0] if len(finished) else -1)

    def mask(self, flt: Filter) -> Any:
        import numpy as np

        code = np.flatnonzero(self.model_names == flt.model)
        values = self.params[flt.field]
        keep = self.model == (code[0] if len(code) else -1)
        with np.errstate(invalid="ignore"):  # NaN (no value) compares false, as NULL does
            if flt.above is not None:
                keep &= values > flt.above
            if flt.below is not None:
                keep &= values < flt.below
        return keep

    def top10(self, flt: Filter) -> tuple[str, ...]:
        import numpy as np

        acc = self.metrics["accuracy"]
        rows = np.flatnonzero(self.mask(flt) & self.finished & np.isfinite(acc))
        keys = -acc[rows]
        if len(rows) > 10:
            cut = np.partition(keys, 9)[9]
            inside = keys <= cut
            rows, keys = rows[inside], keys[inside]
        best = rows[np.lexsort((rows, keys))[:10]]
        return tuple(self.run_ids[best].tolist())

    def last20(self, flt: Filter | None) -> tuple[str, ...]:
        import numpy as np

        rows = np.flatnonzero(self.mask(flt))[-20:] if flt else np.arange(len(self.run_ids))[-20:]
        return tuple(self.run_ids[rows].tolist())

    def matches(self, flt: Filter) -> tuple[str, ...]:
        return tuple(self.run_ids[self.mask(flt)].tolist())

    def summary(self, flt: Filter) -> tuple[Any, ...]:
        import numpy as np

        keep = self.mask(flt)
        counts = np.bincount(self.status[keep], minlength=len(self.status_names))
        statuses = tuple((str(s), int(c)) for s, c in zip(self.status_names.tolist(), counts.tolist()) if c)
        stats: dict[str, tuple[object, ...]] = {}
        scope = keep & self.finished
        for name in METRICS:
            values = self.metrics[name][scope]
            finite = values[np.isfinite(values)]
            nonfinite = int((self.present[name][scope] & ~np.isfinite(self.metrics[name][scope])).sum())
            if not len(finite):
                stats[name] = (0, nonfinite, None, None, None, None)
                continue
            std = float(finite.std(ddof=1)) if len(finite) > 1 else None
            stats[name] = (len(finite), nonfinite, float(finite.min()), float(finite.max()), float(finite.mean()), std)
        return (int(keep.sum()), statuses, stats)
