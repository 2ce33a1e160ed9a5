"""An embedded stack for benchmarks: a private broker, home and use cases, service processes.

Services run exactly as in production (``python -m services.<name>``), each
with its own ``DRIFTLINE_HEALTH_PORT`` so its Prometheus ``/metrics`` can be
read. Use cases are copies of a repository use case under new names, with
optional overrides, so that each repetition of a benchmark has topics of its own.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from schemas.usecase import UseCase, load_usecase
from services.common.broker import EmbeddedBroker, free_port

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
USECASES = ROOT / "usecases"


class StackError(RuntimeError):
    """A benchmark stack that did not come up or did not finish its work."""


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in, mappings merged key by key.

    >>> deep_merge({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 9}})
    {'a': {'b': 9, 'c': 2}, 'd': 3}
    """
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def write_usecase(
    directory: Path, name: str, source: str = "credit", overrides: dict[str, Any] | None = None
) -> UseCase:
    """Copy ``usecases/<source>.yaml`` to ``directory/<name>.yaml`` with overrides; load it."""
    document = yaml.safe_load((USECASES / f"{source}.yaml").read_text())
    document = deep_merge(document, overrides or {})
    document.pop("name", None)  # the file's stem names the use case
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_usecase(path)


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text as ``{(sample name, sorted labels): value}``.

    >>> parse_metrics('# TYPE x gauge\\nx{usecase="a"} 3.0\\n')
    {('x', (('usecase', 'a'),)): 3.0}
    """
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return found


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class BenchStack:
    """A broker on a free port and service processes sharing one home and use-case directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.home = workdir / "home"
        self.usecases_dir = workdir / "usecases"
        self.logs = workdir / "logs"
        for path in (self.home, self.usecases_dir, self.logs):
            path.mkdir(parents=True, exist_ok=True)
        self.broker = EmbeddedBroker(f"127.0.0.1:{free_port()}", log_path=self.logs / "tansu.log")
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def add_usecase(
        self, name: str, source: str = "credit", overrides: dict[str, Any] | None = None
    ) -> UseCase:
        return write_usecase(self.usecases_dir, name, source, overrides)

    def usecase(self, name: str) -> UseCase:
        return load_usecase(self.usecases_dir / f"{name}.yaml")

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DRIFTLINE_BOOTSTRAP": self.bootstrap,
            "DRIFTLINE_HOME": str(self.home),
            "DRIFTLINE_USECASES_DIR": str(self.usecases_dir),
            "DRIFTLINE_LOG_LEVEL": "WARNING",
            "PYTHONWARNINGS": "ignore",
            **extra,
        }

    def start_broker(self) -> None:
        self.broker.start()

    def start(self, service: str, name: str | None = None, **env: str) -> None:
        """Start ``python -m services.<service>`` with a health port of its own
        (``ports[name]``; for inference, its API's port, which serves its health).

        ``name`` (the service's, unless given) is the process's in this stack's
        ``processes``, ``ports`` and log file names: a second replica of a service
        needs a name of its own.
        """
        name = name or service
        port = free_port()
        if service == "inference":
            ports = {"DRIFTLINE_HOST": "127.0.0.1", "DRIFTLINE_PORT": str(port)}
        else:
            ports = {"DRIFTLINE_HEALTH_PORT": str(port)}
        log = (self.logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            cwd=ROOT,
            env=self.env(**ports, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.ports[name] = port

    def ready(self, service: str) -> bool:
        try:
            url = f"http://127.0.0.1:{self.ports[service]}/readyz"
            with urllib.request.urlopen(url, timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def wait_ready(self, services: Iterable[str], timeout: float = 120.0) -> None:
        for service in services:
            process = self.processes[service]

            def up(service: str = service, process: Any = process) -> bool:
                if process.poll() is not None:
                    status = process.returncode
                    raise StackError(f"{service} exited with {status}: {self.tail(service)}")
                return self.ready(service)

            if not wait_for(up, timeout, interval=0.2):
                raise StackError(f"{service} not ready in {timeout}s: {self.tail(service)}")

    def metrics(self, service: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        url = f"http://127.0.0.1:{self.ports[service]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return parse_metrics(answer.read().decode())

    def metric(self, service: str, name: str, **labels: str) -> float:
        """One sample's value (0 when absent, e.g. a counter not incremented yet)."""
        try:
            found = self.metrics(service)
        except OSError:
            return 0.0
        return found.get((name, tuple(sorted(labels.items()))), 0.0)

    def pids(self) -> dict[str, int]:
        """The broker's and every running service's process id, by name."""
        found = {name: p.pid for name, p in self.processes.items() if p.poll() is None}
        if self.broker.process is not None:
            found["broker"] = self.broker.process.pid
        return found

    def tail(self, service: str, chars: int = 2000) -> str:
        path = self.logs / f"{service}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self, service: str) -> None:
        process = self.processes.pop(service)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        for service in list(self.processes):
            self.stop(service)
        self.broker.stop()

    def __enter__(self) -> BenchStack:
        self.start_broker()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def publish(
    bootstrap: str, topic: str, payloads: list[bytes], keys: list[bytes] | None = None
) -> float:
    """Publish every payload (topic created first) and wait for every ack; return the
    monotonic time of the first send."""
    from services.common.bus import ensure_topics, start_producer

    await ensure_topics(bootstrap, [topic])
    producer = await start_producer(bootstrap)
    try:
        started = time.monotonic()
        futures = []
        for index, payload in enumerate(payloads):
            key = keys[index] if keys is not None else None
            futures.append(await producer.send(topic, payload, key=key))
        await asyncio.gather(*futures)
        return started
    finally:
        await producer.stop()
