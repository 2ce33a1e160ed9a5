"""The faust app: tumbling and hopping window tables over the system's topics.

One faust worker reads every topic of the configured use cases and the
global ones. Windowed tables (each backed by a faust changelog topic):

- ``throughput``: events per topic, tumbling 1 s windows, kept 2 minutes;
- ``deadletter_reasons``: dead letters per use case and reason, hopping
  60 s windows every 10 s;
- ``latency_ms``: prediction latencies per use case in logarithmic buckets,
  tumbling 10 s windows;
- ``predictions_by_variant``: predictions per use case and variant, hopping
  60 s windows every 10 s.

Plain tables keep the loop's rare events (candidates, alerts, training
requests, promotions: a table each), so a restarted worker rebuilds its
:class:`~services.telemetry.story.Story` from their changelogs. Each table has
the partition count of the topics it is written from, as faust requires; how
they are laid out is :mod:`services.telemetry.layout`. Every window is stamped
with the record's own time, so a replay lands in the windows it happened in.

Approximate by design: faust may count a record twice or not at all around
a crash or rebalance (see the README), which a live view tolerates and the
data path does not, so nothing else in driftline runs on faust.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import faust

from schemas.events import DeadLetter, Prediction, SystemEvent
from schemas.usecase import UseCase
from services.common.bus import ensure_topics
from services.common.errors import InvalidInput
from services.common.serde import decode
from services.common.settings import CommonSettings
from services.telemetry.layout import (
    HOPPING_SIZE,
    HOPPING_STEP,
    WINDOWS,
    Layout,
    discover,
    table_name,
)
from services.telemetry.story import Story

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
# Upper bounds of the latency buckets, ms: 0.1 ms to about 26 s, each 1.25 times the last.
LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(0.1 * 1.25**i for i in range(57))
# A record's topic, value and time (seconds), handled inside faust's stream iteration.
Handler = Callable[[str, bytes | None, float], None]


def latency_bucket(latency_ms: float) -> int:
    """The index of the first bucket whose bound holds ``latency_ms``.

    >>> latency_bucket(0.05), latency_bucket(0.1), latency_bucket(0.11), latency_bucket(1e9)
    (0, 0, 1, 56)
    """
    if latency_ms <= LATENCY_BOUNDS_MS[0]:
        return 0
    index = math.ceil(math.log(latency_ms / LATENCY_BOUNDS_MS[0], 1.25) - 1e-9)
    return min(index, len(LATENCY_BOUNDS_MS) - 1)


def percentiles(counts: dict[int, int], quantiles: Iterable[float]) -> dict[str, float]:
    """Percentiles of a bucket histogram, each the upper bound of its bucket (within 25%).

    >>> percentiles({0: 50, 10: 49, 20: 1}, [0.5, 0.99, 1.0])
    {'p50': 0.1, 'p99': 0.931, 'p100': 8.674}
    """
    total = sum(counts.values())
    found: dict[str, float] = {}
    if not total:
        return found
    for q in quantiles:
        seen = 0
        for index in sorted(counts):
            seen += counts[index]
            if seen >= q * total:
                found[f"p{round(q * 100)}"] = round(LATENCY_BOUNDS_MS[index], 3)
                break
    return found


def reason_kind(service: str, reason: str) -> str:
    """A dead letter's reason without the value that differs from one letter to the next.

    >>> reason_kind("ingestion", "field 'age': expected an integer in [18, 100], got 500")
    "ingestion: field 'age': expected an integer in [N, N]"
    """
    text = re.sub(r",? got .*$", "", reason.strip())
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return f"{service}: {text[:120]}"


class Telemetry:
    """The faust worker, its tables and the stories they feed, for every configured use case.

    The faust app and its tables are made at :meth:`start`, once the broker has
    said how many partitions each source topic has (:mod:`~services.telemetry.layout`);
    before that the readers answer from the stories and an empty set of windows.
    """

    def __init__(self, settings: CommonSettings, specs: dict[str, UseCase]) -> None:
        self.settings = settings
        self.specs = specs
        self.stories = {name: Story.for_usecase(spec) for name, spec in specs.items()}
        self.totals: dict[str, int] = {}
        self.app_id = settings.consumer_group("telemetry")
        self.app: faust.App | None = None
        self.layout: Layout | None = None
        # Per partition count of the use-case streams: its windowed tables by what they keep.
        self._windows: dict[int, dict[str, Any]] = {}
        # Each loop topic's table of its events (the event's JSON by event id).
        self._loop: dict[str, Any] = {}
        # Counts not yet added to their table, by (partition count, table, key, time inside
        # the window step), and when each partition count's tables were last written.
        self._pending: dict[tuple[int, str, str, float], int] = {}
        self._flushed: dict[int, float] = {}
        self._replayed = False

    async def start(self) -> None:
        """Lay the tables out by the source topics' partitions, make their changelogs, start."""
        self.layout = layout = await discover(self.settings, self.specs)
        self.app = self._build(layout)
        wanted = layout.changelogs(self.app_id)
        configs = layout.changelog_configs(self.app_id)
        for partitions in sorted(set(wanted.values())):
            names = [n for n, p in wanted.items() if p == partitions]
            await ensure_topics(self.settings.bootstrap, names, partitions, configs=configs)
        await self.app.start()

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop()

    def _build(self, layout: Layout) -> faust.App:
        app = faust.App(
            self.app_id,
            broker=f"kafka://{self.settings.bootstrap}",
            store="memory://",
            web_enabled=False,
            autodiscover=False,
            topic_partitions=self.settings.partitions,
            consumer_auto_offset_reset="earliest",
            # The embedded broker waits the whole rebalance timeout at a first join.
            broker_rebalance_timeout=3.0,
            broker_session_timeout=6.0,
            broker_heartbeat_interval=1.0,
            table_cleanup_interval=30.0,
        )
        for partitions, names in layout.stream_groups().items():
            self._windows[partitions] = {
                base: app.Table(
                    table_name(base, partitions), default=int, partitions=partitions
                ).using_window(window)
                for base, window in WINDOWS.items()
            }
            self._agent(app, names, f"telemetry_streams_p{partitions}", self._on_stream)
        for topic, name in layout.loop_tables().items():
            self._loop[topic] = app.Table(name, default=str, partitions=layout.partitions[topic])
            self._agent(app, [topic], f"telemetry_{name.replace('-', '_')}", self._on_loop_event)
        # faust calls each table's callbacks once every table is restored: one is enough.
        next(iter(self._loop.values())).on_recover(self._recovered)
        return app

    def _agent(self, app: faust.App, names: list[str], name: str, handle: Handler) -> None:
        source = app.topic(*names, value_serializer="raw", key_serializer="raw")

        async def agent(stream: Any) -> None:
            async for event in stream.events():
                message = event.message
                handle(message.topic, event.value, message.timestamp)  # seconds

        agent.__name__ = agent.__qualname__ = name
        app.agent(source, name=name)(agent)

    # ---- feeding (inside faust's stream iteration) ------------------------------------

    def _count(self, partitions: int, table: str, key: str, at: float) -> None:
        """One more in ``key``'s windows of ``at``, added to the table at the next flush.

        A table write is a changelog record: counting every event one by one wrote
        about one record per event and fell behind the demo's rate on two busy cores
        (faust's "producer buffer full"). Counts are kept here per window step and
        written at most every ``FLUSH_SECONDS``, inside the stream's iteration as
        faust requires (by the agent of the streams of the tables' partition count);
        readers add what is pending, so nothing waits for a flush.
        """
        step = WINDOWS[table].step
        middle = math.floor(at / step) * step + step / 2
        slot = (partitions, table, key, middle)
        self._pending[slot] = self._pending.get(slot, 0) + 1

    def _flush_if_due(self, partitions: int) -> None:
        now = time.monotonic()
        if now - self._flushed.setdefault(partitions, now) < FLUSH_SECONDS:
            return
        tables = self._windows[partitions]
        mine = [slot for slot in self._pending if slot[0] == partitions]
        for slot in mine:
            _, name, key, middle = slot
            tables[name].relative_to(middle)[key] += self._pending.pop(slot)
        self._flushed[partitions] = time.monotonic()

    def _on_stream(self, topic: str, value: bytes | None, at: float) -> None:
        partitions = self.layout.partitions[topic] if self.layout is not None else 1
        self._count(partitions, "throughput", topic, at)
        self.totals[topic] = self.totals.get(topic, 0) + 1
        self._observe_stream(partitions, topic, value, at)
        self._flush_if_due(partitions)

    def _observe_stream(self, partitions: int, topic: str, value: bytes | None, at: float) -> None:
        usecase, _, suffix = topic.rpartition(".")
        story = self.stories.get(usecase)
        if story is None or suffix in ("raw", "features"):
            return
        if suffix == "labels":
            story.observe_label(value, at)
            return
        event = self._decode(topic, value, story)
        if event is None:
            return
        story.observe(event, at)
        if isinstance(event, DeadLetter):
            key = f"{usecase}|{reason_kind(event.service, event.reason)}"
            self._count(partitions, "deadletter_reasons", key, at)
        elif isinstance(event, Prediction):
            bucket = latency_bucket(float(event.latency_ms))
            self._count(partitions, "latency_ms", f"{usecase}|{bucket}", at)
            self._count(partitions, "predictions_by_variant", f"{usecase}|{event.variant}", at)

    def _on_loop_event(self, topic: str, value: bytes | None, at: float) -> None:
        event = self._decode(topic, value, None)
        if event is None or event.usecase not in self.stories:
            return
        self._loop[topic][event.event_id] = (value or b"").decode()
        self.stories[event.usecase].observe(event, at)

    @staticmethod
    def _decode(topic: str, value: bytes | str | None, story: Story | None) -> SystemEvent | None:
        """The system event of a record, by the one decoder; None (and counted) if unreadable."""
        try:
            event = decode(topic, value)
        except InvalidInput:
            event = None
        if isinstance(event, SystemEvent):
            return event
        if story is not None:
            story.unreadable += 1
        return None

    async def _recovered(self) -> None:
        """After faust restored the tables: fold their events into the stories, oldest first.

        faust calls it after every recovery (each rebalance); the stories live in
        this process, so only the first, at start, has anything to add.
        """
        if self._replayed:
            return
        self._replayed = True
        events = []
        for topic, table in self._loop.items():
            for text in list(table.values()):
                event = self._decode(topic, text, None)
                if event is not None:
                    events.append(event)
        for event in sorted(events, key=lambda e: e.occurred_at):
            if event.usecase in self.stories:
                self.stories[event.usecase].observe(event, event.occurred_at.timestamp())
        logger.info("recovered %d loop events from the changelogs", len(events))

    # ---- reading ------------------------------------------------------------------------

    def windows(self, table: str, prefix: str) -> dict[str, dict[float, Any]]:
        """Each key of ``table`` starting with ``prefix`` (cut): its windows' values by start,
        over every partition count's table and the counts not written yet."""
        found: dict[str, dict[float, Any]] = {}
        for tables in list(self._windows.values()):
            for (key, (start, _end)), value in list(tables[table].table.data.items()):
                if isinstance(key, str) and key.startswith(prefix):
                    values = found.setdefault(key[len(prefix) :], {})
                    values[start] = values.get(start, 0) + value
        window = WINDOWS[table]
        for (_, name, key, middle), count in list(self._pending.items()):
            if name == table and key.startswith(prefix):
                values = found.setdefault(key[len(prefix) :], {})
                for start, _end in window.ranges(middle):
                    values[start] = values.get(start, 0) + count
        return found

    def series(self, topic: str, now: float, seconds: int = 60) -> list[int]:
        """Counts of ``topic`` in the ``seconds`` whole seconds before ``now``, oldest first."""
        counts = self.windows("throughput", topic).get("", {})
        current = math.floor(now)
        return [int(counts.get(float(s), 0)) for s in range(current - seconds, current)]

    def hopping_now(self, table: str, prefix: str, now: float) -> dict[str, int]:
        """Per key, the newest hopping window that has ended by ``now`` or holds it."""
        start = math.floor((now - HOPPING_SIZE) / HOPPING_STEP + 1) * HOPPING_STEP
        return {
            key: int(values.get(start, 0))
            for key, values in self.windows(table, prefix).items()
            if values.get(start)
        }

    def latency_percentiles(self, usecase: str, now: float) -> dict[str, float]:
        """Prediction latency percentiles over the last minute."""
        counts: dict[int, int] = {}
        for bucket, values in self.windows("latency_ms", f"{usecase}|").items():
            total = sum(v for start, v in values.items() if start > now - HOPPING_SIZE)
            if total:
                counts[int(bucket)] = total
        found = percentiles(counts, (0.5, 0.95, 0.99))
        if counts:
            found["count"] = float(sum(counts.values()))
        return found
