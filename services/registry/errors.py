"""The registry's exceptions: one root, and the bad input that goes to the dead-letter topic."""

from __future__ import annotations

from services.common.errors import DriftlineError, InvalidInput


class RegistryError(DriftlineError):
    """Root of every error the registry raises on purpose."""


class InvalidEvent(InvalidInput, RegistryError):
    """A message on ``models.candidates`` or ``drift.alerts`` that is not the event it should be.

    >>> error = InvalidEvent("not a model candidate: Field required at model_version")
    >>> isinstance(error, InvalidInput), error.reason
    (True, 'not a model candidate: Field required at model_version')
    """


class UnknownUseCase(InvalidInput, RegistryError):
    """An event naming a use case no use-case file declares."""


class ModelUnavailable(RegistryError):
    """A model version that cannot be fetched from MLflow or does not match its sha256."""
