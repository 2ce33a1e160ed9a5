"""The inference runtime: broker clients, feature store, models, and the scoring path.

:class:`InferenceService` is what the HTTP layer (:mod:`.api`) calls. It owns
one producer (prediction log, feedback, refusal alerts), the Feast store, the
loaded models (:mod:`.loaded`) and the :class:`~.following.PromotionFollower` that keeps the
models following ``models.promotions``. ``start()`` sends again what
earlier runs' prediction journals did not ship and replays the promotions
before the service says it is ready; ``stop()`` flushes the prediction log.

A refused promotion (sha256 mismatch or unloadable artifact) publishes two
events: a ``DriftAlert`` (``kind="quality"``, ``severity="critical"``,
``method="artifact_sha256"``) on ``drift.alerts`` for the people watching
the system, and a ``DeadLetter`` on ``<uc>.deadletter`` holding the refused
promotion, so it can be inspected and replayed once the artifact is fixed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.events import DeadLetter, DriftAlert, Promotion, Window
from schemas.inputs import Label
from schemas.usecase import UseCase
from services.common.bus import FILLED_BATCH_BYTES, ensure_topics, start_producer, wait_for_broker
from services.common.serde import encode
from services.inference import metrics
from services.inference.answers import describe_model, json_key, plain
from services.inference.errors import InvalidFeatures, ModelRefused, UnknownUseCase
from services.inference.explain import explain as explain_rows
from services.inference.features import (
    FeatureResolver,
    Item,
    OnlineReader,
    Resolved,
)
from services.inference.following import PromotionFollower, ensure_service_topics
from services.inference.ids import new_id
from services.inference.loaded import (
    LoadedModel,
    LoadedModels,
    MlflowLoader,
    Serving,
    serve_single_threaded,
)
from services.inference.predlog import PredictionLog
from services.inference.routing import route
from services.inference.settings import InferenceSettings
from services.inference.stats import StatisticsFollower

logger = logging.getLogger(__name__)

SERVICE = "inference"


def check_feedback(spec: UseCase, labels: Sequence[Label]) -> None:
    """Refuse a label that denotes no class by the spec's rule (for regression: no number)."""
    for index, label in enumerate(labels):
        if spec.class_of(label.label) is None:
            expected = (
                f"one of the classes {spec.label.classes}"
                if spec.task == "classification"
                else "a finite number"
            )
            raise InvalidFeatures(
                f"label {label.label!r} is not {expected}", field="label", index=index
            )


