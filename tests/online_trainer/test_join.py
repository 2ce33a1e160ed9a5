"""The label join: either half first, duplicates once, expiry and unknown features counted."""

from __future__ import annotations

import pickle
from collections import Counter, OrderedDict

from services.online_trainer.join import LabelJoin
from services.online_trainer.learner import learn_stream
from tests.online_trainer.conftest import agrawal_rows, agrawal_spec, as_events

X = {"x": 1.0}


def test_label_before_features_joins() -> None:
    join = LabelJoin(ttl_seconds=60, max_pending=10)
    assert join.offer_label("e1", 1, now=0.0) is None
    joined = join.offer_features("e1", X, None, now=5.0)
    assert joined is not None and (joined.event_id, joined.label, joined.features) == ("e1", 1, X)
    assert join.pending == {"features": 0, "labels": 0}


def test_features_before_label_joins() -> None:
    join = LabelJoin(ttl_seconds=60, max_pending=10)
    assert join.offer_features("e1", X, None, now=0.0) is None
    joined = join.offer_label("e1", 0, now=1.0)
    assert joined is not None and joined.label == 0
    assert join.counts["joined"] == 1


def test_same_event_twice_is_joined_once() -> None:
    join = LabelJoin(ttl_seconds=60, max_pending=10)
    join.offer_features("e1", X, None, now=0.0)
    assert join.offer_features("e1", X, None, now=0.5) is None  # duplicate while pending
    assert join.offer_label("e1", 1, now=1.0) is not None
    assert join.offer_label("e1", 1, now=2.0) is None  # duplicate after learning
    assert join.offer_features("e1", X, None, now=3.0) is None
    assert join.counts["joined"] == 1
    assert join.counts["duplicates"] == 3


def test_labels_that_never_come_expire_and_are_counted() -> None:
    join = LabelJoin(ttl_seconds=10, max_pending=10)
    join.offer_features("e1", X, None, now=0.0)
    join.offer_features("e2", X, None, now=8.0)
    join.expire(now=15.0)
    assert join.counts["labels_missing"] == 1
    assert list(join.pairs.events) == ["e2"]
    # A label later than the TTL does not join, even before a sweep has run.
    assert join.offer_label("e2", 1, now=30.0) is None
    assert join.counts["labels_missing"] == 2 and join.counts["joined"] == 0


def test_label_with_unknown_features_is_counted_not_learned() -> None:
    join = LabelJoin(ttl_seconds=10, max_pending=10)
    join.offer_label("ghost", 1, now=0.0)
    join.expire(now=11.0)
    assert join.counts["features_missing"] == 1
    assert join.pending == {"features": 0, "labels": 0}


def test_pending_state_is_bounded() -> None:
    join = LabelJoin(ttl_seconds=1000, max_pending=3)
    for i in range(5):
        join.offer_features(f"e{i}", X, None, now=float(i))
    assert list(join.pairs.events) == ["e2", "e3", "e4"]
    assert join.counts["evicted_features"] == 2


def test_learn_stream_learns_each_event_once() -> None:
    rows, labels = as_events(agrawal_rows(200))
    duplicated_rows = rows + rows[:50]
    duplicated_labels = labels[:30] + labels + labels[:30]
    orphan = [{"event_id": "nobody", "label": 1, "timestamp": "2026-01-01T00:00:00Z"}]
    _, metrics = learn_stream(agrawal_spec(), duplicated_rows, duplicated_labels + orphan)
    assert metrics["rows_learned"] == 200


def test_a_checkpoint_from_before_the_shared_join_still_loads() -> None:
    # The state the online trainer's own LabelJoin pickled before services/common/join.py.
    old_state = {
        "ttl": 60.0,
        "max_pending": 10,
        "features": OrderedDict({"e1": ((X, "t1"), 0.0)}),
        "labels": OrderedDict({"e2": (0, 1.0)}),
        "learned": OrderedDict({"e0": 0.0}),
        "counts": Counter({"joined": 1, "duplicates": 0}),
    }
    join = LabelJoin.__new__(LabelJoin)
    join.__setstate__(old_state)
    restored = pickle.loads(pickle.dumps(join))
    assert restored.pending == {"features": 1, "labels": 1}
    joined = restored.offer_label("e1", 1, now=2.0)
    assert joined is not None and (joined.features, joined.event_timestamp) == (X, "t1")
    assert restored.offer_features("e2", X, "t2", now=2.0) is not None
    assert restored.offer_label("e0", 1, now=2.0) is None  # learned before the checkpoint
    assert restored.counts["joined"] == 3 and restored.counts["duplicates"] == 1
