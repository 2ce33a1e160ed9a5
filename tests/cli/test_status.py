"""``driftline status`` on the real broker: a real consumer group of two members, its
partitions and its lag, read back as the members themselves see them."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from typer.testing import CliRunner

from services.cli.main import app
from services.cli.status import collect
from services.common.bus import start_consumer, start_producer

pytestmark = pytest.mark.integration

SENT = {0: 5, 1: 7, 2: 9}  # records published to each partition
COMMITTED = {0: 2, 1: 7}  # partition 2 gets no commit: its lag counts from the beginning


async def _publish(bootstrap: str, topic: str) -> None:
    producer = await start_producer(bootstrap)
    try:
        for partition, count in SENT.items():
            for i in range(count):
                await producer.send_and_wait(topic, f"{i}".encode(), partition=partition)
    finally:
        await producer.stop()


async def _settle(members: list[AIOKafkaConsumer], timeout: float = 60.0) -> None:
    """Poll until the group has handed out every partition between the two members."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for member in members:
            await member.getmany(timeout_ms=100, max_records=1)
        held = [member.assignment() for member in members]
        if all(held) and sum(len(h) for h in held) == len(SENT):
            return
    raise AssertionError(f"the group did not settle: {[m.assignment() for m in members]}")


async def _scenario(bootstrap: str, topic: str, group: str) -> dict[str, Any]:
    await _publish(bootstrap, topic)
    members = [
        await start_consumer(bootstrap, [topic], group, mode="group", client_id=f"{group}-{n}")
        for n in ("a", "b")
    ]
    try:
        await _settle(members)
        for member in members:
            mine = {
                tp: COMMITTED[tp.partition]
                for tp in member.assignment()
                if tp.partition in COMMITTED
            }
            if mine:
                await member.commit(mine)
        held = {
            f"{group}-{n}": sorted(tp.partition for tp in member.assignment())
            for n, member in zip("ab", members, strict=True)
        }
        status = await collect(bootstrap, prefix=group)
        return {"held": held, "status": status}
    finally:
        for member in members:
            await member.stop()


def _by_partition(group: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {row["partition"]: row for row in group["partitions"]}


def test_status_shows_members_their_partitions_and_lag(
    bootstrap: str, unique: str, make_topics: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = f"{unique}.raw"
    make_topics(topic, partitions=len(SENT))
    group = f"{unique}-ingestion"
    found = asyncio.run(_scenario(bootstrap, topic, group))
    held, status = found["held"], found["status"]

    [described] = status["groups"]
    assert described["group"] == group
    members = {m["client_id"]: m for m in described["members"]}
    assert set(members) == set(held)
    for client_id, partitions in held.items():
        assert sorted(p["partition"] for p in members[client_id]["partitions"]) == partitions
        assert {p["topic"] for p in members[client_id]["partitions"]} == {topic}
    rows = _by_partition(described)
    assert {p: row["end"] for p, row in rows.items()} == SENT
    assert {p: row["committed"] for p, row in rows.items()} == {0: 2, 1: 7, 2: None}
    assert {p: row["lag"] for p, row in rows.items()} == {0: 3, 1: 0, 2: 9}
    assert described["lag"] == 12
    holders = {m["member_id"]: m["client_id"] for m in described["members"]}
    for partition, row in rows.items():
        assert partition in held[holders[row["member"]]]
    assert described["assignment"] in ("reported", "derived")

    # The command line, once the members are gone: offsets stay, members do not.
    monkeypatch.setenv("DRIFTLINE_BOOTSTRAP", bootstrap)
    runner = CliRunner()
    result = runner.invoke(app, ["status", "--json", "--prefix", group])
    assert result.exit_code == 0, result.output
    [later] = json.loads(result.output)["groups"]
    assert {p: row["lag"] for p, row in _by_partition(later).items()} == {0: 3, 1: 0, 2: 9}
    shown = runner.invoke(app, ["status", "--prefix", group])
    assert shown.exit_code == 0, shown.output
    assert group in shown.output and "lag=12" in shown.output


def test_status_without_groups_says_so(bootstrap: str, unique: str) -> None:
    status = asyncio.run(collect(bootstrap, prefix=f"{unique}-none"))
    assert status["groups"] == []
    assert status["notes"] == []  # every call answered
