"""The model families the batch trainer fits on one split, and the rule that picks one.

Every run fits the MLP and its linear baseline; a use case may name more
classical contenders (``models.batch.contenders``): today scikit-learn's
histogram gradient-boosted trees, served as a
:class:`~services.common.models.tree_model.TreeModel`. Each is fit on the same
standardized training part and scored on the same validation rows.

The rule (:func:`choose_family`): the best score by the primary metric wins,
except that a simpler family whose score is within ``promotion.margin`` of
the best wins the tie. Simplicity is :data:`SIMPLICITY`'s order: the linear
model (a dot product, exactly explained), then the boosted trees (no tuning,
fast to fit, exactly explained by TreeSHAP), then the MLP (tuned, explained
by integrated gradients up to a quadrature gap).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.usecase import LOWER_IS_BETTER, Task, UseCase
from services.common.models.linear_model import LinearModel
from services.common.models.torch_model import TorchModel
from services.common.models.tree_model import TreeModel

SIMPLICITY = ("linear", "hist_gradient_boosting", "mlp")
"""Families from the simplest: on a tie within the margin, the earlier wins."""

BatchModel = TorchModel | LinearModel | TreeModel


def family_of(model: BatchModel) -> str:
    """``mlp``, ``linear`` or ``hist_gradient_boosting``: the names candidates and runs use."""
    if isinstance(model, LinearModel):
        return "linear"
    if isinstance(model, TreeModel):
        return "hist_gradient_boosting"
    return "mlp"


def choose_family(spec: UseCase, scores: dict[str, float | None]) -> tuple[str, str]:
    """The family that wins on validation and why.

    The best score wins unless a simpler family is within ``promotion.margin``
    of it; families without a finite score are left out (the MLP wins when
    no family has one).

    >>> from schemas.usecase import UseCase
    >>> spec = UseCase.model_validate({"name": "t", "task": "regression",
    ...     "fields": {"a": {"type": "float"}}, "features": [{"kind": "passthrough", "field": "a"}],
    ...     "promotion": {"margin": 0.1}})
    >>> choose_family(spec, {"mlp": 1.0, "linear": 1.05})[0]
    'linear'
    >>> choose_family(spec, {"mlp": 0.8, "linear": 1.05})[0]
    'mlp'
    >>> choose_family(spec, {"mlp": 0.8, "linear": 1.05, "hist_gradient_boosting": 0.85})[0]
    'hist_gradient_boosting'
    >>> choose_family(spec, {"mlp": 0.5, "linear": 1.05, "hist_gradient_boosting": 0.85})[0]
    'mlp'
    """
    metric, margin = spec.primary_metric, spec.promotion.margin
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0  # sign * score: higher is better
    finite = {
        name: float(value)
        for name, value in scores.items()
        if value is not None and math.isfinite(value)
    }
    listed = ", ".join(f"{name}={scores[name]}" for name in sorted(scores))
    if not finite:
        return "mlp", f"validation {metric} not comparable ({listed})"
    best = max(finite, key=lambda name: (sign * finite[name], _rank(name)))
    for name in sorted(finite, key=_rank):
        gap = sign * (finite[best] - finite[name])
        if gap <= margin:
            if name == best:
                return name, (
                    f"{name} is best on validation {metric} ({listed}); no simpler family "
                    f"within margin {margin}"
                )
            return name, (
                f"{best} is best on validation {metric} ({listed}), but {name} is within "
                f"{gap:.6g} <= margin {margin} of it: the simpler model wins"
            )
    raise AssertionError("the best family is within the margin of itself")


def _rank(name: str) -> int:
    return SIMPLICITY.index(name) if name in SIMPLICITY else len(SIMPLICITY)


def fit_hist_gradient_boosting(
    xs: Mapping[str, npt.NDArray[np.float64]],
    ys: Mapping[str, npt.NDArray[Any]],
    *,
    task: Task,
    class_weights: bool,
    seed: int,
) -> Any:
    """scikit-learn's ``HistGradientBoosting{Classifier,Regressor}``, its defaults otherwise.

    ``xs`` and ``ys`` hold the split's parts by name, as the pipeline keeps them;
    the trees fit ``train`` and stop on ``validation``.

    Up to 300 boosting rounds, stopped early (10 rounds without gain) on the
    validation part, as the MLP stops on it; balanced class weights when the
    spec asks for them, as for the other families.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    x_train, y_train, x_val, y_val = xs["train"], ys["train"], xs["validation"], ys["validation"]

    common: dict[str, Any] = {
        "max_iter": 300,
        "early_stopping": True,
        "n_iter_no_change": 10,
        "random_state": seed,
    }
    if task == "classification":
        classifier = HistGradientBoostingClassifier(
            class_weight="balanced" if class_weights else None, **common
        )
        labels, val_labels = y_train.astype(np.int64), y_val.astype(np.int64)
        known = np.isin(val_labels, np.unique(labels))  # a class unseen in training scores none
        return classifier.fit(x_train, labels, X_val=x_val[known], y_val=val_labels[known])
    regressor = HistGradientBoostingRegressor(**common)
    return regressor.fit(x_train, y_train, X_val=x_val, y_val=y_val)
