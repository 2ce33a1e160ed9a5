"""Running a service: logging, signals, the broker wait, the health endpoint, the lease.

Every ``services/<name>/__main__.py`` ends in :func:`run_service`, so each
service starts, waits and stops the same way. A singleton started with
``DRIFTLINE_STANDBY=true`` runs its body only while it holds its lease, and
stands by otherwise (``services/common/standby.py``).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import signal
import threading
from typing import Any

from aiokafka.errors import KafkaError

from services.common.bus import wait_for_broker
from services.common.epoch import log_epoch, watch_log
from services.common.errors import BrokerUnavailable
from services.common.health import HealthServer
from services.common.logs import configure_logging
from services.common.settings import CommonSettings
from services.common.standby import ServiceBody, guarded

logger = logging.getLogger(__name__)

__all__ = ["BROKER_ERRORS", "ServiceBody", "preload", "run_service", "serve"]


async def serve(service: str, settings: CommonSettings, body: ServiceBody) -> None:
    """Wait for the broker, start the health endpoint, run ``body`` until a stop signal.

    While ``body`` runs, the broker's log is watched: when it is another log
    (the embedded broker died and an empty one took its address), ``body`` is
    stopped through its stop event and started again on the new log, from
    the service's durable state (checkpoints, Feast, MLflow), in this process.
    A singleton with ``settings.standby`` takes its lease on each log first.
    """
    body = guarded(service, settings, body)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    health = HealthServer(service, settings.health_host, settings.health_port)
    health.ready = lambda: False
    await health.start()
    freezing = asyncio.create_task(freeze_once_ready(health), name="gc-freeze")
    try:
        logger.info("starting service=%s bootstrap=%s", service, settings.bootstrap)
        while not stop.is_set():
            await wait_for_broker(settings.bootstrap, settings.broker_wait_seconds)
            reason = await _run_on_one_log(service, settings, body, stop, health)
            if reason is None or stop.is_set():
                break
            health.ready = lambda: False
            logger.warning("service=%s: %s; starting again from the durable state", service, reason)
    finally:
        freezing.cancel()
        await health.stop()
        logger.info("stopped service=%s", service)


async def freeze_once_ready(health: HealthServer, poll_seconds: float = 0.5) -> None:
    """Once the service is first ready, leave what its start made out of the collector.

    ``gc.freeze`` moves every object alive then (the imports of Feast, river,
    MLflow, torch and the restored state: several hundred thousand objects) to
    a generation no collection walks, so each full collection walks only what
    the service made since. Objects made later are collected as before; the
    inference service does the same in its uvicorn server
    (``services.inference.http.Server``).
    """
    while not health.ready():
        await asyncio.sleep(poll_seconds)
    freeze_start()


def freeze_start() -> None:
    """Every object alive now out of the collector's walks (see :func:`freeze_once_ready`)."""
    gc.freeze()
    logger.info("frozen out of the collector: %d objects of the start", gc.get_freeze_count())


# What a lost broker raises in a body: the body starts again once the broker answers.
BROKER_ERRORS = (KafkaError, BrokerUnavailable, ConnectionError)
# How long a body told to stop on an old log may take before it is cancelled. Cancelling
# is safe at any point (effects are durable before commits, and idempotent), and what it
# would still do belongs to the old log.
STOP_GRACE_SECONDS = 10.0


async def _run_on_one_log(
    service: str,
    settings: CommonSettings,
    body: ServiceBody,
    stop: asyncio.Event,
    health: HealthServer,
) -> str | None:
    """Run ``body`` until ``stop`` (None) or until it must start again (why)."""
    try:
        epoch = await log_epoch(settings.bootstrap)
    except BROKER_ERRORS as exc:
        await asyncio.sleep(1.0)
        return f"the broker was lost at start ({type(exc).__name__})"
    body_stop = asyncio.Event()
    watch = asyncio.create_task(watch_log(settings.bootstrap, epoch), name="log-watch")
    relay = asyncio.create_task(stop.wait(), name="stop-relay")
    watch.add_done_callback(lambda _: body_stop.set())
    relay.add_done_callback(lambda _: body_stop.set())
    running: asyncio.Future[None] = asyncio.ensure_future(body(body_stop, health))
    renewed = False
    try:
        either: set[asyncio.Future[Any]] = {running, watch}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        renewed = watch.done() and not watch.cancelled() and watch.exception() is None
        if renewed and not running.done():
            # Told to stop; a body waiting on a broker that is gone may not hear it.
            finished, _ = await asyncio.wait({running}, timeout=STOP_GRACE_SECONDS)
            if not finished:
                logger.warning("service=%s did not stop on the old log; cancelled", service)
                running.cancel()
        try:
            await running
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if (current is not None and current.cancelling()) or stop.is_set():
                raise  # this service itself is being stopped
            if not renewed:
                # Not cancelled by us: aiokafka's consumer.stop() can raise CancelledError
                # out of its fetcher when the broker is gone (seen in a broker-crash run).
                logger.warning("service=%s body ended cancelled with the broker away", service)
                await asyncio.sleep(1.0)
                return "the broker was lost (a client was cancelled under the body)"
        except BROKER_ERRORS as exc:
            if stop.is_set():
                return None
            logger.warning("service=%s lost the broker: %s", service, exc, exc_info=True)
            await asyncio.sleep(1.0)  # then wait_for_broker: no tight loop while it is away
            return f"the broker was lost ({type(exc).__name__})"
        except Exception:
            if not renewed:
                raise
            logger.warning(
                "service=%s stopped on the old log with an error", service, exc_info=True
            )
    finally:
        for task in (watch, relay, running):
            task.cancel()
    return "the broker's log is new" if renewed and not stop.is_set() else None


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
