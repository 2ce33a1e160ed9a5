"""The HTTP API: FastAPI routes over :class:`~services.inference.service.InferenceService`.

``POST /v1/predict/{uc}`` and ``POST /v1/feedback/{uc}`` take one JSON object
or a list; ``GET /v1/models/{uc}`` shows the lineup; ``/healthz``,
``/readyz`` and ``/metrics`` are served by the same server, OpenAPI at
``/docs``. ``?explain=true`` on a predict adds each answer's ``explanation``
(per-feature contributions to the model's score, :mod:`.explain`).
Statuses: 422 names the field at fault (``detail[].loc``, ``["query",
"explain"]`` for a bad flag), 404 an unknown use case, 503 a use case with
no champion yet, 413 a body over
``DRIFTLINE_MAX_BODY_BYTES``, 401 a missing or wrong ``X-API-Key`` when
``DRIFTLINE_API_KEY`` is set (``/v1/*`` only: health, metrics and the docs
stay open to probes and scrapers).

Bodies are read and validated here with pydantic's JSON parser rather than
FastAPI's body parameters: one pass, and a list's errors are located by
index (``["body", 3, "entity_id"]``) instead of by union member.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import msgspec
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from schemas.inputs import Label
from services.inference import metrics
from services.inference.errors import (
    FeatureStoreUnavailable,
    InvalidFeatures,
    NoChampion,
    UnknownUseCase,
)
from services.inference.features import Item
from services.inference.guard import GuardMiddleware
from services.inference.service import InferenceService

logger = logging.getLogger(__name__)


class PredictRequest(BaseModel):
    """One item to score."""

    model_config = ConfigDict(extra="forbid")

    entity_id: str = Field(min_length=1, max_length=200, description="the entity's key")
    event_id: str | None = Field(
        default=None, min_length=1, max_length=200, description="joins the answer to labels"
    )
    features: dict[str, Any] = Field(
        default_factory=dict,
        description="request-time fields (raw, as on <uc>.raw); when incomplete, the "
        "entity's online features are used",
    )


class PredictAnswer(BaseModel):
    """One answer (a list of them for a list request)."""

    prediction_id: str
    event_id: str
    entity_id: str
    model_name: str
    model_version: str
    variant: str
    prediction: Any
    probabilities: dict[str, float] | None
    feature_source: str


class FeedbackRequest(BaseModel):
    """Ground truth for an earlier event (``timestamp`` defaults to now)."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(min_length=1, max_length=200)
    label: int | float | str | bool
    timestamp: datetime | None = None


_ONE_PREDICT = TypeAdapter(PredictRequest)
_MANY_PREDICT = TypeAdapter(list[PredictRequest])
_ONE_FEEDBACK = TypeAdapter(FeedbackRequest)
_MANY_FEEDBACK = TypeAdapter(list[FeedbackRequest])
_FLAG = TypeAdapter(bool)


def explain_flag(query: bytes) -> bool:
    """The ``explain`` query parameter (pydantic's booleans: true/false, 1/0, yes/no, on/off).

    >>> explain_flag(b"explain=true"), explain_flag(b""), explain_flag(b"explain=0")
    (True, False, False)
    >>> try:
    ...     explain_flag(b"explain=maybe")
    ... except BadRequest as exc:
    ...     exc.errors[0]["loc"]
    ['query', 'explain']
    """
    # (no query string, the common request, is not parsed)
    values = query and parse_qs(query.decode("latin-1"), keep_blank_values=True).get("explain")
    if not values:
        return False
    try:
        return bool(_FLAG.validate_python(values[-1]))
    except ValidationError:
        message = f"explain must be true or false, got {values[-1]!r}"
        raise BadRequest(
            [{"loc": ["query", "explain"], "msg": message, "type": "bool_parsing"}]
        ) from None


