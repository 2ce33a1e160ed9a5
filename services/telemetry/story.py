"""The loop's story per use case: who serves, the online model, alerts, the timeline.

:class:`Story` folds one use case's system events (promotions, candidates,
drift alerts, training requests, dead letters, predictions and labels) into
what a person watching the loop wants to see. The windowed numbers
(throughput, dead-letter reasons, latency, predictions per variant) are faust
tables (:mod:`services.telemetry.windows`); this is the rest. No I/O and no
clock of its own: every observation carries its time, so it is replayable.

>>> from schemas.events import Promotion
>>> story = Story("credit")
>>> story.observe(Promotion(usecase="credit", action="promote", model_name="credit",
...                         model_version="1", reason="first model"), at=0.0)
True
>>> story.champion.label, [m.kind for m in story.milestones]
('credit v1', ['champion'])
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from schemas.events import (
    DeadLetter,
    DriftAlert,
    ModelCandidate,
    Prediction,
    Promotion,
    SystemEvent,
    TrainingRequest,
)
from schemas.usecase import LOWER_IS_BETTER, UseCase
from services.common.promotions import history as fold
from services.telemetry.joined import LiveMetric, Task, top_features

PREFERRED_METRICS = ("roc_auc", "accuracy", "f1", "r2", "mae", "rmse", "mse")
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
# How many recent labels a use case keeps for a variant first seen after them.
RECENT_LABELS = 20_000
# How many event ids a use case remembers to ignore a record read twice (the newest).
SEEN_EVENTS = 20_000


def to_datetime(seconds: float) -> datetime:
    """Seconds since the epoch (a record's timestamp) as an aware UTC datetime.

    >>> to_datetime(0.0).isoformat()
    '1970-01-01T00:00:00+00:00'
    """
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True)
class ServingModel:
    """A model that serves, as the promotion history says: the champion, or a trial's challenger."""

    model: fold.ModelRef
    role: Literal["champion", "canary", "shadow"]
    since: datetime
    traffic_share: float | None = None

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def label(self) -> str:
        return self.model.label

    @classmethod
    def champion_of(
        cls, state: fold.UseCaseHistory, before: ServingModel | None, at: datetime
    ) -> ServingModel | None:
        """The champion the fold says; ``before`` (with its ``since``) when it stayed."""
        if state.champion is None:
            return None
        if before is not None and state.champion.same_model(before.model):
            return before
        return cls(state.champion, "champion", at)

    @classmethod
    def challenger_of(cls, state: fold.UseCaseHistory) -> ServingModel | None:
        trial = state.challenger
        if trial is None:
            return None
        return cls(trial.model, trial.mode, trial.started_at, trial.traffic_share)


@dataclass(frozen=True)
class Milestone:
    """One step of the story, at the time the event says it happened."""

    at: datetime
    kind: Literal["champion", "online", "drift", "request", "candidate", "promotion"]
    text: str
    count: int = 1
    rank: int = 0


@dataclass
class Story:
    """Everything the console shows about one use case besides its windows."""

    usecase: str
    primary_metric: str | None = None
    task: Task | None = None
    positive: Any = None
    live_window: int = 500
    history: int = 240
    spec: UseCase | None = field(default=None, repr=False)

    labels: int = 0
    deadletters: int = 0
    deadletters_by_service: Counter[str] = field(default_factory=Counter)
    last_deadletter: DeadLetter | None = None
    unreadable: int = 0

    champion: ServingModel | None = None
    challenger: ServingModel | None = None
    online: ModelCandidate | None = None
    online_history: deque[tuple[datetime, float]] = field(init=False)
    live: dict[str, LiveMetric] = field(default_factory=dict)
    live_history: dict[str, deque[tuple[datetime, float]]] = field(default_factory=dict)
    last_predictions: deque[Prediction] = field(init=False)
    candidates: deque[ModelCandidate] = field(init=False)
    alerts: deque[DriftAlert] = field(init=False)
    alerts_by_kind: Counter[str] = field(default_factory=Counter)
    requests: deque[TrainingRequest] = field(init=False)
    promotions: deque[Promotion] = field(init=False)
    milestones: list[Milestone] = field(default_factory=list)
    replaced: dict[str, str] = field(default_factory=dict)
    started_at: datetime | None = None
    last_at: datetime | None = None
    lineup: fold.PromotionHistory = field(default_factory=fold.PromotionHistory)
    # The newest event ids observed (at most SEEN_EVENTS): a record read again is ignored.
    _seen: OrderedDict[str, None] = field(default_factory=OrderedDict)
    # The latest labels by event id, for a variant whose first prediction comes after
    # some of its labels (topics are read in no set order).
    _recent_labels: OrderedDict[str, Any] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.online_history = deque(maxlen=self.history)
        self.last_predictions = deque(maxlen=10)
        self.candidates = deque(maxlen=10)
        self.alerts = deque(maxlen=10)
        self.requests = deque(maxlen=10)
        self.promotions = deque(maxlen=10)

    @classmethod
    def for_usecase(cls, spec: UseCase, **options: Any) -> Story:
        """A story that knows the use case's task, primary metric and positive class."""
        return cls(
            spec.name,
            primary_metric=spec.primary_metric,
            task=spec.task,
            positive=spec.label.positive,
            spec=spec,
            **options,
        )

    def observe(self, event: SystemEvent, at: float) -> bool:
        """One system event; events of other use cases and repeated events are ignored."""
        if event.usecase != self.usecase:
            return False
        if isinstance(event, Prediction):
            self._observe_prediction(event, at)
            return True
        if event.event_id in self._seen:
            return False
        self._seen[event.event_id] = None
        if len(self._seen) > SEEN_EVENTS:
            self._seen.popitem(last=False)
        self._clock(event.occurred_at)
        if isinstance(event, DeadLetter):
            self.deadletters += 1
            self.deadletters_by_service[event.service] += 1
            self.last_deadletter = event
        elif isinstance(event, ModelCandidate):
            self._observe_candidate(event)
        elif isinstance(event, Promotion):
            self._observe_promotion(event)
        elif isinstance(event, DriftAlert):
            self._observe_alert(event)
        elif isinstance(event, TrainingRequest):
            self.requests.append(event)
            why = f" for alert {event.alert_id[:8]}" if event.alert_id else ""
            self._milestone(event.occurred_at, "request", f"training request ({event.reason}){why}")
        else:
            del self._seen[event.event_id]
            return False
        return True

    def observe_label(self, value: bytes | None, at: float) -> bool:
        """One message of ``<uc>.labels`` (plain JSON); True if it was a label."""
        try:
            label = json.loads(value or b"")
        except ValueError:
            self.unreadable += 1
            return False
        if not isinstance(label, dict) or "event_id" not in label or "label" not in label:
            self.unreadable += 1
            return False
        self.labels += 1
        self._clock(to_datetime(at))
        event_id = str(label["event_id"])
        self._recent_labels[event_id] = label["label"]
        while len(self._recent_labels) > RECENT_LABELS:
            self._recent_labels.popitem(last=False)
        for variant, live in self.live.items():
            if live.add_label(event_id, label["label"]):
                self._sample_live(variant, to_datetime(at))
        return True

    def _clock(self, moment: datetime) -> None:
        if self.started_at is None or moment < self.started_at:
            self.started_at = moment
        if self.last_at is None or moment > self.last_at:
            self.last_at = moment

    def _observe_prediction(self, prediction: Prediction, at: float) -> None:
        self.last_predictions.append(prediction)
        if self.task is None:
            numeric = isinstance(prediction.prediction, int | float) and not isinstance(
                prediction.prediction, bool
            )
            proba = prediction.probabilities is not None
            self.task = "classification" if proba or not numeric else "regression"
        live = self.live.get(prediction.variant)
        if live is None:
            live = LiveMetric(window=self.live_window, positive=self.positive, spec=self.spec)
            self.live[prediction.variant] = live
            for event_id, label in self._recent_labels.items():  # labels read before it
                live.add_label(event_id, label)
        if live.add_prediction(prediction):
            self._sample_live(prediction.variant, to_datetime(at))

    def _sample_live(self, variant: str, moment: datetime) -> None:
        """Every tenth of a window of joins, one point of the variant's live metric history."""
        live = self.live[variant]
        step = max(1, self.live_window // 10)
        if live.joined % step:
            return
        value = self.live_metrics(variant).get(self.metric)
        if value is not None:
            history = self.live_history.setdefault(variant, deque(maxlen=self.history))
            history.append((moment, value))

    def _observe_candidate(self, candidate: ModelCandidate) -> None:
        self._learn_metric(candidate.metrics)
        if candidate.trainer == "online":
            if self.online is None:
                self._milestone(
                    candidate.occurred_at, "online", f"online model {_ref(candidate)} learning"
                )
            if self.online is None or candidate.occurred_at >= self.online.occurred_at:
                self.online = candidate
            value = candidate.metrics.get(f"rolling_{self.metric}")
            if value is not None:
                self.online_history.append((candidate.occurred_at, value))
            return
        self.candidates.append(candidate)
        score = candidate.metrics.get(self.metric)
        shown = f": {self.metric} {score:.3f}" if score is not None else ""
        self._milestone(candidate.occurred_at, "candidate", f"candidate {_ref(candidate)}{shown}")

    def _observe_promotion(self, promotion: Promotion) -> None:
        """Who serves is what the shared fold says; the view adds the story's milestones."""
        self.promotions.append(promotion)
        model = f"{promotion.model_name} v{promotion.model_version}"
        moment = promotion.occurred_at
        action = promotion.action
        before = self.champion
        self.lineup.apply(promotion)
        state = self.lineup.get(self.usecase)
        self.champion = ServingModel.champion_of(state, before, moment)
        self.challenger = ServingModel.challenger_of(state)
        if action in ("promote", "rollback"):
            if before is None:
                self._milestone(moment, "champion", f"first champion {model}")
                return
            # The event names the old champion's version only; its name may differ.
            self.replaced[promotion.event_id] = before.label
        was = self.replaced.get(promotion.event_id)
        was = f" (was {was})" if was else ""
        self._milestone(moment, "promotion", f"{action} {model}{was}")

    def _observe_alert(self, alert: DriftAlert) -> None:
        self.alerts.append(alert)
        self.alerts_by_kind[alert.kind] += 1
        drifted = [name for name, verdict in top_features(alert, 3) if verdict.drifted]
        what = f": {', '.join(drifted)}" if drifted else ""
        text = f"{alert.severity} {alert.kind} drift{what}"
        rank = SEVERITY_RANK.get(alert.severity, 0)
        self._milestone(alert.occurred_at, "drift", text, merge=True, rank=rank)

    def _milestone(
        self, moment: datetime, kind: Any, text: str, merge: bool = False, rank: int = 0
    ) -> None:
        """Insert a milestone in time order.

        With ``merge``, one of the same kind just before absorbs it (a storm of
        alerts is one step of the story) and shows the more severe text.
        """
        index = len(self.milestones)
        while index and self.milestones[index - 1].at > moment:
            index -= 1
        before = self.milestones[index - 1] if index else None
        if merge and before is not None and before.kind == kind:
            shown = (text, rank) if rank >= before.rank else (before.text, before.rank)
            self.milestones[index - 1] = replace(
                before, text=shown[0], rank=shown[1], count=before.count + 1
            )
            return
        self.milestones.insert(index, Milestone(moment, kind, text, rank=rank))
        if len(self.milestones) > 200:
            del self.milestones[1]  # keep the first champion, drop the oldest after it

    def _learn_metric(self, metrics: dict[str, float]) -> None:
        if self.primary_metric is None:
            self.primary_metric = next((m for m in PREFERRED_METRICS if m in metrics), None)
        if self.task is None:
            if any(m in metrics for m in ("accuracy", "roc_auc", "f1", "log_loss")):
                self.task = "classification"
            elif any(m in metrics for m in ("mae", "rmse", "r2")):
                self.task = "regression"

    # ---- reading -------------------------------------------------------------------

    @property
    def metric(self) -> str:
        """The primary metric (from the spec, or the first well-known one seen)."""
        if self.primary_metric:
            return self.primary_metric
        return "mae" if self.task == "regression" else "accuracy"

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER

    def live_metrics(self, variant: str = "champion") -> dict[str, float]:
        """A variant's served predictions' metrics over its last ``live_window`` labeled ones."""
        live = self.live.get(variant)
        return live.metrics(self.task) if live is not None else {}

    def elapsed(self, moment: datetime) -> float:
        """Seconds from the start of the story to ``moment``."""
        if self.started_at is None:
            return 0.0
        return (moment - self.started_at).total_seconds()


def _ref(candidate: ModelCandidate) -> str:
    return f"{candidate.model_name} v{candidate.model_version}"
