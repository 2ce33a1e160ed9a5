"""``driftline publish``: JSON lines to a topic."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from schemas import topics
from services.common.bus import ensure_topics, start_producer, wait_for_broker


@dataclass
class ParsedLines:
    """JSON objects read from lines, and the lines that were not one."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)


def parse_lines(lines: Iterable[str]) -> ParsedLines:
    """Keep each line that is a JSON object; note the number and fault of every other.

    Blank lines are skipped silently.

    >>> parsed = parse_lines(['{"a": 1}', '', '[1, 2]', 'nope'])
    >>> parsed.objects, [n for n, _ in parsed.problems]
    ([{'a': 1}], [3, 4])
    """
    parsed = ParsedLines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            parsed.problems.append((number, f"not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(value, dict):
            parsed.problems.append((number, f"not a JSON object but {type(value).__name__}"))
            continue
        parsed.objects.append(value)
    return parsed


def message_key(topic: str, message: dict[str, Any]) -> bytes | None:
    """The record key the topic's declaration names (``Topic.key``), read from the message.

    Messages of one entity share a key, so they land in one partition, in order.
    A topic driftline does not declare is keyed by ``entity_id`` when there is one.

    >>> message_key("credit.raw", {"entity_id": 7})
    b'7'
    >>> message_key("credit.labels", {"entity_id": 7}) is None
    True
    >>> message_key("training.requests", {"usecase": "credit"})
    b'credit'
    >>> message_key("x", {"entity_id": "a"})
    b'a'
    """
    declared = topics.topic_of(topic)
    field_name = "entity_id" if declared is None else declared.key
    value = None if field_name is None else message.get(field_name)
    return None if value is None else str(value).encode()


def chunks(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def publish_objects(
    bootstrap: str, topic: str, messages: list[dict[str, Any]], partitions: int = 1
) -> int:
    """Send every message and wait until the broker has acknowledged all of them.

    The topic is created first (with ``partitions``) if it does not exist, so the
    broker's own default partition count never decides it.
    """
    await wait_for_broker(bootstrap, timeout=10.0)
    await ensure_topics(bootstrap, [topic], partitions)
    producer = await start_producer(bootstrap)
    try:
        for chunk in chunks(messages, 500):
            futures = [
                await producer.send(
                    topic,
                    json.dumps(m, separators=(",", ":")).encode(),
                    key=message_key(topic, m),
                )
                for m in chunk
            ]
            for future in futures:
                await future
    finally:
        await producer.stop()
    return len(messages)
