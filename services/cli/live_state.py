"""What the live view knows: a pure model of one use case's loop, fed message by message.

:class:`LiveState` takes the messages of a use case's topics (raw events and
labels as plain JSON, everything else as :mod:`schemas.events`) and keeps what
a person watching the loop wants to see: throughput, who serves, the online
model's rolling metric, drift alerts, training requests, candidates,
promotions, the live metric of served predictions joined with their labels,
and a timeline of the story's milestones. No I/O and no clock of its own:
every observation carries its time, so the model is replayable and testable.

>>> from schemas.events import Promotion
>>> state = LiveState("credit")
>>> state.observe(Promotion(usecase="credit", action="promote", model_name="credit",
...                         model_version="1", reason="first model"), at=0.0)
True
>>> state.champion.label, [m.kind for m in state.milestones]
('credit v1', ['champion'])
"""

from __future__ import annotations

import json
import math
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError

from schemas import topics
from schemas.classes import class_key, number_of
from schemas.events import (
    DeadLetter,
    DriftAlert,
    FeatureDrift,
    ModelCandidate,
    Prediction,
    Promotion,
    SystemEvent,
    TrainingRequest,
    parse_event,
)
from schemas.usecase import LOWER_IS_BETTER, UseCase
from services.common.metrics import classification_metrics, regression_metrics
from services.common.promotions import history as fold

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
PREFERRED_METRICS = ("roc_auc", "accuracy", "f1", "r2", "mae", "rmse", "mse")
Task = Literal["classification", "regression"]
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


def sparkline(values: Sequence[float], width: int = 30) -> str:
    """The last ``width`` values as Unicode blocks, scaled between their min and max.

    >>> sparkline([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    '▁▂▄▅▇█'
    >>> sparkline([3.0, 3.0]), sparkline([])
    ('▄▄', '')
    """
    shown = [v for v in values if math.isfinite(v)][-width:]
    if not shown:
        return ""
    low, high = min(shown), max(shown)
    if high - low < 1e-12:
        return SPARK_BLOCKS[3] * len(shown)
    top = len(SPARK_BLOCKS) - 1
    return "".join(SPARK_BLOCKS[round((v - low) / (high - low) * top)] for v in shown)


def to_datetime(seconds: float) -> datetime:
    """Seconds since the epoch (a record's timestamp) as an aware UTC datetime.

    >>> to_datetime(0.0).isoformat()
    '1970-01-01T00:00:00+00:00'
    """
    return datetime.fromtimestamp(seconds, UTC)


class RateMeter:
    """Counts per whole second; the rate is the mean over the last full seconds.

    >>> meter = RateMeter(window=2)
    >>> for at in (10.1, 10.5, 11.2, 11.3, 11.9, 12.0):
    ...     meter.add(at)
    >>> meter.rate(now=12.5), meter.total, meter.series(now=12.5, seconds=3)
    (2.5, 6, [0, 2, 3])
    """

    def __init__(self, window: int = 5, keep: int = 120) -> None:
        self.window = window
        self.keep = keep
        self.total = 0
        self._buckets: dict[int, int] = {}
        self._newest = 0

    def add(self, at: float, count: int = 1) -> None:
        second = int(at)
        self._buckets[second] = self._buckets.get(second, 0) + count
        self.total += count
        if second > self._newest:
            self._newest = second
            if len(self._buckets) > self.keep * 2:
                oldest = second - self.keep
                self._buckets = {s: c for s, c in self._buckets.items() if s >= oldest}

    def rate(self, now: float) -> float:
        """Events a second over the ``window`` full seconds before ``now``."""
        return sum(self.series(now, self.window)) / self.window

    def series(self, now: float, seconds: int) -> list[int]:
        """Counts of the last ``seconds`` full seconds before ``now``, oldest first."""
        current = int(now)
        return [self._buckets.get(s, 0) for s in range(current - seconds, current)]


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


# The name the renderer (services/cli/live.py) imports; it goes when live.py says ServingModel.
ModelRef = ServingModel


@dataclass(frozen=True)
class Milestone:
    """One step of the story, at the time the event says it happened."""

    at: datetime
    kind: Literal["champion", "online", "drift", "request", "candidate", "promotion"]
    text: str
    count: int = 1
    rank: int = 0


