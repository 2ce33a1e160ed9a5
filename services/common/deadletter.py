"""The dead-letter policy: the one place that decides what a failed message becomes.

A consume loop hands every exception its handler raised to the policy
injected into it. :class:`DeadLetterPolicy` sends bad input (and, with its
type named, unexpected errors) to ``<uc>.deadletter`` and lets the loop go
on; transient errors are re-raised so that the message is retried.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from schemas import topics
from schemas.events import DeadLetter
from services.common.errors import InvalidInput, TransientError
from services.common.serde import encode

logger = logging.getLogger(__name__)

MAX_PAYLOAD_CHARS = 16 * 1024
GLOBAL_DEADLETTER = "driftline.deadletter"


class ErrorPolicy(Protocol):
    """Decides the fate of a message whose handler raised. Raise to stop the loop."""

    async def on_error(self, exc: Exception, record: ConsumerRecord[Any, Any]) -> None: ...


def deadletter_topic(record_topic: str, payload: bytes | None) -> tuple[str, str]:
    """The dead-letter topic and use case for a message read from ``record_topic``.

    >>> deadletter_topic("credit.raw", b"x")
    ('credit.deadletter', 'credit')
    >>> deadletter_topic("models.candidates", b'{"usecase": "phishing"}')
    ('phishing.deadletter', 'phishing')
    >>> deadletter_topic("models.candidates", b'oops')
    ('driftline.deadletter', 'unknown')
    """
    usecase = topics.usecase_of(record_topic)
    if usecase is None and payload:
        try:
            value = json.loads(payload)
            if isinstance(value, dict) and isinstance(value.get("usecase"), str):
                usecase = value["usecase"]
        except ValueError:
            pass
    if usecase is None:
        return GLOBAL_DEADLETTER, "unknown"
    return topics.deadletter(usecase), usecase


def build_dead_letter(service: str, exc: Exception, record: ConsumerRecord[Any, Any]) -> DeadLetter:
    """The dead-letter event for a message whose handling raised ``exc``."""
    raw: bytes = record.value or b""
    text = raw.decode("utf-8", errors="replace")
    _, usecase = deadletter_topic(record.topic, raw)
    if isinstance(exc, InvalidInput):
        reason, event_id = exc.reason, exc.event_id
    else:
        reason, event_id = f"internal error {type(exc).__name__}: {exc}", None
    return DeadLetter(
        usecase=usecase,
        service=service,
        reason=reason,
        payload=text[:MAX_PAYLOAD_CHARS],
        truncated=len(text) > MAX_PAYLOAD_CHARS,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        source_event_id=event_id,
        error_type=type(exc).__name__,
    )


class DeadLetterPolicy:
    """Dead-letter everything but transient errors, which are re-raised for a retry."""

    def __init__(self, service: str, producer: AIOKafkaProducer) -> None:
        self.service = service
        self.producer = producer
        self.count = 0

    async def on_error(self, exc: Exception, record: ConsumerRecord[Any, Any]) -> None:
        if isinstance(exc, TransientError):
            raise exc
        dead = build_dead_letter(self.service, exc, record)
        destination, _ = deadletter_topic(record.topic, record.value)
        log = logger.info if isinstance(exc, InvalidInput) else logger.exception
        log(
            "dead-lettered topic=%s partition=%s offset=%s reason=%r",
            record.topic,
            record.partition,
            record.offset,
            dead.reason,
        )
        await self.producer.send_and_wait(destination, encode(dead))
        self.count += 1
