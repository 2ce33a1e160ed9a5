"""``driftline watch``: tail a topic."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer

from services.common.bus import wait_for_broker


def render_value(raw: bytes | None) -> Any:
    """A message value as JSON when it is JSON, else as text."""
    if raw is None:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


async def watch_topic(
    bootstrap: str,
    topic: str,
    on_message: Callable[[Any, Any], None],
    *,
    from_beginning: bool = False,
    max_messages: int | None = None,
    idle_timeout: float | None = None,
) -> int:
    """Call ``on_message(record, value)`` for each message; return how many were seen.

    Stops after ``max_messages``, or after ``idle_timeout`` seconds without a new one.
    """
    await wait_for_broker(bootstrap, timeout=idle_timeout or 60.0)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    seen = 0
    last = time.monotonic()
    try:
        while max_messages is None or seen < max_messages:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            for records in batches.values():
                for record in records:
                    on_message(record, render_value(record.value))
                    seen += 1
                    last = time.monotonic()
                    if max_messages is not None and seen >= max_messages:
                        return seen
            if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                return seen
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
    return seen
