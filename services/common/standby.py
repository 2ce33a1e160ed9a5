"""Active and standby: of a singleton's processes one works, the others wait to take over.

The online trainer, the registry, the batch trainer and the drift detector
each keep one model of the world (a learner, a promotion lineup, a queue of
training requests, drift windows); two copies at work would register two
candidates, make two decisions, train one request twice. So with
``DRIFTLINE_STANDBY=true`` a singleton's body runs only while its process
holds the **lease**: partition 0 of the one-partition topic ``driftline.lease``,
handed out by the broker's group coordinator to one member of the consumer
group :func:`lease_group` (the service's group, per served use-case set).
Nothing here decides who leads; Kafka's group membership does:

- the first member to join gets partition 0 and starts the body; a process
  that joins later gets nothing and stands by (``/readyz`` answers 200 with
  ``"status": "standby"``, ``driftline_lease_active`` is 0);
- the assignor (:class:`LeaseAssignor`, run by the group's leader as any
  Kafka assignor) leaves the partition with the member whose metadata says
  it holds the lease, so a standby that joins does not move it; the holder's
  body keeps running through that rebalance (a revocation with the
  membership intact);
- a holder that stops (SIGTERM) leaves the group at once and a standby takes
  over in one rebalance; a holder killed with SIGKILL is dropped when its
  session times out (``SESSION_TIMEOUT_MS``), then a standby takes over;
- a holder that loses its membership (the coordinator forgot it: a revocation
  with its member id reset, or an assignment without partition 0) or cannot
  reach the broker for ``MAX_SILENCE_SECONDS`` stops its body at once, before
  the coordinator can have handed the partition to anyone else, and joins
  again as a standby with a new membership.

A stalled holder (its event loop blocked past the session timeout) is
dropped by the coordinator while it cannot notice; when it runs again it
stops at its first heartbeat or contact check. What it did in between is
what the services' idempotence already covers: decisions and candidates are
keyed by event id, requests are committed after their candidate.

Measured on the embedded tansu (0.6): a member's first join completes 3.0 s
after its JoinGroup (an initial rebalance delay; Apache Kafka's default is
3 s too), a second member's join leaves partition 0 where it was, and a
SIGKILLed holder's partition reached the standby 8.3 s after the kill (6 s
session timeout, then a 3 s rebalance).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.errors import KafkaError
from prometheus_client import Gauge

from services.common.bus import ensure_topics, within
from services.common.health import HealthServer
from services.common.settings import CommonSettings

logger = logging.getLogger(__name__)

ServiceBody = Callable[[asyncio.Event, HealthServer], Awaitable[None]]

# The services that run once: with DRIFTLINE_STANDBY=true a second process stands by.
SINGLETONS = ("batch_trainer", "drift_detector", "online_trainer", "registry")
LEASE_TOPIC = "driftline.lease"
LEASE = TopicPartition(LEASE_TOPIC, 0)
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 1000
REBALANCE_TIMEOUT_MS = 3000
# A holder the broker has not answered for this long stops: the coordinator drops a member
# 6 s after the last heartbeat it received, and heartbeats go every second.
MAX_SILENCE_SECONDS = 4.0
# How long a body told to stop (the lease lost) may take before it is cancelled.
STOP_GRACE_SECONDS = 5.0
# How long one join of the lease group may take (a first join takes about 3 s); a join not
# done by then is given up and tried again with a new member, after RETRY_SECONDS.
JOIN_TIMEOUT_SECONDS = 30.0
RETRY_SECONDS = 1.0
# How long leaving the group may take: aiokafka's stop waits for its coordination task,
# which against a lost broker may not end; the member is then left to its session timeout.
LEAVE_TIMEOUT_SECONDS = 10.0

ACTIVE = Gauge(
    "driftline_lease_active",
    "1 while this process holds its singleton's lease (active), 0 while it stands by",
    ["service"],
)


def lease_group(settings: CommonSettings, service: str) -> str:
    """The consumer group whose partition 0 is ``service``'s lease.

    One per service group and served use-case set: online trainers of other
    use cases are other singletons.

    >>> lease_group(CommonSettings(), "registry")
    'driftline-registry.lease'
    >>> lease_group(CommonSettings(usecases="phishing,credit"), "online_trainer")
    'driftline-online_trainer.lease.credit.phishing'
    """
    group = f"{settings.consumer_group(service)}.lease"
    if settings.usecases is not None:
        group += "." + ".".join(sorted(settings.usecases))
    return group


class LeaseAssignor:
    """Kafka's pluggable assignment, for one partition: it stays with its holder.

    Each member's join metadata says whether it holds the lease now (a held
    lease not lost). The group's leader gives partition 0 to that member, or,
    when none holds it, to the first member by id. One instance per member:
    its claim is its own (aiokafka's sticky assignor keeps its memory in the
    class, which a process that joins again would inherit).
    """

    name = "driftline-lease"
    version = 0
    HOLDER = b"holder"

    def __init__(self, lease: Lease) -> None:
        self.lease = lease

    def metadata(self, topics: Any) -> ConsumerProtocolMemberMetadata:
        holds = self.lease.held.is_set() and not self.lease.lost.is_set()
        return ConsumerProtocolMemberMetadata(
            self.version, list(topics), self.HOLDER if holds else b""
        )

    def assign(
        self, cluster: ClusterMetadata, members: dict[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        holders = sorted(m for m, meta in members.items() if meta.user_data == self.HOLDER)
        if len(holders) > 1:
            logger.warning("lease group: %d members say they hold the lease", len(holders))
        owner = (holders or sorted(members))[0]
        return {
            member: ConsumerProtocolMemberAssignment(
                self.version, [(LEASE_TOPIC, [0])] if member == owner else [], b""
            )
            for member in members
        }

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        pass


class Lease(ConsumerRebalanceListener):  # type: ignore[misc]
    """Membership of the lease group; ``held`` once partition 0 is ours, ``lost`` after."""

    def __init__(self, bootstrap: str, group: str, client_id: str) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.client_id = client_id
        self.held = asyncio.Event()
        self.lost = asyncio.Event()
        self.reason = ""
        self.consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.max_silence = MAX_SILENCE_SECONDS

    async def start(self) -> None:
        """Join the group (returns once the first assignment is in).

        aiokafka's start waits for the first assignment without a bound; a join
        the coordinator never completes (a broker lost mid-join) raises
        ``TimeoutError`` after ``JOIN_TIMEOUT_SECONDS`` here, the consumer stopped.
        """
        if not await within(ensure_topics(self.bootstrap, [LEASE_TOPIC]), JOIN_TIMEOUT_SECONDS):
            raise TimeoutError(f"lease topic {LEASE_TOPIC}: no answer in {JOIN_TIMEOUT_SECONDS}s")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            client_id=self.client_id,
            enable_auto_commit=False,
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
            partition_assignment_strategy=(LeaseAssignor(self),),
        )
        consumer.subscribe([LEASE_TOPIC], listener=self)
        self.consumer = consumer  # the listener reads its member id during the join
        try:
            if not await within(consumer.start(), JOIN_TIMEOUT_SECONDS):
                raise TimeoutError(f"lease group {self.group}: no join in {JOIN_TIMEOUT_SECONDS}s")
        except BaseException:
            await self._leave()
            raise
        self._tasks = [
            asyncio.create_task(self._poll(), name="lease-poll"),
            asyncio.create_task(self._watch(), name="lease-watch"),
        ]

    async def stop(self) -> None:
        """Leave the group (a standby takes over in one rebalance)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._leave()

    async def _leave(self) -> None:
        if self.consumer is None:
            return
        if not await within(self.consumer.stop(), LEAVE_TIMEOUT_SECONDS):
            logger.warning(
                "lease group %s: not left in %ss (no broker?); the coordinator drops the "
                "member at its session timeout",
                self.group,
                LEAVE_TIMEOUT_SECONDS,
            )

    def _member_id(self) -> str:
        # aiokafka resets the member id to "" when the coordinator forgot the member.
        coordinator = getattr(self.consumer, "_coordinator", None)
        return str(getattr(coordinator, "member_id", "") or "")

    def lose(self, reason: str) -> None:
        if self.held.is_set() and not self.lost.is_set():
            self.reason = reason
            self.lost.set()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if LEASE in revoked and not self._member_id():
            self.lose("the group coordinator no longer knows this member")

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if LEASE in assigned:
            if not self.lost.is_set():
                self.held.set()
        else:
            self.lose("the lease went to another member")

    async def _poll(self) -> None:
        """Keep the member polling: an idle consumer leaves its group after a while."""
        assert self.consumer is not None
        while True:
            try:
                await self.consumer.getmany(timeout_ms=1000)
            except KafkaError as exc:
                logger.debug("lease poll: %s", exc)
                await asyncio.sleep(1.0)

    async def _watch(self) -> None:
        """Drop a held lease when the broker has not answered for ``max_silence`` seconds.

        The silence is judged before the next contact too: a process that was
        stalled (its loop blocked, or stopped) past it may have been dropped by
        the coordinator meanwhile, whatever the broker answers now.
        """
        assert self.consumer is not None
        last_contact = time.monotonic()
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL_MS / 1000)
            if self._silent_for(last_contact):
                return
            try:
                await asyncio.wait_for(self.consumer.topics(), timeout=self.max_silence)
                last_contact = time.monotonic()
            except (KafkaError, OSError, TimeoutError):
                if self._silent_for(last_contact):
                    return

    def _silent_for(self, last_contact: float) -> bool:
        silence = time.monotonic() - last_contact
        if silence <= self.max_silence:
            return False
        self.lose(f"no answer from the broker for {silence:.1f}s")
        return self.lost.is_set()


