"""Training runs land in a real MLflow store: metrics, loss curves, plots and a registered model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from schemas.events import Window
from schemas.usecase import UseCase
from services.batch_trainer.pipeline import train_candidate
from services.batch_trainer.runs import REQUEST_TAG, record_run
from services.common import tracking
from services.common.models import load_model, sha256_of
from services.common.models.protocol import MANIFEST
from tests.batch_trainer.conftest import (
    agrawal_frame,
    binary_spec,
    friedman_frame,
    multiclass_spec,
    rbf_frame,
    regression_spec,
)

CASES = {
    "binary": (binary_spec, agrawal_frame),
    "multiclass": (multiclass_spec, rbf_frame),
    "regression": (regression_spec, friedman_frame),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(CASES))
def test_run_is_logged_and_the_model_registered(home: Path, tmp_path: Path, case: str) -> None:
    make_spec, make_frame = CASES[case]
    spec: UseCase = make_spec()
    frame: pd.DataFrame = make_frame(250)
    frame.attrs["feature_views"] = [f"{spec.name}_features"]
    outcome = train_candidate(spec, frame, Window())
    candidate = record_run(home, spec, outcome)

    client = tracking.client(home)
    version = client.get_model_version(candidate.model_name, candidate.model_version)
    assert version.tags["artifact_sha256"] == candidate.artifact_sha256
    model_dir = tracking.download_model_dir(client, candidate.artifact_uri, tmp_path / "dl")
    manifest = json.loads((model_dir / MANIFEST).read_text())
    assert manifest["flavor"] == candidate.flavor == outcome.model.flavor
    assert sha256_of(model_dir / manifest["file"]) == candidate.artifact_sha256
    served = load_model(model_dir, expected_sha256=candidate.artifact_sha256)
    rows = frame[spec.feature_names()].head(5).to_dict("records")
    assert served.predict(rows) == outcome.model.predict(rows)

    run = client.get_run(candidate.run_id or "")
    assert run.info.status == "FINISHED"
    assert run.data.params["feature_views"] == f"{spec.name}_features"
    assert run.data.params["seed"] == "42"
    assert set(candidate.metrics) == set(spec.allowed_metrics())
    for name, value in candidate.metrics.items():
        assert run.data.metrics[f"test_{name}"] == pytest.approx(value)
    assert candidate.baseline_metrics is not None
    for name, value in candidate.baseline_metrics.items():
        assert run.data.metrics[f"baseline_{name}"] == pytest.approx(value)
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        outcome.report.val_loss
    )
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/loss_curves.png" in artifacts
    if spec.task == "classification":
        assert {"plots/confusion_matrix.png", "plots/roc_curve.png"} <= artifacts
        assert candidate.confusion_matrix == outcome.report.confusion_matrix
        test_rows = outcome.report.split["sizes"]["test"]
        assert sum(map(sum, candidate.confusion_matrix or [])) == test_rows
    assert candidate.lineage["spec_hash"] == spec.spec_hash()
    assert candidate.trainer == "batch" and candidate.family == outcome.family
    assert candidate.validation_scores == outcome.report.validation_scores
    assert set(candidate.validation_scores or {}) == {"mlp", "linear"}
    # the winner (MLP or linear) is exported beside its file, each file with its own sha256
    onnx = candidate.exports["onnx"]
    assert sha256_of(model_dir / onnx.file) == onnx.sha256
    assert (model_dir / onnx.file).stat().st_size == onnx.size_bytes
    # the losing family is a child run of the winner's, with its own model files
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert len(children) == 1
    assert (
        children[0].data.tags["driftline.family"]
        == {"mlp": "linear", "linear": "mlp"}[outcome.family]
    )
    assert {a.path for a in client.list_artifacts(children[0].info.run_id, "model")} >= {
        f"model/{MANIFEST}"
    }


@pytest.mark.integration
def test_a_request_already_trained_is_found_again(home: Path) -> None:
    from schemas.events import TrainingRequest

    spec = binary_spec(tuning={"trials": 0})
    request = TrainingRequest(usecase=spec.name, reason="manual")
    outcome = train_candidate(spec, agrawal_frame(200), Window())
    candidate = record_run(home, spec, outcome, request=request)
    experiment = tracking.experiment_id(home, spec.name)
    client = tracking.client(home)
    found = tracking.earlier_candidate(client, experiment, REQUEST_TAG, request.request_id)
    assert found == candidate
    assert tracking.earlier_candidate(client, experiment, REQUEST_TAG, "no-such") is None


@pytest.mark.integration
def test_a_run_killed_before_its_candidate_was_recorded_is_discarded(home: Path) -> None:
    from schemas.events import TrainingRequest

    spec = binary_spec(tuning={"trials": 0})
    done, killed = (TrainingRequest(usecase=spec.name, reason="manual") for _ in range(2))
    outcome = train_candidate(spec, agrawal_frame(200), Window())
    finished = record_run(home, spec, outcome, request=done)
    client = tracking.client(home)
    experiment = tracking.experiment_id(home, spec.name)
    # What a kill between registering the model and recording the candidate leaves.
    run_id = client.create_run(experiment, tags={REQUEST_TAG: killed.request_id}).info.run_id
    model_dir = home / "scratch" / "model"
    model_file = outcome.model.save(model_dir)
    orphan, _, _ = tracking.register_model_dir(client, run_id, spec.name, model_dir, model_file)

    assert tracking.earlier_candidate(client, experiment, REQUEST_TAG, done.request_id) == finished
    assert tracking.earlier_candidate(client, experiment, REQUEST_TAG, killed.request_id) is None
    versions = {str(v.version) for v in client.search_model_versions(f"name = '{spec.name}'")}
    assert versions == {finished.model_version}, f"orphan v{orphan} should be gone"
    assert client.get_run(run_id).info.status == "KILLED"
    assert tracking.earlier_candidate(client, experiment, REQUEST_TAG, killed.request_id) is None
