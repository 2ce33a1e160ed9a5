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

Two plain tables keep the loop's rare events, so a restarted worker rebuilds
its :class:`~services.telemetry.story.Story` from their changelogs:
``loop_events`` (candidates, alerts, training requests) and ``promotions``
(one partition, like ``models.promotions``). Every window is stamped with the
record's own time, so a replay lands in the windows it happened in.

Approximate by design: faust may count a record twice or not at all around
a crash or rebalance (see the README), which a live view tolerates and the
data path does not, so nothing else in driftline runs on faust.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterable
from typing import Any

import faust
from pydantic import ValidationError

from schemas import topics
from schemas.events import SystemEvent, parse_event
from schemas.usecase import UseCase
from services.common.bus import ensure_topics
from services.common.settings import CommonSettings
from services.telemetry.story import Story

logger = logging.getLogger(__name__)

THROUGHPUT_SECONDS = 1.0
THROUGHPUT_KEEP = 120.0
HOPPING_SIZE, HOPPING_STEP = 60.0, 10.0
LATENCY_SECONDS = 10.0
# Each windowed table and how long its windows are kept (its ``expires``).
WINDOW_KEEP = {
    "throughput": THROUGHPUT_KEEP,
    "deadletter_reasons": 3 * HOPPING_SIZE,
    "latency_ms": 6 * LATENCY_SECONDS,
    "predictions_by_variant": 3 * HOPPING_SIZE,
}
FLUSH_SECONDS = 0.5
# Upper bounds of the latency buckets, ms: 0.1 ms to about 26 s, each 1.25 times the last.
LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(0.1 * 1.25**i for i in range(57))
LOOP_TOPICS = (topics.MODELS_CANDIDATES, topics.DRIFT_ALERTS, topics.TRAINING_REQUESTS)


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


def changelog_topics(app_id: str, partitions: int) -> dict[str, int]:
    """Each table's changelog topic, as faust names it, with the partitions faust expects.

    >>> changelog_topics("tele", 3)["tele-promotions-changelog"]
    1
    """
    names = {f"{app_id}-{t}-changelog": partitions for t in [*WINDOW_KEEP, "loop_events"]}
    names[f"{app_id}-promotions-changelog"] = 1  # fed by the one-partition models.promotions
    return names


def changelog_configs(app_id: str) -> dict[str, dict[str, str]]:
    """The broker settings faust gives each changelog: compacted, and a windowed table's
    also deleted once its windows have expired.

    >>> changelog_configs("tele")["tele-throughput-changelog"]
    {'cleanup.policy': 'compact,delete', 'retention.ms': '120000'}
    >>> changelog_configs("tele")["tele-promotions-changelog"]
    {'cleanup.policy': 'compact'}
    """
    configs = {
        f"{app_id}-{table}-changelog": {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(int(keep * 1000)),
        }
        for table, keep in WINDOW_KEEP.items()
    }
    for table in ("loop_events", "promotions"):
        configs[f"{app_id}-{table}-changelog"] = {"cleanup.policy": "compact"}
    return configs


