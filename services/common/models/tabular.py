"""Tabular inputs shared by the batch families: feature dicts to a matrix, and its scaling.

No torch here: the linear family serves without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.common.models.protocol import FeatureDict

FloatArray = npt.NDArray[np.float64]


def rows_to_matrix(rows: Sequence[FeatureDict], feature_names: Sequence[str]) -> FloatArray:
    """Feature dicts as a float matrix in ``feature_names`` order; missing or None is NaN.

    >>> rows_to_matrix([{"a": 1, "b": True}, {"a": None}], ["a", "b"]).tolist()
    [[1.0, 1.0], [nan, nan]]
    """
    matrix = np.full((len(rows), len(feature_names)), np.nan, dtype=np.float64)
    for i, row in enumerate(rows):
        for j, name in enumerate(feature_names):
            value = row.get(name)
            if value is not None:
                matrix[i, j] = float(value)
    return matrix


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

    def transform(self, matrix: FloatArray) -> FloatArray:
        imputed = np.where(np.isnan(matrix), np.asarray(self.median), matrix)
        result: FloatArray = (imputed - np.asarray(self.mean)) / np.asarray(self.scale)
        return result


def _nanmedian(matrix: FloatArray) -> FloatArray:
    """Column medians ignoring NaN; NaN for an all-missing column (without numpy's warning)."""
    medians = np.full(matrix.shape[1], np.nan)
    for j in range(matrix.shape[1]):
        column = matrix[:, j][~np.isnan(matrix[:, j])]
        if column.size:
            medians[j] = float(np.median(column))
    return medians
