"""Validation: a decoded event to a :class:`Record`, its ids, timestamp and typed field values.

Each declared field is read as its type (numbers, integers, booleans,
timestamps, text, categories after ``aliases`` and case folding), checked
against its range and allowed values, and left None where the event has
none; extra keys are ignored. Anything wrong raises
:class:`~services.common.errors.InvalidInput` with a reason naming the field,
what was expected and what came. This is the preparer's second stage
(:mod:`services.common.prep.preparer`).

>>> from schemas.usecase import UseCase
>>> spec = UseCase.model_validate({
...     "name": "toy", "task": "regression",
...     "fields": {"plan": {"type": "category", "values": ["basic", "gold"],
...                         "aliases": {"premium": "gold"}}},
...     "features": [{"kind": "onehot", "field": "plan"}],
... })
>>> record = Validator(spec).validate({"event_id": "e1", "entity_id": 7,
...                                    "timestamp": "2026-01-01T00:00:00Z", "plan": " Premium"})
>>> record.entity_id, record.values
('7', {'plan': 'gold'})
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.usecase import FieldSpec, UseCase
from services.common.errors import InvalidInput
from services.common.prep.values import (
    MAX_TEXT,
    MISSING,
    ValueProblem,
    is_missing,
    normalize_category,
    parse_bool,
    parse_integer,
    parse_number,
    parse_timestamp,
    remembered,
    show,
)


@dataclass(slots=True)
class Record:
    """One validated event: its ids, its UTC timestamp and its typed field values.

    Not frozen: a frozen dataclass sets each field through ``object.__setattr__`` (0.94
    against 0.22 us to make one, and ingestion makes two an event); nothing changes one.

    A value is None where the event had none (absent, null or NaN) and
    ``clean`` has not imputed it yet.
    """

    event_id: str
    entity_id: str
    timestamp: datetime
    values: dict[str, Any]
    imputed: tuple[str, ...] = ()
    capped: tuple[str, ...] = ()
    cleaned: bool = field(default=False, compare=False)


class Validator:
    """Read one use case's events into records; see the module docstring."""

    def __init__(self, spec: UseCase) -> None:
        self.spec = spec
        self._categories = {
            name: {normalize_category(v): v for v in f.values or []}
            for name, f in spec.fields.items()
            if f.type == "category"
        }
        self._aliases = {
            name: {normalize_category(k): v for k, v in f.aliases.items()}
            for name, f in spec.fields.items()
        }
        self._fields = list(spec.fields.items())
        # ``normalize_category(raw)``, remembered for the plain values events repeat
        self._normalize = remembered(normalize_category)

    def validate(self, payload: dict[str, Any]) -> Record:
        """Ids, timestamp and every declared field, typed and normalized; extra keys ignored."""
        event_id = _identifier(payload, "event_id", None)
        entity_id = _identifier(payload, self.spec.entity_key, event_id)
        if self.spec.timestamp_field not in payload or payload[self.spec.timestamp_field] is None:
            raise InvalidInput(
                f"missing required field {self.spec.timestamp_field!r}", event_id=event_id
            )
        try:
            timestamp = parse_timestamp(payload[self.spec.timestamp_field])
        except ValueProblem as exc:
            raise InvalidInput(str(exc), event_id=event_id) from None
        values: dict[str, Any] = {}
        for name, spec in self._fields:
            try:
                values[name] = self._field_value(name, spec, payload.get(name))
            except ValueProblem as exc:
                raise InvalidInput(f"field {name!r}: {exc}", event_id=event_id) from None
        return Record(event_id, entity_id, timestamp, values)

    def _field_value(self, name: str, spec: FieldSpec, raw: Any) -> Any:
        """A typed value or None (missing); raises ValueProblem."""
        aliases = self._aliases[name]
        if aliases and isinstance(raw, str):
            alias = aliases.get(self._normalize(raw))
            if alias is not None:
                raw = alias
        if spec.type in ("float", "int"):
            return self._numeric(spec, raw)
        if spec.type == "bool":
            flag = parse_bool(raw)
            return None if flag is MISSING else flag
        if spec.type == "datetime":
            return None if is_missing(raw) else parse_timestamp(raw)
        if is_missing(raw):
            return None
        if spec.type == "string":
            if isinstance(raw, dict | list | bool):
                raise ValueProblem(f"expected text, got {show(raw)}")
            return str(raw).strip()[: MAX_TEXT * 5]
        return self.category(name, spec, raw)

    def _numeric(self, spec: FieldSpec, raw: Any) -> float | None:
        kind = type(raw)
        if kind is float or kind is int:
            # The common case, a finite JSON number within range, checked as below.
            try:
                number = float(raw)
            except OverflowError:
                return self._numeric_checked(spec, raw)
            if math.isfinite(number) and (spec.type != "int" or number.is_integer()):
                cap = spec.cap
                checked = number if cap is None else min(max(number, cap[0]), cap[1])
                low, high = spec.min, spec.max
                if (low is None or checked >= low) and (high is None or checked <= high):
                    return number
        return self._numeric_checked(spec, raw)

    def _numeric_checked(self, spec: FieldSpec, raw: Any) -> float | None:
        integer = spec.type == "int"
        try:
            number = parse_integer(raw) if integer else parse_number(raw)
        except ValueProblem:
            raise ValueProblem(f"expected {describe(spec)}, got {show(raw)}") from None
        if number is MISSING:
            return None
        assert isinstance(number, float)
        checked = clip(number, spec.cap) if spec.cap else number
        if math.isinf(checked):
            raise ValueProblem(f"expected a finite number, got {show(raw)} (no cap to clip it to)")
        low = -math.inf if spec.min is None else spec.min
        high = math.inf if spec.max is None else spec.max
        if not low <= checked <= high:
            raise ValueProblem(f"expected {describe(spec)}, got {show(raw)}")
        return number

    def category(self, name: str, spec: FieldSpec, raw: Any) -> Any:
        """A category value as declared (or ``other``, or open text); raises ValueProblem."""
        if isinstance(raw, dict | list):
            raise ValueProblem(f"expected a category, got {show(raw)}")
        key = self._normalize(raw)
        known = self._categories[name]
        if not spec.values:
            return key[:MAX_TEXT]
        if key in known:
            return known[key]
        if spec.unknown == "other":
            return "other"
        allowed = ", ".join(str(v) for v in spec.values[:20])
        more = ", ..." if len(spec.values) > 20 else ""
        raise ValueProblem(f"expected one of [{allowed}{more}], got {show(raw)}")


