"""System events: every message on a topic other than ``<uc>.raw`` and ``<uc>.labels``.

Each event is versioned: ``event_type`` and ``schema_version`` are literals and
unknown fields are refused. A breaking change is a new class with a new
version; the old class keeps parsing what is already on the topics.

>>> row = FeatureRow(usecase="credit", source_event_id="e1", entity_id="c7",
...                  event_timestamp="2026-01-01T00:00:00Z", features={"age": 41.0})
>>> FeatureRow.model_validate_json(row.model_dump_json()).features
{'age': 41.0}

A record on a topic is read with ``services.common.serde.decode(topic, value)``,
the one parser of system events: the topic (``schemas.topics``) says which of
these models its records are.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.policies import LabelStrategy
from schemas.slices import SliceComparisons, SliceScores

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
FeatureValue = FiniteFloat | int | bool | str


def new_id() -> str:
    """A fresh event id (32 hex characters)."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class SystemEvent(BaseModel):
    """The envelope every system event shares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(default_factory=new_id, min_length=1)
    event_type: str
    schema_version: int
    occurred_at: datetime = Field(default_factory=utcnow)
    usecase: str = Field(min_length=1)


class Window(BaseModel):
    """A stretch of data: by time, by row count, or both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: datetime | None = None
    end: datetime | None = None
    rows: int | None = Field(default=None, ge=0)


class FeatureRow(SystemEvent):
    """A validated, cleaned and featurized raw event (``<uc>.features``)."""

    event_type: Literal["feature_row"] = "feature_row"
    schema_version: Literal[1] = 1
    source_event_id: str = Field(min_length=1)
    entity_id: str = Field(min_length=1)
    event_timestamp: datetime
    features: dict[str, FeatureValue]


class DeadLetter(SystemEvent):
    """Input a service rejected, with a reason a person can act on (``<uc>.deadletter``)."""

    event_type: Literal["dead_letter"] = "dead_letter"
    schema_version: Literal[1] = 1
    service: str
    reason: str
    payload: str = Field(description="the original message, truncated if huge")
    truncated: bool = False
    topic: str
    partition: int | None = None
    offset: int | None = None
    source_event_id: str | None = None
    error_type: str | None = None


class Prediction(SystemEvent):
    """One answer of the inference service (``<uc>.predictions``)."""

    event_type: Literal["prediction"] = "prediction"
    schema_version: Literal[1] = 1
    prediction_id: str = Field(default_factory=new_id)
    source_event_id: str | None = None
    entity_id: str
    model_name: str
    model_version: str
    variant: Literal["champion", "challenger", "shadow"]
    prediction: FeatureValue
    probabilities: dict[str, FiniteFloat] | None = None
    latency_ms: FiniteFloat = Field(ge=0)


