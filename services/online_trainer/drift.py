"""Concept drift: a river detector watching the online model's error stream.

The error is 0/1 (misclassified) for classifiers and the absolute error for
regressors. When the detector fires, the detection carries the mean error
before and after the change point: for ADWIN the "after" part is the window
it kept (its ``width``), for other detectors the most recent ``tail`` rows.

>>> from river import drift
>>> monitor = ConceptDriftMonitor(drift.ADWIN(), "adwin", history=2000)
>>> errors = [0.0] * 1000 + [1.0] * 200
>>> found = [d for i, e in enumerate(errors) if (d := monitor.update(e, i + 1))]
>>> found[0].rows_learned > 1000, found[0].error_before, found[0].error_after > 0.4
(True, 0.0, True)
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ConceptDrift:
    """One detection: where it happened and how the error moved."""

    detector: str
    rows_learned: int
    window_rows: int
    error_before: float
    error_after: float


class ConceptDriftMonitor:
    """Feeds errors to ``detector`` and keeps the recent history to describe a detection."""

    def __init__(self, detector: Any, name: str, history: int = 1000, tail: int = 100) -> None:
        self.detector = detector
        self.name = name
        self.tail = tail
        self.detections = 0
        self._history: collections.deque[float] = collections.deque(maxlen=max(history, 2))

    def update(self, error: float, rows_learned: int) -> ConceptDrift | None:
        """Add one error; return the detection if the detector fired on it."""
        self._history.append(error)
        self.detector.update(error)
        if not self.detector.drift_detected:
            return None
        self.detections += 1
        recent = list(self._history)
        width = getattr(self.detector, "width", None)
        after_rows = int(width) if width else min(self.tail, len(recent) // 2)
        after_rows = max(1, min(after_rows, len(recent) - 1)) if len(recent) > 1 else 1
        after = recent[-after_rows:]
        before = recent[:-after_rows] or after
        return ConceptDrift(
            detector=self.name,
            rows_learned=rows_learned,
            window_rows=len(before) + len(after),
            error_before=sum(before) / len(before),
            error_after=sum(after) / len(after),
        )
