"""The drift detector: data, prediction, performance and quality drift of each use case.

It watches ``<uc>.features`` (data drift, data quality) and ``<uc>.predictions``
joined with ``<uc>.labels`` (prediction drift, performance decay), compares a
sliding window of recent rows with the reference (the training data of the
current champion) using evidently's statistical tests, and publishes
``drift.alerts`` with an evidently HTML report per alert.

Exported for use outside the service (the benchmark suite): the per-window data
check, :func:`check_data`, on a reference profiled once by :func:`profile_reference`,
and :func:`forget_p_values`, which makes the next check compute every p-value afresh.
"""

from services.drift_detector.checks import check_data, profile_reference
from services.drift_detector.ks import forget_p_values

__all__ = ["check_data", "forget_p_values", "profile_reference"]
