"""JSON on the wire: events in, bytes out, and back.

>>> decode_object(b'{"a": 1}')
{'a': 1}
>>> decode_object(b'[1]')
Traceback (most recent call last):
...
services.common.errors.InvalidInput: expected a JSON object, got a list
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from services.common.errors import InvalidInput


def encode(message: BaseModel | dict[str, Any]) -> bytes:
    """An event or a plain mapping as compact UTF-8 JSON."""
    if isinstance(message, BaseModel):
        return message.model_dump_json().encode()
    return json.dumps(message, separators=(",", ":"), default=str).encode()


def decode_object(raw: bytes | None) -> dict[str, Any]:
    """A message value that must be one JSON object; anything else is invalid input."""
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
