"""The label join: feature rows and late labels meet by ``event_id``, whichever comes first.

The shared :class:`~services.common.join.KeyedJoin`, bounded by count and by a
time to live. Time is the caller's clock (the service passes Kafka record
timestamps, so a replay after a restart sees the same clock and joins the same
way). A half older than the TTL never joins: features whose label never came
are counted as ``labels_missing``; labels whose features never came as
``features_missing``. An ``event_id`` already learned is a duplicate and is
counted, not learned again.

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
from typing import Any, NamedTuple

from services.common.join import Joined, KeyedJoin

FeatureHalf = tuple[dict[str, float], Any]  # (features, event timestamp)


class JoinedRow(NamedTuple):
    """A feature row and its label, ready to be learned."""

    event_id: str
    features: dict[str, float]
    event_timestamp: Any
    label: Any


class LabelJoin:
    """Pending feature rows and labels, by ``event_id``, bounded by count and age."""

    def __init__(self, ttl_seconds: float, max_pending: int) -> None:
        self.pairs: KeyedJoin[FeatureHalf, Any] = KeyedJoin(
            max_pending, ttl_seconds, event_kind="features"
        )

    def offer_features(
        self, event_id: str, features: dict[str, float], event_timestamp: Any, now: float
    ) -> JoinedRow | None:
        """A feature row arrived; return the joined row if its label was waiting."""
        return _row(self.pairs.offer_event(event_id, (features, event_timestamp), now))

    def offer_label(self, event_id: str, label: Any, now: float) -> JoinedRow | None:
        """A label arrived; return the joined row if its features were waiting."""
        return _row(self.pairs.offer_label(event_id, label, now))

    def expire(self, now: float) -> None:
        """Drop (and count) halves older than the TTL, and forget old learned ids."""
        self.pairs.expire(now)

    @property
    def counts(self) -> collections.Counter[str]:
        return self.pairs.counts

    @property
    def pending(self) -> dict[str, int]:
        return self.pairs.pending

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "pairs" not in state:  # checkpointed before the join moved to services.common
            pairs: KeyedJoin[FeatureHalf, Any] = KeyedJoin(state["max_pending"], state["ttl"])
            pairs.event_kind = "features"
            pairs.events = state["features"]
            pairs.labels = state["labels"]
            pairs.joined = state["learned"]
            pairs.counts = state["counts"]
            state = {"pairs": pairs}
        self.__dict__.update(state)


def _row(joined: Joined[FeatureHalf, Any] | None) -> JoinedRow | None:
    if joined is None:
        return None
    features, event_timestamp = joined.event
    return JoinedRow(joined.key, features, event_timestamp, joined.label)
