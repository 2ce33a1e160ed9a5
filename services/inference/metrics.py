"""The inference service's Prometheus metrics (served on the API's own ``/metrics``)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5
)  # fmt: skip

REQUEST_SECONDS = Histogram(
    "driftline_inference_request_seconds",
    "Time to answer a prediction request, by use case and answering model version",
    ["usecase", "model_version"],
    buckets=LATENCY_BUCKETS,
)
REQUESTS = Counter(
    "driftline_inference_requests_total",
    "Prediction and feedback requests by use case, endpoint and HTTP status",
    ["usecase", "endpoint", "status"],
)
PREDICTIONS = Counter(
    "driftline_inference_predictions_total",
    "Predictions made, by use case, variant (champion, challenger, shadow) and model version",
    ["usecase", "variant", "model_version"],
)
SERVING = Gauge(
    "driftline_inference_serving",
    "1 for each model serving a use case, by role (champion or challenger)",
    ["usecase", "role", "model_name", "model_version"],
)
SWAPS = Counter(
    "driftline_inference_model_swaps_total", "Lineup changes applied without restart", ["usecase"]
)
REFUSALS = Counter(
    "driftline_inference_model_refusals_total",
    "Promotions refused (artifact sha256 mismatch or unloadable model)",
    ["usecase"],
)
PREDICTION_LOG = Counter(
    "driftline_inference_prediction_log_total",
    "Prediction events by outcome (sent; replayed: an earlier run's journal, sent again; "
    "dropped: too many unacknowledged; failed: not a valid event; retried: not acknowledged, "
    "sent again; unjournaled: the journal could not be written, sent from memory)",
    ["outcome"],
)
PREDICTION_LOG_PENDING = Gauge(
    "driftline_inference_prediction_log_pending",
    "Predictions journaled and not yet acknowledged by the broker",
)

_CHILDREN: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: the request path skips the label lookup.

    Only for metrics whose label sets are never removed (counters and histograms
    here; ``SERVING`` removes its children, so it is not cached).

    >>> child(REQUESTS, "doc", "predict", "200") is child(REQUESTS, "doc", "predict", "200")
    True
    """
    key = (id(metric), labels)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*labels)
    return found
