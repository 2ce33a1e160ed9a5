"""The batch candidate's primary metric per fairness slice, on its test rows.

The test rows are the first of the rows the registry's gate holds out (they
start after ``lineage["holdout_after"]``), and slice values are named by
:mod:`services.common.slices`, so the candidate's slice metrics and the gate's
speak of the same groups. The winner's predictions are computed once and
scored on each slice value's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from schemas.slices import SliceScores
from schemas.usecase import UseCase
from services.common.metrics import classification_metrics, regression_metrics, scalar_metrics
from services.common.models.tabular import TabularModel
from services.common.slices import slice_scores


def slice_metrics(
    spec: UseCase,
    model: TabularModel,
    matrix: npt.NDArray[np.float64],
    truth: Sequence[Any],
    feature_names: Sequence[str],
) -> SliceScores:
    """The spec's slices of the test rows (raw features in ``matrix``), each value's metric."""
    if not spec.slices or len(truth) == 0:
        return {}
    frame = pd.DataFrame(matrix, columns=list(feature_names))
    predicted = model.predict_array(matrix)
    proba = model.proba_array(matrix) if spec.task == "classification" else None
    metric = spec.primary_metric

    def metric_on(rows: Sequence[int]) -> float | None:
        index = np.asarray(rows, dtype=int)
        kept_truth = [truth[i] for i in index]
        kept_pred = [predicted[i] for i in index]
        if spec.task == "regression":
            return regression_metrics(kept_truth, kept_pred).get(metric)
        assert spec.label.classes is not None and proba is not None
        scores = classification_metrics(
            kept_truth, kept_pred, proba[index], spec.label.classes, spec.positive_class
        )
        return scalar_metrics(scores).get(metric)

    return slice_scores(spec, frame, metric_on)
