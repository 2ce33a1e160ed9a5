"""Label requests: ask for the ground truth of the served predictions the model is least sure of.

A use case with ``active_learning: {budget_per_hour: B, strategy: S}`` has its
served predictions (``<uc>.predictions``, champion and challenger; a shadow's
answer serves no one) scored by ``S``:

``margin``
    ``1 - (p_top1 - p_top2)``: 1 when the two likeliest classes tie, 0 when
    the model is certain.
``entropy``
    the entropy of the class probabilities over ``log(K)`` for ``K`` declared
    classes, so it too lies between 0 (certain) and 1 (uniform).
``random``
    a uniform draw derived from the event id: the baseline the others are
    measured against (``python -m bench.active_learning``).

(``spread`` is refused by the spec: no regression model driftline serves gives one.)

How the most uncertain are chosen within the budget: time is cut into
intervals of ``interval_seconds`` (60 unless set) on a fixed grid. At the end
of each, the ``k`` most uncertain predictions of the interval are requested.
``k`` comes from a credit that grows by the interval's share of the budget,
``B * interval / 3600`` per interval (3.33 for 200 an hour and a minute), and
holds at most one share plus one, so the fractions carry over and quiet
intervals do not save up a burst. Above that, a hard limit: no sliding hour
holds more than ``B`` requests. Each request is stamped with its interval's
end, the time it was chosen, so the requests on the topic keep the limit by
their own ``occurred_at``. Only the interval's ``k`` best candidates are kept
while it is open: memory does not grow with traffic.

Time is the caller's clock (the service passes Kafka record timestamps). The
whole state, :class:`LabelBudget`, lives in the online trainer's checkpoint,
requests included until they are published, so a restart neither forgets what
the last hour spent nor asks again; a request's ``event_id`` is derived from
the use case and the event it asks about, so one published twice (a crash
between publishing and the next checkpoint) is the same request.

>>> round(margin([0.55, 0.45]), 3), round(margin([0.9, 0.1]), 3), margin([])
(0.9, 0.2, 1.0)
>>> round(entropy([0.5, 0.5], classes=2), 3), round(entropy([1.0, 0.0], classes=2), 3)
(1.0, 0.0)
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from schemas.events import LabelRequest, Prediction
from schemas.usecase import ActiveLearningSpec, UseCase

logger = logging.getLogger(__name__)

HOUR = 3600.0
SERVED = ("champion", "challenger")


def margin(probabilities: Iterable[float]) -> float:
    """``1 - (p_top1 - p_top2)``; a model with no answer yet is as unsure as can be (1)."""
    top = heapq.nlargest(2, probabilities)
    if not top:
        return 1.0
    second = top[1] if len(top) > 1 else 0.0
    return min(1.0, max(0.0, 1.0 - (top[0] - second)))


def entropy(probabilities: Iterable[float], classes: int) -> float:
    """The entropy of the probabilities over ``log(classes)``: 0 certain, 1 uniform."""
    found = [p for p in probabilities if p > 0]
    if not found:
        return 1.0
    total = sum(found)
    value = -sum((p / total) * math.log(p / total) for p in found)
    return min(1.0, max(0.0, value / math.log(max(classes, 2))))


def draw(usecase: str, source_event_id: str) -> float:
    """A uniform number in [0, 1) fixed by the event: the ``random`` strategy's score.

    >>> draw("credit", "e1") == draw("credit", "e1") != draw("credit", "e2")
    True
    """
    digest = hashlib.sha256(f"{usecase}:draw:{source_event_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def request_id(usecase: str, source_event_id: str) -> str:
    """The id of the label request for one event: the same after any restart."""
    key = f"{usecase}:label_request:{source_event_id}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def uncertainty(spec: UseCase, policy: ActiveLearningSpec, prediction: Prediction) -> float | None:
    """How unsure the model was of ``prediction`` by the policy's strategy (None: cannot tell)."""
    if policy.strategy == "random":
        return draw(spec.name, prediction.source_event_id or prediction.prediction_id)
    if prediction.probabilities is None:
        return None  # a classifier that gave no probabilities
    values = list(prediction.probabilities.values())
    if policy.strategy == "margin":
        return margin(values)
    if policy.strategy == "entropy":
        return entropy(values, classes=len(spec.label.classes or values))
    raise ValueError(f"strategy {policy.strategy!r} scores no classifier")  # the spec refuses it


@dataclass(frozen=True, order=True)
class Candidate:
    """A served prediction waiting for its interval's end; ordered by uncertainty, then id."""

    uncertainty: float
    source_event_id: str
    prediction: Prediction = field(compare=False)


@dataclass
class LabelBudget:
    """What the selection remembers: in the online trainer's checkpoint."""

    # (chosen at, source_event_id) of every request of the last hour, oldest first
    requested: deque[tuple[float, str]] = field(default_factory=deque)
    credit: float | None = None  # None: a fresh budget, full
    credited_at: float | None = None
    interval_end: float | None = None
    candidates: list[Candidate] = field(default_factory=list)  # a min-heap, the best kept
    offered: int = 0  # served predictions offered in the open interval
    outbox: list[LabelRequest] = field(default_factory=list)  # chosen, not yet published
    unscored: int = 0  # predictions without the probabilities the strategy needs


