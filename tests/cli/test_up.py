"""``driftline up`` and ``driftline broker`` as processes: they start, and stop cleanly."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from schemas import topics
from services.common.broker import free_port, port_open
from services.common.bus import ensure_topics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SPEC = """
task: regression
fields:
  x: {type: float}
features:
  - {kind: passthrough, field: x}
"""


def start(
    args: list[str], env: dict[str, str], *, own_group: bool = False
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        start_new_session=own_group,  # like a terminal: Ctrl-C goes to the whole group
    )


def wait_for(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


async def list_topics(bootstrap: str) -> set[str]:
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await client.start()
    try:
        return set(await client.list_topics())
    finally:
        await client.close()


def toy_env(tmp_path: Path) -> dict[str, str]:
    """A fresh broker address, home and use-case folder holding the toy use case."""
    usecases = tmp_path / "usecases"
    usecases.mkdir()
    (usecases / "toy.yaml").write_text(SPEC)
    return {
        "DRIFTLINE_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "DRIFTLINE_HOME": str(tmp_path / "home"),
        "DRIFTLINE_USECASES_DIR": str(usecases),
    }


def test_broker_command_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    process = start(["broker"], {"DRIFTLINE_BOOTSTRAP": bootstrap, "DRIFTLINE_HOME": str(tmp_path)})
    try:
        assert wait_for(lambda: port_open("127.0.0.1", int(bootstrap.split(":")[1])))
        asyncio.run(ensure_topics(bootstrap, ["probe.raw"]))
        assert "probe.raw" in asyncio.run(list_topics(bootstrap))
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "broker stopped" in output
    assert not port_open("127.0.0.1", int(bootstrap.split(":")[1]))


def test_up_creates_every_topic_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = toy_env(tmp_path)
    bootstrap = env["DRIFTLINE_BOOTSTRAP"]
    process = start(["up", "--only", ""], env)
    try:
        wanted = set(topics.all_topics(["toy"]))
        assert wait_for(lambda: port_open("127.0.0.1", int(bootstrap.split(":")[1])))
        assert wait_for(lambda: wanted <= asyncio.run(list_topics(bootstrap)))
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "topics ready" in output
    assert not port_open("127.0.0.1", int(bootstrap.split(":")[1])), "broker left running"


def test_ctrl_c_in_a_terminal_stops_the_services_before_the_broker(tmp_path: Path) -> None:
    """A terminal's Ctrl-C signals the whole foreground group; the services still stop
    cleanly (their last commits need the broker), none has to be killed."""
    env = toy_env(tmp_path)
    bootstrap = env["DRIFTLINE_BOOTSTRAP"]
    process = start(["up", "--only", "ingestion,features"], env, own_group=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        for ready in ("ingesting usecases", "feast definitions applied"):
            assert wait_for(lambda r=ready: r in "".join(lines), timeout=120), "".join(lines)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=90)
        reader.join(timeout=10)
    output = "".join(lines)
    assert process.returncode == 0, output
    assert "did not stop" not in output, output
    for service in ("ingestion", "features"):
        assert f"stopped service={service}" in output, output
    assert not port_open("127.0.0.1", int(bootstrap.split(":")[1])), "broker left running"


def test_tansu_is_shipped() -> None:
    from services.common.broker import tansu_binary

    assert tansu_binary().exists()
    assert shutil.which(str(tansu_binary()))


def test_up_refuses_a_replica_count_below_one(tmp_path: Path) -> None:
    process = start(["up", "--replicas", "ingestion=2,registry=0"], toy_env(tmp_path))
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2, output
    assert "registry needs at least 1 replica, got 0" in output, output


def test_up_starts_replicas_in_group_mode_and_warns_above_the_partitions(tmp_path: Path) -> None:
    env = {**toy_env(tmp_path), "DRIFTLINE_PARTITIONS": "1"}
    process = start(["up", "--only", "ingestion", "--replicas", "ingestion=2"], env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: "".join(lines).count("ingesting usecases") == 2, timeout=120), (
            "".join(lines)
        )
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=90)
        reader.join(timeout=10)
    output = "".join(lines)
    assert process.returncode == 0, output
    assert "ingestion: 2 replicas but topics have 1 partition(s)" in output, output
    for name in ("ingestion-1", "ingestion-2"):
        assert f"started {name} (:" in output, output
        assert f"{name} | " in output, output


class FakeSupervisor:
    """Records what would start; 'failed' so that waiting for readiness returns at once."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(file=open(os.devnull, "w"))  # noqa: SIM115
        self.started: dict[str, dict[str, str]] = {}

    def start(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
        self.started[name] = extra_env or {}

    def failed(self) -> list[tuple[str, int]]:
        return [("none", 1)]


def test_each_inference_replica_gets_its_own_api_port() -> None:
    from services.cli.up import start_services

    supervisor = FakeSupervisor()
    chosen = ["features", "inference", "registry"]
    replicas = {"inference": 2, "features": 2}
    urls = start_services(supervisor, chosen, "http://127.0.0.1:18000", replicas)  # type: ignore[arg-type]
    assert sorted(supervisor.started) == [
        "features-1",
        "features-2",
        "inference-1",
        "inference-2",
        "registry",
    ]
    assert urls[0] == "http://127.0.0.1:18000" and len(set(urls)) == 2
    assert "DRIFTLINE_PORT" not in supervisor.started["inference-1"]
    assert urls[1].endswith(":" + supervisor.started["inference-2"]["DRIFTLINE_PORT"])
    assert supervisor.started["features-2"]["DRIFTLINE_CONSUMER_MODE"] == "group"
    assert "DRIFTLINE_CONSUMER_MODE" not in supervisor.started["registry"]
    health = {env["DRIFTLINE_HEALTH_PORT"] for env in supervisor.started.values()}
    assert len(health) == 5


def test_a_singleton_with_replicas_runs_one_active_and_standbys() -> None:
    from services.cli.up import start_services

    supervisor = FakeSupervisor()
    chosen = ["ingestion", "online_trainer", "registry"]
    replicas = {"registry": 2, "online_trainer": 3}
    start_services(supervisor, chosen, "http://127.0.0.1:18000", replicas)  # type: ignore[arg-type]
    assert sorted(supervisor.started) == [
        "ingestion",
        "online_trainer-1",
        "online_trainer-2",
        "online_trainer-3",
        "registry-1",
        "registry-2",
    ]
    for name, env in supervisor.started.items():
        single = name == "ingestion"
        assert ("DRIFTLINE_STANDBY" in env) is not single, (name, env)
        assert "DRIFTLINE_CONSUMER_MODE" not in env, (name, env)  # a singleton reads it all
    assert supervisor.started["registry-2"]["DRIFTLINE_STANDBY"] == "true"
