"""The inference service's errors; each maps to one HTTP status in :mod:`.api`.

>>> str(NoChampion("credit"))
'no champion for use case credit yet'
>>> InvalidFeatures("missing required field 'age'", field="age").field
'age'
"""

from __future__ import annotations

from services.common.errors import DriftlineError


class InferenceError(DriftlineError):
    """Root of the errors the inference service raises on purpose."""


class UnknownUseCase(InferenceError):
    """A use case this service does not serve (404)."""

    def __init__(self, usecase: str, known: list[str]) -> None:
        super().__init__(f"no use case {usecase!r}; served: {known}")
        self.usecase = usecase


class NoChampion(InferenceError):
    """No model has been promoted for the use case yet (503)."""

    def __init__(self, usecase: str) -> None:
        super().__init__(f"no champion for use case {usecase} yet")
        self.usecase = usecase


class FeatureStoreUnavailable(InferenceError):
    """The online feature store did not answer (503, with its reason); the service stays up."""


class InvalidFeatures(InferenceError):
    """A request whose features cannot be used (422); ``field`` names the culprit."""

    def __init__(self, reason: str, *, field: str | None = None, index: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.index = index


class ModelRefused(InferenceError):
    """A promoted model that was not loaded (sha256 mismatch, missing artifact)."""

    def __init__(self, reason: str, *, model_name: str, model_version: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.model_name = model_name
        self.model_version = model_version
