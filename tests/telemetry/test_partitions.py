"""Telemetry on topics of 3 partitions beside topics made earlier with 1 (issue 18).

The production profile makes its topics with 3 partitions (``DRIFTLINE_PARTITIONS=3``),
but a topic made earlier keeps the count it was made with: the global topics
made by an earlier run or a CLI verb, a use case's labels published before the
stack came up. faust refuses to write a table from a topic whose partition
count is not its changelog's (``PartitionsMismatch``): the worker crashed on
the first candidate, or on the first windowed write from a 1-partition stream.
Here it stays up, counts both streams, tells the candidate, and recovers it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from schemas import topics
from schemas.events import ModelCandidate, Prediction, Promotion, Window
from services.common.broker import free_port
from services.common.bus import ensure_topics
from tests.stack import Stack, publish_raw, read_topic, wait_until
from tests.telemetry.test_service import document, partitions_of, start_telemetry

pytestmark = pytest.mark.integration


def candidate(uc: str) -> bytes:
    event = ModelCandidate(
        usecase=uc, model_name=uc, model_version="2", trainer="batch", flavor="torch",
        metrics={"roc_auc": 0.87}, data_window=Window(rows=1000),
        artifact_uri=f"mlflow://{uc}/2", artifact_sha256="ab" * 32,
    )  # fmt: skip
    return event.model_dump_json().encode()


def predictions(uc: str, count: int) -> list[bytes]:
    return [
        Prediction(
            usecase=uc, source_event_id=f"e{i}", entity_id=f"c{i}", model_name=uc,
            model_version="1", variant="champion", prediction=i % 2, latency_ms=2.0,
        ).model_dump_json().encode()
        for i in range(count)
    ]  # fmt: skip


def view_of(port: int, uc: str) -> dict[str, Any]:
    return (document(port) or {}).get(uc) or {}


def told(port: int, uc: str, raw: int, labels: int, joined: int = 10) -> bool:
    """Whether the view has the streams' counts, the live join and the loop's story."""
    view = view_of(port, uc)
    if not view:
        return False
    seen = {name: stream["seen"] for name, stream in view["throughput"].items()}
    kinds = {m["kind"] for m in view["timeline"]}
    live = view["models"]["live"].get("champion", {})
    return (
        seen["raw"] == raw
        and seen["labels"] == labels
        and live.get("joined") == joined
        and {"champion", "candidate"} <= kinds
    )


def test_mixed_partition_counts_keep_the_worker_up(
    stack: Stack, unique: str, bootstrap: str
) -> None:
    # Made before the stack with one partition: the global topics (as the CLI verbs and
    # every earlier test make them) and this use case's labels.
    asyncio.run(ensure_topics(bootstrap, [*topics.GLOBAL_TOPICS, topics.labels(unique)], 1))
    port = free_port()
    start_telemetry(stack, port, DRIFTLINE_PARTITIONS="3")  # it makes the rest, with 3
    raw, labels = topics.raw(unique), topics.labels(unique)
    counts = asyncio.run(partitions_of(bootstrap, [raw, labels, *topics.GLOBAL_TOPICS]))
    assert counts[raw] == 3 and counts[labels] == 1, counts

    publish_raw(bootstrap, raw, [json.dumps({"event_id": f"e{i}"}).encode() for i in range(30)])
    publish_raw(bootstrap, topics.predictions(unique), predictions(unique, 10))
    first = Promotion(usecase=unique, action="promote", model_name=unique, model_version="1",
                      reason="first model")  # fmt: skip
    publish_raw(bootstrap, topics.MODELS_PROMOTIONS, [first.model_dump_json().encode()])
    publish_raw(bootstrap, topics.MODELS_CANDIDATES, [candidate(unique)])
    time.sleep(1.0)  # the labels alone, after the table writes are due: written from them
    publish_raw(
        bootstrap,
        labels,
        [json.dumps({"event_id": f"e{i}", "label": i % 2}).encode() for i in range(10)],
    )
    seen = wait_until(lambda: told(port, unique, 30, 10), 60)
    assert seen, (view_of(port, unique), stack.tail("telemetry"))
    # Counts of the 1-partition labels reach their own tables' changelog: one more raw
    # event after the next due time writes the pending counts.
    time.sleep(1.0)
    publish_raw(bootstrap, raw, [json.dumps({"event_id": "e30"}).encode()])
    publish_raw(bootstrap, labels, [json.dumps({"event_id": "e30", "label": 0}).encode()])
    assert wait_until(lambda: told(port, unique, 31, 11), 30), view_of(port, unique)
    assert stack.processes["telemetry"].poll() is None, stack.tail("telemetry")
    assert "PartitionsMismatch" not in stack.log("telemetry")

    # Each table's changelog has the partition count of the topics it is written from.
    app_id = f"{stack.env['DRIFTLINE_GROUP_PREFIX']}-telemetry"
    wanted = {
        f"{app_id}-throughput-p3-changelog": 3,  # the use case's streams made with 3
        f"{app_id}-throughput-p1-changelog": 1,  # its labels, made earlier with 1
        f"{app_id}-candidates-p{counts[topics.MODELS_CANDIDATES]}-changelog": counts[
            topics.MODELS_CANDIDATES
        ],
        f"{app_id}-promotions-p1-changelog": 1,
    }
    assert asyncio.run(partitions_of(bootstrap, list(wanted))) == wanted
    # The labels' counts were written to theirs (from the labels, faust's rule).
    written = f"{app_id}-throughput-p1-changelog"
    assert wait_until(lambda: len(read_topic(bootstrap, written, idle=0.5)) >= 1, 30)

    # SIGKILL and start again: the candidate comes back from its changelog, replayed once.
    before = stack.logged("telemetry", "recovered ")
    stack.kill("telemetry")
    start_telemetry(stack, port, DRIFTLINE_PARTITIONS="3")

    def recovered() -> bool:
        kinds = {m["kind"] for m in view_of(port, unique).get("timeline", [])}
        return {"champion", "candidate"} <= kinds

    assert wait_until(recovered, 30), (view_of(port, unique), stack.tail("telemetry"))
    time.sleep(1.0)  # a second replay would be logged by now
    assert stack.logged("telemetry", "recovered ") == before + 1, stack.tail("telemetry")
