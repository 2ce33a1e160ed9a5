"""The use-case spec: valid specs parse, bad ones fail naming the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.usecase import UseCase, UseCaseError, load_usecase, load_usecases

MINIMAL: dict[str, Any] = {
    "task": "classification",
    "label": {"classes": [0, 1]},
    "fields": {
        "salary": {"type": "float", "min": 0, "cap": [0, 200000], "impute": "median"},
        "car": {"type": "category", "values": [1, 2, 3], "unknown": "other"},
        "opened": {"type": "datetime", "required": False},
    },
    "features": [
        {"kind": "standardize", "field": "salary", "mean": 80000, "std": 30000},
        {"kind": "onehot", "field": "car"},
        {"kind": "date_part", "field": "opened", "parts": ["hour", "is_weekend"]},
        {"kind": "ratio", "numerator": "salary", "denominator": "salary", "name": "one"},
    ],
}


def write(tmp_path: Path, name: str, document: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_a_valid_spec_loads_with_defaults(tmp_path: Path) -> None:
    spec = load_usecase(write(tmp_path, "loans", MINIMAL))
    assert spec.name == "loans"
    assert spec.primary_metric == "roc_auc"
    assert spec.positive_class == 1
    assert spec.models.batch.split.train == 0.7
    assert spec.feature_names() == [
        "salary_z",
        "car_1",
        "car_2",
        "car_3",
        "car_other",
        "opened_hour",
        "opened_is_weekend",
        "one",
    ]


def test_spec_hash_changes_with_the_spec(tmp_path: Path) -> None:
    first = load_usecase(write(tmp_path, "loans", MINIMAL))
    again = load_usecase(tmp_path / "loans.yaml")
    changed = {**MINIMAL, "promotion": {"margin": 0.05}}
    second = load_usecase(write(tmp_path, "loans", changed))
    assert first.spec_hash() == again.spec_hash()
    assert first.spec_hash() != second.spec_hash()


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"task": "clustering"}, "task"),
        ({"fields": {"salary": {"type": "money"}}}, "fields.salary.type"),
        ({"fields": {"salary": {"type": "float", "colour": "red"}}}, "fields.salary.colour"),
        ({"fields": {"salary": {"type": "float", "min": 5, "max": 1}}}, "fields.salary"),
        ({"label": {"classes": [1]}}, "two or more"),
        ({"metrics": {"primary": "rmse"}}, "'rmse' is not a classification metric"),
        (
            {"features": [{"kind": "passthrough", "field": "nope"}]},
            "features[0] (passthrough) names field 'nope'",
        ),
        ({"features": [{"kind": "teleport", "field": "salary"}]}, "features.0"),
    ],
)
def test_a_bad_spec_names_the_file_and_the_field(
    tmp_path: Path, change: dict[str, Any], where: str
) -> None:
    path = write(tmp_path, "loans", {**MINIMAL, **change})
    with pytest.raises(UseCaseError) as error:
        load_usecase(path)
    message = str(error.value)
    assert str(path) in message
    assert where in message


def test_not_yaml_and_not_a_mapping_are_reported(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("task: [unclosed")
    with pytest.raises(UseCaseError, match="not valid YAML"):
        load_usecase(broken)
    listed = tmp_path / "listed.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(UseCaseError, match="mapping"):
        load_usecase(listed)


def test_name_must_match_the_file(tmp_path: Path) -> None:
    with pytest.raises(UseCaseError, match="must match the file name"):
        load_usecase(write(tmp_path, "loans", {**MINIMAL, "name": "other"}))


def test_load_usecases_reads_a_directory(tmp_path: Path) -> None:
    write(tmp_path, "a", MINIMAL)
    write(tmp_path, "b", {**MINIMAL, "task": "regression", "label": {}, "metrics": {}})
    specs = load_usecases(tmp_path)
    assert sorted(specs) == ["a", "b"]
    assert specs["b"].primary_metric == "rmse"
    assert isinstance(specs["a"], UseCase)
