"""The linear adapter: the batch trainer's baseline, served when it beats the MLP.

Logistic regression (one row of weights per class) or least squares on the
same standardized inputs as the MLP (:class:`~.torch_model.Standardizer`).
The file is plain JSON (weights, intercepts, preprocessing): no pickle, no
scikit-learn at serving time, and the score is a dot product.

A linear score explains itself exactly: the score is the intercept (the
score of the training means, where every standardized input is 0) plus one
``weight * standardized input`` term per feature; see :meth:`LinearModel.explain_array`.

>>> from services.common.models.torch_model import Standardizer
>>> model = LinearModel(task="regression", feature_names=["a", "b"], weights=[[2.0, -1.0]],
...     intercepts=[0.5], preprocessing=Standardizer([0.0, 0.0], [0.0, 0.0], [1.0, 1.0]))
>>> model.predict([{"a": 1.0, "b": 3.0}])
[-0.5]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Unpack

import numpy as np
import numpy.typing as npt

from schemas.usecase import Task
from services.common.models.protocol import Flavor, save_model_file
from services.common.models.tabular import TabularArguments, TabularModel

FILENAME = "model.json"
FORMAT_VERSION = 1
FloatArray = npt.NDArray[np.float64]


class LinearModel(TabularModel):
    """Weights on standardized inputs; classifiers score one logit per class."""

    flavor: ClassVar[Flavor] = "linear"

    def __init__(
        self,
        *,
        weights: Sequence[Sequence[float]],
        intercepts: Sequence[float],
        **common: Unpack[TabularArguments],
    ) -> None:
        super().__init__(**common)
        self.weights = np.asarray(weights, dtype=np.float64).reshape(len(intercepts), -1)
        self.intercepts = np.asarray(intercepts, dtype=np.float64)
        if self.weights.shape[1] != len(self.feature_names):
            raise ValueError(
                f"{self.weights.shape[1]} weights per row for {len(self.feature_names)} features"
            )
        classes = self.classes
        if (
            self.task == "classification"
            and classes is not None
            and len(intercepts) != len(classes)
        ):
            raise ValueError(f"{len(intercepts)} logit rows for {len(classes)} classes")

    # ---- arrays -----------------------------------------------------------------------

    def forward_array(self, matrix: FloatArray) -> FloatArray:
        """Logits per class, or the standardized target, for a raw feature matrix."""
        result: FloatArray = self.transform(matrix) @ self.weights.T + self.intercepts
        return result

    def proba_array(self, matrix: FloatArray) -> FloatArray:
        self._require_classifier()
        logits = self.forward_array(matrix)
        logits = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        result: FloatArray = exp / exp.sum(axis=1, keepdims=True)
        return result

    def explain_array(self, matrix: FloatArray) -> tuple[FloatArray, FloatArray, list[str]]:
        """Exact ``(contributions, expected values, units)``: score = expected + sum(contributions).

        Binary classifiers explain the positive class's log-odds, multiclass
        ones the predicted class's logit, regressors the target.
        """
        inputs = self.transform(matrix)
        if self.task == "regression":
            contributions = inputs * self.weights[0] * self.target_scale
            expected = np.full(len(inputs), self.intercepts[0] * self.target_scale)
            return contributions, expected + self.target_mean, ["target"] * len(inputs)
        if len(self.intercepts) == 2:
            weights = self.weights[1] - self.weights[0]
            expected = np.full(len(inputs), self.intercepts[1] - self.intercepts[0])
            return inputs * weights, expected, ["log_odds"] * len(inputs)
        winners = self.forward_array(matrix).argmax(axis=1)
        return inputs * self.weights[winners], self.intercepts[winners], ["logit"] * len(inputs)

    # ---- the model protocol: predictions in TabularModel ---------------------------------

    def save(self, directory: Path) -> Path:
        parameters = {"weights": self.weights.tolist(), "intercepts": self.intercepts.tolist()}
        state = json.dumps(self._state(FORMAT_VERSION, parameters))
        return save_model_file(
            directory, "linear", FILENAME, lambda path: path.write_text(state), task=self.task,
            classes=self.classes, feature_names=self.feature_names,
        )  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> LinearModel:
        state = json.loads(Path(path).read_text())
        arguments = cls._common_arguments(state, path, FORMAT_VERSION, "linear")
        return cls(weights=state["weights"], intercepts=state["intercepts"], **arguments)


def estimator_weights(
    estimator: Any, task: Task, classes: Sequence[Any] | None
) -> tuple[list[list[float]], list[float]]:
    """:class:`LinearModel`'s weights and intercepts from a fitted scikit-learn
    ``LogisticRegression`` or ``LinearRegression``.

    Class indices absent from the training part get a logit of -1e9
    (probability 0), as the baseline's own ``proba`` gives them.
    """
    coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64))
    if task == "regression":
        weights, intercepts = coef[:1], intercept[:1]
    else:
        assert classes is not None
        present = [int(c) for c in estimator.classes_]
        if len(present) == 2 and coef.shape[0] == 1:  # binary: one logit, for classes_[1]
            coef = np.vstack([np.zeros_like(coef[0]), coef[0]])
            intercept = np.array([0.0, intercept[0]])
        weights = np.zeros((len(classes), coef.shape[1]))
        intercepts = np.full(len(classes), -1e9)
        for row, index in enumerate(present):
            weights[index], intercepts[index] = coef[row], intercept[row]
    return weights.tolist(), intercepts.tolist()
