"""Prequential metrics: cumulative and over a rolling window, with river's own metric code.

Each row is scored by the prediction made *before* the model learns it. The
cumulative metrics are river metric objects updated exactly as
``river.evaluate.progressive_val_score`` updates them (the class label is the
arg-max of the probabilities, as river's ``Metrics`` container derives it), so
the two agree to the last digit. The label metrics share one confusion matrix:
one update serves accuracy, precision, recall and F1, which is what keeps the
evaluation cheap next to the learning.

Binary classifiers are evaluated on booleans (``True`` is the positive class).

>>> m = PrequentialMetrics("classification", window=2, classes=[False, True])
>>> for y, p in [(True, 0.9), (False, 0.2), (True, 0.4)]:
...     m.update(y, p > 0.5, {False: 1 - p, True: p})
>>> round(m.values()["accuracy"], 4), round(m.rolling_values()["accuracy"], 4)
(0.6667, 0.5)
>>> m.confusion_matrix()
[[1, 0], [1, 1]]
"""

# river's metric classes are untyped.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import collections
import math
from typing import Any

from river import metrics


class PrequentialMetrics:
    """The metrics of one online model, cumulative and over the last ``window`` rows."""

    def __init__(self, task: str, window: int, classes: list[Any] | None = None) -> None:
        self.task = task
        self.window = window
        self.classes = list(classes or [])
        self.binary = task == "classification" and len(self.classes) == 2
        self.rows = 0
        self._recent: collections.deque[tuple[Any, Any, Any]] = collections.deque()
        self.cumulative = self._build()
        self.rolling = self._build(rolling=True)

    def _build(self, rolling: bool = False) -> dict[str, Any]:
        if self.task == "regression":
            return {"mae": metrics.MAE(), "rmse": metrics.RMSE(), "r2": metrics.R2()}
        cm = metrics.ConfusionMatrix()
        scores: dict[str, Any]
        if self.binary:
            auc = metrics.RollingROCAUC(window_size=self.window) if rolling else metrics.ROCAUC()
            scores = {
                "precision": metrics.Precision(cm=cm),
                "recall": metrics.Recall(cm=cm),
                "f1": metrics.F1(cm=cm),
                "roc_auc": auc,
                "log_loss": metrics.LogLoss(),
            }
        else:  # macro averages over the classes
            scores = {
                "precision": metrics.MacroPrecision(cm=cm),
                "recall": metrics.MacroRecall(cm=cm),
                "f1": metrics.MacroF1(cm=cm),
                "log_loss": metrics.CrossEntropy(),
            }
        return {"cm": cm, "accuracy": metrics.Accuracy(cm=cm), **scores}

    # ---- updates -----------------------------------------------------------------

    def update(self, y_true: Any, y_pred: Any, proba: dict[Any, float] | None = None) -> None:
        """Score one prediction: a label (or number), and the class probabilities."""
        self.rows += 1
        if self.task == "classification":  # the same updates as _apply's, spelled out: per row
            cumulative, rolling = self.cumulative, self.rolling
            cumulative["cm"].update(y_true, y_pred)
            rolling["cm"].update(y_true, y_pred)
            cumulative["log_loss"].update(y_true, proba)
            rolling["log_loss"].update(y_true, proba)
            if self.binary:  # the rolling ROC AUC keeps its own window: never reverted
                cumulative["roc_auc"].update(y_true, proba)
                rolling["roc_auc"].update(y_true, proba)
        else:
            self._apply(self.cumulative, y_true, y_pred, proba, revert=False)
            self._apply(self.rolling, y_true, y_pred, proba, revert=False)
        recent = self._recent
        recent.append((y_true, y_pred, proba))
        if len(recent) > self.window:
            old_true, old_pred, old_proba = recent.popleft()
            self._apply(self.rolling, old_true, old_pred, old_proba, revert=True)

    def _apply(
        self, table: dict[str, Any], y_true: Any, y_pred: Any, proba: Any, *, revert: bool
    ) -> None:
        if self.task == "regression":
            for metric in table.values():
                (metric.revert if revert else metric.update)(y_true, y_pred)
            return
        (table["cm"].revert if revert else table["cm"].update)(y_true, y_pred)
        auc = table.get("roc_auc")
        if auc is not None and not revert:
            auc.update(y_true, proba)  # RollingROCAUC keeps its own window
        elif auc is not None and not isinstance(auc, metrics.RollingROCAUC):
            auc.revert(y_true, proba)
        loss = table["log_loss"]
        (loss.revert if revert else loss.update)(y_true, proba)

    # ---- reading -------------------------------------------------------------------

    def values(self) -> dict[str, float]:
        """Cumulative prequential metrics by scikit-learn name."""
        return self._read(self.cumulative)

    def rolling_values(self) -> dict[str, float]:
        """The same metrics over the last ``window`` rows."""
        return self._read(self.rolling)

    def _read(self, table: dict[str, Any]) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, metric in table.items():
            if name == "cm":
                continue
            out[name] = float(metric.get())
        if self.task == "regression":
            out["mse"] = float(metrics.MSE.get(table["rmse"]))
        elif self.binary:
            row = table["cm"].data.get(False, {})
            negatives = row.get(False, 0.0) + row.get(True, 0.0)
            out["specificity"] = float(row.get(False, 0.0) / negatives) if negatives else 0.0
        return {name: value for name, value in out.items() if math.isfinite(value)}

    def confusion_matrix(self) -> list[list[int]] | None:
        """Cumulative counts, rows true and columns predicted, in the order of ``classes``."""
        if self.task != "classification":
            return None
        data = self.cumulative["cm"].data
        return [[int(data.get(t, {}).get(p, 0)) for p in self.classes] for t in self.classes]