class Telemetry:
    """The faust worker, its tables and the stories they feed, for every configured use case."""

    def __init__(self, settings: CommonSettings, specs: dict[str, UseCase]) -> None:
        self.settings = settings
        self.specs = specs
        self.stories = {name: Story.for_usecase(spec) for name, spec in specs.items()}
        self.totals: dict[str, int] = {}
        # Counts not yet added to their table, by (table, key, time inside the window step).
        self._pending: dict[tuple[str, str, float], int] = {}
        self._flushed = time.monotonic()
        self.app_id = settings.consumer_group("telemetry")
        partitions = settings.partitions
        self.app = faust.App(
            self.app_id,
            broker=f"kafka://{settings.bootstrap}",
            store="memory://",
            web_enabled=False,
            autodiscover=False,
            topic_partitions=partitions,
            consumer_auto_offset_reset="earliest",
            # The embedded broker waits the whole rebalance timeout at a first join.
            broker_rebalance_timeout=3.0,
            broker_session_timeout=6.0,
            broker_heartbeat_interval=1.0,
            table_cleanup_interval=30.0,
        )
        app = self.app
        self.throughput: Any = app.Table("throughput", default=int, partitions=partitions).tumbling(
            THROUGHPUT_SECONDS, expires=WINDOW_KEEP["throughput"]
        )
        self.reasons: Any = app.Table(
            "deadletter_reasons", default=int, partitions=partitions
        ).hopping(HOPPING_SIZE, HOPPING_STEP, expires=WINDOW_KEEP["deadletter_reasons"])
        self.latency: Any = app.Table("latency_ms", default=int, partitions=partitions).tumbling(
            LATENCY_SECONDS, expires=WINDOW_KEEP["latency_ms"]
        )
        self.variants: Any = app.Table(
            "predictions_by_variant", default=int, partitions=partitions
        ).hopping(HOPPING_SIZE, HOPPING_STEP, expires=WINDOW_KEEP["predictions_by_variant"])
        self.loop_events = app.Table("loop_events", default=str, partitions=partitions)
        self.promotions = app.Table("promotions", default=str, partitions=1)
        self.loop_events.on_recover(self._recovered)
        self.promotions.on_recover(self._recovered)
        streams = [t for uc in specs for t in topics.usecase_topics(uc)]
        self._agent(streams, self._on_stream)
        self._agent(list(LOOP_TOPICS), self._on_loop_event)
        self._agent([topics.MODELS_PROMOTIONS], self._on_promotion)

    def _agent(self, names: list[str], handle: Any) -> None:
        source = self.app.topic(*names, value_serializer="raw", key_serializer="raw")

        async def agent(stream: Any) -> None:
            async for event in stream.events():
                message = event.message
                handle(message.topic, event.value, message.timestamp)  # seconds
                self._flush_if_due()

        agent.__name__ = agent.__qualname__ = f"telemetry_{handle.__name__.strip('_')}"
        self.app.agent(source, name=agent.__name__)(agent)

    async def start(self) -> None:
        """Create the changelog topics with faust's partition counts, then start the worker."""
        wanted = changelog_topics(self.app_id, self.settings.partitions)
        for partitions in sorted(set(wanted.values())):
            names = [n for n, p in wanted.items() if p == partitions]
            configs = changelog_configs(self.app_id)
            await ensure_topics(self.settings.bootstrap, names, partitions, configs=configs)
        await self.app.start()

    async def stop(self) -> None:
        await self.app.stop()

    # ---- feeding (inside faust's stream iteration) ------------------------------------

    def _count(self, wrapper: Any, key: str, at: float) -> None:
        """One more in ``key``'s windows of ``at``, added to the table at the next flush.

        A table write is a changelog record: counting every event one by one wrote
        about one record per event and fell behind the demo's rate on two busy cores
        (faust's "producer buffer full"). Counts are kept here per window step and
        written at most every ``FLUSH_SECONDS``, inside the stream's iteration as
        faust requires; readers add what is pending, so nothing waits for a flush.
        """
        step = wrapper.table.window.step
        middle = math.floor(at / step) * step + step / 2
        slot = (wrapper.table.name, key, middle)
        self._pending[slot] = self._pending.get(slot, 0) + 1

    def _flush_if_due(self) -> None:
        if time.monotonic() - self._flushed < FLUSH_SECONDS:
            return
        tables = {
            t.table.name: t for t in (self.throughput, self.reasons, self.latency, self.variants)
        }
        pending, self._pending = self._pending, {}
        for (name, key, middle), count in pending.items():
            tables[name].relative_to(middle)[key] += count
        self._flushed = time.monotonic()

    def _on_stream(self, topic: str, value: bytes | None, at: float) -> None:
        self._count(self.throughput, topic, at)
        self.totals[topic] = self.totals.get(topic, 0) + 1
        usecase, _, suffix = topic.rpartition(".")
        story = self.stories.get(usecase)
        if story is None or suffix in ("raw", "features"):
            return
        if suffix == "labels":
            story.observe_label(value, at)
            return
        event = self._parse(value, story)
        if event is None:
            return
        story.observe(event, at)
        if suffix == "deadletter" and hasattr(event, "reason"):
            key = f"{usecase}|{reason_kind(getattr(event, 'service', '?'), event.reason)}"
            self._count(self.reasons, key, at)
        elif suffix == "predictions" and hasattr(event, "latency_ms"):
            bucket = latency_bucket(float(event.latency_ms))
            self._count(self.latency, f"{usecase}|{bucket}", at)
            self._count(self.variants, f"{usecase}|{getattr(event, 'variant', '?')}", at)

    def _on_loop_event(self, topic: str, value: bytes | None, at: float) -> None:
        event = self._remember(self.loop_events, value)
        if event is not None and event.usecase in self.stories:
            self.stories[event.usecase].observe(event, at)

    def _on_promotion(self, topic: str, value: bytes | None, at: float) -> None:
        event = self._remember(self.promotions, value)
        if event is not None and event.usecase in self.stories:
            self.stories[event.usecase].observe(event, at)

    def _remember(self, table: Any, value: bytes | None) -> SystemEvent | None:
        event = self._parse(value, None)
        if event is not None and event.usecase in self.stories:
            table[event.event_id] = (value or b"").decode()
        return event

    @staticmethod
    def _parse(value: bytes | None, story: Story | None) -> SystemEvent | None:
        try:
            return parse_event(value or b"")
        except (ValidationError, ValueError):
            if story is not None:
                story.unreadable += 1
            return None

    async def _recovered(self) -> None:
        """After faust restored the tables: fold their events into the stories, oldest first."""
        events = []
        for table in (self.promotions, self.loop_events):
            for text in list(table.values()):
                try:
                    events.append(parse_event(text))
                except (ValidationError, ValueError):
                    continue
        for event in sorted(events, key=lambda e: e.occurred_at):
            if event.usecase in self.stories:
                self.stories[event.usecase].observe(event, event.occurred_at.timestamp())
        logger.info("recovered %d loop events from the changelogs", len(events))

    # ---- reading ------------------------------------------------------------------------

    def windows(self, wrapper: Any, prefix: str) -> dict[str, dict[float, Any]]:
        """Each key starting with ``prefix`` (the prefix cut): its windows' values by start."""
        found: dict[str, dict[float, Any]] = {}
        for (key, (start, _end)), value in list(wrapper.table.data.items()):
            if isinstance(key, str) and key.startswith(prefix):
                found.setdefault(key[len(prefix) :], {})[start] = value
        name = wrapper.table.name
        for (table, key, middle), count in list(self._pending.items()):
            if table == name and key.startswith(prefix):
                values = found.setdefault(key[len(prefix) :], {})
                for start, _end in wrapper.table.window.ranges(middle):
                    values[start] = values.get(start, 0) + count
        return found

    def series(self, topic: str, now: float, seconds: int = 60) -> list[int]:
        """Counts of ``topic`` in the ``seconds`` whole seconds before ``now``, oldest first."""
        counts = self.windows(self.throughput, topic).get("", {})
        current = math.floor(now)
        return [int(counts.get(float(s), 0)) for s in range(current - seconds, current)]

    def hopping_now(self, wrapper: Any, prefix: str, now: float) -> dict[str, int]:
        """Per key, the newest hopping window that has ended by ``now`` or holds it."""
        start = math.floor((now - HOPPING_SIZE) / HOPPING_STEP + 1) * HOPPING_STEP
        return {
            key: int(values.get(start, 0))
            for key, values in self.windows(wrapper, prefix).items()
            if values.get(start)
        }

    def latency_percentiles(self, usecase: str, now: float) -> dict[str, float]:
        """Prediction latency percentiles over the last minute."""
        counts: dict[int, int] = {}
        for bucket, values in self.windows(self.latency, f"{usecase}|").items():
            total = sum(v for start, v in values.items() if start > now - HOPPING_SIZE)
            if total:
                counts[int(bucket)] = total
        found = percentiles(counts, (0.5, 0.95, 0.99))
        if counts:
            found["count"] = float(sum(counts.values()))
        return found
