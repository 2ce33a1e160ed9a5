"""A feature row read once (``NumericRow``) is read as the schema and the old path read it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas import topics
from services.common.errors import InvalidInput
from services.common.serde import decode
from services.online_trainer.learner import numeric_features
from services.online_trainer.rows import NumericRow, read_features

ROW: dict[str, Any] = {
    "event_id": "r1",
    "occurred_at": "2026-01-01T00:00:01Z",
    "usecase": "uc",
    "source_event_id": "e1",
    "entity_id": "c1",
    "event_timestamp": "2026-01-01T00:00:00Z",
    "features": {"a": 0.25, "b": -3.0},
}


def schema_read(value: bytes) -> tuple[Any, dict[str, float]]:
    """What the trainer read before: the schema's decode, then the values as floats."""
    row = decode(topics.FEATURES, value)
    return row, numeric_features(row.features)


CASES = {
    "floats": ROW,
    "integers": {**ROW, "features": {"a": 1, "b": 0}},
    "no features": {**ROW, "features": {}},
    "a boolean": {**ROW, "features": {"a": True, "b": 0.5}},
    "a string": {**ROW, "features": {"a": "1.5"}},
    "a null": {**ROW, "features": {"a": None}},
    "a list": {**ROW, "features": {"a": [1.0]}},
    "no source event": {k: v for k, v in ROW.items() if k != "source_event_id"},
    "an empty entity": {**ROW, "entity_id": ""},
    "an extra field": {**ROW, "extra": 1},
    "another event type": {**ROW, "event_type": "label"},
    "a bad timestamp": {**ROW, "event_timestamp": "yesterday"},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_read_features_reads_as_the_schema_does(case: str) -> None:
    value = json.dumps(CASES[case]).encode()
    try:
        expected = schema_read(value)
    except InvalidInput as exc:
        with pytest.raises(InvalidInput) as found:
            read_features(value)
        assert str(found.value) == str(exc)
        return
    row, features = read_features(value)
    assert features == expected[1]
    assert all(type(v) is float for v in features.values())
    assert row.model_dump(exclude={"features"}) == expected[0].model_dump(exclude={"features"})


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_a_value_that_is_not_finite_is_refused_with_the_schemas_reason(value: bytes) -> None:
    document = json.dumps(ROW).encode().replace(b'"a": 0.25', b'"a": ' + value)
    with pytest.raises(InvalidInput) as found:
        read_features(document)
    with pytest.raises(InvalidInput) as expected:
        decode(topics.FEATURES, document)
    assert str(found.value) == str(expected.value)


def test_numeric_row_is_the_feature_row_schema_but_for_its_values() -> None:
    from schemas.events import FeatureRow

    assert set(NumericRow.model_fields) == set(FeatureRow.model_fields)
    assert NumericRow.model_config == FeatureRow.model_config
