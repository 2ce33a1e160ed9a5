"""The simplest model beside the neural one: logistic or linear regression.

Every report shows what the MLP adds over it, and it is the candidate when
the MLP does not beat it on the validation rows. It is fit on the same
preprocessed training part (class weights too, when the spec asks); its
weights are served as a :class:`~services.common.models.linear_model.LinearModel`.
scikit-learn is imported here only.
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
