"""The service: consume ``training.requests``, train, register, publish ``models.candidates``.

Requests are handled one at a time, training in a worker thread so the
health endpoint stays live. A request for an unknown use case or with too
little data is bad input: it goes to ``<uc>.deadletter`` with the reason. A
redelivered request (at-least-once) finds its run in MLflow and republishes
the same candidate instead of training again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from schemas import topics
from schemas.events import ModelCandidate, TrainingRequest
from schemas.usecase import UseCase
from services.batch_trainer.data import TrainingData, resolve_window
from services.batch_trainer.errors import BatchTrainerError, NotEnoughData, UnknownUseCase
from services.batch_trainer.settings import BatchTrainerSettings
from services.common.bus import ensure_service_topics, start_consumer, start_producer
from services.common.consume import ConsumeLoop, resume_committed
from services.common.deadletter import DeadLetterPolicy
from services.common.errors import InvalidInput
from services.common.health import HealthServer
from services.common.plugins import load_callable
from services.common.serde import decode, encode

logger = logging.getLogger(__name__)

SERVICE = "batch_trainer"


class TrainingRequestHandler:
    """Turns each training request into a registered model and a ``models.candidates`` event.

    ``served`` are the use cases this instance trains; a request naming one of
    ``known`` that is not served belongs to another instance and is skipped;
    any other use case is dead-lettered.
    """

    def __init__(
        self,
        settings: BatchTrainerSettings,
        served: Mapping[str, UseCase],
        data_source: TrainingData,
        producer: AIOKafkaProducer,
        known: Collection[str] = (),
    ) -> None:
        self.settings = settings
        self.served = dict(served)
        self.known = set(known) | set(served)
        self.data_source = data_source
        self.producer = producer
        self.candidates = 0

    async def process(self, record: ConsumerRecord[Any, Any]) -> None:
        request = decode(topics.REQUESTS, record.value)
        spec = self.served.get(request.usecase)
        if spec is None:
            if request.usecase in self.known:
                logger.debug("skipping request for usecase=%s (not served here)", request.usecase)
                return
            raise UnknownUseCase(
                f"training request for unknown use case {request.usecase!r}; "
                f"this trainer serves {sorted(self.served)}",
                event_id=request.event_id,
            )
        logger.info(
            "training request usecase=%s request_id=%s reason=%s partition=%s offset=%s",
            spec.name, request.request_id, request.reason, record.partition, record.offset,
        )  # fmt: skip
        candidate = await asyncio.to_thread(self.train_and_register, spec, request)
        await self.producer.send_and_wait(
            topics.MODELS_CANDIDATES, encode(candidate), key=topics.CANDIDATES.key_of(candidate)
        )
        self.candidates += 1

    async def flush(self) -> None:
        """Nothing buffered: each candidate is acknowledged by the broker before the next."""

    def train_and_register(self, spec: UseCase, request: TrainingRequest) -> ModelCandidate:
        """The blocking part: train (or find the earlier run) and register in MLflow."""
        from services.batch_trainer import runs
        from services.batch_trainer.pipeline import train_candidate
        from services.common import tracking

        home, uri = self.settings.home, self.settings.mlflow_uri
        experiment = tracking.experiment_id(home, runs.experiment_name(spec), uri)
        client = tracking.client(home, uri)
        earlier = tracking.earlier_candidate(
            client, experiment, runs.REQUEST_TAG, request.request_id
        )
        if earlier is not None:
            logger.info("request_id=%s already trained: republishing", request.request_id)
            return earlier
        waiting = waits_for_data(request)
        deadline = time.monotonic() + self.settings.data_wait_seconds
        while True:
            now = datetime.now(UTC) if waiting else request.occurred_at
            window = resolve_window(spec, request.window, now)
            try:
                frame = self.data_source(spec, window)
                outcome = train_candidate(spec, frame, window, device=self.settings.device)
                break
            except NotEnoughData as exc:
                if waiting and time.monotonic() < deadline:
                    logger.info("waiting for data request_id=%s: %s", request.request_id, exc)
                    time.sleep(self.settings.data_wait_interval_seconds)
                    continue
                exc.event_id = exc.event_id or request.event_id
                raise
            except InvalidInput as exc:  # bad columns, one class: name the request
                exc.event_id = exc.event_id or request.event_id
                raise
        return runs.record_run(home, spec, outcome, request=request, mlflow_uri=uri)


def waits_for_data(request: TrainingRequest) -> bool:
    """A drift request whose window has a start and no end trains on data that is
    still arriving: it waits (up to ``data_wait_seconds``) for ``min_rows`` of it.

    >>> from schemas.events import Window
    >>> waits_for_data(TrainingRequest(usecase="u", reason="drift",
    ...                                window=Window(start="2026-01-01T00:00:00Z")))
    True
    >>> waits_for_data(TrainingRequest(usecase="u", reason="manual"))
    False
    """
    window = request.window
    return (
        request.reason == "drift"
        and window is not None
        and window.start is not None
        and window.end is None
    )


async def run(
    settings: BatchTrainerSettings,
    data_source: TrainingData,
    stop: asyncio.Event,
    health: HealthServer,
    *,
    served: Mapping[str, UseCase] | None = None,
    known: Collection[str] = (),
) -> None:
    """The service body: serve ``served`` (the configured use cases unless given) until ``stop``."""
    if served is None:
        served = settings.load_usecases()
        known = set(settings.model_copy(update={"usecases": None}).load_usecases())
    await ensure_service_topics(settings, SERVICE, served)
    producer = await start_producer(settings.bootstrap)
    consumer = None
    try:
        consumer = await start_consumer(
            settings.bootstrap,
            [topics.TRAINING_REQUESTS],
            settings.consumer_group(SERVICE),
            mode=settings.consumer_mode,
            max_poll_interval_ms=settings.max_poll_interval_ms,
        )
        await resume_committed(consumer, settings, SERVICE)
        handler = TrainingRequestHandler(settings, served, data_source, producer, known)
        policy = DeadLetterPolicy(SERVICE, producer)
        loop = ConsumeLoop(consumer, handler, policy, max_records=1)
        health.ready = lambda: True
        logger.info("batch trainer ready usecases=%s", sorted(served))
        await loop.run(stop)
    finally:
        health.ready = lambda: False
        if consumer is not None:
            await consumer.stop()
        await producer.stop()


def load_training_data(reference: str) -> TrainingData:
    """The data source named ``module:function`` (the Feast offline store's by default)."""
    source: TrainingData = load_callable(reference, "DRIFTLINE_TRAINING_DATA", BatchTrainerError)
    return source


async def serve(settings: BatchTrainerSettings, stop: asyncio.Event, health: HealthServer) -> None:
    """The service body: the configured use cases, trained on ``settings.training_data``."""
    await run(settings, load_training_data(settings.training_data), stop, health)
