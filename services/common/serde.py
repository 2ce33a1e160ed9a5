"""JSON on the wire: events in, bytes out, and back.

:func:`decode` is the one parser of system events: a record of a declared
topic (``schemas.topics``) becomes that topic's model, or :class:`InvalidInput`
whose reason always has one form, naming the fields and the event id::

    not <what the topic carries>: field '<field>': <problem>[; ...] (event_id '<id>' | unknown)

>>> from schemas import topics
>>> decode(topics.LABELS, b'{"event_id": "e1", "label": 1, "timestamp": "2026-01-01T00:00:00Z"}')
Label(event_id='e1', label=1, timestamp=datetime.datetime(2026, 1, 1, 0, 0, tzinfo=TzInfo(0)))
>>> decode("credit.labels", b'{"event_id": "e1", "label": 1}')
Traceback (most recent call last):
...
services.common.errors.InvalidInput: not a label: field 'timestamp': Field required (event_id 'e1')
>>> decode(topics.LABELS, b'[1]')  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
services.common.errors.InvalidInput: not a label: field '(record)': expected a JSON object, ...

:func:`decode_object` is for JSON that is not a system event (a raw event,
a statistics snapshot): one JSON object, or invalid input.

>>> decode_object(b'{"a": 1}')
{'a': 1}
"""

from __future__ import annotations

import json
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ValidationError

from schemas import topics
from schemas.topics import Topic
from services.common.errors import InvalidInput

ModelT = TypeVar("ModelT", bound=BaseModel)
WHOLE_RECORD = "(record)"


def encode(message: BaseModel | dict[str, Any]) -> bytes:
    """An event or a plain mapping as compact UTF-8 JSON."""
    if isinstance(message, BaseModel):
        return message.model_dump_json().encode()
    return json.dumps(message, separators=(",", ":"), default=str).encode()


@overload
def decode(topic: Topic[ModelT], value: bytes | str | None) -> ModelT: ...


@overload
def decode(topic: str, value: bytes | str | None) -> BaseModel: ...


def decode(topic: Topic[Any] | str, value: bytes | str | None) -> Any:
    """The event a record of ``topic`` (a declared topic, or a topic's name) carries."""
    declared = topic if isinstance(topic, Topic) else topics.topic_of(topic)
    if declared is None:
        raise InvalidInput(f"topic {topic!r} is not a driftline topic")
    if declared.model is None:
        raise TypeError(f"{declared} carries no system event: its own reader parses it")
    if value is None:
        raise _invalid(declared, None, [(WHOLE_RECORD, "empty message (no value)")])
    try:
        return declared.model.model_validate_json(value)
    except ValidationError as exc:
        raise _reason(declared, value, exc) from exc


def _reason(topic: Topic[Any], value: bytes | str, error: ValidationError) -> InvalidInput:
    try:
        document = decode_object(value)
    except InvalidInput as exc:
        return _invalid(topic, None, [(WHOLE_RECORD, exc.reason)])
    problems = [
        (".".join(str(part) for part in problem["loc"]) or WHOLE_RECORD, problem["msg"])
        for problem in error.errors()
    ]
    event_id = document.get("event_id")
    return _invalid(topic, event_id if isinstance(event_id, str) else None, problems)


def _invalid(
    topic: Topic[Any], event_id: str | None, problems: list[tuple[str, str]]
) -> InvalidInput:
    fields = "; ".join(f"field '{where}': {problem}" for where, problem in problems)
    which = "unknown" if event_id is None else repr(event_id)
    return InvalidInput(f"not {topic.what}: {fields} (event_id {which})", event_id=event_id)


def decode_object(raw: bytes | str | None) -> dict[str, Any]:
    """A message value that must be one JSON object; anything else is invalid input.

    >>> decode_object(b'[1]')
    Traceback (most recent call last):
    ...
    services.common.errors.InvalidInput: expected a JSON object, got a list
    """
    if raw is None:
        raise InvalidInput("empty message (no value)")
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"expected a JSON object, got {_json_type(value)}")
    return value


def _json_type(value: object) -> str:
    names = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
