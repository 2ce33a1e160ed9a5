"""The batch trainer's exceptions: one root, and the refusals that go to the dead-letter topic."""

from __future__ import annotations

from services.common.errors import DriftlineError, InvalidInput


class BatchTrainerError(DriftlineError):
    """Root of every error the batch trainer raises on purpose."""


class TrainingRefused(InvalidInput, BatchTrainerError):
    """A request no retry will make trainable: too little data, one class only, bad columns.

    >>> error = TrainingRefused("credit: 12 rows in the window, 200 needed", event_id="r1")
    >>> isinstance(error, InvalidInput), error.reason
    (True, 'credit: 12 rows in the window, 200 needed')
    """


class UnknownUseCase(InvalidInput, BatchTrainerError):
    """A request naming a use case this trainer does not serve."""


class NotEnoughData(TrainingRefused):
    """Fewer labelled rows than ``models.batch.min_rows``: waiting for data may fix it."""
