"""The shared keyed join: either half first, each key once, bounded by count and by age."""

from __future__ import annotations

import pickle
import random

import pytest

from services.common.join import Joined, KeyedJoin


def test_event_then_label_and_label_then_event_both_join() -> None:
    join: KeyedJoin[str, int] = KeyedJoin(max_pending=10)
    assert join.offer_event("a", "row-a") is None
    assert join.offer_label("b", 0) is None
    assert join.pending == {"events": 1, "labels": 1}
    assert join.offer_label("a", 1) == Joined("a", "row-a", 1)
    assert join.offer_event("b", "row-b") == Joined("b", "row-b", 0)
    assert join.pending == {"events": 0, "labels": 0}
    assert join.counts["joined"] == 2


def test_any_arrival_order_joins_every_key_exactly_once() -> None:
    halves = [("event", f"k{i}") for i in range(200)] + [("label", f"k{i}") for i in range(200)]
    random.Random(7).shuffle(halves)
    join: KeyedJoin[str, str] = KeyedJoin(max_pending=1000)
    pairs = []
    for side, key in halves:
        offer = join.offer_event if side == "event" else join.offer_label
        joined = offer(key, f"{side}:{key}")
        if joined is not None:
            pairs.append(joined)
    assert sorted(p.key for p in pairs) == sorted(f"k{i}" for i in range(200))
    assert all((p.event, p.label) == (f"event:{p.key}", f"label:{p.key}") for p in pairs)
    assert join.pending == {"events": 0, "labels": 0}


def test_duplicates_are_counted_and_never_joined_twice() -> None:
    join: KeyedJoin[str, int] = KeyedJoin(max_pending=10)
    join.offer_event("a", "first")
    assert join.offer_event("a", "second") is None  # waiting already: the first one stays
    joined = join.offer_label("a", 1)
    assert joined is not None and joined.event == "first"
    assert join.offer_label("a", 1) is None  # after the join
    assert join.offer_event("a", "third") is None
    assert join.counts["joined"] == 1 and join.counts["duplicates"] == 3
    assert join.pending == {"events": 0, "labels": 0}


def test_the_bound_evicts_the_oldest_half_and_counts_it() -> None:
    join: KeyedJoin[int, int] = KeyedJoin(max_pending=3, event_kind="predictions")
    for i in range(5):
        join.offer_event(f"e{i}", i)
        join.offer_label(f"l{i}", i)
    assert list(join.events) == ["e2", "e3", "e4"]
    assert list(join.labels) == ["l2", "l3", "l4"]
    assert join.counts["evicted_predictions"] == 2 and join.counts["evicted_labels"] == 2
    assert join.offer_label("e0", 0) is None  # evicted: its label now waits instead
    assert join.offer_label("e4", 4) == Joined("e4", 4, 4)


def test_joined_keys_are_bounded_too() -> None:
    join: KeyedJoin[int, int] = KeyedJoin(max_pending=2)
    for i in range(4):
        join.offer_event(f"k{i}", i)
        join.offer_label(f"k{i}", i)
    assert list(join.joined) == ["k2", "k3"]


def test_a_half_older_than_the_ttl_never_joins_and_expires_counted() -> None:
    join: KeyedJoin[str, int] = KeyedJoin(max_pending=10, ttl_seconds=10, event_kind="features")
    join.offer_event("late-label", "row", now=0.0)
    join.offer_label("late-event", 1, now=0.0)
    join.offer_event("fresh", "row", now=8.0)
    assert join.offer_label("late-label", 1, now=11.0) is None  # before any sweep
    assert join.offer_event("late-event", "row", now=11.0) is None
    assert join.counts["labels_missing"] == 1 and join.counts["features_missing"] == 1
    join.expire(now=30.0)
    assert join.pending == {"features": 0, "labels": 0}
    # "fresh" and the late event waited in vain for a label, the late label for an event
    assert join.counts["labels_missing"] == 3 and join.counts["features_missing"] == 2
    assert join.counts["joined"] == 0


def test_without_a_ttl_nothing_expires() -> None:
    join: KeyedJoin[str, int] = KeyedJoin(max_pending=10)
    join.offer_event("a", "row", now=0.0)
    join.expire(now=1e9)
    assert join.offer_label("a", 1, now=1e9) == Joined("a", "row", 1)


def test_clear_forgets_waiting_halves_and_joined_keys() -> None:
    join: KeyedJoin[str, int] = KeyedJoin(max_pending=10)
    join.offer_event("a", "row")
    join.offer_event("b", "row")
    join.offer_label("b", 1)
    join.clear()
    assert join.pending == {"events": 0, "labels": 0}
    assert join.offer_label("a", 1) is None  # its event was forgotten: the label waits
    assert join.offer_event("b", "again") is None  # no longer a duplicate: it waits too
    assert join.counts["duplicates"] == 0 and join.counts["joined"] == 1


def test_the_state_survives_pickling() -> None:
    join: KeyedJoin[str, int] = KeyedJoin(max_pending=10, ttl_seconds=5)
    join.offer_event("a", "row", now=1.0)
    restored = pickle.loads(pickle.dumps(join))
    assert restored.offer_label("a", 1, now=2.0) == Joined("a", "row", 1)


@pytest.mark.parametrize(("max_pending", "ttl"), [(0, None), (10, -1.0)])
def test_a_bad_bound_is_refused(max_pending: int, ttl: float | None) -> None:
    with pytest.raises(ValueError, match="must"):
        KeyedJoin(max_pending, ttl)
