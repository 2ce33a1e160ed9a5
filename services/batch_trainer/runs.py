"""Recording a training run in MLflow and registering its model as a candidate.

One run per training request: parameters (the chosen hyperparameters, the
data window, the feature views, the seed), test and baseline metrics, the
per-epoch loss curves, plots and the report as artifacts, and the model
directory registered as a new version whose ``artifact_sha256`` tag is the
model file's. The candidate event is stored with the run (``candidate.json``)
so a redelivered request republishes it instead of training again. The
plots and the runners-up are logged after the candidate is published
(:class:`RegisteredRun`).

The run is the winning family's (``mlp``, ``linear`` or
``hist_gradient_boosting``, see :func:`~services.batch_trainer.families.choose_family`);
each losing family gets a child run (its validation and test scores and its
model files, not registered). An MLP winner is
exported to ONNX (and int8 when the spec asks) beside ``model.pt``, each
file's sha256 recorded in the torch file and in the candidate's ``exports``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.events import ExportedArtifact, ModelCandidate, TrainingRequest
from schemas.usecase import UseCase
from services.batch_trainer import plots
from services.batch_trainer.export import export_linear, export_model
from services.batch_trainer.pipeline import TrainingOutcome, evaluate
from services.common import tracking
from services.common.metrics import scalar_metrics
from services.common.models.linear_model import LinearModel
from services.common.models.torch_model import TorchModel

logger = logging.getLogger(__name__)

REQUEST_TAG = "training_request_id"
INCOMPLETE_TAG = "driftline.artifacts_incomplete"


def model_name(spec: UseCase) -> str:
    """The registered model a use case's versions live under (shared with the online trainer)."""
    return spec.name


def experiment_name(spec: UseCase) -> str:
    return spec.name


def record_run(
    home: Path,
    spec: UseCase,
    outcome: TrainingOutcome,
    *,
    request: TrainingRequest | None = None,
    mlflow_uri: str | None = None,
) -> ModelCandidate:
    """Log ``outcome`` as an MLflow run, register its model, and return the candidate event."""
    run = register_run(home, spec, outcome, request=request, mlflow_uri=mlflow_uri)
    run.finish()
    return run.candidate


@dataclass
class RegisteredRun:
    """A run whose model is registered and candidate recorded; :meth:`finish` completes it.

    What the candidate event needs is logged first (parameters, metrics, the
    report, the exported and registered model, ``candidate.json``); the plots
    and the runners-up's child runs are not part of it, so the service
    publishes the candidate before :meth:`finish` logs them (matplotlib's
    layout and the losers' model files are off the closed loop's clock). The
    run is ``RUNNING`` until then. An error there is logged and tagged on the
    run: the candidate, published, stands.
    """

    client: Any
    experiment: str
    spec: UseCase
    outcome: TrainingOutcome
    candidate: ModelCandidate

    def finish(self) -> None:
        run_id = self.candidate.run_id or ""
        try:
            with tempfile.TemporaryDirectory() as scratch:
                folder = Path(scratch)
                _write_artifacts(folder / "plots", self.spec, self.outcome)
                self.client.log_artifacts(run_id, str(folder / "plots"), artifact_path="plots")
                _record_losers(self.client, self.experiment, run_id, self.spec, self.outcome,
                               folder / "losers")  # fmt: skip
        except Exception as exc:
            logger.exception("run artifacts incomplete run_id=%s", run_id)
            self.client.set_tag(run_id, INCOMPLETE_TAG, f"{type(exc).__name__}: {exc}"[:5000])
        self.client.set_terminated(run_id, "FINISHED")


