"""The river adapter behind the Model protocol: learn, predict, save, load by manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
from river import linear_model, preprocessing, tree

from services.common.models import Model, load_model, sha256_of
from services.common.models.protocol import ArtifactMismatch
from services.common.models.river_model import RiverModel


def trained_binary() -> RiverModel:
    model = RiverModel(
        preprocessing.StandardScaler() | linear_model.LogisticRegression(),
        "classification",
        classes=["good", "bad"],
        positive="bad",
    )
    for i in range(200):
        model.learn_one({"x": float(i % 10), "y": 1.0}, "bad" if i % 10 > 5 else "good")
    return model


def test_binary_model_speaks_the_use_cases_classes() -> None:
    model = trained_binary()
    assert isinstance(model, Model)
    assert model.predict([{"x": 9.0, "y": 1.0}, {"x": 0.0, "y": 1.0}]) == ["bad", "good"]
    proba = model.predict_proba([{"x": 9.0, "y": 1.0}])[0]
    assert set(proba) == {"good", "bad"}
    assert proba["bad"] > 0.5
    assert proba["good"] + proba["bad"] == pytest.approx(1.0)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = trained_binary()
    path = model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m", expected_sha256=sha256_of(path))
    rows = [{"x": float(i), "y": 1.0} for i in range(10)]
    assert isinstance(loaded, RiverModel)
    assert loaded.predict_proba(rows) == model.predict_proba(rows)


def test_tampered_artifact_is_refused(tmp_path: Path) -> None:
    path = trained_binary().save(tmp_path / "m")
    expected = sha256_of(path)
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(ArtifactMismatch):
        load_model(tmp_path / "m", expected_sha256=expected)


def test_multiclass_and_regression() -> None:
    multi = RiverModel(tree.HoeffdingTreeClassifier(), "classification", classes=["a", "b", "c"])
    assert multi.predict_proba([{"x": 1.0}]) == [{"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}]
    for i in range(300):
        multi.learn_one({"x": 10.0 * (i % 3) + (i % 7) / 10}, "abc"[i % 3])
    assert multi.predict([{"x": 20.3}, {"x": 0.2}]) == ["c", "a"]

    regressor = RiverModel(linear_model.LinearRegression(), "regression")
    for i in range(500):
        regressor.learn_one({"x": (i % 10) / 10}, 2.0 * (i % 10) / 10)
    assert regressor.predict([{"x": 0.5}])[0] == pytest.approx(1.0, abs=0.1)
    with pytest.raises(TypeError):
        regressor.predict_proba([{"x": 0.5}])
