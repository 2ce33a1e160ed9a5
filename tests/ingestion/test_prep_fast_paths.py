"""The preparer's fast paths change nothing: same rows, same reasons, same state.

Each test runs the current preparer and a frozen copy of the one before the
fast paths (``reference_preparer``) over the same arbitrary events, in the
same order, and compares every outcome and the running statistics.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.usecase import UseCase
from services.common.errors import InvalidInput
from services.common.prep import Preparer
from tests.common.test_prep import SPEC
from tests.common.test_prep_properties import CREDIT, events_for, json_values, plausible
from tests.ingestion.reference_preparer import Preparer as ReferencePreparer

OPEN = UseCase.model_validate(
    {
        **SPEC.model_dump(exclude={"name", "fields", "features"}),
        "name": "open",
        "entity_key": "email",  # a pseudonymized field: the entity id is too
        "fields": {
            **{name: f.model_dump() for name, f in SPEC.fields.items()},
            "segment": {"type": "category", "pseudonymize": True, "impute": "most_frequent"},
            "score": {"type": "float", "impute": "constant", "fill": "2.5", "cap": [-1, 1]},
            "kind": {"type": "category", "values": [1, 2.5, "x"], "impute": "constant", "fill": 1},
        },
        "features": [
            *(t.model_dump() for t in SPEC.features),
            {"kind": "onehot", "field": "kind"},
            {"kind": "passthrough", "field": "score"},
            {"kind": "passthrough", "field": "opened"},
            {"kind": "date_part", "field": "opened", "parts": ["day", "dayofweek"]},
        ],
    }
)

SPECS = [SPEC, CREDIT, OPEN]
SLOW = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

odd_values = st.sampled_from(
    [
        True,
        1,
        1.0,
        "1",
        " 1.0 ",
        "Gold",
        " premium ",
        "X",
        2.5,
        "2.50",
        -0.0,
        float("nan"),
        float("inf"),
        "inf",
        "1e400",
        10**400,
        "2026-01-03T14:00:00",
        1_700_000_000_000,
        "",
        None,
    ]
)


def outcome(preparer: Any, raw: bytes | dict[str, Any], learn: bool = True) -> Any:
    """What ``prepare`` gave: the row (less its wall-clock stamp) or the rejection."""
    try:
        row = preparer.prepare(raw, learn=learn)
    except InvalidInput as exc:
        return ("invalid", str(exc), exc.event_id)
    return row.model_dump(exclude={"occurred_at"})


def encoded(payload: dict[str, Any]) -> bytes | dict[str, Any]:
    try:
        return json.dumps(payload).encode()
    except ValueError:  # an integer too long for json: the dict path
        return payload


def both(spec: UseCase, state: dict[str, Any] | None = None) -> tuple[Preparer, Any]:
    return Preparer(spec, state, salt="s"), ReferencePreparer(spec, state, salt="s")


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
@SLOW
@given(data=st.data())
def test_same_rows_and_reasons_and_state_over_a_stream(spec: UseCase, data: Any) -> None:
    fast, reference = both(spec)
    mixed = events_for(spec) | plausible(spec)
    odd = st.fixed_dictionaries({}, optional={name: odd_values for name in spec.fields})
    for _ in range(6):
        payload = data.draw(mixed)
        if data.draw(st.booleans()):
            payload = {**payload, **data.draw(odd)}
        raw = encoded(payload)
        learn = data.draw(st.booleans())
        assert outcome(fast, raw, learn) == outcome(reference, raw, learn)
        assert fast.state() == reference.state()
    # Restored from the same checkpoint, they still agree.
    fast, reference = both(spec, json.loads(json.dumps(reference.state())))
    probe = encoded(data.draw(plausible(spec)))
    assert outcome(fast, probe) == outcome(reference, probe)


@SLOW
@given(
    document=json_values | st.dictionaries(st.text(max_size=4), json_values, max_size=4),
    noise=st.sampled_from(
        [b"", b" ", b"x", b"}", b"\xff", b"\xef\xbb\xbf", b"NaN", b"1" * 4400, b"[" * 3000]
    ),
    where=st.sampled_from(["before", "after", "inside"]),
)
def test_parse_gives_what_json_gives(document: Any, noise: bytes, where: str) -> None:
    """Whatever the bytes, ``parse`` answers as json.loads-based parsing did."""
    try:
        raw = json.dumps(document).encode()
    except ValueError:
        return
    if where == "before":
        raw = noise + raw
    elif where == "after":
        raw = raw + noise
    else:
        middle = len(raw) // 2
        raw = raw[:middle] + noise + raw[middle:]
    fast, reference = both(SPEC)

    def parsed(preparer: Any) -> Any:
        try:
            return ("ok", repr(preparer.parse(raw)))
        except InvalidInput as exc:
            return ("invalid", str(exc))

    assert parsed(fast) == parsed(reference)


@pytest.mark.parametrize(
    "text",
    [
        "1" * 4299,
        "1" * 4300,
        "1" * 4301,
        "-" + "9" * 4300,
        "1e400",
        "-1e400",
        "1" * 400 + ".5",
        "0.1000000000000000055511151231257827",
        "NaN",
        "Infinity",
        "-Infinity",
        '"\\ud800"',
        "18446744073709551616",
    ],
)
def test_parse_of_awkward_numbers_matches(text: str) -> None:
    raw = b'{"event_id": "e", "age": ' + text.encode() + b"}"
    fast, reference = both(SPEC)
    results = []
    for preparer in (fast, reference):
        try:
            value = preparer.parse(raw)["age"]
            results.append((type(value), repr(value)))
        except InvalidInput as exc:
            results.append(("invalid", str(exc)))
    assert results[0] == results[1]


def test_featurize_of_an_uncleaned_record_matches() -> None:
    fast, reference = both(SPEC)
    payload = {
        "event_id": "e1",
        "entity_id": "c1",
        "timestamp": 0,
        "age": None,
        "income": 10.0,
        "debt": 1,
        "plan": "Gold",
        "tier": 2,
    }
    for preparer in (fast, reference):
        preparer.prepare({**payload, "age": 30, "event_id": "e0"})
    got = fast.featurize(fast.validate(payload))
    expected = reference.featurize(reference.validate(payload))
    assert got == expected
    assert all(math.isfinite(v) for v in got.values())


@pytest.mark.parametrize("field", ["plan", "tier", "kind"])
def test_remembered_categories_keep_equal_but_different_values_apart(field: str) -> None:
    """True == 1 == 1.0 in Python, but they are different categories; the caches
    of normalized spellings and one-hot outputs must not mix them up."""
    fast, reference = both(OPEN)
    base = {"entity_id": "c", "email": "a@b.c", "timestamp": 0, "debt": 1, "tier": 1}
    spellings = [True, 1, 1.0, "1", " 1.0 ", "true", False, 0, 0.0, 2.5, "2.50", "X", " x"]
    for index, value in enumerate(spellings * 2):
        payload = {**base, "event_id": f"e{index}", field: value}
        assert outcome(fast, payload) == outcome(reference, payload), value
