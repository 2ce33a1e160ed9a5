"""``POST /v1/predict/{uc}?explain=true`` on the real stack, for each family that can serve.

A river champion (the stack's), and the batch trainer's MLP (served from its
ONNX export), linear family and gradient-boosted trees, trained on credit events and registered in
the stack's MLflow: every answer's contributions plus its expected value
make the score, and the score is the one its probabilities imply.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from schemas.events import Promotion, Window
from schemas.usecase import ExportSpec, TuningSpec, UseCase
from services.batch_trainer.export import export_model
from services.batch_trainer.pipeline import evaluate, train_candidate
from services.common import tracking
from services.common.metrics import scalar_metrics
from services.common.models.linear_model import LinearModel
from services.common.models.torch_model import TorchModel
from services.common.models.tree_model import TreeModel
from services.common.prep.preparer import Preparer
from tests.inference.conftest import Stack, raw_events, request_fields, until

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class BatchChampions:
    mlp: Promotion
    linear: Promotion
    tree: Promotion


def _training_frame(spec: UseCase, n: int) -> pd.DataFrame:
    preparer = Preparer(spec)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i, (event, label) in enumerate(raw_events(n, seed=5)):
        features = preparer.prepare(event).features
        rows.append({**features, "label": label, "event_timestamp": start + timedelta(seconds=i),
                     "event_id": f"t{i}", "entity_id": event["entity_id"]})  # fmt: skip
    return pd.DataFrame(rows)


def _promotion(version: str, uri: str, sha256: str) -> Promotion:
    return Promotion(
        usecase="(set per test)", action="promote", model_name="credit-batch-test",
        model_version=version, artifact_uri=uri, artifact_sha256=sha256, reason="test",
    )  # fmt: skip


@pytest.fixture(scope="module")
def batch(stack: Stack) -> BatchChampions:
    small = stack.base_spec.models.batch.model_copy(
        update={
            "tuning": TuningSpec(trials=0),
            "max_epochs": 4,
            "min_rows": 100,
            "hidden_layers": [16],
            "export": ExportSpec(onnx=True),
            "contenders": ["hist_gradient_boosting"],
        }
    )
    spec = stack.base_spec.model_copy(
        update={"models": stack.base_spec.models.model_copy(update={"batch": small})}
    )
    outcome = train_candidate(spec, _training_frame(spec, 300), Window())
    by_family = {type(m): m for m in (outcome.model, *outcome.losers.values())}
    mlp, linear, tree = by_family[TorchModel], by_family[LinearModel], by_family[TreeModel]
    assert outcome.test_features is not None

    def score(model: Any, matrix: Any) -> dict[str, float]:
        return scalar_metrics(evaluate(spec, model, matrix, outcome.test_truth))

    client = tracking.client(stack.home)
    run_id = client.create_run(tracking.experiment_id(stack.home, "credit-batch-test")).info.run_id
    directory = stack.home / "scratch" / uuid.uuid4().hex
    export_model(mlp, directory, spec.models.batch.export, score, outcome.test_features)
    path = mlp.save(directory)
    served_mlp = tracking.register_model_dir(client, run_id, "credit-batch-test", directory, path)
    served_linear = tracking.register_model(
        stack.home, linear, "credit-batch-test", stack.home / "scratch"
    )
    served_tree = tracking.register_model(
        stack.home, tree, "credit-batch-test", stack.home / "scratch"
    )
    return BatchChampions(
        _promotion(*served_mlp), _promotion(*served_linear), _promotion(*served_tree)
    )


async def _serve(serve: Any, promotion: Promotion) -> Any:
    served = await serve()
    await served.publish(promotion.model_copy(update={"usecase": served.name}))
    await until(lambda: served.service.models.serving(served.name).champion is not None)
    return served


def _body(n: int = 3) -> list[dict[str, Any]]:
    return [
        {"entity_id": f"c{i}", "features": request_fields(event)}
        for i, (event, _) in enumerate(raw_events(n, seed=11))
    ]


def _check(answer: dict[str, Any], method: str, units: str) -> None:
    explanation = answer["explanation"]
    assert explanation["method"] == method and explanation["units"] == units
    total = explanation["expected_value"] + math.fsum(explanation["contributions"].values())
    assert abs(total - explanation["score"]) <= explanation["tolerance"] * max(
        1.0, abs(explanation["score"])
    )
    p = answer["probabilities"][str(explanation["class"])]
    implied = p if units == "probability" else math.log(p / (1 - p))
    assert explanation["score"] == pytest.approx(implied, abs=1e-4)
    magnitudes = [abs(v) for v in explanation["contributions"].values()]
    assert magnitudes == sorted(magnitudes, reverse=True)  # largest first


async def test_a_river_champion_explains_its_probability(serve, stack: Stack) -> None:
    served = await _serve(serve, stack.models["v1"].promotion("(set)"))
    response = await served.client.post(f"/v1/predict/{served.name}?explain=true", json=_body())
    assert response.status_code == 200, response.text
    for answer in response.json():
        _check(answer, "baseline_shapley", "probability")
        assert set(answer["explanation"]["contributions"]) == set(served.spec.feature_names())
    plain = await served.client.post(f"/v1/predict/{served.name}", json=_body(1))
    assert "explanation" not in plain.json()[0]


async def test_the_mlp_serves_from_onnx_and_explains_its_log_odds(serve, batch) -> None:
    served = await _serve(serve, batch.mlp)
    described = (await served.client.get(f"/v1/models/{served.name}")).json()
    assert described["champion"]["flavor"] == "torch"
    assert described["champion"]["runtime"] == "onnx"
    response = await served.client.post(f"/v1/predict/{served.name}?explain=1", json=_body())
    assert response.status_code == 200, response.text
    for answer in response.json():
        _check(answer, "integrated_gradients", "log_odds")


async def test_the_linear_family_serves_and_explains_exactly(serve, batch) -> None:
    served = await _serve(serve, batch.linear)
    described = (await served.client.get(f"/v1/models/{served.name}")).json()
    assert described["champion"]["flavor"] == "linear"
    one = _body(1)[0]
    response = await served.client.post(f"/v1/predict/{served.name}?explain=true", json=one)
    assert response.status_code == 200, response.text
    _check(response.json(), "linear_exact", "log_odds")
    assert abs(response.json()["explanation"]["gap"]) < 1e-9


async def test_a_bad_explain_value_is_a_422_naming_the_parameter(serve, stack: Stack) -> None:
    served = await _serve(serve, stack.models["v1"].promotion("(set)"))
    response = await served.client.post(f"/v1/predict/{served.name}?explain=maybe", json=_body(1))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "explain"]


async def test_the_trees_serve_and_explain_exactly_by_tree_shap(serve, batch) -> None:
    served = await _serve(serve, batch.tree)
    described = (await served.client.get(f"/v1/models/{served.name}")).json()
    assert described["champion"]["flavor"] == "tree"
    response = await served.client.post(f"/v1/predict/{served.name}?explain=true", json=_body())
    assert response.status_code == 200, response.text
    for answer in response.json():
        _check(answer, "tree_shap", "log_odds")
        assert abs(answer["explanation"]["gap"]) < 1e-9
