"""driftline's contracts: system events, topic names and the use-case spec.

Every service imports this library and nothing of another service.
"""

from schemas.events import (
    EVENT_TYPES,
    DeadLetter,
    DriftAlert,
    FeatureDrift,
    FeatureRow,
    ModelCandidate,
    Prediction,
    Promotion,
    SystemEvent,
    TrainingRequest,
    Window,
)
from schemas.inputs import Label
from schemas.usecase import UseCase, UseCaseError, load_usecase, load_usecases

__all__ = [
    "EVENT_TYPES",
    "DeadLetter",
    "DriftAlert",
    "FeatureDrift",
    "FeatureRow",
    "Label",
    "ModelCandidate",
    "Prediction",
    "Promotion",
    "SystemEvent",
    "TrainingRequest",
    "UseCase",
    "UseCaseError",
    "Window",
    "load_usecase",
    "load_usecases",
]