def _identifier(payload: dict[str, Any], key: str, event_id: str | None) -> str:
    """A non-empty text or integer id."""
    value = payload.get(key)
    if value is None:
        raise InvalidInput(f"missing required field {key!r}", event_id=event_id)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput(
            f"field {key!r}: expected a text or integer id, got {show(value)}", event_id=event_id
        )
    try:
        text = str(value).strip()
    except ValueError:  # an integer too long to print
        text = "x" * (MAX_TEXT + 1)
    if not text or len(text) > MAX_TEXT:
        raise InvalidInput(
            f"field {key!r}: expected 1 to {MAX_TEXT} characters, got {len(text)}",
            event_id=event_id,
        )
    if not unicode_text(text):
        raise InvalidInput(
            f"field {key!r}: not Unicode text (a lone surrogate escape), got {text!r}",
            event_id=event_id,
        )
    return text


def unicode_text(text: str) -> bool:
    """Whether ``text`` is Unicode text, which UTF-8 can write: JSON's ``\\ud800`` escape
    alone gives Python a str that it cannot (the de-dup record, SQLite and the topics
    write ids as UTF-8; such an id refused by name is a dead letter, not a batch that fails).

    >>> unicode_text("cust-1"), unicode_text("caf\u00e9"), unicode_text("x" + chr(0xD800))
    (True, True, False)
    """
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def describe(spec: FieldSpec) -> str:
    """What a numeric field expects, for reasons: ``an integer in [18, 100]``.

    >>> describe(FieldSpec(type="float", min=0))
    'a number >= 0'
    """
    noun = "an integer" if spec.type == "int" else "a number"
    if spec.type not in ("float", "int"):
        noun = {"bool": "a boolean", "category": "a category", "datetime": "a timestamp"}.get(
            spec.type, "text"
        )
        return noun
    low, high = spec.min, spec.max
    if low is not None and high is not None:
        return f"{noun} in [{low:g}, {high:g}]"
    if low is not None:
        return f"{noun} >= {low:g}"
    if high is not None:
        return f"{noun} <= {high:g}"
    return noun


def clip(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])
