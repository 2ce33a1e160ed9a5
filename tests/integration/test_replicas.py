"""Issue 14 point 2: ingestion and features scale by replicas in consumer groups.

Real processes on the embedded broker: topics with 3 partitions, 2 replicas of
ingestion and of the features service in group mode, sharing one home (and so
one de-dup record each, services/common/seen.py). Every event reaches the
Feast offline store once; then one replica of each is SIGKILLed while a second
batch flows, the survivors take over the killed ones' partitions, and still
every event is there once.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas import topics
from schemas.usecase import load_usecase
from services.common import dataset, featurestore
from services.common.seen import SeenIds
from services.ingestion.statistics import read_snapshots
from tests.integration.test_ingest_path import offline_rows, valid_events
from tests.reliability import tally
from tests.stack import ROOT, Stack, publish_raw, read_topic, wait_until

PARTITIONS = 3
SESSION_TIMEOUT_S = 6.0  # services/common/bus.py start_consumer, group mode

WRITER = """
import sys
from services.common.seen import SeenIds
from services.ingestion.statistics import read_snapshots
seen = SeenIds(sys.argv[1])
for i in range(300):
    seen.add("uc", "features", [f"{sys.argv[2]}-{i}"], state={sys.argv[2]: i})
    seen.unseen("uc", "features", [f"{sys.argv[2]}-{i}"])
"""


def test_two_processes_share_one_seen_record_without_lock_errors(tmp_path: Path) -> None:
    """Replicas on one machine share DRIFTLINE_HOME, so one SQLite file: no 'database is locked'."""
    path = tmp_path / "seen.db"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b", "c")
    ]
    for writer in writers:
        _, error = writer.communicate(timeout=120)
        assert writer.returncode == 0, error
    seen = SeenIds(path)
    assert seen.count("uc", "features") == 900
    assert [seen.state(name) for name in "abc"] == [299, 299, 299]
    seen.close()


async def _group_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        wanted = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        found = await admin.list_consumer_group_offsets(group, partitions=wanted)
    finally:
        await admin.close()
    return {tp.partition: (c.offset if c.offset >= 0 else -1) for tp, c in found.items()}


def group_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset on each partition of ``topic`` (-1: none)."""
    return asyncio.run(_group_offsets(bootstrap, group, topic))


def stored_parts(stack: Stack, usecase: str) -> pd.DataFrame:
    """Every row of every Parquet part, not de-duplicated: a row written twice shows."""
    directory = featurestore.features_dir(stack.home, usecase)
    with dataset.reading(directory):
        parts = sorted(directory.glob("*.parquet"))
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


class Replicas:
    """N processes of one service in group mode, each its own log and health port."""

    def __init__(
        self,
        stack: Stack,
        service: str,
        count: int,
        each: list[dict[str, str]] | None = None,
        **env: str,
    ) -> None:
        self.stack = stack
        self.service = service
        self.names = [f"{service}-{i}" for i in range(1, count + 1)]
        for i, name in enumerate(self.names):
            log = (stack.logs / f"{name}.log").open("ab")
            stack.processes[name] = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}"],
                cwd=ROOT,
                env={
                    **stack.env,
                    "DRIFTLINE_CONSUMER_MODE": "group",
                    "DRIFTLINE_HEALTH_PORT": "0",
                    "DRIFTLINE_PARTITIONS": str(PARTITIONS),
                    **env,
                    **(each[i] if each else {}),
                },
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def logs(self) -> str:
        return "".join(f"--- {n}\n{self.stack.tail(n, 2500)}\n" for n in self.names)


def publish_to_each_partition(bootstrap: str, topic: str, values: list[bytes]) -> dict[int, int]:
    """One value to each partition of ``topic``; the offset each landed at."""
    from services.common.bus import start_producer

    async def send() -> dict[int, int]:
        producer = await start_producer(bootstrap)
        try:
            landed = {}
            for partition, value in enumerate(values):
                metadata = await producer.send_and_wait(topic, value, partition=partition)
                landed[partition] = metadata.offset
            return landed
        finally:
            await producer.stop()

    return asyncio.run(send())


