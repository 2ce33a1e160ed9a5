"""The served predictions joined with their labels: the live metric of one variant.

Predictions and labels meet by the raw event's id in bounded buffers of this
process (a restart starts them empty: the metric refills within a window).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schemas.classes import class_key, number_of
from schemas.events import DriftAlert, FeatureDrift, Prediction
from schemas.usecase import Task, UseCase
from services.common.join import Joined, KeyedJoin
from services.common.metrics import classification_metrics, regression_metrics

__all__ = ["LiveMetric", "Task", "top_features"]

Guess = tuple[Any, dict[str, float] | None]


@dataclass
class LiveMetric:
    """The served predictions' metric over the last ``window`` labeled ones.

    Predictions and labels are joined by the raw event's id in the one keyed
    join (``services/common/join.py``): whichever comes first waits for the
    other, up to ``pending`` of each.

    >>> from schemas.events import Prediction
    >>> live = LiveMetric(window=10)
    >>> for i, (guess, truth) in enumerate([(1, 1), (0, 1), (1, 1), (0, 0)]):
    ...     _ = live.add_prediction(Prediction(usecase="u", source_event_id=f"e{i}", entity_id="c",
    ...         model_name="u", model_version="1", variant="champion", prediction=guess,
    ...         probabilities={"0": 1.0 - guess * 0.8, "1": guess * 0.8}, latency_ms=1.0))
    ...     _ = live.add_label(f"e{i}", truth)
    >>> live.metrics("classification")["accuracy"]
    0.75
    """

    window: int = 500
    pending: int = 20_000
    positive: Any = None
    spec: UseCase | None = None
    pairs: deque[tuple[Any, Any, dict[str, float] | None]] = field(init=False)
    _join: KeyedJoin[Guess, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.pairs = deque(maxlen=self.window)
        self._join = KeyedJoin(self.pending, event_kind="predictions")

    @property
    def joined(self) -> int:
        """How many predictions have met their label."""
        return self._join.counts["joined"]

    def add_prediction(self, prediction: Prediction) -> bool:
        """Remember a served prediction; True when its label was already there."""
        key = prediction.source_event_id
        if key is None:
            return False
        guess = (prediction.prediction, prediction.probabilities)
        return self._pair(self._join.offer_event(key, guess))

    def add_label(self, event_id: str, label: Any) -> bool:
        """Remember a label; True when it completed a pair."""
        return self._pair(self._join.offer_label(event_id, label))

    def _pair(self, joined: Joined[Guess, Any] | None) -> bool:
        if joined is None:
            return False
        guess, proba = joined.event
        self.pairs.append((joined.label, guess, proba))
        return True

    def metrics(self, task: Task | None) -> dict[str, float]:
        """The metrics of the pairs in the window (empty while there are none)."""
        if not self.pairs:
            return {}
        # By the class rule: the spec's classes, or without a spec the rule's spellings.
        spec = self.spec
        read: Callable[[Any], Any] = (
            spec.class_of
            if spec is not None
            else (number_of if task == "regression" else class_key)
        )
        pairs = [(read(t), read(g), p) for t, g, p in self.pairs]
        pairs = [(t, g, p) for t, g, p in pairs if t is not None and g is not None]
        if not pairs:
            return {}
        if task == "regression":
            return regression_metrics([t for t, _, _ in pairs], [g for _, g, _ in pairs])
        truth_keys, guess_keys = [t for t, _, _ in pairs], [g for _, g, _ in pairs]
        probas = [
            p if p is None else {read(k): v for k, v in p.items() if read(k) is not None}
            for _, _, p in pairs
        ]
        known = [p for p in probas if p is not None]
        normalized = known if len(known) == len(probas) else None
        if spec is not None:
            classes: list[Any] = list(spec.label.classes or [])
            positive = spec.positive_class
        else:
            classes = sorted({*truth_keys, *guess_keys, *(k for p in probas if p for k in p)})
            positive = class_key(self.positive) if self.positive is not None else None
            if positive not in classes:
                positive = classes[-1] if len(classes) == 2 else None
        scored = classification_metrics(truth_keys, guess_keys, normalized, classes, positive)
        return {k: float(v) for k, v in scored.items() if isinstance(v, int | float)}


def top_features(alert: DriftAlert, limit: int = 3) -> list[tuple[str, FeatureDrift]]:
    """The drifted features of an alert first, then the others, at most ``limit``.

    >>> from schemas.events import DriftAlert, FeatureDrift, Window
    >>> verdict = lambda drifted: FeatureDrift(score=0.01, method="ks", threshold=0.05,
    ...                                        drifted=drifted)
    >>> alert = DriftAlert(usecase="u", kind="data", severity="warning", method="ks",
    ...                    window=Window(rows=500),
    ...                    features={"a": verdict(False), "b": verdict(True)})
    >>> [name for name, _ in top_features(alert)]
    ['b', 'a']
    """
    ordered = sorted(alert.features.items(), key=lambda item: (not item[1].drifted, item[0]))
    return ordered[:limit]
