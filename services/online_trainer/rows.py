"""Reading the online trainer's records: a feature row parsed once, its values as floats.

A featurized row holds numbers, and river learns floats. :class:`NumericRow` is
the ``FeatureRow`` schema with its values read as finite floats (a JSON
integer too) in the same pydantic pass that validates the row, so a valid
row is parsed once and its values are not converted again. Anything that
pass refuses (a boolean or a string value, or an invalid row) is read again
by the schema itself (``serde.decode``), which gives the dead letter its
reason, and by :func:`~services.online_trainer.learner.numeric_features`.

>>> import json
>>> row = {"event_id": "r1", "usecase": "uc", "source_event_id": "e1", "entity_id": "c1",
...        "event_timestamp": "2026-01-01T00:00:00Z", "features": {"a": 1, "b": 0.5}}
>>> read_features(json.dumps(row))[1]
{'a': 1.0, 'b': 0.5}
>>> read_features(json.dumps({**row, "features": {"a": True}}))[1]
{'a': 1.0}
>>> read_features(json.dumps({**row, "features": {"a": "x"}}))
Traceback (most recent call last):
...
services.common.errors.InvalidInput: feature 'a' is a string ('x'); river needs numbers
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, ValidationError

from schemas import topics
from schemas.events import FeatureRow
from services.common.serde import decode
from services.online_trainer.learner import numeric_features

StrictFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class NumericRow(FeatureRow):
    """A ``FeatureRow`` whose values are all numbers (booleans and strings refused)."""

    features: dict[str, StrictFloat]  # type: ignore[assignment]  # narrower: floats only


def read_features(value: bytes | str | None) -> tuple[FeatureRow, dict[str, float]]:
    """The feature row a ``<uc>.features`` record carries, and its values as floats."""
    if value is not None:
        try:
            numeric = NumericRow.model_validate_json(value)
        except ValidationError:
            pass
        else:
            return numeric, numeric.features
    row = decode(topics.FEATURES, value)
    return row, numeric_features(row.features)
