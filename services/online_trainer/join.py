"""The label join: feature rows and late labels meet by ``event_id``, whichever comes first.

Unmatched halves wait in bounded, insertion-ordered maps with a time to live.
Time is the caller's clock (the service passes Kafka record timestamps, so a
replay after a restart sees the same clock and joins the same way). A half
older than the TTL never joins: features whose label never came are counted as
``labels_missing``; labels whose features never came as ``features_missing``.
An ``event_id`` already learned is a duplicate and is counted, not learned
again.

>>> join = LabelJoin(ttl_seconds=10, max_pending=100)
>>> join.offer_label("e1", 1, now=0.0) is None
True
>>> join.offer_features("e1", {"x": 1.0}, "2026-01-01", now=1.0).label
1
>>> join.offer_label("e1", 1, now=2.0) is None, join.counts["duplicates"]
(True, 1)
>>> join.offer_features("e2", {"x": 2.0}, "2026-01-01", now=3.0)
>>> join.expire(now=20.0); join.counts["labels_missing"]
1
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

OUTCOMES = (
    "joined",
    "duplicates",
    "labels_missing",
    "features_missing",
    "evicted_features",
    "evicted_labels",
)


@dataclass(frozen=True)
class JoinedRow:
    """A feature row and its label, ready to be learned."""

    event_id: str
    features: dict[str, float]
    event_timestamp: Any
    label: Any


class LabelJoin:
    """Pending feature rows and labels, by ``event_id``, bounded by count and age."""

    def __init__(self, ttl_seconds: float, max_pending: int) -> None:
        self.ttl = ttl_seconds
        self.max_pending = max_pending
        # event_id -> (payload, arrival time); insertion order is arrival order
        self.features: collections.OrderedDict[str, tuple[tuple[dict[str, float], Any], float]] = (
            collections.OrderedDict()
        )
        self.labels: collections.OrderedDict[str, tuple[Any, float]] = collections.OrderedDict()
        self.learned: collections.OrderedDict[str, float] = collections.OrderedDict()
        self.counts: collections.Counter[str] = collections.Counter(dict.fromkeys(OUTCOMES, 0))

    def offer_features(
        self, event_id: str, features: dict[str, float], event_timestamp: Any, now: float
    ) -> JoinedRow | None:
        """A feature row arrived; return the joined row if its label was waiting."""
        if event_id in self.learned or event_id in self.features:
            self.counts["duplicates"] += 1
            return None
        waiting = self.labels.pop(event_id, None)
        if waiting is not None and self._fresh(waiting[1], now):
            return self._joined(event_id, features, event_timestamp, waiting[0], now)
        if waiting is not None:
            self.counts["features_missing"] += 1
        self.features[event_id] = ((features, event_timestamp), now)
        self._bound(self.features, "evicted_features")
        return None

    def offer_label(self, event_id: str, label: Any, now: float) -> JoinedRow | None:
        """A label arrived; return the joined row if its features were waiting."""
        if event_id in self.learned or event_id in self.labels:
            self.counts["duplicates"] += 1
            return None
        waiting = self.features.pop(event_id, None)
        if waiting is not None and self._fresh(waiting[1], now):
            (features, event_timestamp), _ = waiting
            return self._joined(event_id, features, event_timestamp, label, now)
        if waiting is not None:
            self.counts["labels_missing"] += 1
        self.labels[event_id] = (label, now)
        self._bound(self.labels, "evicted_labels")
        return None

    def expire(self, now: float) -> None:
        """Drop (and count) halves older than the TTL, and forget old learned ids."""
        self._expire(self.features, "labels_missing", now)
        self._expire(self.labels, "features_missing", now)
        while self.learned and not self._fresh(next(iter(self.learned.values())), now):
            self.learned.popitem(last=False)

    @property
    def pending(self) -> dict[str, int]:
        return {"features": len(self.features), "labels": len(self.labels)}

    def _expire(
        self, pending: collections.OrderedDict[str, tuple[Any, float]], outcome: str, now: float
    ) -> None:
        while pending and not self._fresh(next(iter(pending.values()))[1], now):
            pending.popitem(last=False)
            self.counts[outcome] += 1

    def _fresh(self, arrived: float, now: float) -> bool:
        return now - arrived <= self.ttl

    def _joined(
        self,
        event_id: str,
        features: dict[str, float],
        event_timestamp: Any,
        label: Any,
        now: float,
    ) -> JoinedRow:
        self.counts["joined"] += 1
        self.learned[event_id] = now
        self._bound(self.learned, None)
        return JoinedRow(event_id, features, event_timestamp, label)

    def _bound(self, pending: collections.OrderedDict[str, Any], outcome: str | None) -> None:
        while len(pending) > self.max_pending:
            pending.popitem(last=False)
            if outcome is not None:
                self.counts[outcome] += 1
