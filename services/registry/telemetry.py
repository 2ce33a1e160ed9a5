"""The registry's Prometheus metrics (served on the service's ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DECISIONS = Counter(
    "driftline_registry_decisions_total",
    "Promotion events published, by action (promote, canary, shadow, reject, rollback)",
    ["usecase", "action"],
)
CANDIDATES = Counter(
    "driftline_registry_candidates_total",
    "Candidates read, by outcome (gated, ignored_online, already_decided, is_champion)",
    ["usecase", "outcome"],
)
DRIFT_ALERTS = Counter(
    "driftline_registry_drift_alerts_total",
    "Drift alerts read, by outcome (request, cooldown, duplicate, ignored)",
    ["usecase", "outcome"],
)
TRIAL_LABELED = Gauge(
    "driftline_registry_trial_labeled",
    "Labeled predictions of the running live trial, by side (champion, challenger)",
    ["usecase", "side"],
)
