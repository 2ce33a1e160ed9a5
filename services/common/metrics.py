"""Honest evaluation: the metrics every trainer reports and the promoter's gate compares.

Plain numpy, scikit-learn's names and definitions: ``accuracy``,
``precision``, ``recall``, ``f1``, ``specificity``, ``roc_auc``, ``log_loss``
for classifiers; ``mae``, ``mse``, ``rmse``, ``r2`` for regressors. Binary
problems score the positive class; multi-class problems take the macro
average over classes (``roc_auc`` one-vs-rest). A metric that is undefined
on the data (ROC AUC with one class present, R2 of a constant target) is left
out rather than reported as NaN, because events carry finite numbers only.

>>> m = classification_metrics([0, 1, 1, 0], [0, 1, 0, 0],
...                            [{0: 0.8, 1: 0.2}, {0: 0.1, 1: 0.9},
...                             {0: 0.6, 1: 0.4}, {0: 0.7, 1: 0.3}],
...                            classes=[0, 1], positive=1)
>>> m["accuracy"], m["precision"], m["recall"], m["specificity"], m["roc_auc"]
(0.75, 1.0, 0.5, 1.0, 1.0)
>>> m["confusion_matrix"]
[[2, 0], [1, 1]]
>>> regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])["mae"]
0.3333333333333333
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
_EPS = 1e-15


def confusion_matrix(y_true: Sequence[Any], y_pred: Sequence[Any], classes: Sequence[Any]) -> Any:
    """Counts with true classes as rows and predicted classes as columns, in ``classes`` order.

    >>> confusion_matrix(["a", "b", "b"], ["a", "a", "b"], ["a", "b"]).tolist()
    [[1, 0], [1, 1]]
    """
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for truth, guess in zip(y_true, y_pred, strict=True):
        matrix[index[truth], index[guess]] += 1
    return matrix


def roc_auc_binary(
    y_true: Sequence[bool] | npt.NDArray[Any], score: Sequence[float] | FloatArray
) -> float:
    """Area under the ROC curve: the chance a positive scores above a negative (ties count half).

    Returns NaN when only one class is present.

    >>> roc_auc_binary([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    >>> roc_auc_binary([0, 1], [0.5, 0.5])
    0.5
    """
    truth = np.asarray(y_true, dtype=bool)
    values = np.asarray(score, dtype=np.float64)
    positives, negatives = int(truth.sum()), int((~truth).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = _average_ranks(values)
    rank_sum = float(ranks[truth].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def _average_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks, ties sharing their average rank (scipy's ``rankdata`` 'average')."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    start = 0
    while start < len(values):
        stop = start
        while stop + 1 < len(values) and ordered[stop + 1] == ordered[start]:
            stop += 1
        ranks[order[start : stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def _safe_ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, 0 where the denominator is 0 (``zero_division=0``)."""
    return numerator / denominator if denominator else 0.0


def _class_rates(matrix: Any, k: int) -> tuple[float, float, float, float]:
    """Precision, recall, F1 and specificity of class ``k`` from a confusion matrix."""
    tp = float(matrix[k, k])
    fp = float(matrix[:, k].sum() - tp)
    fn = float(matrix[k, :].sum() - tp)
    tn = float(matrix.sum() - tp - fp - fn)
    precision = _safe_ratio(tp, tp + fp)
    recall = _safe_ratio(tp, tp + fn)
    f1 = _safe_ratio(2 * tp, 2 * tp + fp + fn)
    specificity = _safe_ratio(tn, tn + fp)
    return precision, recall, f1, specificity


def probability_matrix(proba: Sequence[Mapping[Any, float]], classes: Sequence[Any]) -> FloatArray:
    """Rows of class probabilities (dicts) as an array with one column per class.

    >>> probability_matrix([{"a": 0.25, "b": 0.75}, {"a": 1.0}], ["a", "b"]).tolist()
    [[0.25, 0.75], [1.0, 0.0]]
    """
    return np.array([[float(row.get(c, 0.0)) for c in classes] for row in proba], dtype=np.float64)


def classification_metrics(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    proba: Sequence[Mapping[Any, float]] | FloatArray | None,
    classes: Sequence[Any],
    positive: Any = None,
) -> dict[str, Any]:
    """Accuracy, precision, recall, F1, specificity, ROC AUC, log loss and the confusion matrix.

    ``proba`` holds one mapping of class to probability per row, or an array
    with one column per class in ``classes`` order; without it ROC AUC and
    log loss are left out. With ``positive`` (binary problems) precision,
    recall, F1 and specificity score that class; otherwise they are macro
    averages. The confusion matrix is under ``confusion_matrix`` as nested lists.

    >>> m = classification_metrics(["a", "b", "c", "c"], ["a", "b", "c", "a"], None,
    ...                            classes=["a", "b", "c"])
    >>> round(m["f1"], 4), round(m["recall"], 4), sorted(m)[:3]
    (0.7778, 0.8333, ['accuracy', 'confusion_matrix', 'f1'])
    """
    if len(y_true) == 0:
        raise ValueError("no rows to evaluate")
    classes = list(classes)
    matrix = confusion_matrix(y_true, y_pred, classes)
    total = float(matrix.sum())
    metrics: dict[str, Any] = {"accuracy": float(np.trace(matrix)) / total}
    if positive is not None:
        rates = _class_rates(matrix, classes.index(positive))
    else:
        per_class = np.array([_class_rates(matrix, k) for k in range(len(classes))])
        rates = tuple(float(v) for v in per_class.mean(axis=0))  # type: ignore[assignment]
    metrics.update(zip(("precision", "recall", "f1", "specificity"), rates, strict=True))
    if proba is not None:
        probabilities = (
            np.asarray(proba, dtype=np.float64)
            if isinstance(proba, np.ndarray)
            else probability_matrix(proba, classes)
        )
        metrics.update(_probability_metrics(y_true, probabilities, classes, positive))
    metrics["confusion_matrix"] = matrix.tolist()
    return metrics


def _probability_metrics(
    y_true: Sequence[Any], probabilities: FloatArray, classes: list[Any], positive: Any
) -> dict[str, float]:
    index = {c: i for i, c in enumerate(classes)}
    truth = np.array([index[y] for y in y_true])
    clipped = np.clip(probabilities, _EPS, 1 - _EPS)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    scores = {"log_loss": float(-np.mean(np.log(clipped[np.arange(len(truth)), truth])))}
    if len(classes) == 2:
        k = classes.index(positive) if positive is not None else 1
        auc = roc_auc_binary(truth == k, probabilities[:, k])
    else:
        per_class = [roc_auc_binary(truth == k, probabilities[:, k]) for k in range(len(classes))]
        defined = [a for a in per_class if not np.isnan(a)]
        # One-vs-rest macro average; undefined when any class is absent (as scikit-learn).
        auc = float(np.mean(defined)) if len(defined) == len(per_class) else float("nan")
    if not np.isnan(auc):
        scores["roc_auc"] = float(auc)
    return scores


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """MAE, MSE, RMSE and R2 (left out for a constant target).

    >>> m = regression_metrics([3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0])
    >>> m["mae"], m["mse"], round(m["rmse"], 4), round(m["r2"], 4)
    (0.5, 0.375, 0.6124, 0.9486)
    """
    truth = np.asarray(y_true, dtype=np.float64)
    guess = np.asarray(y_pred, dtype=np.float64)
    if truth.size == 0:
        raise ValueError("no rows to evaluate")
    if truth.shape != guess.shape:
        raise ValueError(f"{truth.size} targets but {guess.size} predictions")
    error = guess - truth
    mse = float(np.mean(error**2))
    metrics = {"mae": float(np.mean(np.abs(error))), "mse": mse, "rmse": float(np.sqrt(mse))}
    spread = float(np.sum((truth - truth.mean()) ** 2))
    if spread > 0:
        metrics["r2"] = 1.0 - float(np.sum(error**2)) / spread
    return metrics


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics dict (drops the confusion matrix), for events and MLflow.

    >>> scalar_metrics({"accuracy": 0.5, "confusion_matrix": [[1]], "roc_auc": float("nan")})
    {'accuracy': 0.5}
    """
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
    }
