"""The one class rule: which declared class a raw label or predicted value denotes.

Labels and predictions reach the services in many spellings: ``1`` on the
labels topic, ``"1"`` in the offline store (labels are stored as text),
``"1"`` or ``"true"`` as a JSON key of a probability map, ``1.0`` out of
pandas, ``np.int64(1)`` out of a model. Every service matches them to the use
case's classes with :class:`ClassRule` (through ``UseCase.class_of``), so they
all agree on what a label means. The spellings:

- numbers are matched by value: ``1``, ``1.0``, ``"1"``, ``" 1.0 "`` and
  ``np.int64(1)`` are one class, and ``0.5`` and ``"0.50"`` another;
- booleans are the numbers 0 and 1, as in Python, numpy and pandas:
  ``True``, ``"true"``, ``"TRUE"``, ``1`` and ``"1"`` are one class, whether the
  spec declares it as ``1``, ``true`` or ``"true"``;
- other text is matched without surrounding blanks and case: ``" Yes"`` is
  the class ``"yes"``;
- ``None``, ``""``, NaN and infinities (as numbers or as text) and anything
  else denote no class.

So a label reads the same as the text the offline store keeps of it:
``class_of(str(label)) == class_of(label)``.

Two declared classes with one spelling (``[1, "1"]``, ``["Yes", "yes"]``,
``[1, true]``) are refused: no label could tell them apart. For regression
the value a label denotes is its finite number as a float (booleans and
text that is not a number denote none).

>>> rule = ClassRule("classification", [0, 1])
>>> [rule.class_of(v) for v in (1, 1.0, "1", " 1.0 ", True, "True", 0.0, "no", 2, None)]
[1, 1, 1, 1, 1, 1, 0, None, None, None]
>>> ClassRule("classification", [False, True]).class_of(1)
True
>>> ClassRule("classification", ["no", "yes"]).class_of(" YES")
'yes'
>>> ClassRule("classification", ["no", "yes"]).probabilities_of({"yes": 0.75, "No": 0.25, "x": 0.0})
{'yes': 0.75, 'no': 0.25}
>>> ClassRule("regression", None).class_of("2.5"), ClassRule("regression", None).class_of(True)
(2.5, None)
>>> ClassRule("classification", ["Yes", "yes"])
Traceback (most recent call last):
...
ValueError: classes 'Yes' and 'yes' are one class: both read 'yes'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Scalar = int | float | str | bool

_BOOLEAN_WORDS = {"true": "1", "false": "0"}


def class_key(value: object) -> str | None:
    """The spelling a label or class is matched by (None: it denotes no class).

    >>> [class_key(v) for v in (1, 1.0, "1", " 1.0 ", True, "TRUE", -0.0, False)]
    ['1', '1', '1', '1', '1', '1', '0', '0']
    >>> class_key(" Yes"), class_key(0.5), class_key("5e-1")
    ('yes', '0.5', '0.5')
    >>> class_key(float("nan")), class_key("NaN"), class_key(""), class_key(None), class_key([1])
    (None, None, None, None, None)
    """
    if isinstance(value, str):
        text = value.strip().casefold()
        if not text:
            return None
        if text in _BOOLEAN_WORDS:
            return _BOOLEAN_WORDS[text]
        number = _parse(text)
        if number is None:
            return text
        return str(number) if isinstance(number, int) else _float_key(number)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_key(value)
    plain = _plain(value)
    return class_key(plain) if plain is not None else None


def number_of(value: object) -> float | None:
    """The finite number a regression label denotes (None for booleans, text, NaN, infinity).

    >>> number_of(3), number_of(" 2.5 "), number_of(True), number_of("nan"), number_of("x")
    (3.0, 2.5, None, None, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        parsed = _parse(value.strip())
        if parsed is None:
            return None
        value = parsed
    elif not isinstance(value, int | float):
        plain = _plain(value)
        return number_of(plain) if plain is not None else None
    try:
        number = float(value)
    except OverflowError:  # an int beyond the floats
        return None
    return number if math.isfinite(number) else None


class ClassRule:
    """The classes of one use case and how raw values are matched to them.

    Built once per spec (``UseCase`` caches it); :meth:`class_of` is one
    spelling and one dict look-up.
    """

    __slots__ = ("_by_key", "classes", "task")

    def __init__(self, task: str, classes: Sequence[Scalar] | None) -> None:
        self.task = task
        self.classes = classes
        self._by_key: dict[str, Scalar] = {}
        if task != "classification":
            return
        for cls in classes or ():
            key = class_key(cls)
            if key is None:
                raise ValueError(f"class {cls!r} is not a label value")
            if key in self._by_key:
                first = self._by_key[key]
                raise ValueError(f"classes {first!r} and {cls!r} are one class: both read {key!r}")
            self._by_key[key] = cls

    def serves(self, task: str, classes: Sequence[Scalar] | None) -> bool:
        """Whether this rule was built for exactly these (the same list object)."""
        return task == self.task and classes is self.classes

    def class_of(self, value: object) -> Scalar | None:
        """The declared class ``value`` denotes, or None; the float value for regression."""
        if self.task != "classification":
            return number_of(value)
        key = class_key(value)
        return self._by_key.get(key) if key is not None else None

    def probabilities_of(self, proba: Mapping[Any, float]) -> dict[Scalar, float]:
        """A probability map keyed by the declared classes; keys that denote none are dropped."""
        mapped: dict[Scalar, float] = {}
        for key, value in proba.items():
            cls = self.class_of(key)
            if cls is not None:
                mapped[cls] = float(value)
        return mapped


def _parse(text: str) -> int | float | None:
    """A number written as text: an int when it is one (exact beyond float precision).

    >>> _parse("12345678901234567891"), _parse(" 2.0"), _parse("-inf"), _parse("one")
    (12345678901234567891, 2, -inf, None)
    """
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else number


def _float_key(number: float) -> str | None:
    if not math.isfinite(number):
        return None
    return str(int(number)) if number.is_integer() else repr(number)


def _plain(value: object) -> Scalar | None:
    """A numpy scalar (or anything with ``.item()``) as a Python scalar."""
    item = getattr(value, "item", None)
    if not callable(item):
        return None
    try:
        plain = item()
    except (TypeError, ValueError):
        return None
    return plain if isinstance(plain, str | int | float | bool) else None
