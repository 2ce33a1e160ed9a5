"""A service's start is frozen out of the collector once it is first ready, not before."""

from __future__ import annotations

import asyncio
import gc

from services.common.health import HealthServer
from services.common.runtime import freeze_once_ready


async def test_the_start_is_frozen_once_the_service_is_ready() -> None:
    ready = False
    health = HealthServer("test", "127.0.0.1", 0, ready=lambda: ready)
    gc.unfreeze()
    try:
        waiting = asyncio.create_task(freeze_once_ready(health, poll_seconds=0.01))
        await asyncio.sleep(0.05)
        assert not waiting.done() and gc.get_freeze_count() == 0  # still starting
        ready = True
        await asyncio.wait_for(waiting, timeout=2)
        assert gc.get_freeze_count() > 10_000  # the imports of this process, at least
    finally:
        gc.unfreeze()
