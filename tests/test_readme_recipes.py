"""The README's "Read it with DuckDB / pandas / polars / jq" recipes run verbatim, and their
answers (best finished run, mean per model over finished runs) agree with exptrack's."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exptrack import ExperimentTracker

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## Read it with DuckDB / pandas / polars / jq"


def recipes() -> list[tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```(python|sh)\n(.*?)```", text[start:end], flags=re.DOTALL)


def test_the_section_has_a_recipe_for_every_reader() -> None:
    blocks = recipes()
    joined = "\n".join(code for _, code in blocks)
    for reader in ("import duckdb", "import pandas", "import polars", "jq "):
        assert reader in joined
    assert [kind for kind, _ in blocks] == ["python", "python", "python", "sh"]


@pytest.fixture
def workdir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """``experiments/`` with runs whose answers differ when a recipe ranks failed runs or NaN."""
    ids: dict[str, str] = {}
    with ExperimentTracker(tmp_path / "experiments", durable=False) as tracker:
        def log(key: str, model: str, accuracy: float | None, status: str = "finished", **params: object) -> None:
            metrics = {} if accuracy is None else {"accuracy": accuracy}
            ids[key] = tracker.log_run(params={"model": model, **params}, metrics=metrics, status=status).run_id

        log("knn-nan", "knn", math.nan, k=3)
        log("rf-low", "rf", 0.5, max_depth=8)
        log("rf-failed", "rf", 0.99, "failed", max_depth="auto")  # best of all, but failed
        log("knn-inf", "knn", math.inf, k=5)
        log("rf-best", "rf", 0.75, max_depth=None)
        log("knn-a", "knn", 0.25, k=[1, 2])
        log("svm-none", "svm", None)
        log("knn-b", "knn", 0.375, k={"n": 7})
        best = tracker.best_run("accuracy", "max", where="status = 'finished'")
        assert best.run_id == ids["rf-best"]
        for model, mean in (("rf", 0.625), ("knn", 0.3125)):
            summary = tracker.summary(where=f"status = 'finished' and params.model = '{model}'")
            assert summary["metrics"]["accuracy"]["mean"] == mean
    return tmp_path, ids


@pytest.mark.parametrize("index", range(4), ids=["duckdb", "pandas", "polars", "jq"])
def test_recipe_runs_verbatim_and_agrees_with_exptrack(workdir: tuple[Path, dict[str, str]], index: int) -> None:
    cwd, ids = workdir
    kind, code = recipes()[index]
    if kind == "sh":
        if shutil.which("jq") is None:
            pytest.skip("jq is not installed (CI installs it with apt-get)")
        command = ["bash", "-e", "-c", code]
    else:
        command = [sys.executable, "-c", code]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert ids["rf-best"] in out  # the best finished run, not the failed 0.99
    assert ids["rf-failed"] not in out
    assert "0.625" in out  # mean over finished rf runs
    assert "0.3125" in out  # mean over finished knn runs: NaN and +Infinity left out
    assert "0.99" not in out
