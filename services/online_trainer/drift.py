"""Concept drift: a river detector watching the online model's error stream.

The error is 0/1 (misclassified) for classifiers and the absolute error for
regressors. When the detector fires, the detection carries the mean error
before and after the change point: for ADWIN exactly the part of its window
it dropped and the part it kept; for other detectors the history before the
most recent ``tail`` rows, and those rows.

>>> from river import drift
>>> monitor = ConceptDriftMonitor(drift.ADWIN(), "adwin", history=2000)
>>> errors = [0.0] * 1000 + [1.0] * 200
>>> found = [d for i, e in enumerate(errors) if (d := monitor.update(e, i + 1))]
>>> found[0].rows_learned > 1000, found[0].error_before, found[0].error_after > 0.4
(True, 0.0, True)
"""

from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass
from typing import Any

from schemas.events import DriftAlert, FeatureDrift, Window
from services.online_trainer.join import JoinedRow


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
        self._adwin = hasattr(detector, "width") and hasattr(detector, "total")

    def update(self, error: float, rows_learned: int) -> ConceptDrift | None:
        """Add one error; return the detection if the detector fired on it."""
        self._history.append(error)
        detector = self.detector
        if self._adwin:
            width, total = detector.width, detector.total
        detector.update(error)
        if not detector.drift_detected:
            return None
        self.detections += 1
        if self._adwin:
            # ADWIN drops the old part of its window: what it dropped is "before".
            kept, kept_total = detector.width, detector.total
            dropped = width + 1 - kept
            dropped_total = total + error - kept_total
            before = dropped_total / dropped if dropped > 0 else kept_total / max(kept, 1)
            return ConceptDrift(
                detector=self.name,
                rows_learned=rows_learned,
                window_rows=int(width + 1),
                error_before=float(before),
                error_after=float(kept_total / max(kept, 1)),
            )
        recent = list(self._history)
        after_rows = max(1, min(self.tail, len(recent) // 2))
        after = recent[-after_rows:]
        before_rows = recent[:-after_rows] or after
        return ConceptDrift(
            detector=self.name,
            rows_learned=rows_learned,
            window_rows=len(before_rows) + len(after),
            error_before=sum(before_rows) / len(before_rows),
            error_after=sum(after) / len(after),
        )


def concept_alert(
    detection: ConceptDrift, joined: JoinedRow, usecase: str, spec_hash: str, model_name: str
) -> DriftAlert:
    """The ``drift.alerts`` event of a detection (its id is stable under replay)."""
    key = f"{usecase}:concept:{spec_hash}:{detection.rows_learned}"
    alert_id = hashlib.sha256(key.encode()).hexdigest()[:32]
    return DriftAlert(
        event_id=alert_id,
        alert_id=alert_id,
        usecase=usecase,
        kind="concept",
        # The detector fires on any change; a falling error is news, not trouble.
        severity="warning" if detection.error_after > detection.error_before else "info",
        method=detection.detector,
        features={
            "error": FeatureDrift(
                score=detection.error_after,
                method=detection.detector,
                threshold=detection.error_before,
                drifted=True,
            )
        },
        window=Window(end=joined.event_timestamp, rows=detection.window_rows),
        details={
            "detector": detection.detector,
            "error_before": detection.error_before,
            "error_after": detection.error_after,
            "rows_learned": float(detection.rows_learned),
            "source_event_id": joined.event_id,
            "model_name": model_name,
        },
    )
