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
import threading
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from schemas import topics
from schemas.events import ModelCandidate, TrainingRequest, Window
from schemas.usecase import UseCase
from services.batch_trainer.data import ArrivalPace, RowCount, TrainingData, resolve_window
from services.batch_trainer.errors import BatchTrainerError, NotEnoughData, UnknownUseCase
from services.batch_trainer.settings import BatchTrainerSettings
from services.batch_trainer.warm import Warmup, trainer_steps
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
        warmup: Warmup | None = None,
        row_count: RowCount | None = None,
    ) -> None:
        self.settings = settings
        self.row_count = row_count
        self.warmup = warmup
        self.served = dict(served)
        self.known = set(known) | set(served)
        self.data_source = data_source
        self.producer = producer
        self.candidates = 0
        # Set when the service stops: a request waiting for data (in its worker thread)
        # ends its wait at once, uncommitted, to be read again at the next start.
        self.stopping = threading.Event()

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
        try:
            candidate, finish = await asyncio.to_thread(self.train_and_register, spec, request)
        except TrainingStopped:
            logger.info(
                "stopped waiting for data request_id=%s: read again at start", request.request_id
            )
            raise asyncio.CancelledError from None  # not a dead letter, not committed
        await self.producer.send_and_wait(
            topics.MODELS_CANDIDATES, encode(candidate), key=topics.CANDIDATES.key_of(candidate)
        )
        self.candidates += 1
        if finish is not None:  # the run's plots and runners-up, after the candidate is out
            await asyncio.to_thread(finish)

    async def flush(self) -> None:
        """Nothing buffered: each candidate is acknowledged by the broker before the next."""

    def train_and_register(
        self, spec: UseCase, request: TrainingRequest
    ) -> tuple[ModelCandidate, Callable[[], None] | None]:
        """The blocking part: train (or find the earlier run) and register in MLflow.

        Returns the candidate and what completes its run once it is published
        (None for an earlier run's candidate, republished)."""
        if self.warmup is not None:
            self.warmup.wait()
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
            return earlier, None
        waiting = waits_for_data(request)
        deadline = time.monotonic() + self.settings.data_wait_seconds
        pace = ArrivalPace(spec.models.batch.min_rows, self.settings.data_wait_interval_seconds)
        while True:
            now = datetime.now(UTC) if waiting else request.occurred_at
            window = resolve_window(spec, request.window, now)
            if waiting and time.monotonic() < deadline:
                found = self._count(spec, window)
                if found is not None and found < pace.needed:
                    began = window.start
                    elapsed = (now - began).total_seconds() if began is not None else None
                    self._sleep(pace.wait(found, time.monotonic(), elapsed))
                    continue
            try:
                frame = self.data_source(spec, window)
                outcome = train_candidate(spec, frame, window, device=self.settings.device)
                break
            except NotEnoughData as exc:
                if waiting and time.monotonic() < deadline:
                    logger.info("waiting for data request_id=%s: %s", request.request_id, exc)
                    self._sleep(self.settings.data_wait_interval_seconds)
                    continue
                exc.event_id = exc.event_id or request.event_id
                raise
            except InvalidInput as exc:  # bad columns, one class: name the request
                exc.event_id = exc.event_id or request.event_id
                raise
        run = runs.register_run(home, spec, outcome, request=request, mlflow_uri=uri)
        return run.candidate, run.finish

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` for data; raise :class:`TrainingStopped` if the service stops."""
        if self.stopping.wait(seconds):
            raise TrainingStopped

    def _count(self, spec: UseCase, window: Window) -> int | None:
        """The source's cheap count of ``window``'s rows (None without one), logged when short."""
        if self.row_count is None:
            return None
        found = self.row_count(spec, window)
        needed = spec.models.batch.min_rows
        if found < needed:
            logger.info("waiting for data usecase=%s: %d of %d rows", spec.name, found, needed)
        return found


class TrainingStopped(Exception):
    """The service stopped while a request waited for its data."""


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
    row_count: RowCount | None = None,
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
        steps = trainer_steps(served, settings.home, settings.mlflow_uri, data_source)
        warmup = Warmup(steps).start() if settings.warm_up else None
        handler = TrainingRequestHandler(
            settings,
            served,
            data_source,
            producer,
            known,
            warmup,
            row_count=row_count,
        )
        policy = DeadLetterPolicy(SERVICE, producer)
        loop = ConsumeLoop(consumer, handler, policy, max_records=1)
        health.ready = lambda: True
        logger.info("batch trainer ready usecases=%s", sorted(served))
        stopping = asyncio.create_task(stop.wait(), name="stop-relay")
        stopping.add_done_callback(lambda _: handler.stopping.set())
        try:
            await loop.run(stop)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not handler.stopping.is_set() or (current is not None and current.cancelling()):
                raise  # cancelled from outside, not a waiting request that was stopped
            # A waiting request was stopped: its offset stays uncommitted.
        finally:
            stopping.cancel()
    finally:
        health.ready = lambda: False
        if consumer is not None:
            await consumer.stop()
        await producer.stop()


def load_training_data(reference: str) -> TrainingData:
    """The data source named ``module:function`` (the Feast offline store's by default)."""
    source: TrainingData = load_callable(reference, "DRIFTLINE_TRAINING_DATA", BatchTrainerError)
    return source


def load_row_count(reference: str) -> RowCount | None:
    """The data source module's ``labelled_rows(spec, window)``, if it has one: a cheap
    count, at least the rows the source would return, that a waiting request reads
    instead of the whole training set (the Feast store's skips its point-in-time join)."""
    module = reference.partition(":")[0]
    try:
        count: RowCount = load_callable(f"{module}:labelled_rows", "DRIFTLINE_TRAINING_DATA")
    except ValueError:
        return None
    return count


async def serve(settings: BatchTrainerSettings, stop: asyncio.Event, health: HealthServer) -> None:
    """The service body: the configured use cases, trained on ``settings.training_data``."""
    reference = settings.training_data
    source, count = load_training_data(reference), load_row_count(reference)
    await run(settings, source, stop, health, row_count=count)
