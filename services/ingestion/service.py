"""Running ingestion: topics first, then the faust worker with a health endpoint."""

from __future__ import annotations

import asyncio
import logging

import faust
from pydantic import Field, SecretStr

from schemas import topics
from services.common.bus import ensure_topics, wait_for_broker
from services.common.health import HealthServer
from services.common.logs import configure_logging
from services.common.settings import CommonSettings
from services.ingestion.app import SERVICE, Ingestion

logger = logging.getLogger(__name__)


class IngestionSettings(CommonSettings):
    """Ingestion's settings (``DRIFTLINE_*``)."""

    pseudonym_salt: SecretStr = Field(
        default=SecretStr(""), description="secret mixed into pseudonymized fields"
    )


async def prepare_topics(settings: CommonSettings, usecases: list[str]) -> None:
    """Wait for the broker and create the topics faust reads and writes (faust would
    otherwise let the broker auto-create them with its own partition count)."""
    await wait_for_broker(settings.bootstrap, settings.broker_wait_seconds)
    names = [
        t for uc in usecases for t in (topics.raw(uc), topics.features(uc), topics.deadletter(uc))
    ]
    await ensure_topics(settings.bootstrap, names, settings.partitions)


def main() -> None:
    settings = IngestionSettings()
    configure_logging(settings.log_level)
    specs = settings.load_usecases()
    asyncio.run(prepare_topics(settings, list(specs)))
    ingestion = Ingestion(settings, specs, salt=settings.pseudonym_salt.get_secret_value())
    app = ingestion.app
    health = HealthServer(SERVICE, settings.health_host, settings.health_port)
    health.ready = lambda: False

    @app.task
    async def serve_health() -> None:
        await health.start()
        health.ready = lambda: True

    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()
