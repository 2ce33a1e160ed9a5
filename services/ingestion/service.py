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

from services.common.bus import FILLED_BATCH_BYTES, service_clients, start_producer
from services.common.consume import ConsumeLoop, resume_committed
from services.common.health import HealthServer
from services.common.seen import open_seen_ids
from services.ingestion.processor import SERVICE, Ingestion
from services.ingestion.settings import IngestionSettings
from services.ingestion.statistics import PartitionStatistics

__all__ = ["SERVICE", "IngestionSettings", "serve"]

logger = logging.getLogger(__name__)

# How long a clean stop waits for the last statistics snapshot to be published.
FINAL_PUBLISH_SECONDS = 5.0


async def serve(settings: IngestionSettings, stop: asyncio.Event, health: HealthServer) -> None:
    specs = settings.load_usecases()
    with contextlib.closing(open_seen_ids(settings, SERVICE, settings.state_url)) as seen:
        async with (
            service_clients(settings, SERVICE, specs) as (consumer, producer),
            contextlib.AsyncExitStack() as stack,
        ):
            salt = settings.pseudonym_salt.get_secret_value()
            statistics = PartitionStatistics(specs, seen, producer, settings.bootstrap, salt=salt)
            rows_producer = await start_producer(
                settings.bootstrap,
                max_batch_size=FILLED_BATCH_BYTES,  # filled by RowBatch
            )
            stack.push_async_callback(rows_producer.stop)
            ingestion = Ingestion(statistics, rows_producer)
            await resume_committed(consumer, settings, SERVICE)
            loop = ConsumeLoop(
                consumer,
                ingestion,
                ingestion.policy,
                max_records=settings.batch_events,
            )
            publishing = asyncio.create_task(
                statistics.run(stop, settings.stats_publish_seconds),
                name="statistics-publisher",
            )
            health.ready = lambda: True
            logger.info("ingesting usecases=%s", sorted(specs))
            try:
                await loop.run(stop)
                if stop.is_set():  # a clean stop: the newest snapshot for whoever takes over
                    await asyncio.wait({publishing}, timeout=FINAL_PUBLISH_SECONDS)
            finally:
                publishing.cancel()
                await asyncio.wait({publishing})  # a cancel of this body still propagates
