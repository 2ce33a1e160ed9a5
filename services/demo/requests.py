"""``driftline demo --labels requested``: label only the events the system asks about.

By default the demo labels every event. With ``--labels requested`` it keeps
the ground truth of the events it published and reads
``<uc>.label_requests`` (the online trainer's requests, see the use case's
``active_learning``); each request about one of its events is answered on
``<uc>.labels`` after the label delay, as a person would answer it. The
answer is an ordinary label: nothing downstream tells it from any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer

from schemas import topics
from schemas.usecase import UseCase
from services.common.bus import start_consumer
from services.common.serde import decode

PendingLabels = deque[tuple[float, bytes | None, dict[str, Any]]]


class RequestedLabels:
    """The demo's ground truth, handed out only when a label request names the event."""

    def __init__(self, spec: UseCase, pending: PendingLabels, delay: float, keep: int = 200_000):
        self.spec = spec
        self.pending = pending  # the demo's queue of (send at, key, label)
        self.delay = delay
        self.keep = keep
        self.truth: OrderedDict[str, tuple[bytes | None, dict[str, Any]]] = OrderedDict()
        self.answered = 0
        self.asked_at = 0.0  # when the last request came (monotonic)
        self.consumer: AIOKafkaConsumer | None = None
        self.task: asyncio.Task[None] | None = None

    def remember(self, key: bytes | None, label: dict[str, Any]) -> None:
        """Keep an event's label until it is asked for (the oldest go past ``keep``)."""
        self.truth[str(label["event_id"])] = (key, label)
        while len(self.truth) > self.keep:
            self.truth.popitem(last=False)

    async def start(self, bootstrap: str) -> None:
        name = topics.label_requests(self.spec.name)
        self.consumer = await start_consumer(bootstrap, [name], None)
        self.task = asyncio.create_task(self._read(self.consumer))

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        async for record in consumer:
            request = decode(topics.LABEL_REQUESTS, record.value)
            found = self.truth.pop(request.source_event_id, None)
            if found is not None:
                self.pending.append((time.monotonic() + self.delay, *found))
                self.answered += 1
                self.asked_at = time.monotonic()

    async def settle(self, send_due: Callable[[float], Awaitable[None]]) -> None:
        """After the last event: answer the requests its last interval may still bring.

        Waits until no request has come for one interval and 5 s (the online
        trainer chooses at each interval's end), sending answers as they fall due.
        """
        policy = self.spec.active_learning
        quiet = (policy.interval_seconds if policy else 0.0) + 5.0
        began = time.monotonic()
        while time.monotonic() - max(self.asked_at, began) < quiet and self.truth:
            if self.task is not None and self.task.done():
                break
            await asyncio.sleep(0.2)
            await send_due(time.monotonic())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.consumer is not None:
            await self.consumer.stop()
