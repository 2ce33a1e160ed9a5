"""Running the features service: Feast apply at start, then the consume loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.common import featurestore
from services.common.bus import service_clients
from services.common.consume import ConsumeLoop, resume_committed
from services.common.deadletter import DeadLetterPolicy
from services.common.health import HealthServer
from services.common.seen import open_seen_ids
from services.features.settings import FeaturesSettings
from services.features.sink import FeatureSink

logger = logging.getLogger(__name__)

SERVICE = "features"


async def serve(settings: FeaturesSettings, stop: asyncio.Event, health: HealthServer) -> None:
    specs = settings.load_usecases()
    store = await asyncio.to_thread(featurestore.open_store, settings, list(specs.values()))
    logger.info("feast definitions applied usecases=%s", sorted(specs))
    with contextlib.closing(open_seen_ids(settings, SERVICE, settings.state_url)) as seen:
        async with service_clients(settings, SERVICE, specs) as (consumer, producer):
            sink = FeatureSink(
                store,
                specs,
                seen,
                settings.home,
                online_last_write_wins=settings.feast_profile == "embedded",
            )
            await resume_committed(consumer, settings, SERVICE)
            policy = DeadLetterPolicy(SERVICE, producer)
            loop = ConsumeLoop(consumer, sink, policy, max_records=settings.batch_rows)
            health.ready = lambda: True
            await loop.run(stop)
