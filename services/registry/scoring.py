"""Scoring answers against ground truth with the use case's metrics.

Labels reach the registry in several spellings (``1`` on the labels topic,
``"1"`` in the offline store, ``"1"`` as a JSON key of a probability map), so
every value is matched to the spec's class by :func:`class_key` first.

>>> spec = UseCase.model_validate({
...     "name": "toy", "task": "classification", "label": {"classes": [0, 1]},
...     "fields": {"x": {"type": "float"}}, "features": [{"kind": "passthrough", "field": "x"}],
... })
>>> to_class(spec, "1"), to_class(spec, 0.0), to_class(spec, "maybe")
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


def class_key(value: Any) -> str:
    """How a label is matched to a class: ``1``, ``1.0`` and ``"1"`` are the same class.

    >>> class_key(1.0), class_key(" Yes"), class_key(True)
    ('1', 'yes', 'true')
    """
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        text = value.strip().lower()
        try:
            number = float(text)
        except ValueError:
            return text
        return str(int(number)) if number.is_integer() else text
    return str(value)


def to_class(spec: UseCase, value: Any) -> Any:
    """The spec's class that ``value`` names, or None (a regression target as a float)."""
    if spec.task == "regression":
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    index = {class_key(c): c for c in spec.label.classes or []}
    return index.get(class_key(value))


def to_proba(spec: UseCase, proba: Mapping[Any, float] | None) -> dict[Any, float] | None:
    """A probability map keyed by the spec's classes (keys may arrive as strings)."""
    if proba is None:
        return None
    mapped: dict[Any, float] = {}
    for key, value in proba.items():
        cls = to_class(spec, key)
        if cls is not None:
            mapped[cls] = float(value)
    return mapped


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
        y, y_hat = to_class(spec, raw_truth), to_class(spec, raw_pred)
        if y is None or y_hat is None:
            continue
        kept_truth.append(y)
        kept_pred.append(y_hat)
        if proba is not None:
            row = to_proba(spec, proba[index])
            if row is None:
                has_proba = False
            else:
                kept_proba.append(row)
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
