"""The registry's exceptions: one root, and the bad input that goes to the dead-letter topic.

A record that is not its topic's event is refused by the one decoder
(``services.common.serde.decode``), not here.
"""

from __future__ import annotations

from services.common.errors import DriftlineError, InvalidInput


class RegistryError(DriftlineError):
    """Root of every error the registry raises on purpose."""


class UnknownUseCase(InvalidInput, RegistryError):
    """An event naming a use case no use-case file declares: a dead letter with the reason.

    >>> error = UnknownUseCase("no use case 'loans' is configured")
    >>> isinstance(error, InvalidInput), isinstance(error, RegistryError), error.reason
    (True, True, "no use case 'loans' is configured")
    """


class ModelUnavailable(RegistryError):
    """A model version that cannot be fetched from MLflow or does not match its sha256."""
