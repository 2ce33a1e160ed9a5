"""A lease's join against a broker that never answers: bounded, and tried again.

aiokafka's consumer start waits for its first assignment without a bound; a
lease group's join the broker never completes hung a start (and a test, for
pytest-timeout's 600 s). The "broker" here is a TCP listener that accepts and
never answers, the shape of a broker lost mid-join.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from services.common import standby
from services.common.health import HealthServer
from services.common.settings import CommonSettings
from services.common.standby import Lease, leased


@pytest.fixture
async def silent() -> AsyncIterator[str]:
    """A listener that takes connections and never answers a request."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_join_the_broker_never_answers_ends_in_a_timeout(
    silent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(standby, "JOIN_TIMEOUT_SECONDS", 1.0)
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        await Lease(silent, "g.lease", "c").start()
    assert time.monotonic() - began < 5


async def test_a_leased_body_on_a_silent_broker_tries_again_and_stops_when_told(
    silent: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(standby, "JOIN_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(standby, "RETRY_SECONDS", 0.2)
    started: list[float] = []

    async def body(stop: asyncio.Event, health: HealthServer) -> None:
        started.append(time.monotonic())

    settings = CommonSettings(bootstrap=silent, group_prefix="silent", standby=True)
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger=standby.__name__):
        running = asyncio.ensure_future(
            leased("registry", settings, body)(stop, HealthServer("registry", "127.0.0.1", 0))
        )
        await asyncio.sleep(2.5)
        assert not running.done()  # still trying: a failed join is not the service's end
        stop.set()
        await asyncio.wait_for(running, 5)
    tries = [r for r in caplog.records if "could not join lease group" in r.getMessage()]
    assert len(tries) >= 2, [r.getMessage() for r in caplog.records]
    assert started == []  # never held, never ran