def seconds_until(predicate: Any, since: float, timeout: float = 120) -> float | None:
    done = wait_until(predicate, timeout=timeout, interval=0.2)
    return time.monotonic() - since if done else None


@pytest.mark.integration
@pytest.mark.slow
def test_replicas_in_groups_store_each_event_once_through_a_sigkill(
    stack: Stack, unique: str, make_topics: Any
) -> None:
    spec = load_usecase(ROOT / "usecases" / "credit.yaml").model_copy(update={"name": unique})
    make_topics(
        topics.raw(unique),
        topics.features(unique),
        topics.labels(unique),
        topics.deadletter(unique),
        topics.stats(unique),
        partitions=PARTITIONS,
    )
    generated = valid_events(spec, 2000 + PARTITIONS)
    events, extra = generated[:2000], generated[2000:]
    raw = [json.dumps(e).encode() for e in events]
    small = {"DRIFTLINE_BATCH_EVENTS": "50", "DRIFTLINE_BATCH_ROWS": "50"}
    ingestion = Replicas(stack, "ingestion", 2, **small)
    features = Replicas(stack, "features", 2, **small)
    prefix = stack.env["DRIFTLINE_GROUP_PREFIX"]

    # 1,000 events, 3 partitions, 2 replicas of each: each event stored once.
    publish_raw(stack.bootstrap, topics.raw(unique), raw[:1000])
    assert wait_until(lambda: len(offline_rows(stack, unique)) >= 1000, timeout=300), (
        ingestion.logs() + features.logs()
    )
    first = stored_parts(stack, unique)
    assert len(first) == 1000, first[featurestore.EVENT_ID].value_counts().head()
    assert set(first[featurestore.EVENT_ID]) == {e["event_id"] for e in events[:1000]}
    for name in ingestion.names + features.names:
        assert "stopped service" not in stack.log(name), stack.tail(name)
    # Every partition was consumed and committed by the group.
    committed = group_offsets(stack.bootstrap, f"{prefix}-ingestion", topics.raw(unique))
    assert sum(1 for offset in committed.values() if offset > 0) == PARTITIONS, committed

    # The second 1,000 while one replica of each is SIGKILLed mid-stream.
    publish_raw(stack.bootstrap, topics.raw(unique), raw[1000:])
    # Killed once the second half is on the broker, as the services take it: the pipelined
    # services store its 1,000 rows in about one write, so waiting to see some of them in
    # the store let all land before the kill (1 run in 6).
    killed_at = time.monotonic()
    stack.kill("ingestion-1")
    stack.kill("features-1")
    in_store_at_kill = len(offline_rows(stack, unique))
    tally.add("faults_injected", 2)
    # One marker event on each raw partition, so each killed replica's partitions have
    # work: takeover is done once the group has committed past every marker.
    markers = [{**e, "event_id": f"marker-{i}"} for i, e in enumerate(extra)]
    landed = publish_to_each_partition(
        stack.bootstrap, topics.raw(unique), [json.dumps(m).encode() for m in markers]
    )
    group = f"{prefix}-ingestion"
    ingest_takeover = seconds_until(
        lambda: all(
            offset > landed[p]
            for p, offset in group_offsets(stack.bootstrap, group, topics.raw(unique)).items()
        ),
        killed_at,
    )
    marker_ids = {m["event_id"] for m in markers}
    features_takeover = seconds_until(
        lambda: marker_ids <= set(offline_rows(stack, unique).get(featurestore.EVENT_ID, [])),
        killed_at,
    )
    print(
        f"after SIGKILL: ingestion committed past every marker in {ingest_takeover}s, "
        f"the markers were in the store in {features_takeover}s"
    )
    assert wait_until(lambda: len(offline_rows(stack, unique)) >= 2003, timeout=300), (
        f"{in_store_at_kill} rows at the kill\n" + ingestion.logs() + features.logs()
    )
    time.sleep(2)  # a late duplicate write would land now
    offline = offline_rows(stack, unique)
    wanted = {e["event_id"] for e in events} | marker_ids
    lost = len(wanted - set(offline[featurestore.EVENT_ID]))
    doubled = len(offline) - offline[featurestore.EVENT_ID].nunique()
    # A replica killed between its Parquet write and its de-dup mark leaves that batch
    # to the survivor, which may cut it differently: a second part with the same rows,
    # which the store's reader folds by event id (dataset.unique_events).
    parts = stored_parts(stack, unique)[featurestore.EVENT_ID].value_counts()
    rows = read_topic(stack.bootstrap, topics.features(unique))
    redelivered = len(rows) - len({r["source_event_id"] for r in rows})
    print(
        f"{len(wanted)} events: {lost} lost, {doubled} twice in the store; "
        f"{int((parts > 1).sum())} in two Parquet parts; {redelivered} redelivered on the topic"
    )
    tally.add("events_checked", len(wanted))
    tally.add("events_lost", lost)
    tally.add("events_doubled", doubled)
    tally.add("events_redelivered", redelivered)
    assert (lost, doubled) == (0, 0)
    assert len(offline) == len(wanted)
    assert set(offline[featurestore.EVENT_ID]) == wanted
    assert {r["source_event_id"] for r in rows} == wanted
    assert in_store_at_kill < 2000, "the kill landed after the second batch was done"
    # Within the session timeout, plus one rebalance and one batch on two busy cores.
    for took in (ingest_takeover, features_takeover):
        assert took is not None and took < SESSION_TIMEOUT_S + 10, (
            ingest_takeover,
            features_takeover,
        )
    for name in ("ingestion-2", "features-2"):
        assert stack.processes[name].poll() is None, stack.tail(name)
    tally.add("faults_survived", 2)

    # The imputation statistics followed the partitions: one snapshot a raw partition on
    # <uc>.stats, and across the kill no event learned twice (the survivor took each
    # partition with the statistics recorded beside its seen ids).
    def learned() -> dict[int, int]:
        snapshots = asyncio.run(read_snapshots(stack.bootstrap, unique))
        return {p: int(s["rows"]) for p, s in snapshots.items()}

    wait_until(lambda: sum(learned().values()) >= len(wanted), timeout=30, interval=0.5)
    rows_learned = learned()
    print(f"statistics: rows learned per raw partition {rows_learned}, of {len(wanted)} events")
    assert sorted(rows_learned) == list(range(PARTITIONS))
    assert sum(rows_learned.values()) <= len(wanted)


