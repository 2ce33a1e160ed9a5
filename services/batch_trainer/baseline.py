"""The simplest model beside the neural one: logistic or linear regression.

Every report shows what the MLP adds over it. It is fit on the same
preprocessed training part (class weights too, when the spec asks) and
scored on the same test rows. scikit-learn is imported here only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.usecase import Task


@dataclass
class Baseline:
    """A fitted linear model on standardized inputs."""

    task: Task
    estimator: Any
    name: str

    def predict_index(self, x: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
        """Class indices (classification) or numbers, on the model's own target scale."""
        return np.asarray(self.estimator.predict(x))

    def proba(self, x: npt.NDArray[np.float64], n_classes: int) -> npt.NDArray[np.float64]:
        """One column per class index, zeros for a class absent from the training part."""
        known = self.estimator.predict_proba(x)
        full = np.zeros((len(x), n_classes))
        full[:, self.estimator.classes_.astype(int)] = known
        return full


def fit_baseline(
    x_train: npt.NDArray[np.float64],
    y_train: npt.NDArray[Any],
    *,
    task: Task,
    class_weights: bool,
    seed: int,
) -> Baseline:
    """Logistic regression (lbfgs, L2) for classifiers, ordinary least squares for regressors."""
    if task == "classification":
        from sklearn.linear_model import LogisticRegression

        classifier = LogisticRegression(
            max_iter=1000, class_weight="balanced" if class_weights else None, random_state=seed
        )
        return Baseline(task, classifier.fit(x_train, y_train), "logistic_regression")
    from sklearn.linear_model import LinearRegression

    return Baseline(task, LinearRegression().fit(x_train, y_train), "linear_regression")
