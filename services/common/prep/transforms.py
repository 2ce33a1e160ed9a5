"""Feature transforms: one cleaned value in, one or more floats out.

Pure functions with the spec's fixed parameters, so the ingestion, the
trainers and the inference service compute the same numbers. A missing value
(an optional field with no imputation) becomes the transform's neutral
value: 0.0, which is the mean after ``standardize``, and all zeros for
``onehot``.

>>> standardize(130.0, mean=100.0, std=15.0)
2.0
>>> minmax(5.0, low=0.0, high=20.0)
0.25
>>> bin_index(45.0, [40.0, 60.0])
1.0
>>> ratio(50_000.0, 100_000.0), ratio(1.0, 0.0)
(0.5, 0.0)
>>> round(log1p(-3.0), 3), round(log1p(9.0), 3)
(0.0, 2.303)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from schemas.fields import (
    Bin,
    DatePart,
    Log1p,
    MinMax,
    OneHot,
    Passthrough,
    Ratio,
    Standardize,
    Transform,
)
from schemas.usecase import UseCase
from services.common.prep.values import normalize_category, remembered


def standardize(x: float, *, mean: float, std: float) -> float:
    """``(x - mean) / std``."""
    return (x - mean) / std


def minmax(x: float, *, low: float, high: float) -> float:
    """``(x - low) / (high - low)``, not clipped: values outside show as outside [0, 1]."""
    return (x - low) / (high - low)


def bin_index(x: float, edges: list[float]) -> float:
    """The index of the interval ``x`` falls in; a value on an edge goes right.

    >>> [bin_index(v, [10.0, 20.0]) for v in (5.0, 10.0, 15.0, 25.0)]
    [0.0, 1.0, 1.0, 2.0]
    """
    return float(bisect.bisect_right(edges, x))


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; 0 where the denominator is 0."""
    return numerator / denominator if denominator != 0 else 0.0


def log1p(x: float) -> float:
    """``log(1 + max(x, 0))`` for heavy-tailed amounts."""
    return math.log1p(max(x, 0.0))


def date_parts(moment: datetime, parts: list[str]) -> list[float]:
    """Calendar parts of an aware datetime, read in UTC; Monday is day 0.

    >>> from datetime import UTC, datetime
    >>> date_parts(datetime(2026, 1, 3, 14, tzinfo=UTC), ["hour", "dayofweek", "is_weekend"])
    [14.0, 5.0, 1.0]
    """
    found = {
        "hour": moment.hour,
        "dayofweek": moment.weekday(),
        "day": moment.day,
        "month": moment.month,
        "is_weekend": int(moment.weekday() >= 5),
    }
    return [float(found[part]) for part in parts]


def onehot(value: Any, categories: list[str]) -> list[float]:
    """1.0 at the position of ``value`` among normalized ``categories``, 0.0 elsewhere.

    >>> onehot(3, ["1", "3", "other"])
    [0.0, 1.0, 0.0]
    >>> onehot(None, ["1", "3"])
    [0.0, 0.0]
    """
    key = None if value is None else normalize_category(value)
    return [1.0 if key == category else 0.0 for category in categories]


