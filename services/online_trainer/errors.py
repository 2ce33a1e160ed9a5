"""The online trainer's exceptions: one root, subclasses with context."""

from __future__ import annotations

from services.common.errors import DriftlineError


class OnlineTrainerError(DriftlineError):
    """Root of every error the online trainer raises on purpose."""


class SpecError(OnlineTrainerError):
    """A use case whose online model section cannot be built (wrong model for the task)."""


class CheckpointError(OnlineTrainerError):
    """A checkpoint that cannot be read back, or belongs to another spec."""
