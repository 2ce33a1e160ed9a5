"""The better family wins on validation; the MLP's ONNX and int8 exports answer like torch."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from schemas.events import Window
from schemas.usecase import ExportSpec, UseCase
from services.batch_trainer.export import export_linear, export_model
from services.batch_trainer.pipeline import BatchModel, TrainingOutcome, evaluate, train_candidate
from services.common.metrics import scalar_metrics
from services.common.models import load_model
from services.common.models.linear_model import LinearModel
from services.common.models.protocol import ArtifactMismatch
from services.common.models.torch_model import TorchModel
from tests.batch_trainer.conftest import START, agrawal_frame, binary_spec, make_spec

FEATURES = ["x0", "x1", "x2"]


def curve_frame(n: int, target: str, seed: int = 3) -> pd.DataFrame:
    """Three uniform features; the target is a plane (``linear``) or a bowl (``square``)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 3))
    noise = rng.normal(0, 0.1, n)
    y = 3 * x[:, 0] - 2 * x[:, 1] + noise if target == "linear" else x[:, 0] ** 2 + noise
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["label"] = y
    frame["event_timestamp"] = [START + timedelta(seconds=i) for i in range(n)]
    frame["event_id"] = [f"e{i}" for i in range(n)]
    frame["entity_id"] = [f"c{i % 20}" for i in range(n)]
    return frame


def curve_spec(**batch: object) -> UseCase:
    settings = {"hidden_layers": [32, 16], "max_epochs": 40, "patience": 8,
                "learning_rate": 0.01, "tuning": {"trials": 0}, **batch}  # fmt: skip
    return make_spec("curve", "regression", FEATURES, **settings)


def test_linear_wins_where_a_linear_model_fits_best() -> None:
    spec = curve_spec()
    frame = curve_frame(400, "linear")
    outcome = train_candidate(spec, frame, Window())
    scores = outcome.report.validation_scores
    assert outcome.family == "linear" and isinstance(outcome.model, LinearModel)
    assert scores["linear"] <= scores["mlp"]  # rmse: lower is better
    assert outcome.report.metrics == outcome.report.baseline_metrics  # the winner is the baseline
    assert outcome.report.metrics["rmse"] < 0.2  # the plane, within its noise
    assert outcome.runner_up is not None and isinstance(outcome.runner_up, TorchModel)


def test_the_mlp_wins_where_the_target_is_not_linear_unless_the_margin_forbids() -> None:
    frame = curve_frame(400, "square")
    outcome = train_candidate(curve_spec(), frame, Window())
    scores = outcome.report.validation_scores
    assert outcome.family == "mlp", outcome.report.family_reason
    assert scores["mlp"] < scores["linear"]
    assert outcome.report.metrics["rmse"] < outcome.report.baseline_metrics["rmse"]

    gain = scores["linear"] - scores["mlp"]
    spec = curve_spec()  # the MLP's gain within the margin: a tie
    strict = spec.model_copy(
        update={"promotion": spec.promotion.model_copy(update={"margin": gain * 2})}
    )
    again = train_candidate(strict, frame, Window())
    assert again.family == "linear"
    assert "simpler" in again.report.family_reason


def _mlp_outcome() -> tuple[UseCase, TrainingOutcome, TorchModel]:
    # wide enough that int8 weights outweigh the quantization nodes (a [16, 8] net grows)
    export = {"onnx": True, "quantize": "int8"}
    spec = binary_spec(tuning={"trials": 0}, max_epochs=6, hidden_layers=[128, 64], export=export)
    outcome = train_candidate(spec, agrawal_frame(300), Window())
    model = outcome.model if outcome.family == "mlp" else outcome.runner_up
    assert isinstance(model, TorchModel)
    return spec, outcome, model


@pytest.mark.integration
def test_onnx_and_int8_exports_answer_like_torch(tmp_path: Path) -> None:
    spec, outcome, model = _mlp_outcome()
    test_x = outcome.test_features
    assert test_x is not None

    def score(m: BatchModel, matrix: np.ndarray) -> dict[str, float]:
        return scalar_metrics(evaluate(spec, m, matrix, outcome.test_truth))

    exports = export_model(model, tmp_path, spec.models.batch.export, score, test_x)
    assert set(exports) == {"onnx", "int8"}
    assert exports["int8"]["size_bytes"] < exports["onnx"]["size_bytes"]
    assert set(exports["int8"]["metric_change"]) == set(score(model, test_x))
    model.save(tmp_path)

    torch_model = load_model(tmp_path)
    served = load_model(tmp_path, prefer_onnx=True)
    assert isinstance(served, TorchModel) and served.runtime == "onnx"
    assert isinstance(torch_model, TorchModel) and torch_model.runtime == "torch"
    np.testing.assert_allclose(
        served.forward_array(test_x), torch_model.forward_array(test_x), rtol=0, atol=1e-5
    )
    np.testing.assert_allclose(
        served.proba_array(test_x), torch_model.proba_array(test_x), rtol=0, atol=1e-5
    )
    int8 = TorchModel.load(tmp_path / "model.pt", runtime="int8")
    assert int8.runtime == "int8"
    agreement = np.mean(
        np.array(int8.predict_array(test_x)) == np.array(torch_model.predict_array(test_x))
    )
    assert agreement > 0.9  # int8 weights: close, not equal

    (tmp_path / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(ArtifactMismatch):
        load_model(tmp_path, prefer_onnx=True)


def test_a_linear_winner_is_exported_to_onnx_and_answers_like_numpy(tmp_path: Path) -> None:
    import onnxruntime

    from services.common.models.protocol import sha256_of

    outcome = train_candidate(curve_spec(), curve_frame(400, "linear"), Window())
    model, test_x = outcome.model, outcome.test_features
    assert isinstance(model, LinearModel) and test_x is not None
    exports = export_linear(model, tmp_path)
    assert exports["onnx"]["sha256"] == sha256_of(tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    inputs = model.transform(test_x).astype(np.float32)  # the graph takes standardized rows
    (answered,) = session.run(None, {"inputs": inputs})
    np.testing.assert_allclose(answered, model.forward_array(test_x), rtol=0, atol=1e-5)


@pytest.mark.integration
def test_the_use_case_can_have_the_int8_export_served(tmp_path: Path) -> None:
    spec, outcome, model = _mlp_outcome()
    served_spec = spec.models.batch.export.model_copy(update={"serve": "int8"})
    test_x = outcome.test_features
    assert test_x is not None

    def score(m: BatchModel, matrix: np.ndarray) -> dict[str, float]:
        return scalar_metrics(evaluate(spec, m, matrix, outcome.test_truth))

    export_model(model, tmp_path, served_spec, score, test_x)
    model.save(tmp_path)
    served = load_model(tmp_path, prefer_onnx=True)
    assert isinstance(served, TorchModel) and served.runtime == "int8"
    assert load_model(tmp_path).runtime == "torch"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="serve: int8 needs quantize: int8"):
        ExportSpec(onnx=True, serve="int8")
