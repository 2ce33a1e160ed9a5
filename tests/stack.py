"""Running driftline services as real processes in tests: start, kill, wait, read topics."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent


class Stack:
    """Service processes sharing one broker, one home and one use-case directory."""

    def __init__(self, bootstrap: str, home: Path, usecases_dir: Path, logs: Path) -> None:
        self.env = {
            **os.environ,
            "DRIFTLINE_BOOTSTRAP": bootstrap,
            "DRIFTLINE_HOME": str(home),
            "DRIFTLINE_USECASES_DIR": str(usecases_dir),
            "DRIFTLINE_LOG_LEVEL": "INFO",
            # Each stack its own consumer groups on the shared broker.
            "DRIFTLINE_GROUP_PREFIX": f"t{uuid.uuid4().hex[:10]}",
            "PYTHONUNBUFFERED": "1",
        }
        self.bootstrap = bootstrap
        self.home = home
        self.logs = logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, service: str, **env: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{service}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            cwd=ROOT,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[service] = process
        return process

    def kill(self, service: str) -> None:
        """SIGKILL: no cleanup, no final commit."""
        process = self.processes.pop(service)
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def log(self, service: str) -> str:
        path = self.logs / f"{service}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logged(self, service: str, text: str) -> int:
        """How often ``text`` is in the service's log (every start appends to it)."""
        return self.log(service).count(text)

    def tail(self, service: str, chars: int = 4000) -> str:
        return self.log(service)[-chars:]

    def start_and_wait(
        self, service: str, ready: str, timeout: float = 300, **env: str
    ) -> subprocess.Popen[bytes]:
        """Start ``service`` and wait until its log says ``ready`` once more."""
        before = self.logged(service, ready)
        process = self.start(service, **env)
        started = wait_until(lambda: self.logged(service, ready) > before, timeout)
        assert started, self.tail(service)
        return process


def usecase_copy(source: Path, directory: Path, name: str) -> Path:
    """A use-case file copied under a new name (the name is the file's stem)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{name}.yaml"
    shutil.copy(source, target)
    return target


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def read_topic(bootstrap: str, topic: str, idle: float = 1.0) -> list[dict[str, Any]]:
    """Every message on ``topic`` (from the beginning), as JSON objects."""

    async def read() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
        )
        await consumer.start()
        found: list[dict[str, Any]] = []
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=int(idle * 1000), max_records=5000)
                if not batches:
                    return found
                found += [json.loads(r.value) for rs in batches.values() for r in rs]
        finally:
            await consumer.stop()

    return asyncio.run(read())


def publish_raw(bootstrap: str, topic: str, values: Iterable[bytes]) -> int:
    """Publish raw bytes (valid JSON or not), waiting for every acknowledgement.

    The topic is created first (one partition), as every driftline producer does.
    """
    from services.common.bus import ensure_topics, start_producer

    async def send() -> int:
        await ensure_topics(bootstrap, [topic])
        producer = await start_producer(bootstrap)
        try:
            futures = [await producer.send(topic, value) for value in values]
            for future in futures:
                await future
            return len(futures)
        finally:
            await producer.stop()

    return asyncio.run(send())


def committed(bootstrap: str, group: str, topic: str, partition: int = 0) -> int | None:
    """The offset ``group`` has committed on one partition of ``topic`` (None: none yet)."""
    from services.common.bus import start_consumer

    async def read() -> int | None:
        consumer = await start_consumer(bootstrap, [topic], group)
        try:
            offset: int | None = await consumer.committed(TopicPartition(topic, partition))
            return offset
        finally:
            await consumer.stop()

    return asyncio.run(read())
