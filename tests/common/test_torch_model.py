"""The torch adapter round-trips through ``load_model`` with its sha256 checked."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
import torch

from services.common.models import Model, load_model, sha256_of
from services.common.models import torch_model as torch_model_module
from services.common.models.protocol import ArtifactMismatch
from services.common.models.torch_model import MLPConfig, Standardizer, TorchModel, build_mlp

FEATURES = ["a", "b", "c"]


def _model(task: str = "classification") -> TorchModel:
    torch.manual_seed(0)
    classes = ["no", "yes", "maybe"] if task == "classification" else None
    config = MLPConfig(n_inputs=3, n_outputs=3 if classes else 1, hidden_layers=[8], dropout=0.2)
    training = np.random.default_rng(0).normal(loc=5.0, size=(50, 3))
    return TorchModel(
        task=task,  # type: ignore[arg-type]
        feature_names=FEATURES,
        config=config,
        module=build_mlp(config),
        preprocessing=Standardizer.fit(training),
        classes=classes,
        target_mean=10.0,
        target_scale=2.0,
    )


ROWS = [{"a": 5.0, "b": 4.0, "c": 6.0}, {"a": 1.0, "c": None}, {"a": 9, "b": True, "c": 0}]


def test_doctests() -> None:
    assert doctest.testmod(torch_model_module).failed == 0


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_round_trip_through_load_model(tmp_path: Path, task: str) -> None:
    model = _model(task)
    assert isinstance(model, Model)
    path = model.save(tmp_path / "model")
    loaded = load_model(tmp_path / "model", expected_sha256=sha256_of(path))
    assert isinstance(loaded, TorchModel)
    assert loaded.predict(ROWS) == model.predict(ROWS)
    assert loaded.device == torch.device("cpu")
    if task == "classification":
        probabilities = loaded.predict_proba(ROWS)
        assert probabilities == model.predict_proba(ROWS)
        assert all(set(p) == {"no", "yes", "maybe"} for p in probabilities)
        assert all(abs(sum(p.values()) - 1) < 1e-6 for p in probabilities)
        assert all(p in {"no", "yes", "maybe"} for p in loaded.predict(ROWS))
    else:
        with pytest.raises(TypeError):
            loaded.predict_proba(ROWS)


def test_a_tampered_file_is_refused(tmp_path: Path) -> None:
    path = _model().save(tmp_path / "model")
    promised = sha256_of(path)
    with open(path, "ab") as stream:
        stream.write(b"\0")
    with pytest.raises(ArtifactMismatch):
        load_model(tmp_path / "model", expected_sha256=promised)


def test_missing_features_are_imputed_with_training_medians() -> None:
    model = _model()
    medians = dict(zip(FEATURES, model.preprocessing.median, strict=True))
    assert model.predict_proba([{}]) == model.predict_proba([medians])


def test_one_forward_pass_gives_the_class_and_the_probabilities() -> None:
    model = _model()
    model.module.train()  # as a trainer leaves it between epochs: answers are eval's
    predictions, probabilities = model.predict_with_proba(ROWS)
    assert (predictions, probabilities) == (model.predict(ROWS), model.predict_proba(ROWS))
    assert not model.module.training
    matrix = torch_model_module.rows_to_matrix(ROWS, FEATURES)
    with torch.no_grad():
        logits = model.module(torch.as_tensor(model.transform(matrix), dtype=torch.float32))
    expected = torch.softmax(logits.double(), dim=1).numpy()  # torch's own softmax
    assert np.allclose(model.proba_array(matrix), expected, rtol=0, atol=1e-12)
    assert model.proba_array(matrix[:0]).shape == (0, 3)
