"""Topic names: the one place they are spelled.

Per use case ``uc``: ``uc.raw``, ``uc.labels``, ``uc.features``,
``uc.deadletter``, ``uc.predictions`` (its event streams) and ``uc.stats``
(its state); global: ``models.candidates``, ``models.promotions``,
``drift.alerts``, ``training.requests``.

>>> raw("credit")
'credit.raw'
>>> usecase_topics("credit")[:2]
['credit.raw', 'credit.labels']
>>> usecase_of("credit.deadletter")
'credit'

Each topic has a kind, which decides how the broker keeps it. An event
stream is deleted by age (``cleanup.policy=delete``, the retention is
configurable); a state topic is compacted (``cleanup.policy=compact``) and
its records are keyed so that compaction keeps every one that matters.

>>> kind_of("credit.raw"), kind_of(MODELS_PROMOTIONS), kind_of(LOG_EPOCH)
('stream', 'state', 'state')
>>> kind_of(stats("credit")), usecase_of(stats("credit"))
('state', 'credit')
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

TopicKind = Literal["stream", "state"]

MODELS_CANDIDATES = "models.candidates"
MODELS_PROMOTIONS = "models.promotions"
DRIFT_ALERTS = "drift.alerts"
TRAINING_REQUESTS = "training.requests"

# One record a log: the id of this broker log (see services/common/epoch.py).
LOG_EPOCH = "driftline.epoch"

GLOBAL_TOPICS: tuple[str, ...] = (
    MODELS_CANDIDATES,
    MODELS_PROMOTIONS,
    DRIFT_ALERTS,
    TRAINING_REQUESTS,
)

# The promotion history is keyed by event id: compaction keeps every decision
# (a few a day), and no retention period ever removes the champion's.
STATE_TOPICS: frozenset[str] = frozenset({MODELS_PROMOTIONS, LOG_EPOCH})

_SUFFIXES = ("raw", "labels", "features", "deadletter", "predictions")
# Per-use-case state topics: ``<uc>.stats`` is keyed by the use case, so
# compaction keeps the latest snapshot and a reader needs only the last record.
_STATE_SUFFIXES = ("stats",)


def raw(usecase: str) -> str:
    """Raw input events, written by users."""
    return f"{usecase}.raw"


def labels(usecase: str) -> str:
    """Ground truth, joined to raw events by ``event_id``."""
    return f"{usecase}.labels"


def features(usecase: str) -> str:
    """Validated, cleaned, featurized rows, written by ingestion."""
    return f"{usecase}.features"


def deadletter(usecase: str) -> str:
    """Rejected input with the reason, written by every service."""
    return f"{usecase}.deadletter"


def predictions(usecase: str) -> str:
    """Every answer of the inference service."""
    return f"{usecase}.predictions"


def stats(usecase: str) -> str:
    """Ingestion's imputation statistics, snapshots keyed by use case (a state topic)."""
    return f"{usecase}.stats"


def usecase_topics(usecase: str) -> list[str]:
    """The five event streams of one use case."""
    return [f"{usecase}.{suffix}" for suffix in _SUFFIXES]


def all_topics(usecases: Iterable[str]) -> list[str]:
    """Every topic a stack serving ``usecases`` needs."""
    names = [t for uc in usecases for t in (*usecase_topics(uc), stats(uc))]
    return [*names, *GLOBAL_TOPICS, LOG_EPOCH]


def kind_of(topic: str) -> TopicKind:
    """Whether ``topic`` is an event stream (deleted by age) or a state topic (compacted)."""
    if topic in STATE_TOPICS or topic.rpartition(".")[2] in _STATE_SUFFIXES:
        return "state"
    return "stream"


def usecase_of(topic: str) -> str | None:
    """The use case a per-use-case topic belongs to, or None for a global topic."""
    if topic in GLOBAL_TOPICS or topic == LOG_EPOCH:
        return None
    usecase, _, suffix = topic.rpartition(".")
    known = suffix in _SUFFIXES or suffix in _STATE_SUFFIXES
    return usecase if known and usecase else None
