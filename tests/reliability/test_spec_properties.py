"""Properties of the use-case spec parser over arbitrary and mutated documents.

Whatever a use-case file holds, :func:`load_usecase` returns a valid
:class:`UseCase` or raises :class:`UseCaseError` naming the file: no other
exception, no half-checked spec. A spec that loads survives a round trip
through YAML unchanged (same ``spec_hash``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.usecase import UseCase, UseCaseError, load_usecase
from tests.reliability import tally

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {
    p.stem: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "usecases").glob("*.yaml"))
}

FAST = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=10)
    | st.sampled_from(
        ["float", "int", "category", "passthrough", "onehot", "classification", "reject", "-1"]
    )
)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def paths_of(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a YAML document (dict keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths_of(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths_of(value, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, Any]:
    """A shipped use case with one to three values replaced, deleted or added."""
    name = draw(st.sampled_from(sorted(SHIPPED)))
    document = copy.deepcopy(SHIPPED[name])
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths_of(document)))
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(documents)
        else:
            parent[path[-1]] = draw(documents)
        if not paths_of(document):
            break
    return name, document


def load_text(tmp_path: Path, name: str, text: str) -> UseCase | None:
    """The spec, or None when the parser refused it with a UseCaseError naming the file."""
    tally.add("bad_inputs")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    try:
        spec = load_usecase(path)
    except UseCaseError as exc:
        assert str(path) in str(exc)
        return None
    assert isinstance(spec, UseCase)
    assert spec.name == name
    # A loaded spec is self-consistent: every derived fact is computable.
    names = spec.feature_names()
    assert names and len(names) == len(set(names))
    assert spec.primary_metric in spec.allowed_metrics()
    return spec


def round_trips(tmp_path: Path, spec: UseCase) -> None:
    dumped = yaml.safe_dump(spec.model_dump(mode="json", exclude={"name"}), sort_keys=False)
    again = load_text(tmp_path, spec.name, dumped)
    assert again is not None
    assert again.spec_hash() == spec.spec_hash()


@FAST
@given(case=mutated())
def test_a_mutated_use_case_loads_or_is_refused_with_the_file_named(
    tmp_path: Path, case: tuple[str, Any]
) -> None:
    name, document = case
    spec = load_text(tmp_path, name, yaml.safe_dump(document))
    if spec is not None:
        round_trips(tmp_path, spec)


@FAST
@given(document=documents)
def test_any_yaml_document_is_refused_cleanly(tmp_path: Path, document: Any) -> None:
    assert load_text(tmp_path, "anything", yaml.safe_dump(document)) is None


@FAST
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_text_is_refused_cleanly(tmp_path: Path, text: str) -> None:
    assert load_text(tmp_path, "anything", text) is None


def test_every_shipped_use_case_round_trips(tmp_path: Path) -> None:
    for name in SHIPPED:
        spec = load_usecase(ROOT / "usecases" / f"{name}.yaml")
        round_trips(tmp_path, spec)


def test_spec_hash_does_not_depend_on_key_order(tmp_path: Path) -> None:
    spec = load_usecase(ROOT / "usecases" / "credit.yaml")
    sorted_text = yaml.safe_dump(spec.model_dump(mode="json", exclude={"name"}), sort_keys=True)
    again = load_text(tmp_path, "credit", sorted_text)
    assert again is not None
    assert again.spec_hash() == spec.spec_hash()
