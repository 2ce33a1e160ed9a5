"""The online trainer's Prometheus metrics (served on the service's ``/metrics``).

Values that live in the checkpoint (metrics, rows learned, join counts) are
gauges set from the state after each batch, so they survive a restart.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from services.online_trainer.checkpoint import TrainerState

MODEL_METRIC = Gauge(
    "driftline_online_model_metric",
    "Prequential metric of the online model (window: cumulative or rolling)",
    ["usecase", "metric", "window"],
)
ROWS_LEARNED = Gauge(
    "driftline_online_rows_learned", "Rows the online model has learned", ["usecase"]
)
JOIN_EVENTS = Gauge(
    "driftline_online_join_events",
    "Label join outcomes (joined, duplicates, labels_missing, features_missing, evicted_*)",
    ["usecase", "outcome"],
)
PENDING = Gauge(
    "driftline_online_pending", "Unmatched halves waiting in the join", ["usecase", "side"]
)
DRIFT_ALERTS = Counter(
    "driftline_online_drift_alerts_total", "Concept drift alerts published", ["usecase"]
)
SNAPSHOTS = Counter(
    "driftline_online_snapshots_total", "Model snapshots registered in MLflow", ["usecase"]
)


def export_state(usecase: str, state: TrainerState) -> None:
    """Set the gauges from one use case's state."""
    metrics = state.learner.metrics
    for window, values in (("cumulative", metrics.values()), ("rolling", metrics.rolling_values())):
        for name, value in values.items():
            MODEL_METRIC.labels(usecase, name, window).set(value)
    ROWS_LEARNED.labels(usecase).set(state.learner.rows_learned)
    for outcome, count in state.join.counts.items():
        JOIN_EVENTS.labels(usecase, outcome).set(count)
    for side, count in state.join.pending.items():
        PENDING.labels(usecase, side).set(count)