def as_number(value: Any) -> float | None:
    """A cleaned value as a float: booleans as 0/1, datetimes as epoch seconds.

    >>> as_number(True), as_number(3), as_number(None)
    (1.0, 3.0, None)
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def apply(transform: Transform, values: dict[str, Any], spec: UseCase) -> list[float]:
    """The outputs of one transform (in ``spec.feature_names()`` order) for cleaned values."""
    if isinstance(transform, OneHot):
        field = spec.fields[transform.field]
        categories = [normalize_category(v) for v in field.values or []]
        if field.unknown == "other":
            categories.append("other")
        return onehot(values.get(transform.field), categories)
    if isinstance(transform, DatePart):
        moment = values.get(transform.field)
        if moment is None:
            return [0.0] * len(transform.parts)
        return date_parts(moment, list(transform.parts))
    if isinstance(transform, Ratio):
        top = as_number(values.get(transform.numerator))
        bottom = as_number(values.get(transform.denominator))
        return [0.0 if top is None or bottom is None else ratio(top, bottom)]
    x = as_number(values.get(transform.field))
    if x is None:
        return [0.0]
    if isinstance(transform, Standardize):
        return [standardize(x, mean=transform.mean, std=transform.std)]
    if isinstance(transform, MinMax):
        return [minmax(x, low=transform.min, high=transform.max)]
    if isinstance(transform, Bin):
        return [bin_index(x, transform.edges)]
    if isinstance(transform, Log1p):
        return [log1p(x)]
    assert isinstance(transform, Passthrough)
    return [x]


Compiled = Callable[[dict[str, Any]], Sequence[float]]


def compile_transform(transform: Transform, spec: UseCase) -> Compiled:
    """``apply(transform, values, spec)`` as a function of ``values`` alone, with the
    spec's parameters (normalized categories, bin edges) worked out once.

    The outputs are the same numbers as :func:`apply`'s; the preparer calls the
    compiled form for every event.

    >>> from schemas.usecase import UseCase
    >>> spec = UseCase.model_validate({
    ...     "name": "toy", "task": "regression",
    ...     "fields": {"plan": {"type": "category", "values": [1, "Gold"], "unknown": "other"},
    ...                "age": {"type": "int"}},
    ...     "features": [{"kind": "onehot", "field": "plan"},
    ...                  {"kind": "standardize", "field": "age", "mean": 40, "std": 10}],
    ... })
    >>> onehot_plan, age_z = (compile_transform(t, spec) for t in spec.features)
    >>> list(onehot_plan({"plan": "gold"})), list(onehot_plan({"plan": 1.0}))
    ([0.0, 1.0, 0.0], [1.0, 0.0, 0.0])
    >>> list(age_z({"age": 50.0})), list(age_z({"age": None}))
    ([1.0], [0.0])
    """
    if isinstance(transform, OneHot):
        field = spec.fields[transform.field]
        categories = [normalize_category(v) for v in field.values or []]
        if field.unknown == "other":
            categories.append("other")
        return _compile_onehot(transform.field, categories)
    if isinstance(transform, DatePart):
        date_field, parts = transform.field, [str(part) for part in transform.parts]
        zeros = (0.0,) * len(parts)

        def date_part(values: dict[str, Any]) -> Sequence[float]:
            moment = values.get(date_field)
            return zeros if moment is None else date_parts(moment, parts)

        return date_part
    if isinstance(transform, Ratio):
        top_field, bottom_field = transform.numerator, transform.denominator

        def ratio_of(values: dict[str, Any]) -> Sequence[float]:
            top = as_number(values.get(top_field))
            bottom = as_number(values.get(bottom_field))
            return (0.0 if top is None or bottom is None else ratio(top, bottom),)

        return ratio_of
    return _compile_numeric(transform)


def _compile_numeric(transform: Transform) -> Compiled:
    """One float from one field: standardize, minmax, bin, log1p or passthrough."""
    scaled: Callable[[float], float]
    if isinstance(transform, Standardize):
        mean, std = transform.mean, transform.std

        def scaled(x: float) -> float:
            return (x - mean) / std

    elif isinstance(transform, MinMax):
        low, high = transform.min, transform.max

        def scaled(x: float) -> float:
            return (x - low) / (high - low)

    elif isinstance(transform, Bin):
        edges = list(transform.edges)

        def scaled(x: float) -> float:
            return float(bisect.bisect_right(edges, x))

    elif isinstance(transform, Log1p):
        scaled = log1p
    else:
        assert isinstance(transform, Passthrough)

        def scaled(x: float) -> float:
            return x

    name = transform.field

    def numeric(values: dict[str, Any]) -> Sequence[float]:
        value = values.get(name)
        if value is None:
            return (0.0,)
        kind = type(value)
        if kind is float:
            return (scaled(value),)
        x = as_number(value)
        assert x is not None
        return (scaled(x),)

    return numeric


def _compile_onehot(field: str, categories: list[str]) -> Compiled:
    """A one-hot over normalized ``categories``, its outputs remembered per value."""
    empty = tuple(0.0 for _ in categories)
    encoded = remembered(lambda value: tuple(onehot(value, categories)))

    def encode(values: dict[str, Any]) -> Sequence[float]:
        value = values.get(field)
        return empty if value is None else encoded(value)

    return encode