class InferenceService:
    """Scores requests with the current lineup and keeps that lineup current."""

    def __init__(
        self,
        settings: InferenceSettings,
        specs: Mapping[str, UseCase] | None = None,
        *,
        store: Any = None,
    ) -> None:
        self.settings = settings
        self.specs = dict(specs) if specs is not None else settings.load_usecases()
        self.store = store
        self.models = LoadedModels(
            self.specs,
            MlflowLoader(
                settings.home,
                settings.service_home(SERVICE) / "models",
                settings.mlflow_uri,
            ),
            on_refused=self._on_refused,
            on_swap=self._on_swap,
        )
        self.resolvers: dict[str, FeatureResolver] = {}
        self.producer: AIOKafkaProducer | None = None
        self.prediction_log: PredictionLog | None = None
        self.statistics: StatisticsFollower | None = None
        self.follower = PromotionFollower(settings, self.models, on_stopped=self._not_ready)
        self.ready = False
        self._exported: list[tuple[str, str, str, str]] = []
        self._single_threaded: set[int] = set()  # threads whose torch runs one intra-op thread

    # ---- life cycle --------------------------------------------------------------

    async def start(self) -> None:
        """Connect, open the feature store, replay promotions, start the background tasks."""
        settings = self.settings
        await wait_for_broker(settings.bootstrap, settings.broker_wait_seconds)
        await ensure_service_topics(settings, self.specs)
        if self.store is None:
            self.store = await asyncio.to_thread(self._open_store)
        reader = OnlineReader(self.store, settings.feature_read)
        salt = settings.pseudonym_salt.get_secret_value()
        self.resolvers = {name: FeatureResolver(s, reader, salt) for name, s in self.specs.items()}
        self.statistics = StatisticsFollower(settings.bootstrap, self.resolvers)
        await self.statistics.start()  # requests impute with ingestion's latest statistics
        # the prediction log fills its own record batches (and feedback sends a few labels)
        self.producer = await start_producer(settings.bootstrap, max_batch_size=FILLED_BATCH_BYTES)
        self.prediction_log = PredictionLog(
            self.producer,
            settings.service_home(SERVICE) / "predictions",
            batch_size=settings.prediction_batch_size,
            linger_seconds=settings.prediction_linger_ms / 1000,
            capacity=settings.prediction_queue_size,
            segment_bytes=settings.prediction_segment_bytes,
            stop_seconds=settings.prediction_stop_seconds,
            topics_ready=lambda names: ensure_topics(
                settings.bootstrap, names, settings.partitions, retention_ms=settings.retention_ms
            ),
        )
        await self.prediction_log.start()  # earlier runs' unshipped answers first
        await self.follower.start()  # the promotion history replayed: who serves is known
        self.ready = True
        logger.info("inference ready usecases=%s", sorted(self.specs))

    def _open_store(self) -> Any:
        from services.common.featurestore import open_store

        return open_store(self.settings, list(self.specs.values()))

    def _not_ready(self) -> None:
        self.ready = False

    async def stop(self) -> None:
        """Stop listening, flush the prediction log, close the clients."""
        self.ready = False
        if self.statistics is not None:
            await self.statistics.stop()
        await self.follower.stop()
        if self.prediction_log is not None:
            await self.prediction_log.stop()
        if self.producer is not None:
            await self.producer.stop()

    # ---- scoring --------------------------------------------------------------------

    async def predict(
        self, usecase: str, items: Sequence[Item], *, explain: bool = False
    ) -> list[dict[str, Any]]:
        """Answer every item with the lineup current when the request arrived.

        With ``explain`` each answer also carries its ``explanation``: per-feature
        contributions to the answering model's score (:mod:`.explain`).
        """
        started = time.perf_counter()
        serving = self.models.champion(usecase)  # one read: the whole request uses it
        spec = self.specs[usecase]
        resolver = self.resolvers[usecase]
        lookups = resolver.lookups(items)  # items read from the store: a blocking read
        if lookups:
            resolved = await asyncio.to_thread(resolver.resolve, items, lookups)
        else:
            resolved = resolver.resolve(items, lookups)
        groups: dict[str, list[int]] = {"champion": [], "challenger": [], "shadow": []}
        scored: dict[str, list[dict[str, Any]]] = {}
        if serving.challenger is None:  # the champion answers all; no shadow to score
            assert serving.champion is not None
            groups["champion"] = list(range(len(resolved)))
            scored["champion"] = self._score(spec, serving.champion, "champion", resolved)
        else:
            for index, row in enumerate(resolved):
                answering, extra = route(serving.lineup.mode, serving.lineup.share, row.entity_id)
                groups[answering].append(index)
                if extra == "shadow":
                    groups["shadow"].append(index)
            for variant, indices in groups.items():
                if indices:
                    loaded = serving.champion if variant == "champion" else serving.challenger
                    assert loaded is not None
                    rows = [resolved[i] for i in indices]
                    scored[variant] = self._score(spec, loaded, variant, rows)
        latency_ms = (time.perf_counter() - started) * 1000
        answers: list[dict[str, Any]] = [{} for _ in resolved]
        versions: set[str] = set()
        logged: list[dict[str, Any]] = []
        for variant, indices in groups.items():
            for index, outcome in zip(indices, scored.get(variant, []), strict=True):
                logged.append(outcome)
                if variant != "shadow":
                    answers[index] = {**outcome, "feature_source": resolved[index].source}
                    versions.add(outcome["model_version"])
        self._log(usecase, logged, latency_ms)
        if explain:
            for variant in ("champion", "challenger"):
                loaded = serving.champion if variant == "champion" else serving.challenger
                if groups[variant] and loaded is not None:
                    features = [resolved[i].features for i in groups[variant]]
                    if explains_inline(loaded.model.flavor, len(features)):
                        found = self._explain(spec, resolver, loaded, features)
                    else:
                        found = await asyncio.to_thread(
                            self._explain, spec, resolver, loaded, features
                        )
                    for index, explanation in zip(groups[variant], found, strict=True):
                        answers[index]["explanation"] = explanation
        seconds = time.perf_counter() - started
        for version in versions:
            metrics.child(metrics.REQUEST_SECONDS, usecase, version).observe(seconds)
        return answers

    def _score(
        self, spec: UseCase, loaded: LoadedModel, variant: str, rows: Sequence[Resolved]
    ) -> list[dict[str, Any]]:
        features = [row.features for row in rows]
        model = loaded.model
        if model.flavor == "torch" and threading.get_ident() not in self._single_threaded:
            serve_single_threaded()  # before this thread's first torch forward
            self._single_threaded.add(threading.get_ident())
        probabilities: list[dict[str, float] | None] = [None] * len(rows)
        if spec.task == "classification":
            both = getattr(model, "predict_with_proba", None)  # one model call for both
            if both is not None:
                predictions, found = both(features)
            else:
                predictions, found = model.predict(features), model.predict_proba(features)
            probabilities = [{json_key(k): float(v) for k, v in p.items()} for p in found]
        else:
            predictions = model.predict(features)
        ref = loaded.ref
        metrics.child(metrics.PREDICTIONS, spec.name, variant, ref.version).inc(len(rows))
        return [
            {
                "prediction_id": new_id(),
                "event_id": row.event_id,
                "entity_id": row.entity_id,
                "model_name": ref.name,
                "model_version": ref.version,
                "variant": variant,
                "prediction": plain(prediction),
                "probabilities": proba,
            }
            for row, prediction, proba in zip(rows, predictions, probabilities, strict=True)
        ]

    @staticmethod
    def _explain(
        spec: UseCase, resolver: FeatureResolver, loaded: LoadedModel, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        model = loaded.model
        reference = resolver.reference_row() if model.flavor == "river" else None
        found = explain_rows(model, rows, positive=spec.positive_class, reference=reference)
        return [explanation.as_dict() for explanation in found]

    def _log(self, usecase: str, outcomes: list[dict[str, Any]], latency_ms: float) -> None:
        if self.prediction_log is None or not outcomes:
            return
        self.prediction_log.submit_many(
            [
                {
                    "usecase": usecase,
                    "prediction_id": outcome["prediction_id"],
                    "source_event_id": outcome["event_id"],
                    "entity_id": outcome["entity_id"],
                    "model_name": outcome["model_name"],
                    "model_version": outcome["model_version"],
                    "variant": outcome["variant"],
                    "prediction": outcome["prediction"],
                    "probabilities": outcome["probabilities"],
                    "latency_ms": latency_ms,
                }
                for outcome in outcomes
            ]
        )

    # ---- feedback -------------------------------------------------------------------

    async def feedback(self, usecase: str, labels: Sequence[Label]) -> int:
        """Publish ground truth to ``<uc>.labels``; return how many were acknowledged."""
        check_feedback(self.spec(usecase), labels)
        assert self.producer is not None
        futures = [
            await self.producer.send(topics.labels(usecase), label.model_dump_json().encode())
            for label in labels
        ]
        await asyncio.gather(*futures)
        return len(futures)

    # ---- state ----------------------------------------------------------------------

    def spec(self, usecase: str) -> UseCase:
        try:
            return self.specs[usecase]
        except KeyError:
            raise UnknownUseCase(usecase, sorted(self.specs)) from None

    def describe(self, usecase: str) -> dict[str, Any]:
        """The lineup of ``usecase`` as ``GET /v1/models/{uc}`` shows it."""
        serving = self.models.serving(usecase)
        return {
            "usecase": usecase,
            "champion": describe_model(serving.champion),
            "challenger": describe_model(serving.challenger),
            "mode": serving.lineup.mode,
            "traffic_share": serving.lineup.share if serving.lineup.mode == "canary" else None,
        }

    def _export_serving(self) -> None:
        for labels in self._exported:
            metrics.SERVING.remove(*labels)
        self._exported = []
        for usecase in self.specs:
            serving: Serving = self.models.serving(usecase)
            roles = (("champion", serving.champion), ("challenger", serving.challenger))
            for role, loaded in roles:
                if loaded is not None:
                    labels = (usecase, role, loaded.ref.name, loaded.ref.version)
                    metrics.SERVING.labels(*labels).set(1)
                    self._exported.append(labels)

    async def _on_refused(self, promotion: Promotion, refusal: ModelRefused) -> None:
        metrics.REFUSALS.labels(promotion.usecase).inc()
        if self.producer is None:
            return
        serving = self.models.serving(promotion.usecase)
        champion = serving.champion.ref.version if serving.champion is not None else None
        alert = DriftAlert(
            usecase=promotion.usecase,
            kind="quality",
            severity="critical",
            method="artifact_sha256",
            window=Window(end=datetime.now(UTC)),
            champion_version=champion,
            details={
                "reason": refusal.reason[:2000],
                "model_name": promotion.model_name,
                "model_version": promotion.model_version,
                "action": promotion.action,
                "expected_sha256": promotion.artifact_sha256 or "",
                "promotion_event_id": promotion.event_id,
            },
        )
        dead = DeadLetter(
            usecase=promotion.usecase,
            service=SERVICE,
            reason=f"promotion refused: {refusal.reason}",
            payload=promotion.model_dump_json(),
            topic=topics.MODELS_PROMOTIONS,
            source_event_id=promotion.event_id,
            error_type=type(refusal.__cause__ or refusal).__name__,
        )
        try:
            await self.producer.send_and_wait(topics.DRIFT_ALERTS, encode(alert))
            await self.producer.send_and_wait(topics.deadletter(promotion.usecase), encode(dead))
        except Exception:
            logger.exception("refusal alert not published usecase=%s", promotion.usecase)

    def _on_swap(self, usecase: str) -> None:
        metrics.SWAPS.labels(usecase).inc()
        self._export_serving()


INLINE_FLAVORS = frozenset(("river", "linear"))  # an explanation of well under a ms an item
INLINE_ITEMS = 8


def explains_inline(flavor: str, items: int) -> bool:
    """Whether an explanation runs on the event loop rather than in a worker thread.

    A river or linear explanation of a few items is shorter than the thread hop:
    a worker thread waits for the GIL behind the busy loop (up to the 5 ms
    switch interval each way), which under load cost more than the explanation
    itself. Longer ones (captum's, shap's, a long list) go to a thread.

    >>> explains_inline("river", 1), explains_inline("river", 64), explains_inline("torch", 1)
    (True, False, False)
    """
    return flavor in INLINE_FLAVORS and items <= INLINE_ITEMS
