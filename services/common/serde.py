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
import math
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar, overload

import msgspec
from msgspec.json import Decoder, Encoder
from pydantic import BaseModel, ValidationError

from schemas import topics
from schemas.events import FeatureRow, new_id, utcnow
from schemas.topics import Topic
from services.common.errors import InvalidInput

ModelT = TypeVar("ModelT", bound=BaseModel)
WHOLE_RECORD = "(record)"
_encode_fields = Encoder().encode


def encode(message: BaseModel | dict[str, Any]) -> bytes:
    """An event or a plain mapping as compact UTF-8 JSON."""
    if isinstance(message, BaseModel):
        return message.model_dump_json().encode()
    return json.dumps(message, separators=(",", ":"), default=str).encode()


def encode_fields(fields: dict[str, Any]) -> bytes:
    """A system event given as its fields, every one of them in the model's order and
    types (text, numbers, timezone-aware datetimes, dicts of those): the bytes that
    ``model_dump_json`` of the model writes, without building the model (msgspec's
    encoder, about 3x pydantic's for a 44-feature row).

    >>> from datetime import UTC, datetime
    >>> from schemas.inputs import Label
    >>> label = Label(event_id="e1", label=1, timestamp=datetime(2026, 1, 1, tzinfo=UTC))
    >>> encode_fields(dict(label)) == encode(label)
    True
    """
    return _encode_fields(fields)


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


Text = Annotated[str, msgspec.Meta(min_length=1)]
# The largest int a float holds exactly: pyarrow refuses to make a float of a larger one,
# which would fail a whole batch's Parquet write (the sink refuses such a row by name).
EXACT_INT = 2**53
ExactInt = Annotated[int, msgspec.Meta(ge=-EXACT_INT, le=EXACT_INT)]


