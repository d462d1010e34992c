"""Which way is better for a metric: inferred from well-known names, or given."""

from __future__ import annotations

import re

from exptrack.errors import QueryError
from exptrack.store.index.reducers import Mode

_MAX_WORDS = frozenset({"accuracy", "acc", "f1", "auc", "roc", "auroc", "precision", "recall", "r2",
                        "map", "ndcg", "iou", "dice", "bleu", "rouge"})


_MIN_WORDS = frozenset({"loss", "error", "err", "rmse", "mse", "mae", "mape", "perplexity", "wer", "cer"})


# Qualifiers that make a name a statistic *about* a metric, not the metric: `accuracy_std`,
# `loss_time` have no obvious better direction.
_NEUTRAL_WORDS = frozenset({"std", "sd", "stddev", "var", "variance", "sem", "time", "seconds", "secs", "sec",
                            "duration", "count", "n", "size", "step", "steps", "epoch", "lr"})


_WORD = re.compile(r"[a-z0-9]+")


def infer_mode(metric: str) -> Mode | None:
    """``"max"`` / ``"min"`` for well-known metric names (``val_accuracy``, ``test-rmse``), else None."""
    words = set(_WORD.findall(metric.lower()))
    words |= {w.rstrip("0123456789") for w in words}  # f1 stays f1 (matched first), top5 → top
    is_max, is_min = bool(words & _MAX_WORDS), bool(words & _MIN_WORDS)
    if is_max == is_min or words & _NEUTRAL_WORDS:
        return None
    return "max" if is_max else "min"


def resolve_mode(metric: str, mode: str | None) -> Mode:
    """The explicit mode, or the inferred one, or a clear error asking for it."""
    if mode is None:
        inferred = infer_mode(metric)
        if inferred is None:
            raise QueryError(
                f"cannot tell whether a higher or lower {metric!r} is better; "
                "pass mode='max' or mode='min' (CLI: --max or --min)"
            )
        return inferred
    if mode not in ("max", "min"):
        raise QueryError(f"mode must be 'max' or 'min', not {mode!r}")
    return mode  # type: ignore[return-value]


