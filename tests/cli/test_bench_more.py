"""The serving and closed-loop benchmarks: the load generator, the loop arithmetic, a real B5.

No test here asserts a time: benchmarks are not tests.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench import load_benchmarks
from bench.featureread import SIDES, rotation
from bench.load import LoadStats, drive, http_request, parse_head
from bench.loop import STEPS, Timeline, loop_breakdown
from bench.noop import noop_app
from bench.runner import BenchContext, run_benchmarks
from services.common.broker import free_port


def test_load_stats_count_successes_errors_and_percentiles() -> None:
    stats = LoadStats()
    for latency in range(1, 101):
        stats.record(200, float(latency))
    stats.record(503, 0.1)
    stats.seconds = 4.0
    assert (stats.ok, stats.errors, stats.statuses) == (100, 1, {200: 100, 503: 1})
    assert stats.rps == 25.0  # errors are not throughput
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.p50_ms == pytest.approx(50.5)
    other = LoadStats()
    other.record(200, 1000.0)
    stats.merge(other)
    assert stats.ok == 101 and max(stats.latencies_ms) == 1000.0
    assert stats.statuses == {200: 101, 503: 1}


def test_response_heads_parse_and_a_head_without_length_is_refused() -> None:
    request = http_request("127.0.0.1", 9, "/v1/predict/credit", b'{"a":1}')
    head, _, body = request.partition(b"\r\n\r\n")
    assert body == b'{"a":1}' and b"Content-Length: 7" in head
    assert parse_head(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n") == (503, 0)
    with pytest.raises(ValueError, match="Content-Length"):
        parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")


@pytest.fixture
def tiny_server() -> Iterator[tuple[int, list[int]]]:
    """A real HTTP/1.1 keep-alive server on a thread: 200 for odd requests, 503 for even."""
    port = free_port()
    seen: list[int] = []
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                seen.append(length)
                status = b"200 OK" if len(seen) % 2 else b"503 Unavailable"
                body = b'{"ok":true}'
                writer.write(
                    b"HTTP/1.1 " + status + b"\r\nContent-Length: "
                    + str(len(body)).encode() + b"\r\n\r\n" + body
                )  # fmt: skip
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    stop = asyncio.Event()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        started.set()
        async with server:
            await stop.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    started.wait(5)
    yield port, seen
    loop.call_soon_threadsafe(stop.set)
    thread.join(5)
    loop.close()


def test_the_load_generator_counts_every_answer_of_a_real_server(
    tiny_server: tuple[int, list[int]],
) -> None:
    port, seen = tiny_server
    stats = drive(port, "/x", b'{"entity_id":"c1"}', concurrency=4, seconds=0.3)
    answered = stats.ok + stats.errors
    assert answered == len(seen) > 0  # one answer read for each request the server saw
    assert set(seen) == {len(b'{"entity_id":"c1"}')}
    assert stats.statuses.get(503, 0) == stats.errors and stats.errors > 0
    assert len(stats.latencies_ms) == stats.ok and stats.seconds >= 0.3


async def test_the_noop_baseline_reads_the_body_and_answers_json() -> None:
    transport = httpx.ASGITransport(app=noop_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://noop") as client:
        answer = await client.post("/v1/noop/b5", json={"entity_id": "c1", "features": {}})
    assert answer.status_code == 200 and answer.json() == {"ok": True, "prediction": 0}


def test_readers_rotate_so_each_goes_first_equally() -> None:
    orders = [rotation(i) for i in range(len(SIDES) * 10)]
    assert all(sorted(order) == sorted(SIDES) for order in orders)
    firsts = [order[0] for order in orders]
    assert {side: firsts.count(side) for side in SIDES} == dict.fromkeys(SIDES, 10)


def test_the_loop_timeline_starts_at_the_drift_and_keeps_first_stamps() -> None:
    line = Timeline()
    line.mark("alert", 1.0)  # an alert before the drift is not part of this loop
    line.mark("drift", 10.0)
    for step, at in [("alert", 13.0), ("alert", 14.0), ("request", 13.2), ("candidate", 30.0),
                     ("promotion", 31.0), ("served", 31.4), ("served", 40.0)]:  # fmt: skip
        line.mark(step, at)
    assert line.done()
    assert line.marks == {"drift": 10.0, "alert": 13.0, "request": 13.2, "candidate": 30.0,
                          "promotion": 31.0, "served": 31.4}  # fmt: skip
    out = loop_breakdown(line.marks, fit_seconds=12.0)
    assert out["total"] == pytest.approx(21.4)
    assert out["overhead"] == pytest.approx(9.4)
    parts = [out[step] for step in STEPS[1:]]
    assert parts == pytest.approx([3.0, 0.2, 16.8, 1.0, 0.4])
    assert sum(p for p in parts if p is not None) == pytest.approx(out["total"])  # they add up


def test_a_loop_that_never_served_has_no_total_nor_overhead() -> None:
    out = loop_breakdown({"drift": 0.0, "alert": 4.0, "candidate": 20.0}, fit_seconds=8.0)
    assert out["alert"] == 4.0
    assert out["request"] is None and out["candidate"] == 16.0  # from the latest stamp
    assert out["total"] is None and out["overhead"] is None and out["fit"] == 8.0
    assert loop_breakdown({"drift": 0.0, "served": 5.0}, None)["overhead"] is None


def test_the_new_benchmarks_are_registered_by_their_own_modules() -> None:
    registry = load_benchmarks()
    assert registry["B5"].function.__module__ == "bench.serving"
    assert registry["B8"].function.__module__ == "bench.loop"


@pytest.mark.slow
@pytest.mark.integration
def test_a_quick_real_b5_run_serves_the_champion_and_measures_both_sides(tmp_path: Path) -> None:
    load_benchmarks()
    context = BenchContext(quick=True, repetitions=1, workdir=tmp_path)
    context.cache["serving-seconds"] = 0.5
    (result,) = list(run_benchmarks(["B5"], context))
    assert result.status == "measured", result.notes
    assert result.figure is not None and result.figure > 0
    assert result.baseline is not None and result.baseline > 0
    assert result.ratio == pytest.approx(result.figure / result.baseline)
    assert result.details["champion_version"] == "1"
    assert "p99_overhead_ms" in result.details and result.met in (True, False)
    assert "non-200 answers 0 vs 0" in result.notes
    mlp = result.details["mlp"]  # the MLP champion served by each runtime, same run
    assert set(mlp) == {"torch", "onnx", "int8"}
    assert all(row["rps"] > 0 and row["errors"] == 0 for row in mlp.values())
