"""The HTTP load generator B5 and B7 drive servers with.

:func:`drive` opens N asyncio connections with HTTP/1.1 keep-alive, each
sending the same request back to back for T seconds (a closed loop: a new
request as soon as the answer is in). It writes raw request bytes and reads
the answer by ``Content-Length``, so it costs much less CPU per request than
an HTTP client library, and the server, not the generator, is what saturates.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

from bench.runner import percentile

# ---- statistics -------------------------------------------------------------------


@dataclass
class LoadStats:
    """What one load run saw: answers, failures, seconds and every answer's latency."""

    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        """Successful answers a second.

        >>> LoadStats(ok=500, seconds=2.0).rps
        250.0
        >>> math.isnan(LoadStats().rps)
        True
        """
        return self.ok / self.seconds if self.seconds > 0 else math.nan

    @property
    def p99_ms(self) -> float:
        """The 99th percentile latency of the answers, in ms.

        >>> LoadStats(latencies_ms=[float(v) for v in range(1, 101)]).p99_ms
        99.01
        """
        return percentile(self.latencies_ms, 0.99)

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 0.5)

    def record(self, status: int, latency_ms: float) -> None:
        """Count one answer: a 200 is a success whose latency counts; others are errors.

        >>> stats = LoadStats()
        >>> stats.record(200, 1.5); stats.record(503, 0.2)
        >>> stats.ok, stats.errors, stats.latencies_ms, stats.statuses
        (1, 1, [1.5], {200: 1, 503: 1})
        """
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200:
            self.ok += 1
            self.latencies_ms.append(latency_ms)
        else:
            self.errors += 1

    def merge(self, other: LoadStats) -> None:
        """Add another worker's counts (the seconds are the run's, set by the caller).

        >>> a, b = LoadStats(), LoadStats()
        >>> a.record(200, 1.0); b.record(200, 3.0); b.record(500, 1.0)
        >>> a.merge(b); a.ok, a.errors, sorted(a.latencies_ms), a.statuses
        (2, 1, [1.0, 3.0], {200: 2, 500: 1})
        """
        self.ok += other.ok
        self.errors += other.errors
        self.latencies_ms.extend(other.latencies_ms)
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count


def http_request(host: str, port: int, path: str, body: bytes) -> bytes:
    """One keep-alive HTTP/1.1 ``POST`` of a JSON body, as raw bytes.

    >>> http_request("127.0.0.1", 8000, "/v1/x", b"{}").split(b"\\r\\n")[:2]
    [b'POST /v1/x HTTP/1.1', b'Host: 127.0.0.1:8000']
    """
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def parse_head(head: bytes) -> tuple[int, int]:
    """(status, content length) of a response head; a head without a length is an error.

    >>> parse_head(b"HTTP/1.1 200 OK\\r\\ncontent-length: 12\\r\\nx: y\\r\\n\\r\\n")
    (200, 12)
    """
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return status, int(value.strip())
    raise ValueError(f"response without Content-Length: {lines[0]!r}")


async def _worker(host: str, port: int, request: bytes, stop_at: float, stats: LoadStats) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status, length = parse_head(head)
            if length:
                await reader.readexactly(length)
            stats.record(status, (time.perf_counter() - started) * 1000)
    finally:
        writer.close()


async def _drive(
    host: str, port: int, path: str, body: bytes, concurrency: int, seconds: float
) -> LoadStats:
    request = http_request(host, port, path, body)
    started = time.perf_counter()
    workers = [LoadStats() for _ in range(concurrency)]
    await asyncio.gather(*(_worker(host, port, request, started + seconds, w) for w in workers))
    total = LoadStats(seconds=time.perf_counter() - started)
    for worker in workers:
        total.merge(worker)
    return total


def drive(
    port: int, path: str, body: bytes, *, concurrency: int, seconds: float, host: str = "127.0.0.1"
) -> LoadStats:
    """Load ``POST path`` with ``concurrency`` keep-alive connections for ``seconds``."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is installed with uvicorn[standard]
        runner = asyncio.run
    result: LoadStats = runner(_drive(host, port, path, body, concurrency, seconds))
    return result
