"""The web console and its JSON API, served by the telemetry process.

- ``GET /``: the page (``static/``: plain JS and SVG, nothing fetched from elsewhere);
- ``GET /api/telemetry``: every use case's :func:`~services.telemetry.snapshot.snapshot`;
  ``/api/telemetry/{uc}`` one of them;
- ``GET /api/stream``: the same document every second, as server-sent events;
- ``POST /api/{uc}/retrain|rollback|promote``: publish the event the CLI verb
  publishes (with ``DRIFTLINE_API_KEY`` set, only with it in ``X-API-Key``);
- ``GET /reports/{alert_id}``: the evidently report an alert names (under
  ``DRIFTLINE_HOME`` only).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer

from services.common.errors import DriftlineError
from services.telemetry import actions
from services.telemetry.snapshot import snapshot
from services.telemetry.windows import Telemetry

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
STREAM_SECONDS = 1.0
ACTIONS = ("retrain", "rollback", "promote")


class ConsolePortBusy(DriftlineError):
    """The console's address (DRIFTLINE_CONSOLE_HOST:DRIFTLINE_CONSOLE_PORT) cannot be bound."""


class Console:
    """The console's HTTP server over one :class:`Telemetry`."""

    def __init__(
        self,
        telemetry: Telemetry,
        producer: AIOKafkaProducer,
        home: Path,
        api_key: str | None = None,
    ) -> None:
        self.telemetry = telemetry
        self.producer = producer
        self.home = home.resolve()
        self.api_key = api_key.encode() if api_key else None
        self._runner: web.AppRunner | None = None
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/", self._index)
        app.router.add_static("/static/", STATIC, show_index=False)
        app.router.add_get("/api/telemetry", self._all)
        app.router.add_get("/api/telemetry/{usecase}", self._one)
        app.router.add_get("/api/stream", self._stream)
        app.router.add_post("/api/{usecase}/{action}", self._act)
        app.router.add_get("/reports/{alert_id}", self._report)
        return app

    async def start(self, host: str, port: int) -> int:
        """Serve on ``host``:``port`` (0: a free port); return the port bound.

        A port that is taken is an error, not a reason to serve elsewhere: the
        address ``driftline up`` prints and ``driftline live`` reads is the setting's.
        """
        # An open event stream (a page left open) must not hold the service's stop.
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            raise ConsolePortBusy(
                f"the web console cannot listen on {host}:{port} ({exc.strerror or exc}): "
                "stop what holds that port, or set DRIFTLINE_CONSOLE_PORT to a free one "
                "(0: any free port)"
            ) from exc
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        logger.info("console url=http://%s:%s", host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def document(self) -> dict[str, Any]:
        now = time.time()
        return {uc: snapshot(self.telemetry, uc, now) for uc in sorted(self.telemetry.stories)}

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _all(self, request: web.Request) -> web.Response:
        return web.json_response(self.document())

    async def _one(self, request: web.Request) -> web.Response:
        usecase = request.match_info["usecase"]
        if usecase not in self.telemetry.stories:
            return _error(404, f"no use case {usecase!r}; known: {sorted(self.telemetry.stories)}")
        return web.json_response(snapshot(self.telemetry, usecase, time.time()))

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        try:
            while True:
                body = json.dumps(self.document(), separators=(",", ":"))
                await response.write(f"data: {body}\n\n".encode())
                await asyncio.sleep(STREAM_SECONDS)
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the page went away, or the server stops
        return response

    async def _act(self, request: web.Request) -> web.Response:
        usecase, action = request.match_info["usecase"], request.match_info["action"]
        if self.api_key is not None:
            given = request.headers.get("X-API-Key", "").encode()
            if not hmac.compare_digest(given, self.api_key):
                return _error(401, "missing or wrong X-API-Key")
        if action not in ACTIONS:
            return _error(404, f"no action {action!r}; known: {list(ACTIONS)}")
        story = self.telemetry.stories.get(usecase)
        if story is None:
            return _error(404, f"no use case {usecase!r}; known: {sorted(self.telemetry.stories)}")
        state = story.lineup.get(usecase)
        try:
            if action == "retrain":
                event: Any = actions.retrain(usecase)
            elif action == "rollback":
                event = actions.rollback(usecase, state)
            else:
                event = actions.promote(usecase, state)
        except actions.NothingToDo as exc:
            return _error(409, str(exc))
        topic = await actions.publish(self.producer, event)
        logger.info("console published %s usecase=%s event_id=%s", action, usecase, event.event_id)
        return web.json_response({"published": topic, "event_id": event.event_id})

    async def _report(self, request: web.Request) -> web.StreamResponse:
        alert_id = request.match_info["alert_id"]
        for story in self.telemetry.stories.values():
            for alert in story.alerts:
                if alert.alert_id == alert_id and alert.report_path:
                    path = Path(alert.report_path).resolve()
                    if not path.is_relative_to(self.home) or not path.is_file():
                        return _error(404, "the report is not under DRIFTLINE_HOME or is gone")
                    return web.FileResponse(path)
        return _error(404, f"no report for alert {alert_id!r} among the latest alerts")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
