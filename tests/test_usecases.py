"""Every use-case file loads; a broken one fails naming the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.usecase import UseCaseError, load_usecase, load_usecases
from services.common.prep import Preparer

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted((ROOT / "usecases").glob("*.yaml"))


def test_there_are_use_cases_for_both_tasks() -> None:
    specs = load_usecases(ROOT / "usecases")
    assert {"credit", "phishing"} <= set(specs)
    assert {spec.task for spec in specs.values()} == {"classification", "regression"}
    assert all(spec.demo is not None for spec in specs.values())


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_each_use_case_loads_and_prepares_its_features(path: Path) -> None:
    spec = load_usecase(path)
    preparer = Preparer(spec)
    assert preparer.feature_names == spec.feature_names()
    if spec.drift.features:
        assert set(spec.drift.features) <= set(spec.feature_names())


def broken_copy(tmp_path: Path, change: Any) -> Path:
    document = yaml.safe_load((ROOT / "usecases" / "credit.yaml").read_text())
    change(document)
    path = tmp_path / "credit.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d["fields"]["age"].update(type="integer"), "fields.age"),
        (lambda d: d["fields"]["salary"].update(minimum=0), "fields.salary"),
        (lambda d: d["features"].append({"kind": "log1p", "field": "wealth"}), "'wealth'"),
        (
            lambda d: d["features"].append(
                {"kind": "standardize", "field": "car", "mean": 0, "std": 1}
            ),
            "'car'",
        ),
        (
            lambda d: d["features"].append({"kind": "bin", "field": "age", "edges": [60, 40]}),
            "features.11.bin",
        ),
        (lambda d: d.update(surprise=True), "surprise"),
        (lambda d: d["promotion"].update(canary_share=2), "promotion.canary_share"),
    ],
    ids=[
        "wrong-type",
        "unknown-key",
        "unknown-field",
        "type-mismatch",
        "bad-edges",
        "unknown-top-level",
        "out-of-range",
    ],
)
def test_a_broken_use_case_names_the_file_and_the_field(
    tmp_path: Path, change: Any, named: str
) -> None:
    path = broken_copy(tmp_path, change)
    with pytest.raises(UseCaseError) as caught:
        load_usecase(path)
    message = str(caught.value)
    assert str(path) in message
    assert named in message
