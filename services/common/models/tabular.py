"""What the batch families share: feature dicts to a matrix, its scaling, and the model around them.

:class:`TabularModel` is the part of the torch and linear adapters that does
not depend on the family: predictions and probabilities from the family's
``forward_array``/``proba_array``, and the common part of the saved state.
No torch here: the linear family serves without it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict, Unpack

import numpy as np
import numpy.typing as npt

from schemas.usecase import Task
from services.common.models.protocol import FeatureDict

FloatArray = npt.NDArray[np.float64]


def rows_to_matrix(rows: Sequence[FeatureDict], feature_names: Sequence[str]) -> FloatArray:
    """Feature dicts as a float matrix in ``feature_names`` order; missing or None is NaN.

    >>> rows_to_matrix([{"a": 1, "b": True}, {"a": None}], ["a", "b"]).tolist()
    [[1.0, 1.0], [nan, nan]]
    """
    nan = math.nan
    values = [
        [nan if (value := row.get(name)) is None else float(value) for name in feature_names]
        for row in rows
    ]
    return np.array(values, dtype=np.float64).reshape(len(rows), len(feature_names))


@dataclass(frozen=True)
class Standardizer:
    """Median imputation then standardization, with statistics of the training part only.

    >>> s = Standardizer.fit(np.array([[1.0, 5.0], [3.0, np.nan], [np.nan, 5.0]]))
    >>> s.median, s.mean, s.scale
    ([2.0, 5.0], [2.0, 5.0], [0.816496580927726, 1.0])
    >>> s.transform(np.array([[np.nan, 7.0]])).tolist()
    [[0.0, 2.0]]
    """

    median: list[float]
    mean: list[float]
    scale: list[float]

    @classmethod
    def fit(cls, matrix: FloatArray) -> Standardizer:
        """Statistics of ``matrix``: an all-missing column imputes 0, a constant one scales by 1."""
        median = np.nan_to_num(_nanmedian(matrix), nan=0.0)
        imputed = np.where(np.isnan(matrix), median, matrix)
        mean = imputed.mean(axis=0)
        scale = imputed.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        return cls([float(v) for v in median], [float(v) for v in mean], [float(v) for v in scale])

    @functools.cached_property
    def _arrays(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The statistics as arrays, made once (transform runs on every request)."""
        median, mean, scale = (
            np.asarray(v, dtype=np.float64) for v in (self.median, self.mean, self.scale)
        )
        return median, mean, scale

    def transform(self, matrix: FloatArray) -> FloatArray:
        median, mean, scale = self._arrays
        imputed = np.where(np.isnan(matrix), median, matrix)
        result: FloatArray = (imputed - mean) / scale
        return result


def _nanmedian(matrix: FloatArray) -> FloatArray:
    """Column medians ignoring NaN; NaN for an all-missing column (without numpy's warning)."""
    medians = np.full(matrix.shape[1], np.nan)
    for j in range(matrix.shape[1]):
        column = matrix[:, j][~np.isnan(matrix[:, j])]
        if column.size:
            medians[j] = float(np.median(column))
    return medians


class TabularArguments(TypedDict):
    """What every family's constructor takes besides its own parameters."""

    task: Task
    feature_names: Sequence[str]
    preprocessing: Standardizer
    classes: NotRequired[Sequence[Any] | None]
    target_mean: NotRequired[float]
    target_scale: NotRequired[float]
    metadata: NotRequired[dict[str, str] | None]


