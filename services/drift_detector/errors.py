"""The drift detector's exceptions: one root, subclasses with context.

>>> str(ReferenceUnavailable("credit", "no training rows in window"))
'credit: no reference: no training rows in window'
"""

from __future__ import annotations

from services.common.errors import DriftlineError


class DriftDetectorError(DriftlineError):
    """Root of every error the drift detector raises on purpose."""


class ReferenceUnavailable(DriftDetectorError):
    """The champion's training data could not be loaded (the old reference stays)."""

    def __init__(self, usecase: str, reason: str) -> None:
        super().__init__(f"{usecase}: no reference: {reason}")
        self.usecase = usecase
        self.reason = reason


class CheckpointError(DriftDetectorError):
    """A checkpoint that cannot be read back."""
