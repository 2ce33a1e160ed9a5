"""The promoter's state and decisions: gate candidates, run live trials, request retraining.

Three consumers feed one :class:`Registry`:

- the promotion history (``models.promotions``, replayed from the beginning
  at start, then followed): the registry's state is this fold and nothing
  else. Each decision the registry publishes is read back before the next
  message is handled, so a decision and one made from the command line are
  applied in the topic's order. MLflow aliases are mirrored from it, and
  restored from when the log has no history (a new embedded-broker log).
- ``models.candidates`` and ``drift.alerts``, in the service's consumer group
  and committed after the side effects (at-least-once; a redelivered
  candidate is found decided in the history and skipped, a redelivered alert
  gives the same request id).
- ``<uc>.predictions`` and ``<uc>.labels``, uncommitted: a live trial is
  rebuilt after a restart by reading them again from the beginning.

``training.requests`` is read once at start: the requests published before
restore the retrain policy, so an alert redelivered after a crash, and the
cooldown, are judged as if the process had not stopped. The consumers and
the loop are in :mod:`services.registry.service`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from schemas import topics
from schemas.backtests import Backtest
from schemas.events import DriftAlert, ModelCandidate, Prediction, Promotion
from schemas.inputs import Label
from schemas.usecase import UseCase
from services.common.errors import InvalidInput
from services.common.promotions.history import ModelRef, PromotionHistory
from services.common.promotions.log import PromotionLog
from services.common.serde import decode, encode
from services.registry import telemetry
from services.registry.canary import LiveTrial
from services.registry.errors import ModelUnavailable, UnknownUseCase
from services.registry.evaluation import Evaluator, GateScores
from services.registry.gate import Verdict, gate_candidate, judge_trial
from services.registry.retrain import REQUESTED_BY, RetrainPolicy, training_request
from services.registry.settings import RegistrySettings

logger = logging.getLogger(__name__)


def derived_id(*parts: str) -> str:
    """A deterministic event id, so a decision republished after a crash is the same event.

    >>> derived_id("c1", "gate") == derived_id("c1", "gate") != derived_id("c2", "gate")
    True
    """
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:32]


class Registry:
    """The registry's state (the history, live trials, the retrain policy) and its decisions."""

    def __init__(
        self,
        settings: RegistrySettings,
        served: Mapping[str, UseCase],
        evaluator: Evaluator,
        producer: AIOKafkaProducer,
        *,
        known: Collection[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.served = dict(served)
        # None: a use case not served here is another instance's; else unknown ones are bad input
        self.known = None if known is None else set(known) | set(served)
        self.evaluator = evaluator
        self.producer = producer
        self.history = PromotionHistory()
        self.trials: dict[str, LiveTrial] = {}
        self.retrain = RetrainPolicy(clock=clock)
        self.log: PromotionLog | None = None
        self.replaying = True
        self._mlflow: Any = None

    # ---- the history ----------------------------------------------------------------

    async def on_promotion(self, event: Promotion) -> None:
        """Fold one event of the history; once live, mirror it in MLflow and the trials."""
        if not self.history.apply(event):
            return
        if not self.replaying and event.usecase in self.served:
            await self._follow(event.usecase)

    async def finish_replay(self, epoch: str | None = None) -> None:
        """Live from here on; a use case the log holds no history of gets MLflow's lineup back."""
        self.replaying = False
        for usecase in self.served:
            await self._follow(usecase)
        if epoch is not None:
            await self.restore_lineups(epoch)
        logger.info(
            "history replayed events=%d champions=%s",
            self.log.read if self.log else 0,
            {uc: s.champion.label if s.champion else None
             for uc, s in self.history.usecases.items() if uc in self.served},
        )  # fmt: skip

    async def _follow(self, usecase: str) -> None:
        state = self.history.get(usecase)
        if state.recent:  # with no history there is no alias of ours to set or clear
            await asyncio.to_thread(self._mirror, usecase)
        trial = self.trials.get(usecase)
        if state.challenger is None or state.champion is None:
            if trial is not None:
                del self.trials[usecase]
            return
        if trial is None or trial.trial.event_id != state.challenger.event_id:
            self.trials[usecase] = LiveTrial(
                self.served[usecase], state.champion, state.challenger, self.settings.max_pending
            )
            logger.info("live trial usecase=%s mode=%s challenger=%s champion=%s",
                        usecase, state.challenger.mode, state.challenger.model.label,
                        state.champion.label)  # fmt: skip

    async def restore_lineups(self, epoch: str) -> None:
        """Publish MLflow's champion and challenger of each use case the log knows nothing of."""
        from services.registry.aliases import restored_lineup

        for usecase in self.served:
            if self.history.get(usecase).recent:
                continue  # the log has the history: it decides
            client = await asyncio.to_thread(self._client)
            for event in await asyncio.to_thread(restored_lineup, client, usecase, epoch):
                await self.publish(event)

    def _client(self) -> Any:
        from services.common import tracking

        if self._mlflow is None:
            self._mlflow = tracking.client(self.settings.home, self.settings.mlflow_uri)
        return self._mlflow

    def _mirror(self, usecase: str) -> None:
        from services.registry.aliases import mirror_aliases

        try:
            mirror_aliases(self._client(), self.history.get(usecase))
        except Exception:  # the history stands; the mirror catches up at the next event
            logger.exception("could not mirror MLflow aliases usecase=%s", usecase)

    async def publish(self, event: Promotion) -> None:
        """Publish a decision and read the history up to it, so the state includes it."""
        metadata = await self.producer.send_and_wait(
            topics.MODELS_PROMOTIONS, encode(event), key=topics.PROMOTIONS.key_of(event)
        )
        telemetry.DECISIONS.labels(event.usecase, event.action).inc()
        logger.info("decision usecase=%s action=%s model=%s v%s reason=%r",
                    event.usecase, event.action, event.model_name, event.model_version,
                    event.reason)  # fmt: skip
        if self.log is not None:
            partition = TopicPartition(metadata.topic, metadata.partition)
            await self.log.catch_up({partition: metadata.offset + 1})

    # ---- candidates and drift alerts (the committed consumer) ----------------------

    async def process(self, record: ConsumerRecord[Any, Any]) -> None:
        event = decode(record.topic, record.value)
        if isinstance(event, ModelCandidate):
            await self.on_candidate(event)
        elif isinstance(event, DriftAlert):
            await self.on_alert(event)

    async def flush(self) -> None:
        """Nothing buffered: every event is acknowledged by the broker when published."""

    def _spec(self, usecase: str, event_id: str) -> UseCase | None:
        spec = self.served.get(usecase)
        if spec is None and self.known is not None and usecase not in self.known:
            raise UnknownUseCase(f"unknown use case {usecase!r}", event_id=event_id)
        return spec

    async def on_candidate(self, candidate: ModelCandidate) -> None:
        spec = self._spec(candidate.usecase, candidate.event_id)
        if spec is None:
            return  # another instance serves it
        usecase = spec.name
        state = self.history.get(usecase)
        outcome = "gated"
        accepts_online = spec.promotion.accept_online_candidates
        if candidate.trainer == "online" and (
            accepts_online is False or (accepts_online == "until_champion" and state.champion)
        ):
            outcome = "ignored_online"
        elif candidate.event_id in state.decided:
            outcome = "already_decided"
        elif state.champion is not None and (state.champion.name, state.champion.version) == (
            candidate.model_name, candidate.model_version,
        ):  # fmt: skip
            outcome = "is_champion"
        telemetry.CANDIDATES.labels(usecase, outcome).inc()
        if outcome != "gated":
            logger.info("candidate usecase=%s model=%s v%s skipped: %s", usecase,
                        candidate.model_name, candidate.model_version, outcome)  # fmt: skip
            return
        champion = state.champion
        try:
            scores = await asyncio.to_thread(self.evaluator.evaluate, spec, candidate, champion)
            verdict = self._verdict(spec, scores, has_champion=champion is not None)
        except ModelUnavailable as exc:
            scores = GateScores(None, None, 0, "")
            verdict = Verdict("reject", f"cannot evaluate: {exc}")
        backtested = None
        if spec.promotion.backtest and champion and verdict.action in ("promote", "canary",
                                                                       "shadow"):  # fmt: skip
            verdict, backtested = await self._backtest(spec, candidate, champion, verdict)
        share = None
        if verdict.action == "canary":
            share = spec.promotion.canary_share
        elif verdict.action == "shadow":
            share = 0.0
        numbers = {"candidate": scores.candidate, "champion": scores.champion,
                   "eval_rows": float(scores.rows)}  # fmt: skip
        if backtested is not None:
            numbers.update(backtest_candidate=backtested.model_score,
                           backtest_champion=backtested.against_score,
                           backtest_rows=float(backtested.rows_scored))  # fmt: skip
        await self.publish(
            Promotion(
                event_id=derived_id(candidate.event_id, "gate"),
                usecase=usecase,
                action=verdict.action,
                model_name=candidate.model_name,
                model_version=candidate.model_version,
                previous_version=champion.version if champion is not None else None,
                artifact_uri=candidate.artifact_uri,
                artifact_sha256=candidate.artifact_sha256,
                traffic_share=share,
                scores={k: v for k, v in numbers.items() if v is not None},
                reason=verdict.reason,
                candidate_event_id=candidate.event_id,
                slice_scores=scores.slices,
            )
        )

    async def _backtest(
        self, spec: UseCase, candidate: ModelCandidate, champion: ModelRef, verdict: Verdict
    ) -> tuple[Verdict, Backtest | None]:
        """``promotion.backtest``: replay the store's last hours through both, publish the
        ``models.backtests`` event, and refuse a loser when ``must_not_lose``."""
        from services.registry import backtest

        event, error = None, ""
        try:
            event = await asyncio.to_thread(
                backtest.backtest_candidate, self.evaluator, spec, candidate, champion,
                derived_id(candidate.event_id, "backtest"),
            )  # fmt: skip
        except (backtest.BacktestImpossible, ModelUnavailable) as exc:
            error = str(exc)
        if event is not None:
            await self.producer.send_and_wait(
                topics.MODELS_BACKTESTS, encode(event), key=topics.BACKTESTS.key_of(event)
            )
        return backtest.backtest_verdict(spec, verdict, event, error), event

    @staticmethod
    def _verdict(spec: UseCase, scores: GateScores, *, has_champion: bool) -> Verdict:
        metric = spec.primary_metric
        if scores.candidate is None:
            return Verdict("reject", f"no {metric} for the candidate {scores.basis}")
        if has_champion and scores.champion is None:
            return Verdict(
                "reject",
                f"cannot compare with the champion: it has no {metric} {scores.basis}",
            )
        return gate_candidate(
            spec, scores.candidate, scores.champion, basis=scores.basis, slices=scores.slices
        )

    def recall_request(self, raw: bytes | None) -> bool:
        """Fold one earlier message of ``training.requests`` into the retrain policy."""
        try:
            request = decode(topics.REQUESTS, raw)
        except InvalidInput:
            return False
        if request.requested_by != REQUESTED_BY or request.usecase not in self.served:
            return False
        age = (datetime.now(UTC) - request.occurred_at).total_seconds()
        self.retrain.recall(request, age)
        return True

    async def on_alert(self, alert: DriftAlert) -> None:
        spec = self._spec(alert.usecase, alert.event_id)
        if spec is None:
            return
        outcome = self.retrain.consider(
            alert, cooldown=spec.promotion.retrain_cooldown_seconds, kinds=spec.drift.retrain_on
        )
        telemetry.DRIFT_ALERTS.labels(spec.name, outcome).inc()
        if outcome != "request":
            logger.info("drift alert usecase=%s alert_id=%s kind=%s: no request (%s)",
                        spec.name, alert.alert_id, alert.kind, outcome)  # fmt: skip
            return
        request = training_request(alert)
        await self.producer.send_and_wait(
            topics.TRAINING_REQUESTS, encode(request), key=topics.REQUESTS.key_of(request)
        )
        logger.info("training request usecase=%s request_id=%s for alert_id=%s kind=%s",
                    spec.name, request.request_id, alert.alert_id, alert.kind)  # fmt: skip

    # ---- live trials (predictions joined with labels) -------------------------------

    def on_live(self, record: ConsumerRecord[Any, Any]) -> None:
        usecase = topics.usecase_of(record.topic)
        trial = self.trials.get(usecase or "")
        if trial is None:
            return
        try:
            event = decode(record.topic, record.value)
        except InvalidInput:
            # Labels are users' input, checked (and dead-lettered) by ingestion's side.
            logger.debug("skipping a malformed message topic=%s offset=%s",
                         record.topic, record.offset)  # fmt: skip
            return
        if isinstance(event, Prediction):
            trial.add_prediction(event)
        elif isinstance(event, Label):
            trial.add_label(event.event_id, event.label)

    async def judge_trials(self) -> None:
        """End every live trial that has seen enough: rollback or promotion."""
        for usecase, trial in list(self.trials.items()):
            counts = trial.counts()
            for side, count in counts.items():
                telemetry.TRIAL_LABELED.labels(usecase, side).set(count)
            if not trial.ready():
                continue
            scored = trial.scores()
            assert scored is not None
            challenger, champion = scored
            rows = f"{counts['challenger']} vs {counts['champion']} labeled predictions"
            verdict = judge_trial(trial.spec, challenger, champion, rows=rows)
            winner = trial.trial.model if verdict.action == "promote" else trial.champion
            loser = trial.champion if verdict.action == "promote" else trial.trial.model
            await self.publish(
                Promotion(
                    event_id=derived_id(trial.trial.event_id, "trial"),
                    usecase=usecase,
                    action=verdict.action,
                    model_name=winner.name,
                    model_version=winner.version,
                    previous_version=loser.version,
                    artifact_uri=winner.artifact_uri,
                    artifact_sha256=winner.artifact_sha256,
                    scores={
                        "candidate": challenger if verdict.action == "promote" else champion,
                        "challenger": challenger,
                        "champion": champion,
                        "challenger_rows": float(counts["challenger"]),
                        "champion_rows": float(counts["champion"]),
                    },
                    reason=f"{trial.trial.mode} of {trial.trial.model.label}: {verdict.reason}",
                )
            )
