"""The small HTTP surface every service has: ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

logger = logging.getLogger(__name__)


class HealthServer:
    """Serves liveness, readiness (``ready()``) and Prometheus metrics on host:port.

    ``role`` is a singleton's part under a lease (``services/common/standby.py``):
    ``"active"`` or ``"standby"``, None for a service that runs alone. Both
    endpoints name it; a standby is ready (200, ``"status": "standby"``): it
    runs as it should, waiting to take over, so an orchestrator's rollout
    does not wait on it forever.
    """

    def __init__(
        self, service: str, host: str, port: int, ready: Callable[[], bool] = lambda: True
    ) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.ready = ready
        self.role: str | None = None
        self._runner: web.AppRunner | None = None

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    def _named(self, body: dict[str, str]) -> dict[str, str]:
        return body if self.role is None else {**body, "role": self.role}

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response(self._named({"status": "ok", "service": self.service}))

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.role == "standby":
            return web.json_response(self._named({"status": "standby", "service": self.service}))
        ready = self.ready()
        body = {"status": "ready" if ready else "starting", "service": self.service}
        return web.json_response(self._named(body), status=200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(REGISTRY))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def start(self) -> int:
        """Start serving; return the port (useful when 0 asked for any free one)."""
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            if self.port == 0:
                raise
            # Never let a busy port stop a service: serve health on any free one.
            logger.warning("health port %s busy (%s); using a free one", self.port, exc)
            self.port = 0
            site = web.TCPSite(self._runner, self.host, 0)
            await site.start()
        server = site._server
        if server is not None and self.port == 0:
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1] if sockets else self.port
        logger.info(
            "health endpoint service=%s url=http://%s:%s", self.service, self.host, self.port
        )
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
