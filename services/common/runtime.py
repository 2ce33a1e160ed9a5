"""Running a service: logging, signals, the broker wait, the health endpoint.

Every ``services/<name>/__main__.py`` ends in :func:`run_service`, so each
service starts, waits and stops the same way.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from services.common.bus import wait_for_broker
from services.common.health import HealthServer
from services.common.logs import configure_logging
from services.common.settings import CommonSettings

logger = logging.getLogger(__name__)

ServiceBody = Callable[[asyncio.Event, HealthServer], Awaitable[None]]


async def serve(service: str, settings: CommonSettings, body: ServiceBody) -> None:
    """Wait for the broker, start the health endpoint, run ``body`` until a stop signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    health = HealthServer(service, settings.health_host, settings.health_port)
    health.ready = lambda: False
    await health.start()
    try:
        logger.info("starting service=%s bootstrap=%s", service, settings.bootstrap)
        await wait_for_broker(settings.bootstrap, settings.broker_wait_seconds)
        await body(stop, health)
    finally:
        await health.stop()
        logger.info("stopped service=%s", service)


def run_service(service: str, settings: CommonSettings, body: ServiceBody) -> None:
    """The entry point of a service process."""
    configure_logging(settings.log_level)
    asyncio.run(serve(service, settings, body))
