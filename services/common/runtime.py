"""Running a service: logging, signals, the broker wait, the health endpoint.

Every ``services/<name>/__main__.py`` ends in :func:`run_service`, so each
service starts, waits and stops the same way.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import threading
from collections.abc import Awaitable, Callable

from services.common.bus import wait_for_broker
from services.common.epoch import log_epoch, watch_log
from services.common.health import HealthServer
from services.common.logs import configure_logging
from services.common.settings import CommonSettings

logger = logging.getLogger(__name__)

ServiceBody = Callable[[asyncio.Event, HealthServer], Awaitable[None]]


async def serve(service: str, settings: CommonSettings, body: ServiceBody) -> None:
    """Wait for the broker, start the health endpoint, run ``body`` until a stop signal.

    While ``body`` runs, the broker's log is watched: when it is another log
    (the embedded broker died and an empty one took its address), ``body`` is
    stopped through its stop event and started again on the new log, from
    the service's durable state (checkpoints, Feast, MLflow), in this process.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    health = HealthServer(service, settings.health_host, settings.health_port)
    health.ready = lambda: False
    await health.start()
    try:
        logger.info("starting service=%s bootstrap=%s", service, settings.bootstrap)
        while not stop.is_set():
            await wait_for_broker(settings.bootstrap, settings.broker_wait_seconds)
            if not await _run_on_one_log(service, settings, body, stop, health):
                break
            health.ready = lambda: False
            logger.warning(
                "service=%s: the broker's log is new; starting again from the durable state",
                service,
            )
    finally:
        await health.stop()
        logger.info("stopped service=%s", service)


async def _run_on_one_log(
    service: str,
    settings: CommonSettings,
    body: ServiceBody,
    stop: asyncio.Event,
    health: HealthServer,
) -> bool:
    """Run ``body`` until ``stop`` or a new log; True when it ended for a new log."""
    epoch = await log_epoch(settings.bootstrap)
    body_stop = asyncio.Event()
    watch = asyncio.create_task(watch_log(settings.bootstrap, epoch), name="log-watch")
    relay = asyncio.create_task(stop.wait(), name="stop-relay")
    watch.add_done_callback(lambda _: body_stop.set())
    relay.add_done_callback(lambda _: body_stop.set())
    try:
        await body(body_stop, health)
    except Exception:
        if not (watch.done() and not watch.cancelled()):
            raise
        logger.warning("service=%s stopped on the old log with an error", service, exc_info=True)
    finally:
        renewed = watch.done() and not watch.cancelled()
        watch.cancel()
        relay.cancel()
    return renewed and not stop.is_set()


def preload(*modules: str) -> None:
    """Import ``modules`` in a background thread while the service starts.

    For a heavy import the service needs soon after start (mlflow, about 2 s:
    the restored champion is loaded and scored through it), not at once.
    """

    def load() -> None:
        for module in modules:
            importlib.import_module(module)

    threading.Thread(target=load, name="preload", daemon=True).start()


def run_service(service: str, settings: CommonSettings, body: ServiceBody) -> None:
    """The entry point of a service process."""
    configure_logging(settings.log_level)
    asyncio.run(serve(service, settings, body))
