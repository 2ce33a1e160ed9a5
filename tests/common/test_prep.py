"""The preparer: validation reasons, cleaning, features, state."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from schemas.usecase import UseCase, UseCaseError
from services.common.errors import InvalidInput
from services.common.prep import Preparer

SPEC = UseCase.model_validate(
    {
        "name": "toy",
        "task": "classification",
        "label": {"classes": [0, 1]},
        "max_event_bytes": 2048,
        "fields": {
            "age": {"type": "int", "min": 18, "max": 100, "impute": "median"},
            "income": {"type": "float", "min": 0, "cap": [0, 200_000], "impute": "mean"},
            "debt": {"type": "float", "min": 0},
            "plan": {
                "type": "category",
                "values": ["basic", "gold", 3],
                "aliases": {"premium": "gold"},
                "unknown": "other",
                "impute": "most_frequent",
            },
            "tier": {"type": "category", "values": [1, 2]},
            "active": {"type": "bool", "required": False},
            "email": {"type": "string", "required": False, "pseudonymize": True},
            "opened": {"type": "datetime", "required": False},
        },
        "features": [
            {"kind": "standardize", "field": "age", "mean": 40, "std": 10},
            {"kind": "passthrough", "field": "income"},
            {"kind": "log1p", "field": "debt"},
            {"kind": "ratio", "numerator": "debt", "denominator": "income"},
            {"kind": "onehot", "field": "plan"},
            {"kind": "onehot", "field": "tier"},
            {"kind": "bin", "field": "age", "edges": [30, 60]},
            {"kind": "minmax", "field": "income", "min": 0, "max": 100_000},
            {"kind": "passthrough", "field": "active"},
            {"kind": "date_part", "field": "timestamp", "parts": ["hour", "is_weekend"]},
            {"kind": "date_part", "field": "opened", "parts": ["month"]},
        ],
    }
)


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e1",
        "entity_id": "c1",
        "timestamp": "2026-01-03T14:00:00Z",
        "age": 50,
        "income": 50_000,
        "debt": 10_000,
        "plan": "gold",
        "tier": 2,
        "active": "yes",
        "email": "Alice@example.com",
        "opened": 1_700_000_000,
    }
    base.update(overrides)
    return base


def rejects(payload: Any, preparer: Preparer | None = None) -> str:
    preparer = preparer or Preparer(SPEC)
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with pytest.raises(InvalidInput) as caught:
        preparer.prepare(raw)
    return caught.value.reason


def test_a_clean_event_gives_every_feature() -> None:
    row = Preparer(SPEC).prepare(event())
    assert list(row.features) == SPEC.feature_names()
    f = row.features
    assert f["age_z"] == 1.0
    assert f["debt_per_income"] == 0.2
    assert f["plan_gold"] == 1.0 and f["plan_other"] == 0.0
    assert f["tier_2"] == 1.0 and f["age_bin"] == 1.0
    assert f["income_scaled"] == 0.5 and f["active"] == 1.0
    assert (f["timestamp_hour"], f["timestamp_is_weekend"], f["opened_month"]) == (14.0, 1.0, 11.0)
    assert row.source_event_id == "e1" and row.entity_id == "c1"
    assert row.event_timestamp.utcoffset() is not None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{nope", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object, got a list"),
        (
            {k: v for k, v in event().items() if k != "event_id"},
            "missing required field 'event_id'",
        ),
        (event(entity_id=None), "missing required field 'entity_id'"),
        (event(entity_id={"a": 1}), "field 'entity_id': expected a text or integer id"),
        (
            b'{"event_id": "e\\ud800", "entity_id": "c1"}',
            "field 'event_id': not Unicode text (a lone surrogate escape)",
        ),
        (event(entity_id="c\ud83d"), "field 'entity_id': not Unicode text"),
        (
            {k: v for k, v in event().items() if k != "timestamp"},
            "missing required field 'timestamp'",
        ),
        (event(timestamp="yesterday"), "timestamp 'yesterday' is not ISO-8601 or epoch seconds"),
        (event(timestamp=True), "is not ISO-8601"),
        (event(age="old"), "field 'age': expected an integer in [18, 100], got 'old'"),
        (event(age=150), "field 'age': expected an integer in [18, 100], got 150"),
        (event(age=40.5), "field 'age': expected an integer in [18, 100], got 40.5"),
        (event(age=True), "field 'age': expected an integer in [18, 100], got true"),
        (event(income={"x": 1}), "field 'income': expected a number >= 0, got an object"),
        (event(debt=-1), "field 'debt': expected a number >= 0, got -1"),
        (event(debt=None), "missing required field 'debt'"),
        (event(tier=7), "field 'tier': expected one of [1, 2], got 7"),
        (event(active="maybe"), "field 'active': expected a boolean"),
        (event(opened="soon"), "field 'opened': timestamp 'soon' is not ISO-8601"),
    ],
)
def test_bad_events_are_rejected_with_an_actionable_reason(payload: Any, reason: str) -> None:
    assert reason in rejects(payload)


def test_oversized_events_are_rejected_before_parsing() -> None:
    reason = rejects(event(padding="x" * 3000))
    assert reason.startswith("event is ") and "over the 2048-byte limit" in reason
    with pytest.raises(InvalidInput, match="over the 2048-byte limit"):
        Preparer(SPEC).prepare(event(padding="x" * 3000))  # a decoded dict too


def test_infinity_is_capped_where_a_cap_exists_and_rejected_elsewhere() -> None:
    preparer = Preparer(SPEC)
    row = preparer.prepare(json.dumps(event(income=float("inf"))).encode())
    assert row.features["income"] == 200_000
    assert "expected a finite number" in rejects(event(debt=float("inf")))
    assert preparer.prepare(event(income=1e9)).features["income"] == 200_000


def test_nan_is_missing_and_imputed_from_running_statistics() -> None:
    preparer = Preparer(SPEC)
    for index, (age, income) in enumerate([(20, 10_000.0), (30, 20_000.0), (70, 60_000.0)]):
        preparer.prepare(event(event_id=f"e{index}", age=age, income=income))
    raw = json.dumps(event(event_id="nan", age=float("nan"), income=None)).encode()
    assert b"NaN" in raw
    record = preparer.clean(preparer.validate(preparer.parse(raw)))
    assert record.values["age"] == 30.0  # the median of 20, 30, 70
    assert record.values["income"] == 30_000.0  # the mean
    assert set(record.imputed) == {"age", "income"}
    features = preparer.featurize(record)
    assert all(math.isfinite(v) for v in features.values())


def test_imputation_before_any_statistic_falls_back_to_mid_range() -> None:
    record = Preparer(SPEC).clean(Preparer(SPEC).validate(event(age=None)))
    assert record.values["age"] == 59.0  # round((18 + 100) / 2)


def test_categories_are_normalized_aliased_and_unknowns_mapped_to_other() -> None:
    preparer = Preparer(SPEC)
    assert preparer.prepare(event(plan="  GOLD ")).features["plan_gold"] == 1.0
    assert preparer.prepare(event(plan="Premium")).features["plan_gold"] == 1.0
    assert preparer.prepare(event(plan="3.0")).features["plan_3"] == 1.0
    assert preparer.prepare(event(tier="2")).features["tier_2"] == 1.0
    assert preparer.prepare(event(plan="platinum")).features["plan_other"] == 1.0


@pytest.mark.parametrize(("raw", "expected"), [(True, 1.0), (0, 0.0), ("No", 0.0), ("1", 1.0)])
def test_booleans_accept_the_usual_spellings(raw: Any, expected: float) -> None:
    assert Preparer(SPEC).prepare(event(active=raw)).features["active"] == expected


def test_optional_fields_without_imputation_take_the_neutral_value() -> None:
    row = Preparer(SPEC).prepare(event(active=None, opened=None))
    assert row.features["active"] == 0.0 and row.features["opened_month"] == 0.0


def test_personal_fields_are_pseudonymized_with_the_salt() -> None:
    one = Preparer(SPEC, salt="a")
    record = one.clean(one.validate(event()))
    assert record.values["email"] != "Alice@example.com" and len(record.values["email"]) == 64
    other = Preparer(SPEC, salt="b")
    assert other.clean(other.validate(event())).values["email"] != record.values["email"]


def test_extra_fields_are_ignored_and_epoch_milliseconds_accepted() -> None:
    row = Preparer(SPEC).prepare(event(surprise=[1, 2], timestamp=1_767_448_800_000))
    assert row.event_timestamp.isoformat() == "2026-01-03T14:00:00+00:00"
    assert "surprise" not in row.features


def test_overflowing_features_are_rejected_not_emitted() -> None:
    tiny = UseCase.model_validate(
        {
            "name": "tiny",
            "task": "regression",
            "fields": {"x": {"type": "float"}},
            "features": [{"kind": "standardize", "field": "x", "mean": 0, "std": 1e-10}],
        }
    )
    payload = {"event_id": "e", "entity_id": "c", "timestamp": 0, "x": 1e308}
    assert "feature 'x_z' is inf" in rejects(payload, Preparer(tiny))
    row = Preparer(SPEC).prepare(event(income=0.0, debt=1e300))
    assert row.features["debt_per_income"] == 0.0  # zero denominator


def test_state_round_trips_through_json_and_imputes_the_same() -> None:
    preparer = Preparer(SPEC)
    for index, age in enumerate([25, 35, 45, 90]):
        preparer.prepare(event(event_id=f"e{index}", age=age, plan="basic" if index else "gold"))
    state = json.loads(json.dumps(preparer.state()))
    restored = Preparer(SPEC, state)
    assert restored.state() == preparer.state()
    gap = event(event_id="gap", age=None, income=None, plan=None)
    assert restored.prepare(gap).features == preparer.prepare(gap).features


def test_a_state_from_another_use_case_is_refused() -> None:
    state = Preparer(SPEC).state() | {"usecase": "other"}
    with pytest.raises(UseCaseError, match="cannot restore"):
        Preparer(SPEC, state)


def test_learn_false_leaves_statistics_alone() -> None:
    preparer = Preparer(SPEC)
    before = preparer.state()
    preparer.prepare(event(age=99), learn=False)
    assert preparer.state() == before


def test_feature_row_ids_are_stable_for_replays() -> None:
    assert Preparer(SPEC).prepare(event()).event_id == Preparer(SPEC).prepare(event()).event_id


@pytest.mark.parametrize("module", ["values", "stats", "transforms", "preparer"])
def test_the_examples_in_the_docstrings_hold(module: str) -> None:
    import doctest
    import importlib

    found = doctest.testmod(importlib.import_module(f"services.common.prep.{module}"))
    assert found.attempted > 0 and found.failed == 0


def test_features_are_prepares_features_with_the_same_refusals() -> None:
    preparer = Preparer(SPEC)
    for overrides in ({}, {"age": None, "plan": "silver"}, {"income": 1e9, "active": None}):
        payload = event(**overrides)
        assert preparer.features(payload, learn=False) == preparer.prepare(payload).features
    for bad in ({"age": "old"}, {"tier": 7}, {"timestamp": None}):
        with pytest.raises(InvalidInput) as from_features:
            preparer.features(event(**bad), learn=False)
        with pytest.raises(InvalidInput) as from_prepare:
            preparer.prepare(event(**bad), learn=False)
        assert from_features.value.reason == from_prepare.value.reason


def test_a_decoded_event_is_measured_as_json_writes_it() -> None:
    preparer = Preparer(SPEC)  # max_event_bytes 2048
    # Compact, this note is under the limit; json.dumps writes each "é" as \u00e9 (6 bytes).
    note = "é" * 320
    compact = json.dumps(event(email=note), separators=(",", ":"), ensure_ascii=False)
    assert len(compact.encode()) < 2048 / 2
    with pytest.raises(InvalidInput) as caught:
        preparer.features(event(email=note), learn=False)
    size = len(json.dumps(event(email=note), default=str).encode())
    assert caught.value.reason == f"event is {size} bytes, over the 2048-byte limit"
    assert preparer.features(event(email="é" * 250), learn=False)  # 1,696 bytes: within
    circular: dict[str, Any] = {}
    circular["again"] = circular
    with pytest.raises(InvalidInput, match="cannot be encoded as JSON"):
        preparer.features(event(extra=circular), learn=False)
