"""Running ingestion: topics first, then the consume loop with a health endpoint.

Why the aiokafka :class:`ConsumeLoop` and not a faust agent: on the embedded
broker, a faust worker restarted after SIGKILL rejoins its group while the
killed member is still in it; the rebalance that follows made faust skip and
acknowledge events fetched in the previous generation, so their offsets were
committed without a row (15 of 3,000 events in one run, 1 in others). Here
offsets are committed only after every row of a batch is acknowledged and
recorded (see :mod:`services.ingestion.processor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pydantic import Field, SecretStr

from schemas import topics
from services.common.bus import consumer_and_producer, ensure_topics
from services.common.consume import ConsumeLoop, resume_committed
from services.common.health import HealthServer
from services.common.runtime import run_service
from services.common.seen import SeenIds
from services.common.settings import CommonSettings
from services.ingestion.processor import SERVICE, Ingestion

logger = logging.getLogger(__name__)


class IngestionSettings(CommonSettings):
    """Ingestion's settings (``DRIFTLINE_*``)."""

    pseudonym_salt: SecretStr = Field(
        default=SecretStr(""), description="secret mixed into pseudonymized fields"
    )
    batch_events: int = Field(default=2000, gt=0, description="most raw events in one batch")
    stats_publish_seconds: float = Field(
        default=5.0,
        gt=0,
        description="how often the recorded imputation statistics go to <uc>.stats when changed",
    )


async def serve(settings: IngestionSettings, stop: asyncio.Event, health: HealthServer) -> None:
    specs = settings.load_usecases()
    sources = [topics.raw(uc) for uc in specs]
    outputs = [
        t for uc in specs for t in (topics.features(uc), topics.deadletter(uc), topics.stats(uc))
    ]
    await ensure_topics(
        settings.bootstrap,
        sources + outputs,
        settings.partitions,
        retention_ms=settings.retention_ms,
    )
    group = settings.consumer_group(SERVICE)
    with contextlib.closing(SeenIds(settings.service_home(SERVICE) / "seen.db")) as seen:
        async with consumer_and_producer(
            settings.bootstrap, sources, group, mode=settings.consumer_mode
        ) as (consumer, producer):
            salt = settings.pseudonym_salt.get_secret_value()
            ingestion = Ingestion(specs, seen, producer, settings.bootstrap, salt=salt)
            await resume_committed(consumer, settings, SERVICE)
            loop = ConsumeLoop(
                consumer,
                ingestion,
                ingestion.policy,
                max_records=settings.batch_events,
            )
            publishing = asyncio.create_task(
                ingestion.statistics.run(stop, settings.stats_publish_seconds),
                name="statistics-publisher",
            )
            health.ready = lambda: True
            logger.info("ingesting usecases=%s", sorted(specs))
            try:
                await loop.run(stop)
            finally:
                publishing.cancel()
                await asyncio.wait({publishing})  # a cancel of this body still propagates


def main() -> None:
    settings = IngestionSettings()
    run_service(SERVICE, settings, lambda stop, health: serve(settings, stop, health))
