"""Who serves, as a fold over ``models.promotions``: the history is the source of truth.

Replaying the topic from its beginning through :meth:`PromotionHistory.apply`
rebuilds, per use case, the champion, the challenger of a running canary or
shadow trial, the stack of earlier champions (what ``driftline rollback``
goes back to) and the candidates already decided (so a redelivered candidate
is not gated twice). It depends on ``schemas`` only, so every reader folds the
same history the same way: the promoter, inference (which serves the champion
and the trial), the drift detector (whose reference is the champion's
training data) and the command line (``driftline models`` and the live view).

>>> history = PromotionHistory()
>>> def event(action, version, **extra):
...     return Promotion(usecase="credit", action=action, model_name="credit",
...                      model_version=version, reason="test", **extra)
>>> _ = history.apply(event("promote", "1"))
>>> _ = history.apply(event("promote", "2", previous_version="1"))
>>> _ = history.apply(event("canary", "3", traffic_share=0.2))
>>> state = history.get("credit")
>>> state.champion.version, state.challenger.model.version, state.challenger.mode
('2', '3', 'canary')
>>> _ = history.apply(event("rollback", "2", previous_version="3"))
>>> state.challenger is None, state.champion.version
(True, '2')
>>> _ = history.apply(event("rollback", "1", previous_version="2"))
>>> state.champion.version, state.rollback_target() is None
('1', True)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from schemas.events import Promotion

KEEP_EVENTS = 20


@dataclass(frozen=True)
class ModelRef:
    """One model version, and what a consumer needs to load and verify it.

    The score is what the model was judged by, not part of which model it is:
    two references that differ only in it are equal.
    """

    name: str
    version: str
    artifact_uri: str | None = None
    artifact_sha256: str | None = None
    # the candidate's gate score when it was promoted
    score: float | None = field(default=None, compare=False)

    @classmethod
    def of(cls, event: Promotion) -> ModelRef:
        return cls(
            event.model_name,
            event.model_version,
            event.artifact_uri,
            event.artifact_sha256,
            event.scores.get("candidate"),
        )

    def same_model(self, other: ModelRef | None) -> bool:
        """Identity is (name, version)."""
        return other is not None and (self.name, self.version) == (other.name, other.version)

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


@dataclass(frozen=True)
class Trial:
    """A challenger on live traffic: a canary (``traffic_share`` answered) or a shadow."""

    mode: Literal["canary", "shadow"]
    model: ModelRef
    traffic_share: float
    started_at: datetime
    event_id: str


@dataclass(frozen=True)
class Rollback:
    """What a manual rollback does: ``target`` serves again, ``dropped`` stops serving."""

    target: ModelRef
    dropped: ModelRef
    reason: str

    def event(self, usecase: str) -> Promotion:
        """The ``rollback`` event on ``models.promotions``."""
        return Promotion(
            usecase=usecase,
            action="rollback",
            model_name=self.target.name,
            model_version=self.target.version,
            previous_version=self.dropped.version,
            artifact_uri=self.target.artifact_uri,
            artifact_sha256=self.target.artifact_sha256,
            reason=self.reason,
        )


@dataclass
class UseCaseHistory:
    """The serving state of one use case, as the promotion history says."""

    usecase: str
    champion: ModelRef | None = None
    challenger: Trial | None = None
    earlier: list[ModelRef] = field(default_factory=list)  # earlier champions, latest last
    recent: deque[Promotion] = field(default_factory=lambda: deque(maxlen=KEEP_EVENTS))
    decided: set[str] = field(default_factory=set)  # candidate event ids with a decision

    def rollback_target(self) -> ModelRef | None:
        """The champion before the current one (where ``driftline rollback`` goes)."""
        return self.earlier[-1] if self.earlier else None

    def manual_rollback(self, via: str) -> Rollback | None:
        """A rollback asked for by ``via`` (the CLI verb, the console); None: nothing to do.

        A running trial ends (the champion stays); with none, the champion
        before the current one comes back.
        """
        target, current = self.rollback_target(), self.champion
        if target is None and self.challenger is not None and current is not None:
            reason = f"manual rollback ({via}): {self.challenger.mode} ended"
            return Rollback(current, self.challenger.model, reason)
        if target is not None and current is not None:
            return Rollback(target, current, f"manual rollback ({via}) from {current.label}")
        return None

    def copy(self) -> UseCaseHistory:
        """A state that later events change without changing this one."""
        recent = deque(self.recent, maxlen=self.recent.maxlen)
        return replace(self, earlier=list(self.earlier), recent=recent, decided=set(self.decided))

    def apply(self, event: Promotion) -> None:
        """Fold one promotion event into the state (the semantics of each action)."""
        self.recent.append(event)
        if event.candidate_event_id:
            self.decided.add(event.candidate_event_id)
        ref = ModelRef.of(event)
        if event.action == "promote":
            if self.champion is not None and not ref.same_model(self.champion):
                self.earlier.append(self.champion)
            self.champion = ref
            self.challenger = None
        elif event.action in ("canary", "shadow"):
            mode: Literal["canary", "shadow"] = "canary" if event.action == "canary" else "shadow"
            share = event.traffic_share if event.traffic_share is not None else 0.0
            self.challenger = Trial(mode, ref, share, event.occurred_at, event.event_id)
        elif event.action == "rollback":
            self.challenger = None
            if ref.same_model(self.champion):
                return  # a trial rolled back: the champion stays
            # Back to an earlier champion: it and everything after it leave the stack,
            # so a second rollback goes further back instead of returning.
            for index in range(len(self.earlier) - 1, -1, -1):
                if ref.same_model(self.earlier[index]):
                    if ref.score is None:
                        ref = ModelRef(ref.name, ref.version, ref.artifact_uri,
                                       ref.artifact_sha256, self.earlier[index].score)  # fmt: skip
                    del self.earlier[index:]
                    break
            self.champion = ref


class PromotionHistory:
    """Every use case's :class:`UseCaseHistory`; events are applied once each (by ``event_id``)."""

    def __init__(self) -> None:
        self.usecases: dict[str, UseCaseHistory] = {}
        self._seen: set[str] = set()

    def get(self, usecase: str) -> UseCaseHistory:
        if usecase not in self.usecases:
            self.usecases[usecase] = UseCaseHistory(usecase)
        return self.usecases[usecase]

    def apply(self, event: Promotion) -> bool:
        """Apply ``event``; False when it was applied already (a redelivered or re-read event)."""
        if event.event_id in self._seen:
            return False
        self._seen.add(event.event_id)
        self.get(event.usecase).apply(event)
        return True

    def after(self, event: Promotion) -> UseCaseHistory | None:
        """The state ``event`` would leave its use case in, this history unchanged.

        None when the event was applied already. For a reader that may refuse an
        event (inference refuses a model it cannot load): it looks first, then
        :meth:`keep` makes the state its own, or it drops it.
        """
        if event.event_id in self._seen:
            return None
        state = self.get(event.usecase).copy()
        state.apply(event)
        return state

    def keep(self, event: Promotion, state: UseCaseHistory) -> None:
        """Make ``state``, which :meth:`after` gave for ``event``, its use case's state."""
        self._seen.add(event.event_id)
        self.usecases[event.usecase] = state

    def apply_all(self, events: Iterable[Promotion]) -> PromotionHistory:
        for event in events:
            self.apply(event)
        return self
