"""uvicorn with CoalescingHttpTools (services/inference/http.py), on a real socket.

Each answer must be what stock uvicorn sends, byte for byte, and leave in one
TCP write; keep-alive, streaming, 100-continue and closing still work.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.common.broker import free_port
from services.inference.http import CoalescingHttpTools, CoalescingTransport


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/stream":  # chunked, with a pause between parts
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"two", "more_body": False})
        return
    answer = b"echo:" + body
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


def serve(http: Any, server_class: type[uvicorn.Server] = uvicorn.Server) -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, loop="asyncio", http=http,
                            log_config=None, access_log=False, date_header=False)  # fmt: skip
    server = server_class(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield port
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def coalescing() -> Iterator[int]:
    yield from serve(CoalescingHttpTools)


@pytest.fixture(scope="module")
def stock() -> Iterator[int]:
    yield from serve("httptools")


def exchange(port: int, requests: list[bytes], end: bytes) -> bytes:
    """Send ``requests`` on one connection; read until what came ends with ``end``."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        for request in requests:
            conn.sendall(request)
        data = b""
        while not data.endswith(end):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n".encode()
            + extra + b"\r\n" + body)  # fmt: skip


def test_answers_are_byte_for_byte_stock_uvicorns(coalescing: int, stock: int) -> None:
    requests = [post("/a", b"first"), post("/b", b"second"), post("/stream", b"")]
    last = b"3\r\ntwo\r\n0\r\n\r\n"  # the stream's last chunk and its end
    assert exchange(coalescing, requests, last) == exchange(stock, requests, last)
    answer = exchange(coalescing, [post("/a", b"hi")], b"echo:hi")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\necho:hi")


class Counted:
    """The real transport, counting its writes."""

    writes: list[bytes] = []

    def __init__(self, transport: Any) -> None:
        self.transport = transport

    def write(self, data: bytes) -> None:
        Counted.writes.append(data)
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class CountedCoalescing(CoalescingHttpTools):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(Counted(transport))  # type: ignore[arg-type]


class CountedStock(HttpToolsProtocol):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(Counted(transport))  # type: ignore[arg-type]


@pytest.mark.parametrize(("protocol", "writes"), [(CountedCoalescing, 1), (CountedStock, 2)])
def test_an_answer_is_one_write(protocol: Any, writes: int) -> None:
    for port in serve(protocol):
        for body in (b"x", b"y"):
            Counted.writes.clear()
            answer = exchange(port, [post("/a", body)], b"echo:" + body)
            assert b"".join(Counted.writes) == answer
            assert len(Counted.writes) == writes  # stock uvicorn: the head, then the body


def test_100_continue_and_closing(coalescing: int) -> None:
    expect = post("/a", b"body", b"Expect: 100-continue\r\n")
    head, _, _ = expect.partition(b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", coalescing), timeout=5) as conn:
        conn.sendall(head + b"\r\n\r\n")
        assert conn.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.sendall(b"body")
        assert conn.recv(65536).endswith(b"echo:body")
    closing = exchange(coalescing, [post("/a", b"bye", b"Connection: close\r\n")], b"echo:bye")
    assert b"connection: close\r\n" in closing and closing.endswith(b"echo:bye")


def test_a_closed_transport_gets_no_late_write() -> None:
    class Closed:
        def __init__(self) -> None:
            self.written: list[bytes] = []

        def is_closing(self) -> bool:
            return True

        def write(self, data: bytes) -> None:
            self.written.append(data)

    loop = asyncio.new_event_loop()
    try:
        real = Closed()
        transport = CoalescingTransport(real, loop)  # type: ignore[arg-type]
        transport.write(b"late")
        loop.run_until_complete(asyncio.sleep(0))
        assert real.written == []
    finally:
        loop.close()


def test_the_served_server_freezes_what_start_loaded() -> None:
    import gc

    from services.inference.http import Server

    gc.unfreeze()
    try:
        for port in serve(CoalescingHttpTools, Server):
            assert gc.get_freeze_count() > 0
            assert exchange(port, [post("/a", b"ok")], b"echo:ok").endswith(b"echo:ok")
    finally:
        gc.unfreeze()
