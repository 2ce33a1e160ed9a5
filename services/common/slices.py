"""Fairness slices: which rows belong to which group, and a metric on each group's rows.

A use case's ``slices`` name a feature (``age_bin``: the bin's index) or a
one-hot encoded category field (``elevel``: the one column that is 1). Both
the batch trainer (on its test rows) and the registry's gate (on its held-out
rows) group rows here, so a slice value has one name everywhere: a bin is
shown by its interval (``age<40``, ``40<=age<60``, ``age>=60``), a category
by its value, any other feature by its number.

>>> from schemas.usecase import UseCase
>>> spec = UseCase.model_validate({
...     "name": "toy", "task": "classification", "label": {"classes": [0, 1]},
...     "fields": {"age": {"type": "int"}, "tier": {"type": "category", "values": ["a", "b"]}},
...     "features": [{"kind": "bin", "field": "age", "edges": [40, 60]},
...                  {"kind": "onehot", "field": "tier"}],
...     "slices": [{"name": "age_band", "feature": "age_bin"}, {"name": "tier", "feature": "tier"}],
... })
>>> frame = pd.DataFrame({"age_bin": [0.0, 2.0, 1.0, 0.0], "tier_a": [1.0, 0.0, 0.0, 1.0],
...                       "tier_b": [0.0, 1.0, 0.0, 0.0]})
>>> slice_groups(spec, spec.slices[0], frame)
{'age<40': [0, 3], 'age>=60': [1], '40<=age<60': [2]}
>>> slice_groups(spec, spec.slices[1], frame)
{'a': [0, 3], 'b': [1]}
>>> scores = slice_scores(spec, frame, lambda rows: float(len(rows)))
>>> scores["age_band"]["age<40"]
SliceScore(rows=2, value=2.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from schemas.fields import Bin, OneHot, output_names
from schemas.slices import SliceScore, SliceScores, SliceSpec
from schemas.usecase import UseCase


def _bin_label(transform: Bin, index: int) -> str:
    edges, field = transform.edges, transform.field
    if index <= 0:
        return f"{field}<{edges[0]:g}"
    if index >= len(edges):
        return f"{field}>={edges[-1]:g}"
    return f"{edges[index - 1]:g}<={field}<{edges[index]:g}"


def slice_labels(spec: UseCase, piece: SliceSpec, frame: pd.DataFrame) -> list[str | None]:
    """Each row's slice value (None: the row belongs to no value, e.g. a missing feature)."""
    onehot = next(
        (t for t in spec.features if isinstance(t, OneHot) and t.field == piece.feature), None
    )
    if onehot is not None and piece.feature not in frame.columns:
        columns = output_names(onehot, spec.fields)
        values = [*map(str, spec.fields[onehot.field].values or []), "other"][: len(columns)]
        matrix = frame[columns].to_numpy(dtype=float)
        picked = np.nan_to_num(matrix, nan=0.0).argmax(axis=1)
        on = np.nan_to_num(matrix, nan=0.0).max(axis=1) > 0.5
        return [values[int(k)] if hit else None for k, hit in zip(picked, on, strict=True)]
    if piece.feature not in frame.columns:
        raise KeyError(f"slice {piece.name!r}: no column {piece.feature!r} in the rows")
    binned = next(
        (
            t
            for t in spec.features
            if isinstance(t, Bin) and output_names(t, spec.fields) == [piece.feature]
        ),
        None,
    )
    labels: list[str | None] = []
    for raw in frame[piece.feature].tolist():
        value = float(raw) if raw is not None else math.nan
        if not math.isfinite(value):
            labels.append(None)
        elif binned is not None:
            labels.append(_bin_label(binned, round(value)))
        else:
            labels.append(f"{value:g}")
    return labels


def slice_groups(spec: UseCase, piece: SliceSpec, frame: pd.DataFrame) -> dict[str, list[int]]:
    """Row positions of each slice value, values in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for position, label in enumerate(slice_labels(spec, piece, frame)):
        if label is not None:
            groups.setdefault(label, []).append(position)
    return groups


def slice_scores(
    spec: UseCase, frame: pd.DataFrame, metric_on: Callable[[Sequence[int]], float | None]
) -> SliceScores:
    """Every declared slice's values with their row counts and ``metric_on(rows)``.

    ``metric_on`` gets the row positions of one value and returns the primary
    metric there (None where it is undefined, e.g. ROC AUC with one class).
    """
    scores: SliceScores = {}
    for piece in spec.slices:
        scores[piece.name] = {}
        for label, rows in slice_groups(spec, piece, frame).items():
            value = metric_on(rows)
            finite = value is not None and math.isfinite(value)
            scores[piece.name][label] = SliceScore(rows=len(rows), value=value if finite else None)
    return scores
