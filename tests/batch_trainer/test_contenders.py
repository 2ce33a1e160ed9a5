"""Classical contenders: the gradient-boosted trees win where a threshold task fits them.

Real scikit-learn, torch and MLflow: the trees are fit beside the MLP and the
linear model on one split, the best on validation is registered, the losers are
child runs, the registered file loads back (its sha256 checked) and answers as
the trained model did.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from schemas.events import Window
from schemas.usecase import UseCase, UseCaseError, load_usecase
from services.batch_trainer.pipeline import train_candidate
from services.batch_trainer.runs import record_run
from services.common import tracking
from services.common.models import load_model
from services.common.models.protocol import MANIFEST, ArtifactMismatch
from services.common.models.tree_model import TreeModel
from tests.batch_trainer.conftest import START, agrawal_frame, binary_spec, make_spec

FEATURES = ["x0", "x1", "x2", "x3"]
ROOT = Path(__file__).resolve().parents[2]


def threshold_frame(n: int, seed: int = 5) -> pd.DataFrame:
    """Label 1 where exactly one of two thresholds is passed (an XOR of steps); 3% flipped."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, len(FEATURES)))
    label = (x[:, 0] > 0.3) ^ (x[:, 1] > -0.2)
    label ^= rng.uniform(size=n) < 0.03
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["label"] = label.astype(int)
    frame["event_timestamp"] = [START + timedelta(seconds=i) for i in range(n)]
    frame["event_id"] = [f"e{i}" for i in range(n)]
    frame["entity_id"] = [f"c{i % 20}" for i in range(n)]
    return frame


def threshold_spec(**batch: Any) -> UseCase:
    settings = {"tuning": {"trials": 0}, "contenders": ["hist_gradient_boosting"], **batch}
    return make_spec("steps", "classification", FEATURES, **settings)


@pytest.mark.integration
def test_the_trees_win_a_threshold_task_and_are_registered(home: Path, tmp_path: Path) -> None:
    spec = threshold_spec()
    frame = threshold_frame(800)
    outcome = train_candidate(spec, frame, Window())
    scores = outcome.report.validation_scores
    assert set(scores) == {"mlp", "linear", "hist_gradient_boosting"}
    assert outcome.family == "hist_gradient_boosting", outcome.report.family_reason
    assert isinstance(outcome.model, TreeModel)
    assert scores["hist_gradient_boosting"] > max(scores["mlp"], scores["linear"]) + 0.05
    assert outcome.report.metrics["roc_auc"] > 0.9  # the steps, within the flipped labels
    assert outcome.report.baseline_metrics["roc_auc"] < 0.7  # no plane separates an XOR
    assert list(outcome.losers) == sorted(["mlp", "linear"], key=lambda k: -scores[k])
    assert set(outcome.report.loser_metrics) == {"mlp", "linear"}

    candidate = record_run(home, spec, outcome)
    assert candidate.family == "hist_gradient_boosting" and candidate.flavor == "tree"
    assert candidate.validation_scores == scores
    assert candidate.exports == {}  # no installed package converts the trees to ONNX
    client = tracking.client(home)
    model_dir = tracking.download_model_dir(client, candidate.artifact_uri, tmp_path / "dl")
    manifest = json.loads((model_dir / MANIFEST).read_text())
    assert manifest["flavor"] == "tree" and manifest["sklearn_version"]
    served = load_model(model_dir, expected_sha256=candidate.artifact_sha256)
    assert isinstance(served, TreeModel)
    rows = frame[FEATURES].tail(50).to_dict("records")
    assert served.predict(rows) == outcome.model.predict(rows)
    assert served.predict_proba(rows) == outcome.model.predict_proba(rows)

    children = client.search_runs(
        [client.get_run(candidate.run_id or "").info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{candidate.run_id}'",
    )
    assert {c.data.tags["driftline.family"] for c in children} == {"mlp", "linear"}
    for child in children:
        family = child.data.tags["driftline.family"]
        assert child.data.metrics["validation_roc_auc"] == pytest.approx(scores[family])

    (model_dir / manifest["file"]).write_bytes(b"tampered")
    with pytest.raises(ArtifactMismatch):
        load_model(model_dir, expected_sha256=candidate.artifact_sha256)


def test_a_simpler_family_within_the_margin_wins_the_tie() -> None:
    spec = threshold_spec()
    frame = threshold_frame(800)
    scores = train_candidate(spec, frame, Window()).report.validation_scores
    best, linear = scores["hist_gradient_boosting"], scores["linear"]
    margin = spec.promotion.model_copy(update={"margin": best - linear + 1e-6})
    tied = train_candidate(spec.model_copy(update={"promotion": margin}), frame, Window())
    assert tied.family == "linear"
    assert "simpler" in tied.report.family_reason


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_trees_win_a_step_in_either_task(task: str) -> None:
    rng = np.random.default_rng(2)
    frame = threshold_frame(400)
    if task == "regression":
        frame["label"] = np.where(frame["x0"] > 0, 5.0, -5.0) + rng.normal(0, 0.1, len(frame))
        spec = make_spec("stepr", task, FEATURES, tuning={"trials": 0},
                         contenders=["hist_gradient_boosting"])  # fmt: skip
    else:
        spec = threshold_spec()
    outcome = train_candidate(spec, frame, Window())
    assert outcome.family == "hist_gradient_boosting", outcome.report.family_reason
    if task == "regression":
        assert outcome.report.metrics["rmse"] < 0.5  # the step, within its noise (10)


def test_the_contender_list_is_checked() -> None:
    with pytest.raises(ValueError, match="hist_gradient_boosting"):
        make_spec("bad", "classification", FEATURES, contenders=["xgboost"])
    with pytest.raises(ValueError, match="named twice"):
        make_spec("bad", "classification", FEATURES,
                  contenders=["hist_gradient_boosting", "hist_gradient_boosting"])  # fmt: skip
    assert make_spec("ok", "classification", FEATURES).models.batch.contenders == []


def test_an_unknown_contender_in_a_yaml_file_names_the_field(tmp_path: Path) -> None:
    text = (ROOT / "usecases" / "credit.yaml").read_text()
    path = tmp_path / "credit.yaml"
    path.write_text(text.replace("  batch:\n", "  batch:\n    contenders: [random_forest]\n", 1))
    with pytest.raises(UseCaseError, match=r"models\.batch\.contenders\.0"):
        load_usecase(path)
    path.write_text(
        text.replace("  batch:\n", "  batch:\n    contenders: [hist_gradient_boosting]\n", 1)
    )
    assert load_usecase(path).models.batch.contenders == ["hist_gradient_boosting"]


@pytest.mark.integration
def test_credit_with_the_trees_as_contender_still_registers_its_best(home: Path) -> None:
    from services.inference.explain import explain

    spec = binary_spec(tuning={"trials": 0}, max_epochs=6, contenders=["hist_gradient_boosting"])
    frame = agrawal_frame(400)
    outcome = train_candidate(spec, frame, Window())
    scores = outcome.report.validation_scores
    assert set(scores) == {"mlp", "linear", "hist_gradient_boosting"}
    best = max(scores.values())
    assert best - scores[outcome.family] <= spec.promotion.margin  # the best, or a tie
    candidate = record_run(home, spec, outcome)
    assert candidate.family == outcome.family and candidate.validation_scores == scores
    rows = frame[spec.feature_names()].head(3).to_dict("records")
    for answer in explain(outcome.model, rows, positive=1):
        assert abs(answer.gap) <= 1e-2 * max(1.0, abs(answer.score))
