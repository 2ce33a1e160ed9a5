"""Publishing the imputation statistics: what serving imputes with.

Ingestion keeps each use case's running statistics (the preparer's state) in
its SQLite record, written with the seen ids at every flush. Inference runs
on other machines, with another ``DRIFTLINE_HOME``, so it cannot read that
record; it follows ``<uc>.stats`` instead, a compacted one-partition state
topic keyed by the use case, which holds the latest recorded snapshot.

Only recorded statistics are published (a snapshot of events whose rows the
broker has acknowledged), at most once per interval and only when they
changed: a snapshot is the whole state (tens of kilobytes), so publishing
per event or per batch would cost more than it tells. At start the state
restored from the record is published at once, so a fresh log, or an
inference service started after a broker restart, gets it without waiting
for traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiokafka import AIOKafkaProducer

from schemas import topics

logger = logging.getLogger(__name__)


class StatisticsPublisher:
    """Sends the latest recorded statistics of each use case to ``<uc>.stats``."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.latest: dict[str, dict[str, Any]] = {}
        self.published = 0
        self._dirty: set[str] = set()

    def record(self, usecase: str, state: dict[str, Any]) -> None:
        """``state`` was recorded: it is the one to publish next."""
        self.latest[usecase] = state
        self._dirty.add(usecase)

    async def publish(self) -> int:
        """Send every changed snapshot and wait for the broker; return how many were sent.

        A snapshot not sent stays due, for the next round: publishing is best
        effort (the SQLite record is the truth), so no error of it stops ingestion.
        """
        sent = 0
        for usecase in sorted(self._dirty):
            self._dirty.discard(usecase)
            state = self.latest[usecase]
            try:
                await self.producer.send_and_wait(
                    topics.stats(usecase), json.dumps(state).encode(), key=usecase.encode()
                )
            except Exception as exc:
                self._dirty.add(usecase)
                logger.warning(
                    "statistics not published topic=%s rows=%s error=%s",
                    topics.stats(usecase),
                    state.get("rows"),
                    exc,
                )
                continue
            sent += 1
        self.published += sent
        return sent

    async def run(self, stop: asyncio.Event, interval_seconds: float) -> None:
        """Publish now, then every ``interval_seconds`` what changed, until ``stop`` is set."""
        while True:
            await self.publish()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_seconds)
            if stop.is_set():
                return
