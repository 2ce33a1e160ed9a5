"""The pipelined consume loop on the real broker: batch N+1 is read and processed
while batch N is made durable, and only N's own offsets are committed once it is.
A SIGKILL while a batch is in flight loses nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from services.common.bus import ensure_topics, start_consumer, start_producer
from services.common.consume import ConsumeLoop
from services.common.deadletter import DeadLetterPolicy

pytestmark = pytest.mark.integration


class Gated:
    """A handing processor whose batches each become durable when their gate opens."""

    def __init__(self) -> None:
        self.gates: list[asyncio.Event] = []
        self.buffer: list[bytes] = []
        self.processed: list[bytes] = []
        self.durable: list[list[bytes]] = []

    async def process(self, record: Any) -> None:
        self.buffer.append(record.value)
        self.processed.append(record.value)

    async def flush(self) -> None:
        await (await self.hand_off())

    async def hand_off(self) -> Awaitable[None]:
        batch, self.buffer = self.buffer, []
        self.gates.append(asyncio.Event())
        return self._write(batch, self.gates[-1])

    async def _write(self, batch: list[bytes], gate: asyncio.Event) -> None:
        await gate.wait()
        self.durable.append(batch)


async def until(condition: Any, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def test_the_next_batch_is_processed_while_one_is_in_flight_and_commits_follow_durability(
    bootstrap: str, unique: str
) -> None:
    topic = f"{unique}.pipelined"
    values = [f"m{i:02d}".encode() for i in range(30)]
    partition = TopicPartition(topic, 0)

    async def run() -> None:
        await ensure_topics(bootstrap, [topic])
        producer = await start_producer(bootstrap)
        consumer = await start_consumer(bootstrap, [topic], f"{topic}-g")
        gated = Gated()
        loop = ConsumeLoop(consumer, gated, DeadLetterPolicy("gated", producer), max_records=10)
        try:
            await asyncio.gather(*[await producer.send(topic, v) for v in values])
            assert await loop.run_once() == 10  # in flight: not durable, not committed
            second = asyncio.create_task(loop.run_once())
            await until(lambda: len(gated.processed) == 20)
            await asyncio.sleep(0.1)
            assert not second.done() and gated.durable == []  # waits for the first batch
            assert await consumer.committed(partition) is None
            gated.gates[0].set()
            assert await second == 10
            assert gated.durable == [values[:10]]  # the second in flight now
            assert await consumer.committed(partition) == 10  # the first batch's, not 20
            third = asyncio.create_task(loop.run_once())
            await until(lambda: len(gated.processed) == 30)
            gated.gates[1].set()
            assert await third == 10
            assert await consumer.committed(partition) == 20
            gated.gates[2].set()
            await loop.settle()
            assert [v for batch in gated.durable for v in batch] == values
            assert await consumer.committed(partition) == 30
        finally:
            await consumer.stop()
            await producer.stop()

    asyncio.run(run())


@pytest.mark.parametrize("handing", [False, True], ids=["flushing", "handing"])
def test_a_worker_killed_before_its_first_commit_loses_nothing(
    bootstrap: str, unique: str, tmp_path: Path, handing: bool
) -> None:
    topic, group, out = f"{unique}.worker", f"{unique}-g", tmp_path / "out.txt"
    values = [f"v{i:03d}" for i in range(120)]

    async def produce() -> None:
        await ensure_topics(bootstrap, [topic])
        producer = await start_producer(bootstrap)
        try:
            await asyncio.gather(*[await producer.send(topic, v.encode()) for v in values])
        finally:
            await producer.stop()

    asyncio.run(produce())
    command = [
        sys.executable, "-m", "tests.common.worker", "--bootstrap", bootstrap, "--topic", topic,
        "--group", group, "--out", str(out), "--expect", str(len(values)), "--batch", "25",
    ] + (["--handing"] if handing else [])  # fmt: skip
    killed = subprocess.run([*command, "--crash-before-commit"], timeout=120, check=False)
    assert killed.returncode == -9
    written = out.read_text().split()
    assert written == values[:25]  # the first batch durable, then killed before its commit
    subprocess.run(command, timeout=120, check=True)
    lines = out.read_text().split()
    assert sorted(set(lines)) == values  # none lost
    assert len(lines) == len(values) + 25  # only the uncommitted first batch came again
