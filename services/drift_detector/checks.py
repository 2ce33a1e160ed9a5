"""The checks: a window of current rows against the reference profile.

Everything here is pure and synchronous; the service runs it in a worker
thread. Per-feature drift uses evidently's statistical tests (the spec's
``drift.method`` or evidently's own default choice, by the reference's size
and number of distinct values), so a score here is the score evidently's
report shows for the same column. What depends only on the reference (the
non-missing reference values, the resolved test and threshold, the value
ranges, and for the K-S test the sorted values, :mod:`~services.drift_detector.ks`)
is computed once, in :func:`profile_reference`, when the reference changes, not
for every window.

evidently is imported on first use (about 5 s), never at module import.

>>> import pandas as pd
>>> from schemas.usecase import DriftSpec
>>> spec = DriftSpec(min_rows=3, method="ks")
>>> reference = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
>>> profile = profile_reference(reference, ["x"], spec)
>>> profile.features["x"].method, profile.features["x"].threshold, profile.features["x"].high
('ks', 0.05, 3.0)
>>> check_data(profile, pd.DataFrame({"x": [1.0]}), spec).skipped
'too few rows: 1 < min_rows 3'
>>> quality = check_quality(profile, pd.DataFrame({"x": [1.0, None, 9.0, 2.0]}), spec)
>>> quality.features["x"].score, quality.features["x"].method
(0.25, 'missing_share')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from schemas.events import FeatureDrift
from schemas.usecase import LOWER_IS_BETTER, DriftSpec, UseCase
from services.common.metrics import classification_metrics, regression_metrics
from services.drift_detector.ks import SortedReference, available, ks_pvalue, sorted_reference

PREDICTION = "prediction"


@dataclass(frozen=True)
class FeatureProfile:
    """What the checks need to know about one reference column."""

    name: str
    values: pd.Series
    method: str
    threshold: float
    column_type: str  # "num" or "cat", as evidently's tests take it
    low: float
    high: float
    stattest: Any = field(repr=False)
    # the reference sorted once, for evidently's K-S test without its per-call sort (ks.py)
    ordered: SortedReference | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ReferenceProfile:
    """Every checked column of one reference; built once per reference."""

    features: dict[str, FeatureProfile]
    rows: int
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class DriftCheck:
    """The verdict of one drift check (data or prediction).

    ``skipped`` says why the window could not be checked at all; ``unchecked``
    names the columns that could not be checked (missing from the window).
    """

    features: dict[str, FeatureDrift]
    drift_share: float | None
    rows: int
    skipped: str | None = None
    unchecked: dict[str, str] = field(default_factory=dict)

    @property
    def drifted_features(self) -> list[str]:
        return sorted(name for name, verdict in self.features.items() if verdict.drifted)


@dataclass(frozen=True)
class QualityCheck:
    """Missing and out-of-range shares per column; ``score`` is the worst of them."""

    features: dict[str, FeatureDrift]
    missing_share: dict[str, float]
    out_of_range_share: dict[str, float]
    score: float
    rows: int
    skipped: str | None = None


@dataclass(frozen=True)
class PerformanceCheck:
    """The primary metric over the window against the champion's reported test metric."""

    metric: str
    value: float | None
    reference: float | None
    degradation: float | None
    drifted: bool
    rows: int
    skipped: str | None = None


def _stattest(method: str | None, values: pd.Series) -> tuple[Any, str]:
    """evidently's test for a column (the named one, or its default) and the column type."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    if method is None:
        test = get_stattest(values, values, ColumnType.Numerical, None)
    else:
        from evidently.legacy.calculations.stattests.registry import get_registered_stattest

        kind = ColumnType.Numerical
        try:
            test = get_registered_stattest(method, ColumnType.Numerical)
        except Exception:  # chi-square takes categories: treat the column as one
            kind = ColumnType.Categorical
            test = get_registered_stattest(method, ColumnType.Categorical)
        return test, "num" if kind == ColumnType.Numerical else "cat"
    allowed = {t.value for t in test.allowed_feature_types}
    return test, "num" if "num" in allowed else "cat"


def profile_reference(
    reference: pd.DataFrame, features: Sequence[str], spec: DriftSpec
) -> ReferenceProfile:
    """Resolve each column's test, threshold and value range from the reference, once."""
    profiles: dict[str, FeatureProfile] = {}
    missing: list[str] = []
    for name in features:
        if name not in reference.columns:
            missing.append(name)
            continue
        values = pd.to_numeric(reference[name], errors="coerce").dropna().reset_index(drop=True)
        if values.empty:
            missing.append(name)
            continue
        test, column_type = _stattest(spec.method, values)
        threshold = spec.threshold if spec.threshold is not None else test.default_threshold
        profiles[name] = FeatureProfile(
            name=name,
            values=values,
            method=test.name,
            threshold=float(threshold),
            column_type=column_type,
            low=float(values.min()),
            high=float(values.max()),
            stattest=test,
            ordered=sorted_reference(values.to_numpy())
            if test.name == "ks" and available()
            else None,
        )
    return ReferenceProfile(features=profiles, rows=len(reference), missing=tuple(missing))