def register_run(
    home: Path,
    spec: UseCase,
    outcome: TrainingOutcome,
    *,
    request: TrainingRequest | None = None,
    mlflow_uri: str | None = None,
) -> RegisteredRun:
    """Log what the candidate needs, register the model, record the candidate (see
    :class:`RegisteredRun`); the run is marked FAILED if any of it fails."""
    from mlflow.entities import Metric, Param

    client = tracking.client(home, mlflow_uri)
    experiment = tracking.experiment_id(home, experiment_name(spec), mlflow_uri)
    report = outcome.report
    request_id = request.request_id if request is not None else None
    flavor = outcome.model.flavor
    tags = {
        "driftline.usecase": spec.name,
        "driftline.trainer": "batch",
        "driftline.flavor": flavor,
        "driftline.family": outcome.family,
        "spec_hash": report.spec_hash,
        **({REQUEST_TAG: request_id} if request_id else {}),
    }
    run = client.create_run(experiment, run_name=f"batch-{spec.name}", tags=tags)
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        params = [Param(k, str(v)[:6000]) for k, v in _params(report, request).items()]
        metrics = [Metric(k, v, now, 0) for k, v in _metrics(report).items()]
        for epoch, (train, val) in enumerate(zip(report.train_loss, report.val_loss, strict=True)):
            metrics += [Metric("train_loss", train, now, epoch + 1),
                        Metric("val_loss", val, now, epoch + 1)]  # fmt: skip
        for start in range(0, len(params), 90):  # MLflow caps a batch at 100 params
            client.log_batch(run_id, params=params[start : start + 90])
        for start in range(0, len(metrics), 900):  # and at 1000 metrics
            client.log_batch(run_id, metrics=metrics[start : start + 900])
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            (folder / "report.json").write_text(json.dumps(report.as_dict(), indent=2, default=str))
            client.log_artifact(run_id, str(folder / "report.json"))
            exports = _export(spec, outcome, folder / "model")
            model_file = outcome.model.save(folder / "model")
            version_tags = {"trainer": "batch", "flavor": flavor, "usecase": spec.name,
                            "spec_hash": report.spec_hash, "family": outcome.family}  # fmt: skip
            version_tags.update({f"{k}_sha256": v["sha256"] for k, v in exports.items()})
            if request_id:
                version_tags[REQUEST_TAG] = request_id
            version, artifact_uri, sha256 = tracking.register_model_dir(
                client, run_id, model_name(spec), folder / "model", model_file, tags=version_tags
            )
            candidate = ModelCandidate(
                usecase=spec.name,
                model_name=model_name(spec),
                model_version=version,
                trainer="batch",
                flavor=flavor,
                family=outcome.family,
                validation_scores=report.validation_scores,
                exports={k: ExportedArtifact(**v) for k, v in exports.items()},
                metrics=report.metrics,
                baseline_metrics=report.baseline_metrics,
                confusion_matrix=report.confusion_matrix,
                data_window=report.window,
                artifact_uri=artifact_uri,
                artifact_sha256=sha256,
                run_id=run_id,
                training_request_id=request_id,
                slice_metrics=outcome.slice_metrics,
                lineage=_lineage(report, run_id),
            )
            tracking.record_candidate(client, run_id, candidate)
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    logger.info(
        "registered usecase=%s model=%s version=%s run_id=%s sha256=%s",
        spec.name, candidate.model_name, version, run_id, sha256[:12],
    )  # fmt: skip
    return RegisteredRun(client, experiment, spec, outcome, candidate)


def _export(spec: UseCase, outcome: TrainingOutcome, directory: Path) -> dict[str, dict[str, Any]]:
    """Export the winner as ``models.batch.export`` asks: the MLP, or a linear one (ONNX only)."""
    if isinstance(outcome.model, LinearModel) and spec.models.batch.export.onnx:
        return export_linear(outcome.model, directory)
    if not isinstance(outcome.model, TorchModel) or outcome.test_features is None:
        return {}

    def score(model: Any, matrix: Any) -> dict[str, float]:
        return scalar_metrics(evaluate(spec, model, matrix, outcome.test_truth))

    return export_model(
        outcome.model, directory, spec.models.batch.export, score, outcome.test_features
    )


