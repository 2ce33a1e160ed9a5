"""The keyed join: an event and its late label meet by ``event_id``, whichever comes first.

One join serves everything a label grades: the online trainer's feature rows,
the drift detector's champion predictions and the registry canary's trial
predictions. The half that comes first waits for the other in an
insertion-ordered map, bounded by count (over ``max_pending`` the oldest is
evicted, and counted) and, with a ``ttl_seconds``, by age: a half older than
the TTL never joins, and :meth:`KeyedJoin.expire` drops and counts it. Time is
the caller's clock (the online trainer passes Kafka record timestamps, so a
replay after a restart joins the same way). Each key joins once: a key already
joined, or a half already waiting, is a duplicate and is counted, not joined
again.

>>> join = KeyedJoin(max_pending=2)
>>> join.offer_label("e1", 1) is None
True
>>> join.offer_event("e1", "row")
Joined(key='e1', event='row', label=1)
>>> join.offer_label("e1", 1), join.counts["duplicates"]
(None, 1)
>>> for key in ("a", "b", "c"):
...     join.offer_event(key, key)
>>> list(join.events), join.counts["evicted_events"]
(['b', 'c'], 1)
"""

from __future__ import annotations

import collections
from typing import Any, Generic, NamedTuple, TypeVar

E = TypeVar("E")
L = TypeVar("L")


class Joined(NamedTuple, Generic[E, L]):
    """An event and its label, joined by key (a tuple: one is made for every pair)."""

    key: str
    event: E
    label: L


class KeyedJoin(Generic[E, L]):
    """Waiting events and labels by key, bounded by count and, optionally, by age.

    ``event_kind`` names the event half in :attr:`counts` and :attr:`pending`
    (``"features"`` gives ``features_missing``, ``evicted_features``).
    """

    def __init__(
        self, max_pending: int, ttl_seconds: float | None = None, event_kind: str = "events"
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, not {max_pending}")
        if ttl_seconds is not None and ttl_seconds < 0:
            raise ValueError(f"ttl_seconds must not be negative, not {ttl_seconds}")
        self.max_pending = max_pending
        self.ttl = ttl_seconds
        self.event_kind = event_kind
        # key -> (value, arrival time); insertion order is arrival order
        self.events: collections.OrderedDict[str, tuple[E, float]] = collections.OrderedDict()
        self.labels: collections.OrderedDict[str, tuple[L, float]] = collections.OrderedDict()
        self.joined: collections.OrderedDict[str, float] = collections.OrderedDict()
        self.counts: collections.Counter[str] = collections.Counter(
            dict.fromkeys(self.outcomes(), 0)
        )

    def outcomes(self) -> tuple[str, ...]:
        """The names :attr:`counts` counts under."""
        kind = self.event_kind
        return (
            "joined",
            "duplicates",
            "labels_missing",  # events whose label never came
            f"{kind}_missing",  # labels whose event never came
            f"evicted_{kind}",
            "evicted_labels",
        )

    def offer_event(self, key: str, event: E, now: float = 0.0) -> Joined[E, L] | None:
        """An event arrived; the joined pair if its label was waiting."""
        kind = self.event_kind
        label = self._offer(key, event, now, self.events, self.labels, f"{kind}_missing")
        if label is None:
            if len(self.events) > self.max_pending:
                self._bound(self.events, f"evicted_{kind}")
            return None
        return Joined(key, event, label[0])

    def offer_label(self, key: str, label: L, now: float = 0.0) -> Joined[E, L] | None:
        """A label arrived; the joined pair if its event was waiting."""
        event = self._offer(key, label, now, self.labels, self.events, "labels_missing")
        if event is None:
            if len(self.labels) > self.max_pending:
                self._bound(self.labels, "evicted_labels")
            return None
        return Joined(key, event[0], label)

    def expire(self, now: float) -> None:
        """Drop (and count) halves older than the TTL, and forget keys joined before it."""
        if self.ttl is None:
            return
        self._expire(self.events, "labels_missing", now)
        self._expire(self.labels, f"{self.event_kind}_missing", now)
        while self.joined and not self._fresh(next(iter(self.joined.values())), now):
            self.joined.popitem(last=False)

    def clear(self) -> None:
        """Forget every waiting half and joined key (the counts stay)."""
        self.events.clear()
        self.labels.clear()
        self.joined.clear()

    @property
    def pending(self) -> dict[str, int]:
        """How many halves wait, per side."""
        return {self.event_kind: len(self.events), "labels": len(self.labels)}

    def _offer(
        self,
        key: str,
        value: Any,
        now: float,
        mine: collections.OrderedDict[str, Any],
        theirs: collections.OrderedDict[str, Any],
        stale: str,
    ) -> tuple[Any] | None:
        """The other half waiting under ``key`` (in a 1-tuple), or None with ``value`` waiting.

        A duplicate is counted and dropped; the other half waiting past the TTL is
        counted as ``stale`` and ``value`` waits in its place.
        """
        if key in self.joined or key in mine:
            self.counts["duplicates"] += 1
            return None
        waiting = theirs.pop(key, None)
        if waiting is not None and (self.ttl is None or now - waiting[1] <= self.ttl):
            self.counts["joined"] += 1
            joined = self.joined
            joined[key] = now
            if len(joined) > self.max_pending:
                joined.popitem(last=False)
            return (waiting[0],)
        if waiting is not None:
            self.counts[stale] += 1
        mine[key] = (value, now)
        return None

    def _expire(
        self, waiting: collections.OrderedDict[str, tuple[Any, float]], outcome: str, now: float
    ) -> None:
        while waiting and not self._fresh(next(iter(waiting.values()))[1], now):
            waiting.popitem(last=False)
            self.counts[outcome] += 1

    def _fresh(self, arrived: float, now: float) -> bool:
        return self.ttl is None or now - arrived <= self.ttl

    def _bound(self, waiting: collections.OrderedDict[str, Any], outcome: str | None) -> None:
        while len(waiting) > self.max_pending:
            waiting.popitem(last=False)
            if outcome is not None:
                self.counts[outcome] += 1