class ExportedArtifact(BaseModel):
    """A file exported beside a model's artifact (``model.onnx``, ``model.int8.onnx``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    metric_change: dict[str, FiniteFloat] = Field(
        default_factory=dict, description="test metrics against the torch model's (int8 only)"
    )


class ModelCandidate(SystemEvent):
    """A newly registered model version with its evaluation and lineage (``models.candidates``)."""

    event_type: Literal["model_candidate"] = "model_candidate"
    schema_version: Literal[1] = 1
    model_name: str
    model_version: str
    trainer: Literal["online", "batch"]
    flavor: Literal["river", "torch", "linear", "tree"]
    metrics: dict[str, FiniteFloat]
    baseline_metrics: dict[str, FiniteFloat] | None = None
    confusion_matrix: list[list[int]] | None = None
    data_window: Window
    artifact_uri: str
    artifact_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    family: str | None = Field(
        default=None,
        description="the family that won: mlp, linear or hist_gradient_boosting (batch), "
        "the river model a snapshot took (online, when it had contenders)",
    )
    validation_scores: dict[str, FiniteFloat] | None = Field(
        default=None,
        description="each family's primary metric on the validation rows (online: "
        "over the rolling prequential window)",
    )
    exports: dict[str, ExportedArtifact] = Field(
        default_factory=dict, description="onnx / int8 files beside the artifact"
    )
    run_id: str | None = None
    training_request_id: str | None = None
    slice_metrics: SliceScores = Field(
        default_factory=dict, description="the primary metric per slice, on the test rows"
    )
    lineage: dict[str, str] = Field(
        default_factory=dict,
        description="spec hash, feature views, seed, offsets learned from, code version",
    )


class Promotion(SystemEvent):
    """A change of who serves (``models.promotions``)."""

    event_type: Literal["promotion"] = "promotion"
    schema_version: Literal[1] = 1
    action: Literal["promote", "canary", "shadow", "reject", "rollback"]
    model_name: str
    model_version: str
    previous_version: str | None = None
    artifact_uri: str | None = None
    artifact_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    traffic_share: float | None = Field(default=None, ge=0, le=1)
    scores: dict[str, FiniteFloat] = Field(default_factory=dict)
    reason: str
    candidate_event_id: str | None = None
    slice_scores: SliceComparisons = Field(
        default_factory=dict, description="candidate and champion per slice, on the gate's rows"
    )


class FeatureDrift(BaseModel):
    """The drift verdict for one feature (or one stream, for concept drift)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    score: FiniteFloat
    method: str
    threshold: FiniteFloat
    drifted: bool


class DriftAlert(SystemEvent):
    """Drift found in a window of data, predictions or errors (``drift.alerts``)."""

    event_type: Literal["drift_alert"] = "drift_alert"
    schema_version: Literal[1] = 1
    alert_id: str = Field(default_factory=new_id)
    kind: Literal["data", "prediction", "performance", "quality", "concept"]
    severity: Literal["info", "warning", "critical"]
    method: str
    features: dict[str, FeatureDrift] = Field(default_factory=dict)
    drift_share: FiniteFloat | None = None
    window: Window
    champion_version: str | None = None
    report_path: str | None = None
    details: dict[str, FiniteFloat | str] = Field(default_factory=dict)


class TrainingRequest(SystemEvent):
    """A request to train a batch model (``training.requests``)."""

    event_type: Literal["training_request"] = "training_request"
    schema_version: Literal[1] = 1
    request_id: str = Field(default_factory=new_id)
    reason: Literal["drift", "schedule", "manual"]
    alert_id: str | None = None
    window: Window | None = None
    requested_by: str = "driftline"


class LabelRequest(SystemEvent):
    """A request for the ground truth of one served prediction (``<uc>.label_requests``).

    The answer is an ordinary label on ``<uc>.labels`` naming ``source_event_id``.
    The ``event_id`` is derived from the use case and ``source_event_id``
    (services/online_trainer/labeling.py), so a request made again after a
    restart is the same request; ``occurred_at`` is when it was chosen.
    """

    event_type: Literal["label_request"] = "label_request"
    schema_version: Literal[1] = 1
    source_event_id: str = Field(min_length=1, description="the event_id a label must name")
    entity_id: str
    prediction_id: str
    model_name: str
    model_version: str
    variant: Literal["champion", "challenger"]
    prediction: FeatureValue
    probabilities: dict[str, FiniteFloat] | None = None
    predicted_at: datetime
    strategy: LabelStrategy
    uncertainty: FiniteFloat = Field(ge=0, description="margin, entropy, spread or a draw")
    rank: int = Field(ge=1, description="1: the most uncertain prediction of its interval")
    candidates: int = Field(ge=1, description="served predictions in the interval")
    budget_per_hour: int = Field(gt=0)
    reason: str


EVENT_TYPES: tuple[type[SystemEvent], ...] = (
    FeatureRow,
    DeadLetter,
    Prediction,
    ModelCandidate,
    Promotion,
    DriftAlert,
    TrainingRequest,
    LabelRequest,
)
