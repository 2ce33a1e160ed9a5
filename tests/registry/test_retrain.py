"""Drift alerts to training requests: an alert storm gives one request per cooldown."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas import topics
from schemas.events import DriftAlert, FeatureDrift, TrainingRequest, Window
from services.common.bus import start_producer
from services.common.serde import encode
from tests.registry.conftest import eventually, make_spec, read_topic, running_registry

pytestmark = pytest.mark.integration


def alert(usecase: str, number: int, **overrides: object) -> DriftAlert:
    fields: dict[str, object] = {
        "usecase": usecase,
        "kind": ("data", "concept", "prediction", "performance")[number % 4],
        "severity": "critical" if number % 2 else "warning",
        "method": "ks",
        "features": {"salary": FeatureDrift(score=0.01, method="ks", threshold=0.05, drifted=True)},
        "window": Window(rows=500),
        **overrides,
    }
    return DriftAlert.model_validate(fields)


async def test_alert_storm_gives_one_training_request(
    bootstrap: str, home: Path, unique: str
) -> None:
    spec = make_spec(unique, retrain_cooldown_seconds=300)
    now = [1000.0]
    storm = [alert(unique, n) for n in range(20)]
    quiet = alert(unique, 99, severity="info")
    after_cooldown = alert(unique, 100)
    ours = lambda v: v.get("usecase") == unique  # noqa: E731
    producer = await start_producer(bootstrap)
    try:
        async with running_registry(
            bootstrap, home, spec, group=f"{unique}-g", clock=lambda: now[0]
        ) as service:
            for event in [*storm, storm[0], storm[5]]:  # and two redelivered
                await producer.send(topics.DRIFT_ALERTS, encode(event))
            await producer.flush()
            seen = service.registry.retrain.seen
            await eventually(lambda: all(a.alert_id in seen for a in storm))
            now[0] += 301  # the cooldown is over: the next actionable alert asks again
            for event in (quiet, after_cooldown):
                await producer.send_and_wait(topics.DRIFT_ALERTS, encode(event))
            # Requests are published in alert order: a second one from the storm would
            # come before the one for the alert after the cooldown.
            found = await read_topic(bootstrap, topics.TRAINING_REQUESTS, ours, 2)
    finally:
        await producer.stop()
    first, second = (TrainingRequest.model_validate(v) for v in found)
    assert first.reason == "drift" and first.alert_id == storm[0].alert_id
    assert second.alert_id == after_cooldown.alert_id
    assert first.request_id != second.request_id


async def test_request_trains_from_where_the_alerting_window_was_unchecked(
    bootstrap: str, home: Path, unique: str
) -> None:
    spec = make_spec(unique, retrain_cooldown_seconds=300)
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    fresh = datetime(2026, 1, 1, 0, 3, 20, tzinfo=UTC)
    window = Window(start=start, end=end, rows=500)
    event = alert(unique, 0, window=window, details={"fresh_since": fresh.isoformat()})
    older = alert(unique, 4, window=window)  # from a detector without the detail
    ours = lambda v: v.get("usecase") == unique  # noqa: E731
    now = [1000.0]
    producer = await start_producer(bootstrap)
    try:
        async with running_registry(
            bootstrap, home, spec, group=f"{unique}-g", clock=lambda: now[0]
        ):
            await producer.send_and_wait(topics.DRIFT_ALERTS, encode(event))
            await read_topic(bootstrap, topics.TRAINING_REQUESTS, ours, 1)
            now[0] += 301  # past the cooldown
            await producer.send_and_wait(topics.DRIFT_ALERTS, encode(older))
            found = await read_topic(bootstrap, topics.TRAINING_REQUESTS, ours, 2)
    finally:
        await producer.stop()
    first, second = (TrainingRequest.model_validate(v) for v in found)
    assert first.window == Window(start=fresh) and first.alert_id == event.alert_id
    assert second.window == Window(start=end) and second.alert_id == older.alert_id