def answered_model(base: str, usecase: str) -> tuple[str, str] | None:
    """The (model name, version) one prediction from ``base`` came from, or None."""
    import httpx

    from tests.inference.conftest import raw_events, request_fields

    event, _ = next(iter(raw_events(1, seed=5)))
    body = {"entity_id": event["entity_id"], "features": request_fields(event)}
    try:
        answer = httpx.post(f"{base}/v1/predict/{usecase}", json=body, timeout=10)
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return None
    return answer.json()["model_name"], str(answer.json()["model_version"])


@pytest.mark.integration
@pytest.mark.slow
def test_every_inference_replica_follows_a_promotion(stack: Stack, unique: str) -> None:
    from services.common.broker import free_port
    from tests.reliability.helpers import publish_promotion, register_credit_model, wait_ready

    spec = load_usecase(ROOT / "usecases" / "credit.yaml").model_copy(update={"name": unique})
    first = register_credit_model(stack.home, spec, f"{unique}-first")
    publish_promotion(stack.bootstrap, first)
    ports = [free_port(), free_port()]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    each = [{"DRIFTLINE_PORT": str(port)} for port in ports]  # each its own API port
    replicas = Replicas(stack, "inference", 2, each, DRIFTLINE_USECASES=unique)
    for base, name in zip(bases, replicas.names, strict=True):
        wait_ready(stack, base, log=name, timeout=180)
    expected = (first.model_name, str(first.model_version))
    assert [answered_model(base, unique) for base in bases] == [expected, expected]

    second = register_credit_model(stack.home, spec, f"{unique}-second")
    promoted_at = time.monotonic()
    publish_promotion(stack.bootstrap, second)
    expected = (second.model_name, str(second.model_version))
    for base in bases:
        assert wait_until(lambda b=base: answered_model(b, unique) == expected, timeout=60), (
            base,
            answered_model(base, unique),
        )
    took = time.monotonic() - promoted_at
    print(f"both inference replicas served the new champion {took:.1f}s after its promotion")