@dataclass
class LiveMetric:
    """The served predictions' metric over the last ``window`` labeled ones.

    Predictions and labels are joined by the raw event's id, whichever comes
    first waits for the other (up to ``pending`` of each).

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
    _predictions: OrderedDict[str, tuple[Any, dict[str, float] | None]] = field(init=False)
    _labels: OrderedDict[str, Any] = field(init=False)
    joined: int = 0

    def __post_init__(self) -> None:
        self.pairs = deque(maxlen=self.window)
        self._predictions = OrderedDict()
        self._labels = OrderedDict()

    def add_prediction(self, prediction: Prediction) -> bool:
        """Remember a served prediction; True when its label was already there."""
        key = prediction.source_event_id
        if key is None or prediction.variant == "shadow":
            return False
        if key in self._labels:
            self._join(self._labels.pop(key), prediction.prediction, prediction.probabilities)
            return True
        _bounded_put(
            self._predictions, key, (prediction.prediction, prediction.probabilities), self.pending
        )
        return False

    def add_label(self, event_id: str, label: Any) -> bool:
        """Remember a label; True when it completed a pair."""
        if event_id in self._predictions:
            guess, proba = self._predictions.pop(event_id)
            self._join(label, guess, proba)
            return True
        _bounded_put(self._labels, event_id, label, self.pending)
        return False

    def _join(self, truth: Any, guess: Any, proba: dict[str, float] | None) -> None:
        self.pairs.append((truth, guess, proba))
        self.joined += 1

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


def _bounded_put(store: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    store[key] = value
    while len(store) > limit:
        store.popitem(last=False)


@dataclass
class LiveState:
    """Everything the live view shows about one use case, updated one message at a time."""

    usecase: str
    primary_metric: str | None = None
    task: Task | None = None
    positive: Any = None
    live_window: int = 500
    history: int = 240
    rate_window: int = 5
    spec: UseCase | None = field(default=None, repr=False)

    raw: RateMeter = field(init=False)
    features: RateMeter = field(init=False)
    predictions: RateMeter = field(init=False)
    labels: int = 0
    deadletters: int = 0
    deadletters_by_service: Counter[str] = field(default_factory=Counter)
    last_deadletter: DeadLetter | None = None
    unreadable: int = 0

    champion: ServingModel | None = None
    challenger: ServingModel | None = None
    online: ModelCandidate | None = None
    online_history: deque[tuple[datetime, float]] = field(init=False)
    live: LiveMetric = field(init=False)
    live_history: deque[tuple[datetime, float]] = field(init=False)
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
    _seen: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.raw = RateMeter(self.rate_window)
        self.features = RateMeter(self.rate_window)
        self.predictions = RateMeter(self.rate_window)
        self.online_history = deque(maxlen=self.history)
        self.live = LiveMetric(window=self.live_window, positive=self.positive, spec=self.spec)
        self.live_history = deque(maxlen=self.history)
        self.candidates = deque(maxlen=10)
        self.alerts = deque(maxlen=10)
        self.requests = deque(maxlen=10)
        self.promotions = deque(maxlen=10)

    @classmethod
    def for_usecase(cls, spec: UseCase, **options: Any) -> LiveState:
        """A state that knows the use case's task, primary metric and positive class."""
        return cls(
            spec.name,
            primary_metric=spec.primary_metric,
            task=spec.task,
            positive=spec.label.positive,
            spec=spec,
            **options,
        )

    # ---- feeding -------------------------------------------------------------------

    def topics(self) -> list[str]:
        """The topics this state reads: the use case's five and the four global ones."""
        return [*topics.usecase_topics(self.usecase), *topics.GLOBAL_TOPICS]

    def observe_record(self, topic: str, value: bytes | None, at: float) -> bool:
        """One message of ``topic`` sent at ``at`` (seconds since the epoch); True if it counted."""
        if topic == topics.raw(self.usecase):
            self.raw.add(at)
            self._clock(to_datetime(at))
            return True
        if topic == topics.features(self.usecase):
            self.features.add(at)
            return True
        if topic == topics.labels(self.usecase):
            return self._observe_label(value, at)
        try:
            event = parse_event(value or b"")
        except (ValidationError, ValueError):
            self.unreadable += 1
            return False
        return self.observe(event, at)

    def observe_many(self, records: Iterable[tuple[str, bytes | None, float]]) -> int:
        """Several ``(topic, value, at)`` messages; returns how many counted."""
        return sum(self.observe_record(topic, value, at) for topic, value, at in records)

    def observe(self, event: SystemEvent, at: float) -> bool:
        """One system event; events of other use cases and repeated events are ignored."""
        if event.usecase != self.usecase:
            return False
        if isinstance(event, Prediction):
            self._observe_prediction(event, at)
            return True
        if event.event_id in self._seen:
            return False
        self._seen.add(event.event_id)
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
            self._seen.discard(event.event_id)
            return False
        return True

    def _clock(self, moment: datetime) -> None:
        if self.started_at is None or moment < self.started_at:
            self.started_at = moment
        if self.last_at is None or moment > self.last_at:
            self.last_at = moment

    def _observe_label(self, value: bytes | None, at: float) -> bool:
        try:
            label = json.loads(value or b"")
        except ValueError:
            self.unreadable += 1
            return False
        if not isinstance(label, dict) or "event_id" not in label or "label" not in label:
            self.unreadable += 1
            return False
        self.labels += 1
        if self.live.add_label(str(label["event_id"]), label["label"]):
            self._sample_live(to_datetime(at))
        return True

    def _observe_prediction(self, prediction: Prediction, at: float) -> None:
        self.predictions.add(at)
        if self.task is None:
            numeric = isinstance(prediction.prediction, int | float) and not isinstance(
                prediction.prediction, bool
            )
            proba = prediction.probabilities is not None
            self.task = "classification" if proba or not numeric else "regression"
        if self.live.add_prediction(prediction):
            self._sample_live(to_datetime(at))

    def _sample_live(self, moment: datetime) -> None:
        """Every tenth of a window of joins, one point of the live metric's history."""
        step = max(1, self.live_window // 10)
        if self.live.joined % step:
            return
        value = self.live_metrics().get(self.metric)
        if value is not None:
            self.live_history.append((moment, value))

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

    def live_metrics(self) -> dict[str, float]:
        """The served predictions' metrics over the last ``live_window`` labeled ones."""
        return self.live.metrics(self.task)

    def elapsed(self, moment: datetime) -> float:
        """Seconds from the start of the story to ``moment``."""
        if self.started_at is None:
            return 0.0
        return (moment - self.started_at).total_seconds()


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


def _ref(candidate: ModelCandidate) -> str:
    return f"{candidate.model_name} v{candidate.model_version}"
