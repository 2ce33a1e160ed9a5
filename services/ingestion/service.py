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

from schemas import topics
from services.common.bus import consumer_and_producer, ensure_service_topics
from services.common.consume import ConsumeLoop, resume_committed
from services.common.health import HealthServer
from services.common.seen import SeenIds
from services.ingestion.processor import SERVICE, Ingestion
from services.ingestion.settings import IngestionSettings

__all__ = ["SERVICE", "IngestionSettings", "serve"]
TOPICS = topics.SERVICE_TOPICS[SERVICE]

logger = logging.getLogger(__name__)


async def serve(settings: IngestionSettings, stop: asyncio.Event, health: HealthServer) -> None:
    specs = settings.load_usecases()
    sources = [t for topic in TOPICS.reads for t in topic.names(specs)]
    await ensure_service_topics(settings, SERVICE, specs)
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
