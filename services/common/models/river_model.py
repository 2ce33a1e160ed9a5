"""The river adapter: an online model behind driftline's :class:`Model` protocol.

A binary classifier learns on booleans (``label == positive``), which is what
river's binary models and metrics expect; the adapter maps back to the use
case's class values on the way out. Multiclass classifiers and regressors
learn on the values themselves.

>>> from river import linear_model
>>> model = RiverModel(linear_model.LogisticRegression(), "classification",
...                    classes=["no", "yes"], positive="yes")
>>> model.learn_one({"x": 1.0}, "yes")
>>> model.predict([{"x": 1.0}])
['yes']
>>> sorted(model.predict_proba([{"x": 1.0}])[0])
['no', 'yes']
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from schemas.usecase import Task
from services.common.models.protocol import FeatureDict, Flavor, read_pickle, save_model_file
from services.common.models.river_tables import HTC, tree_probas


class RiverModel:
    """A river estimator (usually a pipeline) with the use case's label mapping."""

    flavor: ClassVar[Flavor] = "river"
    FILENAME: ClassVar[str] = "model.pkl"

    def __init__(
        self,
        estimator: Any,
        task: Task,
        classes: list[Any] | None = None,
        positive: Any = None,
    ) -> None:
        self.estimator = estimator
        self.task = task
        self.classes = list(classes) if classes is not None else None
        self.binary = task == "classification" and len(self.classes or []) == 2
        if self.binary and positive is None and self.classes:
            positive = self.classes[-1]
        self.positive = positive
        self.negative = (
            next(c for c in self.classes if c != positive) if self.binary and self.classes else None
        )

    # ---- label mapping -----------------------------------------------------------

    def encode(self, label: Any) -> Any:
        """The target river learns on: a bool for binary classifiers, a float for regressors."""
        if self.task == "regression":
            return float(label)
        if self.binary:
            return label == self.positive
        return label

    def decode(self, y_pred: Any) -> Any:
        """A river prediction as the use case's class value (or number)."""
        if self.binary and isinstance(y_pred, bool):
            return self.positive if y_pred else self.negative
        return y_pred

    def decode_proba(self, proba: dict[Any, float]) -> dict[Any, float]:
        """River's class probabilities keyed by the use case's classes, every class present."""
        if self.binary:
            p_true = float(proba.get(True, 0.0)) if proba else 0.5
            return {self.negative: 1.0 - p_true, self.positive: p_true}
        classes = self.classes or list(proba)
        if not proba:
            return {c: 1.0 / len(classes) for c in classes} if classes else {}
        return {c: float(proba.get(c, 0.0)) for c in classes}

    # ---- the Model protocol ----------------------------------------------------------

    def learn_one(self, x: FeatureDict, label: Any) -> None:
        """Learn one row whose label is in the use case's terms."""
        self.estimator.learn_one(x, self.encode(label))

    def predict(self, rows: Sequence[FeatureDict]) -> list[Any]:
        if self.task == "regression":
            return [float(self.estimator.predict_one(x)) for x in rows]
        answers = []
        for proba in self.predict_proba(rows):
            answers.append(max(proba, key=proba.__getitem__) if proba else None)
        return answers

    def predict_proba(self, rows: Sequence[FeatureDict]) -> list[dict[Any, float]]:
        if self.task != "classification":
            raise TypeError("predict_proba: a regressor has no class probabilities")
        return [self.decode_proba(self.estimator.predict_proba_one(x)) for x in rows]

    def predict_with_proba(
        self, rows: Sequence[FeatureDict]
    ) -> tuple[list[Any], list[dict[Any, float]]]:
        """``(predict(rows), predict_proba(rows))`` of a classifier from one model call a row.

        >>> from river import linear_model
        >>> model = RiverModel(linear_model.LogisticRegression(), "classification", [0, 1])
        >>> model.predict_with_proba([{"x": 1.0}]) == (
        ...     model.predict([{"x": 1.0}]), model.predict_proba([{"x": 1.0}]))
        True
        """
        kind = type(self.estimator)
        if self.task == "classification" and (kind.__module__, kind.__name__) == HTC:
            probabilities = [self.decode_proba(p) for p in tree_probas(self.estimator, rows)]
        else:
            probabilities = self.predict_proba(rows)
        answers = [max(p, key=p.__getitem__) if p else None for p in probabilities]
        return answers, probabilities

    def save(self, directory: Path) -> Path:
        state = pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)
        return save_model_file(
            directory, "river", self.FILENAME, lambda path: path.write_bytes(state),
            task=self.task, classes=self.classes, estimator=type(self.estimator).__name__,
        )  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> RiverModel:
        return read_pickle(path, cls)
