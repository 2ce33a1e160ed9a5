"""Consumer lag as the consuming service sees it: ``driftline_consumer_lag`` per partition.

Lag here is a partition's end offset (its high watermark, as of the
consumer's last fetch from it) minus the consumer's position (the next
offset it will hand over). It is read from what aiokafka already holds, with
no request of its own, once per batch of the consume loop
(:class:`services.common.consume.ConsumeLoop`). Each replica exports the lag
of the partitions it holds now (Prometheus's ``instance`` label tells replicas
apart): a partition handed to another replica in a rebalance leaves this one's
series, so the sum over a service's replicas is its group's lag. ``driftline
status`` shows the lag from the group's committed offsets instead (behind this
one by at most the batch in flight), and Grafana also has kafka-exporter's.
"""

from __future__ import annotations

import weakref

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Gauge

CONSUMER_LAG = Gauge(
    "driftline_consumer_lag",
    "records of a partition the service holds that it has not handed over yet: "
    "the end offset at the last fetch minus the consumer's position",
    ["topic", "partition"],
)

# The partitions each consumer has a series for, so that those it no longer holds go.
_OBSERVED: weakref.WeakKeyDictionary[AIOKafkaConsumer, set[TopicPartition]] = (
    weakref.WeakKeyDictionary()
)


async def observe_lag(consumer: AIOKafkaConsumer) -> None:
    """Set the lag of every partition ``consumer`` holds and has fetched from at least once."""
    observed = _OBSERVED.setdefault(consumer, set())
    held = consumer.assignment()
    for gone in observed - held:
        CONSUMER_LAG.remove(gone.topic, str(gone.partition))
    observed &= held
    for partition in held:
        end = consumer.highwater(partition)
        if end is None:  # not fetched from yet: its position may not be known either
            continue
        position = await consumer.position(partition)
        CONSUMER_LAG.labels(partition.topic, str(partition.partition)).set(max(end - position, 0))
        observed.add(partition)
