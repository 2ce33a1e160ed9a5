"""A use case's inputs: each raw field and how it is cleaned, and the features made of them.

A :class:`FieldSpec` declares one field of the raw event (type, range, allowed
values, imputation); a :data:`Transform` engineers one or more features from
fields. :func:`output_names` names a transform's features and
:func:`field_refs` the fields it reads; :data:`INPUT_TYPES` says which field
types each transform takes.

>>> output_names(OneHot(kind="onehot", field="tier"),
...              {"tier": FieldSpec(type="category", values=["Gold Plus", 3], unknown="other")})
['tier_Gold_Plus', 'tier_3', 'tier_other']
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import Field, model_validator

from schemas.classes import Scalar
from schemas.strict import Strict


class FieldSpec(Strict):
    """One input field of the raw event, and how to clean it.

    Missing, null and NaN values are imputed with ``impute`` (``reject`` sends
    the event to the dead-letter topic). Values outside ``cap`` are clipped to
    it (outlier treatment); values outside ``min``/``max`` are rejected.
    Categories are matched after ``aliases`` and case folding; one not in
    ``values`` is rejected or mapped to ``other`` as ``unknown`` says.
    """

    type: Literal["float", "int", "bool", "category", "string", "datetime"]
    description: str = ""
    required: bool = True
    min: float | None = None
    max: float | None = None
    cap: tuple[float, float] | None = None
    values: list[Scalar] | None = None
    aliases: dict[str, Scalar] = Field(default_factory=dict)
    unknown: Literal["reject", "other"] = "reject"
    impute: Literal["reject", "mean", "median", "most_frequent", "constant"] = "reject"
    fill: Scalar | None = None
    pseudonymize: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.cap is not None and self.cap[0] > self.cap[1]:
            raise ValueError(f"cap {list(self.cap)} is not an increasing pair")
        if self.impute == "constant" and self.fill is None:
            raise ValueError("impute: constant needs a fill value")
        numeric = self.type in ("float", "int")
        if self.impute in ("mean", "median") and not numeric:
            raise ValueError(f"impute: {self.impute} needs a numeric field, not {self.type}")
        if not numeric and (self.min is not None or self.max is not None or self.cap):
            raise ValueError(f"min, max and cap apply to numeric fields, not {self.type}")
        if self.values is not None and self.type != "category":
            raise ValueError("values apply to category fields only")
        if self.pseudonymize and (self.type not in ("string", "category") or self.values):
            raise ValueError("pseudonymize applies to string fields and open categories only")
        return self


class _Transform(Strict):
    name: str | None = Field(default=None, description="output feature name")


class Passthrough(_Transform):
    """The cleaned field as it is (numbers and booleans as numbers)."""

    kind: Literal["passthrough"]
    field: str


class Standardize(_Transform):
    """``(x - mean) / std`` with the spec's fixed parameters, so training and serving agree."""

    kind: Literal["standardize"]
    field: str
    mean: float
    std: float = Field(gt=0)


class MinMax(_Transform):
    """``(x - min) / (max - min)``, with fixed bounds."""

    kind: Literal["minmax"]
    field: str
    min: float
    max: float

    @model_validator(mode="after")
    def _bounds(self) -> MinMax:
        if self.max <= self.min:
            raise ValueError("max must be greater than min")
        return self


class OneHot(_Transform):
    """One 0/1 feature per category (the field's ``values``, plus ``other`` if mapped)."""

    kind: Literal["onehot"]
    field: str


class Bin(_Transform):
    """The index of the interval ``x`` falls in, given increasing edges."""

    kind: Literal["bin"]
    field: str
    edges: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _increasing(self) -> Bin:
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"edges {self.edges} are not strictly increasing")
        return self


class DatePart(_Transform):
    """Calendar parts of a datetime field (or the event timestamp)."""

    kind: Literal["date_part"]
    field: str
    parts: list[Literal["hour", "dayofweek", "day", "month", "is_weekend"]] = Field(min_length=1)


class Ratio(_Transform):
    """``numerator / denominator``; 0 where the denominator is 0."""

    kind: Literal["ratio"]
    numerator: str
    denominator: str


class Log1p(_Transform):
    """``log(1 + max(x, 0))`` for heavy-tailed amounts."""

    kind: Literal["log1p"]
    field: str


Transform = Annotated[
    Passthrough | Standardize | MinMax | OneHot | Bin | DatePart | Ratio | Log1p,
    Field(discriminator="kind"),
]


# The field types each transform can compute a number from.
INPUT_TYPES: dict[str, tuple[str, ...]] = {
    "passthrough": ("float", "int", "bool", "datetime"),
    "standardize": ("float", "int", "bool"),
    "minmax": ("float", "int", "bool"),
    "onehot": ("category",),
    "bin": ("float", "int"),
    "date_part": ("datetime",),
    "ratio": ("float", "int", "bool"),
    "log1p": ("float", "int"),
}


def field_refs(transform: Transform) -> list[str]:
    if isinstance(transform, Ratio):
        return [transform.numerator, transform.denominator]
    return [transform.field]


def output_names(transform: Transform, fields: Mapping[str, FieldSpec]) -> list[str]:
    """The names of the features ``transform`` makes, given the use case's ``fields``."""
    if isinstance(transform, Ratio):
        return [transform.name or f"{transform.numerator}_per_{transform.denominator}"]
    base = transform.name or transform.field
    if isinstance(transform, OneHot):
        values = list(fields[transform.field].values or [])
        if fields[transform.field].unknown == "other":
            values.append("other")
        return [f"{base}_{_slug(v)}" for v in values]
    if isinstance(transform, DatePart):
        return [f"{base}_{part}" for part in transform.parts]
    if isinstance(transform, Passthrough):
        return [base]
    suffix = {"standardize": "z", "minmax": "scaled", "bin": "bin", "log1p": "log1p"}
    return [transform.name or f"{transform.field}_{suffix[transform.kind]}"]


def _slug(value: Scalar) -> str:
    """A category as part of a feature name that every store accepts (MLflow refuses ``=``).

    >>> _slug("Gold Plus"), _slug(3)
    ('Gold_Plus', '3')
    """
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(value))
