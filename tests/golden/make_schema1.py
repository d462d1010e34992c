"""Write ``schema1/runs.jsonl`` and ``schema1/expected.json`` with exptrack's schema-1 code.

The golden store is what exptrack wrote before schema 2 (non-finite metrics as the strings
"NaN"/"Infinity"/"-Infinity" inside ``metrics``).  It was made from commit ffb6a25 with::

    git worktree add /tmp/schema1 ffb6a25
    PYTHONPATH=/tmp/schema1 python tests/golden/make_schema1.py

``expected.json`` is how that same code read the store back (floats as ``repr`` strings, so NaN
and the sign of an infinity are compared exactly); ``tests/test_golden.py`` checks that today's
reader sees the same runs.  The script refuses to run with a newer schema: it only makes sense
with the old writer.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from exptrack.store import codec
from exptrack.store.record import SCHEMA_VERSION, build_run
from exptrack.store.scan import LogScan

HERE = Path(__file__).parent / "schema1"

RUNS: list[dict[str, Any]] = [
    {"params": {"model": "rf", "max_depth": 8, "lr": 0.1}, "metrics": {"loss": 0.25, "accuracy": 0.84},
     "tags": ["base"]},
    {"params": {"model": "rf", "max_depth": "auto"}, "metrics": {"loss": math.nan, "accuracy": 0.5},
     "status": "failed"},
    {"params": {"model": "knn", "k": 3, "max_depth": None}, "metrics": {"loss": math.inf, "accuracy": 0.61},
     "tags": ["a,b", "c"]},
    {"params": {"model": "knn", "k": 5, "cfg": {"a": {"b": 1}}, "a.b": 2},
     "metrics": {"loss": -math.inf, "f1": 0.3}, "status": "killed"},
    {"params": {"model": "svm", "layers": [64, 32], "flag": True}, "metrics": {"loss": 0.125, "epochs": 3},
     "tags": ["a", "b,c"]},
    # "nonfinite" was an ordinary section name in schema 1; schema 2 gives it a meaning
    {"params": {"model": "svm"}, "metrics": {"accuracy": 0.9}, "extra": {"nonfinite": {"accuracy": "NaN"}}},
    {"params": {}, "metrics": {}},
    {"params": {"model": "rf", "note": "unicode é ü"}, "metrics": {"loss": 1e-300, "accuracy": 0.7000000000000001},
     "extra": {"duration_s": 1.5, "history": {"loss": {"count": 2, "last": 0.1}}}},
]


def floats_as_repr(value: object) -> object:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {k: floats_as_repr(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [floats_as_repr(v) for v in value]
    return value


def main() -> None:
    if SCHEMA_VERSION != 1:
        sys.exit(f"this exptrack writes schema {SCHEMA_VERSION}; run the script with the schema-1 code")
    HERE.mkdir(exist_ok=True)
    log = HERE / "runs.jsonl"
    with log.open("wb") as out:
        for i, fields in enumerate(RUNS):
            run = build_run(run_id=f"golden-{i:02d}", timestamp=f"2026-11-0{1 + i % 9}T10:00:0{i % 10}.000000Z",
                            **fields)
            out.write(codec.encode(run))
    expected = [floats_as_repr(run.to_dict()) for run in LogScan(str(log)) if not hasattr(run, "reason")]
    assert len(expected) == len(RUNS)
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
