"""The features service's decode of a row into a struct of its view's features."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from bench.data import workload
from bench.stack import USECASES
from schemas import topics
from schemas.events import FeatureRow
from schemas.usecase import load_usecase
from services.common import featurestore as fs
from services.common.errors import InvalidInput
from services.common.onlinestore import row_text
from services.common.serde import (
    EXACT_INT,
    ViewRowFields,
    decode,
    decode_feature_row,
    view_row_decoder,
)

CREDIT = load_usecase(USECASES / "credit.yaml")
NAMES = CREDIT.feature_names()
FIELDS = ("source_event_id", "entity_id", "event_timestamp", "usecase", "event_id", "occurred_at")
decode_row = view_row_decoder(NAMES)


@pytest.fixture(scope="module")
def credit_rows() -> list[FeatureRow]:
    return workload(CREDIT, 300).rows


def features_of(row: Any) -> dict[str, Any]:
    if isinstance(row.features, dict):
        return row.features
    return dict(zip(NAMES, msgspec.structs.astuple(row.features), strict=True))


def answer(decoder: Any, value: bytes) -> tuple[str, Any]:
    """What a decoder made of ``value``: its fields and features by name, or its reason."""
    try:
        row = decoder(value)
    except InvalidInput as exc:
        return "refused", exc.reason
    fields = {name: getattr(row, name) for name in FIELDS}
    # Values compared with their types: 1, 1.0 and True are equal in Python.
    return "row", (fields, {k: (type(v), v) for k, v in features_of(row).items()})


def model_answer(value: bytes) -> tuple[str, Any]:
    return answer(lambda raw: decode(topics.FEATURES, raw), value)


def test_credit_rows_decode_to_the_views_struct_with_the_models_values(
    credit_rows: list[FeatureRow],
) -> None:
    for row in credit_rows:
        value = row.model_dump_json().encode()
        assert isinstance(decode_row(value), ViewRowFields)
        assert answer(decode_row, value) == model_answer(value)


def reordered(features: dict[str, Any]) -> dict[str, Any]:
    return dict(reversed(features.items()))


def without(name: str) -> Any:
    return lambda features: {k: v for k, v in features.items() if k != name}


def with_value(name: str, value: Any) -> Any:
    return lambda features: {**features, name: value}


@pytest.mark.parametrize(
    ("change", "struct"),
    [
        (reordered, True),  # any order: the struct still
        (with_value(NAMES[0], True), True),
        (with_value(NAMES[1], 7), True),
        (with_value(NAMES[2], -EXACT_INT), True),
        (without(NAMES[3]), False),  # the other path, for the sink to name it
        (with_value("not_in_the_view", 1.5), False),
        (with_value("not_in_the_view", "text"), False),
        (with_value(NAMES[4], "text"), False),
        (with_value(NAMES[5], EXACT_INT + 1), False),
        (with_value(NAMES[6], None), False),
        (with_value(NAMES[7], 1e308), True),
        (lambda features: {**with_value(NAMES[7], 1e308)(features), NAMES[8]: 1e308}, False),
    ],
)
def test_other_features_are_read_as_the_model_reads_them(
    credit_rows: list[FeatureRow], change: Any, struct: bool
) -> None:
    document = json.loads(credit_rows[0].model_dump_json())
    document["features"] = change(document["features"])
    value = json.dumps(document).encode()
    assert answer(decode_row, value) == model_answer(value)
    try:
        made_struct = isinstance(decode_row(value), ViewRowFields)
    except InvalidInput:
        made_struct = False
    assert made_struct is struct


def test_a_time_with_nanoseconds_goes_to_the_model(credit_rows: list[FeatureRow]) -> None:
    document = json.loads(credit_rows[0].model_dump_json())
    document["event_timestamp"] = "2026-01-01T00:00:00.9999999Z"
    row = decode_row(json.dumps(document))
    assert isinstance(row, FeatureRow)
    assert row.event_timestamp.microsecond == 999_999


def test_the_views_structs_give_the_models_table_and_online_text(
    credit_rows: list[FeatureRow],
) -> None:
    # (their features sent in another order than the view's)
    structs = [
        decode_row(row.model_copy(update={"features": reordered(row.features)}).model_dump_json())
        for row in credit_rows
    ]
    assert fs.rows_table(CREDIT, structs).equals(fs.rows_table(CREDIT, credit_rows))
    for struct, row in zip(structs, credit_rows, strict=True):
        in_view_order = {name: row.features[name] for name in NAMES}
        text = row_text(row.source_event_id, struct.features)
        assert text == row_text(row.source_event_id, in_view_order)
        assert json.loads(text) == {"source_event_id": row.source_event_id, **row.features}


@pytest.mark.parametrize("entity_id", ["c7", 'c7"features":{', "c7}"])
@pytest.mark.parametrize("field", ["event_timestamp", "occurred_at"])
def test_a_long_fraction_anywhere_in_the_row_goes_to_the_model(
    credit_rows: list[FeatureRow], field: str, entity_id: str
) -> None:
    document = json.loads(credit_rows[0].model_dump_json())
    document["entity_id"] = entity_id
    time = document.pop(field)
    features = document.pop("features")
    # the time after the features, in the features' place, and before them
    for order in (
        {**document, "features": features, field: "2026-01-01T00:00:00.9999999Z"},
        {**document, "features": {**features, field: 1.0}, field: "2026-01-01T00:00:00.9999999Z"},
        {field: "2026-01-01T00:00:00.9999999Z", **document, "features": features},
    ):
        value = json.dumps(order, separators=(",", ":")).encode()
        for decoder in (decode_row, decode_feature_row):
            row = decoder(value)
            assert isinstance(row, FeatureRow), (decoder, order)
            assert getattr(row, field).microsecond == 999_999
    document[field] = time
    value = json.dumps({**document, "features": features}, separators=(",", ":")).encode()
    assert isinstance(decode_row(value), ViewRowFields)


@pytest.mark.parametrize("names", [["a", 'b"c'], ["a", "b\\c"], ["a", "tab\there"]])
def test_a_view_whose_names_msgspec_cannot_give_a_field_reads_rows_as_dicts(
    names: list[str],
) -> None:
    """A feature's name is the spec's (a transform's ``name`` is free text): one that
    cannot name a struct field still has a decoder, the earlier dict path's."""
    row = FeatureRow(
        usecase="credit",
        source_event_id="e1",
        entity_id="c7",
        event_timestamp="2026-01-01T00:00:00Z",
        features=dict(zip(names, [1.5, 2.0], strict=True)),
    )
    decoded = view_row_decoder(names)(row.model_dump_json())
    assert type(decoded).__name__ == "FeatureRowFields"
    assert decoded.features == row.features
