"""A minimal at-least-once worker, run as a child process by the consume-loop tests.

It appends each message's value to a file (its side effect), then commits.
With ``--crash-before-commit`` it dies like SIGKILL after the side effects of
its first batch are written but before the offsets are committed. With
``--handing`` the processor hands each batch off, so the loop is pipelined (the
next batch is read while one is written).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from services.common.bus import start_consumer, start_producer
from services.common.consume import ConsumeLoop
from services.common.deadletter import DeadLetterPolicy


class AppendToFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending: list[str] = []

    async def process(self, record: Any) -> None:
        self.pending.append(record.value.decode())

    async def flush(self) -> None:
        with self.path.open("a") as out:
            out.writelines(line + "\n" for line in self.pending)
            out.flush()
            os.fsync(out.fileno())
        self.pending.clear()


class HandToFile(AppendToFile):
    async def hand_off(self) -> Awaitable[None]:
        batch, self.pending = self.pending, []
        return self._write(batch)

    async def _write(self, batch: list[str]) -> None:
        await asyncio.sleep(0.05)  # the write takes a while: the next batch is read meanwhile
        with self.path.open("a") as out:
            out.writelines(line + "\n" for line in batch)
            out.flush()
            os.fsync(out.fileno())


async def main(args: argparse.Namespace) -> None:
    consumer = await start_consumer(args.bootstrap, [args.topic], args.group)
    producer = await start_producer(args.bootstrap)

    async def crash(processed: int) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    loop = ConsumeLoop(
        consumer,
        (HandToFile if args.handing else AppendToFile)(Path(args.out)),
        DeadLetterPolicy("test-worker", producer),
        max_records=args.batch,
        before_commit=crash if args.crash_before_commit else None,
    )
    while loop.processed < args.expect:
        await loop.run_once()
    await loop.settle()
    await consumer.stop()
    await producer.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--crash-before-commit", action="store_true")
    parser.add_argument("--handing", action="store_true")
    asyncio.run(main(parser.parse_args()))
