"""Pure parsers for one raw value each: numbers, booleans, timestamps, categories.

Each parser returns the typed value, :data:`MISSING` for an absent, null or
NaN value, or raises :class:`ValueProblem` with what was expected and what
came; the preparer turns that into an ``InvalidInput`` naming the field.

>>> parse_number("42.5")
42.5
>>> parse_number(float("nan")) is MISSING
True
>>> parse_bool("Yes"), parse_bool(0)
(True, False)
>>> parse_timestamp(1_700_000_000_000).isoformat()
'2023-11-14T22:13:20+00:00'
>>> normalize_category(" Gold ")
'gold'
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

MAX_TEXT = 200  # longest id or category spelling kept in a reason
REMEMBERED = 4096  # most answers a remembered reading keeps (an open category could grow it)
_PLAIN_TEXT = 64  # longest text whose answer is remembered
Answer = TypeVar("Answer")


class _Missing:
    """The one marker for a value that is absent, null or NaN."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()

# Above this an epoch number is read as milliseconds (1e11 s is the year 5138).
_EPOCH_MS_ABOVE = 1e11
_TRUE = frozenset({"true", "t", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "off"})


class ValueProblem(ValueError):
    """A raw value that is not what its field expects."""


def show(value: Any, limit: int = 40) -> str:
    """A short, readable rendering of a raw value for an error reason.

    >>> show("old")
    "'old'"
    >>> show({"a": 1})
    'an object'
    >>> show(float("inf"))
    'Infinity'
    >>> show("x" * 100)[-3:]
    'xx…'
    """
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        return "a number too long to show"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_missing(value: Any) -> bool:
    """Absent, null and NaN all count as missing.

    >>> [is_missing(v) for v in (None, float("nan"), 0, "")]
    [True, True, False, False]
    """
    return value is None or value is MISSING or (isinstance(value, float) and math.isnan(value))


def parse_number(value: Any) -> float | _Missing:
    """A JSON number, or a string holding one; booleans, text and objects are refused.

    Infinity is returned as it is (the caller caps or rejects it).

    >>> parse_number(3), parse_number(" -1e3 ")
    (3.0, -1000.0)
    >>> parse_number(True)
    Traceback (most recent call last):
    ...
    services.common.prep.values.ValueProblem: expected a number, got true
    >>> parse_number("old")
    Traceback (most recent call last):
    ...
    services.common.prep.values.ValueProblem: expected a number, got 'old'
    """
    if is_missing(value):
        return MISSING
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueProblem(f"expected a number, got {show(value)}")
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueProblem(f"expected a number, got {show(value)}") from None
    else:
        try:
            number = float(value)
        except OverflowError:
            raise ValueProblem(f"expected a number, got {show(value)} (too large)") from None
    return MISSING if math.isnan(number) else number


def parse_integer(value: Any) -> float | _Missing:
    """A number with no fractional part (``3``, ``3.0``, ``"3"``); infinity passes through.

    >>> parse_integer("7")
    7.0
    >>> parse_integer(2.5)
    Traceback (most recent call last):
    ...
    services.common.prep.values.ValueProblem: expected an integer, got 2.5
    """
    number = parse_number(value)
    if number is MISSING or math.isinf(number):  # type: ignore[arg-type]
        return number
    assert isinstance(number, float)
    if not number.is_integer():
        raise ValueProblem(f"expected an integer, got {show(value)}")
    return number


def parse_bool(value: Any) -> bool | _Missing:
    """true/false, 0/1, and the usual spellings: yes/no, y/n, t/f, on/off.

    >>> parse_bool("NO"), parse_bool(1.0), parse_bool("true")
    (False, True, True)
    >>> parse_bool(2)
    Traceback (most recent call last):
    ...
    services.common.prep.values.ValueProblem: expected a boolean (true/false, 0/1, yes/no), got 2
    """
    if is_missing(value):
        return MISSING
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().casefold()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueProblem(f"expected a boolean (true/false, 0/1, yes/no), got {show(value)}")


