"""Which way is better for a metric: given, declared by the runs, or inferred from its name.

Order of precedence: an explicit ``mode``; else the direction the runs in scope declared in
their ``directions`` section (``log_run(..., directions={"value": "min"})``); else the name.

Names follow the conventions people log under, scikit-learn's included: its scorers are
"greater is better", so ``neg_log_loss`` / ``neg_mean_squared_error`` (any ``neg_`` prefix) are
maximised; ``rank_test_score`` is a rank (1 is best); ``mean_test_X``, ``splitN_test_X`` and
``mean_train_X`` are statistics of ``X`` and inherit its direction (``mean_test_score``, the
estimator's own score, is maximised); ``std_*`` (a spread) has none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

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


_SKLEARN_STAT = re.compile(r"(?:mean|split\d+)_(?:test|train)_(.+)")
"""``cv_results_`` columns that are a statistic of a scorer: they inherit its direction."""


def infer_mode(metric: str) -> Mode | None:
    """``"max"`` / ``"min"`` for well-known metric names (``val_accuracy``, ``test-rmse``), else None."""
    name = metric.lower()
    if name.startswith("std_"):
        return None  # a spread: neither bigger nor smaller is better
    if name.startswith("rank_"):
        return "min"  # scikit-learn's rank_test_score: 1 is the best
    inherited = _SKLEARN_STAT.fullmatch(name)
    if inherited:  # "score" alone says nothing, but scikit-learn's own "score" is greater-is-better
        return "max" if inherited[1] == "score" else infer_mode(inherited[1])
    if name.startswith("neg_"):
        return "max"  # scikit-learn scorers are "greater is better": neg_log_loss = -log_loss
    words = set(_WORD.findall(name))
    words |= {w.rstrip("0123456789") for w in words}  # f1 stays f1 (matched first), top5 → top
    is_max, is_min = bool(words & _MAX_WORDS), bool(words & _MIN_WORDS)
    if is_max == is_min or words & _NEUTRAL_WORDS:
        return None
    return "max" if is_max else "min"


def declared_mode(metric: str, declared: Mapping[str, int]) -> Mode | None:
    """The direction the runs in scope declared for ``metric`` (None if none did).

    Raises:
        QueryError: some runs declared ``max`` and others ``min``.
    """
    modes = sorted(mode for mode, count in declared.items() if count and mode in ("max", "min"))
    if len(modes) > 1:
        raise QueryError(
            f"the runs in scope declare both directions for {metric!r} ({declared.get('max', 0)} max, "
            f"{declared.get('min', 0)} min); pass mode='max' or mode='min' (CLI: --max or --min)"
        )
    return modes[0] if modes else None  # type: ignore[return-value]


def resolve_mode(metric: str, mode: str | None, declared: Mapping[str, int] | None = None) -> Mode:
    """The explicit mode, or the declared one, or the inferred one, or a clear error asking for it."""
    if mode is None:
        chosen = declared_mode(metric, declared) if declared else None
        inferred = chosen or infer_mode(metric)
        if inferred is None:
            raise QueryError(
                f"cannot tell whether a higher or lower {metric!r} is better; "
                "pass mode='max' or mode='min' (CLI: --max or --min), "
                "or log the runs with directions={" + repr(metric) + ": 'max'}"
            )
        return inferred
    if mode not in ("max", "min"):
        raise QueryError(f"mode must be 'max' or 'min', not {mode!r}")
    return mode  # type: ignore[return-value]
