"""The benchmark scripts still run: each in ``--quick`` mode, checking its table, never its timings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
HANG_GUARD = 300.0  # seconds; a quick benchmark that takes longer is hung, not slow


def run_quick(script: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        capture_output=True, text=True, timeout=HANG_GUARD, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        pytest.param(
            "write_throughput.py",
            ["flush-only", "durable", "single", "batched", "exptrack", "raw O_APPEND (limit)",
             "1 procs", "2 procs", "4 procs", "8 procs", "runs/s median", "every case verified", ": yes"],
            id="write_throughput",
        ),
        pytest.param(
            "ranking_groups.py",
            ["1 experiment, 3 groups", "50 experiments, 200 groups", "best status=finished", "top10 status=any",
             "summary status=failed+killed", "read index.json (raw limit)",
             "answers agree with an index-free scan: yes"],
            id="ranking_groups",
        ),
        pytest.param(
            "query_history.py",
            ["best accuracy", "top-10 val_loss", "summary", "filtered top-10", "exptrack cold (no index)",
             "exptrack warm (index)", "exptrack after +1000 runs", "stdlib json loop",
             "read the file's bytes (raw limit)", "2,000 runs", "10,000 runs", "Peak RSS", "answers agree: yes"],
            id="query_history",
        ),
        pytest.param(
            "cold_scan.py",
            ["exptrack cold best (default: msgspec if installed, 2 cores)", "exptrack cold best (orjson only)",
             "exptrack cold best (one core)", "read the file's bytes (raw limit)",
             "read + CRC-32 per line (checksum floor)", "2,000 runs", "10,000 runs", "Peak RSS of the cold build",
             "peak RSS 10,000 vs 2,000 runs", "answers agree: yes"],
            id="cold_scan",
        ),
        pytest.param(
            "listing.py",
            ["runs -n 20: recent_runs (API)", "runs -n 20: exptrack runs (process)", "before: forward pass + deque",
             "--sort -n 5: heap of 5", "before: full sort", "columns of a 100,000-param run", "2,000 runs",
             "10,000 runs", "peak", "answers agree: yes"],
            id="listing",
        ),
        pytest.param(
            "filtered_queries.py",
            ["filtered top-10: rf, max_depth > 10", "filtered top-10: xgb, lr < 0.01", "filtered summary: rf",
             "last 20 matches: rf", "all matches: rf", "runs -n 20 (no filter)",
             "exptrack: first query (builds the columns)", "exptrack warm (API)", "exptrack after +1,000 runs",
             "exptrack log path (columns off)", "exptrack top -w (process)", "duckdb read_json (JSONL)",
             "duckdb read_parquet (copy)", "numpy arrays in memory (limit)", "read the file's bytes (raw limit)",
             "columns", "index + tail", "2,000 runs", "10,000 runs", ".index/columns MiB", "peak RSS (VmHWM) MiB",
             "answers agree: yes"],
            id="filtered_queries",
        ),
        pytest.param(
            "lifecycle.py",
            ["set_tags (one run)", "set_note (one run)", "delete_runs (the best run)",
             "first best_run after it (recompute)", "gc (compact, fresh process)",
             "limit: plain copy of the log + fsync", "gc peak RSS", "plain copy peak RSS", "3,000 runs",
             "answers checked"],
            id="lifecycle",
        ),
        pytest.param(
            "sql_query.py",
            ["mean accuracy per model", "best run per model", "runs per status", "exptrack sql",
             "python loop over tracker.runs()", "duckdb on the raw file (limit)", "reader alone", "2,000 runs",
             "answers agree: yes"],
            id="sql_query",
        ),
    ],
)
def test_benchmark_quick_mode_prints_its_table(script: str, expected: list[str]) -> None:
    output = run_quick(script)
    assert output.startswith("exptrack "), output  # the environment line comes first
    missing = [text for text in expected if text not in output]
    assert not missing, f"{missing} not in:\n{output}"