class _RowFields(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A feature row's fields but its features (the two decoded forms below)."""

    event_id: Text = msgspec.field(default_factory=new_id)
    event_type: Literal["feature_row"] = "feature_row"
    schema_version: Literal[1] = 1
    occurred_at: datetime = msgspec.field(default_factory=utcnow)
    usecase: Text
    source_event_id: Text
    entity_id: Text
    event_timestamp: datetime


FeatureNumber = ExactInt | float | bool


class FeatureRowFields(_RowFields, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A :class:`~schemas.events.FeatureRow` as msgspec decodes it: its fields, names,
    order, defaults and constraints, without a pydantic model (the features service's
    decode of each row: 3.6 against 10.5 us for a 44-feature credit row).
    ``features`` holds the JSON's own values where they are booleans, floats or ints
    within :data:`EXACT_INT` (0.4 us more than any value, for 44); :func:`decode_feature_row`
    checks them."""

    features: dict[str, FeatureNumber]


class ViewFeatures(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A row's features as the fields of one feature view, in the view's order (a
    subclass per view, :func:`view_row_decoder`): every one present, no other key."""


class ViewRowFields(_RowFields, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A feature row whose features are exactly one view's (:func:`view_row_decoder`)."""

    features: ViewFeatures


_decode_row = Decoder(FeatureRowFields).decode
DecodedRow = ViewRowFields | FeatureRowFields | FeatureRow
# A time with more than six digits of fractions: msgspec rounds them, pydantic truncates.
# (The literal ':' first lets re skip to each colon: 1.8 us a credit row, 7.3 without.)
_LONG_FRACTION = re.compile(rb":\d\d[.,]\d{7}(?<=\d\d:\d\d:\d\d[.,]\d{7})")
_FEATURES_KEY = b'"features":{'
_isfinite = math.isfinite


def _long_fraction(value: bytes | str) -> bool:
    """Whether a row's JSON may hold a time with more than six digits of fractions.

    The features object's first part (its key to the first ``}``) is not searched: that
    text lies inside an object value (a ``"`` in a string is escaped, so the key text
    cannot start inside one), where no time of the row is (0.95 against 0.66 us a credit
    row, the features' colons skipped).

    >>> _long_fraction(b'{"features":{"a":1.12345678},"t":"2026-01-01T00:00:00.1234567Z"}')
    True
    >>> _long_fraction(b'{"t":"2026-01-01T00:00:00.123456Z","features":{"a":12.12345678}}')
    False
    """
    raw = value if isinstance(value, bytes) else value.encode()
    start = raw.find(_FEATURES_KEY)
    if start < 0:
        return _LONG_FRACTION.search(raw) is not None
    end = raw.find(b"}", start)
    return bool(_LONG_FRACTION.search(raw, 0, start) or _LONG_FRACTION.search(raw, end))


def decode_feature_row(value: bytes | str | None) -> FeatureRowFields | FeatureRow:
    """The feature row a record of ``<uc>.features`` carries: what :func:`decode` of it
    returns, as its fields (:class:`FeatureRowFields`, the same values) where msgspec
    reads the row as pydantic would, its features all finite numbers (ints within
    :data:`EXACT_INT`); anything else (an invalid row, text features, a larger int, a
    time written with more than microseconds) goes through
    :func:`decode`, for the model or its reason.

    >>> row = FeatureRow(usecase="credit", source_event_id="e1", entity_id="c7",
    ...                  event_timestamp="2026-01-01T00:00:00Z", features={"age": 41})
    >>> fields = decode_feature_row(row.model_dump_json())
    >>> type(fields).__name__, fields.features, fields.event_timestamp == row.event_timestamp
    ('FeatureRowFields', {'age': 41}, True)
    >>> decode_feature_row(b'{"usecase": "credit"}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    services.common.errors.InvalidInput: not a feature row: field 'source_event_id': ...
    """
    if value is not None:
        row = _read_fast(_decode_row, value, lambda row: row.features.values())
        if row is not None:
            return row
    return decode(topics.FEATURES, value)


Row = TypeVar("Row", FeatureRowFields, ViewRowFields)


def _read_fast(
    decode_fields: Callable[[bytes | str], Row],
    value: bytes | str,
    numbers: Callable[[Row], Iterable[Any]],
) -> Row | None:
    """``decode_fields(value)`` where msgspec reads the row as pydantic would (its feature
    ``numbers`` all finite, no time past microseconds); None where the caller must ask
    the slower path."""
    try:
        row = decode_fields(value)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    return row if _values_as_pydantic(numbers(row)) and not _long_fraction(value) else None


def named_struct(names: Sequence[str], kind: Any, **options: Any) -> Any:
    """A msgspec struct whose fields are ``names`` on the wire, each of ``kind``, in order
    (fields ``f0``, ``f1``, ... renamed, so a name need not be an identifier); None where
    msgspec cannot name a field so (a quote, a backslash, a control character) or a name
    repeats, for the caller to use a dict instead.

    >>> point = named_struct(["x", "debt ratio"], float, gc=False)
    >>> msgspec.json.encode(point(1.0, 0.5))
    b'{"x":1.0,"debt ratio":0.5}'
    >>> named_struct(["a", 'b"c'], float), named_struct(["a", "a"], float)
    (None, None)
    """
    fields = [(f"f{index}", kind) for index in range(len(names))]
    rename = {f"f{index}": name for index, name in enumerate(names)}
    if len(set(names)) < len(names):
        return None
    try:
        return msgspec.defstruct("Features", fields, rename=rename, **options)
    except ValueError:
        return None


def view_row_decoder(names: Sequence[str]) -> Callable[[bytes | str | None], DecodedRow]:
    """The decode of ``<uc>.features`` records for a view of features ``names``: a
    :class:`ViewRowFields` where the row holds exactly those features (any order) and
    msgspec reads it as pydantic would, else what :func:`decode_feature_row` makes of it.
    A struct of the view's names decodes faster than a dict (3.4 against 5.6 us for 44),
    and its values come in the view's order (``msgspec.structs.astuple``).

    >>> decode_row = view_row_decoder(["age", "debt ratio"])
    >>> row = FeatureRow(usecase="credit", source_event_id="e1", entity_id="c7",
    ...     event_timestamp="2026-01-01T00:00:00Z", features={"debt ratio": 0.5, "age": 41})
    >>> fields = decode_row(row.model_dump_json())
    >>> type(fields).__name__, msgspec.structs.astuple(fields.features)
    ('ViewRowFields', (41, 0.5))
    >>> row = row.model_copy(update={"features": {"age": 41}})
    >>> type(decode_row(row.model_dump_json())).__name__  # a feature missing: the other path
    'FeatureRowFields'
    """
    features = named_struct(
        names, FeatureNumber, bases=(ViewFeatures,), frozen=True, forbid_unknown_fields=True
    )
    if not names or features is None:  # a name msgspec cannot give a field: dicts, then
        return decode_feature_row
    row_type: type[ViewRowFields] = msgspec.defstruct(  # type: ignore[assignment]
        "ViewRowFields",
        [("features", features)],
        bases=(ViewRowFields,),
        kw_only=True,
        frozen=True,
        forbid_unknown_fields=True,
    )
    decode_view = Decoder(row_type).decode
    astuple = msgspec.structs.astuple

    def decode_row(value: bytes | str | None) -> DecodedRow:
        if value is not None:
            row = _read_fast(decode_view, value, lambda row: astuple(row.features))
            if row is not None:
                return row
        return decode_feature_row(value)

    return decode_row


def _values_as_pydantic(values: Iterable[Any]) -> bool:
    """Whether every value is one that FeatureValue takes as it is, numbers all finite
    (pydantic's smart union keeps each JSON type as its own). One sum of them says so
    for numbers (0.8 us for 44 against 4 us a value at a time); text, null, lists,
    objects or a sum too large for floats say no, and the caller asks pydantic (which
    keeps text, for the sink to refuse by name).

    >>> _values_as_pydantic([1.5, 2, True]), _values_as_pydantic(["x"])
    (True, False)
    >>> _values_as_pydantic([1e308, 1e308]), _values_as_pydantic([None])
    (False, False)
    """
    try:
        return _isfinite(sum(values))
    except (TypeError, OverflowError):
        return False


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