def _present(column: pd.Series, as_array: bool) -> pd.Series | np.ndarray:
    """The column's numbers without the missing ones, in order (an array for the K-S path,
    which skips the Series that dropping and re-indexing build: a third of a check)."""
    numbers = pd.to_numeric(column, errors="coerce")
    if not as_array:
        return numbers.dropna().reset_index(drop=True)
    array = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    return array[~np.isnan(array)]


def _column_drift(profile: FeatureProfile, current: pd.Series | np.ndarray) -> FeatureDrift | str:
    """The verdict for one column, or why it could not be checked."""
    from evidently.legacy.core import ColumnType

    if profile.ordered is not None:  # evidently's K-S test: its p-value, without its sorts
        p_value = ks_pvalue(profile.ordered, np.asarray(current))
        if not math.isfinite(p_value):
            return f"{profile.method} score is not finite"
        return FeatureDrift(
            score=p_value,
            method=profile.method,
            threshold=profile.threshold,
            drifted=p_value <= profile.threshold,
        )
    kind = ColumnType.Numerical if profile.column_type == "num" else ColumnType.Categorical
    try:
        result = profile.stattest(profile.values, current, kind, profile.threshold)
    except Exception as exc:  # a degenerate column must not stop the other checks
        return f"{profile.method} failed: {type(exc).__name__}: {exc}"
    score = float(result.drift_score)
    if not math.isfinite(score):
        return f"{profile.method} score is not finite"
    return FeatureDrift(
        score=score,
        method=profile.method,
        threshold=float(result.actual_threshold),
        drifted=bool(result.drifted),
    )


def check_data(profile: ReferenceProfile, current: pd.DataFrame, spec: DriftSpec) -> DriftCheck:
    """Per-column drift of ``current`` against the reference, and the share of drifted columns."""
    rows = len(current)
    if rows < spec.min_rows:
        return DriftCheck(
            {}, None, rows, skipped=f"too few rows: {rows} < min_rows {spec.min_rows}"
        )
    verdicts: dict[str, FeatureDrift] = {}
    unchecked = {name: "not in the reference" for name in profile.missing}
    for name, feature in profile.features.items():
        column = current[name] if name in current.columns else pd.Series(dtype=float)
        values = _present(column, as_array=feature.ordered is not None)
        if len(values) < spec.min_rows:
            unchecked[name] = f"feature missing: {len(values)} values < min_rows {spec.min_rows}"
            continue
        verdict = _column_drift(feature, values)
        if isinstance(verdict, str):
            unchecked[name] = verdict
        else:
            verdicts[name] = verdict
    if not verdicts:
        reason = "no feature could be checked: " + "; ".join(
            f"{name}: {why}" for name, why in sorted(unchecked.items())
        )
        return DriftCheck({}, None, rows, skipped=reason, unchecked=unchecked)
    share = sum(v.drifted for v in verdicts.values()) / len(verdicts)
    return DriftCheck(verdicts, share, rows, unchecked=unchecked)


