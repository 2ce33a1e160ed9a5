"""Model snapshots: a registered MLflow model version and its ``models.candidates`` event.

mlflow is imported (through :mod:`services.common.tracking`) only when the
first snapshot is taken. :func:`register_snapshot` blocks; the service runs it
in a worker thread while the consume loop waits, so the model does not change
under it.

A snapshot is registered once. The service saves the checkpoint (marked
``snapshot_pending``) before registering, and the run is tagged with a key of
that checkpoint's state (:func:`snapshot_key`). A trainer killed on the way
restarts from that checkpoint, so with the same key: it finds the candidate the
run recorded and publishes it again (same event id), or discards the version a
run without one left, and registers anew.

With contenders (``models.online.contenders``), the snapshot registers the
model :func:`~services.online_trainer.contenders.choose` picks; the candidate
names it (``family``) with every model's rolling score (``validation_scores``).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from schemas.events import ModelCandidate, Window
from schemas.usecase import UseCase
from services.common import tracking
from services.online_trainer.checkpoint import TrainerState
from services.online_trainer.contenders import Choice, choose
from services.online_trainer.evaluation import PrequentialMetrics

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

TRAINER = "online"
SNAPSHOT_TAG = "snapshot_key"


def registered_name(spec: UseCase) -> str:
    """The MLflow registered-model name of a use case's online model."""
    return f"{spec.name}-online"


def snapshot_metrics(metrics: PrequentialMetrics) -> dict[str, float]:
    """Cumulative metrics by name, rolling ones as ``rolling_<name>``."""
    found = dict(metrics.values())
    found.update({f"rolling_{k}": v for k, v in metrics.rolling_values().items()})
    return found


def snapshot_key(spec: UseCase, state: TrainerState) -> str:
    """The same for the same checkpointed state: use case, spec, offsets, rows learned."""
    offsets = json.dumps(state.offsets, sort_keys=True)
    text = f"{spec.name}:{state.spec_hash}:{offsets}:{state.learner.rows_learned}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def register_snapshot(
    home: Path, spec: UseCase, state: TrainerState, workdir: Path, mlflow_uri: str | None = None
) -> ModelCandidate:
    """Log a run, register the model as a new version, and describe it as a candidate
    (or return the candidate an earlier run recorded for the same state)."""
    client = tracking.client(home, mlflow_uri)
    experiment = tracking.experiment_id(home, spec.name, mlflow_uri)
    key = snapshot_key(spec, state)
    earlier = tracking.earlier_candidate(client, experiment, SNAPSHOT_TAG, key)
    if earlier is not None:
        return earlier
    return _register(client, experiment, key, spec, state, workdir)


def _register(
    client: MlflowClient,
    experiment: str,
    key: str,
    spec: UseCase,
    state: TrainerState,
    workdir: Path,
) -> ModelCandidate:
    from mlflow.entities import Metric, Param

    learner = state.learner
    rows = learner.rows_learned
    online = spec.models.online
    choice: Choice = choose(spec, learner.entrants())
    chosen = choice.entrant
    run = client.create_run(
        experiment,
        run_name=f"{registered_name(spec)}-{rows}",
        tags={"trainer": TRAINER, "flavor": "river", "usecase": spec.name, SNAPSHOT_TAG: key},
    )
    run_id = run.info.run_id
    metrics = snapshot_metrics(chosen.metrics)
    params = {
        "model": choice.name,
        "params": json.dumps(
            online.params if chosen.model is learner.model else {}, sort_keys=True, default=str
        ),
        "scale": str(online.scale),
        "rolling_window": str(online.rolling_window),
        "drift_detector": online.drift_detector,
        "spec_hash": state.spec_hash,
        "rows_learned": str(rows),
        **({"contenders": choice.reason} if learner.contenders else {}),
    }
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, 0, rows) for k, v in metrics.items()],
        params=[Param(k, v) for k, v in params.items()],
    )
    offsets = json.dumps(state.offsets, sort_keys=True)
    client.log_text(run_id, offsets, "offsets.json")
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        model_dir = Path(scratch) / "model"
        model_file = chosen.model.save(model_dir)
        version, artifact_uri, sha256 = tracking.register_model_dir(
            client,
            run_id,
            registered_name(spec),
            model_dir,
            model_file,
            tags={"trainer": TRAINER, "spec_hash": state.spec_hash, "rows_learned": rows},
        )
    candidate = ModelCandidate(
        event_id=_candidate_id(spec.name, version, sha256),
        usecase=spec.name,
        model_name=registered_name(spec),
        model_version=version,
        trainer=TRAINER,
        flavor="river",
        metrics=metrics,
        confusion_matrix=chosen.metrics.confusion_matrix(),
        data_window=Window(start=state.first_event, end=state.last_event, rows=rows),
        artifact_uri=artifact_uri,
        artifact_sha256=sha256,
        run_id=run_id,
        lineage={
            "spec_hash": state.spec_hash,
            "offsets": offsets,
            "rows_learned": str(rows),
            "model": choice.name,
        },
        family=choice.name if learner.contenders else None,
        validation_scores=choice.scores if learner.contenders else None,
    )
    tracking.record_candidate(client, run_id, candidate)
    client.set_terminated(run_id)
    return candidate


def _candidate_id(usecase: str, version: str, sha256: str) -> str:
    return hashlib.sha256(f"{usecase}:online:{version}:{sha256}".encode()).hexdigest()[:32]
