"""Prediction traffic for the demo: the application asking the model about each event.

In a real system the application calls the inference service when an event
happens and learns the truth later; the demo does the same, so predictions
(and, with labels, live metrics, canaries and performance-drift checks) flow.
Calls are fire-and-forget with bounded concurrency: a slow or absent inference
service never slows the event stream, it only counts failures.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import httpx

from schemas.usecase import UseCase

logger = logging.getLogger(__name__)


def predict_body(spec: UseCase, event: dict[str, Any]) -> dict[str, Any]:
    """The ``/v1/predict`` body for a raw event: its ids and its fields.

    >>> spec = UseCase.model_validate({"name": "toy", "task": "regression",
    ...     "fields": {"x": {"type": "float"}},
    ...     "features": [{"kind": "passthrough", "field": "x"}]})
    >>> event = {"event_id": "e1", "entity_id": "c1", "timestamp": "t", "x": 2.0}
    >>> predict_body(spec, event)
    {'entity_id': 'c1', 'event_id': 'e1', 'features': {'x': 2.0}}
    """
    fields = {name: event[name] for name in spec.fields if name in event}
    return {
        "entity_id": event.get(spec.entity_key),
        "event_id": event.get("event_id"),
        "features": fields,
    }


class PredictionTraffic:
    """Sends one prediction request per event, at most ``concurrency`` at a time."""

    def __init__(
        self, url: str, spec: UseCase, *, api_key: str | None = None, concurrency: int = 16
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.client = httpx.AsyncClient(base_url=url, headers=headers, timeout=5.0)
        self.spec = spec
        self.slots = asyncio.Semaphore(concurrency)
        self.tasks: set[asyncio.Task[None]] = set()
        self.outcomes: Counter[str] = Counter()

    def submit(self, event: dict[str, Any]) -> None:
        if self.slots.locked():
            self.outcomes["skipped (busy)"] += 1
            return
        task = asyncio.create_task(self._call(event))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _call(self, event: dict[str, Any]) -> None:
        async with self.slots:
            try:
                response = await self.client.post(
                    f"/v1/predict/{self.spec.name}", json=predict_body(self.spec, event)
                )
                self.outcomes[str(response.status_code)] += 1
            except httpx.HTTPError as exc:
                self.outcomes[type(exc).__name__] += 1

    async def close(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.aclose()
