"""Topic names: the one place they are spelled.

Per use case ``uc``: ``uc.raw``, ``uc.labels``, ``uc.features``,
``uc.deadletter``, ``uc.predictions``; global: ``models.candidates``,
``models.promotions``, ``drift.alerts``, ``training.requests``.

>>> raw("credit")
'credit.raw'
>>> usecase_topics("credit")[:2]
['credit.raw', 'credit.labels']
>>> usecase_of("credit.deadletter")
'credit'
"""

from __future__ import annotations

from collections.abc import Iterable

MODELS_CANDIDATES = "models.candidates"
MODELS_PROMOTIONS = "models.promotions"
DRIFT_ALERTS = "drift.alerts"
TRAINING_REQUESTS = "training.requests"

GLOBAL_TOPICS: tuple[str, ...] = (
    MODELS_CANDIDATES,
    MODELS_PROMOTIONS,
    DRIFT_ALERTS,
    TRAINING_REQUESTS,
)

_SUFFIXES = ("raw", "labels", "features", "deadletter", "predictions")


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


def usecase_topics(usecase: str) -> list[str]:
    """The five topics of one use case."""
    return [f"{usecase}.{suffix}" for suffix in _SUFFIXES]


def all_topics(usecases: Iterable[str]) -> list[str]:
    """Every topic a stack serving ``usecases`` needs."""
    names = [t for uc in usecases for t in usecase_topics(uc)]
    return [*names, *GLOBAL_TOPICS]


def usecase_of(topic: str) -> str | None:
    """The use case a per-use-case topic belongs to, or None for a global topic."""
    if topic in GLOBAL_TOPICS:
        return None
    usecase, _, suffix = topic.rpartition(".")
    return usecase if suffix in _SUFFIXES and usecase else None
