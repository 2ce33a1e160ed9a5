"""evidently's two-sample K-S test on a reference sorted once: the same p-values, less work.

evidently's ``ks`` test is scipy's ``ks_2samp`` (two-sided, ``method="auto"``).
Each call sorts both samples, locates every value of both in both (four
``searchsorted`` halves), passes scipy's argument and nan-policy checks and then
computes the p-value. Per drift check the reference is the same, so
:func:`sorted_reference` sorts it and locates it in itself once, when the
reference is profiled, and :func:`ks_pvalue` does the rest with scipy's own
p-value functions in scipy's order: the statistic and p-value are scipy's, bit
for bit (``tests/drift_detector/test_ks.py`` holds them to it, ties, unequal
sizes and the exact method's fall-back included).

>>> import numpy as np
>>> reference = sorted_reference(np.arange(100.0))
>>> ks_pvalue(reference, np.arange(100.0)), ks_pvalue(reference, np.arange(50.0, 150.0)) < 1e-6
(1.0, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

MAX_EXACT_N = 10_000  # scipy's MAX_AUTO_N: "auto" tries the exact p-value up to this size


@cache
def available() -> bool:
    """Whether this scipy has the (private) exact p-value function; if not, evidently's test runs.

    scipy is imported here, on first use, as evidently is (the checks' module stays light).
    """
    try:
        from scipy.stats._stats_py import _attempt_exact_2kssamp  # noqa: F401
    except ImportError:  # pragma: no cover - a scipy that moved it
        return False
    return True


@dataclass(frozen=True)
class SortedReference:
    """A reference column sorted, and each of its values' rank in itself (right side)."""

    values: np.ndarray
    ranks: np.ndarray


def sorted_reference(values: np.ndarray) -> SortedReference:
    """Sort the non-missing reference values once (float64: scipy promotes the same)."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    return SortedReference(ordered, np.searchsorted(ordered, ordered, side="right"))


def ks_pvalue(reference: SortedReference, current: np.ndarray) -> float:
    """scipy's ``ks_2samp(reference, current).pvalue`` (two-sided, auto) for a sorted reference."""
    from scipy.stats import distributions
    from scipy.stats._stats_py import _attempt_exact_2kssamp

    data1 = reference.values
    data2 = np.sort(np.asarray(current, dtype=np.float64))
    n1, n2 = data1.shape[0], data2.shape[0]
    # scipy's cdf1 - cdf2 over data_all = [data1, data2], in its two halves
    diffs_ref = reference.ranks / n1 - np.searchsorted(data2, data1, side="right") / n2
    diffs_cur = np.searchsorted(data1, data2, side="right") / n1 - (
        np.searchsorted(data2, data2, side="right") / n2
    )
    min_s = np.clip(-min(diffs_ref.min(), diffs_cur.min()), 0, 1)
    max_s = max(diffs_ref.max(), diffs_cur.max())
    d = min_s if min_s > max_s else max_s
    prob = -np.inf
    exact = max(n1, n2) <= MAX_EXACT_N
    if exact:
        exact, d, prob = _attempt_exact_2kssamp(n1, n2, math.gcd(n1, n2), d, "two-sided")
    if not exact:  # scipy's asymptotic p-value, as it falls back to
        m, n = sorted([float(n1), float(n2)], reverse=True)
        prob = distributions.kstwo.sf(d, np.round(m * n / (m + n)))
    return float(np.clip(prob, 0, 1))
