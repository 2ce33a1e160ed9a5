"""The Parquet columns of feature rows: one conversion of the rows' dicts gives the table
that picking each row's values in Python gave (the previous code, kept here)."""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import pyarrow as pa
import pytest

from bench.data import workload
from bench.stack import USECASES
from schemas.events import FeatureRow
from schemas.usecase import load_usecase
from services.common import featurestore as fs
from services.common.serde import decode_feature_row

CREDIT = load_usecase(USECASES / "credit.yaml")


def picked_table(spec: Any, rows: Sequence[Any]) -> pa.Table:
    """rows_table as it was: each row's values picked in Python, a column at a time."""
    names = spec.feature_names()
    columns: dict[str, Any] = {
        fs.ENTITY_KEY: pa.array([row.entity_id for row in rows], pa.string()),
        fs.TIMESTAMP: pa.array([row.event_timestamp for row in rows], pa.timestamp("ns", tz="UTC")),
        fs.EVENT_ID: pa.array([row.source_event_id for row in rows], pa.string()),
    }
    picked = [itemgetter(*names)(row.features) for row in rows]
    for name, column in zip(names, zip(*picked, strict=True), strict=True):
        columns[name] = pa.array(column, pa.float64())
    return pa.table(columns)


@pytest.fixture(scope="module")
def credit_rows() -> list[FeatureRow]:
    return workload(CREDIT, 400).rows


def test_credit_rows_give_the_picked_table(credit_rows: list[FeatureRow]) -> None:
    decoded = [decode_feature_row(row.model_dump_json()) for row in credit_rows]
    expected = picked_table(CREDIT, credit_rows)
    assert fs.rows_table(CREDIT, credit_rows).equals(expected, check_metadata=True)
    assert fs.rows_table(CREDIT, decoded).equals(expected, check_metadata=True)


def test_ints_booleans_and_other_keys_give_the_picked_table(
    credit_rows: list[FeatureRow],
) -> None:
    names = CREDIT.feature_names()
    mixed = []
    for index, row in enumerate(credit_rows[:50]):
        features: dict[str, Any] = dict(reversed(row.features.items()))
        features[names[index % len(names)]] = index % 3 == 0  # a boolean
        features[names[(index + 1) % len(names)]] = index - 20  # an int
        features["not_in_the_view"] = 1.5
        mixed.append(row.model_copy(update={"features": features}))
    assert fs.rows_table(CREDIT, mixed).equals(picked_table(CREDIT, mixed))


def test_a_row_without_a_feature_is_a_key_error_as_before(
    credit_rows: list[FeatureRow],
) -> None:
    name = CREDIT.feature_names()[3]
    lacking = credit_rows[1].model_copy(
        update={"features": {k: v for k, v in credit_rows[1].features.items() if k != name}}
    )
    rows = [credit_rows[0], lacking]
    with pytest.raises(KeyError):
        picked_table(CREDIT, rows)
    with pytest.raises(KeyError, match=name):
        fs.rows_table(CREDIT, rows)
