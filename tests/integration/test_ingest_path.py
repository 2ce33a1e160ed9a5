"""Issue 3's acceptance, end to end: raw events through ingestion and the features
service into Feast, with real processes, the real broker and a real Feast repo."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas import topics
from schemas.usecase import load_usecase
from services.common import dataset, featurestore
from services.common.errors import InvalidInput
from services.common.prep import Preparer
from services.demo.data import demo_events
from tests.stack import ROOT, Stack, publish_raw, read_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def valid_events(spec: Any, count: int) -> list[dict[str, Any]]:
    """Demo events the use case accepts (the demo mangles a few on purpose)."""
    preparer = Preparer(spec)
    kept: list[dict[str, Any]] = []
    for item in demo_events(spec, events=count * 2, seed=3):
        try:
            preparer.prepare(item.event, learn=False)
        except InvalidInput:
            continue
        kept.append(item.event)
        if len(kept) == count:
            break
    return kept


def malformed_events(template: dict[str, Any]) -> list[bytes]:
    """Ten kinds of bad input, ten of each."""
    bad: list[bytes] = []
    for i in range(10):
        event = {**template, "event_id": f"bad-{i}"}

        def without(key: str, event: dict[str, Any] = event) -> bytes:
            return json.dumps({k: v for k, v in event.items() if k != key}).encode()

        bad += [
            b"{not json at all",
            b"[1, 2, 3]",
            without("event_id"),
            without("entity_id"),
            without("timestamp"),
            json.dumps({**event, "timestamp": "yesterday"}).encode(),
            json.dumps({**event, "salary": "lots"}).encode(),
            json.dumps({**event, "age": {"years": 40}}).encode(),
            json.dumps({**event, "age": 500}).encode(),
            json.dumps({**event, "padding": "x" * 70_000}).encode(),
        ]
    return bad


def offline_rows(stack: Stack, usecase: str) -> Any:
    return dataset.read_dataset(featurestore.features_dir(stack.home, usecase))


def test_valid_rows_reach_feast_once_and_bad_ones_the_deadletter_topic(
    stack: Stack, unique: str
) -> None:
    spec = load_usecase(ROOT / "usecases" / "credit.yaml").model_copy(update={"name": unique})
    events = valid_events(spec, 1000)
    bad = malformed_events(events[0])
    stack.start("ingestion")
    stack.start("features")

    raw = [json.dumps(e).encode() for e in events]
    publish_raw(stack.bootstrap, topics.raw(unique), raw[:500] + bad + raw[500:])
    assert wait_until(lambda: len(offline_rows(stack, unique)) >= 1000, timeout=300), (
        stack.log("ingestion")[-3000:] + stack.log("features")[-3000:]
    )
    rows = read_topic(stack.bootstrap, topics.features(unique))
    letters = read_topic(stack.bootstrap, topics.deadletter(unique))
    assert len(rows) == 1000
    assert {r["source_event_id"] for r in rows} == {e["event_id"] for e in events}
    assert len(letters) == 100, {(x["service"], x["reason"][:100]) for x in letters}
    assert all(letter["service"] == "ingestion" and letter["reason"] for letter in letters)
    reasons = " | ".join(letter["reason"] for letter in letters)
    for expected in (
        "not valid JSON",
        "expected a JSON object",
        "event_id",
        "entity_id",
        "timestamp",
        "'salary'",
        "'age'",
        "bytes",
    ):
        assert expected in reasons, expected

    # Publishing the same 1,000 again adds nothing anywhere.
    publish_raw(stack.bootstrap, topics.raw(unique), raw)
    marker = valid_events(spec.model_copy(update={"name": unique}), 1001)[-1]
    marker = {**marker, "event_id": "marker-event"}
    publish_raw(stack.bootstrap, topics.raw(unique), [json.dumps(marker).encode()])
    assert wait_until(lambda: len(offline_rows(stack, unique)) >= 1001, timeout=180)
    rows = read_topic(stack.bootstrap, topics.features(unique))
    assert len(rows) == 1001
    offline = offline_rows(stack, unique)
    assert len(offline) == 1001
    assert offline[featurestore.EVENT_ID].is_unique
    assert not offline[spec.feature_names()].isna().any().any()

    # A row read online right after it was written matches the offline store.
    store = featurestore.open_store(featurestore.FeatureStoreSettings(home=stack.home), [spec])
    latest = offline.sort_values(featurestore.TIMESTAMP).groupby(featurestore.ENTITY_KEY).tail(1)
    sample = latest.head(5)
    online = featurestore.online_features(store, spec, list(sample[featurestore.ENTITY_KEY]))
    for (_, expected), got in zip(sample.iterrows(), online, strict=True):
        assert got[featurestore.EVENT_ID] == expected[featurestore.EVENT_ID]
        for name in spec.feature_names():
            assert got[name] == pytest.approx(expected[name])


def test_sigkilled_services_account_for_every_event_once(stack: Stack, unique: str) -> None:
    """Killed twice: once between two publishes, once while the second half is in flight.

    Small batches (100) make the second kill land between many commits; the second
    half is four times the first, so the kill lands while most of it is in flight
    (the services got through 1,500 events before a poll of the store saw 1,600).
    """
    spec = load_usecase(ROOT / "usecases" / "credit.yaml").model_copy(update={"name": unique})
    events = valid_events(spec, 7500)
    total = len(events)
    raw = [json.dumps(e).encode() for e in events]
    small = {"DRIFTLINE_BATCH_EVENTS": "100", "DRIFTLINE_BATCH_ROWS": "100"}

    def start() -> None:
        stack.start("ingestion", **small)
        stack.start("features", **small)

    def kill() -> int:
        stack.kill("ingestion")
        stack.kill("features")
        return len(offline_rows(stack, unique))

    start()
    publish_raw(stack.bootstrap, topics.raw(unique), raw[:1500])
    assert wait_until(lambda: len(offline_rows(stack, unique)) > 0, timeout=300)
    kill()
    publish_raw(stack.bootstrap, topics.raw(unique), raw[1500:])
    start()
    assert wait_until(lambda: len(offline_rows(stack, unique)) > 1600, timeout=300, interval=0.1)
    in_store_at_kill = kill()
    start()
    assert wait_until(lambda: len(offline_rows(stack, unique)) >= total, timeout=300), (
        f"{in_store_at_kill} rows at the second kill\n"
        + stack.log("ingestion")[-3000:]
        + stack.log("features")[-3000:]
    )
    offline = offline_rows(stack, unique)
    assert len(offline) == total
    assert set(offline[featurestore.EVENT_ID]) == {e["event_id"] for e in events}
    rows = read_topic(stack.bootstrap, topics.features(unique))
    # At-least-once: the topic may hold a redelivered copy; the store holds each once.
    assert {r["source_event_id"] for r in rows} == {e["event_id"] for e in events}
    # The second half was cut off while in flight, so the restart had work left.
    assert in_store_at_kill < total
