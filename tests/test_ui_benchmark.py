"""``benchmarks/ui_server.py --quick`` still runs: its table and answer check, never its timings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("plotly")

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "ui_server.py"
HANG_GUARD = 300.0  # seconds; a quick benchmark that takes longer is hung, not slow


def test_ui_benchmark_quick_mode_prints_its_table() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True,
                            timeout=HANG_GUARD, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout
    assert output.startswith("exptrack "), output  # the environment line first
    expected = ["2,000 runs", "raw limit: read the log's bytes", "query layer: tracker.runs() scan",
                "first /api/runs after start",
                "first /api/points after start", "warm /api/runs (newest 50)", "warm /api/runs sorted",
                "warm /api/runs filtered", "warm /api/points", "warm /api/summary", "warm /api/runs/{run}/history",
                "warm /api/runs revalidated (304)", "+1000 /api/runs (newest 50)", "server peak RSS",
                "answers agree: yes"]
    missing = [text for text in expected if text not in output]
    assert not missing, f"{missing} not in:\n{output}"
