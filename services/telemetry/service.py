"""Running telemetry: the faust worker, the console on its port, health like every service.

On a new log (the broker was replaced) :func:`serve` starts again with a new
faust app: its tables are rebuilt from the new log's changelogs, which are
empty, as every other view of that log is.
"""

from __future__ import annotations

import asyncio
import logging

from services.common.bus import start_producer
from services.common.health import HealthServer
from services.common.runtime import run_service
from services.telemetry.console import Console, ConsolePortBusy
from services.telemetry.settings import TelemetrySettings
from services.telemetry.windows import Telemetry

logger = logging.getLogger(__name__)

SERVICE = "telemetry"


async def serve(settings: TelemetrySettings, stop: asyncio.Event, health: HealthServer) -> None:
    for chatty in ("faust", "mode"):  # each start, rebalance and recovery table at INFO
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.root.level))
    specs = settings.load_usecases()
    telemetry = Telemetry(settings, specs)
    producer = await start_producer(settings.bootstrap)
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    console = Console(telemetry, producer, settings.home, api_key=key)
    try:
        # The console first: a port that is taken fails the start at once, not after faust's.
        await console.start(settings.console_host, settings.console_port)
        await telemetry.start()
        health.ready = lambda: True
        logger.info("telemetry usecases=%s app_id=%s", sorted(specs), telemetry.app_id)
        await stop.wait()
    finally:
        await console.stop()
        await telemetry.stop()
        await producer.stop()


def main() -> None:
    settings = TelemetrySettings()
    try:
        run_service(SERVICE, settings, lambda stop, health: serve(settings, stop, health))
    except ConsolePortBusy as exc:  # a setting to change, not a bug: the reason, no traceback
        logger.error("telemetry cannot start: %s", exc)
        raise SystemExit(2) from None
