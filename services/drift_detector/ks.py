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

scipy's exact p-value, three quarters of a check at the service's sizes (1,000
reference against 500 window rows), depends only on the two sizes and the
statistic rounded to ``h / lcm(n1, n2)``; the sizes of a use case do not change
and calm windows meet the same few h again and again, so it is remembered by
``(n1, n2, h)``.

>>> import numpy as np
>>> reference = sorted_reference(np.arange(100.0))
>>> ks_pvalue(reference, np.arange(100.0)), ks_pvalue(reference, np.arange(50.0, 150.0)) < 1e-6
(1.0, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

MAX_EXACT_N = 10_000  # scipy's MAX_AUTO_N: "auto" tries the exact p-value up to this size
MEMO_SIZE = 4096  # exact p-values remembered, by (reference rows, window rows, h)


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
    if max(n1, n2) > MAX_EXACT_N:
        return _asymptotic(n1, n2, d)
    # scipy's exact method rounds d to h / lcm first: the p-value is a function of h
    lcm = (n1 // math.gcd(n1, n2)) * n2
    return _exact(n1, n2, int(np.round(d * lcm)))


@lru_cache(maxsize=MEMO_SIZE)
def _exact(n1: int, n2: int, h: int) -> float:
    """scipy's exact p-value for ``d = h / lcm(n1, n2)``, or its asymptotic one where that fails.

    Remembered: the sizes of a use case's reference and window do not change, and calm
    windows meet the same few h again and again.
    """
    from scipy.stats._stats_py import _attempt_exact_2kssamp

    g = math.gcd(n1, n2)
    lcm = (n1 // g) * n2
    # scipy rounds h / lcm back to the same h (the error is far below a half)
    exact, d, prob = _attempt_exact_2kssamp(n1, n2, g, h * 1.0 / lcm, "two-sided")
    return float(np.clip(prob, 0, 1)) if exact else _asymptotic(n1, n2, d)


def _asymptotic(n1: int, n2: int, d: float) -> float:
    """scipy's asymptotic two-sided p-value (Smirnov's), as ``ks_2samp`` computes it."""
    from scipy.stats import distributions

    m, n = sorted([float(n1), float(n2)], reverse=True)
    return float(np.clip(distributions.kstwo.sf(d, np.round(m * n / (m + n))), 0, 1))


def forget_p_values() -> None:
    """Forget the remembered exact p-values (B7 times each check as if it were the first)."""
    _exact.cache_clear()
