"""Sustained load (``DRIFTLINE_RELIABILITY=1``; ``DRIFTLINE_LOAD_SECONDS``, default 60).

- The inference service answers concurrent clients for the whole period with
  no error, and every answer is on ``<uc>.predictions``.
- Ingestion is fed at its measured maximum rate for the whole period and
  every event comes out on ``<uc>.features`` exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import httpx
import pytest

from schemas import topics
from schemas.usecase import load_usecase
from tests.inference.conftest import raw_events, request_fields
from tests.integration.test_ingest_path import valid_events
from tests.reliability import tally
from tests.reliability.helpers import served_inference
from tests.stack import ROOT, Stack, publish_raw, read_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.reliability]

SECONDS = float(os.environ.get("DRIFTLINE_LOAD_SECONDS", "60"))
CLIENTS = 16


def test_inference_under_sustained_concurrent_load(stack: Stack, unique: str) -> None:
    base, _ = served_inference(stack, unique)
    bodies = [
        {"entity_id": event["entity_id"], "features": request_fields(event)}
        for event, _ in raw_events(500, seed=9)
    ]
    answered: list[int] = []
    errors: list[str] = []

    async def client(index: int, deadline: float) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            n = index
            while time.monotonic() < deadline:
                body = bodies[n % len(bodies)]
                n += CLIENTS
                try:
                    answer = await http.post(f"/v1/predict/{unique}", json=body)
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    continue
                if answer.status_code == 200:
                    answered.append(1)
                else:
                    errors.append(f"{answer.status_code} {answer.text[:200]}")

    async def run() -> None:
        deadline = time.monotonic() + SECONDS
        await asyncio.gather(*(client(i, deadline) for i in range(CLIENTS)))

    asyncio.run(run())
    tally.add("load_requests", len(answered) + len(errors))
    tally.add("load_errors", len(errors))
    assert not errors, errors[:5]
    assert answered

    def logged() -> list[dict[str, Any]]:
        return read_topic(stack.bootstrap, topics.predictions(unique))

    assert wait_until(lambda: len(logged()) >= len(answered), timeout=120)
    predictions = logged()
    assert len({p["prediction_id"] for p in predictions}) == len(answered)
    assert "Traceback" not in stack.log("inference")


def features_of(stack: Stack, usecase: str) -> list[dict[str, Any]]:
    return read_topic(stack.bootstrap, topics.features(usecase), idle=2.0)


def test_ingestion_at_its_measured_maximum_loses_nothing(stack: Stack, unique: str) -> None:
    spec = load_usecase(ROOT / "usecases" / "credit.yaml").model_copy(update={"name": unique})
    template = valid_events(spec, 2000)
    stack.start("ingestion")

    def events(start: int, count: int) -> list[bytes]:
        made = []
        for i in range(start, start + count):
            event = {**template[i % len(template)], "event_id": f"load-{i}"}
            made.append(json.dumps(event).encode())
        return made

    # Measure: a burst, and how fast ingestion turns it into feature rows.
    burst = 10_000
    publish_raw(stack.bootstrap, topics.raw(unique), events(0, 200))
    assert wait_until(lambda: len(features_of(stack, unique)) >= 200, 120), stack.log("ingestion")
    started = time.monotonic()
    publish_raw(stack.bootstrap, topics.raw(unique), events(200, burst))
    assert wait_until(lambda: len(features_of(stack, unique)) >= 200 + burst, 300)
    rate = burst / (time.monotonic() - started)

    # Sustain: that rate, one batch a second, for the whole period.
    sent = 200 + burst
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        second = time.monotonic()
        count = max(1, int(rate))
        publish_raw(stack.bootstrap, topics.raw(unique), events(sent, count))
        sent += count
        time.sleep(max(0.0, 1.0 - (time.monotonic() - second)))

    assert wait_until(lambda: len(features_of(stack, unique)) >= sent, 600), stack.log("ingestion")[
        -3000:
    ]
    rows = features_of(stack, unique)
    ids = [r["source_event_id"] for r in rows]
    lost = sent - len(set(ids))
    doubled = len(ids) - len(set(ids))
    tally.add("events_checked", sent)
    tally.add("events_lost", lost)
    tally.add("events_doubled", doubled)
    print(f"ingestion measured maximum: {rate:.0f} events/s; sustained {sent} events")
    assert lost == 0
    assert doubled == 0
    assert read_topic(stack.bootstrap, topics.deadletter(unique)) == []