def _record_losers(
    client: Any, experiment: str, parent: str, spec: UseCase, outcome: TrainingOutcome, folder: Path
) -> None:
    """Each losing family as a child run: its validation and test scores and its model files."""
    from mlflow.entities import Metric

    report = outcome.report
    now = int(time.time() * 1000)
    for family, loser in outcome.losers.items():
        tags = {"mlflow.parentRunId": parent, "driftline.usecase": spec.name,
                "driftline.family": family, "driftline.role": "runner_up"}  # fmt: skip
        child = client.create_run(experiment, run_name=f"batch-{spec.name}-{family}", tags=tags)
        child_id = child.info.run_id
        test = report.loser_metrics.get(family, {})
        metrics = [Metric(f"test_{k}", v, now, 0) for k, v in test.items()]
        score = report.validation_scores.get(family)
        if score is not None:
            metrics.append(Metric(f"validation_{spec.primary_metric}", score, now, 0))
        client.log_batch(child_id, metrics=metrics)
        loser.save(folder / family)
        client.log_artifacts(child_id, str(folder / family), artifact_path="model")
        client.set_terminated(child_id, "FINISHED")


def _params(report: Any, request: TrainingRequest | None) -> dict[str, Any]:
    params: dict[str, Any] = {f"param.{k}": v for k, v in report.params.items()}
    params.update(
        {
            "seed": report.seed,
            "device": report.device,
            "window_start": report.window.start,
            "window_end": report.window.end,
            "window_rows": report.window.rows,
            "rows": report.profile.rows,
            "feature_views": ",".join(report.feature_views) or "(none named)",
            "feature_names": ",".join(report.feature_names),
            "split_temporal": report.split["temporal"],
            **{f"split_{k}": v for k, v in report.split["sizes"].items()},
            "baseline": report.baseline_name,
            "family": report.family,
            "family_reason": report.family_reason,
            "best_epoch": report.best_epoch,
            "tuning_trials": len(report.trials),
            "spec_hash": report.spec_hash,
        }
    )
    if request is not None:
        params.update({"request_reason": request.reason, "request_alert_id": request.alert_id})
    return params


def _metrics(report: Any) -> dict[str, float]:
    metrics = {f"test_{k}": v for k, v in report.metrics.items()}
    metrics.update({f"baseline_{k}": v for k, v in report.baseline_metrics.items()})
    metrics.update({f"validation_score.{k}": v for k, v in report.validation_scores.items()})
    metrics["best_val_loss"] = min(report.val_loss) if report.val_loss else float("nan")
    metrics["train_seconds"] = report.seconds
    if report.cv:
        metrics.update({f"cv_mean_{k}": v for k, v in report.cv["mean"].items()})
        metrics.update({f"cv_std_{k}": v for k, v in report.cv["std"].items()})
    for name, share in report.profile.missing_share.items():
        metrics[f"missing_share.{name}"] = share
    return metrics


def _lineage(report: Any, run_id: str) -> dict[str, str]:
    import torch

    lineage = {
        "spec_hash": report.spec_hash,
        "feature_views": ",".join(report.feature_views),
        "seed": str(report.seed),
        "device": report.device,
        "rows": str(report.profile.rows),
        "baseline": report.baseline_name,
        "family": report.family,
        "torch": torch.__version__,
        "run_id": run_id,
    }
    if report.split.get("temporal"):
        # Rows after the validation part were never trained or selected on:
        # the promoter's gate scores candidate and champion there.
        lineage["holdout_after"] = report.split["validation_time"][1]
    return lineage


def _write_artifacts(folder: Path, spec: UseCase, outcome: TrainingOutcome) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    report = outcome.report
    plots.loss_curves(
        report.train_loss, report.val_loss, report.best_epoch, folder / "loss_curves.png"
    )
    if report.confusion_matrix is not None and report.classes is not None:
        plots.confusion_matrix(
            report.confusion_matrix, report.classes, folder / "confusion_matrix.png"
        )
    if outcome.test_proba is not None and report.classes is not None:
        plots.roc(outcome.test_truth, outcome.test_proba, report.classes, spec.positive_class,
                  folder / "roc_curve.png")  # fmt: skip
