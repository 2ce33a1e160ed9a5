"""Drift alerts to training requests: one request per use case per cooldown window.

An alert storm (the drift detector and the online trainer both raising, for
every window) must give one retraining, not one per alert. Alerts are
de-duplicated by ``alert_id`` and, per use case, only the first actionable
alert in ``retrain_cooldown_seconds`` becomes a request; the rest are counted
as suppressed. The request id is derived from the alert id, so a request
republished after a crash is the same request (the batch trainer is
idempotent by request id). A restarted registry recalls the requests it
published (``training.requests``), so an alert redelivered after a crash is
not asked for twice and the cooldown outlives the process.

>>> from schemas.events import Window
>>> clock = iter([0.0, 1.0, 400.0]).__next__
>>> policy = RetrainPolicy(clock=clock)
>>> def alert(alert_id, kind="data", severity="warning"):
...     return DriftAlert(usecase="credit", alert_id=alert_id, kind=kind, severity=severity,
...                       method="ks", window=Window(rows=500))
>>> [policy.consider(alert(a), cooldown=300) for a in ("a1", "a2", "a1", "a3")]
['request', 'cooldown', 'duplicate', 'request']
>>> policy.consider(alert("a4", severity="info"), cooldown=300)
'ignored'
>>> training_request(alert("a1")).request_id == training_request(alert("a1")).request_id
True
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Literal

from schemas.events import DriftAlert, TrainingRequest, Window

ACTIONABLE_KINDS = frozenset({"data", "prediction", "performance", "concept"})
ACTIONABLE_SEVERITIES = frozenset({"warning", "critical"})
Outcome = Literal["request", "duplicate", "cooldown", "ignored"]
REQUESTED_BY = "registry"
# The drift detector's detail: where the alerting window's unchecked rows begin.
FRESH_SINCE = "fresh_since"


class RetrainPolicy:
    """Decides which drift alerts become training requests (in memory, recalled at a start)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, remember: int = 10_000) -> None:
        self.clock = clock
        self.remember = remember
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._last_request: dict[str, float] = {}

    @property
    def seen(self) -> Collection[str]:
        """The alert ids considered lately (a bounded memory)."""
        return self._seen.keys()

    def consider(
        self, alert: DriftAlert, *, cooldown: float, kinds: Collection[str] = ACTIONABLE_KINDS
    ) -> Outcome:
        """The outcome of one alert; ``request`` means publish a training request now.

        ``kinds`` are the alert kinds the use case retrains on (``drift.retrain_on``).
        """
        if alert.alert_id in self._seen:
            return "duplicate"
        self._see(alert.alert_id)
        actionable = ACTIONABLE_KINDS & set(kinds)
        if alert.kind not in actionable or alert.severity not in ACTIONABLE_SEVERITIES:
            return "ignored"
        now = self.clock()
        last = self._last_request.get(alert.usecase)
        if last is not None and now - last < cooldown:
            return "cooldown"
        self._last_request[alert.usecase] = now
        return "request"

    def recall(self, request: TrainingRequest, age: float) -> None:
        """A request this policy asked for ``age`` seconds ago, before a restart: its alert
        is a duplicate if redelivered, and its use case's cooldown goes on.

        >>> clock = iter([1000.0, 1000.0, 1500.0]).__next__
        >>> policy = RetrainPolicy(clock=clock)
        >>> def alert(alert_id):
        ...     return DriftAlert(usecase="credit", alert_id=alert_id, kind="data",
        ...                       severity="warning", method="ks", window=Window(rows=500))
        >>> policy.recall(training_request(alert("a1")), age=100.0)
        >>> [policy.consider(alert(a), cooldown=300) for a in ("a1", "a2", "a3")]
        ['duplicate', 'cooldown', 'request']
        """
        if request.alert_id is not None:
            self._see(request.alert_id)
        asked = self.clock() - max(0.0, age)
        self._last_request[request.usecase] = max(
            asked, self._last_request.get(request.usecase, asked)
        )

    def _see(self, alert_id: str) -> None:
        self._seen[alert_id] = None
        while len(self._seen) > self.remember:
            self._seen.popitem(last=False)


def training_request(alert: DriftAlert) -> TrainingRequest:
    """The training request an alert asks for; its ids are derived from the alert's."""
    digest = hashlib.sha256(f"{alert.usecase}:retrain:{alert.alert_id}".encode()).hexdigest()
    return TrainingRequest(
        event_id=digest[:32],
        request_id=digest[32:],
        usecase=alert.usecase,
        reason="drift",
        alert_id=alert.alert_id,
        window=drift_window(alert),
        requested_by=REQUESTED_BY,
    )


def drift_window(alert: DriftAlert) -> Window | None:
    """Train on what came after the drift began: from the first row of the alerting
    window that no earlier check saw (the detector's ``fresh_since``: the check before
    was calm, so the drift began there or later), left open so the trainer waits for
    enough of the new data. An alert without it starts at its window's end.

    Starting at the window's end instead waited for a whole check step more of new
    rows (2 s of B8's loop); the price is that a drift beginning within the step brings
    the step's rows before it (fewer than ``drift.step_rows``) into the training set.

    >>> from schemas.events import Window
    >>> window = Window(start="2026-01-01T00:00:00Z", end="2026-01-01T00:05:00Z", rows=500)
    >>> alert = DriftAlert(usecase="u", kind="data", severity="warning", method="ks",
    ...     window=window)
    >>> drift_window(alert).start.minute, drift_window(alert).end
    (5, None)
    >>> fresh = alert.model_copy(update={"details": {"fresh_since": "2026-01-01T00:04:00Z"}})
    >>> drift_window(fresh).start.minute
    4
    >>> odd = alert.model_copy(update={"details": {"fresh_since": "2026-01-01T00:06:00Z"}})
    >>> drift_window(odd).start.minute  # not within the window: its end
    5
    """
    first, start = alert.window.start, alert.window.end or alert.window.start
    fresh = _fresh_since(alert)
    if fresh is not None and (first or fresh) <= fresh <= (start or fresh):
        start = fresh
    return Window(start=start) if start is not None else None


def _fresh_since(alert: DriftAlert) -> datetime | None:
    """The alert's ``fresh_since`` detail as an aware time, or None (absent, not a time)."""
    value = alert.details.get(FRESH_SINCE)
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
