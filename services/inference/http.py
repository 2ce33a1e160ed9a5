"""uvicorn's httptools protocol, its writes of one loop turn sent in one ``write()``.

uvicorn writes an answer's status line and headers with one
``transport.write`` and its body with another: two system calls and two TCP
segments over loopback for every answer, which wake the client twice.
:class:`CoalescingHttpTools` hands uvicorn a transport that gathers what one
turn of the event loop writes and sends it at the end of that turn (one
``call_soon``): an answer's head and body leave together, byte for byte what
uvicorn would have sent, in the same order. Everything else (closing, flow
control, peer address) is the real transport's.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.common.runtime import freeze_start


class CoalescingTransport:
    """A transport whose writes of one loop turn go out in one ``write()``."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        """Send what this turn wrote (nothing once the connection is closing)."""
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpTools(HttpToolsProtocol):
    """uvicorn's ``httptools`` protocol over a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]


class Server(uvicorn.Server):
    """uvicorn's server; once the app has started, what it loaded is frozen out of the
    collector (``gc.freeze``: imports, feature store, models, about half a million objects,
    which every full collection would otherwise walk, for 0.2 to 0.4 s, a few times a
    minute under load)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        freeze_start()


def serve(app: Any, host: str, port: int) -> bool:
    """Serve ``app`` in the inference service's server config until it stops.

    uvloop, :class:`CoalescingHttpTools`, no access log, one worker, a frozen
    start-up. B5's no-op baseline (``bench.noop``) is served by this same call.
    Returns whether the server started.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=CoalescingHttpTools,  # httptools, an answer's head and body in one write
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    server = Server(config)
    server.run()
    return server.started
