"""The registry (promoter) service: its consumers around one :class:`Registry`, until stopped.

The promotion history is replayed first (and MLflow's lineup restored onto a
log that has none), then ``training.requests`` is read once into the retrain
policy, then candidates and drift alerts are consumed in the service's group
and live predictions and labels are followed, in one loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping

import pandas as pd
from aiokafka import AIOKafkaConsumer

from schemas import topics
from schemas.events import Window
from schemas.usecase import UseCase
from services.common.bus import (
    CONTROL_FETCH_WAIT_MS,
    ensure_service_topics,
    read_to_end,
    start_consumer,
    start_producer,
)
from services.common.consume import ConsumeLoop, resume_committed
from services.common.deadletter import DeadLetterPolicy
from services.common.epoch import log_epoch
from services.common.health import HealthServer
from services.common.plugins import load_callable
from services.common.promotions.log import PromotionLog
from services.registry.errors import RegistryError
from services.registry.evaluation import Evaluator, GateData, ModelStore
from services.registry.live import LiveFeed
from services.registry.promoter import Registry
from services.registry.settings import RegistrySettings

logger = logging.getLogger(__name__)

SERVICE = "registry"


async def recall_requests(bootstrap: str, registry: Registry) -> int:
    """Replay ``training.requests`` to its current end into the retrain policy."""
    consumer = await start_consumer(bootstrap, [topics.TRAINING_REQUESTS], None)
    try:
        recalled = 0
        async for record in read_to_end(consumer, from_beginning=True, max_records=5000):
            recalled += registry.recall_request(record.value)
        return recalled
    finally:
        await consumer.stop()


async def run(
    settings: RegistrySettings,
    data_source: GateData,
    stop: asyncio.Event,
    health: HealthServer,
    *,
    served: Mapping[str, UseCase] | None = None,
    known: Collection[str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_ready: Callable[[Registry], None] | None = None,
) -> None:
    """The service body: serve ``served`` (the configured use cases unless given) until ``stop``.

    ``on_ready`` is called with the registry once the history is replayed (tests look in).
    """
    if served is None:
        served = settings.load_usecases()
        known = set(settings.model_copy(update={"usecases": None}).load_usecases())
    await ensure_service_topics(settings, SERVICE, served)
    producer = await start_producer(settings.bootstrap)
    workdir = settings.service_home(SERVICE) / "models"
    models = ModelStore(settings.home, settings.mlflow_uri, workdir)
    evaluator = Evaluator(data_source, models, settings.min_gate_rows)
    registry = Registry(settings, served, evaluator, producer, known=known, clock=clock)
    log: PromotionLog | None = None
    intake: AIOKafkaConsumer | None = None
    feed: LiveFeed | None = None
    try:
        log = await PromotionLog.open(settings.bootstrap, registry.on_promotion)
        registry.log = log
        await log.catch_up()
        epoch = await log_epoch(settings.bootstrap)
        await registry.finish_replay(epoch)
        # After the replay, which may restore the champion from MLflow: the warm-up's
        # imports (Feast) must not hold the GIL while a restarted stack waits to serve.
        evaluator.warm_up(list(served.values()))
        recalled = await recall_requests(settings.bootstrap, registry)
        logger.info("training requests recalled=%d", recalled)
        intake = await start_consumer(
            settings.bootstrap,
            [topics.MODELS_CANDIDATES, topics.DRIFT_ALERTS],
            settings.consumer_group(SERVICE),
            mode=settings.consumer_mode,
            fetch_max_wait_ms=CONTROL_FETCH_WAIT_MS,
        )
        await resume_committed(intake, settings, SERVICE)
        feed = await LiveFeed.open(settings.bootstrap, registry)
        loop = ConsumeLoop(
            intake, registry, DeadLetterPolicy(SERVICE, producer),
            max_records=100, poll_timeout_ms=settings.poll_timeout_ms,
        )  # fmt: skip
        health.ready = lambda: True
        if on_ready is not None:
            on_ready(registry)
        logger.info("registry ready usecases=%s", sorted(served))
        while not stop.is_set():
            await log.poll()
            await loop.run_once()
            await feed.poll(settings.poll_timeout_ms)
    finally:
        health.ready = lambda: False
        for consumer in (intake, feed.consumer if feed else None):
            if consumer is not None:
                await consumer.stop()
        if log is not None:
            await log.stop()
        await producer.stop()


def load_gate_data(reference: str) -> GateData:
    """The gate's data source named ``module:function`` (the Feast offline store's by default),
    imported at its first call.

    Importing the Feast store costs seconds of CPU that a restarted registry
    would pay before restoring the champion; the first call is the gate's
    warm-up, after the replay. A reference without a function, or whose
    module does not exist, fails at once.

    >>> load_gate_data("nowhere")
    Traceback (most recent call last):
    ...
    services.registry.errors.RegistryError: DRIFTLINE_GATE_DATA 'nowhere': expected module:function
    >>> load_gate_data("no_such_module:frame")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    services.registry.errors.RegistryError: ...: no module named 'no_such_module'
    """
    module, _, function = reference.partition(":")
    if not function:
        raise RegistryError(f"DRIFTLINE_GATE_DATA {reference!r}: expected module:function")
    try:
        found = importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package missing
        found = False
    if not found:
        raise RegistryError(f"DRIFTLINE_GATE_DATA {reference!r}: no module named {module!r}")
    return DeferredSource(reference)


class DeferredSource:
    """A data source ``module:function`` imported at the first call (once, from any thread)."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        self._source: GateData | None = None
        self._lock = threading.Lock()

    def __call__(self, spec: UseCase, window: Window | None) -> pd.DataFrame:
        if self._source is None:
            with self._lock:
                if self._source is None:
                    self._source = load_callable(
                        self.reference, "DRIFTLINE_GATE_DATA", RegistryError
                    )
        return self._source(spec, window)


async def serve(settings: RegistrySettings, stop: asyncio.Event, health: HealthServer) -> None:
    """The service body: the configured use cases, gated on ``settings.gate_data``."""
    await run(settings, load_gate_data(settings.gate_data), stop, health)
