"""The MLP champion in three runtimes, for B5's side-by-side rows (torch, ONNX, int8).

One MLP is trained by the batch trainer's own pipeline on credit rows (the
B5 workload), then registered three times from the same network: as the torch
file alone, with its ONNX export, and with the ONNX export and its dynamic
int8 quantization served (``models.batch.export.serve: int8``). Each is the
champion of a use case of its own (``b5_torch``, ``b5_onnx``, ``b5_int8``, the
credit spec under other names) in the one inference service B5 loads, which
picks the runtime as it does for any champion (:func:`~services.common.models.load_model`
with ``prefer_onnx``). The trained outcome (with the linear model and the
gradient-boosted trees beside the MLP) is also what B11 times in process.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.data import workload
from schemas.events import Promotion
from schemas.usecase import ExportSpec, UseCase

if TYPE_CHECKING:
    from services.batch_trainer.pipeline import TrainingOutcome
    from services.common.models.torch_model import Runtime, TorchModel

RUNTIMES: tuple[Runtime, ...] = ("torch", "onnx", "int8")
TRAINING_ROWS = 600


def usecase_of(base: str, runtime: str) -> str:
    """The use case whose champion is the MLP served by ``runtime``: ``b5_onnx``."""
    return f"{base}_{runtime}"


def batch_outcome(
    spec: UseCase, rows: int = TRAINING_ROWS, contenders: tuple[str, ...] = ()
) -> TrainingOutcome:
    """The batch trainer's families on ``rows`` credit rows (no tuning, 10 epochs at most),
    with the classical ``contenders`` named."""
    import pandas as pd

    from schemas.events import Window
    from schemas.usecase import TuningSpec
    from services.batch_trainer.pipeline import train_candidate

    small = spec.models.batch.model_copy(
        update={"tuning": TuningSpec(trials=0), "max_epochs": 10, "min_rows": 100,
                "contenders": list(contenders)}
    )  # fmt: skip
    spec = spec.model_copy(update={"models": spec.models.model_copy(update={"batch": small})})
    load = workload(spec, rows, seed=5)  # credit events with labels, as B5 learns on
    start = datetime(2026, 1, 1, tzinfo=UTC)
    records = []
    for i, (row, label) in enumerate(zip(load.rows, load.labels, strict=True)):
        stamp = start + timedelta(seconds=i)
        records.append({**row.features, "label": label["label"], "event_timestamp": stamp,
                        "event_id": f"bench-{i}", "entity_id": row.entity_id})  # fmt: skip
    return train_candidate(spec, pd.DataFrame(records), Window())


def mlp_of(outcome: TrainingOutcome) -> TorchModel:
    """The outcome's MLP, whether it won or lost."""
    from services.common.models.torch_model import TorchModel

    model = outcome.model if outcome.family == "mlp" else outcome.losers.get("mlp")
    if not isinstance(model, TorchModel):
        raise RuntimeError("the batch trainer fit no MLP")
    return model


def mlp_champions(
    home: Path, spec: UseCase, base: str, scratch: Path
) -> tuple[dict[str, Promotion], TrainingOutcome]:
    """Register one MLP once per runtime; each one's promotion to the champion of
    :func:`usecase_of` ``(base, runtime)``, by runtime, and the training outcome
    (every family, the trees too: B11 times them in process)."""
    from services.batch_trainer.export import export_model
    from services.batch_trainer.pipeline import evaluate
    from services.common import tracking
    from services.common.metrics import scalar_metrics
    from services.common.models.torch_model import TorchModel

    outcome = batch_outcome(spec, contenders=("hist_gradient_boosting",))
    mlp = mlp_of(outcome)
    test_x = outcome.test_features
    assert test_x is not None

    def score(model: Any, matrix: Any) -> dict[str, float]:
        return scalar_metrics(evaluate(spec, model, matrix, outcome.test_truth))

    client = tracking.client(home)
    promotions: dict[str, Promotion] = {}
    for runtime in RUNTIMES:
        usecase = usecase_of(base, runtime)
        copy = TorchModel(
            task=mlp.task, feature_names=mlp.feature_names, config=mlp.config, module=mlp.module,
            preprocessing=mlp.preprocessing, classes=mlp.classes, target_mean=mlp.target_mean,
            target_scale=mlp.target_scale, metadata=mlp.metadata,
        )  # fmt: skip
        directory = scratch / runtime
        if runtime != "torch":
            quantize = "int8" if runtime == "int8" else None
            wanted = ExportSpec(onnx=True, quantize=quantize, serve=runtime)
            export_model(copy, directory, wanted, score, test_x)
        path = copy.save(directory)
        run_id = client.create_run(tracking.experiment_id(home, usecase)).info.run_id
        version, uri, sha = tracking.register_model_dir(client, run_id, usecase, directory, path)
        promotions[runtime] = Promotion(
            usecase=usecase, action="promote", model_name=usecase, model_version=version,
            artifact_uri=uri, artifact_sha256=sha, reason=f"bench MLP champion ({runtime})",
        )  # fmt: skip
    return promotions, outcome
