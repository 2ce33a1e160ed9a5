"""The topic declarations: each topic once, found by name, read and written by someone."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import topics
from schemas.topics import SERVICE_TOPICS, Topic
from services.common.bus import topic_configs

DECLARED: list[Topic[Any]] = [*topics.USECASE_TOPICS, *topics.GLOBAL]
WRITTEN_BY_USERS = {topics.RAW, topics.LABELS}


@pytest.mark.parametrize("topic", DECLARED, ids=str)
def test_every_name_leads_back_to_its_topic(topic: Topic[Any]) -> None:
    name = topic.name("credit.eu") if topic.per_usecase else topic.name()
    assert topics.topic_of(name) is topic
    assert topics.usecase_of(name) == ("credit.eu" if topic.per_usecase else None)
    assert topics.kind_of(name) == topic.kind
    policy = topic_configs(name, 1000)["cleanup.policy"]
    assert policy == ("compact" if topic.kind == "state" else "delete")


def test_a_per_usecase_topic_needs_its_usecase() -> None:
    with pytest.raises(ValueError, match="per use case"):
        topics.FEATURES.name()
    assert topics.ALERTS.names(["a", "b"]) == ["drift.alerts"]
    assert topics.FEATURES.names(["a", "b"]) == ["a.features", "b.features"]


def test_every_topic_is_read_by_a_service_and_written_by_one_or_by_users() -> None:
    read = {t for service in SERVICE_TOPICS.values() for t in service.reads}
    written = {t for service in SERVICE_TOPICS.values() for t in service.writes}
    # The epoch is every service's: read, and written by the first to find it empty.
    # Label requests are read by people (and by the demo when it answers them).
    # Dead letters, label requests and back-tests are read by people.
    people = {topics.DEADLETTER, topics.LABEL_REQUESTS, topics.BACKTESTS}
    assert read | {topics.EPOCH} == set(DECLARED) - people
    assert written | WRITTEN_BY_USERS | {topics.EPOCH} == set(DECLARED)


def test_the_stack_creates_the_union_of_the_declarations() -> None:
    names = topics.all_topics(["a", "b"])
    assert len(names) == len(set(names)) == 20
    for service, declared in SERVICE_TOPICS.items():
        assert set(declared.names(["a", "b"])) <= set(names), service
        assert topics.LOG_EPOCH in declared.names([])
    assert SERVICE_TOPICS["online_trainer"].names(["a"]) == [
        "a.features", "a.labels", "a.predictions", "models.candidates", "drift.alerts",
        "a.label_requests", "a.deadletter", "driftline.epoch",
    ]  # fmt: skip


def test_state_topics_are_keyed_so_compaction_keeps_what_matters() -> None:
    state = {t for t in DECLARED if t.kind == "state"}
    assert state == {topics.PROMOTIONS, topics.STATS, topics.EPOCH}
    assert {t: t.key for t in state} == {
        topics.PROMOTIONS: "event_id", topics.STATS: "usecase", topics.EPOCH: "epoch",
    }  # fmt: skip
