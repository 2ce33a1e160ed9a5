"""The prediction journal: written before the answer returns, shipped again after a crash.

The crash is real: a child process journals predictions and is SIGKILLed, so
its journal is whatever reached the OS and its locks go with it. Shipping
goes to the real embedded broker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from schemas import topics
from services.common.bus import ensure_topics, start_consumer, start_producer
from services.inference.journal import (
    Segment,
    parse_lines,
    read_shipped,
    shipped_path,
    write_shipped,
)
from services.inference.predlog import PredictionLog

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import asyncio, sys
from pathlib import Path
from services.inference.predlog import PredictionLog

async def main() -> None:
    directory, usecase, count, segment_bytes = sys.argv[1:5]
    log = PredictionLog(None, Path(directory), segment_bytes=int(segment_bytes))
    for i in range(int(count)):
        log.submit({
            "usecase": usecase, "prediction_id": f"p{i}", "source_event_id": f"e{i}",
            "entity_id": f"c{i}", "model_name": "m", "model_version": "1",
            "variant": "champion", "prediction": 1, "probabilities": {"0": 0.2, "1": 0.8},
            "latency_ms": 1.5,
        })
    print("journaled", flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def prediction(usecase: str, index: int) -> dict[str, Any]:
    return {
        "usecase": usecase,
        "prediction_id": f"p{index}",
        "source_event_id": f"e{index}",
        "entity_id": f"c{index}",
        "model_name": "m",
        "model_version": "1",
        "variant": "champion",
        "prediction": 1,
        "probabilities": {"0": 0.2, "1": 0.8},
        "latency_ms": 1.5,
    }


def journal_killed(directory: Path, usecase: str, count: int, segment_bytes: int = 1 << 20) -> None:
    """Journal ``count`` predictions in a child process, then SIGKILL it (nothing shipped)."""
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(directory), usecase, str(count), str(segment_bytes)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"journaled\n"
    child.kill()
    child.wait(30)


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl"))


async def logged(bootstrap: str, usecase: str, idle_ms: int = 1500) -> list[str]:
    """The prediction ids on ``<usecase>.predictions``, duplicates kept, read until idle."""
    consumer = await start_consumer(bootstrap, [topics.predictions(usecase)], None)
    ids: list[str] = []
    try:
        while batches := await consumer.getmany(timeout_ms=idle_ms):
            ids += [json.loads(r.value)["prediction_id"] for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()
    return ids


@pytest.fixture
async def producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    running = await start_producer(bootstrap)
    yield running
    await running.stop()


def test_torn_and_unreadable_lines_are_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = b'{"a": 1}\nnot json\n[1]\n{"a": 2}\n{"a": 3, "b'
    with caplog.at_level(logging.WARNING):
        lines = parse_lines(data, 100, "segment")
    assert [line.record for line in lines] == [{"a": 1}, {"a": 2}]
    assert [line.end for line in lines] == [109, 131]
    assert "torn last journal line skipped segment=segment offset=131" in caplog.text
    assert caplog.text.count("unreadable journal line") == 2
    assert parse_lines(b"", 0, "empty") == []


def test_the_shipped_offset_is_replaced_whole(tmp_path: Path) -> None:
    segment = tmp_path / "run-00001.jsonl"
    assert read_shipped(segment) == 0
    write_shipped(segment, 123)
    write_shipped(segment, 456)
    assert read_shipped(segment) == 456
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-00001.jsonl.shipped"]
    shipped_path(segment).write_text("garbage")
    assert read_shipped(segment) == 0


@pytest.mark.integration
def test_a_live_segment_overwrites_its_shipped_offset_whole(tmp_path: Path) -> None:
    segment = Segment(tmp_path / "run-00001.jsonl")
    segment.append(b'{"a": 1}\n')
    for offset in (123_456, 7, 9):  # a shorter number leaves no digits of a longer one
        segment.record_shipped(offset)
        assert read_shipped(segment.path) == offset
    segment.delete()
    assert list(tmp_path.iterdir()) == []


async def test_a_killed_runs_journal_is_shipped_by_the_next_run(
    tmp_path: Path, bootstrap: str, unique: str, producer: AIOKafkaProducer
) -> None:
    directory = tmp_path / "predictions"
    journal_killed(directory, unique, 50)
    [segment] = segments(directory)
    assert len(segment.read_bytes().splitlines()) == 50  # all in the OS before submit returned
    created: list[list[str]] = []

    async def topics_ready(names: list[str]) -> None:
        created.append(names)
        await ensure_topics(bootstrap, names)

    log = PredictionLog(producer, directory, batch_size=20, topics_ready=topics_ready)
    await log.start()
    await log.stop()
    assert created == [[topics.predictions(unique)]]  # the topic did not exist yet
    ids = await logged(bootstrap, unique)
    assert sorted(ids) == sorted(f"p{i}" for i in range(50))
    assert list(directory.iterdir()) == []  # shipped whole: segment and sidecar deleted


@pytest.mark.integration
async def test_only_what_is_past_the_shipped_offset_is_sent_again_and_a_torn_line_is_skipped(
    tmp_path: Path,
    bootstrap: str,
    unique: str,
    producer: AIOKafkaProducer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await ensure_topics(bootstrap, [topics.predictions(unique)])
    directory = tmp_path / "predictions"
    journal_killed(directory, unique, 30)
    [segment] = segments(directory)
    lines = segment.read_bytes().splitlines(keepends=True)
    write_shipped(segment, sum(len(line) for line in lines[:10]))  # the first 10 acknowledged
    with segment.open("ab") as torn:
        torn.write(lines[0][:40])  # a kill in the middle of a write
    log = PredictionLog(producer, directory)
    with caplog.at_level(logging.WARNING):
        assert await log.replay() == 20
    assert "torn last journal line skipped" in caplog.text
    assert sorted(await logged(bootstrap, unique)) == sorted(f"p{i}" for i in range(10, 30))
    assert list(directory.iterdir()) == []


@pytest.mark.integration
async def test_a_live_processs_journal_is_left_to_it(
    tmp_path: Path, bootstrap: str, unique: str, producer: AIOKafkaProducer
) -> None:
    await ensure_topics(bootstrap, [topics.predictions(unique)])
    directory = tmp_path / "predictions"
    live = PredictionLog(producer, directory)
    for index in range(5):
        live.submit(prediction(unique, index))
    other = PredictionLog(producer, directory)  # a replica starting beside it
    assert await other.replay() == 0
    assert len(segments(directory)) == 1
    await live.start()
    await live.stop()
    assert sorted(await logged(bootstrap, unique)) == [f"p{i}" for i in range(5)]
    assert segments(directory) == []


@pytest.mark.integration
async def test_segments_rotate_and_a_shipped_segment_is_deleted(
    tmp_path: Path, bootstrap: str, unique: str, producer: AIOKafkaProducer
) -> None:
    await ensure_topics(bootstrap, [topics.predictions(unique)])
    directory = tmp_path / "predictions"
    log = PredictionLog(producer, directory, batch_size=7, linger_seconds=0.001, segment_bytes=2000)
    for index in range(40):
        log.submit(prediction(unique, index))
    written = segments(directory)
    assert len(written) >= 5
    assert all(path.read_bytes().endswith(b"\n") for path in written)
    await log.start()
    for _ in range(500):
        if log.sent == 40:
            break
        await asyncio.sleep(0.01)
    assert log.sent == 40
    [current] = segments(directory)  # the rotated ones, all acknowledged, are gone
    assert current == written[-1]
    assert read_shipped(current) == current.stat().st_size
    log.submit(prediction(unique, 40))
    await log.stop()  # a clean stop ships the last one and deletes the segment
    assert list(directory.iterdir()) == []
    ids = await logged(bootstrap, unique)
    assert sorted(ids) == sorted(f"p{i}" for i in range(41))


@pytest.mark.integration
async def test_several_killed_runs_are_all_shipped_once_each(
    tmp_path: Path, bootstrap: str, unique: str, producer: AIOKafkaProducer
) -> None:
    await ensure_topics(bootstrap, [topics.predictions(unique)])
    directory = tmp_path / "predictions"
    journal_killed(directory, unique, 25, segment_bytes=3000)
    journal_killed(directory, unique, 25, segment_bytes=3000)  # the same ids, a second run
    assert len(segments(directory)) > 2
    assert await PredictionLog(producer, directory, batch_size=9).replay() == 50
    ids = await logged(bootstrap, unique)
    assert len(ids) == 50
    assert sorted(set(ids)) == sorted(f"p{i}" for i in range(25))
    assert list(directory.iterdir()) == []


@pytest.mark.integration
async def test_a_requests_predictions_are_journaled_in_one_write_and_each_is_acknowledged(
    tmp_path: Path, bootstrap: str, unique: str, producer: AIOKafkaProducer
) -> None:
    await ensure_topics(bootstrap, [topics.predictions(unique)], partitions=3)
    directory = tmp_path / "predictions"
    log = PredictionLog(producer, directory, batch_size=4, linger_seconds=0.001, capacity=70)
    log.submit_many([prediction(unique, i) for i in range(64)])  # one request of 64 items
    log.submit(prediction(unique, 64))
    [segment] = segments(directory)
    lines = segment.read_bytes().splitlines()
    assert [json.loads(line)["prediction_id"] for line in lines] == [f"p{i}" for i in range(65)]
    ends = [pending.end for pending in log._queue]  # each line's own end, for the offsets
    assert ends == [sum(len(line) + 1 for line in lines[: i + 1]) for i in range(65)]
    log.submit_many([prediction(unique, i) for i in range(65, 75)])  # over capacity
    assert log.dropped == 5
    await log.start()
    await log.stop()
    ids = await logged(bootstrap, unique)
    assert sorted(ids) == sorted(f"p{i}" for i in range(70))  # over 3 partitions, each once
    assert list(directory.iterdir()) == []


@pytest.mark.integration
async def test_a_steady_trickle_is_shipped_a_linger_at_a_time(
    tmp_path: Path, bootstrap: str, unique: str, producer: AIOKafkaProducer
) -> None:
    """Answers arriving while a batch is awaited wait for the next linger: a few ships a
    second, not one an acknowledgement (84 answers a produce request before, at 2,000/s)."""
    await ensure_topics(bootstrap, [topics.predictions(unique)])
    log = PredictionLog(producer, tmp_path / "predictions", linger_seconds=0.1)
    shipped: list[int] = []
    deliver = log._deliver

    async def counted(messages: list[tuple[str, bytes]], outcome: str) -> int:
        shipped.append(len(messages))
        return await deliver(messages, outcome)

    log._deliver = counted  # type: ignore[method-assign]
    await log.start()
    for step in range(60):  # 5 answers every 10 ms for 0.6 s
        log.submit_many([prediction(unique, step * 5 + i) for i in range(5)])
        await asyncio.sleep(0.01)
    await log.stop()
    assert sum(shipped) == 300
    assert len(shipped) <= 9, shipped  # about one a linger (0.6 s / 0.1 s), and the stop's
    assert sorted(await logged(bootstrap, unique)) == sorted(f"p{i}" for i in range(300))
