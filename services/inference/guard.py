"""The API's ASGI guard: API key and body-size checks before any routing or parsing.

Plain ASGI (cheap): a request it refuses never reaches FastAPI. It also
answers ``POST /v1/predict/{uc}`` itself, past FastAPI's routing, through the
``predict(usecase, body, query_string)`` callable the app gives it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Predict = Callable[[str, bytes, bytes], Awaitable[tuple[int, bytes]]]
_PREDICT = "/v1/predict/"


class GuardMiddleware:
    """API key and body-size checks, before any routing or parsing (plain ASGI: cheap)."""

    def __init__(
        self,
        app: ASGIApp,
        api_key: str | None,
        max_body_bytes: int,
        predict: Predict | None = None,
    ) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes
        self.predict = predict  # POST /v1/predict/{uc} answered here, past FastAPI's routing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.api_key is not None and scope["path"].startswith("/v1/"):
            provided = headers.get(b"x-api-key", b"")
            if not hmac.compare_digest(provided, self.api_key):
                await _reply(send, 401, "missing or wrong X-API-Key header")
                return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                await _reply(send, 413, f"body over the {self.max_body_bytes}-byte limit")
                return
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body_bytes:
                    await _reply(send, 413, f"body over the {self.max_body_bytes}-byte limit")
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            if self.predict is not None and (usecase := _predict_usecase(scope)) is not None:
                status, answer = await self.predict(usecase, body, scope.get("query_string", b""))
                await _send_json(send, status, answer)
                return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)


async def _reply(send: Send, status: int, detail: str) -> None:
    await _send_json(send, status, json.dumps({"detail": detail}).encode())


async def _send_json(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _predict_usecase(scope: Scope) -> str | None:
    """The use case of a ``POST /v1/predict/{uc}`` the router would match, else None.

    >>> _predict_usecase({"method": "POST", "path": "/v1/predict/credit"})
    'credit'
    >>> _predict_usecase({"method": "POST", "path": "/v1/predict/credit/"}) is None
    True
    """
    path: str = scope["path"]
    if scope["method"] != "POST" or scope.get("root_path") or not path.startswith(_PREDICT):
        return None
    usecase = path[len(_PREDICT) :]
    return usecase if usecase and "/" not in usecase else None
