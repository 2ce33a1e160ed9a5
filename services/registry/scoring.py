"""Scoring answers against ground truth with the use case's metrics.

Labels reach the registry in several spellings (``1`` on the labels topic,
``"1"`` in the offline store, ``"1"`` as a JSON key of a probability map), so
every value is matched to the spec's class by ``UseCase.class_of`` first.

>>> spec = UseCase.model_validate({
...     "name": "toy", "task": "classification", "label": {"classes": [0, 1]},
...     "fields": {"x": {"type": "float"}}, "features": [{"kind": "passthrough", "field": "x"}],
... })
>>> spec.class_of("1"), spec.class_of(0.0), spec.class_of("maybe")
(1, 0, None)
>>> score(spec, ["1", 0, 1, 0], [1, 0, 0, 0],
...       [{"0": 0.2, "1": 0.8}, {"0": 0.9, "1": 0.1}, {"0": 0.6, "1": 0.4}, {"0": 0.7, "1": 0.3}]
...       )["roc_auc"]
1.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from schemas.usecase import UseCase
from services.common.metrics import classification_metrics, regression_metrics, scalar_metrics


def score(
    spec: UseCase,
    truth: Sequence[Any],
    predicted: Sequence[Any],
    proba: Sequence[Mapping[Any, float] | None] | None = None,
) -> dict[str, float]:
    """The spec's metrics over rows whose truth and prediction both name a class (or number).

    Probabilities are used only when every kept row has them. A metric that
    is undefined on the rows (ROC AUC with one class present) is missing.
    """
    kept_truth: list[Any] = []
    kept_pred: list[Any] = []
    kept_proba: list[dict[Any, float]] = []
    has_proba = proba is not None
    for index, (raw_truth, raw_pred) in enumerate(zip(truth, predicted, strict=True)):
        y, y_hat = spec.class_of(raw_truth), spec.class_of(raw_pred)
        if y is None or y_hat is None:
            continue
        kept_truth.append(y)
        kept_pred.append(y_hat)
        if proba is not None:
            row = proba[index]
            if row is None:
                has_proba = False
            else:
                kept_proba.append(spec.probabilities_of(row))
    if not kept_truth:
        return {}
    if spec.task == "regression":
        return regression_metrics(kept_truth, kept_pred)
    metrics = classification_metrics(
        kept_truth,
        kept_pred,
        kept_proba if has_proba else None,
        classes=list(spec.label.classes or []),
        positive=spec.positive_class,
    )
    return scalar_metrics(metrics)
