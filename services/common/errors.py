"""The exceptions services raise and the dead-letter policy reads.

``InvalidInput`` and its subclasses mean the message itself is bad: it goes to
the dead-letter topic and the service goes on. ``TransientError`` means the
world is briefly wrong (a store is down): the message is retried, never
dead-lettered. Anything else is a bug, dead-lettered with its type so that a
person can replay the message once the bug is fixed.
"""

from __future__ import annotations


class DriftlineError(Exception):
    """Root of every error driftline raises on purpose."""


class InvalidInput(DriftlineError):
    """A message that no retry will make valid.

    >>> str(InvalidInput("field 'age': expected a number, got 'old'", event_id="e1"))
    "field 'age': expected a number, got 'old'"
    """

    def __init__(self, reason: str, *, event_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id


class TransientError(DriftlineError):
    """A failure that a retry may fix; the message is not dead-lettered."""


class BrokerUnavailable(TransientError):
    """The Kafka broker did not answer in time."""
