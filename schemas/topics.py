"""Topics: the one place each is declared, with its name, event model, key and kind.

A :class:`Topic` is a family of topics: per use case ``uc`` (``RAW`` names
``uc.raw``) or global (``PROMOTIONS`` names ``models.promotions``). It knows
the pydantic model its records carry (what ``services.common.serde.decode``
parses them into), the event field its records are keyed by, and its kind.

>>> RAW.name("credit"), PROMOTIONS.name()
('credit.raw', 'models.promotions')
>>> topic_of("credit.features") is FEATURES, FEATURES.model.__name__, FEATURES.key
(True, 'FeatureRow', 'entity_id')
>>> raw("credit"), usecase_topics("credit")[:2]
('credit.raw', ['credit.raw', 'credit.labels'])
>>> usecase_of("credit.deadletter"), usecase_of(MODELS_CANDIDATES)
('credit', None)

The kind decides how the broker keeps a topic. An event stream is deleted by
age (``cleanup.policy=delete``, the retention is configurable); a state topic
is compacted (``cleanup.policy=compact``), has one partition, and its records
are keyed so that compaction keeps every one that matters.

>>> kind_of("credit.raw"), kind_of(MODELS_PROMOTIONS), kind_of(LOG_EPOCH)
('stream', 'state', 'state')
>>> kind_of(stats("credit")), usecase_of(stats("credit"))
('state', 'credit')

Each service declares the topics it reads and writes (:data:`SERVICE_TOPICS`);
that declaration is what its start-up and ``driftline topics create`` create.

>>> SERVICE_TOPICS["batch_trainer"].names(["credit"])
['training.requests', 'models.candidates', 'credit.deadletter', 'driftline.epoch']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel

from schemas.backtests import Backtest
from schemas.events import (
    DeadLetter,
    DriftAlert,
    FeatureRow,
    LabelRequest,
    ModelCandidate,
    Prediction,
    Promotion,
    TrainingRequest,
)
from schemas.inputs import Label

TopicKind = Literal["stream", "state"]
ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class Topic(Generic[ModelT]):
    """One topic (global) or one topic per use case, and what its records are.

    ``model`` is None for a topic whose records are not system events: raw user
    input (its use case's Preparer parses it), the imputation statistics and
    the log epoch (each read by its one reader).
    """

    base: str  # the suffix after ``<uc>.`` for a per-use-case topic; else the whole name
    what: str  # a record in words, for error messages: "a feature row"
    model: type[ModelT] | None
    key: str | None  # the event field records are keyed by; None: unkeyed
    kind: TopicKind = "stream"
    per_usecase: bool = True

    def name(self, usecase: str | None = None) -> str:
        """The topic's name (a per-use-case topic needs the use case)."""
        if not self.per_usecase:
            return self.base
        if not usecase:
            raise ValueError(f"topic '<uc>.{self.base}' is per use case: name the use case")
        return f"{usecase}.{self.base}"

    def names(self, usecases: Iterable[str]) -> list[str]:
        """Its name for each use case (a global topic: its one name)."""
        return [self.name(uc) for uc in usecases] if self.per_usecase else [self.base]

    def key_of(self, event: Any) -> bytes | None:
        """The record key for ``event`` on this topic.

        >>> FEATURES.key_of(FeatureRow(usecase="u", source_event_id="e", entity_id="c7",
        ...                            event_timestamp="2026-01-01T00:00:00Z", features={}))
        b'c7'
        """
        return None if self.key is None else str(getattr(event, self.key)).encode()

    def __str__(self) -> str:
        return f"<uc>.{self.base}" if self.per_usecase else self.base


# Per use case: its event streams, then its state.
RAW: Topic[BaseModel] = Topic("raw", "a raw event", None, "entity_id")
LABELS = Topic("labels", "a label", Label, None)
FEATURES = Topic("features", "a feature row", FeatureRow, "entity_id")
DEADLETTER = Topic("deadletter", "a dead letter", DeadLetter, None)
PREDICTIONS = Topic("predictions", "a prediction", Prediction, None)
# The online trainer asks for the labels of the served predictions it is least sure of;
# people (and `driftline demo --labels requested`) answer on <uc>.labels.
LABEL_REQUESTS = Topic("label_requests", "a label request", LabelRequest, "entity_id")
# Keyed by the use case: compaction keeps the latest snapshot, a reader needs the last record.
STATS: Topic[BaseModel] = Topic("stats", "imputation statistics", None, "usecase", "state")

# Global.
CANDIDATES = Topic("models.candidates", "a model candidate", ModelCandidate, "usecase",
                   per_usecase=False)  # fmt: skip
# Keyed by event id: compaction keeps every decision (a few a day), and no
# retention period ever removes the champion's.
PROMOTIONS = Topic("models.promotions", "a promotion", Promotion, "event_id", "state",
                   per_usecase=False)  # fmt: skip
ALERTS = Topic("drift.alerts", "a drift alert", DriftAlert, "usecase", per_usecase=False)
REQUESTS = Topic("training.requests", "a training request", TrainingRequest, "usecase",
                 per_usecase=False)  # fmt: skip
# Back-test summaries (driftline backtest, the registry's promotion.backtest): read by people.
BACKTESTS = Topic("models.backtests", "a back-test", Backtest, "usecase", per_usecase=False)
# One record a log: the id of this broker log (see services/common/epoch.py).
EPOCH: Topic[BaseModel] = Topic("driftline.epoch", "a log epoch", None, "epoch", "state",
                                per_usecase=False)  # fmt: skip

USECASE_TOPICS: tuple[Topic[Any], ...] = (
    RAW, LABELS, FEATURES, DEADLETTER, PREDICTIONS, LABEL_REQUESTS, STATS,
)  # fmt: skip
GLOBAL: tuple[Topic[Any], ...] = (CANDIDATES, PROMOTIONS, ALERTS, REQUESTS, BACKTESTS, EPOCH)

# The names as plain strings, for the many callers that need only the name.
MODELS_CANDIDATES = CANDIDATES.name()
MODELS_PROMOTIONS = PROMOTIONS.name()
DRIFT_ALERTS = ALERTS.name()
TRAINING_REQUESTS = REQUESTS.name()
MODELS_BACKTESTS = BACKTESTS.name()
LOG_EPOCH = EPOCH.name()

GLOBAL_TOPICS: tuple[str, ...] = (
    MODELS_CANDIDATES,
    MODELS_PROMOTIONS,
    DRIFT_ALERTS,
    TRAINING_REQUESTS,
)

_BY_NAME = {topic.base: topic for topic in GLOBAL}
_BY_SUFFIX = {topic.base: topic for topic in USECASE_TOPICS}


@dataclass(frozen=True)
class ServiceTopics:
    """What one service reads and writes; every service reads the log epoch."""

    reads: tuple[Topic[Any], ...]
    writes: tuple[Topic[Any], ...]

    def names(self, usecases: Iterable[str]) -> list[str]:
        """Every topic name the service needs for ``usecases``, each once, in order."""
        chosen = list(usecases)
        found = [n for topic in (*self.reads, *self.writes, EPOCH) for n in topic.names(chosen)]
        return list(dict.fromkeys(found))


SERVICE_TOPICS: dict[str, ServiceTopics] = {
    "ingestion": ServiceTopics(reads=(RAW,), writes=(FEATURES, DEADLETTER, STATS)),
    "features": ServiceTopics(reads=(FEATURES, LABELS), writes=(DEADLETTER,)),
    "online_trainer": ServiceTopics(
        reads=(FEATURES, LABELS, PREDICTIONS),
        writes=(CANDIDATES, ALERTS, LABEL_REQUESTS, DEADLETTER),
    ),
    "batch_trainer": ServiceTopics(reads=(REQUESTS,), writes=(CANDIDATES, DEADLETTER)),
    "registry": ServiceTopics(
        reads=(PROMOTIONS, REQUESTS, CANDIDATES, ALERTS, PREDICTIONS, LABELS),
        writes=(PROMOTIONS, REQUESTS, BACKTESTS, DEADLETTER),
    ),
    "inference": ServiceTopics(
        reads=(PROMOTIONS, STATS), writes=(PREDICTIONS, LABELS, ALERTS, DEADLETTER)
    ),
    "drift_detector": ServiceTopics(
        reads=(FEATURES, PREDICTIONS, LABELS, CANDIDATES, PROMOTIONS),
        writes=(ALERTS, DEADLETTER),
    ),
}


def raw(usecase: str) -> str:
    """Raw input events, written by users."""
    return RAW.name(usecase)


def labels(usecase: str) -> str:
    """Ground truth, joined to raw events by ``event_id``."""
    return LABELS.name(usecase)


def features(usecase: str) -> str:
    """Validated, cleaned, featurized rows, written by ingestion."""
    return FEATURES.name(usecase)


def deadletter(usecase: str) -> str:
    """Rejected input with the reason, written by every service."""
    return DEADLETTER.name(usecase)


def predictions(usecase: str) -> str:
    """Every answer of the inference service."""
    return PREDICTIONS.name(usecase)


def label_requests(usecase: str) -> str:
    """Requests for ground truth where the model is least sure, written by the online trainer."""
    return LABEL_REQUESTS.name(usecase)


def stats(usecase: str) -> str:
    """Ingestion's imputation statistics, snapshots keyed by use case (a state topic)."""
    return STATS.name(usecase)


def usecase_topics(usecase: str) -> list[str]:
    """The event streams of one use case."""
    return [t.name(usecase) for t in USECASE_TOPICS if t.kind == "stream"]


def all_topics(usecases: Iterable[str]) -> list[str]:
    """Every topic a stack serving ``usecases`` needs: what the services declare."""
    chosen = list(usecases)
    found = [n for service in SERVICE_TOPICS.values() for n in service.names(chosen)]
    return list(dict.fromkeys(found))


def topic_of(name: str) -> Topic[Any] | None:
    """The declared topic ``name`` is (one of), or None for a name driftline does not declare.

    >>> topic_of("models.promotions") is PROMOTIONS, topic_of("credit.nope")
    (True, None)
    """
    found = _BY_NAME.get(name)
    if found is not None:
        return found
    usecase, _, suffix = name.rpartition(".")
    return _BY_SUFFIX.get(suffix) if usecase else None


def kind_of(name: str) -> TopicKind:
    """Whether ``name`` is an event stream (deleted by age) or a state topic (compacted)."""
    topic = topic_of(name)
    return "stream" if topic is None else topic.kind


def usecase_of(name: str) -> str | None:
    """The use case a per-use-case topic belongs to, or None for a global topic."""
    topic = topic_of(name)
    if topic is None or not topic.per_usecase:
        return None
    return name.rpartition(".")[0]