class BadRequest(Exception):
    """A body that does not validate; carries FastAPI-shaped error details."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["msg"] if errors else "invalid body")
        self.errors = errors


_REFUSED = (BadRequest, InvalidFeatures, UnknownUseCase, NoChampion, FeatureStoreUnavailable)


def parse_body(body: bytes, one: TypeAdapter[Any], many: TypeAdapter[Any], limit: int) -> Any:
    """One object or a list, validated; raises :class:`BadRequest` naming the field.

    >>> parse_body(b'{"entity_id": "c1"}', _ONE_PREDICT, _MANY_PREDICT, 10).entity_id
    'c1'
    >>> try:
    ...     parse_body(b'[{"entity_id": "c1"}, {}]', _ONE_PREDICT, _MANY_PREDICT, 10)
    ... except BadRequest as exc:
    ...     exc.errors[0]["loc"], exc.errors[0]["msg"]
    (['body', 1, 'entity_id'], 'Field required')
    """
    is_list = body.lstrip()[:1] == b"["
    try:
        value = (many if is_list else one).validate_json(body)
    except ValidationError as exc:
        raise BadRequest(
            [
                {"loc": ["body", *error["loc"]], "msg": error["msg"], "type": error["type"]}
                for error in exc.errors(include_url=False, include_input=False)
            ]
        ) from None
    if is_list:
        if not value:
            raise BadRequest([{"loc": ["body"], "msg": "empty list", "type": "too_short"}])
        if len(value) > limit:
            raise BadRequest(
                [{"loc": ["body"], "msg": f"{len(value)} items, over {limit}", "type": "too_long"}]
            )
    return value


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # json.dumps's, made once
_FAST_ENCODE = msgspec.json.Encoder().encode  # the same compact JSON, several times faster


def encode_answers(content: Any) -> bytes:
    """A predict answer (one or a list) as compact JSON.

    msgspec writes it, except where a float is not finite, or an explanation holds
    anything but plain floats: msgspec would write null, json refuses it
    (``ValueError``), as the API always has.

    >>> encode_answers({"prediction": 1, "probabilities": {"0": 0.25, "1": 0.75}})
    b'{"prediction":1,"probabilities":{"0":0.25,"1":0.75}}'
    >>> explained = {"score": 0.5, "expected_value": 0.25, "gap": 0.0, "tolerance": 1e-09,
    ...              "contributions": {"age": 0.25}}
    >>> json.loads(encode_answers({"explanation": explained}))["explanation"] == explained
    True
    >>> encode_answers({"prediction": 1, "explanation": {**explained, "gap": math.nan}})
    Traceback (most recent call last):
    ...
    ValueError: Out of range float values are not JSON compliant
    """
    for answer in content if isinstance(content, list) else (content,):
        prediction = answer.get("prediction")
        probabilities = answer.get("probabilities") or {}
        finite = not isinstance(prediction, float) or math.isfinite(prediction)
        if not (finite and all(map(math.isfinite, probabilities.values()))):
            return _ENCODER.encode(content).encode()
        explanation = answer.get("explanation")
        if explanation is not None and not _plain_explanation(explanation):
            return _ENCODER.encode(content).encode()
    encoded: bytes = _FAST_ENCODE(content)
    return encoded


_EXPLAINED = ("expected_value", "score", "gap", "tolerance")  # an explanation's floats


def _plain_explanation(explanation: dict[str, Any]) -> bool:
    """Whether an explanation's numbers are all finite Python floats (msgspec's to write)."""
    numbers = [explanation.get(name) for name in _EXPLAINED]
    numbers.extend(explanation.get("contributions", {}).values())
    return all(type(value) is float and math.isfinite(value) for value in numbers)


def _json(content: Any, status: int = 200) -> Response:
    body = _ENCODER.encode(content).encode()
    return Response(body, status_code=status, media_type="application/json")


def create_app(
    service: InferenceService, *, manage: bool = True, guard_inside: bool = True
) -> FastAPI:
    """The FastAPI app; with ``manage`` its lifespan starts and stops ``service``.

    ``guard_inside=False`` leaves the guard out of the app's middleware, for
    :func:`front` to put it in front of the whole app (the served way).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage:
            await service.start()
        try:
            yield
        finally:
            if manage:
                await service.stop()

    app = FastAPI(
        title="driftline inference",
        version="1",
        description="Champion and challenger models of each use case, behind one API.",
        lifespan=lifespan,
    )
    settings = service.settings
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    limit = settings.max_batch_items

    def failed(usecase: str, endpoint: str, status: int, content: Any) -> Response:
        metrics.REQUESTS.labels(usecase, endpoint, str(status)).inc()
        return _json(content, status)

    async def predict_body(usecase: str, body: bytes, query: bytes) -> tuple[int, bytes]:
        many = False  # the status and JSON body of POST /v1/predict/{usecase}
        try:
            service.models.champion(usecase)  # 404 / 503 before reading the body
            explain = explain_flag(query)
            parsed = parse_body(body, _ONE_PREDICT, _MANY_PREDICT, limit)
            many = isinstance(parsed, list)
            requests: list[PredictRequest] = parsed if many else [parsed]
            items = [Item(r.entity_id, r.event_id, r.features) for r in requests]
            answers = await service.predict(usecase, items, explain=explain)
        except _REFUSED as exc:
            answer = refused(usecase, "predict", exc, many)
            return answer.status_code, bytes(answer.body)
        metrics.child(metrics.REQUESTS, usecase, "predict", "200").inc()
        return 200, encode_answers(answers if many else answers[0])

    guard = {"api_key": key, "max_body_bytes": settings.max_body_bytes, "predict": predict_body}
    app.state.guard = guard
    if guard_inside:
        app.add_middleware(GuardMiddleware, **guard)  # type: ignore[arg-type]

    def refused(usecase: str, endpoint: str, exc: Exception, many: bool = True) -> Response:
        if isinstance(exc, BadRequest):
            return failed(usecase, endpoint, 422, {"detail": exc.errors})
        if isinstance(exc, InvalidFeatures):
            loc: list[Any] = ["body"]
            if many and exc.index is not None:
                loc.append(exc.index)
            if endpoint == "predict":
                loc.append("features")
            if exc.field:
                loc.append(exc.field)
            detail = [{"loc": loc, "msg": exc.reason, "type": "invalid_features"}]
            return failed(usecase, endpoint, 422, {"detail": detail})
        if isinstance(exc, UnknownUseCase):
            return failed(usecase, endpoint, 404, {"detail": str(exc)})
        if isinstance(exc, NoChampion | FeatureStoreUnavailable):
            return failed(usecase, endpoint, 503, {"detail": str(exc)})
        raise exc

    @app.post(
        "/v1/predict/{usecase}",
        summary="Score one item or a list",
        responses={200: {"model": PredictAnswer}, 422: {}, 503: {}, 413: {}, 401: {}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/PredictRequest"},
                                {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/PredictRequest"},
                                },
                            ]
                        }
                    }
                },
            }
        },
    )
    async def predict(
        usecase: str,
        request: Request,
        explain: bool = Query(False, description="add per-feature contributions to each answer"),
    ) -> Response:
        # Documents the route; the guard middleware answers it (predict_body) first.
        query = request.scope.get("query_string", b"")
        status, body = await predict_body(usecase, await request.body(), query)
        return Response(body, status_code=status, media_type="application/json")

    @app.post(
        "/v1/feedback/{usecase}",
        summary="Publish ground truth (one label or a list) to <uc>.labels",
        status_code=202,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/FeedbackRequest"}}
                },
            }
        },
    )
    async def feedback(usecase: str, request: Request) -> Response:
        many = False
        try:
            service.spec(usecase)
            parsed = parse_body(await request.body(), _ONE_FEEDBACK, _MANY_FEEDBACK, limit)
            many = isinstance(parsed, list)
            entries: list[FeedbackRequest] = parsed if many else [parsed]
            now = datetime.now(UTC)
            labels = [
                Label(event_id=e.event_id, label=e.label, timestamp=e.timestamp or now)
                for e in entries
            ]
            published = await service.feedback(usecase, labels)
        except (BadRequest, InvalidFeatures, UnknownUseCase) as exc:
            return refused(usecase, "feedback", exc, many)
        metrics.REQUESTS.labels(usecase, "feedback", "202").inc()
        return _json({"published": published}, 202)

    @app.get("/v1/models/{usecase}", summary="The champion and challenger serving a use case")
    async def models(usecase: str) -> Response:
        try:
            return _json(service.describe(usecase))
        except UnknownUseCase as exc:
            return _json({"detail": str(exc)}, 404)

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "inference"}

    @app.get("/readyz", summary="Ready once the promotion history is replayed")
    async def readyz() -> JSONResponse:
        ready = service.ready
        body = {"status": "ready" if ready else "starting", "service": "inference"}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    # the schemas referenced by openapi_extra above
    app.openapi_schema = None
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (PredictRequest, FeedbackRequest):
                components[model.__name__] = model.model_json_schema(
                    ref_template="#/components/schemas/{model}"
                )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def front(app: FastAPI) -> GuardMiddleware:
    """``app`` (made with ``guard_inside=False``) behind its guard, outermost.

    What uvicorn serves: ``POST /v1/predict/{uc}`` is answered by the guard
    before FastAPI's own middleware (error pages, body limits) and routing;
    every other request, and one the guard refuses, is what it was.
    """
    return GuardMiddleware(app, **app.state.guard)
