"""Generate a realistic run history straight into ``<store>/runs.jsonl``, fast, for benchmarks.

Each line is exactly what ``ExperimentTracker.log_run`` would write (``codec.encode`` of a
``Run``, checksum included): 9 params, up to 5 metrics (a few NaN from diverged runs), two or three
tags, code and system sections, a status mix of finished / failed / killed; about 650 bytes a line.
Output is deterministic for a given ``--seed``.  Records are built directly instead of through
``build_run`` (a third of the cost); the first runs of every chunk are also passed through
``build_run`` and must come out equal, so the shortcut cannot drift from the real format.

    python scripts/generate_history.py /tmp/store -n 1000000            # ~650 MB
    python scripts/generate_history.py /tmp/store -n 1000 --append       # 1,000 more

It writes the file directly, without the store's lock: never point it at a store in use.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import math
import multiprocessing
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exptrack.store import codec
from exptrack.store.names import DEFAULT_EXPERIMENT, generated_name
from exptrack.store.record import Run, build_run

CHUNK = 25_000
_BASE_SECOND = 1_735_689_600  # 2025-01-01T00:00:00Z; runs are ~3 s apart
_MODELS = (("rf", 0.86), ("xgb", 0.89), ("svm", 0.83), ("mlp", 0.87), ("logreg", 0.80))
_DEPTHS = (None, 4, 6, 8, 12, 16)
_BATCHES = (16, 32, 64, 128, 256)
_OPTIMIZERS = ("adam", "sgd", "adamw", "lbfgs")
_TEAMS = ("vision", "nlp", "tabular", "speech")
_HOSTS = tuple(f"gpu-node-{i:02d}" for i in range(24))
_GPUS = ("NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3", None)


def run_fields(index: int, rng: random.Random) -> dict[str, Any]:
    """``log_run`` keyword arguments for run number ``index`` (params, metrics, tags, status, extra)."""
    pick = rng.random
    model, base = _MODELS[int(pick() * len(_MODELS))]
    lr = 10 ** rng.uniform(-4.5, -1)
    depth = _DEPTHS[int(pick() * 6)]
    params: dict[str, Any] = {
        "model": model,
        "lr": lr,
        "batch_size": _BATCHES[int(pick() * 5)],
        "max_depth": depth,
        "n_estimators": 50 + 50 * int(pick() * 19),
        "optimizer": _OPTIMIZERS[int(pick() * len(_OPTIMIZERS))],
        "dropout": round(rng.uniform(0.0, 0.5), 3),
        "seed": int(pick() * 2**31),
        "dataset": "wine-quality-v3",
    }
    roll = rng.random()
    status = "finished" if roll < 0.90 else "failed" if roll < 0.97 else "killed"
    accuracy = rng.gauss(base, 0.04) - 2 * abs(math.log10(lr) + 2.5) * 0.01
    if not 0.3 < accuracy < 0.99:  # redraw instead of clamping: clamped values would tie
        accuracy = rng.uniform(0.3, 0.99)
    metrics: dict[str, float] = {
        "accuracy": accuracy,
        "val_loss": (1 - accuracy) * rng.uniform(1.2, 2.4),
        "f1": accuracy - rng.uniform(0.0, 0.05),
        "auc": accuracy + (0.9999 - accuracy) * rng.uniform(0.05, 0.6),
        "train_time_s": rng.uniform(5.0, 3600.0),
    }
    if status == "finished":
        if rng.random() < 0.004:  # a diverged run: the loss is NaN, accuracy is poor
            metrics["val_loss"] = math.nan
            metrics["accuracy"] = rng.uniform(0.2, 0.4)
    elif status == "failed":
        metrics = {"train_time_s": metrics["train_time_s"]} if rng.random() < 0.7 else {}
    else:
        metrics = {name: metrics[name] for name in ("val_loss", "train_time_s")}
    sweep = index // 500
    tags = [f"sweep=s{sweep:05d}", f"team={_TEAMS[sweep % len(_TEAMS)]}"]
    if rng.random() < 0.1:
        tags.append("baseline")
    commit = f"{((sweep + 1) * 2654435761) & 0xFFFFFFFF:08x}" * 5
    extra = {
        "code": {"commit": commit, "branch": "main" if sweep % 3 else f"exp/sweep-{sweep}", "dirty": sweep % 4 == 0},
        "system": {
            "hostname": _HOSTS[int(pick() * len(_HOSTS))],
            "python": "3.11.7",
            "gpu": _GPUS[sweep % len(_GPUS)],
        },
        "duration_s": round(metrics.get("train_time_s", rng.uniform(1.0, 60.0)) * 1.07, 3),
    }
    return {"params": params, "metrics": metrics, "tags": tags, "status": status, "extra": extra}


def _identity(index: int, rng: random.Random) -> tuple[str, str]:
    micros = (_BASE_SECOND + index * 3) * 1_000_000 + int(rng.random() * 1_000_000)
    second, micro = divmod(micros, 1_000_000)
    day, in_day = divmod(second, 86_400)
    hour, rest = divmod(in_day, 3600)
    stamp = f"{_date(day)}T{hour:02d}:{rest // 60:02d}:{rest % 60:02d}.{micro:06d}Z"
    return f"{micros // 1000:012x}{rng.getrandbits(80):020x}", stamp


@functools.lru_cache(maxsize=4)
def _date(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def _chunk_rng(seed: int, first: int) -> random.Random:
    return random.Random(seed * 1_000_000_007 + first)


def encode_chunk(task: tuple[int, int, int]) -> bytes:
    """The encoded lines of runs ``[first, first + count)``, from an RNG seeded by ``first``."""
    seed, first, count = task
    rng = _chunk_rng(seed, first)
    out = []
    for index in range(first, first + count):
        run_id, timestamp = _identity(index, rng)
        fields = run_fields(index, rng)
        run = Run(
            run_id=run_id,
            timestamp=timestamp,
            params=fields["params"],
            metrics=fields["metrics"],
            tags=tuple(fields["tags"]),
            status=fields["status"],
            extra={**fields["extra"], "name": generated_name(run_id), "experiment": DEFAULT_EXPERIMENT},
        )
        if index - first < 3 and build_run(run_id=run_id, timestamp=timestamp, **fields) != run:
            raise AssertionError(f"generated run {index} differs from build_run's; fix run_fields")
        out.append(codec.encode(run))
    return b"".join(out)


def log_items(first: int, count: int, seed: int = 1) -> list[dict[str, Any]]:
    """``count`` realistic ``log_runs`` items (for appending through the public API)."""
    rng = _chunk_rng(seed, -1 - first)
    return [run_fields(index, rng) for index in range(first, first + count)]


def generate(store: str | os.PathLike[str], n: int, *, seed: int = 0, workers: int | None = None,
             append: bool = False) -> int:
    """Write ``n`` runs to ``<store>/runs.jsonl`` and return the number of bytes written.

    Raises:
        FileExistsError: the log exists and ``append`` is false.
    """
    path = Path(store) / "runs.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    first = 0
    if append and path.exists():
        with open(path, "rb") as handle:
            first = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 24), b""))
    tasks = [(seed, first + start, min(CHUNK, n - start)) for start in range(0, n, CHUNK)]
    if workers is None:
        workers = 1 if n <= 2 * CHUNK else min(len(tasks), os.cpu_count() or 1)
    written = 0
    with open(path, "ab" if append else "xb") as out:
        if workers <= 1:
            for task in tasks:
                written += out.write(encode_chunk(task))
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for data in pool.imap(encode_chunk, tasks):
                    written += out.write(data)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="store directory (runs.jsonl is created inside)")
    parser.add_argument("-n", "--runs", type=int, default=100_000, help="how many runs (default 100000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    parser.add_argument("--append", action="store_true", help="add to an existing log instead of refusing")
    args = parser.parse_args()
    start = time.perf_counter()
    try:
        size = generate(args.store, args.runs, seed=args.seed, workers=args.workers, append=args.append)
    except FileExistsError:
        print(f"{args.store}/runs.jsonl exists; pass --append or choose another directory", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    print(f"wrote {args.runs:,} runs ({size / 2**20:.1f} MiB, {size / max(args.runs, 1):.0f} B/run) "
          f"in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