class LabelSelector:
    """Choose, interval by interval, the most uncertain served predictions within the budget."""

    def __init__(self, spec: UseCase, budget: LabelBudget) -> None:
        if spec.active_learning is None:
            raise ValueError(f"use case {spec.name!r} declares no active_learning")
        self.spec = spec
        self.policy = spec.active_learning
        self.budget = budget

    @property
    def share(self) -> float:
        """Requests an interval earns: its share of the hourly budget."""
        return self.policy.budget_per_hour * self.policy.interval_seconds / HOUR

    @property
    def most_per_interval(self) -> int:
        return min(self.policy.budget_per_hour, math.floor(self.share + 1.0))

    def offer(self, prediction: Prediction, now: float) -> None:
        """A prediction was served at ``now``: close the interval if it has ended, then weigh it."""
        self.close_due(now)
        source = prediction.source_event_id
        if prediction.variant not in SERVED or not source:
            return  # a shadow's answer, or one no label can name
        budget = self.budget
        if any(asked == source for _, asked in budget.requested) or any(
            c.source_event_id == source for c in budget.candidates
        ):
            return  # asked already, or a redelivered prediction
        score = uncertainty(self.spec, self.policy, prediction)
        if score is None:
            budget.unscored += 1
            return
        if budget.interval_end is None:
            interval = self.policy.interval_seconds
            budget.interval_end = (math.floor(now / interval) + 1) * interval
        budget.offered += 1
        candidate = Candidate(score, source, prediction)
        if len(budget.candidates) < self.most_per_interval:
            heapq.heappush(budget.candidates, candidate)
        elif candidate > budget.candidates[0]:
            heapq.heapreplace(budget.candidates, candidate)

    def close_due(self, now: float) -> int:
        """Close the open interval if ``now`` is past its end; return how many it requested."""
        end = self.budget.interval_end
        if end is None or now < end:
            return 0
        return self._close(end)

    def _close(self, end: float) -> int:
        budget, policy = self.budget, self.policy
        cap = self.share + 1.0
        if budget.credit is None or budget.credited_at is None:
            budget.credit = cap
        else:
            earned = self.share * (end - budget.credited_at) / policy.interval_seconds
            budget.credit = min(cap, budget.credit + earned)
        budget.credited_at = end
        while budget.requested and budget.requested[0][0] <= end - HOUR:
            budget.requested.popleft()
        room = policy.budget_per_hour - len(budget.requested)
        # 1e-9: the credit is a sum of fractions, and 3 x (1/3) must make one request
        grant = min(math.floor(budget.credit + 1e-9), room, len(budget.candidates))
        chosen = sorted(budget.candidates, reverse=True)[: max(grant, 0)]
        for rank, candidate in enumerate(chosen, start=1):
            budget.requested.append((end, candidate.source_event_id))
            budget.outbox.append(self._request(candidate, rank, end))
        budget.credit -= len(chosen)
        if chosen:
            logger.info(
                "label requests usecase=%s strategy=%s chosen=%d of=%d hour=%d/%d",
                self.spec.name, policy.strategy, len(chosen), budget.offered,
                len(budget.requested), policy.budget_per_hour,
            )  # fmt: skip
        budget.candidates = []
        budget.offered = 0
        budget.interval_end = None
        return len(chosen)

    def _request(self, candidate: Candidate, rank: int, end: float) -> LabelRequest:
        prediction, policy, budget = candidate.prediction, self.policy, self.budget
        chosen_at = datetime.fromtimestamp(end, UTC)
        reason = (
            f"{policy.strategy} {candidate.uncertainty:.3f}: the {_ordinal(rank)}most uncertain "
            f"of {budget.offered} served predictions in the {policy.interval_seconds:g} s to "
            f"{chosen_at:%H:%M:%S}; {len(budget.requested)} of {policy.budget_per_hour} "
            "requests in the last hour"
        )
        if policy.strategy == "random":
            reason = (
                f"random draw {candidate.uncertainty:.3f}: chosen by chance, {rank} "
                f"of {budget.offered} served predictions in the {policy.interval_seconds:g} s "
                f"to {chosen_at:%H:%M:%S} (the baseline)"
            )
        return LabelRequest(
            event_id=request_id(self.spec.name, candidate.source_event_id),
            occurred_at=chosen_at,
            usecase=self.spec.name,
            source_event_id=candidate.source_event_id,
            entity_id=prediction.entity_id,
            prediction_id=prediction.prediction_id,
            model_name=prediction.model_name,
            model_version=prediction.model_version,
            variant="champion" if prediction.variant == "champion" else "challenger",
            prediction=prediction.prediction,
            probabilities=prediction.probabilities,
            predicted_at=prediction.occurred_at,
            strategy=policy.strategy,
            uncertainty=candidate.uncertainty,
            rank=rank,
            candidates=max(budget.offered, 1),
            budget_per_hour=policy.budget_per_hour,
            reason=reason,
        )


def _ordinal(rank: int) -> str:
    """What comes before "most uncertain": nothing for the first, then ``2nd ``, ``3rd ``, ...

    >>> [_ordinal(rank) for rank in (1, 2, 3, 4, 11, 22)]
    ['', '2nd ', '3rd ', '4th ', '11th ', '22nd ']
    """
    if rank == 1:
        return ""
    last = rank % 10 if rank % 100 not in (11, 12, 13) else 0
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(last, "th")
    return f"{rank}{suffix} "
