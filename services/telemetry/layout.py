"""The faust tables telemetry keeps, each with the partition count of the topics it is fed from.

faust writes a table's changelog record to the partition of the record being
processed, and refuses to write a table from a topic whose partition count is
not its changelog's (``PartitionsMismatch``). The counts that matter are the
broker's, not the settings': a topic keeps the count it was made with, so with
``DRIFTLINE_PARTITIONS=3`` a ``models.candidates`` made earlier with 1 (by a CLI
verb, an older run) crashed a worker whose tables all had 3. At start the
service therefore makes the source topics that are missing (the settings'
count; a state topic 1), asks the broker for every source topic's count
(:func:`discover`), and lays its tables out by them (:class:`Layout`):

- the use-case streams are read by one agent per partition count, each
  writing its own set of the windowed tables (:data:`WINDOWS`), of that count;
- each loop topic (:data:`LOOP_TABLES`) is read by its own agent into its own
  plain table, of that topic's count.

A table's name ends with its count (``throughput-p3``), so its changelog
(``<app>-throughput-p3-changelog``), once made, always has the count the table
expects. Topics made again with another count get new changelogs: the old
ones' windows expire, and their loop events are not replayed (approximate).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from faust.windows import HoppingWindow, TumblingWindow

from schemas import topics
from services.common.bus import ensure_topics
from services.common.errors import BrokerUnavailable
from services.common.settings import CommonSettings

THROUGHPUT_SECONDS = 1.0
HOPPING_SIZE, HOPPING_STEP = 60.0, 10.0
LATENCY_SECONDS = 10.0
# Each windowed table's windows; ``expires`` is how long its windows are kept.
WINDOWS: dict[str, HoppingWindow] = {
    "throughput": TumblingWindow(THROUGHPUT_SECONDS, expires=120.0),
    "deadletter_reasons": HoppingWindow(HOPPING_SIZE, HOPPING_STEP, expires=3 * HOPPING_SIZE),
    "latency_ms": TumblingWindow(LATENCY_SECONDS, expires=6 * LATENCY_SECONDS),
    "predictions_by_variant": HoppingWindow(HOPPING_SIZE, HOPPING_STEP, expires=3 * HOPPING_SIZE),
}
# The loop's rare events, kept whole so that a restarted worker replays them: a table each.
LOOP_TABLES: dict[str, str] = {
    topics.MODELS_CANDIDATES: "candidates",
    topics.DRIFT_ALERTS: "alerts",
    topics.TRAINING_REQUESTS: "requests",
    topics.MODELS_PROMOTIONS: "promotions",
}


def table_name(base: str, partitions: int) -> str:
    """A table's name: what it keeps, and its partition count.

    >>> table_name("throughput", 3)
    'throughput-p3'
    """
    return f"{base}-p{partitions}"


def source_topics(usecases: Iterable[str]) -> list[str]:
    """Every topic telemetry reads: each use case's event streams, then the loop's topics.

    >>> source_topics(["credit"])[-4:]
    ['models.candidates', 'drift.alerts', 'training.requests', 'models.promotions']
    """
    streams = [name for uc in usecases for name in topics.usecase_topics(uc)]
    return [*streams, *LOOP_TABLES]


@dataclass(frozen=True)
class Layout:
    """Every source topic's partition count on the broker, and the tables that follow.

    >>> layout = Layout({"u.raw": 3, "u.labels": 1, "models.candidates": 1,
    ...                  "drift.alerts": 3, "training.requests": 3, "models.promotions": 1})
    >>> layout.stream_groups()
    {1: ['u.labels'], 3: ['u.raw']}
    >>> sorted(layout.tables().items())[:3]
    [('alerts-p3', 3), ('candidates-p1', 1), ('deadletter_reasons-p1', 1)]
    >>> layout.changelogs("tele")["tele-throughput-p3-changelog"]
    3
    """

    partitions: dict[str, int]

    def stream_groups(self) -> dict[int, list[str]]:
        """The use-case streams by partition count: one agent and one set of windows each."""
        groups: dict[int, list[str]] = {}
        for name, count in sorted(self.partitions.items()):
            if name not in LOOP_TABLES:
                groups.setdefault(count, []).append(name)
        return dict(sorted(groups.items()))

    def loop_tables(self) -> dict[str, str]:
        """Each loop topic's table name."""
        return {
            topic: table_name(base, self.partitions[topic]) for topic, base in LOOP_TABLES.items()
        }

    def tables(self) -> dict[str, int]:
        """Every table's name and partition count."""
        found = {table_name(base, n): n for n in self.stream_groups() for base in WINDOWS}
        found.update({name: self.partitions[t] for t, name in self.loop_tables().items()})
        return found

    def changelogs(self, app_id: str) -> dict[str, int]:
        """Each table's changelog topic, as faust names it, with its partition count."""
        return {f"{app_id}-{table}-changelog": n for table, n in self.tables().items()}

    def changelog_configs(self, app_id: str) -> dict[str, dict[str, str]]:
        """The broker settings faust gives each changelog: compacted, and a windowed
        table's also deleted once its windows have expired.

        >>> configs = Layout({"u.raw": 1, **{t: 1 for t in LOOP_TABLES}}).changelog_configs("a")
        >>> configs["a-throughput-p1-changelog"]
        {'cleanup.policy': 'compact,delete', 'retention.ms': '120000'}
        >>> configs["a-promotions-p1-changelog"]
        {'cleanup.policy': 'compact'}
        """
        configs: dict[str, dict[str, str]] = {}
        for table in self.tables():
            base = table.rpartition("-p")[0]
            window = WINDOWS.get(base)
            config = {"cleanup.policy": "compact"}
            if window is not None and window.expires is not None:
                config = {
                    "cleanup.policy": "compact,delete",
                    "retention.ms": str(int(window.expires * 1000)),
                }
            configs[f"{app_id}-{table}-changelog"] = config
        return configs


async def discover(settings: CommonSettings, usecases: Iterable[str]) -> Layout:
    """The source topics made where missing, and their partition counts as the broker has them."""
    names = source_topics(usecases)
    await ensure_topics(
        settings.bootstrap, names, settings.partitions, retention_ms=settings.retention_ms
    )
    return Layout(await partition_counts(settings.bootstrap, names))


async def partition_counts(
    bootstrap: str, names: list[str], timeout: float = 10.0
) -> dict[str, int]:
    """Each topic's partition count; a topic just made may take a moment to have its partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            described = await admin.describe_topics(names)
            counts = {t["topic"]: len(t["partitions"]) for t in described if t["partitions"]}
            missing = [n for n in names if n not in counts]
            if not missing:
                return counts
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"topics {missing} have no partitions after {timeout}s")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