def parse_timestamp(value: Any) -> datetime:
    """An ISO-8601 string or epoch seconds / milliseconds, as an aware UTC datetime.

    A naive ISO string is read as UTC.

    >>> parse_timestamp("2026-01-02T03:04:05Z").isoformat()
    '2026-01-02T03:04:05+00:00'
    >>> parse_timestamp("2026-01-02T03:04:05+02:00").hour
    1
    >>> parse_timestamp(1_700_000_000).year
    2023
    >>> parse_timestamp("yesterday")
    Traceback (most recent call last):
    ...
    services.common.prep.values.ValueProblem: timestamp 'yesterday' is not ISO-8601 or epoch seconds
    """
    original = value  # named in the reason, whatever it was turned into on the way
    if isinstance(value, bool) or value is None:
        raise _not_a_timestamp(original)
    if isinstance(value, str):
        text = value.strip()
        epoch: float | None = None
        if ":" not in text:  # float() refuses every text with a colon (an ISO time has one)
            try:
                epoch = float(text)
            except ValueError:
                epoch = None
        if epoch is None:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise _not_a_timestamp(original) from None
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        value = epoch
    if not isinstance(value, int | float):
        raise _not_a_timestamp(original)
    try:
        seconds = float(value)
        if abs(seconds) > _EPOCH_MS_ABOVE:
            seconds /= 1000.0
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise _not_a_timestamp(original) from None


def _not_a_timestamp(value: Any) -> ValueProblem:
    return ValueProblem(f"timestamp {show(value)} is not ISO-8601 or epoch seconds")


def normalize_category(value: Any) -> str:
    """The comparable spelling of a category: case-folded, stripped, numbers unified.

    ``3``, ``3.0``, ``"3"`` and ``" 3.0 "`` all read ``"3"``, so a YAML list of
    ints matches events that send strings.

    >>> [normalize_category(v) for v in (3, 3.0, " 3 ", "3.0", 0.5, "Car ", True)]
    ['3', '3', '3', '3', '0.5', 'car', 'true']
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value.strip().casefold()
        try:
            number = float(text)
        except ValueError:
            return text
        return _number_text(number) if math.isfinite(number) else text
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:
            raise ValueProblem(f"expected a category, got {show(value)}") from None
    if isinstance(value, float):
        return _number_text(value) if math.isfinite(value) else repr(value)
    raise ValueProblem(f"expected a category, got {show(value)}")


def _number_text(number: float) -> str:
    return str(int(number)) if number.is_integer() else repr(number)


def remembered(compute: Callable[[Any], Answer]) -> Callable[[Any], Answer]:
    """``compute`` of one raw value, its answers remembered for the plain values events
    repeat: numbers (not NaN), booleans, text of up to 64 characters; at most
    :data:`REMEMBERED` of them. Keyed by type and value, so True, 1 and 1.0 stay apart
    (0.0 and -0.0 share a key: ``compute`` must answer them alike). What ``compute``
    raises is raised each time, never remembered.

    >>> seen = []
    >>> spelled = remembered(lambda value: seen.append(value) or normalize_category(value))
    >>> [spelled(v) for v in (1, 1, True, 1.0, " Gold ", " Gold ")], seen
    (['1', '1', 'true', '1', 'gold', 'gold'], [1, True, 1.0, ' Gold '])
    """
    answers: dict[tuple[type, Any], Answer] = {}

    def answer(raw: Any) -> Answer:
        kind = type(raw)
        if kind is str:
            if len(raw) > _PLAIN_TEXT:
                return compute(raw)
        elif not (kind is int or kind is bool or (kind is float and raw == raw)):
            return compute(raw)
        key = (kind, raw)
        try:
            return answers[key]
        except KeyError:
            pass
        found = compute(raw)
        if len(answers) < REMEMBERED:
            answers[key] = found
        return found

    return answer


def pseudonymize(value: str, salt: str) -> str:
    """A salted sha256 of a personal value: stable for joins, not reversible.

    >>> pseudonymize("alice@example.com", salt="s3cret")[:16]
    '9d43d048b25835e4'
    """
    return hashlib.sha256(f"{salt}\x00{value}".encode()).hexdigest()


__all__ = [
    "MISSING",
    "ValueProblem",
    "is_missing",
    "normalize_category",
    "parse_bool",
    "parse_integer",
    "parse_number",
    "parse_timestamp",
    "pseudonymize",
    "remembered",
    "show",
]