class TabularModel:
    """A batch model on a raw feature matrix; a family gives ``forward_array`` and ``proba_array``.

    Classifiers answer ``classes[argmax]`` of the probabilities; regressors
    the one output, trained on the standardized target and scaled back here.
    """

    task: Task
    feature_names: list[str]
    preprocessing: Standardizer
    classes: list[Any] | None
    target_mean: float
    target_scale: float
    metadata: dict[str, str]

    def __init__(self, **common: Unpack[TabularArguments]) -> None:
        classes = common.get("classes")
        if common["task"] == "classification" and not classes:
            raise ValueError("a classifier needs its classes")
        self.task = common["task"]
        self.feature_names = list(common["feature_names"])
        self.preprocessing = common["preprocessing"]
        self.classes = list(classes) if classes is not None else None
        self.target_mean = common.get("target_mean", 0.0)
        self.target_scale = common.get("target_scale", 1.0)
        self.metadata = dict(common.get("metadata") or {})

    # ---- arrays -----------------------------------------------------------------------

    def transform(self, matrix: FloatArray) -> FloatArray:
        """Raw feature matrix to the model's standardized inputs."""
        return self.preprocessing.transform(matrix)

    def forward_array(self, matrix: FloatArray) -> FloatArray:
        """Raw outputs (logits, or the standardized target) for a raw feature matrix."""
        raise NotImplementedError

    def proba_array(self, matrix: FloatArray) -> FloatArray:
        """Class probabilities, one column per class in ``classes`` order."""
        raise NotImplementedError

    def predict_array(self, matrix: FloatArray) -> list[Any]:
        """Predicted classes or numbers for a raw feature matrix."""
        if self.task == "classification":
            assert self.classes is not None
            winners = self.proba_array(matrix).argmax(axis=1)
            return [self.classes[int(k)] for k in winners]
        outputs = self.forward_array(matrix)[:, 0]
        return [float(v) for v in outputs * self.target_scale + self.target_mean]

    # ---- the model protocol -----------------------------------------------------------

    def predict(self, rows: Sequence[FeatureDict]) -> list[Any]:
        return self.predict_array(rows_to_matrix(rows, self.feature_names))

    def predict_proba(self, rows: Sequence[FeatureDict]) -> list[dict[Any, float]]:
        self._require_classifier()
        assert self.classes is not None
        probabilities = self.proba_array(rows_to_matrix(rows, self.feature_names))
        return [dict(zip(self.classes, map(float, row), strict=True)) for row in probabilities]

    def predict_with_proba(
        self, rows: Sequence[FeatureDict]
    ) -> tuple[list[Any], list[dict[Any, float]]]:
        """``(predict(rows), predict_proba(rows))`` of a classifier from one forward pass.

        >>> model = TabularModel(task="classification", feature_names=["a"], classes=[0, 1],
        ...     preprocessing=Standardizer([0.0], [0.0], [1.0]))
        >>> model.proba_array = lambda m: np.hstack([1 - m / 4, m / 4])
        >>> model.predict_with_proba([{"a": 1.0}, {"a": 3.0}])
        ([0, 1], [{0: 0.75, 1: 0.25}, {0: 0.25, 1: 0.75}])
        """
        self._require_classifier()
        assert self.classes is not None
        classes = self.classes
        probabilities = self.proba_array(rows_to_matrix(rows, self.feature_names))
        winners = [classes[int(k)] for k in probabilities.argmax(axis=1)]
        found = [dict(zip(classes, map(float, row), strict=True)) for row in probabilities]
        return winners, found

    def _require_classifier(self) -> None:
        if self.task != "classification":
            raise TypeError("predict_proba: a regressor has no class probabilities")

    # ---- the saved state --------------------------------------------------------------

    def _state(self, version: int, parameters: dict[str, Any], **after: Any) -> dict[str, Any]:
        """The saved state: the common fields around the family's ``parameters``, then ``after``."""
        return {
            "format": version,
            "task": self.task,
            "classes": self.classes,
            "feature_names": self.feature_names,
            **parameters,
            "preprocessing": asdict(self.preprocessing),
            "target": {"mean": self.target_mean, "scale": self.target_scale},
            "metadata": self.metadata,
            **after,
        }

    @staticmethod
    def _common_arguments(
        state: dict[str, Any], path: Path, version: int, family: str
    ) -> TabularArguments:
        """The constructor's common arguments from a state :meth:`_state` wrote."""
        if state.get("format") != version:
            raise ValueError(f"{path}: unknown {family} model format {state.get('format')!r}")
        return {
            "task": state["task"],
            "feature_names": state["feature_names"],
            "preprocessing": Standardizer(**state["preprocessing"]),
            "classes": state["classes"],
            "target_mean": float(state["target"]["mean"]),
            "target_scale": float(state["target"]["scale"]),
            "metadata": state["metadata"],
        }