def check_quality(
    profile: ReferenceProfile, current: pd.DataFrame, spec: DriftSpec
) -> QualityCheck:
    """Missing share and out-of-range share (outside the reference's min-max) per column.

    A column absent from the window counts as wholly missing.
    """
    rows = len(current)
    if rows == 0:
        return QualityCheck({}, {}, {}, 0.0, 0, skipped="empty window")
    verdicts: dict[str, FeatureDrift] = {}
    missing_share: dict[str, float] = {}
    outside_share: dict[str, float] = {}
    for name, feature in profile.features.items():
        if name in current.columns:
            column = pd.to_numeric(current[name], errors="coerce")
        else:
            column = pd.Series(np.nan, index=range(rows))
        missing = float(column.isna().mean())
        present = column.dropna()
        outside = float(((present < feature.low) | (present > feature.high)).sum()) / rows
        missing_share[name], outside_share[name] = missing, outside
        worst, method = (
            (missing, "missing_share") if missing >= outside else (outside, "out_of_range_share")
        )
        verdicts[name] = FeatureDrift(
            score=worst,
            method=method,
            threshold=spec.max_missing_share,
            drifted=worst > spec.max_missing_share,
        )
    score = max((v.score for v in verdicts.values()), default=0.0)
    return QualityCheck(verdicts, missing_share, outside_share, score, rows)


def check_prediction(
    profile: ReferenceProfile | None, current: pd.Series, spec: DriftSpec
) -> DriftCheck:
    """Drift of the champion's scores (positive-class probability or value) in the window.

    ``profile`` is the prediction reference's profile (column ``prediction``).
    """
    rows = len(current)
    if profile is None:
        return DriftCheck({}, None, rows, skipped="no prediction reference yet")
    return check_data(profile, pd.DataFrame({PREDICTION: current}), spec)


def labeled_pairs(
    spec: UseCase,
    labels: Sequence[Any],
    predictions: Sequence[Any],
    probabilities: Sequence[Mapping[str, float] | None],
) -> tuple[list[Any], list[Any], list[Mapping[str, float] | None]]:
    """The joined rows whose label and prediction both denote a class (a number, for regression).

    Values are read by the spec's class rule, so ``"1"``, ``1`` and ``1.0`` are class 1.

    >>> from schemas.usecase import UseCase
    >>> spec = UseCase.model_validate({
    ...     "name": "toy", "task": "classification", "label": {"classes": [0, 1]},
    ...     "fields": {"x": {"type": "float"}}, "features": [{"kind": "passthrough", "field": "x"}],
    ... })
    >>> labeled_pairs(spec, ["1", 0.0, "x"], [1, "0", 1], [None, None, None])[:2]
    ([1, 0], [1, 0])
    """
    kept: tuple[list[Any], list[Any], list[Mapping[str, float] | None]] = ([], [], [])
    for label, prediction, proba in zip(labels, predictions, probabilities, strict=True):
        truth, guess = spec.class_of(label), spec.class_of(prediction)
        if truth is not None and guess is not None:
            kept[0].append(truth)
            kept[1].append(guess)
            kept[2].append(proba)
    return kept


def check_performance(
    spec: UseCase,
    truths: Sequence[Any],
    predictions: Sequence[Any],
    probabilities: Sequence[Mapping[str, float] | None],
    reference_metric: float | None,
    tolerance: float,
) -> PerformanceCheck:
    """The primary metric over joined (prediction, label) pairs vs the champion's test metric.

    ``degradation`` is positive when the window is worse (lower for most
    metrics, higher for losses and errors); an alert is due past ``tolerance``.
    """
    metric = spec.primary_metric
    rows = len(truths)

    def skipped(reason: str, value: float | None = None) -> PerformanceCheck:
        return PerformanceCheck(metric, value, reference_metric, None, False, rows, reason)

    if rows < spec.drift.min_rows:
        return skipped(f"too few labeled predictions: {rows} < min_rows {spec.drift.min_rows}")
    if spec.task == "classification":
        classes = list(spec.label.classes or [])
        proba: list[dict[Any, float]] | None = None
        if all(p is not None for p in probabilities):
            by_class = [spec.probabilities_of(p or {}) for p in probabilities]
            proba = [{c: p.get(c, 0.0) for c in classes} for p in by_class]
        scores = classification_metrics(
            list(truths), list(predictions), proba, classes, spec.positive_class
        )
    else:
        scores = regression_metrics([float(t) for t in truths], [float(p) for p in predictions])
    value = scores.get(metric)
    if value is None or not math.isfinite(float(value)):
        return skipped(f"{metric} cannot be computed on this window")
    value = float(value)
    if reference_metric is None:
        return skipped("no reference metric (no champion with a reported test metric)", value)
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    degradation = sign * (value - reference_metric)
    return PerformanceCheck(
        metric, value, reference_metric, degradation, degradation > tolerance, rows
    )
