"""The online trainer asks for labels on the real broker: within budget, across a restart."""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas import topics
from schemas.events import LabelRequest, Prediction
from schemas.usecase import UseCase
from services.common.bus import ensure_topics, start_consumer, start_producer
from services.common.serde import decode, encode
from services.online_trainer.labeling import request_id
from services.online_trainer.service import OnlineTrainer
from services.online_trainer.settings import OnlineTrainerSettings
from tests.online_trainer.conftest import agrawal_spec

pytestmark = pytest.mark.integration

BUDGET, INTERVAL, EVERY = (
    12,
    300.0,
    30.0,
)  # 12 an hour, chosen each 5 minutes, a prediction each 30 s
HOUR = 3600.0


def active_spec(name: str) -> UseCase:
    document = agrawal_spec(
        name, snapshot_every_rows=10**9, snapshot_every_seconds=1e9
    ).model_dump()
    document["active_learning"] = {
        "budget_per_hour": BUDGET, "strategy": "margin", "interval_seconds": INTERVAL,
    }  # fmt: skip
    return UseCase.model_validate(document)


def served(usecase: str, index: int, at: float, p1: float) -> Prediction:
    return Prediction(
        usecase=usecase,
        source_event_id=f"ev{index}",
        entity_id=f"c{index % 13}",
        model_name=f"{usecase}-online",
        model_version="1",
        variant="champion",
        prediction=int(p1 >= 0.5),
        probabilities={"0": 1 - p1, "1": p1},
        latency_ms=1.0,
        occurred_at=datetime.fromtimestamp(at, UTC),
    )


async def publish(bootstrap: str, topic: str, predictions: list[Prediction]) -> None:
    producer = await start_producer(bootstrap)
    try:
        for prediction in predictions:  # the record time is the simulated time served
            at_ms = int(prediction.occurred_at.timestamp() * 1000)
            await producer.send(topic, encode(prediction), partition=0, timestamp_ms=at_ms)
        await producer.flush()
    finally:
        await producer.stop()


async def read_requests(bootstrap: str, topic: str) -> list[LabelRequest]:
    consumer = await start_consumer(bootstrap, [topic], None)
    try:
        await consumer.seek_to_beginning()
        found: list[LabelRequest] = []
        while batches := await consumer.getmany(timeout_ms=700):
            for records in batches.values():
                found.extend(decode(topics.LABEL_REQUESTS, r.value) for r in records)
        return found
    finally:
        await consumer.stop()


async def until(condition: Any, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


def margin_of(prediction: Prediction) -> float:
    assert prediction.probabilities is not None
    return 1.0 - abs(prediction.probabilities["1"] - prediction.probabilities["0"])


async def test_requests_within_budget_for_the_most_uncertain_across_a_restart(
    bootstrap: str, home: Path, unique: str
) -> None:
    spec = active_spec(unique)
    topic = topics.predictions(unique)
    await ensure_topics(bootstrap, [topic, topics.label_requests(unique)])
    rng = random.Random(5)
    start = (datetime.now(UTC).timestamp() // INTERVAL - 60) * INTERVAL + 7  # 5 hours ago
    served_all = [served(unique, i, start + i * EVERY, rng.random()) for i in range(360)]
    # An hour after the last: its arrival closes the last interval of the three hours.
    closing = served(unique, 360, start + 360 * EVERY + HOUR, 0.5)
    settings = OnlineTrainerSettings(
        bootstrap=bootstrap, home=home, group_id=unique, poll_timeout_ms=50, max_records=25
    )
    offsets_key = f"{topic}:0"

    await publish(bootstrap, topic, served_all[:170])
    first = OnlineTrainer(settings, {unique: spec})
    task = asyncio.create_task(first.run(asyncio.Event()))
    await until(lambda: first.trainers[unique].state.offsets.get(offsets_key) == 170)
    await asyncio.sleep(0.3)  # the batch's requests published and checkpointed
    task.cancel()  # abrupt: no clean shutdown
    with contextlib.suppress(asyncio.CancelledError):
        await task

    await publish(bootstrap, topic, [*served_all[170:], closing])
    second = OnlineTrainer(settings, {unique: spec})
    resumed = second.trainers[unique]
    assert resumed.state.label_budget is not None and resumed.state.label_budget.requested
    stop = asyncio.Event()
    task = asyncio.create_task(second.run(stop))
    await until(lambda: resumed.state.offsets.get(offsets_key) == 361)
    await until(lambda: not resumed.state.label_budget.outbox)  # type: ignore[union-attr]
    stop.set()
    await task

    found = await read_requests(bootstrap, topics.label_requests(unique))
    requests = {r.event_id: r for r in found}
    assert len(requests) == len(found), "a request was published twice"
    times = sorted(r.occurred_at.timestamp() for r in requests.values())
    for moment in times:  # every sliding hour, ending at each request
        assert sum(1 for t in times if moment - HOUR < t <= moment) <= BUDGET
    assert 30 <= len(times) <= 3 * BUDGET  # three hours of requests, the budget spent evenly
    by_source = {p.source_event_id: p for p in served_all}
    chosen_by_end: dict[float, list[LabelRequest]] = {}
    for request in requests.values():
        chosen_by_end.setdefault(request.occurred_at.timestamp(), []).append(request)
        assert request.event_id == request_id(unique, request.source_event_id)
        assert request.strategy == "margin" and request.budget_per_hour == BUDGET
        source = by_source[request.source_event_id]
        assert request.prediction == source.prediction
        assert request.uncertainty == pytest.approx(margin_of(source))
    for end, chosen in chosen_by_end.items():
        interval = [
            p for p in served_all if end - INTERVAL <= p.occurred_at.timestamp() < end
        ]  # fmt: skip
        ranked = sorted(interval, key=margin_of, reverse=True)
        top = {p.source_event_id for p in ranked[: len(chosen)]}
        assert {r.source_event_id for r in chosen} == top, f"not the most uncertain at {end}"
        assert all(r.candidates == len(interval) for r in chosen)
