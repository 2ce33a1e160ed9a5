"""Consumer records as the consume loop hands them to a processor."""

from __future__ import annotations

from typing import Any

from aiokafka.structs import ConsumerRecord


def consumer_record(topic: str, offset: int, value: bytes) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=-1,
        serialized_value_size=len(value),
        headers=(),
    )
