"""The features service's decode of a row (msgspec) against the model's (pydantic)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.data import workload
from bench.stack import USECASES
from schemas import topics
from schemas.events import FeatureRow
from schemas.usecase import load_usecase
from services.common.errors import InvalidInput
from services.common.serde import FeatureRowFields, decode, decode_feature_row

FIELDS = ("source_event_id", "entity_id", "event_timestamp", "features", "usecase", "event_id")


@pytest.fixture(scope="module")
def credit_rows() -> list[FeatureRow]:
    return workload(load_usecase(USECASES / "credit.yaml"), 300).rows


def answer(value: bytes) -> tuple[str, Any]:
    """What a decoder made of ``value``: its fields, or its refusal's reason."""
    try:
        row = decode(topics.FEATURES, value)
    except InvalidInput as exc:
        return "refused", exc.reason
    return "row", {name: getattr(row, name) for name in FIELDS}


def fast_answer(value: bytes) -> tuple[str, Any]:
    try:
        row = decode_feature_row(value)
    except InvalidInput as exc:
        return "refused", exc.reason
    return "row", {name: getattr(row, name) for name in FIELDS}


def test_the_fields_are_the_models_in_its_order() -> None:
    assert FeatureRowFields.__struct_fields__ == tuple(FeatureRow.model_fields)


def test_credit_rows_decode_to_the_models_values_without_a_model(
    credit_rows: list[FeatureRow],
) -> None:
    for row in credit_rows:
        value = row.model_dump_json().encode()
        fields = decode_feature_row(value)
        assert isinstance(fields, FeatureRowFields)
        assert fast_answer(value) == answer(value)
        assert fields.occurred_at == row.occurred_at


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_timestamp", "2026-01-01T00:00:00.1234567Z"),  # pydantic truncates
        ("occurred_at", "2026-01-01T00:00:00.9999999Z"),
        ("event_timestamp", "2026-01-01T00:00:00+01:00"),
        ("event_timestamp", "2026-01-01"),
        ("event_timestamp", 1767225600),
        ("event_timestamp", "2026-01-01T24:00:00Z"),
        ("schema_version", 2),
        ("schema_version", 1.0),
        ("event_type", "label"),
        ("usecase", ""),
        ("entity_id", 5),
        ("event_id", ""),
        ("extra", 1),
        ("features", {"a": None}),
        ("features", {"a": [1.0]}),
        ("features", {"a": "one", "b": 1.0}),  # text: the model, for the sink to refuse
        ("features", {"a": 1, "b": True, "c": 2.5}),
        ("features", {"a": 1e308, "b": 1e308}),
        ("features", {"a": 10**30}),
        ("features", {}),
    ],
)
def test_every_other_row_is_read_as_the_model_reads_it(
    credit_rows: list[FeatureRow], field: str, value: Any
) -> None:
    document = json.loads(credit_rows[0].model_dump_json())
    document[field] = value
    raw = json.dumps(document).encode()
    assert fast_answer(raw) == answer(raw)


def test_a_missing_field_and_a_broken_record_have_the_models_reasons(
    credit_rows: list[FeatureRow],
) -> None:
    document = json.loads(credit_rows[0].model_dump_json())
    del document["entity_id"]
    for raw in [json.dumps(document).encode(), b"{", b"[]", b""]:
        assert fast_answer(raw) == answer(raw)
        assert fast_answer(raw)[0] == "refused"
    with pytest.raises(InvalidInput, match="empty message"):
        decode_feature_row(None)


def test_a_time_with_nanoseconds_is_truncated_as_pydantic_does(
    credit_rows: list[FeatureRow],
) -> None:
    document = json.loads(credit_rows[0].model_dump_json())
    document["event_timestamp"] = "2026-01-01T00:00:00.9999999Z"
    row = decode_feature_row(json.dumps(document))
    assert isinstance(row, FeatureRow)
    assert row.event_timestamp.microsecond == 999_999
