"""The sorted-reference K-S test gives scipy's (evidently's) p-values, bit for bit."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from services.drift_detector.checks import ReferenceProfile, check_data, profile_reference
from services.drift_detector.ks import _exact, forget_p_values, ks_pvalue, sorted_reference
from tests.drift_detector.conftest import credit_spec, feature_rows

SIZES = [(10_000, 10_000), (10_001, 10_001), (12_000, 500), (1000, 500), (1000, 1000), (400, 300)]


def samples(kind: str, n1: int, n2: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "continuous":
        return rng.normal(size=n1), rng.normal(shift, size=n2)
    if kind == "ties":  # a rounded column: many equal values across both samples
        return np.round(rng.normal(size=n1), 1), np.round(rng.normal(shift, size=n2), 1)
    # a one-hot column, as most of B7's features are
    return (rng.random(n1) < 0.3).astype(float), (rng.random(n2) < 0.3 + shift / 4).astype(float)


@pytest.mark.parametrize(("n1", "n2"), SIZES)
def test_p_values_are_scipys_bit_for_bit(n1: int, n2: int) -> None:
    fell_back = 0
    for seed, (kind, shift) in enumerate(
        (kind, shift)
        for kind in ("continuous", "ties", "one-hot")
        for shift in (0.0, 0.01, 0.03, 0.1, 0.5)
    ):
        reference, current = samples(kind, n1, n2, shift, seed)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            expected = ks_2samp(reference, current).pvalue
        fell_back += any("Exact calculation unsuccessful" in str(w.message) for w in seen)
        forget_p_values()
        assert ks_pvalue(sorted_reference(reference), current) == expected, (kind, shift)
    if (n1, n2) == (10_000, 10_000):  # the exact p-value's fall-back to the asymptotic one
        assert fell_back


def test_the_drift_check_decides_as_evidentlys_own_test() -> None:
    spec = credit_spec()
    rows = feature_rows(spec, 3000, drift_at=1500)
    frame = pd.DataFrame([row.features for row in rows]).astype(float)
    reference, current = frame.iloc[:1000], frame.iloc[1500:2000]
    features = spec.feature_names()
    sorted_once = profile_reference(reference, features, spec.drift)
    assert all(f.ordered is not None for f in sorted_once.features.values())
    evidently = ReferenceProfile(
        {n: dataclasses.replace(f, ordered=None) for n, f in sorted_once.features.items()},
        sorted_once.rows,
        sorted_once.missing,
    )
    for window in (current, reference.iloc[:500]):  # drifted, and not
        assert check_data(sorted_once, window, spec.drift) == check_data(
            evidently, window, spec.drift
        )
    assert check_data(sorted_once, current, spec.drift).drifted_features


def test_a_remembered_p_value_is_the_computed_one() -> None:
    reference, current = samples("continuous", 1000, 500, 0.03, 7)
    ordered = sorted_reference(reference)
    forget_p_values()
    first = ks_pvalue(ordered, current)
    hits = _exact.cache_info().hits
    again = ks_pvalue(ordered, current[::-1].copy())  # the same statistic, from the memo
    assert _exact.cache_info().hits == hits + 1
    assert first == again == ks_2samp(reference, current).pvalue
    forget_p_values()
    assert _exact.cache_info().currsize == 0