async def _wait_first_for(seconds: float, *events: asyncio.Event) -> None:
    try:
        await asyncio.wait_for(_wait_first(*events), seconds)
    except TimeoutError:
        pass


async def _wait_first(*events: asyncio.Event) -> None:
    waits = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def _run_while_held(
    service: str, body: ServiceBody, lease: Lease, stop: asyncio.Event, health: HealthServer
) -> None:
    """Run ``body`` until ``stop``, the body's own end, or the lease's loss."""
    body_stop = asyncio.Event()
    running: asyncio.Future[None] = asyncio.ensure_future(body(body_stop, health))
    watcher = asyncio.ensure_future(_wait_first(stop, lease.lost))
    try:
        await asyncio.wait({running, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if not running.done():
            body_stop.set()
            if lease.lost.is_set():
                logger.warning("service=%s lost its lease (%s); stopping", service, lease.reason)
            finished, _ = await asyncio.wait({running}, timeout=STOP_GRACE_SECONDS)
            if not finished and lease.lost.is_set():
                logger.warning(
                    "service=%s did not stop in %ss; cancelled", service, STOP_GRACE_SECONDS
                )
                running.cancel()
        await running
    finally:
        watcher.cancel()
        running.cancel()


def leased(service: str, settings: CommonSettings, body: ServiceBody) -> ServiceBody:
    """``body`` run only while this process holds ``service``'s lease; standing by otherwise."""
    group = lease_group(settings, service)
    client_id = f"{service}@{socket.gethostname()}:{os.getpid()}"

    async def run(stop: asyncio.Event, health: HealthServer) -> None:
        while not stop.is_set():
            lease = Lease(settings.bootstrap, group, client_id)
            try:
                await lease.start()
            except (KafkaError, OSError, TimeoutError) as exc:
                logger.warning("service=%s could not join lease group %s: %r", service, group, exc)
                await _wait_first_for(RETRY_SECONDS, stop)
                continue
            try:
                health.role = "standby"
                ACTIVE.labels(service).set(0)
                if not lease.held.is_set():
                    logger.info("service=%s stands by (lease group %s)", service, group)
                await _wait_first(stop, lease.held)
                if stop.is_set():
                    return
                health.role = "active"
                ACTIVE.labels(service).set(1)
                logger.info("service=%s is active: it holds the lease of group %s", service, group)
                await _run_while_held(service, body, lease, stop, health)
                if not lease.lost.is_set():
                    return  # stopped, or the body ended by itself
            finally:
                health.ready = lambda: False
                health.role = None
                ACTIVE.labels(service).set(0)
                await lease.stop()
            logger.warning("service=%s joins again as a standby", service)

    return run


def guarded(service: str, settings: CommonSettings, body: ServiceBody) -> ServiceBody:
    """The body the runtime runs: leased for a singleton with ``standby`` on, else ``body``."""
    return leased(service, settings, body) if settings.standby and service in SINGLETONS else body
