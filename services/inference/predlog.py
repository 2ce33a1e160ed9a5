"""The prediction log: every answer becomes a ``Prediction`` event on ``<uc>.predictions``.

The request path only appends a plain dict to an in-memory queue; a
background task builds the events and sends them in batches, so a slow
broker never slows an answer. The queue is bounded: when it is full new
predictions are dropped and counted (``driftline_inference_prediction_log_total``)
rather than letting memory grow. What is still queued when the process dies
is lost; on a clean stop the queue is flushed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from schemas import topics
from schemas.events import Prediction
from services.inference.metrics import PREDICTION_LOG

logger = logging.getLogger(__name__)


class PredictionLog:
    """Batches predictions to their topics from a background task."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        batch_size: int = 500,
        linger_seconds: float = 0.02,
        capacity: int = 100_000,
    ) -> None:
        self.producer = producer
        self.batch_size = batch_size
        self.linger_seconds = linger_seconds
        self.capacity = capacity
        self._queue: deque[dict[str, Any]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.sent = 0
        self.dropped = 0

    def submit(self, prediction: dict[str, Any]) -> None:
        """Queue one prediction's fields (``Prediction`` keyword arguments); never blocks."""
        if len(self._queue) >= self.capacity:
            self.dropped += 1
            PREDICTION_LOG.labels("dropped").inc()
            return
        self._queue.append(prediction)
        if not self._wakeup.is_set():
            self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="prediction-log")

    async def stop(self) -> None:
        """Send what is queued, then end the background task."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if len(self._queue) < self.batch_size and not self._stopping:
                await asyncio.sleep(self.linger_seconds)  # let a batch fill
            while self._queue:
                size = min(self.batch_size, len(self._queue))
                batch = [self._queue.popleft() for _ in range(size)]
                await self._send(batch)
            if self._stopping:
                return

    async def _send(self, batch: list[dict[str, Any]]) -> None:
        futures = []
        for fields in batch:
            try:
                event = Prediction(**fields)
            except ValidationError as exc:
                PREDICTION_LOG.labels("failed").inc()
                logger.warning("prediction not logged reason=%s", exc.errors()[0]["msg"])
                continue
            value = event.model_dump_json().encode()
            try:
                futures.append(await self.producer.send(topics.predictions(event.usecase), value))
            except Exception:
                PREDICTION_LOG.labels("failed").inc()
                logger.exception("prediction not sent usecase=%s", event.usecase)
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = sum(isinstance(r, BaseException) for r in results)
        if failed:
            logger.error("predictions not acknowledged count=%d", failed)
            PREDICTION_LOG.labels("failed").inc(failed)
        self.sent += len(results) - failed
        PREDICTION_LOG.labels("sent").inc(len(results) - failed)
